//! IPFIX export of flow events (RFC 7011; docs/ipfix.md): `[ipfix]
//! collector = "udp://HOST:PORT"`.
//!
//! The control thread hands resolved flow events to [`Exporter::offer`],
//! which never blocks: a bounded queue feeds the exporter's own thread, and
//! what does not fit is counted as dropped (`gwctl`-visible and in the final
//! report), so a collector that is down or slow never stalls the gateway.
//! The thread packs records into messages that fit one UDP datagram, sends
//! the templates first, then again every `template_refresh_s` (collectors
//! restart; UDP has no session).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::flowlog::FlowEvent;
use dataplane::problem::{cut, ConfigProblem};

/// IANA's Private Enterprise Number for documentation (RFC 5612); the
/// enterprise elements below are ours under it. docs/ipfix.md.
pub const ENTERPRISE: u32 = 32473;
/// RFC 5103: reverse information elements are the forward ones under this PEN.
pub const REVERSE_PEN: u32 = 29305;
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
/// A message stays below this (a 1500-byte MTU less IP and UDP headers).
const MAX_MESSAGE: usize = 1400;
const VERSION: u16 = 10;
/// firewallEvent (IE 233) values.
pub const FW_CREATED: u8 = 1;
pub const FW_DELETED: u8 = 2;
pub const FW_DENIED: u8 = 3;
/// Flows whose start time is remembered for their end record.
const STARTS_KEPT: usize = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpfixConfig {
    /// `udp://HOST:PORT` of the collector.
    pub collector: String,
    /// Templates are sent again this often (seconds).
    #[serde(default = "default_refresh")]
    pub template_refresh_s: u64,
    /// The Observation Domain ID in every message header.
    #[serde(default = "default_domain")]
    pub observation_domain: u32,
    /// Flow events waiting for the exporter thread; beyond, they are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_refresh() -> u64 {
    60
}
fn default_domain() -> u32 {
    1
}
fn default_queue() -> usize {
    65536
}

impl IpfixConfig {
    pub fn address(&self) -> Result<SocketAddr, String> {
        let rest = self
            .collector
            .strip_prefix("udp://")
            .ok_or_else(|| format!("{:?} is not udp://HOST:PORT", cut(&self.collector, 64)))?;
        std::net::ToSocketAddrs::to_socket_addrs(rest)
            .map_err(|e| format!("{:?}: {e}", cut(rest, 64)))?
            .next()
            .ok_or_else(|| format!("{:?} resolves to no address", cut(rest, 64)))
    }

    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut errs = Vec::new();
        if let Err(e) = self.address() {
            errs.push(ConfigProblem::setting("ipfix.collector", e));
        }
        if !(1..=86_400).contains(&self.template_refresh_s) {
            errs.push(ConfigProblem::setting(
                "ipfix.template_refresh_s",
                format!("{} is not in 1..=86400", self.template_refresh_s),
            ));
        }
        if !(64..=1 << 24).contains(&self.queue) {
            errs.push(ConfigProblem::setting("ipfix.queue", format!("{} is not in 64..=16777216", self.queue)));
        }
        errs
    }
}

/// One field of a template: (element id, length, enterprise).
type Field = (u16, u16, Option<u32>);
const VARLEN: u16 = 0xffff;

