//! DNS in the worker: queries going out are remembered (for latency and to
//! know which responses were asked for); each response from a trusted server
//! to a local PU is parsed without allocation, becomes a DNS event, and
//! teaches the shared learned table the addresses of names that FQDN
//! patterns match. The frame itself is forwarded as the policy decided
//! (nothing here changes an action).
//!
//! Only frames the policy forwards get here, and only those with port 53 at
//! the remote end, so the established path pays one comparison.
//!
//! The learned entries are stored before this returns, i.e. before the
//! worker transmits the answer: see [`crate::dns::learned`] for why no
//! connection to a learned address can be decided before its entry is
//! visible to every worker.

use super::{Engine, EngineConfig};
use crate::dns::counters::{DnsCount, DnsCounters};
use crate::dns::learned::Learn;
use crate::dns::message::HEADER_LEN;
use crate::dns::patterns::MAX_MATCH;
use crate::dns::{tcp_message, Message, Name, RData};
use crate::events::dns::MAX_ANSWERS;
use crate::events::{DnsAnswer, DnsRecord};
use crate::stats::Note;
use crate::wire::{parse_frame, Addr, FrameInfo, L4Kind};
use crate::Side;

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// Queries remembered per worker (direct-mapped; a reused slot is counted).
pub const QUERY_SLOTS: usize = 1024;
/// A remembered query older than this is not matched (seconds).
const QUERY_MAX_AGE_NS: u64 = 30_000_000_000;
const NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct Query {
    /// Unix ns when seen; 0: free.
    time: u64,
    client: u128,
    server: u128,
    client_port: u16,
    server_port: u16,
    id: u16,
    /// Over TCP: the query segment's acknowledgement number, i.e. the
    /// sequence number the server's response starts at.
    tcp: Option<u32>,
}

/// One worker's DNS state: the queries seen going out, and the event record
/// each response is read into (reused: an 830-byte record is not cleared
/// and built anew per response).
pub(crate) struct DnsState {
    queries: Box<[Query]>,
    rec: Box<DnsRecord>,
    /// The worker's clock (Unix ns, the time base of `now`), to measure
    /// each learning answer's hold; none in tests and benches.
    clock: Option<DnsClock>,
}

/// A clock in Unix ns on the time base of the `now` the engine is given.
pub type DnsClock = Box<dyn Fn() -> u64 + Send>;

impl Default for DnsState {
    fn default() -> Self {
        DnsState {
            queries: vec![Query::default(); QUERY_SLOTS].into_boxed_slice(),
            rec: Box::new(DnsRecord::default()),
            clock: None,
        }
    }
}

fn slot(client: u128, client_port: u16, id: u16) -> usize {
    let x = (client as u64) ^ ((client >> 64) as u64) ^ (u64::from(client_port) << 16) ^ u64::from(id);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize % QUERY_SLOTS
}

/// An IPv4 address as the IPv4-mapped IPv6 address events and the learned
/// table key it by.
fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10..12].copy_from_slice(&[0xff, 0xff]);
    m[12..].copy_from_slice(&a);
    m
}

fn addr128(a: Addr) -> Option<(u128, u8)> {
    match a {
        Addr::V4(b) => Some(((0xffff_u128 << 32) | u128::from(u32::from_be_bytes(b)), 4)),
        Addr::V6(b) => Some((u128::from_be_bytes(b), 6)),
        Addr::None => None,
    }
}

/// The DNS message a frame carries (UDP payload, or one whole message in a
/// TCP segment), if any.
fn message_bytes<'a>(frame: &'a [u8], info: &FrameInfo, c: &DnsCounters) -> Option<&'a [u8]> {
    let off = usize::from(info.payload_offset);
    let payload = frame.get(off..off + usize::from(info.payload_len))?;
    match info.l4 {
        L4Kind::Udp => Some(payload),
        L4Kind::Tcp if payload.is_empty() => None,
        L4Kind::Tcp => match tcp_message(payload) {
            Ok(m) => Some(m),
            Err(_) => {
                c.add(DnsCount::TcpIncomplete);
                None
            }
        },
        _ => None,
    }
}

impl Engine {
    /// Sets the clock the hold of each learning answer is measured with
    /// (`DnsCounters::hold`): read once per answer that learned, after its
    /// entries are published, against the `now` its frame was processed
    /// with (the worker's timestamp of the round of bursts).
    pub fn set_dns_clock(&mut self, clock: DnsClock) {
        self.dns.clock = Some(clock);
    }

