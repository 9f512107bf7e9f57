//! DNS events: one per DNS response a worker saw for a local PU, carried in
//! the same per-worker queue as flow records.
//!
//! A DNS record is longer than a flow record's slot (a query name alone may
//! be 255 bytes), so it takes several consecutive slots: the first slot's
//! second word starts with [`KIND_DNS`] and the number of slots; the producer
//! reserves them all or drops the record (counted like a lost flow record),
//! and the consumer frees them together.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::{Consumer, FlowRecord, Producer, Slot, WORDS};
use crate::dns::WireName;

/// The first byte of a DNS record's second word (flow records use their
/// `EventKind`, 0-2, there).
pub const KIND_DNS: u8 = 0xd5;
/// Addresses a record carries; more are counted in `more_answers`.
pub const MAX_ANSWERS: usize = 8;
/// Bytes of names a record carries: the query name and the CNAME chain, in
/// uncompressed wire form.
pub const MAX_NAMES: usize = 512;
const SLOT_BYTES: usize = WORDS * 8;
/// Longest encoding: fixed part, answers, names.
const MAX_BYTES: usize = FIXED + MAX_ANSWERS * ANSWER + MAX_NAMES;
const FIXED: usize = 96;
const ANSWER: usize = 24;
/// Slots a record may take.
pub const MAX_SLOTS: usize = MAX_BYTES.div_ceil(SLOT_BYTES);

/// One address answer on the chain from the question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DnsAnswer {
    /// IPv4-mapped for A records.
    pub addr: [u8; 16],
    pub v6: bool,
    pub ttl: u32,
}

impl DnsAnswer {
    pub fn ip(&self) -> IpAddr {
        let a = std::net::Ipv6Addr::from(self.addr);
        match (self.v6, a.to_ipv4_mapped()) {
            (false, Some(v4)) => IpAddr::V4(v4),
            _ => IpAddr::V6(a),
        }
    }
}

/// One DNS response, as a worker produces it (no strings; `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsRecord {
    /// Unix time in nanoseconds.
    pub time: u64,
    /// The local PU that asked (index in the snapshot of `generation`).
    pub pu: u32,
    pub generation: u32,
    /// The PU's address and port, the server's (IPv4-mapped when `family` is 4).
    pub client: [u8; 16],
    pub server: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub family: u8,
    /// 17 (UDP) or 6 (TCP).
    pub proto: u8,
    pub id: u16,
    /// The header's flags word (QR, opcode, AA, TC, RD, RA, rcode).
    pub flags: u16,
    pub qtype: u16,
    pub qclass: u16,
    /// From the query seen going out to this response, if the query was seen.
    pub latency_ns: Option<u64>,
    /// Addresses on the chain beyond [`MAX_ANSWERS`], and answers for names
    /// not on the chain (not believed, not learned).
    pub more_answers: u8,
    pub off_chain: u8,
    /// Addresses learned for FQDN external networks from this response.
    pub learned: u8,
    pub n_answers: u8,
    pub answers: [DnsAnswer; MAX_ANSWERS],
    /// The CNAMEs on the chain, each with its TTL (names in `names` after
    /// the query name).
    pub n_cnames: u8,
    pub cname_ttls: [u32; MAX_ANSWERS],
    pub(crate) names_len: u16,
    pub(crate) names: [u8; MAX_NAMES],
}

impl Default for DnsRecord {
    fn default() -> Self {
        DnsRecord {
            time: 0,
            pu: u32::MAX,
            generation: 0,
            client: [0; 16],
            server: [0; 16],
            client_port: 0,
            server_port: 0,
            family: 4,
            proto: 17,
            id: 0,
            flags: 0,
            qtype: 0,
            qclass: 0,
            latency_ns: None,
            more_answers: 0,
            off_chain: 0,
            learned: 0,
            n_answers: 0,
            answers: [DnsAnswer::default(); MAX_ANSWERS],
            n_cnames: 0,
            cname_ttls: [0; MAX_ANSWERS],
            names_len: 0,
            names: [0; MAX_NAMES],
        }
    }
}

