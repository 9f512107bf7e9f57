//! Flow records as the ring holds them: resolved and encoded once.
//!
//! The control thread turns each worker [`FlowRecord`] (numbers only) into a
//! [`RingFlow`]: the `gateway.v1.Flow` message already encoded (every
//! `GetFlows` reader sends these bytes as they are, so N readers cost one
//! encoding), beside the few fields filters and aggregation look at, already
//! resolved. Names come from per-generation tables ([`FlowFeed`]): a PU, a
//! directory identity, an external network or a rule is resolved (strings
//! built, tags parsed, its protobuf fields encoded) the first time a record
//! names it, and shared through an `Arc` by every record after — a record
//! costs no string building and no allocation of its own (its bytes live in
//! one buffer per drained batch).
//!
//! What a record resolves to is what [`crate::flowlog::FlowEvent::resolve`]
//! followed by [`super::link::flow_from_event`] gives (the tests hold the two
//! paths to the same messages).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use crate::dnslog::NameCache;
use dataplane::engine::EngineConfig;
use dataplane::events::{EventKind, FlowRecord};
use dataplane::policy::{Direction, ExtNetRef, RuleRef, Side, TagSet};
use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encoded_len_varint, WireType};
use prost::Message;

use super::pb;
use super::pb::EndpointKind;
use crate::flowhub::HubRecord;
use crate::flowlog::ConfigHistory;
use crate::flownames::{action_name, direction_pb};

// ---------------------------------------------------------------------------
// Protobuf encoding helpers (proto3: default values are not written)

/// A varint, as prost's `encode_varint` writes it, inlined: a record writes
/// some thirty (keys, lengths, numbers), nearly all of one byte.
#[inline(always)]
fn encode_varint(mut v: u64, buf: &mut impl BufMut) {
    if v < 0x80 {
        buf.put_u8(v as u8);
        return;
    }
    let mut tmp = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        tmp[n] = (v as u8 & 0x7f) | 0x80;
        v >>= 7;
        n += 1;
    }
    tmp[n] = v as u8;
    buf.put_slice(&tmp[..=n]);
}

/// A field key.
#[inline(always)]
fn encode_key(tag: u32, wire_type: WireType, buf: &mut impl BufMut) {
    encode_varint(u64::from(tag << 3 | wire_type as u32), buf);
}

fn put_len_field(buf: &mut impl BufMut, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

fn put_str(buf: &mut impl BufMut, tag: u32, s: &str) {
    if !s.is_empty() {
        put_len_field(buf, tag, s.as_bytes());
    }
}

fn put_u64(buf: &mut impl BufMut, tag: u32, v: u64) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

/// Bytes of a string field as [`put_str`] writes it (tags here are < 16: one key byte).
fn str_len(s: &str) -> usize {
    bytes_len(s.as_bytes())
}

fn bytes_len(s: &[u8]) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + encoded_len_varint(s.len() as u64) + s.len()
    }
}

fn u64_len(v: u64) -> usize {
    if v == 0 {
        0
    } else {
        1 + encoded_len_varint(v)
    }
}

