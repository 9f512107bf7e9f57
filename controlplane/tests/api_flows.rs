//! GetFlows with a real server and client: last N, filters, follow, worker
//! losses in-stream, aggregation, and a slow reader that is lapped and told
//! so while the producer never waits.

mod api_harness;

use std::time::{Duration, Instant};

use api_harness::*;
use controlplane::api::pb;
use controlplane::flowhub::LostSource;
use pb::get_flows_response::Response as R;

/// A message's contents one record or notice at a time (a batch of records
/// becomes one `Flow` each, in order).
fn expand(r: R) -> Vec<R> {
    match r {
        R::Flows(b) => {
            assert!(!b.flows.is_empty(), "no empty batches");
            b.flows.into_iter().map(R::Flow).collect()
        }
        other => vec![other],
    }
}

async fn collect(s: &mut tonic::Streaming<pb::GetFlowsResponse>) -> Vec<R> {
    let mut out = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), s.message()).await.expect("stream ends").unwrap()
    {
        out.extend(expand(m.response.unwrap()));
    }
    out
}

fn flows(v: &[R]) -> Vec<&pb::Flow> {
    v.iter().filter_map(|r| if let R::Flow(f) = r { Some(f) } else { None }).collect()
}

#[test]
fn last_n_filters_and_time_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    for i in 0..100u64 {
        let (tags, verdict, reason) = match i % 4 {
            0 => (["role=db"], pb::Verdict::Rejected, bad_mac()),
            1 => (["role=db"], pb::Verdict::Allowed, "policy_allow"),
            2 => (["role=web"], pb::Verdict::Rejected, "no_match"),
            _ => (["role=web"], pb::Verdict::Allowed, "policy_allow"),
        };
        h.hub.push(flow(1000 + i, &format!("10.9.0.{i}"), &tags, "10.0.1.5", 5432, verdict, reason));
    }
    rt().block_on(async {
        let mut c = clients(&h.ro).await;
        // Everything held, in order.
        let mut s = c.flows.get_flows(pb::GetFlowsRequest::default()).await.unwrap().into_inner();
        let all = collect(&mut s).await;
        assert_eq!(flows(&all).len(), 100);
        assert_eq!(flows(&all)[0].time_unix_ns, 1000);

        // The last 5 rejected flows from role=db: i = 80, 84, 88, 92, 96.
        let req = pb::GetFlowsRequest {
            number: 5,
            allow: vec![pb::FlowFilter {
                source_tags: vec!["role=db".into()],
                verdict: vec![pb::Verdict::Rejected as i32],
                ..Default::default()
            }],
            ..Default::default()
        };
        let got = collect(&mut c.flows.get_flows(req).await.unwrap().into_inner()).await;
        let t: Vec<u64> = flows(&got).iter().map(|f| f.time_unix_ns - 1000).collect();
        assert_eq!(t, vec![80, 84, 88, 92, 96]);
        assert!(flows(&got).iter().all(|f| f.reason == bad_mac()));

        // Deny-list: everything but no_match and bad_mac, within [1010, 1030].
        let req = pb::GetFlowsRequest {
            since_unix_ns: Some(1010),
            until_unix_ns: Some(1030),
            deny: vec![
                pb::FlowFilter { reason: vec!["no_match".into()], ..Default::default() },
                pb::FlowFilter { reason: vec![bad_mac().into()], ..Default::default() },
            ],
            ..Default::default()
        };
        let got = collect(&mut c.flows.get_flows(req).await.unwrap().into_inner()).await;
        let t: Vec<u64> = flows(&got).iter().map(|f| f.time_unix_ns - 1000).collect();
        assert_eq!(t, (10..=30).filter(|i| i % 2 == 1).collect::<Vec<_>>());

        // The server refuses a reason no flow carries, naming the valid ones.
        let req = pb::GetFlowsRequest {
            allow: vec![pb::FlowFilter { reason: vec!["bad_mac".into()], ..Default::default() }],
            ..Default::default()
        };
        let e = c.flows.get_flows(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("unknown reason \"bad_mac\"") && e.message().contains(bad_mac()),
            "{}",
            e.message()
        );

        // CIDR on the source.
        let req = pb::GetFlowsRequest {
            allow: vec![pb::FlowFilter { source_ip: vec!["10.9.0.96/30".into()], ..Default::default() }],
            ..Default::default()
        };
        let got = collect(&mut c.flows.get_flows(req).await.unwrap().into_inner()).await;
        assert_eq!(flows(&got).len(), 4);

        // A bad filter is an InvalidArgument naming the field.
        let req = pb::GetFlowsRequest {
            allow: vec![pb::FlowFilter { destination_port: vec!["http".into()], ..Default::default() }],
            ..Default::default()
        };
        let e = c.flows.get_flows(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("allow[0].destination_port"), "{}", e.message());
    });
}

