//! What the bench reads besides the agents: etcd's own Prometheus counters
//! (requests, bytes), CPU time of this process and of etcd, and this
//! process's resident memory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `/proc/<pid>/stat` counts CPU time in clock ticks; Linux's USER_HZ is 100.
const TICKS_PER_S: f64 = 100.0;

/// One reading of etcd's counters, and the CPU times, at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// gRPC messages etcd received, by method (a unary call is one; every
    /// keep-alive and watch request on a stream is one).
    pub received: BTreeMap<String, f64>,
    /// gRPC messages etcd sent, by method (every watch response is one).
    pub sent: BTreeMap<String, f64>,
    pub received_bytes: f64,
    pub sent_bytes: f64,
    pub bench_cpu_s: f64,
    pub etcd_cpu_s: Option<f64>,
}

/// The difference of two samples.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Window {
    pub seconds: f64,
    pub requests: f64,
    pub responses: f64,
    pub received_bytes: f64,
    pub sent_bytes: f64,
    pub requests_by_method: BTreeMap<String, f64>,
    pub bench_cpu_s: f64,
    pub etcd_cpu_s: Option<f64>,
}

pub struct Probe {
    /// host:port of etcd's client URL (its /metrics is there).
    addr: String,
    etcd_pid: Option<u32>,
}

impl Probe {
    pub fn new(etcd_url: &str, etcd_pid: Option<u32>) -> Result<Probe, String> {
        let addr = etcd_url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{etcd_url}: the bench reads /metrics over plain http://"))?
            .trim_end_matches('/')
            .to_owned();
        Ok(Probe { addr, etcd_pid })
    }

    fn metrics_text(&self) -> Result<String, String> {
        let mut s = TcpStream::connect(&self.addr).map_err(|e| format!("{}: {e}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).map_err(|e| e.to_string())?;
        let mut body = String::new();
        s.read_to_string(&mut body).map_err(|e| format!("reading {}/metrics: {e}", self.addr))?;
        Ok(body)
    }

    pub fn sample(&self) -> Result<Sample, String> {
        let text = self.metrics_text()?;
        let mut out = Sample {
            at: Instant::now(),
            received: BTreeMap::new(),
            sent: BTreeMap::new(),
            received_bytes: 0.0,
            sent_bytes: 0.0,
            bench_cpu_s: cpu_seconds("self").unwrap_or(0.0),
            etcd_cpu_s: self.etcd_pid.and_then(|p| cpu_seconds(&p.to_string())),
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(v) = value.parse::<f64>() else { continue };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let method = || label(labels, "grpc_method").unwrap_or("?").to_owned();
            match name {
                "grpc_server_msg_received_total" => *out.received.entry(method()).or_default() += v,
                "grpc_server_msg_sent_total" => *out.sent.entry(method()).or_default() += v,
                "etcd_network_client_grpc_received_bytes_total" => out.received_bytes += v,
                "etcd_network_client_grpc_sent_bytes_total" => out.sent_bytes += v,
                _ => {}
            }
        }
        if out.received.is_empty() {
            return Err(format!("{}/metrics has no grpc_server_msg_received_total", self.addr));
        }
        Ok(out)
    }
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.trim_end_matches('}').split(',').find_map(|kv| kv.strip_prefix(key)?.strip_prefix("=\"")?.strip_suffix('"'))
}

impl Window {
    pub fn between(a: &Sample, b: &Sample) -> Window {
        let by_method: BTreeMap<String, f64> = b
            .received
            .iter()
            .map(|(m, v)| (m.clone(), v - a.received.get(m).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d > 0.0)
            .collect();
        Window {
            seconds: b.at.duration_since(a.at).as_secs_f64(),
            requests: by_method.values().sum(),
            responses: b.sent.values().sum::<f64>() - a.sent.values().sum::<f64>(),
            received_bytes: b.received_bytes - a.received_bytes,
            sent_bytes: b.sent_bytes - a.sent_bytes,
            requests_by_method: by_method,
            bench_cpu_s: b.bench_cpu_s - a.bench_cpu_s,
            etcd_cpu_s: a.etcd_cpu_s.zip(b.etcd_cpu_s).map(|(x, y)| y - x),
        }
    }
}

/// User + system CPU seconds of a process (`self` or a pid).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

/// This process's resident set (bytes).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
