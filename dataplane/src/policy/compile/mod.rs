//! Validation and compilation of a [`PolicyDocument`] into a [`PolicySnapshot`].
//!
//! Validation visits the whole document and returns every problem it finds,
//! each naming the resource kind, resource name, field and offending value.
//! Compilation then resolves every selector once:
//!
//! 1. Local PUs with identical tags form one *subject class*; directory
//!    identities that agree on every tag key an object selector tests form
//!    one *identity group*.
//! 2. Each selector is evaluated over a population (subject classes or identity
//!    groups) through an inverted index on `key=value` and `key`: an
//!    `==`/`in`/`has` clause (or an `&&` with one) gives a short candidate list
//!    filtered by the full selector; other selectors fall back to a scan.
//! 3. Identity groups matched by exactly the same set of (not match-everything)
//!    rules collapse into one *identity class*. A class is the unit the
//!    verdict table is keyed by, so 100k identities typically make a few
//!    thousand classes.
//! 4. For each subject class and direction, the applicable rules are expanded
//!    into short entry lists per identity class that any rule names (plus one
//!    default list for the rest) and per external-network set. Identical lists
//!    are stored once.
//!
//! The cost is linear in the sizes of the rules' match sets, never
//! PUs × identities × rules.
//!
//! The passes, each in its own file: [`validate`] runs one per resource kind
//! ([`local`], [`peers`], [`pus`], [`identities`] over the [`directory`],
//! [`external`], [`rulesets`], [`profile`]) and collects every problem
//! ([`error`]); [`build`] then groups and classes over a [`population`] index
//! and writes the [`verdicts`] lists into a [`PolicySnapshot`].

mod build;
mod directory;
mod error;
mod external;
mod identities;
mod local;
mod peers;
mod population;
mod profile;
mod pus;
mod rulesets;
mod validate;
mod values;
mod verdicts;

pub use super::snapshot::{
    ExternalNetworkInfo, IdentityInfo, LocalKeyInfo, PeerInfo, PolicySnapshot, PreviousKeyInfo, PuInfo, RuleInfo,
    SnapshotStats,
};
pub use error::{CompileError, CompileErrors, Problem, ResourceKind};
pub use values::decode_key32;

use super::model::{DocumentRef, PolicyDocument};

/// Largest `keys[].id` / `local.key_id`: the option carries 24 bits, the
/// sender's 16-bit key id and the low byte of the receiver's.
pub const MAX_KEY_ID: u32 = 0xffff;

/// Flow entries store external-network indices in 16 bits.
pub const MAX_EXTERNAL_NETWORKS: usize = 65534;

/// Validates `doc` and compiles it. On failure returns every problem found.
pub fn compile(doc: &PolicyDocument) -> Result<PolicySnapshot, CompileErrors> {
    compile_view(doc.view())
}

/// [`compile`] over a document whose parts are borrowed separately.
pub fn compile_view(doc: DocumentRef<'_>) -> Result<PolicySnapshot, CompileErrors> {
    let valid = validate::validate(doc)?;
    Ok(build::build(doc, valid))
}

#[cfg(test)]
mod tests;
