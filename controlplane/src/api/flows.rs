//! The `Flows` service: `GetFlows` over the [`FlowHub`].
//!
//! Each call gets its own hub reader and a task that filters and sends into a
//! bounded channel toward the client. When the client reads slowly the
//! channel fills, the task waits, the ring laps its reader, and the client
//! gets a `LostEvent{RING, count}` in the stream before the records that
//! follow — the writer (the drain) never waits for it.
//!
//! Records sit in the ring already encoded ([`RingFlow`]); a batch message is
//! those bytes framed one after the other, so serving N readers costs no
//! encoding per reader. The service is therefore served by [`FlowsServer`]
//! below rather than the generated one (which would encode every record
//! again with prost per reader); on the wire it is the same `GetFlows`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dataplane::policy::lpm::{parse_cidr, Cidr};
use dataplane::policy::Selector;
use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::Access;
use super::convert::unix_ns;
use super::pb;
use super::wire::{End, EndInfo, RingFlow};
use crate::flowhub::{Filter, FlowHub, Item, LostSource, Query, Reader};
use crate::flownames;

/// The record type the hub holds.
pub type FlowRecord = RingFlow;
pub type FlowRing = FlowHub<FlowRecord>;

/// How many messages a stream may have in flight toward its client: with up
/// to [`SEND_BATCH`] records each, at most 1024 records (plus what HTTP/2's
/// window holds); past that the reader waits and the ring laps it.
const STREAM_BUFFER: usize = 4;
const READ_BATCH: usize = 256;
/// Records per GetFlows message at most.
const SEND_BATCH: usize = 256;
/// Bytes of records per GetFlows message at most (a record larger than this
/// goes alone): far under a client's default 4 MiB decoding limit even when
/// the policy gives ends long names and many tags.
const SEND_BATCH_BYTES: usize = 1 << 20;

pub struct FlowsService {
    hub: Arc<FlowRing>,
    access: Access,
    /// Becomes true when the server stops: followers' streams end then.
    stopping: watch::Receiver<bool>,
}

impl FlowsService {
    pub fn new(hub: Arc<FlowRing>, access: Access, stopping: watch::Receiver<bool>) -> FlowsService {
        FlowsService { hub, access, stopping }
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

fn cidr_of(ip: IpAddr) -> Cidr {
    match ip {
        IpAddr::V4(a) => Cidr::V4(u32::from(a), 32),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => Cidr::V4(u32::from(v4), 32),
            None => Cidr::V6(u128::from(a), 128),
        },
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
    fn matches(&self, e: &End) -> bool {
        if !self.ips.is_empty() {
            let Some(ip) = e.ip.map(cidr_of) else { return false };
            if !self.ips.iter().any(|c| c.overlaps(&ip)) {
                return false;
            }
        }
        if !self.ports.is_empty() && !self.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&(e.port as u16))) {
            return false;
        }
        if !self.identities.is_empty() && !self.identities.contains(&e.info.identity) {
            return false;
        }
        if !self.names.is_empty() && !self.names.iter().any(|n| **n == *e.info.name) {
            return false;
        }
        if !self.tags.is_empty() {
            let Some(tags) = e.info.tagset() else { return false };
            if !self.tags.iter().any(|s| s.matches(tags)) {
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
    protocols: Vec<u8>,
    verdicts: Vec<i32>,
    reasons: Vec<String>,
    directions: Vec<&'static str>,
    rulesets: Vec<String>,
}

impl CompiledFilter {
    /// Compiles a filter; errors name the field and value.
    pub fn new(f: &pb::FlowFilter) -> Result<CompiledFilter, String> {
        fn each<T>(v: &[String], field: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
            v.iter().map(|s| f(s).map_err(|e| format!("{field}: {e}"))).collect()
        }
        fn values<T>(v: &[i32], field: &str, f: impl Fn(i32) -> Result<T, String>) -> Result<Vec<T>, String> {
            v.iter().map(|x| f(*x).map_err(|e| format!("{field}: {e}"))).collect()
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
            protocols: values(&f.protocol, "protocol", flownames::check_protocol_value)?,
            verdicts: f
                .verdict
                .iter()
                .map(|&v| match flownames::verdict_name(v) {
                    Some(_) => Ok(v),
                    None => Err(format!(
                        "verdict: unknown verdict {v}; flows carry: {}",
                        flownames::VERDICTS.map(|(v, n)| format!("{} ({n})", v as i32)).join(", ")
                    )),
                })
                .collect::<Result<_, _>>()?,
            reasons: each(&f.reason, "reason", |r| flownames::check_reason(r).map(str::to_owned))?,
            directions: values(&f.direction, "direction", flownames::check_direction_value)?,
            rulesets: f.ruleset.clone(),
        })
    }

    /// On the record's resolved fields (no parsing, no allocation).
    pub fn matches(&self, r: &RingFlow) -> bool {
        (self.protocols.is_empty() || self.protocols.contains(&r.protocol))
            && (self.verdicts.is_empty() || self.verdicts.contains(&r.verdict))
            && (self.reasons.is_empty() || self.reasons.iter().any(|x| *x == r.reason))
            && (self.directions.is_empty() || self.directions.iter().any(|x| *x == r.direction))
            && (self.rulesets.is_empty()
                || r.ruleset.as_ref().is_some_and(|p| self.rulesets.iter().any(|x| **x == **p)))
            && self.source.matches(&r.source)
            && self.destination.matches(&r.destination)
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

impl Filter<RingFlow> for FlowFilterSet {
    fn matches(&self, r: &RingFlow) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(r))) && !self.deny.iter().any(|f| f.matches(r))
    }
}

// ---------------------------------------------------------------------------
// Aggregation

/// A group: source and destination by identity and name (records of
/// different generations resolve to different [`EndInfo`]s with equal names),
/// the destination port, protocol and verdict.
struct AggKey {
    src: Arc<EndInfo>,
    dst: Arc<EndInfo>,
    dst_port: u32,
    protocol: u8,
    verdict: i32,
}

impl AggKey {
    fn parts(&self) -> (u32, &str, u32, &str, u32, u8, i32) {
        (
            self.src.identity,
            &self.src.name,
            self.dst.identity,
            &self.dst.name,
            self.dst_port,
            self.protocol,
            self.verdict,
        )
    }
}

impl PartialEq for AggKey {
    fn eq(&self, o: &AggKey) -> bool {
        self.parts() == o.parts()
    }
}
impl Eq for AggKey {}
impl std::hash::Hash for AggKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}

