//! The gwctl binary against a real in-process server: apply (ACK, NACK),
//! get, status, stats, observe with filters and JSON, exit codes.

mod api_harness;

use std::path::Path;
use std::process::{Command, Output};

use api_harness::*;
use controlplane::api::pb;

fn gwctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gwctl")).arg("--socket").arg(sock).args(args).output().expect("gwctl runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn gwctl_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    let good = dir.path().join("good.yaml");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&good, GOOD).unwrap();
    std::fs::write(&broken, BROKEN).unwrap();

    let o = gwctl(&h.rw, &["apply", "-f", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("applied version 1 (revision \"r1\")"), "{}", text(&o));

    let o = gwctl(&h.rw, &["apply", "-f", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("refused version 2: 3 problems; version 1 stays in force"), "{t}");
    assert!(t.contains("rulesets[\"db\"].subject"), "{t}");
    assert!(t.contains("overlaps"), "{t}");
    assert!(t.contains("nowhere"), "{t}");

    let o = gwctl(&h.rw, &["apply", "-f", good.to_str().unwrap(), "--version", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("stale version"), "{}", text(&o));

    // One kind from a file.
    let o = gwctl(&h.rw, &["apply", "-f", good.to_str().unwrap(), "--kind", "rulesets", "--version", "7"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = gwctl(&h.ro, &["get", "rulesets"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.starts_with("# in force: version 7 (document version 7)"), "{t}");
    assert!(t.contains("from-web") && !t.contains("processing_units"), "{t}");
    let o = gwctl(&h.ro, &["get", "all", "-o", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["processing_units"][1]["name"], "db");
    assert_eq!(j["versions"]["processing_units"], 1);

    let o = gwctl(&h.ro, &["status"]);
    let t = text(&o);
    assert!(t.contains("state:        enforcing") && t.contains("version:      7"), "{t}");
    assert!(t.contains("last refused: version 1"), "{t}");

    let o = gwctl(&h.ro, &["stats"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("histogram config_apply (us): n "), "{}", text(&o));

    // A read-only client cannot apply.
    let o = gwctl(&h.ro, &["apply", "-f", good.to_str().unwrap(), "--version", "9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("read-only"), "{}", text(&o));

    // Flows.
    for i in 0..10u64 {
        let (tags, verdict, reason) = if i % 2 == 0 {
            (["role=db"], pb::Verdict::Rejected, bad_mac())
        } else {
            (["role=web"], pb::Verdict::Allowed, "policy_allow")
        };
        h.hub.push(flow(
            1_700_000_000_000_000_000 + i,
            &format!("10.9.0.{i}"),
            &tags,
            "10.0.1.5",
            5432,
            verdict,
            reason,
        ));
    }
    let o = gwctl(&h.ro, &["observe", "--last", "3"]);
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(t.lines().count(), 3, "{t}");
    assert!(t.lines().last().unwrap().contains("10.9.0.9:40000 (client id 200 role=web) -> 10.0.1.5:5432 (db id 101 role=db)  tcp  allowed  policy_allow  rule db/incoming/from-web"), "{t}");
    let o = gwctl(&h.ro, &["observe", "--from-tag", "role=db", "--verdict", "rejected", "--reason", bad_mac()]);
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(t.lines().count(), 5, "{t}");
    assert!(t.lines().all(|l| l.contains(&format!("rejected  {}", bad_mac()))), "{t}");
    // A reason the dataplane does not emit is refused before sending, with the valid names.
    let o = gwctl(&h.ro, &["observe", "--reason", "bad_mac"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("unknown reason \"bad_mac\"") && text(&o).contains(bad_mac()), "{}", text(&o));
    let o = gwctl(&h.ro, &["observe", "--not", "--reason", bad_mac(), "-o", "json"]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|j| j["flow"]["verdict"] == "allowed"), "{lines:?}");
    let o = gwctl(&h.ro, &["observe", "--ip", "10.9.0.4"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    // -o count reads the records framed, not decoded: the total is what the
    // filter let through.
    let o = gwctl(&h.ro, &["observe", "--not", "--reason", bad_mac(), "-o", "count"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    let total = t.lines().find(|l| l.starts_with("total")).unwrap_or_else(|| panic!("no total: {t}"));
    assert!(total.contains("flows 5  lost: worker_queue 0, ring 0, reader 0"), "{total}");

    // Exit codes: usage 2, unreachable 3.
    assert_eq!(gwctl(&h.ro, &["observe", "--since", "yesterday-ish"]).status.code(), Some(2));
    assert_eq!(gwctl(&h.ro, &["apply", "-f", "/nonexistent.yaml"]).status.code(), Some(2));
    assert_eq!(gwctl(&h.ro, &["frobnicate"]).status.code(), Some(2));
    let o = gwctl(&dir.path().join("nobody.sock"), &["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("cannot reach the gateway"), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_gwctl")).args(["observe", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("--from-tag"));
}

/// An empty or cut-short file is refused without --allow-empty; status says
/// in words when the policy in force drops everything; -o json gives the
/// state by name.
#[test]
fn gwctl_refuses_wiping_applies_and_names_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    let good = dir.path().join("good.yaml");
    let empty = dir.path().join("empty.yaml");
    let cut = dir.path().join("cut.yaml");
    std::fs::write(&good, GOOD).unwrap();
    std::fs::write(&empty, "").unwrap();
    std::fs::write(&cut, "revision: ce").unwrap();
    let status_json = || {
        let o = gwctl(&h.ro, &["status", "-o", "json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    assert_eq!(status_json()["state"], "no_config_fail_closed");
    let o = gwctl(&h.rw, &["apply", "-f", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(status_json()["state"], "enforcing");

    for f in [&empty, &cut] {
        let o = gwctl(&h.rw, &["apply", "-f", f.to_str().unwrap()]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains("version 1 stays in force"), "{t}");
        assert!(t.contains("no processing units, removing all 2 processing units in force (web, db)"), "{t}");
        assert!(t.contains("--allow-empty"), "{t}");
    }
    let o = gwctl(&h.rw, &["apply", "-f", cut.to_str().unwrap(), "--replace"]);
    assert_eq!(o.status.code(), Some(1), "--replace does not allow an empty result: {}", text(&o));
    let o = gwctl(&h.ro, &["status"]);
    assert!(text(&o).contains("state:        enforcing\n"), "{}", text(&o));

    let o = gwctl(&h.rw, &["apply", "-f", empty.to_str().unwrap(), "--allow-empty"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = gwctl(&h.ro, &["status"]);
    let t = text(&o);
    assert!(t.contains("state:        enforcing a policy that drops everything: no processing units"), "{t}");
    let j = status_json();
    assert_eq!(j["state"], "enforcing_drop_all");
    assert_eq!(j["drops_all"], "no processing units");
}

/// The drop reason of an option whose MAC does not verify, as the dataplane names it.
fn bad_mac() -> &'static str {
    dataplane::stats::DropReason::IdentityBadMac.name()
}

/// A dataplane whose policy in force is `doc` (Explain runs the workers'
/// decision code on it; no DPDK needed).
struct InForce(std::sync::Arc<dataplane::engine::EngineConfig>);

impl controlplane::api::stats::StatsSource for InForce {
    fn stats(&self) -> pb::GetStatsResponse {
        pb::GetStatsResponse::default()
    }
    fn policy_in_force(&self) -> Option<std::sync::Arc<dataplane::engine::EngineConfig>> {
        Some(self.0.clone())
    }
}

const TAGGED: &str = r#"
revision: t1
processing_units:
  - {name: web, tags: [app=web], addresses: [10.2.0.20], identity: 2001}
identities:
  - {identity: 1001, name: client, tags: [app=frontend, env=prod], peer: gw-a}
  - {identity: 1002, name: batch, tags: [app=batch, env=prod], peer: gw-a}
  - {identity: 1003, name: canary, tags: [app=frontend, env=dev], peer: gw-a}
peers:
  - {name: gw-a, keys: [{id: 21, public_key: rpkk17OQp1XpEndN4If+uJpXXc82EU7P8keCkbzIpBs=}]}
rulesets:
  - name: web
    subject: app == web
    incoming:
      - {name: frontends, action: allow, object: app == frontend, protocols: [tcp], ports: [80]}
      - {name: no-dev, action: reject, object: env == dev, protocols: [tcp], ports: [80]}
"#;

/// `explain --tags` that several identities have: each is explained, by the
/// same decision code as by number; tags nobody has are a clear error.
#[test]
fn gwctl_explains_tags_once_per_identity_that_has_them() {
    use dataplane::policy::Reason;
    let dir = tempfile::tempdir().unwrap();
    let cfg = std::sync::Arc::new(dataplane::engine::EngineConfig::from_yaml(TAGGED).unwrap());
    let h = Harness::start_with_stats(dir.path(), 64, control_config(dir.path()), std::sync::Arc::new(InForce(cfg)));
    let explain = |extra: &[&str]| {
        let mut args = vec!["explain", "--pu", "web", "--port", "80", "--direction", "incoming"];
        args.extend_from_slice(extra);
        gwctl(&h.ro, &args)
    };
    // One identity: one answer, as by number.
    let o = explain(&["--tags", "app=batch"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with(&format!("verdict   rejected ({})", Reason::NoMatch.name())), "{}", text(&o));
    // app=frontend: 1001 (allowed by `frontends`) and 1003 (rejected by `no-dev`, rejects first).
    let o = explain(&["--tags", "app=frontend"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.starts_with("2 identities have the tags:"), "{t}");
    let block = |id: &str| {
        t.split(&format!("identity {id}\n")).nth(1).and_then(|b| b.split("\nidentity ").next()).unwrap_or("")
    };
    assert!(block("1001").contains(&format!("verdict   allowed ({})", Reason::PolicyAllow.name())), "{t}");
    assert!(block("1001").contains("rule      web/incoming/frontends allow"), "{t}");
    assert!(block("1003").contains(&format!("verdict   rejected ({})", Reason::PolicyReject.name())), "{t}");
    assert!(block("1003").contains("rule      web/incoming/no-dev reject"), "{t}");
    // Each block is what --identity N answers.
    for id in ["1001", "1003"] {
        let one = text(&explain(&["--identity", id]));
        assert_eq!(block(id).trim_end(), one.trim_end(), "identity {id}");
    }
    // JSON: one answer per identity, in identity order.
    let o = explain(&["--tags", "app=frontend", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let per = v["explain"]["per_identity"].as_array().unwrap_or_else(|| panic!("{v}"));
    let ids: Vec<u64> = per.iter().map(|r| r["remote"]["identity"].as_u64().unwrap()).collect();
    assert_eq!((ids, v["explain"]["identities_matched"].as_u64()), (vec![1001, 1003], Some(2)));
    // Nobody has them: NOT_FOUND, exit 1, naming the tags.
    let o = explain(&["--tags", "app=nobody"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no identity in the directory has the tags \"app=nobody\""), "{}", text(&o));
}
