//! UDP datagrams (RFC 768) and the UDP options area (RFC 9868, formerly
//! draft-ietf-tsvwg-udp-options).
//!
//! ```text
//! |<------------------------- IP payload ------------------------------->|
//! | src port | dst port | length | checksum | user data | surplus area   |
//! |<----------------- UDP length ---------------------->|
//! surplus area = [0x00 if UDP length is odd] OCS(2) options...
//! ```
//!
//! The UDP checksum covers only the first `length` bytes, so legacy receivers
//! ignore the surplus area. The surplus begins with the Option Checksum (OCS),
//! 2-byte aligned relative to the UDP header (one zero byte precedes it when the
//! UDP length is odd). Our reading of the OCS: the one's-complement checksum of
//! the option bytes from the OCS to the end of the IP payload, plus a
//! pseudo-header word holding that length, so that the whole sums to `0xffff`;
//! an OCS of zero means "not computed" and is accepted. Options: EOL (0),
//! NOP (1), everything else `kind, len` (len ≥ 2) or, with len = 255, the
//! extended form `kind, 255, len16`.

use super::{checksum, Malformed};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// UDP option kinds (RFC 9868).
pub mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    /// RFC 3692-style experiment, SAFE (ignorable) range, carries an ExID.
    pub const EXP_SAFE: u8 = 127;
    /// RFC 3692-style experiment, UNSAFE range.
    pub const EXP_UNSAFE: u8 = 254;
}

/// A view over a UDP datagram plus its surplus area (the whole IP payload).
/// `new_checked` guarantees 8 ≤ UDP length ≤ buffer length.
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
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Malformed::UdpTruncated);
        }
        let ul = usize::from(self.len());
        if ul < HEADER_LEN || ul > len {
            return Err(Malformed::UdpBadLength);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    fn get_u16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.get_u16(field::SRC_PORT.start)
    }
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.get_u16(field::DST_PORT.start)
    }
    /// The UDP length field (header + user data).
    #[allow(clippy::len_without_is_empty)] // a header field, not a container's size
    #[inline]
    pub fn len(&self) -> u16 {
        self.get_u16(field::LENGTH.start)
    }
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.get_u16(field::CHECKSUM.start)
    }
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
    /// The surplus area: bytes after the UDP length within the IP payload.
    #[inline]
    pub fn surplus(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.len())..]
    }
    /// Whether the checksum is valid given the pseudo-header's unfolded sum
    /// (a zero checksum, "none", is valid for IPv4 only: the caller decides).
    #[inline]
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        let b = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::fold(pseudo + checksum::sum(b)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }
    /// The UDP length field (header + user data).
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }
    /// The user data (up to the UDP length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let ul = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..ul]
    }
    /// The surplus area (after the UDP length).
    #[inline]
    pub fn surplus_mut(&mut self) -> &mut [u8] {
        let ul = usize::from(self.len());
        &mut self.buffer.as_mut()[ul..]
    }
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }
    /// Recomputes the checksum (over the UDP length only).
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let ul = usize::from(self.len());
        let c = checksum::finish(pseudo + checksum::sum(&self.buffer.as_ref()[..ul]));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

/// A UDP header as the gateway writes one: emitted through [`Packet`]; the
/// user data and any surplus area are the caller's, written through
/// [`Packet::payload_mut`] and [`Packet::surplus_mut`] before
/// [`Packet::fill_checksum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    /// Bytes of user data (the length field is 8 more).
    pub payload_len: u16,
}

impl Repr {
    /// The UDP length field: header and user data.
    #[inline]
    pub fn udp_len(&self) -> u16 {
        HEADER_LEN as u16 + self.payload_len
    }

    /// Writes the header into `p`, checksum zero.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(self.udp_len());
        p.set_checksum(0);
    }
}

/// Where the options area sits inside a surplus area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionsArea {
    /// Alignment bytes before the OCS (0 or 1).
    pub pad: usize,
    /// The OCS value.
    pub ocs: u16,
}

/// The alignment bytes needed before the OCS for a given UDP length.
pub const fn ocs_pad(udp_len: usize) -> usize {
    udp_len & 1
}

/// Computes the OCS for `opts` (the bytes from the OCS field to the end, with
/// the OCS field itself zero).
pub fn compute_ocs(opts: &[u8]) -> u16 {
    let c = checksum::finish(checksum::sum(opts) + (opts.len() as u32 & 0xffff));
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// Checks the surplus area's framing (alignment byte, OCS presence and value)
/// and returns the option bytes after the OCS. `udp_len` is the UDP length.
pub fn options_area(surplus: &[u8], udp_len: usize) -> Result<(OptionsArea, &[u8]), Malformed> {
    let pad = ocs_pad(udp_len);
    if pad == 1 && surplus.first().is_some_and(|&b| b != 0) {
        return Err(Malformed::UdpOptionsBadAlignment);
    }
    let area = surplus.get(pad..).ok_or(Malformed::UdpOptionsTruncated)?;
    if area.len() < 2 {
        return Err(Malformed::UdpOptionsTruncated);
    }
    let ocs = u16::from_be_bytes([area[0], area[1]]);
    if ocs != 0 && checksum::fold(checksum::sum(area) + (area.len() as u32 & 0xffff)) != 0xffff {
        return Err(Malformed::UdpOptionsBadChecksum);
    }
    Ok((OptionsArea { pad, ocs }, &area[2..]))
}

/// One UDP option, borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpOption<'a> {
    EndOfList,
    Nop,
    /// An experiment (kind 127 or 254) with its 16-bit ExID and the rest.
    Experimental {
        kind: u8,
        exid: u16,
        data: &'a [u8],
    },
    /// Any other kind, with its data (after kind/length bytes).
    Other {
        kind: u8,
        data: &'a [u8],
    },
}

