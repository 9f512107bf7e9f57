//! The fleet benchmark (issue 12): simulated gateways against a real etcd.
//!
//! K **full** gateways run the real fleet agent and config store (list,
//! verify, build, compile, persist, apply, status); the other N−K are
//! **light** (`light.rs`): registered under a kept-alive lease, their PUs
//! published and signed, a watch open on the prefix, a status written after
//! every change, so that etcd carries the whole fleet's data, watchers and
//! writes. On a 2-core machine N full agents would each compile a
//! 100k-identity document on every change, N times the CPU one real gateway
//! (its own machine) spends; the latencies are those of the K full agents
//! sharing this machine's cores, then of one agent alone (the others
//! stopped). Run by `benches/fleet.sh` (its header lists what is measured).
//!
//! - `gen.rs`: the fleet document and the PUs; `light.rs`: light gateways;
//!   `full.rs`: full ones and the stamps of what their stores publish;
//! - `rounds.rs`: the timed changes; `relist.rs`: what a re-list costs;
//! - `probe.rs`: etcd's counters, CPU, RSS; `report.rs`: the figures.
//!
//!   fleet_bench --etcd http://127.0.0.1:2379 [--gateways 100 --pus 1000 --rounds 20 --full 5] [--quick] [--json out.json]

mod full;
mod gen;
mod light;
mod probe;
mod relist;
mod report;
mod rounds;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use controlplane::fleet::layout::Layout;
use controlplane::fleet::model::{FleetDocument, LocalPu};
use controlplane::fleet::operator::{self, FleetApplyOptions};
use controlplane::fleet::FleetConfig;
use ed25519_dalek::SigningKey;
use etcd_client::{Client, DeleteOptions};
use tokio::sync::{mpsc, oneshot, Semaphore};

use full::{Full, Tracker};
use light::{Cmd, Light};
use probe::Probe;
use report::Summary;

#[derive(Parser, Debug)]
#[command(about = "fleet benchmark: simulated gateways against a real etcd (issue 12)")]
struct Args {
    /// etcd's client URL (plain http: its /metrics is read there).
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    etcd: String,
    /// etcd's pid, for its CPU time (optional).
    #[arg(long)]
    etcd_pid: Option<u32>,
    /// The bench's key prefix (deleted at the start and the end).
    #[arg(long, default_value = "/fleet-bench")]
    prefix: String,
    /// Gateways in the fleet (default 100; --quick 10).
    #[arg(long)]
    gateways: Option<usize>,
    /// PUs per gateway (default 1000; --quick 100).
    #[arg(long)]
    pus: Option<usize>,
    /// Rounds of each measured change (default 20; --quick 5).
    #[arg(long)]
    rounds: Option<usize>,
    /// Full agents among the gateways (default 5; --quick 3).
    #[arg(long)]
    full: Option<usize>,
    /// Rulesets of 10 rules in the fleet document.
    #[arg(long, default_value_t = 100)]
    rulesets: usize,
    /// Seconds of steady state measured.
    #[arg(long)]
    steady_s: Option<f64>,
    /// Rounds of the one-rule change with every gateway full (0: skip); run
    /// only when the estimated memory fits.
    #[arg(long, default_value_t = 3)]
    all_full_rounds: usize,
    /// Smoke run: 10 gateways × 100 PUs, 5 rounds, 3 full, 3 s of steady state.
    #[arg(long)]
    quick: bool,
    /// Keep the stores in memory (gatewayd persists every apply under its state_dir).
    #[arg(long)]
    no_persist: bool,
    /// Where the gateways' state directories go (a temporary directory under it).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// How long one change may take before it counts as timed out.
    #[arg(long, default_value_t = 30.0)]
    timeout_s: f64,
    /// Write the summary as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct Opts {
    etcd: String,
    etcd_pid: Option<u32>,
    prefix: String,
    gateways: usize,
    pus: usize,
    rounds: usize,
    full: usize,
    rulesets: usize,
    steady_s: f64,
    all_full_rounds: usize,
    persist: bool,
    work_dir: PathBuf,
    timeout: Duration,
    json: Option<PathBuf>,
}