#[test]
fn follow_sees_new_flows_and_worker_losses_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    h.hub.push(flow(1, "10.9.0.1", &[], "10.0.1.5", 5432, pb::Verdict::Allowed, "policy_allow"));
    rt().block_on(async {
        let mut c = clients(&h.ro).await;
        let req = pb::GetFlowsRequest { follow: true, number: 1, ..Default::default() };
        let mut s = c.flows.get_flows(req).await.unwrap().into_inner();
        let first = expand(s.message().await.unwrap().unwrap().response.unwrap());
        assert!(matches!(&first[..], [R::Flow(f)] if f.time_unix_ns == 1));
        let hub = h.hub.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            hub.push(flow(2, "10.9.0.2", &[], "10.0.1.5", 5432, pb::Verdict::Rejected, "policy_reject"));
            hub.push_lost(LostSource::WorkerQueue, 17, 1, 3);
            hub.push(flow(4, "10.9.0.3", &[], "10.0.1.5", 5432, pb::Verdict::Allowed, "policy_allow"));
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            let m = tokio::time::timeout(Duration::from_secs(5), s.message()).await.unwrap().unwrap().unwrap();
            got.extend(expand(m.response.unwrap()));
        }
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(&got[0], R::Flow(f) if f.time_unix_ns == 2 && f.reason == "policy_reject"));
        match &got[1] {
            R::LostEvents(l) => {
                assert_eq!(l.source, pb::LostEventSource::WorkerQueue as i32);
                assert_eq!((l.count, l.worker), (17, 1));
            }
            other => panic!("expected a lost-event notice, got {other:?}"),
        }
        assert!(matches!(&got[2], R::Flow(f) if f.time_unix_ns == 4));
        let st = c.stats.get_stats(pb::GetStatsRequest::default()).await.unwrap().into_inner();
        let fh = st.flowhub.unwrap();
        assert_eq!((fh.received, fh.lost_by_workers, fh.readers), (4, 17, 1));
    });
}

#[test]
fn a_follower_is_told_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(dir.path(), 1024);
    rt().block_on(async {
        let mut c = clients(&h.ro).await;
        let req = pb::GetFlowsRequest { follow: true, ..Default::default() };
        let mut s = c.flows.get_flows(req).await.unwrap().into_inner();
        h.hub.push(flow(1, "10.9.0.1", &[], "10.0.1.5", 5432, pb::Verdict::Allowed, "policy_allow"));
        let m = tokio::time::timeout(Duration::from_secs(5), s.message()).await.unwrap().unwrap().unwrap();
        assert!(matches!(&expand(m.response.unwrap())[..], [R::Flow(f)] if f.time_unix_ns == 1));
        // The workers' last records reach the ring as the server stops, more
        // than the connection holds (~2 KB each, 2 MB; the ring holds 1024): the follower, reading
        // only once the stop has begun, gets every one of them, then the end.
        let tags: Vec<String> = (0..48).map(|i| format!("label-{i}=value-{i:032}")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        for t in 2..=1000 {
            h.hub.push(flow(t, "10.9.0.2", &tags, "10.0.1.5", 5432, pb::Verdict::Rejected, "no_match"));
        }
        let server = h.server.take().unwrap();
        let stopper = std::thread::spawn(move || server.stop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut last = 1;
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(5), s.message()).await.unwrap() {
                Ok(Some(m)) => {
                    for r in expand(m.response.unwrap()) {
                        let R::Flow(f) = r else { panic!("{r:?}") };
                        assert_eq!(f.time_unix_ns, last + 1);
                        last = f.time_unix_ns;
                    }
                }
                Ok(None) => panic!("the stream ended without a status"),
                Err(st) => break st,
            }
        };
        assert_eq!(last, 1000, "records sent before the end");
        // Not a broken connection: a status that says why.
        let st = end;
        assert_eq!((st.code(), st.message()), (tonic::Code::Unavailable, controlplane::api::flows::STOPPING));
        tokio::task::spawn_blocking(move || stopper.join().unwrap()).await.unwrap();
    });
}

