//! Policy compile time and per-decision cost at scale (issue 5's target:
//! 10k rules over 100k identities compiled in at most 200 ms), plus the flow
//! table's established-packet lookup.
//!
//! Run: `CARGO_TARGET_DIR=target-pol cargo bench -p gw-benches --bench policy`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dataplane::flow::{FlowKey, FlowState, FlowTable, NewFlow, Timeouts};
use dataplane::policy::{compile, Direction, PuId, Remote, Side};
use gw_benches::{policy_10k_rules_100k_identities as generate, IDENTITIES, PUS};

fn bench_policy(c: &mut Criterion) {
    let doc = generate();
    let t = std::time::Instant::now();
    let snap = compile(&doc).expect("generated document compiles");
    eprintln!("one compile: {:?}; {:?}", t.elapsed(), snap.stats());

    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.bench_function("compile_10k_rules_100k_identities", |b| b.iter(|| compile(black_box(&doc)).unwrap()));
    g.finish();

    // Decisions: a fixed pseudo-random mix of PUs, identities, ports, directions.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let queries: Vec<(PuId, Direction, Remote, u16)> = (0..4096)
        .map(|i| {
            let pu = PuId((rnd() % PUS as u64) as u32);
            let dir = if i % 2 == 0 { Direction::Incoming } else { Direction::Outgoing };
            let remote = if i % 8 == 7 {
                Remote::Address(IpAddr::V4(Ipv4Addr::new(100, (rnd() % 50) as u8, 1, 1)))
            } else {
                Remote::Identity(1_000_000 + (rnd() % IDENTITIES as u64) as u32)
            };
            let port = [443u16, 8050, 9090, 22][(rnd() % 4) as usize];
            (pu, dir, remote, port)
        })
        .collect();
    let allowed = queries.iter().filter(|q| snap.decide(q.0, q.1, q.2, 6, q.3).allowed()).count();
    eprintln!("decision mix: {allowed} of {} allowed", queries.len());
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(queries.len() as u64));
    g.bench_function("decide", |b| {
        b.iter(|| {
            let mut allowed = 0u32;
            for &(pu, dir, remote, port) in &queries {
                allowed += snap.decide(pu, dir, remote, 6, port).allowed() as u32;
            }
            allowed
        })
    });
    let addrs: Vec<(IpAddr, IpAddr)> = (0..4096u32)
        .map(|i| {
            (
                IpAddr::V4(Ipv4Addr::new(10, 1, ((i % PUS) / 256) as u8, ((i % PUS) % 256) as u8)),
                IpAddr::V4(Ipv4Addr::new(100, (i % 60) as u8, 0, 1)),
            )
        })
        .collect();
    g.bench_function("classify", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for &(s, d) in &addrs {
                n += matches!(snap.classify(Side::Inside, s, d), dataplane::policy::Classification::LocalPu { .. })
                    as u32;
            }
            n
        })
    });
    g.bench_function("identity_allowed_for_peer", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for (i, _) in queries.iter().enumerate() {
                n += snap.identity_allowed_for_peer(1_000_000 + (i as u32 * 24) % IDENTITIES, 1) as u32;
            }
            n
        })
    });
    g.finish();
}

fn bench_flow(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow");
    for &flows in &[1_000usize, 1_000_000] {
        let mut tb = FlowTable::new(flows, 1024, 0x1234_5678, Timeouts::default());
        let key = |i: usize| {
            FlowKey::new(
                Side::Inside,
                IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + (i as u32 >> 12))),
                IpAddr::V4(Ipv4Addr::new(100, 0, 0, 1)),
                (i & 0xfff) as u16 + 1024,
                443,
                6,
            )
        };
        for i in 0..flows {
            tb.insert(
                key(i),
                NewFlow { pu: PuId(0), initiator: Side::Inside, state: FlowState::Established, seq: 0 },
                0,
            )
            .unwrap();
        }
        // Lookups in a scattered order, as packets of many flows interleave.
        let order: Vec<FlowKey> = (0..4096usize).map(|i| key((i * 2_654_435_761) % flows)).collect();
        g.throughput(Throughput::Elements(order.len() as u64));
        g.bench_function(format!("lookup_established_{flows}"), |b| {
            b.iter_batched_ref(
                || (),
                |_| {
                    let mut hits = 0u32;
                    for k in &order {
                        if let Some(f) = tb.lookup(k, 1) {
                            f.account(Side::Inside, 64);
                            hits += 1;
                        }
                    }
                    hits
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_policy, bench_flow);
criterion_main!(benches);
