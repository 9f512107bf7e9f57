//! The identity directory parsed and grouped: each entry's tag set, and the
//! entries no object selector can tell apart in one group. On two threads
//! when the directory is large.

use crate::policy::hash::FxHashMap;
use crate::policy::model;
use crate::policy::selector::{trim, TagSet};

/// The directory, parsed and grouped in one pass over each entry.
///
/// Identity groups: entries that agree on every tag key some object selector
/// tests (`key_slot`). No selector can tell the members of a group apart
/// (the other tags, such as a per-instance name, are never looked at).
/// Groups are numbered by first appearance. Meaningful only when every entry
/// parses (otherwise the compile fails anyway).
pub(super) struct Directory {
    /// Per entry, its tag set (`None`: does not parse).
    pub tags: Vec<Option<TagSet>>,
    /// Per entry, its group.
    pub group: Vec<u32>,
    /// Per group, its first entry.
    pub first: Vec<u32>,
}

/// One slice of the directory, grouped with its own value and group numbers.
struct DirPart<'a> {
    tags: Vec<Option<TagSet>>,
    group: Vec<u32>,
    first: Vec<u32>,
    /// `(key slot, value)` → value id (from 1; 0 in a signature: key absent).
    value_ids: FxHashMap<(usize, &'a str), u32>,
    /// Value id - 1 → `(key slot, value)`.
    values: Vec<(usize, &'a str)>,
    /// Signature (value id per key slot) → group.
    group_of_sig: FxHashMap<Box<[u32]>, u32>,
    /// Group → signature.
    sigs: Vec<Box<[u32]>>,
}

impl<'a> DirPart<'a> {
    fn new(n: usize) -> DirPart<'a> {
        DirPart {
            tags: Vec::with_capacity(n),
            group: Vec::with_capacity(n),
            first: Vec::new(),
            value_ids: FxHashMap::default(),
            values: Vec::new(),
            group_of_sig: FxHashMap::default(),
            sigs: Vec::new(),
        }
    }

    fn value_id(&mut self, slot: usize, v: &'a str) -> u32 {
        let next = self.values.len() as u32 + 1;
        let id = *self.value_ids.entry((slot, v)).or_insert(next);
        if id == next {
            self.values.push((slot, v));
        }
        id
    }

    /// The group of signature `sig`, added (first entry `first`) if new.
    fn group_id(&mut self, sig: &[u32], first: u32) -> u32 {
        if let Some(&g) = self.group_of_sig.get(sig) {
            return g;
        }
        let g = self.sigs.len() as u32;
        self.group_of_sig.insert(sig.into(), g);
        self.sigs.push(sig.into());
        self.first.push(first);
        g
    }

    /// Parses and groups `entries` (whose first is entry `offset` of the directory).
    fn build(entries: &'a [model::IdentityEntry], offset: usize, key_slot: &FxHashMap<Box<str>, usize>) -> DirPart<'a> {
        let mut p = DirPart::new(entries.len());
        p.add(entries, offset, key_slot);
        p
    }

    /// Parses and groups `entries` (whose first is entry `offset` of the
    /// directory), the entries that follow this part's.
    fn add(&mut self, entries: &'a [model::IdentityEntry], offset: usize, key_slot: &FxHashMap<Box<str>, usize>) {
        let mut sig = vec![0u32; key_slot.len()];
        for (i, e) in entries.iter().enumerate() {
            self.tags.push(TagSet::parse(&e.tags).ok());
            // The signature from the tags as written (key and value trimmed
            // as `TagSet::parse` does), borrowed from the document.
            sig.fill(0);
            for t in &e.tags {
                if let Some((k, v)) = t.split_once('=') {
                    if let Some(&slot) = key_slot.get(trim(k)) {
                        sig[slot] = self.value_id(slot, trim(v));
                    }
                }
            }
            let g = self.group_id(&sig, (offset + i) as u32);
            self.group.push(g);
        }
    }

    /// Appends `later` (the entries after this part's), renumbering its
    /// values and groups: the result is numbered as one pass would number it.
    fn append(&mut self, later: DirPart<'a>) {
        let value_map: Vec<u32> = later.values.iter().map(|&(slot, v)| self.value_id(slot, v)).collect();
        let mut sig = Vec::new();
        let group_map: Vec<u32> = later
            .sigs
            .iter()
            .zip(&later.first)
            .map(|(s, &first)| {
                sig.clear();
                sig.extend(s.iter().map(|&v| if v == 0 { 0 } else { value_map[v as usize - 1] }));
                self.group_id(&sig, first)
            })
            .collect();
        self.tags.extend(later.tags);
        self.group.extend(later.group.iter().map(|&g| group_map[g as usize]));
    }
}

/// Parses and groups the directory; on two threads when it is large and the
/// machine has a second core. The calling thread takes the first half; a
/// helper takes chunks of the second half from its front, and the calling
/// thread, once done with its half, from its back: if the helper gets no core
/// (a loaded machine), the calling thread does the work rather than wait.
pub(super) fn parse_directory(entries: &[model::IdentityEntry], key_slot: &FxHashMap<Box<str>, usize>) -> Directory {
    const SPLIT_FROM: usize = 8192;
    const CHUNK: usize = 2048;
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let whole = |p: DirPart<'_>| Directory { tags: p.tags, group: p.group, first: p.first };
    if entries.len() < SPLIT_FROM
        || *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())) < 2
    {
        return whole(DirPart::build(entries, 0, key_slot));
    }
    let mid = entries.len() / 2;
    let (first, second) = entries.split_at(mid);
    let chunks = second.len().div_ceil(CHUNK);
    let chunk = |k: usize| (&second[k * CHUNK..((k + 1) * CHUNK).min(second.len())], mid + k * CHUNK);
    // Chunks not taken yet: `claims.0..claims.1`.
    let claims = std::sync::Mutex::new((0usize, chunks));
    let claim = |front: bool| {
        let mut c = claims.lock().unwrap_or_else(|e| e.into_inner());
        if c.0 == c.1 {
            return None;
        }
        if front {
            c.0 += 1;
            Some(c.0 - 1)
        } else {
            c.1 -= 1;
            Some(c.1)
        }
    };
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new().name("compile-tags".into()).spawn_scoped(s, || {
            let mut p = DirPart::new(second.len());
            while let Some(k) = claim(true) {
                let (part, offset) = chunk(k);
                p.add(part, offset, key_slot);
            }
            p
        });
        let mut out = DirPart::build(first, 0, key_slot);
        let mut tail = Vec::new(); // from the back
        while let Some(k) = claim(false) {
            let (part, offset) = chunk(k);
            tail.push(DirPart::build(part, offset, key_slot));
        }
        if let Ok(h) = helper {
            out.append(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        for p in tail.into_iter().rev() {
            out.append(p);
        }
        whole(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_parts_append_as_one_pass() {
        use model::IdentityEntry;
        let entries: Vec<IdentityEntry> = (0..1000u32)
            .map(|i| IdentityEntry {
                identity: i,
                name: None,
                tags: vec![format!("a=x{}", i % 13), format!(" b = y{} ", i % 7), format!("c=z{i}")],
                peer: "p".into(),
            })
            .collect();
        let key_slot: FxHashMap<Box<str>, usize> = [("b".into(), 0), ("a".into(), 1)].into_iter().collect();
        let one = DirPart::build(&entries, 0, &key_slot);
        assert_eq!(one.first.len(), 91);
        let mut three = DirPart::build(&entries[..100], 0, &key_slot);
        let mut mid = DirPart::new(600);
        mid.add(&entries[100..400], 100, &key_slot);
        mid.add(&entries[400..700], 400, &key_slot);
        three.append(mid);
        three.append(DirPart::build(&entries[700..], 700, &key_slot));
        assert_eq!((&three.group, &three.first), (&one.group, &one.first));
        assert_eq!(three.tags, one.tags);
    }
}
