//! Runs the control plane's fuzz target bodies (`controlplane::fuzzing`) over
//! the committed corpus plus deterministic mutations, so plain `cargo test`
//! exercises them. `cargo test -p controlplane --test control_fuzz_replay --
//! --ignored write_seed_corpus` regenerates `fuzz/corpus/*/seed-*`.

use std::path::PathBuf;

use controlplane::api::convert::{
    document_to_pb, identities_to_pb, local_to_pb, networks_to_pb, peers_to_pb, profile_to_pb, pus_to_pb,
    rulesets_to_pb,
};
use controlplane::api::pb::{self, apply_request::Content as C};
use controlplane::fuzzing as cf;
use dataplane::policy::PolicyDocument;
use dataplane::wire::fuzzing::replay_corpus;
use prost::Message;

const POLICY: &str = include_str!("../../docs/examples/policy.yaml");
const E2E_A: &str = include_str!("../../docs/examples/e2e-gw-a.yaml");

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn request(version: u64, content: Option<C>, dry_run: bool) -> Vec<u8> {
    pb::ApplyRequest { version, content, dry_run, ..Default::default() }.encode_to_vec()
}

/// Encoded requests: the example as YAML and structured, each kind alone,
/// nothing, an empty and a cut document, a stale version.
fn apply_seeds() -> Vec<Vec<u8>> {
    let doc = PolicyDocument::from_yaml(POLICY).unwrap();
    let e2e = PolicyDocument::from_yaml(E2E_A).unwrap();
    vec![
        request(2, Some(C::DocumentYaml(POLICY.into())), false),
        request(2, Some(C::Document(document_to_pb(&doc, false))), true),
        request(3, Some(C::Document(document_to_pb(&e2e, false))), false),
        request(2, Some(C::Rulesets(pb::Rulesets { rulesets: rulesets_to_pb(&doc.rulesets) })), false),
        request(
            2,
            Some(C::ProcessingUnits(pb::ProcessingUnits { processing_units: pus_to_pb(&doc.processing_units) })),
            false,
        ),
        request(
            2,
            Some(C::Identities(pb::IdentityDirectory {
                local: doc.local.as_ref().map(|l| local_to_pb(l, false)),
                identities: identities_to_pb(&doc.identities),
                peers: peers_to_pb(&doc.peers),
            })),
            false,
        ),
        request(
            2,
            Some(C::ExternalNetworks(pb::ExternalNetworks {
                external_networks: networks_to_pb(&doc.external_networks),
            })),
            false,
        ),
        request(2, Some(C::EnforcerProfile(profile_to_pb(&doc.enforcer_profile))), false),
        request(2, None, false),
        request(2, Some(C::DocumentYaml(String::new())), false),
        request(2, Some(C::DocumentYaml("revision: ce\n".into())), false),
        request(0, Some(C::DocumentYaml(E2E_A.into())), false),
    ]
}

const GOOD_TOML: &str = r#"
[eal]
args = ["-l", "0-2", "--no-huge"]
[ports]
inside = "net_null0"
outside = "net_null1"
[[workers]]
lcore = 1
[[workers]]
lcore = 2
queue = 1
"#;

/// The deployed examples and one with every optional section.
fn toml_seeds() -> Vec<Vec<u8>> {
    let full = format!(
        "{GOOD_TOML}[tuning]\nburst = 64\nidle_backoff_us = 50\nmbufs = 0\nhandoff_ring = 1024\n\
         [policy]\nfile = \"/etc/gatewayd/policy.yaml\"\n[flowlog]\nfile = \"/var/log/gw.jsonl\"\n\
         [flows]\ncapacity = 65536\nevents_queue = 512\n\
         [udp_handshake]\nbackoff_ms = [50, 100]\nhold_per_flow = 8\nhold_total = 512\npending = 256\n\
         [control]\nsocket = \"/run/gw.sock\"\nreadonly_socket = \"/run/gw-ro.sock\"\nstate_dir = \"/var/lib/gw\"\n\
         before_config = \"fail_open\"\nflow_ring = 1024\n\
         [control.tcp]\nlisten = \"127.0.0.1:7443\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nclient_ca = \"/ca.pem\"\n\
         [[control.tcp.clients]]\nname = \"ops\"\nrole = \"read-write\"\n"
    );
    vec![
        include_bytes!("../../deploy/gatewayd.toml").to_vec(),
        include_bytes!("../../deploy/gatewayd.pci.toml").to_vec(),
        GOOD_TOML.as_bytes().to_vec(),
        full.into_bytes(),
        b"[eal]\nargs = []\n[ports]\ninside = \"a\"\noutside = \"a\"\nworkers = []\n[tuning]\nburst = 0\n".to_vec(),
    ]
}

type Body = fn(&[u8]);
type Seeds = fn() -> Vec<Vec<u8>>;
const TARGETS: [(&str, Body, Seeds); 2] =
    [("apply_decode", cf::apply_request, apply_seeds), ("gatewayd_toml", cf::gatewayd_toml, toml_seeds)];

#[test]
#[ignore = "regenerates the committed seed corpus"]
fn write_seed_corpus() {
    for (name, _, seeds) in TARGETS {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
    }
}

#[test]
fn replay_corpus_and_mutations() {
    for (name, body, seeds) in TARGETS {
        replay_corpus(name, &corpus_dir(name), seeds(), 2000, body);
    }
}

/// The seeds reach the paths they are there for: the TOML examples are
/// accepted, the structured example applies (as a dry run).
#[test]
fn seeds_are_what_they_say() {
    for t in &toml_seeds()[..4] {
        let text = std::str::from_utf8(t).unwrap();
        controlplane::config::GatewayConfig::parse(text, "seed").unwrap_or_else(|e| panic!("{e}"));
    }
    let req = pb::ApplyRequest::decode(&apply_seeds()[1][..]).unwrap();
    let content = controlplane::api::convert::content_from_pb(req.content).unwrap();
    assert!(matches!(content, controlplane::store::Content::Document(_)));
}
