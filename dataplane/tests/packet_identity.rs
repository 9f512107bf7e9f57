//! Identity option on real and hand-written handshake packets: round trips,
//! tamper detection, key selection, room and rewrite edge cases.

use dataplane::buf::{PacketBuf, VecBuf};
use dataplane::identity::fuzzing::assert_equivalent;
use dataplane::identity::*;
use dataplane::wire::builder::{build, Spec};
use dataplane::wire::{checksum, ip_proto, parse_frame, tcp, Addr, FrameInfo, L3Kind, L4Kind};

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

macro_rules! data {
    ($f:literal) => {
        hex(include_str!(concat!("data/", $f)))
    };
}

fn all_samples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("linux_syn_v4", data!("linux_syn_v4.hex")),
        ("linux_synack_v4", data!("linux_synack_v4.hex")),
        ("linux_syn_v6", data!("linux_syn_v6.hex")),
        ("linux_synack_v6", data!("linux_synack_v6.hex")),
        ("windows_syn_v4", data!("windows_syn_v4.hex")),
        ("windows_syn_ts_v4", data!("windows_syn_ts_v4.hex")),
        ("macos_syn_v4", data!("macos_syn_v4.hex")),
        ("macos_syn_v6", data!("macos_syn_v6.hex")),
    ]
}

const NOW: u64 = 1_700_000_000;

fn keys() -> (MacKey, KeyRing) {
    let a = GatewayKeyPair::from_secret_bytes(0x0a01, [1; 32]);
    let b = GatewayKeyPair::from_secret_bytes(0x0b01, [2; 32]);
    let (a_tx, _) = keys::derive_pair(&a, &b.peer_public(2), NOW - 100, NOW + 100).unwrap();
    let mut ring_b = KeyRing::new();
    ring_b.add_peer(&b, &a.peer_public(1), NOW - 100, NOW + 100).unwrap();
    (a_tx, ring_b)
}

fn l4_ok(f: &[u8]) -> bool {
    let i = parse_frame(f).unwrap();
    let l4 = &f[i.l4_offset as usize..i.ip_end as usize];
    let p = match (i.src, i.dst) {
        (Addr::V4(s), Addr::V4(d)) => checksum::pseudo_v4(&s, &d, i.proto, l4.len() as u16),
        (Addr::V6(s), Addr::V6(d)) => checksum::pseudo_v6(&s, &d, i.proto, l4.len() as u32),
        _ => unreachable!(),
    };
    let len = if i.l4 == L4Kind::Udp { i.udp_len as usize } else { l4.len() };
    let p = p - l4.len() as u32 + len as u32;
    checksum::fold(p + checksum::sum(&l4[..len])) == 0xffff
}

fn ip_ok(f: &[u8]) -> bool {
    let i = parse_frame(f).unwrap();
    i.l3 != L3Kind::Ipv4 || {
        let l3 = i.l3_offset as usize;
        checksum::fold(checksum::sum(&f[l3..l3 + (f[l3] as usize & 15) * 4])) == 0xffff
    }
}

fn opts(f: &[u8]) -> Vec<u8> {
    let i = parse_frame(f).unwrap();
    f[i.tcp_opts_offset as usize..i.tcp_opts_offset as usize + i.tcp_opts_len as usize].to_vec()
}

/// Adds `n` VLAN tags (0x8100, or 0x88a8 then 0x8100) after the MACs.
fn with_vlans(f: &[u8], n: usize) -> Vec<u8> {
    let mut v = f[..12].to_vec();
    if n == 2 {
        v.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64]);
    }
    if n >= 1 {
        v.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a]);
    }
    v.extend_from_slice(&f[12..]);
    v
}

fn insert(f: &[u8], key: &MacKey) -> VecBuf {
    let mut b = VecBuf::from_frame(f);
    let i = parse_frame(b.data()).unwrap();
    insert_tcp(&mut b, &i, key, 4242).unwrap();
    b
}

