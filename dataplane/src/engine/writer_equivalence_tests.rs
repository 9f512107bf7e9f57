//! The frame writer against the code it replaced: resets, UDP handshake
//! messages and test-builder frames written both ways over a set of inputs
//! must come out byte for byte the same. The `old_*` functions are the
//! hand-written writers as they were (raw offsets and byte templates),
//! copied verbatim.

use super::*;
use crate::engine::rst::{self, MAX_RST};
use crate::identity::{KeyId, MacKey};
use crate::wire::builder::{build, Spec};
use crate::wire::checksum;
use crate::wire::ip_proto;

// ---- the old writers, verbatim

const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Writes a reset into `out`, reusing `eth` (the frame's bytes before the IP
/// header: MACs, VLAN tags, ethertype). Returns its length, or `None` if the
/// addresses are not IP or `out`/`eth` have the wrong size.
fn old_rst_write(out: &mut [u8; MAX_RST], eth: &[u8], swap_macs: bool, r: &rst::RstSpec) -> Option<usize> {
    let l2 = eth.len();
    if !(14..=22).contains(&l2) {
        return None;
    }
    out[..l2].copy_from_slice(eth);
    if swap_macs {
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&out[0..6]);
        out.copy_within(6..12, 0);
        out[6..12].copy_from_slice(&dst);
    }
    let (ip_len, pseudo) = match (r.src, r.dst) {
        (Addr::V4(s), Addr::V4(d)) => {
            let ip = &mut out[l2..l2 + 20];
            ip.copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            ip[12..16].copy_from_slice(&s);
            ip[16..20].copy_from_slice(&d);
            let c = checksum::finish(checksum::sum(ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            (20, checksum::pseudo_v4(&s, &d, 6, 20))
        }
        (Addr::V6(s), Addr::V6(d)) => {
            let ip = &mut out[l2..l2 + 40];
            ip[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
            ip[8..24].copy_from_slice(&s);
            ip[24..40].copy_from_slice(&d);
            (40, checksum::pseudo_v6(&s, &d, 6, 20))
        }
        _ => return None,
    };
    let t = l2 + ip_len;
    let tcp = &mut out[t..t + 20];
    tcp[0..2].copy_from_slice(&r.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&r.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&r.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&r.ack.unwrap_or(0).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = if r.ack.is_some() { RST | ACK } else { RST };
    tcp[14..20].fill(0);
    let c = checksum::finish(pseudo + checksum::sum(tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    Some(t + 20)
}

/// Builds the frame with valid lengths and checksums.
fn old_build(s: &Spec<'_>) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for (i, v) in s.vlans.iter().enumerate() {
        let tpid: u16 = if i == 0 && s.vlans.len() == 2 { 0x88a8 } else { 0x8100 };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&(if s.v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    let l3 = f.len();
    // L4
    let mut l4 = Vec::new();
    if s.proto == ip_proto::TCP {
        l4.extend_from_slice(&s.sport.to_be_bytes());
        l4.extend_from_slice(&s.dport.to_be_bytes());
        l4.extend_from_slice(&s.seq.to_be_bytes());
        l4.extend_from_slice(&s.ack.to_be_bytes());
        l4.push((((20 + s.tcp_options.len()) / 4) as u8) << 4);
        l4.push(s.flags);
        l4.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
        l4.extend_from_slice(s.tcp_options);
        l4.extend_from_slice(s.payload);
    } else {
        l4.extend_from_slice(&s.sport.to_be_bytes());
        l4.extend_from_slice(&s.dport.to_be_bytes());
        l4.extend_from_slice(&((8 + s.payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(s.payload);
    }
    let l4_len = l4.len();
    let pseudo = if s.v6 {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        a.copy_from_slice(&s.src);
        b.copy_from_slice(&s.dst);
        checksum::pseudo_v6(&a, &b, s.proto, l4_len as u32)
    } else {
        let (mut a, mut b) = ([0u8; 4], [0u8; 4]);
        a.copy_from_slice(&s.src[..4]);
        b.copy_from_slice(&s.dst[..4]);
        checksum::pseudo_v4(&a, &b, s.proto, l4_len as u16)
    };
    let c = checksum::finish(pseudo + checksum::sum(&l4));
    let co = if s.proto == ip_proto::TCP { 16 } else { 6 };
    let c = if s.proto == ip_proto::UDP && c == 0 { 0xffff } else { c };
    l4[co..co + 2].copy_from_slice(&c.to_be_bytes());
    l4.extend_from_slice(s.udp_surplus);
    if s.v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[s.proto, 64]);
        f.extend_from_slice(&s.src);
        f.extend_from_slice(&s.dst);
    } else {
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, s.proto, 0, 0]);
        f.extend_from_slice(&s.src[..4]);
        f.extend_from_slice(&s.dst[..4]);
        let c = checksum::finish(checksum::sum(&f[l3..l3 + 20]));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(&l4);
    f
}

/// Builds a handshake datagram into `out`: the frame's Ethernet header and
/// VLAN tags (`eth`, MACs swapped when `swap_macs`), a fresh IPv4 (20 bytes,
/// DF, TTL 64) or IPv6 (40 bytes, hop limit 64) header, a UDP header with
/// length 8 and a valid checksum, no payload, then the signed option.
/// Returns the frame length, or `None` if `eth` or the addresses do not fit.
fn old_build_handshake(
    out: &mut [u8; MAX_HANDSHAKE_FRAME],
    eth: &[u8],
    swap_macs: bool,
    h: &HandshakeSpec,
    key: &MacKey,
    id: &UdpIdentity,
) -> Option<usize> {
    let l2 = eth.len();
    if !(14..=22).contains(&l2) {
        return None;
    }
    out[..l2].copy_from_slice(eth);
    if swap_macs {
        let mut d = [0u8; 6];
        d.copy_from_slice(&out[0..6]);
        out.copy_within(6..12, 0);
        out[6..12].copy_from_slice(&d);
    }
    let (ip_len, pseudo) = match (h.src, h.dst) {
        (Addr::V4(s), Addr::V4(d)) => {
            let ip = &mut out[l2..l2 + 20];
            ip.copy_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            ip[12..16].copy_from_slice(&s);
            ip[16..20].copy_from_slice(&d);
            let c = checksum::finish(checksum::sum(ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            (20, checksum::pseudo_v4(&s, &d, 17, 8))
        }
        (Addr::V6(s), Addr::V6(d)) => {
            let ip = &mut out[l2..l2 + 40];
            ip[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
            ip[8..24].copy_from_slice(&s);
            ip[24..40].copy_from_slice(&d);
            (40, checksum::pseudo_v6(&s, &d, 17, 8))
        }
        _ => return None,
    };
    let u = l2 + ip_len;
    let udp = &mut out[u..u + 8];
    udp[0..2].copy_from_slice(&h.sport.to_be_bytes());
    udp[2..4].copy_from_slice(&h.dport.to_be_bytes());
    udp[4..6].copy_from_slice(&8u16.to_be_bytes());
    udp[6..8].fill(0);
    let c = checksum::finish(pseudo + checksum::sum(udp));
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    let mut buf = ArrayBuf { mem: out, len: u + 8 };
    let info = parse_frame(buf.data()).ok()?;
    insert_udp(&mut buf, &info, key, id).ok()?;
    Some(buf.len)
}

// ---- the inputs

fn l2s() -> Vec<Vec<u8>> {
    let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x02, 0x11, 0x22, 0x33, 0x44, 0x02];
    let mut out = Vec::new();
    for (tags, v6) in [(0, false), (0, true), (1, false), (1, true), (2, false), (2, true), (3, false)] {
        let mut e = mac.to_vec();
        for t in 0..tags {
            e.extend_from_slice(&[0x81, 0x00, 0x00, 10 + t as u8]);
        }
        e.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        out.push(e);
    }
    out.push(mac[..11].to_vec()); // too short
    out
}

fn addrs() -> Vec<(Addr, Addr)> {
    let v6 = |x: u8| {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = x;
        a
    };
    vec![
        (Addr::V4([10, 1, 0, 10]), Addr::V4([10, 2, 0, 20])),
        (Addr::V4([192, 168, 255, 1]), Addr::V4([8, 8, 8, 8])),
        (Addr::V4([0, 0, 0, 0]), Addr::V4([255, 255, 255, 255])),
        (Addr::V6(v6(1)), Addr::V6(v6(2))),
        (Addr::V6([0xff; 16]), Addr::V6([0; 16])),
        (Addr::V4([10, 1, 0, 10]), Addr::V6(v6(2))),
        (Addr::None, Addr::None),
    ]
}

const PORTS: [(u16, u16); 4] = [(40000, 443), (0, 0), (65535, 1), (5001, 5001)];

#[test]
fn resets_come_out_as_before() {
    let mut n = 0;
    for eth in l2s() {
        for (src, dst) in addrs() {
            for (sport, dport) in PORTS {
                for (seq, ack) in [(0, Some(0x1122_3345)), (0xffff_ffff, None), (7, Some(0)), (0x8000_0000, None)] {
                    for swap in [false, true] {
                        let spec = rst::RstSpec { src, dst, sport, dport, seq, ack };
                        let (mut a, mut b) = ([0u8; MAX_RST], [0u8; MAX_RST]);
                        let old = old_rst_write(&mut a, &eth, swap, &spec);
                        let new = rst::write(&mut b, &eth, swap, &spec);
                        assert_eq!(old, new, "{spec:?} {eth:?} {swap}");
                        if let Some(len) = old {
                            assert_eq!(a[..len], b[..len], "{spec:?} {eth:?} {swap}");
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(n > 500, "{n} resets compared");
}

#[test]
fn handshake_frames_come_out_as_before() {
    let key = MacKey::from_secret(KeyId::pairwise(1, 2), 0, &[7; 32], 0, u64::MAX);
    let mut n = 0;
    for eth in l2s() {
        for (src, dst) in addrs() {
            for (sport, dport) in PORTS {
                for msg in [UdpMsg::Request, UdpMsg::Response, UdpMsg::Reject] {
                    for swap in [false, true] {
                        let spec = HandshakeSpec { src, dst, sport, dport };
                        let id = UdpIdentity { msg, identity: 1001 + n, nonce: [n as u8; 8], echo: [3; 8] };
                        let (mut a, mut b) = ([0u8; MAX_HANDSHAKE_FRAME], [0u8; MAX_HANDSHAKE_FRAME]);
                        let old = old_build_handshake(&mut a, &eth, swap, &spec, &key, &id);
                        let new = build_handshake(&mut b, &eth, swap, &spec, &key, &id);
                        assert_eq!(old, new, "{spec:?} {eth:?} {swap}");
                        if let Some(len) = old {
                            assert_eq!(a[..len], b[..len], "{spec:?} {eth:?} {swap}");
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(n > 200, "{n} handshake frames compared");
}

#[test]
fn builder_frames_come_out_as_before() {
    let opts: [&[u8]; 5] = [&[], &[2, 4, 5, 180], &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], &[0x22; 20], &[1; 40]];
    let payloads: [&[u8]; 5] = [&[], b"x", b"data", b"odd", &[0xab; 300]];
    let surpluses: [&[u8]; 3] = [&[], &[0, 0, 1, 1], &[9; 7]];
    let mut n = 0;
    for v6 in [false, true] {
        for vlans in [&[][..], &[5][..], &[5, 6][..], &[1, 2, 3][..], &[0xffff][..]] {
            for (i, (sport, dport)) in PORTS.into_iter().enumerate() {
                for payload in payloads {
                    for o in opts {
                        let flags = [0x02, 0x12, 0x18, 0x04, 0x11][(n + i) % 5];
                        let s = Spec {
                            vlans,
                            sport,
                            dport,
                            flags,
                            seq: 0x0102_0304_u32.wrapping_mul(n as u32),
                            ack: 0xfffe_0000 ^ n as u32,
                            tcp_options: o,
                            payload,
                            ..Spec::default()
                        };
                        let s = if v6 { s.with_v6() } else { s };
                        assert_eq!(old_build(&s), build(&s), "{s:?}");
                        n += 1;
                    }
                    for surplus in surpluses {
                        let s = Spec {
                            vlans,
                            sport,
                            dport,
                            proto: ip_proto::UDP,
                            payload,
                            udp_surplus: surplus,
                            ..Spec::default()
                        };
                        let s = if v6 { s.with_v6() } else { s };
                        assert_eq!(old_build(&s), build(&s), "{s:?}");
                        n += 1;
                    }
                }
            }
        }
    }
    assert!(n > 1000, "{n} frames compared");
}
