//! Counters as text: a periodic rate line and the final report.

use std::fmt::Write;

use dataplane::stats::{DirCounts, DropReason, Note, WorkerCounts};

use crate::gateway::Snapshot;

fn sum(s: &Snapshot, f: impl Fn(&WorkerCounts) -> u64) -> u64 {
    s.workers.iter().map(|(_, _, w)| f(w)).sum()
}

/// Frames forwarded each way, summed over workers: (inside→outside, outside→inside).
pub fn forwarded(s: &Snapshot) -> (u64, u64) {
    (sum(s, |w| w.from_inside.tx_packets), sum(s, |w| w.from_outside.tx_packets))
}

/// Frames not accounted for, summed over workers, per direction (from
/// inside, from outside): see [`WorkerCounts::unaccounted`]. Zero after the
/// workers stopped, when every frame was sent, dropped, consumed or is held.
pub fn unaccounted(s: &Snapshot) -> [i128; 2] {
    s.workers.iter().fold([0, 0], |[a, b], (_, _, w)| {
        let [x, y] = w.unaccounted();
        [a + x, b + y]
    })
}

/// One line of rates between two snapshots, e.g. for `--stats-interval`:
/// `stats: t=3.0s rx 1.23 Mpps, in->out 1.23 Mpps, out->in 0.00 Mpps, worker-cpu 99.8%, drops 0`.
pub fn rate_line(prev: &Snapshot, now: &Snapshot) -> String {
    let dt = (now.elapsed - prev.elapsed).as_secs_f64().max(1e-9);
    let (a1, b1) = forwarded(now);
    let (a0, b0) = forwarded(prev);
    let drops = |s: &Snapshot| sum(s, |w| w.from_inside.dropped_total() + w.from_outside.dropped_total());
    let rx = |s: &Snapshot| sum(s, |w| w.from_inside.rx_packets + w.from_outside.rx_packets);
    // The share of the interval the kernel ran the workers (over all of
    // them): below 100% their cores are shared with other tasks, and the
    // rates above are what was left to them.
    let cpu = sum(now, |w| w.on_cpu_ns).saturating_sub(sum(prev, |w| w.on_cpu_ns)) as f64
        / (dt * 1e9 * now.workers.len().max(1) as f64);
    format!(
        "stats: t={:.1}s rx {:.3} Mpps, in->out {:.3} Mpps, out->in {:.3} Mpps, worker-cpu {:.1}%, drops {}",
        now.elapsed.as_secs_f64(),
        (rx(now) - rx(prev)) as f64 / dt / 1e6,
        (a1 - a0) as f64 / dt / 1e6,
        (b1 - b0) as f64 / dt / 1e6,
        cpu * 100.0,
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
    let _ = write!(out, "    {:<16} notes:", "");
    for n in Note::ALL {
        let _ = write!(out, " {} {}", n.name(), d.noted(n));
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
            "  worker lcore {lcore} queue {queue}: polls {} (idle {}), handed off {}, handed in {}, flows {}/{} (evicted {}), replay memory {} remembered ({} forgotten early)",
            w.polls, w.idle_polls, w.handed_off, w.handed_in, w.flows_active, w.flow_capacity, w.flows_evicted,
            w.replay_remembered, w.replay_overwritten
        );
        dir(&mut out, "inside->outside", &w.from_inside);
        dir(&mut out, "outside->inside", &w.from_outside);
    }
    let [i, o] = unaccounted(s);
    let _ = writeln!(
        out,
        "  accounting (rx + made - tx - drops - consumed - held): inside->outside {i}, outside->inside {o}{}",
        if i == 0 && o == 0 { " (every frame accounted for)" } else { "" }
    );
    let _ = writeln!(out, "  mbufs: {} in use, {} in the pool", s.mbufs_in_use, s.mbufs_available);
    out
}

