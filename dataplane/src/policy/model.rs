//! The declarative policy document, as an operator writes it (YAML).
//!
//! These are plain data: nothing here is validated beyond its shape; the
//! compiler ([`super::compile`]) checks meaning and reports every problem at once.
//! Every struct refuses unknown fields so that a typo is an error, not a silently
//! ignored setting. `docs/config.md` documents each field.

use serde::{Deserialize, Serialize};

/// The whole policy of one gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Free-form revision label, echoed in flow events and apply acknowledgements.
    #[serde(default)]
    pub revision: Option<String>,
    /// This gateway's own name and key.
    #[serde(default)]
    pub local: Option<LocalKeys>,
    /// Workloads behind this gateway.
    #[serde(default)]
    pub processing_units: Vec<ProcessingUnit>,
    /// Identities of workloads behind other gateways.
    #[serde(default)]
    pub identities: Vec<IdentityEntry>,
    /// Other gateways and their static public keys.
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub rulesets: Vec<Ruleset>,
    #[serde(default)]
    pub external_networks: Vec<ExternalNetwork>,
    #[serde(default)]
    pub enforcer_profile: EnforcerProfile,
}

impl PolicyDocument {
    /// Parses a YAML document. Shape errors (unknown fields, wrong types) carry
    /// serde_yaml's line and column.
    pub fn from_yaml(text: &str) -> Result<PolicyDocument, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }

    /// The document borrowed field by field.
    pub fn view(&self) -> DocumentRef<'_> {
        DocumentRef {
            revision: self.revision.as_deref(),
            local: self.local.as_ref(),
            processing_units: &self.processing_units,
            identities: &self.identities,
            peers: &self.peers,
            rulesets: &self.rulesets,
            external_networks: &self.external_networks,
            enforcer_profile: &self.enforcer_profile,
        }
    }
}

/// A [`PolicyDocument`] whose parts are borrowed from wherever they live, so
/// that a holder keeping each kind separately (the control plane's store,
/// which shares the kinds an apply does not replace) can compile or persist
/// it without first copying it into one owned document. Serializes exactly as
/// a `PolicyDocument` with the same content.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DocumentRef<'a> {
    pub revision: Option<&'a str>,
    pub local: Option<&'a LocalKeys>,
    pub processing_units: &'a [ProcessingUnit],
    pub identities: &'a [IdentityEntry],
    pub peers: &'a [Peer],
    pub rulesets: &'a [Ruleset],
    pub external_networks: &'a [ExternalNetwork],
    pub enforcer_profile: &'a EnforcerProfile,
}

/// This gateway's name and static X25519 key. Stored as data; the identity
/// module loads and uses the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalKeys {
    /// The name peers know this gateway by (their `peers[].name`).
    pub gateway: String,
    /// The key id of this gateway's key pair (0..=65535: the sender's 16 bits
    /// of the option's key id; peers list it as `peers[].keys[].id`).
    #[serde(deserialize_with = "u32_in_range")]
    pub key_id: u32,
    /// Path of a file holding the 32-byte private key (base64 or hex text).
    #[serde(default)]
    pub private_key_file: Option<String>,
    /// The private key inline (base64 or hex). Exactly one of the two must be set.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Unix seconds from which this key signs (default: always). Until then
    /// the previous key valid longest does; peers may sign towards either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// Keys this gateway still verifies (and signs with until `not_before`)
    /// while a rotation overlaps. No two local keys may share the low 8 bits
    /// of their key id: those bits are all a peer's option names of ours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<LocalKey>,
}

/// A previous key of this gateway, kept during a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalKey {
    /// Its key id (0..=65535), as peers still list it under `peers[].keys[].id`.
    #[serde(deserialize_with = "u32_in_range")]
    pub key_id: u32,
    /// As `local.private_key` (exactly one of the two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// As `local.private_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<String>,
    /// Unix seconds after which the key is no longer used (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
}

/// A workload behind this gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingUnit {
    pub name: String,
    /// `key=value` tags; a key at most once.
    #[serde(default)]
    pub tags: Vec<String>,
    /// IPv4/IPv6 addresses or CIDRs. No two PUs may overlap.
    pub addresses: Vec<String>,
    /// The numeric identity this gateway sends on the PU's behalf.
    #[serde(deserialize_with = "u32_in_range")]
    pub identity: u32,
}

/// A workload behind another gateway, as it may be claimed in identity options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityEntry {
    #[serde(deserialize_with = "u32_in_range")]
    pub identity: u32,
    /// Optional display name for flow events.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The peer gateway (by `peers[].name`) allowed to claim this identity.
    pub peer: String,
}

