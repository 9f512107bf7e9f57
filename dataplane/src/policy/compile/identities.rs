//! `identities`: the directory of remote identities, each behind a peer.

use std::collections::hash_map::Entry;

use super::directory::parse_directory;
use super::error::{Problem, ResourceKind as K};
use super::peers::Peers;
use super::pus::Pus;
use super::rulesets::Objects;
use super::validate::Validation;
use crate::policy::hash::FxHashMap;
use crate::policy::snapshot::IdentityInfo;

/// The directory as the build needs it.
pub(super) struct Identities {
    pub identities: Vec<IdentityInfo>,
    /// Numeric identity → index in `identities`.
    pub index: FxHashMap<u32, u32>,
    /// Per entry of `identities`, its identity group (see [`parse_directory`]).
    pub group: Vec<u32>,
    /// Per group, its first entry.
    pub first: Vec<u32>,
}

impl Validation<'_> {
    /// The directory, grouped on the tag keys the rules' `objects` test. A
    /// directory entry is named by its number, and no two may share one, nor
    /// share a PU's.
    pub fn identities(&mut self, pus: &Pus, peers: &Peers<'_>, objects: &Objects) -> Identities {
        let doc = self.doc;
        let directory = parse_directory(doc.identities, &objects.key_slots());
        let mut out = Identities {
            identities: Vec::with_capacity(doc.identities.len()),
            index: FxHashMap::default(),
            group: directory.group,
            first: directory.first,
        };
        out.index.reserve(doc.identities.len());
        for (e, parsed) in doc.identities.iter().zip(directory.tags) {
            let other = match pus.identity_owner(doc.processing_units, e.identity) {
                Some(pu) => Some(pu),
                None => match out.index.entry(e.identity) {
                    Entry::Occupied(_) => Some(format!("identities[{:?}]", e.identity.to_string())),
                    Entry::Vacant(v) => {
                        v.insert(out.identities.len() as u32);
                        None
                    }
                },
            };
            if let Some(other) = other {
                let name = e.identity.to_string();
                self.err(K::Identity, &name, "identity", name.clone(), Problem::DuplicateIdentity { other });
                continue;
            }
            let tags = match parsed {
                Some(t) => t,
                None => self.tags(K::Identity, &e.identity.to_string(), &e.tags),
            };
            let peer = match peers.index.get(e.peer.as_str()) {
                Some(&p) => p,
                None => {
                    self.err(K::Identity, &e.identity.to_string(), "peer", e.peer.clone(), Problem::UnknownPeer);
                    u32::MAX
                }
            };
            out.identities.push(IdentityInfo {
                identity: e.identity,
                name: e.name.as_deref().map(Into::into),
                tags,
                peer,
                class: 0,
            });
        }
        out
    }
}
