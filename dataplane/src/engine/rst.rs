//! TCP resets the engine sends when it rejects a handshake: built in place over
//! the rejected packet's buffer, or into a fixed array owned by the engine
//! (never allocated per packet).
//!
//! A reset keeps the frame's Ethernet header and VLAN tags (MAC addresses
//! swapped when it goes back where the packet came from), and carries a fresh
//! IPv4 (20 bytes, DF, TTL 64) or IPv6 (40 bytes, hop limit 64, no extension
//! headers) header and a 20-byte TCP header without options or payload.

use crate::buf::PacketBuf;
use crate::wire::{checksum, Addr, FrameInfo};

/// Largest reset frame: Ethernet with two VLAN tags (22) + IPv6 (40) + TCP (20).
pub const MAX_RST: usize = 22 + 40 + 20;

const RST: u8 = 0x04;
const ACK: u8 = 0x10;

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
