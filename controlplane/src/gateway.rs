//! Bringing the gateway up and down.
//!
//! Order matters and is the reverse on the way down: EAL → mbuf pool → ports
//! (configured, started) → hand-off rings → workers launched on their lcores.
//! Stopping sets one flag; workers finish their burst, drain and return; then
//! the ports stop and the final counters are read.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::dns::learned::FqdnTable;
use dataplane::engine::{ArcSwap, Engine, EngineConfig};
use dataplane::stats::{WorkerCounts, WorkerStats};
use dataplane::worker::{Clock, EngineSetup, WorkerSetup};
use dpdk_bindings::port::{PortConfig, PortStats};
use dpdk_bindings::ring::{mbuf_ring, RingConsumer, RingProducer};
use dpdk_bindings::{lcore, Eal, Mempool, Port};

use crate::config::GatewayConfig;
use crate::flowlog::{ConfigHistory, Drain};
use crate::rulehits::RuleHitBook;

/// Why the gateway could not start.
#[derive(Debug)]
pub enum StartError {
    Dpdk { step: String, source: dpdk_bindings::Error },
    Config { field: String, message: String },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Dpdk { step, source } => write!(f, "{step}: {source}"),
            StartError::Config { field, message } => write!(f, "{field}: {message}"),
        }
    }
}

impl std::error::Error for StartError {}

fn dpdk(step: impl Into<String>) -> impl FnOnce(dpdk_bindings::Error) -> StartError {
    let step = step.into();
    move |source| StartError::Dpdk { step, source }
}

/// A running gateway.
pub struct Gateway {
    // Field order is drop order: ports close before the pool is freed, and
    // the EAL is cleaned up last.
    inside: Port,
    outside: Port,
    pool: Arc<Mempool>,
    workers: Vec<RunningWorker>,
    stop: Arc<AtomicBool>,
    started: Instant,
    /// The engine configuration the workers load once per burst (`None`: no
    /// policy, plain forwarding).
    config: Option<Arc<ArcSwap<EngineConfig>>>,
    /// Recent configurations, for resolving flow events.
    history: Arc<ConfigHistory>,
    /// Every published policy's rule-hit slots, read by name.
    rule_hits: Arc<RuleHitBook>,
    /// The workers' flow-event queues (taken by [`Gateway::take_drain`]).
    drain: Option<Drain>,
    /// Addresses learned for FQDN patterns: one table for every worker,
    /// handed to every configuration published (so it survives applies).
    fqdn: Arc<FqdnTable>,
    _eal: Eal,
}

struct RunningWorker {
    lcore: u32,
    queue: u16,
    stats: Arc<WorkerStats>,
    running: bool,
}

/// A snapshot of every counter.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub elapsed: Duration,
    pub inside: PortStats,
    pub outside: PortStats,
    pub inside_name: String,
    pub outside_name: String,
    /// (lcore, queue, counters) per worker.
    pub workers: Vec<(u32, u16, WorkerCounts)>,
    /// SYN → SYN-ACK at the client's gateway (ns), merged over workers:
    /// (smallest value of a bucket, count).
    pub handshake_ns: Vec<(u64, u64)>,
    /// Mbufs out of the pool, and in it. After [`Gateway::shutdown`] (workers
    /// and ports stopped) every mbuf should be back: `in_use` 0, or only
    /// what a device keeps in its receive descriptors.
    pub mbufs_in_use: u32,
    pub mbufs_available: u32,
    /// DNS counters, summed over workers, by name (docs/dns.md).
    pub dns: Vec<(&'static str, u64)>,
}

