//! Validation and compilation of a [`PolicyDocument`] into a [`PolicySnapshot`].
//!
//! Validation visits the whole document and returns every problem it finds,
//! each naming the resource kind, resource name, field and offending value.
//! Compilation then resolves every selector once:
//!
//! 1. Local PUs with identical tags form one *subject class*; directory
//!    identities with identical tags one *identity group*.
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

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use super::hash::FxHashMap;
use super::lpm::{parse_cidr, Cidr, LpmPair};
use super::model::{self, Action, DocumentRef, PolicyDocument, PortSpec, Protocol};
use super::selector::{trim, Node, Selector, SelectorError, TagError, TagSet};
use super::{Direction, ExtNetRef, RuleRef};

// ---------------------------------------------------------------------------
// Errors

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

// ---------------------------------------------------------------------------
// The snapshot

/// Protocol bits of an entry's protocol mask.
pub(crate) const P_TCP: u8 = 1;
pub(crate) const P_UDP: u8 = 2;
pub(crate) const P_ICMP: u8 = 4;
pub(crate) const P_OTHER: u8 = 8;

pub(crate) const F_REJECT: u8 = 1;
pub(crate) const F_OBSERVE: u8 = 2;

pub(crate) const NO_EXT: u32 = u32::MAX;

/// One `(protocols, port range) → action` line of a verdict list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Entry {
    pub lo: u16,
    pub hi: u16,
    pub protos: u8,
    pub flags: u8,
    pub rule: u32,
    /// External network index, or `NO_EXT`.
    pub ext: u32,
}

/// A local PU as the snapshot knows it.
#[derive(Debug, Clone)]
pub struct PuInfo {
    pub name: Box<str>,
    pub tags: TagSet,
    pub identity: u32,
    pub ignored: bool,
    pub(crate) class: u32,
}

/// A directory identity.
#[derive(Debug, Clone)]
pub struct IdentityInfo {
    pub identity: u32,
    pub name: Option<Box<str>>,
    pub tags: TagSet,
    pub peer: u32,
    pub(crate) class: u32,
}

/// A peer gateway and its static X25519 public keys.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub name: Box<str>,
    pub keys: Box<[(u32, [u8; 32])]>,
    /// Validity of each key of `keys` (same order): `(not_before, not_after)`
    /// in Unix seconds.
    pub key_windows: Box<[(u64, u64)]>,
    /// The networks behind the peer (`peers[].networks`).
    pub networks: Box<[Cidr]>,
}

/// A rule's names and settings, for flow events.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    pub ruleset: Box<str>,
    pub direction: Direction,
    /// Position in the ruleset's `incoming` or `outgoing` list.
    pub index: u32,
    pub name: Box<str>,
    pub action: Action,
    pub observe: bool,
}

/// An external network's name and tags, for flow events.
#[derive(Debug, Clone)]
pub struct ExternalNetworkInfo {
    pub name: Box<str>,
    pub tags: TagSet,
}

/// This gateway's own key reference (as in the document; `private_key` decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKeyInfo {
    pub gateway: Box<str>,
    pub key_id: u32,
    pub private_key_file: Option<Box<str>>,
    pub private_key: Option<[u8; 32]>,
    /// Unix seconds from which the main key is used (`local.not_before`; 0: always).
    pub not_before: u64,
    /// `local.previous_keys`, in document order.
    pub previous_keys: Box<[PreviousKeyInfo]>,
}

/// A previous key of this gateway (`local.previous_keys[]`; `private_key` decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousKeyInfo {
    pub key_id: u32,
    pub private_key_file: Option<Box<str>>,
    pub private_key: Option<[u8; 32]>,
    /// Unix seconds after which the key is no longer used.
    pub not_after: u64,
}

/// The compiled, immutable policy. `Send + Sync`; publish it through
/// `arc_swap::ArcSwap<PolicySnapshot>` and load it once per burst.
#[derive(Debug)]
pub struct PolicySnapshot {
    pub(crate) generation: u32,
    pub(crate) revision: Option<Box<str>>,
    pub(crate) local: Option<LocalKeyInfo>,
    pub(crate) pus: Box<[PuInfo]>,
    pub(crate) identities: Box<[IdentityInfo]>,
    pub(crate) identity_index: FxHashMap<u32, u32>,
    pub(crate) peers: Box<[PeerInfo]>,
    /// key id → peer index.
    pub(crate) key_index: FxHashMap<u32, u32>,
    pub(crate) rules: Box<[RuleInfo]>,
    pub(crate) external_networks: Box<[ExternalNetworkInfo]>,
    pub(crate) pu_addresses: LpmPair,
    /// Address → external-network set (index into `ext_sets`).
    pub(crate) ext_lpm: LpmPair,
    pub(crate) managed_tcp: LpmPair,
    pub(crate) managed_udp: LpmPair,
    pub(crate) excluded: LpmPair,
    /// Address → peer index (`peers[].networks`).
    pub(crate) peer_networks: LpmPair,
    /// All entry lists, back to back.
    pub(crate) entries: Box<[Entry]>,
    /// `verdict_key(..)` → (start, len) in `entries`.
    pub(crate) verdicts: FxHashMap<u64, (u32, u32)>,
    /// Per `(direction, subject class)`: the list for identity classes no rule names.
    pub(crate) defaults: Box<[(u32, u32)]>,
    pub(crate) subject_classes: u32,
    pub(crate) identity_classes: u32,
    pub(crate) ext_set_count: u32,
}

pub(crate) const KIND_IDENTITY: u64 = 0;
pub(crate) const KIND_EXTERNAL: u64 = 1;

#[inline]
pub(crate) fn verdict_key(dir: Direction, kind: u64, subject: u32, class: u32) -> u64 {
    ((dir as u64) << 63) | (kind << 62) | ((subject as u64) << 32) | class as u64
}

/// Largest `keys[].id` / `local.key_id`: the option carries 24 bits, the
/// sender's 16-bit key id and the low byte of the receiver's.
pub const MAX_KEY_ID: u32 = 0xffff;

/// Flow entries store external-network indices in 16 bits.
pub const MAX_EXTERNAL_NETWORKS: usize = 65534;

static GENERATION: AtomicU32 = AtomicU32::new(0);

// ---------------------------------------------------------------------------
// Validation

struct Ctx {
    errors: Vec<CompileError>,
}

