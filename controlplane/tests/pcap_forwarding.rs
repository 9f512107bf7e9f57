//! gatewayd on the real EAL with net_pcap devices: frames read from one
//! port's capture come out of the opposite port byte for byte, and with two
//! workers both directions of every flow are handled by the same worker even
//! when the device delivers them to different queues. gatewayd's own
//! threads stay off the workers' cores, and the time the kernel gives each
//! worker is counted.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use common::*;
use scenario_gen::frame::{tcp_frame, udp_frame, Envelope, TcpHeader};
use scenario_gen::net::MacAddr;

const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xa]);
const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xb]);

fn env(src: IpAddr, dst: IpAddr, a_to_b: bool) -> Envelope {
    let (src_mac, dst_mac) = if a_to_b { (MAC_A, MAC_B) } else { (MAC_B, MAC_A) };
    Envelope { src_mac, dst_mac, src, dst, ttl: 64, ip_id: 1, flow_label: 0 }
}

fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, a_to_b: bool, payload: &[u8]) -> Vec<u8> {
    let h =
        TcpHeader { src_port: sport, dst_port: dport, seq: 1000, ack: 2000, flags: 0x18, window: 512, options: &[] };
    tcp_frame(&env(src, dst, a_to_b), &h, payload).expect("tcp frame")
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 1, d))
}

/// Frames of every kind a bump in the wire must pass untouched.
fn assorted(a_to_b: bool) -> Vec<Vec<u8>> {
    let (s, d) = if a_to_b { (v4(1), v4(2)) } else { (v4(2), v4(1)) };
    let s6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x2544, 0, 0, 0, 0, 0, if a_to_b { 1 } else { 2 }));
    let d6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x2544, 0, 0, 0, 0, 0, if a_to_b { 2 } else { 1 }));
    let mut frames = vec![
        tcp(s, d, 40000, 80, a_to_b, b"GET / HTTP/1.1\r\n\r\n"),
        tcp(s6, d6, 40001, 443, a_to_b, &[0x16; 300]),
        udp_frame(&env(s, d, a_to_b), 5353, 53, b"query").expect("udp frame"),
        tcp(s, d, 40002, 22, a_to_b, &[0xab; 1400]),
    ];
    // ARP request (non-IP: passes as it is).
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC_A.0);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&MAC_A.0);
    arp.extend_from_slice(&[198, 18, 1, 1, 0, 0, 0, 0, 0, 0, 198, 18, 1, 2]);
    arp.resize(60, 0);
    frames.push(arp);
    // The first TCP frame again, behind an 802.1Q tag (VLAN 100).
    let mut tagged = frames[0][..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    tagged.extend_from_slice(&frames[0][12..]);
    frames.push(tagged);
    // An LLDP-like frame with an unknown ethertype.
    let mut other = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
    other.extend_from_slice(&MAC_B.0);
    other.extend_from_slice(&[0x88, 0xcc]);
    other.resize(64, 0x5a);
    frames.push(other);
    frames
}

fn pcap_port(name: &str, rx: &[&Path], tx: &[&Path]) -> String {
    let mut s = name.to_owned();
    for p in rx {
        s += &format!(",rx_pcap={}", p.display());
    }
    for p in tx {
        s += &format!(",tx_pcap={}", p.display());
    }
    s
}

