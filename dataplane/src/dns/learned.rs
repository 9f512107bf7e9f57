//! Addresses learned from DNS answers for FQDN patterns: one fixed-size,
//! lock-free table shared by every worker (written by the worker that sees
//! an answer, read by all at decision time) and kept by the control plane
//! across policy applies.
//!
//! A slot is four words: expiry (Unix ns; 0 empty, [`LOCKED`] being
//! written), address (two words, IPv4-mapped for IPv4), pattern id. A writer
//! claims a free or expired slot by compare-and-swap of its expiry to
//! `LOCKED`, writes the other words, then stores the real expiry with
//! release ordering. A reader loads the expiry (acquire), the other words,
//! and the expiry again: a slot being rewritten meanwhile is skipped
//! (a seqlock whose sequence is the expiry).
//!
//! Why no connection can race its own answer: the worker that sees an
//! answer stores the learned entries *before* it returns the answer frame
//! for transmission, and the transmit path (DPDK's TX doorbell) orders the
//! frame after those stores; the workload can only open the connection
//! after it has the answer, and any worker deciding that connection then
//! loads an expiry stored before the answer left. The answer is "held" for
//! the few tens of ns of the stores, never more; nothing else waits.
//!
//! An address lives in a window of [`PROBE`] slots from its hash; when every
//! slot of the window holds a live entry, the new one is not learned and
//! `full` counts it (the name then resolves to an address that is not
//! allowed by name: the safe way to fail).

use std::net::IpAddr;
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// A slot being written.
pub const LOCKED: u64 = u64::MAX;
/// Slots an address may take (its probe window).
pub const PROBE: usize = 16;

#[repr(C, align(32))]
#[derive(Default)]
struct Slot {
    expiry: AtomicU64,
    hi: AtomicU64,
    lo: AtomicU64,
    pattern: AtomicU64,
}

impl Slot {
    /// The slot's live entry at `now` as (address high, low word, pattern,
    /// expiry), read as the module's seqlock says; `None` when it is empty,
    /// expired or was rewritten while read.
    #[inline]
    fn read(&self, now: u64) -> Option<(u64, u64, u64, u64)> {
        let e = self.expiry.load(Ordering::Acquire);
        if e == 0 || e == LOCKED || e <= now {
            return None;
        }
        let (h, l, p) =
            (self.hi.load(Ordering::Relaxed), self.lo.load(Ordering::Relaxed), self.pattern.load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        (self.expiry.load(Ordering::Relaxed) == e).then_some((h, l, p, e))
    }
}

/// What [`FqdnTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    New,
    /// Already there: its expiry pushed later if this one is later.
    Refreshed,
    /// Every slot of its window is live: not learned.
    Full,
}

/// One live entry, for `gwctl get fqdn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedEntry {
    pub addr: IpAddr,
    pub pattern: u64,
    pub expiry_ns: u64,
}

/// Shared counters (atomic adds: a learn is per answer, not per packet).
#[derive(Debug, Default)]
pub struct LearnCounts {
    pub learned: AtomicU64,
    pub refreshed: AtomicU64,
    pub full: AtomicU64,
}

pub struct FqdnTable {
    slots: Box<[Slot]>,
    mask: usize,
    pub counts: LearnCounts,
}

impl std::fmt::Debug for FqdnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FqdnTable({} slots)", self.slots.len())
    }
}

/// An address as the table keys it.
pub fn key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => (0xffff_u128 << 32) | u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn index(addr: u128) -> usize {
    let x = (addr as u64) ^ ((addr >> 64) as u64).rotate_left(29);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) as usize
}

