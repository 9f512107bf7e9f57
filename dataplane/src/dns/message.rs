//! A DNS message: header, question, answer records.
//!
//! ```text
//! | id | flags | qdcount | ancount | nscount | arcount |   12 bytes
//! | question: name, qtype, qclass                     |
//! | answer RRs | authority RRs | additional RRs       |
//! RR = name, type(2), class(2), ttl(4), rdlength(2), rdata
//! ```

use super::name::{self, Name};
use super::{rtype, DnsError, CLASS_IN};

mod field {
    use core::ops::Range;
    pub const ID: Range<usize> = 0..2;
    pub const FLAGS: Range<usize> = 2..4;
    pub const QDCOUNT: Range<usize> = 4..6;
    pub const ANCOUNT: Range<usize> = 6..8;
    pub const NSCOUNT: Range<usize> = 8..10;
    pub const ARCOUNT: Range<usize> = 10..12;
}

pub const HEADER_LEN: usize = 12;
/// Smallest question: a root name (1), type and class (4).
const MIN_QUESTION: usize = 5;
/// Smallest record: a root name (1), type, class, TTL, rdlength (10).
const MIN_RECORD: usize = 11;
/// Type, class, TTL and rdlength after a record's name.
const RR_FIXED: usize = 10;

/// The header's id and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
}

impl Header {
    /// A response (QR set), not a query.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }
    /// Truncated (TC): the answer did not fit; the client retries over TCP.
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    pub fn authoritative(&self) -> bool {
        self.flags & 0x0400 != 0
    }
    /// The response code (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ...).
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
}

/// The one question.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub name: Name<'a>,
    pub qtype: u16,
    pub qclass: u16,
}

/// A message [`Message::parse`] accepted.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    question_end: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[h, l]) => u16::from_be_bytes([h, l]),
        _ => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// The header and the question checked: the three sections' record counts
/// (which the length can hold) and where the question ends.
fn check_head(bytes: &[u8]) -> Result<([usize; 3], usize), DnsError> {
    if bytes.len() < HEADER_LEN {
        return Err(DnsError::HeaderTruncated);
    }
    if be16(bytes, field::QDCOUNT.start) != 1 {
        return Err(DnsError::QuestionCount);
    }
    let records = [field::ANCOUNT, field::NSCOUNT, field::ARCOUNT].map(|f| usize::from(be16(bytes, f.start)));
    let least = HEADER_LEN + MIN_QUESTION + (records[0] + records[1] + records[2]) * MIN_RECORD;
    if least > bytes.len() {
        return Err(DnsError::CountsTooLarge);
    }
    let question_end = name::check(bytes, HEADER_LEN)? + 4;
    if question_end > bytes.len() {
        return Err(DnsError::Truncated);
    }
    Ok((records, question_end))
}

impl<'a> Message<'a> {
    /// Validates the whole message once: header, exactly one question,
    /// counts the length can hold, then every record of the three sections
    /// (name, fixed part, data in bounds; A data 4 bytes, AAAA 16, a CNAME's
    /// data exactly one name). Records of other types, and EDNS0's OPT in the
    /// additional section, are checked for shape and otherwise skipped.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DnsError> {
        let (records, question_end) = check_head(bytes)?;
        let mut pos = question_end;
        for (section, &count) in records.iter().enumerate() {
            for _ in 0..count {
                pos = check_record(bytes, pos, section == 0)?;
            }
        }
        Ok(Message { bytes, question_end })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn header(&self) -> Header {
        Header { id: be16(self.bytes, field::ID.start), flags: be16(self.bytes, field::FLAGS.start) }
    }

    pub fn question(&self) -> Question<'a> {
        let e = self.question_end;
        Question {
            name: Name::new(self.bytes, HEADER_LEN),
            qtype: be16(self.bytes, e - 4),
            qclass: be16(self.bytes, e - 2),
        }
    }

    /// Number of answer records.
    pub fn answer_count(&self) -> u16 {
        be16(self.bytes, field::ANCOUNT.start)
    }

    /// The answer section's records, in message order.
    pub fn answers(&self) -> Answers<'a> {
        Answers { msg: self.bytes, pos: self.question_end, left: self.answer_count() }
    }
}

impl<'a> Message<'a> {
    /// [`Self::parse`] and [`Self::walk_chain`] in one walk: validates the
    /// whole message as `parse` does and, as it goes, hands each answer
    /// record to `each` with whether it is on the chain from the question.
    /// `each` is called before the rest of the message is checked: what it
    /// was handed may be acted on only when this returns `Ok` (the engine
    /// fills its event as it goes and learns after).
    pub fn parse_walk(bytes: &'a [u8], mut each: impl FnMut(&Record<'a>, bool)) -> Result<Self, DnsError> {
        let (records, question_end) = check_head(bytes)?;
        let mut chain = [Name::new(bytes, HEADER_LEN); MAX_CHAIN];
        let mut len = 1usize;
        let mut pos = question_end;
        for _ in 0..records[0] {
            let (end, r) = read_record(bytes, pos)?;
            pos = end;
            let on = chain[..len].iter().any(|n| n.eq_ignore_case(&r.name));
            if let (true, RData::Cname(target)) = (on, r.data) {
                if len < MAX_CHAIN {
                    chain[len] = target;
                    len += 1;
                }
            }
            each(&r, on);
        }
        for _ in 0..records[1] + records[2] {
            pos = check_record(bytes, pos, false)?;
        }
        Ok(Message { bytes, question_end })
    }
}