/// Another gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    /// Its static X25519 public keys, one per key id (several during a rotation).
    pub keys: Vec<PeerKey>,
    /// CIDRs of the workloads behind this peer: an outgoing SYN towards one of
    /// them carries identity signed with the pairwise key towards this peer.
    #[serde(default)]
    pub networks: Vec<String>,
    /// The TCP identity option's format version sent to this peer: 1 (HMAC,
    /// what every gateway understands; the default) or 2 (one-compression
    /// MAC, understood by gateways of this release on). Options of both
    /// versions are accepted from every peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_version: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerKey {
    /// Key id as carried in the identity option (the sender's 16 bits of the
    /// option's 24-bit key id, so 0..=65535); unique across all peers.
    #[serde(deserialize_with = "u32_in_range")]
    pub id: u32,
    /// 32 bytes, base64 (standard alphabet, padded or not) or 64 hex digits.
    pub public_key: String,
    /// Unix seconds from which the key may be used (default: always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// Unix seconds after which the key is refused (`identity_expired_key`; default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
}

/// A set of rules that applies to the local PUs its subject selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ruleset {
    pub name: String,
    /// Selector over local PU tags.
    pub subject: String,
    /// Rules for connections the subject PU accepts (it is the server).
    #[serde(default)]
    pub incoming: Vec<Rule>,
    /// Rules for connections the subject PU opens (it is the client).
    #[serde(default)]
    pub outgoing: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Appears in flow events; unique within its ruleset and direction.
    pub name: String,
    pub action: Action,
    /// Selector over remote identities' tags and external networks' tags.
    pub object: String,
    /// Default: `[any]`.
    #[serde(default = "any_protocol")]
    pub protocols: Vec<Protocol>,
    /// Destination (server) ports: numbers or `"lo-hi"` ranges. Empty: all ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Report what this rule decides without enforcing it.
    #[serde(default)]
    pub observe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

/// A `u32` field whose error names the value and the range ("1099511627776
/// is out of range (0..=4294967295)") where serde's own says "invalid type:
/// integer … as u128, expected u32"; the YAML error adds the field's path.
fn u32_in_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer in 0..=4294967295")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u32, E> {
            self.visit_u128(v.into())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u32, E> {
            self.visit_i128(v.into())
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::custom(format_args!("{v} is out of range (0..=4294967295)")))
        }
        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::custom(format_args!("{v} is out of range (0..=4294967295)")))
        }
    }
    d.deserialize_any(V)
}

pub(crate) fn any_protocol() -> Vec<Protocol> {
    vec![Protocol::Any]
}

/// A port or a range as written: `443`, `"443"`, `"8000-8080"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    Number(i64),
    Text(String),
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSpec::Number(n) => write!(f, "{n}"),
            PortSpec::Text(s) => f.write_str(s),
        }
    }
}

/// Hosts without an enforcer, judged by address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalNetwork {
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// May be empty when `fqdns` is not.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Default: `[any]`.
    #[serde(default = "any_protocol")]
    pub protocols: Vec<Protocol>,
    /// Empty: all ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Domain names whose addresses, learned from trusted DNS answers, are
    /// members of this network while their TTL lasts: `api.example.test`
    /// (exactly), `*.example.test` (one label or more in front). See docs/dns.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fqdns: Vec<String>,
}

/// Where identity is sent and what is left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcerProfile {
    /// Remote networks whose TCP peers are sent identity. Default: everything.
    #[serde(default = "default_managed_tcp")]
    pub managed_tcp_networks: Vec<String>,
    /// Remote networks whose UDP peers are sent identity. Default: none.
    #[serde(default)]
    pub managed_udp_networks: Vec<String>,
    /// Never touched, never logged.
    #[serde(default)]
    pub excluded_networks: Vec<String>,
    /// Selector over local PU tags; matching PUs are passed through untouched.
    #[serde(default)]
    pub ignore: Option<String>,
    /// The layer-4 identity exchange (`docs/identity-l4.md`) where the option
    /// cannot travel. Default: on.
    #[serde(default = "default_true")]
    pub layer4_identity: bool,
    /// Seconds a destination whose path stripped the option is remembered
    /// (its connections go to layer 4 at once); 0: never remembered.
    /// Default: 600.
    #[serde(default = "default_stripping_cache_s")]
    pub stripping_cache_s: u32,
    /// The DNS servers whose answers are read (logged, learned from), as
    /// CIDRs. Absent: any server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
    /// Bounds (seconds) on how long an address learned for an FQDN pattern
    /// stays: the record's TTL clamped to them. Defaults 5 and 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn_min_ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn_max_ttl: Option<u32>,
}

