//! gatewayd's hook: the config store, the flow hub and the API server, tied
//! to a running [`Gateway`] through its control thread.
//!
//! The gateway (ports, workers) belongs to the control thread, so the API's
//! runtime never touches it: a commit (publishing a new engine config) and a
//! stats read are handed to the control thread, which serves them on its
//! next tick ([`ControlPlane::tick`], every 50 ms) and answers. Before the
//! gateway starts, the restored (or before-config) engine config is kept for
//! [`Gateway::start`], so the ports never run without a policy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dataplane::engine::EngineConfig;
use dataplane::policy::{Direction, PolicySnapshot};
use dataplane::stats::{DropReason, Note};
use hdrhistogram::Histogram;

use super::convert::{document_from_yaml, unix_ns};
use super::flows::FlowRing;
use super::pb;
use super::server::{Backends, ControlConfig, ControlServer};
use super::stats::{histogram_to_pb, rule_hits_to_pb, StatsSource};
use super::wire::FlowFeed;
use crate::flowhub::{FlowHub, LostSource};
use crate::flowlog::{ConfigHistory, FlowEvent};
use crate::gateway::{Gateway, Snapshot};
use crate::store::{ApplyOptions, Commit, ConfigStore, Content, Enforcer, StoreError};
use dataplane::events::FlowRecord as WorkerRecord;
use dataplane::problem::ConfigProblem;

/// How long an apply waits for the control thread to swap the config in.
const COMMIT_WAIT: Duration = Duration::from_secs(5);

enum Request {
    Publish(Box<EngineConfig>, SyncSender<()>),
    Stats(SyncSender<pb::GetStatsResponse>),
    /// The stats and the handshake latency buckets as the workers keep them (for /metrics).
    Metrics(SyncSender<(pb::GetStatsResponse, Vec<(u64, u64)>)>),
    /// Every rule's hits.
    RuleHits(SyncSender<Vec<pb::RuleHits>>),
    /// The engine configuration in force.
    InForce(SyncSender<Option<Arc<EngineConfig>>>),
    /// The learned FQDN table (`gwctl get fqdn`).
    Fqdn(SyncSender<pb::GetFqdnResponse>),
}

/// What the API side shares with the control thread.
struct Link {
    started: AtomicBool,
    /// The engine config to start the gateway with (before it runs).
    initial: Mutex<Option<EngineConfig>>,
    tx: Mutex<SyncSender<Request>>,
}

struct GatewayEnforcer(Arc<Link>);

impl Enforcer for GatewayEnforcer {
    fn prepare(&self, snapshot: PolicySnapshot) -> Result<Commit, Vec<ConfigProblem>> {
        // Loads the private key and derives every pairwise key: may fail.
        let cfg = EngineConfig::from_snapshot(snapshot)?;
        let link = self.0.clone();
        Ok(Box::new(move || {
            if !link.started.load(Ordering::Acquire) {
                *link.initial.lock().unwrap_or_else(|e| e.into_inner()) = Some(cfg);
                return;
            }
            let (ack_tx, ack_rx) = mpsc::sync_channel(1);
            let sent = link.tx.lock().unwrap_or_else(|e| e.into_inner()).send(Request::Publish(Box::new(cfg), ack_tx));
            if sent.is_ok() && ack_rx.recv_timeout(COMMIT_WAIT).is_err() {
                eprintln!("gatewayd: the control thread did not confirm a policy swap within {COMMIT_WAIT:?}");
            }
        }))
    }
}

struct LinkStats(Arc<Link>);

impl StatsSource for LinkStats {
    fn stats(&self) -> pb::GetStatsResponse {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.0.tx.lock().unwrap_or_else(|e| e.into_inner()).send(Request::Stats(tx)).is_err() {
            return pb::GetStatsResponse::default();
        }
        rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
    }

    fn policy_in_force(&self) -> Option<Arc<EngineConfig>> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.0.tx.lock().unwrap_or_else(|e| e.into_inner()).send(Request::InForce(tx)).ok()?;
        rx.recv_timeout(Duration::from_secs(2)).ok().flatten()
    }

    fn rule_hits(&self) -> Vec<pb::RuleHits> {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.0.tx.lock().unwrap_or_else(|e| e.into_inner()).send(Request::RuleHits(tx)).is_err() {
            return Vec::new();
        }
        rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
    }
}

