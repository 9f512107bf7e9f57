//! Ending idle flows: a sweep over the flow table paced to one pass per
//! [`SWEEP_PASS_NS`], every ended flow told as an `End` event, and the
//! verified connections among them remembered against replays of their SYN.

use super::{Engine, ReplayMemory};
use crate::events::{EventKind, FlowRecord};
use crate::flow::FlowEntry;
use crate::Side;

/// One pass of [`Engine::sweep`] over the whole flow table takes about this
/// long, however often it is called: an idle flow ends within this much of
/// its timeout, and a busy worker does not re-read the table thousands of
/// times a second (a fixed budget per call did, at a cost per burst).
pub const SWEEP_PASS_NS: u64 = 1_000_000_000;

/// Most slots one [`Engine::sweep`] call examines (after a long pause the
/// backlog is dropped, not worked off in one burst's time).
pub const SWEEP_MAX: usize = 4096;

impl Engine {
    /// Ends idle flows (a bounded amount of work, paced by [`SWEEP_PASS_NS`];
    /// call once per burst) and turns every ended flow into an `End` event.
    pub fn sweep(&mut self, now: u64) {
        // (u64 arithmetic: a 128-bit division per burst showed in profiles.
        // Elapsed time is capped at one pass, slots are < 2^32: no overflow.)
        let slots = self.table.slots() as u64;
        let elapsed = now.saturating_sub(self.swept_at).min(SWEEP_PASS_NS);
        let due = (elapsed * slots / SWEEP_PASS_NS) as usize;
        if due > 0 {
            self.table.sweep(now, due.min(SWEEP_MAX));
            // Keep the fraction of a slot not yet due, unless the backlog was dropped.
            self.swept_at = if due > SWEEP_MAX || elapsed == SWEEP_PASS_NS {
                now
            } else {
                self.swept_at + due as u64 * SWEEP_PASS_NS / slots
            };
        }
        while let Some(e) = self.table.pop_ended() {
            let en = &e.entry;
            retire(&mut self.replay, en, e.at);
            let mut r =
                FlowRecord::new(EventKind::End, e.at, *en.key(), en.initiator(), en.pu().0, en.policy_generation());
            r.verdict = *en.verdict();
            r.remote_identity = en.remote_identity();
            let (pi, bi) = en.counters(Side::Inside);
            let (po, bo) = en.counters(Side::Outside);
            r.packets = [pi, po];
            r.bytes = [bi, bo];
            self.emit(Side::Inside, &r);
        }
        self.stats.flows_active.set(self.table.len() as u64);
        self.stats.flows_evicted.set(self.table.stats().evicted);
        let r = self.replay.stats();
        self.stats.replay_remembered.set(r.remembered);
        self.stats.replay_overwritten.set(r.overwritten);
    }
}

/// Remembers a connection that is leaving the table (ended, or replaced
/// by a new SYN on its tuple) if a replay of its SYN would verify: its
/// SYN came from the outside with a verified identity and it completed
/// its handshake.
#[inline]
pub(super) fn retire(replay: &mut ReplayMemory, e: &FlowEntry, now: u64) {
    if e.initiator() == Side::Outside && e.remote_identity().is_some() && e.was_established() {
        replay.remember(e.key(), e.syn_seq(), now);
    }
}
