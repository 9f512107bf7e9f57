//! What the simulated fleet holds: the fleet document (rulesets, one
//! profile, every gateway enrolled) and each gateway's PUs, deterministic.
//!
//! Shaped like issue 5's scale document (`gw_benches::policy_10k_rules_100k_identities`):
//! every PU has a unique `instance` tag, so no two identities share a tag set
//! and the compiler gets no help from grouping; rules select on `app`, `team`
//! and `env`, rulesets on `svc`.

use controlplane::fleet::model::{Enrollment, FleetDocument, LocalPu, NamedProfile, ProfileMapping, PuFile};
use dataplane::policy::model::{Action, ExternalNetwork, PortSpec, Protocol, Rule, Ruleset};

pub const APPS: usize = 2_000;
pub const TEAMS: usize = 40;
pub const SERVICES: usize = 50;
pub const RULES_PER_DIRECTION: usize = 5;
/// The port the one-rule change moves (rulesets[0].incoming[0]).
pub const CHANGED_PORT_BASE: i64 = 20_000;

pub fn gateway_name(g: usize) -> String {
    format!("gw-{g:03}")
}

/// Gateway `g` fronts 10.g.0.0/16; its PU `i` is 10.g.(i/256).(i%256).
pub fn gateway_network(g: usize) -> String {
    format!("10.{g}.0.0/16")
}

/// PU `i` of gateway `g`; `serial` is unique across the fleet (its tags).
pub fn pu(g: usize, i: usize, serial: usize) -> LocalPu {
    LocalPu {
        name: format!("pu-{i}"),
        tags: vec![
            format!("app=app{}", serial % APPS),
            format!("svc=svc{}", serial % SERVICES),
            format!("env={}", ["prod", "stage", "dev"][serial % 3]),
            format!("team=t{}", serial % TEAMS),
            format!("instance={}-{i}", gateway_name(g)),
        ],
        addresses: vec![format!("10.{g}.{}.{}/32", i / 256, i % 256)],
    }
}

pub fn pus(g: usize, count: usize) -> Vec<LocalPu> {
    (0..count).map(|i| pu(g, i, g * count + i)).collect()
}

pub fn pu_file_yaml(pus: &[LocalPu]) -> String {
    serde_yaml::to_string(&PuFile { processing_units: pus.to_vec() }).unwrap_or_default()
}

fn rule(dir: &str, k: usize, n: usize) -> Rule {
    let a = (n * 7919) % APPS;
    let object = match k {
        0 => format!("app == app{a} && env == prod"),
        1 => format!("app in {{app{a}, app{}, app{}}}", (a + 1) % APPS, (a + 2) % APPS),
        2 => format!("team == t{} && env != dev", n % TEAMS),
        3 => format!("ext == e{} || app == app{a}", n % 20),
        _ => format!("app == app{a} && has(team)"),
    };
    Rule {
        name: format!("{dir}-{k}"),
        action: if n.is_multiple_of(7) { Action::Reject } else { Action::Allow },
        object,
        protocols: vec![if k == 3 { Protocol::Any } else { Protocol::Tcp }],
        ports: match k {
            0 => vec![PortSpec::Number(443)],
            1 => vec![PortSpec::Text("8000-8100".into()), PortSpec::Number(9090)],
            _ => vec![],
        },
        observe: n.is_multiple_of(11),
    }
}

/// The fleet document: `rulesets` rulesets of 10 rules, 100 external
/// networks, one profile for every gateway (`site == bench`), `enrolled`
/// as (name, Ed25519 public key hex).
pub fn fleet_document(rulesets: usize, enrolled: &[(String, String)]) -> FleetDocument {
    let mut n = 0;
    let mut next = |dir: &str, k: usize| {
        n += 1;
        rule(dir, k, n)
    };
    let rulesets = (0..rulesets)
        .map(|r| Ruleset {
            name: format!("rs-{r}"),
            subject: format!("svc == svc{} && env in {{prod, dev}}", r % SERVICES),
            incoming: (0..RULES_PER_DIRECTION).map(|k| next("in", k)).collect(),
            outgoing: (0..RULES_PER_DIRECTION).map(|k| next("out", k)).collect(),
        })
        .collect();
    let external_networks = (0..100)
        .map(|i| ExternalNetwork {
            name: format!("ext-{i}"),
            tags: vec![format!("ext=e{}", i % 20), format!("zone=z{}", i % 5)],
            cidrs: vec![format!("{}.{}.0.0/16", 100 + i / 50, i % 50)],
            protocols: vec![Protocol::Any],
            ports: vec![],
        })
        .collect();
    FleetDocument {
        version: 0,
        revision: Some("bench".into()),
        gateways: enrolled
            .iter()
            .map(|(name, key)| Enrollment { name: name.clone(), signing_key: key.clone() })
            .collect(),
        rulesets,
        external_networks,
        profiles: vec![NamedProfile {
            name: "bench".into(),
            managed_tcp_networks: vec!["10.0.0.0/8".into()],
            managed_udp_networks: vec![],
            excluded_networks: vec![],
            ignore: None,
        }],
        profile_mappings: vec![ProfileMapping {
            name: "bench".into(),
            selector: "site == bench".into(),
            profile: "bench".into(),
        }],
        settings: Default::default(),
    }
}

/// The one-rule change of round `round`: the port of rulesets[0]'s first incoming rule.
pub fn change_one_rule(doc: &mut FleetDocument, round: usize) {
    if let Some(r) = doc.rulesets.first_mut().and_then(|rs| rs.incoming.first_mut()) {
        r.ports = vec![PortSpec::Number(CHANGED_PORT_BASE + round as i64)];
    }
}