/// The control plane of a running gatewayd.
pub struct ControlPlane {
    link: Arc<Link>,
    rx: Receiver<Request>,
    pub store: Arc<ConfigStore>,
    pub hub: Arc<FlowRing>,
    cfg: ControlConfig,
    server: Option<ControlServer>,
    policy_file: Option<PathBuf>,
    /// Per worker, the queue losses already reported.
    lost_seen: Vec<u64>,
    /// Per worker, the records it queued (as of the last drain), for `events_queued`.
    queued: Vec<u64>,
    /// Resolves and encodes drained records for the hub.
    feed: FlowFeed,
    /// Worker queue to hub: how long events waited (µs).
    delay_us: Histogram<u64>,
    /// DNS events for `GetDns`.
    dns: Arc<super::dns::DnsHub>,
}

/// Why the control plane could not start.
#[derive(Debug)]
pub enum LinkError {
    Config(Vec<ConfigProblem>),
    Store(StoreError),
    PolicyFile { path: PathBuf, problems: Vec<ConfigProblem> },
    Server(super::ServerError),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Config(v) => {
                for (i, p) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
            LinkError::Store(e) => e.fmt(f),
            LinkError::PolicyFile { path, problems } => {
                write!(f, "policy {} refused ({} problem(s)):", path.display(), problems.len())?;
                for p in problems {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
            LinkError::Server(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LinkError {}

impl ControlPlane {
    /// Opens the store (restoring the persisted policy, or else applying
    /// `policy_file` as version 1, or else the before-config policy) and
    /// returns the engine config to start the gateway with.
    pub fn open(cfg: &ControlConfig, policy_file: Option<&Path>) -> Result<(ControlPlane, EngineConfig), LinkError> {
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(LinkError::Config(problems));
        }
        let (tx, rx) = mpsc::sync_channel(64);
        let link = Arc::new(Link { started: AtomicBool::new(false), initial: Mutex::new(None), tx: Mutex::new(tx) });
        let store = Arc::new(
            ConfigStore::open(cfg.store_options(), Box::new(GatewayEnforcer(link.clone())))
                .map_err(LinkError::Store)?,
        );
        if let (None, Some(path)) = (store.current(), policy_file) {
            let text = std::fs::read_to_string(path).map_err(|e| LinkError::PolicyFile {
                path: path.to_owned(),
                problems: vec![ConfigProblem::new("document", "", "", "", format!("cannot read: {e}"))],
            })?;
            let doc = document_from_yaml(&text)
                .map_err(|p| LinkError::PolicyFile { path: path.to_owned(), problems: vec![p.bounded()] })?;
            // The file the operator configured, onto nothing: taken even if
            // it is empty (the start-up line then says it drops everything).
            let opts = ApplyOptions { allow_empty: true, ..ApplyOptions::default() };
            store
                .apply_with(1, Content::Document(doc), opts)
                .map_err(|r| LinkError::PolicyFile { path: path.to_owned(), problems: r.problems })?;
        }
        let initial = link.initial.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_else(EngineConfig::empty);
        let cp = ControlPlane {
            link,
            rx,
            store,
            hub: FlowHub::new(cfg.flow_ring),
            dns: Arc::new(super::dns::DnsHub::default()),
            cfg: cfg.clone(),
            server: None,
            policy_file: policy_file.map(Path::to_owned),
            lost_seen: Vec::new(),
            queued: Vec::new(),
            feed: FlowFeed::new(),
            delay_us: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds"),
        };
        Ok((cp, initial))
    }

    /// Serves the API (call once the gateway runs).
    pub fn serve(&mut self) -> Result<(), LinkError> {
        self.link.started.store(true, Ordering::Release);
        if !self.cfg.enabled {
            return Ok(());
        }
        let link = self.link.clone();
        let fqdn: super::dns::FqdnSource = Arc::new(move || {
            let (tx, rx) = mpsc::sync_channel(1);
            link.tx.lock().unwrap_or_else(|e| e.into_inner()).send(Request::Fqdn(tx)).ok()?;
            rx.recv_timeout(Duration::from_secs(2)).ok()
        });
        let backends = Backends {
            store: self.store.clone(),
            hub: self.hub.clone(),
            stats: Arc::new(LinkStats(self.link.clone())),
            dns: self.dns.clone(),
            fqdn: Some(fqdn),
        };
        self.server = Some(ControlServer::start(&self.cfg, backends).map_err(LinkError::Server)?);
        Ok(())
    }

    /// Serves what the API asked of the control thread. Call every tick.
    pub fn tick(&mut self, gw: &Gateway) {
        while let Ok(req) = self.rx.try_recv() {
            match req {
                Request::Publish(cfg, ack) => {
                    if gw.publish(*cfg).is_err() {
                        eprintln!("gatewayd: the gateway runs without an engine; the policy cannot be published");
                    }
                    let _ = ack.send(());
                }
                Request::Stats(reply) => {
                    let _ = reply.send(self.stats(gw).0);
                }
                Request::Metrics(reply) => {
                    let (mut s, h) = self.stats(gw);
                    s.rule_hits = rule_hits_to_pb(gw.rule_hits().counts());
                    let _ = reply.send((s, h));
                }
                Request::InForce(reply) => {
                    let _ = reply.send(gw.engine_config());
                }
                Request::RuleHits(reply) => {
                    let _ = reply.send(rule_hits_to_pb(gw.rule_hits().counts()));
                }
                Request::Fqdn(reply) => {
                    let _ = reply.send(fqdn_of(gw));
                }
            }
        }
    }

    fn stats(&self, gw: &Gateway) -> (pb::GetStatsResponse, Vec<(u64, u64)>) {
        let snap = gw.snapshot();
        let mut s = stats_of(&snap);
        for (w, q) in s.workers.iter_mut().zip(&self.queued) {
            w.events_queued = *q;
        }
        s.histograms.push(histogram_to_pb("flow_event_delay", "us", &self.delay_us));
        s.histograms.push(handshake_histogram(&snap.handshake_ns));
        (s, snap.handshake_ns)
    }

    /// What a `/metrics` scrape reads: asked of the control thread like
    /// `gwctl stats`, with the store's status and apply times.
    pub fn metrics_source(&self) -> crate::metrics::Source {
        let link = self.link.clone();
        let store = self.store.clone();
        let hub = self.hub.clone();
        Arc::new(move || {
            let (tx, rx) = mpsc::sync_channel(1);
            link.tx.lock().unwrap_or_else(|e| e.into_inner()).send(Request::Metrics(tx)).ok()?;
            let (mut stats, handshake_ns) = rx.recv_timeout(Duration::from_secs(2)).ok()?;
            stats.flowhub = Some(super::stats::flowhub_to_pb(&hub));
            Some(crate::metrics::Scrape {
                stats,
                handshake_ns,
                status: store.status(),
                apply_us: store.compile_histogram(),
            })
        })
    }

    /// Feeds resolved DNS events to `GetDns` readers.
    pub fn push_dns(&self, events: &[crate::dnslog::DnsEvent]) {
        self.dns.push(events);
    }

    /// Feeds drained records to the hub, resolved (through `history`) and
    /// encoded once. `lost` and `queued` are, per worker, the drain's running
    /// counts of records that worker could not queue and did queue (each
    /// worker's new losses become a notice naming it). `dns` names remote
    /// ends by the DNS answers their PUs read.
    pub fn push_records(
        &mut self,
        history: &ConfigHistory,
        records: &[(u32, WorkerRecord)],
        dns: &crate::dnslog::NameCache,
        lost: &[u64],
        queued: &[u64],
    ) {
        let now = unix_ns(SystemTime::now());
        self.lost_seen.resize(lost.len(), 0);
        for (w, (&total, seen)) in lost.iter().zip(self.lost_seen.iter_mut()).enumerate() {
            if total > *seen {
                self.hub.push_lost(LostSource::WorkerQueue, total - *seen, w as u32, now);
                *seen = total;
            }
        }
        self.queued.clear();
        self.queued.extend_from_slice(queued);
        for (_, r) in records {
            let _ = self.delay_us.record((now.saturating_sub(r.time) / 1000).max(1));
        }
        if !records.is_empty() {
            self.hub.push_batch(self.feed.resolve_named(history, records, Some(dns)));
        }
    }

    /// SIGHUP: the policy file again, as the next version (through the store:
    /// validated whole, persisted, reported to watchers).
    pub fn reload_file(&mut self, gw: &Gateway) -> Result<u64, String> {
        let path = self.policy_file.clone().ok_or("no [policy] file to reload")?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let doc = document_from_yaml(&text).map_err(|p| format!("{}: {}", path.display(), p.bounded().message))?;
        let v = self.store.versions().document() + 1;
        let store = self.store.clone();
        // The commit waits for this (the control) thread: apply on another
        // thread and keep serving the link meanwhile.
        let h = std::thread::spawn(move || store.apply(v, Content::Document(doc), false));
        while !h.is_finished() {
            std::thread::sleep(Duration::from_millis(2));
            self.tick(gw);
        }
        self.tick(gw);
        match h.join() {
            Ok(Ok(a)) => Ok(a.version),
            Ok(Err(r)) => Err(r.problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("\n  ")),
            Err(_) => Err("the apply panicked".into()),
        }
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

/// A resolved flow event as the API carries it (what [`FlowFeed`] encodes
/// straight from the worker's record; kept as the reference the tests compare it with).
pub fn flow_from_event(e: &FlowEvent) -> pb::Flow {
    let ep = |x: &crate::flowlog::Endpoint| pb::Endpoint {
        ip: x.ip.to_string(),
        port: x.port.into(),
        identity: x.identity.unwrap_or(0),
        name: x.name.clone().unwrap_or_default(),
        tags: x.tags.clone(),
        kind: crate::flownames::ENDPOINT_KINDS
            .iter()
            .find(|(_, n)| *n == x.kind)
            .map_or(pb::EndpointKind::Unknown, |(k, _)| *k) as i32,
    };
    let verdict = match (e.action, e.reason.as_str()) {
        (_, "ignored" | "excluded") => pb::Verdict::Passed,
        ("allow", _) => pb::Verdict::Allowed,
        _ => pb::Verdict::Rejected,
    };
    let ty = match (e.kind, verdict) {
        ("end", _) => pb::FlowEventType::Ended,
        (_, pb::Verdict::Allowed | pb::Verdict::Passed) => pb::FlowEventType::Started,
        _ => pb::FlowEventType::Rejected,
    };
    let dir = if e.source.kind == "pu" { Direction::Outgoing } else { Direction::Incoming };
    let direction = dir.name();
    let policy = |rs: &Option<String>, r: &Option<String>, action: Option<&str>| match (rs, r) {
        (Some(rs), Some(r)) => Some(pb::PolicyRef {
            ruleset: rs.clone(),
            rule: r.clone(),
            direction: direction.into(),
            action: action.unwrap_or("").into(),
        }),
        _ => None,
    };
    pb::Flow {
        time_unix_ns: e.time_ns,
        r#type: ty as i32,
        worker: e.worker,
        source: Some(ep(&e.source)),
        destination: Some(ep(&e.destination)),
        protocol: e.protocol.into(),
        verdict: verdict as i32,
        reason: e.reason.clone(),
        policy: policy(&e.ruleset, &e.rule, Some(e.action)),
        observed: policy(&e.observed_ruleset, &e.observed_rule, e.observed_action),
        policy_generation: e.generation,
        policy_revision: e.policy_revision.clone().unwrap_or_default(),
        packets_to_server: e.packets[0],
        bytes_to_server: e.bytes[0],
        packets_to_client: e.packets[1],
        bytes_to_client: e.bytes[1],
        handshake_ns: 0,
        direction: crate::flownames::direction_pb(dir) as i32,
        note: e.note.unwrap_or("").into(),
        identity_mode: e.identity_mode().0.into(),
        layer4_reason: e.identity_mode().1.into(),
        remote_dns_name: e.remote_dns_name.clone().unwrap_or_default(),
    }
}

/// The workers' SYN → SYN-ACK buckets merged into one hdrhistogram (µs; each
/// bucket counted at its smallest value, so within 25% below).
fn handshake_histogram(buckets: &[(u64, u64)]) -> pb::Histogram {
    let mut h: Histogram<u64> = Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds");
    for &(low_ns, count) in buckets {
        let _ = h.record_n((low_ns / 1000).clamp(1, 3_600_000_000), count);
    }
    histogram_to_pb("tcp_handshake_syn_to_syn_ack", "us", &h)
}

/// The gateway's counters as the API carries them.
pub fn stats_of(s: &Snapshot) -> pb::GetStatsResponse {
    let port = |role: &str, name: &str, p: &dpdk_bindings::port::PortStats| pb::PortCounters {
        role: role.into(),
        name: name.into(),
        rx_packets: p.ipackets,
        rx_bytes: p.ibytes,
        tx_packets: p.opackets,
        tx_bytes: p.obytes,
        missed: p.imissed,
        rx_errors: p.ierrors,
        tx_errors: p.oerrors,
        rx_nombuf: p.rx_nombuf,
    };
    // Every drop reason, then every note ("note.<name>"), zeros included.
    let names: Vec<String> = DropReason::ALL
        .iter()
        .map(|r| r.name().to_owned())
        .chain(Note::ALL.iter().map(|n| format!("note.{}", n.name())))
        .collect();
    let mut totals: Vec<pb::ReasonCount> =
        names.iter().map(|n| pb::ReasonCount { reason: n.clone(), count: 0 }).collect();
    let dir = |d: &dataplane::stats::DirCounts, totals: &mut Vec<pb::ReasonCount>| {
        let counts = DropReason::ALL.iter().map(|r| d.dropped(*r)).chain(Note::ALL.iter().map(|n| d.noted(*n)));
        let reasons: Vec<pb::ReasonCount> =
            names.iter().zip(counts).map(|(n, c)| pb::ReasonCount { reason: n.clone(), count: c }).collect();
        for (t, r) in totals.iter_mut().zip(&reasons) {
            t.count += r.count;
        }
        pb::DirectionCounters {
            rx_packets: d.rx_packets,
            rx_bytes: d.rx_bytes,
            tx_packets: d.tx_packets,
            tx_bytes: d.tx_bytes,
            reasons,
        }
    };
    let workers = s
        .workers
        .iter()
        .enumerate()
        .map(|(i, (lcore, queue, w))| pb::WorkerCounters {
            index: i as u32,
            lcore: *lcore,
            queue: u32::from(*queue),
            polls: w.polls,
            idle_polls: w.idle_polls,
            handed_off: w.handed_off,
            handed_in: w.handed_in,
            flows_active: w.flows_active,
            flow_capacity: w.flow_capacity,
            flows_evicted: w.flows_evicted,
            replay_remembered: w.replay_remembered,
            replay_overwritten: w.replay_overwritten,
            on_cpu_ns: w.on_cpu_ns,
            event_queue_drops: w.from_inside.noted(Note::EventsLost) + w.from_outside.noted(Note::EventsLost),
            from_inside: Some(dir(&w.from_inside, &mut totals)),
            from_outside: Some(dir(&w.from_outside, &mut totals)),
            ..Default::default()
        })
        .collect();
    pb::GetStatsResponse {
        uptime_s: s.elapsed.as_secs_f64(),
        ports: vec![port("inside", &s.inside_name, &s.inside), port("outside", &s.outside_name, &s.outside)],
        workers,
        reasons: totals,
        dns: s.dns.iter().map(|&(n, v)| pb::ReasonCount { reason: n.into(), count: v }).collect(),
        ..Default::default()
    }
}

/// The learned FQDN table, with each pattern's text from the policy in force.
fn fqdn_of(gw: &Gateway) -> pb::GetFqdnResponse {
    let t = gw.fqdn_table();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let cfg = gw.engine_config();
    let text = |id: u64| {
        cfg.as_ref()
            .and_then(|c| c.policy.fqdn_patterns().text(id).map(str::to_owned))
            .unwrap_or_else(|| format!("#{id:016x}"))
    };
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    pb::GetFqdnResponse {
        entries: t
            .entries(now)
            .into_iter()
            .map(|e| pb::FqdnEntry {
                address: e.addr.to_string(),
                pattern: text(e.pattern),
                expires_unix_ns: e.expiry_ns,
            })
            .collect(),
        learned: ld(&t.counts.learned),
        refreshed: ld(&t.counts.refreshed),
        full: ld(&t.counts.full),
        capacity: t.capacity() as u64,
    }
}
