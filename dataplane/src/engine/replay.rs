//! Replay memory: the connections whose identity was verified and that have
//! ended, remembered for a window after they end, so that an exact replay of
//! their SYN (same addresses, ports and ISN, hence the same valid MAC) is
//! refused once the flow table no longer holds them.
//!
//! The option carries no freshness: the MAC binds the connection (tuple and
//! ISN), which makes a retransmitted SYN verify again, as it must. While the
//! flow lives, the flow table tells a retransmission (flow in `SynSent`) from
//! a replay (flow established or closing). After the flow ends, only this
//! memory does. What it keeps is the connection's binding, not the MAC: a
//! 32-bit fingerprint of (flow key, ISN) and the second at which the memory
//! of it expires.
//!
//! Layout: fixed buckets of 8 slots of 8 bytes (one cache line each),
//! allocated once. A lookup reads one line. An insert takes a free or expired
//! slot of its bucket, else the slot that expires first; overwriting a slot
//! that had not expired yet shortens the window for that connection and is
//! counted (`overwritten`). A new connection is refused by mistake only when
//! a slot of its bucket holds the same 32-bit fingerprint: at most 8 in 2^32
//! per verified SYN that finds no flow (about 2e-9).
//!
//! Remembered: connections from the outside whose SYN identity verified and
//! that reached `Established` (see [`FlowEntry::was_established`]). Not
//! remembered: handshakes that never completed (a SYN evicted by a flood or
//! expired in `SynSent` may still be retransmitted by a genuine client), and
//! nothing survives a restart of the gateway.
//!
//! [`FlowEntry::was_established`]: crate::flow::FlowEntry::was_established

use crate::flow::FlowKey;

/// Slots per bucket: 8 × 8 bytes = one 64-byte cache line.
const WAYS: usize = 8;

/// Default window after a connection ends: longer than Linux's SYN retries
/// (6 retries: 127 s) and TIME-WAIT (60 s), and than 2 × MSL (RFC 9293: MSL
/// 2 minutes).
pub const DEFAULT_WINDOW_S: u32 = 300;

/// Default slots per worker: 8 MiB; holds the full window for about 3 500
/// ended verified connections per second per worker.
pub const DEFAULT_SLOTS: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
struct Slot {
    fingerprint: u32,
    /// Unix seconds after which the slot is free; 0: never used.
    expires_s: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
struct Bucket([Slot; WAYS]);

/// Counts of one worker's replay memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Connections remembered.
    pub remembered: u64,
    /// Remembered connections forgotten before their window ended (the memory
    /// was too small for the rate of connections).
    pub overwritten: u64,
}

/// One worker's replay memory (see the module documentation).
pub struct ReplayMemory {
    buckets: Box<[Bucket]>,
    mask: usize,
    window_s: u32,
    seed: u64,
    stats: ReplayStats,
}

impl ReplayMemory {
    /// A memory of at least `slots` slots (rounded up to a power of two
    /// buckets; 0 disables it), remembering each connection for `window_s`
    /// seconds after it ends. `seed` keys the hash.
    pub fn new(slots: usize, window_s: u32, seed: u64) -> ReplayMemory {
        let n = if slots == 0 || window_s == 0 { 0 } else { slots.div_ceil(WAYS).next_power_of_two() };
        ReplayMemory {
            buckets: vec![Bucket::default(); n].into_boxed_slice(),
            mask: n.saturating_sub(1),
            window_s,
            seed: seed ^ 0x7265_706c_6179_6d65, // "replayme": not the flow table's hash
            stats: ReplayStats::default(),
        }
    }

    /// Slots in total (0: disabled).
    pub fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    pub fn window_s(&self) -> u32 {
        self.window_s
    }

    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// Bytes allocated.
    pub fn memory(&self) -> usize {
        std::mem::size_of_val(&*self.buckets)
    }

    #[inline]
    fn place(&self, key: &FlowKey, isn: u32) -> (usize, u32) {
        // fmix64 (MurmurHash3's finalizer) over the flow hash and the ISN.
        let mut h = key.hash(self.seed) ^ u64::from(isn).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        ((h >> 32) as usize & self.mask, h as u32)
    }

