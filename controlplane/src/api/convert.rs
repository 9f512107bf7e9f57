//! Between the protobuf messages and the policy model / store types.
//!
//! The structured document mirrors the YAML one field for field; the only
//! checks here are those the protobuf types cannot express (an action or a
//! protocol is a string): everything else is the compiler's job, so both
//! forms get the same errors.

use std::time::{SystemTime, UNIX_EPOCH};

use dataplane::policy::model::{
    Action, EnforcerProfile, ExternalNetwork, IdentityEntry, LocalKey, LocalKeys, Peer, PeerKey, PortSpec,
    ProcessingUnit, Protocol, Rule, Ruleset,
};
use dataplane::policy::PolicyDocument;

use super::pb;
use crate::store::{Content, EnforcementState, Kind, Parts, Refusal, Source, Status, StatusEvent, Versions};
use dataplane::problem::ConfigProblem;

/// What `Get` returns for an inline private key.
pub const REDACTED: &str = "<redacted>";

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub fn versions_to_pb(v: &Versions) -> pb::ConfigVersions {
    pb::ConfigVersions {
        document: v.document(),
        rulesets: v.rulesets,
        processing_units: v.processing_units,
        identities: v.identities,
        external_networks: v.external_networks,
        enforcer_profile: v.enforcer_profile,
    }
}

pub fn problem_to_pb(p: &ConfigProblem) -> pb::ConfigError {
    pb::ConfigError {
        resource: p.resource.clone(),
        name: p.name.clone(),
        field: p.field.clone(),
        value: p.value.clone(),
        message: p.message.clone(),
    }
}

fn refusal_to_pb(r: &Refusal) -> pb::Refusal {
    pb::Refusal {
        version: r.version,
        at_unix_ms: unix_ms(r.at),
        errors: r.problems.iter().map(problem_to_pb).collect(),
    }
}

pub fn status_to_pb(s: &Status) -> pb::ConfigStatus {
    pb::ConfigStatus {
        state: match s.state {
            EnforcementState::NoConfigFailClosed => pb::EnforcementState::NoConfigFailClosed,
            EnforcementState::NoConfigFailOpen => pb::EnforcementState::NoConfigFailOpen,
            EnforcementState::Enforcing => pb::EnforcementState::Enforcing,
            EnforcementState::EnforcingDropAll => pb::EnforcementState::EnforcingDropAll,
        } as i32,
        drops_all: s.drops_all.unwrap_or_default().into(),
        versions: Some(versions_to_pb(&s.versions)),
        revision: s.revision.clone().unwrap_or_default(),
        applied_at_unix_ms: s.applied_at.map(unix_ms).unwrap_or(0),
        generation: s.generation,
        source: match &s.source {
            None => String::new(),
            Some(Source::Apply) => "apply".into(),
            Some(Source::Restored(p)) => format!("restored from {}", p.display()),
        },
        applies_accepted: s.applies_accepted,
        applies_refused: s.applies_refused,
        last_refused: s.last_refused.as_ref().map(refusal_to_pb),
        processing_units: s.pus as u64,
        identities: s.identities as u64,
        rules: s.rules as u64,
        event: match s.event {
            StatusEvent::Current => "current",
            StatusEvent::Applied => "applied",
            StatusEvent::Refused => "refused",
        }
        .into(),
        fleet: s.fleet.as_ref().map(fleet_to_pb),
    }
}

fn fleet_to_pb(f: &crate::fleet::FleetReport) -> pb::FleetStatus {
    pb::FleetStatus {
        name: f.name.clone(),
        connected: f.connected,
        last_error: f.last_error.clone(),
        applied_fleet_version: f.applied_fleet_version,
        seen_fleet_version: f.seen_fleet_version,
        etcd_revision: f.etcd_revision,
        profile: f.profile.clone(),
        disconnects: f.disconnects,
        relists: f.relists,
        applies: f.applies,
        refusals: f.refusals,
        unverified_objects: f.unverified_objects,
        unverified_examples: f.unverified_examples.iter().map(|(k, w)| format!("{k}: {w}")).collect(),
        conflicts: f.conflicts.iter().map(|p| p.message.clone()).collect(),
        key_id: f.key_id,
    }
}

