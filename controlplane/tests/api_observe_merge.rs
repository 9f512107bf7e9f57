//! `gwctl observe --gateways`: one stream for three gateways (three real
//! control servers on their own sockets, flows pushed into their rings as
//! the drain would), in time order, each line naming its gateway; one
//! gateway stopped mid-stream is reported and the others go on; a gateway's
//! lost-event notice is passed on with its name.

mod api_harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api_harness::*;
use controlplane::api::pb;
use controlplane::flowhub::LostSource;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Lines from `rx` until `done` says so, or 10 s pass.
fn read_until(
    rx: &mpsc::Receiver<String>,
    got: &mut Vec<serde_json::Value>,
    done: impl Fn(&[serde_json::Value]) -> bool,
) {
    let t0 = Instant::now();
    while !done(got) {
        assert!(t0.elapsed() < Duration::from_secs(10), "waited for lines; got {got:#?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")));
        }
    }
}

#[test]
fn three_gateways_merge_in_time_order_and_one_going_away_is_said() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut gws: Vec<Harness> = dirs.iter().map(|d| Harness::start(d.path(), 1024)).collect();
    let names = ["gw-a", "gw-b", "gw-c"];
    let list: Vec<String> = names.iter().zip(&gws).map(|(n, h)| format!("{n}={}", h.ro.display())).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(["observe", "-f", "-o", "json", "--reorder-window", "0.3", "--gateways", &list.join(",")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::sleep(Duration::from_millis(500)); // the three streams are open

    // Interleaved times, pushed gateway by gateway: the merge puts them in order.
    let t0 = now_ns();
    for (g, h) in gws.iter().enumerate() {
        for k in 0..4u64 {
            let t = t0 + (k * 3 + g as u64) * 1_000;
            let src = format!("10.9.{g}.{k}");
            h.hub.push(flow(t, &src, &["role=web"], "10.0.1.5", 5432, pb::Verdict::Allowed, "policy_allow"));
        }
    }
    let mut got = Vec::new();
    read_until(&rx, &mut got, |g| g.len() >= 12);
    let times: Vec<u64> = got.iter().map(|l| l["flow"]["time_unix_ns"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order: {times:?}");
    for (g, n) in names.iter().enumerate() {
        let mine: Vec<_> = got.iter().filter(|l| l["gateway"] == *n).collect();
        assert_eq!(mine.len(), 4, "{n}'s four flows: {got:#?}");
        assert!(mine.iter().all(|l| l["flow"]["source"]["ip"].as_str().unwrap().starts_with(&format!("10.9.{g}."))));
    }

    // gw-b goes away mid-stream: said once, by name; gw-a and gw-c go on,
    // gw-c's lost-event notice passed on with its name.
    gws[1].stop();
    let mut got = Vec::new();
    read_until(&rx, &mut got, |g| g.iter().any(|l| l["gateway"] == "gw-b" && l.get("gateway_status").is_some()));
    let down = got.iter().find(|l| l["gateway"] == "gw-b").unwrap();
    assert!(down["gateway_status"].as_str().unwrap().starts_with("DOWN"), "{down}");
    let t1 = now_ns();
    gws[0].hub.push(flow(t1, "10.9.0.9", &[], "10.0.1.5", 5432, pb::Verdict::Rejected, "no_match"));
    gws[2].hub.push_lost(LostSource::WorkerQueue, 7, 1, t1 + 1);
    gws[2].hub.push(flow(t1 + 2, "10.9.2.9", &[], "10.0.1.5", 5432, pb::Verdict::Allowed, "policy_allow"));
    read_until(&rx, &mut got, |g| {
        g.iter().filter(|l| l.get("flow").is_some()).count() >= 2 && g.iter().any(|l| l.get("lost_events").is_some())
    });
    let after: Vec<&serde_json::Value> = got.iter().filter(|l| l.get("gateway_status").is_none()).collect();
    assert_eq!(after[0]["gateway"], "gw-a");
    assert_eq!(after[0]["flow"]["verdict"], "rejected");
    assert_eq!((after[1]["gateway"].as_str(), after[1]["lost_events"]["count"].as_u64()), (Some("gw-c"), Some(7)));
    assert_eq!(after[1]["lost_events"]["source"], "worker_queue");
    assert_eq!(after[2]["gateway"], "gw-c");

    let _ = child.kill();
    let _ = child.wait();

    // Text lines name their gateway too; without --follow the merge ends
    // when the streams do, saying which gateway it could not reach.
    let o = Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(["observe", "--last", "2", "--reorder-window", "0.1", "--gateways", &list.join(",")])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.lines().any(|l| l.starts_with("gw-a  ") && l.contains("rejected  no_match")), "{t}");
    assert!(t.lines().any(|l| l.starts_with("gw-b  ") && l.contains("GATEWAY DOWN")), "{t}");
    let c: Vec<&str> = t.lines().filter(|l| l.starts_with("gw-c  ")).collect();
    assert_eq!(c.iter().filter(|l| l.contains("tcp  allowed")).count(), 2, "gw-c's last 2 flows: {t}");
    assert!(c.iter().any(|l| l.contains("LOST 7 event(s)")), "and its notice: {t}");
    let o = Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(["observe", "--gateways", &format!("{}", gws[1].ro.display())])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "no gateway reached: {}", String::from_utf8_lossy(&o.stderr));
}
