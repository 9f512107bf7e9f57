//! The flow names of docs/api.md ("One shape of a flow") are the code's one
//! list (`controlplane::flownames`, which takes directions, actions and
//! reasons from the dataplane): every value the table gives is in the list
//! and the list holds nothing the table lacks; every filter value is accepted
//! by the server's filters and by gwctl (which refuses a wrong one before
//! sending), and matches a record resolved from the dataplane's own records
//! (its decisions, drop reasons, directions and protocols) the way gatewayd
//! resolves them for `GetFlows`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;

use controlplane::api::flows::FlowFilterSet;
use controlplane::api::pb;
use controlplane::api::wire::{FlowFeed, RingFlow};
use controlplane::flowhub::Filter;
use controlplane::flowlog::ConfigHistory;
use controlplane::flownames;
use dataplane::engine::EngineConfig;
use dataplane::events::{EventKind, FlowRecord};
use dataplane::flow::FlowKey;
use dataplane::policy::{Action, Decision, Direction, PuId, Reason, Remote, Side};
use dataplane::stats::DropReason;

/// A filter of one field, with one value.
type MakeFilter = fn(&str) -> pb::FlowFilter;

/// The table between the `flow-names` markers: first column's field → the values (backquoted) of the last.
fn doc_table() -> BTreeMap<String, Vec<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let start = doc.find("<!-- flow-names:begin -->").expect("the table's start marker");
    let end = doc.find("<!-- flow-names:end -->").expect("the table's end marker");
    let ticked = |s: &str| s.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>();
    doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            (ticked(cols[1])[0].clone(), ticked(cols[3]))
        })
        .collect()
}

const POLICY: &str = r#"
revision: names
processing_units:
  - {name: web, tags: [app=web], addresses: [10.2.0.20], identity: 2001}
identities:
  - {identity: 1001, name: client, tags: [app=frontend], peer: gw-b}
peers:
  - name: gw-b
    keys: [{id: 21, public_key: rpkk17OQp1XpEndN4If+uJpXXc82EU7P8keCkbzIpBs=}]
rulesets:
  - name: web
    subject: app == web
    incoming:
      - {name: frontends, action: allow, object: app == frontend, protocols: [tcp], ports: [80]}
      - {name: office, action: allow, object: ext == office, protocols: [tcp, udp, icmp, any]}
      - {name: watch, action: reject, object: app == frontend, protocols: [tcp], ports: [81], observe: true}
    outgoing:
      - {name: no-bad, action: reject, object: ext == bad, protocols: [tcp]}
external_networks:
  - {name: office, tags: [ext=office], cidrs: [192.168.50.0/24]}
  - {name: bad, tags: [ext=bad], cidrs: [192.168.60.0/24]}
"#;

/// Records as workers make them: the policy's own decisions (allowed,
/// rejected by rule, no match, external networks, observe-only) both ways,
/// every protocol, every drop reason, an end.
fn records(cfg: &EngineConfig) -> Vec<(u32, FlowRecord)> {
    let p = &cfg.policy;
    let web: std::net::IpAddr = "10.2.0.20".parse().unwrap();
    let mut out = Vec::new();
    let mut push = |side: Side, remote: &str, id: Option<u32>, proto: u8, port: u16, kind: EventKind| {
        let remote_ip: std::net::IpAddr = remote.parse().unwrap();
        let (dir, key) = match side {
            Side::Outside => (Direction::Incoming, FlowKey::new(Side::Outside, remote_ip, web, 40000, port, proto)),
            Side::Inside => (Direction::Outgoing, FlowKey::new(Side::Inside, web, remote_ip, 40000, port, proto)),
        };
        let r = id.map_or(Remote::Address(remote_ip), Remote::Identity);
        let d = p.decide(PuId(0), dir, r, proto, port);
        let mut rec = FlowRecord::new(kind, 1, key, side, 0, cfg.generation()).with_decision(&d);
        rec.remote_identity = id;
        out.push((0, rec));
        d.reason
    };
    let mut seen = BTreeSet::new();
    seen.insert(push(Side::Outside, "198.18.0.1", Some(1001), 6, 80, EventKind::Decision).name());
    seen.insert(push(Side::Outside, "198.18.0.1", Some(1001), 6, 81, EventKind::Decision).name());
    seen.insert(push(Side::Outside, "198.18.0.1", Some(1001), 6, 82, EventKind::Decision).name());
    seen.insert(push(Side::Outside, "198.18.0.1", Some(4242), 6, 80, EventKind::Decision).name());
    for proto in [6, 17, 1, 58, 47] {
        seen.insert(push(Side::Outside, "192.168.50.7", None, proto, 80, EventKind::Decision).name());
    }
    seen.insert(push(Side::Inside, "192.168.60.7", None, 6, 443, EventKind::Decision).name());
    push(Side::Outside, "198.18.0.1", Some(1001), 6, 80, EventKind::End);
    for want in ["policy_allow", "no_match", "observed_only", "unknown_identity", "external_network_allow"] {
        assert!(seen.contains(want), "the policy decided {want}: {seen:?}");
    }
    // The decisions this policy cannot make here (a PU outside the snapshot,
    // ignored and excluded traffic, a reject by identity rule): decided as the engine records them.
    for reason in Reason::ALL {
        let key = FlowKey::new(Side::Outside, "198.18.0.1".parse().unwrap(), web, 40000, 80, 6);
        let allow = matches!(reason, Reason::PolicyAllow | Reason::ExternalNetworkAllow);
        let action = if allow { Action::Allow } else { Action::Reject };
        let d = Decision { action, rule: None, external: None, observed: None, reason };
        out.push((
            0,
            FlowRecord::new(EventKind::Decision, 1, key, Side::Outside, 0, cfg.generation()).with_decision(&d),
        ));
    }
    for reason in DropReason::ALL {
        let key = FlowKey::new(Side::Outside, "198.18.0.1".parse().unwrap(), web, 40000, 80, 6);
        let mut r = FlowRecord::new(EventKind::Drop, 1, key, Side::Outside, 0, cfg.generation());
        r.drop = Some(reason);
        out.push((0, r));
    }
    out
}