// ---------------------------------------------------------------------------
// Model → protobuf

fn none_if_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::Any => "any",
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Reject => "reject",
    }
}

fn rule_to_pb(r: &Rule) -> pb::Rule {
    pb::Rule {
        name: r.name.clone(),
        action: action_name(r.action).into(),
        object: r.object.clone(),
        protocols: r.protocols.iter().map(|p| protocol_name(*p).into()).collect(),
        ports: r.ports.iter().map(|p| p.to_string()).collect(),
        observe: r.observe,
    }
}

pub fn rulesets_to_pb(v: &[Ruleset]) -> Vec<pb::Ruleset> {
    v.iter()
        .map(|r| pb::Ruleset {
            name: r.name.clone(),
            subject: r.subject.clone(),
            incoming: r.incoming.iter().map(rule_to_pb).collect(),
            outgoing: r.outgoing.iter().map(rule_to_pb).collect(),
        })
        .collect()
}

pub fn pus_to_pb(v: &[ProcessingUnit]) -> Vec<pb::ProcessingUnit> {
    v.iter()
        .map(|p| pb::ProcessingUnit {
            name: p.name.clone(),
            tags: p.tags.clone(),
            addresses: p.addresses.clone(),
            identity: p.identity,
        })
        .collect()
}

pub fn local_to_pb(l: &LocalKeys, redact: bool) -> pb::LocalKeys {
    pb::LocalKeys {
        gateway: l.gateway.clone(),
        key_id: l.key_id,
        private_key_file: l.private_key_file.clone().unwrap_or_default(),
        private_key: secret_to_pb(&l.private_key, redact),
        not_before: l.not_before,
        previous_keys: l
            .previous_keys
            .iter()
            .map(|k| pb::LocalKey {
                key_id: k.key_id,
                private_key_file: k.private_key_file.clone().unwrap_or_default(),
                private_key: secret_to_pb(&k.private_key, redact),
                not_after: k.not_after,
            })
            .collect(),
    }
}

fn secret_to_pb(k: &Option<String>, redact: bool) -> String {
    match k {
        Some(_) if redact => REDACTED.into(),
        Some(k) => k.clone(),
        None => String::new(),
    }
}

pub fn identities_to_pb(v: &[IdentityEntry]) -> Vec<pb::IdentityEntry> {
    v.iter()
        .map(|i| pb::IdentityEntry {
            identity: i.identity,
            name: i.name.clone().unwrap_or_default(),
            tags: i.tags.clone(),
            peer: i.peer.clone(),
        })
        .collect()
}

pub fn peers_to_pb(v: &[Peer]) -> Vec<pb::Peer> {
    v.iter()
        .map(|p| pb::Peer {
            name: p.name.clone(),
            keys: p
                .keys
                .iter()
                .map(|k| pb::PeerKey {
                    id: k.id,
                    public_key: k.public_key.clone(),
                    not_before: k.not_before,
                    not_after: k.not_after,
                })
                .collect(),
            networks: p.networks.clone(),
            option_version: p.option_version,
        })
        .collect()
}

pub fn networks_to_pb(v: &[ExternalNetwork]) -> Vec<pb::ExternalNetwork> {
    v.iter()
        .map(|n| pb::ExternalNetwork {
            name: n.name.clone(),
            tags: n.tags.clone(),
            cidrs: n.cidrs.clone(),
            protocols: n.protocols.iter().map(|p| protocol_name(*p).into()).collect(),
            ports: n.ports.iter().map(|p| p.to_string()).collect(),
            fqdns: n.fqdns.clone(),
        })
        .collect()
}

