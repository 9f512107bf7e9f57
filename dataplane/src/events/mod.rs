//! Flow events: compact, plain-data records a worker produces when it decides
//! a connection or a flow ends, and the bounded lock-free single-producer /
//! single-consumer queue that carries them to the control thread.
//!
//! A record holds numbers only (addresses, ports, PU index, identity, rule
//! and external-network indices, the snapshot generation, reason codes,
//! counters); the control thread resolves them to names through the policy
//! snapshot of that generation and writes JSON lines.
//!
//! The queue never blocks the worker: when it is full the record is dropped
//! and counted (`lost`). Slots are arrays of `AtomicU64` words, so the queue
//! needs no `unsafe`: the producer writes a slot's words (relaxed), then
//! publishes it by storing the tail with release ordering; the consumer reads
//! the tail with acquire ordering before reading the words, and frees the slot
//! by storing the head with release ordering.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::flow::{CachedVerdict, FlowKey};
use crate::policy::Decision;
use crate::stats::{DropReason, Note};
use crate::Side;

pub mod dns;
pub use dns::{DnsAnswer, DnsRecord, Event};

/// What a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// A connection was decided (allowed or rejected) at its handshake, or
    /// without state by ACL.
    Decision = 0,
    /// A packet was dropped before any decision (e.g. an identity that does
    /// not verify).
    Drop = 1,
    /// A flow left the table (closed, idle, evicted), with its final counters.
    End = 2,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Decision => "decision",
            EventKind::Drop => "drop",
            EventKind::End => "end",
        }
    }
    fn from_u8(v: u8) -> EventKind {
        match v {
            0 => EventKind::Decision,
            1 => EventKind::Drop,
            _ => EventKind::End,
        }
    }
}

/// One flow event, as a worker produces it (no strings; `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    /// Unix time in nanoseconds.
    pub time: u64,
    pub kind: EventKind,
    /// The flow's 5-tuple, inside (PU) end first.
    pub key: FlowKey,
    /// Where the connection's first packet came from: `Inside` when the PU is
    /// the client (outgoing), `Outside` when it is the server (incoming).
    pub initiator: Side,
    /// The local PU (index in the snapshot of `generation`), `u32::MAX` if none.
    pub pu: u32,
    /// The remote workload's verified identity, if any.
    pub remote_identity: Option<u32>,
    /// The policy decision (rule, observed rule, external network, action).
    pub verdict: CachedVerdict,
    /// Why a packet was dropped (for `Drop` and rejected `Decision` events).
    pub drop: Option<DropReason>,
    /// A note about how it was decided (e.g. no peer for the destination).
    pub note: Option<Note>,
    /// The snapshot generation whose indices `pu` and `verdict` refer to.
    pub generation: u32,
    /// Packets and bytes received from the inside / outside port (End events).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

const WORDS: usize = 16;
const NONE8: u8 = u8::MAX;

impl FlowRecord {
    /// A record for `key` with nothing decided yet.
    pub fn new(kind: EventKind, time: u64, key: FlowKey, initiator: Side, pu: u32, generation: u32) -> FlowRecord {
        FlowRecord {
            time,
            kind,
            key,
            initiator,
            pu,
            remote_identity: None,
            verdict: CachedVerdict::UNDECIDED,
            drop: None,
            note: None,
            generation,
            packets: [0; 2],
            bytes: [0; 2],
        }
    }

    pub fn with_decision(mut self, d: &Decision) -> Self {
        self.verdict = CachedVerdict::pack(d);
        self
    }

    /// The decision, if one was made.
    pub fn decision(&self) -> Option<Decision> {
        self.verdict.unpack()
    }

    /// Source and destination of the connection (client → server).
    pub fn client_server(&self) -> ((IpAddr, u16), (IpAddr, u16)) {
        let inside = (self.key.inside_ip(), self.key.inside_port);
        let outside = (self.key.outside_ip(), self.key.outside_port);
        match self.initiator {
            Side::Inside => (inside, outside),
            Side::Outside => (outside, inside),
        }
    }