fn config(dir: &Path, workers: u32, inside: &str, outside: &str) -> std::path::PathBuf {
    let mut lcores = "0@0".to_string();
    for w in 1..=workers {
        lcores += &format!(",{w}@{}", w % 2);
    }
    let mut toml = format!(
        "[eal]\nargs = [\"--lcores\", \"{lcores}\", \"--no-pci\", \"--no-huge\", \"-m\", \"128\", \
         \"--file-prefix\", \"pcapfwd{}w{workers}\", \"--log-level\", \"*:warning\", \"--vdev\", \"{inside}\", \"--vdev\", \"{outside}\"]\n\
         [ports]\ninside = \"net_pcap0\"\noutside = \"net_pcap1\"\n",
        std::process::id()
    );
    for w in 1..=workers {
        toml += &format!("[[workers]]\nlcore = {w}\n");
    }
    toml += "[tuning]\nidle_backoff_us = 50\n";
    let path = dir.join("gatewayd.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Runs gatewayd until both captures are consumed, then stops it.
fn run_until_forwarded(cfg: &Path, expect: u64) -> serde_json::Value {
    let gw = Gatewayd::start(None, cfg, &[]);
    // net_pcap reads its file once, at poll speed: well within this.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (out, counters) = gw.stop();
    let forwarded =
        worker_sum(&counters, "from_inside", "tx_packets") + worker_sum(&counters, "from_outside", "tx_packets");
    assert_eq!(forwarded, expect, "forwarded frames\n{out}");
    counters
}

#[test]
fn frames_cross_unchanged_in_both_directions() {
    let dir = scratch("pcapfwd");
    let a_to_b = assorted(true);
    let b_to_a = assorted(false);
    let (rx_in, rx_out, tx_in, tx_out) =
        (dir.join("rx_in.pcap"), dir.join("rx_out.pcap"), dir.join("tx_in.pcap"), dir.join("tx_out.pcap"));
    write_pcap(&rx_in, &a_to_b);
    write_pcap(&rx_out, &b_to_a);
    let cfg =
        config(&dir, 1, &pcap_port("net_pcap0", &[&rx_in], &[&tx_in]), &pcap_port("net_pcap1", &[&rx_out], &[&tx_out]));
    let counters = run_until_forwarded(&cfg, (a_to_b.len() + b_to_a.len()) as u64);
    assert_eq!(read_pcap(&tx_out), a_to_b, "inside -> outside must be byte-identical and in order");
    assert_eq!(read_pcap(&tx_in), b_to_a, "outside -> inside must be byte-identical and in order");
    assert_eq!(counters["workers"][0]["from_inside"]["drops"]["tx_full"], 0);
    assert_eq!(counters["ports"]["outside"]["tx_packets"], a_to_b.len() as u64);
}

#[test]
fn two_workers_see_both_directions_of_each_flow() {
    let dir = scratch("pcapaff");
    // 40 flows; flow i has (i % 7) + 1 packets each way. The "device" puts
    // a flow's forward packets on queue i % 2 and its replies on the other
    // queue, the worst case for affinity.
    let mut fwd = [Vec::new(), Vec::new()];
    let mut rev = [Vec::new(), Vec::new()];
    let mut total = 0u64;
    for i in 0..40u16 {
        let n = (i % 7) + 1;
        for _ in 0..n {
            fwd[(i % 2) as usize].push(tcp(v4(1), v4(2), 30000 + i, 80, true, b"x"));
            rev[((i + 1) % 2) as usize].push(tcp(v4(2), v4(1), 80, 30000 + i, false, b"y"));
            total += 2;
        }
    }
    let p = |n: &str| dir.join(n);
    for (q, frames) in fwd.iter().enumerate() {
        write_pcap(&p(&format!("in_q{q}.pcap")), frames);
    }
    for (q, frames) in rev.iter().enumerate() {
        write_pcap(&p(&format!("out_q{q}.pcap")), frames);
    }
    let cfg = config(
        &dir,
        2,
        &pcap_port("net_pcap0", &[&p("in_q0.pcap"), &p("in_q1.pcap")], &[&p("tin0.pcap"), &p("tin1.pcap")]),
        &pcap_port("net_pcap1", &[&p("out_q0.pcap"), &p("out_q1.pcap")], &[&p("tout0.pcap"), &p("tout1.pcap")]),
    );
    let counters = run_until_forwarded(&cfg, total);
    let workers = counters["workers"].as_array().unwrap();
    let mut handed = 0;
    for w in workers {
        // Every flow has as many packets each way, so a worker that owns
        // whole flows forwards as many frames each way.
        assert_eq!(w["from_inside"]["tx_packets"], w["from_outside"]["tx_packets"], "worker {w}");
        assert!(w["from_inside"]["tx_packets"].as_u64().unwrap() > 0, "both workers own flows: {w}");
        handed += w["handed_off"].as_u64().unwrap();
        assert!(w["handed_off"].as_u64().unwrap() > 0, "each worker received frames it did not own: {w}");
    }
    let handed_in: u64 = workers.iter().map(|w| w["handed_in"].as_u64().unwrap()).sum();
    assert_eq!(handed, handed_in, "every frame handed off arrived");
    let out: usize = ["tout0.pcap", "tout1.pcap"].iter().map(|f| read_pcap(&p(f)).len()).sum();
    assert_eq!(out as u64, total / 2);
}

/// A flood of SYNs with forged identity options from the network is one
/// flow event per frame (each is dropped as `identity_bad_version`), more
/// than the control thread can resolve and write. It must still do its other
/// work: here, print a stats line every half second and stop at the deadline
/// (it once drained until the queues were empty, which under a storm they
/// never are, and printed nothing until the flood ended).
#[test]
fn an_event_storm_does_not_stall_the_control_thread() {
    let dir = scratch("pcapstorm");
    let forged: Vec<Vec<u8>> = (0..2048u16)
        .map(|i| {
            let mut opt = vec![253, 20, 0x4d, 0x49, 1];
            opt.extend((0..15).map(|b| (i as u8) ^ b));
            let h = TcpHeader {
                src_port: 1024 + i,
                dst_port: 80,
                seq: u32::from(i),
                ack: 0,
                flags: 0x02,
                window: 64240,
                options: &opt,
            };
            let (s, d) =
                (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + (i % 200) as u8)), IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7)));
            tcp_frame(&env(s, d, false), &h, b"").expect("syn")
        })
        .collect();
    let rx = dir.join("forged.pcap");
    write_pcap(&rx, &forged);
    let toml = format!(
        "[eal]\nargs = [\"--lcores\", \"0@0,1@1\", \"--no-pci\", \"--no-huge\", \"-m\", \"256\", \
         \"--file-prefix\", \"storm{}\", \"--log-level\", \"*:warning\", \"--vdev\", \"net_null0,no-rx=1\", \
         \"--vdev\", \"net_pcap1,rx_pcap={},infinite_rx=1\"]\n\
         [ports]\ninside = \"net_null0\"\noutside = \"net_pcap1\"\n[[workers]]\nlcore = 1\n\
         [tuning]\nmbufs = 16384\n[policy]\nfile = \"{}\"\n[flowlog]\nfile = \"{}\"\n[flows]\ncapacity = 65536\nevents_queue = 4096\n",
        std::process::id(),
        rx.display(),
        repo_root().join("docs/examples/bench-gw-b.yaml").display(),
        dir.join("flows.jsonl").display()
    );
    let cfg = dir.join("gatewayd.toml");
    std::fs::write(&cfg, toml).unwrap();
    let gw = Gatewayd::start(None, &cfg, &["--stats-interval", "0.5", "--duration", "4"]);
    let (out, counters) = gw.wait_exit();
    let lines = out.lines().filter(|l| l.starts_with("stats:")).count();
    let dropped = drops(&counters, "from_outside", "identity_bad_version");
    let lost = notes(&counters, "from_outside", "events_lost");
    let log = std::fs::read(dir.join("flows.jsonl")).expect("the flow log");
    let written = log.iter().filter(|&&b| b == b'\n').count() as u64;
    eprintln!("storm: {dropped} forged SYNs dropped, {written} events written, {lost} lost, {lines} stats lines");
    assert!(dropped > 20_000, "a storm: {dropped} forged SYNs\n{out}");
    assert_eq!(written + lost, dropped, "every drop is an event, written or counted as lost");
    assert!(lines >= 4, "the control thread printed {lines} stats lines in 4 s of storm\n{out}");
}