pub fn profile_to_pb(p: &EnforcerProfile) -> pb::EnforcerProfile {
    pb::EnforcerProfile {
        managed_tcp_networks: p.managed_tcp_networks.clone(),
        managed_udp_networks: p.managed_udp_networks.clone(),
        excluded_networks: p.excluded_networks.clone(),
        ignore: p.ignore.clone().unwrap_or_default(),
        layer4_identity: Some(p.layer4_identity),
        stripping_cache_s: Some(p.stripping_cache_s),
        dns_servers: p.dns_servers.as_ref().map(|v| pb::DnsServers { cidrs: v.clone() }),
        fqdn_min_ttl: p.fqdn_min_ttl,
        fqdn_max_ttl: p.fqdn_max_ttl,
    }
}

/// The document as protobuf; `redact` hides an inline private key.
pub fn document_to_pb(d: &PolicyDocument, redact: bool) -> pb::PolicyDocument {
    pb::PolicyDocument {
        revision: d.revision.clone().unwrap_or_default(),
        local: d.local.as_ref().map(|l| local_to_pb(l, redact)),
        processing_units: pus_to_pb(&d.processing_units),
        identities: identities_to_pb(&d.identities),
        peers: peers_to_pb(&d.peers),
        rulesets: rulesets_to_pb(&d.rulesets),
        external_networks: networks_to_pb(&d.external_networks),
        enforcer_profile: Some(profile_to_pb(&d.enforcer_profile)),
    }
}

/// A copy of `d` without its inline private keys (the main one and any previous one).
pub fn redacted(d: &PolicyDocument) -> PolicyDocument {
    let mut d = d.clone();
    if let Some(l) = &mut d.local {
        let previous = l.previous_keys.iter_mut().map(|k| &mut k.private_key);
        for k in std::iter::once(&mut l.private_key).chain(previous) {
            if k.is_some() {
                *k = Some(REDACTED.into());
            }
        }
    }
    d
}

/// Only the parts of `d` of `kind` (the rest empty/default); `None`: all.
pub fn only_kind(d: &Parts, kind: Option<Kind>) -> PolicyDocument {
    let Some(kind) = kind else { return d.to_document() };
    let mut out = PolicyDocument { revision: d.revision.clone(), ..PolicyDocument::default() };
    match kind {
        Kind::Rulesets => out.rulesets = d.rulesets.to_vec(),
        Kind::ProcessingUnits => out.processing_units = d.processing_units.to_vec(),
        Kind::Identities => {
            out.local = d.local.clone();
            out.identities = d.identities.to_vec();
            out.peers = d.peers.to_vec();
        }
        Kind::ExternalNetworks => out.external_networks = d.external_networks.to_vec(),
        Kind::EnforcerProfile => out.enforcer_profile = (*d.enforcer_profile).clone(),
    }
    out
}

pub fn kind_from_pb(k: i32) -> Result<Option<Kind>, String> {
    Ok(match pb::ResourceKind::try_from(k) {
        Ok(pb::ResourceKind::Unspecified) => None,
        Ok(pb::ResourceKind::Rulesets) => Some(Kind::Rulesets),
        Ok(pb::ResourceKind::ProcessingUnits) => Some(Kind::ProcessingUnits),
        Ok(pb::ResourceKind::Identities) => Some(Kind::Identities),
        Ok(pb::ResourceKind::ExternalNetworks) => Some(Kind::ExternalNetworks),
        Ok(pb::ResourceKind::EnforcerProfile) => Some(Kind::EnforcerProfile),
        Err(_) => return Err(format!("kind {k} is not a resource kind (1..=5, or 0 for all)")),
    })
}

// ---------------------------------------------------------------------------
// Protobuf → model

struct Conv {
    problems: Vec<ConfigProblem>,
}

impl Conv {
    fn bad(&mut self, resource: &str, name: &str, field: &str, value: &str, what: &str) {
        let label = match resource {
            "enforcer_profile" | "local" => format!("{resource}.{field}"),
            _ => format!("{resource}[{name:?}].{field}"),
        };
        self.problems.push(ConfigProblem::new(resource, name, field, value, format!("{label}: {value:?} {what}")));
    }

