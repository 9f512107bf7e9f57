//! Domain names: read in place through compression pointers ([`Name`]) and
//! copied out in a fixed-size, lowercase, uncompressed form ([`WireName`]).

use core::fmt;

use super::DnsError;

/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;
/// Longest name in wire form, length bytes and the final zero included.
pub const MAX_NAME: usize = 255;
/// Most compression pointers one name may follow. Backward-only pointers
/// already end every chain; this bounds the work (a real message needs 1-2).
pub const MAX_POINTERS: usize = 16;

/// Checks the name at `start` of `msg`: labels ≤ 63 bytes, no reserved label
/// types, pointers strictly backwards and at most [`MAX_POINTERS`], wire
/// length ≤ 255. Returns the offset just past the name's bytes at `start`
/// (after its terminating zero or its first pointer).
pub(crate) fn check(msg: &[u8], start: usize) -> Result<usize, DnsError> {
    let mut pos = start;
    let mut end = None;
    let mut len = 0usize;
    let mut hops = 0usize;
    loop {
        let b = *msg.get(pos).ok_or(DnsError::Truncated)?;
        match b & 0xc0 {
            0x00 if b == 0 => return Ok(end.unwrap_or(pos + 1)),
            0x00 => {
                let l = usize::from(b);
                len += 1 + l;
                // room must remain for the terminating zero
                if len + 1 > MAX_NAME {
                    return Err(DnsError::NameTooLong);
                }
                if pos + 1 + l > msg.len() {
                    return Err(DnsError::Truncated);
                }
                pos += 1 + l;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(DnsError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([b & 0x3f, lo]));
                if target >= pos {
                    return Err(DnsError::BadPointer);
                }
                hops += 1;
                if hops > MAX_POINTERS {
                    return Err(DnsError::TooManyPointers);
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
}

/// Skips the name at `pos` without following pointers: the offset after it,
/// or `None` if it runs past the end. For names [`check`] already accepted.
pub(crate) fn skip(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let b = *msg.get(pos)?;
        match b & 0xc0 {
            0x00 if b == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(b),
            _ => return (pos + 2 <= msg.len()).then_some(pos + 2),
        }
    }
}

/// A name inside a message that [`check`] accepted. Reading it follows the
/// same pointers; every read is still bounds-checked, so a `Name` built over
/// other bytes yields fewer labels, never a panic.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    msg: &'a [u8],
    start: usize,
}

impl<'a> Name<'a> {
    pub(crate) fn new(msg: &'a [u8], start: usize) -> Self {
        Name { msg, start }
    }

    /// The labels, first (leftmost) to last, without the root.
    pub fn labels(&self) -> Labels<'a> {
        Labels { msg: self.msg, pos: self.start, hops: 0 }
    }

    /// Where the name's first label is: its start after the pointers it
    /// begins with (bounded like every walk).
    fn first_label(&self) -> usize {
        let mut pos = self.start;
        for _ in 0..MAX_POINTERS {
            match (self.msg.get(pos), self.msg.get(pos + 1)) {
                (Some(&b), Some(&lo)) if b & 0xc0 == 0xc0 => {
                    let target = usize::from(u16::from_be_bytes([b & 0x3f, lo]));
                    if target >= pos {
                        break;
                    }
                    pos = target;
                }
                _ => break,
            }
        }
        pos
    }

    /// Whether two names are the same, ASCII case ignored (RFC 4343).
    pub fn eq_ignore_case(&self, other: &Name<'_>) -> bool {
        // A compressed owner name usually points at the question's name:
        // the same bytes, no label to compare.
        if core::ptr::eq(self.msg, other.msg) && self.first_label() == other.first_label() {
            return true;
        }
        let mut a = self.labels();
        let mut b = other.labels();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
                _ => return false,
            }
        }
    }

    /// The name copied out: lowercase, uncompressed.
    pub fn to_wire(&self) -> WireName {
        let mut w = WireName::root();
        w.len = self.write_wire(&mut w.bytes).unwrap_or(1) as u8;
        w
    }

    /// Writes the name into `out` as [`Self::to_wire`] would (lowercase,
    /// uncompressed, final zero; labels past 255 bytes dropped) and returns
    /// its length; `None`, with `out` partly written, when it does not fit.
    /// For events that carry names without a 255-byte copy in between.
    pub fn write_wire(&self, out: &mut [u8]) -> Option<usize> {
        let mut n = 0usize;
        for l in self.labels() {
            if n + 1 + l.len() + 1 > MAX_NAME {
                break;
            }
            let (len, dst) = out.get_mut(n..n + 1 + l.len())?.split_first_mut()?;
            *len = l.len() as u8;
            for (d, s) in dst.iter_mut().zip(l) {
                *d = s.to_ascii_lowercase();
            }
            n += 1 + l.len();
        }
        *out.get_mut(n)? = 0;
        Some(n + 1)
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_wire(), f)
    }
}