/// An address as text without allocating (the longest IPv6 text is 45
/// bytes). IPv4 is written digit by digit (`fmt` cost more than the rest of
/// a record's encoding); IPv6 through `Display`, which it must match.
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> IpText {
        let mut t = IpText { buf: [0; 48], len: 0 };
        match ip {
            IpAddr::V4(a) => {
                for (i, o) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if o >= 100 {
                        t.push(b'0' + o / 100);
                    }
                    if o >= 10 {
                        t.push(b'0' + o / 10 % 10);
                    }
                    t.push(b'0' + o % 10);
                }
            }
            IpAddr::V6(_) => {
                let _ = write!(t, "{ip}");
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// UTF-8: ASCII digits, dots, colons and hex letters only.
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Resolved names, shared by every record that names them

/// One end's names: a PU, a directory identity or an external network (or
/// nothing known), as `Endpoint` fields 3–6.
#[derive(Debug)]
pub struct EndInfo {
    pub identity: u32,
    pub name: Box<str>,
    /// `k=v`, as records carry them.
    pub tags: Vec<String>,
    /// `tags` parsed once, when a tag selector first asks (`None`: they do not parse, no selector matches).
    tagset: OnceLock<Option<TagSet>>,
    /// An [`EndpointKind`].
    pub kind: i32,
    /// `identity`, `name`, `tags` and `kind` encoded (the `Endpoint` after its ip and port).
    wire: Box<[u8]>,
}

impl EndInfo {
    pub fn new(identity: u32, name: &str, tags: Vec<String>, kind: i32) -> EndInfo {
        let mut wire = Vec::new();
        put_u64(&mut wire, 3, identity.into());
        put_str(&mut wire, 4, name);
        for t in &tags {
            // Repeated strings are written even when empty.
            put_len_field(&mut wire, 5, t.as_bytes());
        }
        put_u64(&mut wire, 6, kind as u64);
        EndInfo { identity, name: name.into(), tags, tagset: OnceLock::new(), kind, wire: wire.into() }
    }

    /// The tags as a set, for selectors (`None`: they do not parse).
    pub fn tagset(&self) -> Option<&TagSet> {
        self.tagset.get_or_init(|| TagSet::parse(&self.tags).ok()).as_ref()
    }

    fn of(identity: Option<u32>, name: Option<&str>, tags: Option<&TagSet>, kind: EndpointKind) -> EndInfo {
        let tags = tags.map(|t| t.iter().map(|(k, v)| format!("{k}={v}")).collect()).unwrap_or_default();
        EndInfo::new(identity.unwrap_or(0), name.unwrap_or(""), tags, kind as i32)
    }

    /// The `Endpoint` message with `ip` and `port`.
    pub fn endpoint(&self, ip: String, port: u32) -> pb::Endpoint {
        pb::Endpoint {
            ip,
            port,
            identity: self.identity,
            name: self.name.to_string(),
            tags: self.tags.clone(),
            kind: self.kind,
        }
    }
}

impl Default for EndInfo {
    fn default() -> EndInfo {
        EndInfo::new(0, "", Vec::new(), 0)
    }
}

/// A rule's names, as `PolicyRef` fields 1–2.
#[derive(Debug)]
struct RuleNames {
    ruleset: Arc<str>,
    wire: Box<[u8]>,
}

impl RuleNames {
    fn new(ruleset: &str, rule: &str) -> RuleNames {
        let mut wire = Vec::new();
        put_str(&mut wire, 1, ruleset);
        put_str(&mut wire, 2, rule);
        RuleNames { ruleset: ruleset.into(), wire: wire.into() }
    }
}

/// Integer keys from the operator's document (identities, indices): no
/// flooding resistance needed, only speed.
#[derive(Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(26) ^ i).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type IntMap<V> = HashMap<u32, V, BuildHasherDefault<IntHasher>>;

/// The names of one engine configuration (one policy generation), filled as records name them.
struct Names {
    cfg: Arc<EngineConfig>,
    pus: Vec<Option<Arc<EndInfo>>>,
    no_pu: Arc<EndInfo>,
    identities: IntMap<Arc<EndInfo>>,
    externals: IntMap<Arc<EndInfo>>,
    no_external: Arc<EndInfo>,
    rules: IntMap<Option<Arc<RuleNames>>>,
    /// Field 12, `policy_revision`, encoded.
    revision: Box<[u8]>,
}

impl Names {
    fn new(cfg: Arc<EngineConfig>) -> Names {
        let mut revision = Vec::new();
        put_str(&mut revision, 12, cfg.policy.revision().unwrap_or(""));
        Names {
            pus: vec![None; cfg.policy.pus().len()],
            no_pu: Arc::new(EndInfo::of(None, None, None, EndpointKind::ProcessingUnit)),
            identities: IntMap::default(),
            externals: IntMap::default(),
            no_external: Arc::new(EndInfo::of(None, None, None, EndpointKind::ExternalNetwork)),
            rules: IntMap::default(),
            revision: revision.into(),
            cfg,
        }
    }

    fn pu(&mut self, i: u32) -> &Arc<EndInfo> {
        let Some(slot) = self.pus.get_mut(i as usize) else { return &self.no_pu };
        let p = &self.cfg.policy.pus()[i as usize];
        slot.get_or_insert_with(|| {
            Arc::new(EndInfo::of(Some(p.identity), Some(&p.name), Some(&p.tags), EndpointKind::ProcessingUnit))
        })
    }

    fn identity(&mut self, id: u32) -> &Arc<EndInfo> {
        let p = &self.cfg.policy;
        self.identities.entry(id).or_insert_with(|| {
            let e = p.identity(id);
            Arc::new(EndInfo::of(
                Some(id),
                e.and_then(|x| x.name.as_deref()),
                e.map(|x| &x.tags),
                EndpointKind::RemoteIdentity,
            ))
        })
    }

    fn external(&mut self, x: Option<ExtNetRef>) -> &Arc<EndInfo> {
        let p = &self.cfg.policy;
        match x.and_then(|x| p.external_network(x).map(|n| (x, n))) {
            Some((x, n)) => self.externals.entry(x.0).or_insert_with(|| {
                Arc::new(EndInfo::of(None, Some(&n.name), Some(&n.tags), EndpointKind::ExternalNetwork))
            }),
            None => &self.no_external,
        }
    }

    fn rule(&mut self, r: RuleRef) -> Option<Arc<RuleNames>> {
        let p = &self.cfg.policy;
        self.rules
            .entry(r.0)
            .or_insert_with(|| p.rule(r).map(|x| Arc::new(RuleNames::new(&x.ruleset, &x.name))))
            .clone()
    }
}

// ---------------------------------------------------------------------------
// The ring's record

/// One end of a ring record.
#[derive(Debug, Clone, Default)]
pub struct End {
    /// `None`: a record pushed as a message whose address does not parse.
    pub ip: Option<IpAddr>,
    pub port: u32,
    pub info: Arc<EndInfo>,
}

/// A flow record in the ring: its `Flow` message encoded once, and what
/// filters and aggregation read, resolved.
#[derive(Debug, Clone)]
pub struct RingFlow {
    pub time_ns: u64,
    /// A [`pb::FlowEventType`].
    pub ty: i32,
    /// A [`pb::Verdict`].
    pub verdict: i32,
    /// The IP protocol number (the message's [`pb::Protocol`]).
    pub protocol: u8,
    pub reason: Cow<'static, str>,
    /// `incoming` or `outgoing`, seen from the local PU.
    pub direction: Cow<'static, str>,
    /// The deciding rule's ruleset.
    pub ruleset: Option<Arc<str>>,
    pub source: End,
    pub destination: End,
    pub packets_to_server: u64,
    pub bytes_to_server: u64,
    pub packets_to_client: u64,
    pub bytes_to_client: u64,
    /// The `Flow` message, encoded.
    pub wire: Bytes,
}

impl HubRecord for RingFlow {
    fn time_ns(&self) -> u64 {
        self.time_ns
    }
}

impl RingFlow {
    /// The message (decoded from the bytes every reader sends).
    pub fn to_pb(&self) -> pb::Flow {
        pb::Flow::decode(self.wire.clone()).unwrap_or_default()
    }
}

/// A message pushed as it is (tests, tools): encoded here, its fields read back for filters.
impl From<pb::Flow> for RingFlow {
    fn from(f: pb::Flow) -> RingFlow {
        let end = |e: Option<pb::Endpoint>| {
            let e = e.unwrap_or_default();
            End {
                ip: e.ip.parse().ok(),
                port: e.port,
                info: Arc::new(EndInfo::new(e.identity, &e.name, e.tags, e.kind)),
            }
        };
        let wire = Bytes::from(f.encode_to_vec());
        RingFlow {
            time_ns: f.time_unix_ns,
            ty: f.r#type,
            verdict: f.verdict,
            protocol: u8::try_from(f.protocol).unwrap_or(0),
            reason: Cow::Owned(f.reason),
            direction: Cow::Borrowed(crate::flownames::direction_name(f.direction).unwrap_or("")),
            ruleset: f.policy.map(|p| Arc::from(p.ruleset)),
            source: end(f.source),
            destination: end(f.destination),
            packets_to_server: f.packets_to_server,
            bytes_to_server: f.bytes_to_server,
            packets_to_client: f.packets_to_client,
            bytes_to_client: f.bytes_to_client,
            wire,
        }
    }
}

/// `Endpoint` content: ip, port, then the shared fields.
fn endpoint_len(ip: &[u8], port: u16, info: &EndInfo) -> usize {
    bytes_len(ip) + u64_len(port.into()) + info.wire.len()
}

fn put_endpoint(buf: &mut BytesMut, tag: u32, ip: &[u8], port: u16, info: &EndInfo) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(endpoint_len(ip, port, info) as u64, buf);
    if !ip.is_empty() {
        put_len_field(buf, 1, ip);
    }
    put_u64(buf, 2, port.into());
    buf.put_slice(&info.wire);
}

fn put_policy_ref(buf: &mut BytesMut, tag: u32, names: &RuleNames, direction: &str, action: &str) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint((names.wire.len() + str_len(direction) + str_len(action)) as u64, buf);
    buf.put_slice(&names.wire);
    put_str(buf, 3, direction);
    put_str(buf, 4, action);
}

