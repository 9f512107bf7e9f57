//! Per-rule hit counters: how many connections each rule decided (and each
//! observe rule would have), per worker.
//!
//! The slots belong to one compiled policy (they live in its
//! [`super::EngineConfig`], sized by its rules when the control plane
//! publishes it for a number of workers), one row per worker. A worker only
//! writes its own row, with a relaxed load and store ([`Counter::add`]): no
//! atomic read-modify-write, no lock, no allocation on the packet path. A
//! row is padded to whole cache lines, so two workers never write one line.
//! Counts outlive a re-compile on the control plane's side, which adds a
//! retired policy's counts to the rules of the next by their names.

use crate::policy::{Decision, RuleRef};
use crate::stats::Counter;

/// Counters per cache line.
const LINE: usize = 64 / std::mem::size_of::<Counter>();

/// The slots of one compiled policy: `workers` rows of one counter per rule.
#[derive(Default)]
pub struct RuleHits {
    workers: usize,
    rules: usize,
    /// Counters per row: `rules` rounded up to whole lines, plus one line.
    stride: usize,
    slots: Box<[Counter]>,
}

impl std::fmt::Debug for RuleHits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RuleHits {{ workers: {}, rules: {} }}", self.workers, self.rules)
    }
}

impl RuleHits {
    /// No slots: nothing is counted (a policy not published to workers).
    pub fn none() -> RuleHits {
        RuleHits::default()
    }

    /// Slots for `rules` rules and `workers` workers, zeroed (allocated here,
    /// on the control plane, before the policy reaches a worker).
    pub fn new(workers: usize, rules: usize) -> RuleHits {
        let stride = rules.div_ceil(LINE) * LINE + LINE;
        let slots = (0..workers * stride).map(|_| Counter::default()).collect();
        RuleHits { workers, rules, stride, slots }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn rules(&self) -> usize {
        self.rules
    }

    /// Counts `d` on `worker`'s row: its deciding rule and its observe rule.
    #[inline]
    pub fn count(&self, worker: usize, d: &Decision) {
        if worker >= self.workers {
            return;
        }
        let row = worker * self.stride;
        if let Some(r) = d.rule {
            self.add(row, r);
        }
        if let Some(o) = d.observed {
            self.add(row, o.rule);
        }
    }

    #[inline(always)]
    fn add(&self, row: usize, r: RuleRef) {
        let i = r.0 as usize;
        if i < self.rules {
            self.slots[row + i].add(1);
        }
    }

    /// Rule `r`'s count on `worker` (any thread; a relaxed load).
    pub fn get(&self, worker: usize, r: RuleRef) -> u64 {
        let i = r.0 as usize;
        if worker >= self.workers || i >= self.rules {
            return 0;
        }
        self.slots[worker * self.stride + i].get()
    }

    /// Rule `r`'s count over all workers.
    pub fn total(&self, r: RuleRef) -> u64 {
        (0..self.workers).map(|w| self.get(w, r)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, Observed, Reason};

    fn decided(rule: Option<u32>, observed: Option<u32>) -> Decision {
        Decision {
            action: Action::Allow,
            rule: rule.map(RuleRef),
            external: None,
            observed: observed.map(|r| Observed { action: Action::Reject, rule: RuleRef(r), external: None }),
            reason: Reason::PolicyAllow,
        }
    }

    #[test]
    fn each_worker_counts_its_decisions_in_its_own_lines() {
        let h = RuleHits::new(3, 10);
        h.count(0, &decided(Some(2), Some(9)));
        h.count(0, &decided(Some(2), None));
        h.count(2, &decided(Some(2), None));
        h.count(1, &decided(None, None)); // no match: no rule
        h.count(3, &decided(Some(1), None)); // no such worker: not counted
        h.count(1, &decided(Some(10), None)); // not a rule of this policy
        assert_eq!((h.get(0, RuleRef(2)), h.get(2, RuleRef(2)), h.total(RuleRef(2))), (2, 1, 3));
        assert_eq!(h.total(RuleRef(9)), 1);
        assert_eq!((0..10).map(|r| h.total(RuleRef(r))).sum::<u64>(), 4);
        // Rows start on their own cache line and never share one.
        assert!(h.stride.is_multiple_of(LINE) && h.stride > h.rules);
        assert_eq!(RuleHits::none().total(RuleRef(0)), 0);
        RuleHits::none().count(0, &decided(Some(0), None));
    }
}