#[test]
fn samples_parse_with_valid_checksums() {
    for (name, f) in all_samples() {
        let i = parse_frame(&f).unwrap();
        assert!(i.is_tcp_syn() || i.is_tcp_syn_ack(), "{name}");
        assert!(l4_ok(&f) && ip_ok(&f), "{name}: checksums");
        for r in tcp::options(&opts(&f)) {
            r.unwrap();
        }
    }
    assert_eq!(opts(&data!("linux_syn_v4.hex")).len(), 20);
    assert_eq!(opts(&data!("macos_syn_v4.hex")).len(), 24);
}

#[test]
fn round_trip_all_samples_with_and_without_vlans() {
    let (key, ring) = keys();
    for (name, f, key) in all_samples().into_iter().flat_map(|(n, f)| both_versions(&key).map(|k| (n, f.clone(), k))) {
        for tags in 0..=2 {
            let f = with_vlans(&f, tags);
            for (head, tail) in [(128, 2048), (128, 0), (0, 64)] {
                let mut b = VecBuf::with_room(&f, head, tail);
                let i = parse_frame(b.data()).unwrap();
                assert_eq!(i.vlan_tags as usize, tags);
                insert_tcp(&mut b, &i, &key, 4242).unwrap();
                let inserted = b.data().to_vec();
                assert!(l4_ok(&inserted) && ip_ok(&inserted), "{name}: checksums after insert");
                let o = opts(&inserted);
                assert_eq!(o.len() % 4, 0);
                assert!(o.len() <= 40);
                assert_eq!(&o[..4], &[253, 20, 0x4d, 0x49], "{name}: option first");
                if opts(&f).len() <= 20 {
                    assert_eq!(&o[20..], &opts(&f)[..], "{name}: original options byte for byte after ours");
                }
                let i2 = parse_frame(&inserted).unwrap();
                let v = verify_and_strip_tcp(&mut b, &i2, &ring, NOW).unwrap();
                assert_eq!((v.identity, v.peer, v.version), (4242, 1, key.tx_version()));
                assert!(l4_ok(b.data()) && ip_ok(b.data()), "{name}: checksums after strip");
                assert_equivalent(&f, b.data());
                if opts(&f).len() <= 20 {
                    assert_eq!(b.data(), &f[..], "{name}: byte-identical after strip");
                }
            }
        }
    }
}

#[test]
fn macos_syn_drops_only_padding() {
    let (key, _) = keys();
    let f = data!("macos_syn_v4.hex");
    let b = insert(&f, &key);
    let o = opts(b.data());
    assert_eq!(o.len(), 40);
    // ours, then MSS, WS, TS, SACK_PERM in the original order, then EOL padding
    assert_eq!(&o[20..24], &[2, 4, 5, 180]);
    assert_eq!(&o[24..27], &[3, 3, 6]);
    assert_eq!(o[27], 8);
    assert_eq!(&o[37..39], &[4, 2]);
    assert_eq!(o[39], 0);
}

#[test]
fn no_room_leaves_packet_unchanged() {
    let (key, _) = keys();
    // MSS + WS + SACK_PERM + TS + TFO cookie(16): 37 bytes of real options
    let mut o = vec![2, 4, 5, 180, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 34, 18];
    o.extend_from_slice(&[0xc0; 16]);
    o.extend_from_slice(&[1, 1, 0]);
    let f = build(&Spec { tcp_options: &o, ..Spec::default() });
    let mut b = VecBuf::from_frame(&f);
    let i = parse_frame(&f).unwrap();
    assert_eq!(insert_tcp(&mut b, &i, &key, 1), Err(RewriteError::NoRoom));
    assert_eq!(b.data(), &f[..]);
    // no buffer room either way
    let f = data!("linux_syn_v4.hex");
    let mut b = VecBuf::with_room(&f, 0, 0);
    let i = parse_frame(&f).unwrap();
    assert_eq!(insert_tcp(&mut b, &i, &key, 1), Err(RewriteError::BufferFull));
    assert_eq!(b.data(), &f[..]);
}

