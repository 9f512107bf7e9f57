//! The build: a valid document's selectors resolved once, into subject
//! classes, identity classes, external-network sets and verdict lists (see
//! the module docs of [`super`]), then the snapshot's lookup tables.

use std::collections::HashMap;

use super::external::{ExternalNet, Externals};
use super::identities::Identities;
use super::population::{selector_keys, Population};
use super::rulesets::{CompiledRule, Rulesets};
use super::validate::Validated;
use super::verdicts::{verdict_lists, VerdictInput};
use crate::dns::patterns::FqdnPatterns;
use crate::policy::dns::DnsPolicy;
use crate::policy::hash::FxHashMap;
use crate::policy::lpm::{Cidr, LpmPair};
use crate::policy::model::DocumentRef;
use crate::policy::selector::TagSet;
use crate::policy::snapshot::{next_generation, PolicySnapshot, PuInfo};

/// Builds the snapshot of a validated document.
pub(super) fn build(doc: DocumentRef<'_>, v: Validated<'_>) -> PolicySnapshot {
    let Validated { local, peers, mut pus, mut identities, externals, rulesets, profile } = v;
    if let Some(ign) = &profile.ignore {
        for p in pus.pus.iter_mut() {
            p.ignored = ign.matches(&p.tags);
        }
    }
    let subjects = Subjects::new(&pus.pus, &rulesets);
    let mut objects = ObjectMatches::new(&rulesets.rules, &subjects, &identities, &externals);
    let classes = IdentityClasses::new(std::mem::take(&mut objects.groups), identities.first.len());
    for (e, &g) in identities.identities.iter_mut().zip(&identities.group) {
        e.class = classes.of_group[g as usize];
    }
    let ext_sets = ExtSets::new(&externals.nets);
    let lists = verdict_lists(&VerdictInput {
        rules: &rulesets.rules,
        nets: &externals.nets,
        subjects: &subjects,
        objects: &objects,
        classes: &classes,
        ext_sets: &ext_sets,
    });
    for (p, &c) in pus.pus.iter_mut().zip(&subjects.pu_class) {
        p.class = c;
    }
    let pu_lpm: Vec<(Cidr, u32)> = pus.prefixes.iter().map(|&(c, pu, _)| (c, pu)).collect();
    let peer_lpm: Vec<(Cidr, u32)> = peers.prefixes.iter().map(|&(c, p, _)| (c, p)).collect();
    let unit = |v: &[Cidr]| LpmPair::build(&v.iter().map(|&c| (c, 0)).collect::<Vec<_>>());
    PolicySnapshot {
        generation: next_generation(),
        revision: doc.revision.map(Into::into),
        local,
        pus: pus.pus.into(),
        identities: identities.identities.into(),
        identity_index: identities.index,
        peers: peers.peers.into(),
        key_index: peers.key_index,
        rules: rulesets.infos.into(),
        external_networks: externals.infos.into(),
        pu_addresses: LpmPair::build(&pu_lpm),
        ext_lpm: LpmPair::build(&ext_sets.lpm),
        managed_tcp: unit(&profile.managed_tcp),
        managed_udp: unit(&profile.managed_udp),
        layer4: profile.layer4,
        excluded: unit(&profile.excluded),
        peer_networks: LpmPair::build(&peer_lpm),
        entries: lists.entries.into(),
        verdicts: lists.verdicts,
        defaults: lists.defaults.into(),
        subject_classes: subjects.count as u32,
        identity_classes: classes.count,
        ext_set_count: ext_sets.sets.len() as u32,
        dns: dns_policy(&externals.nets, &ext_sets.fqdn_set, &profile),
    }
}

/// The DNS part of the snapshot: each network's patterns with its own set.
fn dns_policy(nets: &[ExternalNet], fqdn_set: &[u32], profile: &super::profile::Profile) -> DnsPolicy {
    let mut patterns = FqdnPatterns::default();
    for (n, &set) in nets.iter().zip(fqdn_set) {
        for p in &n.fqdns {
            patterns.add(p, set);
        }
    }
    let servers = profile.dns_servers.as_ref().map(|v| LpmPair::build(&v.iter().map(|&c| (c, 0)).collect::<Vec<_>>()));
    DnsPolicy { servers, ttl_bounds: profile.fqdn_ttl, patterns }
}

