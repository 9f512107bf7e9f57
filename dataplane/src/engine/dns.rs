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
use crate::dns::patterns::MAX_MATCH;
use crate::dns::{tcp_message, Message, RData};
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
}

/// One worker's DNS state: the queries seen going out.
pub(crate) struct DnsState {
    queries: Box<[Query]>,
}

impl Default for DnsState {
    fn default() -> Self {
        DnsState { queries: vec![Query::default(); QUERY_SLOTS].into_boxed_slice() }
    }
}

fn slot(client: u128, client_port: u16, id: u16) -> usize {
    let x = (client as u64) ^ ((client >> 64) as u64) ^ (u64::from(client_port) << 16) ^ u64::from(id);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize % QUERY_SLOTS
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
    /// Whether a forwarded frame's flow has port 53 at its remote end (the
    /// look ahead's key: `outside_port` is the remote port either way).
    #[inline(always)]
    pub(super) fn is_dns_port(port: u16) -> bool {
        port == DNS_PORT
    }

    /// A forwarded frame to or from port 53: a query to remember or a
    /// response to read. Never changes what happens to the frame.
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
        *q = Query { time: now.max(1), client, server, client_port: info.src_port, server_port: info.dst_port, id };
        c.add(DnsCount::Queries);
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
        let Some(bytes) = message_bytes(frame, info, &self.stats.dns) else { return };
        let m = match Message::parse(bytes) {
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
        let mut rec = DnsRecord {
            time: now,
            pu: pu.0,
            generation: cfg.generation(),
            client: client.to_be_bytes(),
            server: server.to_be_bytes(),
            client_port: info.dst_port,
            server_port: info.src_port,
            family,
            proto: info.proto,
            id: h.id,
            flags: h.flags,
            qtype: q.qtype,
            qclass: q.qclass,
            latency_ns: latency,
            ..DnsRecord::default()
        };
        let qname = q.name.to_wire();
        rec.set_qname(&qname);
        // Learn only from answers to queries this worker saw (a response
        // nobody asked for teaches nothing), with no error.
        let mut ids = [0u64; MAX_MATCH];
        let table = cfg.fqdn.as_deref();
        let n_ids = match table {
            Some(_) if h.rcode() == 0 && latency.is_some() => p.fqdn_patterns().matching(&qname, &mut ids),
            _ => 0,
        };
        if latency.is_none() {
            self.stats.dns.add(DnsCount::Unsolicited);
        }
        let (min_ttl, max_ttl) = p.fqdn_ttl_bounds();
        let c = &self.stats.dns;
        m.walk_chain(|r, on| {
            if !on {
                c.add(DnsCount::OffChain);
                rec.off_chain = rec.off_chain.saturating_add(1);
                return;
            }
            let (addr, v6) = match r.data {
                RData::Cname(t) => {
                    rec.push_cname(&t.to_wire(), r.ttl);
                    return;
                }
                RData::A(a) => ((0xffff_u128 << 32) | u128::from(u32::from_be_bytes(a)), false),
                RData::Aaaa(a) => (u128::from_be_bytes(a), true),
                RData::Other { .. } => return,
            };
            rec.push_answer(DnsAnswer { addr: addr.to_be_bytes(), v6, ttl: r.ttl });
            let Some(t) = table else { return };
            let ttl = r.ttl.clamp(min_ttl, max_ttl.max(min_ttl));
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
        });
        c.add(DnsCount::Responses);
        if let Some(ev) = self.events.as_mut() {
            if !ev.push_dns(&rec) {
                self.stats.dir(Side::Outside).note_count(Note::EventsLost).add(1);
            }
        }
    }
}
