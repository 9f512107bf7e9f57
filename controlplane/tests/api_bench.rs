//! Control-plane benchmarks, run by hand (release):
//!
//! ```sh
//! cargo test --release -p controlplane --test api_bench -- --ignored --nocapture
//! ```
//!
//! - flow-event throughput from a producer (the drain's batches) through the
//!   ring to a `GetFlows` reader over the Unix socket (target ≥ 1M/s);
//! - time to apply 10k rules over 100k identities through `Apply` (target ≤ 200 ms),
//!   the document generated as in `benches/benches/policy.rs`.

mod api_harness;

use std::time::{Duration, Instant};

use api_harness::*;
use controlplane::api::convert::document_to_pb;
use controlplane::api::pb;
use dataplane::policy::model::{
    Action, ExternalNetwork, IdentityEntry, Peer, PeerKey, PolicyDocument, PortSpec, ProcessingUnit, Protocol, Rule,
    Ruleset,
};
use pb::get_flows_response::Response as R;

const IDENTITIES: u32 = 100_000;
const RULESETS: u32 = 1_000;
const RULES_PER_DIRECTION: u32 = 5; // 1000 × (5 + 5) = 10k rules
const PUS: u32 = 200;
const APPS: u32 = 2_000;

/// A deterministic document: 200 local PUs, 100k remote identities (each with
/// a unique `instance` tag, so no two share a tag set), 1000 rulesets of 10
/// rules, 100 external networks.
fn generate() -> PolicyDocument {
    let mut doc = PolicyDocument::default();
    doc.peers.push(Peer {
        name: "west".into(),
        keys: vec![PeerKey { id: 1, public_key: "11".repeat(32), not_before: None, not_after: None }],
        networks: vec![],
    });
    for i in 0..PUS {
        doc.processing_units.push(ProcessingUnit {
            name: format!("pu-{i}"),
            tags: vec![
                format!("app=svc{}", i % 50),
                format!("env={}", ["prod", "dev"][(i % 2) as usize]),
                format!("team=t{}", i % 10),
            ],
            addresses: vec![format!("10.1.{}.{}", i / 256, i % 256)],
            identity: 1 + i,
        });
    }
    for i in 0..IDENTITIES {
        doc.identities.push(IdentityEntry {
            identity: 1_000_000 + i,
            name: None,
            tags: vec![
                format!("app=app{}", i % APPS),
                format!("env={}", ["prod", "stage", "dev"][(i % 3) as usize]),
                format!("team=t{}", i % 40),
                format!("instance=i{i}"),
            ],
            peer: "west".into(),
        });
    }
    for i in 0..100u32 {
        doc.external_networks.push(ExternalNetwork {
            name: format!("ext-{i}"),
            tags: vec![format!("ext=e{}", i % 20), format!("zone=z{}", i % 5)],
            cidrs: vec![format!("{}.{}.0.0/16", 100 + i / 50, i % 50)],
            protocols: vec![Protocol::Any],
            ports: vec![],
        });
    }
    let mut n = 0u32;
    let mut rule = |dir: &str, k: u32| {
        n += 1;
        let a = (n * 7919) % APPS;
        let object = match k {
            0 => format!("app == app{a} && env == prod"),
            1 => format!("app in {{app{a}, app{}, app{}}}", (a + 1) % APPS, (a + 2) % APPS),
            2 => format!("team == t{} && env != dev", n % 40),
            3 => format!("ext == e{} || app == app{a}", n % 20),
            _ => format!("app == app{a} && has(team)"),
        };
        Rule {
            name: format!("{dir}-{k}"),
            action: if n % 7 == 0 { Action::Reject } else { Action::Allow },
            object,
            protocols: vec![if k == 3 { Protocol::Any } else { Protocol::Tcp }],
            ports: match k {
                0 => vec![PortSpec::Number(443)],
                1 => vec![PortSpec::Text("8000-8100".into()), PortSpec::Number(9090)],
                _ => vec![],
            },
            observe: n % 11 == 0,
        }
    };
    for r in 0..RULESETS {
        let incoming = (0..RULES_PER_DIRECTION).map(|k| rule("in", k)).collect();
        let outgoing = (0..RULES_PER_DIRECTION).map(|k| rule("out", k)).collect();
        doc.rulesets.push(Ruleset {
            name: format!("rs-{r}"),
            subject: format!("app == svc{} && env in {{prod, dev}}", r % 50),
            incoming,
            outgoing,
        });
    }
    doc
}


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
        let t0 = Instant::now();
        let r = config
            .apply(pb::ApplyRequest { version: 1, content: Some(pb::apply_request::Content::Document(pbdoc.clone())), dry_run: false })
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
        let _ = c.stats.get_stats(pb::GetStatsRequest {}).await.unwrap();
    });
}
