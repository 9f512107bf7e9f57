//! Runs the fuzz target bodies over the committed seed corpus plus a few
//! thousand deterministic mutations, so plain `cargo test` exercises them.
//! `cargo test --test packet_fuzz_replay -- --ignored write_seed_corpus`
//! regenerates `fuzz/corpus/*/seed-*`.

use std::path::PathBuf;

use dataplane::buf::{PacketBuf, VecBuf};
use dataplane::identity::fuzzing::{self as idf, test_keys, test_udp_identity};
use dataplane::identity::{insert_tcp, insert_udp, TcpVersion};
use dataplane::wire::builder::{build, Spec};
use dataplane::wire::fuzzing::{self as wf, replay_corpus, XorShift};
use dataplane::wire::{ip_proto, parse_frame};

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn frames() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        include_str!("data/linux_syn_v4.hex"),
        include_str!("data/linux_synack_v6.hex"),
        include_str!("data/windows_syn_v4.hex"),
        include_str!("data/macos_syn_v4.hex"),
        include_str!("data/macos_syn_v6.hex"),
    ]
    .iter()
    .map(|s| hex(s))
    .collect();
    let udp = Spec { proto: ip_proto::UDP, payload: b"odd", ..Spec::default() };
    v.push(build(&udp));
    v.push(build(&Spec { payload: b"even", vlans: &[5, 6], ..udp.clone() }.with_v6()));
    v.push(build(&Spec { vlans: &[7], payload: b"data", tcp_options: &[2, 4, 5, 180], ..Spec::default() }));
    // IPv6 with a hop-by-hop header before TCP
    let mut h = build(&Spec { tcp_options: &[2, 4, 5, 160], ..Spec::default() }.with_v6());
    h[20] = 0;
    let pl = u16::from_be_bytes([h[18], h[19]]) + 8;
    h[18..20].copy_from_slice(&pl.to_be_bytes());
    h.splice(54..54, [6, 0, 1, 4, 0, 0, 0, 0]);
    v.push(h);
    // ARP
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 20]);
    v.push(arp);
    // signed versions of the TCP/UDP ones, so verify/strip reach the MAC
    let (key, _) = test_keys();
    let mut signed = Vec::new();
    for f in &v {
        let mut b = VecBuf::from_frame(f);
        let Ok(i) = parse_frame(f) else { continue };
        let ok = insert_tcp(&mut b, &i, &key, idf::IDENTITY).is_ok()
            || insert_udp(&mut b, &i, &key, &test_udp_identity()).is_ok();
        if ok {
            signed.push(b.data().to_vec());
        }
    }
    // and the TCP ones signed with option version 2 (after the others, so
    // that the committed seeds keep their numbers)
    let v2 = key.sending(TcpVersion::OneBlock);
    for f in &v {
        let mut b = VecBuf::from_frame(f);
        let Ok(i) = parse_frame(f) else { continue };
        if insert_tcp(&mut b, &i, &v2, idf::IDENTITY).is_ok() {
            signed.push(b.data().to_vec());
        }
    }
    v.extend(signed);
    v
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// A fuzz target: its name, its body, and whether its input starts with a
/// selector byte.
type Target = (&'static str, fn(&[u8]), bool);

const TARGETS: [Target; 4] = [
    ("parse", wf::parse, false),
    ("insert", idf::insert, true),
    ("verify", idf::verify, true),
    ("strip", idf::round_trip, true),
];

fn seeds(selector: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (n, f) in frames().into_iter().enumerate() {
        if selector {
            let mut s = vec![(n % 4) as u8];
            s.extend_from_slice(&f);
            out.push(s);
        } else {
            out.push(f);
        }
    }
    out
}

#[test]
#[ignore = "regenerates the committed seed corpus"]
fn write_seed_corpus() {
    for (name, _, sel) in TARGETS {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds(sel).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
    }
}

#[test]
fn replay_corpus_and_mutations() {
    for (name, body, sel) in TARGETS {
        replay_corpus(name, &corpus_dir(name), seeds(sel), 4000, body);
    }
}

/// The rewrites re-check every offset they take from `FrameInfo`: a stale or
/// forged summary must give an error, never a panic.
#[test]
fn forged_frame_info_never_panics() {
    use dataplane::identity::{strip_tcp, strip_udp, verify_and_strip_tcp, verify_and_strip_udp};
    let (key, ring) = test_keys();
    let mut rng = XorShift(0x51f1_5eed);
    for f in frames() {
        let Ok(info) = parse_frame(&f) else { continue };
        for _ in 0..3000 {
            let mut i = info;
            let pick = |rng: &mut XorShift, v: u16| -> u16 {
                match rng.below(4) {
                    0 => rng.below(f.len() + 64) as u16,
                    1 => v.wrapping_add(rng.below(9) as u16).wrapping_sub(4),
                    _ => v,
                }
            };
            i.l3_offset = pick(&mut rng, i.l3_offset);
            i.l4_offset = pick(&mut rng, i.l4_offset);
            i.ip_end = pick(&mut rng, i.ip_end);
            i.tcp_opts_offset = pick(&mut rng, i.tcp_opts_offset);
            i.udp_opts_offset = pick(&mut rng, i.udp_opts_offset);
            i.fragment = rng.below(8) == 0;
            let mut b = VecBuf::with_room(&f, rng.below(2) * 128, rng.below(2) * 128);
            let _ = insert_tcp(&mut b, &i, &key, 1);
            let _ = insert_udp(&mut b.clone(), &i, &key, &test_udp_identity());
            let _ = verify_and_strip_tcp(&mut b.clone(), &i, &ring, idf::NOW);
            let _ = verify_and_strip_udp(&mut b.clone(), &i, &ring, idf::NOW);
            let _ = strip_tcp(&mut b.clone(), &i);
            let _ = strip_udp(&mut b, &i);
        }
    }
}
