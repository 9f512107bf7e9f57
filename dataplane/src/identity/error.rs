use crate::wire::Malformed;
use core::fmt;

/// Why an identity option was not accepted. Each variant is one drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifyError {
    /// The packet carries no identity option.
    NoIdentity,
    /// The option's format version is not one we speak.
    BadVersion,
    /// No key with the option's key id is configured.
    UnknownKey,
    /// The key exists but `now` is outside its validity window.
    ExpiredKey,
    /// The MAC does not match: forged, corrupted, or copied from another flow.
    BadMac,
    /// Not a packet that carries identity (e.g. a TCP segment other than SYN or
    /// SYN-ACK, or a fragment).
    NotApplicable,
    /// The frame or its options are malformed.
    Malformed(Malformed),
}

impl VerifyError {
    /// A stable snake_case name for counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            VerifyError::NoIdentity => "no_identity",
            VerifyError::BadVersion => "identity_bad_version",
            VerifyError::UnknownKey => "identity_unknown_key",
            VerifyError::ExpiredKey => "identity_expired_key",
            VerifyError::BadMac => "identity_bad_mac",
            VerifyError::NotApplicable => "identity_not_applicable",
            VerifyError::Malformed(m) => m.name(),
        }
    }
}

impl From<Malformed> for VerifyError {
    fn from(m: Malformed) -> Self {
        VerifyError::Malformed(m)
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Malformed(m) => write!(f, "identity not verified: {m}"),
            e => write!(f, "identity not verified: {}", e.name()),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Why a rewrite (insert or strip) did not happen. In every case the packet is
/// left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RewriteError {
    /// The TCP options area (40 bytes) cannot hold the identity option even
    /// after dropping NOP/EOL padding.
    NoRoom,
    /// The buffer has not enough headroom/tailroom for the larger frame.
    BufferFull,
    /// Not a SYN or SYN-ACK (TCP), or not TCP/UDP over IP.
    NotApplicable,
    /// IP fragments are never rewritten.
    Fragmented,
    /// The packet already carries an identity option.
    AlreadyPresent,
    /// The UDP datagram already has a surplus area (options) we would not keep.
    SurplusPresent,
    /// The frame or its options are malformed.
    Malformed(Malformed),
}

impl RewriteError {
    pub const fn name(self) -> &'static str {
        match self {
            RewriteError::NoRoom => "identity_no_room",
            RewriteError::BufferFull => "identity_buffer_full",
            RewriteError::NotApplicable => "identity_not_applicable",
            RewriteError::Fragmented => "identity_fragmented",
            RewriteError::AlreadyPresent => "identity_already_present",
            RewriteError::SurplusPresent => "identity_udp_surplus_present",
            RewriteError::Malformed(m) => m.name(),
        }
    }
}

impl From<Malformed> for RewriteError {
    fn from(m: Malformed) -> Self {
        RewriteError::Malformed(m)
    }
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewriteError::Malformed(m) => write!(f, "identity rewrite refused: {m}"),
            e => write!(f, "identity rewrite refused: {}", e.name()),
        }
    }
}

impl std::error::Error for RewriteError {}
