//! One gateway's policy document, built from the fleet: its own PUs, every
//! other gateway's PUs as the identity directory (each claimable only by its
//! owner), the other gateways as peers with their keys and networks, the
//! fleet's rulesets and external networks, and the one profile its tags map
//! to. The result goes through the gateway's config store like any apply.

use std::collections::{BTreeMap, HashMap};

use dataplane::policy::model::{EnforcerProfile, IdentityEntry, LocalKeys, Peer, PolicyDocument, ProcessingUnit};
use dataplane::policy::{Selector, TagSet};

use super::model::{FleetDocument, Registration};
use super::view::FleetView;
use dataplane::problem::ConfigProblem;

/// What the gateway itself brings: its name, tags and keys.
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub tags: Vec<String>,
    /// The `local` section (keys and their files), as the key manager keeps it.
    pub local: LocalKeys,
}

/// A built document, or why none could be built.
#[derive(Debug, Clone)]
pub struct Built {
    pub fleet_version: u64,
    pub document: Result<PolicyDocument, Vec<ConfigProblem>>,
    /// The profile the gateway's tags selected ("default" when none did).
    pub profile: String,
    /// Claims that lost to an older one (a duplicate identity or key id):
    /// left out, reported in the gateway's status, not a refusal.
    pub conflicts: Vec<ConfigProblem>,
}

fn problem(field: &str, value: &str, message: String) -> ConfigProblem {
    ConfigProblem::new("fleet", "", field, value, message).bounded()
}

/// The profile `tags` select: exactly one mapping, or none (the default).
pub fn select_profile(doc: &FleetDocument, tags: &[String]) -> Result<(String, EnforcerProfile), Vec<ConfigProblem>> {
    let tagset = TagSet::parse(tags).map_err(|e| vec![problem("tags", "", format!("the gateway's tags: {e}"))])?;
    let mut matched = Vec::new();
    let mut problems = Vec::new();
    for m in &doc.profile_mappings {
        match Selector::parse(&m.selector) {
            Ok(s) if s.matches(&tagset) => matched.push(m),
            Ok(_) => {}
            Err(e) => problems.push(problem(
                &format!("profile_mappings[{}].selector", m.name),
                &m.selector,
                format!("profile mapping {:?}: {e}", m.name),
            )),
        }
    }
    if matched.len() > 1 {
        let names: Vec<String> = matched.iter().map(|m| format!("{:?}", m.name)).collect();
        problems.push(problem(
            "profile_mappings",
            &names.join(", "),
            format!(
                "this gateway's tags [{}] match {} profile mappings ({}); a gateway must match at most one",
                tags.join(", "),
                matched.len(),
                names.join(" and ")
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let name = match (matched.first(), &doc.settings.default_profile) {
        (Some(m), _) => m.profile.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => return Ok(("default".into(), EnforcerProfile::default())),
    };
    match doc.profiles.iter().find(|p| p.name == name) {
        Some(p) => Ok((name, p.profile())),
        None => Err(vec![problem("profiles", &name, format!("profile {name:?} is not defined in profiles"))]),
    }
}

/// Builds `me`'s document from what verified in `view`, at `now` (Unix seconds).
pub fn build(view: &FleetView, me: &Me, now: u64) -> Option<Built> {
    let doc = view.verified.document.as_ref()?;
    let fleet_version = doc.version;
    let mut problems = Vec::new();
    let mut conflicts = Vec::new();
    if !doc.gateways.iter().any(|g| g.name == me.name) {
        problems.push(problem(
            "gateways",
            &me.name,
            format!("gateway {:?} is not enrolled in the fleet document (gateways[])", me.name),
        ));
    }
    let (profile, enforcer_profile) = match select_profile(doc, &me.tags) {
        Ok(p) => p,
        Err(p) => {
            problems.extend(p);
            (String::new(), EnforcerProfile::default())
        }
    };
    // The peers: registered gateways, and those still in their grace period.
    let mut regs: BTreeMap<&str, &Registration> = BTreeMap::new();
    for (name, v) in &view.vanished {
        if now < v.since.saturating_add(doc.settings.peer_grace_s) {
            regs.insert(name, &v.registration);
        }
    }
    for (name, (r, _)) in &view.verified.registrations {
        regs.insert(name, r);
    }
    // Key ids are fleet-wide: a key id claimed twice keeps its first owner.
    let mut key_owner: HashMap<u32, &str> = HashMap::new();
    for k in std::iter::once(me.local.key_id).chain(me.local.previous_keys.iter().map(|k| k.key_id)) {
        key_owner.insert(k, &me.name);
    }
    let mut peers = Vec::new();
    for (name, r) in &regs {
        if *name == me.name {
            continue;
        }
        let mut keys = Vec::new();
        for k in &r.keys {
            match key_owner.get(&k.id) {
                Some(owner) if owner != name => conflicts.push(problem(
                    &format!("gateways[{name}].keys"),
                    &k.id.to_string(),
                    format!("key id {} of gateway {name:?} is already used by {owner:?}; left out", k.id),
                )),
                _ => {
                    key_owner.insert(k.id, name);
                    keys.push(k.clone());
                }
            }
        }
        if keys.is_empty() {
            continue;
        }
        peers.push(Peer {
            name: (*name).to_owned(),
            keys,
            networks: r.networks.clone(),
            option_version: doc.settings.option_version,
        });
    }
    // Identities: the oldest claim of a number wins, whoever makes it.
    let mut claims: Vec<(i64, &str, &super::model::PuRecord)> = Vec::new();
    for (gw, pus) in &view.verified.pus {
        for (rec, created) in pus.values() {
            claims.push((*created, gw, rec));
        }
    }
    claims.sort_by_key(|(created, gw, rec)| (*created, *gw, rec.name.as_str()));
    let mut taken: HashMap<u32, (&str, &str)> = HashMap::with_capacity(claims.len());
    let mut processing_units = Vec::new();
    let mut identities = Vec::new();
    let peer_names: std::collections::HashSet<&str> = peers.iter().map(|p| p.name.as_str()).collect();
    for (_, gw, rec) in claims {
        if let Some((og, op)) = taken.get(&rec.identity) {
            conflicts.push(problem(
                &format!("gateways[{gw}].pus[{}].identity", rec.name),
                &rec.identity.to_string(),
                format!("identity {} of {gw}/{} is already held by {og}/{op}; left out", rec.identity, rec.name),
            ));
            continue;
        }
        taken.insert(rec.identity, (gw, &rec.name));
        if gw == me.name {
            processing_units.push(ProcessingUnit {
                name: rec.name.clone(),
                tags: rec.tags.clone(),
                addresses: rec.addresses.clone(),
                identity: rec.identity,
            });
        } else if peer_names.contains(gw) {
            identities.push(IdentityEntry {
                identity: rec.identity,
                name: Some(format!("{gw}/{}", rec.name)),
                tags: rec.tags.clone(),
                peer: gw.to_owned(),
            });
        }
    }
    let document = if problems.is_empty() {
        Ok(PolicyDocument {
            // Not the etcd revision: every status write bumps it, and a
            // document that did not change must compare equal (no re-apply).
            revision: Some(match &doc.revision {
                Some(r) => format!("fleet {fleet_version} ({r})"),
                None => format!("fleet {fleet_version}"),
            }),
            local: Some(me.local.clone()),
            processing_units,
            identities,
            peers,
            rulesets: doc.rulesets.clone(),
            external_networks: doc.external_networks.clone(),
            enforcer_profile,
        })
    } else {
        Err(problems)
    };
    Some(Built { fleet_version, document, profile, conflicts })
}
