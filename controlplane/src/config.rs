//! The `gatewayd` configuration file (TOML).
//!
//! ```toml
//! [eal]
//! args = ["-l", "0-1", "--vdev", "net_af_packet0,iface=gw-in", "--vdev", "net_af_packet1,iface=gw-out"]
//! [ports]
//! inside = "net_af_packet0"
//! outside = "net_af_packet1"
//! [[workers]]
//! lcore = 1
//! [tuning]
//! burst = 32
//! idle_backoff_us = 0
//! ```
//! See README.md for every field.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use dataplane::problem::ConfigProblem;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub eal: EalConfig,
    pub ports: PortsConfig,
    pub workers: Vec<WorkerConfig>,
    #[serde(default)]
    pub tuning: Tuning,
    /// The policy document; without it the gateway forwards everything untouched.
    #[serde(default)]
    pub policy: Option<PolicyFile>,
    /// Where flow events go as JSON lines.
    #[serde(default)]
    pub flowlog: Option<FlowlogFile>,
    #[serde(default)]
    pub flows: Flows,
    /// The UDP identity handshake (docs/udp-handshake.md).
    #[serde(default)]
    pub udp_handshake: UdpHandshake,
    /// Budgets for the resets and signed rejects the gateway sends.
    #[serde(default)]
    pub resets: Resets,
    /// The gRPC control plane (docs/api.md): config store, flows, stats.
    #[serde(default)]
    pub control: Option<crate::api::ControlConfig>,
    /// Fleet mode (docs/fleet.md): the policy comes from etcd. Needs [control].
    #[serde(default)]
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// The Prometheus endpoint (docs/metrics.md). Needs [control].
    #[serde(default)]
    pub metrics: Option<crate::metrics::MetricsConfig>,
    /// IPFIX export of flow events (docs/ipfix.md).
    #[serde(default)]
    pub ipfix: Option<crate::ipfix::IpfixConfig>,
    /// Where DNS events go as JSON lines (docs/dns.md).
    #[serde(default)]
    pub dnslog: Option<DnslogConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnslogConfig {
    /// DNS events are appended here, one JSON object per line.
    pub file: std::path::PathBuf,
    /// 0 (default): a line per DNS response. N > 0: one record per (PU,
    /// query name, type, class, rcode, server) per N seconds, with the count
    /// and the latency's count, mean and maximum (`crate::dnsagg`).
    #[serde(default)]
    pub aggregate_s: u64,
    /// Aggregated records open at once, at most; a new key past it flushes
    /// the interval early (counted, marked `"flush": "table_full"`).
    #[serde(default = "default_aggregate_max_keys")]
    pub aggregate_max_keys: usize,
}

fn default_aggregate_max_keys() -> usize {
    crate::dnsagg::DEFAULT_MAX_KEYS
}

/// Addresses the gateway's learned FQDN table holds (shared by the workers,
/// 32 bytes each).
pub const FQDN_TABLE_SLOTS: usize = 65536;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The YAML policy document (`docs/config.md`).
    pub file: std::path::PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowlogFile {
    /// Flow events are appended here, one JSON object per line.
    pub file: std::path::PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flows {
    /// Flows per worker (the table is allocated at start: 165 bytes per flow).
    #[serde(default = "default_flows")]
    pub capacity: usize,
    /// Flow events each worker can queue for the flow-log writer.
    #[serde(default = "default_events")]
    pub events_queue: usize,
    /// Seconds an ended connection with a verified identity is remembered,
    /// so that a replay of its SYN is refused (docs/identity-option.md).
    #[serde(default = "default_replay_window")]
    pub replay_window_s: u32,
    /// Connections remembered per worker (8 bytes each; 0: none).
    #[serde(default = "default_replay_memory")]
    pub replay_memory: usize,
}

impl Default for Flows {
    fn default() -> Self {
        Flows {
            capacity: default_flows(),
            events_queue: default_events(),
            replay_window_s: default_replay_window(),
            replay_memory: default_replay_memory(),
        }
    }
}

fn default_replay_window() -> u32 {
    dataplane::engine::replay::DEFAULT_WINDOW_S
}
fn default_replay_memory() -> usize {
    dataplane::engine::replay::DEFAULT_SLOTS
}

/// `[resets]`: per worker, the TCP resets and UDP signed rejects the gateway
/// makes up, as token buckets. Answers to a sender that proved no identity
/// (its address may be forged) have their own, smaller budget.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resets {
    /// To verified peers and local PUs, per second.
    #[serde(default = "default_resets_rate")]
    pub per_second: u32,
    #[serde(default = "default_resets_burst")]
    pub burst: u32,
    /// To senders without a verified identity, per second.
    #[serde(default = "default_unverified_rate")]
    pub unverified_per_second: u32,
    #[serde(default = "default_unverified_burst")]
    pub unverified_burst: u32,
}

