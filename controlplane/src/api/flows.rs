//! The `Flows` service: `GetFlows` over the [`FlowHub`].
//!
//! Each call gets its own hub reader and a task that filters and sends into a
//! bounded channel toward the client. When the client reads slowly the
//! channel fills, the task waits, the ring laps its reader, and the client
//! gets a `LostEvent{RING, count}` in the stream before the records that
//! follow — the writer (the drain) never waits for it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dataplane::policy::lpm::{parse_cidr, Cidr};
use dataplane::policy::{Selector, TagSet};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::Access;
use super::convert::unix_ns;
use super::pb;
use crate::flowhub::{Filter, FlowHub, HubRecord, Item, LostSource, Query};

/// The record type the hub holds.
pub type FlowRecord = pb::Flow;
pub type FlowRing = FlowHub<FlowRecord>;

impl HubRecord for pb::Flow {
    fn time_ns(&self) -> u64 {
        self.time_unix_ns
    }
}

/// How many messages a stream may have in flight toward its client: with up
/// to [`SEND_BATCH`] records each, at most 1024 records (plus what HTTP/2's
/// window holds); past that the reader waits and the ring laps it.
const STREAM_BUFFER: usize = 4;
const READ_BATCH: usize = 256;
/// Records per GetFlows message at most.
const SEND_BATCH: usize = 256;

pub struct FlowsService {
    hub: Arc<FlowRing>,
    access: Access,
}

impl FlowsService {
    pub fn new(hub: Arc<FlowRing>, access: Access) -> FlowsService {
        FlowsService { hub, access }
    }
}

// ---------------------------------------------------------------------------
// Filters

fn port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port (0-65535) or a range \"lo-hi\"");
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?),
        None => {
            let p = s.trim().parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// `k=v` is short for `k == v`; anything else is a selector.
fn tag_selector(s: &str) -> Result<Selector, String> {
    let text = match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.ends_with(['!', '=', '<', '>']) && !v.starts_with('=') => {
            format!("{} == {:?}", k.trim(), v.trim())
        }
        _ => s.to_owned(),
    };
    Selector::parse(&text).map_err(|e| e.to_string())
}

fn ip_of(s: &str) -> Option<Cidr> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(Cidr::V4(u32::from(a), 32)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => Some(Cidr::V4(u32::from(v4), 32)),
            None => Some(Cidr::V6(u128::from(a), 128)),
        },
    }
}

fn protocol_of(s: &str) -> String {
    match s.trim().to_ascii_lowercase().as_str() {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" | "58" | "icmpv6" => "icmp".into(),
        other => other.to_owned(),
    }
}

#[derive(Default)]
struct EndFilter {
    ips: Vec<Cidr>,
    ports: Vec<(u16, u16)>,
    identities: Vec<u32>,
    tags: Vec<Selector>,
    names: Vec<String>,
}

impl EndFilter {
    fn matches(&self, e: Option<&pb::Endpoint>) -> bool {
        let empty = pb::Endpoint::default();
        let e = e.unwrap_or(&empty);
        if !self.ips.is_empty() {
            let Some(ip) = ip_of(&e.ip) else { return false };
            if !self.ips.iter().any(|c| c.overlaps(&ip)) {
                return false;
            }
        }
        if !self.ports.is_empty() && !self.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&(e.port as u16))) {
            return false;
        }
        if !self.identities.is_empty() && !self.identities.contains(&e.identity) {
            return false;
        }
        if !self.names.is_empty() && !self.names.iter().any(|n| *n == e.name) {
            return false;
        }
        if !self.tags.is_empty() {
            let Ok(tags) = TagSet::parse(&e.tags) else { return false };
            if !self.tags.iter().any(|s| s.matches(&tags)) {
                return false;
            }
        }
        true
    }
}

/// One `FlowFilter`: every field given must match.
#[derive(Default)]
pub struct CompiledFilter {
    source: EndFilter,
    destination: EndFilter,
    protocols: Vec<String>,
    verdicts: Vec<i32>,
    reasons: Vec<String>,
    rulesets: Vec<String>,
}

