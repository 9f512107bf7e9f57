//! `gwctl explain`: what the policy in force would decide for a connection
//! (the gateway's `Explain`, which runs the workers' decision code), given by
//! its parts or as a flow record from `observe -o json` or the flow log.

use std::io::Read;
use std::time::Duration;

use controlplane::api::client::Clients;
use controlplane::api::pb;
use controlplane::flownames;
use pb::explain_request::Remote;

use crate::output::{print_json_pretty, Output};
use crate::{usage, with_timeout, Fail, Res};

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The local PU: its name or one of its addresses.
    #[arg(long, value_name = "NAME|IP")]
    pu: Option<String>,
    /// The remote end: a directory identity by number…
    #[arg(long, value_name = "N", conflicts_with_all = ["tags", "address", "flow"])]
    identity: Option<u32>,
    /// …or by tags (k=v,k2=v2: every identity that has them all is explained)…
    #[arg(long, value_name = "TAGS", conflicts_with_all = ["address", "flow"])]
    tags: Option<String>,
    /// …or an address (judged by the external-network rules).
    #[arg(long, value_name = "IP", conflicts_with = "flow")]
    address: Option<String>,
    /// tcp, udp, icmp or a number 1-255.
    #[arg(long, default_value = "tcp", value_name = "PROTO")]
    protocol: String,
    /// The server's port.
    #[arg(long, value_name = "PORT")]
    port: Option<u32>,
    /// incoming (the PU is the server) or outgoing (it is the client).
    #[arg(long, value_name = "DIR")]
    direction: Option<String>,
    /// A flow record as `observe -o json` prints it or the flow log holds it
    /// (one JSON line; `-` reads it from stdin): explains that connection.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["pu", "port", "direction"])]
    flow: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// The request, checked before connecting; the flow it came from, if any.
#[derive(Debug)]
pub struct Prepared {
    req: pb::ExplainRequest,
    recorded: Option<serde_json::Value>,
    output: Output,
}

/// A record's `flow` object (a line of `observe -o json` or the flow log, or the object itself).
fn flow_of(text: &str) -> Result<serde_json::Value, Fail> {
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| usage(format!("--flow: not a JSON flow record: {e}")))?;
    let f = if v.get("flow").is_some() { v["flow"].clone() } else { v };
    if !f.is_object() || f.get("direction").is_none() {
        return Err(usage("--flow: not a flow record (no \"direction\"): give a line of `observe -o json`"));
    }
    Ok(f)
}

/// The request that explains the connection of flow record `f`.
fn request_of_flow(f: &serde_json::Value) -> Result<pb::ExplainRequest, Fail> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let direction = s(&f["direction"]);
    // The PU is the client of an outgoing connection, the server of an incoming one.
    let (local, remote) = match direction.as_str() {
        "outgoing" => (&f["source"], &f["destination"]),
        "incoming" => (&f["destination"], &f["source"]),
        other => return Err(usage(format!("--flow: direction {other:?} is neither incoming nor outgoing"))),
    };
    let pu = if s(&local["name"]).is_empty() { s(&local["ip"]) } else { s(&local["name"]) };
    let remote = match (remote["kind"].as_str(), remote["identity"].as_u64()) {
        (Some("identity"), Some(id)) => Remote::RemoteIdentity(id as u32),
        _ => Remote::RemoteAddress(s(&remote["ip"])),
    };
    Ok(pb::ExplainRequest {
        pu,
        remote: Some(remote),
        protocol: s(&f["protocol"]),
        port: f["destination"]["port"].as_u64().unwrap_or(0) as u32,
        direction,
    })
}

pub fn prepare(a: ExplainArgs) -> Result<Prepared, Fail> {
    let (req, recorded) = match &a.flow {
        Some(text) => {
            let text = if text == "-" {
                let mut t = String::new();
                std::io::stdin().read_to_string(&mut t).map_err(|e| usage(format!("--flow -: {e}")))?;
                t.lines().find(|l| !l.trim().is_empty()).unwrap_or("").to_owned()
            } else {
                text.clone()
            };
            let f = flow_of(&text)?;
            (request_of_flow(&f)?, Some(f))
        }
        None => {
            let remote = match (a.identity, &a.tags, &a.address) {
                (Some(n), _, _) => Remote::RemoteIdentity(n),
                (_, Some(t), _) => Remote::RemoteTags(t.clone()),
                (_, _, Some(ip)) => Remote::RemoteAddress(ip.clone()),
                _ => return Err(usage("give the remote end: --identity N, --tags k=v or --address IP (or --flow)")),
            };
            let req = pb::ExplainRequest {
                pu: a.pu.clone().ok_or_else(|| usage("give the local PU: --pu NAME|IP (or --flow)"))?,
                remote: Some(remote),
                protocol: a.protocol.clone(),
                port: a.port.unwrap_or(0),
                direction: a.direction.clone().ok_or_else(|| usage("give --direction incoming|outgoing"))?,
            };
            (req, None)
        }
    };
    flownames::check_direction(&req.direction).map_err(|e| usage(format!("--direction: {e}")))?;
    flownames::check_protocol(&req.protocol).map_err(|e| usage(format!("--protocol: {e}")))?;
    if let Some(Remote::RemoteAddress(ip)) = &req.remote {
        ip.parse::<std::net::IpAddr>().map_err(|_| usage(format!("--address: {ip:?} is not an IP address")))?;
    }
    Ok(Prepared { req, recorded, output: a.output })
}

