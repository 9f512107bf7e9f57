//! Frame builders: Ethernet + IPv4/IPv6 + TCP/UDP, with correct lengths and
//! checksums, padded to the Ethernet minimum. Frames never include the FCS
//! (pcap files and DPDK mbufs do not carry it), so a "64-byte frame" is 60
//! bytes here.

use std::fmt;
use std::net::IpAddr;

use crate::checksum;
use crate::net::MacAddr;

pub const ETH_HDR_LEN: usize = 14;
pub const IPV4_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;
pub const TCP_HDR_LEN: usize = 20;
pub const UDP_HDR_LEN: usize = 8;
/// The Ethernet minimum without the FCS (64 on the wire).
pub const MIN_FRAME_LEN: usize = 60;
pub const FCS_LEN: usize = 4;
/// The largest TCP options area (data offset 15 words).
pub const MAX_TCP_OPTIONS: usize = 40;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// TCP flag bits (byte 13 of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Source and destination are not the same IP version.
    MixedFamilies,
    /// TCP options longer than 40 bytes or not a multiple of 4.
    BadOptionsLength(usize),
    /// Extra TCP options whose kind/length bytes do not add up.
    MalformedOptions,
    /// The IP packet would exceed 65535 bytes.
    TooLarge(usize),
    /// Not a frame this crate can parse (`recompute_checksums`).
    Unparsable(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::MixedFamilies => write!(f, "source and destination addresses are of different IP versions"),
            FrameError::BadOptionsLength(n) => {
                write!(f, "TCP options are {n} bytes; they must be a multiple of 4 and at most {MAX_TCP_OPTIONS}")
            }
            FrameError::MalformedOptions => {
                write!(f, "extra TCP options are malformed: a length byte overruns or is below 2")
            }
            FrameError::TooLarge(n) => write!(f, "IP packet of {n} bytes exceeds 65535"),
            FrameError::Unparsable(why) => write!(f, "cannot parse frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Ethernet and IP fields shared by every frame of a flow.
#[derive(Clone, Copy, Debug)]
pub struct Envelope {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// IPv4 identification; ignored for IPv6.
    pub ip_id: u16,
    /// IPv6 flow label (20 bits); ignored for IPv4.
    pub flow_label: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct TcpHeader<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Already laid out and padded to a multiple of 4 (see `tcp_options`).
    pub options: &'a [u8],
}

/// Length of the headers below the payload for a given IP version and L4.
pub fn header_len(ipv6: bool, l4_header: usize) -> usize {
    ETH_HDR_LEN + if ipv6 { IPV6_HDR_LEN } else { IPV4_HDR_LEN } + l4_header
}

pub fn tcp_frame(env: &Envelope, tcp: &TcpHeader<'_>, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let olen = tcp.options.len();
    if olen > MAX_TCP_OPTIONS || !olen.is_multiple_of(4) {
        return Err(FrameError::BadOptionsLength(olen));
    }
    let hlen = TCP_HDR_LEN + olen;
    let mut seg = Vec::with_capacity(hlen + payload.len());
    seg.extend_from_slice(&tcp.src_port.to_be_bytes());
    seg.extend_from_slice(&tcp.dst_port.to_be_bytes());
    seg.extend_from_slice(&tcp.seq.to_be_bytes());
    seg.extend_from_slice(&tcp.ack.to_be_bytes());
    seg.push(((hlen / 4) as u8) << 4);
    seg.push(tcp.flags);
    seg.extend_from_slice(&tcp.window.to_be_bytes());
    seg.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    seg.extend_from_slice(tcp.options);
    seg.extend_from_slice(payload);
    ip_frame(env, PROTO_TCP, seg, 16)
}

pub fn udp_frame(env: &Envelope, src_port: u16, dst_port: u16, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = UDP_HDR_LEN + payload.len();
    if len > 0xFFFF {
        return Err(FrameError::TooLarge(len));
    }
    let mut seg = Vec::with_capacity(len);
    seg.extend_from_slice(&src_port.to_be_bytes());
    seg.extend_from_slice(&dst_port.to_be_bytes());
    seg.extend_from_slice(&(len as u16).to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(payload);
    ip_frame(env, PROTO_UDP, seg, 6)
}

/// Wraps an L4 segment (checksum field zero, at `csum_at`) in IP and
/// Ethernet, fills in both checksums and pads to the Ethernet minimum.
fn ip_frame(env: &Envelope, proto: u8, mut seg: Vec<u8>, csum_at: usize) -> Result<Vec<u8>, FrameError> {
    let c = checksum::transport(env.src, env.dst, proto, &seg);
    seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());

    let mut f = Vec::with_capacity(ETH_HDR_LEN + IPV6_HDR_LEN + seg.len() + MIN_FRAME_LEN);
    f.extend_from_slice(&env.dst_mac.0);
    f.extend_from_slice(&env.src_mac.0);
    match (env.src, env.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = IPV4_HDR_LEN + seg.len();
            if total > 0xFFFF {
                return Err(FrameError::TooLarge(total));
            }
            f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip = ETH_HDR_LEN;
            f.extend_from_slice(&[0x45, 0x00]);
            f.extend_from_slice(&(total as u16).to_be_bytes());
            f.extend_from_slice(&env.ip_id.to_be_bytes());
            f.extend_from_slice(&[0x40, 0x00]); // DF, fragment offset 0
            f.extend_from_slice(&[env.ttl, proto, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            let c = checksum::ipv4_header(&f[ip..ip + IPV4_HDR_LEN]);
            f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if seg.len() > 0xFFFF {
                return Err(FrameError::TooLarge(seg.len() + IPV6_HDR_LEN));
            }
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let vtf: u32 = (6 << 28) | (env.flow_label & 0x000F_FFFF);
            f.extend_from_slice(&vtf.to_be_bytes());
            f.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, env.ttl]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => return Err(FrameError::MixedFamilies),
    }
    f.extend_from_slice(&seg);
    if f.len() < MIN_FRAME_LEN {
        f.resize(MIN_FRAME_LEN, 0);
    }
    Ok(f)
}

/// Recomputes the IPv4 header checksum and the TCP/UDP checksum of an
/// untagged Ethernet frame in place. For code that edits a built frame
/// (e.g. a hook that rewrites a SYN) and must leave it valid.
pub fn recompute_checksums(frame: &mut [u8]) -> Result<(), FrameError> {
    if frame.len() < ETH_HDR_LEN {
        return Err(FrameError::Unparsable("shorter than an Ethernet header"));
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = ETH_HDR_LEN;
    let (src, dst, proto, l4, l4_len) = match ethertype {
        ETHERTYPE_IPV4 => {
            let h = frame.get(ip..ip + IPV4_HDR_LEN).ok_or(FrameError::Unparsable("truncated IPv4 header"))?;
            let ihl = usize::from(h[0] & 0x0F) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if ihl < IPV4_HDR_LEN || total < ihl || ip + total > frame.len() {
                return Err(FrameError::Unparsable("inconsistent IPv4 lengths"));
            }
            let src = IpAddr::from(<[u8; 4]>::try_from(&h[12..16]).expect("4 bytes"));
            let dst = IpAddr::from(<[u8; 4]>::try_from(&h[16..20]).expect("4 bytes"));
            let proto = h[9];
            frame[ip + 10..ip + 12].fill(0);
            let c = checksum::ipv4_header(&frame[ip..ip + ihl]);
            frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
            (src, dst, proto, ip + ihl, total - ihl)
        }
        ETHERTYPE_IPV6 => {
            let h = frame.get(ip..ip + IPV6_HDR_LEN).ok_or(FrameError::Unparsable("truncated IPv6 header"))?;
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if ip + IPV6_HDR_LEN + plen > frame.len() {
                return Err(FrameError::Unparsable("IPv6 payload length beyond the frame"));
            }
            let src = IpAddr::from(<[u8; 16]>::try_from(&h[8..24]).expect("16 bytes"));
            let dst = IpAddr::from(<[u8; 16]>::try_from(&h[24..40]).expect("16 bytes"));
            (src, dst, h[6], ip + IPV6_HDR_LEN, plen)
        }
        _ => return Err(FrameError::Unparsable("not IPv4 or IPv6 (VLAN tags are not handled)")),
    };
    let at = match proto {
        PROTO_TCP if l4_len >= TCP_HDR_LEN => 16,
        PROTO_UDP if l4_len >= UDP_HDR_LEN => 6,
        PROTO_TCP | PROTO_UDP => return Err(FrameError::Unparsable("truncated L4 header")),
        _ => return Ok(()),
    };
    let seg = &mut frame[l4..l4 + l4_len];
    seg[at..at + 2].fill(0);
    let c = checksum::transport(src, dst, proto, seg);
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}