/// Resolves and encodes drained records for the ring. Keeps the names of
/// recent generations, so each PU, identity, network and rule is resolved once.
#[derive(Default)]
pub struct FlowFeed {
    /// Newest last; as many as [`ConfigHistory`] keeps.
    names: Vec<Names>,
    /// The encoded records of a batch, split off per batch (one allocation for many records).
    buf: BytesMut,
}

const KEEP_NAMES: usize = 8;

impl FlowFeed {
    pub fn new() -> FlowFeed {
        FlowFeed::default()
    }

    /// The names for a record of `generation`, resolved through `history` (the
    /// configuration of that generation, else the newest; `None`: no configuration).
    fn names_index(
        &mut self,
        history: &ConfigHistory,
        generation: u32,
        memo: &mut Option<(u32, usize)>,
    ) -> Option<usize> {
        if let Some((g, i)) = *memo {
            if g == generation {
                return Some(i);
            }
        }
        let cfg = history.get(generation)?;
        let i = match self.names.iter().position(|n| Arc::ptr_eq(&n.cfg, &cfg)) {
            Some(i) => i,
            None => {
                if self.names.len() == KEEP_NAMES {
                    self.names.remove(0);
                }
                self.names.push(Names::new(cfg));
                self.names.len() - 1
            }
        };
        *memo = Some((generation, i));
        Some(i)
    }

