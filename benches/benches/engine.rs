//! The packet engine per frame, in-process (no DPDK, no copies but the
//! buffer reset): what `benches/engine.sh` measures end to end, without the
//! PMDs. Cases: established TCP over 1k and 1M flows (made established
//! through the no-flow-state path, as engine.sh does), SYN with identity
//! insert (docs/examples/bench-gw-a.yaml, from the inside) and SYN verify +
//! policy + strip (bench-gw-b.yaml, SYNs signed by A's engine, from the
//! outside), established TCP over 1k flows authenticated at layer 4 (every
//! frame shifted, `est-l4-1k`), and the cost of flow-event export (`events`: the established
//! frames with 1 in 8 a SYN the policy rejects, one event each, with the
//! engine's event queue drained by a thread on the other core, against the
//! same frames with no queue). Reports on-CPU ns per frame (from /proc/thread-self/schedstat,
//! so time spent descheduled on a shared machine is not counted) and wall ns.
//!
//! `rule-hits`: the cost of per-rule hit counting (issue 13): established
//! 1k, SYN verify, and SYNs a rule rejects (every one decided and counted),
//! each with the policy's rule-hit slots (as gatewayd publishes it) and
//! without, alternately, 1 s each, 7 times.
//!
//! `scrape`: established 1k with a thread doing what a `/metrics` scrape
//! does to a worker every 100 ms (reading its counters and the policy's
//! rule-hit slots, relaxed loads) against none, alternately, 1 s each, 7
//! times: the gateway's side of the scrape cost, without the scraper's
//! process competing for the worker's core.
//!
//! Run: `cargo bench -p gw-benches --bench engine [-- CASE...]`
//! `ENGINE_BENCH_NO_LOOK=1`: every frame through `Engine::process` (looked
//! at and processed at once, no prefetch ahead), as this bench ran before it
//! looked ahead: for before/after figures against builds of that time.
//!
//! For an instruction profile: `ENGINE_BENCH_FRAMES=2000000 valgrind
//! --tool=callgrind target/release/deps/engine-* est-1k` (a fixed frame count
//! instead of two seconds).

use std::hint::black_box;
use std::sync::Arc;

use dataplane::buf::{PacketBuf, VecBuf};
use dataplane::engine::{Action, Engine, EngineConfig, Looked};
use dataplane::policy::Side;
use dataplane::stats::WorkerStats;
use dataplane::wire::builder::{build, Spec};
use dataplane::wire::tcp::flags as tf;
use gw_benches::{median, thread_cpu_ns};

const NOW: u64 = 2_000 * 1_000_000_000;
const LINUX_OPTS: [u8; 20] = [2, 4, 5, 180, 4, 2, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0, 1, 3, 3, 7];

fn policy(name: &str) -> Arc<EngineConfig> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples").join(name);
    Arc::new(EngineConfig::load(&p).unwrap_or_else(|e| panic!("{}: {}", p.display(), dataplane::problem::lines(&e))))
}

/// `name` with the layer-4 exchange on (bench-gw-a.yaml has it off for its
/// established flows made from no flow state).
fn policy_layer4(name: &str) -> Arc<EngineConfig> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples").join(name);
    let yaml = std::fs::read_to_string(&p).unwrap().replace("layer4_identity: false", "layer4_identity: true");
    Arc::new(EngineConfig::from_yaml(&yaml).unwrap_or_else(|e| panic!("{name}: {}", dataplane::problem::lines(&e))))
}

/// Flow `i`: client 10.0.x.y:port → server 10.1.0.(1 + i % 254):80.
fn spec(i: u32, flags: u8, opts: &[u8]) -> Spec<'_> {
    let mut src = [0u8; 16];
    let c = i / 50_000;
    src[..4].copy_from_slice(&[10, 0, (c >> 8) as u8, c as u8]);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&[10, 1, 0, 1 + (i % 254) as u8]);
    Spec {
        src,
        dst,
        sport: 1024 + (i % 50_000) as u16,
        dport: 80,
        flags,
        seq: 0x1000 + i,
        ack: if flags & tf::ACK != 0 { 0x9000 } else { 0 },
        tcp_options: opts,
        ..Spec::default()
    }
}

