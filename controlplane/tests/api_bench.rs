//! Control-plane benchmarks, run by hand (release):
//!
//! ```sh
//! cargo test --release -p controlplane --test api_bench -- --ignored --nocapture
//! ```
//!
//! - flow-event throughput from a producer (the drain's batches) through the
//!   ring to a `GetFlows` reader over the Unix socket (target ≥ 1M/s);
//! - time to apply 10k rules over 100k identities through `Apply` (target ≤ 200 ms),
//!   the document of `gw_benches::policy_10k_rules_100k_identities` (shared
//!   with `benches/benches/policy.rs`).

mod api_harness;

use std::time::{Duration, Instant};

use api_harness::*;
use controlplane::api::convert::document_to_pb;
use controlplane::api::pb;
use gw_benches::policy_10k_rules_100k_identities as generate;
use pb::get_flows_response::Response as R;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
#[ignore]
fn bench_flow_events_to_a_getflows_reader() {
    const N: u64 = 2_000_000;
    const BATCH: u64 = 4096;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1 << 16);
    let template = flow(0, "10.9.0.1", &["role=web"], "10.0.1.5", 5432, pb::Verdict::Allowed, "policy_allow");
    // The ring alone: producer batches, no reader.
    let t0 = Instant::now();
    let mut i = 0;
    while i < N {
        h.hub.push_batch((i..i + BATCH).map(|t| pb::Flow { time_unix_ns: t, ..template.clone() }));
        i += BATCH;
    }
    let alone = t0.elapsed();
    println!("ring alone: {N} events in {alone:?} = {:.2} M events/s", N as f64 / alone.as_secs_f64() / 1e6);
    rt().block_on(async {
        let mut c = clients(&h.ro).await;
        let mut s = c.flows.get_flows(pb::GetFlowsRequest { follow: true, ..Default::default() }).await.unwrap().into_inner();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hub = h.hub.clone();
        let tpl = template.clone();
        let t0 = Instant::now();
        let producer = std::thread::spawn(move || {
            let mut i = N;
            while i < 2 * N {
                hub.push_batch((i..i + BATCH).map(|t| pb::Flow { time_unix_ns: t, ..tpl.clone() }));
                i += BATCH;
            }
            t0.elapsed()
        });
        let (mut got, mut lost) = (0u64, 0u64);
        while got + lost < N {
            match tokio::time::timeout(Duration::from_secs(30), s.message()).await.unwrap().unwrap().unwrap().response {
                Some(R::Flows(b)) => got += b.flows.len() as u64,
                Some(R::Flow(_)) => got += 1,
                Some(R::LostEvents(l)) => lost += l.count,
                _ => {}
            }
        }
        let total = t0.elapsed();
        let produced = tokio::task::spawn_blocking(move || producer.join().unwrap()).await.unwrap();
        println!(
            "producer -> ring -> GetFlows over the Unix socket: {N} events produced in {produced:?} ({:.2} M/s, ring alone {:.2} M/s); \
             reader got {got} and was told of {lost} lost in {total:?}: {:.2} M events/s delivered",
            N as f64 / produced.as_secs_f64() / 1e6,
            N as f64 / alone.as_secs_f64() / 1e6,
            got as f64 / total.as_secs_f64() / 1e6
        );
    });
}

/// CPU time (ns) of this process's threads, summed by thread name, and of
/// the calling thread (from /proc: `schedstat`'s time on CPU).
fn cpu_by_thread() -> (std::collections::HashMap<String, u64>, u64) {
    let mut by = std::collections::HashMap::new();
    let ns = |p: &std::path::Path| {
        std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse::<u64>().ok()))
            .unwrap_or(0)
    };
    for t in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_owned();
        *by.entry(comm).or_insert(0) += ns(&t.path());
    }
    (by, ns(std::path::Path::new("/proc/thread-self")))
}

#[derive(Clone, Copy, PartialEq)]
enum ReaderKind {
    /// Every record decoded into `pb::Flow` (what gwctl does).
    FullDecode,
    /// Records framed and counted, kept as bytes
    /// ([`controlplane::api::client::FramedFlowsResponse`], as `gwctl observe -o count` reads them).
    FramedOnly,
}