    /// Resolves and encodes `records` (with the worker each came from), in
    /// order; records of a generation no configuration covers are skipped.
    pub fn resolve(&mut self, history: &ConfigHistory, records: &[(u32, FlowRecord)]) -> Vec<RingFlow> {
        self.resolve_named(history, records, None)
    }

    /// [`Self::resolve`], each flow with the remote end's DNS name when
    /// `dns` knows which name its PU resolved to that address
    /// (`Flow.remote_dns_name`, docs/dns.md).
    pub fn resolve_named(
        &mut self,
        history: &ConfigHistory,
        records: &[(u32, FlowRecord)],
        dns: Option<&NameCache>,
    ) -> Vec<RingFlow> {
        let mut out = Vec::with_capacity(records.len());
        let mut ends: Vec<usize> = Vec::with_capacity(records.len());
        // One history lookup per generation change within the batch (not per record).
        let mut memo = None;
        self.buf.reserve(records.len() * 256);
        for (worker, r) in records {
            let Some(i) = self.names_index(history, r.generation, &mut memo) else { continue };
            let names = &mut self.names[i];
            out.push(encode(names, &mut self.buf, *worker, r, dns));
            ends.push(self.buf.len());
        }
        let bytes = self.buf.split().freeze();
        let mut start = 0;
        for (f, end) in out.iter_mut().zip(ends) {
            f.wire = bytes.slice(start..end);
            start = end;
        }
        out
    }
}

