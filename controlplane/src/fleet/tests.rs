//! The fleet's pure parts together: sealed objects in a view, verified,
//! built into one gateway's document, and validated as gwctl does.

use dataplane::policy::model::{LocalKeys, Peer, PeerKey};
use ed25519_dalek::SigningKey;

use super::build::{build, Me};
use super::layout::Layout;
use super::model::*;
use super::operator::{guard, validate, FleetApplyOptions};
use super::sign::{seal, OPERATOR};
use super::view::{FleetView, Raw};

const OP: u8 = 1;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn enroll(name: &str, seed: u8) -> Enrollment {
    Enrollment { name: name.into(), signing_key: hex::encode(key(seed).verifying_key().to_bytes()) }
}

fn fleet_doc(version: u64) -> FleetDocument {
    let text = "
rulesets:
  - name: web
    subject: app == web
    incoming:
      - {name: from-frontend, action: allow, object: app == frontend, protocols: [tcp], ports: [8080]}
profiles:
  - {name: lab, managed_tcp_networks: [198.18.0.0/24]}
  - {name: dmz, excluded_networks: [10.0.0.0/8]}
profile_mappings:
  - {name: lab-sites, selector: site == lab, profile: lab}
  - {name: dmz-sites, selector: zone == dmz, profile: dmz}
";
    let mut d = FleetDocument::from_yaml(text).unwrap();
    d.version = version;
    d.gateways = vec![enroll("gw-a", 10), enroll("gw-b", 11), enroll("gw-c", 12)];
    d
}

struct Etcd {
    layout: Layout,
    view: FleetView,
    rev: i64,
}

impl Etcd {
    fn new() -> Etcd {
        let layout = Layout::new("/igw");
        let view = FleetView::new(layout.clone(), key(OP).verifying_key());
        Etcd { layout, view, rev: 1 }
    }
    fn put_raw(&mut self, k: String, value: Vec<u8>) {
        self.rev += 1;
        self.view.put(k, Raw { value, create_revision: self.rev, mod_revision: self.rev });
    }
    fn document(&mut self, d: &FleetDocument) {
        let k = self.layout.fleet_document();
        let v = seal(OPERATOR, &key(OP), &k, d);
        self.put_raw(k, v);
    }
    fn register(&mut self, gw: &str, seed: u8, key_id: u32) {
        let k = self.layout.registration(gw);
        let reg = Registration {
            name: gw.into(),
            tags: vec![],
            keys: vec![PublishedKey {
                id: key_id,
                public_key: hex::encode([key_id as u8; 32]),
                not_before: None,
                not_after: None,
            }],
            networks: vec![format!("198.18.{key_id}.0/24")],
            api: String::new(),
            started_at: 0,
        };
        let v = seal(gw, &key(seed), &k, &reg);
        self.put_raw(k, v);
    }
    fn pu(&mut self, gw: &str, seed: u8, name: &str, identity: u32, tags: &[&str]) {
        let k = self.layout.pu(gw, name);
        let rec = PuRecord {
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            addresses: vec![format!("198.18.{}.{}", seed, identity % 200)],
            identity,
        };
        let v = seal(gw, &key(seed), &k, &rec);
        self.put_raw(k, v);
    }
    fn view_raw(&self, k: &str) -> Vec<u8> {
        self.view.raw(k).unwrap().value.clone()
    }
}

fn me(name: &str, tags: &[&str]) -> Me {
    Me {
        name: name.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        local: LocalKeys {
            gateway: name.into(),
            key_id: 1,
            private_key_file: None,
            private_key: Some(hex::encode([7u8; 32])),
            not_before: None,
            previous_keys: vec![],
        },
    }
}

fn three_gateways() -> Etcd {
    let mut e = Etcd::new();
    e.document(&fleet_doc(1));
    e.register("gw-a", 10, 1);
    e.register("gw-b", 11, 2);
    e.register("gw-c", 12, 3);
    e.pu("gw-a", 10, "client", 100_000, &["app=frontend"]);
    e.pu("gw-b", 11, "server", 100_001, &["app=web"]);
    e.pu("gw-c", 12, "other", 100_002, &["app=other"]);
    e.view.refresh(1000);
    e
}

#[test]
fn a_gateway_gets_its_pus_the_others_as_identities_and_peers_and_the_profile_its_tags_select() {
    let e = three_gateways();
    let b = build(&e.view, &me("gw-a", &["site=lab"]), 1000).unwrap();
    let d = b.document.unwrap();
    assert_eq!(b.profile, "lab");
    assert_eq!(d.enforcer_profile.managed_tcp_networks, vec!["198.18.0.0/24"]);
    assert_eq!(
        d.processing_units.iter().map(|p| (p.name.as_str(), p.identity)).collect::<Vec<_>>(),
        [("client", 100_000)]
    );
    let ids: Vec<(u32, &str)> = d.identities.iter().map(|i| (i.identity, i.peer.as_str())).collect();
    assert_eq!(ids, [(100_001, "gw-b"), (100_002, "gw-c")]);
    assert_eq!(d.peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["gw-b", "gw-c"]);
    assert_eq!(d.revision.as_deref(), Some("fleet 1"));
    // and it compiles
    dataplane::policy::compile(&d).unwrap();
    // no mapping selects: the built-in default
    let b = build(&e.view, &me("gw-a", &["site=elsewhere"]), 1000).unwrap();
    assert_eq!(b.profile, "default");
}

