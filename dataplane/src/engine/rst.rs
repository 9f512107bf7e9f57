//! TCP resets the engine sends when it rejects a handshake: built in place over
//! the rejected packet's buffer, or into a fixed array owned by the engine
//! (never allocated per packet).
//!
//! A reset keeps the frame's Ethernet header and VLAN tags (MAC addresses
//! swapped when it goes back where the packet came from), and carries a fresh
//! IPv4 (20 bytes, DF, TTL 64) or IPv6 (40 bytes, hop limit 64, no extension
//! headers) header and a 20-byte TCP header without options or payload.

use crate::buf::PacketBuf;
use crate::wire::emit::{self, IpRepr, TcpSegment};
use crate::wire::tcp::{self, flags};
use crate::wire::{ip_proto, ipv6, Addr, FrameInfo};

/// Largest reset frame: Ethernet with two VLAN tags (22) + IPv6 (40) + TCP (20).
pub const MAX_RST: usize = emit::MAX_L2_LEN + ipv6::HEADER_LEN + tcp::HEADER_LEN;

/// The fields of one reset.
#[derive(Debug, Clone, Copy)]
pub struct RstSpec {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    /// `Some(ack)`: RST|ACK acknowledging `ack`; `None`: a bare RST.
    pub ack: Option<u32>,
}

impl RstSpec {
    /// The reset that answers the packet `info` describes (to its sender):
    /// for a SYN, RST|ACK acknowledging the SYN.
    pub fn answer_syn(info: &FrameInfo) -> RstSpec {
        RstSpec {
            src: info.dst,
            dst: info.src,
            sport: info.dst_port,
            dport: info.src_port,
            seq: 0,
            ack: Some(info.seq.wrapping_add(1).wrapping_add(u32::from(info.payload_len))),
        }
    }

    /// For a SYN-ACK: the reset towards its sender (the server), from the
    /// client, at the sequence number the server expects next.
    pub fn synack_to_server(info: &FrameInfo) -> RstSpec {
        RstSpec::to_sender(info)
    }

    /// The bare reset towards the sender of the packet `info` describes, at
    /// the sequence number it expects next (the packet's acknowledgment).
    pub fn to_sender(info: &FrameInfo) -> RstSpec {
        RstSpec { src: info.dst, dst: info.src, sport: info.dst_port, dport: info.src_port, seq: info.ack, ack: None }
    }

    /// The reset towards the packet's destination, as if from its sender.
    pub fn onwards(info: &FrameInfo, seq: u32, ack: Option<u32>) -> RstSpec {
        RstSpec { src: info.src, dst: info.dst, sport: info.src_port, dport: info.dst_port, seq, ack }
    }

    /// For a SYN-ACK: the reset towards its destination (the client), as if
    /// from the server, acknowledging the client's SYN (so a client in
    /// SYN-SENT accepts it).
    pub fn synack_to_client(info: &FrameInfo) -> RstSpec {
        RstSpec::onwards(info, info.seq.wrapping_add(1), Some(info.ack))
    }
}

/// Writes a reset into `out`, reusing `eth` (the frame's bytes before the IP
/// header: MACs, VLAN tags, ethertype). Returns its length, or `None` if the
/// addresses are not IP or `out`/`eth` have the wrong size.
pub fn write(out: &mut [u8; MAX_RST], eth: &[u8], swap_macs: bool, r: &RstSpec) -> Option<usize> {
    let ip = IpRepr::new(r.src, r.dst, ip_proto::TCP)?;
    let header = tcp::Repr {
        src_port: r.sport,
        dst_port: r.dport,
        seq: r.seq,
        ack: r.ack.unwrap_or(0),
        flags: if r.ack.is_some() { flags::RST | flags::ACK } else { flags::RST },
        window: 0,
        options_len: 0,
    };
    emit::tcp_frame(out, eth, swap_macs, ip, &TcpSegment { header, options: &[], payload: &[] })
}

