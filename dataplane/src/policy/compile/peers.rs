//! `peers`: the other gateways, their keys and the networks behind them.

use std::collections::HashMap;

use super::error::{Problem, ResourceKind as K};
use super::validate::Validation;
use super::values::decode_key32;
use super::MAX_KEY_ID;
use crate::identity::TcpVersion;
use crate::policy::hash::FxHashMap;
use crate::policy::lpm::Cidr;
use crate::policy::model::Peer;
use crate::policy::snapshot::PeerInfo;

/// The peers as the build and the later passes need them.
pub(super) struct Peers<'d> {
    pub peers: Vec<PeerInfo>,
    /// Peer name → index (identities name their peer).
    pub index: FxHashMap<&'d str, u32>,
    /// Key id → peer index.
    pub key_index: FxHashMap<u32, u32>,
    /// `(network, peer, index in its networks)`.
    pub prefixes: Vec<(Cidr, u32, usize)>,
}

impl<'d> Validation<'d> {
    /// `local_ids`: every local key id with its field, which no peer key may reuse.
    pub fn peers(&mut self, local_ids: &[(u32, String)]) -> Peers<'d> {
        let doc = self.doc;
        let mut out = Peers {
            peers: Vec::with_capacity(doc.peers.len()),
            index: FxHashMap::default(),
            key_index: FxHashMap::default(),
            prefixes: Vec::new(),
        };
        for (i, p) in doc.peers.iter().enumerate() {
            if out.index.insert(&p.name, i as u32).is_some() {
                self.duplicate_name(K::Peer, &p.name, "another peer");
            }
            if p.keys.is_empty() {
                self.missing_list(K::Peer, &p.name, "keys", "a peer needs at least one key");
            }
            let (keys, key_windows) = self.peer_keys(i as u32, p, local_ids, &mut out.key_index);
            let networks = self.cidrs(K::Peer, &p.name, "networks", &p.networks);
            let option_version = self.option_version(p);
            for (j, c) in networks.iter().enumerate() {
                out.prefixes.push((*c, i as u32, j));
            }
            out.peers.push(PeerInfo {
                name: p.name.as_str().into(),
                keys: keys.into(),
                key_windows: key_windows.into(),
                networks: networks.into(),
                option_version,
            });
        }
        self.ambiguous_networks(&out.prefixes);
        out
    }

    /// The TCP option version sent to `p`: 1 unless it says 2 (an old peer
    /// refuses version 2 as `identity_bad_version`: docs/identity-option.md).
    fn option_version(&mut self, p: &Peer) -> TcpVersion {
        let Some(v) = p.option_version else { return TcpVersion::default() };
        match TcpVersion::from_number(v) {
            Some(version) => version,
            None => {
                self.err(K::Peer, &p.name, "option_version", v.to_string(), Problem::OptionVersion);
                TcpVersion::default()
            }
        }
    }

    /// Peer `i`'s keys and their windows; a key id is this peer's only if no
    /// local key and no earlier peer has it.
    #[allow(clippy::type_complexity)]
    fn peer_keys(
        &mut self,
        i: u32,
        p: &Peer,
        local_ids: &[(u32, String)],
        key_index: &mut FxHashMap<u32, u32>,
    ) -> (Vec<(u32, [u8; 32])>, Vec<(u64, u64)>) {
        let doc = self.doc;
        let mut keys = Vec::with_capacity(p.keys.len());
        let mut key_windows = Vec::with_capacity(p.keys.len());
        for (j, k) in p.keys.iter().enumerate() {
            if k.id > MAX_KEY_ID {
                self.err(K::Peer, &p.name, format!("keys[{j}].id"), k.id.to_string(), Problem::KeyIdRange);
            }
            let window = (k.not_before.unwrap_or(0), k.not_after.unwrap_or(u64::MAX));
            if window.0 > window.1 {
                let why = Problem::Missing("not_after is before not_before");
                self.err(K::Peer, &p.name, format!("keys[{j}].not_after"), window.1.to_string(), why);
            }
            key_windows.push(window);
            if let Some((_, field)) = local_ids.iter().find(|(id, _)| *id == k.id) {
                let why = Problem::Duplicate { first: field.clone() };
                self.err(K::Peer, &p.name, format!("keys[{j}].id"), k.id.to_string(), why);
            }
            if let Some(&other) = key_index.get(&k.id) {
                let why = Problem::Duplicate { first: format!("peer {:?}", doc.peers[other as usize].name) };
                self.err(K::Peer, &p.name, format!("keys[{j}].id"), k.id.to_string(), why);
            } else {
                key_index.insert(k.id, i);
            }
            match decode_key32(&k.public_key) {
                Ok(b) => keys.push((k.id, b)),
                Err(why) => {
                    let field = format!("keys[{j}].public_key");
                    self.err(K::Peer, &p.name, field, k.public_key.clone(), Problem::BadKey(why))
                }
            }
        }
        (keys, key_windows)
    }

    /// The same prefix behind two peers is ambiguous (nested prefixes are
    /// fine: the longest match wins).
    fn ambiguous_networks(&mut self, prefixes: &[(Cidr, u32, usize)]) {
        let doc = self.doc;
        let mut seen: HashMap<Cidr, u32> = HashMap::new();
        for &(c, peer, j) in prefixes {
            if let Some(&first) = seen.get(&c) {
                if first != peer {
                    let p = &doc.peers[peer as usize];
                    let why = Problem::Duplicate { first: format!("peer {:?}", doc.peers[first as usize].name) };
                    self.err(K::Peer, &p.name, format!("networks[{j}]"), p.networks[j].clone(), why);
                }
            } else {
                seen.insert(c, peer);
            }
        }
    }
}
