//! The Prometheus endpoint (`[metrics] listen`, docs/metrics.md): `GET
//! /metrics` in the OpenMetrics text format.
//!
//! A scrape asks the control thread for the counters it already serves to
//! `gwctl stats` (relaxed loads of the workers' own counters: no worker waits
//! and no cache line moves beyond those loads), adds the config store's and
//! the fleet agent's, and encodes them with `prometheus-client`. The server is
//! one thread with a bounded request size and short timeouts: a slow or
//! hostile scraper cannot hold it, and nothing it does reaches the workers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use serde::Deserialize;

use crate::api::pb;
use crate::store::Status;
use dataplane::problem::{cut, ConfigProblem};

/// Every metric's name starts with this.
pub const PREFIX: &str = "igw";
/// A request larger than this is refused (a scrape is one short line and headers).
const MAX_REQUEST: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Latency buckets (seconds).
const HANDSHAKE_BUCKETS: [f64; 12] = [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1, 1.0];
const APPLY_BUCKETS: [f64; 10] = [1e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics` on (e.g. `127.0.0.1:9187`).
    pub listen: String,
}

impl MetricsConfig {
    pub fn validate(&self) -> Vec<ConfigProblem> {
        match self.listen.parse::<SocketAddr>() {
            Ok(_) => Vec::new(),
            Err(_) => vec![ConfigProblem::setting(
                "metrics.listen",
                format!("{:?} is not an address:port (e.g. \"127.0.0.1:9187\")", cut(&self.listen, 64)),
            )],
        }
    }
}

/// What one scrape reports.
pub struct Scrape {
    pub stats: pb::GetStatsResponse,
    /// The dataplane's SYN-to-SYN-ACK latency: (smallest value of a bucket in ns, count).
    pub handshake_ns: Vec<(u64, u64)>,
    pub status: Arc<Status>,
    /// Apply (validate + compile) times, µs.
    pub apply_us: Histogram<u64>,
}

/// Gathers a scrape (called on the metrics thread); `None` when the counters
/// cannot be had (the control thread did not answer).
pub type Source = Arc<dyn Fn() -> Option<Scrape> + Send + Sync>;

type Labels = Vec<(&'static str, String)>;

/// A sample's value: a count, or seconds (from nanoseconds).
#[derive(Clone, Copy)]
enum Value {
    Count(u64),
    Seconds(f64),
}

/// One metric family: its full name, help, type, and samples.
struct Family {
    name: String,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

fn family(name: &str, help: &'static str, kind: MetricType) -> Family {
    Family { name: format!("{PREFIX}_{name}"), help, kind, samples: Vec::new() }
}

impl Family {
    fn add(&mut self, labels: Labels, v: u64) {
        self.samples.push((labels, Value::Count(v)));
    }
    fn add_seconds(&mut self, labels: Labels, ns: u64) {
        self.samples.push((labels, Value::Seconds(ns as f64 / 1e9)));
    }
    fn one(name: &str, help: &'static str, kind: MetricType, v: u64) -> Family {
        let mut f = family(name, help, kind);
        f.add(Vec::new(), v);
        f
    }
}

fn port_families(st: &pb::GetStatsResponse) -> Vec<Family> {
    let mut fams: Vec<Family> = [
        ("port_rx_packets", "Frames received on the port (the device's count)."),
        ("port_rx_bytes", "Bytes received on the port."),
        ("port_tx_packets", "Frames sent on the port."),
        ("port_tx_bytes", "Bytes sent on the port."),
        ("port_rx_missed", "Frames the device dropped for want of descriptors."),
        ("port_rx_errors", "Erroneous frames received."),
        ("port_tx_errors", "Frames the device failed to send."),
        ("port_rx_nombuf", "Frames dropped for want of an mbuf."),
    ]
    .into_iter()
    .map(|(n, h)| family(n, h, MetricType::Counter))
    .collect();
    for p in &st.ports {
        let values =
            [p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes, p.missed, p.rx_errors, p.tx_errors, p.rx_nombuf];
        for (f, v) in fams.iter_mut().zip(values) {
            f.add(vec![("port", p.role.clone()), ("device", p.name.clone())], v);
        }
    }
    fams
}

/// Per rule of the policy in force: the connections it decided (summed over
/// workers; labels name the rule, never a flow).
fn rule_families(st: &pb::GetStatsResponse) -> Vec<Family> {
    let mut hits = family(
        "rule_hits",
        "Connections a rule decided (an observe rule: would have decided), kept across re-compiles.",
        MetricType::Counter,
    );
    for r in &st.rule_hits {
        hits.add(
            vec![
                ("ruleset", r.ruleset.clone()),
                ("direction", r.direction.clone()),
                ("rule", r.rule.clone()),
                ("action", r.action.clone()),
                ("observe", r.observe.to_string()),
            ],
            r.hits,
        );
    }
    vec![hits]
}

fn worker_families(st: &pb::GetStatsResponse) -> Vec<Family> {
    use MetricType::{Counter, Gauge};
    let mut rx_p = family("worker_rx_packets", "Frames a worker took in, by the side they came from.", Counter);
    let mut rx_b = family("worker_rx_bytes", "Bytes a worker took in.", Counter);
    let mut tx_p = family("worker_tx_packets", "Frames a worker sent on, by the side they came from.", Counter);
    let mut tx_b = family("worker_tx_bytes", "Bytes a worker sent on.", Counter);
    let mut drops = family("drops", "Frames dropped, by reason (every drop has exactly one).", Counter);
    let mut events =
        family("events", "What the workers did or saw that is not a drop (their notes), by name.", Counter);
    let mut active = family("flows_active", "Flows in the worker's table.", Gauge);
    let mut capacity = family("flow_capacity", "Flows the worker's table holds.", Gauge);
    let mut evicted = family("flows_evicted", "Handshake flows evicted to make room.", Counter);
    let mut queue_drops = family("flow_event_queue_drops", "Flow events a worker could not queue.", Counter);
    let mut polls = family("worker_polls", "Receive polls, by whether they found frames.", Counter);
    let mut cpu = family(
        "worker_cpu_seconds",
        "Time the kernel ran the worker's thread (below the wall time: its core is shared with other tasks).",
        Counter,
    );
    for w in &st.workers {
        let worker = w.index.to_string();
        for (dir, d) in [("from_inside", &w.from_inside), ("from_outside", &w.from_outside)] {
            let Some(d) = d else { continue };
            let l = || vec![("worker", worker.clone()), ("direction", dir.to_owned())];
            rx_p.add(l(), d.rx_packets);
            rx_b.add(l(), d.rx_bytes);
            tx_p.add(l(), d.tx_packets);
            tx_b.add(l(), d.tx_bytes);
            for r in &d.reasons {
                let mut labels = l();
                match r.reason.strip_prefix("note.") {
                    Some(n) => {
                        labels.push(("event", n.to_owned()));
                        events.add(labels, r.count);
                    }
                    None => {
                        labels.push(("reason", r.reason.clone()));
                        drops.add(labels, r.count);
                    }
                }
            }
        }
        let l = || vec![("worker", worker.clone())];
        active.add(l(), w.flows_active);
        capacity.add(l(), w.flow_capacity);
        evicted.add(l(), w.flows_evicted);
        queue_drops.add(l(), w.event_queue_drops);
        polls.add(vec![("worker", worker.clone()), ("result", "idle".into())], w.idle_polls);
        polls.add(vec![("worker", worker.clone()), ("result", "frames".into())], w.polls.saturating_sub(w.idle_polls));
        cpu.add_seconds(l(), w.on_cpu_ns);
    }
    vec![rx_p, rx_b, tx_p, tx_b, drops, events, active, capacity, evicted, queue_drops, polls, cpu]
}

fn control_families(s: &Scrape) -> Vec<Family> {
    use MetricType::{Counter, Gauge};
    let mut out = Vec::new();
    if let Some(h) = &s.stats.flowhub {
        out.push(Family::one(
            "flowhub_overwritten",
            "Flow records the hub's ring overwrote before every reader had them.",
            Counter,
            h.overwritten,
        ));
        out.push(Family::one(
            "flowhub_lost_by_workers",
            "Flow events lost in the workers' queues (reported to readers).",
            Counter,
            h.lost_by_workers,
        ));
        out.push(Family::one("flowhub_readers", "Flow streams being served.", Gauge, h.readers));
    }
    if !s.stats.dns.is_empty() {
        let mut events = family("dns", "What the workers saw of DNS, by counter (docs/dns.md).", Counter);
        for c in &s.stats.dns {
            if c.reason == "fqdn_table_entries" {
                out.push(Family::one("fqdn_table_entries", "Live entries of the learned FQDN table.", Gauge, c.count));
            } else if c.reason == "hold_max_ns" {
                out.push(Family::one(
                    "dns_hold_max_ns",
                    "Longest hold of a DNS answer that taught the learned FQDN table, ns (docs/dns.md).",
                    Gauge,
                    c.count,
                ));
            } else {
                events.add(vec![("counter", c.reason.clone())], c.count);
            }
        }
        out.push(events);
    }
    let st = &s.status;
    out.push(Family::one("config_version", "Version of the policy document in force.", Gauge, st.versions.document()));
    out.push(Family::one(
        "config_generation",
        "Generation of the compiled snapshot in force (flow records carry it).",
        Gauge,
        u64::from(st.generation),
    ));
    let mut f = family("config_applies", "Applies answered, by result.", Counter);
    f.add(vec![("result", "accepted".into())], st.applies_accepted);
    f.add(vec![("result", "refused".into())], st.applies_refused);
    out.push(f);
    let mut f = family("config_state", "1 for the enforcement state in force.", Gauge);
    f.add(vec![("state", st.state.name().into())], 1);
    out.push(f);
    let mut f = family("policy_size", "Size of the policy in force, by kind.", Gauge);
    f.add(vec![("kind", "processing_units".into())], st.pus as u64);
    f.add(vec![("kind", "identities".into())], st.identities as u64);
    f.add(vec![("kind", "rules".into())], st.rules as u64);
    out.push(f);
    if let Some(fl) = &st.fleet {
        out.push(Family::one(
            "fleet_connected",
            "1 while the fleet agent talks to etcd.",
            Gauge,
            u64::from(fl.connected),
        ));
        out.push(Family::one(
            "fleet_applied_version",
            "Fleet document version in force here.",
            Gauge,
            fl.applied_fleet_version,
        ));
        out.push(Family::one(
            "fleet_seen_version",
            "Newest fleet document version seen in etcd.",
            Gauge,
            fl.seen_fleet_version,
        ));
        out.push(Family::one("fleet_disconnects", "Times the fleet agent lost etcd.", Counter, fl.disconnects));
        out.push(Family::one("fleet_relists", "Full re-lists after a compaction.", Counter, fl.relists));
        out.push(Family::one("fleet_refusals", "Fleet documents this gateway refused.", Counter, fl.refusals));
        out.push(Family::one(
            "fleet_unverified_objects",
            "Fleet objects ignored because they did not verify.",
            Counter,
            fl.unverified_objects,
        ));
    }
    out
}

/// Cumulative bucket counts of `(value, count)` pairs for `bounds`, with
/// the sum and the count.
fn buckets(values: &[(f64, u64)], bounds: &[f64]) -> (f64, u64, Vec<(f64, u64)>) {
    let count = values.iter().map(|v| v.1).sum();
    let sum = values.iter().map(|(v, c)| v * *c as f64).sum();
    let mut out: Vec<(f64, u64)> =
        bounds.iter().map(|&b| (b, values.iter().filter(|(v, _)| *v <= b).map(|(_, c)| c).sum())).collect();
    out.push((f64::INFINITY, count));
    (sum, count, out)
}

struct ScrapeCollector(Scrape);

impl std::fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeCollector")
    }
}

impl prometheus_client::collector::Collector for ScrapeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let mut fams = port_families(&s.stats);
        fams.extend(worker_families(&s.stats));
        fams.extend(rule_families(&s.stats));
        fams.extend(control_families(s));
        for f in fams {
            let mut m = enc.encode_descriptor(&f.name, f.help, None, f.kind)?;
            for (labels, v) in &f.samples {
                let mut sample = m.encode_family(labels)?;
                match (f.kind, *v) {
                    (MetricType::Counter, Value::Count(n)) => sample.encode_counter::<NoLabelSet, _, u64>(&n, None)?,
                    (MetricType::Counter, Value::Seconds(s)) => {
                        sample.encode_counter::<NoLabelSet, _, u64>(&s, None)?
                    }
                    (_, Value::Count(n)) => sample.encode_gauge(&(n as i64))?,
                    (_, Value::Seconds(s)) => sample.encode_gauge(&s)?,
                }
            }
        }
        let hs: Vec<(f64, u64)> = s.handshake_ns.iter().map(|&(ns, c)| (ns as f64 / 1e9, c)).collect();
        let (sum, count, b) = buckets(&hs, &HANDSHAKE_BUCKETS);
        let name = format!("{PREFIX}_tcp_handshake_seconds");
        let mut m = enc.encode_descriptor(
            &name,
            "SYN to SYN-ACK through the gateway (a value counts at its bucket's lower edge, within 25%).",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<NoLabelSet>(sum, count, &b, None)?;
        let ap: Vec<(f64, u64)> =
            s.apply_us.iter_recorded().map(|v| (v.value_iterated_to() as f64 / 1e6, v.count_at_value())).collect();
        let (sum, count, b) = buckets(&ap, &APPLY_BUCKETS);
        let name = format!("{PREFIX}_config_apply_seconds");
        let mut m =
            enc.encode_descriptor(&name, "Time to validate and compile an apply.", None, MetricType::Histogram)?;
        m.encode_histogram::<NoLabelSet>(sum, count, &b, None)?;
        Ok(())
    }
}

/// The scrape as OpenMetrics text.
pub fn render(s: Scrape) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(ScrapeCollector(s)));
    let mut out = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The `/metrics` server: one thread, stopped on drop.
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl MetricsServer {
    pub fn start(cfg: &MetricsConfig, source: Source) -> Result<MetricsServer, String> {
        let listener = TcpListener::bind(&cfg.listen)
            .map_err(|e| format!("metrics.listen: cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => serve(conn, &source),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok(MetricsServer { stop, thread: Some(thread), addr })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads the request head (bounded, with a timeout), answers, closes.
fn serve(mut conn: TcpStream, source: &Source) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > MAX_REQUEST {
            let _ = respond(&mut conn, "431 Request Header Fields Too Large", "text/plain", b"request too large\n");
            return;
        }
    }
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let _ = match (method, path) {
        (b"GET", b"/metrics") => match source() {
            Some(s) => respond(
                &mut conn,
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                render(s).as_bytes(),
            ),
            None => respond(&mut conn, "503 Service Unavailable", "text/plain", b"the counters are not available\n"),
        },
        (b"GET", _) => respond(&mut conn, "404 Not Found", "text/plain", b"only /metrics is served here\n"),
        _ => respond(&mut conn, "405 Method Not Allowed", "text/plain", b"GET /metrics\n"),
    };
}

fn respond(conn: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape() -> Scrape {
        let store = crate::store::ConfigStore::open(
            crate::store::StoreOptions { state_dir: None, before_config: Default::default() },
            Box::new(crate::store::Discard),
        )
        .unwrap();
        let reasons = vec![
            pb::ReasonCount { reason: "no_match".into(), count: 3 },
            pb::ReasonCount { reason: "note.rst_sent".into(), count: 2 },
        ];
        let dir = pb::DirectionCounters { rx_packets: 10, rx_bytes: 600, tx_packets: 7, tx_bytes: 420, reasons };
        Scrape {
            stats: pb::GetStatsResponse {
                workers: vec![pb::WorkerCounters {
                    index: 0,
                    from_outside: Some(dir),
                    flows_active: 4,
                    flow_capacity: 1024,
                    on_cpu_ns: 2_500_000_000,
                    ..Default::default()
                }],
                ports: vec![pb::PortCounters {
                    role: "inside".into(),
                    name: "net_null0".into(),
                    rx_packets: 5,
                    ..Default::default()
                }],
                rule_hits: vec![pb::RuleHits {
                    ruleset: "web".into(),
                    direction: "incoming".into(),
                    rule: "http".into(),
                    action: "allow".into(),
                    observe: false,
                    hits: 9,
                    per_worker: vec![9],
                }],
                dns: vec![
                    pb::ReasonCount { reason: "untrusted_server".into(), count: 2 },
                    pb::ReasonCount { reason: "fqdn_table_entries".into(), count: 7 },
                ],
                ..Default::default()
            },
            handshake_ns: vec![(3_000, 2), (40_000, 1)],
            status: store.status(),
            apply_us: store.compile_histogram(),
        }
    }

    #[test]
    fn a_scrape_names_drops_by_reason_and_follows_the_conventions() {
        let text = render(scrape());
        for line in [
            "igw_drops_total{worker=\"0\",direction=\"from_outside\",reason=\"no_match\"} 3",
            "igw_events_total{worker=\"0\",direction=\"from_outside\",event=\"rst_sent\"} 2",
            "igw_port_rx_packets_total{port=\"inside\",device=\"net_null0\"} 5",
            "igw_flows_active{worker=\"0\"} 4",
            "igw_worker_cpu_seconds_total{worker=\"0\"} 2.5",
            "igw_rule_hits_total{ruleset=\"web\",direction=\"incoming\",rule=\"http\",action=\"allow\",observe=\"false\"} 9",
            "igw_config_state{state=\"no_config_fail_closed\"} 1",
            "igw_tcp_handshake_seconds_count 3",
            "igw_dns_total{counter=\"untrusted_server\"} 2",
            "igw_fqdn_table_entries 7",
            "# TYPE igw_drops counter",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("reason=\"note."), "notes are not drops:\n{text}");
        // 3 µs twice, 40 µs once: two at or below 5 µs, all three at or below 50 µs
        let bucket = |le: &str| {
            text.lines().find(|l| l.contains("handshake_seconds_bucket") && l.contains(le)).map(str::to_owned)
        };
        assert!(bucket("le=\"5.0e-6\"").or(bucket("le=\"0.000005\"")).is_some_and(|l| l.ends_with(" 2")), "{text}");
    }
}
