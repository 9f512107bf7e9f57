//! What is wrong with a document: every problem names the resource kind, the
//! resource, the field and the offending value ([`CompileError`]).

use std::fmt;

use crate::policy::selector::{SelectorError, TagError};
use crate::problem::ConfigProblem;

/// The kind of resource an error is about, named as in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Local,
    ProcessingUnit,
    Identity,
    Peer,
    Ruleset,
    ExternalNetwork,
    EnforcerProfile,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Local => "local",
            ResourceKind::ProcessingUnit => "processing_units",
            ResourceKind::Identity => "identities",
            ResourceKind::Peer => "peers",
            ResourceKind::Ruleset => "rulesets",
            ResourceKind::ExternalNetwork => "external_networks",
            ResourceKind::EnforcerProfile => "enforcer_profile",
        }
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A name (or key id) used twice in the same scope.
    Duplicate {
        first: String,
    },
    /// A numeric identity used twice (by PUs or directory entries).
    DuplicateIdentity {
        other: String,
    },
    /// Two PU address ranges share addresses.
    OverlappingAddress {
        other_pu: String,
        other_address: String,
    },
    /// A reference to a peer that is not in `peers`.
    UnknownPeer,
    BadCidr(String),
    BadSelector(SelectorError),
    BadTag(TagError),
    /// Not a port or port range.
    BadPort,
    /// A port range whose low end is above its high end.
    InvertedRange,
    /// Ports given for a rule whose protocols have none (icmp only).
    PortsWithoutProtocol,
    /// Not 32 bytes of base64 or hex.
    BadKey(String),
    /// A list that must not be empty, or an exclusive choice not made.
    Missing(&'static str),
    /// A key id outside 0..=65535 (the sender's 16 bits of the option's key id).
    KeyIdRange,
    /// Two local keys whose ids share the low 8 bits, all a peer's option
    /// carries of the receiver's key id: the receive key ids would collide.
    SameLowByte {
        other: String,
    },
    /// Not a domain name or `*.` and one (external networks' `fqdns`).
    BadFqdn(String),
    /// `enforcer_profile`'s FQDN TTL bounds out of order or zero.
    BadTtlBounds,
    /// `peers[].option_version` other than 1 or 2.
    OptionVersion,
}

/// One problem in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub resource: ResourceKind,
    /// The resource's name (or number, for identities).
    pub name: String,
    /// The field within it, e.g. `incoming[2].ports`.
    pub field: String,
    /// The offending value as written.
    pub value: String,
    pub problem: Problem,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resource {
            ResourceKind::Local | ResourceKind::EnforcerProfile => {
                write!(f, "{}.{}: ", self.resource.name(), self.field)?
            }
            _ => write!(f, "{}[{:?}].{}: ", self.resource.name(), self.name, self.field)?,
        }
        let v = &self.value;
        match &self.problem {
            Problem::Duplicate { first } => write!(f, "{v:?} is already used by {first}"),
            Problem::DuplicateIdentity { other } => {
                write!(f, "identity {v} is already used by {other}")
            }
            Problem::OverlappingAddress { other_pu, other_address } => {
                write!(f, "{v:?} overlaps {other_address:?} of processing unit {other_pu:?}")
            }
            Problem::UnknownPeer => write!(f, "{v:?} is not a peer in `peers`"),
            Problem::BadCidr(why) => f.write_str(why),
            Problem::BadSelector(e) => write!(f, "{e}"),
            Problem::BadTag(e) => write!(f, "{e}"),
            Problem::BadPort => write!(f, "{v:?} is not a port (0-65535) or a range \"lo-hi\""),
            Problem::InvertedRange => write!(f, "{v:?} has its low end above its high end"),
            Problem::PortsWithoutProtocol => {
                write!(f, "ports {v} given but the protocols (icmp) have no ports")
            }
            Problem::BadKey(why) => write!(f, "{why}"),
            Problem::Missing(what) => write!(f, "{what}"),
            Problem::KeyIdRange => write!(f, "{v} does not fit the identity option's 16-bit sender key id (0..=65535)"),
            Problem::SameLowByte { other } => write!(
                f,
                "key id {v} has the same low 8 bits as {other}: a peer's option names our key by those 8 bits, \
                 so no two local keys may share them"
            ),
            Problem::BadFqdn(why) => write!(f, "{v:?} is not an FQDN pattern: {why}"),
            Problem::OptionVersion => write!(
                f,
                "{v} is not an identity option version this gateway sends: 1 (HMAC, understood by every \
                 gateway) or 2 (one-compression MAC, only for peers that all run a release that verifies it)"
            ),
            Problem::BadTtlBounds => {
                write!(f, "{v}: fqdn_max_ttl must be at least 1 and not below fqdn_min_ttl")
            }
        }
    }
}

/// Every problem found in a document (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileErrors(pub Vec<CompileError>);

impl fmt::Display for CompileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the policy document:", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileErrors {}

impl From<&CompileError> for ConfigProblem {
    fn from(e: &CompileError) -> ConfigProblem {
        ConfigProblem::new(e.resource.name(), &e.name, &e.field, &e.value, e.to_string())
    }
}
