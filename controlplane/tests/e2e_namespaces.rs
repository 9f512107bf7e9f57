//! End to end: real Linux TCP/UDP stacks in network namespaces talk through
//! gatewayd running on net_af_packet, and stop talking when it stops.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// An HTTP server in the server namespace serving `dir`, killed on drop.
struct HttpServer(Child);

impl HttpServer {
    fn start(dir: &Path, bind: &str, port: u16) -> HttpServer {
        let child = Command::new("ip")
            .args(["netns", "exec", SERVER, "python3", "-m", "http.server", &port.to_string(), "--bind", bind])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m http.server");
        wait_listening(port, "t");
        HttpServer(child)
    }
}

/// Waits until something in the server namespace listens on `port` (`proto` t or u).
fn wait_listening(port: u16, proto: &str) {
    for _ in 0..100 {
        let out = in_ns(SERVER, &format!("ss -{proto}lnH 'sport = :{port}'"));
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port} in the server namespace");
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(url: &str, max_time: u32) -> (bool, String) {
    let out = in_ns(CLIENT, &format!("curl -sS -g --max-time {max_time} {url}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn web_root(name: &str) -> (std::path::PathBuf, String) {
    let dir = scratch(name);
    let body = format!("hello through the gateway ({name})\n");
    std::fs::write(dir.join("index.txt"), &body).unwrap();
    (dir, body)
}

#[test]
fn single_gateway_carries_real_tcp_and_udp_and_stops_when_it_stops() {
    require(&["ip", "ethtool", "curl", "nc", "socat", "python3", "ss", "md5sum"]);
    let topo = Topology::up("single");
    let (root, body) = web_root("e2e-single");
    let cfg = topo.config("gwt-gw", 1, &root);
    let gw = Gatewayd::start(Some("gwt-gw"), &cfg, &[]);
    let _http4 = HttpServer::start(&root, SERVER_V4, 8080);
    let _http6 = HttpServer::start(&root, SERVER_V6, 8081);

    let (ok, got) = curl(&format!("http://{SERVER_V4}:8080/index.txt"), 10);
    assert!(ok && got == body, "curl over IPv4 through the gateway: {got}");
    let (ok, got) = curl(&format!("http://[{SERVER_V6}]:8081/index.txt"), 10);
    assert!(ok && got == body, "curl over IPv6 through the gateway: {got}");

    // 4 MB of TCP one way, checked end to end.
    let recv = root.join("recv.bin");
    let sent = root.join("sent.bin");
    let out = run("sh", &["-c", &format!("head -c 4000000 /dev/urandom > {}", sent.display())]);
    assert!(out.status.success());
    let mut sink = Command::new("ip")
        .args(["netns", "exec", SERVER, "sh", "-c", &format!("nc -l 9000 > {}", recv.display())])
        .spawn()
        .unwrap();
    wait_listening(9000, "t");
    let out = in_ns(CLIENT, &format!("nc -q 1 -w 10 {SERVER_V4} 9000 < {}", sent.display()));
    assert!(out.status.success(), "nc client: {}", String::from_utf8_lossy(&out.stderr));
    let _ = sink.wait();
    let md5 = |p: &Path| String::from_utf8_lossy(&run("md5sum", &[p.to_str().unwrap()]).stdout)[..32].to_owned();
    assert_eq!(md5(&sent), md5(&recv), "bulk TCP arrived intact");

    // UDP: a datagram each way (request and echo).
    let mut echo = Command::new("ip")
        .args(["netns", "exec", SERVER, "socat", "-T", "5", "UDP4-RECVFROM:9999", "SYSTEM:cat"])
        .spawn()
        .unwrap();
    wait_listening(9999, "u");
    let out = in_ns(CLIENT, &format!("echo ping-udp | socat -T 3 - UDP4-SENDTO:{SERVER_V4}:9999"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ping-udp", "UDP echo through the gateway");
    let _ = echo.kill();
    let _ = echo.wait();

    let (_, counters) = gw.stop();
    // The client (outside) sent 4 MB: at least 4e6 / 1500 full frames in.
    // The server (inside) answered with ACKs, HTTP and UDP replies.
    assert!(worker_sum(&counters, "from_outside", "tx_bytes") > 4_000_000, "{counters}");
    assert!(worker_sum(&counters, "from_outside", "tx_packets") > 2666, "{counters}");
    assert!(worker_sum(&counters, "from_inside", "tx_packets") > 10, "{counters}");
    assert_eq!(worker_sum(&counters, "from_inside", "rx_packets"), worker_sum(&counters, "from_inside", "tx_packets"));

    // With the gateway stopped, nothing crosses.
    let (ok, got) = curl(&format!("http://{SERVER_V4}:8080/index.txt"), 3);
    assert!(!ok, "curl must fail with the gateway stopped, got: {got}");
}

#[test]
fn two_workers_on_af_packet_serve_many_connections() {
    require(&["ip", "ethtool", "curl", "python3", "ss"]);
    let topo = Topology::up("single");
    let (root, body) = web_root("e2e-workers");
    let cfg = topo.config("gwt-gw", 2, &root);
    let gw = Gatewayd::start(Some("gwt-gw"), &cfg, &[]);
    let _http = HttpServer::start(&root, SERVER_V4, 8080);
    // 40 connections from distinct source ports, 4 at a time.
    let url = format!("http://{SERVER_V4}:8080/index.txt");
    let out = in_ns(
        CLIENT,
        &format!("seq 40 | xargs -P 4 -I{{}} curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}\\n' {url}"),
    );
    let codes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(codes.lines().filter(|l| *l == "200").count(), 40, "all 40 requests succeed: {codes}");
    let (ok, got) = curl(&url, 10);
    assert!(ok && got == body);
    let (_, counters) = gw.stop();
    let workers = counters["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let off: u64 = workers.iter().map(|w| w["handed_off"].as_u64().unwrap()).sum();
    let inn: u64 = workers.iter().map(|w| w["handed_in"].as_u64().unwrap()).sum();
    assert_eq!(off, inn, "hand-offs all arrived: {counters}");
    for w in workers {
        assert_eq!(w["from_inside"]["drops"]["handoff_full"], 0, "{w}");
    }
}

#[test]
fn two_gateways_in_series() {
    require(&["ip", "ethtool", "curl", "python3", "ss"]);
    let topo = Topology::up("double");
    let (root, body) = web_root("e2e-double");
    let gw_a = Gatewayd::start(Some("gwt-a"), &topo.config("gwt-a", 1, &root), &[]);
    let gw_b = Gatewayd::start(Some("gwt-b"), &topo.config("gwt-b", 1, &root), &[]);
    let _http = HttpServer::start(&root, SERVER_V4, 8080);
    let url = format!("http://{SERVER_V4}:8080/index.txt");
    let (ok, got) = curl(&url, 10);
    assert!(ok && got == body, "client behind A reaches server behind B: {got}");
    let (_, b) = gw_b.stop();
    // B saw the request come in from the wire (outside) and go to its workload.
    assert!(worker_sum(&b, "from_outside", "tx_packets") > 0, "{b}");
    let (ok, _) = curl(&url, 3);
    assert!(!ok, "with gateway B stopped the path is cut");
    let (_, a) = gw_a.stop();
    assert!(worker_sum(&a, "from_inside", "tx_packets") > 0, "{a}");
}

#[test]
fn fleet_topology_three_gateways_and_a_management_network() {
    require(&["ip", "ethtool", "ping", "etcd", "etcdctl"]);
    let topo = Topology::up("fleet");
    let root = scratch("e2e-fleet");

    // Each gateway namespace reaches the root namespace (and its peers) on
    // the management network, and an etcd listening there, over TLS.
    for (ns, addr) in MGMT_GATEWAYS {
        let out = in_ns(ns, &format!("ip -4 -br addr show mgmt0 && ping -c 1 -W 2 -I mgmt0 {MGMT_HOST}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(&format!("{addr}/24")), "{ns} to {MGMT_HOST}: {text}");
    }
    let etcd = etcd::Etcd::start(
        &root.join("etcd"),
        etcd::EtcdOptions { listen: MGMT_HOST.into(), tls: true, ..Default::default() },
    );
    assert!(etcd.endpoints()[0].starts_with(&format!("https://{MGMT_HOST}:")), "{:?}", etcd.endpoints());
    let cert = etcd.client_cert("gwt-a");
    let out = etcd.etcdctl_in("gwt-a", &["put", "/igw/gateways/gwt-a/hello", "1"], Some(etcd::Cred::Cert(&cert)));
    assert!(out.status.success(), "etcdctl in gwt-a: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(etcd.etcdctl_ok(&["get", "/igw/gateways/gwt-a/hello", "--print-value-only"], None).trim(), "1");

    // The data path: the three workloads on one segment, each behind its gateway.
    let gws: Vec<Gatewayd> = ["gwt-a", "gwt-b", "gwt-c"]
        .iter()
        .map(|ns| Gatewayd::start(Some(ns), &topo.config(ns, 1, &root), &[]))
        .collect();
    for (from, to) in [(CLIENT, SERVER_V4), (CLIENT, CLIENT_C_V4), (CLIENT_C, SERVER_V4)] {
        let out = in_ns(from, &format!("ping -c 2 -i 0.2 -W 2 {to}"));
        assert!(out.status.success(), "{from} to {to} through the gateways: {}", String::from_utf8_lossy(&out.stdout));
    }
    for gw in gws {
        let (_, c) = gw.stop();
        assert!(worker_sum(&c, "from_inside", "tx_packets") > 0, "{c}");
    }

    // Down removes the namespaces and the root namespace's bridge.
    drop(etcd);
    drop(topo);
    assert!(!run("ip", &["link", "show", "gwmgmt"]).status.success(), "gwmgmt is still there after down");
    let left = String::from_utf8_lossy(&run("ip", &["netns", "list"]).stdout).into_owned();
    assert!(!left.contains("gwt-"), "namespaces left after down: {left}");
}
