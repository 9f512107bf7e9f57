//! The `Stats` service: the dataplane's counters (from a [`StatsSource`] the
//! gateway provides), the flow hub's, and latency histograms (hdrhistogram):
//! the dataplane's own (handshake paths) and the control plane's config
//! apply (validate + compile) times.

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use tonic::{Request, Response, Status};

use super::auth::Access;
use super::flows::FlowRing;
use super::pb;
use crate::store::ConfigStore;

/// Where the dataplane's counters come from. `gatewayd` implements it over
/// its running gateway; it is called on the control runtime, never on a worker.
pub trait StatsSource: Send + Sync {
    /// Ports, workers, reasons and the dataplane's histograms; the service
    /// fills in the flow hub, the config version and its own histograms.
    fn stats(&self) -> pb::GetStatsResponse;

    /// Every rule of the policy in force with its hits (none without a dataplane).
    fn rule_hits(&self) -> Vec<pb::RuleHits> {
        Vec::new()
    }

    /// The engine configuration in force (for `Explain`; none without a dataplane).
    fn policy_in_force(&self) -> Option<Arc<dataplane::engine::EngineConfig>> {
        None
    }
}

/// Rule-hit counts as the API carries them.
pub fn rule_hits_to_pb(counts: Vec<crate::rulehits::RuleCount>) -> Vec<pb::RuleHits> {
    counts
        .into_iter()
        .map(|c| pb::RuleHits {
            ruleset: c.ruleset,
            direction: c.direction.into(),
            rule: c.rule,
            action: c.action.into(),
            observe: c.observe,
            hits: c.hits,
            per_worker: c.per_worker,
        })
        .collect()
}

/// No dataplane (tests, or before the gateway starts).
pub struct NoDataplane;
impl StatsSource for NoDataplane {
    fn stats(&self) -> pb::GetStatsResponse {
        pb::GetStatsResponse::default()
    }
}

impl<F: Fn() -> pb::GetStatsResponse + Send + Sync> StatsSource for F {
    fn stats(&self) -> pb::GetStatsResponse {
        self()
    }
}

/// An hdrhistogram as the API carries it.
pub fn histogram_to_pb(name: &str, unit: &str, h: &Histogram<u64>) -> pb::Histogram {
    let empty = h.is_empty();
    pb::Histogram {
        name: name.into(),
        unit: unit.into(),
        count: h.len(),
        min: if empty { 0 } else { h.min() },
        max: if empty { 0 } else { h.max() },
        mean: if empty { 0.0 } else { h.mean() },
        percentiles: [0.5, 0.9, 0.99, 0.999]
            .iter()
            .map(|&q| pb::Percentile { quantile: q, value: if empty { 0 } else { h.value_at_quantile(q) } })
            .collect(),
    }
}

/// The flow hub's counters as the API carries them.
pub fn flowhub_to_pb(hub: &FlowRing) -> pb::FlowHubCounters {
    let h = hub.stats();
    pb::FlowHubCounters {
        capacity: h.capacity,
        held: h.held,
        received: h.received,
        overwritten: h.overwritten,
        readers: h.readers,
        lost_by_workers: h.lost_by_workers,
        notices: h.notices,
    }
}

pub struct StatsService {
    source: Arc<dyn StatsSource>,
    hub: Arc<FlowRing>,
    store: Arc<ConfigStore>,
    access: Access,
    started: Instant,
}

impl StatsService {
    pub fn new(
        source: Arc<dyn StatsSource>,
        hub: Arc<FlowRing>,
        store: Arc<ConfigStore>,
        access: Access,
    ) -> StatsService {
        StatsService { source, hub, store, access, started: Instant::now() }
    }
}

#[tonic::async_trait]
impl pb::stats_server::Stats for StatsService {
    async fn get_stats(&self, req: Request<pb::GetStatsRequest>) -> Result<Response<pb::GetStatsResponse>, Status> {
        self.access.role(&req)?;
        let source = self.source.clone();
        let with_rules = req.get_ref().rule_hits;
        let mut out = tokio::task::spawn_blocking(move || {
            let mut s = source.stats();
            if with_rules {
                s.rule_hits = source.rule_hits();
            }
            s
        })
        .await
        .map_err(|e| Status::internal(format!("reading the counters failed: {e}")))?;
        if out.uptime_s == 0.0 {
            out.uptime_s = self.started.elapsed().as_secs_f64();
        }
        out.flowhub = Some(flowhub_to_pb(&self.hub));
        out.config_version = self.store.versions().document();
        out.histograms.push(histogram_to_pb("config_apply", "us", &self.store.compile_histogram()));
        Ok(Response::new(out))
    }
}
