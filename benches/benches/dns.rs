//! DNS parser micro-benchmarks: ns to validate a real dnsmasq response
//! (`dataplane/tests/fixtures/dns`) and walk its answer chain, copying the
//! question name out (what the worker does per response). No allocation.
//!
//! Run: `cargo bench -p gw-benches --bench dns`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dataplane::dns::{Message, RData};

const FIXTURES: [(&str, &[u8]); 3] = [
    ("a_50B", include_bytes!("../../dataplane/tests/fixtures/dns/a.bin")),
    ("cname_chain_106B", include_bytes!("../../dataplane/tests/fixtures/dns/cname_chain.bin")),
    ("edns0_2a_79B", include_bytes!("../../dataplane/tests/fixtures/dns/edns0.bin")),
];

fn parse_and_walk(b: &[u8]) -> usize {
    let Ok(m) = Message::parse(b) else { return 0 };
    let q = m.question().name.to_wire();
    let mut n = q.as_bytes().len();
    m.walk_chain(|r, on| {
        if on && matches!(r.data, RData::A(_) | RData::Aaaa(_)) {
            n += r.ttl as usize;
        }
    });
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dns");
    for (name, b) in FIXTURES {
        g.bench_function(format!("parse/{name}"), |x| x.iter(|| Message::parse(black_box(b)).is_ok()));
        g.bench_function(format!("parse_walk_chain/{name}"), |x| x.iter(|| parse_and_walk(black_box(b))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
