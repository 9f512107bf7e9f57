//! End to end, identity and policy: two gatewayd in series (client ─ A ─ wire
//! ─ B ─ server, tools/topology.sh double-ext) with the example policies in
//! docs/examples/e2e-gw-{a,b}.yaml. Real kernels, real curl, real captures.
//! A sends the option's version 2 to B, B sends version 1 to A (the
//! documents' `option_version`): a mixed pair, as during a rolling upgrade.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use dataplane::wire::parse_frame;

const EXT: &str = "gwt-ext";

/// curl from `ns`: (exit code, seconds, output).
fn curl(ns: &str, url: &str) -> (i32, f64, String) {
    let t = Instant::now();
    let out = in_ns(ns, &format!("curl -sS -g --max-time 8 {url}"));
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), secs, text)
}

fn gw_config(topo: &Topology, ns: &str, dir: &Path, policy: &str) -> (PathBuf, PathBuf) {
    gw_config_with_policy(topo, ns, dir, &repo_root().join("docs/examples").join(policy))
}

/// The identity option gateway A signs for a SYN 198.18.0.1:40000 → 198.18.0.2:8080, seq 1000.
fn option_for_client_syn() -> Vec<u8> {
    use dataplane::buf::{PacketBuf, VecBuf};
    use dataplane::identity::{insert_tcp, keys, GatewayKeyPair, TcpVersion};
    let a = GatewayKeyPair::from_secret_bytes(1, [0x0a; 32]);
    let b = GatewayKeyPair::from_secret_bytes(2, [0x0b; 32]);
    let (tx, _) = keys::derive_pair(&a, &b.peer_public(0), 0, u64::MAX).unwrap();
    let tx = tx.sending(TcpVersion::OneBlock); // as e2e-gw-a.yaml sends to gw-b
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[198, 18, 0, 1]);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&[198, 18, 0, 2]);
    let spec = dataplane::wire::builder::Spec { src, dst, sport: 40000, dport: 8080, seq: 1000, ..Default::default() };
    let mut buf = VecBuf::from_frame(&dataplane::wire::builder::build(&spec));
    let info = parse_frame(buf.data()).unwrap();
    insert_tcp(&mut buf, &info, &tx, 1001).unwrap();
    let f = buf.data();
    let i = parse_frame(f).unwrap();
    let o = usize::from(i.tcp_opts_offset);
    f[o..o + 20].to_vec()
}

fn scapy_syn(sport: u16, dport: u16, option_hex: &str) -> Output {
    let script = format!(
        "from scapy.all import *\n\
         conf.verb = 0\n\
         o = bytes.fromhex('{option_hex}')\n\
         p = IP(src='198.18.0.3', dst='{SERVER_V4}')/TCP(sport={sport}, dport={dport}, flags='S', seq=12345, options=[(o[0], o[2:])])\n\
         send(p, count=2, inter=0.2)\n"
    );
    let f = std::env::temp_dir().join(format!("gw-scapy-{sport}.py"));
    std::fs::write(&f, script).unwrap();
    in_ns(EXT, &format!("/usr/bin/python3 {}", f.display()))
}

use std::process::Output;