#[test]
fn syn_with_payload_and_ethernet_padding() {
    let (key, ring) = keys();
    for v6 in [false, true] {
        let s = Spec { tcp_options: &[2, 4, 5, 180], payload: b"TFO data here", ..Spec::default() };
        let s = if v6 { s.with_v6() } else { s };
        let f = build(&s);
        for padded in [false, true] {
            let mut fp = f.clone();
            if padded {
                fp.extend_from_slice(&[0; 9]);
            }
            for (head, tail) in [(128, 2048), (128, 0)] {
                let mut b = VecBuf::with_room(&fp, head, tail);
                let i = parse_frame(b.data()).unwrap();
                insert_tcp(&mut b, &i, &key, 9).unwrap();
                assert!(l4_ok(b.data()) && ip_ok(b.data()));
                let i2 = parse_frame(b.data()).unwrap();
                assert_eq!(&b.data()[i2.payload_offset as usize..], b"TFO data here");
                verify_and_strip_tcp(&mut b, &i2, &ring, NOW).unwrap();
                assert_eq!(b.data(), &f[..]);
            }
        }
    }
}

/// The key signing version 1 (as it comes) and the same key signing 2.
fn both_versions(key: &MacKey) -> [MacKey; 2] {
    [key.clone(), key.clone().sending(TcpVersion::OneBlock)]
}

fn verify_frame(f: &[u8], ring: &KeyRing) -> Result<Verified, VerifyError> {
    let i = parse_frame(f).map_err(VerifyError::Malformed)?;
    verify_tcp(f, &i, ring, NOW)
}

#[test]
fn every_bit_of_the_option_and_bound_fields_matters() {
    let (key, ring) = keys();
    for (name, key) in
        ["linux_syn_v4.hex", "linux_synack_v6.hex"].into_iter().flat_map(|n| both_versions(&key).map(|k| (n, k)))
    {
        let f = if name.contains("v6") { data!("linux_synack_v6.hex") } else { data!("linux_syn_v4.hex") };
        let signed = insert(&f, &key).data().to_vec();
        verify_frame(&signed, &ring).unwrap();
        let i = parse_frame(&signed).unwrap();
        let opt = i.tcp_opts_offset as usize;
        let l4 = i.l4_offset as usize;
        let l3 = i.l3_offset as usize;
        let (src, dst) = if i.l3 == L3Kind::Ipv4 {
            (l3 + 12..l3 + 16, l3 + 16..l3 + 20)
        } else {
            (l3 + 8..l3 + 24, l3 + 24..l3 + 40)
        };
        let mut bound: Vec<usize> = (opt..opt + 20).collect();
        bound.extend(src);
        bound.extend(dst);
        bound.extend(l4..l4 + 8); // ports, seq
        if i.is_tcp_syn_ack() {
            bound.extend(l4 + 8..l4 + 12);
        }
        for at in bound {
            for bit in 0..8 {
                let mut g = signed.clone();
                g[at] ^= 1 << bit;
                let r = verify_frame(&g, &ring);
                assert!(r.is_err(), "{name}: flip of byte {at} bit {bit} verified");
                // (a flip of the version nibble to the other version: BadMac too)
                if at >= opt + 12 && at < opt + 20 || at < opt || at == opt + 4 && matches!(g[at] >> 4, 1 | 2) {
                    assert_eq!(r, Err(VerifyError::BadMac), "{name}: byte {at} bit {bit}");
                }
            }
        }
    }
}