/// Subject classes (PUs with identical tags) and the rules that apply to each.
pub(super) struct Subjects {
    /// Per PU, its class.
    pub pu_class: Vec<u32>,
    pub count: usize,
    /// Per class, the rulesets whose subject selects it.
    pub applies: Vec<Vec<u32>>,
    /// Per ruleset and direction, its rules.
    pub rules_of: Vec<[Vec<u32>; 2]>,
}

impl Subjects {
    fn new(pus: &[PuInfo], rulesets: &Rulesets) -> Subjects {
        let mut class_of_tags: FxHashMap<&TagSet, u32> = FxHashMap::default();
        let mut subject_sets: Vec<&TagSet> = Vec::new();
        let mut pu_class = Vec::with_capacity(pus.len());
        for p in pus {
            let c = *class_of_tags.entry(&p.tags).or_insert_with(|| {
                subject_sets.push(&p.tags);
                subject_sets.len() as u32 - 1
            });
            pu_class.push(c);
        }
        drop(class_of_tags);
        let count = subject_sets.len();
        let subject_keys = selector_keys(rulesets.subjects.iter());
        let subject_pop = Population::new(subject_sets, &subject_keys);
        let mut applies: Vec<Vec<u32>> = vec![Vec::new(); count];
        for (r, s) in rulesets.subjects.iter().enumerate() {
            for c in subject_pop.select(s) {
                applies[c as usize].push(r as u32);
            }
        }
        let mut rules_of: Vec<[Vec<u32>; 2]> = vec![[Vec::new(), Vec::new()]; rulesets.subjects.len()];
        for (j, r) in rulesets.rules.iter().enumerate() {
            rules_of[r.ruleset as usize][r.dir as usize].push(j as u32);
        }
        Subjects { pu_class, count, applies, rules_of }
    }

    /// Per rule, whether it applies to some subject class (only those matter).
    fn rules_used(&self, rules: usize) -> Vec<bool> {
        let mut used = vec![false; rules];
        for a in &self.applies {
            for &rs in a {
                for d in &self.rules_of[rs as usize] {
                    for &j in d {
                        used[j as usize] = true;
                    }
                }
            }
        }
        used
    }
}

/// What each rule's object selects: identity groups (see
/// [`super::directory`], each evaluated on its first member's tags) and
/// external networks.
pub(super) struct ObjectMatches {
    /// Per rule: its object selects every identity group.
    pub universal: Vec<bool>,
    /// Per rule not universal: the groups its object selects.
    pub groups: Vec<Vec<u32>>,
    /// Per rule: the external networks its object selects.
    pub exts: Vec<Vec<u32>>,
}

impl ObjectMatches {
    fn new(rules: &[CompiledRule], subjects: &Subjects, identities: &Identities, externals: &Externals) -> Self {
        // (Every directory entry is in `identities`, in order: the document is valid.)
        let group_sets: Vec<&TagSet> =
            identities.first.iter().map(|&i| &identities.identities[i as usize].tags).collect();
        let object_keys = selector_keys(rules.iter().map(|r| &r.object));
        let n_groups = group_sets.len();
        let group_pop = Population::new(group_sets, &object_keys);
        let ext_pop = Population::new(externals.infos.iter().map(|x| &x.tags).collect(), &object_keys);
        let rule_used = subjects.rules_used(rules.len());
        let mut m = ObjectMatches {
            universal: vec![false; rules.len()],
            groups: vec![Vec::new(); rules.len()],
            exts: vec![Vec::new(); rules.len()],
        };
        // Several rules often share one object selector: evaluate each text once.
        let mut by_text: FxHashMap<&str, usize> = FxHashMap::default();
        for (j, r) in rules.iter().enumerate() {
            if !rule_used[j] {
                continue;
            }
            if r.object.is_all() && n_groups > 0 {
                m.universal[j] = true;
            } else if let Some(&k) = by_text.get(r.object.source()) {
                m.universal[j] = m.universal[k];
                m.groups[j] = m.groups[k].clone();
                m.exts[j] = m.exts[k].clone();
                continue;
            } else {
                let g = group_pop.select(&r.object);
                if n_groups > 0 && g.len() == n_groups {
                    m.universal[j] = true;
                } else {
                    m.groups[j] = g;
                }
                by_text.insert(r.object.source(), j);
            }
            m.exts[j] = ext_pop.select(&r.object);
        }
        m
    }
}