/// The fields of the IPv4 (`v6 = false`) or IPv6 template, in record order.
pub fn template_fields(v6: bool) -> Vec<Field> {
    let (src, dst, alen) = if v6 { (27, 28, 16) } else { (8, 12, 4) };
    vec![
        (152, 8, None), // flowStartMilliseconds
        (153, 8, None), // flowEndMilliseconds
        (src, alen, None),
        (dst, alen, None),
        (7, 2, None),                  // sourceTransportPort (the client's)
        (11, 2, None),                 // destinationTransportPort (the server's)
        (4, 1, None),                  // protocolIdentifier
        (233, 1, None),                // firewallEvent
        (2, 8, None),                  // packetDeltaCount, client to server
        (1, 8, None),                  // octetDeltaCount, client to server
        (2, 8, Some(REVERSE_PEN)),     // reversePacketDeltaCount, server to client
        (1, 8, Some(REVERSE_PEN)),     // reverseOctetDeltaCount
        (1, 4, Some(ENTERPRISE)),      // the client's identity (0: none)
        (2, 4, Some(ENTERPRISE)),      // the server's identity (0: none)
        (3, VARLEN, Some(ENTERPRISE)), // "ruleset/rule" that decided (empty: none)
        (4, VARLEN, Some(ENTERPRISE)), // the reason (policy or drop reason name)
    ]
}

