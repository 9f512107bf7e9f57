//! One-pass classification of a frame into a small `Copy` summary.

use super::ethernet::{self, ethertype};
use super::{ip_proto, ipv4, ipv6, tcp, udp, Malformed};

/// An IP address in a form usable as (part of) a hash key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Addr {
    /// Not an IP frame.
    #[default]
    None,
    V4([u8; 4]),
    V6([u8; 16]),
}

/// What the Ethernet payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum L3Kind {
    Ipv4,
    Ipv6,
    /// ARP: passed through untouched.
    Arp,
    /// Any other ethertype: passed through untouched.
    #[default]
    Other,
}

/// What the IP payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum L4Kind {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Another protocol (see `FrameInfo::proto`), or a non-first fragment.
    Other,
    /// Not IP.
    #[default]
    None,
}

/// Offsets and fields of one frame, found in one pass. Offsets are from the
/// start of the frame. Fields that do not apply are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameInfo {
    /// Number of VLAN tags (0..=2); the first starts at byte 12.
    pub vlan_tags: u8,
    /// The ethertype after any VLAN tags.
    pub ethertype: u16,
    pub l3: L3Kind,
    pub l3_offset: u16,
    /// End of the IP datagram per its length field (bytes after it are padding).
    pub ip_end: u16,
    pub src: Addr,
    pub dst: Addr,
    /// IP protocol / IPv6 upper-layer next header.
    pub proto: u8,
    pub l4: L4Kind,
    /// Any fragment (IPv4 MF/offset or an IPv6 Fragment header).
    pub fragment: bool,
    /// A non-first fragment: no L4 header, ports are zero.
    pub later_fragment: bool,
    pub l4_offset: u16,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags byte (see [`tcp::flags`]).
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// TCP options: offset and length (0..=40).
    pub tcp_opts_offset: u16,
    pub tcp_opts_len: u8,
    /// L4 payload (TCP data / UDP user data).
    pub payload_offset: u16,
    pub payload_len: u16,
    /// UDP length field.
    pub udp_len: u16,
    /// UDP surplus area (options): offset and length (0 when absent).
    pub udp_opts_offset: u16,
    pub udp_opts_len: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl FrameInfo {
    pub fn is_ip(&self) -> bool {
        matches!(self.l3, L3Kind::Ipv4 | L3Kind::Ipv6)
    }
    pub fn is_tcp_syn(&self) -> bool {
        self.l4 == L4Kind::Tcp && self.tcp_flags & (tcp::flags::SYN | tcp::flags::ACK) == tcp::flags::SYN
    }
    pub fn is_tcp_syn_ack(&self) -> bool {
        self.l4 == L4Kind::Tcp
            && self.tcp_flags & (tcp::flags::SYN | tcp::flags::ACK) == tcp::flags::SYN | tcp::flags::ACK
    }
}

// Frames longer than 64 KiB cannot be described with u16 offsets; no Ethernet
// frame is (jumbo frames are ≤ 9216 bytes).
#[inline]
fn off(v: usize) -> u16 {
    v as u16
}

/// Parses a frame in one pass. Non-IP frames (ARP and others) succeed with
/// `l3` = `Arp`/`Other` and are meant to be passed through.
#[inline]
pub fn parse_frame(frame: &[u8]) -> Result<FrameInfo, Malformed> {
    // Filled in place in the value returned: building the summary in a local
    // and moving it out cost a field-by-field copy (about a quarter of the
    // parse, measured in instructions).
    let mut out = Ok(FrameInfo::default());
    if let Ok(info) = &mut out {
        fill(frame, info)?;
    }
    out
}

#[inline(always)]
fn fill(frame: &[u8], info: &mut FrameInfo) -> Result<(), Malformed> {
    if frame.len() > usize::from(u16::MAX) {
        return Err(Malformed::FrameTooLong);
    }
    let eth = ethernet::Frame::new_checked(frame)?;
    let (tags, et, l3) = eth.walk_tags()?;
    (info.vlan_tags, info.ethertype, info.l3_offset) = (tags, et, off(l3));
    let l3_bytes = &frame[l3..];
    let (l4_start, l4_bytes) = match et {
        ethertype::IPV4 => {
            let ip = ipv4::Packet::new_checked(l3_bytes)?;
            info.l3 = L3Kind::Ipv4;
            info.src = Addr::V4(ip.src());
            info.dst = Addr::V4(ip.dst());
            info.proto = ip.protocol();
            info.ip_end = off(l3 + usize::from(ip.total_len()));
            info.fragment = ip.is_fragment();
            info.later_fragment = ip.frag_offset() != 0;
            let hl = ip.header_len();
            (l3 + hl, &l3_bytes[hl..usize::from(ip.total_len())])
        }
        ethertype::IPV6 => {
            let ip = ipv6::Packet::new_checked(l3_bytes)?;
            info.l3 = L3Kind::Ipv6;
            info.src = Addr::V6(ip.src());
            info.dst = Addr::V6(ip.dst());
            let up = ip.upper_layer()?;
            info.proto = up.protocol;
            info.ip_end = off(l3 + ipv6::HEADER_LEN + usize::from(ip.payload_len()));
            info.fragment = up.fragment;
            info.later_fragment = up.later_fragment;
            let pl = usize::from(ip.payload_len());
            (l3 + ipv6::HEADER_LEN + up.offset, &l3_bytes[ipv6::HEADER_LEN + up.offset..ipv6::HEADER_LEN + pl])
        }
        ethertype::ARP => {
            info.l3 = L3Kind::Arp;
            return Ok(());
        }
        _ => return Ok(()),
    };
    info.l4_offset = off(l4_start);
    if info.later_fragment {
        info.l4 = L4Kind::Other;
        return Ok(());
    }
    match info.proto {
        ip_proto::TCP => {
            let t = tcp::Packet::new_checked(l4_bytes)?;
            info.l4 = L4Kind::Tcp;
            info.src_port = t.src_port();
            info.dst_port = t.dst_port();
            info.tcp_flags = t.flags();
            info.seq = t.seq();
            info.ack = t.ack();
            let hl = t.header_len();
            info.tcp_opts_offset = off(l4_start + tcp::HEADER_LEN);
            info.tcp_opts_len = (hl - tcp::HEADER_LEN) as u8;
            info.payload_offset = off(l4_start + hl);
            info.payload_len = off(l4_bytes.len() - hl);
        }
        ip_proto::UDP => {
            let u = udp::Packet::new_checked(l4_bytes)?;
            info.l4 = L4Kind::Udp;
            info.src_port = u.src_port();
            info.dst_port = u.dst_port();
            let ul = usize::from(u.len());
            info.udp_len = u.len();
            info.payload_offset = off(l4_start + udp::HEADER_LEN);
            info.payload_len = off(ul - udp::HEADER_LEN);
            let surplus = l4_bytes.len() - ul;
            if surplus > 0 {
                info.udp_opts_offset = off(l4_start + ul);
                info.udp_opts_len = off(surplus);
            }
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let h = l4_bytes.get(..4).ok_or(Malformed::IcmpTruncated)?;
            info.l4 = if info.proto == ip_proto::ICMP { L4Kind::Icmp } else { L4Kind::Icmpv6 };
            info.icmp_type = h[0];
            info.icmp_code = h[1];
            info.payload_offset = off(l4_start + 4);
            info.payload_len = off(l4_bytes.len() - 4);
        }
        _ => info.l4 = L4Kind::Other,
    }
    Ok(())
}
