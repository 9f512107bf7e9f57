//! The established fast path's look at a frame: the flow's 5-tuple and what
//! the TCP state machine needs, and nothing else.
//!
//! [`parse_frame`](super::parse_frame) describes any frame in full (every
//! offset, ICMP, fragments, extension headers) and costs about as much as the
//! rest of an established packet's work put together. Most frames on a busy
//! link are the plain shapes, so those are read here with one bounds check per
//! header into a few registers: Ethernet with at most one 802.1Q tag, IPv4
//! without fragmentation, IPv6 with TCP or UDP right after the fixed header,
//! TCP, and UDP without an options area (which may carry a handshake message).
//! Anything else is `None` and takes the full parse, which also gives a
//! malformed frame its typed reason.
//!
//! For every frame where this returns `Some`, `parse_frame` succeeds with the
//! same fields: checked by a unit test over mutated frames and asserted by
//! the `parse` fuzz target ([`super::fuzzing::parse`]).

use super::ethernet::{self, ethertype, VLAN_TAG_LEN};
use super::{ip_proto, ipv4, ipv6, tcp, udp};

/// The fields of a plain TCP or UDP frame that its flow lookup and the TCP
/// state machine read. Addresses are big-endian values; IPv4 ones are
/// IPv4-mapped (`::ffff:a.b.c.d`), as flow keys store them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    pub src: u128,
    pub dst: u128,
    /// 4 or 6.
    pub family: u8,
    /// [`ip_proto::TCP`] or [`ip_proto::UDP`].
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
    /// TCP sequence number (0 for UDP).
    pub seq: u32,
    /// TCP options: offset from the frame's start, and length (0..=40).
    pub tcp_opts_offset: u16,
    pub tcp_opts_len: u8,
}

