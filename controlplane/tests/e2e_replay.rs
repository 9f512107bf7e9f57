//! A genuine SYN, captured on the wire between two gateways, replayed after
//! its connection ended: gateway B's replay memory refuses it (it would
//! verify: the MAC binds only the tuple and the ISN), and the server never
//! sees it. Real curl, real captures, the frame replayed byte for byte by a
//! host on the wire (docs/identity-option.md, "Replays").

mod common;

use std::time::Duration;

use common::*;

const EXT: &str = "gwt-ext";

/// Whether `frame` is a TCP SYN (not SYN-ACK) to port 8080 over IPv4 without VLAN.
fn is_syn_to_8080(f: &[u8]) -> bool {
    f.len() >= 54 && f[12..14] == [0x08, 0x00] && f[23] == 6 && {
        let l4 = 14 + usize::from(f[14] & 0x0f) * 4;
        f.len() >= l4 + 14 && f[l4 + 2..l4 + 4] == 8080u16.to_be_bytes() && f[l4 + 13] & 0x12 == 0x02
    }
}

#[test]
fn a_captured_syn_replayed_after_its_connection_ended_is_refused() {
    require(&["ip", "ethtool", "curl", "python3", "ss", "tcpdump", "/usr/bin/python3"]);
    let topo = Topology::up("double-ext");
    let dir = scratch("e2e-replay");
    std::fs::write(dir.join("index.txt"), "hello identity\n").unwrap();
    let (cfg_a, _) = gw_config_with_policy(&topo, "gwt-a", &dir, &repo_root().join("docs/examples/e2e-gw-a.yaml"));
    let (cfg_b, log_b) = gw_config_with_policy(&topo, "gwt-b", &dir, &repo_root().join("docs/examples/e2e-gw-b.yaml"));
    let gw_a = Gatewayd::start(Some("gwt-a"), &cfg_a, &[]);
    let gw_b = Gatewayd::start(Some("gwt-b"), &cfg_b, &[]);
    let _server = http_server(&dir, "::", 8080);
    let filter = "tcp port 8080";
    let cap_wire = Capture::start("gwt-wire", "wb", filter, &dir.join("wire.pcap"));
    let cap_server = Capture::start(SERVER, "eth0", filter, &dir.join("server.pcap"));

    let out = in_ns(CLIENT, &format!("curl -sS --max-time 8 http://{SERVER_V4}:8080/index.txt"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello identity\n", "the genuine connection");
    std::thread::sleep(Duration::from_millis(300));
    let wire = cap_wire.stop();
    let syns: Vec<&Vec<u8>> = wire.iter().filter(|f| is_syn_to_8080(f)).collect();
    assert_eq!(syns.len(), 1, "one SYN on the wire");
    let syn = syns[0].clone();
    assert!(syn.windows(4).any(|w| w == [253, 20, 0x4d, 0x49]), "it carries A's identity option");

    // The connection closed; B's flow idles out of its table (closed: 5 s).
    std::thread::sleep(Duration::from_secs(8));
    let f = dir.join("replay.bin");
    std::fs::write(&f, &syn).unwrap();
    let script = format!(
        "from scapy.all import sendp, conf\nconf.verb = 0\nsendp(open('{}', 'rb').read(), iface='eth0', count=3, inter=0.2)\n",
        f.display()
    );
    let out = in_ns(EXT, &format!("/usr/bin/python3 -c \"{script}\""));
    assert!(out.status.success(), "scapy: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));

    let at_server = cap_server.stop();
    let (_, b) = gw_b.stop();
    let (_, _a) = gw_a.stop();
    let server_syns = at_server.iter().filter(|f| is_syn_to_8080(f)).count();
    assert_eq!(server_syns, 1, "the server saw the genuine SYN only");
    assert_eq!(drops(&b, "from_outside", "replay"), 3, "each replayed copy refused as a replay: {b}");
    assert_eq!(b["workers"][0]["replay_remembered"], 1, "{b}");
    assert_eq!(notes(&b, "from_outside", "identity_verified"), 1, "only the genuine SYN was verified: {b}");
    let events = flows(&log_b);
    let replays = events.iter().filter(|e| e["type"] == "rejected" && e["reason"] == "replay").count();
    assert_eq!(replays, 3, "each replay is a drop event: {events:?}");
    let _ = topo;
}
