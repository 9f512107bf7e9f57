//! Wire views: zero-copy, allocation-free, panic-free views over frames.
//!
//! Each protocol has a `Packet<T: AsRef<[u8]>>` view whose `new_checked`
//! validates every length once, after which accessors are infallible. Field
//! offsets live in a `mod field` per protocol. [`parse_frame`] is the one-pass
//! classifier the fast path runs on every frame.

pub mod arp;
#[doc(hidden)]
pub mod builder;
pub mod checksum;
pub mod emit;
pub mod ethernet;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod ipv4;
pub mod ipv6;
pub mod peek;
pub mod tcp;
pub mod udp;

pub use frame::{parse_frame, Addr, FrameInfo, L3Kind, L4Kind};

use core::fmt;

/// IP protocol numbers the engine recognises.
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// ICMPv6 message types the engine recognises.
pub mod icmpv6 {
    /// Neighbour discovery (RFC 4861): router solicitation and
    /// advertisement, neighbour solicitation and advertisement, redirect.
    pub const ROUTER_SOLICITATION: u8 = 133;
    pub const REDIRECT: u8 = 137;

    /// Whether an ICMPv6 message of type `t` is neighbour discovery.
    #[inline]
    pub fn is_neighbour_discovery(t: u8) -> bool {
        (ROUTER_SOLICITATION..=REDIRECT).contains(&t)
    }
}

/// Why a frame could not be parsed. Each variant is one drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    FrameTooLong,
    EthernetTruncated,
    VlanTruncated,
    TooManyVlanTags,
    ArpTruncated,
    Ipv4Truncated,
    Ipv4BadVersion,
    Ipv4BadHeaderLen,
    Ipv4BadTotalLen,
    Ipv4BadOption,
    Ipv6Truncated,
    Ipv6BadVersion,
    Ipv6BadPayloadLen,
    Ipv6ExtTruncated,
    Ipv6TooManyExtHeaders,
    TcpTruncated,
    TcpBadDataOffset,
    TcpOptionTruncated,
    TcpOptionBadLength,
    UdpTruncated,
    UdpBadLength,
    UdpOptionsTruncated,
    UdpOptionBadLength,
    UdpOptionsBadChecksum,
    UdpOptionsBadAlignment,
    IcmpTruncated,
}

impl Malformed {
    pub const ALL: [Malformed; 26] = [
        Malformed::FrameTooLong,
        Malformed::EthernetTruncated,
        Malformed::VlanTruncated,
        Malformed::TooManyVlanTags,
        Malformed::ArpTruncated,
        Malformed::Ipv4Truncated,
        Malformed::Ipv4BadVersion,
        Malformed::Ipv4BadHeaderLen,
        Malformed::Ipv4BadTotalLen,
        Malformed::Ipv4BadOption,
        Malformed::Ipv6Truncated,
        Malformed::Ipv6BadVersion,
        Malformed::Ipv6BadPayloadLen,
        Malformed::Ipv6ExtTruncated,
        Malformed::Ipv6TooManyExtHeaders,
        Malformed::TcpTruncated,
        Malformed::TcpBadDataOffset,
        Malformed::TcpOptionTruncated,
        Malformed::TcpOptionBadLength,
        Malformed::UdpTruncated,
        Malformed::UdpBadLength,
        Malformed::UdpOptionsTruncated,
        Malformed::UdpOptionBadLength,
        Malformed::UdpOptionsBadChecksum,
        Malformed::UdpOptionsBadAlignment,
        Malformed::IcmpTruncated,
    ];

    /// A stable snake_case name for counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Malformed::FrameTooLong => "frame_too_long",
            Malformed::EthernetTruncated => "ethernet_truncated",
            Malformed::VlanTruncated => "vlan_truncated",
            Malformed::TooManyVlanTags => "too_many_vlan_tags",
            Malformed::ArpTruncated => "arp_truncated",
            Malformed::Ipv4Truncated => "ipv4_truncated",
            Malformed::Ipv4BadVersion => "ipv4_bad_version",
            Malformed::Ipv4BadHeaderLen => "ipv4_bad_header_len",
            Malformed::Ipv4BadTotalLen => "ipv4_bad_total_len",
            Malformed::Ipv4BadOption => "ipv4_bad_option",
            Malformed::Ipv6Truncated => "ipv6_truncated",
            Malformed::Ipv6BadVersion => "ipv6_bad_version",
            Malformed::Ipv6BadPayloadLen => "ipv6_bad_payload_len",
            Malformed::Ipv6ExtTruncated => "ipv6_ext_truncated",
            Malformed::Ipv6TooManyExtHeaders => "ipv6_too_many_ext_headers",
            Malformed::TcpTruncated => "tcp_truncated",
            Malformed::TcpBadDataOffset => "tcp_bad_data_offset",
            Malformed::TcpOptionTruncated => "tcp_option_truncated",
            Malformed::TcpOptionBadLength => "tcp_option_bad_length",
            Malformed::UdpTruncated => "udp_truncated",
            Malformed::UdpBadLength => "udp_bad_length",
            Malformed::UdpOptionsTruncated => "udp_options_truncated",
            Malformed::UdpOptionBadLength => "udp_option_bad_length",
            Malformed::UdpOptionsBadChecksum => "udp_options_bad_checksum",
            Malformed::UdpOptionsBadAlignment => "udp_options_bad_alignment",
            Malformed::IcmpTruncated => "icmp_truncated",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed frame: {}", self.name())
    }
}

impl std::error::Error for Malformed {}
