//! Times the policy compile of the 10k-rule/100k-identity document, a few
//! rounds (for profiling: `valgrind --tool=callgrind target/release/examples/compile_policy 1`).
//!
//! Run: `cargo run --release -p gw-benches --example compile_policy [ROUNDS]`

use std::time::Instant;

fn main() {
    let rounds: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let doc = gw_benches::policy_10k_rules_100k_identities();
    for _ in 0..rounds {
        let (t, cpu) = (Instant::now(), cpu_ns());
        let snap = dataplane::policy::compile(&doc).expect("the document compiles");
        let (wall, cpu) = (t.elapsed().as_secs_f64() * 1e3, (cpu_ns() - cpu) as f64 / 1e6);
        let s = snap.stats();
        println!(
            "compile: {wall:.1} ms wall, {cpu:.1} ms on CPU ({} PUs, {} identities, {} rules)",
            s.pus, s.identities, s.rules
        );
    }
}

/// This thread's time on a CPU (ns), from /proc/thread-self/schedstat: on a
/// loaded machine the wall time also counts waiting for a core.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}