/// The labels of a [`Name`].
pub struct Labels<'a> {
    msg: &'a [u8],
    pos: usize,
    hops: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let b = *self.msg.get(self.pos)?;
            match b & 0xc0 {
                0x00 if b == 0 => return None,
                0x00 => {
                    let l = usize::from(b);
                    let label = self.msg.get(self.pos + 1..self.pos + 1 + l)?;
                    self.pos += 1 + l;
                    return Some(label);
                }
                0xc0 => {
                    let target = usize::from(u16::from_be_bytes([b & 0x3f, *self.msg.get(self.pos + 1)?]));
                    self.hops += 1;
                    if target >= self.pos || self.hops > MAX_POINTERS {
                        return None;
                    }
                    self.pos = target;
                }
                _ => return None,
            }
        }
    }
}

/// A name out of its message: uncompressed wire form, ASCII lowercase, in a
/// fixed 255-byte array (no allocation). Always well formed: labels of 1-63
/// bytes then a zero, at most 255 bytes in all.
#[derive(Clone, Copy)]
pub struct WireName {
    len: u8,
    bytes: [u8; MAX_NAME],
}

/// Why a name written as text was refused (policy documents, filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameTextError {
    Empty,
    EmptyLabel,
    LabelTooLong,
    NameTooLong,
}

impl fmt::Display for NameTextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameTextError::Empty => "empty name",
            NameTextError::EmptyLabel => "empty label (two dots in a row, or a leading dot)",
            NameTextError::LabelTooLong => "a label longer than 63 bytes",
            NameTextError::NameTooLong => "longer than 255 bytes in wire form",
        })
    }
}

impl WireName {
    /// The root name (`.`).
    pub const fn root() -> Self {
        WireName { len: 1, bytes: [0; MAX_NAME] }
    }

    /// A name from its text (`api.example.test`, a trailing dot allowed),
    /// lowercased. No escapes: every byte between dots is label content.
    pub fn from_text(text: &str) -> Result<Self, NameTextError> {
        let t = text.strip_suffix('.').unwrap_or(text);
        if t.is_empty() {
            return if text.is_empty() { Err(NameTextError::Empty) } else { Ok(WireName::root()) };
        }
        let mut w = WireName::root();
        let mut n = 0usize;
        for label in t.split('.') {
            let l = label.len();
            if l == 0 {
                return Err(NameTextError::EmptyLabel);
            }
            if l > MAX_LABEL {
                return Err(NameTextError::LabelTooLong);
            }
            if n + 1 + l + 1 > MAX_NAME {
                return Err(NameTextError::NameTooLong);
            }
            w.bytes[n] = l as u8;
            for (d, s) in w.bytes[n + 1..n + 1 + l].iter_mut().zip(label.bytes()) {
                *d = s.to_ascii_lowercase();
            }
            n += 1 + l;
        }
        w.bytes[n] = 0;
        w.len = (n + 1) as u8;
        Ok(w)
    }

    /// The wire form, final zero included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The wire form as a `WireName`, if it is one (for names carried in
    /// events as bytes).
    pub fn from_wire(b: &[u8]) -> Option<Self> {
        let mut pos = 0usize;
        loop {
            let l = usize::from(*b.get(pos)?);
            if l == 0 {
                break;
            }
            if l > MAX_LABEL {
                return None;
            }
            pos += 1 + l;
        }
        let n = pos + 1;
        if n > MAX_NAME {
            return None;
        }
        let mut w = WireName::root();
        for (d, s) in w.bytes[..n].iter_mut().zip(b) {
            *d = s.to_ascii_lowercase();
        }
        w.len = n as u8;
        Some(w)
    }

    /// The labels, leftmost first.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let b = self.as_bytes();
        let mut pos = 0usize;
        core::iter::from_fn(move || {
            let l = usize::from(*b.get(pos)?);
            let label = b.get(pos + 1..pos + 1 + l).filter(|_| l > 0)?;
            pos += 1 + l;
            Some(label)
        })
    }

    /// Whether `self` is `suffix` with at least one more label in front
    /// (the match of the wildcard pattern `*.suffix`).
    pub fn is_strict_subdomain_of(&self, suffix: &WireName) -> bool {
        let (me, s) = (self.as_bytes(), suffix.as_bytes());
        let mut pos = 0usize;
        while me.len().saturating_sub(pos) > s.len() {
            let Some(&l) = me.get(pos) else { return false };
            pos += 1 + usize::from(l);
        }
        pos > 0 && me.get(pos..) == Some(s)
    }
}

impl PartialEq for WireName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for WireName {}

impl core::hash::Hash for WireName {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl Default for WireName {
    fn default() -> Self {
        WireName::root()
    }
}

/// Text form: labels joined by dots, no trailing dot (`.` for the root).
/// Bytes other than letters, digits, `-`, `_` and `*` are written `\DDD`
/// (RFC 1035 §5.1), so a label holding a dot cannot pass for two labels.
impl fmt::Display for WireName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for label in self.labels() {
            if !first {
                f.write_str(".")?;
            }
            first = false;
            for &c in label {
                if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'*' {
                    fmt::Write::write_char(f, char::from(c))?;
                } else {
                    write!(f, "\\{c:03}")?;
                }
            }
        }
        if first {
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for WireName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WireName({self})")
    }
}
