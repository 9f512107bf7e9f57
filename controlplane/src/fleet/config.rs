//! gatewayd's `[fleet]` section (docs/fleet.md, "Gateway configuration").

use std::path::PathBuf;

use serde::Deserialize;

use dataplane::problem::{cut, ConfigProblem};

use super::model::valid_name;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// etcd client URLs (`https://10.254.0.1:2379`); several for a cluster.
    pub endpoints: Vec<String>,
    /// Where the fleet's keys live in etcd.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// This gateway's name in the fleet (its etcd user, with client certificates).
    pub name: String,
    /// `key=value` tags; profile mappings select on them.
    #[serde(default)]
    pub tags: Vec<String>,
    /// CIDRs of the workloads behind this gateway (peers send identity there).
    #[serde(default)]
    pub networks: Vec<String>,
    /// A YAML file of `processing_units: [{name, tags, addresses}]`; the
    /// fleet gives each an identity. Re-read when it changes.
    #[serde(default)]
    pub processing_units: Option<PathBuf>,
    /// The operator's Ed25519 public key (64 hex digits): fleet objects not
    /// signed with it are refused.
    pub operator_key: String,
    /// The registration's lease (seconds): how long after this gateway stops
    /// answering the others see it gone.
    #[serde(default = "default_ttl")]
    pub lease_ttl_s: u64,
    /// How long to gather a burst of changes into one apply (milliseconds).
    #[serde(default = "default_coalesce")]
    pub coalesce_ms: u64,
    /// TLS towards etcd: the CA that signed its certificates, and this
    /// gateway's client certificate and key (the certificate's CN is its etcd user).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Password authentication instead of (or with) a client certificate.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Published in the registration for `gwctl fleet status` (informational).
    #[serde(default)]
    pub api_address: String,
}

fn default_prefix() -> String {
    "/igw".into()
}
fn default_ttl() -> u64 {
    10
}
fn default_coalesce() -> u64 {
    20
}

impl FleetConfig {
    /// Every problem, each a setting (`fleet.…`).
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut errs = Vec::new();
        let mut err = |f: &str, m: String| errs.push(ConfigProblem::setting(format!("fleet.{f}"), m));
        if self.endpoints.is_empty() {
            err("endpoints", "at least one etcd endpoint is needed".into());
        }
        for e in &self.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                err("endpoints", format!("{:?} is not an http:// or https:// URL", cut(e, 64)));
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.len() < 2 || self.prefix.len() > 128 {
            err("prefix", format!("{:?} must start with / and name something", cut(&self.prefix, 64)));
        }
        if !valid_name(&self.name) || self.name == super::sign::OPERATOR {
            err("name", format!("{:?} must be 1-64 of A-Z a-z 0-9 . _ - (and not \"operator\")", cut(&self.name, 64)));
        }
        if let Err(e) = dataplane::policy::TagSet::parse(&self.tags) {
            err("tags", e.to_string());
        }
        if let Err(e) = super::sign::public_key(&self.operator_key) {
            err("operator_key", format!("not an Ed25519 public key: {e}"));
        }
        if !(2..=3600).contains(&self.lease_ttl_s) {
            err("lease_ttl_s", format!("{} is not in 2..=3600", self.lease_ttl_s));
        }
        if self.coalesce_ms > 10_000 {
            err("coalesce_ms", format!("{} is not in 0..=10000", self.coalesce_ms));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            err("cert_file", "cert_file and key_file go together".into());
        }
        if self.user.is_some() != self.password_file.is_some() {
            err("user", "user and password_file go together".into());
        }
        errs
    }
}
