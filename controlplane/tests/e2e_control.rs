//! End to end, the control plane: two gatewayd in series (client ─ A ─ wire
//! ─ B ─ server, tools/topology.sh double-ext). A runs its example policy
//! from a file; B runs with `[control]` and no policy file, and is managed
//! only through `gwctl` over its Unix socket. Real kernels, real curl, the
//! real gwctl binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const EXT: &str = "gwt-ext";
const EXT_V4: &str = "198.18.0.3";

/// curl from `ns` to the server, from a fixed local port: (exit code, seconds, output).
fn curl(ns: &str, port: u16, local_port: u16, max_time: u32) -> (i32, f64, String) {
    let t = Instant::now();
    let out = in_ns(
        ns,
        &format!("curl -sS --max-time {max_time} --local-port {local_port} http://{SERVER_V4}:{port}/index.txt"),
    );
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), secs, text)
}

fn assert_allowed(ns: &str, port: u16, local_port: u16, what: &str) {
    let (code, _, out) = curl(ns, port, local_port, 8);
    assert_eq!((code, out.as_str()), (0, "hello control\n"), "{what}: allowed");
}

/// A rejected connection is reset (curl 7 or 56), quickly, not timed out.
fn assert_reset(ns: &str, port: u16, local_port: u16, what: &str) {
    let (code, secs, out) = curl(ns, port, local_port, 8);
    assert!(code == 7 || code == 56, "{what}: expected a reset, curl exit {code}: {out}");
    assert!(secs < 3.0, "{what}: a reset, not a timeout: {secs:.1}s");
}

