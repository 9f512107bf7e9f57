//! TCP segments (RFC 9293) and their options.
//!
//! ```text
//! |        source port            |       destination port        |
//! |                        sequence number                        |
//! |                     acknowledgment number                     |
//! | doff  | rsvd  |C|E|U|A|P|R|S|F|            window             |
//! |           checksum            |        urgent pointer         |
//! |                  options (doff*4 - 20 bytes)                  |
//! ```
//!
//! The view is over exactly one segment (the IP payload): the caller slices off
//! Ethernet padding using the IP length.

use super::{checksum, Malformed};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    /// Data offset (high nibble) + reserved + flags: one 16-bit word.
    pub const DOFF_FLAGS: Range<usize> = 12..14;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

pub const HEADER_LEN: usize = 20;
/// The most option bytes a header can carry (data offset 15).
pub const MAX_OPTIONS_LEN: usize = 40;
/// Offset of the data-offset/flags word (for incremental checksums).
pub const DOFF_FLAGS_OFFSET: usize = field::DOFF_FLAGS.start;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// TCP flag bits (low byte of the flags word).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// Option kinds.
pub mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
    pub const MPTCP: u8 = 30;
    pub const FAST_OPEN: u8 = 34;
    /// RFC 4727 experiment kinds, shared by ExID (RFC 6994).
    pub const EXP1: u8 = 253;
    pub const EXP2: u8 = 254;
}

/// A view over a TCP segment. `new_checked` guarantees 20 ≤ doff*4 ≤ len.
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
            return Err(Malformed::TcpTruncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > len {
            return Err(Malformed::TcpBadDataOffset);
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
    #[inline(always)]
    fn get_u32(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.get_u16(field::SRC_PORT.start)
    }
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.get_u16(field::DST_PORT.start)
    }
    #[inline]
    pub fn seq(&self) -> u32 {
        self.get_u32(field::SEQ.start)
    }
    #[inline]
    pub fn ack(&self) -> u32 {
        self.get_u32(field::ACK.start)
    }
    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DOFF_FLAGS.start] >> 4) * 4
    }
    #[inline]
    pub fn doff_flags_word(&self) -> u16 {
        self.get_u16(field::DOFF_FLAGS.start)
    }
    /// The eight classic flag bits (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }
    #[inline]
    pub fn ack_flag(&self) -> bool {
        self.flags() & flags::ACK != 0
    }
    #[inline]
    pub fn window(&self) -> u16 {
        self.get_u16(field::WINDOW.start)
    }
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.get_u16(field::CHECKSUM.start)
    }
    #[inline]
    pub fn urgent(&self) -> u16 {
        self.get_u16(field::URGENT.start)
    }
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// Whether the checksum is valid given the pseudo-header's unfolded sum.
    #[inline]
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        checksum::fold(pseudo + checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline(always)]
    fn set_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    #[inline(always)]
    fn set_u32(&mut self, at: usize, v: u32) {
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16(field::SRC_PORT.start, v)
    }
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16(field::DST_PORT.start, v)
    }
    #[inline]
    pub fn set_seq(&mut self, v: u32) {
        self.set_u32(field::SEQ.start, v)
    }
    #[inline]
    pub fn set_ack(&mut self, v: u32) {
        self.set_u32(field::ACK.start, v)
    }
    /// The data offset (header length in bytes, a multiple of 4 in 20..=60)
    /// and the eight flag bits; the reserved bits are cleared.
    #[inline]
    pub fn set_header_len_and_flags(&mut self, len: usize, flags: u8) {
        self.set_u16(field::DOFF_FLAGS.start, (((len / 4) as u16) << 12) | u16::from(flags))
    }
    #[inline]
    pub fn set_window(&mut self, v: u16) {
        self.set_u16(field::WINDOW.start, v)
    }
    #[inline]
    pub fn set_urgent(&mut self, v: u16) {
        self.set_u16(field::URGENT.start, v)
    }
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM.start, v)
    }
    /// Sets the data offset (in bytes; a multiple of 4 in 20..=60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buffer.as_mut();
        b[field::DOFF_FLAGS.start] = (b[field::DOFF_FLAGS.start] & 0x0f) | (((len / 4) as u8) << 4);
    }
    /// Recomputes the checksum from scratch given the pseudo-header's sum.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let c = checksum::finish(pseudo + checksum::sum(self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