impl FqdnTable {
    /// A table of at least `capacity` slots (a power of two, at least
    /// [`PROBE`]), allocated now, once.
    pub fn new(capacity: usize) -> FqdnTable {
        let n = capacity.max(PROBE).next_power_of_two();
        FqdnTable { slots: (0..n).map(|_| Slot::default()).collect(), mask: n - 1, counts: LearnCounts::default() }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn window(&self, addr: u128) -> impl Iterator<Item = &Slot> {
        let h = index(addr);
        (0..PROBE).map(move |i| &self.slots[(h + i) & self.mask])
    }

    /// Learns `addr` for pattern `pattern` until `expiry` (Unix ns).
    pub fn learn(&self, addr: u128, pattern: u64, expiry: u64, now: u64) -> Learn {
        let (hi, lo) = ((addr >> 64) as u64, addr as u64);
        let mut free: Option<(&Slot, u64)> = None;
        for s in self.window(addr) {
            let e = s.expiry.load(Ordering::Acquire);
            if e == LOCKED {
                continue;
            }
            if e > now {
                let same = s.hi.load(Ordering::Relaxed) == hi
                    && s.lo.load(Ordering::Relaxed) == lo
                    && s.pattern.load(Ordering::Relaxed) == pattern;
                fence(Ordering::Acquire);
                if same && s.expiry.load(Ordering::Relaxed) == e {
                    if expiry > e {
                        let _ = s.expiry.compare_exchange(e, expiry, Ordering::AcqRel, Ordering::Relaxed);
                    }
                    self.counts.refreshed.fetch_add(1, Ordering::Relaxed);
                    return Learn::Refreshed;
                }
            } else if free.is_none() {
                free = Some((s, e));
            }
        }
        let claimed =
            free.filter(|(s, e)| s.expiry.compare_exchange(*e, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok());
        let Some((s, _)) = claimed else {
            self.counts.full.fetch_add(1, Ordering::Relaxed);
            return Learn::Full;
        };
        s.hi.store(hi, Ordering::Relaxed);
        s.lo.store(lo, Ordering::Relaxed);
        s.pattern.store(pattern, Ordering::Relaxed);
        // publishes the words above with the expiry
        s.expiry.store(expiry.clamp(1, LOCKED - 1), Ordering::Release);
        self.counts.learned.fetch_add(1, Ordering::Relaxed);
        Learn::New
    }

    /// The patterns `addr` is learned for (live at `now`), into `out`;
    /// returns how many.
    pub fn lookup(&self, addr: u128, now: u64, out: &mut [u64]) -> usize {
        let (hi, lo) = ((addr >> 64) as u64, addr as u64);
        let mut n = 0;
        for s in self.window(addr) {
            if n == out.len() {
                break;
            }
            let Some((h, l, p, _)) = s.read(now) else { continue };
            if (h, l) == (hi, lo) && !out[..n].contains(&p) {
                out[n] = p;
                n += 1;
            }
        }
        n
    }

    /// Every live entry (control plane; allocates).
    pub fn entries(&self, now: u64) -> Vec<LearnedEntry> {
        let mut v = Vec::new();
        for s in self.slots.iter() {
            let Some((h, l, p, e)) = s.read(now) else { continue };
            let a = std::net::Ipv6Addr::from((u128::from(h) << 64) | u128::from(l));
            let addr = a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4);
            v.push(LearnedEntry { addr, pattern: p, expiry_ns: e });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_lookup_refresh_expire_and_full() {
        let t = FqdnTable::new(64);
        let a = key("10.9.0.2".parse().unwrap());
        let mut out = [0u64; 4];
        assert_eq!(t.lookup(a, 0, &mut out), 0);
        assert_eq!(t.learn(a, 11, 1_000, 0), Learn::New);
        assert_eq!(t.learn(a, 22, 1_000, 0), Learn::New);
        assert_eq!(t.learn(a, 11, 2_000, 10), Learn::Refreshed);
        assert_eq!(t.lookup(a, 500, &mut out), 2);
        assert_eq!(&out[..2], &[11, 22]);
        // 22 expires at 1000, 11 (refreshed) at 2000
        assert_eq!(t.lookup(a, 1_500, &mut out), 1);
        assert_eq!(out[0], 11);
        assert_eq!(t.lookup(a, 2_000, &mut out), 0);
        assert_eq!(t.entries(1_500).len(), 1);
        assert_eq!(t.entries(1_500)[0].addr.to_string(), "10.9.0.2");
        // a full window: PROBE live entries for one address, the next refused
        let b = key("fd00::9".parse().unwrap());
        for p in 0..PROBE as u64 {
            assert_ne!(t.learn(b, 100 + p, 10_000, 3_000), Learn::Full);
        }
        assert_eq!(t.learn(b, 999, 10_000, 3_000), Learn::Full);
        assert_eq!(t.counts.full.load(Ordering::Relaxed), 1);
        // after they expire the slots are reused
        assert_eq!(t.learn(b, 999, 20_000, 10_001), Learn::New);
    }

    #[test]
    fn concurrent_writers_and_readers_never_see_torn_entries() {
        let t = std::sync::Arc::new(FqdnTable::new(256));
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..50_000u64 {
                        let addr = u128::from(i % 64);
                        // the pattern encodes the address: a torn read would break it
                        t.learn(addr, (addr as u64) << 8 | w, 1 + (i % 7), i % 5);
                    }
                })
            })
            .collect();
        let mut out = [0u64; 8];
        for i in 0..200_000u64 {
            let addr = u128::from(i % 64);
            let n = t.lookup(addr, 0, &mut out);
            for p in &out[..n] {
                assert_eq!(p >> 8, addr as u64);
            }
        }
        for w in writers {
            w.join().unwrap();
        }
    }
}
