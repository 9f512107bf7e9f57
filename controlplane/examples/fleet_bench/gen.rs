//! What the simulated fleet holds: the fleet document (rulesets, one
//! profile, every gateway enrolled) and each gateway's PUs, deterministic.
//!
//! Shaped like issue 5's scale document (`gw_benches::policy_10k_rules_100k_identities`):
//! every PU has a unique `instance` tag, so no two identities share a tag set
//! and the compiler gets no help from grouping; rules select on `app`, `team`
//! and `env`, rulesets on `svc`.

use controlplane::fleet::model::{Enrollment, FleetDocument, LocalPu, NamedProfile, ProfileMapping, PuFile};
use dataplane::policy::model::{PortSpec, Ruleset};

pub const APPS: usize = gw_benches::APPS as usize;
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

/// The fleet document: `rulesets` rulesets of 10 rules, 100 external
/// networks, one profile for every gateway (`site == bench`), `enrolled`
/// as (name, Ed25519 public key hex).
pub fn fleet_document(rulesets: usize, enrolled: &[(String, String)]) -> FleetDocument {
    let mut n = 0;
    let mut next = |dir: &str, k: usize| {
        n += 1;
        gw_benches::rule(dir, k as u32, n)
    };
    let rulesets = (0..rulesets)
        .map(|r| Ruleset {
            name: format!("rs-{r}"),
            subject: format!("svc == svc{} && env in {{prod, dev}}", r % SERVICES),
            incoming: (0..RULES_PER_DIRECTION).map(|k| next("in", k)).collect(),
            outgoing: (0..RULES_PER_DIRECTION).map(|k| next("out", k)).collect(),
        })
        .collect();
    let external_networks = gw_benches::external_networks(100);
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