const IPV4_MF_OR_OFFSET: u16 = 0x3fff;

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A fixed-size view of `n` bytes at `at`, or `None` if the frame is shorter.
#[inline(always)]
fn fixed<const N: usize>(frame: &[u8], at: usize) -> Option<&[u8; N]> {
    frame.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The plain-shape fields of `frame`, or `None` for any other shape.
#[inline(always)]
pub fn peek(frame: &[u8]) -> Option<Peek> {
    if frame.len() > usize::from(u16::MAX) {
        return None;
    }
    const ETH: usize = ethernet::HEADER_LEN;
    let eth: &[u8; ETH] = fixed(frame, 0)?;
    let (mut et, mut l3) = (be16(eth, ETH - 2), ETH);
    if et == ethertype::VLAN {
        let tag: &[u8; VLAN_TAG_LEN] = fixed(frame, ETH)?;
        (et, l3) = (be16(tag, 2), ETH + VLAN_TAG_LEN);
    }
    // (l4 start, l4 end per the IP length field, proto, src, dst, family)
    let (l4, end, proto, src, dst, family) = match et {
        ethertype::IPV4 => {
            let ip: &[u8; ipv4::HEADER_LEN] = fixed(frame, l3)?;
            let hl = usize::from(ip[0] & 0x0f) * 4;
            let tl = usize::from(be16(ip, 2));
            if ip[0] >> 4 != 4 || hl < ipv4::HEADER_LEN || tl < hl || l3 + tl > frame.len() {
                return None;
            }
            if be16(ip, 6) & IPV4_MF_OR_OFFSET != 0 {
                return None;
            }
            let v4 = |a: &[u8]| (0xffff_u128 << 32) | u128::from(u32::from_be_bytes([a[0], a[1], a[2], a[3]]));
            (l3 + hl, l3 + tl, ip[9], v4(&ip[12..16]), v4(&ip[16..20]), 4)
        }
        ethertype::IPV6 => {
            const HL: usize = ipv6::HEADER_LEN;
            let ip: &[u8; HL] = fixed(frame, l3)?;
            let pl = usize::from(be16(ip, 4));
            if ip[0] >> 4 != 6 || pl == 0 || l3 + HL + pl > frame.len() {
                return None;
            }
            let a = |at: usize| u128::from_be_bytes(ip[at..at + 16].try_into().unwrap_or([0; 16]));
            (l3 + HL, l3 + HL + pl, ip[6], a(8), a(24), 6)
        }
        _ => return None,
    };
    let mut p = Peek {
        src,
        dst,
        family,
        proto,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        seq: 0,
        tcp_opts_offset: 0,
        tcp_opts_len: 0,
    };
    let l4_len = end - l4;
    match proto {
        ip_proto::TCP => {
            let t: &[u8; tcp::HEADER_LEN] = fixed(frame, l4)?;
            let hl = usize::from(t[12] >> 4) * 4;
            if hl < tcp::HEADER_LEN || hl > l4_len {
                return None;
            }
            p.src_port = be16(t, 0);
            p.dst_port = be16(t, 2);
            p.seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            p.tcp_flags = t[13];
            p.tcp_opts_offset = (l4 + tcp::HEADER_LEN) as u16;
            p.tcp_opts_len = (hl - tcp::HEADER_LEN) as u8;
        }
        ip_proto::UDP => {
            let u: &[u8; udp::HEADER_LEN] = fixed(frame, l4)?;
            // Bytes beyond the UDP length are an options area: not plain.
            if l4_len < udp::HEADER_LEN || usize::from(be16(u, 4)) != l4_len {
                return None;
            }
            p.src_port = be16(u, 0);
            p.dst_port = be16(u, 2);
        }
        _ => return None,
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{build, Spec};
    use crate::wire::fuzzing::{self, XorShift};
    use crate::wire::{parse_frame, Addr};

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    #[test]
    fn reads_a_plain_tcp_frame() {
        let f = build(&Spec {
            src: v4([10, 0, 0, 1]),
            dst: v4([10, 1, 0, 2]),
            sport: 4000,
            dport: 80,
            flags: 0x18,
            seq: 77,
            tcp_options: &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ..Spec::default()
        });
        let p = peek(&f).expect("plain");
        assert_eq!((p.family, p.proto, p.src_port, p.dst_port, p.tcp_flags, p.seq), (4, 6, 4000, 80, 0x18, 77));
        assert_eq!(p.src, 0xffff_0a00_0001);
        assert_eq!(p.dst, 0xffff_0a01_0002);
        assert_eq!((p.tcp_opts_offset, p.tcp_opts_len), (54, 12));
    }

    #[test]
    fn leaves_other_shapes_to_the_full_parse() {
        let base = build(&Spec { src: v4([10, 0, 0, 1]), dst: v4([10, 1, 0, 2]), ..Spec::default() });
        // an IPv4 fragment (MF set)
        let mut frag = base.clone();
        frag[20] |= 0x20;
        assert!(peek(&frag).is_none());
        // ARP
        let mut arp = base.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(peek(&arp).is_none());
        // a TCP data offset past the datagram
        let mut off = base.clone();
        off[14 + 20 + 12] = 0xf0;
        assert!(peek(&off).is_none());
        // truncated anywhere
        for n in 0..base.len() {
            assert!(peek(&base[..n]).is_none(), "truncated at {n}");
        }
    }

    /// Plain and not-quite-plain frames of every shape `peek` reads.
    fn seeds() -> Vec<Vec<u8>> {
        let opts: &[u8] = &[2, 4, 5, 180, 1, 3, 3, 7, 4, 2, 1, 1];
        let mut out = Vec::new();
        for v6 in [false, true] {
            for vlans in [&[][..], &[5][..], &[5, 6][..]] {
                for (proto, surplus) in [(6, &[][..]), (17, &[][..]), (17, &[0, 0, 1, 1][..])] {
                    let s = Spec {
                        vlans,
                        proto,
                        tcp_options: opts,
                        payload: b"data",
                        udp_surplus: surplus,
                        ..Spec::default()
                    };
                    out.push(build(&if v6 { s.with_v6() } else { s }));
                }
            }
        }
        out
    }

    #[test]
    fn agrees_with_parse_frame_on_mutated_frames() {
        let mut rng = XorShift(0x005e_ed0f_9eec);
        let seeds = seeds();
        let mut plain = 0;
        for _ in 0..100_000 {
            let mut f = seeds[rng.below(seeds.len())].clone();
            if rng.below(4) != 0 {
                rng.mutate(&mut f);
            }
            fuzzing::parse(&f); // asserts the agreement for the frames peek reads
            plain += usize::from(peek(&f).is_some());
        }
        assert!(plain > 20_000, "too few plain frames exercised: {plain}");
    }

    #[test]
    fn vlan_tagged_ipv6_udp() {
        let mut f = build(&Spec { vlans: &[7], proto: 17, sport: 53, dport: 9000, ..Spec::default() }.with_v6());
        let p = peek(&f).expect("plain");
        let info = parse_frame(&f).unwrap();
        assert_eq!((p.family, p.proto, p.src_port, p.dst_port), (6, 17, 53, 9000));
        let Addr::V6(s) = info.src else { panic!("v6") };
        assert_eq!(p.src, u128::from_be_bytes(s));
        // an options area after the UDP length: left to the full parse
        f.extend_from_slice(&[0, 0]);
        let l3 = 18;
        let pl = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) + 2;
        f[l3 + 4..l3 + 6].copy_from_slice(&pl.to_be_bytes());
        assert!(peek(&f).is_none());
    }
}