impl Ctx {
    fn err(
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

    fn tags(&mut self, r: ResourceKind, name: &str, tags: &[String]) -> TagSet {
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

    fn cidrs(&mut self, r: ResourceKind, name: &str, field: &str, list: &[String]) -> Vec<Cidr> {
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            match parse_cidr(s) {
                Ok(c) => out.push(c),
                Err(why) => self.err(r, name, format!("{field}[{i}]"), s.clone(), Problem::BadCidr(why)),
            }
        }
        out
    }

    fn selector(&mut self, r: ResourceKind, name: &str, field: &str, text: &str) -> Selector {
        match Selector::parse(text) {
            Ok(s) => s,
            Err(e) => {
                self.err(r, name, field, text, Problem::BadSelector(e));
                Selector::all()
            }
        }
    }

    fn ports(&mut self, r: ResourceKind, name: &str, field: &str, list: &[PortSpec]) -> Vec<(u16, u16)> {
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

    /// Checks `local` (the main key and every previous one) and keeps what
    /// the engine needs to load the keys.
    fn local(&mut self, l: &model::LocalKeys) -> LocalKeyInfo {
        let g = &l.gateway;
        let main = self.local_key(g, "", l.key_id, l.private_key.as_deref(), l.private_key_file.is_some());
        let mut previous_keys = Vec::with_capacity(l.previous_keys.len());
        for (i, k) in l.previous_keys.iter().enumerate() {
            let at = format!("previous_keys[{i}].");
            let private_key = self.local_key(g, &at, k.key_id, k.private_key.as_deref(), k.private_key_file.is_some());
            if k.not_after.is_none() {
                self.err(
                    ResourceKind::Local,
                    g,
                    format!("{at}not_after"),
                    "",
                    Problem::Missing("a previous key needs not_after"),
                );
            }
            previous_keys.push(PreviousKeyInfo {
                key_id: k.key_id,
                private_key_file: k.private_key_file.as_deref().map(Into::into),
                private_key,
                not_after: k.not_after.unwrap_or(u64::MAX),
            });
        }
        // A peer's option carries only the low 8 bits of the receiver's key
        // id: two local keys sharing them would share receive key ids.
        let ids = local_key_ids(l);
        for (n, (id, field)) in ids.iter().enumerate() {
            if let Some((other_id, other)) = ids[..n].iter().find(|(o, _)| o & 0xff == id & 0xff) {
                let field = field.strip_prefix("local.").unwrap_or(field);
                self.err(
                    ResourceKind::Local,
                    g,
                    field,
                    id.to_string(),
                    Problem::SameLowByte { other: format!("{other} ({other_id})") },
                );
            }
        }
        LocalKeyInfo {
            gateway: l.gateway.as_str().into(),
            key_id: l.key_id,
            private_key_file: l.private_key_file.as_deref().map(Into::into),
            private_key: main,
            not_before: l.not_before.unwrap_or(0),
            previous_keys: previous_keys.into(),
        }
    }

    /// One local key's id and secret (`at`: the field prefix within `local`,
    /// "" for the main key). The inline secret is never echoed.
    fn local_key(
        &mut self,
        gateway: &str,
        at: &str,
        key_id: u32,
        private_key: Option<&str>,
        has_file: bool,
    ) -> Option<[u8; 32]> {
        let decoded = private_key.and_then(|k| match decode_key32(k) {
            Ok(k) => Some(k),
            Err(why) => {
                self.err(
                    ResourceKind::Local,
                    gateway,
                    format!("{at}private_key"),
                    "(redacted)",
                    Problem::BadKey(why.replace(k.trim(), "(redacted)")),
                );
                None
            }
        });
        if private_key.is_some() == has_file {
            self.err(
                ResourceKind::Local,
                gateway,
                format!("{at}private_key"),
                "",
                Problem::Missing("exactly one of private_key and private_key_file must be set"),
            );
        }
        if key_id > MAX_KEY_ID {
            self.err(ResourceKind::Local, gateway, format!("{at}key_id"), key_id.to_string(), Problem::KeyIdRange);
        }
        decoded
    }
}

/// Every local key id (the main one first) with its field, to name it.
fn local_key_ids(l: &model::LocalKeys) -> Vec<(u32, String)> {
    let previous = l.previous_keys.iter().enumerate();
    std::iter::once((l.key_id, "local.key_id".to_string()))
        .chain(previous.map(|(i, k)| (k.key_id, format!("local.previous_keys[{i}].key_id"))))
        .collect()
}

fn parse_port(p: &PortSpec) -> Result<(u16, u16), Problem> {
    let one = |s: &str| -> Result<u16, Problem> { s.trim().parse::<u16>().map_err(|_| Problem::BadPort) };
    match p {
        PortSpec::Number(n) => u16::try_from(*n).map(|n| (n, n)).map_err(|_| Problem::BadPort),
        PortSpec::Text(s) => {
            let (lo, hi) = match s.split_once('-') {
                Some((a, b)) => (one(a)?, one(b)?),
                None => {
                    let n = one(s)?;
                    (n, n)
                }
            };
            if lo > hi {
                return Err(Problem::InvertedRange);
            }
            Ok((lo, hi))
        }
    }
}

fn proto_mask(list: &[Protocol]) -> u8 {
    list.iter().fold(0, |m, p| {
        m | match p {
            Protocol::Tcp => P_TCP,
            Protocol::Udp => P_UDP,
            Protocol::Icmp => P_ICMP,
            Protocol::Any => P_TCP | P_UDP | P_ICMP | P_OTHER,
        }
    })
}

/// Decodes 32 bytes from 64 hex digits or base64 (standard or URL alphabet, padding optional).
pub fn decode_key32(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    let mut out = [0u8; 32];
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        return Ok(out);
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let body = s.trim_end_matches('=');
    let mut bytes = Vec::with_capacity(33);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let Some(v) = val(c) else {
            return Err(format!("{s:?} is neither 64 hex digits nor base64"));
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bytes.len() != 32 {
        return Err(format!("{s:?} decodes to {} bytes, an X25519 key has 32", bytes.len()));
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Selector evaluation over a population of tag sets

/// Tag sets indexed by `key=value` and by `key`.
struct Population<'a> {
    sets: Vec<&'a TagSet>,
    by_kv: FxHashMap<(&'a str, &'a str), Vec<u32>>,
    by_k: FxHashMap<&'a str, Vec<u32>>,
}

impl<'a> Population<'a> {
    /// Indexes `sets` on the tag keys in `keys` (the keys some selector
    /// tests; `true`: with `has(key)`, so also indexed by key alone).
    fn new(sets: Vec<&'a TagSet>, keys: &FxHashMap<&str, bool>) -> Population<'a> {
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
    fn select(&self, sel: &Selector) -> Vec<u32> {
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

// ---------------------------------------------------------------------------
// Compilation

struct RuleC {
    dir: Direction,
    ruleset: u32,
    protos: u8,
    flags: u8,
    ports: Vec<(u16, u16)>,
    object: Selector,
}

struct ExtC {
    cidrs: Vec<Cidr>,
    protos: u8,
    ports: Vec<(u16, u16)>,
}

/// Validates `doc` and compiles it. On failure returns every problem found.
pub fn compile(doc: &PolicyDocument) -> Result<PolicySnapshot, CompileErrors> {
    compile_view(doc.view())
}

/// [`compile`] over a document whose parts are borrowed separately.
pub fn compile_view(doc: DocumentRef<'_>) -> Result<PolicySnapshot, CompileErrors> {
    use ResourceKind as K;
    let mut cx = Ctx { errors: Vec::new() };

    // --- local
    let local = doc.local.map(|l| cx.local(l));

    // --- peers
    let mut peer_index: FxHashMap<&str, u32> = FxHashMap::default();
    let mut key_index: FxHashMap<u32, u32> = FxHashMap::default();
    let mut peers = Vec::with_capacity(doc.peers.len());
    let mut peer_prefixes: Vec<(Cidr, u32, usize)> = Vec::new(); // (cidr, peer, index in networks)
    let local_key_ids = doc.local.map(local_key_ids).unwrap_or_default();
    for (i, p) in doc.peers.iter().enumerate() {
        if peer_index.insert(&p.name, i as u32).is_some() {
            cx.err(K::Peer, &p.name, "name", p.name.clone(), Problem::Duplicate { first: "another peer".into() });
        }
        if p.keys.is_empty() {
            cx.err(K::Peer, &p.name, "keys", "[]", Problem::Missing("a peer needs at least one key"));
        }
        let mut keys = Vec::with_capacity(p.keys.len());
        let mut key_windows = Vec::with_capacity(p.keys.len());
        for (j, k) in p.keys.iter().enumerate() {
            if k.id > MAX_KEY_ID {
                cx.err(K::Peer, &p.name, format!("keys[{j}].id"), k.id.to_string(), Problem::KeyIdRange);
            }
            let window = (k.not_before.unwrap_or(0), k.not_after.unwrap_or(u64::MAX));
            if window.0 > window.1 {
                cx.err(
                    K::Peer,
                    &p.name,
                    format!("keys[{j}].not_after"),
                    window.1.to_string(),
                    Problem::Missing("not_after is before not_before"),
                );
            }
            key_windows.push(window);
            if let Some((_, field)) = local_key_ids.iter().find(|(id, _)| *id == k.id) {
                cx.err(
                    K::Peer,
                    &p.name,
                    format!("keys[{j}].id"),
                    k.id.to_string(),
                    Problem::Duplicate { first: field.clone() },
                );
            }
            if let Some(&other) = key_index.get(&k.id) {
                cx.err(
                    K::Peer,
                    &p.name,
                    format!("keys[{j}].id"),
                    k.id.to_string(),
                    Problem::Duplicate { first: format!("peer {:?}", doc.peers[other as usize].name) },
                );
            } else {
                key_index.insert(k.id, i as u32);
            }
            match decode_key32(&k.public_key) {
                Ok(b) => keys.push((k.id, b)),
                Err(why) => cx.err(
                    K::Peer,
                    &p.name,
                    format!("keys[{j}].public_key"),
                    k.public_key.clone(),
                    Problem::BadKey(why),
                ),
            }
        }
        let networks = cx.cidrs(K::Peer, &p.name, "networks", &p.networks);
        for (j, c) in networks.iter().enumerate() {
            peer_prefixes.push((*c, i as u32, j));
        }
        peers.push(PeerInfo {
            name: p.name.as_str().into(),
            keys: keys.into(),
            key_windows: key_windows.into(),
            networks: networks.into(),
        });
    }

    // The same prefix behind two peers is ambiguous (nested prefixes are fine:
    // the longest match wins).
    {
        let mut seen: HashMap<Cidr, u32> = HashMap::new();
        for &(c, peer, j) in &peer_prefixes {
            if let Some(&first) = seen.get(&c) {
                if first != peer {
                    let p = &doc.peers[peer as usize];
                    cx.err(
                        K::Peer,
                        &p.name,
                        format!("networks[{j}]"),
                        p.networks[j].clone(),
                        Problem::Duplicate { first: format!("peer {:?}", doc.peers[first as usize].name) },
                    );
                }
            } else {
                seen.insert(c, peer);
            }
        }
    }

    // --- identities used by anyone: number → who
    // Owner of each numeric identity: `Ok(pu index)` or `Err(directory index)`.
    let mut ident_owner: FxHashMap<u32, Result<usize, usize>> = FxHashMap::default();
    ident_owner.reserve(doc.processing_units.len() + doc.identities.len());
    let owner_name = |o: &Result<usize, usize>| match *o {
        Ok(p) => format!("processing unit {:?}", doc.processing_units[p].name),
        Err(i) => format!("identities[{:?}]", doc.identities[i].identity.to_string()),
    };

    // --- processing units
    let mut pu_names: HashMap<&str, usize> = HashMap::new();
    let mut pus = Vec::with_capacity(doc.processing_units.len());
    let mut pu_prefixes: Vec<(Cidr, u32, usize)> = Vec::new(); // (cidr, pu, address index)
    for (i, p) in doc.processing_units.iter().enumerate() {
        if pu_names.insert(&p.name, i).is_some() {
            cx.err(
                K::ProcessingUnit,
                &p.name,
                "name",
                p.name.clone(),
                Problem::Duplicate { first: "another processing unit".into() },
            );
        }
        let tags = cx.tags(K::ProcessingUnit, &p.name, &p.tags);
        if p.addresses.is_empty() {
            cx.err(
                K::ProcessingUnit,
                &p.name,
                "addresses",
                "[]",
                Problem::Missing("a processing unit needs at least one address"),
            );
        }
        for (j, s) in p.addresses.iter().enumerate() {
            match parse_cidr(s) {
                Ok(c) => pu_prefixes.push((c, i as u32, j)),
                Err(why) => {
                    cx.err(K::ProcessingUnit, &p.name, format!("addresses[{j}]"), s.clone(), Problem::BadCidr(why))
                }
            }
        }
        if let Some(other) = ident_owner.get(&p.identity) {
            cx.err(
                K::ProcessingUnit,
                &p.name,
                "identity",
                p.identity.to_string(),
                Problem::DuplicateIdentity { other: owner_name(other) },
            );
        } else {
            ident_owner.insert(p.identity, Ok(i));
        }
        pus.push(PuInfo { name: p.name.as_str().into(), tags, identity: p.identity, ignored: false, class: 0 });
    }
    // Overlaps: prefixes are nested or disjoint, so after sorting by (family,
    // start, wider first) a prefix overlaps an earlier one iff it starts before
    // the furthest end seen so far.
    {
        let range = |c: &Cidr| -> (u8, u128, u128) {
            use super::lpm::LpmKey;
            match *c {
                Cidr::V4(a, l) => (4, a as u128, a.broadcast(l) as u128),
                Cidr::V6(a, l) => (6, a, a.broadcast(l)),
            }
        };
        let mut sorted: Vec<(u8, u128, u128, usize)> = pu_prefixes
            .iter()
            .enumerate()
            .map(|(k, (c, _, _))| {
                let (f, a, b) = range(c);
                (f, a, b, k)
            })
            .collect();
        sorted.sort_by(|x, y| (x.0, x.1, std::cmp::Reverse(x.2)).cmp(&(y.0, y.1, std::cmp::Reverse(y.2))));
        let mut widest: Option<(u8, u128, usize)> = None; // (family, end, prefix)
        for &(f, a, b, k) in &sorted {
            if let Some((wf, wend, wk)) = widest {
                if wf == f && a <= wend {
                    let (_, pu, j) = pu_prefixes[k];
                    let (_, opu, oj) = pu_prefixes[wk];
                    let p = &doc.processing_units[pu as usize];
                    let o = &doc.processing_units[opu as usize];
                    cx.err(
                        K::ProcessingUnit,
                        &p.name,
                        format!("addresses[{j}]"),
                        p.addresses[j].clone(),
                        Problem::OverlappingAddress {
                            other_pu: o.name.clone(),
                            other_address: o.addresses[oj].clone(),
                        },
                    );
                    continue;
                }
            }
            widest = Some((f, b, k));
        }
    }

    // --- identity directory
    let mut identities = Vec::with_capacity(doc.identities.len());
    let mut identity_index: FxHashMap<u32, u32> = FxHashMap::default();
    identity_index.reserve(doc.identities.len());
    // (`ident_owner` holds the PUs' identities; the directory's own are in
    // `identity_index`, a directory entry being named by its number.)
    // The rules' objects are parsed first (their errors are still reported
    // with the rulesets, below): the keys they test decide how the directory
    // is grouped while it is parsed.
    let mut objects = doc
        .rulesets
        .iter()
        .flat_map(|rs| rs.incoming.iter().chain(&rs.outgoing))
        .map(|r| Selector::parse(&r.object).ok())
        .collect::<Vec<_>>()
        .into_iter();
    let key_slot: FxHashMap<Box<str>, usize> =
        selector_keys(objects.as_slice().iter().flatten()).keys().enumerate().map(|(i, &k)| (k.into(), i)).collect();
    let directory = parse_directory(doc.identities, &key_slot);
    for (e, parsed) in doc.identities.iter().zip(directory.tags) {
        let other = match ident_owner.get(&e.identity) {
            Some(pu) => Some(owner_name(pu)),
            None => match identity_index.entry(e.identity) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    Some(format!("identities[{:?}]", e.identity.to_string()))
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(identities.len() as u32);
                    None
                }
            },
        };
        if let Some(other) = other {
            let name = e.identity.to_string();
            cx.err(K::Identity, &name, "identity", name.clone(), Problem::DuplicateIdentity { other });
            continue;
        }
        let tags = match parsed {
            Some(t) => t,
            None => cx.tags(K::Identity, &e.identity.to_string(), &e.tags),
        };
        let peer = match peer_index.get(e.peer.as_str()) {
            Some(&p) => p,
            None => {
                cx.err(K::Identity, &e.identity.to_string(), "peer", e.peer.clone(), Problem::UnknownPeer);
                u32::MAX
            }
        };
        identities.push(IdentityInfo {
            identity: e.identity,
            name: e.name.as_deref().map(Into::into),
            tags,
            peer,
            class: 0,
        });
    }

    // --- external networks
    let mut ext_names: HashMap<&str, usize> = HashMap::new();
    let mut exts = Vec::with_capacity(doc.external_networks.len());
    let mut ext_infos = Vec::with_capacity(doc.external_networks.len());
    for (i, x) in doc.external_networks.iter().enumerate() {
        if ext_names.insert(&x.name, i).is_some() {
            cx.err(
                K::ExternalNetwork,
                &x.name,
                "name",
                x.name.clone(),
                Problem::Duplicate { first: "another external network".into() },
            );
        }
        let tags = cx.tags(K::ExternalNetwork, &x.name, &x.tags);
        if x.cidrs.is_empty() {
            cx.err(
                K::ExternalNetwork,
                &x.name,
                "cidrs",
                "[]",
                Problem::Missing("an external network needs at least one CIDR"),
            );
        }
        let cidrs = cx.cidrs(K::ExternalNetwork, &x.name, "cidrs", &x.cidrs);
        let ports = cx.ports(K::ExternalNetwork, &x.name, "ports", &x.ports);
        let protos = proto_mask(&x.protocols);
        check_ports_protocols(&mut cx, K::ExternalNetwork, &x.name, "ports", protos, &x.ports);
        if x.protocols.is_empty() {
            cx.err(
                K::ExternalNetwork,
                &x.name,
                "protocols",
                "[]",
                Problem::Missing("protocols must not be empty (omit it for any)"),
            );
        }
        exts.push(ExtC { cidrs, protos, ports });
        ext_infos.push(ExternalNetworkInfo { name: x.name.as_str().into(), tags });
    }

    if doc.external_networks.len() > MAX_EXTERNAL_NETWORKS {
        let last = &doc.external_networks[MAX_EXTERNAL_NETWORKS];
        cx.err(
            K::ExternalNetwork,
            &last.name,
            "name",
            last.name.clone(),
            Problem::Missing("more than 65534 external networks (flow entries index them in 16 bits)"),
        );
    }

    // --- rulesets
    let mut rs_names: HashMap<&str, usize> = HashMap::new();
    let mut subjects = Vec::with_capacity(doc.rulesets.len());
    let mut rules: Vec<RuleC> = Vec::new();
    let mut rule_infos: Vec<RuleInfo> = Vec::new();
    for (i, rs) in doc.rulesets.iter().enumerate() {
        if rs_names.insert(&rs.name, i).is_some() {
            cx.err(
                K::Ruleset,
                &rs.name,
                "name",
                rs.name.clone(),
                Problem::Duplicate { first: "another ruleset".into() },
            );
        }
        subjects.push(cx.selector(K::Ruleset, &rs.name, "subject", &rs.subject));
        for (dir, list, dname) in
            [(Direction::Incoming, &rs.incoming, "incoming"), (Direction::Outgoing, &rs.outgoing, "outgoing")]
        {
            let mut names: HashMap<&str, usize> = HashMap::new();
            for (j, r) in list.iter().enumerate() {
                let field = |f: &str| format!("{dname}[{j}].{f}");
                if let Some(first) = names.insert(&r.name, j) {
                    cx.err(
                        K::Ruleset,
                        &rs.name,
                        field("name"),
                        r.name.clone(),
                        Problem::Duplicate { first: format!("{dname}[{first}]") },
                    );
                }
                // (field names are formatted only when there is a problem to report)
                let object = match objects.next().flatten() {
                    Some(s) => s,
                    None => cx.selector(K::Ruleset, &rs.name, &field("object"), &r.object),
                };
                let ports = match r.ports.iter().map(parse_port).collect::<Result<Vec<_>, _>>() {
                    Ok(mut v) => {
                        if v.is_empty() {
                            v.push((0, u16::MAX));
                        }
                        v
                    }
                    Err(_) => cx.ports(K::Ruleset, &rs.name, &field("ports"), &r.ports),
                };
                let protos = proto_mask(&r.protocols);
                if r.protocols.is_empty() {
                    cx.err(
                        K::Ruleset,
                        &rs.name,
                        field("protocols"),
                        "[]",
                        Problem::Missing("protocols must not be empty (omit it for any)"),
                    );
                }
                let n = cx.errors.len();
                check_ports_protocols(&mut cx, K::Ruleset, &rs.name, "", protos, &r.ports);
                for e in &mut cx.errors[n..] {
                    e.field = format!("{}{}", field("ports"), e.field);
                }
                let flags =
                    if r.action == Action::Reject { F_REJECT } else { 0 } | if r.observe { F_OBSERVE } else { 0 };
                rules.push(RuleC { dir, ruleset: i as u32, protos, flags, ports, object });
                rule_infos.push(RuleInfo {
                    ruleset: rs.name.as_str().into(),
                    direction: dir,
                    index: j as u32,
                    name: r.name.as_str().into(),
                    action: r.action,
                    observe: r.observe,
                });
            }
        }
    }

    // --- enforcer profile
    let prof = &doc.enforcer_profile;
    let managed_tcp = cx.cidrs(K::EnforcerProfile, "", "managed_tcp_networks", &prof.managed_tcp_networks);
    let managed_udp = cx.cidrs(K::EnforcerProfile, "", "managed_udp_networks", &prof.managed_udp_networks);
    let excluded = cx.cidrs(K::EnforcerProfile, "", "excluded_networks", &prof.excluded_networks);
    let ignore = prof.ignore.as_ref().map(|s| cx.selector(K::EnforcerProfile, "", "ignore", s));

    if !cx.errors.is_empty() {
        return Err(CompileErrors(cx.errors));
    }
    drop(cx);

    // ======================= build =======================
    if let Some(ign) = &ignore {
        for p in pus.iter_mut() {
            p.ignored = ign.matches(&p.tags);
        }
    }

    // Subject classes: PUs with identical tags.
    let mut class_of_tags: FxHashMap<&TagSet, u32> = FxHashMap::default();
    let mut subject_sets: Vec<&TagSet> = Vec::new();
    let mut pu_class = Vec::with_capacity(pus.len());
    for p in &pus {
        let c = *class_of_tags.entry(&p.tags).or_insert_with(|| {
            subject_sets.push(&p.tags);
            subject_sets.len() as u32 - 1
        });
        pu_class.push(c);
    }
    drop(class_of_tags);
    let n_subjects = subject_sets.len();
    let subject_keys = selector_keys(subjects.iter());
    let subject_pop = Population::new(subject_sets, &subject_keys);
    // Rulesets applying to each subject class.
    let mut applies: Vec<Vec<u32>> = vec![Vec::new(); n_subjects];
    for (r, s) in subjects.iter().enumerate() {
        for c in subject_pop.select(s) {
            applies[c as usize].push(r as u32);
        }
    }
    // Rules of each ruleset, by direction.
    let mut rs_rules: Vec<[Vec<u32>; 2]> = vec![[Vec::new(), Vec::new()]; doc.rulesets.len()];
    for (j, r) in rules.iter().enumerate() {
        rs_rules[r.ruleset as usize][r.dir as usize].push(j as u32);
    }

    // Identity groups (see `parse_directory`), each evaluated on its first
    // member's tags. (No error: every entry is in `identities`, in order.)
    let group_sets: Vec<&TagSet> = directory.first.iter().map(|&i| &identities[i as usize].tags).collect();
    let ident_group = directory.group;
    let object_keys = selector_keys(rules.iter().map(|r| &r.object));
    let n_groups = group_sets.len();
    let group_pop = Population::new(group_sets, &object_keys);
    let ext_pop = Population::new(ext_infos.iter().map(|x| &x.tags).collect(), &object_keys);

    // Only rules that apply to some subject matter; evaluate their objects.
    let mut rule_used = vec![false; rules.len()];
    for a in &applies {
        for &rs in a {
            for d in &rs_rules[rs as usize] {
                for &j in d {
                    rule_used[j as usize] = true;
                }
            }
        }
    }
    let mut universal = vec![false; rules.len()];
    let mut rule_groups: Vec<Vec<u32>> = vec![Vec::new(); rules.len()];
    let mut rule_exts: Vec<Vec<u32>> = vec![Vec::new(); rules.len()];
    // Several rules often share one object selector: evaluate each text once.
    let mut by_text: FxHashMap<&str, usize> = FxHashMap::default();
    for (j, r) in rules.iter().enumerate() {
        if !rule_used[j] {
            continue;
        }
        if r.object.is_all() && n_groups > 0 {
            universal[j] = true;
        } else if let Some(&k) = by_text.get(r.object.source()) {
            universal[j] = universal[k];
            rule_groups[j] = rule_groups[k].clone();
            rule_exts[j] = rule_exts[k].clone();
            continue;
        } else {
            let g = group_pop.select(&r.object);
            if n_groups > 0 && g.len() == n_groups {
                universal[j] = true;
            } else {
                rule_groups[j] = g;
            }
            by_text.insert(r.object.source(), j);
        }
        rule_exts[j] = ext_pop.select(&r.object);
    }

    // Identity classes: groups named by exactly the same non-universal rules.
    // CSR of group → rules.
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
    let mut group_class = Vec::with_capacity(n_groups);
    for g in 0..n_groups {
        let s = &sig[counts[g] as usize..counts[g + 1] as usize];
        let next = class_of_sig.len() as u32;
        group_class.push(*class_of_sig.entry(s).or_insert(next));
    }
    let n_classes = class_of_sig.len() as u32;
    drop(class_of_sig);
    for (e, &g) in identities.iter_mut().zip(&ident_group) {
        e.class = group_class[g as usize];
    }
    // Rule → identity classes it names.
    let mut seen = vec![u32::MAX; n_classes as usize];
    let rule_classes: Vec<Vec<u32>> = rule_groups
        .iter()
        .enumerate()
        .map(|(j, gs)| {
            let mut out = Vec::new();
            for &g in gs {
                let c = group_class[g as usize];
                if seen[c as usize] != j as u32 {
                    seen[c as usize] = j as u32;
                    out.push(c);
                }
            }
            out
        })
        .collect();
    drop(rule_groups);

    // External-network sets: for each distinct prefix, the networks covering it.
    let mut ext_prefixes: Vec<Cidr> = exts.iter().flat_map(|x| x.cidrs.iter().copied()).collect();
    ext_prefixes.sort_by_key(|c| match *c {
        Cidr::V4(a, l) => (4u8, a as u128, l),
        Cidr::V6(a, l) => (6u8, a, l),
    });
    ext_prefixes.dedup();
    let mut ext_sets: Vec<Vec<u32>> = Vec::new();
    let mut set_index: HashMap<Vec<u32>, u32> = HashMap::new();
    let mut ext_lpm_input = Vec::with_capacity(ext_prefixes.len());
    for p in &ext_prefixes {
        let plen = match *p {
            Cidr::V4(_, l) | Cidr::V6(_, l) => l,
        };
        let set: Vec<u32> = (0..exts.len() as u32)
            .filter(|&x| {
                exts[x as usize].cidrs.iter().any(|q| {
                    let qlen = match *q {
                        Cidr::V4(_, l) | Cidr::V6(_, l) => l,
                    };
                    qlen <= plen && q.overlaps(p)
                })
            })
            .collect();
        let id = *set_index.entry(set.clone()).or_insert_with(|| {
            ext_sets.push(set);
            ext_sets.len() as u32 - 1
        });
        ext_lpm_input.push((*p, id));
    }
    drop(set_index);

    // Verdict lists.
    let mut entries: Vec<Entry> = Vec::new();
    let mut interned: FxHashMap<Vec<Entry>, (u32, u32)> = FxHashMap::default();
    let mut intern = |mut list: Vec<Entry>, entries: &mut Vec<Entry>| -> (u32, u32) {
        // Enforced before observed, reject before allow, then declaration order.
        list.sort_by_key(|e| (e.flags & F_OBSERVE, (e.flags & F_REJECT) ^ F_REJECT, e.rule, e.ext, e.lo));
        list.dedup();
        if let Some(&r) = interned.get(&list) {
            return r;
        }
        let r = (entries.len() as u32, list.len() as u32);
        entries.extend_from_slice(&list);
        interned.insert(list, r);
        r
    };
    let rule_entries = |j: u32, ext: Option<u32>, out: &mut Vec<Entry>| {
        let r = &rules[j as usize];
        match ext {
            None => {
                for &(lo, hi) in &r.ports {
                    out.push(Entry { lo, hi, protos: r.protos, flags: r.flags, rule: j, ext: NO_EXT });
                }
            }
            Some(x) => {
                let xc = &exts[x as usize];
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
    };
    let mut verdicts: FxHashMap<u64, (u32, u32)> = FxHashMap::default();
    let mut defaults = vec![(0u32, 0u32); 2 * n_subjects];
    let mut per_class: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for s in 0..n_subjects {
        for dir in [Direction::Incoming, Direction::Outgoing] {
            let applicable: Vec<u32> =
                applies[s].iter().flat_map(|&rs| rs_rules[rs as usize][dir as usize].iter().copied()).collect();
            if applicable.is_empty() {
                continue;
            }
            let mut base = Vec::new();
            per_class.clear();
            for &j in &applicable {
                if universal[j as usize] {
                    rule_entries(j, None, &mut base);
                } else {
                    for &c in &rule_classes[j as usize] {
                        per_class.entry(c).or_default().push(j);
                    }
                }
            }
            defaults[2 * s + dir as usize] = intern(base.clone(), &mut entries);
            for (&c, js) in &per_class {
                let mut list = base.clone();
                for &j in js {
                    rule_entries(j, None, &mut list);
                }
                let r = intern(list, &mut entries);
                verdicts.insert(verdict_key(dir, KIND_IDENTITY, s as u32, c), r);
            }
            for (e, set) in ext_sets.iter().enumerate() {
                let mut list = Vec::new();
                for &j in &applicable {
                    for &x in set {
                        if rule_exts[j as usize].binary_search(&x).is_ok() {
                            rule_entries(j, Some(x), &mut list);
                        }
                    }
                }
                if !list.is_empty() {
                    let r = intern(list, &mut entries);
                    verdicts.insert(verdict_key(dir, KIND_EXTERNAL, s as u32, e as u32), r);
                }
            }
        }
    }
    drop(interned);

    for (p, &c) in pus.iter_mut().zip(&pu_class) {
        p.class = c;
    }
    let pu_lpm: Vec<(Cidr, u32)> = pu_prefixes.iter().map(|&(c, pu, _)| (c, pu)).collect();
    let unit = |v: &[Cidr]| LpmPair::build(&v.iter().map(|&c| (c, 0)).collect::<Vec<_>>());

    Ok(PolicySnapshot {
        generation: GENERATION.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
        revision: doc.revision.map(Into::into),
        local,
        pus: pus.into(),
        identities: identities.into(),
        identity_index,
        peers: peers.into(),
        key_index,
        rules: rule_infos.into(),
        external_networks: ext_infos.into(),
        pu_addresses: LpmPair::build(&pu_lpm),
        ext_lpm: LpmPair::build(&ext_lpm_input),
        managed_tcp: unit(&managed_tcp),
        managed_udp: unit(&managed_udp),
        excluded: unit(&excluded),
        peer_networks: LpmPair::build(&peer_prefixes.iter().map(|&(c, p, _)| (c, p)).collect::<Vec<_>>()),
        entries: entries.into(),
        verdicts,
        defaults: defaults.into(),
        subject_classes: n_subjects as u32,
        identity_classes: n_classes,
        ext_set_count: ext_sets.len() as u32,
    })
}

/// The directory, parsed and grouped in one pass over each entry.
///
/// Identity groups: entries that agree on every tag key some object selector
/// tests (`key_slot`). No selector can tell the members of a group apart
/// (the other tags, such as a per-instance name, are never looked at).
/// Groups are numbered by first appearance. Meaningful only when every entry
/// parses (otherwise the compile fails anyway).
struct Directory {
    /// Per entry, its tag set (`None`: does not parse).
    tags: Vec<Option<TagSet>>,
    /// Per entry, its group.
    group: Vec<u32>,
    /// Per group, its first entry.
    first: Vec<u32>,
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
fn parse_directory(entries: &[model::IdentityEntry], key_slot: &FxHashMap<Box<str>, usize>) -> Directory {
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

/// The tag keys the selectors test.
fn selector_keys<'a>(sels: impl Iterator<Item = &'a Selector>) -> FxHashMap<&'a str, bool> {
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

fn check_ports_protocols(cx: &mut Ctx, r: ResourceKind, name: &str, field: &str, protos: u8, ports: &[PortSpec]) {
    if !ports.is_empty() && protos != 0 && protos & (P_TCP | P_UDP) == 0 {
        let v = ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        cx.err(r, name, field, format!("[{v}]"), Problem::PortsWithoutProtocol);
    }
}

impl PolicySnapshot {
    /// A process-wide counter, distinct for every compiled snapshot. Flow
    /// entries remember it so that a verdict from an older snapshot can be told apart.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    pub fn local(&self) -> Option<&LocalKeyInfo> {
        self.local.as_ref()
    }

    /// The local PUs, indexed by `PuId`.
    pub fn pus(&self) -> &[PuInfo] {
        &self.pus
    }

    pub fn pu(&self, pu: super::PuId) -> Option<&PuInfo> {
        self.pus.get(pu.0 as usize)
    }

    /// The directory entry of a remote identity.
    pub fn identity(&self, identity: u32) -> Option<&IdentityInfo> {
        self.identity_index.get(&identity).map(|&i| &self.identities[i as usize])
    }

    pub fn peers(&self) -> &[PeerInfo] {
        &self.peers
    }

    /// The peer owning `key_id`, and the key.
    pub fn peer_key(&self, key_id: u32) -> Option<(&PeerInfo, &[u8; 32])> {
        let p = &self.peers[*self.key_index.get(&key_id)? as usize];
        p.keys.iter().find(|(id, _)| *id == key_id).map(|(_, k)| (p, k))
    }

    pub fn rule(&self, r: RuleRef) -> Option<&RuleInfo> {
        self.rules.get(r.0 as usize)
    }

    pub fn external_network(&self, x: ExtNetRef) -> Option<&ExternalNetworkInfo> {
        self.external_networks.get(x.0 as usize)
    }

    /// Sizes of the compiled structures, for logs and benchmarks.
    pub fn stats(&self) -> SnapshotStats {
        SnapshotStats {
            pus: self.pus.len(),
            identities: self.identities.len(),
            rules: self.rules.len(),
            subject_classes: self.subject_classes as usize,
            identity_classes: self.identity_classes as usize,
            external_network_sets: self.ext_set_count as usize,
            verdict_lists: self.verdicts.len(),
            entries: self.entries.len(),
        }
    }
}

/// Sizes of a snapshot's compiled structures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStats {
    pub pus: usize,
    pub identities: usize,
    pub rules: usize,
    pub subject_classes: usize,
    pub identity_classes: usize,
    pub external_network_sets: usize,
    pub verdict_lists: usize,
    pub entries: usize,
}

#[allow(unused)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<PolicySnapshot>();
}

#[allow(unused_imports)]
use model as _;

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: &str = r#"
local:
  gateway: gw
  key_id: 1
processing_units:
  - name: a
    tags: [app=a, app=b]
    addresses: [10.0.0.0/24]
    identity: 1
  - name: b
    addresses: [10.0.0.128/25, "10.1.0.1/16", "fd00::1"]
    identity: 2
  - name: a
    addresses: [192.168.0.1]
    identity: 1
identities:
  - identity: 2
    peer: west
  - identity: 7
    tags: [novalue]
    peer: nowhere
peers:
  - name: west
    keys:
      - id: 5
        public_key: "not a key!"
  - name: east
    keys:
      - id: 5
        public_key: "0000000000000000000000000000000000000000000000000000000000000000"
rulesets:
  - name: db
    subject: "role == "
    incoming:
      - name: r0
        action: allow
        object: all()
      - name: r0
        action: allow
        object: app == web &&
      - name: r2
        action: allow
        object: all()
        protocols: [tcp]
        ports: [80, 70000, "90-80", "x"]
      - name: r3
        action: allow
        object: all()
        protocols: [icmp]
        ports: [1]
external_networks:
  - name: e
    cidrs: [10.0.0.0/33]
enforcer_profile:
  excluded_networks: [bogus]
  ignore: "has(x"
"#;

    #[test]
    fn collects_every_error() {
        let doc = PolicyDocument::from_yaml(BAD).unwrap();
        let errs = compile(&doc).unwrap_err();
        let text: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        let expect = [
            r#"local.private_key: exactly one of private_key and private_key_file must be set"#,
            r#"peers["west"].keys[0].public_key: "not a key!" is neither 64 hex digits nor base64"#,
            r#"peers["east"].keys[0].id: "5" is already used by peer "west""#,
            r#"processing_units["a"].tags: key "app" appears more than once"#,
            r#"processing_units["b"].addresses[1]: "10.1.0.1/16" has host bits set (did you mean 10.1.0.0/16?)"#,
            r#"processing_units["a"].name: "a" is already used by another processing unit"#,
            r#"processing_units["a"].identity: identity 1 is already used by processing unit "a""#,
            r#"processing_units["b"].addresses[0]: "10.0.0.128/25" overlaps "10.0.0.0/24" of processing unit "a""#,
            r#"identities["2"].identity: identity 2 is already used by processing unit "b""#,
            r#"identities["7"].tags: "novalue" is not a key=value tag"#,
            r#"identities["7"].peer: "nowhere" is not a peer in `peers`"#,
            r#"external_networks["e"].cidrs[0]: "10.0.0.0/33" has a prefix length over 32"#,
            r#"rulesets["db"].subject: selector "role == " at column 9: expected a value"#,
            r#"rulesets["db"].incoming[1].name: "r0" is already used by incoming[0]"#,
            r#"rulesets["db"].incoming[1].object: selector "app == web &&" at column 14: expected a tag key"#,
            r#"rulesets["db"].incoming[2].ports: "70000" is not a port"#,
            r#"rulesets["db"].incoming[2].ports: "90-80" has its low end above its high end"#,
            r#"rulesets["db"].incoming[2].ports: "x" is not a port"#,
            r#"rulesets["db"].incoming[3].ports: ports [1] given but the protocols (icmp) have no ports"#,
            r#"enforcer_profile.excluded_networks[0]: "bogus" is not an IP address or CIDR"#,
            r#"enforcer_profile.ignore: selector "has(x" at column 6: expected ')' closing has("#,
        ];
        for e in expect {
            assert!(text.iter().any(|t| t.starts_with(e)), "missing {e:?} in\n{}", text.join("\n"));
        }
        // "fd00::1" alone is a valid /128: the only error on addresses[2] would be a bug.
        let fd = text.iter().filter(|t| t.contains("addresses[2]")).count();
        assert_eq!(fd, 0, "{}", text.join("\n"));
        assert_eq!(text.len(), expect.len(), "{}", text.join("\n"));
        assert_eq!(errs.0[0].resource, ResourceKind::Local);
        assert!(errs.to_string().starts_with("21 problem(s)"));
    }

    #[test]
    fn peer_networks_and_key_id_range() {
        let k = "11".repeat(32);
        let doc = PolicyDocument::from_yaml(&format!(
            "local: {{gateway: me, key_id: 70000, private_key: \"{k}\"}}\n\
             peers:\n\
             - {{name: a, keys: [{{id: 65536, public_key: \"{k}\"}}], networks: [10.2.0.0/16, \"fd00:2::/64\"]}}\n\
             - {{name: b, keys: [{{id: 7, public_key: \"{k}\", not_before: 9, not_after: 3}}], networks: [10.2.0.0/16, 10.2.5.0/24, bogus]}}\n"
        ))
        .unwrap();
        let text: Vec<String> = compile(&doc).unwrap_err().0.iter().map(ToString::to_string).collect();
        for e in [
            r#"local.key_id: 70000 does not fit"#,
            r#"peers["a"].keys[0].id: 65536 does not fit"#,
            r#"peers["b"].keys[0].not_after: not_after is before not_before"#,
            r#"peers["b"].networks[2]: "bogus" is not an IP address or CIDR"#,
            r#"peers["b"].networks[0]: "10.2.0.0/16" is already used by peer "a""#,
        ] {
            assert!(text.iter().any(|t| t.starts_with(e)), "missing {e:?} in\n{}", text.join("\n"));
        }
        assert_eq!(text.len(), 5, "{}", text.join("\n"));

        let doc = PolicyDocument::from_yaml(&format!(
            "peers:\n\
             - {{name: a, keys: [{{id: 65535, public_key: \"{k}\"}}], networks: [10.2.0.0/16, \"fd00:2::/64\"]}}\n\
             - {{name: b, keys: [{{id: 7, public_key: \"{k}\", not_after: 100}}], networks: [10.2.5.0/24]}}\n"
        ))
        .unwrap();
        let s = compile(&doc).unwrap();
        let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(s.peer_for(ip("10.2.1.1")), Some(0));
        assert_eq!(s.peer_for(ip("10.2.5.1")), Some(1), "the longest prefix wins");
        assert_eq!(s.peer_for(ip("fd00:2::9")), Some(0));
        assert_eq!(s.peer_for(ip("10.3.0.1")), None);
        assert_eq!(&*s.peers()[1].key_windows, &[(0, 100)]);
    }

    #[test]
    fn previous_local_keys_are_checked_like_the_main_one_and_apart_from_each_other() {
        let k = "11".repeat(32);
        let doc = PolicyDocument::from_yaml(&format!(
            "local:\n\
             \x20 gateway: me\n\
             \x20 key_id: 4\n\
             \x20 private_key: \"{k}\"\n\
             \x20 not_before: 3000\n\
             \x20 previous_keys:\n\
             \x20 - {{key_id: 260, private_key: \"{k}\", not_after: 4000}}\n\
             \x20 - {{key_id: 70000, private_key: notakey, private_key_file: /k, not_after: 4000}}\n\
             \x20 - {{key_id: 7, private_key_file: /k7}}\n\
             \x20 - {{key_id: 1, private_key_file: /k1, not_after: 10}}\n\
             \x20 - {{key_id: 513, private_key_file: /k2, not_after: 4000}}\n\
             peers:\n\
             - {{name: b, keys: [{{id: 7, public_key: \"{k}\"}}, {{id: 4, public_key: \"{k}\"}}, {{id: 9, public_key: \"{k}\"}}]}}\n"
        ))
        .unwrap();
        let errs = compile(&doc).unwrap_err();
        let text: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        let expect = [
            r#"local.previous_keys[1].private_key: "(redacted)" decodes to 5 bytes, an X25519 key has 32"#,
            r#"local.previous_keys[1].private_key: exactly one of private_key and private_key_file must be set"#,
            r#"local.previous_keys[1].key_id: 70000 does not fit"#,
            r#"local.previous_keys[2].not_after: a previous key needs not_after"#,
            r#"local.previous_keys[0].key_id: key id 260 has the same low 8 bits as local.key_id (4):"#,
            r#"local.previous_keys[4].key_id: key id 513 has the same low 8 bits as local.previous_keys[3].key_id (1):"#,
            r#"peers["b"].keys[0].id: "7" is already used by local.previous_keys[2].key_id"#,
            r#"peers["b"].keys[1].id: "4" is already used by local.key_id"#,
        ];
        for e in expect {
            assert!(text.iter().any(|t| t.starts_with(e)), "missing {e:?} in\n{}", text.join("\n"));
        }
        assert_eq!(text.len(), expect.len(), "{}", text.join("\n"));
        assert!(!text.iter().any(|t| t.contains("notakey")), "the secret is not echoed");
        let fields: Vec<&str> =
            errs.0.iter().filter(|e| e.resource == ResourceKind::Local).map(|e| &*e.field).collect();
        assert_eq!(
            fields,
            [
                "previous_keys[1].private_key",
                "previous_keys[1].private_key",
                "previous_keys[1].key_id",
                "previous_keys[2].not_after",
                "previous_keys[0].key_id",
                "previous_keys[4].key_id",
            ]
        );
    }

    #[test]
    fn previous_local_keys_reach_the_snapshot() {
        let k = "11".repeat(32);
        // Key 1 ends before key 4 begins: a gap, allowed (nothing signs in it).
        let doc = PolicyDocument::from_yaml(&format!(
            "local: {{gateway: me, key_id: 4, private_key_file: /k4, not_before: 3000, previous_keys: [\
             {{key_id: 1, private_key: \"{k}\", not_after: 2000}}, {{key_id: 2, private_key_file: /k2, not_after: 5000}}]}}\n"
        ))
        .unwrap();
        let s = compile(&doc).unwrap();
        let l = s.local().unwrap();
        assert_eq!(
            (l.key_id, l.not_before, l.private_key_file.as_deref(), l.private_key),
            (4, 3000, Some("/k4"), None)
        );
        assert_eq!(
            &*l.previous_keys,
            &[
                PreviousKeyInfo { key_id: 1, private_key_file: None, private_key: Some([0x11; 32]), not_after: 2000 },
                PreviousKeyInfo { key_id: 2, private_key_file: Some("/k2".into()), private_key: None, not_after: 5000 },
            ]
        );
        // Without the new fields: always, and no previous key.
        let doc = PolicyDocument::from_yaml("local: {gateway: me, key_id: 4, private_key_file: /k4}\n").unwrap();
        let s = compile(&doc).unwrap();
        assert_eq!((s.local().unwrap().not_before, s.local().unwrap().previous_keys.len()), (0, 0));
    }

    #[test]
    fn identities_grouped_by_the_tags_selectors_test() {
        use crate::policy::{Direction, PuId, Reason, Remote};
        let k = "11".repeat(32);
        let doc = PolicyDocument::from_yaml(&format!(
            "peers: [{{name: w, keys: [{{id: 1, public_key: \"{k}\"}}]}}]\n\
             processing_units: [{{name: db, tags: [app=db], addresses: [10.0.0.1], identity: 1}}]\n\
             identities:\n\
             - {{identity: 10, tags: [app=web, instance=a, pod=p1], peer: w}}\n\
             - {{identity: 11, tags: [app=web, instance=b, pod=p2], peer: w}}\n\
             - {{identity: 12, tags: [app=web, instance=c, pod=p3], peer: w}}\n\
             - {{identity: 13, tags: [app=web, pod=p4], peer: w}}\n\
             - {{identity: 14, tags: [app=api, instance=a, pod=p5], peer: w}}\n\
             rulesets:\n\
             - name: r\n  subject: app == db\n  incoming:\n\
             \x20 - {{name: a, action: allow, object: \"app == web && instance != b\"}}\n\
             \x20 - {{name: b, action: reject, object: \"has(instance) && app == api\"}}\n"
        ))
        .unwrap();
        let s = compile(&doc).unwrap();
        let d = |id| s.decide(PuId(0), Direction::Incoming, Remote::Identity(id), 6, 80).reason;
        assert_eq!(d(10), Reason::PolicyAllow);
        assert_eq!(d(11), Reason::NoMatch);
        assert_eq!(d(12), Reason::PolicyAllow);
        assert_eq!(d(13), Reason::PolicyAllow, "an absent key is not equal to b");
        assert_eq!(d(14), Reason::PolicyReject);
        // Same rules named, same class (whatever their untested `pod` and `instance` values).
        let class = |id| s.identity(id).unwrap().class;
        assert_eq!(class(10), class(12));
        assert_ne!(class(10), class(11));
    }

    #[test]
    fn large_directory_errors_in_order() {
        // Past the size where tag sets are parsed on two threads: errors are
        // still reported in document order, duplicates named as before.
        use model::{IdentityEntry, Peer, PeerKey};
        let mut doc = PolicyDocument::default();
        doc.peers.push(Peer {
            name: "w".into(),
            keys: vec![PeerKey { id: 1, public_key: "11".repeat(32), not_before: None, not_after: None }],
            networks: vec![],
        });
        for i in 0..20_000u32 {
            let tags = match i {
                3 | 15_000 => vec!["broken".to_string()],
                _ => vec![format!("app=a{}", i % 7), format!("n=i{i}")],
            };
            doc.identities.push(IdentityEntry { identity: 100 + i % 19_999, name: None, tags, peer: "w".into() });
        }
        let text: Vec<String> = compile(&doc).unwrap_err().0.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                r#"identities["103"].tags: "broken" is not a key=value tag"#,
                r#"identities["15100"].tags: "broken" is not a key=value tag"#,
                r#"identities["100"].identity: identity 100 is already used by identities["100"]"#,
            ]
        );
        doc.identities[3].tags = vec!["app=x".into()];
        doc.identities[15_000].tags = vec!["app=x".into()];
        doc.identities.pop();
        // Groups formed on both halves are one: decisions over the split.
        doc.processing_units.push(model::ProcessingUnit {
            name: "db".into(),
            tags: vec!["app=db".into()],
            addresses: vec!["10.0.0.1".into()],
            identity: 1,
        });
        doc.rulesets.push(model::Ruleset {
            name: "r".into(),
            subject: "app == db".into(),
            incoming: vec![model::Rule {
                name: "a".into(),
                action: Action::Allow,
                object: "app in {a3, x}".into(),
                protocols: vec![Protocol::Tcp],
                ports: vec![],
                observe: false,
            }],
            outgoing: vec![],
        });
        let s = compile(&doc).unwrap();
        let allowed = |id| {
            s.decide(crate::policy::PuId(0), Direction::Incoming, crate::policy::Remote::Identity(id), 6, 1).allowed()
        };
        for i in [3u32, 10, 15_000, 15_001, 19_998] {
            assert_eq!(allowed(100 + i), i % 7 == 3 || i == 3 || i == 15_000, "{i}");
        }
        assert_eq!(s.stats().identity_classes, 2);
        assert_eq!(s.stats().identities, 19_999);
        assert_eq!(s.identity(15_100).unwrap().tags.get("app"), Some("x"));
        assert_eq!(s.identity(19_000).unwrap().tags.get("n"), Some("i18900"));
    }

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

    #[test]
    fn keys_decode() {
        let k = decode_key32("rpkk17OQp1XpEndN4If+uJpXXc82EU7P8keCkbzIpBs=").unwrap();
        assert_eq!(k[0], 0xae);
        assert_eq!(decode_key32("rpkk17OQp1XpEndN4If-uJpXXc82EU7P8keCkbzIpBs").unwrap(), k);
        assert_eq!(decode_key32(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(decode_key32("AAAA").unwrap_err().contains("decodes to 3 bytes"));
    }

    #[test]
    fn inline_private_key_is_not_echoed() {
        let doc = PolicyDocument::from_yaml("local: {gateway: g, key_id: 1, private_key: secretsecret}\n").unwrap();
        let e = compile(&doc).unwrap_err().to_string();
        assert!(!e.contains("secretsecret"), "{e}");
    }

    #[test]
    fn empty_document_rejects_nothing_is_local() {
        let s = compile(&PolicyDocument::default()).unwrap();
        assert_eq!(s.stats().pus, 0);
        let c = s.classify(crate::policy::Side::Inside, "10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(c, crate::policy::Classification::NotLocal);
    }
}
