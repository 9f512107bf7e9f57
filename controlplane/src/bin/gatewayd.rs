//! gatewayd: the gateway's fast path on DPDK.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use controlplane::api::link::ControlPlane;
use controlplane::config::GatewayConfig;
use controlplane::flowlog;
use controlplane::gateway::Gateway;
use controlplane::report;
use dataplane::engine::EngineConfig;

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
    let args = Args::parse();
    let cfg = match GatewayConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatewayd: {e}");
            return ExitCode::from(2);
        }
    };
    // The policy is compiled and its keys derived before anything starts:
    // a bad document is refused whole (fail closed).
    // With [control], the config store decides instead (below).
    let engine = match &cfg.policy {
        Some(p) if cfg.control.is_none() || args.check => match EngineConfig::load(&p.file) {
            Ok(e) => Some(e),
            Err(errors) => {
                eprintln!("gatewayd: invalid policy {} ({} problem(s)):", p.file.display(), errors.len());
                for e in &errors {
                    eprintln!("  {e}");
                }
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let mut flowlog_out = match &cfg.flowlog {
        Some(f) => match std::fs::OpenOptions::new().create(true).append(true).open(&f.file) {
            Ok(file) => Some(std::io::BufWriter::new(file)),
            Err(e) => {
                eprintln!("gatewayd: flowlog.file: cannot open {}: {e}", f.file.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    if args.check {
        println!("gatewayd: {} is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    if args.fleet_key {
        let Some(c) = &cfg.control else {
            eprintln!("gatewayd: --fleet-key needs [control] (the key lives in its state_dir)");
            return ExitCode::from(2);
        };
        return match controlplane::fleet::agent::signing_public(&c.state_dir) {
            Ok(k) => {
                println!("{k}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatewayd: fleet key: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // The control plane restores the persisted policy (else [policy] file as
    // version 1, else the before-config policy) before the ports start.
    let mut control = None;
    let engine = match &cfg.control {
        None => engine,
        Some(c) => match ControlPlane::open(c, cfg.policy.as_ref().map(|p| p.file.as_path())) {
            Ok((cp, e)) => {
                control = Some(cp);
                Some(e)
            }
            Err(e) => {
                eprintln!("gatewayd: control: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let reload = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()) {
        eprintln!("gatewayd: cannot install a handler for SIGHUP: {e}");
        return ExitCode::FAILURE;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("gatewayd: cannot install a handler for signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let policy_line = policy_line(&cfg, control.as_ref(), engine.as_ref());
    let mut gw = match Gateway::start(&cfg, engine) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gatewayd: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    println!("{policy_line}");
    if let (Some(cp), Some(c)) = (control.as_mut(), &cfg.control) {
        if let Err(e) = cp.serve() {
            eprintln!("gatewayd: control: {e}");
            return ExitCode::FAILURE;
        }
        let st = cp.store.status();
        println!(
            "gatewayd: control API on {} (read-only: {}), config version {} ({})",
            c.socket.display(),
            if c.readonly_socket.is_empty() { "none" } else { &c.readonly_socket },
            st.versions.document(),
            st.state.name()
        );
    }
    // Fleet mode: the persisted document is in force already; the agent
    // then registers, lists and applies what the fleet says.
    let mut fleet = None;
    if let (Some(f), Some(cp), Some(c)) = (&cfg.fleet, control.as_ref(), &cfg.control) {
        match controlplane::fleet::agent::FleetAgent::start(f, &c.state_dir, cp.store.clone()) {
            Ok(a) => {
                println!("gatewayd: fleet: gateway {} of {} at {}", f.name, f.prefix, f.endpoints.join(","));
                fleet = Some(a);
            }
            Err(e) => {
                eprintln!("gatewayd: fleet: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut drain = gw.take_drain();
    let history = gw.config_history();
    println!("gatewayd: running; stop with SIGINT/SIGTERM");
    let started = Instant::now();
    let interval = (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval));
    let deadline = (args.duration > 0.0).then(|| started + Duration::from_secs_f64(args.duration));
    let mut prev = gw.snapshot();
    let mut next_report = interval.map(|i| started + i);
    let mut records = Vec::with_capacity(4096);
    // Drains flow events until the queues are empty or `budget` has passed;
    // true if events were left behind. Bounded so that an event storm (a
    // flood of forged SYNs is one event per frame) cannot keep this thread
    // from its other duties: the stop flag, the deadline, SIGHUP, the control
    // plane's tick, the stats lines. What the workers queue meanwhile waits
    // in their queues, and what does not fit there is counted as lost.
    // Returns how many it took, and whether it left some behind.
    let mut write_events =
        |drain: &mut Option<flowlog::Drain>, control: &mut Option<ControlPlane>, budget: Duration| {
            let Some(d) = drain.as_mut() else { return (0, false) };
            let until = Instant::now() + budget;
            let mut took = 0;
            while Instant::now() < until {
                records.clear();
                took += d.poll_records(4096, &mut records);
                if let Some(cp) = control.as_mut() {
                    cp.push_records(&history, &records, &d.lost_per_worker(), &d.queued_per_worker());
                }
                if records.is_empty() {
                    return (took, false);
                }
                if let Some(out) = flowlog_out.as_mut() {
                    let ev = flowlog::resolve_all(&history, &records);
                    if let Err(e) = flowlog::write_json_lines(out, &ev) {
                        eprintln!("gatewayd: writing flow events: {e}");
                    }
                }
            }
            (took, true)
        };
    // Events left behind: no sleep before the next round. Events flowing: a
    // short one, so that the workers' queues stay short (a queue read soon
    // after it was written is still in cache, and one that never fills
    // loses nothing: 65536 records last 13 ms at 5 M events/s). Quiet: the
    // control plane's tick.
    const DRAIN_PER_TICK: Duration = Duration::from_millis(40);
    let mut pause = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(pause);
        pause = match write_events(&mut drain, &mut control, DRAIN_PER_TICK) {
            (_, true) => Duration::ZERO,
            (0, false) => Duration::from_millis(50),
            (_, false) => Duration::from_millis(1),
        };
        if let Some(cp) = control.as_mut() {
            cp.tick(&gw);
        }
        if reload.swap(false, Ordering::Relaxed) {
            if let Some(cp) = control.as_mut() {
                match cp.reload_file(&gw) {
                    Ok(v) => println!("gatewayd: SIGHUP: policy file applied as version {v}"),
                    Err(e) => eprintln!("gatewayd: SIGHUP: policy file refused, the running one stays:\n  {e}"),
                }
            } else if let Some(p) = &cfg.policy {
                match EngineConfig::load(&p.file) {
                    Ok(e) => {
                        let g = e.generation();
                        if gw.publish(e).is_ok() {
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
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if let (Some(at), Some(i)) = (next_report, interval) {
            if now >= at {
                let snap = gw.snapshot();
                println!("{}", report::rate_line(&prev, &snap));
                prev = snap;
                next_report = Some(at + i);
            }
        }
    }
    println!("gatewayd: stopping");
    if let Some(a) = fleet.take() {
        a.stop();
    }
    // Workers first: stopping the API server takes up to a second, and a
    // worker left running meanwhile would overflow its event queue.
    let last = gw.shutdown();
    // what the workers queued before they stopped, to the log and the readers
    while write_events(&mut drain, &mut control, Duration::from_secs(1)).1 {}
    if let Some(cp) = control.as_mut() {
        cp.stop();
    }
    print!("{}", report::final_report(&last));
    if let Some(path) = &args.counters_json {
        let text = serde_json::to_string_pretty(&report::final_json(&last)).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("gatewayd: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
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
