//! The flow table: open addressing, linear probing, preallocated.
//!
//! Layout: `slots = capacity × 5/4` entries of 128 bytes plus a parallel array
//! of 4-byte tags (high hash bits, `0` = empty). A probe reads tags (16 per
//! cache line) and touches an entry only on a tag match, so a hit costs about
//! one tag line and one entry line. The table never holds more than
//! `capacity` flows, so the load stays at or under 0.8. Deletion shifts the
//! following cluster back (no tombstones), so lookups never slow down with churn.
//!
//! Expiry is incremental: a lookup that finds an expired entry ends it, and
//! [`FlowTable::sweep`] looks at a bounded number of slots per call (once per
//! burst). When the table is full, an insert evicts within a bounded window
//! around its home slot: an expired entry if there is one, else the
//! handshake/closing entry with the earliest deadline; established flows are
//! never evicted and the insert fails with [`TableFull`] instead.
//!
//! Ended flows (expired, evicted, removed, replaced) are copied into a
//! preallocated ring that the flow-event writer drains with
//! [`FlowTable::pop_ended`]; when it overflows the oldest record is dropped and
//! counted in `ended_lost`.

use super::entry::{FlowEntry, NewFlow};
use super::key::{FlowKey, Tuple};
use super::state::Timeouts;

/// The table holds `capacity` flows and every evictable candidate in the
/// window around the new flow's slot is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

impl std::fmt::Display for TableFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("flow table full: no expired or handshake entry to evict")
    }
}

impl std::error::Error for TableFull {}

/// Why a flow left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Idle past its state's timeout.
    Expired,
    /// Made room for a new flow while the table was full.
    Evicted,
    /// Removed by the caller.
    Removed,
    /// A new flow was inserted under the same key.
    Replaced,
}

/// A flow that left the table, with its final counters.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    pub entry: FlowEntry,
    pub reason: EndReason,
    /// When it was taken out (the `now` of that call).
    pub at: u64,
}

/// Counters of table events; plain integers (one writer, the worker), to be
/// copied into exported counters once per burst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowTableStats {
    pub inserted: u64,
    pub expired: u64,
    pub evicted: u64,
    pub removed: u64,
    pub replaced: u64,
    /// Inserts refused with [`TableFull`].
    pub table_full: u64,
    /// Ended-flow records overwritten before they were drained.
    pub ended_lost: u64,
}

/// Slots searched for an eviction candidate when the table is full.
const EVICT_WINDOW: usize = 64;

/// One worker's flow table.
pub struct FlowTable {
    entries: Box<[FlowEntry]>,
    tags: Box<[u32]>,
    slots: usize,
    len: usize,
    capacity: usize,
    seed: u64,
    timeouts: Timeouts,
    cursor: usize,
    ended: Box<[Ended]>,
    ended_head: usize,
    ended_len: usize,
    stats: FlowTableStats,
}

/// Called with each table region before it is first written, so that the
/// I/O layer can ask for huge pages ([`set_memory_advice`]).
static MEMORY_ADVICE: std::sync::OnceLock<fn(*const u8, usize)> = std::sync::OnceLock::new();

/// Sets, once per process and before any table is built, the function told
/// about each new table's memory (gatewayd passes
/// `dpdk_bindings::advise_hugepages`: with 4 KiB pages a lookup in a large
/// table is a TLB miss as well as a cache miss). Later calls are ignored.
pub fn set_memory_advice(f: fn(*const u8, usize)) {
    let _ = MEMORY_ADVICE.set(f);
}

/// `n` copies of `v` in memory announced to the advice before it is written.
fn table_of<T: Clone>(n: usize, v: T) -> Box<[T]> {
    let mut t = Vec::with_capacity(n);
    if let Some(advise) = MEMORY_ADVICE.get() {
        advise(t.as_ptr() as *const u8, n * std::mem::size_of::<T>());
    }
    t.resize(n, v);
    t.into_boxed_slice()
}

impl FlowTable {
    /// Bytes of table memory per flow of capacity (entries and tags at a load of 0.8).
    pub const BYTES_PER_FLOW: usize = (std::mem::size_of::<FlowEntry>() + 4) * 5 / 4;

