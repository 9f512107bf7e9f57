//! gatewayd: the gateway's fast path on DPDK.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use controlplane::api::link::ControlPlane;
use controlplane::api::server::ControlConfig;
use controlplane::config::GatewayConfig;
use controlplane::fleet::agent::FleetAgent;
use controlplane::gateway::{Gateway, Snapshot};
use controlplane::ipfix::Exporter;
use controlplane::metrics::MetricsServer;
use controlplane::report;
use controlplane::{dnsagg, dnslog, flowlog};
use dataplane::engine::EngineConfig;
use dataplane::events::{DnsRecord, FlowRecord};

/// The identity-aware bump-in-the-wire gateway.
///
/// Forwards frames between an inside port (workloads) and an outside port
/// (network) on pinned poll-mode workers. SIGINT or SIGTERM stops it: the
/// workers drain, the ports stop, and the final counters are printed.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The configuration file (TOML).
    #[arg(short, long, default_value = "/etc/gatewayd/gatewayd.toml")]
    config: PathBuf,
    /// Print a rate line every this many seconds (0: never).
    #[arg(long, default_value_t = 0.0)]
    stats_interval: f64,
    /// Stop by itself after this many seconds (0: run until signalled).
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// Also write the final counters to this file as JSON.
    #[arg(long)]
    counters_json: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Print this gateway's fleet signing key (created if absent), as the
    /// operator enrolls it in the fleet document, and exit.
    #[arg(long)]
    fleet_key: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) | Err(code) => code,
    }
}

/// An error message on stderr, and the exit code that goes with it.
fn fail(code: ExitCode, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("gatewayd: {message}");
    code
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    fail(ExitCode::from(2), message)
}

