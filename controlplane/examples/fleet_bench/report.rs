//! The figures: latency distributions against their targets, etcd load per
//! gateway, memory; printed as a table and written as JSON.

use std::time::Duration;

use serde::Serialize;

use super::probe::Window;

/// A latency distribution (milliseconds). A sample that timed out counts as
/// the timeout (and is counted), so a percentile never looks better than it was.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub timeouts: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub target_ms: Option<f64>,
}

/// Nearest-rank percentile of sorted `v` (q in 0..=1).
fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = (q * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

impl Latency {
    pub fn of(samples: &[Option<Duration>], timeout: Duration, target_ms: Option<f64>) -> Latency {
        let mut v: Vec<f64> = samples.iter().map(|s| s.unwrap_or(timeout).as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        Latency {
            samples: v.len(),
            timeouts: samples.iter().filter(|s| s.is_none()).count(),
            median_ms: percentile(&v, 0.5),
            p90_ms: percentile(&v, 0.9),
            p99_ms: percentile(&v, 0.99),
            max_ms: v.last().copied().unwrap_or(0.0),
            target_ms,
        }
    }

    /// "met" or "missed by X ms (Y×)" against the p99 target.
    pub fn verdict(&self) -> String {
        match self.target_ms {
            None => String::new(),
            Some(_) if self.samples == 0 => "not measured".into(),
            Some(t) if self.p99_ms <= t && self.timeouts == 0 => "met".into(),
            Some(t) => format!("MISSED by {:.0} ms ({:.2}× the target)", self.p99_ms - t, self.p99_ms / t),
        }
    }

    pub fn row(&self, what: &str) -> String {
        let to = if self.timeouts > 0 { format!(" ({} timed out)", self.timeouts) } else { String::new() };
        format!(
            "{what:<58} {:>4} {:>8.0} {:>8.0} {:>8.0} {:>8.0}  {}{to}",
            self.samples,
            self.median_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.verdict()
        )
    }
}

pub fn latency_header() -> String {
    format!("{:<58} {:>4} {:>8} {:>8} {:>8} {:>8}  target p99", "latency (ms)", "n", "median", "p90", "p99", "max")
}

/// etcd's load in a window, per gateway of the fleet.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Load {
    pub window: Window,
    pub gateways: usize,
    /// How many changes the window held (0: steady state).
    pub changes: usize,
    pub requests_per_s_per_gateway: f64,
    pub received_bytes_per_s_per_gateway: f64,
    pub sent_bytes_per_s_per_gateway: f64,
    /// Per change and gateway, above the steady-state rate (changes > 0).
    pub requests_per_change_per_gateway: f64,
    pub received_bytes_per_change_per_gateway: f64,
    pub sent_bytes_per_change_per_gateway: f64,
    pub etcd_cpu_ms_per_change: Option<f64>,
}

impl Load {
    pub fn of(window: Window, gateways: usize, changes: usize, steady: Option<&Load>) -> Load {
        let g = gateways.max(1) as f64;
        let s = window.seconds.max(1e-9);
        let mut l = Load {
            gateways,
            changes,
            requests_per_s_per_gateway: window.requests / s / g,
            received_bytes_per_s_per_gateway: window.received_bytes / s / g,
            sent_bytes_per_s_per_gateway: window.sent_bytes / s / g,
            ..Load::default()
        };
        if changes > 0 {
            let c = changes as f64;
            let base = |rate: f64| steady.map_or(0.0, |_| rate * s * g);
            let st = steady.cloned().unwrap_or_default();
            l.requests_per_change_per_gateway =
                (window.requests - base(st.requests_per_s_per_gateway)).max(0.0) / c / g;
            l.received_bytes_per_change_per_gateway =
                (window.received_bytes - base(st.received_bytes_per_s_per_gateway)).max(0.0) / c / g;
            l.sent_bytes_per_change_per_gateway =
                (window.sent_bytes - base(st.sent_bytes_per_s_per_gateway)).max(0.0) / c / g;
            l.etcd_cpu_ms_per_change = window.etcd_cpu_s.map(|cpu| cpu * 1e3 / c);
        }
        l.window = window;
        l
    }

    pub fn rows(&self, what: &str) -> Vec<String> {
        let mut out = vec![format!(
            "{what:<44} {:>9.2} req/s  {:>10} in/s  {:>10} out/s   (per gateway, {:.0} s window)",
            self.requests_per_s_per_gateway,
            bytes(self.received_bytes_per_s_per_gateway),
            bytes(self.sent_bytes_per_s_per_gateway),
            self.window.seconds
        )];
        if self.changes > 0 {
            out.push(format!(
                "{:<44} {:>9.2} req     {:>10} in    {:>10} out     per change and gateway, above steady state{}",
                "",
                self.requests_per_change_per_gateway,
                bytes(self.received_bytes_per_change_per_gateway),
                bytes(self.sent_bytes_per_change_per_gateway),
                self.etcd_cpu_ms_per_change.map_or(String::new(), |c| format!("; etcd CPU {c:.0} ms per change")),
            ));
        }
        out
    }
}

pub fn bytes(b: f64) -> String {
    if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub machine: String,
    pub gateways: usize,
    pub pus_per_gateway: usize,
    pub full_agents: usize,
    pub light_gateways: usize,
    pub rules: usize,
    pub identities_per_agent: usize,
    pub rounds: usize,
    pub persist: bool,
    pub publish_light_s: f64,
    pub cold_start_s: Vec<f64>,
    pub rule_change_enforced: Latency,
    pub rule_change_enforced_per_agent: Latency,
    pub rule_change_acked_in_etcd: Latency,
    pub new_pu_direct: Latency,
    pub new_pu_file: Latency,
    pub alone_rule_change: Latency,
    pub alone_new_pu_direct: Latency,
    pub compile_ms_median: f64,
    pub compile_ms_max: f64,
    /// This process's CPU per one-rule change: K agents, the light gateways, the bench.
    pub cpu_ms_per_change: f64,
    /// The same with one agent alone.
    pub cpu_ms_per_change_alone: f64,
    /// What one more full agent costs per change: (the first − the second) / (K − 1).
    pub agent_cpu_ms_per_change: f64,
    pub cores: usize,
    pub load_at_end: String,
    pub relist: Relist,
    pub steady: Load,
    pub rule_changes: Load,
    pub new_pus: Load,
    pub rss_before_agents_mb: f64,
    pub rss_after_agents_mb: f64,
    pub memory_per_agent_mb: f64,
    pub memory_per_100k_identities_mb: f64,
    pub all_full: AllFull,
    pub notes: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Relist {
    /// A real agent: its watch compacted, it lists again (signatures cached) and applies.
    pub after_compaction_s: Option<f64>,
    pub after_compaction_note: String,
    /// The same agent restarted: connect, register, list, verify everything, build (no compile: unchanged).
    pub restart_cold_s: Option<f64>,
    /// The agent's steps, timed one by one on the bench's thread with nothing else running.
    pub cold: Vec<(String, f64)>,
    pub warm: Vec<(String, f64)>,
}

#[derive(Debug, Default, Serialize)]
pub struct AllFull {
    pub ran: bool,
    pub why_not: String,
    /// N × the CPU one full agent spent per change / this machine's cores.
    pub estimated_round_s: f64,
    pub rule_change_enforced: Latency,
    pub cold_start_s: f64,
    pub memory_mb: f64,
}

impl Summary {
    /// What the figures say bounds a missed latency target.
    fn bounds(&self) -> Vec<String> {
        let missed = [&self.rule_change_enforced, &self.new_pu_direct, &self.new_pu_file]
            .iter()
            .any(|l| l.target_ms.is_some_and(|t| l.samples > 0 && (l.p99_ms > t || l.timeouts > 0)));
        if !missed {
            return Vec::new();
        }
        let step =
            |name: &str| self.relist.warm.iter().find(|(w, _)| w.starts_with(name)).map_or(0.0, |(_, s)| s * 1e3);
        let mut out = vec![format!(
            "what bounds the missed targets: CPU. Every change costs each full agent about {:.0} ms of CPU, whatever its size: \
             index all {} verified objects again ({:.0} ms), build the whole document ({:.0} ms), compile it whole \
             ({:.0} ms, persisting on another thread). {} agents × that, the light gateways ({:.0} ms) and etcd ({:.0} ms) \
             on {} cores: {:.1} s per change at best, with the cores to themselves (load average {} at the start, {} at the end).",
            self.agent_cpu_ms_per_change,
            self.identities_per_agent + self.pus_per_gateway,
            step("verify"),
            step("build"),
            step("apply"),
            self.full_agents,
            (self.cpu_ms_per_change_alone - self.agent_cpu_ms_per_change).max(0.0),
            self.rule_changes.etcd_cpu_ms_per_change.unwrap_or(0.0),
            self.cores,
            (self.full_agents as f64 * self.agent_cpu_ms_per_change
                + (self.cpu_ms_per_change_alone - self.agent_cpu_ms_per_change).max(0.0)
                + self.rule_changes.etcd_cpu_ms_per_change.unwrap_or(0.0))
                / 1e3
                / self.cores.max(1) as f64,
            self.machine_load(),
            self.load_at_end,
        )];
        if self.alone_rule_change.samples > 0 {
            out.push(format!(
                "  one agent alone (what a gateway with a core of its own sees): one-rule change p99 {:.0} ms ({}), new PU p99 {:.0} ms ({}); \
                 through the PU file add up to 1 s of polling",
                self.alone_rule_change.p99_ms,
                self.alone_rule_change.verdict(),
                self.alone_new_pu_direct.p99_ms,
                self.alone_new_pu_direct.verdict(),
            ));
        }
        out
    }

    fn machine_load(&self) -> &str {
        self.machine.split("load average ").nth(1).and_then(|l| l.split(" at").next()).unwrap_or("?")
    }

    pub fn text(&self) -> String {
        let mut out = Vec::new();
        out.push(String::new());
        out.push(format!(
            "fleet benchmark: {} gateways × {} PUs ({} identities per agent), {} rules; {} full agents + {} light; {} rounds; {}, {} at the end",
            self.gateways, self.pus_per_gateway, self.identities_per_agent, self.rules, self.full_agents, self.light_gateways, self.rounds, self.machine, self.load_at_end
        ));
        out.push(String::new());
        out.push(latency_header());
        out.push(self.rule_change_enforced.row("one-rule change: apply → every full agent enforces it"));
        out.push(self.rule_change_enforced_per_agent.row("  the same, each agent on its own"));
        out.push(self.rule_change_acked_in_etcd.row("  → every full agent's status in etcd says so (ACK)"));
        out.push(self.new_pu_direct.row("new PU (published directly) → enforced by every full agent"));
        out.push(self.new_pu_file.row("new PU in a PU file (1 s poll) → every other full agent"));
        if self.alone_rule_change.samples > 0 {
            out.push(self.alone_rule_change.row("one-rule change, one full agent alone (others stopped)"));
            out.push(self.alone_new_pu_direct.row("new PU (published directly), one full agent alone"));
        }
        if self.all_full.ran {
            out.push(
                self.all_full
                    .rule_change_enforced
                    .row(&format!("one-rule change, all {} gateways full", self.gateways)),
            );
        }
        out.push(String::new());
        out.push(format!(
            "compile per apply (the agents' stores, cold starts included): median {:.0} ms, max {:.0} ms",
            self.compile_ms_median, self.compile_ms_max
        ));
        out.push(format!(
            "CPU per one-rule change (this process): {:.0} ms with {} agents, {:.0} ms with one: {:.0} ms per full agent",
            self.cpu_ms_per_change, self.full_agents, self.cpu_ms_per_change_alone, self.agent_cpu_ms_per_change
        ));
        let total = |v: &[(String, f64)]| v.iter().map(|(_, s)| s).sum::<f64>();
        out.push(format!(
            "re-list after compaction, real agent: {} (target ≤ 2 s: {}); restart to the first converge (cold): {}",
            self.relist.after_compaction_s.map_or("-".into(), |s| format!("{s:.2} s")),
            match self.relist.after_compaction_s {
                Some(s) if s <= 2.0 => "met".into(),
                Some(s) => format!("MISSED by {:.2} s", s - 2.0),
                None => self.relist.after_compaction_note.clone(),
            },
            self.relist.restart_cold_s.map_or("-".into(), |s| format!("{s:.2} s")),
        ));
        for (name, steps) in [("cold", &self.relist.cold), ("warm", &self.relist.warm)] {
            let parts: Vec<String> = steps.iter().map(|(w, s)| format!("{w} {:.0} ms", s * 1e3)).collect();
            out.push(format!("  step by step, {name}: {:.2} s = {}", total(steps), parts.join(", ")));
        }
        out.push(format!(
            "cold start of the full agents (register, publish, list, verify all, build, compile): {:.1}-{:.1} s",
            self.cold_start_s.iter().copied().fold(f64::MAX, f64::min),
            self.cold_start_s.iter().copied().fold(0.0, f64::max)
        ));
        out.push(String::new());
        out.push(format!(
            "etcd load ({} gateways; requests = gRPC messages etcd received, bytes = its client gRPC counters)",
            self.gateways
        ));
        out.extend(self.steady.rows("steady state"));
        out.extend(self.rule_changes.rows(&format!("{} one-rule changes", self.rule_changes.changes)));
        out.extend(self.new_pus.rows(&format!("{} new PUs", self.new_pus.changes)));
        out.push(format!(
            "  by method during the rule changes: {}",
            self.rule_changes
                .window
                .requests_by_method
                .iter()
                .map(|(m, v)| format!("{m} {v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push(String::new());
        out.push(format!(
            "memory: {:.0} MB resident per full agent with {} identities = {:.0} MB per 100k identities (RSS {:.0} → {:.0} MB)",
            self.memory_per_agent_mb, self.identities_per_agent, self.memory_per_100k_identities_mb, self.rss_before_agents_mb, self.rss_after_agents_mb
        ));
        if self.all_full.ran {
            out.push(format!(
                "all {} gateways full: converged in {:.1} s, {:.0} MB more resident",
                self.gateways, self.all_full.cold_start_s, self.all_full.memory_mb
            ));
        } else {
            out.push(format!("all gateways full: not run: {}", self.all_full.why_not));
        }
        out.push(format!(
            "  a one-rule change with all {} full on this machine would take about {:.1} s ({} × {:.0} ms of CPU per agent / {} cores); each gateway on its own machine: the \"alone\" figures",
            self.gateways,
            self.all_full.estimated_round_s,
            self.gateways,
            self.agent_cpu_ms_per_change,
            self.cores,
        ));
        out.extend(self.bounds());
        for n in &self.notes {
            out.push(format!("note: {n}"));
        }
        out.push(String::new());
        out.join("\n")
    }
}