/// Unix time in ns (the workers' clock is the same time base).
fn dataplane_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Per-rule hit counting, on unless `GATEWAYD_RULE_HITS=off` (for the A/B
/// benchmark of its cost, benches/observability.sh; not a setting).
fn rule_hits_on() -> bool {
    std::env::var("GATEWAYD_RULE_HITS").map_or(true, |v| v != "off")
}

/// Every worker on an lcore the EAL enabled, and none on the main lcore
/// (the control thread's).
fn check_lcores(cfg: &GatewayConfig, eal: &Eal) -> Result<(), StartError> {
    let main = eal.main_lcore();
    for (i, w) in cfg.workers.iter().enumerate() {
        if w.lcore == main {
            return Err(StartError::Config {
                field: format!("workers[{i}].lcore"),
                message: format!("{} is the EAL main lcore, which runs the control thread; pick another", w.lcore),
            });
        }
        if !eal.lcore_enabled(w.lcore) {
            return Err(StartError::Config {
                field: format!("workers[{i}].lcore"),
                message: format!(
                    "{} is not enabled by the EAL arguments (-l/--lcores); enabled: {:?}",
                    w.lcore,
                    eal.worker_lcores()
                ),
            });
        }
    }
    Ok(())
}

/// The mbufs the gateway can hold at once, as a pool size (2^k − 1).
fn mbufs_needed(cfg: &GatewayConfig, engine: bool) -> u32 {
    // One queue per worker on each port.
    let n = cfg.workers.len() as u32;
    let desc = u32::from(cfg.ports.rx_desc) + u32::from(cfg.ports.tx_desc);
    // Every descriptor of both ports may hold an mbuf, plus bursts and
    // hand-off rings in flight and the per-lcore caches.
    let needed = 2 * n * desc
        + n * (4 * dpdk_bindings::burst::MAX_BURST as u32 + 2 * cfg.tuning.handoff_ring)
        + 512 * (n + 1)
        // datagrams held during UDP handshakes, and generated handshake frames
        + if engine { n * (cfg.udp_handshake.hold_total + 64) } else { 0 };
    needed.next_power_of_two() - 1
}

/// The hand-off rings between workers: `producers[from][to]` (none towards
/// itself), and each worker's consumers.
type HandoffRings = (Vec<Vec<Option<RingProducer>>>, Vec<Vec<RingConsumer>>);

fn handoff_rings(cfg: &GatewayConfig) -> Result<HandoffRings, StartError> {
    let n = cfg.workers.len();
    let mut producers: Vec<Vec<Option<RingProducer>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut consumers: Vec<Vec<RingConsumer>> = (0..n).map(|_| Vec::new()).collect();
    if n > 1 {
        for (from, row) in producers.iter_mut().enumerate() {
            for (to, slot) in row.iter_mut().enumerate() {
                if from == to {
                    continue;
                }
                let (p, c) = mbuf_ring(&format!("gw_ho_{from}_{to}"), cfg.tuning.handoff_ring, -1)
                    .map_err(dpdk(format!("creating hand-off ring {from}->{to}")))?;
                *slot = Some(p);
                consumers[to].push(c);
            }
        }
    }
    Ok((producers, consumers))
}

impl Gateway {
    /// Brings everything up and launches the workers. With `engine`, every
    /// frame goes through identity and policy; each worker gets a flow table
    /// of `cfg.flows.capacity` (allocated here) and a flow-event queue.
    pub fn start(cfg: &GatewayConfig, engine: Option<EngineConfig>) -> Result<Gateway, StartError> {
        let eal = Eal::init(cfg.eal.effective_args()).map_err(dpdk("EAL initialisation (check [eal] args)"))?;
        check_lcores(cfg, &eal)?;
        let n = cfg.workers.len();
        let queues = n as u16;
        let count = if cfg.tuning.mbufs > 0 { cfg.tuning.mbufs } else { mbufs_needed(cfg, engine.is_some()) };
        let pool = Arc::new(Mempool::new("gw_mbufs", count, 256, 2048 + 128, -1).map_err(dpdk(format!(
            "creating a pool of {count} mbufs (are hugepages reserved, or --no-huge given?)"
        )))?);
        let pcfg = |_: &str| PortConfig {
            rx_queues: queues,
            tx_queues: queues,
            rx_desc: cfg.ports.rx_desc,
            tx_desc: cfg.ports.tx_desc,
            promiscuous: true,
        };
        let mut inside = Port::configure(&cfg.ports.inside, &pcfg("inside"), pool.clone())
            .map_err(dpdk(format!("ports.inside {:?}", cfg.ports.inside)))?;
        let mut outside = Port::configure(&cfg.ports.outside, &pcfg("outside"), pool.clone())
            .map_err(dpdk(format!("ports.outside {:?}", cfg.ports.outside)))?;
        inside.start().map_err(dpdk("starting the inside port"))?;
        outside.start().map_err(dpdk("starting the outside port"))?;

        let (producers, consumers) = handoff_rings(cfg)?;

        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(ConfigHistory::default());
        let rule_hits = Arc::new(RuleHitBook::default());
        let fqdn = Arc::new(FqdnTable::new(crate::config::FQDN_TABLE_SLOTS));
        let config = engine.map(|mut e| {
            if rule_hits_on() {
                e.count_rule_hits(n);
            }
            e.fqdn = Some(fqdn.clone());
            let e = Arc::new(e);
            history.push(e.clone());
            rule_hits.publish(e.clone());
            Arc::new(ArcSwap::new(e))
        });
        let clock = Clock::now();
        let mut event_consumers = Vec::new();
        let mut engines: Vec<Option<EngineSetup>> = Vec::new();
        let mut all_stats = Vec::new();
        // Flow tables are read at random per packet: back them with huge pages.
        dataplane::flow::table::set_memory_advice(dpdk_bindings::advise_hugepages);
        // Flow events have readers only through the control plane (GetFlows)
        // or the flow-log file; with neither, the workers produce none.
        let export = cfg.control.is_some() || cfg.flowlog.is_some() || cfg.dnslog.is_some();
        for i in 0..n {
            let stats = Arc::new(WorkerStats::default());
            engines.push(config.as_ref().map(|c| {
                let events = export.then(|| {
                    let (p, q) = dataplane::events::channel(cfg.flows.events_queue);
                    event_consumers.push(q);
                    p
                });
                let seed = clock.tsc0 ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(std::process::id());
                let mut engine = Engine::new(cfg.flows.capacity, seed, stats.clone(), events);
                engine.set_worker(i);
                // validated with the file (`udp_handshake.*`)
                let _ = engine.set_udp_config(cfg.udp_handshake.engine_config());
                // validated with the file (`flows.replay_*`, `resets.*`)
                engine.set_replay_memory(cfg.flows.replay_memory, cfg.flows.replay_window_s, seed);
                let _ = engine.set_reply_limits(cfg.resets.engine_limits());
                EngineSetup { engine, config: c.clone(), pool: pool.clone(), clock }
            }));
            all_stats.push(stats);
        }
        let mut gw = Gateway {
            inside,
            outside,
            pool,
            workers: Vec::new(),
            stop: stop.clone(),
            started: Instant::now(),
            drain: (config.is_some() && export).then(|| Drain::new(event_consumers)),
            config,
            history,
            rule_hits,
            fqdn,
            _eal: eal,
        };
        for (i, ((w, (handoff_out, handoff_in)), (engine, stats))) in cfg
            .workers
            .iter()
            .zip(producers.into_iter().zip(consumers))
            .zip(engines.into_iter().zip(all_stats))
            .enumerate()
        {
            let setup = WorkerSetup {
                index: i,
                workers: n,
                inside_port: gw.inside.id(),
                outside_port: gw.outside.id(),
                queue: cfg.queue_of(i),
                burst: cfg.tuning.burst,
                idle_backoff: Duration::from_micros(cfg.tuning.idle_backoff_us),
                handoff_out,
                handoff_in,
                stats: stats.clone(),
                stop: stop.clone(),
                engine,
            };
            if let Err(e) = lcore::launch(w.lcore, move || setup.run()) {
                gw.stop_workers();
                return Err(dpdk(format!("launching worker {i} on lcore {}", w.lcore))(e));
            }
            gw.workers.push(RunningWorker { lcore: w.lcore, queue: cfg.queue_of(i), stats, running: true });
        }
        gw.started = Instant::now();
        Ok(gw)
    }

    /// Publishes a new engine configuration: workers pick it up at their next
    /// burst, never stopping; flows decided under the old one are decided
    /// again on their next packet. Fails if the gateway runs without a policy.
    pub fn publish(&self, mut new: EngineConfig) -> Result<(), EngineConfig> {
        match &self.config {
            Some(c) => {
                // Slots for the workers' rule hits, made here, not on a worker.
                if rule_hits_on() {
                    new.count_rule_hits(self.workers.len());
                }
                new.fqdn = Some(self.fqdn.clone());
                let new = Arc::new(new);
                self.history.push(new.clone());
                self.rule_hits.publish(new.clone());
                c.store(new);
                Ok(())
            }
            None => Err(new),
        }
    }

    /// Per-rule hit counts of the policy in force (kept across re-compiles).
    pub fn rule_hits(&self) -> Arc<RuleHitBook> {
        self.rule_hits.clone()
    }

    /// The addresses learned for FQDN patterns (`gwctl get fqdn`).
    pub fn fqdn_table(&self) -> Arc<FqdnTable> {
        self.fqdn.clone()
    }

    /// The configuration in force.
    pub fn engine_config(&self) -> Option<Arc<EngineConfig>> {
        self.config.as_ref().map(|c| c.load_full())
    }

    /// Recent configurations (to resolve flow events).
    pub fn config_history(&self) -> Arc<ConfigHistory> {
        self.history.clone()
    }

    /// The workers' flow-event queues, once (the caller drains them).
    pub fn take_drain(&mut self) -> Option<Drain> {
        self.drain.take()
    }

    pub fn inside(&self) -> &Port {
        &self.inside
    }

    pub fn outside(&self) -> &Port {
        &self.outside
    }

    /// Reads every counter (cheap; any time).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            elapsed: self.started.elapsed(),
            inside: self.inside.stats(),
            outside: self.outside.stats(),
            inside_name: self.inside.name().to_owned(),
            outside_name: self.outside.name().to_owned(),
            workers: self
                .workers
                .iter()
                .map(|w| {
                    let mut c = w.stats.read();
                    c.on_cpu_ns = on_cpu_ns(w.stats.os_thread.get()).unwrap_or(0);
                    (w.lcore, w.queue, c)
                })
                .collect(),
            handshake_ns: self.workers.iter().flat_map(|w| w.stats.handshake_ns.read()).collect(),
            mbufs_in_use: self.pool.in_use(),
            mbufs_available: self.pool.available(),
            dns: self.dns_counts(),
        }
    }

    /// The workers' DNS counters summed, by name, and the learned FQDN
    /// table's (`fqdn_*`, shared).
    fn dns_counts(&self) -> Vec<(&'static str, u64)> {
        let mut sum: Vec<(&'static str, u64)> = Vec::new();
        for w in &self.workers {
            for (i, (n, v)) in w.stats.dns.read().into_iter().enumerate() {
                match sum.get_mut(i) {
                    // a maximum over the workers, not a sum
                    Some(s) if n == "hold_max_ns" => s.1 = s.1.max(v),
                    Some(s) => s.1 += v,
                    None => sum.push((n, v)),
                }
            }
        }
        let c = &self.fqdn.counts;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        sum.push(("fqdn_table_entries", self.fqdn.entries(dataplane_now()).len() as u64));
        sum.push(("fqdn_table_learned", ld(&c.learned)));
        sum.push(("fqdn_table_refreshed", ld(&c.refreshed)));
        sum.push(("fqdn_table_full", ld(&c.full)));
        sum
    }

    /// Asks the workers to stop and waits for them.
    fn stop_workers(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in &mut self.workers {
            if w.running {
                lcore::wait(w.lcore);
                w.running = false;
            }
        }
    }

    /// Stops the workers (they drain), then stops and closes the ports;
    /// returns the final counters.
    pub fn shutdown(mut self) -> Snapshot {
        self.stop_workers();
        let mut snap = self.snapshot();
        // Closed, not only stopped: devices give back the mbufs they hold.
        self.inside.close();
        self.outside.close();
        snap.mbufs_in_use = self.pool.in_use();
        snap.mbufs_available = self.pool.available();
        snap
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Workers must never outlive the ports and pool they use.
        self.stop_workers();
    }
}

/// The time the kernel ran thread `tid` of this process, in ns (the first
/// field of its schedstat): a worker given less than the wall time shares
/// its core with other tasks.
fn on_cpu_ns(tid: u64) -> Option<u64> {
    if tid == 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    text.split_ascii_whitespace().next()?.parse().ok()
}