impl Opts {
    fn from(a: Args) -> Result<Opts, String> {
        let q = a.quick;
        let o = Opts {
            gateways: a.gateways.unwrap_or(if q { 10 } else { 100 }),
            pus: a.pus.unwrap_or(if q { 100 } else { 1000 }),
            rounds: a.rounds.unwrap_or(if q { 5 } else { 20 }),
            full: a.full.unwrap_or(if q { 3 } else { 5 }),
            steady_s: a.steady_s.unwrap_or(if q { 3.0 } else { 10.0 }),
            etcd: a.etcd,
            etcd_pid: a.etcd_pid,
            prefix: a.prefix,
            rulesets: a.rulesets,
            all_full_rounds: a.all_full_rounds,
            persist: !a.no_persist,
            work_dir: a.work_dir.unwrap_or_else(std::env::temp_dir),
            timeout: Duration::from_secs_f64(a.timeout_s.max(1.0)),
            json: a.json,
        };
        if !(1..=250).contains(&o.gateways) || o.full == 0 || o.full > o.gateways {
            return Err("need 1 <= --full <= --gateways <= 250 (gateway g fronts 10.g.0.0/16)".into());
        }
        if !(1..=60_000).contains(&o.pus) || o.rounds == 0 || o.rulesets == 0 {
            return Err("need 1 <= --pus <= 60000, --rounds >= 1, --rulesets >= 1".into());
        }
        Ok(o)
    }

    fn light(&self) -> usize {
        self.gateways - self.full
    }
}

