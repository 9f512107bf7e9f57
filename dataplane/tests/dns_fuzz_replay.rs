//! Runs the DNS fuzz target's body (`dataplane::dns::fuzzing::parse`) over
//! the fixtures (real dnsmasq responses and hostile messages,
//! `tests/fixtures/dns/*.bin`), the committed corpus and deterministic
//! mutations of them, so plain `cargo test` exercises it.
//! `cargo test -p dataplane --no-default-features --test dns_fuzz_replay --
//! --ignored write_seed_corpus` regenerates `fuzz/corpus/dns/seed-*`.

use std::path::PathBuf;

use dataplane::dns::fuzzing;
use dataplane::wire::fuzzing::replay_corpus;

fn dir(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn fixtures() -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir("tests/fixtures/dns"))
        .expect("the DNS fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    names.sort();
    assert!(names.len() >= 15, "7 captured and 8 hostile fixtures, found {}", names.len());
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
#[ignore = "regenerates the committed seed corpus"]
fn write_seed_corpus() {
    let d = dir("fuzz/corpus/dns");
    std::fs::create_dir_all(&d).unwrap();
    for (i, s) in fixtures().iter().enumerate() {
        std::fs::write(d.join(format!("seed-{i:02}")), s).unwrap();
    }
}

#[test]
fn replay_corpus_and_mutations() {
    replay_corpus("dns", &dir("fuzz/corpus/dns"), fixtures(), 20000, fuzzing::parse);
}
