//! What the fleet keeps in etcd, as plain data: the operator's fleet
//! document, and each gateway's registration, processing units and status.
//! Every struct refuses unknown fields (a typo is an error); `docs/fleet.md`
//! documents each one and the key it lives under.

use dataplane::policy::model::{EnforcerProfile, ExternalNetwork, Ruleset};
use serde::{Deserialize, Serialize};

use dataplane::problem::ConfigProblem;

/// The fleet-wide objects the operator writes (`gwctl fleet apply -f`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetDocument {
    /// Set by `gwctl fleet apply` (one more than the version in etcd); a
    /// value in the file is ignored.
    #[serde(default)]
    pub version: u64,
    /// Free-form label, carried into every gateway's revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The gateways allowed in the fleet, with the Ed25519 keys their
    /// registrations and PUs are signed with. Anything a gateway not listed
    /// here writes is ignored by every other gateway.
    #[serde(default)]
    pub gateways: Vec<Enrollment>,
    #[serde(default)]
    pub rulesets: Vec<Ruleset>,
    #[serde(default)]
    pub external_networks: Vec<ExternalNetwork>,
    #[serde(default)]
    pub profiles: Vec<NamedProfile>,
    /// Which profile a gateway uses, by a selector over its tags.
    #[serde(default)]
    pub profile_mappings: Vec<ProfileMapping>,
    #[serde(default)]
    pub settings: FleetSettings,
}

impl FleetDocument {
    pub fn from_yaml(text: &str) -> Result<FleetDocument, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    pub name: String,
    /// The gateway's Ed25519 public key (64 hex digits), as `gatewayd
    /// --fleet-key` prints it.
    pub signing_key: String,
}

/// An enforcer profile with a name, as mappings refer to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedProfile {
    pub name: String,
    #[serde(default = "default_managed_tcp")]
    pub managed_tcp_networks: Vec<String>,
    #[serde(default)]
    pub managed_udp_networks: Vec<String>,
    #[serde(default)]
    pub excluded_networks: Vec<String>,
    #[serde(default)]
    pub ignore: Option<String>,
}

fn default_managed_tcp() -> Vec<String> {
    EnforcerProfile::default().managed_tcp_networks
}

impl NamedProfile {
    pub fn profile(&self) -> EnforcerProfile {
        EnforcerProfile {
            managed_tcp_networks: self.managed_tcp_networks.clone(),
            managed_udp_networks: self.managed_udp_networks.clone(),
            excluded_networks: self.excluded_networks.clone(),
            ignore: self.ignore.clone(),
            ..EnforcerProfile::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileMapping {
    pub name: String,
    /// Selector over the gateway's `[fleet] tags`.
    pub selector: String,
    /// A `profiles[].name`.
    pub profile: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    /// The profile of a gateway no mapping selects (a `profiles[].name`);
    /// unset: the built-in default (identity to every TCP peer, nothing
    /// excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    /// How far ahead of its use a rotated key is published (seconds): every
    /// peer must learn it before the first SYN signed with it.
    #[serde(default = "default_key_lead")]
    pub key_lead_s: u64,
    /// How long the old key stays valid after the new one is in use.
    #[serde(default = "default_key_overlap")]
    pub key_overlap_s: u64,
    /// How long a gateway whose registration vanished (its lease expired)
    /// stays in the other gateways' documents, keys and PUs included, so that
    /// a gateway that lost etcd for a while is not cut off from the fleet.
    #[serde(default = "default_peer_grace")]
    pub peer_grace_s: u64,
    /// The TCP identity option version every gateway sends to every peer
    /// (each peer's `option_version` in the documents the gateways build):
    /// unset, 1 (HMAC); 2 (one compression) once every gateway of the fleet
    /// runs a release that verifies it (`docs/identity-option.md`, "Rolling
    /// upgrade"). A gateway of an older release refuses a fleet document
    /// with this setting (unknown field) and keeps its last good one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_version: Option<u32>,
}

fn default_key_lead() -> u64 {
    30
}
fn default_key_overlap() -> u64 {
    600
}
fn default_peer_grace() -> u64 {
    600
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            default_profile: None,
            key_lead_s: default_key_lead(),
            key_overlap_s: default_key_overlap(),
            peer_grace_s: default_peer_grace(),
            option_version: None,
        }
    }
}

/// One of a gateway's X25519 keys as its registration publishes it: the
/// same shape as a peer's key in a policy document, which it becomes.
pub use dataplane::policy::model::PeerKey as PublishedKey;

/// `gateways/<name>/registration`, bound to the gateway's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub keys: Vec<PublishedKey>,
    /// CIDRs of the workloads behind the gateway.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Where its control API listens (informational: `gwctl fleet status`).
    #[serde(default)]
    pub api: String,
    /// Unix seconds the gateway started.
    #[serde(default)]
    pub started_at: u64,
}

/// `gateways/<gw>/pus/<name>`: a processing unit and the identity the fleet
/// gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PuRecord {
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub addresses: Vec<String>,
    pub identity: u32,
}

/// A PU as the gateway's own file declares it (no identity: the fleet allocates it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPu {
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub addresses: Vec<String>,
}

/// The gateway's PU file: `processing_units: [...]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PuFile {
    #[serde(default)]
    pub processing_units: Vec<LocalPu>,
}

/// `gateways/<name>/status`: what the gateway applied (not bound to its lease,
/// so that the last word of a gateway that went away stays readable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayStatus {
    pub name: String,
    /// The fleet document version of the last document this gateway built.
    pub fleet_version: u64,
    /// The etcd revision that document was built at.
    pub etcd_revision: i64,
    /// Whether that document is in force ("applied") or was refused ("refused").
    pub result: String,
    /// The fleet version of the document in force (differs from
    /// `fleet_version` after a refusal).
    pub applied_fleet_version: u64,
    /// The gateway's config store version in force.
    pub document_version: u64,
    /// The profile its tags selected.
    #[serde(default)]
    pub profile: String,
    /// The problems of the last refusal (bounded).
    #[serde(default)]
    pub problems: Vec<ConfigProblem>,
    /// Objects it ignored because they did not verify, since it started.
    #[serde(default)]
    pub unverified_objects: u64,
    /// Unix milliseconds of this report.
    pub at_unix_ms: u64,
}

/// `fleet/rotate/<gateway>`: the operator asks a gateway to rotate its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    pub gateway: String,
    /// Unix seconds of the request; a gateway acts once per value.
    pub requested_at: u64,
}

/// Names used in etcd keys: what survives as one path segment and reads
/// well in a log.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s != "."
        && s != ".."
}
