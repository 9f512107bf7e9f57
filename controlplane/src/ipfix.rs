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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Whether `e`'s record goes by the IPv6 template.
fn is_v6(e: &FlowEvent) -> bool {
    e.source.ip.is_ipv6() || e.destination.ip.is_ipv6()
}

/// A string field's bytes as [`put_str`] writes it.
fn str_field_len(s: usize) -> usize {
    1 + s.min(254)
}

/// The length of `e`'s data record as [`put_record`] writes it (at most 3
/// bytes more when a string is cut inside a multi-byte character).
fn encoded_len(e: &FlowEvent) -> usize {
    let addrs = if is_v6(e) { 32 } else { 8 };
    let rule = match (&e.ruleset, &e.rule) {
        (Some(rs), Some(rule)) => rs.len() + 1 + rule.len(),
        _ => 0,
    };
    16 + addrs + 4 + 2 + 32 + 8 + str_field_len(rule) + str_field_len(e.reason.len())
}

/// Appends `e`'s data record (its start time in ms given) to `r`, with no
/// allocation; returns whether it is IPv6.
fn put_record(r: &mut Vec<u8>, e: &FlowEvent, start_ms: u64) -> bool {
    // A flow event's source is the connection's client, its destination the server.
    let (client, server) = (&e.source, &e.destination);
    let v6 = is_v6(e);
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
    // "ruleset/rule", written in place (short form, cut at 254 bytes as put_str does)
    match (&e.ruleset, &e.rule) {
        (Some(rs), Some(rule)) => {
            let at = r.len();
            r.push(0);
            let room = 254;
            for part in [rs.as_str(), "/", rule.as_str()] {
                let used = r.len() - at - 1;
                let mut end = part.len().min(room - used);
                while !part.is_char_boundary(end) {
                    end -= 1;
                }
                r.extend_from_slice(&part.as_bytes()[..end]);
            }
            r[at] = (r.len() - at - 1) as u8;
        }
        _ => r.push(0),
    }
    put_str(r, &e.reason);
    v6
}

/// One data record for `e` (its start time in ms given), and whether it is IPv6.
pub fn record(e: &FlowEvent, start_ms: u64) -> (bool, Vec<u8>) {
    let mut r = Vec::with_capacity(encoded_len(e));
    let v6 = put_record(&mut r, e, start_ms);
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
        self.header(&mut m, export_s, sets.len(), data_records);
        m.extend_from_slice(sets);
        m
    }

    /// Appends the header of a message whose sets take `sets_len` bytes and
    /// hold `data_records` records (the sets follow it).
    pub fn header(&mut self, m: &mut Vec<u8>, export_s: u32, sets_len: usize, data_records: u32) {
        m.extend_from_slice(&VERSION.to_be_bytes());
        m.extend_from_slice(&((16 + sets_len) as u16).to_be_bytes());
        m.extend_from_slice(&export_s.to_be_bytes());
        m.extend_from_slice(&self.sequence.to_be_bytes());
        m.extend_from_slice(&self.domain.to_be_bytes());
        self.sequence = self.sequence.wrapping_add(data_records);
    }
}

/// Frames records of one template into a data set.
#[cfg(test)]
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

/// Batches waiting for the exporter thread at most (the queue's bound in
/// events is `queue`; this only sizes the channel).
const MAX_BATCHES: usize = 4096;