/// Runs `frames` through `engine` round-robin: for about two seconds, or for
/// `ENGINE_BENCH_FRAMES` frames. Every frame must be forwarded.
fn run(name: &str, engine: &mut Engine, cfg: &EngineConfig, side: Side, frames: &[Vec<u8>]) {
    let fixed: Option<u64> = std::env::var("ENGINE_BENCH_FRAMES").ok().and_then(|v| v.parse().ok());
    let mut buf = VecBuf::with_room(&frames[0], 128, 128);
    // As the worker does: each frame looked at (key, hash, flow slot
    // prefetched) LOOK_AHEAD frames before it is processed (the worker's 8).
    const LOOK_AHEAD: usize = 8;
    let look = |e: &Engine, i: usize| e.look(side, &frames[i % frames.len()], dpdk_bindings::prefetch::<u8>);
    let mut ahead: Vec<Looked> = (0..LOOK_AHEAD).map(|k| look(engine, k)).collect();
    let no_look = std::env::var_os("ENGINE_BENCH_NO_LOOK").is_some_and(|v| v == "1");
    let (c0, t0) = (thread_cpu_ns(), std::time::Instant::now());
    let (mut n, mut i) = (0u64, 0usize);
    loop {
        for _ in 0..4096 {
            buf.reset(&frames[i], 128).expect("room");
            let a = if no_look {
                engine.process(cfg, side, &mut buf, NOW + n)
            } else {
                let slot = i % LOOK_AHEAD;
                let l = ahead[slot];
                ahead[slot] = look(engine, i + LOOK_AHEAD);
                engine.process_looked(cfg, side, &mut buf, &l, NOW + n)
            };
            assert_eq!(a, Action::Forward, "{name}: frame {i}");
            black_box(buf.data());
            i += 1;
            if i == frames.len() {
                i = 0;
            }
        }
        n += 4096;
        match fixed {
            Some(f) if n >= f => break,
            None if t0.elapsed() >= std::time::Duration::from_secs(2) => break,
            _ => {}
        }
    }
    let wall = t0.elapsed().as_nanos() as f64 / n as f64;
    let cpu = thread_cpu_ns().saturating_sub(c0) as f64 / n as f64;
    println!(
        "{name:<28} on-CPU {cpu:7.1} ns/frame ({:5.2} Mpps)   wall {wall:7.1} ns/frame   {n} frames",
        if cpu > 0.0 { 1e3 / cpu } else { 0.0 }
    );
}

fn established(name: &str, flows: u32) {
    let cfg = policy("bench-gw-a.yaml");
    let mut e = Engine::new((flows as usize * 64).clamp(65_536, 2 << 20), 7, Arc::new(WorkerStats::default()), None);
    let frames: Vec<Vec<u8>> = (0..flows).map(|i| build(&spec(i, tf::ACK, &[]))).collect();
    for f in &frames {
        // first packet of each flow: no flow state, allowed by the ACL, established
        let mut b = VecBuf::from_frame(f);
        assert_eq!(e.process(&cfg, Side::Inside, &mut b, NOW), Action::Forward);
    }
    assert_eq!(e.table().len(), flows as usize);
    run(name, &mut e, &cfg, Side::Inside, &frames);
}

