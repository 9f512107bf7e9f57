//! Selector evaluation over a population of tag sets (subject classes,
//! identity groups, external networks) through an inverted index on
//! `key=value` and `key`.

use crate::policy::hash::FxHashMap;
use crate::policy::selector::{Node, Selector, TagSet};

/// Tag sets indexed by `key=value` and by `key`.
pub(super) struct Population<'a> {
    sets: Vec<&'a TagSet>,
    by_kv: FxHashMap<(&'a str, &'a str), Vec<u32>>,
    by_k: FxHashMap<&'a str, Vec<u32>>,
}

impl<'a> Population<'a> {
    /// Indexes `sets` on the tag keys in `keys` (the keys some selector
    /// tests; `true`: with `has(key)`, so also indexed by key alone).
    pub(super) fn new(sets: Vec<&'a TagSet>, keys: &FxHashMap<&str, bool>) -> Population<'a> {
        let mut by_kv: FxHashMap<(&str, &str), Vec<u32>> = FxHashMap::default();
        for (i, t) in sets.iter().enumerate() {
            for (k, v) in t.iter() {
                if keys.contains_key(k) {
                    by_kv.entry((k, v)).or_default().push(i as u32);
                }
            }
        }
        // by key: the union of its values' lists (built from them, not per member)
        let mut by_k: FxHashMap<&str, Vec<u32>> = FxHashMap::default();
        for ((k, _), list) in &by_kv {
            if keys.get(k) == Some(&true) {
                by_k.entry(k).or_default().extend_from_slice(list);
            }
        }
        for list in by_k.values_mut() {
            list.sort_unstable();
        }
        Population { sets, by_kv, by_k }
    }

    /// Sorted indices of the members `sel` matches.
    pub(super) fn select(&self, sel: &Selector) -> Vec<u32> {
        if sel.is_all() {
            return (0..self.sets.len() as u32).collect();
        }
        match self.candidates(sel, sel.root()) {
            Some(c) => c.iter().copied().filter(|&i| sel.matches(self.sets[i as usize])).collect(),
            None => (0..self.sets.len() as u32).filter(|&i| sel.matches(self.sets[i as usize])).collect(),
        }
    }

    /// A sorted superset of the members node `n` matches, if the index gives
    /// one: index lists are borrowed, `&&` intersects, `||` merges.
    fn candidates<'s>(&'s self, sel: &'s Selector, n: u32) -> Option<Cand<'s>> {
        const EMPTY: &[u32] = &[];
        match &sel.nodes()[n as usize] {
            Node::Eq(k, v) => Some(Cand::Borrowed(self.by_kv.get(&(&**k, &**v)).map_or(EMPTY, Vec::as_slice))),
            Node::Has(k) => Some(Cand::Borrowed(self.by_k.get(&**k).map_or(EMPTY, Vec::as_slice))),
            Node::In(k, vs) => {
                let mut lists = vs.iter().filter_map(|v| self.by_kv.get(&(&**k, &**v)));
                match (lists.next(), lists.next()) {
                    (None, _) => Some(Cand::Borrowed(EMPTY)),
                    (Some(a), None) => Some(Cand::Borrowed(a)),
                    (Some(a), Some(b)) => {
                        let mut out = union(a, b);
                        for l in lists {
                            out = union(&out, l);
                        }
                        Some(Cand::Owned(out))
                    }
                }
            }
            Node::And(a, b) => match (self.candidates(sel, *a), self.candidates(sel, *b)) {
                (Some(x), Some(y)) => Some(Cand::Owned(intersect(&x, &y))),
                (x, y) => x.or(y),
            },
            Node::Or(a, b) => {
                let x = self.candidates(sel, *a)?;
                let y = self.candidates(sel, *b)?;
                Some(Cand::Owned(union(&x, &y)))
            }
            _ => None,
        }
    }
}

/// Candidate members: an index list as it is, or one computed.
enum Cand<'a> {
    Borrowed(&'a [u32]),
    Owned(Vec<u32>),
}

impl std::ops::Deref for Cand<'_> {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        match self {
            Cand::Borrowed(s) => s,
            Cand::Owned(v) => v,
        }
    }
}

/// The sorted intersection of two sorted, duplicate-free lists (gallops
/// through the longer one when the lengths differ a lot).
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.len() * 16 < large.len() {
        let mut rest = large;
        for &x in small {
            match rest.binary_search(&x) {
                Ok(i) => {
                    out.push(x);
                    rest = &rest[i + 1..];
                }
                Err(i) => rest = &rest[i..],
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The sorted union of two sorted, duplicate-free lists.
fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// The tag keys the selectors test.
pub(super) fn selector_keys<'a>(sels: impl Iterator<Item = &'a Selector>) -> FxHashMap<&'a str, bool> {
    let mut keys: FxHashMap<&str, bool> = FxHashMap::default();
    for s in sels {
        for n in s.nodes() {
            match n {
                Node::Has(k) => {
                    keys.insert(&**k, true);
                }
                Node::Eq(k, _) | Node::Ne(k, _) | Node::In(k, _) | Node::NotIn(k, _) => {
                    keys.entry(&**k).or_insert(false);
                }
                _ => {}
            }
        }
    }
    keys
}