    /// Remembers the connection `key` opened with ISN `isn`, which ended at
    /// `now_ns` (Unix nanoseconds).
    pub fn remember(&mut self, key: &FlowKey, isn: u32, now_ns: u64) {
        if self.buckets.is_empty() {
            return;
        }
        let now = secs(now_ns);
        let expires_s = now.saturating_add(self.window_s).max(1);
        let (b, fingerprint) = self.place(key, isn);
        let bucket = &mut self.buckets[b].0;
        // The same connection again: extend it. Else a free or expired slot,
        // else the one that expires first.
        let mut victim = 0;
        for (i, s) in bucket.iter().enumerate() {
            if s.expires_s > now && s.fingerprint == fingerprint {
                victim = i;
                break;
            }
            if s.expires_s <= now {
                victim = i;
                break;
            }
            if s.expires_s < bucket[victim].expires_s {
                victim = i;
            }
        }
        let old = bucket[victim];
        if old.expires_s > now && old.fingerprint != fingerprint {
            self.stats.overwritten += 1;
        }
        bucket[victim] = Slot { fingerprint, expires_s };
        self.stats.remembered += 1;
    }

    /// Whether the connection `key` with ISN `isn` ended within the window.
    #[inline]
    pub fn seen(&self, key: &FlowKey, isn: u32, now_ns: u64) -> bool {
        if self.buckets.is_empty() {
            return false;
        }
        let now = secs(now_ns);
        let (b, fingerprint) = self.place(key, isn);
        self.buckets[b].0.iter().any(|s| s.expires_s > now && s.fingerprint == fingerprint)
    }
}

#[inline]
fn secs(ns: u64) -> u32 {
    u32::try_from(ns / 1_000_000_000).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Side;

    const S: u64 = 1_000_000_000;

    fn key(port: u16) -> FlowKey {
        FlowKey::new(Side::Outside, "10.1.0.10".parse().unwrap(), "10.2.0.20".parse().unwrap(), port, 80, 6)
    }

    #[test]
    fn remembers_for_the_window_then_forgets() {
        let mut m = ReplayMemory::new(1024, 300, 7);
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(m.slots(), 1024);
        let t = 1_000 * S;
        assert!(!m.seen(&key(40000), 1, t));
        m.remember(&key(40000), 1, t);
        assert!(m.seen(&key(40000), 1, t + 299 * S));
        assert!(!m.seen(&key(40000), 2, t), "another ISN is another connection");
        assert!(!m.seen(&key(40001), 1, t), "another port is another connection");
        assert!(!m.seen(&key(40000), 1, t + 300 * S), "forgotten when the window ends");
        assert_eq!(m.stats(), ReplayStats { remembered: 1, overwritten: 0 });
    }

    #[test]
    fn a_full_bucket_forgets_the_oldest_first_and_counts_it() {
        // One bucket: every connection lands in it.
        let mut m = ReplayMemory::new(8, 300, 7);
        let t = 1_000 * S;
        for i in 0..8u32 {
            m.remember(&key(40000), i, t + u64::from(i) * S);
        }
        assert_eq!(m.stats().overwritten, 0);
        m.remember(&key(40000), 100, t + 10 * S);
        assert_eq!(m.stats().overwritten, 1);
        assert!(!m.seen(&key(40000), 0, t + 10 * S), "the first to expire went");
        for i in (1..8).chain([100]) {
            assert!(m.seen(&key(40000), i, t + 10 * S), "{i}");
        }
        // Expired slots are reused without counting.
        m.remember(&key(40000), 200, t + 400 * S);
        assert_eq!(m.stats().overwritten, 1);
    }

    #[test]
    fn disabled_memory_remembers_nothing() {
        let mut m = ReplayMemory::new(0, 300, 7);
        m.remember(&key(1), 1, S);
        assert!(!m.seen(&key(1), 1, S));
        assert_eq!(m.memory(), 0);
        let mut m = ReplayMemory::new(64, 0, 7);
        m.remember(&key(1), 1, S);
        assert!(!m.seen(&key(1), 1, S));
    }

    #[test]
    fn false_matches_stay_rare() {
        // 64k remembered connections in 64k slots, 1M other connections looked
        // up: the bound is 8 / 2^32 per lookup, i.e. ~0.002 expected here.
        let mut m = ReplayMemory::new(1 << 16, 300, 99);
        for i in 0..(1u32 << 16) {
            m.remember(&key((i % 50_000) as u16), i, S);
        }
        let hits = (0..1_000_000u32).filter(|i| m.seen(&key((i % 50_000) as u16), i + (1 << 20), S)).count();
        assert!(hits <= 2, "{hits} false matches");
    }
}