/// `est-l4-1k`: established TCP over 1k flows that authenticated at layer 4
/// (docs/identity-l4.md), so every frame is shifted (sequence and
/// acknowledgment +20, checksum updated) on the full path: the flows are made
/// by a real exchange between A (bench-gw-a.yaml) and B (bench-gw-b.yaml)
/// with the option stripped from each SYN by hand, then A's inside frames
/// are run as in `est-1k`.
fn established_layer4(name: &str, flows: u32) {
    let (a_cfg, b_cfg) = (policy_layer4("bench-gw-a.yaml"), policy("bench-gw-b.yaml"));
    let mut a = Engine::new(65_536, 7, Arc::new(WorkerStats::default()), None);
    let mut b = Engine::new(65_536, 9, Arc::new(WorkerStats::default()), None);
    let pass = |e: &mut Engine, cfg: &EngineConfig, side: Side, f: &[u8]| -> (Action, Vec<u8>) {
        let mut buf = VecBuf::with_room(f, 128, 128);
        let act = e.process(cfg, side, &mut buf, NOW);
        (act, buf.data().to_vec())
    };
    let frames: Vec<Vec<u8>> = (0..flows).map(|i| build(&spec(i, tf::ACK, &[]))).collect();
    for i in 0..flows {
        let (act, syn) = pass(&mut a, &a_cfg, Side::Inside, &build(&spec(i, tf::SYN, &LINUX_OPTS)));
        assert_eq!(act, Action::Forward);
        let mut stripped = VecBuf::from_frame(&syn);
        let info = dataplane::wire::parse_frame(&syn).unwrap();
        dataplane::identity::strip_tcp(&mut stripped, &info).unwrap();
        assert_eq!(pass(&mut b, &b_cfg, Side::Outside, stripped.data()).0, Action::Forward);
        let c = spec(i, tf::SYN, &[]);
        let sa = build(&Spec {
            src: c.dst,
            dst: c.src,
            sport: c.dport,
            dport: c.sport,
            flags: tf::SYN | tf::ACK,
            seq: 0x9000,
            ack: c.seq + 1,
            tcp_options: &LINUX_OPTS,
            ..Spec::default()
        });
        let (act, sa) = pass(&mut b, &b_cfg, Side::Inside, &sa);
        assert_eq!(act, Action::Forward);
        assert_eq!(pass(&mut a, &a_cfg, Side::Outside, &sa).0, Action::Forward);
        let (act, carrier) = pass(&mut a, &a_cfg, Side::Inside, &frames[i as usize]);
        assert_eq!(act, Action::Forward);
        assert_eq!(pass(&mut b, &b_cfg, Side::Outside, &carrier).0, Action::Forward);
        let rec = match b.effects() {
            [dataplane::engine::udp::Effect::Send { frame, .. }] => b.effect_frame(*frame).to_vec(),
            e => panic!("B's record: {e:?}"),
        };
        b.clear_effects();
        assert_eq!(pass(&mut a, &a_cfg, Side::Outside, &rec).0, Action::Consume);
    }
    run(name, &mut a, &a_cfg, Side::Inside, &frames);
}

/// `events`: 7 established frames (1k flows) to 1 SYN to port 81, which
/// docs/examples/bench-events.yaml rejects (a RST, no state, one event):
/// benches/events.sh's traffic. The engine runs with no event queue, then
/// with one that a thread on the other core drains (as gatewayd's control
/// thread does: batches of up to 4096, a 1 ms pause when it finds the queue
/// empty), alternately, 1 s each, 7 times; publishing once per 32 frames and
/// prefetching the next slots as the worker does per burst.
fn events() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let cfg = policy("bench-events.yaml");
    let mut frames = Vec::new();
    for i in 0..8192u32 {
        if i % 8 == 7 {
            let mut s = spec(100_000 + i, tf::SYN, &LINUX_OPTS);
            s.dport = 81;
            frames.push(build(&s));
        } else {
            frames.push(build(&spec(i % 1024, tf::ACK, &[])));
        }
    }
    let one = |export: bool| -> (f64, u64, u64) {
        let stop = Arc::new(AtomicBool::new(false));
        let (producer, drainer) = if export {
            let (p, mut c) = dataplane::events::channel(65_536);
            let st = stop.clone();
            let t = std::thread::spawn(move || {
                let mut got = 0u64;
                while !st.load(Ordering::Relaxed) {
                    let n = c.pop_many(4096, |r| {
                        black_box(r);
                    });
                    got += n as u64;
                    if n == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                got + c.pop_many(usize::MAX, |_| {}) as u64
            });
            (Some(p), Some(t))
        } else {
            (None, None)
        };
        let mut e = Engine::new(65_536, 7, Arc::new(WorkerStats::default()), producer);
        let mut buf = VecBuf::with_room(&frames[0], 128, 128);
        let (c0, t0) = (thread_cpu_ns(), std::time::Instant::now());
        let (mut n, mut i) = (0u64, 0usize);
        while t0.elapsed() < std::time::Duration::from_secs(1) {
            for _ in 0..128 {
                e.prefetch_events(4, dpdk_bindings::prefetch_write::<u8>);
                for _ in 0..32 {
                    buf.reset(&frames[i], 128).expect("room");
                    black_box(e.process(&cfg, Side::Inside, &mut buf, NOW + n));
                    i = (i + 1) % frames.len();
                    n += 1;
                }
                e.publish_events();
            }
        }
        let cpu = thread_cpu_ns().saturating_sub(c0) as f64 / n as f64;
        stop.store(true, Ordering::Relaxed);
        let drained = drainer.map_or(0, |t| t.join().unwrap());
        let lost = e.stats().from_inside.note_count(dataplane::stats::Note::EventsLost).get();
        (cpu, drained, lost)
    };
    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        let a = one(false).0;
        let (b, drained, lost) = one(true);
        println!("  events: no queue {a:6.1} ns/frame, queue {b:6.1} ns/frame ({drained} events drained, {lost} lost)");
        off.push(a);
        on.push(b);
        ratios.push(a / b);
    }
    let (a, b, r) = (median(&mut off), median(&mut on), median(&mut ratios));
    println!(
        "{:<28} on-CPU {b:7.1} ns/frame with export, {a:7.1} without (medians of 7); \
         the rate with / without, median of the 7 pairs: {r:.3}",
        "events, 1 frame in 8"
    );
}