impl DnsRecord {
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    /// Sets the query name (the first name); clears the CNAMEs.
    pub fn set_qname(&mut self, n: &WireName) {
        let b = n.as_bytes();
        self.names[..b.len()].copy_from_slice(b);
        self.names_len = b.len() as u16;
        self.n_cnames = 0;
    }

    /// Appends a CNAME target; `false` (nothing added) when the names area
    /// or the CNAME slots are full.
    pub fn push_cname(&mut self, n: &WireName, ttl: u32) -> bool {
        let b = n.as_bytes();
        let at = usize::from(self.names_len);
        if usize::from(self.n_cnames) >= MAX_ANSWERS || at + b.len() > MAX_NAMES {
            return false;
        }
        self.names[at..at + b.len()].copy_from_slice(b);
        self.names_len += b.len() as u16;
        self.cname_ttls[usize::from(self.n_cnames)] = ttl;
        self.n_cnames += 1;
        true
    }

    /// Appends an address; counts it in `more_answers` when full.
    pub fn push_answer(&mut self, a: DnsAnswer) {
        if usize::from(self.n_answers) < MAX_ANSWERS {
            self.answers[usize::from(self.n_answers)] = a;
            self.n_answers += 1;
        } else {
            self.more_answers = self.more_answers.saturating_add(1);
        }
    }

    /// The query name, then the CNAME targets in chain order.
    pub fn names(&self) -> impl Iterator<Item = WireName> + '_ {
        let b = &self.names[..usize::from(self.names_len).min(MAX_NAMES)];
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            let w = WireName::from_wire(b.get(pos..)?)?;
            pos += w.as_bytes().len();
            Some(w)
        })
    }

    pub fn qname(&self) -> WireName {
        self.names().next().unwrap_or_default()
    }

    pub fn answers(&self) -> &[DnsAnswer] {
        &self.answers[..usize::from(self.n_answers).min(MAX_ANSWERS)]
    }

    pub fn client_ip(&self) -> IpAddr {
        ip(self.client, self.family)
    }
    pub fn server_ip(&self) -> IpAddr {
        ip(self.server, self.family)
    }

    /// The bytes of the record; returns their length.
    fn encode(&self, out: &mut [u8; MAX_SLOTS * SLOT_BYTES]) -> usize {
        let mut w = Writer { out, at: 0 };
        w.put(&self.time.to_le_bytes());
        // the second word: KIND_DNS, slots (filled in below), small fields
        w.put(&[
            KIND_DNS,
            0,
            self.family,
            self.proto,
            self.n_answers,
            self.n_cnames,
            self.more_answers,
            self.off_chain,
        ]);
        w.put(&self.pu.to_le_bytes());
        w.put(&self.generation.to_le_bytes());
        w.put(&self.client);
        w.put(&self.server);
        for v in [self.client_port, self.server_port, self.id, self.flags, self.qtype, self.qclass, self.names_len] {
            w.put(&v.to_le_bytes());
        }
        w.put(&[self.learned, self.latency_ns.is_some() as u8]);
        w.put(&self.latency_ns.unwrap_or(0).to_le_bytes());
        w.at = FIXED;
        for a in self.answers() {
            w.put(&a.addr);
            w.put(&a.ttl.to_le_bytes());
            w.put(&[a.v6 as u8, 0, 0, 0]);
        }
        for t in &self.cname_ttls[..usize::from(self.n_cnames).min(MAX_ANSWERS)] {
            w.put(&t.to_le_bytes());
        }
        w.put(&self.names[..usize::from(self.names_len).min(MAX_NAMES)]);
        let len = w.at;
        out[9] = len.div_ceil(SLOT_BYTES) as u8;
        len
    }

    fn decode(b: &[u8]) -> DnsRecord {
        let mut r = Reader { b, at: 0 };
        let mut d = DnsRecord { time: r.u64(), ..DnsRecord::default() };
        let s: [u8; 8] = r.take();
        (d.family, d.proto, d.n_answers, d.n_cnames, d.more_answers, d.off_chain) =
            (s[2], s[3], s[4], s[5], s[6], s[7]);
        d.n_answers = d.n_answers.min(MAX_ANSWERS as u8);
        d.n_cnames = d.n_cnames.min(MAX_ANSWERS as u8);
        d.pu = r.u32();
        d.generation = r.u32();
        d.client = r.take();
        d.server = r.take();
        d.client_port = r.u16();
        d.server_port = r.u16();
        d.id = r.u16();
        d.flags = r.u16();
        d.qtype = r.u16();
        d.qclass = r.u16();
        d.names_len = r.u16().min(MAX_NAMES as u16);
        let [learned, has_latency]: [u8; 2] = r.take();
        d.learned = learned;
        let lat = r.u64();
        d.latency_ns = (has_latency != 0).then_some(lat);
        r.at = FIXED;
        for i in 0..usize::from(d.n_answers) {
            let addr = r.take();
            let ttl = r.u32();
            let [v6, _, _, _]: [u8; 4] = r.take();
            d.answers[i] = DnsAnswer { addr, v6: v6 != 0, ttl };
        }
        for i in 0..usize::from(d.n_cnames) {
            d.cname_ttls[i] = r.u32();
        }
        let n = usize::from(d.names_len);
        let names: [u8; MAX_NAMES] = r.take();
        d.names[..n].copy_from_slice(&names[..n]);
        d
    }
}

