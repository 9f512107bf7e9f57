//! Times the policy compile of the 10k-rule/100k-identity document, a few
//! rounds (for profiling: `valgrind --tool=callgrind target/release/examples/compile_policy 1`).
//!
//! Run: `cargo run --release -p gw-benches --example compile_policy [ROUNDS]`

use std::time::Instant;

fn main() {
    let rounds: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let doc = gw_benches::policy_10k_rules_100k_identities();
    for _ in 0..rounds {
        let t = Instant::now();
        let snap = dataplane::policy::compile(&doc).expect("the document compiles");
        let s = snap.stats();
        println!("compile: {:.1} ms ({} PUs, {} identities, {} rules)", t.elapsed().as_secs_f64() * 1e3, s.pus, s.identities, s.rules);
    }
}
