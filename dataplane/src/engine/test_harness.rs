//! What the engine's in-process test harnesses share: reading a gateway's
//! counters per direction and naming the rule that decided a flow.

use crate::engine::EngineConfig;
use crate::events::FlowRecord;
use crate::stats::{DropReason, Note, WorkerStats};
use crate::Side;

pub(crate) trait Counted {
    fn worker_stats(&self) -> &WorkerStats;
    fn engine_config(&self) -> &EngineConfig;

    fn dropped(&self, side: Side, r: DropReason) -> u64 {
        self.worker_stats().read().dir(side).dropped(r)
    }

    fn noted(&self, side: Side, n: Note) -> u64 {
        self.worker_stats().read().dir(side).noted(n)
    }

    fn rule_name(&self, r: &FlowRecord) -> String {
        let d = r.decision().expect("decided");
        d.rule.and_then(|x| self.engine_config().policy.rule(x)).map(|x| x.name.to_string()).unwrap_or_default()
    }
}
