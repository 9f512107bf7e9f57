//! Policy: the operator's document, its validation and compilation into an
//! immutable [`PolicySnapshot`], and the per-connection decision functions.
//!
//! - [`model`]: the serde types of the YAML document.
//! - [`selector`]: the tag expression language.
//! - [`lpm`]: longest-prefix-match tables.
//! - [`compile`]: validation (every error at once) and snapshot building.
//! - [`snapshot`]: the compiled, immutable [`PolicySnapshot`].
//! - [`decide`]: `classify`, `decide` and the identity/peer check on a snapshot.
//! - [`fuzzing`]: fuzz target bodies (document text and structured documents).
//!
//! Selectors are evaluated only at compile time: the snapshot holds, for each
//! (local PU class, remote identity class) and (local PU class, external-network
//! set), the short list of `(protocols, port range) → action` entries that can
//! apply, so a decision is one hash lookup and a scan of a few entries. The
//! semantics are documented in `docs/config.md`.

pub mod compile;
pub mod decide;
pub mod fuzzing;
pub mod hash;
pub mod lpm;
pub mod model;
pub mod selector;
pub mod snapshot;

pub use compile::{compile, compile_view, CompileError, CompileErrors, PolicySnapshot, Problem, ResourceKind};
pub use decide::{Explanation, Matched};
pub use model::{Action, DocumentRef, PolicyDocument};
pub use selector::{Selector, SelectorError, TagSet};

use std::net::IpAddr;

/// Which way a connection goes, seen from the local PU: `Outgoing` when the PU
/// opened it (it is the client), `Incoming` when it accepted it (the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Direction {
    Incoming = 0,
    Outgoing = 1,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// The crate's [`crate::Side`], where the policy API (classification) names it.
pub use crate::Side;

/// Index of a local PU in the snapshot that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PuId(pub u32);

/// Index of a rule in [`PolicySnapshot::rule`]; resolved to names only when a
/// flow event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef(pub u32);

/// Index of an external network in [`PolicySnapshot::external_network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtNetRef(pub u32);

/// What a packet's addresses say about it, before any handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// One end is in an excluded network: forward untouched, log nothing.
    Excluded,
    /// The local end is a PU the profile's `ignore` selects: forward untouched.
    Ignored,
    /// The local end is a PU. `managed_tcp` / `managed_udp`: the remote end is in
    /// a managed network for that protocol, so identity is exchanged with it.
    LocalPu { pu: PuId, managed_tcp: bool, managed_udp: bool },
    /// The local-side address belongs to no PU.
    NotLocal,
}

/// The remote end of a connection, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// A verified identity from an identity option.
    Identity(u32),
    /// No identity: judged by external networks.
    Address(IpAddr),
}

/// Why a decision came out as it did. Every decision has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reason {
    /// An enforced allow rule matched the remote identity and no reject did.
    PolicyAllow = 0,
    /// An enforced reject rule matched the remote identity.
    PolicyReject = 1,
    /// No enforced rule matched and no observe rule either: implicit reject.
    NoMatch = 2,
    /// No enforced rule matched but an observe rule did: implicit reject, the
    /// observed action is reported beside it.
    ObservedOnly = 3,
    /// An enforced allow rule matched an external network of the remote address.
    ExternalNetworkAllow = 4,
    /// An enforced reject rule matched an external network of the remote address.
    ExternalNetworkReject = 5,
    /// The traffic is in an excluded network (never reported).
    Excluded = 6,
    /// The local PU is ignored by the enforcer profile.
    Ignored = 7,
    /// The remote identity is not in the identity directory.
    UnknownIdentity = 8,
    /// The `PuId` does not exist in this snapshot (a caller bug or a stale id).
    UnknownPu = 9,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::PolicyAllow,
        Reason::PolicyReject,
        Reason::NoMatch,
        Reason::ObservedOnly,
        Reason::ExternalNetworkAllow,
        Reason::ExternalNetworkReject,
        Reason::Excluded,
        Reason::Ignored,
        Reason::UnknownIdentity,
        Reason::UnknownPu,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// A stable snake_case name for flow events and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Reason::PolicyAllow => "policy_allow",
            Reason::PolicyReject => "policy_reject",
            Reason::NoMatch => "no_match",
            Reason::ObservedOnly => "observed_only",
            Reason::ExternalNetworkAllow => "external_network_allow",
            Reason::ExternalNetworkReject => "external_network_reject",
            Reason::Excluded => "excluded",
            Reason::Ignored => "ignored",
            Reason::UnknownIdentity => "unknown_identity",
            Reason::UnknownPu => "unknown_pu",
        }
    }
}

/// What an observe rule would have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub action: Action,
    pub rule: RuleRef,
    /// The external network it matched, when the remote was an address.
    pub external: Option<ExtNetRef>,
}

/// The outcome of [`PolicySnapshot::decide`]. `Copy`, 28 bytes; cached in the flow entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What is enforced.
    pub action: Action,
    /// The enforced rule that decided (`None` for implicit rejects).
    pub rule: Option<RuleRef>,
    /// The external network the deciding rule matched, for `Remote::Address`.
    pub external: Option<ExtNetRef>,
    /// The highest-priority matching observe rule, reported but not enforced.
    pub observed: Option<Observed>,
    pub reason: Reason,
}

impl Decision {
    #[inline]
    pub fn allowed(&self) -> bool {
        self.action == Action::Allow
    }

    pub(crate) const fn implicit(reason: Reason) -> Decision {
        Decision { action: Action::Reject, rule: None, external: None, observed: None, reason }
    }
}