fn rule_text(p: &pb::PolicyRef) -> String {
    format!("{}/{}/{} {}", p.ruleset, p.direction, p.rule, p.action)
}

fn end_text(e: &pb::Endpoint) -> String {
    let mut who = Vec::new();
    if !e.name.is_empty() {
        who.push(e.name.clone());
    }
    if !e.ip.is_empty() {
        who.push(e.ip.clone());
    }
    let mut detail = Vec::new();
    if e.identity != 0 {
        detail.push(format!("id {}", e.identity));
    }
    if !e.tags.is_empty() {
        detail.push(e.tags.join(","));
    }
    let kind = flownames::endpoint_kind_name(e.kind).unwrap_or("");
    if !detail.is_empty() {
        who.push(format!("({})", detail.join(" ")));
    }
    format!("{} [{kind}]", who.join(" "))
}

/// The answer as printed: one block, or one per identity the tags matched.
pub fn text(r: &pb::ExplainResponse) -> String {
    if r.per_identity.is_empty() {
        return one_text(r);
    }
    let mut out = format!("{} identities have the tags", r.identities_matched);
    if r.identities_matched as usize > r.per_identity.len() {
        out += &format!(" (the first {} explained)", r.per_identity.len());
    }
    out += ":\n";
    for x in &r.per_identity {
        let id = x.remote.as_ref().map_or(0, |e| e.identity);
        out += &format!("\nidentity {id}\n{}", one_text(x));
    }
    out
}

fn one_text(r: &pb::ExplainResponse) -> String {
    let mut out = format!("verdict   {} ({})\n", flownames::verdict_name(r.verdict).unwrap_or("unknown"), r.reason);
    out += &format!("rule      {}\n", r.policy.as_ref().map_or("-".into(), rule_text));
    if let Some(o) = &r.observed {
        out += &format!("observed  {}\n", rule_text(o));
    }
    let width = r.matching.iter().map(|m| m.ruleset.len() + m.direction.len() + m.rule.len() + 2).max().unwrap_or(0);
    for (i, m) in r.matching.iter().enumerate() {
        let name = format!("{}/{}/{}", m.ruleset, m.direction, m.rule);
        let mut line = format!("{}{name:<width$}  {:<6}", if i == 0 { "matching  " } else { "          " }, m.action);
        if m.deciding {
            line += "  deciding";
        }
        if m.observe {
            line += "  observe";
        }
        if !m.external_network.is_empty() {
            line += &format!("  via {}", m.external_network);
        }
        out += line.trim_end();
        out.push('\n');
    }
    if r.matching.is_empty() {
        out += "matching  none\n";
    }
    if let Some(l) = &r.local {
        out += &format!("local     {}\n", end_text(l));
    }
    if let Some(x) = &r.remote {
        out += &format!("remote    {}\n", end_text(x));
    }
    out += &format!("policy    revision {:?}, generation {}\n", r.policy_revision, r.policy_generation);
    out
}

pub async fn run(c: &mut Clients, p: Prepared, t: Duration) -> Res {
    let r = with_timeout(t, "explain", c.policy.explain(p.req.clone())).await?;
    match p.output {
        Output::Json => print_json_pretty(&serde_json::json!({ "request": p.req, "explain": r })),
        Output::Text => {
            print!("{}", text(&r));
            if let Some(f) = &p.recorded {
                let rule = f["policy"]["rule"].as_str().unwrap_or("-");
                println!(
                    "recorded  {} ({}) rule {rule}, policy generation {}",
                    f["verdict"].as_str().unwrap_or("?"),
                    f["reason"].as_str().unwrap_or("?"),
                    f["policy_generation"]
                );
            }
        }
    }
    let answers = if r.per_identity.is_empty() { std::slice::from_ref(&r) } else { &r.per_identity[..] };
    if answers.iter().any(|x| x.verdict == 0) {
        return Err(Fail(1, "explain: the gateway gave no verdict".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_record_becomes_the_request_for_its_connection() {
        let line = r#"{"gateway":"gw-b","flow":{"direction":"incoming","protocol":"tcp",
            "source":{"ip":"198.18.0.1","port":40000,"identity":1001,"kind":"identity"},
            "destination":{"ip":"198.18.0.2","port":8080,"name":"server","kind":"pu"}}}"#;
        let r = request_of_flow(&flow_of(line).unwrap()).unwrap();
        assert_eq!((r.pu.as_str(), r.port, r.direction.as_str()), ("server", 8080, "incoming"));
        assert_eq!(r.remote, Some(Remote::RemoteIdentity(1001)));
        let out = r#"{"direction":"outgoing","protocol":"udp","source":{"ip":"10.1.0.10","kind":"pu"},
            "destination":{"ip":"192.168.1.5","port":53,"kind":"external"}}"#;
        let r = request_of_flow(&flow_of(out).unwrap()).unwrap();
        assert_eq!((r.pu.as_str(), r.port), ("10.1.0.10", 53));
        assert_eq!(r.remote, Some(Remote::RemoteAddress("192.168.1.5".into())));
        assert!(flow_of("{\"lost_events\": {}}").is_err());
        assert!(flow_of("not json").is_err());
    }
}
