//! IPv4 headers (RFC 791), options included (skipped by IHL, walkable).
//!
//! ```text
//!  0       4       8               16      19                      31
//! |version|  IHL  |   DSCP/ECN    |          total length          |
//! |        identification         |flags|   fragment offset        |
//! |      TTL      |   protocol    |        header checksum         |
//! |                         source address                         |
//! |                      destination address                       |
//! |                    options (IHL*4 - 20 bytes)                  |
//! ```

use super::{checksum, Malformed};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

pub const HEADER_LEN: usize = 20;
/// The Don't Fragment bit of the flags/fragment-offset word.
pub const DONT_FRAG: u16 = 0x4000;

/// A view over an IPv4 packet. `new_checked` guarantees: version 4,
/// 20 ≤ IHL*4 ≤ total length ≤ buffer length. Bytes after the total length
/// (Ethernet padding) are allowed and ignored.
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
            return Err(Malformed::Ipv4Truncated);
        }
        if self.version() != 4 {
            return Err(Malformed::Ipv4BadVersion);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Malformed::Ipv4BadHeaderLen);
        }
        let tl = usize::from(self.total_len());
        if tl < hl {
            return Err(Malformed::Ipv4BadTotalLen);
        }
        if tl > b.len() {
            return Err(Malformed::Ipv4Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.get_u16(field::LENGTH.start)
    }
    #[inline]
    pub fn ident(&self) -> u16 {
        self.get_u16(field::IDENT.start)
    }
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.get_u16(field::FLG_OFF.start) & DONT_FRAG != 0
    }
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.get_u16(field::FLG_OFF.start) & 0x2000 != 0
    }
    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.get_u16(field::FLG_OFF.start) & 0x1fff) << 3
    }
    /// Whether this is any fragment (first, middle or last).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.get_u16(field::FLG_OFF.start) & 0x3fff != 0
    }
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.get_u16(field::CHECKSUM.start)
    }
    #[inline]
    pub fn src(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::SRC];
        [b[0], b[1], b[2], b[3]]
    }
    #[inline]
    pub fn dst(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::DST];
        [b[0], b[1], b[2], b[3]]
    }
    /// The options bytes (may be empty).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// The payload up to the total length (Ethernet padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
    /// Whether the header checksum is valid.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buffer.as_ref()[..self.header_len()])) == 0xffff
    }

    #[inline(always)]
    fn get_u16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline(always)]
    fn set_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    /// Version 4 and the header length (bytes, a multiple of 4 in 20..=60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }
    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        self.set_u16(field::IDENT.start, v)
    }
    /// The flags and fragment offset word (see [`DONT_FRAG`]).
    #[inline]
    pub fn set_flags_and_frag_offset(&mut self, v: u16) {
        self.set_u16(field::FLG_OFF.start, v)
    }
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }
    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }
    #[inline]
    pub fn set_src(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }
    #[inline]
    pub fn set_dst(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        self.set_u16(field::LENGTH.start, v)
    }
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM.start, v)
    }
    /// Sets the total length and updates the header checksum incrementally.
    #[inline]
    pub fn set_total_len_incremental(&mut self, v: u16) {
        let old = self.total_len();
        let c = checksum::adjust_word(self.checksum(), old, v);
        self.set_total_len(v);
        self.set_checksum(c);
    }
    /// Recomputes the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::finish(checksum::sum(&self.buffer.as_ref()[..hl]));
        self.set_checksum(c);
    }
}

/// An IPv4 header without options, as the gateway writes one: read from the
/// fields, emitted through [`Packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub protocol: u8,
    /// Bytes after the header (the total length is 20 more).
    pub payload_len: u16,
    pub ident: u16,
    pub dont_frag: bool,
    pub ttl: u8,
}

impl Repr {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `p`, its
    /// checksum included.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_and_header_len(HEADER_LEN);
        p.set_dscp_ecn(0);
        p.set_total_len(HEADER_LEN as u16 + self.payload_len);
        p.set_ident(self.ident);
        p.set_flags_and_frag_offset(if self.dont_frag { DONT_FRAG } else { 0 });
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src(self.src);
        p.set_dst(self.dst);
        p.fill_checksum();
    }

    /// The unfolded pseudo-header sum for an upper-layer segment of `len` bytes.
    #[inline]
    pub fn pseudo_sum(&self, len: u16) -> u32 {
        checksum::pseudo_v4(&self.src, &self.dst, self.protocol, len)
    }
}

/// One IPv4 option, as walked by [`options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Option<'a> {
    EndOfList,
    Nop,
    /// Any other option: type and its data (after the type/length bytes).
    Other {
        kind: u8,
        data: &'a [u8],
    },
}

/// Walks IPv4 options, validating each length.
pub fn options(mut opts: &[u8]) -> impl Iterator<Item = Result<Ipv4Option<'_>, Malformed>> {
    core::iter::from_fn(move || {
        let (&kind, rest) = opts.split_first()?;
        match kind {
            0 => {
                opts = &[];
                Some(Ok(Ipv4Option::EndOfList))
            }
            1 => {
                opts = rest;
                Some(Ok(Ipv4Option::Nop))
            }
            _ => {
                let len = match rest.first() {
                    Some(&l) => usize::from(l),
                    None => {
                        opts = &[];
                        return Some(Err(Malformed::Ipv4BadOption));
                    }
                };
                if len < 2 || len > opts.len() {
                    opts = &[];
                    return Some(Err(Malformed::Ipv4BadOption));
                }
                let data = &opts[2..len];
                opts = &opts[len..];
                Some(Ok(Ipv4Option::Other { kind, data }))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKT: [u8; 24] = [
        0x46, 0x00, 0x00, 0x18, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 0, 0, 1, 10, 0, 0, 2, 0x94, 0x04,
        0x00, 0x00, // router alert
    ];

    #[test]
    fn view_and_options() {
        let mut b = PKT;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.protocol(), 17);
        assert!(p.dont_frag() && !p.is_fragment());
        let o: Vec<_> = options(p.options()).collect();
        assert_eq!(o, vec![Ok(Ipv4Option::Other { kind: 0x94, data: &[0, 0][..] })]);
        p.set_total_len_incremental(0x18);
        assert!(p.verify_checksum());
    }

    #[test]
    fn repr_emits_what_the_view_reads() {
        let r = Repr {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            protocol: 6,
            payload_len: 20,
            ident: 0x1234,
            dont_frag: true,
            ttl: 64,
        };
        let mut b = [0xaa_u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(b[..12], [0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, b[10], b[11]]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        let back = Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: p.total_len() - HEADER_LEN as u16,
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            ttl: p.ttl(),
        };
        assert_eq!(back, r);
        assert!(!p.is_fragment() && p.header_len() == HEADER_LEN);
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut b = PKT;
        b[0] = 0x44;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Malformed::Ipv4BadHeaderLen));
        b[0] = 0x46;
        b[3] = 0x30;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Malformed::Ipv4Truncated));
        b[3] = 0x10;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Malformed::Ipv4BadTotalLen));
        b[0] = 0x66;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Malformed::Ipv4BadVersion));
        assert_eq!(options(&[7]).next(), Some(Err(Malformed::Ipv4BadOption)));
        assert_eq!(options(&[7, 9, 0]).next(), Some(Err(Malformed::Ipv4BadOption)));
    }
}