fn ip(a: [u8; 16], family: u8) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(a);
    match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    }
}

struct Writer<'a> {
    out: &'a mut [u8; MAX_SLOTS * SLOT_BYTES],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        let end = (self.at + b.len()).min(self.out.len());
        let n = end - self.at;
        self.out[self.at..end].copy_from_slice(&b[..n]);
        self.at = end;
    }
}

/// Reads past the end as zeros.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.b.get(self.at + i).copied().unwrap_or(0);
        }
        self.at += N;
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// What the queue carries.
// Handed by value to the consumer's closure, once: boxing the DNS record
// would allocate per record on the control thread for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Flow(FlowRecord),
    Dns(DnsRecord),
}

/// The number of slots of the DNS record starting in `slot`, `None` for a
/// flow record.
fn dns_slots(slot: &Slot) -> Option<usize> {
    let small = slot.0[1].load(Ordering::Relaxed).to_le_bytes();
    (small[0] == KIND_DNS).then(|| usize::from(small[1]).clamp(1, MAX_SLOTS))
}

impl Producer {
    /// Queues a DNS record in as many consecutive slots as it needs, all or
    /// nothing; a full queue drops it and counts it (`lost`), as for flow
    /// records.
    pub fn push_dns(&mut self, r: &DnsRecord) -> bool {
        let mut bytes = [0u8; MAX_SLOTS * SLOT_BYTES];
        let len = r.encode(&mut bytes);
        let n = len.div_ceil(SLOT_BYTES);
        let cap = self.q.mask + 1;
        if self.tail.wrapping_sub(self.head_cache) + n > cap {
            if !self.full {
                self.head_cache = self.q.head.0.load(Ordering::Acquire);
            }
            if self.tail.wrapping_sub(self.head_cache) + n > cap {
                self.full = true;
                self.lost += 1;
                return false;
            }
        }
        for (k, chunk) in bytes[..n * SLOT_BYTES].chunks_exact(SLOT_BYTES).enumerate() {
            let slot = &self.q.slots[self.tail.wrapping_add(k) & self.q.mask].0;
            for (a, w) in slot.iter().zip(chunk.chunks_exact(8)) {
                a.store(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])), Ordering::Relaxed);
            }
        }
        self.tail = self.tail.wrapping_add(n);
        if self.tail.wrapping_sub(self.published) >= super::PUBLISH_EVERY {
            self.publish();
        }
        true
    }
}