/// Identity classes: groups named by exactly the same non-universal rules.
/// Class 0 is the groups no such rule names.
pub(super) struct IdentityClasses {
    /// Per group, its class.
    pub of_group: Vec<u32>,
    pub count: u32,
    /// Per rule, the classes it names.
    pub of_rule: Vec<Vec<u32>>,
}

impl IdentityClasses {
    /// `rule_groups`: per rule, the groups it names.
    fn new(rule_groups: Vec<Vec<u32>>, n_groups: usize) -> IdentityClasses {
        // CSR of group → rules: each group's signature.
        let mut counts = vec![0u32; n_groups + 1];
        for g in rule_groups.iter().flatten() {
            counts[*g as usize + 1] += 1;
        }
        for i in 0..n_groups {
            counts[i + 1] += counts[i];
        }
        let mut fill = counts.clone();
        let mut sig = vec![0u32; counts[n_groups] as usize];
        for (j, gs) in rule_groups.iter().enumerate() {
            for &g in gs {
                sig[fill[g as usize] as usize] = j as u32;
                fill[g as usize] += 1;
            }
        }
        drop(fill);
        let mut class_of_sig: FxHashMap<&[u32], u32> = FxHashMap::default();
        class_of_sig.insert(&[], 0);
        let mut of_group = Vec::with_capacity(n_groups);
        for g in 0..n_groups {
            let s = &sig[counts[g] as usize..counts[g + 1] as usize];
            let next = class_of_sig.len() as u32;
            of_group.push(*class_of_sig.entry(s).or_insert(next));
        }
        let count = class_of_sig.len() as u32;
        drop(class_of_sig);
        let mut seen = vec![u32::MAX; count as usize];
        let of_rule = rule_groups
            .iter()
            .enumerate()
            .map(|(j, gs)| {
                let mut out = Vec::new();
                for &g in gs {
                    let c = of_group[g as usize];
                    if seen[c as usize] != j as u32 {
                        seen[c as usize] = j as u32;
                        out.push(c);
                    }
                }
                out
            })
            .collect();
        IdentityClasses { of_group, count, of_rule }
    }
}

/// External-network sets: for each distinct prefix, the networks covering it.
pub(super) struct ExtSets {
    pub sets: Vec<Vec<u32>>,
    /// Prefix → its set.
    pub lpm: Vec<(Cidr, u32)>,
    /// Per network, its own set if it has FQDNs (`u32::MAX` otherwise).
    pub fqdn_set: Vec<u32>,
}

impl ExtSets {
    fn new(nets: &[ExternalNet]) -> ExtSets {
        let mut prefixes: Vec<Cidr> = nets.iter().flat_map(|x| x.cidrs.iter().copied()).collect();
        prefixes.sort_by_key(|c| match *c {
            Cidr::V4(a, l) => (4u8, a as u128, l),
            Cidr::V6(a, l) => (6u8, a, l),
        });
        prefixes.dedup();
        let mut sets: Vec<Vec<u32>> = Vec::new();
        let mut set_index: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut lpm = Vec::with_capacity(prefixes.len());
        let len = |c: &Cidr| match *c {
            Cidr::V4(_, l) | Cidr::V6(_, l) => l,
        };
        for p in &prefixes {
            let plen = len(p);
            let set: Vec<u32> = (0..nets.len() as u32)
                .filter(|&x| nets[x as usize].cidrs.iter().any(|q| len(q) <= plen && q.overlaps(p)))
                .collect();
            let id = *set_index.entry(set.clone()).or_insert_with(|| {
                sets.push(set);
                sets.len() as u32 - 1
            });
            lpm.push((*p, id));
        }
        // Each network with FQDNs also has its own set: the verdicts an
        // address learned for one of its names is decided by.
        let mut fqdn_set = vec![u32::MAX; nets.len()];
        for (x, n) in nets.iter().enumerate() {
            if !n.fqdns.is_empty() {
                let set = vec![x as u32];
                fqdn_set[x] = *set_index.entry(set.clone()).or_insert_with(|| {
                    sets.push(set);
                    sets.len() as u32 - 1
                });
            }
        }
        ExtSets { sets, lpm, fqdn_set }
    }
}
