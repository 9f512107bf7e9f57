//! Flow events from the workers to operators.
//!
//! Workers push compact [`FlowRecord`]s (numbers only) into their own
//! lock-free queues. The control thread drains every queue with
//! [`Drain::poll`], resolves each record's numbers to names through the
//! engine configuration of the record's generation ([`ConfigHistory`]) into a
//! [`FlowEvent`], and hands it on: `gatewayd` writes JSON lines
//! ([`write_json_lines`]); the gRPC `GetFlows` stream takes the records
//! unresolved ([`Drain::poll_records`], `crate::api::wire::FlowFeed`).

use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use dataplane::engine::EngineConfig;
use dataplane::events::{Consumer, DnsRecord, Event, EventKind, FlowRecord};
use dataplane::policy::Side;
use serde_json::Value;

pub use crate::flownames::{check_reason, reason_names};

/// The last few published configurations, so that records decided under an
/// older one still resolve to the names they were decided with.
#[derive(Default)]
pub struct ConfigHistory {
    recent: Mutex<Vec<Arc<EngineConfig>>>,
}

const KEEP: usize = 8;

impl ConfigHistory {
    pub fn push(&self, cfg: Arc<EngineConfig>) {
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == KEEP {
            r.remove(0);
        }
        r.push(cfg);
    }

    /// The configuration of `generation`, else the newest.
    pub fn get(&self, generation: u32) -> Option<Arc<EngineConfig>> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().rev().find(|c| c.generation() == generation).or(r.last()).cloned()
    }
}

/// One end of a connection, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    /// A local PU's name, a directory identity's name, or an external network's.
    pub name: Option<String>,
    pub identity: Option<u32>,
    pub tags: Vec<String>,
    /// `pu` (local), `identity` (remote, verified) or `external` (judged by address).
    pub kind: &'static str,
}

/// A flow event with names, ready to print or serve.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowEvent {
    pub time_ns: u64,
    pub kind: &'static str,
    pub protocol: u8,
    pub source: Endpoint,
    pub destination: Endpoint,
    /// `allow`, `reject`, or `drop` (dropped before a decision).
    pub action: &'static str,
    pub observed_action: Option<&'static str>,
    pub ruleset: Option<String>,
    pub rule: Option<String>,
    pub observed_ruleset: Option<String>,
    pub observed_rule: Option<String>,
    /// The policy reason (e.g. `policy_allow`) or the drop reason.
    pub reason: String,
    pub drop_reason: Option<&'static str>,
    pub note: Option<&'static str>,
    pub policy_revision: Option<String>,
    /// Packets / bytes client→server and server→client (end events).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// The worker that saw the flow (its index in `[[workers]]`).
    pub worker: u32,
    /// The policy generation that decided (the config status's `generation`).
    pub generation: u32,
    /// The name the local PU resolved the remote address from, while the
    /// answer's TTL lasts ([`crate::dnslog::NameCache`]).
    pub remote_dns_name: Option<String>,
}

