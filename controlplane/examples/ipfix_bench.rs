//! IPFIX export rate (benches/ipfix.sh): offers N flow events to an
//! [`Exporter`] aimed at a collector and reports how fast its thread encodes
//! and sends them. The queue is sized to take them all, so nothing is
//! dropped on the gateway's side; the collector's own count (nfdump) says
//! whether any datagram was lost on the way.
//!
//! usage: ipfix_bench COLLECTOR_URL N [RATE]
//!
//! RATE (records/s): offer at most this fast, in batches of 4096 as the
//! control thread does, instead of all at once: what a collector takes
//! without loss at a sustained rate (the default, 0, is as fast as the
//! exporter goes).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use controlplane::flowlog::FlowEvent;
use controlplane::ipfix::{synthetic_event, Exporter, IpfixConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let collector = args.get(1).cloned().unwrap_or_else(|| "udp://127.0.0.1:4739".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let rate: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let events: Vec<FlowEvent> = (0..n)
        .map(|i| {
            let client = (IpAddr::from([198, 18, (i >> 16) as u8, (i >> 8) as u8]), 1024 + (i % 50_000) as u16);
            synthetic_event("end", "allow", client, IpAddr::from([198, 19, 0, 2]), now + i as u64)
        })
        .collect();
    let cfg = IpfixConfig { collector, template_refresh_s: 60, observation_domain: 1, queue: n.max(64) };
    let x = Exporter::start(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let batches: Vec<Vec<FlowEvent>> = events.chunks(4096).map(<[FlowEvent]>::to_vec).collect();
    drop(events);
    let t0 = Instant::now();
    let mut offered = 0usize;
    for b in batches {
        if rate > 0.0 {
            // the batch leaves when the rate allows it
            let at = std::time::Duration::from_secs_f64(offered as f64 / rate);
            if let Some(wait) = at.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        offered += b.len();
        x.offer_owned(b);
    }
    let offered_s = t0.elapsed().as_secs_f64();
    let c = x.stop();
    let secs = t0.elapsed().as_secs_f64();
    let sent = c.records_sent.load(Ordering::Relaxed);
    println!(
        "ipfix: {n} events offered in {offered_s:.3} s; {sent} records in {} messages sent in {secs:.3} s = {:.0} records/s; {} dropped, {} send errors",
        c.messages_sent.load(Ordering::Relaxed),
        sent as f64 / secs,
        c.dropped.load(Ordering::Relaxed),
        c.send_errors.load(Ordering::Relaxed)
    );
}
