//! The frame writer: IP packets (IPv4 or IPv6, then TCP or UDP) emitted
//! through the same typed views the parser reads with. Each header comes from
//! its `Repr` ([`ipv4::Repr`], [`ipv6::Repr`], [`tcp::Repr`], [`udp::Repr`],
//! [`ethernet::Repr`]), as smoltcp's `Repr::emit` does, and the views fill
//! the checksums. The engine's resets and UDP handshake messages and the test
//! builder ([`super::builder`]) are written here; nothing else writes a
//! header by byte offset.

use super::{ethernet, ipv4, ipv6, tcp, udp, Addr};

/// TTL (IPv4) and hop limit (IPv6) of the frames the gateway makes.
pub const TTL: u8 = 64;

/// Longest Ethernet header a frame the gateway makes reuses: two VLAN tags.
pub const MAX_L2_LEN: usize = ethernet::HEADER_LEN + ethernet::MAX_VLAN_TAGS * ethernet::VLAN_TAG_LEN;

/// The IP header of a packet to write. Its payload length is set by
/// [`tcp_packet`] and [`udp_packet`] from what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRepr {
    V4(ipv4::Repr),
    V6(ipv6::Repr),
}

impl IpRepr {
    /// The header of a packet the gateway makes from `src` to `dst`: IPv4
    /// with DF, TTL 64 and identification 0, or IPv6 with hop limit 64.
    /// `None` unless both addresses are IP addresses of one family.
    pub fn new(src: Addr, dst: Addr, protocol: u8) -> Option<IpRepr> {
        match (src, dst) {
            (Addr::V4(src), Addr::V4(dst)) => {
                Some(IpRepr::V4(ipv4::Repr { src, dst, protocol, payload_len: 0, ident: 0, dont_frag: true, ttl: TTL }))
            }
            (Addr::V6(src), Addr::V6(dst)) => {
                Some(IpRepr::V6(ipv6::Repr { src, dst, next_header: protocol, payload_len: 0, hop_limit: TTL }))
            }
            _ => None,
        }
    }

    /// The same header with another IPv4 identification (IPv6 has none).
    pub fn with_ident(self, ident: u16) -> IpRepr {
        match self {
            IpRepr::V4(r) => IpRepr::V4(ipv4::Repr { ident, ..r }),
            v6 => v6,
        }
    }

    pub fn header_len(&self) -> usize {
        match self {
            IpRepr::V4(_) => ipv4::HEADER_LEN,
            IpRepr::V6(_) => ipv6::HEADER_LEN,
        }
    }

    /// The ethertype of a frame carrying this packet.
    pub fn ethertype(&self) -> u16 {
        match self {
            IpRepr::V4(_) => ethernet::ethertype::IPV4,
            IpRepr::V6(_) => ethernet::ethertype::IPV6,
        }
    }

    fn with_payload_len(self, payload_len: u16) -> IpRepr {
        match self {
            IpRepr::V4(r) => IpRepr::V4(ipv4::Repr { payload_len, ..r }),
            IpRepr::V6(r) => IpRepr::V6(ipv6::Repr { payload_len, ..r }),
        }
    }

    /// Writes the header at the start of `buf` (at least [`Self::header_len`] bytes).
    fn emit(&self, buf: &mut [u8]) {
        match self {
            IpRepr::V4(r) => r.emit(&mut ipv4::Packet::new_unchecked(buf)),
            IpRepr::V6(r) => r.emit(&mut ipv6::Packet::new_unchecked(buf)),
        }
    }

    /// The pseudo-header's unfolded sum for an upper-layer length of `len`.
    fn pseudo_sum(&self, len: u16) -> u32 {
        match self {
            IpRepr::V4(r) => r.pseudo_sum(len),
            IpRepr::V6(r) => r.pseudo_sum(len),
        }
    }
}

/// A TCP segment to write after an IP header: `header.options_len` must be
/// `options.len()`, a multiple of 4.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    pub header: tcp::Repr,
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

/// A UDP datagram to write after an IP header, with the bytes of its surplus
/// area (after the UDP length, inside the IP payload; not checksummed).
#[derive(Debug, Clone, Copy)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
    pub surplus: &'a [u8],
}

/// Writes `ip` and the segment after it at the start of `out`; returns the
/// bytes written, or `None` if they do not fit `out` or the lengths disagree.
pub fn tcp_packet(out: &mut [u8], ip: IpRepr, seg: &TcpSegment<'_>) -> Option<usize> {
    let o = seg.options.len();
    if o != seg.header.options_len || !o.is_multiple_of(4) || o > tcp::MAX_OPTIONS_LEN {
        return None;
    }
    let hl = ip.header_len();
    let len = seg.header.header_len() + seg.payload.len();
    let ip = ip.with_payload_len(u16::try_from(len).ok()?);
    let buf = out.get_mut(..hl + len)?;
    ip.emit(buf);
    let mut t = tcp::Packet::new_unchecked(&mut buf[hl..]);
    seg.header.emit(&mut t);
    t.options_mut().copy_from_slice(seg.options);
    t.payload_mut().copy_from_slice(seg.payload);
    t.fill_checksum(ip.pseudo_sum(len as u16));
    Some(hl + len)
}

/// Writes `ip` and the datagram after it at the start of `out`; returns the
/// bytes written, or `None` if they do not fit `out`.
pub fn udp_packet(out: &mut [u8], ip: IpRepr, d: &UdpDatagram<'_>) -> Option<usize> {
    let hl = ip.header_len();
    let header =
        udp::Repr { src_port: d.src_port, dst_port: d.dst_port, payload_len: u16::try_from(d.payload.len()).ok()? };
    let udp_len = usize::from(header.udp_len());
    let len = udp_len.checked_add(d.surplus.len())?;
    let ip = ip.with_payload_len(u16::try_from(len).ok()?);
    let buf = out.get_mut(..hl + len)?;
    ip.emit(buf);
    let mut u = udp::Packet::new_unchecked(&mut buf[hl..]);
    header.emit(&mut u);
    u.payload_mut().copy_from_slice(d.payload);
    u.surplus_mut().copy_from_slice(d.surplus);
    u.fill_checksum(ip.pseudo_sum(header.udp_len()));
    Some(hl + len)
}