impl FlowEvent {
    /// Resolves a record's numbers with `cfg` (the configuration of its generation).
    pub fn resolve(r: &FlowRecord, cfg: &EngineConfig) -> FlowEvent {
        let p = &cfg.policy;
        let d = r.decision();
        let pu = p.pus().get(r.pu as usize);
        let ((cip, cport), (sip, sport)) = r.client_server();
        let local = |ip, port| Endpoint {
            ip,
            port,
            name: pu.map(|x| x.name.to_string()),
            identity: pu.map(|x| x.identity),
            tags: pu.map(|x| x.tags.iter().map(|(k, v)| format!("{k}={v}")).collect()).unwrap_or_default(),
            kind: "pu",
        };
        let remote = |ip, port| match r.remote_identity {
            Some(id) => {
                let e = p.identity(id);
                Endpoint {
                    ip,
                    port,
                    name: e.and_then(|x| x.name.as_deref().map(str::to_owned)),
                    identity: Some(id),
                    tags: e.map(|x| x.tags.iter().map(|(k, v)| format!("{k}={v}")).collect()).unwrap_or_default(),
                    kind: "identity",
                }
            }
            None => {
                let ext = d.and_then(|d| d.external.or(d.observed.and_then(|o| o.external)));
                let x = ext.and_then(|x| p.external_network(x));
                Endpoint {
                    ip,
                    port,
                    name: x.map(|x| x.name.to_string()),
                    identity: None,
                    tags: x.map(|x| x.tags.iter().map(|(k, v)| format!("{k}={v}")).collect()).unwrap_or_default(),
                    kind: "external",
                }
            }
        };
        let (source, destination) = match r.initiator {
            Side::Inside => (local(cip, cport), remote(sip, sport)),
            Side::Outside => (remote(cip, cport), local(sip, sport)),
        };
        let rule = d.and_then(|d| d.rule).and_then(|x| p.rule(x));
        let obs = d.and_then(|d| d.observed).and_then(|o| p.rule(o.rule));
        let action = match (r.kind, d) {
            (_, Some(d)) => crate::flownames::action_name(d.action),
            (EventKind::Drop, None) => "drop",
            (_, None) => "reject",
        };
        let reason = match (r.drop, d) {
            (Some(x), _) => x.name().to_owned(),
            (None, Some(d)) => d.reason.name().to_owned(),
            (None, None) => "undecided".to_owned(),
        };
        // Counters are kept per port: inside = the PU's packets.
        let (pc, bc) = match r.initiator {
            Side::Inside => (r.packets, r.bytes),
            Side::Outside => ([r.packets[1], r.packets[0]], [r.bytes[1], r.bytes[0]]),
        };
        FlowEvent {
            time_ns: r.time,
            kind: r.kind.name(),
            protocol: r.key.proto,
            source,
            destination,
            action,
            observed_action: d.and_then(|d| d.observed).map(|o| crate::flownames::action_name(o.action)),
            ruleset: rule.map(|x| x.ruleset.to_string()),
            rule: rule.map(|x| x.name.to_string()),
            observed_ruleset: obs.map(|x| x.ruleset.to_string()),
            observed_rule: obs.map(|x| x.name.to_string()),
            reason,
            drop_reason: r.drop.map(|x| x.name()),
            note: r.note.map(|n| n.name()),
            policy_revision: p.revision().map(str::to_owned),
            packets: pc,
            bytes: bc,
            worker: 0,
            generation: r.generation,
            remote_dns_name: None,
        }
    }

    /// How the remote identity was authenticated ("option", "layer4" or ""
    /// without one) and, at layer 4, why ("no_room", "stripped", "cached",
    /// "from_peer"; `docs/identity-l4.md`).
    pub fn identity_mode(&self) -> (&'static str, &'static str) {
        let remote = if self.source.kind == "pu" { &self.destination } else { &self.source };
        identity_mode_of(self.note, remote.identity.is_some())
    }

    /// The event as the API carries it (`gateway.v1.Flow`).
    pub fn to_pb(&self) -> crate::api::pb::Flow {
        crate::api::link::flow_from_event(self)
    }

    /// The event's flow-log line as a JSON value (the object
    /// [`write_json_lines`] writes, the one `gwctl observe -o json` prints).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(crate::flowjson::flow_json(&self.to_pb(), None)).unwrap_or(Value::Null)
    }
}

/// A flow event's identity mode from its note and whether it names a remote
/// identity (see [`FlowEvent::identity_mode`]).
pub fn identity_mode_of(note: Option<&'static str>, remote_identity: bool) -> (&'static str, &'static str) {
    match note {
        Some(n) if remote_identity && n.starts_with("l4_") => ("layer4", n.strip_prefix("l4_").unwrap_or(n)),
        _ if remote_identity => ("option", ""),
        _ => ("", ""),
    }
}

