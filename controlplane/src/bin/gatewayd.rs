//! gatewayd: the gateway's fast path on DPDK.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use controlplane::config::GatewayConfig;
use controlplane::gateway::Gateway;
use controlplane::report;

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
    if args.check {
        println!("gatewayd: {} is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("gatewayd: cannot install a handler for signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let gw = match Gateway::start(&cfg) {
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
    println!("gatewayd: running; stop with SIGINT/SIGTERM");
    let started = Instant::now();
    let interval = (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval));
    let deadline = (args.duration > 0.0).then(|| started + Duration::from_secs_f64(args.duration));
    let mut prev = gw.snapshot();
    let mut next_report = interval.map(|i| started + i);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
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
    let last = gw.shutdown();
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
