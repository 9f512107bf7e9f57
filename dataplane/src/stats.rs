//! Counters: one slot per way a packet can end.
//!
//! Each worker owns its counters and is their only writer; the control thread
//! reads them. A single writer needs no read-modify-write instruction, so an
//! update is a relaxed load and a relaxed store (no `lock` prefix on x86), and
//! workers add their per-burst totals once per burst.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter with exactly one writer.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Reads the current value (any thread).
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a packet was dropped. Every drop the gateway makes has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// The transmit queue of the opposite port did not take the packet.
    TxFull = 0,
    /// The ring to the worker that owns the packet's flow was full.
    HandoffFull = 1,
}

impl DropReason {
    pub const ALL: [DropReason; 2] = [DropReason::TxFull, DropReason::HandoffFull];
    pub const COUNT: usize = Self::ALL.len();

    /// A stable snake_case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TxFull => "tx_full",
            DropReason::HandoffFull => "handoff_full",
        }
    }
}

/// Counters for one direction of one worker (packets received from one port).
#[derive(Debug, Default)]
pub struct DirStats {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    pub drops: [Counter; DropReason::COUNT],
}

impl DirStats {
    #[inline]
    pub fn drop_count(&self, r: DropReason) -> &Counter {
        &self.drops[r as usize]
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}

/// A worker's counters: `from_inside` counts frames received on the inside port
/// (workload → network), `from_outside` the reverse.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub from_inside: DirStats,
    pub from_outside: DirStats,
    /// Frames handed to the worker that owns their flow.
    pub handed_off: Counter,
    /// Frames received from other workers' hand-off rings.
    pub handed_in: Counter,
    /// Poll iterations that received nothing on any queue.
    pub idle_polls: Counter,
    /// Poll iterations in total.
    pub polls: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_accumulates() {
        let c = Counter::default();
        c.add(3);
        c.add(4);
        assert_eq!(c.get(), 7);
    }

    #[test]
    fn drop_slots_are_distinct() {
        let s = DirStats::default();
        s.drop_count(DropReason::TxFull).add(2);
        assert_eq!(s.dropped_total(), 2);
        for r in DropReason::ALL {
            assert!(!r.name().is_empty());
        }
    }
}