#[test]
fn aggregation_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    rt().block_on(async {
        let mut c = clients(&h.ro).await;
        let req = pb::GetFlowsRequest { follow: true, aggregate_interval_ms: 300, ..Default::default() };
        let mut s = c.flows.get_flows(req).await.unwrap().into_inner();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for i in 0..10 {
            let mut f = flow(i, "10.9.0.1", &[], "10.0.1.5", 5432, pb::Verdict::Allowed, "policy_allow");
            if i >= 6 {
                f.r#type = pb::FlowEventType::Ended as i32;
                f.bytes_to_server = 100;
            }
            h.hub.push(f);
        }
        h.hub.push(flow(11, "10.9.0.1", &[], "10.0.1.5", 5432, pb::Verdict::Rejected, "no_match"));
        let mut aggs = Vec::new();
        while aggs.len() < 2 {
            let m = tokio::time::timeout(Duration::from_secs(5), s.message()).await.unwrap().unwrap().unwrap();
            if let Some(R::Aggregate(a)) = m.response {
                aggs.push(a);
            }
        }
        let ok = aggs.iter().find(|a| a.verdict == pb::Verdict::Allowed as i32).expect("allowed group");
        assert_eq!((ok.flows_started, ok.flows_completed, ok.bytes_to_server), (6, 4, 400));
        assert_eq!(ok.destination.as_ref().unwrap().port, 5432);
        let bad = aggs.iter().find(|a| a.verdict == pb::Verdict::Rejected as i32).expect("rejected group");
        assert_eq!(bad.flows_rejected, 1);
    });
}

/// The reader stops reading; the producer keeps pushing at full speed and the
/// ring laps the reader. When the reader resumes it is told exactly how many
/// records it missed: delivered + lost == pushed.
#[test]
fn slow_reader_gets_lost_events_and_the_producer_never_waits() {
    const RING: usize = 1024;
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), RING);
    // The producer alone, no reader: the baseline.
    let t0 = Instant::now();
    for i in 0..N {
        h.hub.push(flow(i, "10.9.0.1", &[], "10.0.1.5", 5432, pb::Verdict::Allowed, "policy_allow"));
    }
    let alone = t0.elapsed();
    let start = h.hub.head();
    rt().block_on(async {
        let mut c = clients(&h.ro).await;
        let req = pb::GetFlowsRequest { follow: true, ..Default::default() };
        let mut s = c.flows.get_flows(req).await.unwrap().into_inner();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A stalled reader: push N while it reads nothing.
        let hub = h.hub.clone();
        let producer = std::thread::spawn(move || {
            let t0 = Instant::now();
            for i in 0..N {
                hub.push(flow(N + i, "10.9.0.1", &[], "10.0.1.5", 5432, pb::Verdict::Allowed, "policy_allow"));
            }
            t0.elapsed()
        });
        let with_reader = tokio::task::spawn_blocking(move || producer.join().unwrap()).await.unwrap();
        assert!(
            with_reader < alone * 3 + Duration::from_millis(200),
            "the producer slowed down with a stalled reader: {with_reader:?} vs {alone:?} alone"
        );
        // Now read until caught up.
        let (mut delivered, mut lost, mut last_t) = (0u64, 0u64, 0u64);
        let mut notices = 0;
        while delivered + lost < N {
            let m = tokio::time::timeout(Duration::from_secs(10), s.message()).await.expect("more").unwrap().unwrap();
            match m.response.unwrap() {
                R::Flows(b) => {
                    for f in &b.flows {
                        assert!(f.time_unix_ns > last_t || last_t == 0, "in order");
                        last_t = f.time_unix_ns;
                        delivered += 1;
                    }
                }
                R::Flow(_) => panic!("the server sends batches"),
                R::LostEvents(l) => {
                    assert_eq!(l.source, pb::LostEventSource::Ring as i32);
                    assert!(l.count > 0);
                    lost += l.count;
                    notices += 1;
                }
                R::Aggregate(_) => panic!("no aggregation asked"),
            }
        }
        assert_eq!(delivered + lost, N, "every record is either delivered or counted as lost");
        // The stream's own buffers (channel, HTTP/2 window) hold a few thousand;
        // the rest of what the stalled reader could not take was lapped.
        assert!(notices >= 1 && lost >= N / 2, "lost {lost} in {notices} notices, delivered {delivered}");
        assert_eq!(last_t, 2 * N - 1, "the newest record arrives after the notice");
        eprintln!("producer: {N} pushes in {alone:?} alone, {with_reader:?} with a stalled reader; reader: {delivered} delivered, {lost} lost in {notices} notice(s)");
    });
    assert_eq!(h.hub.head() - start, N);
}

/// The drop reason of an option whose MAC does not verify, as the dataplane names it.
fn bad_mac() -> &'static str {
    dataplane::stats::DropReason::IdentityBadMac.name()
}
