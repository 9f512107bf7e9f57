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
use crate::dns::{Name, WireName};

/// The first byte of a DNS record's second word (flow records use their
/// `EventKind`, 0-2, there).
pub const KIND_DNS: u8 = 0xd5;
/// Addresses a record carries; more are counted in `more_answers`.
pub const MAX_ANSWERS: usize = 8;
/// Bytes of names a record carries: the query name and the CNAME chain, in
/// uncompressed wire form; CNAMEs that do not fit are counted in
/// `more_cnames`.
pub const MAX_NAMES: usize = 512;
const SLOT_BYTES: usize = WORDS * 8;
/// The fixed part of the encoding (see [`DnsRecord::encode`]).
const FIXED: usize = 82;
/// Longest encoding: fixed part, answers (IPv6: TTL and 16 bytes), CNAME
/// TTLs, names.
const MAX_BYTES: usize = FIXED + MAX_ANSWERS * 20 + MAX_ANSWERS * 4 + MAX_NAMES;
/// Slots a record may take. A typical answer (one A record, a 20-byte name)
/// takes one.
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
    /// CNAMEs on the chain not carried (the names area or the CNAME slots
    /// were full).
    pub more_cnames: u8,
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
            more_cnames: 0,
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

    /// Empties the answers and names and zeroes their counts (a record
    /// reused for the next response; the arrays are not cleared, their
    /// lengths bound every read).
    pub fn clear_lists(&mut self) {
        (self.n_answers, self.more_answers, self.off_chain, self.learned) = (0, 0, 0, 0);
        (self.n_cnames, self.more_cnames, self.names_len) = (0, 0, 0);
    }

    /// Sets the query name (the first name); clears the CNAMEs.
    pub fn set_qname(&mut self, n: &WireName) {
        let b = n.as_bytes();
        self.names[..b.len()].copy_from_slice(b);
        self.names_len = b.len() as u16;
        (self.n_cnames, self.more_cnames) = (0, 0);
    }

    /// [`Self::set_qname`] from the name in its message.
    pub fn set_qname_from(&mut self, n: &Name<'_>) {
        self.names_len = n.write_wire(&mut self.names).unwrap_or(0) as u16;
        (self.n_cnames, self.more_cnames) = (0, 0);
    }

    /// The query name in wire form (what the FQDN patterns match).
    pub fn qname_wire(&self) -> &[u8] {
        let b = &self.names[..usize::from(self.names_len).min(MAX_NAMES)];
        let mut pos = 0usize;
        while let Some(&l) = b.get(pos) {
            pos += 1 + usize::from(l);
            if l == 0 {
                return &b[..pos];
            }
        }
        &[]
    }

    /// Appends a CNAME target; `false` (nothing added, counted in
    /// `more_cnames`) when the names area or the CNAME slots are full.
    pub fn push_cname(&mut self, n: &WireName, ttl: u32) -> bool {
        let b = n.as_bytes();
        let at = usize::from(self.names_len);
        if usize::from(self.n_cnames) >= MAX_ANSWERS || at + b.len() > MAX_NAMES {
            self.more_cnames = self.more_cnames.saturating_add(1);
            return false;
        }
        self.names[at..at + b.len()].copy_from_slice(b);
        self.names_len += b.len() as u16;
        self.cname_ttls[usize::from(self.n_cnames)] = ttl;
        self.n_cnames += 1;
        true
    }

    /// [`Self::push_cname`] from the name in its message, written in place.
    pub fn push_cname_from(&mut self, n: &Name<'_>, ttl: u32) -> bool {
        let at = usize::from(self.names_len).min(MAX_NAMES);
        let written = match usize::from(self.n_cnames) < MAX_ANSWERS {
            true => n.write_wire(&mut self.names[at..]),
            false => None,
        };
        let Some(len) = written else {
            self.more_cnames = self.more_cnames.saturating_add(1);
            return false;
        };
        self.names_len += len as u16;
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

    /// The length of the encoding.
    fn encoded_len(&self) -> usize {
        let answers: usize = self.answers().iter().map(|a| if a.v6 { 20 } else { 8 }).sum();
        FIXED + answers + 4 * usize::from(self.n_cnames).min(MAX_ANSWERS) + usize::from(self.names_len).min(MAX_NAMES)
    }

    /// Writes the record, `slots` slots long:
    ///
    /// ```text
    ///  0 time                      8 KIND_DNS slots family proto n_answers n_cnames more_answers off_chain
    /// 16 pu generation            24 client (16)  40 server (16)
    /// 56 client_port server_port id flags qtype qclass names_len (u16 each)
    /// 70 learned has_latency      72 latency_ns   80 v6 mask (bit i: answer i is AAAA) more_cnames
    /// 82 answers: TTL (4) then the address (4, or 16 for AAAA) each; CNAME TTLs (4 each); names
    /// ```
    ///
    /// An A answer takes 8 bytes, so a typical answer fits one 128-byte slot.
    fn encode(&self, w: &mut impl Put, slots: u8) {
        w.put(&self.time.to_le_bytes());
        w.put(&[
            KIND_DNS,
            slots,
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
        let v6_mask = self.answers().iter().enumerate().fold(0u8, |m, (i, a)| m | (u8::from(a.v6) << i));
        w.put(&[v6_mask, self.more_cnames]);
        for a in self.answers() {
            w.put(&a.ttl.to_le_bytes());
            w.put(if a.v6 { &a.addr } else { &a.addr[12..] });
        }
        for t in &self.cname_ttls[..usize::from(self.n_cnames).min(MAX_ANSWERS)] {
            w.put(&t.to_le_bytes());
        }
        w.put(&self.names[..usize::from(self.names_len).min(MAX_NAMES)]);
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
        let [v6_mask, more_cnames]: [u8; 2] = r.take();
        d.more_cnames = more_cnames;
        for i in 0..usize::from(d.n_answers) {
            let ttl = r.u32();
            let v6 = v6_mask & (1 << i) != 0;
            let addr = if v6 {
                r.take()
            } else {
                let mut a = [0u8; 16];
                a[10..12].copy_from_slice(&[0xff, 0xff]);
                a[12..].copy_from_slice(&r.take::<4>());
                a
            };
            d.answers[i] = DnsAnswer { addr, v6, ttl };
        }
        for i in 0..usize::from(d.n_cnames) {
            d.cname_ttls[i] = r.u32();
        }
        let n = usize::from(d.names_len);
        let names = r.b.get(r.at..r.at + n).unwrap_or(&[]);
        d.names[..names.len()].copy_from_slice(names);
        d.names_len = names.len() as u16;
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

/// Where [`DnsRecord::encode`] writes.
trait Put {
    fn put(&mut self, b: &[u8]);
}

/// Writes an encoding straight into the queue's slots, one 128-byte slot at
/// a time (no record-sized buffer to clear and copy); writes past `slots`
/// slots are dropped (the length was computed from the same fields).
struct SlotWriter<'a> {
    q: &'a super::Shared,
    first: usize,
    slots: usize,
    k: usize,
    at: usize,
    buf: [u8; SLOT_BYTES],
}

impl SlotWriter<'_> {
    fn flush(&mut self) {
        if self.k < self.slots {
            self.buf[self.at..].fill(0);
            let slot = &self.q.slots[self.first.wrapping_add(self.k) & self.q.mask].0;
            for (a, w) in slot.iter().zip(self.buf.chunks_exact(8)) {
                a.store(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])), Ordering::Relaxed);
            }
        }
        self.k += 1;
        self.at = 0;
    }
}