    fn protocols(&mut self, v: &[String], resource: &str, name: &str, field: &str) -> Vec<Protocol> {
        if v.is_empty() {
            return vec![Protocol::Any];
        }
        let mut out = Vec::new();
        for (i, p) in v.iter().enumerate() {
            match p.as_str() {
                "tcp" => out.push(Protocol::Tcp),
                "udp" => out.push(Protocol::Udp),
                "icmp" => out.push(Protocol::Icmp),
                "any" => out.push(Protocol::Any),
                _ => self.bad(resource, name, &format!("{field}[{i}]"), p, "is not a protocol (tcp, udp, icmp, any)"),
            }
        }
        out
    }

    fn rule(&mut self, r: pb::Rule, ruleset: &str, field: String) -> Option<Rule> {
        let action = match r.action.as_str() {
            "allow" => Some(Action::Allow),
            "reject" => Some(Action::Reject),
            _ => {
                self.bad(
                    "rulesets",
                    ruleset,
                    &format!("{field}.action"),
                    &r.action,
                    "is not an action (allow, reject)",
                );
                None
            }
        };
        let protocols = self.protocols(&r.protocols, "rulesets", ruleset, &format!("{field}.protocols"));
        Some(Rule {
            name: r.name,
            action: action?,
            object: r.object,
            protocols,
            ports: ports(r.ports),
            observe: r.observe,
        })
    }

    fn rulesets(&mut self, v: Vec<pb::Ruleset>) -> Vec<Ruleset> {
        v.into_iter()
            .map(|rs| {
                let name = rs.name.clone();
                let mut conv = |rules: Vec<pb::Rule>, dir: &str| -> Vec<Rule> {
                    rules
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, r)| self.rule(r, &name, format!("{dir}[{i}]")))
                        .collect()
                };
                let incoming = conv(rs.incoming, "incoming");
                let outgoing = conv(rs.outgoing, "outgoing");
                Ruleset { name: rs.name, subject: rs.subject, incoming, outgoing }
            })
            .collect()
    }

    fn networks(&mut self, v: Vec<pb::ExternalNetwork>) -> Vec<ExternalNetwork> {
        v.into_iter()
            .map(|n| {
                let protocols = self.protocols(&n.protocols, "external_networks", &n.name, "protocols");
                ExternalNetwork {
                    name: n.name,
                    tags: n.tags,
                    cidrs: n.cidrs,
                    protocols,
                    ports: ports(n.ports),
                    fqdns: n.fqdns,
                }
            })
            .collect()
    }
}

fn ports(v: Vec<String>) -> Vec<PortSpec> {
    v.into_iter()
        .map(|p| match p.trim().parse::<i64>() {
            Ok(n) => PortSpec::Number(n),
            Err(_) => PortSpec::Text(p),
        })
        .collect()
}

fn pus(v: Vec<pb::ProcessingUnit>) -> Vec<ProcessingUnit> {
    v.into_iter()
        .map(|p| ProcessingUnit { name: p.name, tags: p.tags, addresses: p.addresses, identity: p.identity })
        .collect()
}

fn local(l: pb::LocalKeys) -> LocalKeys {
    LocalKeys {
        gateway: l.gateway,
        key_id: l.key_id,
        private_key_file: none_if_empty(l.private_key_file),
        private_key: none_if_empty(l.private_key),
        not_before: l.not_before,
        previous_keys: l
            .previous_keys
            .into_iter()
            .map(|k| LocalKey {
                key_id: k.key_id,
                private_key: none_if_empty(k.private_key),
                private_key_file: none_if_empty(k.private_key_file),
                not_after: k.not_after,
            })
            .collect(),
    }
}

fn identities(v: Vec<pb::IdentityEntry>) -> Vec<IdentityEntry> {
    v.into_iter()
        .map(|i| IdentityEntry { identity: i.identity, name: none_if_empty(i.name), tags: i.tags, peer: i.peer })
        .collect()
}

