//! SYN options as real stacks lay them out, and the hook through which
//! extra options (the gateway's identity option) are added to SYNs.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::frame::{FrameError, MAX_TCP_OPTIONS};
use crate::rng::Rng;

pub const KIND_EOL: u8 = 0;
pub const KIND_NOP: u8 = 1;
pub const KIND_MSS: u8 = 2;
pub const KIND_WS: u8 = 3;
pub const KIND_SACK_PERM: u8 = 4;
pub const KIND_TS: u8 = 8;

/// Which operating system's SYN to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OsProfile {
    /// MSS, SACK_PERM, TS, NOP, WS(7): 20 bytes. TTL 64, window 64240.
    Linux,
    /// Windows 10/11: MSS, NOP, WS(8), NOP, NOP, SACK_PERM: 12 bytes.
    /// TTL 128, window 64240.
    Windows,
    /// macOS: MSS, NOP, WS(6), NOP, NOP, TS, SACK_PERM, EOL, EOL: 24 bytes.
    /// TTL 64, window 65535.
    Macos,
}

impl OsProfile {
    pub fn ttl(self) -> u8 {
        match self {
            OsProfile::Windows => 128,
            OsProfile::Linux | OsProfile::Macos => 64,
        }
    }

    pub fn syn_window(self) -> u16 {
        match self {
            OsProfile::Linux | OsProfile::Windows => 64240,
            OsProfile::Macos => 65535,
        }
    }

    /// The SYN's options, in this stack's order, for the given MSS and
    /// timestamp value (ignored by stacks that send no timestamp).
    pub fn syn_options(self, mss: u16, tsval: u32) -> Vec<u8> {
        let m = mss.to_be_bytes();
        let t = tsval.to_be_bytes();
        let ts = [KIND_TS, 10, t[0], t[1], t[2], t[3], 0, 0, 0, 0];
        let mut o = Vec::with_capacity(24);
        match self {
            OsProfile::Linux => {
                o.extend_from_slice(&[KIND_MSS, 4, m[0], m[1], KIND_SACK_PERM, 2]);
                o.extend_from_slice(&ts);
                o.extend_from_slice(&[KIND_NOP, KIND_WS, 3, 7]);
            }
            OsProfile::Windows => {
                o.extend_from_slice(&[KIND_MSS, 4, m[0], m[1], KIND_NOP, KIND_WS, 3, 8]);
                o.extend_from_slice(&[KIND_NOP, KIND_NOP, KIND_SACK_PERM, 2]);
            }
            OsProfile::Macos => {
                o.extend_from_slice(&[KIND_MSS, 4, m[0], m[1], KIND_NOP, KIND_WS, 3, 6, KIND_NOP, KIND_NOP]);
                o.extend_from_slice(&ts);
                o.extend_from_slice(&[KIND_SACK_PERM, 2, KIND_EOL, KIND_EOL]);
            }
        }
        o
    }
}

impl FromStr for OsProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "linux" => Ok(OsProfile::Linux),
            "windows" => Ok(OsProfile::Windows),
            "macos" => Ok(OsProfile::Macos),
            _ => Err(format!("unknown OS {s:?}: expected linux, windows or macos")),
        }
    }
}

impl fmt::Display for OsProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OsProfile::Linux => "linux",
            OsProfile::Windows => "windows",
            OsProfile::Macos => "macos",
        })
    }
}

/// Appends `extra` to a stack's option list: before its trailing EOLs (an
/// option after EOL would be ignored), then pads with EOL to a multiple of 4.
/// When that exceeds 40 bytes, the stack's NOP/EOL padding is dropped first.
pub fn with_extra_options(base: &[u8], extra: &[u8]) -> Result<Vec<u8>, FrameError> {
    if extra.is_empty() {
        return check_len(base.to_vec());
    }
    let mut i = 0;
    while i < extra.len() {
        match extra[i] {
            KIND_EOL | KIND_NOP => i += 1,
            _ => match extra.get(i + 1) {
                Some(&len) if len >= 2 && i + usize::from(len) <= extra.len() => i += usize::from(len),
                _ => return Err(FrameError::MalformedOptions),
            },
        }
    }
    let mut end = base.len();
    while end > 0 && base[end - 1] == KIND_EOL {
        end -= 1;
    }
    let mut o = Vec::with_capacity(MAX_TCP_OPTIONS);
    o.extend_from_slice(&base[..end]);
    o.extend_from_slice(extra);
    while o.len() % 4 != 0 {
        o.push(KIND_EOL);
    }
    if o.len() > MAX_TCP_OPTIONS {
        // As the gateway does when inserting: drop the stack's NOP and EOL
        // padding, keep its other options in order, then pad once at the end
        // (macOS's 24 bytes hold 19 real ones, so a 20-byte option still fits).
        o.clear();
        let mut i = 0;
        while i < base.len() {
            match base[i] {
                KIND_EOL => break,
                KIND_NOP => i += 1,
                _ => {
                    let n = usize::from(base.get(i + 1).copied().unwrap_or(2)).max(2);
                    o.extend_from_slice(&base[i..(i + n).min(base.len())]);
                    i += n;
                }
            }
        }
        o.extend_from_slice(extra);
        while o.len() % 4 != 0 {
            o.push(KIND_EOL);
        }
    }
    check_len(o)
}