impl CompiledFilter {
    /// Compiles a filter; errors name the field and value.
    pub fn new(f: &pb::FlowFilter) -> Result<CompiledFilter, String> {
        fn each<T>(v: &[String], field: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
            v.iter().map(|s| f(s).map_err(|e| format!("{field}: {e}"))).collect()
        }
        let cidr = |s: &str| parse_cidr(s).map_err(|e| format!("{s:?}: {e}"));
        Ok(CompiledFilter {
            source: EndFilter {
                ips: each(&f.source_ip, "source_ip", cidr)?,
                ports: each(&f.source_port, "source_port", port_range)?,
                identities: f.source_identity.clone(),
                tags: each(&f.source_tags, "source_tags", tag_selector)?,
                names: f.source_name.clone(),
            },
            destination: EndFilter {
                ips: each(&f.destination_ip, "destination_ip", cidr)?,
                ports: each(&f.destination_port, "destination_port", port_range)?,
                identities: f.destination_identity.clone(),
                tags: each(&f.destination_tags, "destination_tags", tag_selector)?,
                names: f.destination_name.clone(),
            },
            protocols: f.protocol.iter().map(|p| protocol_of(p)).collect(),
            verdicts: f.verdict.clone(),
            reasons: f.reason.clone(),
            rulesets: f.ruleset.clone(),
        })
    }

    pub fn matches(&self, r: &pb::Flow) -> bool {
        (self.protocols.is_empty() || self.protocols.iter().any(|p| *p == r.protocol))
            && (self.verdicts.is_empty() || self.verdicts.contains(&r.verdict))
            && (self.reasons.is_empty() || self.reasons.iter().any(|x| *x == r.reason))
            && (self.rulesets.is_empty()
                || r.policy.as_ref().is_some_and(|p| self.rulesets.iter().any(|x| *x == p.ruleset)))
            && self.source.matches(r.source.as_ref())
            && self.destination.matches(r.destination.as_ref())
    }
}

/// Allow-list and deny-list: sent when any allow filter matches (or none is
/// given) and no deny filter does.
#[derive(Default)]
pub struct FlowFilterSet {
    allow: Vec<CompiledFilter>,
    deny: Vec<CompiledFilter>,
}

impl FlowFilterSet {
    pub fn new(allow: &[pb::FlowFilter], deny: &[pb::FlowFilter]) -> Result<FlowFilterSet, String> {
        let c = |v: &[pb::FlowFilter], which: &str| -> Result<Vec<CompiledFilter>, String> {
            v.iter().enumerate().map(|(i, f)| CompiledFilter::new(f).map_err(|e| format!("{which}[{i}].{e}"))).collect()
        };
        Ok(FlowFilterSet { allow: c(allow, "allow")?, deny: c(deny, "deny")? })
    }
}

impl Filter<pb::Flow> for FlowFilterSet {
    fn matches(&self, r: &pb::Flow) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(r))) && !self.deny.iter().any(|f| f.matches(r))
    }
}

// ---------------------------------------------------------------------------
// Aggregation

#[derive(Hash, PartialEq, Eq)]
struct AggKey {
    src_identity: u32,
    src_name: String,
    dst_identity: u32,
    dst_name: String,
    dst_port: u32,
    protocol: String,
    verdict: i32,
}

fn strip(e: Option<&pb::Endpoint>, keep_port: bool) -> pb::Endpoint {
    let e = e.cloned().unwrap_or_default();
    pb::Endpoint { ip: String::new(), port: if keep_port { e.port } else { 0 }, ..e }
}

#[derive(Default)]
struct Aggregator {
    groups: HashMap<AggKey, pb::FlowAggregate>,
}