/// Every thread of gatewayd but the workers (control, API runtime, metrics,
/// the EAL's own) may only run on the main lcore's CPU, so a scrape or an
/// API call never takes a worker's core; and the time the kernel gave the
/// worker is counted (stats lines, counters JSON, /metrics).
#[test]
fn gatewayds_own_threads_stay_off_the_workers_core_and_the_workers_cpu_time_is_counted() {
    use std::io::{Read, Write};
    let dir = scratch("pcapcpus");
    let frames = assorted(true);
    let rx = dir.join("in.pcap");
    write_pcap(&rx, &frames);
    let toml = format!(
        "[eal]\nargs = [\"--lcores\", \"0@0,1@1\", \"--no-pci\", \"--no-huge\", \"-m\", \"128\", \
         \"--file-prefix\", \"cpus{}\", \"--log-level\", \"*:warning\", \"--vdev\", \"net_pcap0,rx_pcap={},infinite_rx=1\", \
         \"--vdev\", \"net_null1,no-rx=1\"]\n\
         [ports]\ninside = \"net_pcap0\"\noutside = \"net_null1\"\n[[workers]]\nlcore = 1\n\
         [tuning]\nmbufs = 8192\n[control]\nsocket = \"{}\"\nreadonly_socket = \"\"\nstate_dir = \"{}\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
        std::process::id(),
        rx.display(),
        dir.join("gw.sock").display(),
        dir.join("state").display()
    );
    let cfg = dir.join("gatewayd.toml");
    std::fs::write(&cfg, toml).unwrap();
    let gw = Gatewayd::start(None, &cfg, &["--stats-interval", "0.5"]);
    let out = gw.output();
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("gatewayd: metrics on http://"))
        .and_then(|l| l.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address:\n{out}"))
        .to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let mut threads = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{}/task", gw.pid())).unwrap() {
        let t = t.unwrap().path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default().trim().to_owned();
        let status = std::fs::read_to_string(t.join("status")).unwrap_or_default();
        let cpus = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim().to_owned();
        threads.push((comm, cpus));
    }
    let workers: Vec<_> = threads.iter().filter(|(c, _)| c.starts_with("rte-worker")).collect();
    assert_eq!(workers.len(), 1, "{threads:?}");
    assert_eq!(workers[0].1, "1", "the worker is pinned to CPU 1: {threads:?}");
    for (comm, cpus) in &threads {
        if !comm.starts_with("rte-worker") {
            assert_eq!(cpus, "0", "{comm} may only run on the main lcore's CPU 0: {threads:?}");
        }
    }
    assert!(threads.iter().any(|(c, _)| c == "metrics") && threads.iter().any(|(c, _)| c == "gw-control"));
    // One scrape: the worker's CPU seconds are there and plausible.
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let secs: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("igw_worker_cpu_seconds_total{worker=\"0\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no igw_worker_cpu_seconds_total:\n{text}"));
    assert!(secs > 0.5 && secs < 60.0, "a busy-polling worker ran {secs} s");
    let (out, counters) = gw.stop();
    let on_cpu = counters["workers"][0]["on_cpu_s"].as_f64().unwrap_or(0.0);
    let elapsed = counters["elapsed_s"].as_f64().unwrap_or(0.0);
    assert!(on_cpu >= secs && on_cpu < elapsed + 5.0, "on CPU {on_cpu} s of {elapsed} s\n{out}");
    let shares: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("worker-cpu ").nth(1))
        .filter_map(|v| v.split('%').next()?.parse().ok())
        .collect();
    assert!(!shares.is_empty() && shares.iter().all(|s| (0.0..=101.0).contains(s)), "{shares:?}\n{out}");
}
