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

    /// The values now, as plain numbers.
    pub fn read(&self) -> DirCounts {
        DirCounts {
            rx_packets: self.rx_packets.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
            drops: std::array::from_fn(|i| self.drops[i].get()),
        }
    }
}

/// A copy of [`DirStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirCounts {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl DirCounts {
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
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

impl WorkerStats {
    /// The values now, as plain numbers.
    pub fn read(&self) -> WorkerCounts {
        WorkerCounts {
            from_inside: self.from_inside.read(),
            from_outside: self.from_outside.read(),
            handed_off: self.handed_off.get(),
            handed_in: self.handed_in.get(),
            idle_polls: self.idle_polls.get(),
            polls: self.polls.get(),
        }
    }
}

/// A copy of [`WorkerStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounts {
    pub from_inside: DirCounts,
    pub from_outside: DirCounts,
    pub handed_off: u64,
    pub handed_in: u64,
    pub idle_polls: u64,
    pub polls: u64,
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
        s.drop_count(DropReason::HandoffFull).add(5);
        let c = s.read();
        assert_eq!(c.dropped(DropReason::TxFull), 2);
        assert_eq!(c.dropped(DropReason::HandoffFull), 5);
        assert_eq!(c.dropped_total(), 7);
        for r in DropReason::ALL {
            assert!(!r.name().is_empty());
        }
    }
}
