//! `processing_units`: the local workloads, their addresses and identities.

use std::collections::HashMap;

use super::error::{Problem, ResourceKind as K};
use super::validate::Validation;
use crate::policy::hash::FxHashMap;
use crate::policy::lpm::{parse_cidr, Cidr, LpmKey};
use crate::policy::model::ProcessingUnit;
use crate::policy::snapshot::PuInfo;

/// The PUs as the build and the identity pass need them.
pub(super) struct Pus {
    pub pus: Vec<PuInfo>,
    /// `(address, PU, index in its addresses)`.
    pub prefixes: Vec<(Cidr, u32, usize)>,
    /// Numeric identity → the PU that has it (the directory may not reuse it).
    pub by_identity: FxHashMap<u32, usize>,
}

impl Pus {
    /// How a problem names the PU with identity `identity`, if there is one.
    pub fn identity_owner(&self, doc_pus: &[ProcessingUnit], identity: u32) -> Option<String> {
        let p = *self.by_identity.get(&identity)?;
        Some(format!("processing unit {:?}", doc_pus[p].name))
    }
}

impl Validation<'_> {
    pub fn pus(&mut self) -> Pus {
        let doc = self.doc;
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut out = Pus {
            pus: Vec::with_capacity(doc.processing_units.len()),
            prefixes: Vec::new(),
            by_identity: FxHashMap::default(),
        };
        out.by_identity.reserve(doc.processing_units.len());
        for (i, p) in doc.processing_units.iter().enumerate() {
            if names.insert(&p.name, i).is_some() {
                self.duplicate_name(K::ProcessingUnit, &p.name, "another processing unit");
            }
            let tags = self.tags(K::ProcessingUnit, &p.name, &p.tags);
            if p.addresses.is_empty() {
                self.missing_list(
                    K::ProcessingUnit,
                    &p.name,
                    "addresses",
                    "a processing unit needs at least one address",
                );
            }
            for (j, s) in p.addresses.iter().enumerate() {
                match parse_cidr(s) {
                    Ok(c) => out.prefixes.push((c, i as u32, j)),
                    Err(why) => self.err(
                        K::ProcessingUnit,
                        &p.name,
                        format!("addresses[{j}]"),
                        s.clone(),
                        Problem::BadCidr(why),
                    ),
                }
            }
            if let Some(other) = out.identity_owner(doc.processing_units, p.identity) {
                let why = Problem::DuplicateIdentity { other };
                self.err(K::ProcessingUnit, &p.name, "identity", p.identity.to_string(), why);
            } else {
                out.by_identity.insert(p.identity, i);
            }
            out.pus.push(PuInfo { name: p.name.as_str().into(), tags, identity: p.identity, ignored: false, class: 0 });
        }
        self.overlapping_addresses(&out.prefixes);
        out
    }

    /// Prefixes are nested or disjoint, so after sorting by (family, start,
    /// wider first) a prefix overlaps an earlier one iff it starts before the
    /// furthest end seen so far.
    fn overlapping_addresses(&mut self, prefixes: &[(Cidr, u32, usize)]) {
        let doc = self.doc;
        let range = |c: &Cidr| -> (u8, u128, u128) {
            match *c {
                Cidr::V4(a, l) => (4, a as u128, a.broadcast(l) as u128),
                Cidr::V6(a, l) => (6, a, a.broadcast(l)),
            }
        };
        let mut sorted: Vec<(u8, u128, u128, usize)> = prefixes
            .iter()
            .enumerate()
            .map(|(k, (c, _, _))| {
                let (f, a, b) = range(c);
                (f, a, b, k)
            })
            .collect();
        sorted.sort_by_key(|x| (x.0, x.1, std::cmp::Reverse(x.2)));
        let mut widest: Option<(u8, u128, usize)> = None; // (family, end, prefix)
        for &(f, a, b, k) in &sorted {
            if let Some((wf, wend, wk)) = widest {
                if wf == f && a <= wend {
                    let (_, pu, j) = prefixes[k];
                    let (_, opu, oj) = prefixes[wk];
                    let p = &doc.processing_units[pu as usize];
                    let o = &doc.processing_units[opu as usize];
                    let why = Problem::OverlappingAddress {
                        other_pu: o.name.clone(),
                        other_address: o.addresses[oj].clone(),
                    };
                    self.err(K::ProcessingUnit, &p.name, format!("addresses[{j}]"), p.addresses[j].clone(), why);
                    continue;
                }
            }
            widest = Some((f, b, k));
        }
    }
}
