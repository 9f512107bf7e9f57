//! One flow as a JSON line: what the flow-log file writes and what
//! `gwctl observe -o json` prints, the same object (`{"flow": {...}}`, in the
//! manner of Hubble's exporter and `hubble observe -o json`). The fields are
//! the `gateway.v1.Flow` message's, enums by their names in
//! [`crate::flownames`], the time in RFC 3339 beside the nanoseconds.
//! Serialized from borrowed fields straight into the output (no
//! intermediate `serde_json::Value` per line).

use std::time::{Duration, UNIX_EPOCH};

use crate::api::pb;
use crate::flownames;

#[derive(serde::Serialize)]
pub struct FlowJson<'a> {
    /// The gateway the flow came from, when several are merged (`gwctl observe --gateways`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<&'a str>,
    pub flow: FlowFields<'a>,
}

#[derive(serde::Serialize)]
pub struct FlowFields<'a> {
    time: String,
    time_unix_ns: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    worker: u32,
    source: &'a Option<pb::Endpoint>,
    destination: &'a Option<pb::Endpoint>,
    protocol: std::borrow::Cow<'static, str>,
    verdict: &'static str,
    reason: &'a str,
    policy: &'a Option<pb::PolicyRef>,
    observed: &'a Option<pb::PolicyRef>,
    policy_generation: u32,
    policy_revision: &'a str,
    packets_to_server: u64,
    bytes_to_server: u64,
    packets_to_client: u64,
    bytes_to_client: u64,
    handshake_ns: u64,
    direction: &'static str,
    note: &'a str,
    identity_mode: &'a str,
    layer4_reason: &'a str,
    remote_dns_name: &'a str,
}

/// A time as RFC 3339 with milliseconds (UTC).
pub fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// The JSON object of `f` (`gateway` names its gateway when streams are merged).
pub fn flow_json<'a>(f: &'a pb::Flow, gateway: Option<&'a str>) -> FlowJson<'a> {
    FlowJson {
        gateway,
        flow: FlowFields {
            time: rfc3339(f.time_unix_ns),
            time_unix_ns: f.time_unix_ns,
            kind: flownames::event_type_name(f.r#type).unwrap_or("unknown"),
            worker: f.worker,
            source: &f.source,
            destination: &f.destination,
            protocol: flownames::protocol_name_of(f.protocol).unwrap_or(std::borrow::Cow::Borrowed("")),
            verdict: flownames::verdict_name(f.verdict).unwrap_or("unknown"),
            reason: &f.reason,
            policy: &f.policy,
            observed: &f.observed,
            policy_generation: f.policy_generation,
            policy_revision: &f.policy_revision,
            packets_to_server: f.packets_to_server,
            bytes_to_server: f.bytes_to_server,
            packets_to_client: f.packets_to_client,
            bytes_to_client: f.bytes_to_client,
            handshake_ns: f.handshake_ns,
            direction: flownames::direction_name(f.direction).unwrap_or(""),
            note: &f.note,
            identity_mode: &f.identity_mode,
            layer4_reason: &f.layer4_reason,
            remote_dns_name: &f.remote_dns_name,
        },
    }
}

/// Writes `f` as one JSON line (with its newline).
pub fn write_flow_line(out: &mut impl std::io::Write, f: &pb::Flow, gateway: Option<&str>) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &flow_json(f, gateway)).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON names the `Flow` message's fields one by one: a field added
    /// to the .proto must be added here too, or it would silently vanish.
    #[test]
    fn json_lines_carry_every_field_of_the_flow_message() {
        let f = pb::Flow {
            time_unix_ns: 1_700_000_000_123_456_789,
            r#type: pb::FlowEventType::Rejected as i32,
            verdict: pb::Verdict::Rejected as i32,
            protocol: pb::Protocol::Tcp as i32,
            direction: pb::TrafficDirection::Incoming as i32,
            reason: "no_match".into(),
            source: Some(pb::Endpoint { kind: pb::EndpointKind::RemoteIdentity as i32, ..Default::default() }),
            ..Default::default()
        };
        let all = serde_json::to_value(&f).unwrap();
        let line = serde_json::to_value(flow_json(&f, None)).unwrap();
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
        let mut want = keys(&all);
        want.insert("time".into());
        assert_eq!(keys(&line["flow"]), want);
        assert_eq!(keys(&line), ["flow".to_string()].into());
        assert_eq!(line["flow"]["verdict"], "rejected");
        assert_eq!(line["flow"]["type"], "rejected");
        assert_eq!(line["flow"]["source"]["kind"], "identity");
        assert_eq!(line["flow"]["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(line["flow"]["time_unix_ns"], 1_700_000_000_123_456_789u64);
        assert_eq!(line["flow"]["reason"], all["reason"]);
        assert_eq!((&line["flow"]["protocol"], &line["flow"]["direction"]), (&"tcp".into(), &"incoming".into()));
        let named = serde_json::to_value(flow_json(&f, Some("gw-a"))).unwrap();
        assert_eq!(named["gateway"], "gw-a");
    }
}