/// A TCP header as the gateway writes one (urgent pointer zero): emitted
/// through [`Packet`]; options and payload are the caller's, written through
/// [`Packet::options_mut`] and [`Packet::payload_mut`] before
/// [`Packet::fill_checksum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// See [`flags`].
    pub flags: u8,
    pub window: u16,
    /// Bytes of options (a multiple of 4, at most [`MAX_OPTIONS_LEN`]).
    pub options_len: usize,
}

impl Repr {
    /// The header length: 20 bytes and the options.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len
    }

    /// Writes the fixed header into `p` (the whole segment: header, options,
    /// payload), checksum zero.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq(self.seq);
        p.set_ack(self.ack);
        p.set_header_len_and_flags(self.header_len(), self.flags);
        p.set_window(self.window);
        p.set_checksum(0);
        p.set_urgent(0);
    }
}

/// A parsed TCP option, borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    EndOfList,
    Nop,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    /// SACK blocks, raw (a multiple of 8 bytes: left/right edge pairs).
    Sack(&'a [u8]),
    Timestamp {
        tsval: u32,
        tsecr: u32,
    },
    /// TCP Fast Open (RFC 7413): the cookie (empty for a cookie request).
    FastOpen(&'a [u8]),
    /// Multipath TCP (RFC 8684): subtype (high nibble of the third byte) and the
    /// option's bytes after kind and length.
    Mptcp {
        subtype: u8,
        data: &'a [u8],
    },
    /// RFC 6994 experimental option (kind 253/254) with its 16-bit ExID and the
    /// bytes after the ExID.
    Experimental {
        kind: u8,
        exid: u16,
        data: &'a [u8],
    },
    /// Any other kind, with the bytes after kind and length.
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl<'a> TcpOption<'a> {
    /// Parses one option at the start of `buf`; returns it and its wire length.
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<(TcpOption<'a>, usize), Malformed> {
        let kind = *buf.first().ok_or(Malformed::TcpOptionTruncated)?;
        match kind {
            kind::EOL => return Ok((TcpOption::EndOfList, 1)),
            kind::NOP => return Ok((TcpOption::Nop, 1)),
            _ => {}
        }
        let len = usize::from(*buf.get(1).ok_or(Malformed::TcpOptionTruncated)?);
        if len < 2 {
            return Err(Malformed::TcpOptionBadLength);
        }
        let opt = buf.get(..len).ok_or(Malformed::TcpOptionTruncated)?;
        let data = &opt[2..];
        let bad = Err(Malformed::TcpOptionBadLength);
        let o = match kind {
            kind::MSS => match data {
                [a, b] => TcpOption::MaxSegmentSize(u16::from_be_bytes([*a, *b])),
                _ => return bad,
            },
            kind::WINDOW_SCALE => match data {
                [s] => TcpOption::WindowScale(*s),
                _ => return bad,
            },
            kind::SACK_PERMITTED => match data {
                [] => TcpOption::SackPermitted,
                _ => return bad,
            },
            kind::SACK => {
                if data.is_empty() || data.len() % 8 != 0 {
                    return bad;
                }
                TcpOption::Sack(data)
            }
            kind::TIMESTAMP => match data {
                [a, b, c, d, e, f, g, h] => TcpOption::Timestamp {
                    tsval: u32::from_be_bytes([*a, *b, *c, *d]),
                    tsecr: u32::from_be_bytes([*e, *f, *g, *h]),
                },
                _ => return bad,
            },
            kind::FAST_OPEN => {
                if !(data.is_empty() || (4..=16).contains(&data.len())) {
                    return bad;
                }
                TcpOption::FastOpen(data)
            }
            kind::MPTCP => match data.first() {
                Some(s) => TcpOption::Mptcp { subtype: s >> 4, data },
                None => return bad,
            },
            kind::EXP1 | kind::EXP2 => match data {
                [a, b, rest @ ..] => TcpOption::Experimental { kind, exid: u16::from_be_bytes([*a, *b]), data: rest },
                _ => return bad,
            },
            _ => TcpOption::Unknown { kind, data },
        };
        Ok((o, len))
    }

    /// The option's wire length.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::Nop => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(d) | TcpOption::FastOpen(d) => 2 + d.len(),
            TcpOption::Timestamp { .. } => 10,
            TcpOption::Mptcp { data, .. } | TcpOption::Unknown { data, .. } => 2 + data.len(),
            TcpOption::Experimental { data, .. } => 4 + data.len(),
        }
    }

    /// Writes the option at the start of `buf`; returns the bytes written, or
    /// `None` when `buf` is too short (or the option too long for a length byte).
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len)?;
        let len8 = u8::try_from(len).ok()?;
        match *self {
            TcpOption::EndOfList => out[0] = kind::EOL,
            TcpOption::Nop => out[0] = kind::NOP,
            TcpOption::MaxSegmentSize(m) => {
                out[..2].copy_from_slice(&[kind::MSS, 4]);
                out[2..].copy_from_slice(&m.to_be_bytes());
            }
            TcpOption::WindowScale(s) => out.copy_from_slice(&[kind::WINDOW_SCALE, 3, s]),
            TcpOption::SackPermitted => out.copy_from_slice(&[kind::SACK_PERMITTED, 2]),
            TcpOption::Sack(d) => {
                out[..2].copy_from_slice(&[kind::SACK, len8]);
                out[2..].copy_from_slice(d);
            }
            TcpOption::Timestamp { tsval, tsecr } => {
                out[..2].copy_from_slice(&[kind::TIMESTAMP, 10]);
                out[2..6].copy_from_slice(&tsval.to_be_bytes());
                out[6..].copy_from_slice(&tsecr.to_be_bytes());
            }
            TcpOption::FastOpen(d) => {
                out[..2].copy_from_slice(&[kind::FAST_OPEN, len8]);
                out[2..].copy_from_slice(d);
            }
            TcpOption::Mptcp { data, .. } => {
                out[..2].copy_from_slice(&[kind::MPTCP, len8]);
                out[2..].copy_from_slice(data);
            }
            TcpOption::Experimental { kind: k, exid, data } => {
                out[..2].copy_from_slice(&[k, len8]);
                out[2..4].copy_from_slice(&exid.to_be_bytes());
                out[4..].copy_from_slice(data);
            }
            TcpOption::Unknown { kind: k, data } => {
                out[..2].copy_from_slice(&[k, len8]);
                out[2..].copy_from_slice(data);
            }
        }
        Some(len)
    }
}