/// Runs gwctl observe with one filter against no gateway: exit 3 (cannot
/// reach it) means the filter was accepted, 2 that it was refused.
fn gwctl_accepts(flag: &str, value: &str) -> Result<(), String> {
    let o = Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(["--socket", "/nonexistent/gw-flow-names.sock", "--timeout", "1", "observe", flag, value])
        .output()
        .unwrap();
    match o.status.code() {
        Some(3) => Ok(()),
        _ => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
    }
}

#[test]
fn every_flow_name_in_the_docs_is_the_codes_accepted_and_matches_what_the_dataplane_makes() {
    let table = doc_table();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let code: BTreeMap<&str, BTreeSet<String>> = [
        ("verdict", names(&flownames::VERDICTS.map(|(_, n)| n))),
        ("direction", names(&flownames::DIRECTIONS.map(|d| d.name()))),
        ("protocol", names(&flownames::PROTOCOLS.map(|(_, n)| n))),
        ("type", names(&flownames::EVENT_TYPES.map(|(_, n)| n))),
        ("source.kind", names(&flownames::ENDPOINT_KINDS.map(|(_, n)| n))),
        ("policy.action", names(&flownames::ACTIONS.map(flownames::action_name))),
        ("reason", names(&flownames::reason_names())),
    ]
    .into();
    assert_eq!(table.keys().map(String::as_str).collect::<BTreeSet<_>>(), code.keys().copied().collect());
    for (field, values) in &table {
        // Numbers stand for any number (a protocol).
        let doc: BTreeSet<String> = values.iter().filter(|v| v.parse::<u8>().is_err()).cloned().collect();
        assert_eq!(&doc, &code[field.as_str()], "docs/api.md's {field} against the code's list");
    }

    let cfg = Arc::new(EngineConfig::from_yaml(POLICY).unwrap());
    let history = ConfigHistory::default();
    history.push(cfg.clone());
    let ring: Vec<RingFlow> = FlowFeed::new().resolve(&history, &records(&cfg));
    let filters: [(&str, &str, MakeFilter); 4] = [
        ("verdict", "--verdict", |v| pb::FlowFilter {
            verdict: vec![flownames::check_verdict(v).unwrap() as i32],
            ..Default::default()
        }),
        // Direction and protocol travel as enums: the names become their numbers as gwctl sends them.
        ("direction", "--direction", |v| pb::FlowFilter {
            direction: vec![flownames::direction_pb(flownames::check_direction(v).unwrap()) as i32],
            ..Default::default()
        }),
        ("protocol", "--protocol", |v| pb::FlowFilter {
            protocol: flownames::check_protocol(v).unwrap().into_iter().map(i32::from).collect(),
            ..Default::default()
        }),
        ("reason", "--reason", |v| pb::FlowFilter { reason: vec![v.into()], ..Default::default() }),
    ];
    for (field, flag, filter) in filters {
        for v in &table[field] {
            let set = FlowFilterSet::new(&[filter(v)], &[]).unwrap_or_else(|e| panic!("the server refuses {v}: {e}"));
            assert!(ring.iter().any(|r| set.matches(r)), "{field} {v} matches no record the dataplane made");
            gwctl_accepts(flag, v).unwrap_or_else(|e| panic!("gwctl refuses {flag} {v}: {e}"));
        }
        let e = gwctl_accepts(flag, "no-such-name").unwrap_err();
        assert!(e.contains(flag) && e.contains(&table[field][0]), "gwctl names the valid values: {e}");
        let bad = match field {
            "verdict" => pb::FlowFilter { verdict: vec![99], ..Default::default() },
            "direction" => pb::FlowFilter { direction: vec![0], ..Default::default() },
            "protocol" => pb::FlowFilter { protocol: vec![256], ..Default::default() },
            _ => filter("no-such-name"),
        };
        let e = FlowFilterSet::new(&[bad], &[]).err().unwrap_or_else(|| panic!("the server takes a bad {field}"));
        assert!(e.contains(&table[field][0]), "the server names the valid values: {e}");
    }
    // The other fields' values are what the resolved records carry.
    let flows: Vec<serde_json::Value> = ring
        .iter()
        .map(|r| serde_json::to_value(controlplane::flowjson::flow_json(&r.to_pb(), None)).unwrap()["flow"].clone())
        .collect();
    let carried = |path: &[&str]| {
        flows
            .iter()
            .filter_map(|f| path.iter().try_fold(f, |v, k| v.get(k)).and_then(|v| v.as_str()).map(str::to_owned))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(carried(&["type"]), names(&["started", "ended", "rejected"]).into_iter().collect());
    let kinds =
        carried(&["source", "kind"]).union(&carried(&["destination", "kind"])).cloned().collect::<BTreeSet<_>>();
    assert_eq!(kinds, names(&["pu", "identity", "external"]), "no record resolves to `unknown`");
    assert!(carried(&["policy", "action"]).is_subset(&code["policy.action"]));
}