    fn encode(&self) -> [u64; WORDS] {
        let k = &self.key;
        let a = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let small = u64::from_le_bytes([
            self.kind as u8,
            self.initiator as u8,
            k.family,
            k.proto,
            self.drop.map_or(NONE8, |d| d as u8),
            self.note.map_or(NONE8, |n| n as u8),
            self.remote_identity.is_some() as u8,
            0,
        ]);
        let v = self.verdict.to_bits();
        [
            self.time,
            small,
            a(&k.inside_addr[..8]),
            a(&k.inside_addr[8..]),
            a(&k.outside_addr[..8]),
            a(&k.outside_addr[8..]),
            u64::from(k.inside_port) | u64::from(k.outside_port) << 16 | u64::from(self.pu) << 32,
            u64::from(self.remote_identity.unwrap_or(0)) | u64::from(self.generation) << 32,
            v as u64,
            (v >> 64) as u64,
            self.packets[0],
            self.packets[1],
            self.bytes[0],
            self.bytes[1],
            0,
            0,
        ]
    }

    fn decode(w: &[u64; WORDS]) -> FlowRecord {
        let s = w[1].to_le_bytes();
        let mut key = FlowKey::default();
        key.inside_addr[..8].copy_from_slice(&w[2].to_le_bytes());
        key.inside_addr[8..].copy_from_slice(&w[3].to_le_bytes());
        key.outside_addr[..8].copy_from_slice(&w[4].to_le_bytes());
        key.outside_addr[8..].copy_from_slice(&w[5].to_le_bytes());
        key.inside_port = w[6] as u16;
        key.outside_port = (w[6] >> 16) as u16;
        key.family = s[2];
        key.proto = s[3];
        FlowRecord {
            time: w[0],
            kind: EventKind::from_u8(s[0]),
            key,
            initiator: if s[1] == Side::Outside as u8 { Side::Outside } else { Side::Inside },
            pu: (w[6] >> 32) as u32,
            remote_identity: (s[6] != 0).then_some(w[7] as u32),
            verdict: CachedVerdict::from_bits(u128::from(w[8]) | u128::from(w[9]) << 64),
            drop: DropReason::from_u8(s[4]),
            note: Note::ALL.get(usize::from(s[5])).copied(),
            generation: (w[7] >> 32) as u32,
            packets: [w[10], w[11]],
            bytes: [w[12], w[13]],
        }
    }
}

/// A value alone on its own pair of cache lines (the spatial prefetcher
/// fetches lines in pairs), so that the producer's and the consumer's
/// writes never share a line.
#[repr(align(128))]
struct Alone<T>(T);

/// One record's words, on two whole cache lines of their own.
#[repr(C, align(128))]
pub(crate) struct Slot([AtomicU64; WORDS]);

impl Slot {
    fn read(&self) -> [u64; WORDS] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

struct Shared {
    slots: Box<[Slot]>,
    mask: usize,
    /// Next slot to read (written by the consumer).
    head: Alone<AtomicUsize>,
    /// Next slot to write, as published (written by the producer).
    tail: Alone<AtomicUsize>,
    /// Records dropped because the queue was full, as published.
    lost: Alone<AtomicU64>,
}

/// The worker's end: [`Producer::push`] never blocks.
///
/// Records are written at once but published in batches: every
/// [`PUBLISH_EVERY`] records and at [`Producer::publish`], which the worker
/// calls once per round of bursts. Per record, a published tail would cost
/// the cache line the consumer polls.
pub struct Producer {
    q: Arc<Shared>,
    tail: usize,
    /// The tail as last published.
    published: usize,
    /// The consumer's head as last seen (refreshed only when the queue looks full).
    head_cache: usize,
    /// Found full since the last publish: drop without looking at the head
    /// again (the consumer frees slots in batches, not one by one).
    full: bool,
    lost: u64,
}

/// Records between two publications of the tail, at most.
pub const PUBLISH_EVERY: usize = 32;

/// The control thread's end.
pub struct Consumer {
    q: Arc<Shared>,
}

/// A queue of at least `capacity` records (rounded up to a power of two),
/// allocated here, once.
pub fn channel(capacity: usize) -> (Producer, Consumer) {
    let cap = capacity.max(2).next_power_of_two();
    let q = Arc::new(Shared {
        slots: (0..cap).map(|_| Slot(std::array::from_fn(|_| AtomicU64::new(0)))).collect(),
        mask: cap - 1,
        head: Alone(AtomicUsize::new(0)),
        tail: Alone(AtomicUsize::new(0)),
        lost: Alone(AtomicU64::new(0)),
    });
    let p = Producer { q: q.clone(), tail: 0, published: 0, head_cache: 0, full: false, lost: 0 };
    (p, Consumer { q })
}

impl Producer {
    /// Queues a record; if the queue is full, drops it, counts it and
    /// returns false. The record reaches the consumer at the next
    /// publication (at most [`PUBLISH_EVERY`] records later, or at
    /// [`Producer::publish`]).
    #[inline]
    pub fn push(&mut self, r: &FlowRecord) -> bool {
        let cap = self.q.mask + 1;
        if self.tail.wrapping_sub(self.head_cache) >= cap {
            if !self.full {
                self.head_cache = self.q.head.0.load(Ordering::Acquire);
            }
            if self.tail.wrapping_sub(self.head_cache) >= cap {
                self.full = true;
                self.lost += 1;
                return false;
            }
        }
        let slot = &self.q.slots[self.tail & self.q.mask].0;
        for (a, w) in slot.iter().zip(r.encode()) {
            a.store(w, Ordering::Relaxed);
        }
        self.tail = self.tail.wrapping_add(1);
        if self.tail.wrapping_sub(self.published) >= PUBLISH_EVERY {
            self.publish();
        }
        true
    }

