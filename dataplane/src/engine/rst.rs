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
        RstSpec { src: info.dst, dst: info.src, sport: info.dst_port, dport: info.src_port, seq: info.ack, ack: None }
    }

    /// For a SYN-ACK: the reset towards its destination (the client), as if
    /// from the server, acknowledging the client's SYN (so a client in
    /// SYN-SENT accepts it).
    pub fn synack_to_client(info: &FrameInfo) -> RstSpec {
        RstSpec {
            src: info.src,
            dst: info.dst,
            sport: info.src_port,
            dport: info.dst_port,
            seq: info.seq.wrapping_add(1),
            ack: Some(info.ack),
        }
    }
}

/// Writes a reset into `out`, reusing `eth` (the frame's bytes before the IP
/// header: MACs, VLAN tags, ethertype). Returns its length, or `None` if the
/// addresses are not IP or `out`/`eth` have the wrong size.
pub fn write(out: &mut [u8; MAX_RST], eth: &[u8], swap_macs: bool, r: &RstSpec) -> Option<usize> {
    let l2 = emit::copy_l2(out, eth, swap_macs)?;
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
    let n = emit::tcp_packet(&mut out[l2..], ip, &TcpSegment { header, options: &[], payload: &[] })?;
    Some(l2 + n)
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
    let len = buf.len();
    if n > len || buf.trim(len - n).is_err() {
        return false;
    }
    buf.data_mut()[..n].copy_from_slice(&tmp[..n]);
    true
}
