//! DNS messages (RFC 1035) as the gateway sees them go by: a zero-copy,
//! allocation-free, panic-free view over a response's bytes.
//!
//! - [`message`]: the header, the one question and the answer section;
//!   [`Message::parse`] validates the whole message once (every count, every
//!   name, every record length), after which reading it cannot fail.
//! - [`name`]: domain names read through compression pointers, and
//!   [`WireName`], a name copied out of a message (lowercase, uncompressed
//!   wire form, fixed size) for events, caches and pattern matching.
//! - [`patterns`]: the FQDN patterns of external networks, compiled.
//! - [`learned`]: the lock-free table of addresses learned for them, shared
//!   by every worker.
//! - [`fuzzing`]: the fuzz target's body, shared with the replay test.
//!
//! Limits (RFC 1035 §2.3.4 and §4.1.4): a label is at most 63 bytes, a name
//! at most 255 bytes in wire form; a compression pointer must point strictly
//! before the pointer itself (so a chain always ends) and a name may follow at
//! most [`name::MAX_POINTERS`] of them; a count that the message's length
//! cannot hold is refused before anything is read.

pub mod counters;
#[doc(hidden)]
pub mod fuzzing;
pub mod learned;
pub mod message;
pub mod name;
pub mod patterns;

pub use message::{Answers, Header, Message, Question, RData, Record};
pub use name::{Name, WireName};

#[cfg(test)]
mod tests;

use core::fmt;

/// Resource record types the gateway reads (every other type is skipped).
pub mod rtype {
    pub const A: u16 = 1;
    pub const CNAME: u16 = 5;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
}

/// The Internet class.
pub const CLASS_IN: u16 = 1;

/// Why a DNS message was not read. Each variant is a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsError {
    /// Shorter than the 12-byte header.
    HeaderTruncated,
    /// The question count is not 1 (what every resolver sends and answers).
    QuestionCount,
    /// The section counts need more bytes than the message has.
    CountsTooLarge,
    /// A name, a record header or record data runs past the end.
    Truncated,
    /// A label longer than 63 bytes, or the reserved label types 0x40/0x80.
    BadLabel,
    /// A name longer than 255 bytes in wire form.
    NameTooLong,
    /// A compression pointer that does not point strictly backwards (loops,
    /// forward references, pointers past the end).
    BadPointer,
    /// More than [`name::MAX_POINTERS`] compression pointers in one name.
    TooManyPointers,
    /// An A record whose data is not 4 bytes, AAAA not 16, or a CNAME whose
    /// name does not end inside its data.
    BadRdata,
    /// DNS over TCP: the 2-byte length prefix says more than the segment
    /// holds (the gateway reads only messages that fit one segment).
    TcpIncomplete,
}

impl DnsError {
    /// Every error, in counter order.
    pub const ALL: [DnsError; 10] = [
        DnsError::HeaderTruncated,
        DnsError::QuestionCount,
        DnsError::CountsTooLarge,
        DnsError::Truncated,
        DnsError::BadLabel,
        DnsError::NameTooLong,
        DnsError::BadPointer,
        DnsError::TooManyPointers,
        DnsError::BadRdata,
        DnsError::TcpIncomplete,
    ];

    /// The name operators see in counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            DnsError::HeaderTruncated => "dns_header_truncated",
            DnsError::QuestionCount => "dns_question_count",
            DnsError::CountsTooLarge => "dns_counts_too_large",
            DnsError::Truncated => "dns_truncated",
            DnsError::BadLabel => "dns_bad_label",
            DnsError::NameTooLong => "dns_name_too_long",
            DnsError::BadPointer => "dns_bad_pointer",
            DnsError::TooManyPointers => "dns_too_many_pointers",
            DnsError::BadRdata => "dns_bad_rdata",
            DnsError::TcpIncomplete => "dns_tcp_incomplete",
        }
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The DNS message inside a DNS-over-TCP segment's payload (RFC 1035
/// §4.2.2: a 2-byte length, then the message). Only a message that starts at
/// the segment's first byte and fits in it is read; a message split across
/// segments is `TcpIncomplete` (the gateway does not reassemble streams).
pub fn tcp_message(payload: &[u8]) -> Result<&[u8], DnsError> {
    let (Some(&hi), Some(&lo)) = (payload.first(), payload.get(1)) else {
        return Err(DnsError::TcpIncomplete);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    payload.get(2..2 + len).ok_or(DnsError::TcpIncomplete)
}
