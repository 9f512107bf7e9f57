//! Builds well-formed test frames (tests, benchmarks, fuzz seeds). Allocates;
//! never used on the fast path.

use super::emit::{self, IpRepr, TcpSegment, UdpDatagram};
use super::{ethernet, ip_proto, tcp, Addr};

/// A TCP or UDP frame to build.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// VLAN ids, outermost first (0..=2 tags; the outer is 802.1ad when 2).
    pub vlans: &'a [u16],
    /// IPv6 when true, IPv4 otherwise.
    pub v6: bool,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// TCP options (a multiple of 4 bytes, ≤ 40); ignored for UDP.
    pub tcp_options: &'a [u8],
    pub payload: &'a [u8],
    /// Bytes appended after the UDP datagram inside the IP payload (its
    /// surplus area); ignored for TCP.
    pub udp_surplus: &'a [u8],
}

impl Default for Spec<'_> {
    fn default() -> Self {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&[10, 1, 0, 1]);
        dst[..4].copy_from_slice(&[10, 2, 0, 2]);
        Spec {
            vlans: &[],
            v6: false,
            src,
            dst,
            proto: ip_proto::TCP,
            sport: 40000,
            dport: 443,
            flags: super::tcp::flags::SYN,
            seq: 0x1122_3344,
            ack: 0,
            tcp_options: &[],
            payload: &[],
            udp_surplus: &[],
        }
    }
}

impl Spec<'_> {
    /// Uses the given IPv6 addresses.
    pub fn with_v6(mut self) -> Self {
        self.v6 = true;
        self.src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        self.dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        self
    }
}

/// The addresses test frames carry.
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
/// The IPv4 identification and TCP window of test frames.
const IDENT: u16 = 0x1234;
const WINDOW: u16 = 0xfaf0;

/// Builds the frame with valid lengths and checksums, through the frame
/// writer ([`super::emit`]). `proto` TCP makes a segment; any other protocol
/// a UDP-shaped datagram (followed by `udp_surplus`) under that protocol
/// number. Panics on a spec no frame can have (options not a multiple of 4,
/// addresses of two families, more than 64 KiB).
pub fn build(s: &Spec<'_>) -> Vec<u8> {
    let (src, dst) = if s.v6 { (Addr::V6(s.src), Addr::V6(s.dst)) } else { (v4(&s.src), v4(&s.dst)) };
    let ip = IpRepr::new(src, dst, s.proto).expect("addresses of one family").with_ident(IDENT);
    let eth = ethernet::Repr { dst: DST_MAC, src: SRC_MAC, vlans: s.vlans, ethertype: ip.ethertype() };
    let l3 = eth.header_len();
    let most = ip.header_len() + tcp::HEADER_LEN + s.tcp_options.len() + s.payload.len() + s.udp_surplus.len();
    let mut f = vec![0u8; l3 + most];
    eth.emit(&mut f);
    let n = if s.proto == ip_proto::TCP {
        let header = tcp::Repr {
            src_port: s.sport,
            dst_port: s.dport,
            seq: s.seq,
            ack: s.ack,
            flags: s.flags,
            window: WINDOW,
            options_len: s.tcp_options.len(),
        };
        emit::tcp_packet(&mut f[l3..], ip, &TcpSegment { header, options: s.tcp_options, payload: s.payload })
    } else {
        let d = UdpDatagram { src_port: s.sport, dst_port: s.dport, payload: s.payload, surplus: s.udp_surplus };
        emit::udp_packet(&mut f[l3..], ip, &d)
    };
    f.truncate(l3 + n.expect("a frame the writer can write"));
    f
}

/// Bytes from hex digits, for golden-bytes tests. Panics on anything else.
pub fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits")).collect()
}

/// The IPv6 address `fd00::x`, for tests.
pub fn fd00(x: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = x;
    a
}

fn v4(a: &[u8; 16]) -> Addr {
    Addr::V4([a[0], a[1], a[2], a[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames as the hand-written builder this one replaced made them: a
    /// SYN with Linux's options, and a VLAN-tagged IPv6 UDP datagram with
    /// an odd payload and a surplus area.
    const TCP_V4: &str = concat!(
        "02000000000202000000000108004500003c12344000400614830a0100010a0200029c4001bb1122334400000000a002",
        "faf054a40000020405b40402080a000102030000000001030307",
    );
    const UDP_V6_VLAN: &str = concat!(
        "0200000000020200000000018100000786dd60000000000f114020010db800000000000000000000000120010db80000",
        "0000000000000000000200352328000bada16f646400000101",
    );

    #[test]
    fn frames_are_the_bytes_they_always_were() {
        let s =
            Spec { tcp_options: &[2, 4, 5, 180, 4, 2, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0, 1, 3, 3, 7], ..Spec::default() };
        assert_eq!(build(&s), from_hex(TCP_V4));
        let s = Spec {
            vlans: &[7],
            proto: ip_proto::UDP,
            sport: 53,
            dport: 9000,
            payload: b"odd",
            udp_surplus: &[0, 0, 1, 1],
            ..Spec::default()
        };
        assert_eq!(build(&s.with_v6()), from_hex(UDP_V6_VLAN));
    }
}
