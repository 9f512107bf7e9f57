//! The compiled, immutable policy ([`PolicySnapshot`]) and what it tells
//! about the document it came from: PUs, directory identities, peers and
//! their keys, rules and external networks by index, for decisions
//! ([`super::decide`]) and flow events. Built by [`super::compile`].

use std::sync::atomic::{AtomicU32, Ordering};

use super::hash::FxHashMap;
use super::lpm::{Cidr, LpmPair};
use super::model::Action;
use super::selector::TagSet;
use super::{Direction, ExtNetRef, PuId, RuleRef};
use crate::identity::TcpVersion;

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
    /// The TCP option version sent to it (`peers[].option_version`).
    pub option_version: TcpVersion,
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

/// The layer-4 identity settings (`enforcer_profile.layer4_identity`,
/// `stripping_cache_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer4 {
    pub enabled: bool,
    /// How long a stripping path is remembered, in ns (0: never).
    pub cache_ns: u64,
}

impl Default for Layer4 {
    fn default() -> Self {
        Layer4 { enabled: true, cache_ns: u64::from(super::model::DEFAULT_STRIPPING_CACHE_S) * 1_000_000_000 }
    }
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
    pub(crate) layer4: Layer4,
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
    /// DNS: trusted servers, FQDN patterns, TTL bounds (`policy::dns`).
    pub(crate) dns: super::dns::DnsPolicy,
}

pub(crate) const KIND_IDENTITY: u64 = 0;
pub(crate) const KIND_EXTERNAL: u64 = 1;

#[inline]
pub(crate) fn verdict_key(dir: Direction, kind: u64, subject: u32, class: u32) -> u64 {
    ((dir as u64) << 63) | (kind << 62) | ((subject as u64) << 32) | class as u64
}

static GENERATION: AtomicU32 = AtomicU32::new(0);

/// A process-wide number for a new snapshot, distinct from every earlier one
/// (until it wraps).
pub(crate) fn next_generation() -> u32 {
    GENERATION.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
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

    /// The layer-4 identity settings.
    #[inline]
    pub fn layer4(&self) -> Layer4 {
        self.layer4
    }

    /// The local PUs, indexed by `PuId`.
    pub fn pus(&self) -> &[PuInfo] {
        &self.pus
    }

    pub fn pu(&self, pu: PuId) -> Option<&PuInfo> {
        self.pus.get(pu.0 as usize)
    }

    /// The directory entry of a remote identity.
    /// The directory's identities (for lookups by tags: explain, tools).
    pub fn identities(&self) -> &[IdentityInfo] {
        &self.identities
    }

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

    /// How many rules (enforced and observe) the policy has: a [`RuleRef`] is below it.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
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