impl Put for SlotWriter<'_> {
    #[inline(always)]
    fn put(&mut self, mut b: &[u8]) {
        // Most puts are a few bytes of known size that fit the slot: one
        // copy the compiler sizes, no loop, no call to memcpy.
        if let Some(d) = self.buf.get_mut(self.at..self.at + b.len()) {
            d.copy_from_slice(b);
            self.at += b.len();
            if self.at == SLOT_BYTES {
                self.flush();
            }
            return;
        }
        while !b.is_empty() {
            let n = b.len().min(SLOT_BYTES - self.at);
            self.buf[self.at..self.at + n].copy_from_slice(&b[..n]);
            self.at += n;
            b = &b[n..];
            if self.at == SLOT_BYTES {
                self.flush();
            }
        }
    }
}

/// Reads past the end as zeros.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let out = match self.b.get(self.at..self.at + N) {
            Some(s) => s.try_into().unwrap_or([0; N]),
            None => [0; N],
        };
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
        let n = r.encoded_len().div_ceil(SLOT_BYTES).clamp(1, MAX_SLOTS);
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
        let mut w = SlotWriter { q: &self.q, first: self.tail, slots: n, k: 0, at: 0, buf: [0; SLOT_BYTES] };
        r.encode(&mut w, n as u8);
        if w.at > 0 {
            w.flush();
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

    #[test]
    fn a_typical_answer_takes_one_slot_and_what_does_not_fit_is_counted() {
        // one A record for a 20-byte name: 82 + 8 + 22 bytes, one slot
        let mut r = DnsRecord { time: 1, ..Default::default() };
        r.set_qname(&WireName::from_text("api.svc.example.test").unwrap());
        let mut a = [0u8; 16];
        a[10..].copy_from_slice(&[0xff, 0xff, 10, 9, 0, 2]);
        r.push_answer(DnsAnswer { addr: a, v6: false, ttl: 30 });
        assert_eq!(r.encoded_len().div_ceil(SLOT_BYTES), 1);
        // A and AAAA answers mixed keep their order and families
        r.push_answer(DnsAnswer { addr: [7; 16], v6: true, ttl: 31 });
        r.push_answer(DnsAnswer { addr: a, v6: false, ttl: 32 });
        // CNAMEs past the names area are counted, not carried
        let long = WireName::from_text(&format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63))).unwrap();
        while r.push_cname(&long, 5) {}
        assert!(!r.push_cname(&long, 5) && r.more_cnames == 2);
        let (mut p, mut c) = channel(16);
        assert!(p.push_dns(&r));
        p.publish();
        let mut got = Vec::new();
        c.pop_events(10, |e| got.push(e));
        let [Event::Dns(d)] = got.as_slice() else { panic!("{got:?}") };
        assert_eq!(d.answers(), r.answers());
        assert_eq!((d.answers()[0].ip().to_string(), d.answers()[1].v6), ("10.9.0.2".into(), true));
        assert_eq!((d.more_cnames, d.n_cnames, d.names().count()), (2, r.n_cnames, 1 + usize::from(r.n_cnames)));
        assert_eq!(d.qname_wire(), WireName::from_text("api.svc.example.test").unwrap().as_bytes());
    }
}
