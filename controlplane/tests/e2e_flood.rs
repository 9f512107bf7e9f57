//! Fault: a flood of SYNs from inside that exceeds the flow table, then a
//! flood of mid-stream segments that fills it with established flows. The
//! gateway evicts handshake entries (counted), refuses what it cannot hold
//! (`flow_table_full`), never evicts an established flow, and keeps carrying
//! the established connection that was there before, every echo answered.
//! Real kernels in namespaces, real gatewayd on af_packet, frames from scapy.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const POLICY: &str = r#"
revision: flood
processing_units:
  - {name: server, tags: [app=server], addresses: [198.18.0.2, "fd00:2544::2"], identity: 7}
rulesets:
  - name: open
    subject: all()
    incoming: [{name: any-in, action: allow, object: ext == anywhere}]
    outgoing: [{name: any-out, action: allow, object: ext == anywhere}]
external_networks:
  - {name: anywhere, tags: [ext=anywhere], cidrs: [0.0.0.0/0, "::/0"]}
enforcer_profile:
  managed_tcp_networks: []
"#;

/// Debian's python, which has Debian's scapy (a python3 earlier on PATH,
/// e.g. from pyenv, may not).
const PYTHON: &str = "/usr/bin/python3";

/// Flows per worker in this test: small, so that a few thousand frames fill it.
const CAPACITY: u64 = 512;

/// Sends `count` TCP segments with `flags` from the server (inside) towards
/// 198.18.0.200 (no host: nothing answers, handshakes stay half-open), each
/// from its own source port, at L2 to the client's MAC.
fn flood(flags: &str, count: u32, base_port: u32) {
    let mac = |ns: &str| {
        let out = in_ns(ns, "cat /sys/class/net/eth0/address");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let (src_mac, dst_mac) = (mac(SERVER), mac(CLIENT));
    let script = format!(
        "from scapy.all import Ether, IP, TCP, sendp\n\
         frames = [Ether(src='{src_mac}', dst='{dst_mac}') / IP(src='{SERVER_V4}', dst='198.18.0.200') / \
         TCP(sport=1024 + ({base_port} + i) % 60000, dport=80, flags='{flags}', seq=1000 + i, ack=7) \
         for i in range({count})]\n\
         sendp(frames, iface='eth0', verbose=False)\n"
    );
    let out = run("ip", &["netns", "exec", SERVER, PYTHON, "-c", &script]);
    assert!(out.status.success(), "scapy: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_syn_flood_beyond_the_flow_table_evicts_handshakes_and_spares_established_flows() {
    require(&["ip", "ethtool", "socat", PYTHON]);
    let probe = run(PYTHON, &["-c", "import scapy.all"]);
    assert!(probe.status.success(), "python3-scapy is not installed; tools/setup.sh installs it");
    let topo = Topology::up("single");
    let dir = scratch("e2e-flood");
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let cfg = topo.config("gwt-gw", 1, &dir);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += &format!("[policy]\nfile = \"{}\"\n[flows]\ncapacity = {CAPACITY}\n", policy.display());
    std::fs::write(&cfg, text).unwrap();
    let gw = Gatewayd::start(Some("gwt-gw"), &cfg, &[]);

    // An echo server behind the gateway and a client that keeps one
    // connection open, sending a line every 20 ms and waiting for its echo.
    let mut echo = Command::new("ip")
        .args(["netns", "exec", SERVER, "socat", "TCP-LISTEN:9000,reuseaddr,fork", "EXEC:cat"])
        .spawn()
        .expect("socat");
    std::thread::sleep(Duration::from_millis(300));
    let client_py = format!(
        "import socket, sys, time\n\
         s = socket.create_connection(('{SERVER_V4}', 9000), timeout=5)\n\
         s.settimeout(3)\n\
         n = 0\n\
         for line in sys.stdin:\n\
         \x20   if line.strip() == 'stop': break\n\
         \x20   s.sendall(b'ping %d\\n' % n)\n\
         \x20   got = b''\n\
         \x20   while not got.endswith(b'\\n'): got += s.recv(100)\n\
         \x20   assert got == b'ping %d\\n' % n, got\n\
         \x20   n += 1\n\
         print('echoes', n)\n"
    );
    let mut client = Command::new("ip")
        .args(["netns", "exec", CLIENT, "python3", "-c", &client_py])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 client");
    let mut to_client = client.stdin.take().unwrap();
    let pinger = std::thread::spawn(move || {
        for _ in 0..400 {
            if writeln!(to_client, "go").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = writeln!(to_client, "stop");
    });

    std::thread::sleep(Duration::from_millis(500));
    // 6x the table in SYNs: handshake entries, evicted to make room for newer ones.
    flood("S", 6 * CAPACITY as u32, 0);
    // Then mid-stream segments the ACLs allow: each re-creates an
    // established flow, which is never evicted; the table fills for good.
    flood("A", 2 * CAPACITY as u32, 10_000);
    pinger.join().unwrap();
    let out = client.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let _ = echo.kill();
    let _ = echo.wait();
    let (report, counters) = gw.stop();

    assert!(out.status.success(), "the established connection broke during the floods: {said}\n{report}");
    assert_eq!(said.trim(), "echoes 400", "every echo came back");
    let w = &counters["workers"][0];
    let evicted = w["flows_evicted"].as_u64().unwrap();
    assert!(evicted >= 4 * CAPACITY, "handshake entries evicted: {evicted}\n{report}");
    let full = drops(&counters, "from_inside", "flow_table_full");
    assert!(full > 0, "segments refused once the table held only established flows\n{report}");
    assert!(full <= 2 * CAPACITY, "{full}");
    // Every SYN was forwarded (it made a flow, evicting an older handshake)
    // or refused and counted; nothing vanished (the stop checks the totals).
    println!(
        "flood: {} frames from inside, flows evicted {evicted}, flow_table_full {full}, flows at the end {}, echoes {}",
        w["from_inside"]["rx_packets"],
        w["flows_active"],
        said.trim()
    );
    let syns_and_acks = u64::from(6 * CAPACITY as u32 + 2 * CAPACITY as u32);
    let from_inside = &w["from_inside"];
    assert!(from_inside["rx_packets"].as_u64().unwrap() >= syns_and_acks);
    assert_eq!(w["flow_capacity"], CAPACITY);
    assert!(w["flows_active"].as_u64().unwrap() <= CAPACITY);
}