/// The kind and wire length of the option at the start of `buf`, checked
/// exactly as [`TcpOption::parse`] checks it (the same errors for the same
/// bytes: a unit test compares the two over every kind, length byte and
/// buffer length up to 48), without building the option. For the walks that
/// only look for one kind (the identity option's scans on every SYN).
#[inline(always)]
pub fn option_extent(buf: &[u8]) -> Result<(u8, usize), Malformed> {
    let kind = *buf.first().ok_or(Malformed::TcpOptionTruncated)?;
    if kind == kind::EOL || kind == kind::NOP {
        return Ok((kind, 1));
    }
    let len = usize::from(*buf.get(1).ok_or(Malformed::TcpOptionTruncated)?);
    if len < 2 {
        return Err(Malformed::TcpOptionBadLength);
    }
    if len > buf.len() {
        return Err(Malformed::TcpOptionTruncated);
    }
    let data = len - 2;
    let ok = match kind {
        kind::MSS => data == 2,
        kind::WINDOW_SCALE => data == 1,
        kind::SACK_PERMITTED => data == 0,
        kind::SACK => data != 0 && data % 8 == 0,
        kind::TIMESTAMP => data == 8,
        kind::FAST_OPEN => data == 0 || (4..=16).contains(&data),
        kind::MPTCP => data >= 1,
        kind::EXP1 | kind::EXP2 => data >= 2,
        _ => true,
    };
    if ok {
        Ok((kind, len))
    } else {
        Err(Malformed::TcpOptionBadLength)
    }
}

/// Iterates over the options in `buf`, yielding `(offset, option)`. Stops after
/// an End-of-List (the rest is padding) or at the first malformed option, which
/// is yielded as an error.
pub fn options(buf: &[u8]) -> Options<'_> {
    Options { buf, off: 0, done: false }
}