impl Default for Resets {
    fn default() -> Self {
        Resets {
            per_second: default_resets_rate(),
            burst: default_resets_burst(),
            unverified_per_second: default_unverified_rate(),
            unverified_burst: default_unverified_burst(),
        }
    }
}

impl Resets {
    /// The engine's form of these settings.
    pub fn engine_limits(&self) -> dataplane::engine::ReplyLimits {
        dataplane::engine::ReplyLimits {
            verified_per_s: self.per_second,
            verified_burst: self.burst,
            unverified_per_s: self.unverified_per_second,
            unverified_burst: self.unverified_burst,
        }
    }
}

fn default_resets_rate() -> u32 {
    dataplane::engine::ReplyLimits::default().verified_per_s
}
fn default_resets_burst() -> u32 {
    dataplane::engine::ReplyLimits::default().verified_burst
}
fn default_unverified_rate() -> u32 {
    dataplane::engine::ReplyLimits::default().unverified_per_s
}
fn default_unverified_burst() -> u32 {
    dataplane::engine::ReplyLimits::default().unverified_burst
}

fn default_flows() -> usize {
    1 << 20
}
fn default_events() -> usize {
    65536
}

/// `[udp_handshake]`: retransmit backoff and hold bounds, per worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpHandshake {
    /// Wait after each handshake request before the next, in ms; after the
    /// last the external-network ACLs decide.
    #[serde(default = "default_backoff")]
    pub backoff_ms: Vec<u32>,
    /// Datagrams held per pending flow.
    #[serde(default = "default_hold_per_flow")]
    pub hold_per_flow: u16,
    /// Datagrams held over all pending flows of a worker (mbufs from the pool).
    #[serde(default = "default_hold_total")]
    pub hold_total: u32,
    /// Pending handshakes per worker.
    #[serde(default = "default_pending")]
    pub pending: u32,
}

impl Default for UdpHandshake {
    fn default() -> Self {
        UdpHandshake {
            backoff_ms: default_backoff(),
            hold_per_flow: default_hold_per_flow(),
            hold_total: default_hold_total(),
            pending: default_pending(),
        }
    }
}

impl UdpHandshake {
    /// The engine's form of these settings.
    pub fn engine_config(&self) -> dataplane::engine::udp::UdpConfig {
        dataplane::engine::udp::UdpConfig {
            backoff_ms: self.backoff_ms.clone(),
            hold_per_flow: self.hold_per_flow,
            hold_total: self.hold_total,
            pending: self.pending,
        }
    }
}

fn default_backoff() -> Vec<u32> {
    vec![50, 100, 200, 400]
}
fn default_hold_per_flow() -> u16 {
    16
}
fn default_hold_total() -> u32 {
    1024
}
fn default_pending() -> u32 {
    1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// Passed to `rte_eal_init` as they are (`-l`, `--vdev`, `-a`, `--no-huge`, …).
    pub args: Vec<String>,
}

