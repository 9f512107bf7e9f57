//! Validation: one pass per resource kind, in document order, each adding
//! its problems to one list and keeping what the build needs. Every problem
//! is found before any is returned.

use super::error::{CompileError, CompileErrors, Problem, ResourceKind};
use super::external::Externals;
use super::identities::Identities;
use super::local::local_key_ids;
use super::peers::Peers;
use super::profile::Profile;
use super::pus::Pus;
use super::rulesets::{Objects, Rulesets};
use super::values::parse_port;
use crate::policy::lpm::{parse_cidr, Cidr};
use crate::policy::model::{DocumentRef, PortSpec};
use crate::policy::selector::{Selector, TagError, TagSet};
use crate::policy::snapshot::LocalKeyInfo;

/// The document being validated and the problems found so far: what every
/// pass reads and writes.
pub(super) struct Validation<'d> {
    pub doc: DocumentRef<'d>,
    pub errors: Vec<CompileError>,
}

/// A valid document, checked and parsed kind by kind.
pub(super) struct Validated<'d> {
    pub local: Option<LocalKeyInfo>,
    pub peers: Peers<'d>,
    pub pus: Pus,
    pub identities: Identities,
    pub externals: Externals,
    pub rulesets: Rulesets,
    pub profile: Profile,
}

/// Checks every kind of `doc`; on failure, every problem found.
pub(super) fn validate(doc: DocumentRef<'_>) -> Result<Validated<'_>, CompileErrors> {
    let mut v = Validation { doc, errors: Vec::new() };
    let local = doc.local.map(|l| v.local(l));
    let local_ids = doc.local.map(local_key_ids).unwrap_or_default();
    let peers = v.peers(&local_ids);
    let pus = v.pus();
    // The rules' objects are parsed before the directory (their errors are
    // still reported with the rulesets): the keys they test decide how the
    // directory is grouped while it is parsed.
    let mut objects = Objects::parse(doc.rulesets);
    let identities = v.identities(&pus, &peers, &objects);
    let externals = v.external_networks();
    let rulesets = v.rulesets(&mut objects);
    let profile = v.profile();
    if !v.errors.is_empty() {
        return Err(CompileErrors(v.errors));
    }
    Ok(Validated { local, peers, pus, identities, externals, rulesets, profile })
}

impl Validation<'_> {
    pub fn err(
        &mut self,
        resource: ResourceKind,
        name: &str,
        field: impl Into<String>,
        value: impl Into<String>,
        problem: Problem,
    ) {
        self.errors.push(CompileError {
            resource,
            name: name.to_string(),
            field: field.into(),
            value: value.into(),
            problem,
        });
    }

    /// A name used twice in one scope: the second use, naming the first.
    pub fn duplicate_name(&mut self, r: ResourceKind, name: &str, first: &str) {
        self.err(r, name, "name", name, Problem::Duplicate { first: first.into() });
    }

    /// An empty list that must not be.
    pub fn missing_list(&mut self, r: ResourceKind, name: &str, field: impl Into<String>, why: &'static str) {
        self.err(r, name, field, "[]", Problem::Missing(why));
    }

    pub fn tags(&mut self, r: ResourceKind, name: &str, tags: &[String]) -> TagSet {
        match TagSet::parse(tags) {
            Ok(t) => t,
            Err(e) => {
                let v = match &e {
                    TagError::Malformed(t) => t.clone(),
                    TagError::DuplicateKey(k) => k.clone(),
                };
                self.err(r, name, "tags", v, Problem::BadTag(e));
                TagSet::default()
            }
        }
    }

    pub fn cidrs(&mut self, r: ResourceKind, name: &str, field: &str, list: &[String]) -> Vec<Cidr> {
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            match parse_cidr(s) {
                Ok(c) => out.push(c),
                Err(why) => self.err(r, name, format!("{field}[{i}]"), s.clone(), Problem::BadCidr(why)),
            }
        }
        out
    }

    pub fn selector(&mut self, r: ResourceKind, name: &str, field: &str, text: &str) -> Selector {
        match Selector::parse(text) {
            Ok(s) => s,
            Err(e) => {
                self.err(r, name, field, text, Problem::BadSelector(e));
                Selector::all()
            }
        }
    }

    /// The port ranges of `list` (all ports when it is empty).
    pub fn ports(&mut self, r: ResourceKind, name: &str, field: &str, list: &[PortSpec]) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        for p in list {
            match parse_port(p) {
                Ok(range) => out.push(range),
                Err(problem) => self.err(r, name, field, p.to_string(), problem),
            }
        }
        if list.is_empty() {
            out.push((0, u16::MAX));
        }
        out
    }
}