/// One record: its ring fields, and its `Flow` message appended to `buf`
/// (`wire` is set by the caller once the batch's buffer is frozen).
fn encode(names: &mut Names, buf: &mut BytesMut, worker: u32, r: &FlowRecord, dns: Option<&NameCache>) -> RingFlow {
    let d = r.decision();
    let ((cip, cport), (sip, sport)) = r.client_server();
    let local = names.pu(r.pu).clone();
    let remote = match r.remote_identity {
        Some(id) => names.identity(id).clone(),
        None => names.external(d.and_then(|d| d.external.or(d.observed.and_then(|o| o.external)))).clone(),
    };
    let (src, dst) = match r.initiator {
        Side::Inside => (local, remote),
        Side::Outside => (remote, local),
    };
    let rule = d.and_then(|d| d.rule).and_then(|x| names.rule(x));
    let observed = d.and_then(|d| d.observed);
    let obs_rule = observed.and_then(|o| names.rule(o.rule));
    let action = match (r.kind, d) {
        (_, Some(d)) => action_name(d.action),
        (EventKind::Drop, None) => "drop",
        (_, None) => "reject",
    };
    let reason = match (r.drop, d) {
        (Some(x), _) => x.name(),
        (None, Some(d)) => d.reason.name(),
        (None, None) => "undecided",
    };
    let verdict = match (action, reason) {
        (_, "ignored" | "excluded") => pb::Verdict::Passed,
        ("allow", _) => pb::Verdict::Allowed,
        _ => pb::Verdict::Rejected,
    };
    let ty = match (r.kind, verdict) {
        (EventKind::End, _) => pb::FlowEventType::Ended,
        (_, pb::Verdict::Allowed | pb::Verdict::Passed) => pb::FlowEventType::Started,
        _ => pb::FlowEventType::Rejected,
    };
    // The source is the PU when it opened the connection.
    let dir = if r.initiator == Side::Inside { Direction::Outgoing } else { Direction::Incoming };
    let direction = dir.name();
    // Counters are kept per port: inside = the PU's packets.
    let (pc, bc) = match r.initiator {
        Side::Inside => (r.packets, r.bytes),
        Side::Outside => ([r.packets[1], r.packets[0]], [r.bytes[1], r.bytes[0]]),
    };
    let (cip_text, sip_text) = (IpText::new(cip), IpText::new(sip));

    put_u64(buf, 1, r.time);
    put_u64(buf, 2, ty as u64);
    put_u64(buf, 3, worker.into());
    put_endpoint(buf, 4, cip_text.as_bytes(), cport, &src);
    put_endpoint(buf, 5, sip_text.as_bytes(), sport, &dst);
    put_u64(buf, 7, verdict as u64);
    put_str(buf, 8, reason);
    if let Some(n) = &rule {
        put_policy_ref(buf, 9, n, direction, action);
    }
    if let Some(n) = &obs_rule {
        put_policy_ref(buf, 10, n, direction, observed.map_or("", |o| action_name(o.action)));
    }
    put_u64(buf, 11, r.generation.into());
    buf.put_slice(&names.revision);
    put_u64(buf, 13, pc[0]);
    put_u64(buf, 14, bc[0]);
    put_u64(buf, 15, pc[1]);
    put_u64(buf, 16, bc[1]);
    put_str(buf, 19, r.note.map_or("", |n| n.name()));
    let (mode, why) = crate::flowlog::identity_mode_of(r.note.map(|n| n.name()), r.remote_identity.is_some());
    put_str(buf, 30, mode);
    put_str(buf, 31, why);
    let remote_ip = if r.initiator == Side::Inside { sip } else { cip };
    let pu_name = if r.initiator == Side::Inside { &src.name } else { &dst.name };
    if let Some(n) = dns.and_then(|d| d.name(pu_name, remote_ip, r.time)) {
        put_str(buf, 32, n);
    }
    // (fields in tag order, as prost writes them: the enums that replaced 6 and 18 come last)
    put_u64(buf, 33, r.key.proto.into());
    put_u64(buf, 34, direction_pb(dir) as u64);

    RingFlow {
        time_ns: r.time,
        ty: ty as i32,
        verdict: verdict as i32,
        protocol: r.key.proto,
        reason: Cow::Borrowed(reason),
        direction: Cow::Borrowed(direction),
        ruleset: rule.map(|n| n.ruleset.clone()),
        source: End { ip: Some(cip), port: cport.into(), info: src },
        destination: End { ip: Some(sip), port: sport.into(), info: dst },
        packets_to_server: pc[0],
        bytes_to_server: bc[0],
        packets_to_client: pc[1],
        bytes_to_client: bc[1],
        wire: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::link::flow_from_event;
    use crate::flowlog::FlowEvent;
    use dataplane::flow::FlowKey;
    use dataplane::policy::{Decision, Direction, PuId, Remote};
    use dataplane::stats::{DropReason, Note};

    const DOC: &str = r#"
revision: r7
processing_units:
  - {name: web, tags: [app=web, env=lab], addresses: [10.2.0.20, "fd00::20"], identity: 2001}
  - {name: db, tags: [app=db], addresses: [10.2.0.30], identity: 2002}
identities:
  - {identity: 1001, name: client, tags: [app=frontend], peer: gw-a}
  - {identity: 1002, tags: [app=anon], peer: gw-a}
peers:
  - name: gw-a
    keys: [{id: 1, public_key: "f77ff4b10788bfdca62ca0bb160d427cf5762d85f2b5cad6807ec9c3febbde09"}]
rulesets:
  - name: web
    subject: app == web
    incoming:
      - {name: office, action: allow, object: ext == office, protocols: [tcp], ports: [80]}
      - {name: no-bad, action: reject, object: ext == bad, protocols: [tcp], ports: [80]}
      - {name: frontends, action: allow, object: app == frontend, protocols: [tcp], ports: [8080]}
      - {name: watch-anon, action: reject, object: app == anon, protocols: [tcp], ports: [8080], observe: true}
    outgoing:
      - {name: to-office, action: allow, object: ext == office, protocols: [udp], ports: [53]}
external_networks:
  - {name: office, tags: [ext=office], cidrs: [192.168.50.0/24]}
  - {name: bad, tags: [ext=bad], cidrs: [192.168.66.0/24]}
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Records of every shape: both directions, identities known and not,
    /// external networks allowed and rejected, observe rules, drops, ends, IPv6.
    fn records(cfg: &EngineConfig) -> Vec<(u32, FlowRecord)> {
        let p = &cfg.policy;
        let g = cfg.generation();
        let key = |side, inside: &str, outside: &str, ip_, op, proto| {
            FlowKey::new(side, ip(inside), ip(outside), ip_, op, proto)
        };
        let mut v = Vec::new();
        // Incoming from an external network, allowed; ended with counters.
        let d = p.decide(PuId(0), Direction::Incoming, Remote::Address(ip("192.168.50.7")), 6, 80);
        let k = key(Side::Outside, "192.168.50.7", "10.2.0.20", 40000, 80, 6);
        let mut r = FlowRecord::new(EventKind::End, 1_500_000_000, k, Side::Outside, 0, g).with_decision(&d);
        r.packets = [4, 5];
        r.bytes = [400, 500];
        v.push((0, r));
        // Incoming from a rejected external network.
        let d = p.decide(PuId(0), Direction::Incoming, Remote::Address(ip("192.168.66.1")), 6, 80);
        assert_eq!(d.reason.name(), "external_network_reject");
        let k = key(Side::Outside, "192.168.66.1", "10.2.0.20", 40001, 80, 6);
        v.push((1, FlowRecord::new(EventKind::Decision, 2, k, Side::Outside, 0, g).with_decision(&d)));
        // Unknown address, no match.
        let d = p.decide(PuId(0), Direction::Incoming, Remote::Address(ip("203.0.113.9")), 6, 80);
        let k = key(Side::Outside, "203.0.113.9", "10.2.0.20", 40002, 80, 6);
        let mut r = FlowRecord::new(EventKind::Decision, 3, k, Side::Outside, 0, g).with_decision(&d);
        r.drop = Some(DropReason::NoFlowState);
        v.push((0, r));
        // Verified identity, allowed; and an anonymous one only an observe rule matches.
        for (id, port) in [(1001, 8080), (1002, 8080), (4242, 8080)] {
            let d = p.decide(PuId(0), Direction::Incoming, Remote::Identity(id), 6, port);
            let k = key(Side::Outside, "10.9.0.1", "10.2.0.20", 50000, port, 6);
            let mut r = FlowRecord::new(EventKind::Decision, 4, k, Side::Outside, 0, g).with_decision(&d);
            r.remote_identity = Some(id);
            r.note = Some(Note::NoPeerForDestination);
            v.push((2, r));
        }
        // Outgoing UDP from the PU to an external network, IPv6 PU address.
        let d = p.decide(PuId(0), Direction::Outgoing, Remote::Address(ip("192.168.50.1")), 17, 53);
        let k = key(Side::Inside, "10.2.0.20", "192.168.50.1", 33333, 53, 17);
        let mut r = FlowRecord::new(EventKind::End, 5, k, Side::Inside, 0, g).with_decision(&d);
        r.packets = [1, 2];
        r.bytes = [3, 4];
        v.push((3, r));
        let k = key(Side::Inside, "fd00::20", "2001:db8::1", 33334, 443, 6);
        let mut r = FlowRecord::new(EventKind::Drop, 6, k, Side::Inside, 0, g);
        r.drop = Some(DropReason::Replay);
        v.push((0, r));
        // No PU (index out of range), protocol without a name, no decision.
        let k = key(Side::Outside, "10.9.0.9", "10.2.0.99", 1, 2, 132);
        v.push((0, FlowRecord::new(EventKind::Decision, 7, k, Side::Outside, u32::MAX, g)));
        let _: Decision = d;
        v
    }

    #[test]
    fn varints_are_what_prost_writes() {
        let mut v = vec![0u64, 1, 127, 128, 255, 300, 16383, 16384, u32::MAX.into(), u64::MAX - 1, u64::MAX];
        v.extend((0..64).map(|i| 1u64 << i));
        for x in v {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            encode_varint(x, &mut ours);
            prost::encoding::encode_varint(x, &mut theirs);
            assert_eq!(ours, theirs, "{x}");
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        encode_key(18, WireType::LengthDelimited, &mut ours);
        prost::encoding::encode_key(18, WireType::LengthDelimited, &mut theirs);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn address_text_is_what_display_writes() {
        let mut v: Vec<IpAddr> = ["::", "::1", "fd00::20", "::ffff:10.1.2.3", "2001:db8:0:0:1:0:0:1", "fe80::1:2:3:4"]
            .iter()
            .map(|s| ip(s))
            .collect();
        for a in [0u8, 1, 9, 10, 42, 99, 100, 101, 199, 200, 250, 255] {
            for b in [0u8, 7, 10, 100, 255] {
                v.push(IpAddr::from([a, b, a.wrapping_add(b), 255 - a]));
            }
        }
        for x in v {
            assert_eq!(IpText::new(x).as_bytes(), x.to_string().as_bytes(), "{x}");
        }
    }

    #[test]
    fn encoded_records_are_what_the_resolved_events_convert_to() {
        let cfg = Arc::new(EngineConfig::from_yaml(DOC).unwrap());
        let history = ConfigHistory::default();
        history.push(cfg.clone());
        let recs = records(&cfg);
        let mut feed = FlowFeed::new();
        // Twice: the second time from the filled name tables.
        for _ in 0..2 {
            let ring = feed.resolve(&history, &recs);
            assert_eq!(ring.len(), recs.len());
            for ((w, r), f) in recs.iter().zip(&ring) {
                let mut e = FlowEvent::resolve(r, &cfg);
                e.worker = *w;
                let want = flow_from_event(&e);
                let got = f.to_pb();
                assert_eq!(got, want, "record {r:?}");
                // Byte for byte what prost writes.
                assert_eq!(&f.wire[..], &want.encode_to_vec()[..]);
                // The ring's fields agree with the message.
                let m = RingFlow::from(want);
                assert_eq!((f.time_ns, f.ty, f.verdict), (m.time_ns, m.ty, m.verdict));
                assert_eq!((&f.protocol, &f.reason, &f.ruleset), (&m.protocol, &m.reason, &m.ruleset));
                assert_eq!(f.direction, m.direction);
                for (a, b) in [(&f.source, &m.source), (&f.destination, &m.destination)] {
                    assert_eq!(
                        (a.ip, a.port, a.info.identity, &a.info.name),
                        (b.ip, b.port, b.info.identity, &b.info.name)
                    );
                    assert_eq!(
                        (&a.info.tags, a.info.tagset(), a.info.kind),
                        (&b.info.tags, b.info.tagset(), b.info.kind)
                    );
                }
                assert_eq!(
                    [f.packets_to_server, f.bytes_to_server, f.packets_to_client, f.bytes_to_client],
                    [m.packets_to_server, m.bytes_to_server, m.packets_to_client, m.bytes_to_client]
                );
            }
        }
        let rejected = RingFlow::from(feed.resolve(&history, &recs[1..2])[0].to_pb());
        assert_eq!(&*rejected.source.info.name, "bad", "a rejected external network is named");
    }

    #[test]
    fn records_resolve_through_their_generation_and_without_one_are_skipped() {
        let history = ConfigHistory::default();
        let a = Arc::new(EngineConfig::from_yaml(DOC).unwrap());
        let recs = records(&a);
        let mut feed = FlowFeed::new();
        assert!(feed.resolve(&history, &recs).is_empty(), "no configuration: nothing to resolve with");
        history.push(a.clone());
        let b = Arc::new(EngineConfig::from_yaml(&DOC.replace("name: web, tags", "name: web2, tags")).unwrap());
        history.push(b.clone());
        let old = feed.resolve(&history, &recs[..1]);
        assert_eq!(&*old[0].destination.info.name, "web");
        let mut r = recs[0];
        r.1.generation = b.generation();
        let new = feed.resolve(&history, &[recs[0], r]);
        assert_eq!(&*new[0].destination.info.name, "web");
        assert_eq!(&*new[1].destination.info.name, "web2");
        assert_eq!(new[1].to_pb().policy_generation, b.generation());
    }
}
