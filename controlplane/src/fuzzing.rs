//! Fuzz target bodies for what the control plane reads from outside, shared
//! by `cargo fuzz` (`controlplane/fuzz`) and by `tests/control_fuzz_replay.rs`,
//! which replays the committed corpus plus deterministic mutations.
//!
//! - [`apply_request`]: bytes as a protobuf `ApplyRequest` → the server's
//!   conversion into the store's [`Content`](crate::store::Content) → a dry-run
//!   apply on a store holding the example policy (merge of the kinds, compile).
//! - [`gatewayd_toml`]: bytes as gatewayd's TOML file → parse and validate.
//!
//! Properties: nothing panics; a refusal names at least one problem; every
//! message is bounded by the input ([`message_limit`]); a structured document
//! the server accepts converts back to the same protobuf.

use std::sync::OnceLock;

use prost::Message;

use crate::api::convert::{content_from_pb, document_from_pb, document_to_pb};
use crate::api::pb;
use crate::config::GatewayConfig;
use crate::store::{ApplyOptions, ConfigStore, Content, Discard, StoreOptions};
use dataplane::policy::PolicyDocument;

pub use dataplane::policy::fuzzing::message_limit;

const EXAMPLE: &str = include_str!("../../docs/examples/policy.yaml");

/// A store without a state directory holding the example policy at version 1;
/// the fuzz applies are dry runs, so it never changes.
fn store() -> &'static ConfigStore {
    static STORE: OnceLock<ConfigStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let options = StoreOptions { state_dir: None, before_config: Default::default() };
        let store = ConfigStore::open(options, Box::new(Discard)).expect("an in-memory store opens");
        let doc = PolicyDocument::from_yaml(EXAMPLE).expect("the example parses");
        store.apply(1, Content::Document(doc), false).expect("the example applies");
        store
    })
}

fn check_messages<'a>(messages: impl Iterator<Item = &'a str>, input_len: usize) {
    let limit = message_limit(input_len);
    let mut any = false;
    for m in messages {
        any = true;
        assert!(m.len() <= limit, "a {}-byte message for a {input_len}-byte input", m.len());
    }
    assert!(any, "a refusal without problems");
}

/// Bytes as an `ApplyRequest`, handled as the `Config.Apply` handler does
/// (always as a dry run).
pub fn apply_request(data: &[u8]) {
    let Ok(req) = pb::ApplyRequest::decode(data) else { return };
    if let Some(pb::apply_request::Content::Document(d)) = &req.content {
        if let Ok(doc) = document_from_pb(d.clone()) {
            // What Get returns converts back to the same document.
            let once = document_to_pb(&doc, false);
            let back = document_from_pb(once.clone()).expect("a converted document converts again");
            assert_eq!(document_to_pb(&back, false), once, "the protobuf round trip changed the document");
        }
    }
    let content = match content_from_pb(req.content) {
        Ok(c) => c,
        Err(problems) => return check_messages(problems.iter().map(|p| p.message.as_str()), data.len()),
    };
    // The request's own guard flags (allow_empty, replace), always a dry run.
    let opts = ApplyOptions { dry_run: true, allow_empty: req.allow_empty, replace: req.replace };
    match store().apply_with(req.version, content, opts) {
        Ok(a) => assert!(a.dry_run, "a dry run was applied"),
        Err(r) => check_messages(r.problems.iter().map(|p| p.message.as_str()), data.len()),
    }
}

/// Bytes as gatewayd's TOML configuration.
pub fn gatewayd_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match GatewayConfig::parse(text, "fuzz.toml") {
        Ok(cfg) => {
            assert!(cfg.validate().is_empty());
            let args = cfg.eal.effective_args();
            assert!(args.len() >= cfg.eal.args.len());
            for i in 0..cfg.workers.len() {
                assert!(usize::from(cfg.queue_of(i)) < cfg.workers.len());
            }
            let _ = cfg.udp_handshake.engine_config();
            if let Some(c) = &cfg.control {
                let _ = c.store_options();
            }
        }
        Err(e) => {
            assert!(e.errors.iter().all(|e| !e.field.is_empty()), "an error without a field: {e}");
            check_messages(e.errors.iter().map(|e| e.message.as_str()), data.len());
        }
    }
}