    /// Allocates (and touches) everything the table will ever use: room for
    /// `capacity` flows and `ended_capacity` ended-flow records. `seed` should be
    /// random per table; `timeouts` are in the unit of the `now` passed later.
    pub fn new(capacity: usize, ended_capacity: usize, seed: u64, timeouts: Timeouts) -> FlowTable {
        assert!(capacity >= 1 && capacity < (u32::MAX as usize) / 2, "flow table capacity out of range");
        let slots = (capacity + capacity / 4).max(capacity + 1);
        let empty = Ended { entry: FlowEntry::EMPTY, reason: EndReason::Expired, at: 0 };
        FlowTable {
            entries: table_of(slots, FlowEntry::EMPTY),
            tags: table_of(slots, 0u32),
            slots,
            len: 0,
            capacity,
            seed,
            timeouts,
            cursor: 0,
            ended: vec![empty; ended_capacity.max(1)].into_boxed_slice(),
            ended_head: 0,
            ended_len: 0,
            stats: FlowTableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Slots in the table (more than its capacity: the load factor's room).
    pub fn slots(&self) -> usize {
        self.slots
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
    pub fn stats(&self) -> &FlowTableStats {
        &self.stats
    }
    /// Bytes allocated by this table.
    pub fn memory_bytes(&self) -> usize {
        self.slots * (std::mem::size_of::<FlowEntry>() + 4) + self.ended.len() * std::mem::size_of::<Ended>()
    }

    /// The key's hash in this table (compute once per packet, reuse for
    /// [`Self::prefetch`] and [`Self::lookup_hashed`]).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        key.hash(self.seed)
    }

    /// A packet's key and its hash in this table ([`FlowKey::new_hashed`]).
    #[inline(always)]
    pub fn key_hashed(&self, side: crate::Side, t: &Tuple) -> (FlowKey, u64) {
        FlowKey::new_hashed(side, t, self.seed)
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        (((h as u32) as u64 * self.slots as u64) >> 32) as usize
    }

    #[inline]
    fn tag(h: u64) -> u32 {
        ((h >> 32) as u32) | 1
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots {
            0
        } else {
            i + 1
        }
    }

    /// Hands `hint` the addresses a lookup of hash `h` reads first: the home
    /// slot's tag and the two cache lines of its entry (for the I/O layer to
    /// prefetch a few frames ahead; this crate has no `unsafe`).
    #[inline(always)]
    pub fn prefetch(&self, h: u64, hint: impl Fn(*const u8)) {
        let i = self.home(h);
        hint(self.tags.as_ptr().wrapping_add(i) as *const u8);
        let e = self.entries.as_ptr().wrapping_add(i) as *const u8;
        hint(e);
        hint(e.wrapping_add(64));
    }

    /// `Ok(slot)` holding `key`, or `Err(first empty slot)` on its probe path.
    #[inline(always)]
    fn find(&self, key: &FlowKey, h: u64) -> Result<usize, usize> {
        let tag = Self::tag(h);
        let mut i = self.home(h);
        loop {
            let t = self.tags[i];
            if t == 0 {
                return Err(i);
            }
            if t == tag && self.entries[i].key == *key {
                return Ok(i);
            }
            i = self.next(i);
        }
    }

    /// The live flow of `key`. An expired entry is ended (reason `Expired`) and
    /// reported as absent.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Option<&mut FlowEntry> {
        let h = self.hash(key);
        self.lookup_hashed(key, h, now)
    }

    #[inline]
    pub fn lookup_hashed(&mut self, key: &FlowKey, h: u64, now: u64) -> Option<&mut FlowEntry> {
        self.lookup_with_timeouts(key, h, now).map(|(e, _)| e)
    }

    /// [`Self::lookup_hashed`], with the table's timeouts beside the entry
    /// (the packet's state update needs both; one borrow of the table).
    #[inline(always)]
    pub fn lookup_with_timeouts(&mut self, key: &FlowKey, h: u64, now: u64) -> Option<(&mut FlowEntry, &Timeouts)> {
        let i = self.find(key, h).ok()?;
        if self.entries[i].deadline <= now {
            self.expire(i, now);
            return None;
        }
        Some((&mut self.entries[i], &self.timeouts))
    }

    #[cold]
    fn expire(&mut self, i: usize, now: u64) {
        self.stats.expired += 1;
        self.remove_at(i, EndReason::Expired, now);
    }

    /// Read-only view of a flow, expired or not (for inspection and tests).
    pub fn get(&self, key: &FlowKey) -> Option<&FlowEntry> {
        self.get_hashed(key, self.hash(key))
    }

    /// [`Self::get`] with the key's hash already computed ([`Self::hash`]).
    #[inline]
    pub fn get_hashed(&self, key: &FlowKey, h: u64) -> Option<&FlowEntry> {
        self.find(key, h).ok().map(|i| &self.entries[i])
    }

    /// Creates a flow. The caller has just missed it with [`Self::lookup`]; if
    /// the key is present anyway, the old flow ends with reason `Replaced`.
    pub fn insert(&mut self, key: FlowKey, init: NewFlow, now: u64) -> Result<&mut FlowEntry, TableFull> {
        let h = self.hash(&key);
        self.insert_hashed(key, h, init, now)
    }

    /// [`Self::insert`] with the key's hash already computed ([`Self::hash`]).
    pub fn insert_hashed(
        &mut self,
        key: FlowKey,
        h: u64,
        init: NewFlow,
        now: u64,
    ) -> Result<&mut FlowEntry, TableFull> {
        if let Ok(i) = self.find(&key, h) {
            self.stats.replaced += 1;
            self.remove_at(i, EndReason::Replaced, now);
        }
        if self.len >= self.capacity {
            self.make_room(h, now)?;
        }
        let i = match self.find(&key, h) {
            Err(i) => i,
            Ok(_) => unreachable!("key removed above"),
        };
        self.tags[i] = Self::tag(h);
        self.entries[i] = FlowEntry::init(key, init, now, &self.timeouts);
        self.len += 1;
        self.stats.inserted += 1;
        Ok(&mut self.entries[i])
    }

    /// Ends the flow of `key` (reason `Removed`). Returns whether it existed.
    pub fn remove(&mut self, key: &FlowKey, now: u64) -> bool {
        self.remove_hashed(key, self.hash(key), now)
    }

    /// [`Self::remove`] with the key's hash already computed ([`Self::hash`]).
    pub fn remove_hashed(&mut self, key: &FlowKey, h: u64, now: u64) -> bool {
        match self.find(key, h) {
            Ok(i) => {
                self.stats.removed += 1;
                self.remove_at(i, EndReason::Removed, now);
                true
            }
            Err(_) => false,
        }
    }

    fn make_room(&mut self, h: u64, now: u64) -> Result<(), TableFull> {
        let mut i = self.home(h);
        let mut best: Option<(usize, u64)> = None;
        for _ in 0..EVICT_WINDOW.min(self.slots) {
            if self.tags[i] != 0 {
                let e = &self.entries[i];
                if e.deadline <= now {
                    self.stats.expired += 1;
                    self.remove_at(i, EndReason::Expired, now);
                    return Ok(());
                }
                if e.state().evictable() && best.is_none_or(|(_, d)| e.deadline < d) {
                    best = Some((i, e.deadline));
                }
            }
            i = self.next(i);
        }
        match best {
            Some((i, _)) => {
                self.stats.evicted += 1;
                self.remove_at(i, EndReason::Evicted, now);
                Ok(())
            }
            None => {
                self.stats.table_full += 1;
                Err(TableFull)
            }
        }
    }

    /// Ends the entry at slot `i` and closes the gap behind it.
    fn remove_at(&mut self, i: usize, reason: EndReason, now: u64) {
        self.push_ended(Ended { entry: self.entries[i], reason, at: now });
        let mut hole = i;
        let mut j = self.next(i);
        while self.tags[j] != 0 {
            let home = self.home(self.entries[j].key.hash(self.seed));
            let dist = |a: usize, b: usize| if b >= a { b - a } else { b + self.slots - a };
            // Entry j may fill the hole unless its home lies after the hole.
            if dist(home, j) >= dist(hole, j) {
                self.entries[hole] = self.entries[j];
                self.tags[hole] = self.tags[j];
                hole = j;
            }
            j = self.next(j);
        }
        self.tags[hole] = 0;
        self.len -= 1;
    }

    fn push_ended(&mut self, e: Ended) {
        let cap = self.ended.len();
        if self.ended_len == cap {
            // Overwrite the oldest.
            self.ended[self.ended_head] = e;
            self.ended_head = (self.ended_head + 1) % cap;
            self.stats.ended_lost += 1;
        } else {
            self.ended[(self.ended_head + self.ended_len) % cap] = e;
            self.ended_len += 1;
        }
    }

    /// The oldest ended flow not yet taken.
    pub fn pop_ended(&mut self) -> Option<Ended> {
        if self.ended_len == 0 {
            return None;
        }
        let e = self.ended[self.ended_head];
        self.ended_head = (self.ended_head + 1) % self.ended.len();
        self.ended_len -= 1;
        Some(e)
    }

    /// Examines up to `budget` slots from where the last sweep stopped and ends
    /// the expired flows among them. Returns how many it ended.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        let mut n = 0;
        for _ in 0..budget {
            let i = self.cursor;
            if self.tags[i] != 0 && self.entries[i].deadline <= now {
                self.stats.expired += 1;
                self.remove_at(i, EndReason::Expired, now);
                n += 1;
                // Slot i may now hold a shifted entry: look at it again.
            } else {
                self.cursor = self.next(i);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::state::{FlowState, TcpFlags, TcpStep};
    use crate::policy::PuId;
    use crate::Side;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn t() -> Timeouts {
        Timeouts { handshake: 10, established: 1000, closing: 30, closed: 5, udp_pending: 7, udp_authorized: 100 }
    }

    fn key(i: u32) -> FlowKey {
        FlowKey::new(
            Side::Inside,
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i >> 16))),
            IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1)),
            (i & 0xffff) as u16,
            443,
            6,
        )
    }

    fn syn(side: Side) -> NewFlow {
        NewFlow { pu: PuId(0), initiator: side, state: FlowState::SynSent, seq: 1 }
    }

    fn established(tb: &mut FlowTable, k: FlowKey, now: u64) {
        let f = tb.insert(k, syn(Side::Inside), now).unwrap();
        let tm = t();
        f.on_tcp(Side::Outside, TcpFlags(TcpFlags::SYN | TcpFlags::ACK), 9, now, &tm);
        assert_eq!(f.on_tcp(Side::Inside, TcpFlags(TcpFlags::ACK), 2, now, &tm), TcpStep::Established);
    }

    #[test]
    fn both_directions_find_one_entry_v4_and_v6() {
        let mut tb = FlowTable::new(16, 16, 0xdead_beef, t());
        for (pu, peer) in [
            (IpAddr::V4(Ipv4Addr::new(10, 1, 0, 10)), IpAddr::V4(Ipv4Addr::new(10, 2, 0, 5))),
            (
                IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x10)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5)),
            ),
        ] {
            let out = FlowKey::new(Side::Inside, pu, peer, 40000, 443, 6);
            let back = FlowKey::new(Side::Outside, peer, pu, 443, 40000, 6);
            tb.insert(out, syn(Side::Inside), 0).unwrap().account(Side::Inside, 60);
            let f = tb.lookup(&back, 1).expect("reply finds the flow");
            f.account(Side::Outside, 60);
            assert_eq!(f.counters(Side::Outside), (1, 60));
            assert_eq!(tb.get(&out).unwrap().counters(Side::Inside), (1, 60));
        }
        assert_eq!(tb.len(), 2);
    }

    #[test]
    fn lookup_expires_and_reports() {
        let mut tb = FlowTable::new(16, 16, 1, t());
        let k = key(1);
        tb.insert(k, syn(Side::Inside), 100).unwrap();
        assert!(tb.lookup(&k, 109).is_some());
        assert!(tb.lookup(&k, 110).is_none(), "deadline is exclusive");
        assert_eq!(tb.len(), 0);
        let e = tb.pop_ended().unwrap();
        assert_eq!((e.reason, e.at, *e.entry.key()), (EndReason::Expired, 110, k));
        assert!(tb.pop_ended().is_none());
        assert_eq!(tb.stats().expired, 1);
        // Established flows live longer.
        established(&mut tb, k, 200);
        assert!(tb.lookup(&k, 1199).is_some());
        assert!(tb.lookup(&k, 1200).is_none());
    }

    #[test]
    fn remove_and_replace() {
        let mut tb = FlowTable::new(16, 16, 1, t());
        let k = key(7);
        tb.insert(k, syn(Side::Inside), 0).unwrap();
        tb.insert(k, syn(Side::Outside), 1).unwrap();
        assert_eq!(tb.len(), 1);
        assert_eq!(tb.pop_ended().unwrap().reason, EndReason::Replaced);
        assert_eq!(tb.get(&k).unwrap().initiator(), Side::Outside);
        assert!(tb.remove(&k, 2));
        assert!(!tb.remove(&k, 2));
        assert_eq!(tb.pop_ended().unwrap().reason, EndReason::Removed);
        assert!(tb.is_empty());
    }

    #[test]
    fn churn_keeps_every_flow_findable() {
        // Many inserts and removals through clustered probes: backward-shift
        // deletion must keep every remaining key reachable.
        let mut tb = FlowTable::new(1000, 4, 42, t());
        let mut live = std::collections::HashSet::new();
        let mut x: u64 = 12345;
        for step in 0..20000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 1500) as u32;
            if live.contains(&k) {
                assert!(tb.remove(&key(k), step));
                live.remove(&k);
            } else if tb.len() < tb.capacity() {
                tb.insert(key(k), syn(Side::Inside), step).unwrap();
                live.insert(k);
            }
            if step % 997 == 0 {
                for &k in &live {
                    assert!(tb.get(&key(k)).is_some(), "lost {k} at step {step}");
                }
            }
        }
        assert_eq!(tb.len(), live.len());
        assert!(tb.stats().ended_lost > 0);
    }

    #[test]
    fn sweep_is_bounded_and_incremental() {
        let mut tb = FlowTable::new(100, 200, 3, t());
        for i in 0..50 {
            tb.insert(key(i), syn(Side::Inside), 0).unwrap(); // deadline 10
        }
        for i in 50..60 {
            established(&mut tb, key(i), 0); // deadline 1000
        }
        assert_eq!(tb.sweep(5, 1000), 0);
        let slots = tb.slots;
        let mut total = 0;
        let mut calls = 0;
        while total < 50 {
            let n = tb.sweep(20, 16);
            assert!(n <= 16);
            total += n;
            calls += 1;
            assert!(calls <= 2 * slots / 16 + 2);
        }
        assert_eq!(tb.len(), 10);
        assert_eq!(tb.stats().expired, 50);
        for i in 50..60 {
            assert!(tb.lookup(&key(i), 20).is_some());
        }
        assert_eq!((0..).map_while(|_| tb.pop_ended()).count(), 50);
    }

    #[test]
    fn eviction_when_full() {
        let mut tb = FlowTable::new(64, 256, 9, t());
        // Fill with established flows: nothing evictable.
        for i in 0..64 {
            established(&mut tb, key(i), 0);
        }
        assert_eq!(tb.insert(key(1000), syn(Side::Inside), 1).err(), Some(TableFull));
        assert_eq!(tb.stats().table_full, 1);
        // Expired entries are taken first (the window covers the whole small table).
        let ok = tb.insert(key(1000), syn(Side::Inside), 1001).is_ok();
        assert!(ok);
        assert_eq!(tb.stats().expired, 1);
        assert_eq!(tb.len(), 64);
        // Lookups at 1001 end the other established flows (deadline 1000);
        // refill with handshakes of different ages.
        for i in 0..64 {
            assert!(tb.lookup(&key(i), 1001).is_none());
        }
        let mut n = 2000;
        while tb.len() < 64 {
            tb.insert(key(n), syn(Side::Inside), 1002 + (n as u64 - 2000)).unwrap();
            n += 1;
        }
        let oldest_handshake = (0..n)
            .filter_map(|i| tb.get(&key(i)).filter(|e| e.state() == FlowState::SynSent).map(|e| (e.deadline(), i)))
            .min()
            .unwrap();
        let before = tb.stats().evicted;
        tb.insert(key(5000), syn(Side::Inside), 1003).unwrap();
        assert_eq!(tb.stats().evicted, before + 1);
        assert!(tb.get(&key(oldest_handshake.1)).is_none(), "oldest handshake evicted");
        let mut reasons = Vec::new();
        while let Some(e) = tb.pop_ended() {
            reasons.push(e.reason);
        }
        assert_eq!(reasons.last(), Some(&EndReason::Evicted));
    }

    #[test]
    fn one_million_flows_fit() {
        let cap = 1 << 20;
        let mut tb = FlowTable::new(cap, 1024, 77, Timeouts::default());
        assert!(tb.memory_bytes() <= cap * FlowTable::BYTES_PER_FLOW + 1024 * 256);
        for i in 0..cap as u32 {
            tb.insert(key(i), syn(Side::Inside), 0).unwrap();
        }
        assert_eq!(tb.len(), cap);
        for i in (0..cap as u32).step_by(997) {
            assert!(tb.lookup(&key(i), 1).is_some());
        }
    }
}
