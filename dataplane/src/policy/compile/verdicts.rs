//! Verdict lists: for each subject class and direction, the short
//! `(protocols, port range) → action` lists per identity class that some rule
//! names (plus one default list for the rest) and per external-network set.
//! Identical lists are stored once.

use super::build::{ExtSets, IdentityClasses, ObjectMatches, Subjects};
use super::external::ExternalNet;
use super::rulesets::CompiledRule;
use crate::policy::hash::FxHashMap;
use crate::policy::snapshot::{verdict_key, Entry, F_OBSERVE, F_REJECT, KIND_EXTERNAL, KIND_IDENTITY, NO_EXT};
use crate::policy::Direction;

/// What the lists are made of.
pub(super) struct VerdictInput<'a> {
    pub rules: &'a [CompiledRule],
    pub nets: &'a [ExternalNet],
    pub subjects: &'a Subjects,
    pub objects: &'a ObjectMatches,
    pub classes: &'a IdentityClasses,
    pub ext_sets: &'a ExtSets,
}

/// The lists, back to back, and where each (subject, direction, class or set) finds its own.
pub(super) struct VerdictLists {
    pub entries: Vec<Entry>,
    /// `verdict_key(..)` → (start, len) in `entries`.
    pub verdicts: FxHashMap<u64, (u32, u32)>,
    /// Per `(direction, subject class)`: the list for identity classes no rule names.
    pub defaults: Vec<(u32, u32)>,
}

pub(super) fn verdict_lists(input: &VerdictInput<'_>) -> VerdictLists {
    let n_subjects = input.subjects.count;
    let mut b = Builder {
        input,
        interned: FxHashMap::default(),
        out: VerdictLists {
            entries: Vec::new(),
            verdicts: FxHashMap::default(),
            defaults: vec![(0u32, 0u32); 2 * n_subjects],
        },
        per_class: FxHashMap::default(),
    };
    for s in 0..n_subjects {
        for dir in [Direction::Incoming, Direction::Outgoing] {
            b.subject(s, dir);
        }
    }
    b.out
}

struct Builder<'a> {
    input: &'a VerdictInput<'a>,
    /// Every list stored so far → where.
    interned: FxHashMap<Vec<Entry>, (u32, u32)>,
    out: VerdictLists,
    /// Scratch: identity class → the rules naming it.
    per_class: FxHashMap<u32, Vec<u32>>,
}

impl Builder<'_> {
    /// The lists of subject class `s` in direction `dir`.
    fn subject(&mut self, s: usize, dir: Direction) {
        let input = self.input;
        let rules_of = &input.subjects.rules_of;
        let applicable: Vec<u32> = input.subjects.applies[s]
            .iter()
            .flat_map(|&rs| rules_of[rs as usize][dir as usize].iter().copied())
            .collect();
        if applicable.is_empty() {
            return;
        }
        let mut base = Vec::new();
        let mut per_class = std::mem::take(&mut self.per_class);
        per_class.clear();
        for &j in &applicable {
            if input.objects.universal[j as usize] {
                self.rule_entries(j, None, &mut base);
            } else {
                for &c in &input.classes.of_rule[j as usize] {
                    per_class.entry(c).or_default().push(j);
                }
            }
        }
        self.out.defaults[2 * s + dir as usize] = self.intern(base.clone());
        for (&c, js) in &per_class {
            let mut list = base.clone();
            for &j in js {
                self.rule_entries(j, None, &mut list);
            }
            let r = self.intern(list);
            self.out.verdicts.insert(verdict_key(dir, KIND_IDENTITY, s as u32, c), r);
        }
        self.per_class = per_class;
        for (e, set) in input.ext_sets.sets.iter().enumerate() {
            let mut list = Vec::new();
            for &j in &applicable {
                for &x in set {
                    if input.objects.exts[j as usize].binary_search(&x).is_ok() {
                        self.rule_entries(j, Some(x), &mut list);
                    }
                }
            }
            if !list.is_empty() {
                let r = self.intern(list);
                self.out.verdicts.insert(verdict_key(dir, KIND_EXTERNAL, s as u32, e as u32), r);
            }
        }
    }

    /// Rule `j`'s entries, on its own or (`ext`) within external network `ext`'s
    /// protocols and ports.
    fn rule_entries(&self, j: u32, ext: Option<u32>, out: &mut Vec<Entry>) {
        let r = &self.input.rules[j as usize];
        match ext {
            None => {
                for &(lo, hi) in &r.ports {
                    out.push(Entry { lo, hi, protos: r.protos, flags: r.flags, rule: j, ext: NO_EXT });
                }
            }
            Some(x) => {
                let xc = &self.input.nets[x as usize];
                let protos = r.protos & xc.protos;
                if protos == 0 {
                    return;
                }
                for &(lo, hi) in &r.ports {
                    for &(xlo, xhi) in &xc.ports {
                        let (l, h) = (lo.max(xlo), hi.min(xhi));
                        if l <= h {
                            out.push(Entry { lo: l, hi: h, protos, flags: r.flags, rule: j, ext: x });
                        }
                    }
                }
            }
        }
    }

    /// Stores `list` sorted (enforced before observed, reject before allow,
    /// then declaration order) unless an equal list is stored already.
    fn intern(&mut self, mut list: Vec<Entry>) -> (u32, u32) {
        list.sort_by_key(|e| (e.flags & F_OBSERVE, (e.flags & F_REJECT) ^ F_REJECT, e.rule, e.ext, e.lo));
        list.dedup();
        if let Some(&r) = self.interned.get(&list) {
            return r;
        }
        let entries = &mut self.out.entries;
        let r = (entries.len() as u32, list.len() as u32);
        entries.extend_from_slice(&list);
        self.interned.insert(list, r);
        r
    }
}