impl Aggregator {
    fn add(&mut self, r: &pb::Flow) {
        let src = r.source.as_ref();
        let dst = r.destination.as_ref();
        let key = AggKey {
            src_identity: src.map_or(0, |e| e.identity),
            src_name: src.map(|e| e.name.clone()).unwrap_or_default(),
            dst_identity: dst.map_or(0, |e| e.identity),
            dst_name: dst.map(|e| e.name.clone()).unwrap_or_default(),
            dst_port: dst.map_or(0, |e| e.port),
            protocol: r.protocol.clone(),
            verdict: r.verdict,
        };
        let a = self.groups.entry(key).or_insert_with(|| pb::FlowAggregate {
            source: Some(strip(src, false)),
            destination: Some(strip(dst, true)),
            protocol: r.protocol.clone(),
            verdict: r.verdict,
            ..Default::default()
        });
        match pb::FlowEventType::try_from(r.r#type) {
            Ok(pb::FlowEventType::Started) => a.flows_started += 1,
            Ok(pb::FlowEventType::Ended) => a.flows_completed += 1,
            Ok(pb::FlowEventType::Rejected) => a.flows_rejected += 1,
            _ => {}
        }
        a.packets_to_server += r.packets_to_server;
        a.bytes_to_server += r.bytes_to_server;
        a.packets_to_client += r.packets_to_client;
        a.bytes_to_client += r.bytes_to_client;
    }

    fn flush(&mut self, start: u64, end: u64) -> Vec<pb::FlowAggregate> {
        let mut out: Vec<_> = self
            .groups
            .drain()
            .map(|(_, mut a)| {
                a.start_unix_ns = start;
                a.end_unix_ns = end;
                a
            })
            .collect();
        out.sort_by(|a, b| {
            let k = |x: &pb::FlowAggregate| {
                (x.source.as_ref().map(|e| e.identity), x.destination.as_ref().map(|e| (e.identity, e.port)))
            };
            k(a).cmp(&k(b))
        });
        out
    }
}

// ---------------------------------------------------------------------------
// The stream

fn lost(source: pb::LostEventSource, count: u64, worker: u32, time: u64) -> pb::GetFlowsResponse {
    pb::GetFlowsResponse {
        response: Some(pb::get_flows_response::Response::LostEvents(pb::LostEvent {
            source: source as i32,
            count,
            worker,
            time_unix_ns: time,
        })),
    }
}

fn batch(flows: Vec<pb::Flow>) -> pb::GetFlowsResponse {
    pb::GetFlowsResponse { response: Some(pb::get_flows_response::Response::Flows(pb::FlowBatch { flows })) }
}

type Tx = mpsc::Sender<Result<pb::GetFlowsResponse, Status>>;

/// Sends the records gathered so far as one message (nothing if none).
async fn flush(tx: &Tx, pending: &mut Vec<pb::Flow>) -> Result<(), ()> {
    if pending.is_empty() {
        return Ok(());
    }
    let out = std::mem::replace(pending, Vec::with_capacity(SEND_BATCH));
    tx.send(Ok(batch(out))).await.map_err(|_| ())
}