fn main() -> ExitCode {
    let opts = match Opts::from(Args::parse()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fleet_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = |name: &str, threads: usize| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).thread_name(name).enable_all().build()
    };
    let (stamps, lights, main_rt) =
        match (rt("stamps", 1), rt("light", 2), tokio::runtime::Builder::new_current_thread().enable_all().build()) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => {
                eprintln!("fleet_bench: cannot start the runtimes");
                return ExitCode::FAILURE;
            }
        };
    let result = main_rt.block_on(async {
        let mut bench = Bench::setup(&opts, stamps.handle().clone(), lights.handle().clone()).await?;
        let summary = bench.run().await;
        bench.teardown().await;
        summary
    });
    match result {
        Ok(s) => {
            print!("{}", s.text());
            if let Some(p) = &opts.json {
                let text = serde_json::to_string_pretty(&s).unwrap_or_default();
                if let Err(e) = std::fs::write(p, text) {
                    eprintln!("fleet_bench: {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fleet_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn say(m: impl AsRef<str>) {
    println!("fleet_bench: {}", m.as_ref());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A running light gateway.
struct LightHandle {
    index: usize,
    cmds: mpsc::UnboundedSender<Cmd>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    signer: SigningKey,
}

struct Bench<'o> {
    o: &'o Opts,
    layout: Layout,
    client: Client,
    operator_key: SigningKey,
    probe: Probe,
    base: FleetConfig,
    _dir: tempfile::TempDir,
    root: PathBuf,
    stamps: tokio::runtime::Handle,
    lights_rt: tokio::runtime::Handle,
    events: mpsc::UnboundedSender<full::Event>,
    tracker: Tracker,
    fulls: Vec<Full>,
    lights: Vec<LightHandle>,
    /// Every gateway's PUs as published (index = gateway).
    pus: Vec<Vec<LocalPu>>,
    doc: FleetDocument,
    version: u64,
    /// Changes made so far (each change's port, each new PU's tags differ).
    round: usize,
    s: Summary,
}

impl<'o> Bench<'o> {
    async fn setup(
        o: &'o Opts,
        stamps: tokio::runtime::Handle,
        lights_rt: tokio::runtime::Handle,
    ) -> Result<Bench<'o>, String> {
        let layout = Layout::new(&o.prefix);
        let endpoints = vec![o.etcd.clone()];
        let mut client = Client::connect(&endpoints, None).await.map_err(|e| format!("{}: {e}", o.etcd))?;
        client
            .delete(layout.all(), Some(DeleteOptions::new().with_prefix()))
            .await
            .map_err(|e| format!("clearing {}: {e}", layout.all()))?;
        let probe = Probe::new(&o.etcd, o.etcd_pid)?;
        probe.sample()?;
        let operator_key = SigningKey::generate(&mut rand_core::OsRng);
        let base = FleetConfig {
            endpoints,
            prefix: o.prefix.clone(),
            name: String::new(),
            tags: vec!["site=bench".into()],
            networks: vec![],
            processing_units: None,
            operator_key: hex::encode(operator_key.verifying_key().to_bytes()),
            lease_ttl_s: 10,
            coalesce_ms: 20,
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password_file: None,
            api_address: String::new(),
        };
        let dir = tempfile::Builder::new()
            .prefix("fleet-bench.")
            .tempdir_in(&o.work_dir)
            .map_err(|e| format!("{}: {e}", o.work_dir.display()))?;
        let root = dir.path().to_owned();
        let (events, rx) = mpsc::unbounded_channel();
        let mut s = Summary {
            machine: machine(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            gateways: o.gateways,
            pus_per_gateway: o.pus,
            full_agents: o.full,
            light_gateways: o.light(),
            rules: o.rulesets * gen::RULES_PER_DIRECTION * 2,
            identities_per_agent: (o.gateways - 1) * o.pus,
            rounds: o.rounds,
            persist: o.persist,
            ..Summary::default()
        };
        s.notes.push(format!(
            "{} full agents (real FleetAgent + ConfigStore{}, one thread each) share this machine's cores; {} light gateways do all an agent does to etcd but build and compile nothing",
            o.full,
            if o.persist { ", persisting every apply" } else { ", in memory" },
            o.light()
        ));
        Ok(Bench {
            o,
            layout,
            client,
            operator_key,
            probe,
            base,
            _dir: dir,
            root,
            stamps,
            lights_rt,
            events,
            tracker: Tracker::new(rx, o.gateways),
            fulls: Vec::new(),
            lights: Vec::new(),
            pus: (0..o.gateways).map(|g| gen::pus(g, o.pus)).collect(),
            doc: FleetDocument::default(),
            version: 0,
            round: 0,
            s,
        })
    }

    async fn run(&mut self) -> Result<Summary, String> {
        self.enroll_and_publish().await?;
        self.start_full_agents().await?;
        let steady = self.steady_state().await?;
        self.lights_alive().await?;
        self.changes(&steady).await?;
        self.lights_alive().await?;
        self.alone().await?;
        self.relist().await?;
        self.lights_alive().await?;
        self.all_full().await?;
        self.s.load_at_end = load_average();
        self.s.steady = steady;
        Ok(std::mem::take(&mut self.s))
    }

    /// A light gateway that stopped (its watch or lease failed) would skew
    /// every figure after it: say which and why.
    async fn lights_alive(&mut self) -> Result<(), String> {
        for l in &mut self.lights {
            if l.task.is_finished() {
                let why = match (&mut l.task).await {
                    Ok(Ok(())) => "ended".to_owned(),
                    Ok(Err(e)) => e,
                    Err(e) => e.to_string(),
                };
                return Err(format!("light gateway {} stopped: {why}", gen::gateway_name(l.index)));
            }
        }
        Ok(())
    }

    async fn apply(&mut self) -> Result<u64, String> {
        let opts = FleetApplyOptions::default();
        operator::apply(&mut self.client, &self.layout, &self.operator_key, self.doc.clone(), opts).await.map_err(|p| {
            format!("fleet apply refused: {}", p.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("; "))
        })
    }

    /// Keys, the fleet document (everyone enrolled), the light gateways' PUs.
    async fn enroll_and_publish(&mut self) -> Result<(), String> {
        let o = self.o;
        let mut enrolled = Vec::new();
        for g in 0..o.full {
            let f = Full::prepare(&self.root, g, &self.base, self.pus[g].clone(), None, o.persist)?;
            enrolled.push((f.name.clone(), hex::encode(f.signing_public.to_bytes())));
            self.fulls.push(f);
        }
        let signers: Vec<SigningKey> =
            (o.full..o.gateways).map(|_| SigningKey::generate(&mut rand_core::OsRng)).collect();
        for (i, k) in signers.iter().enumerate() {
            enrolled.push((gen::gateway_name(o.full + i), hex::encode(k.verifying_key().to_bytes())));
        }
        self.doc = gen::fleet_document(o.rulesets, &enrolled);
        self.version = self.apply().await?;
        say(format!(
            "fleet version {} written: {} gateways enrolled, {} rules",
            self.version, o.gateways, self.s.rules
        ));
        let t0 = Instant::now();
        // A few at a time: they all take numbers from one counter.
        let gate = Arc::new(Semaphore::new(8));
        let mut tasks = Vec::new();
        for (i, signer) in signers.into_iter().enumerate() {
            let g = o.full + i;
            let (endpoints, layout, operator) =
                (self.base.endpoints.clone(), self.layout.clone(), self.operator_key.verifying_key());
            let pus = self.pus[g].clone();
            let gate = gate.clone();
            tasks.push(self.lights_rt.spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                Light::publish(&endpoints, layout, operator, g, signer, pus).await
            }));
        }
        for t in tasks {
            let light = t.await.map_err(|e| e.to_string())??;
            let (tx, rx) = mpsc::unbounded_channel();
            let (index, signer) = (light.index, light.signer.clone());
            let task = self.lights_rt.spawn(light.run(rx));
            self.lights.push(LightHandle { index, cmds: tx, task, signer });
        }
        self.s.publish_light_s = t0.elapsed().as_secs_f64();
        say(format!(
            "{} light gateways registered, {} PUs published and signed in {:.1} s; watching",
            o.light(),
            o.light() * o.pus,
            self.s.publish_light_s
        ));
        Ok(())
    }

    fn expected_identities(&self, g: usize) -> usize {
        self.pus.iter().enumerate().filter(|(i, _)| *i != g).map(|(_, p)| p.len()).sum()
    }

    fn full_slots(&self) -> Vec<usize> {
        self.fulls.iter().map(|f| f.index).collect()
    }

    /// The full gateways whose agent runs.
    fn running_slots(&self) -> Vec<usize> {
        self.fulls.iter().filter(|f| f.agent.is_some()).map(|f| f.index).collect()
    }

    /// Starts the full agents and waits until each enforces the whole fleet.
    async fn start_full_agents(&mut self) -> Result<(), String> {
        for f in &self.fulls {
            f.observe(&self.stamps, f.index, self.events.clone());
        }
        let acked: Vec<_> = self.fulls.iter().map(|f| (f.index, f.name.clone(), f.signing_public)).collect();
        let acks = full::observe_acks(self.base.endpoints.clone(), self.layout.clone(), acked, self.events.clone());
        self.stamps.spawn(async move {
            if let Err(e) = acks.await {
                eprintln!("fleet_bench: the status watch ended: {e}");
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = probe::rss_bytes();
        let t0 = Instant::now();
        for f in &mut self.fulls {
            f.start()?;
        }
        let (slots, v, m) = (self.full_slots(), self.version, self.o.pus);
        let want = self.expected_identities(0);
        let timeout = Duration::from_secs(600);
        let when =
            self.tracker.wait(&slots, timeout, |s| s.fleet_version == v && s.identities == want && s.pus == m).await;
        if when.iter().any(Option::is_none) {
            let states: Vec<String> = slots
                .iter()
                .map(|&i| {
                    let s = &self.tracker.seen[i];
                    format!(
                        "{}: v{} {} identities ({})",
                        gen::gateway_name(i),
                        s.fleet_version,
                        s.identities,
                        s.last_error
                    )
                })
                .collect();
            return Err(format!("the full agents did not converge in {timeout:?}: {}", states.join(", ")));
        }
        self.s.cold_start_s = when.iter().flatten().map(|t| t.duration_since(t0).as_secs_f64()).collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = probe::rss_bytes();
        let per = after.saturating_sub(before) as f64 / self.fulls.len() as f64;
        self.s.rss_before_agents_mb = before as f64 / 1e6;
        self.s.rss_after_agents_mb = after as f64 / 1e6;
        self.s.memory_per_agent_mb = per / 1e6;
        self.s.memory_per_100k_identities_mb = per / 1e6 * 100_000.0 / want.max(1) as f64;
        say(format!(
            "{} full agents enforce fleet version {v} with {want} identities each: cold start {:.1}-{:.1} s; {:.0} MB resident each",
            self.fulls.len(),
            self.s.cold_start_s.iter().copied().fold(f64::MAX, f64::min),
            self.s.cold_start_s.iter().copied().fold(0.0, f64::max),
            self.s.memory_per_agent_mb
        ));
        Ok(())
    }

    async fn teardown(&mut self) {
        for f in &mut self.fulls {
            f.stop();
        }
        for l in std::mem::take(&mut self.lights) {
            let (done, stopped) = oneshot::channel();
            let _ = l.cmds.send(Cmd::Stop(done));
            let _ = stopped.await;
        }
        let _ = self.client.delete(self.layout.all(), Some(DeleteOptions::new().with_prefix())).await;
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} cpus, load average {} at the start", load_average())
}

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