/// The whole path gatewayd runs: a worker pushing flow records into its
/// event queue as fast as it can, the control thread draining and resolving
/// them (names from the policy) into the ring, a `GetFlows` reader over the
/// Unix socket. Reports what the worker pushed (and the queue refused), and
/// what the reader received per second — with a reader that decodes every
/// record into `pb::Flow`, then with one that only frames and counts them —
/// and the CPU each part used per delivered record (load-independent).
#[test]
#[ignore]
fn bench_worker_queue_to_a_getflows_reader() {
    worker_queue_to_a_getflows_reader(ReaderKind::FullDecode);
    worker_queue_to_a_getflows_reader(ReaderKind::FramedOnly);
}

fn worker_queue_to_a_getflows_reader(kind: ReaderKind) {
    use controlplane::api::wire::FlowFeed;
    use controlplane::flowlog::{ConfigHistory, Drain};
    use dataplane::engine::EngineConfig;
    use dataplane::events::{EventKind, FlowRecord};
    use dataplane::flow::FlowKey;
    use dataplane::policy::{Direction, PuId, Remote, Side};
    const SECS: f64 = 3.0;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1 << 16);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/e2e-gw-b.yaml");
    let cfg = Arc::new(EngineConfig::load(&root).expect("the example policy"));
    let history = Arc::new(ConfigHistory::default());
    history.push(cfg.clone());
    let (mut producer, consumer) = dataplane::events::channel(65536);
    let decision = cfg.policy.decide(PuId(0), Direction::Incoming, Remote::Identity(1001), 6, 8080);
    let generation = cfg.generation();
    let stop = Arc::new(AtomicBool::new(false));
    rt().block_on(async {
        let req = pb::GetFlowsRequest { follow: true, ..Default::default() };
        let mut full = None;
        let mut framed = None;
        match kind {
            ReaderKind::FullDecode => {
                let mut c = clients(&h.ro).await;
                full = Some(c.flows.get_flows(req).await.unwrap().into_inner());
            }
            ReaderKind::FramedOnly => {
                use controlplane::api::client::{connect, get_flows_framed, Target};
                let ch = connect(&Target::Unix(h.ro.clone())).await.unwrap();
                framed = Some(get_flows_framed(ch, req).await.unwrap().into_inner());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let st = stop.clone();
        let worker = std::thread::Builder::new()
            .name("bench-worker".into())
            .spawn(move || {
                let (mut pushed, mut i) = (0u64, 0u64);
                let (inside, outside) = ("198.18.0.2".parse().unwrap(), "198.18.0.1".parse().unwrap());
                let t0 = Instant::now();
                while !st.load(Ordering::Relaxed) {
                    let key = FlowKey::new(Side::Outside, inside, outside, 8080, (i % 60000) as u16 + 1024, 6);
                    let mut r = FlowRecord::new(EventKind::Decision, i, key, Side::Outside, 0, generation);
                    r.remote_identity = Some(1001);
                    let r = r.with_decision(&decision);
                    pushed += u64::from(producer.push(&r));
                    i += 1;
                    if i % 32 == 0 {
                        producer.publish(); // as a worker does once per round of bursts
                    }
                }
                (i, pushed, producer.lost(), t0.elapsed())
            })
            .unwrap();
        let (hub, st, hist) = (h.hub.clone(), stop.clone(), history.clone());
        // What gatewayd's control thread does (`ControlPlane::push_records`):
        // drain, resolve and encode once through the feed's name tables, push.
        let control = std::thread::Builder::new()
            .name("bench-drain".into())
            .spawn(move || {
                let mut drain = Drain::new(vec![consumer]);
                let mut feed = FlowFeed::new();
                let mut records = Vec::with_capacity(4096);
                let mut resolved = 0u64;
                while !st.load(Ordering::Relaxed) {
                    records.clear();
                    if drain.poll_records(4096, &mut records) == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    resolved += records.len() as u64;
                    hub.push_batch(feed.resolve(&hist, &records));
                }
                resolved
            })
            .unwrap();
        let (cpu0, me0) = cpu_by_thread();
        let t0 = Instant::now();
        let (mut got, mut lost) = (0u64, 0u64);
        while t0.elapsed().as_secs_f64() < SECS {
            let wait = Duration::from_secs(5);
            if let Some(s) = &mut full {
                match tokio::time::timeout(wait, s.message()).await.unwrap().unwrap().unwrap().response {
                    Some(R::Flows(b)) => got += b.flows.len() as u64,
                    Some(R::Flow(_)) => got += 1,
                    Some(R::LostEvents(l)) => lost += l.count,
                    _ => {}
                }
            } else if let Some(s) = &mut framed {
                let m = tokio::time::timeout(wait, s.message()).await.unwrap().unwrap().unwrap();
                got += m.flow_count();
                lost += m.lost_events.map_or(0, |l| l.count);
            }
        }
        let el = t0.elapsed().as_secs_f64();
        let (cpu1, me1) = cpu_by_thread();
        stop.store(true, Ordering::Relaxed);
        let (tried, pushed, refused, wt) = tokio::task::spawn_blocking(move || worker.join().unwrap()).await.unwrap();
        let resolved = tokio::task::spawn_blocking(move || control.join().unwrap()).await.unwrap();
        let cpu = |name: &str| {
            let d = |m: &std::collections::HashMap<String, u64>| {
                m.iter().filter(|(k, _)| k.starts_with(name)).map(|(_, v)| *v).sum::<u64>()
            };
            d(&cpu1).saturating_sub(d(&cpu0)) as f64 / got.max(1) as f64
        };
        let label = match kind {
            ReaderKind::FullDecode => "reader decodes every record into pb::Flow",
            ReaderKind::FramedOnly => "FRAMING-ONLY reader (records kept as bytes, not decoded)",
        };
        println!(
            "worker queue -> drain (resolve) -> ring -> GetFlows, {label}: worker offered {:.2} M records/s ({tried} in {wt:?}), \
             queued {pushed}, queue full {refused}; control thread resolved {resolved} ({:.2} M/s); \
             reader received {got} ({:.2} M events/s) and was told of {lost} lost in {el:.1}s",
            tried as f64 / wt.as_secs_f64() / 1e6,
            resolved as f64 / wt.as_secs_f64() / 1e6,
            got as f64 / el / 1e6
        );
        println!(
            "  CPU per delivered record: drain thread {:.0} ns, server runtime {:.0} ns, reader thread {:.0} ns, \
             client runtime {:.0} ns (worker thread {:.0} ns, it spins); load {}",
            cpu("bench-drain"),
            cpu("gw-control"),
            me1.saturating_sub(me0) as f64 / got.max(1) as f64,
            cpu("tokio-r"),
            cpu("bench-worker"),
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
        );
    });
}

#[test]
#[ignore]
fn bench_apply_10k_rules_over_100k_identities() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    let doc = generate();
    let pbdoc = document_to_pb(&doc, false);
    rt().block_on(async {
        let mut c = clients(&h.rw).await;
        let c2 = c.config.clone();
        let mut config = c2.max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20);
        // (the copy of the document is made before the clock starts: a
        // client sends its document, it does not copy it first)
        let request = pb::ApplyRequest { version: 1, content: Some(pb::apply_request::Content::Document(pbdoc.clone())), dry_run: false, ..Default::default() };
        let t0 = Instant::now();
        let r = config
            .apply(request)
            .await
            .unwrap()
            .into_inner();
        let whole = t0.elapsed();
        assert!(r.accepted, "{:?}", &r.errors[..r.errors.len().min(5)]);
        println!(
            "apply whole document (200 PUs, 100k identities, 10k rules, 100 networks): {whole:?} end to end, compile {:.1} ms",
            r.compile_us as f64 / 1000.0
        );
        for v in 2..=4u64 {
            let mut rs = pbdoc.rulesets.clone();
            rs[0].incoming[0].name = format!("in-0-v{v}");
            let t0 = Instant::now();
            let r = config
                .apply(pb::ApplyRequest {
                    version: v,
                    content: Some(pb::apply_request::Content::Rulesets(pb::Rulesets { rulesets: rs })),
                    dry_run: false,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.accepted);
            println!(
                "apply rulesets (10k rules) over 100k identities, version {v}: {:?} end to end (compile {:.1} ms, the rest: merge, persist {} KB, publish)",
                t0.elapsed(),
                r.compile_us as f64 / 1000.0,
                std::fs::metadata(dir.path().join("state/policy.json")).map(|m| m.len() / 1024).unwrap_or(0)
            );
        }
        let _ = c.stats.get_stats(pb::GetStatsRequest::default()).await.unwrap();
    });
}