#[test]
fn the_fleets_option_version_is_what_every_peer_is_sent() {
    let mut e = three_gateways();
    let d = build(&e.view, &me("gw-a", &[]), 1000).unwrap().document.unwrap();
    assert!(d.peers.iter().all(|p| p.option_version.is_none()), "unset: each peer gets the default, 1");
    let mut doc = fleet_doc(2);
    doc.settings.option_version = Some(2);
    e.document(&doc);
    e.view.refresh(1000);
    let d = build(&e.view, &me("gw-a", &[]), 1000).unwrap().document.unwrap();
    assert_eq!(d.peers.iter().map(|p| p.option_version).collect::<Vec<_>>(), [Some(2), Some(2)]);
    let cfg = dataplane::engine::EngineConfig::from_document(&d).unwrap();
    let sent = cfg.keys.tx_key(0, 1).map(|k| k.tx_version());
    assert_eq!(sent, Some(dataplane::identity::TcpVersion::OneBlock));
}

#[test]
fn two_matching_profile_mappings_refuse_the_document_naming_both() {
    let e = three_gateways();
    let b = build(&e.view, &me("gw-a", &["site=lab", "zone=dmz"]), 1000).unwrap();
    let problems = b.document.unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let m = &problems[0].message;
    assert!(
        m.contains("\"lab-sites\"") && m.contains("\"dmz-sites\"") && m.contains("match 2 profile mappings"),
        "{m}"
    );
}

#[test]
fn forged_altered_or_unenrolled_objects_are_ignored_and_counted() {
    let mut e = three_gateways();
    // a PU for gw-b signed with gw-c's key
    let k = e.layout.pu("gw-b", "evil");
    let rec = PuRecord { name: "evil".into(), tags: vec!["app=frontend".into()], addresses: vec![], identity: 5 };
    let v = seal("gw-b", &key(12), &k, &rec);
    e.put_raw(k.clone(), v);
    // gw-a's PU altered after signing
    let k2 = e.layout.pu("gw-a", "client");
    let mut env: super::sign::Envelope = serde_json::from_slice(&e.view_raw(&k2)).unwrap();
    env.body = env.body.replace("frontend", "admin");
    e.put_raw(k2.clone(), serde_json::to_vec(&env).unwrap());
    // a gateway nobody enrolled
    e.register("gw-x", 99, 9);
    // a fleet document not signed by the operator
    let mut forged = fleet_doc(2);
    forged.rulesets.clear();
    let kd = e.layout.fleet_document();
    let before = e.view.verified.document.clone();
    let v = seal(OPERATOR, &key(66), &kd, &forged);
    e.put_raw(kd.clone(), v);
    e.view.refresh(1000);
    let r = &e.view.verified.refused;
    assert_eq!(r.get(&k).map(String::as_str), Some("the signature does not verify (forged or altered)"));
    assert_eq!(r.get(&k2).map(String::as_str), Some("the signature does not verify (forged or altered)"));
    assert!(r.get(&e.layout.registration("gw-x")).unwrap().contains("not enrolled"), "{r:?}");
    assert_eq!(r.get(&kd).map(String::as_str), Some("the signature does not verify (forged or altered)"));
    // the last good fleet document stays in force
    assert_eq!(e.view.verified.document, before);
    assert_eq!(e.view.refused_total, 4);
    // refreshing again does not count the same objects twice
    e.view.refresh(1001);
    assert_eq!(e.view.refused_total, 4);
    let d = build(&e.view, &me("gw-a", &[]), 1000).unwrap().document.unwrap();
    assert_eq!(d.rulesets.len(), 1);
    assert!(d.identities.iter().all(|i| i.identity != 5));
    assert!(d.peers.iter().all(|p| p.name != "gw-x"));
    // an older signed document put back is a rollback: refused, the newer stays
    let mut e = three_gateways();
    e.document(&fleet_doc(3));
    e.view.refresh(1000);
    e.document(&fleet_doc(2));
    e.view.refresh(1000);
    assert_eq!(e.view.verified.document.as_ref().map(|d| d.version), Some(3));
    assert!(e.view.verified.refused[&kd].contains("a rollback"), "{:?}", e.view.verified.refused);
}

#[test]
fn with_no_fleet_document_nothing_is_built() {
    let mut e = Etcd::new();
    e.register("gw-b", 11, 2);
    e.view.refresh(1000);
    assert!(build(&e.view, &me("gw-a", &[]), 1000).is_none());
}