fn gwctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gwctl")).arg("--socket").arg(sock).args(args).output().expect("gwctl runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn stats(sock: &Path) -> serde_json::Value {
    let o = gwctl(sock, &["stats", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "gwctl stats: {}", text(&o));
    serde_json::from_slice(&o.stdout).expect("gwctl stats -o json")
}

/// A reason's count summed over workers and directions, from `gwctl stats -o json`.
fn reason(s: &serde_json::Value, name: &str) -> u64 {
    s["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == name)
        .map_or(0, |r| r["count"].as_u64().unwrap_or(0))
}

/// Gateway B's configuration: no policy file, `[control]` in `dir`.
fn control_config(topo: &Topology, dir: &Path) -> (PathBuf, PathBuf) {
    let cfg = topo.config("gwt-b", 1, dir);
    let sock = dir.join("b.sock");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += &format!(
        "[flows]\ncapacity = 65536\nevents_queue = 512\n\
         [control]\nsocket = \"{}\"\nreadonly_socket = \"{}\"\nstate_dir = \"{}\"\nflow_ring = 1024\n",
        sock.display(),
        dir.join("b-ro.sock").display(),
        dir.join("state-b").display()
    );
    std::fs::write(&cfg, text).unwrap();
    (cfg, sock)
}

fn policy_a(topo: &Topology, dir: &Path) -> PathBuf {
    let cfg = topo.config("gwt-a", 1, dir);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    // [control] too (its policy file applied as version 1), for its stats
    text += &format!(
        "[policy]\nfile = \"{}\"\n[flows]\ncapacity = 65536\n[control]\nsocket = \"{}\"\nreadonly_socket = \"\"\nstate_dir = \"{}\"\n",
        repo_root().join("docs/examples/e2e-gw-a.yaml").display(),
        dir.join("a.sock").display(),
        dir.join("state-a").display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// B's example policy (allows the client on 8080 and 8083, the ext host on
/// 8082); `v2` also allows the client on 8081.
fn policy_b(v2: bool) -> String {
    let t = std::fs::read_to_string(repo_root().join("docs/examples/e2e-gw-b.yaml")).unwrap();
    if !v2 {
        return t;
    }
    let out =
        t.replace("ports: [8080, 8083]", "ports: [8080, 8081, 8083]").replace("revision: e2e-b-1", "revision: e2e-b-2");
    assert_ne!(out, t, "docs/examples/e2e-gw-b.yaml changed: update this test");
    out
}

/// v1's content (so, were it applied, 8081 would be reset) broken three
/// ways: a selector that does not parse, a PU whose addresses overlap
/// another's, an identity naming an unknown peer. (The stale version is
/// tried separately.)
fn policy_b_broken() -> String {
    policy_b(false)
        .replace("subject: app == web", "subject: \"app == \"")
        .replace(
            "processing_units:\n",
            "processing_units:\n  - {name: overlapping, tags: [app=other], addresses: [198.18.0.0/30], identity: 2002}\n",
        )
        .replace(
            "identities:\n",
            "identities:\n  - {identity: 1002, name: stranger, tags: [app=frontend], peer: nowhere}\n",
        )
}

/// Lines of a `gwctl observe -o json` output file. The file is read while
/// gwctl writes it: a last line without its newline is still being written
/// (a batch goes out through an 8 KiB buffer) and is left for the next read.
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("gwctl observe -o json line {l:?}: {e}")))
        .collect()
}

fn spawn_observe(sock: &Path, out: &Path, extra: &[&str]) -> Proc {
    let f = std::fs::File::create(out).unwrap();
    let c = Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .arg("--socket")
        .arg(sock)
        .args(["observe", "--follow", "-o", "json"])
        .args(extra)
        .stdout(f)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning gwctl observe");
    Proc(c)
}

/// Waits until the flow ring has `n` readers (a follower is connected).
fn wait_readers(sock: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if stats(sock)["flowhub"]["readers"].as_u64() == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "no GetFlows reader after 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `n` bare SYNs (raw socket, no identity option) from the ext host to
/// the server's `dport`, from source ports `base..base+n`: each one a new flow.
fn syn_flood(n: u32, dport: u16, base: u16, dir: &Path) -> f64 {
    let script = format!(
        r#"import socket, struct, time
src, dst = socket.inet_aton('{EXT_V4}'), socket.inet_aton('{SERVER_V4}')
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
def csum(b):
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff)
    t += t >> 16
    return ~t & 0xffff
t0 = time.time()
for i in range({n}):
    h = struct.pack('!HHIIBBHHH', {base} + i, {dport}, 1000 + i, 0, 5 << 4, 0x02, 64240, 0, 0)
    c = csum(src + dst + struct.pack('!BBH', 0, 6, 20) + h)
    s.sendto(h[:16] + struct.pack('!H', c) + h[18:], ('{SERVER_V4}', 0))
    if i % 50 == 49:
        time.sleep(0.002)
print(time.time() - t0)
"#
    );
    let f = dir.join("synflood.py");
    std::fs::write(&f, script).unwrap();
    let out = in_ns(EXT, &format!("/usr/bin/python3 {}", f.display()));
    assert!(out.status.success(), "syn flood: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0)
}

#[test]
fn managed_through_gwctl() {
    require(&["ip", "ethtool", "curl", "python3", "ss"]);
    let topo = Topology::up("double-ext");
    let dir = scratch("e2e-control");
    std::fs::write(dir.join("index.txt"), "hello control\n").unwrap();
    let cfg_a = policy_a(&topo, &dir);
    let (cfg_b, sock) = control_config(&topo, &dir);
    let v1 = dir.join("v1.yaml");
    let v2 = dir.join("v2.yaml");
    let broken = dir.join("broken.yaml");
    std::fs::write(&v1, policy_b(false)).unwrap();
    std::fs::write(&v2, policy_b(true)).unwrap();
    std::fs::write(&broken, policy_b_broken()).unwrap();
    let _servers: Vec<Proc> = [8080, 8081, 8082].iter().map(|&p| http_server(&dir, "0.0.0.0", p)).collect();

    let gw_a = Gatewayd::start(Some("gwt-a"), &cfg_a, &[]);
    let from_file = format!(
        "gatewayd: policy from file {} (applied as version 1) (revision e2e-a-",
        repo_root().join("docs/examples/e2e-gw-a.yaml").display()
    );
    assert!(gw_a.output().contains(&from_file), "{}", gw_a.output());
    let gw_b = Gatewayd::start(Some("gwt-b"), &cfg_b, &[]);
    assert!(gw_b.output().contains("config version 0 (no_config_fail_closed)"), "{}", gw_b.output());
    assert!(gw_b.output().contains("gatewayd: policy: none: failing closed"), "{}", gw_b.output());

    // 0. Before any config: B fails closed (drops, no reset: a timeout).
    let (code, _, out) = curl(CLIENT, 8080, 41000, 2);
    assert_eq!(code, 28, "fail closed before any config: {out}");

    // 1. v1 through gwctl, enforced on live traffic.
    let o = gwctl(&sock, &["apply", "-f", v1.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("applied version 1 (revision \"e2e-b-1\")"), "{}", text(&o));
    assert_allowed(CLIENT, 8080, 41001, "v1, 8080");
    assert_reset(CLIENT, 8081, 41002, "v1, 8081 (B has no rule)");

    // 2. v2 allows 8081 too.
    let o = gwctl(&sock, &["apply", "-f", v2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("applied version 2"), "{}", text(&o));
    assert_allowed(CLIENT, 8081, 41003, "v2, 8081");

    // 3. Broken: every problem listed, exit 1, v2 still decides.
    let o = gwctl(&sock, &["apply", "-f", broken.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("refused version 3: 3 problems; version 2 stays in force"), "{t}");
    assert!(t.contains("rulesets[\"web\"].subject"), "bad selector: {t}");
    assert!(t.contains("overlaps"), "overlapping PU addresses: {t}");
    assert!(t.contains("\"nowhere\""), "unknown peer: {t}");
    // stale: v1's content as version 1 (2 is in force)
    let o = gwctl(&sock, &["apply", "-f", v1.to_str().unwrap(), "--version", "1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("stale version: 1 is not greater than version 2"), "{t}");
    // v1 would reset 8081: still allowed, so v2 decides.
    assert_allowed(CLIENT, 8081, 41004, "after the refused applies, 8081 (v2)");
    assert_allowed(CLIENT, 8080, 41005, "after the refused applies, 8080");
    let o = gwctl(&sock, &["status"]);
    let t = text(&o);
    assert!(t.contains("version:      2") && t.contains("revision:     e2e-b-2"), "{t}");
    assert!(t.contains("2 accepted, 2 refused"), "{t}");

    // 4. Restart B: the persisted v2 is enforced before anyone applies anything.
    let (out_b, _) = gw_b.stop();
    assert!(out_b.contains("gatewayd: stopping"), "{out_b}");
    let gw_b = Gatewayd::start(Some("gwt-b"), &cfg_b, &[]);
    assert!(gw_b.output().contains("config version 2 (enforcing)"), "{}", gw_b.output());
    let restored = format!(
        "gatewayd: policy from persisted state of version 2 restored from {}",
        dir.join("state-b/policy.json").display()
    );
    assert!(gw_b.output().contains(&restored), "{}", gw_b.output());
    assert_allowed(CLIENT, 8081, 41006, "right after the restart, 8081 (persisted v2)");
    let o = gwctl(&sock, &["status"]);
    let t = text(&o);
    assert!(t.contains("version:      2") && t.contains("restored from"), "{t}");

    // 5. Follow while curl runs allowed and rejected connections (once the
    // last connection's event reached the ring: a follower gets only new ones).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&gwctl(&sock, &["observe", "--last", "1", "-o", "json"])).contains("\"port\":41006") {
        assert!(Instant::now() < deadline, "the flow from port 41006 never reached the ring");
        std::thread::sleep(Duration::from_millis(50));
    }
    let follow_out = dir.join("follow.jsonl");
    let follower = spawn_observe(&sock, &follow_out, &[]);
    wait_readers(&sock, 1);
    assert_allowed(CLIENT, 8080, 42001, "observed, client 8080");
    assert_allowed(EXT, 8082, 42002, "observed, ext host 8082");
    assert_reset(EXT, 8080, 42003, "observed, ext host 8080 (no rule)");
    // A (the client's gateway) timed the client's handshakes, SYN to SYN-ACK
    let a = stats(&dir.join("a.sock"));
    let hs = a["histograms"].as_array().unwrap().iter().find(|h| h["name"] == "tcp_handshake_syn_to_syn_ack").cloned();
    let hs = hs.unwrap_or_else(|| panic!("A reports handshake latency: {a}"));
    eprintln!("handshake latency at A: {hs}");
    // every connection B allowed from the client (ports 41001, 41003-41006, 42001)
    assert!(hs["count"].as_u64().unwrap() >= 6, "{hs}");
    assert!(hs["max"].as_u64().unwrap() < 1_000_000, "a handshake between namespaces takes less than a second: {hs}");
    // the two closed connections are in B's flow table until their close timeout
    let active = stats(&sock)["workers"][0]["flows_active"].as_u64().unwrap();
    assert!(active >= 2, "flow-table occupancy: {active}");
    let expected: [(u16, &str, &str, &str, &str); 3] = [
        (42001, CLIENT_V4, "allowed", "policy_allow", "frontends"),
        (42002, EXT_V4, "allowed", "external_network_allow", "lab-host"),
        (42003, EXT_V4, "rejected", "no_match", ""),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let flows = loop {
        let lines = json_lines(&follow_out);
        let decided =
            |sport: u16| lines.iter().any(|l| l["flow"]["source"]["port"] == sport && l["flow"]["type"] != "ended");
        if expected.iter().all(|e| decided(e.0)) || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(follower);
    for l in &flows {
        let f = &l["flow"];
        assert!(f.is_object(), "only flows while nothing is lost: {l}");
        let sport = f["source"]["port"].as_u64().unwrap() as u16;
        let e =
            expected.iter().find(|e| e.0 == sport).unwrap_or_else(|| panic!("a flow nobody started: {l}\n{flows:?}"));
        assert_eq!(f["source"]["ip"], e.1, "{l}");
        assert_eq!(f["destination"]["ip"], SERVER_V4, "{l}");
        assert_eq!(f["destination"]["name"], "server", "{l}");
        if f["type"] == "ended" {
            continue;
        }
        assert_eq!((f["verdict"].as_str(), f["reason"].as_str()), (Some(e.2), Some(e.3)), "{l}");
        if e.4.is_empty() {
            assert!(f["policy"].is_null(), "{l}");
        } else {
            assert_eq!(f["policy"]["rule"], e.4, "{l}");
        }
        assert_eq!(f["policy_revision"], "e2e-b-2", "{l}");
    }
    for e in &expected {
        let n = flows.iter().filter(|l| l["flow"]["source"]["port"] == e.0 && l["flow"]["type"] != "ended").count();
        assert_eq!(n, 1, "one decision for the flow from port {}: {flows:?}", e.0);
    }
    // records carry the generation that decided them (the status's) and the worker
    let o = gwctl(&sock, &["status", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).expect("gwctl status -o json");
    let generation = status["generation"].as_u64().unwrap();
    assert!(generation > 0, "{status}");
    for l in &flows {
        assert_eq!(l["flow"]["policy_generation"].as_u64(), Some(generation), "{l}");
        assert_eq!(l["flow"]["worker"], 0, "{l}");
    }
    let client = flows.iter().find(|l| l["flow"]["source"]["port"] == 42001).unwrap();
    assert_eq!(client["flow"]["source"]["name"], "client", "the client's verified identity: {client}");
    assert_eq!(client["flow"]["source"]["identity"], 1001, "{client}");

    // 6. A slow reader: stopped while 20000 rejected flows pass through a
    // ring of 1024, and more than the worker's 512-event queue can hold
    // between two drains. It is told exactly what it lost, from the ring and
    // from the queue; the worker judged every packet (nothing waits on the
    // queue or the reader).
    // Quiescent first: the allowed connections' end events (after the close)
    // are in the ring, so the flood is all that moves.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = gwctl(&sock, &["observe", "--last", "50", "-o", "json"]);
        let ended: Vec<u64> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["flow"]["type"] == "ended")
            .map(|l| {
                assert!(l["flow"]["packets_to_server"].as_u64() > Some(2), "an ended flow's counters: {l}");
                l["flow"]["source"]["port"].as_u64().unwrap()
            })
            .collect();
        if [41006, 42001, 42002].iter().all(|p| ended.contains(p)) {
            break;
        }
        assert!(Instant::now() < deadline, "the allowed connections did not end in 30 s: {ended:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_readers(&sock, 0);
    let slow_out = dir.join("slow.jsonl");
    let slow = spawn_observe(&sock, &slow_out, &[]);
    wait_readers(&sock, 1);
    let before = stats(&sock);
    let _ = run("kill", &["-STOP", &slow.0.id().to_string()]);
    let n = 20_000u32;
    let secs = syn_flood(n, 8080, 20000, &dir);
    std::thread::sleep(Duration::from_millis(500));
    let after = stats(&sock);
    let judged = reason(&after, "no_match") - reason(&before, "no_match");
    let delta = |k: &str| after["flowhub"][k].as_u64().unwrap_or(0) - before["flowhub"][k].as_u64().unwrap_or(0);
    let queue_lost = delta("lost_by_workers");
    let w_before = &before["workers"][0];
    let w_after = &after["workers"][0];
    let worker_drops = w_after["event_queue_drops"].as_u64().unwrap() - w_before["event_queue_drops"].as_u64().unwrap();
    eprintln!(
        "worker 0: flows {} -> {} of {}, event queue drops {worker_drops}",
        w_before["flows_active"], w_after["flows_active"], w_after["flow_capacity"]
    );
    assert_eq!(worker_drops, queue_lost, "the worker's own count of events its queue refused");
    assert_eq!(w_after["flow_capacity"], 65536);
    // ring items: flow records and lost-event notices
    let (received, notices) = (delta("received"), delta("notices"));
    eprintln!(
        "syn flood: {n} SYNs in {secs:.2}s; judged {judged}, ring received {received} ({notices} notices), queue lost {queue_lost}"
    );
    assert!(judged > u64::from(n) * 9 / 10, "the worker judged the flood: {judged} of {n}");
    assert_eq!(received - notices + queue_lost, judged, "every rejected SYN made one event, received or counted lost");
    let _ = run("kill", &["-CONT", &slow.0.id().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let (flows_seen, ring_lost, worker_lost) = loop {
        let lines = json_lines(&slow_out);
        // flow records and worker-queue notices are ring items; ring notices are not
        let f = lines.iter().filter(|l| l["flow"].is_object() || l["lost_events"]["source"] == "worker_queue").count()
            as u64;
        let lost = |src: &str| -> u64 {
            lines
                .iter()
                .filter(|l| l["lost_events"]["source"] == src)
                .map(|l| l["lost_events"]["count"].as_u64().unwrap())
                .sum()
        };
        let (r, w) = (lost("ring"), lost("worker_queue"));
        assert!(
            lines
                .iter()
                .filter(|l| l["lost_events"]["source"] == "worker_queue")
                .all(|l| l["lost_events"]["worker"] == 0),
            "queue losses name their worker"
        );
        if f + r >= received || Instant::now() > deadline {
            break (f, r, w);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for l in json_lines(&slow_out).iter().filter(|l| l["flow"].is_object()) {
        let f = &l["flow"];
        let p = f["source"]["port"].as_u64().unwrap();
        assert!((20000..20000 + u64::from(n)).contains(&p), "only the flood moved: {l}");
        assert_eq!((f["verdict"].as_str(), f["reason"].as_str()), (Some("rejected"), Some("no_match")), "{l}");
    }
    eprintln!("slow reader: {flows_seen} flows, lost {ring_lost} (ring), {worker_lost} (worker queues)");
    assert!(ring_lost > 0, "a stopped reader of a 1024-record ring is lapped by {received} records");
    assert_eq!(flows_seen + ring_lost, received, "items seen + lost = items written while it slept");
    assert!(queue_lost > 0, "a 512-event worker queue drained every 50 ms overflows under {n} SYNs in {secs:.1}s");
    // (what the ring lapped may include notices: the stream then says less)
    assert!(worker_lost <= queue_lost, "queue losses reported in the stream at most as counted in stats");
    drop(slow);

    // The worker never waited: every frame it received went out, was
    // dropped for a counted reason, or became the RST it was rejected with
    // (a rejected SYN's buffer is turned into the reset in place and sent).
    let w = &after["workers"][0];
    for d in ["from_inside", "from_outside"] {
        let c = &w[d];
        let count = |pred: &dyn Fn(&str) -> bool| -> u64 {
            c["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| pred(r["reason"].as_str().unwrap()))
                .map(|r| r["count"].as_u64().unwrap())
                .sum()
        };
        let dropped = count(&|r| !r.starts_with("note."));
        let rst = count(&|r| r == "note.rst_sent");
        let (rx, tx) = (c["rx_packets"].as_u64().unwrap(), c["tx_packets"].as_u64().unwrap());
        eprintln!("worker {d}: rx {rx} tx {tx} dropped {dropped} rst_sent {rst}");
        assert_eq!(rx + rst, tx + dropped, "{d}: every frame accounted for: {c}");
    }
    let missed: u64 = after["ports"].as_array().unwrap().iter().map(|p| p["missed"].as_u64().unwrap_or(0)).sum();
    eprintln!("ports: missed {missed}");
    let (_, counters) = gw_b.stop();
    let _ = (counters, topo);
}
