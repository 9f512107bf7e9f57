//! Builds well-formed test frames (tests, benchmarks, fuzz seeds). Allocates;
//! never used on the fast path.

use super::{checksum, ip_proto};

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
    /// Bytes appended after the UDP datagram inside the IP payload.
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

/// Builds the frame with valid lengths and checksums.
pub fn build(s: &Spec<'_>) -> Vec<u8> {
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