/// The control thread's side of every worker's event queue.
pub struct Drain {
    consumers: Vec<Consumer>,
    /// Per worker, records taken from its queue so far.
    taken: Vec<u64>,
    /// DNS records taken with the flow records, until [`Drain::take_dns`]
    /// (at most [`DNS_PENDING`]; more are counted in `dns_dropped`).
    dns: Vec<(u32, DnsRecord)>,
    pub dns_dropped: u64,
}

/// DNS records a drain keeps for its reader, at most.
pub const DNS_PENDING: usize = 65536;

impl Drain {
    pub fn new(consumers: Vec<Consumer>) -> Drain {
        Drain { taken: vec![0; consumers.len()], consumers, dns: Vec::new(), dns_dropped: 0 }
    }

    /// Moves up to `max` queued records (all workers, each in its order),
    /// with the index of the worker each came from, into `out`; returns how many.
    pub fn poll_records(&mut self, max: usize, out: &mut Vec<(u32, FlowRecord)>) -> usize {
        let before = out.len();
        for (w, (c, taken)) in self.consumers.iter_mut().zip(&mut self.taken).enumerate() {
            let room = max - (out.len() - before);
            if room == 0 {
                break;
            }
            let (dns, dropped) = (&mut self.dns, &mut self.dns_dropped);
            *taken += c.pop_events(room, |e| match e {
                Event::Flow(r) => out.push((w as u32, r)),
                Event::Dns(d) if dns.len() < DNS_PENDING => dns.push((w as u32, d)),
                Event::Dns(_) => *dropped += 1,
            }) as u64;
        }
        out.len() - before
    }

    /// The DNS records drained so far (appended to `out`, oldest first).
    pub fn take_dns(&mut self, out: &mut Vec<(u32, DnsRecord)>) {
        out.append(&mut self.dns);
    }

    /// Takes up to `max` queued records (all workers, each in its order) and
    /// resolves them (for the JSON flow log; `GetFlows` takes
    /// [`Drain::poll_records`] through [`crate::api::wire::FlowFeed`]).
    pub fn poll(&mut self, history: &ConfigHistory, max: usize) -> Vec<FlowEvent> {
        let mut recs = Vec::new();
        self.poll_records(max, &mut recs);
        resolve_all(history, &recs)
    }

    /// Per worker: records it could not queue (its queue was full), in total.
    pub fn lost_per_worker(&self) -> Vec<u64> {
        self.consumers.iter().map(Consumer::lost).collect()
    }

    /// Per worker: records it queued, in total (taken so far and still waiting).
    pub fn queued_per_worker(&self) -> Vec<u64> {
        self.consumers.iter().zip(&self.taken).map(|(c, t)| t + c.len() as u64).collect()
    }

    /// Records the workers could not queue (the drain fell behind), in total.
    pub fn lost(&self) -> u64 {
        self.consumers.iter().map(Consumer::lost).sum()
    }
}

/// Resolves drained records (with their worker) to events; records of a
/// generation no configuration covers are skipped.
pub fn resolve_all(history: &ConfigHistory, records: &[(u32, FlowRecord)]) -> Vec<FlowEvent> {
    let mut out = Vec::with_capacity(records.len());
    let mut cfg: Option<Arc<EngineConfig>> = None;
    for (w, r) in records {
        // One history lookup per generation change, not per record.
        if cfg.as_ref().map(|c| c.generation()) != Some(r.generation) {
            cfg = history.get(r.generation).or(cfg);
        }
        if let Some(c) = &cfg {
            let mut e = FlowEvent::resolve(r, c);
            e.worker = *w;
            out.push(e);
        }
    }
    out
}

