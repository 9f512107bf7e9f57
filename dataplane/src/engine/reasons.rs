//! What the engine counts for the errors and decisions of the layers below
//! it: a policy reason, a failed verification or a refused rewrite becomes
//! exactly one drop reason; an allow becomes one note.

use crate::identity::{RewriteError, VerifyError};
use crate::policy::{Decision, Reason};
use crate::stats::{DropReason, Note};

/// The drop reason of a rejecting decision.
pub(super) fn drop_of_reason(r: Reason) -> DropReason {
    match r {
        Reason::PolicyReject => DropReason::PolicyReject,
        Reason::ExternalNetworkReject => DropReason::ExternalNetworkReject,
        Reason::ObservedOnly => DropReason::ObservedOnly,
        Reason::UnknownIdentity => DropReason::UnknownIdentity,
        Reason::UnknownPu => DropReason::NoLocalPu,
        _ => DropReason::NoMatch,
    }
}

/// The drop reason of an identity option that did not verify.
pub(super) fn drop_of_verify(e: VerifyError) -> DropReason {
    match e {
        VerifyError::NoIdentity => DropReason::NoIdentity,
        VerifyError::BadVersion => DropReason::IdentityBadVersion,
        VerifyError::UnknownKey => DropReason::IdentityUnknownKey,
        VerifyError::ExpiredKey => DropReason::IdentityExpiredKey,
        VerifyError::BadMac => DropReason::IdentityBadMac,
        VerifyError::NotApplicable | VerifyError::Malformed(_) => DropReason::Malformed,
    }
}

/// The drop reason of an identity option that could not be inserted.
pub(super) fn drop_of_rewrite(e: RewriteError) -> DropReason {
    match e {
        RewriteError::NoRoom => DropReason::IdentityNoRoom,
        RewriteError::BufferFull => DropReason::IdentityBufferFull,
        RewriteError::AlreadyPresent => DropReason::IdentityAlreadyPresent,
        RewriteError::Fragmented => DropReason::TcpFragment,
        _ => DropReason::Malformed,
    }
}

/// The note of an allowing decision: by a rule on an external network, or
/// by one on an identity.
pub(super) fn note_of_allow(d: &Decision) -> Note {
    if d.reason == Reason::ExternalNetworkAllow {
        Note::ExternalNetworkAllow
    } else {
        Note::PolicyAllow
    }
}

/// The drop reason of a cached verdict that does not allow, `default` when
/// there is none.
pub(super) fn drop_of_verdict(d: Option<Decision>, default: DropReason) -> DropReason {
    d.map_or(default, |d| drop_of_reason(d.reason))
}
