//! Fleet mode (docs/fleet.md): gateways pull their policy, keys and identity
//! directory from etcd, register themselves, and report what they applied.
//!
//! - [`model`]: the objects kept in etcd (fleet document, registration, PU, status).
//! - [`layout`]: which key holds what.
//! - [`sign`]: the signed envelope every object is stored in.
//! - [`view`]: the fleet as one gateway sees it, verified.
//! - [`build`]: one gateway's policy document from the view.
//! - [`keys`]: the gateway's own X25519 keys and their rotation.
//! - [`agent`]: the loop inside gatewayd (register, list, watch, apply, report).
//! - [`operator`]: what `gwctl fleet` does (validate, apply, status, wait, rotate).
//! - [`etcd`]: connecting, and the fleet-wide counters.
//! - [`config`]: the `[fleet]` section.

pub mod agent;
pub mod build;
pub mod config;
pub mod etcd;
pub mod keys;
pub mod layout;
pub mod model;
pub mod operator;
pub mod sign;
pub mod view;

#[cfg(test)]
mod tests;

pub use config::FleetConfig;

use dataplane::problem::ConfigProblem;

/// What `gwctl status` shows of the fleet agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetReport {
    pub name: String,
    pub connected: bool,
    /// The last connection error (empty while connected).
    pub last_error: String,
    /// The fleet document version in force here (0: none yet).
    pub applied_fleet_version: u64,
    /// The newest fleet document version seen in etcd.
    pub seen_fleet_version: u64,
    pub etcd_revision: i64,
    pub profile: String,
    pub disconnects: u64,
    pub relists: u64,
    pub applies: u64,
    pub refusals: u64,
    /// Objects ignored because they did not verify (forged, altered, unknown signer).
    pub unverified_objects: u64,
    /// A few of them: key and why.
    pub unverified_examples: Vec<(String, String)>,
    /// Claims left out because an older one holds the number.
    pub conflicts: Vec<ConfigProblem>,
    pub key_id: u32,
}