/// On-CPU ns per frame of `frames` through `e` for `secs` (any action; the
/// buffer reset per frame as in [`run`]).
fn measure(e: &mut Engine, cfg: &EngineConfig, side: Side, frames: &[Vec<u8>], secs: f64, at: &mut u64) -> f64 {
    let mut buf = VecBuf::with_room(&frames[0], 128, 128);
    let (c0, t0) = (thread_cpu_ns(), std::time::Instant::now());
    let (mut n, mut i) = (0u64, 0usize);
    while t0.elapsed().as_secs_f64() < secs {
        for _ in 0..4096 {
            buf.reset(&frames[i], 128).expect("room");
            black_box(e.process(cfg, side, &mut buf, NOW + *at));
            black_box(buf.data());
            i = (i + 1) % frames.len();
            n += 1;
            *at += 1;
        }
    }
    thread_cpu_ns().saturating_sub(c0) as f64 / n as f64
}

/// SYNs as gateway A signs them (bench-gw-a.yaml), for B's verify.
fn signed_syns(syns: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let a_cfg = policy("bench-gw-a.yaml");
    let mut a = Engine::new(65_536, 7, Arc::new(WorkerStats::default()), None);
    syns.iter()
        .map(|f| {
            let mut b = VecBuf::with_room(f, 128, 128);
            assert_eq!(a.process(&a_cfg, Side::Inside, &mut b, NOW), Action::Forward);
            b.data().to_vec()
        })
        .collect()
}

/// `rule-hits`: each case with counting (the policy's slots for one worker)
/// and without (no slots: `RuleHits::count` returns at its first test),
/// alternately, 1 s each, 7 times; the medians, and the median of the
/// per-round ratios of the rates (with / without).
fn rule_hits(syns: &[Vec<u8>]) {
    let text = |name: &str| {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples").join(name))
            .unwrap()
    };
    let events = text("bench-events.yaml").replace(
        "      - {name: servers-by-address,",
        "      - {name: no-81, action: reject, object: net == bench-servers, protocols: [tcp], ports: [81]}\n      - {name: servers-by-address,",
    );
    assert!(events.contains("no-81"), "bench-events.yaml changed: the reject rule was not added");
    let est: Vec<Vec<u8>> = (0..1024).map(|i| build(&spec(i, tf::ACK, &[]))).collect();
    let to81: Vec<Vec<u8>> = (0..16_384)
        .map(|i| {
            let mut s = spec(i, tf::SYN, &LINUX_OPTS);
            s.dport = 81;
            build(&s)
        })
        .collect();
    let cases: [(&str, String, Side, Vec<Vec<u8>>); 3] = [
        ("established, 1k flows", text("bench-gw-a.yaml"), Side::Inside, est),
        ("SYN verify + policy + strip", text("bench-gw-b.yaml"), Side::Outside, signed_syns(syns)),
        ("SYN rejected by a rule", events, Side::Inside, to81),
    ];
    for (name, yaml, side, frames) in cases {
        let mk = |count: bool| {
            let mut c =
                EngineConfig::from_yaml(&yaml).unwrap_or_else(|e| panic!("{name}: {}", dataplane::problem::lines(&e)));
            if count {
                c.count_rule_hits(1);
            }
            Arc::new(c)
        };
        let (off_cfg, on_cfg) = (mk(false), mk(true));
        let mut off_e = Engine::new(65_536, 7, Arc::new(WorkerStats::default()), None);
        let mut on_e = Engine::new(65_536, 7, Arc::new(WorkerStats::default()), None);
        let (mut at_off, mut at_on) = (0u64, 0u64);
        // warm-up: one pass each (flows made, tables touched)
        measure(&mut off_e, &off_cfg, side, &frames, 0.2, &mut at_off);
        measure(&mut on_e, &on_cfg, side, &frames, 0.2, &mut at_on);
        let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..7 {
            let a = measure(&mut off_e, &off_cfg, side, &frames, 1.0, &mut at_off);
            let b = measure(&mut on_e, &on_cfg, side, &frames, 1.0, &mut at_on);
            off.push(a);
            on.push(b);
            ratios.push(a / b);
        }
        let p = &on_cfg.policy;
        let hits: u64 = (0..p.rule_count() as u32).map(|r| on_cfg.rule_hits.total(dataplane::policy::RuleRef(r))).sum();
        let (a, b, r) = (median(&mut off), median(&mut on), median(&mut ratios));
        println!(
            "{name:<28} on-CPU {b:7.1} ns/frame counting, {a:7.1} not (medians of 7); rate counting / not, \
             median of the 7 pairs: {r:.4} ({hits} hits counted)"
        );
    }
}

