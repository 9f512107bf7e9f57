//! How `observe` prints a flow: one line in the manner of `hubble observe`,
//! or one JSON object.

use controlplane::api::pb;
use controlplane::flowjson::flow_json;
use controlplane::flownames;
use pb::get_flows_response::Response as R;

use crate::output::{ns_time, Output};

/// A verdict as every shape of a flow names it (`allowed`, …).
fn verdict_name(v: i32) -> &'static str {
    flownames::verdict_name(v).unwrap_or("unknown")
}

fn event_name(v: i32) -> &'static str {
    flownames::event_type_name(v).unwrap_or("")
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

/// A flow's protocol as the one list names it (`?` when unset).
fn protocol_text(p: i32) -> std::borrow::Cow<'static, str> {
    flownames::protocol_name_of(p).unwrap_or(std::borrow::Cow::Borrowed("?"))
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
        protocol_text(f.protocol),
        verdict_name(f.verdict),
        if f.reason.is_empty() { "-" } else { &f.reason }
    );
    if let Some(p) = &f.policy {
        line.push_str(&format!("  rule {}", policy_text(p)));
    }
    if !f.remote_dns_name.is_empty() {
        line.push_str(&format!("  name {}", f.remote_dns_name));
    }
    if f.identity_mode == "layer4" {
        line.push_str(&format!("  identity layer4 ({})", f.layer4_reason));
    } else if !f.identity_mode.is_empty() {
        line.push_str(&format!("  identity {}", f.identity_mode));
    }
    if let Some(o) = &f.observed {
        line.push_str(&format!("  observed {} {}", o.action, policy_text(o)));
    }
    if !f.note.is_empty() {
        line.push_str(&format!("  note {}", f.note));
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
                protocol_text(a.protocol),
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
        Output::Json => serde_json::to_string(&flow_json(f, None)).unwrap_or_default(),
    }
}

/// Writes one flow as `output` prints it, with its newline.
pub fn write_flow(out: &mut impl std::io::Write, f: &pb::Flow, output: Output) -> std::io::Result<()> {
    match output {
        Output::Json => serde_json::to_writer(&mut *out, &flow_json(f, None)).map_err(std::io::Error::from)?,
        Output::Text => out.write_all(flow_line(f).as_bytes())?,
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text line and the JSON line name the verdict and the event the same way.
    #[test]
    fn text_and_json_use_the_same_names() {
        for (v, name) in flownames::VERDICTS {
            let f = pb::Flow {
                r#type: pb::FlowEventType::Started as i32,
                verdict: v as i32,
                protocol: pb::Protocol::Tcp as i32,
                reason: "policy_allow".into(),
                ..Default::default()
            };
            let text = flow_text(&f, Output::Text);
            let json: serde_json::Value = serde_json::from_str(&flow_text(&f, Output::Json)).unwrap();
            assert!(text.contains(&format!("  {name}  ")), "{text}");
            assert_eq!(json["flow"]["verdict"], name);
            assert!(text.contains(&format!("[{}]", json["flow"]["type"].as_str().unwrap())), "{text}");
        }
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