fn default_true() -> bool {
    true
}

/// The default of `enforcer_profile.stripping_cache_s`.
pub const DEFAULT_STRIPPING_CACHE_S: u32 = 600;

fn default_stripping_cache_s() -> u32 {
    DEFAULT_STRIPPING_CACHE_S
}

pub(crate) fn default_managed_tcp() -> Vec<String> {
    vec!["0.0.0.0/0".to_string(), "::/0".to_string()]
}

impl Default for EnforcerProfile {
    fn default() -> Self {
        EnforcerProfile {
            managed_tcp_networks: default_managed_tcp(),
            managed_udp_networks: Vec::new(),
            excluded_networks: Vec::new(),
            ignore: None,
            layer4_identity: true,
            stripping_cache_s: DEFAULT_STRIPPING_CACHE_S,
            dns_servers: None,
            fqdn_min_ttl: None,
            fqdn_max_ttl: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_serializes_as_the_document() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/policy.yaml")).unwrap();
        let d = PolicyDocument::from_yaml(&text).unwrap();
        assert_eq!(serde_yaml::to_string(&d.view()).unwrap(), d.to_yaml().unwrap());
    }

    #[test]
    fn local_without_rotation_fields_serializes_as_before() {
        let d = PolicyDocument::from_yaml("local: {gateway: g, key_id: 1, private_key_file: /k}\n").unwrap();
        let l = d.local.as_ref().unwrap();
        assert_eq!((l.not_before, l.previous_keys.len()), (None, 0));
        // The text an older build wrote: no `not_before`, no `previous_keys`.
        assert_eq!(
            serde_yaml::to_string(l).unwrap(),
            "gateway: g\nkey_id: 1\nprivate_key_file: /k\nprivate_key: null\n"
        );
        assert_eq!(serde_yaml::to_string(&d.view()).unwrap(), d.to_yaml().unwrap());
    }

    #[test]
    fn local_rotation_fields_round_trip_and_refuse_typos() {
        let text =
            "local:\n  gateway: g\n  key_id: 4\n  private_key_file: /k4\n  not_before: 3000\n  previous_keys:\n  \
                    - {key_id: 1, private_key_file: /k1, not_after: 4000}\n";
        let d = PolicyDocument::from_yaml(text).unwrap();
        let l = d.local.as_ref().unwrap();
        assert_eq!(l.not_before, Some(3000));
        assert_eq!(
            l.previous_keys,
            [LocalKey { key_id: 1, private_key: None, private_key_file: Some("/k1".into()), not_after: Some(4000) }]
        );
        assert_eq!(PolicyDocument::from_yaml(&d.to_yaml().unwrap()).unwrap(), d);
        let e =
            PolicyDocument::from_yaml("local: {gateway: g, key_id: 4, previous_keys: [{key_id: 1, not_afte: 9}]}\n")
                .unwrap_err();
        assert!(e.to_string().contains("not_afte"), "{e}");
        let e = PolicyDocument::from_yaml("local: {gateway: g, key_id: 4, previous_keys: [{key_id: 4294967296}]}\n")
            .unwrap_err();
        assert!(e.to_string().contains("4294967296 is out of range"), "{e}");
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let d = PolicyDocument::from_yaml("processing_units: []\n").unwrap();
        assert_eq!(d.enforcer_profile.managed_tcp_networks, vec!["0.0.0.0/0", "::/0"]);
        assert!(d.enforcer_profile.managed_udp_networks.is_empty());
        let e = PolicyDocument::from_yaml("procesing_units: []\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = PolicyDocument::from_yaml(
            "rulesets:\n- name: a\n  subject: all()\n  incoming:\n  - name: r\n    action: allow\n    object: all()\n    prots: [tcp]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("prots"), "{e}");
        let d = PolicyDocument::from_yaml(
            "rulesets:\n- name: a\n  subject: all()\n  incoming:\n  - name: r\n    action: reject\n    object: all()\n    ports: [80, \"8000-8080\"]\n",
        )
        .unwrap();
        let r = &d.rulesets[0].incoming[0];
        assert_eq!(r.protocols, vec![Protocol::Any]);
        assert_eq!(r.ports, vec![PortSpec::Number(80), PortSpec::Text("8000-8080".into())]);
        assert_eq!(r.action, Action::Reject);
        assert!(!r.observe);
    }
}