fn check_len(o: Vec<u8>) -> Result<Vec<u8>, FrameError> {
    if o.len() > MAX_TCP_OPTIONS || !o.len().is_multiple_of(4) {
        Err(FrameError::BadOptionsLength(o.len()))
    } else {
        Ok(o)
    }
}

/// What a SYN option hook may look at: the fields an identity signature
/// could cover. The stack's own options are in `os_options`.
#[derive(Clone, Debug)]
pub struct SynInfo<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub os: OsProfile,
    pub os_options: &'a [u8],
}

/// THE EXTENSION POINT for SYNs carrying identity options.
///
/// Every SYN the generator builds passes through a hook, which returns raw
/// option bytes (kind, length, value) to append to the stack's options;
/// the builder places them, pads, checks the 40-byte limit and computes the
/// checksums afterwards. [`crate::identity::IdentitySigner`] is the hook
/// that signs SYNs with valid identity options through `dataplane::identity`
/// (`--identity-key`); this crate does no cryptography of its own.
///
/// (Code that must rewrite a whole built frame instead can do so and call
/// [`crate::frame::recompute_checksums`].)
pub trait SynOptionHook {
    fn extra_options(&mut self, syn: &SynInfo<'_>) -> Vec<u8>;
}

/// The default: SYNs exactly as the stack sends them.
pub struct NoExtraOptions;

impl SynOptionHook for NoExtraOptions {
    fn extra_options(&mut self, _: &SynInfo<'_>) -> Vec<u8> {
        Vec::new()
    }
}

/// A forged option: the given kind and total length, filled with seeded
/// random bytes. With the identity option's kind and length this makes
/// SYNs whose identity option does not verify (the verify path under
/// attack) without knowing any key.
#[derive(Clone, Debug)]
pub struct ForgedOption {
    kind: u8,
    len: u8,
    /// Fixed bytes after kind and length (e.g. an RFC 6994 ExID and a
    /// version byte), so the receiver takes the option for its own.
    prefix: Vec<u8>,
    rng: Rng,
}

/// `--forge-identity`: the identity option's kind, length, ExID and version
/// byte as `dataplane/src/identity/option.rs` defines them (kind 253, 20
/// bytes, ExID 0x4D49, version 1), then a random key id, identity and MAC.
/// Such SYNs reach the gateway's verify path and must fail it.
pub const FORGED_IDENTITY: &str = "253:20:4d4910";

impl ForgedOption {
    pub fn new(kind: u8, len: u8, seed: u64) -> Result<Self, String> {
        if kind == KIND_EOL || kind == KIND_NOP {
            return Err(format!("option kind {kind} is a single-byte option and cannot be forged with a length"));
        }
        if len < 2 {
            return Err(format!("option length {len}: must be at least 2 (kind and length bytes)"));
        }
        Ok(ForgedOption { kind, len, prefix: Vec::new(), rng: Rng::new(seed) })
    }
}

impl FromStr for ForgedOption {
    type Err = String;
    /// `KIND:LEN[:HEXPREFIX]`, e.g. `253:20` or `253:20:4d4910`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let (k, l) = match (parts.next(), parts.next()) {
            (Some(k), Some(l)) => (k, l),
            _ => return Err(format!("forged option {s:?}: expected KIND:LEN[:HEXPREFIX], e.g. 253:20")),
        };
        let kind = k.parse().map_err(|_| format!("forged option {s:?}: {k:?} is not a kind 0-255"))?;
        let len = l.parse().map_err(|_| format!("forged option {s:?}: {l:?} is not a length 2-40"))?;
        let mut f = ForgedOption::new(kind, len, 0)?;
        if let Some(hex) = parts.next() {
            if hex.len() % 2 != 0 || hex.len() / 2 + 2 > usize::from(len) {
                return Err(format!("forged option {s:?}: the prefix must be whole hex bytes that fit in the option"));
            }
            f.prefix = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| format!("forged option {s:?}: {hex:?} is not hex"))?;
        }
        if parts.next().is_some() {
            return Err(format!("forged option {s:?}: too many fields"));
        }
        Ok(f)
    }
}

