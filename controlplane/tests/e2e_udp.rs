//! End to end, the UDP identity handshake: two gatewayd in series (client ─
//! A ─ wire ─ B ─ server, tools/topology.sh double-ext; the host gwt-ext on
//! the wire has no gateway). Real dig against dnsmasq, real socat, a burst of
//! datagrams checked for loss and order, captures on the wire and at the
//! server. The policies are written here (lab keys, see e2e-gw-{a,b}.yaml).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use dataplane::identity::GatewayKeyPair;
use dataplane::wire::{parse_frame, udp as wudp};

const EXT: &str = "gwt-ext";
const EXT_V4: &str = "198.18.0.3";

fn wait_udp_port(ns: &str, port: u16) {
    for _ in 0..100 {
        let out = in_ns(ns, &format!("ss -ulnH 'sport = :{port}'"));
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on udp/{port} in {ns}");
}

fn dnsmasq(ns: &str, addr: &str) -> Proc {
    let p = spawn_ns(
        ns,
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={addr}"),
            "--port=53",
            "--user=root",
            "--pid-file=",
            "--address=/example.lab/10.7.7.7",
        ],
    );
    wait_udp_port(ns, 53);
    p
}

fn socat_echo(ns: &str, port: u16) -> Proc {
    let p = spawn_ns(ns, &["socat", &format!("UDP4-RECVFROM:{port},fork,reuseaddr"), "SYSTEM:cat"]);
    wait_udp_port(ns, port);
    p
}

/// One process answering every datagram in arrival order (socat forks per datagram).
fn ordered_echo(ns: &str, port: u16, dir: &Path) -> Proc {
    let script = dir.join("echo.py");
    std::fs::write(
        &script,
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', int(sys.argv[1])))\n\
         while True:\n\
         \x20   d, a = s.recvfrom(65535)\n\
         \x20   if d:\n\
         \x20       s.sendto(d, a)\n",
    )
    .unwrap();
    let p = spawn_ns(ns, &["python3", script.to_str().unwrap(), &port.to_string()]);
    wait_udp_port(ns, port);
    p
}