fn peers(v: Vec<pb::Peer>) -> Vec<Peer> {
    v.into_iter()
        .map(|p| Peer {
            name: p.name,
            keys: p
                .keys
                .into_iter()
                .map(|k| PeerKey {
                    id: k.id,
                    public_key: k.public_key,
                    not_before: k.not_before,
                    not_after: k.not_after,
                })
                .collect(),
            networks: p.networks,
            option_version: p.option_version,
        })
        .collect()
}

fn profile(p: pb::EnforcerProfile) -> EnforcerProfile {
    EnforcerProfile {
        managed_tcp_networks: p.managed_tcp_networks,
        managed_udp_networks: p.managed_udp_networks,
        excluded_networks: p.excluded_networks,
        ignore: none_if_empty(p.ignore),
        layer4_identity: p.layer4_identity.unwrap_or(true),
        stripping_cache_s: p.stripping_cache_s.unwrap_or(dataplane::policy::model::DEFAULT_STRIPPING_CACHE_S),
        dns_servers: p.dns_servers.map(|d| d.cidrs),
        fqdn_min_ttl: p.fqdn_min_ttl,
        fqdn_max_ttl: p.fqdn_max_ttl,
    }
}

fn finish<T>(c: Conv, v: T) -> Result<T, Vec<ConfigProblem>> {
    if c.problems.is_empty() {
        Ok(v)
    } else {
        Err(c.problems)
    }
}

/// The structured document as the model; an absent profile is the default one.
pub fn document_from_pb(d: pb::PolicyDocument) -> Result<PolicyDocument, Vec<ConfigProblem>> {
    let mut c = Conv { problems: Vec::new() };
    let doc = PolicyDocument {
        revision: none_if_empty(d.revision),
        local: d.local.map(local),
        processing_units: pus(d.processing_units),
        identities: identities(d.identities),
        peers: peers(d.peers),
        rulesets: c.rulesets(d.rulesets),
        external_networks: c.networks(d.external_networks),
        enforcer_profile: d.enforcer_profile.map(profile).unwrap_or_default(),
    };
    finish(c, doc)
}

/// Parses a policy document written in YAML, telling apart text that is not
/// YAML at all ("not valid YAML": a syntax error) from YAML that is not a
/// policy document ("not a valid policy document": a missing or unknown
/// field, a wrong type, a number out of range). The problem's field is where
/// ("line L column C"); its message may quote the input, and is cut short
/// with every refusal ([`dataplane::problem::bounded`]).
pub fn document_from_yaml(text: &str) -> Result<PolicyDocument, ConfigProblem> {
    let e = match PolicyDocument::from_yaml(text) {
        Ok(d) => return Ok(d),
        Err(e) => e,
    };
    // The syntax error, if there is one, even where a schema error came first.
    let (e, what) = match serde_yaml::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => (e, "the document is YAML but not a valid policy document"),
        Err(syntax) => (syntax, "the document is not valid YAML"),
    };
    let at = e.location().map(|l| format!("line {} column {}", l.line(), l.column())).unwrap_or_default();
    Err(ConfigProblem::new("document", "", &at, "", format!("{what}: {e}")))
}