impl<'a> UdpOption<'a> {
    /// Parses one option at the start of `buf`; returns it and its wire length.
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<(UdpOption<'a>, usize), Malformed> {
        let kind = *buf.first().ok_or(Malformed::UdpOptionsTruncated)?;
        match kind {
            kind::EOL => return Ok((UdpOption::EndOfList, 1)),
            kind::NOP => return Ok((UdpOption::Nop, 1)),
            _ => {}
        }
        let l = *buf.get(1).ok_or(Malformed::UdpOptionsTruncated)?;
        let (len, hdr) = if l == 255 {
            let e = buf.get(2..4).ok_or(Malformed::UdpOptionsTruncated)?;
            (usize::from(u16::from_be_bytes([e[0], e[1]])), 4)
        } else {
            (usize::from(l), 2)
        };
        if len < hdr {
            return Err(Malformed::UdpOptionBadLength);
        }
        let opt = buf.get(..len).ok_or(Malformed::UdpOptionsTruncated)?;
        let data = &opt[hdr..];
        let o = match kind {
            kind::EXP_SAFE | kind::EXP_UNSAFE => match data {
                [a, b, rest @ ..] => UdpOption::Experimental { kind, exid: u16::from_be_bytes([*a, *b]), data: rest },
                _ => return Err(Malformed::UdpOptionBadLength),
            },
            _ => UdpOption::Other { kind, data },
        };
        Ok((o, len))
    }
}

/// Iterates over UDP options (after the OCS), yielding `(offset, option)`;
/// stops after EOL or at the first malformed option (yielded as an error).
pub fn options(buf: &[u8]) -> impl Iterator<Item = Result<(usize, UdpOption<'_>), Malformed>> {
    let mut off = 0usize;
    let mut done = false;
    core::iter::from_fn(move || {
        if done {
            return None;
        }
        let rest = buf.get(off..).filter(|r| !r.is_empty());
        let Some(rest) = rest else {
            done = true;
            return None;
        };
        match UdpOption::parse(rest) {
            Ok((o, len)) => {
                let at = off;
                off += len;
                if o == UdpOption::EndOfList {
                    done = true;
                }
                Some(Ok((at, o)))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surplus_and_options() {
        // 8-byte header + 3 bytes of data (odd) + pad + OCS + NOP + exp option + EOL
        let mut d = vec![0x04, 0xd2, 0x16, 0x2e, 0x00, 11, 0, 0, b'a', b'b', b'c'];
        d.push(0); // alignment
        let opts_start = d.len();
        d.extend_from_slice(&[0, 0, 1, 127, 6, 0x12, 0x34, 7, 8, 0]);
        let ocs = compute_ocs(&d[opts_start..]);
        d[opts_start..opts_start + 2].copy_from_slice(&ocs.to_be_bytes());
        let p = Packet::new_checked(&d[..]).unwrap();
        assert_eq!(p.payload(), b"abc");
        let (area, opts) = options_area(p.surplus(), 11).unwrap();
        assert_eq!(area, OptionsArea { pad: 1, ocs });
        let v: Vec<_> = options(opts).map(|r| r.unwrap().1).collect();
        assert_eq!(
            v,
            vec![
                UdpOption::Nop,
                UdpOption::Experimental { kind: 127, exid: 0x1234, data: &[7, 8] },
                UdpOption::EndOfList
            ]
        );
        let mut bad = d.clone();
        *bad.last_mut().unwrap() = 9;
        assert_eq!(
            options_area(Packet::new_checked(&bad[..]).unwrap().surplus(), 11).err(),
            Some(Malformed::UdpOptionsBadChecksum)
        );
    }

    #[test]
    fn repr_emits_what_the_view_reads() {
        let r = Repr { src_port: 5353, dst_port: 53, payload_len: 3 };
        let mut d = [0xaa_u8; 14];
        let mut p = Packet::new_unchecked(&mut d[..]);
        r.emit(&mut p);
        p.payload_mut().copy_from_slice(b"abc");
        p.surplus_mut().fill(0);
        p.fill_checksum(1234);
        let p = Packet::new_checked(&d[..]).unwrap();
        assert!(p.verify_checksum(1234));
        assert_eq!(Repr { src_port: p.src_port(), dst_port: p.dst_port(), payload_len: p.len() - 8 }, r);
        assert_eq!((p.payload(), p.surplus()), (&b"abc"[..], &[0u8; 3][..]));
    }

    #[test]
    fn extended_length_and_errors() {
        let b = [200u8, 255, 0, 6, 1, 2];
        assert_eq!(UdpOption::parse(&b), Ok((UdpOption::Other { kind: 200, data: &[1, 2] }, 6)));
        assert_eq!(UdpOption::parse(&[200, 255, 0, 3]).err(), Some(Malformed::UdpOptionBadLength));
        assert_eq!(UdpOption::parse(&[200, 9, 0]).err(), Some(Malformed::UdpOptionsTruncated));
        assert_eq!(UdpOption::parse(&[127, 3, 0]).err(), Some(Malformed::UdpOptionBadLength));
        let d = [0u8, 1, 0, 2, 0, 30, 0, 0];
        assert_eq!(Packet::new_checked(&d[..]).err(), Some(Malformed::UdpBadLength));
    }
}