#[derive(Default)]
struct Aggregator {
    groups: HashMap<AggKey, pb::FlowAggregate>,
}

impl Aggregator {
    fn add(&mut self, r: &RingFlow) {
        let key = AggKey {
            src: r.source.info.clone(),
            dst: r.destination.info.clone(),
            dst_port: r.destination.port,
            protocol: r.protocol,
            verdict: r.verdict,
        };
        let a = self.groups.entry(key).or_insert_with(|| pb::FlowAggregate {
            // Addresses cleared: the group is by identity; the destination keeps its port.
            source: Some(r.source.info.endpoint(String::new(), 0)),
            destination: Some(r.destination.info.endpoint(String::new(), r.destination.port)),
            protocol: i32::from(r.protocol),
            verdict: r.verdict,
            ..Default::default()
        });
        match pb::FlowEventType::try_from(r.ty) {
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

/// A `GetFlowsResponse` already encoded: what the stream carries.
#[derive(Debug, Clone, Default)]
pub struct Encoded(pub Bytes);

/// Written as it is; the server never decodes one (it only sends them).
impl Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

impl From<pb::GetFlowsResponse> for Encoded {
    fn from(m: pb::GetFlowsResponse) -> Encoded {
        Encoded(m.encode_to_vec().into())
    }
}

/// Room before a batch for its `GetFlowsResponse.flows` key (1 byte) and length (at most 5).
const HEADER: usize = 6;

/// Records framed as `FlowBatch.flows` entries (each the ring's bytes as
/// they are), behind room for the header written when the batch goes out.
struct PendingBatch {
    buf: BytesMut,
    count: usize,
}

impl PendingBatch {
    fn new() -> PendingBatch {
        let mut p = PendingBatch { buf: BytesMut::new(), count: 0 };
        p.reset();
        p
    }

    fn reset(&mut self) {
        self.buf.reserve(HEADER + SEND_BATCH * 256);
        self.buf.put_bytes(0, HEADER);
        self.count = 0;
    }

    fn push(&mut self, flow: &[u8]) {
        encode_key(1, WireType::LengthDelimited, &mut self.buf);
        encode_varint(flow.len() as u64, &mut self.buf);
        self.buf.put_slice(flow);
        self.count += 1;
    }

    /// The batch as one message, if it holds any record.
    fn take(&mut self) -> Option<Encoded> {
        if self.count == 0 {
            return None;
        }
        let mut b = self.buf.split();
        self.reset();
        let body = (b.len() - HEADER) as u64;
        let start = HEADER - 1 - encoded_len_varint(body);
        let mut h = &mut b[start..HEADER];
        encode_key(4, WireType::LengthDelimited, &mut h);
        encode_varint(body, &mut h);
        Some(Encoded(b.freeze().slice(start..)))
    }
}

type Tx = mpsc::Sender<Result<Encoded, Status>>;

/// The status a stream ends with when the server stops.
pub const STOPPING: &str = "gatewayd is stopping";

/// Sends the records gathered so far as one message (nothing if none).
async fn flush(tx: &Tx, pending: &mut PendingBatch) -> Result<(), ()> {
    match pending.take() {
        Some(m) => tx.send(Ok(m)).await.map_err(|_| ()),
        None => Ok(()),
    }
}

/// Streams what `req` asks for into `tx` until the reader ends, the client
/// goes away, `until` passes, or (`stopping` set) the server stops: then it
/// first sends what the ring holds, the workers' last records among it, and
/// returns true.
pub async fn run_stream(
    hub: Arc<FlowRing>,
    req: pb::GetFlowsRequest,
    filter: FlowFilterSet,
    tx: Tx,
    stopping: Option<watch::Receiver<bool>>,
) -> bool {
    let reader = hub.reader(&query_of(&req), &filter);
    stream_from(reader, req, filter, tx, stopping).await
}

fn query_of(req: &pb::GetFlowsRequest) -> Query {
    Query { number: req.number, follow: req.follow, since_ns: req.since_unix_ns, until_ns: req.until_unix_ns }
}

/// [`run_stream`] from a reader already positioned: `GetFlows` positions it
/// before it answers, so a follower gets every record pushed after its call
/// returned (positioned later, in the spawned task, it could miss them).
async fn stream_from(
    mut reader: Reader<FlowRecord>,
    req: pb::GetFlowsRequest,
    filter: FlowFilterSet,
    tx: Tx,
    mut stopping: Option<watch::Receiver<bool>>,
) -> bool {
    let query = query_of(&req);
    let mut remaining = (req.number > 0).then_some(req.number);
    let interval = (req.aggregate_interval_ms > 0).then(|| Duration::from_millis(req.aggregate_interval_ms.into()));
    let mut agg = Aggregator::default();
    let mut agg_start = unix_ns(SystemTime::now());
    let mut next_flush = interval.map(|i| tokio::time::Instant::now() + i);
    // Records go out several to a message; a notice first sends what came before it.
    let mut pending = PendingBatch::new();
    loop {
        let batch = reader.read(READ_BATCH);
        if batch.lapped > 0 {
            let now = unix_ns(SystemTime::now());
            if tx.send(Ok(lost(pb::LostEventSource::Ring, batch.lapped, 0, now).into())).await.is_err() {
                return false;
            }
        }
        for item in batch.items() {
            match item {
                Item::Lost { source, count, worker, time_ns } => {
                    let src = match source {
                        LostSource::WorkerQueue => pb::LostEventSource::WorkerQueue,
                        LostSource::Ring => pb::LostEventSource::Ring,
                    };
                    if query.since_ns.is_none_or(|s| *time_ns >= s)
                        && (flush(&tx, &mut pending).await.is_err()
                            || tx.send(Ok(lost(src, *count, *worker, *time_ns).into())).await.is_err())
                    {
                        return false;
                    }
                }
                Item::Record(r) => {
                    if !query.in_time(r.time_ns) || !filter.matches(r) {
                        continue;
                    }
                    if interval.is_some() {
                        agg.add(r);
                        continue;
                    }
                    if pending.count > 0
                        && pending.buf.len() + HEADER + r.wire.len() > SEND_BATCH_BYTES
                        && flush(&tx, &mut pending).await.is_err()
                    {
                        return false;
                    }
                    pending.push(&r.wire);
                    if pending.count == SEND_BATCH && flush(&tx, &mut pending).await.is_err() {
                        return false;
                    }
                    // In follow mode the first N are the history; after it, everything.
                    if let Some(n) = &mut remaining {
                        *n = n.saturating_sub(1);
                        if *n == 0 && !query.follow {
                            let _ = flush(&tx, &mut pending).await;
                            return false;
                        }
                    }
                }
            }
        }
        // What this read gathered goes out before the next read (or wait).
        if flush(&tx, &mut pending).await.is_err() {
            return false;
        }
        if batch.done {
            if interval.is_some() {
                let now = unix_ns(SystemTime::now());
                for a in agg.flush(agg_start, now) {
                    let m = pb::GetFlowsResponse { response: Some(pb::get_flows_response::Response::Aggregate(a)) };
                    if tx.send(Ok(m.into())).await.is_err() {
                        return false;
                    }
                }
            }
            return false;
        }
        if !batch.is_empty() || batch.lapped > 0 {
            continue;
        }
        // Caught up: wait for more, a flush, the end of `until`, the server
        // stopping, or the client leaving.
        if stopping.as_ref().is_some_and(|s| *s.borrow()) {
            return true;
        }
        let until_left = query.until_ns.map(|u| {
            let now = unix_ns(SystemTime::now());
            Duration::from_nanos(u.saturating_sub(now))
        });
        if until_left == Some(Duration::ZERO) {
            return false;
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
        let stop = async {
            let changed = match stopping.as_mut() {
                Some(s) => s.changed().await.is_ok(),
                None => false,
            };
            if !changed {
                // never, or the server is gone (and tx.closed() will say so)
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = reader.wait() => {}
            _ = sleep => {}
            _ = stop => {}
            _ = tx.closed() => return false,
        }
        if let (Some(f), Some(i)) = (next_flush, interval) {
            if tokio::time::Instant::now() >= f {
                let now = unix_ns(SystemTime::now());
                for a in agg.flush(agg_start, now) {
                    let m = pb::GetFlowsResponse { response: Some(pb::get_flows_response::Response::Aggregate(a)) };
                    if tx.send(Ok(m.into())).await.is_err() {
                        return false;
                    }
                }
                agg_start = now;
                next_flush = Some(f + i);
            }
        }
    }
}

impl FlowsService {
    /// `GetFlows`: checks the caller and the request, then streams.
    pub async fn get_flows(
        &self,
        req: Request<pb::GetFlowsRequest>,
    ) -> Result<Response<ReceiverStream<Result<Encoded, Status>>>, Status> {
        self.access.role(&req)?;
        let req = req.into_inner();
        let filter = FlowFilterSet::new(&req.allow, &req.deny).map_err(Status::invalid_argument)?;
        if req.aggregate_interval_ms > 0 && !req.follow && req.number > 0 {
            return Err(Status::invalid_argument(
                "aggregate_interval_ms: aggregation takes follow or all records, not `number`",
            ));
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let reader = self.hub.reader(&query_of(&req), &filter);
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            let last = tx.clone();
            if stream_from(reader, req, filter, tx, Some(stopping)).await {
                // A follower never ends by itself: end it with a status the
                // client can tell from a broken connection.
                let _ = last.send(Err(Status::unavailable(STOPPING))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The `gateway.v1.Flows` service for tonic's router: what tonic-build
/// generates (`pb::flows_server::FlowsServer`), with a codec that writes the
/// stream's [`Encoded`] messages as they are instead of a prost message type.
#[derive(Clone)]
pub struct FlowsServer {
    inner: Arc<FlowsService>,
}

impl FlowsServer {
    pub fn new(service: FlowsService) -> FlowsServer {
        FlowsServer { inner: Arc::new(service) }
    }
}

struct GetFlowsCall(Arc<FlowsService>);

impl tonic::server::ServerStreamingService<pb::GetFlowsRequest> for GetFlowsCall {
    type Response = Encoded;
    type ResponseStream = ReceiverStream<Result<Encoded, Status>>;
    type Future = tonic::codegen::BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<pb::GetFlowsRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.get_flows(request).await })
    }
}

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for FlowsServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::BoxBody>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        match req.uri().path() {
            "/gateway.v1.Flows/GetFlows" => Box::pin(async move {
                let codec = tonic::codec::ProstCodec::<Encoded, pb::GetFlowsRequest>::default();
                Ok(tonic::server::Grpc::new(codec).server_streaming(GetFlowsCall(inner), req).await)
            }),
            _ => Box::pin(async move {
                let mut response = tonic::codegen::http::Response::new(tonic::codegen::empty_body());
                let headers = response.headers_mut();
                headers.insert(tonic::Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                headers.insert(tonic::codegen::http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            }),
        }
    }
}

impl tonic::server::NamedService for FlowsServer {
    const NAME: &'static str = "gateway.v1.Flows";
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
            protocol: pb::Protocol::Tcp as i32,
            direction: pb::TrafficDirection::Incoming as i32,
            verdict: verdict as i32,
            reason: reason.into(),
            policy: Some(pb::PolicyRef { ruleset: "db".into(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn batches_stay_under_the_message_size_bound_and_keep_notices_in_place() {
        let hub = FlowRing::new(4096);
        // ~20 KB records: 256 of them would make a 5 MB message.
        let tags: Vec<String> = (0..400).map(|i| format!("k{i}=value-{i:040}")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let big =
            |t: u64| pb::Flow { time_unix_ns: t, ..rec("10.0.0.7", &tags, 80, pb::Verdict::Allowed, "policy_allow") };
        hub.push_batch((0..300).map(big));
        hub.push_lost(LostSource::WorkerQueue, 7, 0, 300);
        hub.push_batch(
            (301..311).map(|t| pb::Flow { time_unix_ns: t, ..rec("10.0.0.8", &[], 80, pb::Verdict::Allowed, "x") }),
        );
        let (tx, mut rx) = mpsc::channel(STREAM_BUFFER);
        let req = pb::GetFlowsRequest::default();
        tokio::spawn(run_stream(hub.clone(), req, FlowFilterSet::default(), tx, None));
        let mut times = Vec::new();
        let mut lost_after = None;
        while let Some(m) = rx.recv().await {
            let m = m.unwrap();
            assert!(m.0.len() <= SEND_BATCH_BYTES + 64, "message of {} bytes", m.0.len());
            match pb::GetFlowsResponse::decode(m.0).unwrap().response {
                Some(pb::get_flows_response::Response::Flows(b)) => {
                    assert!(!b.flows.is_empty() && b.flows.len() <= SEND_BATCH);
                    times.extend(b.flows.iter().map(|f| f.time_unix_ns));
                }
                Some(pb::get_flows_response::Response::LostEvents(l)) => {
                    assert_eq!(l.count, 7);
                    lost_after = Some(times.len());
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(times, (0..300).chain(301..311).collect::<Vec<_>>());
        assert_eq!(lost_after, Some(300), "the notice between the records it came between");
    }

    #[test]
    fn filters_compose() {
        let a = RingFlow::from(rec(
            "10.0.0.7",
            &["role=db"],
            5432,
            pb::Verdict::Rejected,
            dataplane::stats::DropReason::IdentityBadMac.name(),
        ));
        let b = RingFlow::from(rec("192.168.1.1", &["role=web"], 80, pb::Verdict::Allowed, "policy_allow"));
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
                reason: vec![dataplane::stats::DropReason::IdentityBadMac.name().into()],
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
        let proto = f(vec![pb::FlowFilter { protocol: vec![6], ..Default::default() }], vec![]);
        assert!(proto.matches(&a));
        let udp = f(vec![pb::FlowFilter { protocol: vec![pb::Protocol::Udp as i32], ..Default::default() }], vec![]);
        assert!(!udp.matches(&a));
        let dir = |d: pb::TrafficDirection| {
            f(vec![pb::FlowFilter { direction: vec![d as i32], ..Default::default() }], vec![])
        };
        assert!(dir(pb::TrafficDirection::Incoming).matches(&a) && !dir(pb::TrafficDirection::Outgoing).matches(&a));
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
        // Enum values a flow never carries are refused with the valid ones.
        let e = FlowFilterSet::new(&[pb::FlowFilter { direction: vec![0], ..Default::default() }], &[]).err().unwrap();
        assert!(e.starts_with("allow[0].direction") && e.contains("1 (incoming), 2 (outgoing)"), "{e}");
        let e = FlowFilterSet::new(&[pb::FlowFilter { protocol: vec![300], ..Default::default() }], &[]).err().unwrap();
        assert!(e.starts_with("allow[0].protocol") && e.contains("tcp, udp, icmp"), "{e}");
    }

    #[test]
    fn aggregation_groups_by_identities_port_protocol_verdict() {
        let mut agg = Aggregator::default();
        let mut a = rec("10.0.0.7", &[], 5432, pb::Verdict::Allowed, "policy_allow");
        a.r#type = pb::FlowEventType::Started as i32;
        agg.add(&a.into());
        let mut b = rec("10.0.0.8", &[], 5432, pb::Verdict::Allowed, "policy_allow");
        b.r#type = pb::FlowEventType::Ended as i32;
        b.packets_to_server = 10;
        b.bytes_to_client = 1000;
        agg.add(&b.into());
        let mut c = rec("10.0.0.8", &[], 5432, pb::Verdict::Rejected, "no_match");
        c.r#type = pb::FlowEventType::Rejected as i32;
        agg.add(&c.into());
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
