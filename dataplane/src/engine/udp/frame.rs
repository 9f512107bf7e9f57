//! The handshake's frames: requests, responses and rejects written through
//! the frame writer ([`crate::wire::emit`]) with the signed option after the
//! UDP header, and the unverified look at a datagram's option that routes it.

use crate::buf::{NoRoom, PacketBuf};
use crate::identity::{insert_udp, option, MacKey, UdpIdentity};
use crate::wire::emit::{self, IpRepr, UdpDatagram};
use crate::wire::{ip_proto, ipv6, parse_frame, udp as wudp, Addr, FrameInfo};

/// Largest handshake frame: Ethernet with two VLAN tags (22) + IPv6 (40) +
/// UDP header (8) + alignment byte (≤ 1) + OCS (2) + the option (45) = 118.
pub const MAX_HANDSHAKE_FRAME: usize = 128;

const _: () =
    assert!(emit::MAX_L2_LEN + ipv6::HEADER_LEN + wudp::HEADER_LEN + 1 + 2 + option::UDP_LEN <= MAX_HANDSHAKE_FRAME);

/// A frame in a fixed array: the handshake builder's [`PacketBuf`].
struct ArrayBuf<'a> {
    mem: &'a mut [u8; MAX_HANDSHAKE_FRAME],
    len: usize,
}

impl PacketBuf for ArrayBuf<'_> {
    fn data(&self) -> &[u8] {
        &self.mem[..self.len]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.mem[..self.len]
    }
    fn headroom(&self) -> usize {
        0
    }
    fn tailroom(&self) -> usize {
        MAX_HANDSHAKE_FRAME - self.len
    }
    fn prepend(&mut self, _: usize) -> Result<(), NoRoom> {
        Err(NoRoom)
    }
    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.tailroom() {
            return Err(NoRoom);
        }
        self.len += n;
        Ok(())
    }
    fn adj(&mut self, _: usize) -> Result<(), NoRoom> {
        Err(NoRoom)
    }
    fn trim(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.len {
            return Err(NoRoom);
        }
        self.len -= n;
        Ok(())
    }
}

/// The fields of one handshake datagram.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeSpec {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
}

/// Builds a handshake datagram into `out`: the frame's Ethernet header and
/// VLAN tags (`eth`, MACs swapped when `swap_macs`), a fresh IPv4 (20 bytes,
/// DF, TTL 64) or IPv6 (40 bytes, hop limit 64) header, a UDP header with
/// length 8 and a valid checksum, no payload, then the signed option.
/// Returns the frame length, or `None` if `eth` or the addresses do not fit.
pub fn build_handshake(
    out: &mut [u8; MAX_HANDSHAKE_FRAME],
    eth: &[u8],
    swap_macs: bool,
    h: &HandshakeSpec,
    key: &MacKey,
    id: &UdpIdentity,
) -> Option<usize> {
    let ip = IpRepr::new(h.src, h.dst, ip_proto::UDP)?;
    let d = UdpDatagram { src_port: h.sport, dst_port: h.dport, payload: &[], surplus: &[] };
    let n = emit::udp_frame(out, eth, swap_macs, ip, &d)?;
    let mut buf = ArrayBuf { mem: out, len: n };
    let info = parse_frame(buf.data()).ok()?;
    insert_udp(&mut buf, &info, key, id).ok()?;
    Some(buf.len)
}

/// The message byte of our identity option in a UDP datagram's options area,
/// unverified (to route the datagram), or `None` without one.
pub fn udp_option_msg(frame: &[u8], info: &FrameInfo) -> Option<u8> {
    if info.udp_opts_len == 0 {
        return None;
    }
    let at = usize::from(info.udp_opts_offset);
    let surplus = frame.get(at..at + usize::from(info.udp_opts_len))?;
    let (_, opts) = wudp::options_area(surplus, usize::from(info.udp_len)).ok()?;
    wudp::options(opts).find_map(|r| match r {
        Ok((_, wudp::UdpOption::Experimental { kind: option::UDP_KIND, exid: option::EXID, data })) => {
            // data starts after kind, length and ExID: msg is option byte 5.
            Some(data.get(option::udp_field::MSG - 4).copied().unwrap_or(0))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{KeyId, UdpMsg};
    use crate::wire::builder::{fd00, from_hex};

    /// Handshake messages as the hand-written writer this one replaced made
    /// them: an untagged IPv4 request, and an IPv6 response behind two
    /// 802.1Q tags sent back (MACs swapped).
    const REQUEST_V4: &str = concat!(
        "02aabbccdd0102112233440208004500004b00004000401126820a01000a0a0200149c40138900083bf4e5037f2d4d49",
        "1001000102000003e9010203040506070800000000000000002c4ce168fb2957922cc0ad7233b2d1e8",
    );
    const RESPONSE_V6_TWO_TAGS: &str = concat!(
        "02112233440202aabbccdd018100000a8100000b86dd6000000000371140fd000000000000000000000000000002fd00",
        "000000000000000000000000000113899c400008561039107f2d4d491002000102000007d10909090909090909010203",
        "0405060708dd43b29bf8782c98c5722df8e9a278e0",
    );

    #[test]
    fn handshake_frames_are_the_bytes_they_always_were() {
        let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x02, 0x11, 0x22, 0x33, 0x44, 0x02];
        let key = MacKey::from_secret(KeyId::pairwise(1, 2), 0, &[7; 32], 0, u64::MAX);
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        let mut eth = mac.to_vec();
        eth.extend_from_slice(&[0x08, 0x00]);
        let spec =
            HandshakeSpec { src: Addr::V4([10, 1, 0, 10]), dst: Addr::V4([10, 2, 0, 20]), sport: 40000, dport: 5001 };
        let id = UdpIdentity { msg: UdpMsg::Request, identity: 1001, nonce: [1, 2, 3, 4, 5, 6, 7, 8], echo: [0; 8] };
        let n = build_handshake(&mut out, &eth, false, &spec, &key, &id).unwrap();
        assert_eq!(out[..n], from_hex(REQUEST_V4));
        let mut eth = mac.to_vec();
        eth.extend_from_slice(&[0x81, 0x00, 0x00, 10, 0x81, 0x00, 0x00, 11, 0x86, 0xdd]);
        let spec = HandshakeSpec { src: Addr::V6(fd00(2)), dst: Addr::V6(fd00(1)), sport: 5001, dport: 40000 };
        let id = UdpIdentity { msg: UdpMsg::Response, identity: 2001, nonce: [9; 8], echo: [1, 2, 3, 4, 5, 6, 7, 8] };
        let n = build_handshake(&mut out, &eth, true, &spec, &key, &id).unwrap();
        assert_eq!(out[..n], from_hex(RESPONSE_V6_TWO_TAGS));
    }
}