/// `scrape`: see the crate docs.
fn scrape() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut c = EngineConfig::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples").join("bench-gw-a.yaml"),
    )
    .unwrap_or_else(|e| panic!("{}", dataplane::problem::lines(&e)));
    c.count_rule_hits(1);
    let cfg = Arc::new(c);
    let stats = Arc::new(WorkerStats::default());
    let mut e = Engine::new(65_536, 7, stats.clone(), None);
    let frames: Vec<Vec<u8>> = (0..1024).map(|i| build(&spec(i, tf::ACK, &[]))).collect();
    let mut at = 0u64;
    measure(&mut e, &cfg, Side::Inside, &frames, 0.2, &mut at);
    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut scrapes = 0u64;
    for _ in 0..7 {
        let a = measure(&mut e, &cfg, Side::Inside, &frames, 1.0, &mut at);
        let stop = Arc::new(AtomicBool::new(false));
        let (st, s2, c2) = (stop.clone(), stats.clone(), cfg.clone());
        let reader = std::thread::spawn(move || {
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) {
                black_box(s2.read());
                let p = &c2.policy;
                black_box(
                    (0..p.rule_count() as u32).map(|r| c2.rule_hits.total(dataplane::policy::RuleRef(r))).sum::<u64>(),
                );
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            n
        });
        let b = measure(&mut e, &cfg, Side::Inside, &frames, 1.0, &mut at);
        stop.store(true, Ordering::Relaxed);
        scrapes += reader.join().unwrap();
        off.push(a);
        on.push(b);
        ratios.push(a / b);
    }
    let (a, b, r) = (median(&mut off), median(&mut on), median(&mut ratios));
    println!(
        "{:<28} on-CPU {b:7.1} ns/frame scraped every 100 ms, {a:7.1} not (medians of 7); rate scraped / not, \
         median of the 7 pairs: {r:.4} ({scrapes} scrapes)",
        "established 1k, scraped"
    );
}

fn main() {
    // As gatewayd does: flow tables on huge pages.
    dataplane::flow::table::set_memory_advice(dpdk_bindings::advise_hugepages);
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |c: &str| args.is_empty() || args.iter().any(|a| a == c);
    if want("est-1k") {
        established("established, 1k flows", 1024);
    }
    if want("est-l4-1k") {
        established_layer4("established layer 4, 1k flows", 1024);
    }
    if want("est-1m") {
        established("established, 1M flows", 1 << 20);
    }
    if want("events") {
        events();
    }
    let syns: Vec<Vec<u8>> = (0..16_384).map(|i| build(&spec(i, tf::SYN, &LINUX_OPTS))).collect();
    if want("syn-insert") {
        let cfg = policy("bench-gw-a.yaml");
        let mut e = Engine::new(65_536, 7, Arc::new(WorkerStats::default()), None);
        run("SYN + identity insert", &mut e, &cfg, Side::Inside, &syns);
    }
    if want("scrape") {
        scrape();
    }
    if want("rule-hits") {
        rule_hits(&syns);
    }
    if want("syn-verify") {
        let (a_cfg, b_cfg) = (policy("bench-gw-a.yaml"), policy("bench-gw-b.yaml"));
        let mut a = Engine::new(65_536, 7, Arc::new(WorkerStats::default()), None);
        let signed: Vec<Vec<u8>> = syns
            .iter()
            .map(|f| {
                let mut b = VecBuf::with_room(f, 128, 128);
                assert_eq!(a.process(&a_cfg, Side::Inside, &mut b, NOW), Action::Forward);
                b.data().to_vec()
            })
            .collect();
        let mut b = Engine::new(65_536, 7, Arc::new(WorkerStats::default()), None);
        run("SYN verify + policy + strip", &mut b, &b_cfg, Side::Outside, &signed);
    }
}