/// Writes events as JSON lines, in the one shape of a flow
/// ([`crate::flowjson`]); returns how many.
pub fn write_json_lines(out: &mut impl Write, events: &[FlowEvent]) -> std::io::Result<usize> {
    for e in events {
        crate::flowjson::write_flow_line(out, &e.to_pb(), None)?;
    }
    out.flush()?;
    Ok(events.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::flow::FlowKey;
    use dataplane::policy::{Decision, Direction, PuId, Remote};

    const DOC: &str = r#"
revision: r7
processing_units:
  - {name: web, tags: [app=web], addresses: [10.2.0.20], identity: 2001}
rulesets:
  - name: web
    subject: app == web
    incoming:
      - {name: office, action: allow, object: ext == office, protocols: [tcp], ports: [80]}
external_networks:
  - {name: office, tags: [ext=office], cidrs: [192.168.50.0/24]}
"#;

    #[test]
    fn records_resolve_to_names_through_the_generation_that_made_them() {
        let cfg = Arc::new(EngineConfig::from_yaml(DOC).unwrap());
        let history = ConfigHistory::default();
        history.push(cfg.clone());
        let remote: IpAddr = "192.168.50.7".parse().unwrap();
        let d: Decision = cfg.policy.decide(PuId(0), Direction::Incoming, Remote::Address(remote), 6, 80);
        let key = FlowKey::new(Side::Outside, remote, "10.2.0.20".parse().unwrap(), 40000, 80, 6);
        let mut r =
            FlowRecord::new(EventKind::End, 1_500_000_000, key, Side::Outside, 0, cfg.generation()).with_decision(&d);
        r.packets = [4, 5]; // inside (server) 4, outside (client) 5
        let (mut p, c) = dataplane::events::channel(16);
        p.push(&r);
        p.publish();
        let mut drain = Drain::new(vec![c]);
        let ev = drain.poll(&history, 100);
        assert_eq!(ev.len(), 1);
        let j = &ev[0].to_json()["flow"];
        assert_eq!(j["source"]["name"], "office");
        assert_eq!(j["source"]["kind"], "external");
        assert_eq!(j["destination"]["name"], "web");
        assert_eq!(j["destination"]["kind"], "pu");
        assert_eq!(j["destination"]["tags"][0], "app=web");
        assert_eq!(j["verdict"], "allowed");
        assert_eq!(j["policy"]["action"], "allow");
        assert_eq!(j["policy"]["rule"], "office");
        assert_eq!(j["reason"], "external_network_allow");
        assert_eq!(j["policy_revision"], "r7");
        assert_eq!(j["packets_to_server"], 5);
        assert_eq!(j["type"], "ended");
        assert_eq!(j["direction"], "incoming");
        let mut buf = Vec::new();
        assert_eq!(write_json_lines(&mut buf, &ev).unwrap(), 1);
        let line = String::from_utf8(buf).unwrap();
        assert!(line.ends_with("}\n") && line.lines().count() == 1);
        assert_eq!(drain.poll(&history, 100).len(), 0);
    }

    #[test]
    fn the_drain_counts_what_each_worker_queued_and_lost() {
        let key = FlowKey::new(Side::Outside, "192.168.50.7".parse().unwrap(), "10.2.0.20".parse().unwrap(), 1, 80, 6);
        let r = FlowRecord::new(EventKind::Decision, 1, key, Side::Outside, 0, 0);
        let (mut p0, c0) = dataplane::events::channel(4);
        let (mut p1, c1) = dataplane::events::channel(4);
        for _ in 0..6 {
            p0.push(&r); // 4 queued, 2 refused
        }
        p1.push(&r);
        p0.publish();
        p1.publish();
        let mut drain = Drain::new(vec![c0, c1]);
        assert_eq!((drain.queued_per_worker(), drain.lost_per_worker()), (vec![4, 1], vec![2, 0]));
        let mut out = Vec::new();
        assert_eq!(drain.poll_records(3, &mut out), 3);
        assert_eq!(out.iter().map(|(w, _)| *w).collect::<Vec<_>>(), [0, 0, 0]);
        assert_eq!(drain.queued_per_worker(), vec![4, 1], "taken or waiting, queued all the same");
        p0.push(&r);
        p0.publish();
        assert_eq!(drain.poll_records(10, &mut out), 3);
        assert_eq!(out.iter().map(|(w, _)| *w).collect::<Vec<_>>(), [0, 0, 0, 0, 0, 1]);
        assert_eq!(drain.queued_per_worker(), vec![5, 1]);
    }
}