    /// Whether a forwarded frame's flow has port 53 at its remote end (the
    /// look ahead's key: `outside_port` is the remote port either way).
    #[inline(always)]
    pub(super) fn is_dns_port(port: u16) -> bool {
        port == DNS_PORT
    }

    /// A forwarded frame to or from port 53: a query to remember or a
    /// response to read. Never changes what happens to the frame. The frame
    /// is parsed here, after the policy's path: the fast path has only its
    /// flow key, and the full path may have rewritten the frame.
    #[cold]
    #[inline(never)]
    pub(super) fn dns_seen(&mut self, cfg: &EngineConfig, side: Side, frame: &[u8], now: u64) {
        let Ok(info) = parse_frame(frame) else { return };
        if info.fragment || !matches!(info.l4, L4Kind::Udp | L4Kind::Tcp) {
            return;
        }
        match side {
            Side::Inside if info.dst_port == DNS_PORT => self.dns_query(frame, &info, now),
            Side::Outside if info.src_port == DNS_PORT => self.dns_response(cfg, frame, &info, now),
            _ => {}
        }
    }

    fn dns_query(&mut self, frame: &[u8], info: &FrameInfo, now: u64) {
        let c = &self.stats.dns;
        let Some(m) = message_bytes(frame, info, c) else { return };
        // A query: a header with QR clear. Its question is not read here.
        let (Some(&[i0, i1]), Some(&f)) = (m.get(0..2), m.get(2)) else { return };
        if m.len() < 12 || f & 0x80 != 0 {
            return;
        }
        let (Some((client, _)), Some((server, _))) = (addr128(info.src), addr128(info.dst)) else { return };
        let id = u16::from_be_bytes([i0, i1]);
        let q = &mut self.dns.queries[slot(client, info.src_port, id)];
        if q.time != 0 && now.saturating_sub(q.time) < QUERY_MAX_AGE_NS {
            c.add(DnsCount::QueryOverwritten);
        }
        let tcp = (info.l4 == L4Kind::Tcp).then_some(info.ack);
        *q =
            Query { time: now.max(1), client, server, client_port: info.src_port, server_port: info.dst_port, id, tcp };
        c.add(DnsCount::Queries);
    }

    /// Whether a TCP segment from a server starts the response to a query
    /// seen on its connection: the query's id (read past the 2-byte length)
    /// and the segment's sequence number where the query's acknowledgement
    /// said the server's next byte is. A segment continuing a message split
    /// over several (or anything unasked) is not, and is never read as one.
    fn dns_tcp_starts_response(&self, client: u128, server: u128, info: &FrameInfo, payload: &[u8]) -> bool {
        let Some(&[i0, i1]) = payload.get(2..4) else { return false };
        let id = u16::from_be_bytes([i0, i1]);
        let q = &self.dns.queries[slot(client, info.dst_port, id)];
        q.time != 0
            && (q.client, q.server, q.client_port, q.server_port, q.id)
                == (client, server, info.dst_port, info.src_port, id)
            && q.tcp == Some(info.seq)
    }

    /// The query this response answers, if it was seen (and forgets it).
    fn dns_match(&mut self, client: u128, server: u128, info: &FrameInfo, id: u16, now: u64) -> Option<u64> {
        let q = &mut self.dns.queries[slot(client, info.dst_port, id)];
        let hit = q.time != 0
            && (q.client, q.server, q.client_port, q.server_port, q.id)
                == (client, server, info.dst_port, info.src_port, id)
            && now.saturating_sub(q.time) < QUERY_MAX_AGE_NS;
        if !hit {
            return None;
        }
        let t = q.time;
        q.time = 0;
        Some(now.saturating_sub(t))
    }