#[derive(Debug, Clone)]
pub struct Options<'a> {
    buf: &'a [u8],
    off: usize,
    done: bool,
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(usize, TcpOption<'a>), Malformed>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.buf.get(self.off..).filter(|r| !r.is_empty());
        let Some(rest) = rest else {
            self.done = true;
            return None;
        };
        match TcpOption::parse(rest) {
            Ok((o, len)) => {
                let at = self.off;
                self.off += len;
                if o == TcpOption::EndOfList {
                    self.done = true;
                }
                Some(Ok((at, o)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn option_extent_checks_what_parse_checks() {
        let mut buf = [0u8; 48];
        for kind in 0..=255u8 {
            for len_byte in 0..=48u8 {
                for n in 0..=48usize {
                    buf[0] = kind;
                    buf[1] = len_byte;
                    let b = &buf[..n];
                    // (an option's `buffer_len` is its wire length: the walks count with either)
                    let parsed = TcpOption::parse(b).map(|(o, l)| (kind, l, o.buffer_len()));
                    let extent = option_extent(b).map(|(k, l)| (k, l, l));
                    assert_eq!(extent, parsed, "kind {kind} length byte {len_byte} buffer {n}");
                }
            }
        }
    }

    use super::*;

    // Linux SYN options: MSS 1460, SACK_PERM, TS, NOP, WS 7
    const LINUX: [u8; 20] = [2, 4, 5, 180, 4, 2, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0, 1, 3, 3, 7];

    #[test]
    fn parse_emit_round_trip() {
        let opts: Vec<_> = options(&LINUX).map(|r| r.unwrap().1).collect();
        assert_eq!(
            opts,
            vec![
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamp { tsval: 0x010203, tsecr: 0 },
                TcpOption::Nop,
                TcpOption::WindowScale(7),
            ]
        );
        let mut out = [0u8; 20];
        let mut at = 0;
        for o in &opts {
            at += o.emit(&mut out[at..]).unwrap();
        }
        assert_eq!(out, LINUX);
    }

    #[test]
    fn other_kinds() {
        let b = [34, 10, 1, 2, 3, 4, 5, 6, 7, 8, 30, 4, 0x10, 1, 253, 6, 0xf9, 0x89, 9, 9, 77, 3, 1, 0, 99];
        let opts: Vec<_> = options(&b).map(|r| r.unwrap().1).collect();
        assert_eq!(opts[0], TcpOption::FastOpen(&[1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(opts[1], TcpOption::Mptcp { subtype: 1, data: &[0x10, 1] });
        assert_eq!(opts[2], TcpOption::Experimental { kind: 253, exid: 0xf989, data: &[9, 9] });
        assert_eq!(opts[3], TcpOption::Unknown { kind: 77, data: &[1] });
        assert_eq!(opts[4], TcpOption::EndOfList);
        assert_eq!(opts.len(), 5);
        let mut out = [0u8; 10];
        for o in &opts[..4] {
            let n = o.emit(&mut out).unwrap();
            assert_eq!(TcpOption::parse(&out[..n]).unwrap(), (*o, n));
        }
    }

    #[test]
    fn malformed_options() {
        for bad in [&[2u8, 3, 0][..], &[2, 1], &[8, 10, 0], &[5, 6, 0, 0, 0, 0], &[34, 3, 0], &[253, 3, 0], &[3]] {
            let r: Vec<_> = options(bad).collect();
            assert!(r.last().unwrap().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repr_emits_what_the_view_reads() {
        let r = Repr {
            src_port: 443,
            dst_port: 40000,
            seq: 7,
            ack: 0x0102_0304,
            flags: flags::RST | flags::ACK,
            window: 0xfaf0,
            options_len: 4,
        };
        let mut s = [0xaa_u8; 26];
        let mut p = Packet::new_unchecked(&mut s[..]);
        r.emit(&mut p);
        p.options_mut().copy_from_slice(&[2, 4, 5, 180]);
        p.payload_mut().copy_from_slice(b"hi");
        p.fill_checksum(99);
        let p = Packet::new_checked(&s[..]).unwrap();
        assert!(p.verify_checksum(99));
        let back = Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq(),
            ack: p.ack(),
            flags: p.flags(),
            window: p.window(),
            options_len: p.options().len(),
        };
        assert_eq!(back, r);
        assert_eq!((p.doff_flags_word(), p.urgent(), p.payload()), (0x6014, 0, &b"hi"[..]));
    }

    #[test]
    fn view() {
        let mut s = [0u8; 24];
        s[12] = 0x60;
        s[13] = flags::SYN;
        s[20..24].copy_from_slice(&[2, 4, 5, 180]);
        let mut p = Packet::new_checked(&mut s[..]).unwrap();
        assert!(p.syn() && !p.ack_flag());
        assert_eq!(p.options(), &[2, 4, 5, 180]);
        p.fill_checksum(1234);
        assert!(p.verify_checksum(1234));
        s[12] = 0x70;
        assert_eq!(Packet::new_checked(&s[..]).err(), Some(Malformed::TcpBadDataOffset));
        assert_eq!(Packet::new_checked(&s[..19]).err(), Some(Malformed::TcpTruncated));
    }
}
