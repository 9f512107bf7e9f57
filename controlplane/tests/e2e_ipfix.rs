//! IPFIX export end to end (issue 13): gateway A of the two-gateway lab
//! exports its flow events to a real collector (nfdump's nfcapd) while the
//! client curls through it; nfdump reads back what nfcapd stored, and tshark
//! decodes the templates and records from the wire.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn free_udp_port(ns: &str) -> u16 {
    let out = in_ns(ns, "python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a port")
}

#[test]
fn nfcapd_receives_the_gateways_flows() {
    require(&["ip", "ethtool", "curl", "python3", "ss", "nfcapd", "nfdump", "tshark", "tcpdump"]);
    let dir = scratch("e2e-ipfix");
    let topo = Topology::up("double-ext");
    in_ns("gwt-a", "ip link set lo up");
    let port = free_udp_port("gwt-a");
    let (cfg_a, log_a) = gw_config_with_policy(&topo, "gwt-a", &dir, &repo_root().join("docs/examples/e2e-gw-a.yaml"));
    let (cfg_b, _) = gw_config_with_policy(&topo, "gwt-b", &dir, &repo_root().join("docs/examples/e2e-gw-b.yaml"));
    let mut text = std::fs::read_to_string(&cfg_a).unwrap();
    text += &format!("[ipfix]\ncollector = \"udp://127.0.0.1:{port}\"\ntemplate_refresh_s = 5\n");
    std::fs::write(&cfg_a, text).unwrap();
    let flows_dir = dir.join("nfcapd");
    std::fs::create_dir_all(&flows_dir).unwrap();
    let nfcapd = spawn_ns(
        "gwt-a",
        &["nfcapd", "-b", "127.0.0.1", "-p", &port.to_string(), "-w", flows_dir.to_str().unwrap(), "-t", "3600"],
    );
    let cap = Capture::start("gwt-a", "lo", &format!("udp port {port}"), &dir.join("ipfix.pcap"));
    let gw_a = Gatewayd::start(Some("gwt-a"), &cfg_a, &[]);
    let gw_b = Gatewayd::start(Some("gwt-b"), &cfg_b, &[]);
    assert!(gw_a.output().contains(&format!("gatewayd: IPFIX export to 127.0.0.1:{port}")), "{}", gw_a.output());

    let web = dir.join("www");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.txt"), "hello ipfix\n".repeat(1000)).unwrap();
    let _http = http_server(&web, "0.0.0.0", 8080);
    let out = in_ns(CLIENT, &format!("curl -sS --max-time 5 -o /dev/null http://{SERVER_V4}:8080/index.txt"));
    assert!(out.status.success(), "allowed curl: {}", String::from_utf8_lossy(&out.stderr));
    let out = in_ns(CLIENT, &format!("curl -sS --max-time 5 http://{SERVER_V4}:8083/index.txt"));
    assert!(!out.status.success(), "8083 is rejected by A's policy");
    // The connection's end reaches the flow log (and the exporter) once the flow leaves the table.
    let t0 = Instant::now();
    while !flows(&log_a).iter().any(|e| e["type"] == "ended" && e["destination"]["port"] == 8080) {
        assert!(t0.elapsed() < Duration::from_secs(30), "no end event for the 8080 connection: {:?}", flows(&log_a));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (out_a, _) = gw_a.stop();
    let _ = gw_b.stop();
    assert!(out_a.contains("0 dropped (queue full), 0 send errors (0 records)"), "{out_a}");
    drop(nfcapd); // SIGINT: nfcapd writes its file
    std::thread::sleep(Duration::from_millis(500));
    let frames = cap.stop();
    assert!(!frames.is_empty(), "IPFIX messages on the wire");

    // What the gateway logged for the allowed connection's end.
    let end = flows(&log_a).into_iter().find(|e| e["type"] == "ended" && e["destination"]["port"] == 8080).unwrap();
    let n = |k: &str| end[k].as_u64().unwrap();
    let (pkts, bytes) = (n("packets_to_server"), n("bytes_to_server"));
    let (rpkts, rbytes) = (n("packets_to_client"), n("bytes_to_client"));
    assert!(pkts > 0 && rbytes > 12_000, "{end}");

    // nfdump reads the collector's files: the connection with the same counts
    // both ways (its CSV: ..., ipkt, ibyt, opkt, obyt, ...; the reverse counts
    // are RFC 5103's reverse elements).
    let out = run(
        "nfdump",
        &["-R", flows_dir.to_str().unwrap(), "-q", "-o", "csv", &format!("dst port 8080 and dst ip {SERVER_V4}")],
    );
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "nfdump: {}", String::from_utf8_lossy(&out.stderr));
    let counts = format!(",{pkts},{bytes},{rpkts},{rbytes},");
    let line = csv.lines().find(|l| l.contains(&counts) && l.contains(",198.18.0.1,198.18.0.2,"));
    assert!(line.is_some(), "nfdump shows the connection with {counts} (packets and bytes each way):\n{csv}");

    // tshark decodes the messages, templates included, without complaint.
    let out = run(
        "tshark",
        &["-r", dir.join("ipfix.pcap").to_str().unwrap(), "-d", &format!("udp.port=={port},cflow"), "-V"],
    );
    let decoded = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(decoded.contains("IPFIX") || decoded.contains("Version: 10"), "{decoded}");
    assert!(decoded.contains("Template"), "templates decoded:\n{decoded}");
    assert!(!decoded.contains("Malformed") && !decoded.contains("[Expert Info (Error"), "{decoded}");
    drop(topo);
}