#[test]
fn identity_and_policy_through_two_gateways() {
    require(&["ip", "ethtool", "curl", "python3", "ss", "tcpdump"]);
    let topo = Topology::up("double-ext");
    let dir = scratch("e2e-identity");
    std::fs::write(dir.join("index.txt"), "hello identity\n").unwrap();
    let (cfg_a, log_a) = gw_config(&topo, "gwt-a", &dir, "e2e-gw-a.yaml");
    let (cfg_b, log_b) = gw_config(&topo, "gwt-b", &dir, "e2e-gw-b.yaml");
    let gw_a = Gatewayd::start(Some("gwt-a"), &cfg_a, &[]);
    let gw_b = Gatewayd::start(Some("gwt-b"), &cfg_b, &[]);
    let _servers: Vec<Proc> = [8080, 8081, 8082, 8083].iter().map(|&p| http_server(&dir, "::", p)).collect();
    // 1. allowed: both gateways allow client → server:8080
    let (code, _, out) = curl(CLIENT, &format!("http://{SERVER_V4}:8080/index.txt"));
    assert_eq!((code, out.as_str()), (0, "hello identity\n"), "allowed curl");

    // 2. rejected at B (8081 is not in B's incoming rules): fails fast with a reset
    let (code, secs, out) = curl(CLIENT, &format!("http://{SERVER_V4}:8081/index.txt"));
    assert!(code == 7 || code == 56, "rejected at B: curl exit {code}: {out}");
    assert!(secs < 3.0, "a reset, not a timeout: {secs:.1}s");

    // 3. rejected at A on the SYN-ACK (8083 is allowed by B, not by A's outgoing rules)
    let (code, secs, out) = curl(CLIENT, &format!("http://{SERVER_V4}:8083/index.txt"));
    assert!(code == 7 || code == 56, "rejected at A: curl exit {code}: {out}");
    assert!(secs < 3.0, "reset both ends, not a timeout: {secs:.1}s");

    // 4. a host with no gateway: allowed only where an external-network rule allows it
    let (code, _, out) = curl(EXT, &format!("http://{SERVER_V4}:8082/index.txt"));
    assert_eq!((code, out.as_str()), (0, "hello identity\n"), "ext host on 8082 (lab-host rule)");
    let (code, secs, out) = curl(EXT, &format!("http://{SERVER_V4}:8080/index.txt"));
    assert!(code == 7 || code == 56, "ext host on 8080 has no rule: curl exit {code}: {out}");
    assert!(secs < 3.0);

    // 5. excluded network (the IPv6 prefix): passes untouched, unlogged
    let (code, _, out) = curl(CLIENT, &format!("http://[{SERVER_V6}]:8081/index.txt"));
    assert_eq!((code, out.as_str()), (0, "hello identity\n"), "excluded IPv6 passes even where IPv4 is rejected");

    // 6. forged and replayed options, crafted with scapy on the wire: the
    // option gateway A would put on the client's SYN 198.18.0.1:40000 → :8080
    // (seq 1000), computed with A's lab key, then sent by the ext host on
    // another connection (replay) and with a flipped MAC byte (forgery).
    let opt = option_for_client_syn();
    assert_eq!(&opt[..4], &[253, 20, 0x4d, 0x49]);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut forged = opt.clone();
    forged[19] ^= 0xa5;
    let out = scapy_syn(41001, 8080, &hex(&forged));
    assert!(out.status.success(), "scapy: {}", String::from_utf8_lossy(&out.stderr));
    let out = scapy_syn(41002, 8080, &hex(&opt)); // the real option, replayed on another connection
    assert!(out.status.success(), "scapy: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));

    let (_, b) = gw_b.stop();
    let (_, a) = gw_a.stop();

    // counters
    assert!(notes(&a, "from_inside", "identity_inserted") >= 3, "{a}");
    assert!(notes(&a, "from_outside", "identity_verified") >= 2, "{a}");
    assert!(notes(&b, "from_outside", "identity_verified") >= 3, "{b}");
    // A signs version 2 towards B, B version 1 towards A.
    assert_eq!(notes(&b, "from_outside", "identity_verified_v1"), 0, "{b}");
    assert_eq!(
        notes(&a, "from_outside", "identity_verified_v1"),
        notes(&a, "from_outside", "identity_verified"),
        "{a}"
    );
    assert!(drops(&b, "from_outside", "no_match") >= 2, "8081 and the ext host on 8080: {b}");
    assert!(drops(&a, "from_outside", "no_match") >= 1, "8083 at A: {a}");
    assert_eq!(drops(&b, "from_outside", "identity_bad_mac"), 4, "forged ×2 and replayed ×2: {b}");
    assert!(notes(&a, "from_inside", "excluded") > 0 && notes(&b, "from_outside", "excluded") > 0);

    // flow events
    let fa = flows(&log_a);
    let fb = flows(&log_b);
    let dport = |e: &serde_json::Value| e["destination"]["port"].as_u64().unwrap();
    let allowed_b = fb.iter().find(|e| e["type"] == "started" && dport(e) == 8080 && e["source"]["kind"] == "identity");
    let allowed_b = allowed_b.unwrap_or_else(|| panic!("B logged the allowed connection: {fb:?}"));
    assert_eq!(allowed_b["verdict"], "allowed");
    assert_eq!(allowed_b["source"]["name"], "client");
    assert_eq!(allowed_b["source"]["identity"], 1001);
    assert_eq!(allowed_b["destination"]["name"], "server");
    assert_eq!(allowed_b["policy"]["rule"], "frontends");
    let rejected_b = fb.iter().find(|e| e["type"] == "rejected" && dport(e) == 8081).expect("B logged 8081");
    assert_eq!((rejected_b["verdict"].as_str(), rejected_b["reason"].as_str()), (Some("rejected"), Some("no_match")));
    let ext_ok = fb.iter().find(|e| dport(e) == 8082 && e["type"] == "started").expect("B logged the ext host");
    assert_eq!((ext_ok["verdict"].as_str(), ext_ok["source"]["name"].as_str()), (Some("allowed"), Some("lab-ext")));
    assert_eq!(ext_ok["source"]["kind"], "external");
    assert_eq!(ext_ok["policy"]["rule"], "lab-host");
    let bad: Vec<_> = fb.iter().filter(|e| e["reason"] == "identity_bad_mac").collect();
    assert_eq!(bad.len(), 4, "{fb:?}");
    assert!(bad.iter().all(|e| e["source"]["ip"] == "198.18.0.3"));
    let allowed_a = fa.iter().find(|e| e["type"] == "started" && dport(e) == 8080).expect("A logged 8080");
    assert_eq!(
        (allowed_a["verdict"].as_str(), allowed_a["destination"]["name"].as_str()),
        (Some("allowed"), Some("server"))
    );
    let rejected_a = fa.iter().find(|e| e["type"] == "rejected" && dport(e) == 8083).expect("A logged 8083");
    assert_eq!(rejected_a["verdict"], "rejected");
    assert_eq!(rejected_a["destination"]["identity"], 2001);
    assert!(
        fa.iter().chain(&fb).all(|e| !e["source"]["ip"].as_str().unwrap().contains(':')),
        "excluded (IPv6) traffic is never logged"
    );
    let _ = topo;
}

/// The identity option on the wire (SYN and SYN-ACK), and neither at the
/// client nor at the server, seen by tcpdump in each namespace (see
/// `common::Capture` for why these captures once came back empty).
#[test]
fn capture_shows_the_option_on_the_wire_and_not_at_the_server() {
    require(&["ip", "ethtool", "curl", "python3", "ss", "tcpdump"]);
    let topo = Topology::up("double-ext");
    let dir = scratch("e2e-identity-capture");
    std::fs::write(dir.join("index.txt"), "hello identity\n").unwrap();
    let (cfg_a, _) = gw_config(&topo, "gwt-a", &dir, "e2e-gw-a.yaml");
    let (cfg_b, _) = gw_config(&topo, "gwt-b", &dir, "e2e-gw-b.yaml");
    let gw_a = Gatewayd::start(Some("gwt-a"), &cfg_a, &[]);
    let gw_b = Gatewayd::start(Some("gwt-b"), &cfg_b, &[]);
    let _server = http_server(&dir, "::", 8080);
    let filter = "tcp port 8080";
    let cap_client = Capture::start(CLIENT, "eth0", filter, &dir.join("client.pcap"));
    let cap_wire = Capture::start("gwt-wire", "wb", filter, &dir.join("wire.pcap"));
    let cap_server = Capture::start(SERVER, "eth0", filter, &dir.join("server.pcap"));
    let (code, _, out) = curl(CLIENT, &format!("http://{SERVER_V4}:8080/index.txt"));
    assert_eq!((code, out.as_str()), (0, "hello identity\n"), "allowed curl");
    std::thread::sleep(Duration::from_millis(200));
    let at_client = handshakes(&cap_client.stop());
    let wire = handshakes(&cap_wire.stop());
    let at_server = handshakes(&cap_server.stop());
    let (_, b) = gw_b.stop();
    let (_, a) = gw_a.stop();

    // The client's SYN as it left the client, on the wire, and at the server.
    let syn_of = |hs: &[Handshake], place: &str| -> Handshake {
        let s: Vec<_> = hs.iter().filter(|h| !h.syn_ack && h.dst_port == 8080).collect();
        assert_eq!(s.len(), 1, "one SYN {place} (no retransmission): {hs:?}");
        s[0].clone()
    };
    let syn_ack_of = |hs: &[Handshake], place: &str| -> Handshake {
        let s: Vec<_> = hs.iter().filter(|h| h.syn_ack && h.src_port == 8080).collect();
        assert_eq!(s.len(), 1, "one SYN-ACK {place}: {hs:?}");
        s[0].clone()
    };
    let (syn_c, syn_w, syn_s) =
        (syn_of(&at_client, "at the client"), syn_of(&wire, "on the wire"), syn_of(&at_server, "at the server"));
    let (sa_s, sa_w, sa_c) = (
        syn_ack_of(&at_server, "at the server"),
        syn_ack_of(&wire, "on the wire"),
        syn_ack_of(&at_client, "at the client"),
    );
    assert_eq!((syn_c.seq, syn_s.seq, sa_s.seq, sa_c.seq), (syn_w.seq, syn_w.seq, sa_w.seq, sa_w.seq), "same segments");

    // On the wire: A's option on the SYN (key 1→2, identity 1001 = client,
    // version 2 as e2e-gw-a.yaml says), B's on the SYN-ACK (key 2→1,
    // identity 2001 = server, version 1: e2e-gw-b.yaml's default).
    let opt = syn_w.option.clone().expect("the SYN on the wire carries the identity option");
    assert_eq!(&opt[..5], &[253, 20, 0x4d, 0x49, 0x20], "kind, length, ExID, version 2");
    assert_eq!(&opt[5..8], &[0, 1, 2], "key id: sender 1 (A), receiver 2 (B)");
    assert_eq!(u32::from_be_bytes(opt[8..12].try_into().unwrap()), 1001);
    let opt = sa_w.option.clone().expect("the SYN-ACK on the wire carries the identity option");
    assert_eq!(&opt[..8], &[253, 20, 0x4d, 0x49, 0x10, 0, 2, 1], "SYN-ACK key id: sender 2 (B), receiver 1 (A)");
    assert_eq!(u32::from_be_bytes(opt[8..12].try_into().unwrap()), 2001);

    // Neither end sees an identity option; since Linux's SYN and SYN-ACK
    // options fit in 20 bytes, insert-then-strip gives back the very bytes.
    for (h, place) in
        [(&syn_c, "client SYN"), (&syn_s, "server SYN"), (&sa_s, "server SYN-ACK"), (&sa_c, "client SYN-ACK")]
    {
        assert!(h.option.is_none(), "no identity option in the {place}: {h:?}");
    }
    assert_eq!(syn_s.ip, syn_c.ip, "the SYN reaches the server exactly as the client sent it");
    assert_eq!(sa_c.ip, sa_s.ip, "the SYN-ACK reaches the client exactly as the server sent it");
    assert_eq!(syn_w.ip.len(), syn_c.ip.len() + 20, "the SYN grew by the option on the wire");
    assert!(
        at_server.iter().chain(&at_client).all(|h| h.option.is_none()),
        "no option at either end: {at_server:?} {at_client:?}"
    );

    // The gateways agree with what the captures show.
    assert!(notes(&a, "from_inside", "identity_inserted") >= 1, "{a}");
    assert!(notes(&b, "from_outside", "identity_verified") >= 1, "{b}");
    assert!(notes(&b, "from_inside", "identity_inserted") >= 1, "{b}");
    assert!(notes(&a, "from_outside", "identity_verified") >= 1, "{a}");
    assert_eq!(notes(&b, "from_outside", "identity_verified_v1"), 0, "A sends version 2: {b}");
    assert!(notes(&a, "from_outside", "identity_verified_v1") >= 1, "B sends version 1: {a}");
    let _ = topo;
}