/// Sends `n` datagrams back to back from one socket, then reads the replies:
/// (replies in arrival order, seconds until the first).
fn burst(ns: &str, dst: &str, port: u16, n: usize, dir: &Path) -> (Vec<String>, f64) {
    let script = dir.join("burst.py");
    std::fs::write(
        &script,
        "import socket, sys, time\n\
         dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(3)\n\
         t = time.monotonic()\n\
         for i in range(n):\n\
         \x20   s.sendto(b'seq-%d' % i, (dst, port))\n\
         first = None\n\
         try:\n\
         \x20   for i in range(n):\n\
         \x20       d = s.recv(65535)\n\
         \x20       if first is None:\n\
         \x20           first = time.monotonic() - t\n\
         \x20       print(d.decode())\n\
         except socket.timeout:\n\
         \x20   pass\n\
         print('first %f' % (first if first is not None else -1))\n",
    )
    .unwrap();
    let out = in_ns(ns, &format!("python3 {} {dst} {port} {n}", script.display()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut replies: Vec<String> = text.lines().map(str::to_owned).collect();
    let first = replies.pop().and_then(|l| l.strip_prefix("first ").and_then(|x| x.parse().ok())).unwrap_or(-1.0);
    (replies, first)
}

/// dig from `ns`: (exit code, seconds, answer).
fn dig(ns: &str, server: &str) -> (i32, f64, String) {
    let t = Instant::now();
    let out = in_ns(ns, &format!("dig +short +time=3 +tries=1 @{server} example.lab A"));
    (out.status.code().unwrap_or(-1), t.elapsed().as_secs_f64(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// socat request-response from `ns`: the reply (empty when none came in the
/// 1.5 s socat waits after sending, longer than the 750 ms fallback).
fn socat_ask(ns: &str, dst: &str, port: u16, msg: &str) -> String {
    let out = in_ns(ns, &format!("echo {msg} | timeout 5 socat -t 1.5 -T 3 - UDP4:{dst}:{port}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn public(secret: u8) -> String {
    GatewayKeyPair::from_secret_bytes(0, [secret; 32]).public().iter().map(|x| format!("{x:02x}")).collect()
}

/// A: the client; B fronts the server; "gw-c" claims gwt-ext but has no gateway there.
fn policy_a() -> String {
    format!(
        r#"revision: e2e-udp-a
local: {{gateway: gw-a, key_id: 1, private_key: "{sk}"}}
processing_units:
  - {{name: client, tags: [app=frontend], addresses: [198.18.0.1, "fd00:2544::1"], identity: 1001}}
identities:
  - {{identity: 2001, name: server, tags: [app=web], peer: gw-b}}
peers:
  - {{name: gw-b, keys: [{{id: 2, public_key: "{pb}"}}], networks: [198.18.0.2/32]}}
  - {{name: gw-c, keys: [{{id: 3, public_key: "{pc}"}}], networks: [198.18.0.3/32]}}
rulesets:
  - name: frontend
    subject: app == frontend
    outgoing:
      - {{name: web-udp, action: allow, object: app == web, protocols: [udp], ports: [53, 9000, 9001, 9003]}}
      - {{name: lab-dns, action: allow, object: zone == lab-ext, protocols: [udp], ports: [53]}}
external_networks:
  - {{name: lab-ext, tags: [zone=lab-ext], cidrs: [198.18.0.3/32]}}
enforcer_profile:
  managed_tcp_networks: [198.18.0.0/24]
  managed_udp_networks: [198.18.0.0/24]
  excluded_networks: ["fd00:2544::/64"]
"#,
        sk = "0a".repeat(32),
        pb = public(0x0b),
        pc = public(0x0c)
    )
}

fn policy_b() -> String {
    format!(
        r#"revision: e2e-udp-b
local: {{gateway: gw-b, key_id: 2, private_key: "{sk}"}}
processing_units:
  - {{name: server, tags: [app=web], addresses: [198.18.0.2, "fd00:2544::2"], identity: 2001}}
identities:
  - {{identity: 1001, name: client, tags: [app=frontend], peer: gw-a}}
peers:
  - {{name: gw-a, keys: [{{id: 1, public_key: "{pa}"}}], networks: [198.18.0.1/32]}}
rulesets:
  - name: web
    subject: app == web
    incoming:
      # 9001 is allowed by A and not here: B answers with a signed reject
      - {{name: frontends-udp, action: allow, object: app == frontend, protocols: [udp], ports: [53, 9000, 9003]}}
enforcer_profile:
  managed_udp_networks: [198.18.0.0/24]
  excluded_networks: ["fd00:2544::/64"]
"#,
        sk = "0b".repeat(32),
        pa = public(0x0a)
    )
}

fn gw_config(topo: &Topology, ns: &str, dir: &Path, policy: &str) -> (PathBuf, PathBuf) {
    let pfile = dir.join(format!("{ns}.policy.yaml"));
    std::fs::write(&pfile, policy).unwrap();
    gw_config_with_policy(topo, ns, dir, &pfile)
}

/// A captured UDP datagram: ports, payload, and the identity option's
/// (msg, identity) when its options area carries one.
#[derive(Debug, Clone)]
struct Dgram {
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
    surplus: usize,
    identity: Option<(u8, u32)>,
}

fn datagrams(frames: &[Vec<u8>]) -> Vec<Dgram> {
    frames
        .iter()
        .filter_map(|f| {
            let i = parse_frame(f).ok()?;
            if i.proto != 17 {
                return None;
            }
            let p = usize::from(i.payload_offset);
            let payload = f.get(p..p + usize::from(i.payload_len))?.to_vec();
            let at = usize::from(i.udp_opts_offset);
            let surplus = f.get(at..at + usize::from(i.udp_opts_len)).unwrap_or(&[]);
            let identity = wudp::options_area(surplus, usize::from(i.udp_len)).ok().and_then(|(_, opts)| {
                wudp::options(opts).find_map(|r| match r {
                    Ok((_, wudp::UdpOption::Experimental { kind: 127, exid: 0x4d49, data })) if data.len() >= 9 => {
                        Some((data[1], u32::from_be_bytes([data[5], data[6], data[7], data[8]])))
                    }
                    _ => None,
                })
            });
            Some(Dgram { sport: i.src_port, dport: i.dst_port, payload, surplus: surplus.len(), identity })
        })
        .collect()
}

#[test]
fn udp_handshake_through_two_gateways() {
    require(&["ip", "ethtool", "python3", "ss", "tcpdump", "dig", "dnsmasq", "socat"]);
    let topo = Topology::up("double-ext");
    let dir = scratch("e2e-udp");
    let (cfg_a, log_a) = gw_config(&topo, "gwt-a", &dir, &policy_a());
    // Room for the whole burst of step 3 while its handshake is pending.
    let mut text = std::fs::read_to_string(&cfg_a).unwrap();
    text += "[udp_handshake]\nhold_per_flow = 32\n";
    std::fs::write(&cfg_a, text).unwrap();
    let (cfg_b, log_b) = gw_config(&topo, "gwt-b", &dir, &policy_b());
    let gw_a = Gatewayd::start(Some("gwt-a"), &cfg_a, &[]);
    let gw_b = Gatewayd::start(Some("gwt-b"), &cfg_b, &[]);
    let _dns = dnsmasq(SERVER, SERVER_V4);
    let _dns_ext = dnsmasq(EXT, EXT_V4);
    let _echo = socat_echo(SERVER, 9000);
    let _echo_rejected = socat_echo(SERVER, 9001);
    let _echo_ext = socat_echo(EXT, 9002);
    let _ordered = ordered_echo(SERVER, 9003, &dir);

    // 1. DNS through both gateways: the handshake, then the query.
    let (code, secs, answer) = dig(CLIENT, SERVER_V4);
    assert_eq!((code, answer.as_str()), (0, "10.7.7.7"), "dig through A and B ({secs:.2}s)");
    assert!(secs < 1.0, "no fallback wait: {secs:.2}s");

    // 2. socat request-response, allowed.
    assert_eq!(socat_ask(CLIENT, SERVER_V4, 9000, "hello-udp"), "hello-udp");

    // 3. A burst: the first datagrams wait for the handshake; none lost, none
    // reordered, and neither the server nor the client sees a handshake packet.
    let filter = "udp port 9003";
    let cap_wire = Capture::start("gwt-wire", "wb", filter, &dir.join("wire.pcap"));
    let cap_server = Capture::start(SERVER, "eth0", filter, &dir.join("server.pcap"));
    let cap_client = Capture::start(CLIENT, "eth0", filter, &dir.join("client.pcap"));
    let (replies, first) = burst(CLIENT, SERVER_V4, 9003, 20, &dir);
    std::thread::sleep(Duration::from_millis(200));
    let wire = datagrams(&cap_wire.stop());
    let at_server = datagrams(&cap_server.stop());
    let at_client = datagrams(&cap_client.stop());
    let want: Vec<String> = (0..20).map(|i| format!("seq-{i}")).collect();
    assert_eq!(replies, want, "every datagram answered, in order (first reply after {first:.4}s)");
    let to_server: Vec<String> = at_server
        .iter()
        .filter(|d| d.dport == 9003)
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect();
    assert_eq!(to_server, want, "the server receives exactly the application's datagrams, in order");
    assert!(
        at_server.iter().chain(&at_client).all(|d| d.surplus == 0 && !d.payload.is_empty()),
        "no handshake at either end"
    );
    let hs: Vec<&Dgram> = wire.iter().filter(|d| d.identity.is_some()).collect();
    assert!(hs.len() >= 2, "request and response on the wire: {wire:?}");
    assert_eq!(
        (hs[0].dport, hs[0].identity, hs[0].payload.len()),
        (9003, Some((1, 1001)), 0),
        "A's request: empty payload, client identity"
    );
    assert_eq!(
        (hs[1].sport, hs[1].identity, hs[1].payload.len()),
        (9003, Some((2, 2001)), 0),
        "B's response: server identity"
    );
    let first_data = wire.iter().position(|d| d.identity.is_none() && d.dport == 9003).expect("data on the wire");
    let resp_at = wire.iter().position(|d| d.identity.map(|x| x.0) == Some(2)).unwrap();
    assert!(first_data > resp_at, "held datagrams leave only after the response: {wire:?}");

    // 4. Rejected by B (9001): a signed reject, nothing reaches the client.
    assert_eq!(socat_ask(CLIENT, SERVER_V4, 9001, "nope"), "", "blocked by B's incoming rules");

    // 5. No gateway in front of gwt-ext (peer gw-c never answers): after the
    // retransmits, A's external-network rule for udp/53 decides.
    let (code, secs, answer) = dig(CLIENT, EXT_V4);
    assert_eq!((code, answer.as_str()), (0, "10.7.7.7"), "dig to the ext host through the fallback ({secs:.2}s)");
    assert!(secs >= 0.7, "released by the fallback after 750 ms: {secs:.2}s");
    assert_eq!(socat_ask(CLIENT, EXT_V4, 9002, "blocked"), "", "no external-network rule for udp/9002");

    let (_, b) = gw_b.stop();
    let (_, a) = gw_a.stop();

    // Counters.
    assert!(notes(&a, "from_inside", "udp_request_sent") >= 5, "{a}");
    assert!(notes(&a, "from_outside", "udp_handshake_done") >= 4, "{a}");
    // At least the first datagram of each allowed handshake (dig, socat, the
    // burst, the fallback dig); how much more of the burst waited depends on timing.
    let released = notes(&a, "from_inside", "udp_released");
    assert!((4..=4 + 19).contains(&released), "{a}");
    assert!(notes(&b, "from_outside", "udp_response_sent") >= 3, "{b}");
    assert!(notes(&b, "from_outside", "udp_reject_sent") >= 1, "{b}");
    assert!(drops(&a, "from_inside", "udp_rejected_by_peer") >= 1, "{a}");
    assert!(notes(&a, "from_inside", "udp_handshake_timeout") >= 2, "{a}");
    assert!(notes(&a, "from_inside", "udp_request_retransmit") >= 6, "{a}");
    assert!(drops(&a, "from_inside", "no_match") >= 1, "udp/9002 dropped by the fallback verdict: {a}");

    // Flow events.
    let fa = flows(&log_a);
    let fb = flows(&log_b);
    let dport = |e: &serde_json::Value| e["destination"]["port"].as_u64().unwrap_or(0);
    let b53 =
        fb.iter().find(|e| e["type"] == "started" && dport(e) == 53).unwrap_or_else(|| panic!("B logged DNS: {fb:?}"));
    assert_eq!((b53["verdict"].as_str(), b53["protocol"].as_str()), (Some("allowed"), Some("udp")));
    assert_eq!(
        (b53["source"]["identity"].as_u64(), b53["policy"]["rule"].as_str()),
        (Some(1001), Some("frontends-udp"))
    );
    let a9001 = fa.iter().find(|e| e["type"] == "rejected" && dport(e) == 9001).expect("A logged 9001");
    assert_eq!((a9001["verdict"].as_str(), a9001["reason"].as_str()), (Some("rejected"), Some("udp_rejected_by_peer")));
    let ext = fa
        .iter()
        .find(|e| e["type"] == "started" && dport(e) == 53 && e["destination"]["ip"] == EXT_V4)
        .expect("A logged the fallback");
    assert_eq!(
        (ext["verdict"].as_str(), ext["note"].as_str(), ext["policy"]["rule"].as_str()),
        (Some("allowed"), Some("udp_handshake_timeout"), Some("lab-dns"))
    );
    let _ = topo;
}
