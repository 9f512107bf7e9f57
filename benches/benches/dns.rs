//! DNS micro-benchmarks. `dns/parse*`: ns to validate a real dnsmasq
//! response (`dataplane/tests/fixtures/dns`) and walk its answer chain,
//! copying the question name out. `dns/engine/*`: a DNS response through
//! `Engine::process` as a worker runs it: the UDP frame's flow lookup and
//! forward, the full parse, the trust and PU checks, the message parse, the
//! query match, the event (queued; a thread on the other core drains the
//! queue, as the control thread does), and for `query_response_learn` the
//! query before it and the learned-table write (a refresh after the first).
//! No allocation in the engine.
//!
//! After criterion's estimates, the engine cases print on-CPU ns per
//! iteration (`gw_benches::cpu_report`), the figures that survive a shared
//! machine.
//!
//! Run: `cargo bench -p gw-benches --bench dns [-- dns/engine]`

use std::hint::black_box;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use dataplane::buf::VecBuf;
use dataplane::dns::learned::FqdnTable;
use dataplane::dns::{Message, RData, WireName};
use dataplane::engine::{Action, Engine, EngineConfig};
use dataplane::policy::Side;
use dataplane::stats::WorkerStats;
use dataplane::wire::builder::{build, Spec};
use dataplane::wire::ip_proto;

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

const POLICY: &str = r#"
processing_units:
  - {name: client, tags: [app=client], addresses: [10.1.0.1], identity: 1}
rulesets:
  - name: client
    subject: app == client
    outgoing:
      - {name: dns, action: allow, object: ext == dns, protocols: [udp], ports: [53]}
      - {name: api, action: allow, object: ext == api, protocols: [tcp], ports: [8080]}
external_networks:
  - {name: dns, tags: [ext=dns], cidrs: [10.2.0.53/32]}
  - {name: api, tags: [ext=api], fqdns: [api.example.test]}
enforcer_profile:
  managed_tcp_networks: []
  dns_servers: [10.2.0.53/32]
"#;

fn udp(inside: bool, payload: &[u8]) -> Vec<u8> {
    let (mut c, mut s) = ([0u8; 16], [0u8; 16]);
    c[..4].copy_from_slice(&[10, 1, 0, 1]);
    s[..4].copy_from_slice(&[10, 2, 0, 53]);
    let (src, dst, sport, dport) = if inside { (c, s, 40000, 53) } else { (s, c, 53, 40000) };
    build(&Spec { src, dst, proto: ip_proto::UDP, sport, dport, payload, ..Spec::default() })
}

fn engine_bench(c: &mut Criterion) {
    let a = FIXTURES[0].1;
    let id = [a[0], a[1]];
    let mut query = id.to_vec();
    query.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    query.extend_from_slice(WireName::from_text("api.example.test").unwrap().as_bytes());
    query.extend_from_slice(&[0, 1, 0, 1]);
    let (q, r) = (udp(true, &query), udp(false, a));
    let mut cfg = EngineConfig::from_yaml(POLICY).unwrap();
    cfg.fqdn = Some(Arc::new(FqdnTable::new(65536)));
    let stats = Arc::new(WorkerStats::default());
    let (p, mut consumer) = dataplane::events::channel(65536);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drainer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if consumer.pop_events(4096, |e| {
                    black_box(e);
                }) == 0
                {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            }
        })
    };
    let mut engine = Engine::new(4096, 7, stats.clone(), Some(p));
    let now = 1_700_000_000_000_000_000u64;
    let mut buf = VecBuf::from_frame(&q);
    let mut pass = |engine: &mut Engine, f: &[u8], t: u64| {
        let _ = buf.reset(f, 128);
        engine.process(&cfg, if f == q.as_slice() { Side::Inside } else { Side::Outside }, &mut buf, t)
    };
    assert_eq!(pass(&mut engine, &q, now), Action::Forward);
    assert_eq!(pass(&mut engine, &r, now + 1), Action::Forward);
    let mut g = c.benchmark_group("dns/engine");
    let mut n = 0u64;
    g.bench_function("query_response_learn", |x| {
        x.iter(|| {
            n += 1;
            let t = now + n * 10;
            black_box(pass(&mut engine, &q, t));
            black_box(pass(&mut engine, &r, t + 1));
            if n.is_multiple_of(32) {
                engine.publish_events();
            }
        })
    });
    g.bench_function("query_only", |x| {
        x.iter(|| {
            n += 1;
            black_box(pass(&mut engine, &q, now + n * 10));
        })
    });
    g.bench_function("response_unsolicited", |x| {
        x.iter(|| {
            n += 1;
            black_box(pass(&mut engine, &r, now + n * 10));
            if n.is_multiple_of(32) {
                engine.publish_events();
            }
        })
    });
    g.finish();
    // On-CPU ns per iteration (time descheduled on a shared machine not
    // counted): the figures to compare across builds. A response's own cost
    // is query_response_learn − query_only.
    gw_benches::cpu_report("dns/engine/query_response_learn", || {
        n += 1;
        let t = now + n * 10;
        black_box(pass(&mut engine, &q, t));
        black_box(pass(&mut engine, &r, t + 1));
        if n.is_multiple_of(32) {
            engine.publish_events();
        }
    });
    gw_benches::cpu_report("dns/engine/query_only", || {
        n += 1;
        black_box(pass(&mut engine, &q, now + n * 10));
    });
    gw_benches::cpu_report("dns/engine/response_unsolicited", || {
        n += 1;
        black_box(pass(&mut engine, &r, now + n * 10));
        if n.is_multiple_of(32) {
            engine.publish_events();
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = drainer.join();
    // what the cases did (a filtered run may skip some)
    use dataplane::dns::counters::DnsCount;
    let d = &stats.dns;
    eprintln!(
        "dns engine bench: responses {}, learned {}, refreshed {}, unsolicited {}",
        d.get(DnsCount::Responses),
        d.get(DnsCount::Learned),
        d.get(DnsCount::Refreshed),
        d.get(DnsCount::Unsolicited)
    );
}

criterion_group!(benches, bench, engine_bench);
criterion_main!(benches);