    /// Hands `hint` the cache lines of the next `k` slots, unless the queue
    /// is (nearly) full: the worker prefetches them for writing, so that a
    /// record's stores find its lines owned rather than wait for them to
    /// leave the control thread's cache, where the consumer read them last.
    #[inline]
    pub fn next_slots(&self, k: usize, hint: impl Fn(*const u8)) {
        if self.full || self.tail.wrapping_sub(self.head_cache) + k > self.q.mask + 1 {
            return;
        }
        for j in 0..k {
            let p = &self.q.slots[self.tail.wrapping_add(j) & self.q.mask] as *const Slot as *const u8;
            hint(p);
            hint(p.wrapping_add(64));
        }
    }

    /// Makes every record pushed so far visible to the consumer, and the
    /// lost count current.
    #[inline]
    pub fn publish(&mut self) {
        if self.tail != self.published {
            self.q.tail.0.store(self.tail, Ordering::Release);
            self.published = self.tail;
        }
        if self.full {
            self.q.lost.0.store(self.lost, Ordering::Relaxed);
            self.full = false;
        }
    }

    /// Records dropped because the queue was full.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

impl Consumer {
    /// The oldest queued flow record (DNS records before it are skipped:
    /// take both kinds with [`Consumer::pop_events`]).
    pub fn pop(&mut self) -> Option<FlowRecord> {
        let mut out = None;
        while out.is_none()
            && self.pop_events(1, |e| {
                if let Event::Flow(r) = e {
                    out = Some(r);
                }
            }) == 1
        {}
        out
    }

    /// Takes up to `max` queued records, oldest first, handing each flow
    /// record to `f` (DNS records are skipped: see [`Consumer::pop_events`]);
    /// returns how many records were taken. One look at the producer's tail
    /// and one release of the slots for the lot (per record, both cost a
    /// cache line the worker is writing).
    pub fn pop_many(&mut self, max: usize, mut f: impl FnMut(FlowRecord)) -> usize {
        let mut flows = 0;
        self.pop_events(max, |e| {
            if let Event::Flow(r) = e {
                flows += 1;
                f(r);
            }
        });
        flows
    }

    /// Records the producer dropped because the queue was full.
    pub fn lost(&self) -> u64 {
        self.q.lost.0.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.q.tail.0.load(Ordering::Acquire).wrapping_sub(self.q.head.0.load(Ordering::Relaxed))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, ExtNetRef, Observed, Reason, RuleRef};

