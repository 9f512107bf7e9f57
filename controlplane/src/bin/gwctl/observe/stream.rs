//! `observe`'s stream: flows printed as they come, or (`-o count`) only counted.

use std::time::{Duration, Instant};

use controlplane::api::client::{get_flows_framed, Clients};
use controlplane::api::pb;

use super::format::{response_line, write_flow};
use crate::output::Output;
use crate::{from_status, with_timeout, Res};

pub async fn flows(c: &mut Clients, req: pb::GetFlowsRequest, output: Output, t: Duration) -> Res {
    use pb::get_flows_response::Response as R;
    use std::io::Write;
    let mut stream = with_timeout(t, "observe", c.flows.get_flows(req)).await?;
    let stdout = std::io::stdout();
    loop {
        let m = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => return Err(from_status("observe", e)),
        };
        let line = match (m.response, output) {
            (None, _) => continue,
            (Some(R::Flows(b)), _) => {
                // A batch is one write (stdout alone flushes at every newline).
                let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
                if b.flows.iter().try_for_each(|f| write_flow(&mut out, f, output)).and_then(|_| out.flush()).is_err() {
                    return Ok(()); // the reader of our output went away (e.g. `| head`)
                }
                continue;
            }
            (Some(r), _) => response_line(&r, output),
        };
        let mut out = stdout.lock();
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            // The reader of our output went away (e.g. `| head`).
            return Ok(());
        }
    }
}

/// `observe -o count`: a line per second with the flows received in it and
/// the lost-event notices' counts, then the totals when the stream ends.
pub async fn count(c: &Clients, req: pb::GetFlowsRequest, t: Duration) -> Res {
    use std::io::Write;
    let mut stream = with_timeout(t, "observe", get_flows_framed(c.channel.clone(), req)).await?;
    let started = Instant::now();
    let (mut flows, mut aggregates, mut lost) = (0u64, 0u64, [0u64; 3]);
    let (mut last_flows, mut last_lost) = (0u64, [0u64; 3]);
    let mut next = started + Duration::from_secs(1);
    let line = |secs: f64, flows: u64, lost: &[u64; 3]| {
        format!("{secs:.1}s  flows {flows}  lost: worker_queue {}, ring {}, reader {}", lost[0], lost[1], lost[2])
    };
    let mut ended = Ok(());
    loop {
        let m = match tokio::time::timeout_at(next.into(), stream.message()).await {
            Err(_) => None, // a second passed
            Ok(Ok(Some(m))) => Some(m),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                // e.g. the gateway stopped: the totals so far, then the error
                ended = Err(from_status("observe", e));
                break;
            }
        };
        if let Some(m) = m {
            flows += m.flow_count();
            aggregates += u64::from(m.aggregate.is_some());
            if let Some(l) = &m.lost_events {
                let i = match pb::LostEventSource::try_from(l.source) {
                    Ok(pb::LostEventSource::WorkerQueue) => 0,
                    Ok(pb::LostEventSource::Ring) => 1,
                    _ => 2,
                };
                lost[i] += l.count;
            }
        }
        if Instant::now() >= next {
            let d: [u64; 3] = std::array::from_fn(|i| lost[i] - last_lost[i]);
            let text = line(started.elapsed().as_secs_f64(), flows - last_flows, &d);
            if writeln!(std::io::stdout(), "{text}").is_err() {
                return Ok(());
            }
            (last_flows, last_lost) = (flows, lost);
            next += Duration::from_secs(1);
        }
    }
    let el = started.elapsed().as_secs_f64();
    println!("total {}  ({:.0}/s)", line(el, flows, &lost), flows as f64 / el.max(1e-9));
    if aggregates > 0 {
        println!("aggregates {aggregates}");
    }
    ended
}
