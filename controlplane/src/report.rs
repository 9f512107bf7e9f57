//! Counters as text: a periodic rate line and the final report.

use std::fmt::Write;

use dataplane::stats::{DirCounts, DropReason, WorkerCounts};

use crate::gateway::Snapshot;

fn sum(s: &Snapshot, f: impl Fn(&WorkerCounts) -> u64) -> u64 {
    s.workers.iter().map(|(_, _, w)| f(w)).sum()
}

/// Frames forwarded each way, summed over workers: (inside→outside, outside→inside).
pub fn forwarded(s: &Snapshot) -> (u64, u64) {
    (sum(s, |w| w.from_inside.tx_packets), sum(s, |w| w.from_outside.tx_packets))
}

/// One line of rates between two snapshots, e.g. for `--stats-interval`:
/// `stats: t=3.0s in->out 1.23 Mpps, out->in 0.00 Mpps, drops 0`.
pub fn rate_line(prev: &Snapshot, now: &Snapshot) -> String {
    let dt = (now.elapsed - prev.elapsed).as_secs_f64().max(1e-9);
    let (a1, b1) = forwarded(now);
    let (a0, b0) = forwarded(prev);
    let drops = |s: &Snapshot| sum(s, |w| w.from_inside.dropped_total() + w.from_outside.dropped_total());
    let rx = |s: &Snapshot| sum(s, |w| w.from_inside.rx_packets + w.from_outside.rx_packets);
    format!(
        "stats: t={:.1}s rx {:.3} Mpps, in->out {:.3} Mpps, out->in {:.3} Mpps, drops {}",
        now.elapsed.as_secs_f64(),
        (rx(now) - rx(prev)) as f64 / dt / 1e6,
        (a1 - a0) as f64 / dt / 1e6,
        (b1 - b0) as f64 / dt / 1e6,
        drops(now) - drops(prev),
    )
}

fn dir(out: &mut String, label: &str, d: &DirCounts) {
    let _ = write!(
        out,
        "    {label:<16} rx {:>12} pkts {:>14} B | tx {:>12} pkts {:>14} B",
        d.rx_packets, d.rx_bytes, d.tx_packets, d.tx_bytes
    );
    for r in DropReason::ALL {
        let _ = write!(out, " | {} {}", r.name(), d.dropped(r));
    }
    out.push('\n');
}

/// The full report printed at exit.
pub fn final_report(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "gatewayd counters after {:.1}s", s.elapsed.as_secs_f64());
    for (name, role, p) in [(&s.inside_name, "inside", &s.inside), (&s.outside_name, "outside", &s.outside)] {
        let _ = writeln!(
            out,
            "  port {role:<7} {name}: rx {} pkts {} B, tx {} pkts {} B, missed {}, rx-errors {}, tx-errors {}, rx-nombuf {}",
            p.ipackets, p.ibytes, p.opackets, p.obytes, p.imissed, p.ierrors, p.oerrors, p.rx_nombuf
        );
    }
    for (lcore, queue, w) in &s.workers {
        let _ = writeln!(
            out,
            "  worker lcore {lcore} queue {queue}: polls {} (idle {}), handed off {}, handed in {}",
            w.polls, w.idle_polls, w.handed_off, w.handed_in
        );
        dir(&mut out, "inside->outside", &w.from_inside);
        dir(&mut out, "outside->inside", &w.from_outside);
    }
    out
}
