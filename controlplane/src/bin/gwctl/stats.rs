//! `gwctl stats`: the counters of ports, workers, reasons, flow tables,
//! queues, and the latency histograms.

use std::time::Duration;

use controlplane::api::client::Clients;
use controlplane::api::pb;

use crate::output::{print_json_pretty, Output};
use crate::{with_timeout, Res};

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Also print reasons and counters that are zero.
    #[arg(long)]
    all: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub async fn run(c: &mut Clients, a: StatsArgs, t: Duration) -> Res {
    let all = a.all;
    let s = with_timeout(t, "stats", c.stats.get_stats(pb::GetStatsRequest::default())).await?;
    if a.output == Output::Json {
        print_json_pretty(&s);
        return Ok(());
    }
    println!("uptime {:.1}s, config version {}", s.uptime_s, s.config_version);
    for p in &s.ports {
        println!(
            "port {:<7} {}: rx {} pkts {} B, tx {} pkts {} B, missed {}, rx-errors {}, tx-errors {}, rx-nombuf {}",
            p.role,
            p.name,
            p.rx_packets,
            p.rx_bytes,
            p.tx_packets,
            p.tx_bytes,
            p.missed,
            p.rx_errors,
            p.tx_errors,
            p.rx_nombuf
        );
    }
    let reasons = |v: &[pb::ReasonCount]| -> String {
        v.iter()
            .filter(|r| all || r.count > 0)
            .map(|r| format!("{} {}", r.reason, r.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for w in &s.workers {
        println!(
            "worker {} (lcore {}, queue {}): polls {} (idle {}), handed off {}, in {}, flows {}/{} (evicted {}), events queued {}, dropped {}, replay memory {} (forgotten early {})",
            w.index, w.lcore, w.queue, w.polls, w.idle_polls, w.handed_off, w.handed_in, w.flows_active, w.flow_capacity,
            w.flows_evicted, w.events_queued, w.event_queue_drops, w.replay_remembered, w.replay_overwritten
        );
        for (label, d) in [("inside->outside", &w.from_inside), ("outside->inside", &w.from_outside)] {
            if let Some(d) = d {
                let r = reasons(&d.reasons);
                println!(
                    "  {label}: rx {} pkts {} B, tx {} pkts {} B{}",
                    d.rx_packets,
                    d.rx_bytes,
                    d.tx_packets,
                    d.tx_bytes,
                    if r.is_empty() { String::new() } else { format!(" | {r}") }
                );
            }
        }
    }
    let r = reasons(&s.reasons);
    println!("reasons: {}", if r.is_empty() { "none counted".into() } else { r });
    if let Some(h) = &s.flowhub {
        println!(
            "flow ring: {} of {} held, {} received ({} lost-event notices), {} overwritten, {} readers, {} lost by worker queues",
            h.held, h.capacity, h.received, h.notices, h.overwritten, h.readers, h.lost_by_workers
        );
    }
    for h in &s.histograms {
        if h.count == 0 && !all {
            println!("histogram {}: no samples", h.name);
            continue;
        }
        let p: Vec<String> = h.percentiles.iter().map(|p| format!("p{} {}", p.quantile * 100.0, p.value)).collect();
        println!(
            "histogram {} ({}): n {}, min {}, mean {:.1}, {}, max {}",
            h.name,
            h.unit,
            h.count,
            h.min,
            h.mean,
            p.join(", "),
            h.max
        );
    }
    Ok(())
}