impl Consumer {
    /// Takes up to `max` queued records of either kind, oldest first, handing
    /// each to `f`; returns how many. One look at the producer's tail and one
    /// release of the slots for the lot.
    pub fn pop_events(&mut self, max: usize, mut f: impl FnMut(Event)) -> usize {
        let head = self.q.head.0.load(Ordering::Relaxed);
        let tail = self.q.tail.0.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(head);
        let (mut at, mut n) = (0usize, 0usize);
        while at < avail && n < max {
            let first = &self.q.slots[head.wrapping_add(at) & self.q.mask];
            let k = dns_slots(first).unwrap_or(1);
            if dns_slots(first).is_none() {
                f(Event::Flow(FlowRecord::decode(&first.read())));
            } else {
                let mut bytes = [0u8; MAX_SLOTS * SLOT_BYTES];
                for j in 0..k.min(avail - at) {
                    let w = self.q.slots[head.wrapping_add(at + j) & self.q.mask].read();
                    for (i, v) in w.iter().enumerate() {
                        bytes[j * SLOT_BYTES + i * 8..j * SLOT_BYTES + i * 8 + 8].copy_from_slice(&v.to_le_bytes());
                    }
                }
                f(Event::Dns(DnsRecord::decode(&bytes)));
            }
            at += k;
            n += 1;
        }
        if at > 0 {
            self.q.head.0.store(head.wrapping_add(at.min(avail)), Ordering::Release);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{channel, EventKind};
    use crate::flow::FlowKey;
    use crate::Side;

    fn dns(i: u64) -> DnsRecord {
        let mut r =
            DnsRecord { time: i, pu: 3, generation: 9, family: 4, id: 0x1234, flags: 0x8183, ..Default::default() };
        r.client[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 1]);
        r.set_qname(&WireName::from_text("a.example.test").unwrap());
        assert!(r.push_cname(&WireName::from_text("api.example.test").unwrap(), 30));
        for k in 0..10u8 {
            r.push_answer(DnsAnswer { addr: [k; 16], v6: true, ttl: 60 });
        }
        r.latency_ns = Some(12345);
        r
    }

    #[test]
    fn dns_records_share_the_queue_with_flow_records_in_order() {
        let (mut p, mut c) = channel(16);
        let flow = FlowRecord::new(EventKind::Decision, 7, FlowKey::default(), Side::Inside, 1, 2);
        assert!(p.push(&flow));
        assert!(p.push_dns(&dns(1)));
        assert!(p.push(&flow));
        p.publish();
        let mut got = Vec::new();
        assert_eq!(c.pop_events(10, |e| got.push(e)), 3);
        assert_eq!(got, [Event::Flow(flow), Event::Dns(dns(1)), Event::Flow(flow)]);
        let d = dns(1);
        assert_eq!((d.n_answers, d.more_answers), (8, 2));
        let names: Vec<String> = d.names().map(|n| n.to_string()).collect();
        assert_eq!(names, ["a.example.test", "api.example.test"]);
        assert_eq!(d.client_ip().to_string(), "10.0.0.1");
        assert_eq!((d.rcode(), d.truncated()), (3, false));
        // room for one more DNS record, not two: all or nothing, counted
        let mut pushed = 0;
        while p.push_dns(&dns(2)) {
            pushed += 1;
        }
        assert!(pushed >= 1);
        p.publish();
        assert_eq!(c.lost(), 1);
        // a record that fits one slot exactly is still a DNS record
        let (mut p, mut c) = channel(16);
        let mut one = DnsRecord { time: 5, ..Default::default() };
        one.set_qname(&WireName::from_text("q.test").unwrap());
        one.push_answer(DnsAnswer { addr: [1; 16], v6: true, ttl: 1 });
        assert!(p.push_dns(&one));
        p.publish();
        let mut got = Vec::new();
        c.pop_events(10, |e| got.push(e));
        assert_eq!(got, [Event::Dns(one)]);
        let (mut p, mut c) = channel(16);
        assert!(p.push_dns(&dns(2)));
        p.publish();
        // flow consumers skip DNS records
        assert_eq!(c.pop_many(100, |_| panic!("only DNS records queued")), 0);
        assert!(c.is_empty());
    }
}
