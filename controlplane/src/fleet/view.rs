//! The fleet as one gateway sees it: every key under the prefix as etcd
//! holds it, and the objects that verified. Events and re-lists change the
//! raw keys; [`FleetView::refresh`] re-verifies only what changed (a value
//! is verified once per modification and per signer key), so that a change
//! to one PU among 100 000 costs one signature check, not 100 000.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;

use super::layout::{KeyKind, Layout};
use super::model::{FleetDocument, GatewayStatus, PuRecord, Registration, RotateRequest};
use super::sign::{self, Unverified, OPERATOR};

/// A key's value as etcd returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

#[derive(Debug, Clone)]
enum Object {
    Document(FleetDocument),
    Registration(Registration),
    Pu(PuRecord),
    Status(GatewayStatus),
    Rotate(RotateRequest),
}

/// A verified object, and what it was verified against.
#[derive(Debug, Clone)]
struct Checked {
    mod_revision: i64,
    signer_key: Option<[u8; 32]>,
    result: Result<Object, Unverified>,
}

/// A registration that disappeared (its lease expired), kept for the grace period.
#[derive(Debug, Clone)]
pub struct Vanished {
    pub registration: Registration,
    /// Unix seconds when it was last seen.
    pub since: u64,
}

/// What verified, by kind.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    pub document: Option<FleetDocument>,
    /// By gateway name, with the key's create revision.
    pub registrations: BTreeMap<String, (Registration, i64)>,
    /// By gateway, then PU name; with the key's create revision (older claims win).
    pub pus: BTreeMap<String, BTreeMap<String, (PuRecord, i64)>>,
    pub statuses: BTreeMap<String, GatewayStatus>,
    pub rotates: BTreeMap<String, RotateRequest>,
    /// Key → why it was ignored.
    pub refused: BTreeMap<String, String>,
}

pub struct FleetView {
    layout: Layout,
    operator: VerifyingKey,
    raw: BTreeMap<String, Raw>,
    checked: HashMap<String, Checked>,
    /// The etcd revision the view is at.
    pub revision: i64,
    pub verified: Verified,
    pub vanished: BTreeMap<String, Vanished>,
    /// Objects refused since start (each distinct modification once).
    pub refused_total: u64,
}

