//! `gwctl observe --dns`: the DNS events (`GetDns`), one line or JSON object each.

use std::time::Duration;

use controlplane::api::client::Clients;
use controlplane::api::pb;

use crate::output::Output;
use crate::{from_status, with_timeout, Fail, Res};

/// One line: time, PU, query and type, rcode, the CNAME chain and answers, latency.
fn line(e: &pb::DnsEvent) -> String {
    let t = e.time_unix_ns as f64 / 1e9;
    let chain: Vec<String> = e.cnames.iter().map(|c| format!("CNAME {}", c.name)).collect();
    let answers: Vec<String> = e.answers.iter().map(|a| format!("{} ({}s)", a.ip, a.ttl)).collect();
    let latency = e.latency_ms.map_or("-".to_owned(), |l| format!("{l:.2}ms"));
    let mut s = format!(
        "{t:.3} {} {} {} {} {} -> {} {} [{}]",
        if e.pu.is_empty() { "?" } else { &e.pu },
        e.client_ip,
        e.query,
        e.qtype,
        e.rcode,
        if chain.is_empty() { String::new() } else { chain.join(" -> ") + " ->" },
        if answers.is_empty() { "no address".to_owned() } else { answers.join(", ") },
        latency
    );
    if e.learned > 0 {
        s += &format!(" learned {}", e.learned);
    }
    if e.answers_off_chain > 0 {
        s += &format!(" off-chain {}", e.answers_off_chain);
    }
    s
}

pub async fn run(c: &mut Clients, req: pb::GetDnsRequest, out: Output, t: Duration) -> Res {
    let mut client = pb::dns_client::DnsClient::new(c.channel.clone());
    let follow = req.follow;
    let mut stream = with_timeout(t, "observe --dns", client.get_dns(req)).await?;
    loop {
        let next = if follow { Ok(stream.message().await) } else { tokio::time::timeout(t, stream.message()).await };
        let msg = match next {
            Err(_) => return Err(Fail(3, "observe --dns: the stream stalled".into())),
            Ok(Err(s)) => return Err(from_status("observe --dns", s)),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(m))) => m,
        };
        match msg.response {
            Some(pb::get_dns_response::Response::Event(e)) => match out {
                Output::Json => println!("{}", serde_json::to_string(&e).unwrap_or_default()),
                _ => println!("{}", line(&e)),
            },
            Some(pb::get_dns_response::Response::LostEvents(n)) => {
                eprintln!("gwctl: {n} DNS events lost (this reader fell behind)")
            }
            None => {}
        }
    }
}
