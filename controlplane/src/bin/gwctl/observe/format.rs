//! How `observe` prints a flow: one line in the manner of `hubble observe`,
//! or one JSON object.

use controlplane::api::pb;
use pb::get_flows_response::Response as R;

use crate::output::{ns_time, Output};

fn verdict_name(v: i32) -> &'static str {
    match pb::Verdict::try_from(v) {
        Ok(pb::Verdict::Allowed) => "ALLOWED",
        Ok(pb::Verdict::Rejected) => "REJECTED",
        Ok(pb::Verdict::Passed) => "PASSED",
        _ => "UNKNOWN",
    }
}

fn event_name(v: i32) -> &'static str {
    match pb::FlowEventType::try_from(v) {
        Ok(pb::FlowEventType::Started) => "started",
        Ok(pb::FlowEventType::Ended) => "ended",
        Ok(pb::FlowEventType::Rejected) => "rejected",
        _ => "",
    }
}

fn lost_source(v: i32) -> &'static str {
    match pb::LostEventSource::try_from(v) {
        Ok(pb::LostEventSource::WorkerQueue) => "worker_queue",
        Ok(pb::LostEventSource::Ring) => "ring",
        Ok(pb::LostEventSource::Reader) => "reader",
        _ => "unknown",
    }
}

fn endpoint_text(e: &pb::Endpoint, with_port: bool) -> String {
    let mut s = if e.ip.contains(':') { format!("[{}]", e.ip) } else { e.ip.clone() };
    if with_port && e.port != 0 {
        s = format!("{s}:{}", e.port);
    }
    let mut who = Vec::new();
    if !e.name.is_empty() {
        who.push(e.name.clone());
    }
    if e.identity != 0 {
        who.push(format!("id {}", e.identity));
    }
    if !e.tags.is_empty() {
        who.push(e.tags.join(","));
    }
    if who.is_empty() {
        s
    } else if s.is_empty() {
        format!("({})", who.join(" "))
    } else {
        format!("{s} ({})", who.join(" "))
    }
}

fn policy_text(p: &pb::PolicyRef) -> String {
    format!("{}/{}/{}", p.ruleset, p.direction, p.rule)
}

/// One line per flow, in the manner of `hubble observe`.
fn flow_line(f: &pb::Flow) -> String {
    let src = f.source.as_ref().map(|e| endpoint_text(e, true)).unwrap_or_default();
    let dst = f.destination.as_ref().map(|e| endpoint_text(e, true)).unwrap_or_default();
    let mut line = format!(
        "{}  {src} -> {dst}  {}  {}  {}",
        ns_time(f.time_unix_ns),
        f.protocol,
        verdict_name(f.verdict),
        if f.reason.is_empty() { "-" } else { &f.reason }
    );
    if let Some(p) = &f.policy {
        line.push_str(&format!("  rule {}", policy_text(p)));
    }
    if f.identity_mode == "layer4" {
        line.push_str(&format!("  identity layer4 ({})", f.layer4_reason));
    } else if !f.identity_mode.is_empty() {
        line.push_str(&format!("  identity {}", f.identity_mode));
    }
    if let Some(o) = &f.observed {
        line.push_str(&format!("  observed {} {}", o.action, policy_text(o)));
    }
    let ev = event_name(f.r#type);
    if !ev.is_empty() {
        line.push_str(&format!("  [{ev}"));
        if f.r#type == pb::FlowEventType::Ended as i32 {
            line.push_str(&format!(
                " {}/{} pkts {}/{} B",
                f.packets_to_server, f.packets_to_client, f.bytes_to_server, f.bytes_to_client
            ));
        }
        line.push(']');
    }
    line
}

/// `observe -o json`: one object per line, `{"flow": {...}}`, the `Flow`
/// message's fields with the verdict and event type by name and the time in
/// RFC 3339 beside the nanoseconds. Serialized from borrowed fields straight
/// into the output (no intermediate `serde_json::Value` per line).
#[derive(serde::Serialize)]
struct FlowJson<'a> {
    flow: FlowFields<'a>,
}

#[derive(serde::Serialize)]
struct FlowFields<'a> {
    time: String,
    time_unix_ns: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    worker: u32,
    source: &'a Option<pb::Endpoint>,
    destination: &'a Option<pb::Endpoint>,
    protocol: &'a str,
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
    direction: &'a str,
    identity_mode: &'a str,
    layer4_reason: &'a str,
}