impl ForgedOption {
    pub fn reseed(mut self, seed: u64) -> Self {
        self.rng = Rng::new(seed);
        self
    }
}

impl SynOptionHook for ForgedOption {
    fn extra_options(&mut self, _: &SynInfo<'_>) -> Vec<u8> {
        let mut o = vec![0u8; usize::from(self.len)];
        o[0] = self.kind;
        o[1] = self.len;
        let p = self.prefix.len();
        o[2..2 + p].copy_from_slice(&self.prefix);
        self.rng.fill(&mut o[2 + p..]);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_layouts_have_documented_lengths_and_order() {
        let l = OsProfile::Linux.syn_options(1460, 1);
        assert_eq!(l.len(), 20);
        assert_eq!((l[0], l[4], l[6], l[16], l[17]), (KIND_MSS, KIND_SACK_PERM, KIND_TS, KIND_NOP, KIND_WS));
        let w = OsProfile::Windows.syn_options(1460, 1);
        assert_eq!(w, [2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2]);
        let m = OsProfile::Macos.syn_options(1460, 1);
        assert_eq!(m.len(), 24);
        assert_eq!((m[4], m[5], m[8], m[9], m[10], m[20], m[22], m[23]), (1, 3, 1, 1, 8, 4, 0, 0));
    }

    #[test]
    fn extras_go_before_trailing_eol_and_are_padded() {
        let m = OsProfile::Macos.syn_options(1460, 1);
        let o = with_extra_options(&m, &[253, 4, 0xaa, 0xbb]).unwrap();
        assert_eq!(&o[..22], &m[..22]);
        assert_eq!(&o[22..26], &[253, 4, 0xaa, 0xbb]);
        assert_eq!(o.len(), 28);
        let l = OsProfile::Linux.syn_options(1460, 1);
        let o = with_extra_options(&l, &[253, 3, 1]).unwrap();
        assert_eq!(o.len(), 24);
        assert_eq!(o[23], KIND_EOL);
        let mut big = vec![0u8; 22];
        big[0] = 253;
        big[1] = 22;
        assert_eq!(with_extra_options(&l, &big), Err(FrameError::BadOptionsLength(44)));
        // macOS (24 bytes, 19 of them real) + a 20-byte option: padding dropped
        let mut id = vec![0u8; 20];
        id[0] = 253;
        id[1] = 20;
        let o = with_extra_options(&m, &id).unwrap();
        assert_eq!(o.len(), 40);
        assert_eq!(&o[..4], &m[..4], "MSS kept first");
        assert_eq!(&o[19..39], &id[..]);
        assert_eq!(o[39], KIND_EOL);
        assert_eq!((o[4], o[7], o[17]), (KIND_WS, KIND_TS, KIND_SACK_PERM), "NOPs gone: {o:?}");
        assert_eq!(with_extra_options(&l, &[253, 22]), Err(FrameError::MalformedOptions));
        assert_eq!(with_extra_options(&l, &[253, 1]), Err(FrameError::MalformedOptions));
    }

    #[test]
    fn forged_option_shape() {
        let mut f: ForgedOption = "253:18".parse().unwrap();
        let info = SynInfo {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.1.0.1".parse().unwrap(),
            src_port: 1,
            dst_port: 2,
            seq: 3,
            os: OsProfile::Linux,
            os_options: &[],
        };
        let a = f.extra_options(&info);
        let b = f.extra_options(&info);
        assert_eq!((a.len(), a[0], a[1]), (18, 253, 18));
        assert_ne!(a, b);
        let mut id: ForgedOption = FORGED_IDENTITY.parse().unwrap();
        let o = id.extra_options(&info);
        assert_eq!((o.len(), &o[..5]), (20, &[253u8, 20, 0x4d, 0x49, 0x10][..]));
        assert!("253:4:aabbcc".parse::<ForgedOption>().is_err());
        assert!("1:4".parse::<ForgedOption>().is_err());
        assert!("253:1".parse::<ForgedOption>().is_err());
    }
}