impl EalConfig {
    /// `args`, plus `--huge-unlink` where they use hugepage files and say
    /// nothing of unlinking: the files are then removed as soon as they are
    /// mapped, so a gateway that is killed, or exits without freeing every
    /// pool, leaves no hugepages behind for the next start to miss (EAL keeps
    /// each `--file-prefix`'s files otherwise). The gateway runs no secondary
    /// processes, the one thing the files are needed for.
    pub fn effective_args(&self) -> Vec<String> {
        let mut args = self.args.clone();
        let says = |p: &str| self.args.iter().any(|a| a == p || a.starts_with(&format!("{p}=")));
        if !(says("--huge-unlink") || says("--no-huge") || says("--in-memory")) {
            args.push("--huge-unlink".into());
        }
        args
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsConfig {
    /// The workloads' side: a DPDK device name (`net_af_packet0`) or PCI address.
    pub inside: String,
    /// The network's side.
    pub outside: String,
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// The EAL lcore the worker is pinned to (enabled by `-l`/`--lcores`, not the main lcore).
    pub lcore: u32,
    /// The queue this worker owns on both ports; defaults to its position in the list.
    pub queue: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Frames per receive call (1..=64).
    #[serde(default = "default_burst")]
    pub burst: usize,
    /// Microseconds a worker sleeps after a run of empty polls; 0 busy-polls.
    #[serde(default)]
    pub idle_backoff_us: u64,
    /// Mbufs in the pool; 0 sizes it from the queues.
    #[serde(default)]
    pub mbufs: u32,
    /// Slots in each worker-to-worker hand-off ring (a power of two).
    #[serde(default = "default_ring")]
    pub handoff_ring: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { burst: default_burst(), idle_backoff_us: 0, mbufs: 0, handoff_ring: default_ring() }
    }
}

fn default_desc() -> u16 {
    1024
}
fn default_burst() -> usize {
    32
}
fn default_ring() -> u32 {
    1024
}

/// Every error found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub source: String,
    /// Each a [`ConfigProblem::setting`]: its field is the setting's path.
    pub errors: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}:", self.source)?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl GatewayConfig {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            source: source.clone(),
            errors: vec![ConfigProblem::setting("(file)", format!("cannot read: {e}"))],
        })?;
        Self::parse(&text, &source)
    }

    /// Parses and validates TOML text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<GatewayConfig, ConfigErrors> {
        let cfg: GatewayConfig = toml::from_str(text).map_err(|e| ConfigErrors {
            source: source.to_owned(),
            errors: vec![ConfigProblem::setting("(syntax)", e.to_string().trim_end())],
        })?;
        let errors = cfg.validate();
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors { source: source.to_owned(), errors })
        }
    }

    /// Every problem found (empty when valid).
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut errs = Vec::new();
        self.check_ports_and_workers(&mut errs);
        self.check_limits(&mut errs);
        self.check_sections(&mut errs);
        errs
    }

    /// The two ports and the workers that poll them.
    fn check_ports_and_workers(&self, errs: &mut Vec<ConfigProblem>) {
        if self.ports.inside.trim().is_empty() {
            errs.push(ConfigProblem::setting("ports.inside", "must name a device"));
        }
        if self.ports.outside.trim().is_empty() {
            errs.push(ConfigProblem::setting("ports.outside", "must name a device"));
        }
        if self.ports.inside == self.ports.outside && !self.ports.inside.is_empty() {
            errs.push(ConfigProblem::setting(
                "ports.outside",
                format!("{:?} is also the inside port; a bump in the wire needs two", self.ports.outside),
            ));
        }
        if self.workers.is_empty() {
            errs.push(ConfigProblem::setting("workers", "at least one [[workers]] entry is needed"));
        }
        let mut lcores = HashSet::new();
        let mut queues = HashSet::new();
        for (i, w) in self.workers.iter().enumerate() {
            if !lcores.insert(w.lcore) {
                errs.push(ConfigProblem::setting(
                    format!("workers[{i}].lcore"),
                    format!("{} is used by another worker", w.lcore),
                ));
            }
            let q = self.queue_of(i);
            if usize::from(q) >= self.workers.len() {
                errs.push(ConfigProblem::setting(
                    format!("workers[{i}].queue"),
                    format!(
                        "{q} is out of range: with {} workers the queues are 0..{}",
                        self.workers.len(),
                        self.workers.len() - 1
                    ),
                ));
            } else if !queues.insert(q) {
                errs.push(ConfigProblem::setting(
                    format!("workers[{i}].queue"),
                    format!("{q} is used by another worker"),
                ));
            }
        }
    }

    /// Sizes, rates and rings: `[tuning]`, the ports' descriptors, `[flows]`, `[resets]`.
    fn check_limits(&self, errs: &mut Vec<ConfigProblem>) {
        if self.tuning.burst == 0 || self.tuning.burst > dpdk_bindings::burst::MAX_BURST {
            errs.push(ConfigProblem::setting(
                "tuning.burst",
                format!("{} is not in 1..={}", self.tuning.burst, dpdk_bindings::burst::MAX_BURST),
            ));
        }
        if !self.tuning.handoff_ring.is_power_of_two() || self.tuning.handoff_ring < 64 {
            errs.push(ConfigProblem::setting(
                "tuning.handoff_ring",
                format!("{} must be a power of two of at least 64", self.tuning.handoff_ring),
            ));
        }
        if self.ports.rx_desc == 0 {
            errs.push(ConfigProblem::setting("ports.rx_desc", "0 descriptors"));
        }
        if self.ports.tx_desc == 0 {
            errs.push(ConfigProblem::setting("ports.tx_desc", "0 descriptors"));
        }
        if self.flows.capacity == 0 || self.flows.capacity > 100_000_000 {
            errs.push(ConfigProblem::setting(
                "flows.capacity",
                format!("{} is not in 1..=100000000", self.flows.capacity),
            ));
        }
        if self.flows.events_queue < 64 || self.flows.events_queue > 1 << 24 {
            errs.push(ConfigProblem::setting(
                "flows.events_queue",
                format!("{} is not in 64..=16777216", self.flows.events_queue),
            ));
        }
        if self.flows.replay_memory > 1 << 28 {
            errs.push(ConfigProblem::setting(
                "flows.replay_memory",
                format!("{} is not in 0..=268435456", self.flows.replay_memory),
            ));
        }
        if self.flows.replay_memory > 0 && self.flows.replay_window_s == 0 {
            errs.push(ConfigProblem::setting(
                "flows.replay_window_s",
                "0 with a replay memory: nothing would be remembered (set replay_memory = 0 to turn it off)",
            ));
        }
        let r = &self.resets;
        if r.per_second > 0 && r.burst == 0 {
            errs.push(ConfigProblem::setting(
                "resets.burst",
                format!("0 with per_second = {}: no reset could ever be sent", r.per_second),
            ));
        }
        if r.unverified_per_second > 0 && r.unverified_burst == 0 {
            errs.push(ConfigProblem::setting(
                "resets.unverified_burst",
                format!("0 with unverified_per_second = {}: no reset could ever be sent", r.unverified_per_second),
            ));
        }
    }

    /// `[udp_handshake]`, `[control]`, `[fleet]` and what they need of each other.
    fn check_sections(&self, errs: &mut Vec<ConfigProblem>) {
        let pending_timeout = dataplane::flow::Timeouts::default().udp_pending;
        errs.extend(self.udp_handshake.engine_config().validate("udp_handshake.", pending_timeout));
        if let Some(c) = &self.control {
            errs.extend(c.validate());
        }
        if let Some(f) = &self.fleet {
            errs.extend(f.validate());
            if self.control.is_none() {
                errs.push(ConfigProblem::setting(
                    "fleet",
                    "fleet mode needs [control] (its store keeps the last good document)",
                ));
            }
            if self.policy.is_some() {
                errs.push(ConfigProblem::setting(
                    "policy.file",
                    "in fleet mode the policy comes from etcd: remove [policy]",
                ));
            }
        }
        if let Some(m) = &self.metrics {
            errs.extend(m.validate());
            if self.control.is_none() {
                errs.push(ConfigProblem::setting(
                    "metrics",
                    "the metrics endpoint needs [control] (its thread reads the counters)",
                ));
            }
        }
        if let Some(x) = &self.ipfix {
            errs.extend(x.validate());
            if self.policy.is_none() && self.control.is_none() {
                errs.push(ConfigProblem::setting("ipfix", "flow export needs a policy: add [policy] or [control]"));
            }
        }
        if self.dnslog.is_some() && self.policy.is_none() && self.control.is_none() {
            errs.push(ConfigProblem::setting("dnslog.file", "DNS events need a policy: add [policy] file = \"...\""));
        }
        if let Some(d) = &self.dnslog {
            if d.aggregate_s > 86_400 {
                errs.push(ConfigProblem::setting(
                    "dnslog.aggregate_s",
                    format!("{} is not in 0..=86400 (0: a line per response)", d.aggregate_s),
                ));
            }
            if !(1..=1_000_000).contains(&d.aggregate_max_keys) {
                errs.push(ConfigProblem::setting(
                    "dnslog.aggregate_max_keys",
                    format!("{} is not in 1..=1000000", d.aggregate_max_keys),
                ));
            }
        }
        if self.flowlog.is_some() && self.policy.is_none() && self.control.is_none() {
            errs.push(ConfigProblem::setting("flowlog.file", "flow events need a policy: add [policy] file = \"...\""));
        }
    }

    /// The queue worker `i` owns.
    pub fn queue_of(&self, i: usize) -> u16 {
        self.workers[i].queue.unwrap_or(i as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[eal]
args = ["-l", "0-2", "--no-huge"]
[ports]
inside = "net_null0"
outside = "net_null1"
[[workers]]
lcore = 1
[[workers]]
lcore = 2
"#;

    #[test]
    fn good_config_parses_with_defaults() {
        let c = GatewayConfig::parse(GOOD, "t").unwrap();
        assert_eq!(c.workers.len(), 2);
        assert_eq!(c.queue_of(1), 1);
        assert_eq!(c.tuning.burst, 32);
        assert_eq!(c.ports.rx_desc, 1024);
    }

    #[test]
    fn hugepage_files_are_unlinked_unless_the_args_say_otherwise() {
        let eal = |a: &[&str]| EalConfig { args: a.iter().map(|s| s.to_string()).collect() }.effective_args();
        assert_eq!(eal(&["-l", "0-1"]), ["-l", "0-1", "--huge-unlink"]);
        assert_eq!(eal(&["-l", "0-1", "--no-huge"]), ["-l", "0-1", "--no-huge"]);
        assert_eq!(eal(&["--in-memory"]), ["--in-memory"]);
        assert_eq!(eal(&["--huge-unlink=never"]), ["--huge-unlink=never"]);
    }

    #[test]
    fn every_error_is_reported_with_its_field() {
        let bad = GOOD.replace("lcore = 2", "lcore = 1\nqueue = 7").replace("net_null1", "net_null0")
            + "[tuning]\nburst = 0\nhandoff_ring = 1000\n";
        let e = GatewayConfig::parse(&bad, "bad.toml").unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["ports.outside", "workers[1].lcore", "workers[1].queue", "tuning.burst", "tuning.handoff_ring"],
            "{e}"
        );
        let text = e.to_string();
        assert!(text.contains("bad.toml"), "{text}");
        assert!(text.contains("workers[1].queue: 7 is out of range"), "{text}");
    }

    #[test]
    fn unknown_fields_and_syntax_errors_are_named() {
        let e = GatewayConfig::parse(&GOOD.replace("[ports]", "[ports]\ninsde = \"x\""), "t").unwrap_err();
        assert!(e.to_string().contains("insde"), "{e}");
        let e = GatewayConfig::parse("[eal", "t").unwrap_err();
        assert_eq!(e.errors[0].field, "(syntax)");
    }

    #[test]
    fn policy_flowlog_and_flows() {
        let c = GatewayConfig::parse(
            &(GOOD.to_owned()
                + "[policy]\nfile = \"/p.yaml\"\n[flowlog]\nfile = \"/f.jsonl\"\n[flows]\ncapacity = 1000\n"),
            "t",
        )
        .unwrap();
        assert_eq!(c.policy.unwrap().file, std::path::PathBuf::from("/p.yaml"));
        assert_eq!(c.flows.capacity, 1000);
        assert_eq!(c.flows.events_queue, 65536);
        let e = GatewayConfig::parse(&(GOOD.to_owned() + "[flowlog]\nfile = \"/f\"\n[flows]\ncapacity = 0\n"), "t")
            .unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["flows.capacity", "flowlog.file"], "{e}");
        let e = GatewayConfig::parse(&(GOOD.to_owned() + "[policy]\nfil = \"x\"\n"), "t").unwrap_err();
        assert!(e.to_string().contains("fil"), "{e}");
    }

    #[test]
    fn dnslog_aggregation_defaults_off_and_bad_bounds_are_named() {
        let with = |extra: &str| GOOD.to_owned() + "[policy]\nfile = \"/p.yaml\"\n[dnslog]\nfile = \"/d\"\n" + extra;
        let c = GatewayConfig::parse(&with(""), "t").unwrap();
        let d = c.dnslog.unwrap();
        assert_eq!((d.aggregate_s, d.aggregate_max_keys), (0, crate::dnsagg::DEFAULT_MAX_KEYS));
        let d = GatewayConfig::parse(&with("aggregate_s = 10\n"), "t").unwrap().dnslog.unwrap();
        assert_eq!(d.aggregate_s, 10);
        let e = GatewayConfig::parse(&with("aggregate_s = 86401\naggregate_max_keys = 0\n"), "t").unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["dnslog.aggregate_s", "dnslog.aggregate_max_keys"], "{e}");
    }

    #[test]
    fn replay_memory_and_reset_budgets() {
        let c = GatewayConfig::parse(GOOD, "t").unwrap();
        assert_eq!((c.flows.replay_window_s, c.flows.replay_memory), (300, 1 << 20));
        assert_eq!(c.resets.engine_limits(), dataplane::engine::ReplyLimits::default());
        let c = GatewayConfig::parse(
            &(GOOD.to_owned()
                + "[flows]\nreplay_window_s = 600\nreplay_memory = 0\n[resets]\nunverified_per_second = 0\nunverified_burst = 0\n"),
            "t",
        )
        .unwrap();
        assert_eq!((c.flows.replay_window_s, c.flows.replay_memory), (600, 0));
        assert_eq!((c.resets.unverified_per_second, c.resets.per_second), (0, 10_000));
        let e = GatewayConfig::parse(
            &(GOOD.to_owned() + "[flows]\nreplay_window_s = 0\n[resets]\nburst = 0\nunverified_burst = 0\n"),
            "t",
        )
        .unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["flows.replay_window_s", "resets.burst", "resets.unverified_burst"], "{e}");
    }

    #[test]
    fn no_workers_is_an_error() {
        let e = GatewayConfig::parse("workers = []\n[eal]\nargs = []\n[ports]\ninside = \"a\"\noutside = \"b\"\n", "t")
            .unwrap_err();
        assert_eq!(e.errors[0].field, "workers");
    }

    #[test]
    fn udp_handshake_settings_default_and_errors_name_their_field() {
        let c = GatewayConfig::parse(GOOD, "t").unwrap();
        assert_eq!(c.udp_handshake.backoff_ms, [50, 100, 200, 400]);
        assert_eq!(
            (c.udp_handshake.hold_per_flow, c.udp_handshake.hold_total, c.udp_handshake.pending),
            (16, 1024, 1024)
        );
        let bad = format!("{GOOD}[udp_handshake]\nbackoff_ms = [50, 0]\nhold_per_flow = 300\npending = 0\n");
        let e = GatewayConfig::parse(&bad, "t").unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["udp_handshake.backoff_ms[1]", "udp_handshake.hold_per_flow", "udp_handshake.pending"],
            "{e}"
        );
        assert!(e.to_string().contains("udp_handshake.hold_per_flow: 300 is not in 1..=256"), "{e}");
        let slow = format!("{GOOD}[udp_handshake]\nbackoff_ms = [4000, 4000]\n");
        let e = GatewayConfig::parse(&slow, "t").unwrap_err();
        assert!(e.to_string().contains("udp_handshake.backoff_ms: the waits add up to 8000 ms"), "{e}");
    }
}