fn flow_json(f: &pb::Flow) -> FlowJson<'_> {
    FlowJson {
        flow: FlowFields {
            time: ns_time(f.time_unix_ns),
            time_unix_ns: f.time_unix_ns,
            kind: event_name(f.r#type),
            worker: f.worker,
            source: &f.source,
            destination: &f.destination,
            protocol: &f.protocol,
            verdict: match pb::Verdict::try_from(f.verdict) {
                Ok(pb::Verdict::Allowed) => "allowed",
                Ok(pb::Verdict::Rejected) => "rejected",
                Ok(pb::Verdict::Passed) => "passed",
                _ => "unknown",
            },
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
            direction: &f.direction,
            identity_mode: &f.identity_mode,
            layer4_reason: &f.layer4_reason,
        },
    }
}

/// One response as printed, without its newline (a batch: a line per flow;
/// [`write_flow`] writes a batch without building its text).
pub fn response_line(r: &R, output: Output) -> String {
    match (r, output) {
        (R::Flows(b), _) => b.flows.iter().map(|f| flow_text(f, output)).collect::<Vec<_>>().join("\n"),
        (R::Flow(f), _) => flow_text(f, output),
        (R::LostEvents(l), Output::Text) => format!(
            "{}  LOST {} event(s): {}{}",
            ns_time(l.time_unix_ns),
            l.count,
            match lost_source(l.source) {
                "ring" => "this reader fell behind the gateway's flow ring".to_string(),
                "worker_queue" => format!("worker {}'s flow-event queue was full", l.worker),
                other => other.to_string(),
            },
            ""
        ),
        (R::LostEvents(l), Output::Json) => serde_json::json!({
            "lost_events": { "source": lost_source(l.source), "count": l.count, "worker": l.worker, "time": ns_time(l.time_unix_ns) }
        })
        .to_string(),
        (R::Aggregate(a), Output::Text) => {
            let src = a.source.as_ref().map(|e| endpoint_text(e, false)).unwrap_or_default();
            let dst = a.destination.as_ref().map(|e| endpoint_text(e, true)).unwrap_or_default();
            format!(
                "{} .. {}  {src} -> {dst}  {}  {}  started {} completed {} rejected {}  to server {} pkts {} B, to client {} pkts {} B",
                ns_time(a.start_unix_ns),
                ns_time(a.end_unix_ns),
                a.protocol,
                verdict_name(a.verdict),
                a.flows_started,
                a.flows_completed,
                a.flows_rejected,
                a.packets_to_server,
                a.bytes_to_server,
                a.packets_to_client,
                a.bytes_to_client
            )
        }
        (R::Aggregate(a), Output::Json) => serde_json::json!({ "aggregate": a }).to_string(),
    }
}

fn flow_text(f: &pb::Flow, output: Output) -> String {
    match output {
        Output::Text => flow_line(f),
        Output::Json => serde_json::to_string(&flow_json(f)).unwrap_or_default(),
    }
}

/// Writes one flow as `output` prints it, with its newline.
pub fn write_flow(out: &mut impl std::io::Write, f: &pb::Flow, output: Output) -> std::io::Result<()> {
    match output {
        Output::Json => serde_json::to_writer(&mut *out, &flow_json(f)).map_err(std::io::Error::from)?,
        Output::Text => out.write_all(flow_line(f).as_bytes())?,
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-o json` names the `Flow` message's fields one by one: a field added
    /// to the .proto must be added there too, or it would silently vanish.
    #[test]
    fn json_lines_carry_every_field_of_the_flow_message() {
        let f = pb::Flow {
            time_unix_ns: 1_700_000_000_123_456_789,
            r#type: pb::FlowEventType::Rejected as i32,
            verdict: pb::Verdict::Rejected as i32,
            protocol: "tcp".into(),
            reason: "no_match".into(),
            ..Default::default()
        };
        let all = serde_json::to_value(&f).unwrap();
        let line = serde_json::to_value(flow_json(&f)).unwrap();
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
        let mut want = keys(&all);
        want.insert("time".into());
        assert_eq!(keys(&line["flow"]), want);
        assert_eq!(line["flow"]["verdict"], "rejected");
        assert_eq!(line["flow"]["type"], "rejected");
        assert_eq!(line["flow"]["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(line["flow"]["time_unix_ns"], 1_700_000_000_123_456_789u64);
        assert_eq!(line["flow"]["reason"], all["reason"]);
    }

    #[test]
    fn a_line_says_how_the_remote_identity_was_authenticated() {
        let f = |mode: &str, why: &str| pb::Flow {
            verdict: pb::Verdict::Allowed as i32,
            identity_mode: mode.into(),
            layer4_reason: why.into(),
            ..Default::default()
        };
        assert!(flow_line(&f("layer4", "stripped")).contains("  identity layer4 (stripped)"));
        assert!(flow_line(&f("option", "")).contains("  identity option"));
        assert!(!flow_line(&f("", "")).contains("identity"));
    }
}