/// The exporter: a queue and a thread; stopping drains what is queued.
pub struct Exporter {
    tx: Option<SyncSender<Vec<FlowEvent>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<ExportCounters>,
    pub collector: SocketAddr,
    /// Events queued and not yet taken by the thread, and the bound.
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl Exporter {
    pub fn start(cfg: &IpfixConfig) -> Result<Exporter, String> {
        let collector = cfg.address().map_err(|e| format!("ipfix.collector: {e}"))?;
        let bind: SocketAddr = if collector.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap_or(collector);
        let socket = UdpSocket::bind(bind).map_err(|e| format!("ipfix: cannot open a UDP socket: {e}"))?;
        socket.connect(collector).map_err(|e| format!("ipfix: cannot reach {collector}: {e}"))?;
        let _ = socket.set_write_timeout(Some(Duration::from_millis(100)));
        let (tx, rx) = sync_channel(MAX_BATCHES.min(cfg.queue));
        let counters = Arc::new(ExportCounters::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let (c, q) = (counters.clone(), queued.clone());
        let refresh = Duration::from_secs(cfg.template_refresh_s);
        let domain = cfg.observation_domain;
        let thread = std::thread::Builder::new()
            .name("ipfix".into())
            .spawn(move || export_loop(rx, socket, domain, refresh, &c, &q))
            .map_err(|e| format!("cannot start the IPFIX thread: {e}"))?;
        Ok(Exporter { tx: Some(tx), thread: Some(thread), counters, collector, queued, capacity: cfg.queue })
    }

    /// Queues copies of `events` without waiting; what does not fit is counted as dropped.
    pub fn offer(&self, events: &[FlowEvent]) {
        self.offer_owned(events.to_vec());
    }

    /// Queues `events` (moved: no copy) without waiting, as one batch; what
    /// does not fit in the queue is counted as dropped.
    pub fn offer_owned(&self, mut events: Vec<FlowEvent>) {
        let n = events.len();
        self.counters.offered.fetch_add(n as u64, Ordering::Relaxed);
        let Some(tx) = &self.tx else {
            self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return;
        };
        // Only this thread adds to `queued`: the room seen here can only grow.
        let room = self.capacity.saturating_sub(self.queued.load(Ordering::Acquire));
        if n > room {
            events.truncate(room);
            self.counters.dropped.fetch_add((n - room) as u64, Ordering::Relaxed);
        }
        let kept = events.len();
        if kept == 0 {
            return;
        }
        self.queued.fetch_add(kept, Ordering::AcqRel);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(events) {
            self.queued.fetch_sub(kept, Ordering::AcqRel);
            self.counters.dropped.fetch_add(kept as u64, Ordering::Relaxed);
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

/// The message being filled: one data set per template, written in place;
/// framed and sent as one datagram (one reused buffer, no allocation per
/// record or message).
struct Pending {
    /// Data set bodies: IPv4 records, IPv6 records.
    sets: [Vec<u8>; 2],
    records: u32,
    out: Vec<u8>,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            sets: [Vec::with_capacity(MAX_MESSAGE), Vec::with_capacity(MAX_MESSAGE)],
            records: 0,
            out: Vec::with_capacity(MAX_MESSAGE + 512),
        }
    }

    /// The message's length with one more record of `len` bytes in set `v6`.
    fn len_with(&self, v6: bool, len: usize) -> usize {
        let set = |i: usize, extra: usize| {
            let b = self.sets[i].len() + extra;
            if b == 0 {
                0
            } else {
                4 + b
            }
        };
        16 + set(0, if v6 { 0 } else { len }) + set(1, if v6 { len } else { 0 })
    }
}

fn export_loop(
    rx: Receiver<Vec<FlowEvent>>,
    socket: UdpSocket,
    domain: u32,
    refresh: Duration,
    c: &ExportCounters,
    queued: &AtomicUsize,
) {
    let mut builder = MessageBuilder::new(domain);
    let mut last_templates: Option<Instant> = None;
    let mut starts: HashMap<FlowId, u64> = HashMap::new();
    let mut p = Pending::new();
    let templates = template_set();
    let now_s = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
    let mut flush = |p: &mut Pending, with_templates: bool| {
        if p.records == 0 && !with_templates {
            return;
        }
        let Pending { sets, records, out } = p;
        out.clear();
        let body: usize = (if with_templates { templates.len() } else { 0 })
            + sets.iter().filter(|s| !s.is_empty()).map(|s| 4 + s.len()).sum::<usize>();
        builder.header(out, now_s(), body, *records);
        if with_templates {
            out.extend_from_slice(&templates);
        }
        for (i, set) in sets.iter_mut().enumerate() {
            if !set.is_empty() {
                out.extend_from_slice(&(if i == 0 { TEMPLATE_V4 } else { TEMPLATE_V6 }).to_be_bytes());
                out.extend_from_slice(&((4 + set.len()) as u16).to_be_bytes());
                out.extend_from_slice(set);
                set.clear();
            }
        }
        let n = std::mem::take(records);
        match socket.send(out) {
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
            flush(&mut p, true);
            last_templates = Some(Instant::now());
        }
        let batch = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(b) => b,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                flush(&mut p, false);
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                flush(&mut p, false);
                return;
            }
        };
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        for e in &batch {
            let id = flow_id(e);
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
            let v6 = is_v6(e);
            if p.len_with(v6, encoded_len(e)) > MAX_MESSAGE {
                flush(&mut p, false);
            }
            put_record(&mut p.sets[usize::from(v6)], e, start_ms);
            p.records += 1;
        }
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
    fn records_are_written_in_place_at_their_length() {
        let mut long = event("end", "allow", true);
        long.ruleset = Some("r".repeat(200));
        long.rule = Some("é".repeat(40));
        long.reason = "x".repeat(300);
        for e in [event("end", "allow", false), event("decision", "reject", true), long] {
            let (v6, r) = record(&e, 5);
            assert_eq!(v6, is_v6(&e));
            assert_eq!(record_len(&template_fields(v6), &r), r.len(), "the template walks it");
            assert!(encoded_len(&e) >= r.len() && encoded_len(&e) <= r.len() + 3);
        }
        // "ruleset/rule" cut at 254 bytes: 250 + "/" + 3 of "abcdef"
        let mut e = event("end", "allow", false);
        e.ruleset = Some("r".repeat(250));
        e.rule = Some("abcdef".into());
        let (_, r) = record(&e, 0);
        let rule_at = r.len() - (1 + "policy_allow".len()) - 255;
        assert_eq!(r[rule_at], 254);
        assert_eq!(&r[rule_at + 251..rule_at + 255], b"/abc");
        assert_eq!(encoded_len(&e), r.len());
    }

    /// A real socket: every record arrives in messages within the size
    /// bound, with sequence numbers that count the records before them.
    #[test]
    fn batches_are_sent_whole_in_bounded_messages() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let cfg = IpfixConfig {
            collector: format!("udp://{}", rx.local_addr().unwrap()),
            template_refresh_s: 60,
            observation_domain: 3,
            queue: 4096,
        };
        let x = Exporter::start(&cfg).unwrap();
        let n = 1000;
        let events: Vec<FlowEvent> = (0..n).map(|i| event("end", "allow", i % 3 == 0)).collect();
        x.offer_owned(events[..600].to_vec());
        x.offer(&events[600..]);
        let c = x.stop();
        assert_eq!((c.records_sent.load(Ordering::Relaxed), c.dropped.load(Ordering::Relaxed)), (n as u64, 0));
        let (mut got, mut buf) = (0u32, [0u8; 65536]);
        for i in 0..c.messages_sent.load(Ordering::Relaxed) {
            let len = rx.recv(&mut buf).unwrap();
            let m = &buf[..len];
            assert!(len <= MAX_MESSAGE, "message {i}: {len} bytes");
            assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), len);
            assert_eq!(u32::from_be_bytes(m[8..12].try_into().unwrap()), got, "sequence of message {i}");
            assert_eq!(u32::from_be_bytes(m[12..16].try_into().unwrap()), 3);
            let mut at = 16;
            while at < len {
                let (id, slen) =
                    (u16::from_be_bytes([m[at], m[at + 1]]), usize::from(u16::from_be_bytes([m[at + 2], m[at + 3]])));
                if id == TEMPLATE_V4 || id == TEMPLATE_V6 {
                    let fields = template_fields(id == TEMPLATE_V6);
                    let mut r = at + 4;
                    while r < at + slen {
                        r += record_len(&fields, &m[r..at + slen]);
                        got += 1;
                    }
                    assert_eq!(r, at + slen, "records fill their set");
                }
                at += slen;
            }
            assert_eq!(at, len);
        }
        assert_eq!(got, n as u32);
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