/// Writes a whole frame at the start of `out`: a received frame's L2 header
/// (`l2`, as [`copy_l2`] takes it), then `ip` and the segment. Returns its
/// length, or `None` as those two say.
pub fn tcp_frame(out: &mut [u8], l2: &[u8], swap: bool, ip: IpRepr, seg: &TcpSegment<'_>) -> Option<usize> {
    let n = copy_l2(out, l2, swap)?;
    Some(n + tcp_packet(&mut out[n..], ip, seg)?)
}

/// [`tcp_frame`] for a UDP datagram.
pub fn udp_frame(out: &mut [u8], l2: &[u8], swap: bool, ip: IpRepr, d: &UdpDatagram<'_>) -> Option<usize> {
    let n = copy_l2(out, l2, swap)?;
    Some(n + udp_packet(&mut out[n..], ip, d)?)
}

/// Copies a received frame's Ethernet header and VLAN tags (`l2`, the bytes
/// before its IP header: 14 to 22) to the start of `out`, the addresses
/// exchanged when `swap` (a frame sent back where that one came from).
/// Returns the length, or `None` if `l2` is not such a header or `out` is
/// too short. The ethertype is the received frame's: the packet written
/// after it must be of the same IP version.
pub fn copy_l2(out: &mut [u8], l2: &[u8], swap: bool) -> Option<usize> {
    let n = l2.len();
    if !(ethernet::HEADER_LEN..=MAX_L2_LEN).contains(&n) {
        return None;
    }
    let dst = out.get_mut(..n)?;
    dst.copy_from_slice(l2);
    if swap {
        ethernet::Frame::new_unchecked(dst).swap_addresses();
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::fd00;
    use crate::wire::{ip_proto, parse_frame, L4Kind};

    const L2_V4: [u8; 14] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];

    fn tcp(options_len: usize) -> tcp::Repr {
        tcp::Repr { src_port: 1, dst_port: 2, seq: 3, ack: 4, flags: tcp::flags::ACK, window: 5, options_len }
    }

    #[test]
    fn packets_written_parse_back() {
        let mut out = [0u8; 128];
        let l2 = copy_l2(&mut out, &L2_V4, true).unwrap();
        assert_eq!(out[..12], [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2], "addresses exchanged");
        let ip = IpRepr::new(Addr::V4([10, 0, 0, 1]), Addr::V4([10, 0, 0, 2]), ip_proto::TCP).unwrap();
        let seg = TcpSegment { header: tcp(4), options: &[1, 1, 1, 0], payload: b"abc" };
        let n = tcp_packet(&mut out[l2..], ip, &seg).unwrap();
        assert_eq!(n, 20 + 24 + 3);
        let i = parse_frame(&out[..l2 + n]).unwrap();
        assert_eq!((i.l4, i.src_port, i.seq, i.ack, i.tcp_opts_len, i.payload_len), (L4Kind::Tcp, 1, 3, 4, 4, 3));
        let mut l2_v6 = L2_V4;
        l2_v6[12..].copy_from_slice(&ethernet::ethertype::IPV6.to_be_bytes());
        let l2 = copy_l2(&mut out, &l2_v6, false).unwrap();
        let ip = IpRepr::new(Addr::V6(fd00(1)), Addr::V6(fd00(2)), ip_proto::UDP).unwrap();
        let d = UdpDatagram { src_port: 53, dst_port: 9, payload: b"q", surplus: &[0, 0] };
        let n = udp_packet(&mut out[l2..], ip, &d).unwrap();
        let i = parse_frame(&out[..l2 + n]).unwrap();
        assert_eq!((i.l4, i.udp_len, i.payload_len, i.udp_opts_len), (L4Kind::Udp, 9, 1, 2));
        assert_eq!(ip.ethertype(), ethernet::ethertype::IPV6);
    }

    #[test]
    fn what_cannot_be_written_is_refused() {
        let mut out = [0u8; 60];
        let ip = IpRepr::new(Addr::V4([1, 2, 3, 4]), Addr::V4([5, 6, 7, 8]), ip_proto::TCP).unwrap();
        let seg = |o: &'static [u8], len| TcpSegment { header: tcp(len), options: o, payload: &[] };
        assert_eq!(tcp_packet(&mut out, ip, &seg(&[1, 1, 1, 1], 8)), None, "options_len disagrees");
        assert_eq!(tcp_packet(&mut out, ip, &seg(&[1, 1, 1], 3)), None, "not a multiple of 4");
        assert_eq!(tcp_packet(&mut out[..39], ip, &seg(&[], 0)), None, "does not fit");
        assert_eq!(tcp_packet(&mut out[..40], ip, &seg(&[], 0)), Some(40));
        assert_eq!(IpRepr::new(Addr::V4([1, 2, 3, 4]), Addr::V6(fd00(1)), ip_proto::TCP), None);
        assert_eq!(IpRepr::new(Addr::None, Addr::None, ip_proto::TCP), None);
        assert_eq!(copy_l2(&mut out, &L2_V4[..13], false), None);
        assert_eq!(copy_l2(&mut out, &[0; MAX_L2_LEN + 1], false), None);
        assert_eq!(copy_l2(&mut out[..13], &L2_V4, false), None);
    }
}
