//! The gRPC control plane (`proto/gateway/v1`, documented in `docs/api.md`).
//!
//! - [`config`]: `Config` — versioned, all-or-nothing applies over the [`crate::store`].
//! - [`flows`]: `Flows` — `GetFlows` over the [`crate::flowhub`]: filters, last N,
//!   follow, time bounds, lost-event notices, aggregation.
//! - [`wire`]: flow records as the ring holds them, resolved and encoded once.
//! - [`stats`]: `Stats` — counters and latency histograms.
//! - [`auth`]: who may do what (read-only vs read-write, by socket or certificate).
//! - [`server`]: the `[control]` settings, the listeners (Unix sockets, TCP with
//!   mutual TLS) and the tokio runtime they run on, off the worker lcores.
//! - [`client`]: connecting to it (gwctl, tests).
//! - [`link`]: gatewayd's hook: the store, hub and server tied to a running gateway.
//! - [`convert`]: between the protobuf messages and the policy model.
//! - [`pbjson`]: how the messages print as JSON (enums by name).

pub mod auth;
pub mod client;
pub mod config;
pub mod convert;
pub mod explain;
pub mod flows;
pub mod link;
pub mod pbjson;
pub mod server;
pub mod stats;
pub mod wire;

/// The generated protobuf and gRPC code (package `gateway.v1`).
#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("gateway.v1");
}

pub use server::{ControlConfig, ControlServer, ServerError};
