//! Reads written pcap files back with a reader and parsers written here,
//! independently of the crate, and checks lengths, checksums, flows,
//! option layouts and determinism.

use std::collections::HashSet;
use std::net::IpAddr;

use scenario_gen::net::{IpNet, MacAddr, PortRange};
use scenario_gen::scenario::write_pcap;
use scenario_gen::{Config, ForgedOption, Kind, Mix, NoExtraOptions, OsProfile, Scenario, SynInfo, SynOptionHook};

// ---- an independent pcap reader -------------------------------------------

struct Record {
    ts_sec: u32,
    ts_usec: u32,
    orig_len: u32,
    data: Vec<u8>,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn read_pcap(file: &[u8]) -> Vec<Record> {
    assert!(file.len() >= 24, "no global header");
    assert_eq!(&file[0..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian microsecond magic");
    assert_eq!(u16::from_le_bytes([file[4], file[5]]), 2);
    assert_eq!(u16::from_le_bytes([file[6], file[7]]), 4);
    let snaplen = le32(&file[16..20]);
    assert_eq!(le32(&file[20..24]), 1, "LINKTYPE_ETHERNET");
    let mut at = 24;
    let mut out = Vec::new();
    while at < file.len() {
        let h = &file[at..at + 16];
        let incl = le32(&h[8..12]) as usize;
        assert!(incl as u32 <= snaplen);
        let rec = Record {
            ts_sec: le32(&h[0..4]),
            ts_usec: le32(&h[4..8]),
            orig_len: le32(&h[12..16]),
            data: file[at + 16..at + 16 + incl].to_vec(),
        };
        assert!(rec.ts_usec < 1_000_000);
        at += 16 + incl;
        out.push(rec);
    }
    assert_eq!(at, file.len(), "trailing bytes");
    out
}

// ---- an independent parser and checksum -----------------------------------

/// RFC 1071 the slow way: every 16-bit word as u64, folded at the end.
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let mut total: u64 = 0;
    for i in (0..bytes.len()).step_by(2) {
        let hi = u64::from(bytes[i]);
        let lo = if i + 1 < bytes.len() { u64::from(bytes[i + 1]) } else { 0 };
        total += (hi << 8) | lo;
    }
    while total >> 16 != 0 {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u16
}

#[derive(Debug)]
struct Parsed {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ttl: u8,
    src_port: u16,
    dst_port: u16,
    /// TCP: flags, seq, options; UDP: none.
    tcp: Option<(u8, u32, Vec<u8>)>,
    payload_len: usize,
    padding: usize,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Parses a frame and asserts every length and checksum in it.
fn parse(frame: &[u8]) -> Parsed {
    assert!(frame.len() >= 60, "below the Ethernet minimum: {}", frame.len());
    let ethertype = be16(&frame[12..14]);
    let (src, dst, proto, ttl, l4, l4_len, pseudo): (IpAddr, IpAddr, u8, u8, usize, usize, Vec<u8>) = match ethertype {
        0x0800 => {
            let ip = &frame[14..34];
            assert_eq!(ip[0], 0x45);
            let total = be16(&ip[2..4]) as usize;
            assert!(14 + total <= frame.len());
            assert_eq!(ones_sum(&[ip]), 0xffff, "IPv4 header checksum");
            let mut z = ip.to_vec();
            z[10] = 0;
            z[11] = 0;
            assert_eq!(!ones_sum(&[&z]), be16(&ip[10..12]), "IPv4 header checksum recomputed");
            let l4_len = total - 20;
            let mut pseudo = ip[12..20].to_vec();
            pseudo.extend_from_slice(&[0, ip[9]]);
            pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
            let s: [u8; 4] = ip[12..16].try_into().unwrap();
            let d: [u8; 4] = ip[16..20].try_into().unwrap();
            (s.into(), d.into(), ip[9], ip[8], 34, l4_len, pseudo)
        }
        0x86dd => {
            let ip = &frame[14..54];
            assert_eq!(ip[0] >> 4, 6);
            let l4_len = be16(&ip[4..6]) as usize;
            assert!(54 + l4_len <= frame.len());
            let mut pseudo = ip[8..40].to_vec();
            pseudo.extend_from_slice(&(l4_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, ip[6]]);
            let s: [u8; 16] = ip[8..24].try_into().unwrap();
            let d: [u8; 16] = ip[24..40].try_into().unwrap();
            (s.into(), d.into(), ip[6], ip[7], 54, l4_len, pseudo)
        }
        other => panic!("unexpected ethertype {other:#06x}"),
    };
    let seg = &frame[l4..l4 + l4_len];
    let padding = frame.len() - (l4 + l4_len);
    assert!(frame[l4 + l4_len..].iter().all(|&b| b == 0), "padding must be zeros");
    if padding > 0 {
        assert_eq!(frame.len(), 60, "only minimum-size frames are padded");
    }
    assert_eq!(ones_sum(&[&pseudo, seg]), 0xffff, "L4 checksum (proto {proto})");
    let (src_port, dst_port) = (be16(&seg[0..2]), be16(&seg[2..4]));
    match proto {
        6 => {
            let doff = (seg[12] >> 4) as usize * 4;
            assert!((20..=60).contains(&doff) && doff <= l4_len);
            let mut z = seg.to_vec();
            z[16] = 0;
            z[17] = 0;
            assert_eq!(!ones_sum(&[&pseudo, &z]), be16(&seg[16..18]), "TCP checksum recomputed");
            let seq = u32::from_be_bytes(seg[4..8].try_into().unwrap());
            Parsed {
                src,
                dst,
                proto,
                ttl,
                src_port,
                dst_port,
                tcp: Some((seg[13], seq, seg[20..doff].to_vec())),
                payload_len: l4_len - doff,
                padding,
            }
        }
        17 => {
            assert_eq!(be16(&seg[4..6]) as usize, l4_len, "UDP length");
            assert_ne!(be16(&seg[6..8]), 0, "UDP checksum present");
            let mut z = seg.to_vec();
            z[6] = 0;
            z[7] = 0;
            let c = !ones_sum(&[&pseudo, &z]);
            assert_eq!(if c == 0 { 0xffff } else { c }, be16(&seg[6..8]), "UDP checksum recomputed");
            Parsed { src, dst, proto, ttl, src_port, dst_port, tcp: None, payload_len: l4_len - 8, padding }
        }
        p => panic!("unexpected protocol {p}"),
    }
}

/// Option kinds in order, walking the TCP option list like a receiver.
fn option_kinds(opts: &[u8]) -> Vec<u8> {
    let mut kinds = Vec::new();
    let mut i = 0;
    while i < opts.len() {
        let k = opts[i];
        kinds.push(k);
        if k == 0 || k == 1 {
            i += 1;
        } else {
            let len = opts[i + 1] as usize;
            assert!(len >= 2 && i + len <= opts.len(), "option {k} overruns");
            i += len;
        }
    }
    kinds
}

// ---- helpers ----------------------------------------------------------------

fn config(kind: Kind) -> Config {
    Config {
        kind,
        src_mac: "02:00:00:00:00:01".parse::<MacAddr>().unwrap(),
        dst_mac: "02:00:00:00:00:02".parse::<MacAddr>().unwrap(),
        src_net: "10.0.0.0/16".parse::<IpNet>().unwrap(),
        dst_net: "10.1.0.0/24".parse::<IpNet>().unwrap(),
        src_ports: "1024-65535".parse::<PortRange>().unwrap(),
        tcp_dst_port: 80,
        syn_dst_port: 80,
        udp_dst_port: 5001,
        frame_size: 64,
        flows: Some(1024),
        count: 2000,
        seed: 1,
        os: OsProfile::Linux,
        mix: Mix::default(),
        prelude_syn: false,
    }
}

fn ipv6(mut c: Config) -> Config {
    c.src_net = "fd00:a::/64".parse().unwrap();
    c.dst_net = "fd00:b::/120".parse().unwrap();
    c
}

fn run_with(cfg: Config, hook: Box<dyn SynOptionHook>) -> (Vec<u8>, scenario_gen::Summary) {
    let mut s = Scenario::new(cfg, hook).expect("valid scenario");
    let (summary, out) = write_pcap(&mut s, Vec::new(), 1_000_000).expect("writes");
    (out, summary)
}

fn run(cfg: Config) -> (Vec<Record>, scenario_gen::Summary) {
    let (bytes, summary) = run_with(cfg, Box::new(NoExtraOptions));
    (read_pcap(&bytes), summary)
}

// ---- tests --------------------------------------------------------------------

#[test]
fn established_64_is_a_padded_bare_ack() {
    let (recs, sum) = run(config(Kind::TcpEstablished));
    assert_eq!(recs.len(), 2000);
    assert_eq!((sum.frames, sum.bytes, sum.flows), (2000, 2000 * 60, 1024));
    let mut flows = HashSet::new();
    for r in &recs {
        assert_eq!(r.data.len(), 60);
        assert_eq!(r.orig_len, 60);
        assert_eq!(&r.data[0..6], &[2, 0, 0, 0, 0, 2]);
        let p = parse(&r.data);
        let (flags, _, opts) = p.tcp.clone().unwrap();
        assert_eq!(flags, 0x10, "ACK only");
        assert!(opts.is_empty());
        assert_eq!((p.payload_len, p.padding), (0, 6), "54 bytes of headers + 6 of padding");
        assert_eq!(p.dst_port, 80);
        flows.insert((p.src, p.src_port, p.dst, p.dst_port));
    }
    assert_eq!(flows.len(), 1024);
    // Timestamps one microsecond apart.
    assert_eq!((recs[1].ts_sec, recs[1].ts_usec), (recs[0].ts_sec, recs[0].ts_usec + 1));
}

#[test]
fn established_512_and_1500_carry_data_and_advance_seq() {
    for size in [512usize, 1500] {
        let mut c = config(Kind::TcpEstablished);
        c.frame_size = size;
        c.flows = Some(2);
        c.count = 4;
        let (recs, _) = run(c);
        let parsed: Vec<Parsed> = recs.iter().map(|r| parse(&r.data)).collect();
        for (r, p) in recs.iter().zip(&parsed) {
            assert_eq!(r.data.len(), size - 4);
            assert_eq!(p.payload_len, size - 4 - 54);
            assert_eq!(p.tcp.as_ref().unwrap().0, 0x18, "PSH|ACK");
        }
        // Round robin: frames 0 and 2 are one flow, its seq advanced by the payload.
        let seq = |i: usize| parsed[i].tcp.as_ref().unwrap().1;
        assert_eq!(parsed[0].src_port, parsed[2].src_port);
        assert_eq!(parsed[0].src, parsed[2].src);
        assert_eq!(seq(2), seq(0).wrapping_add((size - 58) as u32));
    }
}

#[test]
fn ipv6_established_and_udp() {
    let mut c = ipv6(config(Kind::TcpEstablished));
    c.frame_size = 78;
    c.count = 10;
    let (recs, _) = run(c);
    for r in &recs {
        assert_eq!(r.data.len(), 74);
        let p = parse(&r.data);
        assert!(p.src.is_ipv6() && p.dst.is_ipv6());
        assert_eq!(p.payload_len, 0);
    }
    let mut c = ipv6(config(Kind::UdpRequest));
    c.frame_size = 1500;
    c.count = 10;
    let (recs, _) = run(c);
    for r in &recs {
        let p = parse(&r.data);
        assert_eq!((r.data.len(), p.proto, p.dst_port, p.payload_len), (1496, 17, 5001, 1496 - 62));
    }
    // Too small for IPv6 + TCP is refused with the minimum in the message.
    let mut c = ipv6(config(Kind::TcpEstablished));
    c.frame_size = 64;
    let err = Scenario::new(c, Box::new(NoExtraOptions)).err().unwrap().to_string();
    assert!(err.contains("78"), "{err}");
}

#[test]
fn udp_64_fills_the_minimum_frame_with_payload() {
    let (recs, sum) = run(config(Kind::UdpRequest));
    assert_eq!(sum.flows, 1024);
    for r in &recs {
        let p = parse(&r.data);
        assert_eq!((r.data.len(), p.payload_len, p.padding), (60, 18, 0));
    }
}

/// What benches/engine.sh udp-est-1k feeds gatewayd (`udp-request --flows
/// 1024 --size 64 -c 4096`): 60-byte datagrams to port 5001 of 10.1.0.0/24
/// from 10.0.0.0/16, strictly round-robin, so every flow appears once per
/// 1024 frames and the capture holds each of them four times.
#[test]
fn udp_request_round_robin_is_the_engine_bench_capture() {
    let mut c = config(Kind::UdpRequest);
    c.count = 4096;
    let (recs, sum) = run(c);
    assert_eq!((sum.frames, sum.bytes, sum.flows), (4096, 4096 * 60, 1024));
    let within = |a: IpAddr, prefix: &[u8]| matches!(a, IpAddr::V4(v) if v.octets().starts_with(prefix));
    let tuples: Vec<_> = recs
        .iter()
        .map(|r| {
            assert_eq!((r.data.len(), r.orig_len), (60, 60));
            let p = parse(&r.data);
            assert_eq!((p.proto, p.dst_port, p.ttl, p.payload_len, p.padding), (17, 5001, 64, 18, 0));
            assert!(within(p.src, &[10, 0]) && within(p.dst, &[10, 1, 0]), "{} -> {}", p.src, p.dst);
            (p.src, p.src_port, p.dst, p.dst_port)
        })
        .collect();
    let first: HashSet<_> = tuples[..1024].iter().collect();
    assert_eq!(first.len(), 1024, "the first 1024 frames are 1024 different flows");
    for (i, t) in tuples.iter().enumerate().skip(1024) {
        assert_eq!(t, &tuples[i % 1024], "frame {i} is not flow {}", i % 1024);
    }
    // The IP id advances per flow, so repeated datagrams are not byte-identical.
    assert_ne!(recs[0].data, recs[1024].data);
}

#[test]
fn syn_flood_layouts_per_os() {
    let expect: [(OsProfile, &[u8], usize, u8, u16); 3] = [
        (OsProfile::Linux, &[2, 4, 8, 1, 3], 20, 64, 64240),
        (OsProfile::Windows, &[2, 1, 3, 1, 1, 4], 12, 128, 64240),
        (OsProfile::Macos, &[2, 1, 3, 1, 1, 8, 4, 0, 0], 24, 64, 65535),
    ];
    for (os, kinds, olen, ttl, win) in expect {
        let mut c = config(Kind::SynFlood);
        c.os = os;
        c.flows = None;
        c.count = 500;
        let (recs, sum) = run(c);
        assert_eq!(sum.flows, 500, "every SYN a new flow");
        let mut tuples = HashSet::new();
        for r in &recs {
            let p = parse(&r.data);
            let (flags, _, opts) = p.tcp.clone().unwrap();
            assert_eq!(flags, 0x02, "SYN only");
            assert_eq!(opts.len(), olen, "{os}");
            assert_eq!(option_kinds(&opts), kinds, "{os}");
            assert_eq!(p.ttl, ttl);
            assert_eq!(be16(&r.data[14 + 20 + 14..]), win);
            assert_eq!(r.data.len(), 54 + olen);
            tuples.insert((p.src, p.src_port, p.dst));
        }
        assert_eq!(tuples.len(), 500);
    }
}

#[test]
fn syn_flood_with_fewer_flows_repeats_tuples() {
    let mut c = config(Kind::SynFlood);
    c.flows = Some(10);
    c.count = 100;
    let (recs, sum) = run(c);
    assert_eq!(sum.flows, 10);
    let tuples: HashSet<_> = recs.iter().map(|r| parse(&r.data)).map(|p| (p.src, p.src_port, p.dst)).collect();
    assert_eq!(tuples.len(), 10);
}

/// A hook standing in for the identity signer: checks what it is shown and
/// returns an option derived from it.
struct FakeSigner;

impl SynOptionHook for FakeSigner {
    fn extra_options(&mut self, syn: &SynInfo<'_>) -> Vec<u8> {
        assert_eq!(syn.os_options.len(), 20);
        let s = syn.seq.to_be_bytes();
        vec![253, 8, 0x47, 0x57, s[0], s[1], s[2], s[3]]
    }
}

#[test]
fn syn_hook_options_are_placed_and_checksummed() {
    let mut c = config(Kind::SynFlood);
    c.count = 50;
    let (bytes, _) = run_with(c, Box::new(FakeSigner));
    for r in read_pcap(&bytes) {
        let p = parse(&r.data);
        let (_, seq, opts) = p.tcp.unwrap();
        assert_eq!(opts.len(), 28);
        assert_eq!(option_kinds(&opts), [2, 4, 8, 1, 3, 253]);
        assert_eq!(
            &opts[20..28],
            &[253, 8, 0x47, 0x57, (seq >> 24) as u8, (seq >> 16) as u8, (seq >> 8) as u8, seq as u8]
        );
    }
    // Forged options on macOS SYNs go before the trailing EOLs.
    let mut c = config(Kind::SynFlood);
    c.os = OsProfile::Macos;
    c.count = 20;
    let forged: ForgedOption = "253:12".parse().unwrap();
    let (bytes, _) = run_with(c, Box::new(forged));
    for r in read_pcap(&bytes) {
        let (_, _, opts) = parse(&r.data).tcp.unwrap();
        assert_eq!(opts.len(), 36);
        assert_eq!(option_kinds(&opts), [2, 1, 3, 1, 1, 8, 4, 253, 0, 0]);
    }
}

#[test]
fn mixed_interleaves_and_keeps_syns_off_established_flows() {
    let mut c = config(Kind::Mixed);
    c.frame_size = 512;
    c.count = 5000;
    c.flows = Some(100);
    c.prelude_syn = true;
    c.syn_dst_port = 81; // the SYN share only; the prelude opens port-80 flows
    let (recs, sum) = run(c);
    assert_eq!(sum.frames, 5100);
    let parsed: Vec<Parsed> = recs.iter().map(|r| parse(&r.data)).collect();
    // The prelude: one SYN per established flow.
    let prelude: HashSet<_> = parsed[..100].iter().map(|p| (p.src, p.src_port, p.dst)).collect();
    assert!(parsed[..100].iter().all(|p| p.tcp.as_ref().unwrap().0 == 0x02 && p.dst_port == 80));
    assert_eq!(prelude.len(), 100);
    let (mut est, mut syn, mut udp) = (0, 0, 0);
    for p in &parsed[100..] {
        match (p.proto, p.tcp.as_ref().map(|t| t.0)) {
            (6, Some(0x18)) => {
                est += 1;
                assert!(prelude.contains(&(p.src, p.src_port, p.dst)));
                assert_eq!(p.dst_port, 80);
            }
            (6, Some(0x02)) => {
                syn += 1;
                assert!(!prelude.contains(&(p.src, p.src_port, p.dst)), "SYN on an established flow");
                assert_eq!(p.dst_port, 81);
            }
            (17, None) => {
                udp += 1;
                assert_eq!(p.dst_port, 5001);
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(est + syn + udp, 5000);
    // Roughly 8:1:1.
    assert!((3700..4300).contains(&est) && (350..650).contains(&syn) && (350..650).contains(&udp), "{est} {syn} {udp}");
    assert_eq!(sum.flows, 100 + 100 + syn);
}

#[test]
fn deterministic_for_a_seed() {
    let mut c = config(Kind::Mixed);
    c.count = 300;
    let a = run_with(c.clone(), Box::new(NoExtraOptions)).0;
    let b = run_with(c.clone(), Box::new(NoExtraOptions)).0;
    c.seed = 2;
    let d = run_with(c, Box::new(NoExtraOptions)).0;
    assert_eq!(a, b);
    assert_ne!(a, d);
}

#[test]
fn flows_must_fit_the_source_space() {
    let mut c = config(Kind::TcpEstablished);
    c.src_net = "10.0.0.0/30".parse().unwrap();
    c.src_ports = "1000-1009".parse().unwrap();
    c.flows = Some(20);
    let (recs, sum) = run(c.clone());
    assert_eq!(sum.flows, 20);
    let t: HashSet<_> = recs.iter().map(|r| parse(&r.data)).map(|p| (p.src, p.src_port)).collect();
    assert_eq!(t.len(), 20);
    c.flows = Some(21);
    assert!(Scenario::new(c, Box::new(NoExtraOptions)).is_err());
}

#[test]
fn recompute_checksums_repairs_an_edited_frame() {
    let mut c = config(Kind::SynFlood);
    c.count = 1;
    let (recs, _) = run(c);
    let mut f = recs[0].data.clone();
    f[14 + 20 + 14] ^= 0xff; // change the window
    f[14 + 8] = 1; // and the TTL
    scenario_gen::frame::recompute_checksums(&mut f).unwrap();
    parse(&f);
}
