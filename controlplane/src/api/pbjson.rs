//! How the generated messages print as JSON (`gwctl … -o json`): an enum
//! field by its name, the proto name without the enum's prefix, in lower case
//! (`ENFORCEMENT_STATE_ENFORCING` → `"enforcing"`), never its number. A
//! number no name is known for (a newer gateway) prints as that number.
//! `build.rs` points each enum field here. A flow's enums (verdict, event
//! type, endpoint kind) print by their names in [`crate::flownames`], the
//! names the flow log and every filter use.

use serde::Serializer;

use super::pb;
use crate::flownames;

fn short(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase()
}

macro_rules! enum_names {
    ($($f:ident: $t:ty, $prefix:literal;)*) => {$(
        pub fn $f<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
            match <$t>::try_from(*v) {
                Ok(e) => s.serialize_str(&short(e.as_str_name(), $prefix)),
                Err(_) => s.serialize_i32(*v),
            }
        }
    )*};
}

enum_names! {
    enforcement_state: pb::EnforcementState, "ENFORCEMENT_STATE_";
    resource_kind: pb::ResourceKind, "RESOURCE_KIND_";
    lost_event_source: pb::LostEventSource, "LOST_EVENT_SOURCE_";
}

fn named<S: Serializer>(name: Option<&str>, v: i32, s: S) -> Result<S::Ok, S::Error> {
    match name {
        Some(n) => s.serialize_str(n),
        None => s.serialize_i32(v),
    }
}

pub fn endpoint_kind<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    named(flownames::endpoint_kind_name(*v), *v, s)
}

pub fn flow_event_type<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    named(flownames::event_type_name(*v), *v, s)
}

pub fn verdict<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    named(flownames::verdict_name(*v), *v, s)
}

/// A repeated `Verdict` field, each by name.
pub fn verdicts<S: Serializer>(v: &[i32], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for x in v {
        match flownames::verdict_name(*x) {
            Some(n) => seq.serialize_element(n)?,
            None => seq.serialize_element(x)?,
        }
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_print_by_name() {
        let s = pb::ConfigStatus { state: pb::EnforcementState::EnforcingDropAll as i32, ..Default::default() };
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["state"], "enforcing_drop_all");
        let s = pb::ConfigStatus { state: 99, ..Default::default() };
        assert_eq!(serde_json::to_value(&s).unwrap()["state"], 99);
        let f = pb::Flow {
            r#type: pb::FlowEventType::Rejected as i32,
            verdict: pb::Verdict::Rejected as i32,
            source: Some(pb::Endpoint { kind: pb::EndpointKind::RemoteIdentity as i32, ..Default::default() }),
            ..Default::default()
        };
        let j = serde_json::to_value(&f).unwrap();
        assert_eq!((j["type"].as_str(), j["verdict"].as_str()), (Some("rejected"), Some("rejected")));
        assert_eq!(j["source"]["kind"], "identity");
        let l = pb::LostEvent { source: pb::LostEventSource::WorkerQueue as i32, ..Default::default() };
        assert_eq!(serde_json::to_value(l).unwrap()["source"], "worker_queue");
        let ff = pb::FlowFilter { verdict: vec![1, 3, 42], ..Default::default() };
        assert_eq!(serde_json::to_value(&ff).unwrap()["verdict"], serde_json::json!(["allowed", "passed", 42]));
    }
}