    fn rec(i: u64) -> FlowRecord {
        let key = FlowKey::new(Side::Inside, "10.0.0.1".parse().unwrap(), "fd00::2".parse().unwrap(), 40000, 443, 6);
        let mut r = FlowRecord::new(EventKind::End, i, key, Side::Outside, 7, 42);
        r.remote_identity = Some(0xdead_beef);
        r.drop = Some(DropReason::Replay);
        r.note = Some(Note::NoPeerForDestination);
        r.packets = [i, 2];
        r.bytes = [3, u64::MAX];
        r.with_decision(&Decision {
            action: Action::Allow,
            rule: Some(RuleRef(5)),
            external: Some(ExtNetRef(9)),
            observed: Some(Observed { action: Action::Reject, rule: RuleRef(6), external: None }),
            reason: Reason::ExternalNetworkAllow,
        })
    }

    #[test]
    fn records_round_trip_and_full_queue_drops_and_counts() {
        let (mut p, mut c) = channel(3); // rounded up to 4
        for i in 0..4 {
            assert!(p.push(&rec(i)), "push {i}");
        }
        assert_eq!(c.len(), 0, "nothing published yet");
        p.publish();
        assert_eq!(c.len(), 4);
        assert!(!p.push(&rec(4)), "full");
        assert_eq!((p.lost(), c.lost()), (1, 0));
        for i in 0..4 {
            assert_eq!(c.pop(), Some(rec(i)));
        }
        assert_eq!(c.pop(), None);
        // Full until the next publication, although the consumer freed the
        // slots: the producer does not look at the head again per record.
        assert!(!p.push(&rec(5)));
        p.publish();
        assert_eq!((p.lost(), c.lost()), (2, 2));
        // room again
        assert!(p.push(&rec(9)));
        p.publish();
        let r = c.pop().unwrap();
        assert_eq!(r, rec(9));
        assert_eq!(r.decision().unwrap().rule, Some(RuleRef(5)));
        let mut plain = FlowRecord::new(EventKind::Decision, 1, FlowKey::default(), Side::Inside, u32::MAX, 0);
        plain.key.family = 4;
        assert!(p.push(&plain));
        p.publish();
        assert_eq!(c.pop(), Some(plain));
    }

    #[test]
    fn concurrent_producer_and_consumer_see_every_record_in_order() {
        let (mut p, mut c) = channel(64);
        let n = 100_000u64;
        let t = std::thread::spawn(move || {
            let mut sent = 0;
            for i in 0..n {
                while !p.push(&rec(i)) {
                    p.publish();
                    std::hint::spin_loop();
                }
                sent += 1;
            }
            p.publish(); // the last records (the worker publishes once per round)
            sent
        });
        let mut next = 0;
        while next < n {
            if let Some(r) = c.pop() {
                assert_eq!(r.time, next);
                assert_eq!(r.packets[0], next);
                next += 1;
            }
        }
        assert_eq!(t.join().unwrap(), n);
    }

    #[test]
    fn pop_many_takes_in_order_up_to_max_and_frees_the_slots() {
        let (mut p, mut c) = channel(8);
        for i in 0..8 {
            assert!(p.push(&rec(i)));
        }
        assert!(!p.push(&rec(99)), "full");
        p.publish();
        let mut got = Vec::new();
        assert_eq!(c.pop_many(5, |r| got.push(r)), 5);
        assert_eq!(got, (0..5).map(rec).collect::<Vec<_>>());
        for i in 8..13 {
            assert!(p.push(&rec(i)), "room again for {i}");
        }
        p.publish();
        got.clear();
        assert_eq!(c.pop_many(100, |r| got.push(r)), 8);
        assert_eq!(got, (5..13).map(rec).collect::<Vec<_>>());
        assert_eq!(c.pop_many(100, |_| panic!("empty")), 0);
        assert_eq!(c.pop(), None);
        // Against a running producer: every record, in order.
        let (mut p, mut c) = channel(64);
        let n = 100_000u64;
        let t = std::thread::spawn(move || {
            for i in 0..n {
                while !p.push(&rec(i)) {
                    p.publish();
                    std::hint::spin_loop();
                }
            }
            p.publish();
        });
        let mut next = 0;
        while next < n {
            c.pop_many(17, |r| {
                assert_eq!((r.time, r.packets[0]), (next, next));
                next += 1;
            });
        }
        t.join().unwrap();
    }
}
