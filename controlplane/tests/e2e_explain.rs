//! End to end, policy explain: two gatewayd in series (tools/topology.sh
//! double-ext), B with the lab policy plus a reject rule, an observe rule and
//! an external reject. Connections are allowed, rejected by rule, matched by
//! no rule, judged by external network and decided by an observe rule only;
//! for every decision either gateway logged, `gwctl explain --flow` with the
//! logged line gives the verdict, reason, rule and observe rule the workers
//! gave. An explain for a PU or an identity that does not exist is a clear error.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use dataplane::policy::Reason;

const EXT: &str = "gwt-ext";

fn gwctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gwctl")).arg("--socket").arg(sock).args(args).output().expect("gwctl runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// B's policy: the lab's, plus a rule that rejects 8084, an observe rule on
/// 8085 and an external-network reject on 8086.
fn policy_b(dir: &Path) -> std::path::PathBuf {
    let lab = std::fs::read_to_string(repo_root().join("docs/examples/e2e-gw-b.yaml")).unwrap();
    let frontends =
        "      - {name: frontends, action: allow, object: app == frontend, protocols: [tcp], ports: [8080, 8083]}\n";
    assert!(lab.contains(frontends), "the lab policy has the frontends rule");
    let text = lab.replace(
        frontends,
        &format!(
            "{frontends}\
             \x20     - {{name: no-8084, action: reject, object: app == frontend, protocols: [tcp], ports: [8084]}}\n\
             \x20     - {{name: watch-8085, action: allow, object: app == frontend, protocols: [tcp], ports: [8085], observe: true}}\n\
             \x20     - {{name: no-lab-8086, action: reject, object: zone == lab-ext, protocols: [tcp], ports: [8086]}}\n"
        ),
    );
    let path = dir.join("explain-b.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn with_control(cfg: &Path, dir: &Path, name: &str) -> std::path::PathBuf {
    let sock = dir.join(format!("{name}.sock"));
    let mut t = std::fs::read_to_string(cfg).unwrap();
    t += &format!(
        "[control]\nsocket = \"{}\"\nreadonly_socket = \"\"\nstate_dir = \"{}\"\n",
        sock.display(),
        dir.join(format!("{name}-state")).display()
    );
    std::fs::write(cfg, t).unwrap();
    sock
}

/// The flow log's lines (as written: what `gwctl explain --flow` takes).
fn lines(log: &Path) -> Vec<(String, serde_json::Value)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| (l.to_owned(), serde_json::from_str::<serde_json::Value>(l).unwrap()["flow"].clone()))
        .collect()
}

#[test]
fn explain_agrees_with_every_decision_the_workers_made() {
    require(&["ip", "ethtool", "curl", "python3", "ss"]);
    let topo = Topology::up("double-ext");
    let dir = scratch("e2e-explain");
    std::fs::write(dir.join("index.txt"), "hello explain\n").unwrap();
    let (cfg_a, log_a) = gw_config_with_policy(&topo, "gwt-a", &dir, &repo_root().join("docs/examples/e2e-gw-a.yaml"));
    let (cfg_b, log_b) = gw_config_with_policy(&topo, "gwt-b", &dir, &policy_b(&dir));
    let sock_a = with_control(&cfg_a, &dir, "a");
    let sock_b = with_control(&cfg_b, &dir, "b");
    let gw_a = Gatewayd::start(Some("gwt-a"), &cfg_a, &[]);
    let gw_b = Gatewayd::start(Some("gwt-b"), &cfg_b, &[]);
    let _servers: Vec<Proc> = (8080..=8086).map(|p| http_server(&dir, "0.0.0.0", p)).collect();
    let curl = |ns: &str, port: u16| {
        in_ns(ns, &format!("curl -sS --max-time 5 http://{SERVER_V4}:{port}/index.txt")).status.code()
    };
    assert_eq!(curl(CLIENT, 8080), Some(0), "allowed by both");
    for port in [8081, 8083, 8084, 8085] {
        assert_ne!(curl(CLIENT, port), Some(0), "{port} is refused");
    }
    assert_eq!(curl(EXT, 8082), Some(0), "the external host on 8082 (lab-host)");
    for port in [8080, 8086] {
        assert_ne!(curl(EXT, port), Some(0), "the external host on {port} is refused");
    }

    // Every decision reaches the flow logs.
    let policy_reasons: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
    let decided = |log: &Path| -> Vec<(String, serde_json::Value)> {
        lines(log)
            .into_iter()
            .filter(|(_, f)| f["type"] != "ended" && policy_reasons.contains(f["reason"].as_str().unwrap_or("")))
            .collect()
    };
    let t0 = Instant::now();
    while decided(&log_b).len() < 8 || decided(&log_a).len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(20), "decisions logged: {:?} {:?}", lines(&log_a), lines(&log_b));
        std::thread::sleep(Duration::from_millis(200));
    }

    // Each one, explained with its own line, is what the workers decided.
    let mut covered = BTreeSet::new();
    for (sock, log) in [(&sock_a, &log_a), (&sock_b, &log_b)] {
        for (line, f) in decided(log) {
            let o = gwctl(sock, &["explain", "--flow", &line, "-o", "json"]);
            assert!(o.status.success(), "explain {line}: {}", text(&o));
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let e = &j["explain"];
            assert_eq!(e["verdict"], f["verdict"], "{line}\n{e}");
            assert_eq!(e["reason"], f["reason"], "{line}\n{e}");
            assert_eq!(e["policy"]["rule"], f["policy"]["rule"], "the deciding rule: {line}\n{e}");
            assert_eq!(e["observed"]["rule"], f["observed"]["rule"], "the observe rule: {line}\n{e}");
            if let Some(rule) = f["policy"]["rule"].as_str() {
                let m = e["matching"].as_array().unwrap();
                assert!(m.iter().any(|m| m["rule"] == rule && m["deciding"] == true), "{e}");
            }
            covered.insert(f["reason"].as_str().unwrap().to_owned());
        }
    }
    let want: BTreeSet<String> = [
        Reason::PolicyAllow,
        Reason::PolicyReject,
        Reason::NoMatch,
        Reason::ObservedOnly,
        Reason::ExternalNetworkAllow,
        Reason::ExternalNetworkReject,
    ]
    .iter()
    .map(|r| r.name().to_owned())
    .collect();
    assert!(want.is_subset(&covered), "explained {covered:?}, want {want:?}");

    // By parts, as an operator asks: the text names every matching rule.
    let o = gwctl(
        &sock_b,
        &["explain", "--pu", "server", "--tags", "app=frontend", "--port", "8085", "--direction", "incoming"],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(&format!("verdict   rejected ({})", Reason::ObservedOnly.name())), "{t}");
    assert!(t.contains("web/incoming/watch-8085") && t.contains("observe"), "{t}");
    // Unknown PU or identity: a clear error.
    let o = gwctl(&sock_b, &["explain", "--pu", "db", "--identity", "1001", "--port", "80", "--direction", "incoming"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no processing unit is named or has the address \"db\""), "{}", text(&o));
    let o =
        gwctl(&sock_b, &["explain", "--pu", "server", "--identity", "4242", "--port", "80", "--direction", "incoming"]);
    assert!(text(&o).contains("identity 4242 is not in the directory"), "{}", text(&o));
    let o = gwctl(&sock_b, &["explain", "--pu", "server", "--identity", "1001", "--direction", "inbound"]);
    assert_eq!(o.status.code(), Some(2), "refused before sending: {}", text(&o));

    let _ = gw_b.stop();
    let _ = gw_a.stop();
    drop(topo);
}
