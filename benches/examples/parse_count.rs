//! `parse_frame` in a loop, for instruction counts that do not depend on what
//! else the machine is doing (the criterion `packet` bench gives times):
//!
//!   cargo build --release -p gw-benches --example parse_count
//!   valgrind --tool=callgrind target/release/examples/parse_count 1000000 v4
//!   valgrind --tool=callgrind target/release/examples/parse_count 2000000 v4
//!
//! The difference of the two totals over 1M is the count per parse (the same
//! Linux SYN as the `packet` bench, result black-boxed by reference as there).

use dataplane::wire::builder::{build, Spec};
use dataplane::wire::parse_frame;
use std::hint::black_box;

const LINUX_OPTS: [u8; 20] = [2, 4, 5, 180, 4, 2, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0, 1, 3, 3, 7];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(n), Some(family)) = (args.get(1).and_then(|n| n.parse::<u64>().ok()), args.get(2)) else {
        eprintln!("usage: parse_count ITERATIONS v4|v6");
        std::process::exit(2);
    };
    let s = Spec { tcp_options: &LINUX_OPTS, ..Spec::default() };
    let f = if family == "v6" { build(&s.with_v6()) } else { build(&s) };
    for _ in 0..n {
        let _ = black_box(&parse_frame(black_box(&f)));
    }
}