#[test]
fn the_older_claim_of_an_identity_wins_and_the_conflict_is_reported() {
    let mut e = three_gateways();
    e.pu("gw-c", 12, "squatter", 100_001, &["app=web"]);
    e.view.refresh(1000);
    let b = build(&e.view, &me("gw-a", &[]), 1000).unwrap();
    let d = b.document.unwrap();
    let holder: Vec<&str> = d.identities.iter().filter(|i| i.identity == 100_001).map(|i| i.peer.as_str()).collect();
    assert_eq!(holder, ["gw-b"]);
    assert_eq!(b.conflicts.len(), 1);
    assert!(b.conflicts[0].message.contains("already held by gw-b/server"), "{:?}", b.conflicts);
}

#[test]
fn a_vanished_gateway_stays_for_the_grace_period_then_goes() {
    let mut e = three_gateways();
    let k = e.layout.registration("gw-b");
    e.view.delete(&k, 100);
    e.view.refresh(1000);
    let grace = fleet_doc(1).settings.peer_grace_s;
    let peers = |e: &Etcd, now| {
        build(&e.view, &me("gw-a", &[]), now)
            .unwrap()
            .document
            .unwrap()
            .peers
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(peers(&e, 1000 + grace - 1), ["gw-b", "gw-c"]);
    assert!(e.view.expire(1000 + grace, grace));
    assert_eq!(peers(&e, 1000 + grace), ["gw-c"]);
    // and its identities went with it (no peer to claim them)
    let d = build(&e.view, &me("gw-a", &[]), 1000 + grace).unwrap().document.unwrap();
    assert!(d.identities.iter().all(|i| i.peer != "gw-b"));
}

#[test]
fn after_a_restart_the_peers_in_force_are_kept_until_they_register_or_their_grace_ends() {
    let mut e = Etcd::new();
    e.document(&fleet_doc(1));
    e.pu("gw-b", 11, "server", 100_001, &["app=web"]);
    let peer = Peer {
        name: "gw-b".into(),
        keys: vec![PeerKey { id: 2, public_key: hex::encode([2u8; 32]), not_before: None, not_after: None }],
        networks: vec!["198.18.2.0/24".into()],
        option_version: None,
    };
    e.view.remember_peers(&[peer]);
    e.view.refresh(1000);
    let d = build(&e.view, &me("gw-a", &[]), 1000).unwrap().document.unwrap();
    assert_eq!(d.peers.len(), 1);
    assert_eq!(d.identities.len(), 1);
}

#[test]
fn gwctl_validation_names_every_problem_and_the_guard_protects_the_fleet() {
    let mut d = fleet_doc(0);
    d.gateways.push(enroll("gw-a", 10));
    d.gateways.push(Enrollment { name: "bad/name".into(), signing_key: "xyz".into() });
    d.profile_mappings.push(ProfileMapping { name: "x".into(), selector: "app ==".into(), profile: "nope".into() });
    d.settings.default_profile = Some("missing".into());
    d.rulesets[0].subject = "app = = web".into();
    let p = validate(&d);
    let text: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    let has = |s: &str| text.iter().any(|m| m.contains(s));
    assert!(has("\"gw-a\" is enrolled twice"), "{text:#?}");
    assert!(has("gateways[4].name \"bad/name\""), "{text:#?}");
    assert!(has("\"bad/name\": signing_key: not hex"), "{text:#?}");
    assert!(has("names profile \"nope\", which is not defined"), "{text:#?}");
    assert!(has("profile mapping \"x\":"), "{text:#?}");
    assert!(has("settings.default_profile \"missing\""), "{text:#?}");
    assert!(p.iter().any(|p| p.resource == "rulesets"), "{text:#?}");
    assert!(validate(&fleet_doc(0)).is_empty());
    // the guard
    let old = fleet_doc(3);
    let mut new = fleet_doc(0);
    new.gateways.truncate(1);
    let g = guard(Some(&old), &new, FleetApplyOptions::default());
    assert!(g[0].message.contains("removes 2 of the 3 gateways"), "{g:?}");
    assert!(guard(Some(&old), &new, FleetApplyOptions { replace: true, ..Default::default() }).is_empty());
    new.rulesets.clear();
    let g = guard(None, &new, FleetApplyOptions::default());
    assert!(g[0].message.contains("there is no ruleset"), "{g:?}");
}

#[test]
fn the_document_in_force_is_compared_in_place_field_by_field() {
    let e = three_gateways();
    let doc = build(&e.view, &me("gw-a", &["site=lab"]), 1000).unwrap().document.unwrap();
    let in_force = crate::store::Parts::from(doc.clone());
    assert!(super::agent::same_document(&in_force, &doc));
    let mut other = doc.clone();
    other.rulesets[0].incoming[0].ports = vec![dataplane::policy::model::PortSpec::Number(8081)];
    assert!(!super::agent::same_document(&in_force, &other));
    let mut other = doc.clone();
    other.identities.pop();
    assert!(!super::agent::same_document(&in_force, &other));
    let mut other = doc;
    other.revision = Some("fleet 2".into());
    assert!(!super::agent::same_document(&in_force, &other));
}
