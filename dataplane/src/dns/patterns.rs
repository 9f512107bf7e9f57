//! FQDN patterns of external networks (`external_networks[].fqdns`),
//! compiled for the worker: which patterns a resolved name matches.
//!
//! Matching rules:
//! - `api.example.test` matches exactly that name (ASCII case ignored, a
//!   trailing dot allowed).
//! - `*.example.test` matches every name with **one or more** labels in
//!   front of `example.test` (`a.example.test`, `a.b.example.test`), never
//!   `example.test` itself. `*` is allowed only as the whole leftmost label.
//!
//! A pattern is known by an id, a hash of its normalised text, that stays the
//! same across policy applies: the learned table ([`super::learned`])
//! stores pattern ids, so what was learned for `*.example.test` applies to
//! every later policy naming the same pattern.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::name::NameTextError;
use super::WireName;

/// Patterns one name may match, at most (the worker's fixed buffer).
pub const MAX_MATCH: usize = 4;
/// Patterns in one policy, at most.
pub const MAX_PATTERNS: usize = 4096;

/// A pattern's text, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// For a wildcard, the part after `*.`.
    pub name: WireName,
    pub wildcard: bool,
}

impl Pattern {
    /// Parses `*.example.test` or `api.example.test`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, text),
        };
        if rest.contains('*') {
            return Err("`*` is allowed only as the whole leftmost label (`*.example.test`)".into());
        }
        let name = WireName::from_text(rest).map_err(|e: NameTextError| e.to_string())?;
        if name.as_bytes().len() == 1 {
            return Err("the root is not a pattern (a wildcard needs a suffix: `*.example.test`)".into());
        }
        if wildcard && name.as_bytes().len() + 2 > super::name::MAX_NAME {
            return Err("no name can be longer than this suffix".into());
        }
        Ok(Pattern { name, wildcard })
    }

    /// The stable id: a hash of the normalised text.
    pub fn id(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.wildcard.hash(&mut h);
        self.name.as_bytes().hash(&mut h);
        h.finish() | 1 // never 0: 0 marks nothing
    }

    pub fn text(&self) -> String {
        if self.wildcard {
            format!("*.{}", self.name)
        } else {
            self.name.to_string()
        }
    }
}

/// The hash of the name maps a worker looks every answer's query name up
/// in: a multiply-rotate over 8-byte words (SipHash was a tenth of a
/// response's cost). Not keyed, and need not be: the maps hold the policy's
/// patterns only, so a hostile name can make a lookup miss, never make a
/// bucket longer.
#[derive(Default, Clone, Copy)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, b: &[u8]) {
        for c in b.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type NameMap = HashMap<Box<[u8]>, u64, BuildHasherDefault<NameHasher>>;

/// The patterns of one policy snapshot.
#[derive(Debug, Default, Clone)]
pub struct FqdnPatterns {
    exact: NameMap,
    /// Wildcards by their suffix.
    wild: NameMap,
    /// Pattern id → the external-network sets (the singleton set of each
    /// network naming it) whose verdicts apply to an address learned for it.
    sets: HashMap<u64, Vec<u32>>,
    texts: HashMap<u64, String>,
}

impl FqdnPatterns {
    /// Adds `p` for the external-network set `set`.
    pub fn add(&mut self, p: &Pattern, set: u32) {
        let id = p.id();
        let key: Box<[u8]> = p.name.as_bytes().into();
        if p.wildcard {
            self.wild.insert(key, id);
        } else {
            self.exact.insert(key, id);
        }
        let sets = self.sets.entry(id).or_default();
        if !sets.contains(&set) {
            sets.push(set);
        }
        self.texts.entry(id).or_insert_with(|| p.text());
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The ids of the patterns `name` matches, into `out`; returns how many
    /// (at most [`MAX_MATCH`]). No allocation: the map lookups borrow the
    /// name's bytes and its suffixes'.
    pub fn matching(&self, name: &[u8], out: &mut [u64; MAX_MATCH]) -> usize {
        if self.is_empty() {
            return 0;
        }
        let b = name;
        let mut n = 0;
        if let Some(&id) = self.exact.get(b) {
            out[0] = id;
            n = 1;
        }
        if self.wild.is_empty() {
            return n;
        }
        // every proper suffix (one or more labels removed), root excluded
        let mut pos = 0usize;
        while n < MAX_MATCH {
            let Some(&l) = b.get(pos) else { break };
            pos += 1 + usize::from(l);
            if l == 0 || pos + 1 >= b.len() {
                break;
            }
            if let Some(&id) = b.get(pos..).and_then(|s| self.wild.get(s)) {
                out[n] = id;
                n += 1;
            }
        }
        n
    }

    /// The external-network sets of pattern `id` (empty if this policy does
    /// not name it).
    pub fn sets(&self, id: u64) -> &[u32] {
        self.sets.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The pattern's text, if this policy names it.
    pub fn text(&self, id: u64) -> Option<&str> {
        self.texts.get(&id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_patterns_match_as_documented() {
        let mut p = FqdnPatterns::default();
        let api = Pattern::parse("API.example.test.").unwrap();
        let wild = Pattern::parse("*.example.test").unwrap();
        p.add(&api, 7);
        p.add(&wild, 8);
        let m = |s: &str| {
            let mut out = [0; MAX_MATCH];
            let n = p.matching(WireName::from_text(s).unwrap().as_bytes(), &mut out);
            out[..n].to_vec()
        };
        assert_eq!(m("api.example.test"), [api.id(), wild.id()]);
        assert_eq!(m("a.b.example.test"), [wild.id()]);
        assert_eq!(m("example.test"), Vec::<u64>::new());
        assert_eq!(m("api.example.testx"), Vec::<u64>::new());
        assert_eq!(m("xexample.test"), Vec::<u64>::new());
        assert_eq!(p.sets(api.id()), [7]);
        assert_eq!(p.text(wild.id()), Some("*.example.test"));
        assert_eq!(api.id(), Pattern::parse("api.example.test").unwrap().id(), "stable across applies");
        for bad in ["a.*.test", "*", "*.", "", "a..b", "**.test", "."] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }
}