#[test]
fn typed_reasons() {
    let (key, ring) = keys();
    let f = data!("linux_syn_v4.hex");
    assert_eq!(verify_frame(&f, &ring), Err(VerifyError::NoIdentity));
    let signed = insert(&f, &key).data().to_vec();
    let opt = parse_frame(&signed).unwrap().tcp_opts_offset as usize;
    // unknown key id
    let mut g = signed.clone();
    g[opt + 7] ^= 0x80;
    assert_eq!(verify_frame(&g, &ring), Err(VerifyError::UnknownKey));
    // version: 0 and 3.. are no version; 2 is, but the MAC is version 1's
    for ver in [0x00, 0x30, 0xf0] {
        let mut g = signed.clone();
        g[opt + 4] = ver;
        assert_eq!(verify_frame(&g, &ring), Err(VerifyError::BadVersion));
    }
    let mut g = signed.clone();
    g[opt + 4] = 0x20;
    assert_eq!(verify_frame(&g, &ring), Err(VerifyError::BadMac));
    // flags are bound
    let mut g = signed.clone();
    g[opt + 4] = 0x11;
    assert_eq!(verify_frame(&g, &ring), Err(VerifyError::BadMac));
    // expired / not yet valid
    let i = parse_frame(&signed).unwrap();
    assert_eq!(verify_tcp(&signed, &i, &ring, NOW + 101), Err(VerifyError::ExpiredKey));
    assert_eq!(verify_tcp(&signed, &i, &ring, NOW - 101), Err(VerifyError::ExpiredKey));
    // not a handshake packet
    let ack = build(&Spec { flags: tcp::flags::ACK, ..Spec::default() });
    let i = parse_frame(&ack).unwrap();
    assert_eq!(verify_tcp(&ack, &i, &ring, NOW), Err(VerifyError::NotApplicable));
    let mut b = VecBuf::from_frame(&ack);
    assert_eq!(insert_tcp(&mut b, &i, &key, 1), Err(RewriteError::NotApplicable));
    // already present
    let mut b = VecBuf::from_frame(&signed);
    let i = parse_frame(&signed).unwrap();
    assert_eq!(insert_tcp(&mut b, &i, &key, 1), Err(RewriteError::AlreadyPresent));
    // strip without verify
    assert_eq!(strip_tcp(&mut b, &i), Ok(true));
    assert_eq!(b.data(), &f[..]);
    let i = parse_frame(b.data()).unwrap();
    assert_eq!(strip_tcp(&mut b, &i), Ok(false));
}

#[test]
fn replay_onto_another_flow_fails() {
    let (key, ring) = keys();
    let f = data!("linux_syn_v4.hex");
    let signed = insert(&f, &key).data().to_vec();
    let i = parse_frame(&signed).unwrap();
    let o = opts(&signed);
    // the same options (ours included) on a SYN of another 4-tuple / same tuple other ISN
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&[127, 0, 0, 1]);
    dst[..4].copy_from_slice(&[127, 0, 0, 1]);
    for (sport, seq) in [(i.src_port + 1, i.seq), (i.src_port, i.seq + 1), (i.src_port, i.seq)] {
        let g = build(&Spec { src, dst, sport, dport: i.dst_port, seq, tcp_options: &o, ..Spec::default() });
        let r = verify_frame(&g, &ring);
        if (sport, seq) == (i.src_port, i.seq) {
            assert!(r.is_ok(), "control: identical flow verifies");
        } else {
            assert_eq!(r, Err(VerifyError::BadMac));
        }
    }
    // reflected back as if it were the SYN-ACK
    let g = build(&Spec {
        src,
        dst,
        sport: i.dst_port,
        dport: i.src_port,
        flags: 0x12,
        seq: i.seq,
        ack: i.seq + 1,
        tcp_options: &o,
        ..Spec::default()
    });
    assert_eq!(verify_frame(&g, &ring), Err(VerifyError::BadMac));
}

