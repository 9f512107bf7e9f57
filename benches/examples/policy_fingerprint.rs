//! Compiles the 10k-rule/100k-identity document and prints a hash of every
//! decision over all identities, one PU per subject class, both directions,
//! a few protocols/ports, plus external addresses: a check that a compiler
//! change kept behaviour (compare the output before and after).
//!
//! Run: `cargo run --release -p gw-benches --example policy_fingerprint`

use std::hash::{Hash, Hasher};

use dataplane::policy::{Direction, PuId, Remote};

fn main() {
    let doc = gw_benches::policy_10k_rules_100k_identities();
    let snap = dataplane::policy::compile(&doc).expect("the document compiles");
    println!("{:?}", snap.stats());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let probes = [(6u8, 443u16), (6, 8050), (6, 9090), (6, 22), (17, 53), (1, 0)];
    let mut remotes: Vec<Remote> = doc.identities.iter().map(|e| Remote::Identity(e.identity)).collect();
    remotes.push(Remote::Identity(7)); // unknown
    for i in 0..100u32 {
        remotes.push(Remote::Address(format!("{}.{}.3.4", 100 + i / 50, i % 50).parse().unwrap()));
    }
    remotes.push(Remote::Address("8.8.8.8".parse().unwrap()));
    for pu in 0..snap.stats().pus.min(60) as u32 {
        for dir in [Direction::Incoming, Direction::Outgoing] {
            for r in &remotes {
                for &(proto, port) in &probes {
                    let d = snap.decide(PuId(pu), dir, *r, proto, port);
                    (d.action as u8, d.rule.map(|r| r.0), d.external.map(|x| x.0), d.reason as u8).hash(&mut h);
                    d.observed.map(|o| (o.action as u8, o.rule.0, o.external.map(|x| x.0))).hash(&mut h);
                }
            }
        }
    }
    println!("decisions fingerprint: {:016x}", h.finish());
}
