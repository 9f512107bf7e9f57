//! The cache of stripping paths: destinations whose path removed the
//! identity option from a SYN-ACK, so that later connections to them go to
//! the layer-4 exchange at once (as Linux's TFO and MPTCP blackhole
//! detection remember a failing path).
//!
//! Per worker, allocated once: [`SLOTS`] entries in buckets of 8 (one cache
//! line), each a 64-bit fingerprint of the address keyed with the worker's
//! seed and its expiry. A full bucket reuses the entry that expires first
//! (counted when it was still live). No allocation, lock or clock here: time
//! is a parameter.

/// Destinations remembered per worker.
pub const SLOTS: usize = 4096;
const WAYS: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct Slot {
    /// 0: empty.
    fp: u64,
    /// Unix ns after which the entry is gone.
    until: u64,
}

/// A 64x64 → 128-bit multiply folded to 64 bits (wyhash's mixer).
fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// What [`StripCache::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new entry, or a refreshed one.
    Stored,
    /// Stored over a live entry of another destination (cache too small).
    Evicted,
}

pub struct StripCache {
    slots: Box<[Slot]>,
    seed: u64,
    /// The latest expiry of any entry stored: from then on nothing can hit,
    /// and a lookup reads no bucket (every SYN from a PU asks, and the
    /// cache is empty on most gateways).
    latest: u64,
}

impl StripCache {
    pub fn new(seed: u64) -> StripCache {
        StripCache {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            seed: seed ^ 0x6c34_7374_7269_7000,
            latest: 0,
        }
    }

    fn fingerprint(&self, addr: u128) -> (usize, u64) {
        let h = mix(
            mix(addr as u64 ^ self.seed, 0xa076_1d64_78bd_642f) ^ (addr >> 64) as u64,
            self.seed ^ 0xe703_7ed1_a0b4_28db,
        );
        let bucket = (h as usize) & (SLOTS / WAYS - 1);
        (bucket * WAYS, (h >> 16) | 1)
    }

    /// Whether `addr` (an IPv6 or IPv4-mapped address) is remembered at `now`.
    #[inline]
    pub fn hit(&self, addr: u128, now: u64) -> bool {
        if self.latest <= now {
            return false;
        }
        let (b, fp) = self.fingerprint(addr);
        self.slots[b..b + WAYS].iter().any(|s| s.fp == fp && s.until > now)
    }

    /// Remembers `addr` until `now + lifetime_ns` (0: not at all).
    pub fn learn(&mut self, addr: u128, now: u64, lifetime_ns: u64) -> Option<Learned> {
        if lifetime_ns == 0 {
            return None;
        }
        let (b, fp) = self.fingerprint(addr);
        let until = now.saturating_add(lifetime_ns);
        self.latest = self.latest.max(until);
        let bucket = &mut self.slots[b..b + WAYS];
        if let Some(s) = bucket.iter_mut().find(|s| s.fp == fp) {
            s.until = until;
            return Some(Learned::Stored);
        }
        let s = bucket.iter_mut().min_by_key(|s| s.until)?;
        let live = s.fp != 0 && s.until > now;
        *s = Slot { fp, until };
        Some(if live { Learned::Evicted } else { Learned::Stored })
    }

    /// Forgets every destination (a test or an operator's reset).
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.latest = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn an_entry_lives_for_its_lifetime() {
        let mut c = StripCache::new(1);
        let a = 0xffff_0a01_0001u128;
        assert!(!c.hit(a, 0));
        assert_eq!(c.learn(a, 10 * S, 5 * S), Some(Learned::Stored));
        assert!(c.hit(a, 14 * S));
        assert!(!c.hit(a, 15 * S));
        assert!(!c.hit(a + 1, 11 * S));
        assert_eq!(c.learn(a, 10 * S, 0), None, "lifetime 0: never remembered");
    }

    #[test]
    fn a_full_bucket_evicts_the_entry_that_expires_first() {
        let mut c = StripCache::new(7);
        let mut evicted = 0;
        for i in 0..(SLOTS as u128 * 2) {
            if c.learn(i, 0, (1 + i as u64) * S) == Some(Learned::Evicted) {
                evicted += 1;
            }
        }
        assert!(evicted >= SLOTS, "twice the slots learned: at least half evicted ({evicted})");
        // the newest (longest-lived) survive
        let last = SLOTS as u128 * 2 - 1;
        assert!(c.hit(last, 0));
    }
}