#[test]
fn key_rotation_overlap() {
    let a_old = GatewayKeyPair::from_secret_bytes(0x0a01, [1; 32]);
    let a_new = GatewayKeyPair::from_secret_bytes(0x0a02, [3; 32]);
    let b = GatewayKeyPair::from_secret_bytes(0x0b01, [2; 32]);
    let mut ring_a = KeyRing::new();
    ring_a.add_peer(&a_old, &b.peer_public(2), 0, 200).unwrap();
    ring_a.add_peer(&a_new, &b.peer_public(2), 100, 300).unwrap();
    let mut ring_b = KeyRing::new();
    ring_b.add_peer(&b, &a_old.peer_public(1), 0, 200).unwrap();
    ring_b.add_peer(&b, &a_new.peer_public(1), 100, 300).unwrap();
    let f = data!("linux_syn_v6.hex");
    let old = insert(&f, ring_a.tx_key(2, 50).unwrap()).data().to_vec();
    let new = insert(&f, ring_a.tx_key(2, 150).unwrap()).data().to_vec();
    let io = parse_frame(&old).unwrap();
    let inew = parse_frame(&new).unwrap();
    assert_ne!(old, new);
    assert!(verify_tcp(&old, &io, &ring_b, 150).is_ok(), "old key during overlap");
    assert!(verify_tcp(&new, &inew, &ring_b, 150).is_ok(), "new key during overlap");
    assert_eq!(verify_tcp(&old, &io, &ring_b, 250), Err(VerifyError::ExpiredKey));
    assert!(verify_tcp(&new, &inew, &ring_b, 250).is_ok());
    // a third gateway's ring with B cannot verify A's options (and vice versa)
    let c = GatewayKeyPair::from_secret_bytes(0x0c01, [4; 32]);
    let mut ring_c = KeyRing::new();
    ring_c.add_peer(&c, &b.peer_public(2), 0, 300).unwrap();
    assert_eq!(verify_tcp(&new, &inew, &ring_c, 150), Err(VerifyError::UnknownKey));
}

fn udp_frame(v6: bool, payload: &[u8], vlans: &'static [u16]) -> Vec<u8> {
    let s = Spec { proto: ip_proto::UDP, sport: 5353, dport: 53, payload, vlans, ..Spec::default() };
    build(&if v6 { s.with_v6() } else { s })
}

#[test]
fn udp_round_trip_and_tamper() {
    let (key, ring) = keys();
    let id = UdpIdentity { msg: UdpMsg::Request, identity: 77, nonce: [9; 8], echo: [0; 8] };
    for v6 in [false, true] {
        for payload in [&b"odd"[..], b"even", b""] {
            for vlans in [&[][..], &[10][..], &[10, 20][..]] {
                let f = udp_frame(v6, payload, vlans);
                let mut b = VecBuf::from_frame(&f);
                let i = parse_frame(&f).unwrap();
                insert_udp(&mut b, &i, &key, &id).unwrap();
                let signed = b.data().to_vec();
                assert_eq!(signed.len(), f.len() + udp::added_len(8 + payload.len()));
                assert!(ip_ok(&signed) && l4_ok(&signed), "UDP checksum untouched and valid");
                let i2 = parse_frame(&signed).unwrap();
                assert_eq!(i2.udp_opts_len as usize, udp::added_len(8 + payload.len()));
                let v = verify_udp(&signed, &i2, &ring, NOW).unwrap();
                assert_eq!((v.identity, v.msg, v.nonce, v.peer), (77, UdpMsg::Request, [9; 8], 1));
                // every bit of the option matters
                let o = i2.udp_opts_offset as usize;
                for at in o..signed.len() {
                    for bit in 0..8 {
                        let mut g = signed.clone();
                        g[at] ^= 1 << bit;
                        let r = parse_frame(&g)
                            .map_err(VerifyError::Malformed)
                            .and_then(|i| verify_udp(&g, &i, &ring, NOW));
                        assert!(r.is_err(), "flip at {at} bit {bit}");
                    }
                }
                // another flow
                let mut g = signed.clone();
                g[i2.l4_offset as usize] ^= 1;
                let ig = parse_frame(&g).unwrap();
                assert_eq!(verify_udp(&g, &ig, &ring, NOW), Err(VerifyError::BadMac));
                verify_and_strip_udp(&mut b, &i2, &ring, NOW).unwrap();
                assert_eq!(b.data(), &f[..]);
            }
        }
    }
    let f = udp_frame(false, b"x", &[]);
    let i = parse_frame(&f).unwrap();
    assert_eq!(verify_udp(&f, &i, &ring, NOW), Err(VerifyError::NoIdentity));
}

