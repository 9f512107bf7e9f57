//! The gateway process: its configuration, bring-up and lifecycle.
//!
//! - [`config`]: the `gatewayd` TOML file, validated with errors that name the field.
//! - [`gateway`]: EAL, pools, ports, hand-off rings, workers, shutdown.
//! - [`report`]: counters as operators read them.
//! - [`fuzzing`]: fuzz target bodies (ApplyRequest decoding, the TOML file).
//!
//! Every configuration problem (the TOML file, an apply, the fleet) is a
//! [`dataplane::problem::ConfigProblem`]. The binaries: `src/bin/gatewayd.rs`
//! and `src/bin/gwctl/` (`main.rs`, a module per command, `output.rs`).

#![forbid(unsafe_code)]
// The API's handlers and their helpers fail with `tonic::Status` (176 bytes),
// the error gRPC sends back; boxing it at each return would only move the
// allocation onto the error path of every request.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod config;
pub mod dnsagg;
pub mod dnslog;
pub mod fleet;
pub mod flowhub;
pub mod flowjson;
pub mod flowlog;
pub mod flownames;
pub mod fuzzing;
pub mod gateway;
pub mod ipfix;
pub mod metrics;
pub mod report;
pub mod rulehits;
pub mod store;