/// Streams what `req` asks for into `tx` until the reader ends, the client
/// goes away, or `until` passes.
pub async fn run_stream(hub: Arc<FlowRing>, req: pb::GetFlowsRequest, filter: FlowFilterSet, tx: Tx) {
    let query =
        Query { number: req.number, follow: req.follow, since_ns: req.since_unix_ns, until_ns: req.until_unix_ns };
    let mut reader = hub.reader(&query, &filter);
    let mut remaining = (req.number > 0).then_some(req.number);
    let interval = (req.aggregate_interval_ms > 0).then(|| Duration::from_millis(req.aggregate_interval_ms.into()));
    let mut agg = Aggregator::default();
    let mut agg_start = unix_ns(SystemTime::now());
    let mut next_flush = interval.map(|i| tokio::time::Instant::now() + i);
    // Records go out several to a message; a notice first sends what came before it.
    let mut pending: Vec<pb::Flow> = Vec::with_capacity(SEND_BATCH);
    loop {
        let batch = reader.read(READ_BATCH);
        if batch.lapped > 0 {
            let now = unix_ns(SystemTime::now());
            if tx.send(Ok(lost(pb::LostEventSource::Ring, batch.lapped, 0, now))).await.is_err() {
                return;
            }
        }
        for item in &batch.items {
            match &**item {
                Item::Lost { source, count, worker, time_ns } => {
                    let src = match source {
                        LostSource::WorkerQueue => pb::LostEventSource::WorkerQueue,
                        LostSource::Ring => pb::LostEventSource::Ring,
                    };
                    if query.since_ns.map_or(true, |s| *time_ns >= s)
                        && (flush(&tx, &mut pending).await.is_err()
                            || tx.send(Ok(lost(src, *count, *worker, *time_ns))).await.is_err())
                    {
                        return;
                    }
                }
                Item::Record(r) => {
                    if !query.in_time(r.time_unix_ns) || !filter.matches(r) {
                        continue;
                    }
                    if interval.is_some() {
                        agg.add(r);
                        continue;
                    }
                    pending.push(r.clone());
                    if pending.len() == SEND_BATCH && flush(&tx, &mut pending).await.is_err() {
                        return;
                    }
                    // In follow mode the first N are the history; after it, everything.
                    if let Some(n) = &mut remaining {
                        *n = n.saturating_sub(1);
                        if *n == 0 && !query.follow {
                            let _ = flush(&tx, &mut pending).await;
                            return;
                        }
                    }
                }
            }
        }
        // What this read gathered goes out before the next read (or wait).
        if flush(&tx, &mut pending).await.is_err() {
            return;
        }
        if batch.done {
            if interval.is_some() {
                let now = unix_ns(SystemTime::now());
                for a in agg.flush(agg_start, now) {
                    let m = pb::GetFlowsResponse { response: Some(pb::get_flows_response::Response::Aggregate(a)) };
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
            }
            return;
        }
        if !batch.items.is_empty() || batch.lapped > 0 {
            continue;
        }
        // Caught up: wait for more, a flush, the end of `until`, or the client leaving.
        let until_left = query.until_ns.map(|u| {
            let now = unix_ns(SystemTime::now());
            Duration::from_nanos(u.saturating_sub(now))
        });
        if until_left == Some(Duration::ZERO) {
            return;
        }
        let mut deadline = until_left.map(|d| tokio::time::Instant::now() + d);
        if let Some(f) = next_flush {
            deadline = Some(deadline.map_or(f, |d| d.min(f)));
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = reader.wait() => {}
            _ = sleep => {}
            _ = tx.closed() => return,
        }
        if let (Some(f), Some(i)) = (next_flush, interval) {
            if tokio::time::Instant::now() >= f {
                let now = unix_ns(SystemTime::now());
                for a in agg.flush(agg_start, now) {
                    let m = pb::GetFlowsResponse { response: Some(pb::get_flows_response::Response::Aggregate(a)) };
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
                agg_start = now;
                next_flush = Some(f + i);
            }
        }
    }
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<pb::GetFlowsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::flows_server::Flows for FlowsService {
    type GetFlowsStream = FlowStream;

    async fn get_flows(&self, req: Request<pb::GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        self.access.role(&req)?;
        let req = req.into_inner();
        let filter = FlowFilterSet::new(&req.allow, &req.deny).map_err(Status::invalid_argument)?;
        if req.aggregate_interval_ms > 0 && !req.follow && req.number > 0 {
            return Err(Status::invalid_argument(
                "aggregate_interval_ms: aggregation takes follow or all records, not `number`",
            ));
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(run_stream(self.hub.clone(), req, filter, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(src: &str, tags: &[&str], dport: u32, verdict: pb::Verdict, reason: &str) -> pb::Flow {
        pb::Flow {
            time_unix_ns: 1,
            source: Some(pb::Endpoint {
                ip: src.into(),
                port: 40000,
                identity: 100,
                tags: tags.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            destination: Some(pb::Endpoint { ip: "10.0.1.5".into(), port: dport, identity: 200, ..Default::default() }),
            protocol: "tcp".into(),
            verdict: verdict as i32,
            reason: reason.into(),
            policy: Some(pb::PolicyRef { ruleset: "db".into(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn filters_compose() {
        let a = rec("10.0.0.7", &["role=db"], 5432, pb::Verdict::Rejected, "bad_mac");
        let b = rec("192.168.1.1", &["role=web"], 80, pb::Verdict::Allowed, "policy_allow");
        let f = |allow: Vec<pb::FlowFilter>, deny: Vec<pb::FlowFilter>| FlowFilterSet::new(&allow, &deny).unwrap();
        let all = f(vec![], vec![]);
        assert!(all.matches(&a) && all.matches(&b));
        let by_tag = f(vec![pb::FlowFilter { source_tags: vec!["role=db".into()], ..Default::default() }], vec![]);
        assert!(by_tag.matches(&a) && !by_tag.matches(&b));
        let by_sel =
            f(vec![pb::FlowFilter { source_tags: vec!["role in {web, x}".into()], ..Default::default() }], vec![]);
        assert!(!by_sel.matches(&a) && by_sel.matches(&b));
        let cidr_and_verdict = f(
            vec![pb::FlowFilter {
                source_ip: vec!["10.0.0.0/8".into()],
                verdict: vec![pb::Verdict::Rejected as i32],
                reason: vec!["bad_mac".into()],
                ..Default::default()
            }],
            vec![],
        );
        assert!(cidr_and_verdict.matches(&a) && !cidr_and_verdict.matches(&b));
        // Two allow filters: either.
        let either = f(
            vec![
                pb::FlowFilter { destination_port: vec!["5000-6000".into()], ..Default::default() },
                pb::FlowFilter { destination_port: vec!["80".into()], ..Default::default() },
            ],
            vec![],
        );
        assert!(either.matches(&a) && either.matches(&b));
        // Deny wins.
        let not_web = f(vec![], vec![pb::FlowFilter { source_tags: vec!["role=web".into()], ..Default::default() }]);
        assert!(not_web.matches(&a) && !not_web.matches(&b));
        let ruleset = f(vec![pb::FlowFilter { ruleset: vec!["other".into()], ..Default::default() }], vec![]);
        assert!(!ruleset.matches(&a));
        let proto = f(vec![pb::FlowFilter { protocol: vec!["6".into()], ..Default::default() }], vec![]);
        assert!(proto.matches(&a));
        let ident = f(vec![pb::FlowFilter { destination_identity: vec![201], ..Default::default() }], vec![]);
        assert!(!ident.matches(&a));
    }

    #[test]
    fn bad_filters_name_the_field() {
        let e =
            FlowFilterSet::new(&[], &[pb::FlowFilter { source_ip: vec!["10.0.0.0/33".into()], ..Default::default() }])
                .err()
                .unwrap();
        assert!(e.starts_with("deny[0].source_ip: \"10.0.0.0/33\""), "{e}");
        let e =
            FlowFilterSet::new(&[pb::FlowFilter { destination_port: vec!["9-1".into()], ..Default::default() }], &[])
                .err()
                .unwrap();
        assert!(e.starts_with("allow[0].destination_port"), "{e}");
        let e =
            FlowFilterSet::new(&[pb::FlowFilter { source_tags: vec!["role ==".into()], ..Default::default() }], &[])
                .err()
                .unwrap();
        assert!(e.contains("source_tags"), "{e}");
    }

    #[test]
    fn aggregation_groups_by_identities_port_protocol_verdict() {
        let mut agg = Aggregator::default();
        let mut a = rec("10.0.0.7", &[], 5432, pb::Verdict::Allowed, "policy_allow");
        a.r#type = pb::FlowEventType::Started as i32;
        agg.add(&a);
        let mut b = rec("10.0.0.8", &[], 5432, pb::Verdict::Allowed, "policy_allow");
        b.r#type = pb::FlowEventType::Ended as i32;
        b.packets_to_server = 10;
        b.bytes_to_client = 1000;
        agg.add(&b);
        let mut c = rec("10.0.0.8", &[], 5432, pb::Verdict::Rejected, "no_match");
        c.r#type = pb::FlowEventType::Rejected as i32;
        agg.add(&c);
        let out = agg.flush(1, 2);
        assert_eq!(out.len(), 2);
        let allowed = out.iter().find(|x| x.verdict == pb::Verdict::Allowed as i32).unwrap();
        assert_eq!(
            (allowed.flows_started, allowed.flows_completed, allowed.packets_to_server, allowed.bytes_to_client),
            (1, 1, 10, 1000)
        );
        assert_eq!(allowed.destination.as_ref().unwrap().port, 5432);
        assert!(allowed.source.as_ref().unwrap().ip.is_empty());
        assert!(agg.flush(2, 3).is_empty());
    }
}
