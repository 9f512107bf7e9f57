//! Runs the policy fuzz target bodies (`dataplane::policy::fuzzing`) over the
//! committed corpus plus deterministic mutations, so plain `cargo test`
//! exercises them. `cargo test -p dataplane --no-default-features --test
//! policy_fuzz_replay -- --ignored write_seed_corpus` regenerates
//! `fuzz/corpus/policy_*/seed-*`.

use std::path::PathBuf;

use dataplane::policy::fuzzing::{self as pf, Choices};
use dataplane::policy::PolicyDocument;
use dataplane::wire::fuzzing::{replay_corpus, XorShift};

const EXAMPLES: [&str; 7] = [
    include_str!("../../docs/examples/policy.yaml"),
    include_str!("../../docs/examples/e2e-gw-a.yaml"),
    include_str!("../../docs/examples/e2e-gw-b.yaml"),
    include_str!("../../docs/examples/bench-gw-a.yaml"),
    include_str!("../../docs/examples/bench-gw-b.yaml"),
    include_str!("../../docs/examples/bench-gw-a-udp.yaml"),
    include_str!("../../docs/examples/bench-events.yaml"),
];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// The example documents, and the shapes issue 18 reports: empty, cut short,
/// cut mid-rule, a long junk value.
fn document_seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = EXAMPLES.iter().map(|s| s.as_bytes().to_vec()).collect();
    v.push(Vec::new());
    v.push(b"revision: ce\n".to_vec());
    let p = EXAMPLES[0];
    v.push(p.as_bytes()[..p.find("    outgoing:").unwrap_or(p.len() / 2)].to_vec());
    v.push(
        format!("processing_units:\n- name: a\n  addresses: [\"{}\"]\n  identity: 1\n", "9".repeat(600)).into_bytes(),
    );
    v
}

/// Byte strings for the structured builder: sane (first byte even) and not.
fn structured_seeds() -> Vec<Vec<u8>> {
    let mut rng = XorShift(0x0dd_ba11);
    (0..12)
        .map(|i| {
            let n = 32 + 32 * (i % 6);
            let mut v: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            v[0] = (i % 2) as u8;
            v
        })
        .collect()
}

type Body = fn(&[u8]);
type Seeds = fn() -> Vec<Vec<u8>>;
const TARGETS: [(&str, Body, Seeds); 2] =
    [("policy_document", pf::document, document_seeds), ("policy_compile", pf::structured, structured_seeds)];

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

/// The example documents are accepted, so the snapshot checks (round trip,
/// addresses, the naive decision model) run on real policies.
#[test]
fn examples_reach_the_snapshot_checks() {
    for text in EXAMPLES {
        let doc = PolicyDocument::from_yaml(text).unwrap();
        dataplane::policy::compile(&doc).unwrap_or_else(|e| panic!("{e}"));
        pf::check(&doc, text.len());
    }
}

/// The structured builder's sane mode mostly builds accepted documents (else
/// the snapshot checks would rarely run under the fuzzer).
#[test]
fn sane_structured_documents_are_mostly_accepted() {
    let mut rng = XorShift(0x5a1e);
    let (mut ok, n) = (0, 400);
    for _ in 0..n {
        let mut v: Vec<u8> = (0..200).map(|_| rng.next_u64() as u8).collect();
        v[0] = 0;
        let doc = pf::build(&mut Choices::new(&v));
        if dataplane::policy::compile(&doc).is_ok() {
            ok += 1;
        }
    }
    assert!(ok * 2 > n, "only {ok} of {n} sane documents were accepted");
}