fn put_template(out: &mut Vec<u8>, id: u16, fields: &[Field]) {
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for &(ie, len, pen) in fields {
        match pen {
            Some(pen) => {
                out.extend_from_slice(&(ie | 0x8000).to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&pen.to_be_bytes());
            }
            None => {
                out.extend_from_slice(&ie.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
    }
}

/// The template set (set id 2) with both templates.
pub fn template_set() -> Vec<u8> {
    let mut body = Vec::new();
    put_template(&mut body, TEMPLATE_V4, &template_fields(false));
    put_template(&mut body, TEMPLATE_V6, &template_fields(true));
    let mut set = Vec::with_capacity(body.len() + 4);
    set.extend_from_slice(&2u16.to_be_bytes());
    set.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    set.extend_from_slice(&body);
    set
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Short form only: longer text is cut (at a character boundary).
    let mut end = s.len().min(254);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// One data record for `e` (its start time in ms given), and whether it is IPv6.
pub fn record(e: &FlowEvent, start_ms: u64) -> (bool, Vec<u8>) {
    // A flow event's source is the connection's client, its destination the server.
    let (client, server) = (&e.source, &e.destination);
    let v6 = client.ip.is_ipv6() || server.ip.is_ipv6();
    let mut r = Vec::with_capacity(96);
    let end_ms = e.time_ns / 1_000_000;
    r.extend_from_slice(&start_ms.min(end_ms).to_be_bytes());
    r.extend_from_slice(&end_ms.to_be_bytes());
    for ip in [client.ip, server.ip] {
        match (ip, v6) {
            (IpAddr::V4(a), false) => r.extend_from_slice(&a.octets()),
            (IpAddr::V4(a), true) => r.extend_from_slice(&a.to_ipv6_mapped().octets()),
            (IpAddr::V6(a), _) => r.extend_from_slice(&a.octets()),
        }
    }
    r.extend_from_slice(&client.port.to_be_bytes());
    r.extend_from_slice(&server.port.to_be_bytes());
    r.push(e.protocol);
    r.push(match (e.kind, e.action) {
        ("end", _) => FW_DELETED,
        (_, "allow") => FW_CREATED,
        _ => FW_DENIED,
    });
    for v in [e.packets[0], e.bytes[0], e.packets[1], e.bytes[1]] {
        r.extend_from_slice(&v.to_be_bytes());
    }
    r.extend_from_slice(&client.identity.unwrap_or(0).to_be_bytes());
    r.extend_from_slice(&server.identity.unwrap_or(0).to_be_bytes());
    let rule = match (&e.ruleset, &e.rule) {
        (Some(rs), Some(rule)) => format!("{rs}/{rule}"),
        _ => String::new(),
    };
    put_str(&mut r, &rule);
    put_str(&mut r, &e.reason);
    (v6, r)
}

/// Builds messages: header, optional template set, data sets.
pub struct MessageBuilder {
    domain: u32,
    sequence: u32,
}

impl MessageBuilder {
    pub fn new(domain: u32) -> MessageBuilder {
        MessageBuilder { domain, sequence: 0 }
    }

    /// A message of `sets` (already framed), exported at `export_s`. The
    /// sequence number counts data records sent before it (RFC 7011 3.1).
    pub fn message(&mut self, export_s: u32, sets: &[u8], data_records: u32) -> Vec<u8> {
        let mut m = Vec::with_capacity(16 + sets.len());
        m.extend_from_slice(&VERSION.to_be_bytes());
        m.extend_from_slice(&((16 + sets.len()) as u16).to_be_bytes());
        m.extend_from_slice(&export_s.to_be_bytes());
        m.extend_from_slice(&self.sequence.to_be_bytes());
        m.extend_from_slice(&self.domain.to_be_bytes());
        m.extend_from_slice(sets);
        self.sequence = self.sequence.wrapping_add(data_records);
        m
    }
}

/// Frames records of one template into a data set.
fn data_set(template: u16, records: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = 4 + records.iter().map(Vec::len).sum::<usize>();
    let mut s = Vec::with_capacity(len);
    s.extend_from_slice(&template.to_be_bytes());
    s.extend_from_slice(&(len as u16).to_be_bytes());
    for r in records {
        s.extend_from_slice(r);
    }
    s
}

/// Counters an operator reads (gatewayd's final report; the tests).
#[derive(Debug, Default)]
pub struct ExportCounters {
    pub offered: AtomicU64,
    /// Events the queue had no room for.
    pub dropped: AtomicU64,
    pub records_sent: AtomicU64,
    pub messages_sent: AtomicU64,
    /// Messages the socket refused (the collector's port unreachable, buffers full).
    pub send_errors: AtomicU64,
    /// The records those messages held.
    pub records_lost: AtomicU64,
}

/// The exporter: a queue and a thread; stopping drains what is queued.
pub struct Exporter {
    tx: Option<SyncSender<FlowEvent>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<ExportCounters>,
    pub collector: SocketAddr,
}

impl Exporter {
    pub fn start(cfg: &IpfixConfig) -> Result<Exporter, String> {
        let collector = cfg.address().map_err(|e| format!("ipfix.collector: {e}"))?;
        let bind: SocketAddr = if collector.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap_or(collector);
        let socket = UdpSocket::bind(bind).map_err(|e| format!("ipfix: cannot open a UDP socket: {e}"))?;
        socket.connect(collector).map_err(|e| format!("ipfix: cannot reach {collector}: {e}"))?;
        let _ = socket.set_write_timeout(Some(Duration::from_millis(100)));
        let (tx, rx) = sync_channel(cfg.queue);
        let counters = Arc::new(ExportCounters::default());
        let c = counters.clone();
        let refresh = Duration::from_secs(cfg.template_refresh_s);
        let domain = cfg.observation_domain;
        let thread = std::thread::Builder::new()
            .name("ipfix".into())
            .spawn(move || export_loop(rx, socket, domain, refresh, &c))
            .map_err(|e| format!("cannot start the IPFIX thread: {e}"))?;
        Ok(Exporter { tx: Some(tx), thread: Some(thread), counters, collector })
    }

    /// Queues `events` without waiting; what does not fit is counted as dropped.
    pub fn offer(&self, events: &[FlowEvent]) {
        let Some(tx) = &self.tx else { return };
        for e in events {
            self.counters.offered.fetch_add(1, Ordering::Relaxed);
            match tx.try_send(e.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Sends what is queued and stops the thread.
    pub fn stop(mut self) -> Arc<ExportCounters> {
        self.halt();
        self.counters.clone()
    }

    fn halt(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.halt();
    }
}

type FlowId = (IpAddr, u16, IpAddr, u16, u8);

fn flow_id(e: &FlowEvent) -> FlowId {
    (e.source.ip, e.source.port, e.destination.ip, e.destination.port, e.protocol)
}

fn export_loop(rx: Receiver<FlowEvent>, socket: UdpSocket, domain: u32, refresh: Duration, c: &ExportCounters) {
    let mut builder = MessageBuilder::new(domain);
    let mut last_templates: Option<Instant> = None;
    let mut starts: HashMap<FlowId, u64> = HashMap::new();
    let mut pending: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    let mut pending_len = 0usize;
    let templates = template_set();
    let now_s = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
    let mut flush = |pending: &mut [Vec<Vec<u8>>; 2], pending_len: &mut usize, with_templates: bool| {
        let mut sets = Vec::with_capacity(*pending_len + templates.len() + 8);
        if with_templates {
            sets.extend_from_slice(&templates);
        }
        let mut n = 0u32;
        for (i, recs) in pending.iter_mut().enumerate() {
            if !recs.is_empty() {
                sets.extend_from_slice(&data_set(if i == 0 { TEMPLATE_V4 } else { TEMPLATE_V6 }, recs));
                n += recs.len() as u32;
                recs.clear();
            }
        }
        *pending_len = 0;
        if sets.is_empty() {
            return;
        }
        let m = builder.message(now_s(), &sets, n);
        match socket.send(&m) {
            Ok(_) => {
                c.messages_sent.fetch_add(1, Ordering::Relaxed);
                c.records_sent.fetch_add(u64::from(n), Ordering::Relaxed);
            }
            Err(_) => {
                c.send_errors.fetch_add(1, Ordering::Relaxed);
                c.records_lost.fetch_add(u64::from(n), Ordering::Relaxed);
            }
        }
    };
    loop {
        let due = last_templates.is_none_or(|t| t.elapsed() >= refresh);
        if due {
            flush(&mut pending, &mut pending_len, true);
            last_templates = Some(Instant::now());
        }
        let e = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => e,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                flush(&mut pending, &mut pending_len, false);
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                flush(&mut pending, &mut pending_len, false);
                return;
            }
        };
        let id = flow_id(&e);
        let start_ms = match (e.kind, e.action) {
            ("end", _) => starts.remove(&id).unwrap_or(e.time_ns / 1_000_000),
            ("decision", "allow") => {
                if starts.len() < STARTS_KEPT {
                    starts.insert(id, e.time_ns / 1_000_000);
                }
                e.time_ns / 1_000_000
            }
            _ => e.time_ns / 1_000_000,
        };
        let (v6, r) = record(&e, start_ms);
        if 16 + 8 + pending_len + r.len() + 8 > MAX_MESSAGE {
            flush(&mut pending, &mut pending_len, false);
        }
        pending_len += r.len();
        pending[usize::from(v6)].push(r);
        // A full message leaves at once (above); a partial one when the
        // queue stays empty for the receive timeout.
    }
}

/// A TCP flow event from `client:cport` (a PU, identity 1001) to `server:8080`
/// (identity 2001), allowed by `frontend/web`, with 5/4 packets and 400/3000
/// bytes: what the exporter's tests and `examples/ipfix_bench` send.
pub fn synthetic_event(
    kind: &'static str,
    action: &'static str,
    client: (IpAddr, u16),
    server: IpAddr,
    time_ns: u64,
) -> FlowEvent {
    use crate::flowlog::Endpoint;
    let ep =
        |(ip, port): (IpAddr, u16), id, kind| Endpoint { ip, port, name: None, identity: Some(id), tags: vec![], kind };
    FlowEvent {
        time_ns,
        kind,
        protocol: 6,
        source: ep(client, 1001, "pu"),
        destination: ep((server, 8080), 2001, "identity"),
        action,
        observed_action: None,
        ruleset: Some("frontend".into()),
        rule: Some("web".into()),
        observed_ruleset: None,
        observed_rule: None,
        reason: "policy_allow".into(),
        drop_reason: None,
        note: None,
        policy_revision: None,
        packets: [5, 4],
        bytes: [400, 3000],
        worker: 0,
        generation: 1,
        remote_dns_name: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &'static str, action: &'static str, v6: bool) -> FlowEvent {
        let (cip, sip): (IpAddr, IpAddr) = if v6 {
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
        } else {
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap())
        };
        synthetic_event(kind, action, (cip, 40000), sip, 1_700_000_000_123_000_000)
    }

    /// Walks a template's fields over a record: the record's length.
    fn record_len(fields: &[Field], r: &[u8]) -> usize {
        let mut at = 0;
        for &(_, len, _) in fields {
            at += if len == VARLEN { 1 + usize::from(r[at]) } else { usize::from(len) };
        }
        at
    }

    #[test]
    fn records_follow_their_templates() {
        for v6 in [false, true] {
            let (is_v6, r) = record(&event("end", "allow", v6), 1_700_000_000_000);
            assert_eq!(is_v6, v6);
            assert_eq!(record_len(&template_fields(v6), &r), r.len());
            let end_ms = u64::from_be_bytes(r[8..16].try_into().unwrap());
            assert_eq!(end_ms, 1_700_000_000_123);
            let a = if v6 { 16 } else { 4 };
            let after_addrs = 16 + 2 * a;
            assert_eq!(&r[after_addrs..after_addrs + 4], &[0x9c, 0x40, 0x1f, 0x90], "ports 40000, 8080");
            assert_eq!((r[after_addrs + 4], r[after_addrs + 5]), (6, FW_DELETED));
            let counts = &r[after_addrs + 6..after_addrs + 38];
            let n = |i: usize| u64::from_be_bytes(counts[i * 8..i * 8 + 8].try_into().unwrap());
            assert_eq!((n(0), n(1), n(2), n(3)), (5, 400, 4, 3000));
            assert!(r.ends_with(b"\x0cpolicy_allow"));
        }
        assert_eq!(record(&event("decision", "reject", false), 0).1[29], FW_DENIED);
    }

    #[test]
    fn a_message_is_version_10_with_its_length_and_sequence() {
        let mut b = MessageBuilder::new(7);
        let sets = template_set();
        let m = b.message(1000, &sets, 0);
        assert_eq!(&m[..2], &[0, 10]);
        assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), m.len());
        assert_eq!(u32::from_be_bytes(m[12..16].try_into().unwrap()), 7);
        let (_, r) = record(&event("end", "allow", false), 0);
        let _ = b.message(1001, &data_set(TEMPLATE_V4, &[r.clone(), r]), 2);
        let m = b.message(1002, &[], 0);
        assert_eq!(u32::from_be_bytes(m[8..12].try_into().unwrap()), 2, "sequence counts data records sent before");
        // the template set: id 2, two templates with 16 fields each
        assert_eq!(&sets[..2], &[0, 2]);
        assert_eq!(u16::from_be_bytes([sets[4], sets[5]]), TEMPLATE_V4);
        assert_eq!(u16::from_be_bytes([sets[6], sets[7]]), 16);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // a collector nobody listens on: sends fail or vanish, offer never blocks
        let cfg = IpfixConfig {
            collector: "udp://127.0.0.1:9".into(),
            template_refresh_s: 60,
            observation_domain: 1,
            queue: 64,
        };
        let x = Exporter::start(&cfg).unwrap();
        let events: Vec<FlowEvent> = (0..10_000).map(|_| event("end", "allow", false)).collect();
        let t0 = Instant::now();
        x.offer(&events);
        assert!(t0.elapsed() < Duration::from_secs(2));
        let c = x.stop();
        let offered = c.offered.load(Ordering::Relaxed);
        let dropped = c.dropped.load(Ordering::Relaxed);
        let sent = c.records_sent.load(Ordering::Relaxed);
        let lost = c.records_lost.load(Ordering::Relaxed);
        assert_eq!(offered, 10_000);
        assert!(dropped > 0, "a 64-slot queue cannot take 10000 at once");
        assert_eq!(sent + lost + dropped, offered, "every event sent, lost in a refused message, or dropped");
    }
}