/// The final counters as JSON, for scripts and tests.
pub fn final_json(s: &Snapshot) -> serde_json::Value {
    use serde_json::json;
    let dir = |d: &DirCounts| {
        let drops: serde_json::Map<String, serde_json::Value> =
            DropReason::ALL.iter().map(|r| (r.name().to_owned(), json!(d.dropped(*r)))).collect();
        let notes: serde_json::Map<String, serde_json::Value> =
            Note::ALL.iter().map(|n| (n.name().to_owned(), json!(d.noted(*n)))).collect();
        json!({
            "rx_packets": d.rx_packets, "rx_bytes": d.rx_bytes,
            "tx_packets": d.tx_packets, "tx_bytes": d.tx_bytes,
            "drops": drops, "notes": notes,
        })
    };
    let port = |name: &str, p: &dpdk_bindings::port::PortStats| {
        json!({
            "name": name, "rx_packets": p.ipackets, "rx_bytes": p.ibytes, "tx_packets": p.opackets,
            "tx_bytes": p.obytes, "missed": p.imissed, "rx_errors": p.ierrors, "tx_errors": p.oerrors,
            "rx_nombuf": p.rx_nombuf,
        })
    };
    json!({
        "elapsed_s": s.elapsed.as_secs_f64(),
        "ports": { "inside": port(&s.inside_name, &s.inside), "outside": port(&s.outside_name, &s.outside) },
        "workers": s.workers.iter().map(|(lcore, queue, w)| json!({
            "lcore": lcore, "queue": queue, "polls": w.polls, "idle_polls": w.idle_polls,
            "handed_off": w.handed_off, "handed_in": w.handed_in,
            "flows_active": w.flows_active, "flow_capacity": w.flow_capacity, "flows_evicted": w.flows_evicted,
            "replay_remembered": w.replay_remembered, "replay_overwritten": w.replay_overwritten,
            "held": w.held, "on_cpu_s": w.on_cpu_ns as f64 / 1e9,
            "from_inside": dir(&w.from_inside), "from_outside": dir(&w.from_outside),
        })).collect::<Vec<_>>(),
        "dns": s.dns.iter().map(|(n, v)| ((*n).to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "unaccounted": { "from_inside": unaccounted(s)[0] as i64, "from_outside": unaccounted(s)[1] as i64 },
        "mbufs": { "in_use": s.mbufs_in_use, "available": s.mbufs_available },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dataplane::stats::{DirCounts, DropReason, Note, WorkerCounts};

    use super::*;

    /// One worker that received 10 frames from the inside, sent 7, dropped 2
    /// (`no_local_pu`) and consumed 1, after `secs` seconds.
    fn snapshot(secs: u64, rx: u64) -> Snapshot {
        let mut d = DirCounts { rx_packets: rx, tx_packets: rx - 3, ..DirCounts::default() };
        d.drops[DropReason::NoLocalPu as usize] = 2;
        d.notes[Note::FramesConsumed as usize] = 1;
        let w = WorkerCounts { from_inside: d, ..WorkerCounts::default() };
        Snapshot {
            elapsed: Duration::from_secs(secs),
            inside: Default::default(),
            outside: Default::default(),
            inside_name: "in0".into(),
            outside_name: "out0".into(),
            workers: vec![(1, 0, w)],
            handshake_ns: Vec::new(),
            mbufs_in_use: 0,
            mbufs_available: 511,
            dns: Vec::new(),
        }
    }

    #[test]
    fn every_frame_is_accounted_for() {
        let s = snapshot(1, 10);
        assert_eq!(forwarded(&s), (7, 0));
        assert_eq!(unaccounted(&s), [0, 0]);
        let text = final_report(&s);
        assert!(text.contains("(every frame accounted for)"), "{text}");
        assert!(text.contains(&format!("{} 2", DropReason::NoLocalPu.name())), "{text}");
        let json = final_json(&s);
        assert_eq!(json["workers"][0]["from_inside"]["drops"][DropReason::NoLocalPu.name()], 2);
        assert_eq!(json["unaccounted"]["from_inside"], 0);
    }

    #[test]
    fn a_frame_missing_is_shown() {
        let mut s = snapshot(1, 10);
        s.workers[0].2.from_inside.tx_packets -= 1;
        assert_eq!(unaccounted(&s), [1, 0]);
        assert!(!final_report(&s).contains("every frame accounted for"));
    }

    #[test]
    fn rate_line_is_the_difference_over_the_interval() {
        let (a, mut b) = (snapshot(1, 10), snapshot(3, 2_000_010));
        // the kernel ran the worker 1.5 s of the 2: another task had its core a quarter of the time
        b.workers[0].2.on_cpu_ns = 1_500_000_000;
        let line = rate_line(&a, &b);
        assert_eq!(
            line,
            "stats: t=3.0s rx 1.000 Mpps, in->out 1.000 Mpps, out->in 0.000 Mpps, worker-cpu 75.0%, drops 0"
        );
    }
}
