//! The identity options' exact bytes (documented in `docs/identity-option.md`).
//!
//! TCP, 20 bytes, RFC 6994 experimental option:
//! ```text
//!  0      1      2      3      4        5      6      7      8 .. 11    12 .. 19
//! | 253  |  20  |  ExID (2)   | ver|flg | key id (24 bits)   | identity | MAC (8) |
//! ```
//! UDP, 45 bytes, RFC 9868 SAFE experimental option (kind 127):
//! ```text
//!  0     1    2..3   4        5     6..8    9..12     13..20  21..28  29..44
//! | 127 | 45 | ExID | ver|flg | msg | key id | identity | nonce | echo  | MAC (16) |
//! ```

/// RFC 6994 Experiment Identifier. Not IANA-registered: 0x4D49 ("MI",
/// microsegmentation identity) must be registered (first come, first served)
/// before deployment outside a lab; changing it is this one line.
pub const EXID: u16 = 0x4D49;
/// The format version of the UDP option and the layer-4 record, and the
/// TCP option's first (high nibble of byte 4).
pub const VERSION: u8 = 1;
/// Flags (low nibble of byte 4): none defined in version 1 or 2; sent as
/// zero and bound by the MAC.
pub const FLAGS: u8 = 0;

/// The TCP option's format versions: the same 20 bytes, two MACs over the
/// same 55-byte input (`docs/identity-option.md`, "The MAC"). A receiver
/// verifies both; what a sender signs with is set per peer
/// (`peers[].option_version`). The version nibble is in the MAC input, so an
/// option cannot be passed off as the other version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TcpVersion {
    /// HMAC-SHA256 (two SHA-256 compressions per MAC).
    #[default]
    Hmac = 1,
    /// One SHA-256 compression keyed through its chaining value.
    OneBlock = 2,
}

impl TcpVersion {
    /// The version of a version nibble; `None`: not one we speak
    /// (`BadVersion`).
    #[inline]
    pub const fn from_nibble(v: u8) -> Option<TcpVersion> {
        match v {
            1 => Some(TcpVersion::Hmac),
            2 => Some(TcpVersion::OneBlock),
            _ => None,
        }
    }

    /// The version a document names (`peers[].option_version`, a fleet's
    /// `settings.option_version`, a key file's); `None`: not 1 or 2.
    pub fn from_number(n: u32) -> Option<TcpVersion> {
        u8::try_from(n).ok().and_then(Self::from_nibble)
    }

    /// The number in the option (and in `peers[].option_version`).
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The version/flags byte of an option of this version.
    pub const fn ver_flags(self) -> u8 {
        (self.number() << 4) | FLAGS
    }
}

/// TCP option kind (RFC 4727 experiment 1).
pub const TCP_KIND: u8 = 253;
/// TCP option length.
pub const TCP_LEN: usize = 20;
/// Truncated MAC length in the TCP option.
pub const TCP_MAC_LEN: usize = 8;

/// UDP option kind (RFC 9868 SAFE experiment).
pub const UDP_KIND: u8 = 127;
/// UDP option length.
pub const UDP_LEN: usize = 45;
/// Truncated MAC length in the UDP option.
pub const UDP_MAC_LEN: usize = 16;

/// Byte ranges of the TCP option.
pub mod tcp_field {
    use core::ops::Range;
    pub const KIND: usize = 0;
    pub const LEN: usize = 1;
    pub const EXID: Range<usize> = 2..4;
    pub const VER_FLAGS: usize = 4;
    pub const KEY_ID: Range<usize> = 5..8;
    pub const IDENTITY: Range<usize> = 8..12;
    pub const MAC: Range<usize> = 12..20;
    /// The bytes the MAC covers as "option header".
    pub const BOUND: Range<usize> = 4..12;
}

/// Byte ranges of the UDP option.
pub mod udp_field {
    use core::ops::Range;
    pub const KIND: usize = 0;
    pub const LEN: usize = 1;
    pub const EXID: Range<usize> = 2..4;
    pub const VER_FLAGS: usize = 4;
    pub const MSG: usize = 5;
    pub const KEY_ID: Range<usize> = 6..9;
    pub const IDENTITY: Range<usize> = 9..13;
    pub const NONCE: Range<usize> = 13..21;
    pub const ECHO: Range<usize> = 21..29;
    pub const MAC: Range<usize> = 29..45;
    /// The bytes the MAC covers as "option header".
    pub const BOUND: Range<usize> = 4..29;
}

/// The version/flags byte of the UDP option and the layer-4 record.
pub const fn ver_flags() -> u8 {
    (VERSION << 4) | FLAGS
}

/// Reads a 24-bit big-endian value.
pub(crate) fn get_u24(b: &[u8]) -> u32 {
    match b {
        [a, c, d, ..] => u32::from_be_bytes([0, *a, *c, *d]),
        _ => 0,
    }
}

/// Writes a 24-bit big-endian value (the low 24 bits of `v`).
pub(crate) fn put_u24(b: &mut [u8], v: u32) {
    let x = v.to_be_bytes();
    if let Some(o) = b.get_mut(..3) {
        o.copy_from_slice(&x[1..]);
    }
}