#[test]
fn udp_strip_keeps_foreign_options() {
    let (key, ring) = keys();
    let id = UdpIdentity { msg: UdpMsg::Response, identity: 5, nonce: [1; 8], echo: [2; 8] };
    let f = udp_frame(true, b"abc", &[]);
    let mut b = VecBuf::from_frame(&f);
    let i = parse_frame(&f).unwrap();
    insert_udp(&mut b, &i, &key, &id).unwrap();
    // append a foreign option (NOP + kind 200 len 3) and refresh the OCS
    let i2 = parse_frame(b.data()).unwrap();
    let mut g = b.data().to_vec();
    g.extend_from_slice(&[1, 200, 3, 0xaa]);
    let ocs_at = i2.udp_opts_offset as usize + 1; // odd UDP length: one pad byte
    g[ocs_at..ocs_at + 2].copy_from_slice(&[0, 0]);
    let c = dataplane::wire::udp::compute_ocs(&g[ocs_at..]);
    g[ocs_at..ocs_at + 2].copy_from_slice(&c.to_be_bytes());
    let l3 = i2.l3_offset as usize;
    let pl = (g.len() - l3 - 40) as u16;
    g[l3 + 4..l3 + 6].copy_from_slice(&pl.to_be_bytes());
    let mut b = VecBuf::from_frame(&g);
    let ig = parse_frame(&g).unwrap();
    let v = verify_and_strip_udp(&mut b, &ig, &ring, NOW).unwrap();
    assert_eq!(v.echo, [2; 8]);
    let is = parse_frame(b.data()).unwrap();
    let surplus = &b.data()[is.udp_opts_offset as usize..];
    assert_eq!(surplus.len(), 1 + 2 + 4);
    let (_, opts) = dataplane::wire::udp::options_area(surplus, is.udp_len as usize).unwrap();
    assert_eq!(opts, &[1, 200, 3, 0xaa]);
    assert_eq!(strip_udp(&mut b, &is), Ok(false));
    // a datagram that already has a surplus area is not signed
    let mut b2 = VecBuf::from_frame(&g);
    assert_eq!(insert_udp(&mut b2, &ig, &key, &id), Err(RewriteError::SurplusPresent));
}

#[test]
fn non_ip_and_fragments_pass_through() {
    let (key, _) = keys();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 20]);
    let i = parse_frame(&arp).unwrap();
    assert_eq!((i.l3, i.l4), (L3Kind::Arp, L4Kind::None));
    let mut b = VecBuf::from_frame(&arp);
    assert_eq!(insert_tcp(&mut b, &i, &key, 1), Err(RewriteError::NotApplicable));
    let lldp = [&[0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 1, 0x88, 0xcc][..], &[0; 46]].concat();
    assert_eq!(parse_frame(&lldp).unwrap().l3, L3Kind::Other);
    // first fragment of a SYN (MF set)
    let mut f = data!("linux_syn_v4.hex");
    f[20] |= 0x20;
    let i: FrameInfo = parse_frame(&f).unwrap();
    assert!(i.fragment && !i.later_fragment && i.l4 == L4Kind::Tcp);
    let mut b = VecBuf::from_frame(&f);
    assert_eq!(insert_tcp(&mut b, &i, &key, 1), Err(RewriteError::Fragmented));
}