/// Checks one answer record at `pos` as [`check_record`] does and reads it;
/// returns the offset after it and the record.
fn read_record(b: &[u8], pos: usize) -> Result<(usize, Record<'_>), DnsError> {
    let at = name::check(b, pos)?;
    if at + RR_FIXED > b.len() {
        return Err(DnsError::Truncated);
    }
    let (ty, class) = (be16(b, at), be16(b, at + 2));
    let data = at + RR_FIXED;
    let end = data + usize::from(be16(b, at + 8));
    let rd = b.get(data..end).ok_or(DnsError::Truncated)?;
    let rdata = match (ty, class) {
        (rtype::A, CLASS_IN) => RData::A(rd.try_into().map_err(|_| DnsError::BadRdata)?),
        (rtype::AAAA, CLASS_IN) => RData::Aaaa(rd.try_into().map_err(|_| DnsError::BadRdata)?),
        (rtype::CNAME, CLASS_IN) => {
            if name::check(b, data).map_err(|_| DnsError::BadRdata)? != end {
                return Err(DnsError::BadRdata);
            }
            RData::Cname(Name::new(b, data))
        }
        _ => RData::Other { rtype: ty },
    };
    Ok((end, Record { name: Name::new(b, pos), class, ttl: be32(b, at + 4), data: rdata }))
}

/// Checks one record at `pos`; returns the offset after it.
fn check_record(b: &[u8], pos: usize, answer: bool) -> Result<usize, DnsError> {
    let at = name::check(b, pos)?;
    if at + RR_FIXED > b.len() {
        return Err(DnsError::Truncated);
    }
    let (ty, class) = (be16(b, at), be16(b, at + 2));
    let rdlen = usize::from(be16(b, at + 8));
    let data = at + RR_FIXED;
    let end = data + rdlen;
    if end > b.len() {
        return Err(DnsError::Truncated);
    }
    if answer && class == CLASS_IN {
        let ok = match ty {
            rtype::A => rdlen == 4,
            rtype::AAAA => rdlen == 16,
            rtype::CNAME => name::check(b, data).map_err(|_| DnsError::BadRdata)? == end,
            _ => true,
        };
        if !ok {
            return Err(DnsError::BadRdata);
        }
    }
    Ok(end)
}

/// What an answer record holds.
#[derive(Debug, Clone, Copy)]
pub enum RData<'a> {
    A([u8; 4]),
    Aaaa([u8; 16]),
    Cname(Name<'a>),
    /// Any other type or class: skipped.
    Other {
        rtype: u16,
    },
}

/// One answer record.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub name: Name<'a>,
    pub class: u16,
    pub ttl: u32,
    pub data: RData<'a>,
}

/// The answer records of a [`Message`]. Reads what `parse` checked; every
/// read is still bounds-checked and ends the iteration rather than panic.
pub struct Answers<'a> {
    msg: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> Iterator for Answers<'a> {
    type Item = Record<'a>;
    fn next(&mut self) -> Option<Record<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let b = self.msg;
        let start = self.pos;
        let at = name::skip(b, start)?;
        let data = at + RR_FIXED;
        let end = data + usize::from(be16(b, at + 8));
        let rd = b.get(data..end)?;
        self.pos = end;
        let (ty, class) = (be16(b, at), be16(b, at + 2));
        let data = match (ty, class, rd.len()) {
            (rtype::A, CLASS_IN, 4) => RData::A([rd[0], rd[1], rd[2], rd[3]]),
            (rtype::AAAA, CLASS_IN, 16) => RData::Aaaa(rd.try_into().ok()?),
            (rtype::CNAME, CLASS_IN, _) => RData::Cname(Name::new(b, data)),
            _ => RData::Other { rtype: ty },
        };
        Some(Record { name: Name::new(b, start), class, ttl: be32(b, at + 4), data })
    }
}

/// Longest CNAME chain followed from the question (further links are not
/// followed and their addresses are not on the chain).
pub const MAX_CHAIN: usize = 8;

impl<'a> Message<'a> {
    /// Walks the answers in order, telling for each whether it answers the
    /// question: its owner is the question's name or the target of a CNAME
    /// already on the chain (RFC 1034 §3.6.2 puts the chain in order). A
    /// record whose owner is not on the chain (a name nobody asked about) is
    /// reported with `false` and must not be believed.
    pub fn walk_chain(&self, mut each: impl FnMut(&Record<'a>, bool)) {
        let q = self.question().name;
        let mut chain = [q; MAX_CHAIN];
        let mut len = 1usize;
        for r in self.answers() {
            let on = chain[..len].iter().any(|n| n.eq_ignore_case(&r.name));
            if let (true, RData::Cname(target)) = (on, r.data) {
                if len < MAX_CHAIN {
                    chain[len] = target;
                    len += 1;
                }
            }
            each(&r, on);
        }
    }
}
