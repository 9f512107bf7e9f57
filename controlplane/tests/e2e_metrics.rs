//! The Prometheus endpoint end to end (issue 13): gateway B of the
//! two-gateway lab carries allowed and rejected connections, a real
//! Prometheus (Debian's) scrapes it, and the test reads the values back
//! through Prometheus's HTTP API.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A free TCP port on 127.0.0.1 inside `ns` (bound and released).
fn free_port(ns: &str) -> u16 {
    let out = in_ns(
        ns,
        "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'",
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a port")
}

fn gwctl(sock: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gwctl")).arg("--socket").arg(sock).args(args).output().unwrap()
}

/// Asks Prometheus (in `ns`) for an instant query; the result vector.
fn query(ns: &str, port: u16, q: &str) -> Vec<serde_json::Value> {
    let out = in_ns(
        ns,
        &format!("curl -sS -G --max-time 5 http://127.0.0.1:{port}/api/v1/query --data-urlencode 'query={q}'"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

#[test]
fn prometheus_scrapes_drops_by_reason() {
    require(&["ip", "ethtool", "curl", "python3", "ss", "prometheus"]);
    let dir = scratch("e2e-metrics");
    let topo = Topology::up("double-ext");
    in_ns("gwt-b", "ip link set lo up");
    let metrics_port = free_port("gwt-b");
    let prom_port = free_port("gwt-b");
    let (cfg_a, _) = gw_config_with_policy(&topo, "gwt-a", &dir, &repo_root().join("docs/examples/e2e-gw-a.yaml"));
    let (cfg_b, _) = gw_config_with_policy(&topo, "gwt-b", &dir, &repo_root().join("docs/examples/e2e-gw-b.yaml"));
    let mut text = std::fs::read_to_string(&cfg_b).unwrap();
    text += &format!(
        "[control]\nsocket = \"{}\"\nreadonly_socket = \"\"\nstate_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
        dir.join("b.sock").display(),
        dir.join("b-state").display()
    );
    std::fs::write(&cfg_b, text).unwrap();
    let gw_a = Gatewayd::start(Some("gwt-a"), &cfg_a, &[]);
    let gw_b = Gatewayd::start(Some("gwt-b"), &cfg_b, &[]);
    assert!(
        gw_b.output().contains(&format!("gatewayd: metrics on http://127.0.0.1:{metrics_port}/metrics")),
        "{}",
        gw_b.output()
    );

    let web = dir.join("www");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.txt"), "hello metrics\n").unwrap();
    let _http = http_server(&web, "0.0.0.0", 8080);
    let _http2 = http_server(&web, "0.0.0.0", 8081);
    let curl =
        |port: u16| in_ns(CLIENT, &format!("curl -sS --max-time 5 http://{SERVER_V4}:{port}/index.txt")).status.code();
    assert_eq!(curl(8080), Some(0), "allowed");
    for _ in 0..3 {
        assert_ne!(curl(8081), Some(0), "8081 is rejected by B (no rule)");
    }
    // Per-rule hits: one connection decided by B's `frontends`; a re-compile
    // (the same policy applied again as version 2) keeps the count, and the
    // next connection adds to it.
    let sock = dir.join("b.sock");
    let hits = |rule: &str| -> (u64, Vec<u64>) {
        let o = gwctl(&sock, &["get", "rules", "--hits", "-o", "json"]);
        assert!(o.status.success(), "gwctl get rules: {}", String::from_utf8_lossy(&o.stderr));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let r = j["rules"].as_array().unwrap().iter().find(|r| r["rule"] == rule).cloned().unwrap_or_default();
        let per: Vec<u64> =
            r["per_worker"].as_array().map(|a| a.iter().filter_map(|v| v.as_u64()).collect()).unwrap_or_default();
        (r["hits"].as_u64().unwrap_or(0), per)
    };
    assert_eq!(hits("frontends").0, 1, "one connection decided by frontends");
    assert_eq!(hits("lab-host").0, 0);
    let o = gwctl(&sock, &["apply", "-f", repo_root().join("docs/examples/e2e-gw-b.yaml").to_str().unwrap()]);
    assert!(o.status.success(), "re-apply: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(hits("frontends").0, 1, "kept across the re-compile");
    assert_eq!(curl(8080), Some(0), "allowed again");
    let (total, per_worker) = hits("frontends");
    assert_eq!(total, 2, "counted on the new policy's slots too");
    assert_eq!(per_worker.iter().sum::<u64>(), 2);
    let o = gwctl(&sock, &["get", "rules", "--hits"]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.lines().any(|l| l.starts_with("web") && l.contains("frontends") && l.contains("  2  ")), "{table}");

    // The endpoint itself: OpenMetrics text, bounded requests, 404 elsewhere.
    let out = in_ns("gwt-b", &format!("curl -sS -i http://127.0.0.1:{metrics_port}/metrics"));
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(body.starts_with("HTTP/1.1 200 OK") && body.contains("application/openmetrics-text"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    let out =
        in_ns("gwt-b", &format!("curl -sS -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{metrics_port}/other"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");

    // A real Prometheus scrapes it.
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let conf = prom_dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             scrape_configs:\n  - job_name: gatewayd\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
        ),
    )
    .unwrap();
    let _prom = spawn_ns(
        "gwt-b",
        &[
            "prometheus",
            &format!("--config.file={}", conf.display()),
            &format!("--storage.tsdb.path={}", prom_dir.join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
    );
    let t0 = Instant::now();
    let no_match = loop {
        let r = query("gwt-b", prom_port, "sum(igw_drops_total{reason=\"no_match\",direction=\"from_outside\"})");
        if let Some(v) = r.first().map(value).filter(|v| *v >= 3.0) {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "Prometheus never saw the drops: {r:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let up = query("gwt-b", prom_port, "up{job=\"gatewayd\"}");
    assert_eq!(up.first().map(value), Some(1.0), "{up:?}");
    let verified = query("gwt-b", prom_port, "sum(igw_events_total{event=\"identity_verified\"})");
    assert!(verified.first().map(value).unwrap_or(0.0) >= 4.0, "{verified:?}");
    let version = query("gwt-b", prom_port, "igw_config_version");
    assert_eq!(version.first().map(value), Some(2.0), "the policy file as version 1, re-applied as 2: {version:?}");
    let q = "igw_rule_hits_total{ruleset=\"web\",direction=\"incoming\",rule=\"frontends\",action=\"allow\"}";
    let t0 = Instant::now();
    loop {
        let r = query("gwt-b", prom_port, q);
        if r.first().map(value) == Some(2.0) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "Prometheus never saw the rule's 2 hits: {r:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let lab = query("gwt-b", prom_port, "igw_rule_hits_total{rule=\"lab-host\"}");
    assert_eq!(lab.first().map(value), Some(0.0), "a rule that decided nothing is there, at 0: {lab:?}");

    let (_, b) = gw_b.stop();
    let _ = gw_a.stop();
    assert_eq!(no_match as u64, drops(&b, "from_outside", "no_match"), "Prometheus saw what the gateway counted");
    drop(topo);
}