    fn dns_response(&mut self, cfg: &EngineConfig, frame: &[u8], info: &FrameInfo, now: u64) {
        let p = &cfg.policy;
        let (Some((server, family)), Some((client, _))) = (addr128(info.src), addr128(info.dst)) else { return };
        let ip = |a: Addr| match a {
            Addr::V4(b) => std::net::IpAddr::from(b),
            Addr::V6(b) => std::net::IpAddr::from(b),
            Addr::None => std::net::IpAddr::from([0u8; 4]),
        };
        if !p.dns_server_trusted(ip(info.src)) {
            self.stats.dns.add(DnsCount::Untrusted);
            return;
        }
        let Some(pu) = p.pu_by_address(ip(info.dst)) else {
            self.stats.dns.add(DnsCount::NotLocal);
            return;
        };
        if info.l4 == L4Kind::Tcp {
            let off = usize::from(info.payload_offset);
            let payload = frame.get(off..off + usize::from(info.payload_len)).unwrap_or(&[]);
            if payload.is_empty() {
                return;
            }
            if !self.dns_tcp_starts_response(client, server, info, payload) {
                self.stats.dns.add(DnsCount::TcpNotStart);
                return;
            }
        }
        let Some(bytes) = message_bytes(frame, info, &self.stats.dns) else { return };
        // One walk of the message validates it and fills the event as it
        // goes; nothing is learned (nor logged) unless the whole message
        // is good.
        let rec = &mut *self.dns.rec;
        rec.clear_lists();
        // The query name first (the CNAMEs follow it in the names area);
        // read before the message is validated, which is safe (every name
        // walk is bounded) and moot if the message is refused.
        rec.set_qname_from(&Name::new(bytes, HEADER_LEN));
        let parsed = Message::parse_walk(bytes, |r, on| {
            if !on {
                rec.off_chain = rec.off_chain.saturating_add(1);
                return;
            }
            match r.data {
                RData::Cname(t) => {
                    rec.push_cname_from(&t, r.ttl);
                }
                RData::A(a) => rec.push_answer(DnsAnswer { addr: v4_mapped(a), v6: false, ttl: r.ttl }),
                RData::Aaaa(a) => rec.push_answer(DnsAnswer { addr: a, v6: true, ttl: r.ttl }),
                RData::Other { .. } => {}
            }
        });
        let m = match parsed {
            Ok(m) => m,
            Err(e) => {
                self.stats.dns.error(e);
                return;
            }
        };
        let h = m.header();
        if !h.is_response() {
            self.stats.dns.add(DnsCount::NotResponse);
            return;
        }
        let latency = self.dns_match(client, server, info, h.id, now);
        let q = m.question();
        let rec = &mut *self.dns.rec;
        (rec.time, rec.pu, rec.generation) = (now, pu.0, cfg.generation());
        (rec.client, rec.server) = (client.to_be_bytes(), server.to_be_bytes());
        (rec.client_port, rec.server_port, rec.family, rec.proto) = (info.dst_port, info.src_port, family, info.proto);
        (rec.id, rec.flags, rec.qtype, rec.qclass, rec.latency_ns) = (h.id, h.flags, q.qtype, q.qclass, latency);
        let c = &self.stats.dns;
        c.add_n(DnsCount::OffChain, u64::from(rec.off_chain));
        if latency.is_none() {
            c.add(DnsCount::Unsolicited);
        }
        // Learn only from answers to queries this worker saw (a response
        // nobody asked for teaches nothing), with no error: the addresses
        // the event carries (the first MAX_ANSWERS on the chain).
        let mut ids = [0u64; MAX_MATCH];
        let table = cfg.fqdn.as_deref().filter(|_| h.rcode() == 0 && latency.is_some());
        if let Some(t) = table {
            let n_ids = p.fqdn_patterns().matching(rec.qname_wire(), &mut ids);
            let (min_ttl, max_ttl) = p.fqdn_ttl_bounds();
            for a in rec.answers[..usize::from(rec.n_answers).min(MAX_ANSWERS)].iter() {
                let ttl = a.ttl.clamp(min_ttl, max_ttl.max(min_ttl));
                let addr = u128::from_be_bytes(a.addr);
                for &id in &ids[..n_ids] {
                    match t.learn(addr, id, now.saturating_add(u64::from(ttl) * NS), now) {
                        Learn::New => {
                            c.add(DnsCount::Learned);
                            rec.learned = rec.learned.saturating_add(1);
                        }
                        Learn::Refreshed => c.add(DnsCount::Refreshed),
                        Learn::Full => c.add(DnsCount::LearnFull),
                    }
                }
            }
            // Every entry is published (release stores) by now: the hold
            // ends here, and the frame is transmitted after.
            if n_ids > 0 && rec.n_answers > 0 {
                if let Some(clock) = &self.dns.clock {
                    c.hold(clock().saturating_sub(now));
                }
            }
        }
        c.add(DnsCount::Responses);
        if let Some(ev) = self.events.as_mut() {
            if !ev.push_dns(rec) {
                self.stats.dir(Side::Outside).note_count(Note::EventsLost).add(1);
            }
        }
    }
}