impl FleetView {
    pub fn new(layout: Layout, operator: VerifyingKey) -> FleetView {
        FleetView {
            layout,
            operator,
            raw: BTreeMap::new(),
            checked: HashMap::new(),
            revision: 0,
            verified: Verified::default(),
            vanished: BTreeMap::new(),
            refused_total: 0,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Replaces every key (a full list at `revision`).
    pub fn reset(&mut self, keys: impl IntoIterator<Item = (String, Raw)>, revision: i64) {
        self.raw = keys.into_iter().collect();
        self.revision = revision;
    }

    pub fn put(&mut self, key: String, raw: Raw) {
        self.revision = self.revision.max(raw.mod_revision);
        self.raw.insert(key, raw);
    }

    pub fn delete(&mut self, key: &str, revision: i64) {
        self.revision = self.revision.max(revision);
        self.raw.remove(key);
    }

    pub fn raw(&self, key: &str) -> Option<&Raw> {
        self.raw.get(key)
    }

    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// Re-verifies what changed since the last refresh, at `now` (Unix
    /// seconds: registrations that disappear start their grace period then).
    pub fn refresh(&mut self, now: u64) {
        // The fleet document first: it enrolls the gateways whose keys verify the rest.
        let doc_key = self.layout.fleet_document();
        let operator = self.operator;
        let doc = self.raw.get(&doc_key).map(|r| {
            check(&mut self.checked, &mut self.refused_total, &doc_key, r, Some(operator.to_bytes()), |v, k| {
                sign::open::<FleetDocument>(v, k, OPERATOR, Some(&operator)).map(Object::Document)
            })
        });
        let mut out = Verified::default();
        // A fleet document that does not verify, or an older one put back
        // (a rollback by someone who kept a signed copy), leaves the last
        // good one in force: the rest of the fleet keeps being built on it.
        let last_good = self.verified.document.take();
        out.document = match doc {
            Some(Ok(Object::Document(d))) => match &last_good {
                Some(g) if d.version < g.version => {
                    out.refused.insert(
                        doc_key.clone(),
                        format!(
                            "fleet version {} is older than version {} already seen (a rollback?)",
                            d.version, g.version
                        ),
                    );
                    last_good
                }
                _ => Some(d),
            },
            Some(Err(e)) => {
                out.refused.insert(doc_key.clone(), e.to_string());
                last_good
            }
            _ => None,
        };
        let enrolled: HashMap<String, Option<VerifyingKey>> = out
            .document
            .iter()
            .flat_map(|d| d.gateways.iter())
            .map(|g| (g.name.clone(), sign::public_key(&g.signing_key).ok()))
            .collect();
        let layout = self.layout.clone();
        let mut seen: Vec<&str> = Vec::new();
        for (key, r) in &self.raw {
            seen.push(key);
            let kind = layout.classify(key);
            let (signer, public) = match kind {
                KeyKind::FleetDocument | KeyKind::IdentityCounter | KeyKind::KeyIdCounter | KeyKind::Other => continue,
                KeyKind::Rotate { .. } => (OPERATOR, Some(operator)),
                KeyKind::Registration { gateway } | KeyKind::Pu { gateway, .. } | KeyKind::Status { gateway } => {
                    (gateway, enrolled.get(gateway).copied().flatten())
                }
            };
            let res =
                check(&mut self.checked, &mut self.refused_total, key, r, public.map(|p| p.to_bytes()), |v, k| {
                    match kind {
                        KeyKind::Rotate { .. } => sign::open(v, k, signer, public.as_ref()).map(Object::Rotate),
                        KeyKind::Registration { .. } => {
                            sign::open(v, k, signer, public.as_ref()).map(Object::Registration)
                        }
                        KeyKind::Pu { .. } => sign::open(v, k, signer, public.as_ref()).map(Object::Pu),
                        _ => sign::open(v, k, signer, public.as_ref()).map(Object::Status),
                    }
                });
            match (kind, res) {
                (_, Err(e)) => {
                    out.refused.insert(key.clone(), e.to_string());
                }
                (KeyKind::Rotate { gateway }, Ok(Object::Rotate(o))) if o.gateway == gateway => {
                    out.rotates.insert(gateway.to_owned(), o);
                }
                (KeyKind::Registration { gateway }, Ok(Object::Registration(o))) if o.name == gateway => {
                    out.registrations.insert(gateway.to_owned(), (o, r.create_revision));
                }
                (KeyKind::Pu { gateway, pu }, Ok(Object::Pu(o))) if o.name == pu => {
                    out.pus.entry(gateway.to_owned()).or_default().insert(pu.to_owned(), (o, r.create_revision));
                }
                (KeyKind::Status { gateway }, Ok(Object::Status(o))) if o.name == gateway => {
                    out.statuses.insert(gateway.to_owned(), o);
                }
                _ => {
                    out.refused.insert(key.clone(), "the object's name does not match its key".into());
                }
            }
        }
        let live: std::collections::HashSet<&str> = seen.into_iter().collect();
        self.checked.retain(|k, _| live.contains(k.as_str()));
        // Registrations that were here and are not any more start their grace.
        for (name, (reg, _)) in &self.verified.registrations {
            if !out.registrations.contains_key(name) && enrolled.contains_key(name) {
                self.vanished.entry(name.clone()).or_insert(Vanished { registration: reg.clone(), since: now });
            }
        }
        self.vanished.retain(|name, _| !out.registrations.contains_key(name) && enrolled.contains_key(name));
        self.verified = out;
    }

    /// Remembers the peers of the document in force as if they had just
    /// vanished: after a restart, a peer whose lease is not back yet (it
    /// restarts too, or lost etcd) keeps its keys and PUs for the grace
    /// period instead of being cut off at the first list. Call before the
    /// first refresh; a peer whose registration is present is unaffected.
    pub fn remember_peers(&mut self, peers: &[dataplane::policy::model::Peer]) {
        for p in peers {
            let registration = Registration {
                name: p.name.clone(),
                tags: Vec::new(),
                keys: p.keys.clone(),
                networks: p.networks.clone(),
                api: String::new(),
                started_at: 0,
            };
            self.verified.registrations.insert(p.name.clone(), (registration, 0));
        }
    }

    /// Drops vanished gateways whose grace ended; true if one was dropped.
    pub fn expire(&mut self, now: u64, grace_s: u64) -> bool {
        let before = self.vanished.len();
        self.vanished.retain(|_, v| now < v.since.saturating_add(grace_s));
        self.vanished.len() != before
    }

    /// When the next vanished gateway's grace ends (Unix seconds).
    pub fn next_expiry(&self, grace_s: u64) -> Option<u64> {
        self.vanished.values().map(|v| v.since.saturating_add(grace_s)).min()
    }
}

/// Verifies `raw` at `key` unless it was verified in this exact modification
/// against the same signer key.
fn check(
    cache: &mut HashMap<String, Checked>,
    refused_total: &mut u64,
    key: &str,
    raw: &Raw,
    signer_key: Option<[u8; 32]>,
    verify: impl FnOnce(&[u8], &str) -> Result<Object, Unverified>,
) -> Result<Object, Unverified> {
    if let Some(c) = cache.get(key) {
        if c.mod_revision == raw.mod_revision && c.signer_key == signer_key {
            return c.result.clone();
        }
    }
    let result = verify(&raw.value, key);
    if result.is_err() {
        *refused_total += 1;
    }
    cache.insert(key.to_owned(), Checked { mod_revision: raw.mod_revision, signer_key, result: result.clone() });
    result
}
