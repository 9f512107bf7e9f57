//! IPv6 headers (RFC 8200) and the extension-header chain.
//!
//! ```text
//! | ver(4) | traffic class(8) | flow label(20) |
//! | payload length(16) | next header(8) | hop limit(8) |
//! | source address (16) | destination address (16) |
//! ```
//!
//! Extension headers recognised and skipped: Hop-by-Hop (0), Routing (43),
//! Fragment (44), Destination Options (60), AH (51), Mobility (135), HIP (139),
//! Shim6 (140). ESP (50) and No Next Header (59) end the walk: what follows is
//! opaque. Jumbograms (payload length 0) are refused.

use super::{checksum, Malformed};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

pub const HEADER_LEN: usize = 40;
/// Longest extension-header chain walked before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const NO_NEXT: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
}

/// A view over an IPv6 packet. `new_checked` guarantees: version 6, a full
/// fixed header, and 40 + payload length ≤ buffer length (payload length ≠ 0).
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Malformed::Ipv6Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Malformed::Ipv6BadVersion);
        }
        let pl = usize::from(self.payload_len());
        if pl == 0 {
            // a jumbogram (RFC 2675) or an empty packet: neither is ours to handle
            return Err(Malformed::Ipv6BadPayloadLen);
        }
        if HEADER_LEN + pl > b.len() {
            return Err(Malformed::Ipv6Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }
    #[inline]
    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::PAYLOAD_LEN.start], b[field::PAYLOAD_LEN.start + 1]])
    }
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    #[inline]
    pub fn src(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }
    #[inline]
    pub fn dst(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }
    /// Bytes after the fixed header up to the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension-header chain (see [`walk_ext`]).
    #[inline]
    pub fn upper_layer(&self) -> Result<UpperLayer, Malformed> {
        walk_ext(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Version 6, the traffic class and the 20-bit flow label.
    #[inline]
    pub fn set_version_class_label(&mut self, traffic_class: u8, flow_label: u32) {
        let w = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&v.to_be_bytes());
    }
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }
    #[inline]
    pub fn set_src(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }
    #[inline]
    pub fn set_dst(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }
}

/// An IPv6 fixed header without extension headers, traffic class and flow
/// label zero, as the gateway writes one: emitted through [`Packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub next_header: u8,
    pub payload_len: u16,
    pub hop_limit: u8,
}

impl Repr {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `p`.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_class_label(0, 0);
        p.set_payload_len(self.payload_len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src(self.src);
        p.set_dst(self.dst);
    }

    /// The unfolded pseudo-header sum for an upper-layer packet of `len` bytes.
    #[inline]
    pub fn pseudo_sum(&self, len: u16) -> u32 {
        checksum::pseudo_v6(&self.src, &self.dst, self.next_header, u32::from(len))
    }
}

/// Where the extension-header chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (or ESP/No-Next-Header, which end the walk).
    pub protocol: u8,
    /// Offset of the upper-layer header from the end of the fixed header.
    pub offset: usize,
    /// A Fragment header was present.
    pub fragment: bool,
    /// A Fragment header with a non-zero offset: no upper-layer header follows.
    pub later_fragment: bool,
}

/// Walks extension headers starting with `next` over `payload` (the bytes after
/// the fixed header). Every header's length is checked against `payload`.
pub fn walk_ext(mut next: u8, payload: &[u8]) -> Result<UpperLayer, Malformed> {
    use next_header::*;
    let mut off = 0usize;
    let mut fragment = false;
    let mut later_fragment = false;
    for _ in 0..=MAX_EXT_HEADERS {
        let len = match next {
            HOP_BY_HOP | ROUTING | DEST_OPTS | MOBILITY | HIP | SHIM6 => {
                let l = payload.get(off + 1).ok_or(Malformed::Ipv6ExtTruncated)?;
                (usize::from(*l) + 1) * 8
            }
            AH => {
                let l = payload.get(off + 1).ok_or(Malformed::Ipv6ExtTruncated)?;
                (usize::from(*l) + 2) * 4
            }
            FRAGMENT => {
                let h = payload.get(off..off + 8).ok_or(Malformed::Ipv6ExtTruncated)?;
                fragment = true;
                let off_m = u16::from_be_bytes([h[2], h[3]]);
                if off_m & 0xfff8 != 0 {
                    later_fragment = true;
                }
                8
            }
            _ => {
                return Ok(UpperLayer { protocol: next, offset: off, fragment, later_fragment });
            }
        };
        let h = payload.get(off..off + len).ok_or(Malformed::Ipv6ExtTruncated)?;
        next = h[0];
        off += len;
        if later_fragment {
            // nothing after a non-first fragment's header is a header
            return Ok(UpperLayer { protocol: next, offset: off, fragment, later_fragment });
        }
    }
    Err(Malformed::Ipv6TooManyExtHeaders)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(&[next, 64]);
        v.extend_from_slice(&[0x20, 1, 0xd, 0xb8].repeat(8));
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn chain() {
        // hop-by-hop (8) -> fragment (first, M=1) -> tcp
        let mut pl = vec![44, 0, 5, 2, 0, 0, 1, 0];
        pl.extend_from_slice(&[6, 0, 0x00, 0x01, 0, 0, 0, 7]);
        pl.extend_from_slice(&[0; 20]);
        let v = pkt(0, &pl);
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok(UpperLayer { protocol: 6, offset: 16, fragment: true, later_fragment: false }));
        assert_eq!(p.src()[0], 0x20);
        // a later fragment stops the walk
        let mut pl2 = vec![17, 0, 0x00, 0x08, 0, 0, 0, 7];
        pl2.extend_from_slice(&[0; 8]);
        let v2 = pkt(44, &pl2);
        let u = Packet::new_checked(&v2[..]).unwrap().upper_layer().unwrap();
        assert!(u.later_fragment && u.protocol == 17 && u.offset == 8);
    }

    #[test]
    fn repr_emits_what_the_view_reads() {
        let r = Repr { src: [0x20; 16], dst: [0xfd; 16], next_header: 17, payload_len: 8, hop_limit: 64 };
        let mut b = [0xaa_u8; 48];
        r.emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(b[..8], [0x60, 0, 0, 0, 0, 8, 17, 64]);
        let p = Packet::new_checked(&b[..]).unwrap();
        let back = Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
        };
        assert_eq!(back, r);
        assert_eq!((p.traffic_class(), p.flow_label()), (0, 0));
    }

    #[test]
    fn malformed() {
        assert_eq!(walk_ext(0, &[6, 1, 0, 0, 0, 0, 0, 0]), Err(Malformed::Ipv6ExtTruncated));
        let loop_ = [0u8, 0, 0, 0, 0, 0, 0, 0].repeat(20);
        assert_eq!(walk_ext(0, &loop_), Err(Malformed::Ipv6TooManyExtHeaders));
        let v = pkt(6, &[]);
        assert_eq!(Packet::new_checked(&v[..]).err(), Some(Malformed::Ipv6BadPayloadLen));
        let mut v = pkt(6, &[0; 4]);
        v.truncate(42);
        assert_eq!(Packet::new_checked(&v[..]).err(), Some(Malformed::Ipv6Truncated));
    }
}