/// What an `ApplyRequest` replaces.
pub fn content_from_pb(content: Option<pb::apply_request::Content>) -> Result<Content, Vec<ConfigProblem>> {
    use pb::apply_request::Content as C;
    let mut c = Conv { problems: Vec::new() };
    let content = match content {
        None => {
            return Err(vec![ConfigProblem::new(
                "request",
                "",
                "content",
                "",
                "the request carries nothing to apply (set a document or one kind)".into(),
            )])
        }
        Some(C::DocumentYaml(text)) => Content::Document(document_from_yaml(&text).map_err(|p| vec![p])?),
        Some(C::Document(d)) => return document_from_pb(d).map(Content::Document),
        Some(C::Rulesets(v)) => Content::Rulesets(c.rulesets(v.rulesets)),
        Some(C::ProcessingUnits(v)) => Content::ProcessingUnits(pus(v.processing_units)),
        Some(C::Identities(v)) => Content::Identities {
            local: v.local.map(local),
            identities: identities(v.identities),
            peers: peers(v.peers),
        },
        Some(C::ExternalNetworks(v)) => Content::ExternalNetworks(c.networks(v.external_networks)),
        Some(C::EnforcerProfile(p)) => Content::EnforcerProfile(profile(p)),
    };
    finish(c, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_round_trip_through_protobuf() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/policy.yaml")).unwrap();
        let doc = PolicyDocument::from_yaml(&text).unwrap();
        let back = document_from_pb(document_to_pb(&doc, false)).unwrap();
        // Ports written "8443" and 8443 are the same port; compare in protobuf form.
        assert_eq!(document_to_pb(&back, false), document_to_pb(&doc, false));
        assert_eq!(back.rulesets.len(), 3);
        assert_eq!(back.peers, doc.peers);
        assert_eq!(back.enforcer_profile, doc.enforcer_profile);
    }

    #[test]
    fn bad_strings_are_named() {
        let d = pb::PolicyDocument {
            rulesets: vec![pb::Ruleset {
                name: "db".into(),
                subject: "all()".into(),
                incoming: vec![pb::Rule {
                    name: "r".into(),
                    action: "permit".into(),
                    object: "all()".into(),
                    protocols: vec!["tcp".into(), "sctp".into()],
                    ..Default::default()
                }],
                outgoing: vec![],
            }],
            ..Default::default()
        };
        let e = document_from_pb(d).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].field, "incoming[0].action");
        assert!(e[0].message.contains("rulesets[\"db\"].incoming[0].action: \"permit\""), "{}", e[0].message);
        assert_eq!(e[1].field, "incoming[0].protocols[1]");
        assert_eq!(e[1].value, "sctp");
    }

    #[test]
    fn redaction() {
        let d = PolicyDocument {
            local: Some(LocalKeys {
                gateway: "a".into(),
                key_id: 1,
                private_key_file: None,
                private_key: Some("secret".into()),
                not_before: Some(1000),
                previous_keys: vec![
                    LocalKey {
                        key_id: 2,
                        private_key: Some("older".into()),
                        private_key_file: None,
                        not_after: Some(2000),
                    },
                    LocalKey {
                        key_id: 3,
                        private_key: None,
                        private_key_file: Some("/k".into()),
                        not_after: Some(3000),
                    },
                ],
            }),
            ..PolicyDocument::default()
        };
        let pb = document_to_pb(&d, true).local.unwrap();
        assert_eq!(pb.private_key, REDACTED);
        assert_eq!(pb.previous_keys[0].private_key, REDACTED);
        assert_eq!(pb.previous_keys[1].private_key_file, "/k");
        let r = redacted(&d).local.unwrap();
        assert_eq!(r.private_key.as_deref(), Some(REDACTED));
        assert_eq!(r.previous_keys[0].private_key.as_deref(), Some(REDACTED));
        assert_eq!(r.previous_keys[1].private_key, None);
    }

    #[test]
    fn local_keys_round_trip_through_protobuf() {
        let yaml = "local:\n  gateway: a\n  key_id: 4\n  private_key_file: /k4\n  not_before: 1000\n  previous_keys:\n  \
                    - {key_id: 1, private_key: \"secret\", not_after: 2000}\n  - {key_id: 258, private_key_file: /k2}\n";
        let doc = PolicyDocument::from_yaml(yaml).unwrap();
        assert_eq!(document_from_pb(document_to_pb(&doc, false)).unwrap().local, doc.local);
        // Without the rotation fields: absent both ways, as before.
        let plain = PolicyDocument::from_yaml("local: {gateway: a, key_id: 4, private_key_file: /k4}\n").unwrap();
        let pb = document_to_pb(&plain, false).local.unwrap();
        assert_eq!((pb.not_before, pb.previous_keys.len()), (None, 0));
        assert_eq!(document_from_pb(document_to_pb(&plain, false)).unwrap().local, plain.local);
    }
}