/// Turns the packet in `buf` (described by `info`) into the reset `r`, in
/// place. Returns false (buffer unchanged) if it cannot.
pub fn in_place<B: PacketBuf>(buf: &mut B, info: &FrameInfo, swap_macs: bool, r: &RstSpec) -> bool {
    let mut tmp = [0u8; MAX_RST];
    let l3 = usize::from(info.l3_offset);
    let Some(eth) = buf.data().get(..l3) else { return false };
    let Some(n) = write(&mut tmp, eth, swap_macs, r) else { return false };
    // The reset is never longer than the packet it replaces (its IP header is
    // no longer, and the packet had at least a 20-byte TCP header).
    n <= buf.len() && buf.replace(&tmp[..n]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::VecBuf;
    use crate::wire::builder::{build, fd00, from_hex, Spec};
    use crate::wire::parse_frame;

    /// An Ethernet header with `tags` 802.1Q tags (VLAN ids 10, 11, …).
    fn l2(tags: u8, v6: bool) -> Vec<u8> {
        let mut e = vec![0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x02, 0x11, 0x22, 0x33, 0x44, 0x02];
        for t in 0..tags {
            e.extend_from_slice(&[0x81, 0x00, 0x00, 10 + t]);
        }
        e.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        e
    }

    /// Bytes of resets as the hand-written writer this one replaced made
    /// them (a VLAN-tagged IPv4 RST|ACK sent back, MACs swapped; an
    /// untagged IPv6 bare RST sent on).
    const RST_V4_VLAN: &str = concat!(
        "02112233440202aabbccdd018100000a08004500002800004000400626b00a01000a0a02001401bb9c40000000001122",
        "334550140000b94d0000",
    );
    const RST_V6: &str = concat!(
        "02aabbccdd0102112233440286dd6000000000140640fd000000000000000000000000000001fd000000000000000000",
        "0000000000029c4001bb5566778800000000500400004af20000",
    );

    #[test]
    fn resets_are_the_bytes_they_always_were() {
        let mut out = [0u8; MAX_RST];
        let r = RstSpec {
            src: Addr::V4([10, 1, 0, 10]),
            dst: Addr::V4([10, 2, 0, 20]),
            sport: 443,
            dport: 40000,
            seq: 0,
            ack: Some(0x1122_3345),
        };
        let n = write(&mut out, &l2(1, false), true, &r).unwrap();
        assert_eq!(out[..n], from_hex(RST_V4_VLAN));
        let r = RstSpec {
            src: Addr::V6(fd00(1)),
            dst: Addr::V6(fd00(2)),
            sport: 40000,
            dport: 443,
            seq: 0x5566_7788,
            ack: None,
        };
        let n = write(&mut out, &l2(0, true), false, &r).unwrap();
        assert_eq!(out[..n], from_hex(RST_V6));
    }

    #[test]
    fn a_written_reset_parses_back_to_its_spec() {
        for (tags, swap) in [(0, false), (1, true), (2, false)] {
            for (src, dst) in [(Addr::V4([1, 2, 3, 4]), Addr::V4([5, 6, 7, 8])), (Addr::V6(fd00(7)), Addr::V6(fd00(9)))]
            {
                let v6 = matches!(src, Addr::V6(_));
                let eth = l2(tags, v6);
                let r = RstSpec { src, dst, sport: 1, dport: 2, seq: 3, ack: Some(4) };
                let mut out = [0u8; MAX_RST];
                let n = write(&mut out, &eth, swap, &r).unwrap();
                let i = parse_frame(&out[..n]).unwrap();
                assert_eq!((i.src, i.dst, i.src_port, i.dst_port, i.seq, i.ack), (src, dst, 1, 2, 3, 4));
                assert_eq!((i.tcp_flags, i.tcp_opts_len, i.payload_len), (flags::RST | flags::ACK, 0, 0));
                assert_eq!(usize::from(i.vlan_tags), usize::from(tags));
                assert_eq!(out[..6] == eth[6..12], swap, "MACs swapped only when asked");
            }
        }
    }

    #[test]
    fn no_reset_without_an_ip_pair_or_an_ethernet_header() {
        let mut out = [0u8; MAX_RST];
        let mixed =
            RstSpec { src: Addr::V4([1, 2, 3, 4]), dst: Addr::V6(fd00(1)), sport: 1, dport: 2, seq: 0, ack: None };
        assert_eq!(write(&mut out, &l2(0, false), false, &mixed), None);
        let none = RstSpec { src: Addr::None, dst: Addr::None, ..mixed };
        assert_eq!(write(&mut out, &l2(0, false), false, &none), None);
        let ok = RstSpec { dst: Addr::V4([5, 6, 7, 8]), ..mixed };
        assert_eq!(write(&mut out, &l2(0, false)[..13], false, &ok), None, "short Ethernet header");
        assert_eq!(write(&mut out, &l2(3, false), false, &ok), None, "three tags");
    }

    #[test]
    fn specs_answer_the_packet_they_are_made_from() {
        let syn = build(&Spec { payload: b"tfo", ..Spec::default() });
        let i = parse_frame(&syn).unwrap();
        let a = RstSpec::answer_syn(&i);
        assert_eq!((a.src, a.dst, a.sport, a.dport), (i.dst, i.src, i.dst_port, i.src_port));
        assert_eq!((a.seq, a.ack), (0, Some(i.seq.wrapping_add(1 + 3))), "acknowledges the SYN and its data");
        let synack = build(&Spec { flags: flags::SYN | flags::ACK, seq: 100, ack: 200, ..Spec::default() });
        let i = parse_frame(&synack).unwrap();
        let s = RstSpec::synack_to_server(&i);
        assert_eq!((s.src, s.sport, s.seq, s.ack), (i.dst, i.dst_port, 200, None));
        let c = RstSpec::synack_to_client(&i);
        assert_eq!((c.src, c.sport, c.seq, c.ack), (i.src, i.src_port, 101, Some(200)));
    }

    #[test]
    fn in_place_replaces_the_frame_or_leaves_it_alone() {
        let syn = build(&Spec { vlans: &[7], tcp_options: &[2, 4, 5, 180], payload: b"data", ..Spec::default() });
        let i = parse_frame(&syn).unwrap();
        let mut buf = VecBuf::from_frame(&syn);
        assert!(in_place(&mut buf, &i, true, &RstSpec::answer_syn(&i)));
        let r = parse_frame(buf.data()).unwrap();
        assert_eq!((r.src, r.dst, r.tcp_flags), (i.dst, i.src, flags::RST | flags::ACK));
        assert_eq!(buf.len(), 18 + 20 + 20);
        // A spec that cannot be written leaves the buffer as it was.
        let mut buf = VecBuf::from_frame(&syn);
        let bad = RstSpec { src: Addr::None, ..RstSpec::answer_syn(&i) };
        assert!(!in_place(&mut buf, &i, true, &bad));
        assert_eq!(buf.data(), &syn[..]);
    }
}