/// gatewayd from start to stop: each step returns, on failure, the exit code
/// (having said why).
fn run(args: Args) -> Result<ExitCode, ExitCode> {
    let cfg = GatewayConfig::load(&args.config).map_err(usage)?;
    // The policy is compiled and its keys derived before anything starts:
    // a bad document is refused whole (fail closed).
    // With [control], the config store decides instead (below).
    let engine = match &cfg.policy {
        Some(p) if cfg.control.is_none() || args.check => Some(load_policy(&p.file)?),
        _ => None,
    };
    let flowlog = open_flowlog(&cfg)?;
    let dnslog = open_dnslog(&cfg)?;
    if args.check {
        println!("gatewayd: {} is valid", args.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    if args.fleet_key {
        return print_fleet_key(&cfg);
    }
    // The control plane restores the persisted policy (else [policy] file as
    // version 1, else the before-config policy) before the ports start.
    let (mut control, engine) = open_control(&cfg, engine)?;
    let signals = Signals::register()?;
    let policy_line = policy_line(&cfg, control.as_ref(), engine.as_ref());
    let mut gw = Gateway::start(&cfg, engine).map_err(|e| fail(ExitCode::FAILURE, format!("cannot start: {e}")))?;
    print_ports(&cfg, &gw);
    println!("{policy_line}");
    if let (Some(cp), Some(c)) = (control.as_mut(), &cfg.control) {
        serve_control(cp, c)?;
    }
    let fleet = start_fleet(&cfg, control.as_ref())?;
    let _metrics = start_metrics(&cfg, control.as_ref())?;
    let ipfix = start_ipfix(&cfg)?;
    let events = Events {
        drain: gw.take_drain(),
        history: gw.config_history(),
        records: Vec::with_capacity(4096),
        flowlog,
        ipfix,
        dns: Vec::new(),
        dnslog,
        dnsagg: cfg
            .dnslog
            .as_ref()
            .filter(|d| d.aggregate_s > 0)
            .map(|d| dnsagg::Aggregator::new(d.aggregate_s, d.aggregate_max_keys)),
        names: dnslog::NameCache::new(dnslog::NAME_CACHE_ENTRIES),
    };
    println!("gatewayd: running; stop with SIGINT/SIGTERM");
    let mut running = Running { cfg: &cfg, gw, control, events, signals };
    running.run(&args);
    println!("gatewayd: stopping");
    if let Some(a) = fleet {
        a.stop();
    }
    let last = running.stop();
    print!("{}", report::final_report(&last));
    if let Some(path) = &args.counters_json {
        let text = serde_json::to_string_pretty(&report::final_json(&last)).unwrap_or_default();
        std::fs::write(path, text + "\n")
            .map_err(|e| fail(ExitCode::FAILURE, format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The policy file compiled, with its keys (every problem printed if not).
fn load_policy(file: &Path) -> Result<EngineConfig, ExitCode> {
    EngineConfig::load(file).map_err(|errors| {
        eprintln!("gatewayd: invalid policy {} ({} problem(s)):", file.display(), errors.len());
        for e in &errors {
            eprintln!("  {e}");
        }
        ExitCode::from(2)
    })
}

/// `[dnslog] file`, opened for appending.
fn open_dnslog(cfg: &GatewayConfig) -> Result<Option<BufWriter<File>>, ExitCode> {
    let Some(f) = &cfg.dnslog else { return Ok(None) };
    match std::fs::OpenOptions::new().create(true).append(true).open(&f.file) {
        Ok(file) => Ok(Some(BufWriter::new(file))),
        Err(e) => Err(usage(format!("dnslog.file: cannot open {}: {e}", f.file.display()))),
    }
}

/// `[flowlog] file`, opened for appending.
fn open_flowlog(cfg: &GatewayConfig) -> Result<Option<BufWriter<File>>, ExitCode> {
    let Some(f) = &cfg.flowlog else { return Ok(None) };
    match std::fs::OpenOptions::new().create(true).append(true).open(&f.file) {
        Ok(file) => Ok(Some(BufWriter::new(file))),
        Err(e) => Err(usage(format!("flowlog.file: cannot open {}: {e}", f.file.display()))),
    }
}

/// `--fleet-key`: this gateway's fleet signing key.
fn print_fleet_key(cfg: &GatewayConfig) -> Result<ExitCode, ExitCode> {
    let Some(c) = &cfg.control else {
        return Err(usage("--fleet-key needs [control] (the key lives in its state_dir)"));
    };
    let k = controlplane::fleet::agent::signing_public(&c.state_dir)
        .map_err(|e| fail(ExitCode::FAILURE, format!("fleet key: {e}")))?;
    println!("{k}");
    Ok(ExitCode::SUCCESS)
}

/// With `[control]`, the control plane and the engine config it restored;
/// without, `engine` as it is.
fn open_control(
    cfg: &GatewayConfig,
    engine: Option<EngineConfig>,
) -> Result<(Option<ControlPlane>, Option<EngineConfig>), ExitCode> {
    let Some(c) = &cfg.control else { return Ok((None, engine)) };
    let (cp, e) = ControlPlane::open(c, cfg.policy.as_ref().map(|p| p.file.as_path()))
        .map_err(|e| usage(format!("control: {e}")))?;
    Ok((Some(cp), Some(e)))
}

/// The flags the signal handlers raise.
struct Signals {
    /// SIGHUP: reload the policy file.
    reload: Arc<AtomicBool>,
    /// SIGINT, SIGTERM: stop.
    stop: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> Result<Signals, ExitCode> {
        let reload = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
            .map_err(|e| fail(ExitCode::FAILURE, format!("cannot install a handler for SIGHUP: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, stop.clone())
                .map_err(|e| fail(ExitCode::FAILURE, format!("cannot install a handler for signal {sig}: {e}")))?;
        }
        Ok(Signals { reload, stop })
    }
}

fn print_ports(cfg: &GatewayConfig, gw: &Gateway) {
    println!(
        "gatewayd: {} ({}) <-> {} ({}), {} worker(s) on lcores {:?}, {}",
        cfg.ports.inside,
        gw.inside().info().driver,
        cfg.ports.outside,
        gw.outside().info().driver,
        cfg.workers.len(),
        cfg.workers.iter().map(|w| w.lcore).collect::<Vec<_>>(),
        dpdk_bindings::version()
    );
}

/// The control API, once the gateway runs.
fn serve_control(cp: &mut ControlPlane, c: &ControlConfig) -> Result<(), ExitCode> {
    cp.serve().map_err(|e| fail(ExitCode::FAILURE, format!("control: {e}")))?;
    let st = cp.store.status();
    println!(
        "gatewayd: control API on {} (read-only: {}), config version {} ({})",
        c.socket.display(),
        if c.readonly_socket.is_empty() { "none" } else { &c.readonly_socket },
        st.versions.document(),
        st.state.name()
    );
    Ok(())
}

/// Fleet mode: the persisted document is in force already; the agent then
/// registers, lists and applies what the fleet says.
fn start_fleet(cfg: &GatewayConfig, control: Option<&ControlPlane>) -> Result<Option<FleetAgent>, ExitCode> {
    let (Some(f), Some(cp), Some(c)) = (&cfg.fleet, control, &cfg.control) else { return Ok(None) };
    let agent = FleetAgent::start(f, &c.state_dir, cp.store.clone())
        .map_err(|e| fail(ExitCode::FAILURE, format!("fleet: {e}")))?;
    println!("gatewayd: fleet: gateway {} of {} at {}", f.name, f.prefix, f.endpoints.join(","));
    Ok(Some(agent))
}

/// `[metrics]`: the Prometheus endpoint, served until it is dropped.
fn start_metrics(cfg: &GatewayConfig, control: Option<&ControlPlane>) -> Result<Option<MetricsServer>, ExitCode> {
    let (Some(m), Some(cp)) = (&cfg.metrics, control) else { return Ok(None) };
    let server = MetricsServer::start(m, cp.metrics_source()).map_err(|e| fail(ExitCode::FAILURE, e))?;
    println!("gatewayd: metrics on http://{}/metrics", server.addr);
    Ok(Some(server))
}

/// `[ipfix]`: the flow exporter.
fn start_ipfix(cfg: &GatewayConfig) -> Result<Option<Exporter>, ExitCode> {
    let Some(x) = &cfg.ipfix else { return Ok(None) };
    let e = Exporter::start(x).map_err(|e| fail(ExitCode::FAILURE, e))?;
    println!("gatewayd: IPFIX export to {}", e.collector);
    Ok(Some(e))
}

/// Where the workers' flow events go: the control plane's readers, the
/// flow log file and the IPFIX collector.
struct Events {
    drain: Option<flowlog::Drain>,
    history: Arc<flowlog::ConfigHistory>,
    records: Vec<(u32, FlowRecord)>,
    flowlog: Option<BufWriter<File>>,
    ipfix: Option<Exporter>,
    /// DNS records drained with the flow records, the DNS log, and the
    /// names they taught (put on flow events).
    dns: Vec<(u32, DnsRecord)>,
    dnslog: Option<BufWriter<File>>,
    /// `[dnslog] aggregate_s`: the DNS log gets per-interval records.
    dnsagg: Option<dnsagg::Aggregator>,
    names: dnslog::NameCache,
}

impl Events {
    /// Drains flow events until the queues are empty or `budget` has passed.
    /// Bounded so that an event storm (a flood of forged SYNs is one event
    /// per frame) cannot keep this thread from its other duties: the stop
    /// flag, the deadline, SIGHUP, the control plane's tick, the stats lines.
    /// What the workers queue meanwhile waits in their queues, and what does
    /// not fit there is counted as lost. Returns how many it took, and
    /// whether it left some behind.
    fn write(&mut self, control: &mut Option<ControlPlane>, budget: Duration) -> (usize, bool) {
        let Some(d) = self.drain.as_mut() else { return (0, false) };
        let until = Instant::now() + budget;
        let mut took = 0;
        while Instant::now() < until {
            self.records.clear();
            took += d.poll_records(4096, &mut self.records);
            // DNS first: names learned in this batch name its flows too.
            self.dns.clear();
            d.take_dns(&mut self.dns);
            if !self.dns.is_empty() {
                let dev = dnslog::resolve_all(&self.history, &self.dns);
                for e in &dev {
                    self.names.learn(e);
                }
                if let Some(cp) = control.as_ref() {
                    cp.push_dns(&dev);
                }
                match (self.dnslog.as_mut(), self.dnsagg.as_mut()) {
                    (Some(out), None) => {
                        if let Err(e) = dnslog::write_json_lines(out, &dev) {
                            eprintln!("gatewayd: writing DNS events: {e}");
                        }
                    }
                    (Some(out), Some(agg)) => {
                        let now = unix_ns();
                        let early: Vec<_> = dev.iter().flat_map(|e| agg.add(e, now)).collect();
                        write_values(out, &early);
                    }
                    _ => {}
                }
            }
            if let (Some(out), Some(agg)) = (self.dnslog.as_mut(), self.dnsagg.as_mut()) {
                write_values(out, &agg.due(unix_ns()));
            }
            if let Some(cp) = control.as_mut() {
                let (lost, queued) = (d.lost_per_worker(), d.queued_per_worker());
                cp.push_records(&self.history, &self.records, &self.names, &lost, &queued);
            }
            if self.records.is_empty() {
                return (took, false);
            }
            if self.flowlog.is_none() && self.ipfix.is_none() {
                continue;
            }
            let mut ev = flowlog::resolve_all(&self.history, &self.records);
            if !self.names.is_empty() {
                for e in ev.iter_mut() {
                    let (pu, remote) =
                        if e.source.kind == "pu" { (&e.source, &e.destination) } else { (&e.destination, &e.source) };
                    if let Some(pu) = &pu.name {
                        e.remote_dns_name = self.names.name(pu, remote.ip, e.time_ns).map(str::to_owned);
                    }
                }
            }
            if let Some(out) = self.flowlog.as_mut() {
                if let Err(e) = flowlog::write_json_lines(out, &ev) {
                    eprintln!("gatewayd: writing flow events: {e}");
                }
            }
            if let Some(x) = &self.ipfix {
                // moved, not copied: the exporter's thread takes the batch as it is
                x.offer_owned(ev);
            }
        }
        (took, true)
    }

    /// Writes the DNS records still aggregating; sends what the exporter
    /// still holds; says what both did.
    fn close(mut self) {
        if let (Some(out), Some(agg)) = (self.dnslog.as_mut(), self.dnsagg.as_mut()) {
            write_values(out, &agg.flush(unix_ns(), dnsagg::Flush::Stop));
            println!(
                "gatewayd: DNS log aggregation: {} records, {} early flushes (table full)",
                agg.records, agg.early_flushes
            );
        }
        let Some(x) = self.ipfix else { return };
        let c = x.stop();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "gatewayd: IPFIX: {} flow events offered, {} records sent in {} messages, {} dropped (queue full), {} send errors ({} records)",
            n(&c.offered),
            n(&c.records_sent),
            n(&c.messages_sent),
            n(&c.dropped),
            n(&c.send_errors),
            n(&c.records_lost)
        );
    }
}

/// Unix time in ns (the control thread's clock, for DNS aggregation intervals).
fn unix_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Writes JSON values as lines (the aggregated DNS records).
fn write_values(out: &mut BufWriter<File>, v: &[serde_json::Value]) {
    if v.is_empty() {
        return;
    }
    let mut write = || -> std::io::Result<()> {
        for r in v {
            serde_json::to_writer(&mut *out, r)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    };
    if let Err(e) = write() {
        eprintln!("gatewayd: writing DNS records: {e}");
    }
}

/// The running gateway and what its control thread serves.
struct Running<'a> {
    cfg: &'a GatewayConfig,
    gw: Gateway,
    control: Option<ControlPlane>,
    events: Events,
    signals: Signals,
}

impl Running<'_> {
    /// The control thread's loop, until a signal or `--duration` stops it.
    fn run(&mut self, args: &Args) {
        // Events left behind: no sleep before the next round. Events flowing: a
        // short one, so that the workers' queues stay short (a queue read soon
        // after it was written is still in cache, and one that never fills
        // loses nothing: 65536 records last 13 ms at 5 M events/s). Quiet: the
        // control plane's tick.
        const DRAIN_PER_TICK: Duration = Duration::from_millis(40);
        let started = Instant::now();
        let interval = (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval));
        let deadline = (args.duration > 0.0).then(|| started + Duration::from_secs_f64(args.duration));
        let mut prev = self.gw.snapshot();
        let mut next_report = interval.map(|i| started + i);
        let mut pause = Duration::ZERO;
        while !self.signals.stop.load(Ordering::Relaxed) {
            std::thread::sleep(pause);
            pause = match self.events.write(&mut self.control, DRAIN_PER_TICK) {
                (_, true) => Duration::ZERO,
                (0, false) => Duration::from_millis(50),
                (_, false) => Duration::from_millis(1),
            };
            if let Some(cp) = self.control.as_mut() {
                cp.tick(&self.gw);
            }
            if self.signals.reload.swap(false, Ordering::Relaxed) {
                self.reload();
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if let (Some(at), Some(i)) = (next_report, interval) {
                if now >= at {
                    let snap = self.gw.snapshot();
                    println!("{}", report::rate_line(&prev, &snap));
                    prev = snap;
                    next_report = Some(at + i);
                }
            }
        }
    }

    /// SIGHUP: the policy file again, through the store when there is one.
    fn reload(&mut self) {
        if let Some(cp) = self.control.as_mut() {
            match cp.reload_file(&self.gw) {
                Ok(v) => println!("gatewayd: SIGHUP: policy file applied as version {v}"),
                Err(e) => eprintln!("gatewayd: SIGHUP: policy file refused, the running one stays:\n  {e}"),
            }
        } else if let Some(p) = &self.cfg.policy {
            match EngineConfig::load(&p.file) {
                Ok(e) => {
                    let g = e.generation();
                    if self.gw.publish(e).is_ok() {
                        println!("gatewayd: SIGHUP: policy {} reloaded (generation {g})", p.file.display());
                    }
                }
                Err(errors) => {
                    eprintln!("gatewayd: SIGHUP: policy {} refused, the running one stays:", p.file.display());
                    for e in &errors {
                        eprintln!("  {e}");
                    }
                }
            }
        }
    }

    /// Stops the workers, writes what they queued, stops the control plane;
    /// the final counters.
    fn stop(self) -> Snapshot {
        let Running { gw, mut control, mut events, .. } = self;
        // Workers first: stopping the API server takes up to a second, and a
        // worker left running meanwhile would overflow its event queue.
        let last = gw.shutdown();
        // what the workers queued before they stopped, to the log and the readers
        while events.write(&mut control, Duration::from_secs(1)).1 {}
        if let Some(cp) = control.as_mut() {
            cp.stop();
        }
        events.close();
        last
    }
}

/// The start-up line that says which policy is in force and where it came
/// from: a file, the persisted state of version N, or none (failing closed or
/// open); and, when it drops everything it judges, that too.
fn policy_line(cfg: &GatewayConfig, control: Option<&ControlPlane>, engine: Option<&EngineConfig>) -> String {
    use controlplane::store::{EnforcementState, Source};
    let (origin, drops_all) = match control {
        Some(cp) => {
            let st = cp.store.status();
            let origin = match (&st.source, st.state) {
                (Some(Source::Restored(path)), _) => {
                    format!("persisted state of version {} restored from {}", st.versions.document(), path.display())
                }
                (Some(Source::Apply), _) => match &cfg.policy {
                    Some(p) => format!("file {} (applied as version {})", p.file.display(), st.versions.document()),
                    None => format!("version {}", st.versions.document()),
                },
                (None, EnforcementState::NoConfigFailOpen) => {
                    return "gatewayd: policy: none: failing open (no config applied yet: everything is forwarded untouched)"
                        .into()
                }
                (None, _) => {
                    return "gatewayd: policy: none: failing closed (no config applied yet: everything judged is dropped)"
                        .into()
                }
            };
            (origin, st.drops_all)
        }
        None => match &cfg.policy {
            Some(p) => (format!("file {}", p.file.display()), None),
            None => {
                return "gatewayd: policy: none ([policy] and [control] are not set: everything is forwarded untouched)"
                    .into()
            }
        },
    };
    let Some(e) = engine else {
        return format!("gatewayd: policy from {origin}");
    };
    let s = e.policy.stats();
    let drops_all = drops_all.or((s.pus == 0).then_some("no processing units"));
    format!(
        "gatewayd: policy from {origin} (revision {}): {} PUs, {} identities, {} rules, {} peers{}",
        e.policy.revision().unwrap_or("-"),
        s.pus,
        s.identities,
        s.rules,
        e.policy.peers().len(),
        drops_all.map(|w| format!("; enforcing a policy that drops everything: {w}")).unwrap_or_default()
    )
}
