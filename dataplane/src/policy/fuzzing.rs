//! Fuzz target bodies for the policy document and its compiler, shared by
//! `cargo fuzz` (`dataplane/fuzz`) and by `tests/policy_fuzz_replay.rs`,
//! which replays the committed corpus plus deterministic mutations.
//!
//! - [`document`]: bytes as the YAML document → parse → compile.
//! - [`structured`]: bytes drive a small decoder that builds a
//!   [`PolicyDocument`] from pools of names, tags, selectors, CIDRs, ports and
//!   keys chosen to collide, so the compiler's semantic paths (duplicates,
//!   overlaps, selector classes, verdict lists) are reached far more often than
//!   through YAML text.
//!
//! Both check the same properties of the outcome ([`check`]): compiling
//! never panics and is deterministic; every problem message is bounded by the
//! input; an accepted document round-trips through YAML (the store persists
//! it that way) and its snapshot answers `pu_by_address` and `decide` as a
//! naive evaluation of the rules does.

use std::net::IpAddr;

use super::model::{
    Action, EnforcerProfile, ExternalNetwork, IdentityEntry, LocalKeys, Peer, PeerKey, PolicyDocument, PortSpec,
    ProcessingUnit, Protocol, Rule, Ruleset,
};
use super::{compile, Direction, PolicySnapshot, PuId, Reason, Remote, Selector, TagSet};

/// Longest message allowed for a problem, as a function of the input's size:
/// a message may quote a few values of the input (escaped, so up to 6 chars a
/// byte) but must never grow faster than that. Loose on purpose: the echoed
/// values themselves are bounded much more tightly (`crate::problem`).
pub fn message_limit(input_len: usize) -> usize {
    1024 + 16 * input_len
}

/// Bytes as a YAML policy document.
pub fn document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(doc) = PolicyDocument::from_yaml(text) else { return };
    check(&doc, data.len());
}

/// Bytes as the choices of a document builder (see the module doc).
pub fn structured(data: &[u8]) {
    let doc = build(&mut Choices::new(data));
    check(&doc, 4096);
}

/// The properties every document must have, whatever its content.
pub fn check(doc: &PolicyDocument, input_len: usize) {
    let first = compile(doc);
    let again = compile(doc);
    match (&first, &again) {
        (Err(a), Err(b)) => assert_eq!(a, b, "compiling twice gave different problems"),
        (Ok(a), Ok(b)) => assert_eq!(a.stats(), b.stats(), "compiling twice gave different snapshots"),
        _ => panic!("compiling twice gave different outcomes"),
    }
    match first {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refusal without problems");
            let limit = message_limit(input_len);
            for e in &errors.0 {
                let m = e.to_string();
                assert!(m.len() <= limit, "a {}-byte message for a {input_len}-byte input", m.len());
            }
        }
        Ok(snapshot) => {
            round_trip(doc, &snapshot);
            check_snapshot(doc, &snapshot);
        }
    }
}

/// An accepted document serializes to YAML that parses back to the same
/// document and compiles to the same sizes: what the store persists, it restores.
fn round_trip(doc: &PolicyDocument, snapshot: &PolicySnapshot) {
    let yaml = doc.to_yaml().expect("an accepted document serializes");
    let back = PolicyDocument::from_yaml(&yaml).unwrap_or_else(|e| panic!("its YAML does not parse back: {e}\n{yaml}"));
    assert_eq!(&back, doc, "the YAML round trip changed the document\n{yaml}");
    let again = compile(&back).unwrap_or_else(|e| panic!("the round-tripped document is refused: {e}"));
    assert_eq!(again.stats(), snapshot.stats());
}

fn check_snapshot(doc: &PolicyDocument, s: &PolicySnapshot) {
    assert_eq!(s.pus().len(), doc.processing_units.len());
    // Every PU's own address leads back to it (PU addresses never overlap).
    for pu in &doc.processing_units {
        for a in &pu.addresses {
            let Ok(ip) = a.trim().split('/').next().unwrap_or("").trim().parse::<IpAddr>() else { continue };
            let got = s.pu_by_address(ip).and_then(|id| s.pu(id)).map(|p| &*p.name);
            assert_eq!(got, Some(pu.name.as_str()), "address {a} of {:?}", pu.name);
        }
    }
    // Decisions against directory identities agree with a naive evaluation.
    let rules = NaiveRules::new(doc);
    for (i, pu) in doc.processing_units.iter().enumerate().take(8) {
        let Ok(tags) = TagSet::parse(&pu.tags) else { panic!("accepted PU tags do not parse") };
        for id in doc.identities.iter().take(8) {
            let Ok(remote_tags) = TagSet::parse(&id.tags) else { panic!("accepted identity tags do not parse") };
            for dir in [Direction::Incoming, Direction::Outgoing] {
                for (proto, port) in PROBES {
                    let d = s.decide(PuId(i as u32), dir, Remote::Identity(id.identity), proto, port);
                    let want = rules.decide(&tags, &remote_tags, dir, proto, port);
                    assert_eq!(
                        (d.action, d.reason, d.observed.map(|o| o.action)),
                        want,
                        "pu {:?} identity {} {dir:?} proto {proto} port {port}",
                        pu.name,
                        id.identity
                    );
                    if let Some(r) = d.rule {
                        assert!(s.rule(r).is_some(), "a decision names rule {r:?} the snapshot lacks");
                    }
                }
            }
        }
        // Addresses: only the references are checked (external networks are
        // judged by longest prefix over sets, which the naive model leaves out).
        for n in doc.external_networks.iter().take(4) {
            for c in n.cidrs.iter().take(2) {
                let Ok(ip) = c.trim().split('/').next().unwrap_or("").trim().parse::<IpAddr>() else { continue };
                let d = s.decide(PuId(i as u32), Direction::Outgoing, Remote::Address(ip), 6, 443);
                if let Some(r) = d.rule {
                    assert!(s.rule(r).is_some());
                }
                if let Some(x) = d.external {
                    assert!(s.external_network(x).is_some());
                }
            }
        }
    }
    let unknown = (1..).find(|n| !doc.identities.iter().any(|i| i.identity == *n)).unwrap_or(0);
    if !doc.processing_units.is_empty() && !doc.processing_units.iter().any(|p| p.identity == unknown) {
        let d = s.decide(PuId(0), Direction::Incoming, Remote::Identity(unknown), 6, 80);
        assert_eq!(d.reason, Reason::UnknownIdentity);
    }
    let d = s.decide(PuId(doc.processing_units.len() as u32), Direction::Incoming, Remote::Identity(1), 6, 80);
    assert_eq!(d.reason, Reason::UnknownPu);
}

const PROBES: [(u8, u16); 6] = [(6, 0), (6, 80), (6, 443), (17, 53), (17, 65535), (6, 8080)];

/// The rules as `docs/config.md` states them, evaluated one by one.
struct NaiveRules {
    rules: Vec<(Selector, Direction, Selector, Rule)>,
}

impl NaiveRules {
    fn new(doc: &PolicyDocument) -> NaiveRules {
        let mut rules = Vec::new();
        for rs in &doc.rulesets {
            let subject = Selector::parse(&rs.subject).expect("an accepted subject parses");
            for (dir, list) in [(Direction::Incoming, &rs.incoming), (Direction::Outgoing, &rs.outgoing)] {
                for r in list {
                    let object = Selector::parse(&r.object).expect("an accepted object parses");
                    rules.push((subject.clone(), dir, object, r.clone()));
                }
            }
        }
        NaiveRules { rules }
    }

    /// (enforced action, reason, observed action) for a TCP or UDP connection.
    fn decide(
        &self,
        local: &TagSet,
        remote: &TagSet,
        dir: Direction,
        proto: u8,
        port: u16,
    ) -> (Action, Reason, Option<Action>) {
        let want = if proto == 6 { Protocol::Tcp } else { Protocol::Udp };
        let (mut allow, mut reject, mut obs_allow, mut obs_reject) = (false, false, false, false);
        for (subject, d, object, r) in &self.rules {
            if *d != dir || !subject.matches(local) || !object.matches(remote) {
                continue;
            }
            if !r.protocols.iter().any(|p| *p == want || *p == Protocol::Any) {
                continue;
            }
            if !r.ports.is_empty() && !r.ports.iter().any(|p| port_in(p, port)) {
                continue;
            }
            match (r.observe, r.action) {
                (false, Action::Allow) => allow = true,
                (false, Action::Reject) => reject = true,
                (true, Action::Allow) => obs_allow = true,
                (true, Action::Reject) => obs_reject = true,
            }
        }
        let observed = if obs_reject {
            Some(Action::Reject)
        } else if obs_allow {
            Some(Action::Allow)
        } else {
            None
        };
        if reject {
            (Action::Reject, Reason::PolicyReject, observed)
        } else if allow {
            (Action::Allow, Reason::PolicyAllow, observed)
        } else if observed.is_some() {
            (Action::Reject, Reason::ObservedOnly, observed)
        } else {
            (Action::Reject, Reason::NoMatch, None)
        }
    }
}

fn port_in(p: &PortSpec, port: u16) -> bool {
    let one = |s: &str| s.trim().parse::<u16>().ok();
    match p {
        PortSpec::Number(n) => *n == i64::from(port),
        PortSpec::Text(s) => match s.split_once('-') {
            Some((a, b)) => matches!((one(a), one(b)), (Some(lo), Some(hi)) if lo <= port && port <= hi),
            None => one(s) == Some(port),
        },
    }
}

// ---------------------------------------------------------------------------
// The structured builder

/// Reads choices from the fuzz input; zeros once it is exhausted, so every
/// input builds a finite document.
pub struct Choices<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Choices<'a> {
        Choices { data, at: 0 }
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::from(self.byte()) % n
        }
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())].clone()
    }

    /// A list of up to `max` items.
    fn list<T>(&mut self, max: usize, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let n = self.below(max + 1);
        (0..n).map(|_| f(self)).collect()
    }
}

// Pools: the first `good` entries are valid, the rest are not. In sane mode
// (the input's first byte is even) only valid values are picked and names,
// identities, key ids and PU addresses are made unique, so most documents are
// accepted and reach the snapshot checks; otherwise anything goes.
const NAMES: [&str; 6] = ["a", "b", "web", "db", "", "a b\"c"];
const PEERS: [&str; 4] = ["gw-west", "gw-ops", "gw-east", ""];
const TAG_KEYS: [&str; 4] = ["app", "env", "tier", "ext"];
const TAG_VALUES: [&str; 4] = ["web", "db", "prod", "corp"];
const BAD_TAGS: [&str; 6] = ["app", "=x", "k=", "app=a=b", " env = prod ", "app=web"];
const ATOMS: [&str; 14] = [
    "all()",
    "app == web",
    "app != db",
    "app in {web, db}",
    "env not in {prod}",
    "has(tier)",
    "has(app)",
    "ext == corp",
    "env == 'prod'",
    "app == \"web\"",
    "",
    "app ==",
    "has(",
    "k in {",
];
const GOOD_ATOMS: usize = 10;
const KEYS: [&str; 6] = [
    "rpkk17OQp1XpEndN4If+uJpXXc82EU7P8keCkbzIpBs=",
    "umQsqCzIJ7chq6JxpVuitGLgdyOOKHNoaAAR2rncfu8",
    "2d74402cf6fdd4e4b473d96ae01ef2e7e60873ebad1502372d83f3791bc7c551",
    "2d74402cf6fdd4e4b473d96ae01ef2e7e60873ebad1502372d83f3791bc7c55",
    "not a key",
    "",
];
const GOOD_KEYS: usize = 3;
const KEY_IDS: [u32; 6] = [0, 1, 2, 11, 65535, 65536];
const IDENTITIES: [u32; 6] = [1, 2, 3, 1001, 0, u32::MAX];

impl Choices<'_> {
    fn good<T: Clone>(&mut self, sane: bool, from: &[T], good: usize) -> T {
        if sane {
            self.pick(&from[..good])
        } else {
            self.pick(from)
        }
    }
}

struct Builder {
    sane: bool,
    peers: Vec<String>,
}

impl Builder {
    fn name(&self, c: &mut Choices, i: usize) -> String {
        let n = c.pick(&NAMES);
        if self.sane {
            format!("{}{i}", n.replace(['"', ' '], ""))
        } else {
            n.into()
        }
    }

    fn selector(&self, c: &mut Choices, depth: u32) -> String {
        match c.below(if depth > 3 { 1 } else { 5 }) {
            0 | 1 => c.good(self.sane, &ATOMS, GOOD_ATOMS).to_string(),
            2 => format!("{} && {}", self.selector(c, depth + 1), self.selector(c, depth + 1)),
            3 => format!("({}) || {}", self.selector(c, depth + 1), self.selector(c, depth + 1)),
            _ => format!("!({})", self.selector(c, depth + 1)),
        }
    }

    fn tags(&self, c: &mut Choices) -> Vec<String> {
        let mut out = Vec::new();
        for k in TAG_KEYS {
            if c.below(3) == 0 {
                out.push(format!("{k}={}", c.pick(&TAG_VALUES)));
            }
        }
        if !self.sane && c.below(3) == 0 {
            out.push(c.pick(&BAD_TAGS).into());
        }
        out
    }

    fn address(&self, c: &mut Choices, owner: Option<usize>) -> String {
        if let (true, Some(i)) = (self.sane, owner) {
            // a PU's own block: no two PUs overlap
            return match c.below(3) {
                0 => format!("10.1.{i}.{}", c.below(16)),
                1 => format!("10.1.{i}.{}/28", 16 * (1 + c.below(4))),
                _ => format!("fd00:{i}::{:x}", c.below(8)),
            };
        }
        if self.sane {
            let (a, b) = (c.below(2), c.below(2));
            return match c.below(6) {
                0 => c.pick(&["0.0.0.0/0", "::/0", "10.0.0.0/8", "fd00::/16"]).into(),
                1 => format!("10.{a}.{b}.0/24"),
                2 => format!("10.{a}.0.0/16"),
                3 => format!("10.{a}.{b}.{}", c.below(20)),
                4 => format!("10.{a}.{b}.{}/30", 4 * c.below(8)),
                _ => format!("fd00:{a}::{:x}/128", c.below(8)),
            };
        }
        match c.below(8) {
            0 => c
                .pick(&["10.0.0.1", "10.0.0.0/24", "0.0.0.0/0", "::/0", "fd00::1", "fd00::/64", "::ffff:10.0.0.1"])
                .into(),
            1..=3 => {
                let (b, p) = (c.below(4), c.pick(&[8u8, 24, 30, 32, 31]));
                format!("10.{}.{}.{}/{p}", c.below(2), c.below(2), b * 64 + c.below(3))
            }
            4 | 5 => format!("10.{}.{}.{}", c.below(2), c.below(2), c.below(8)),
            6 => format!("fd00:{}::{:x}/{}", c.below(2), c.below(4), c.pick(&[16u8, 64, 126, 128])),
            _ => c.pick(&["10.0.0.1/33", "10.0.0.256", "fd00::/129", "x", "", " 10.0.0.2 ", "10.0.0.1/-1"]).into(),
        }
    }

    fn port(&self, c: &mut Choices) -> PortSpec {
        match c.below(if self.sane { 4 } else { 6 }) {
            0 => PortSpec::Number(c.pick(&[0, 22, 80, 443, 53, 65535])),
            1 | 2 => {
                let lo = c.pick(&[0u32, 53, 80, 443, 8000, 65000]);
                PortSpec::Text(format!("{lo}-{}", (lo + c.pick(&[0u32, 1, 100, 8080])).min(65535)))
            }
            3 => PortSpec::Text(c.pick(&["80", "443", "0-65535", " 53 "]).into()),
            4 => PortSpec::Text(c.pick(&["90-80", "x", "", "1-", "-", "65536", "80-65536"]).into()),
            _ => PortSpec::Number(i64::from(c.byte()) * 1024 - 512),
        }
    }

    fn protocols(&self, c: &mut Choices) -> Vec<Protocol> {
        if c.below(3) == 0 {
            return vec![Protocol::Any];
        }
        self.list(c, 2, |c| c.pick(&[Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Any]))
    }

    /// Up to `max` items; sane: at least one.
    fn list<T>(&self, c: &mut Choices, max: usize, mut f: impl FnMut(&mut Choices) -> T) -> Vec<T> {
        let mut v = c.list(max, &mut f);
        if self.sane && v.is_empty() {
            v.push(f(c));
        }
        v
    }

    /// Protocols and ports; sane: no ports for icmp-only.
    fn protocols_ports(&self, c: &mut Choices) -> (Vec<Protocol>, Vec<PortSpec>) {
        let protocols = self.protocols(c);
        let mut ports = c.list(2, |c| self.port(c));
        if self.sane && !protocols.iter().any(|p| *p != Protocol::Icmp) && !protocols.is_empty() {
            ports.clear();
        }
        (protocols, ports)
    }

    fn rule(&self, c: &mut Choices, i: usize) -> Rule {
        let (protocols, ports) = self.protocols_ports(c);
        Rule {
            name: self.name(c, i),
            action: if c.flag() { Action::Reject } else { Action::Allow },
            object: self.selector(c, 0),
            protocols,
            ports,
            observe: c.below(4) == 0,
        }
    }

    fn peer_name(&self, c: &mut Choices) -> String {
        if self.sane && !self.peers.is_empty() {
            c.pick(&self.peers)
        } else {
            c.pick(&PEERS).into()
        }
    }
}

fn indexed<T>(c: &mut Choices, max: usize, mut f: impl FnMut(&mut Choices, usize) -> T) -> Vec<T> {
    let n = c.below(max + 1);
    (0..n).map(|i| f(c, i)).collect()
}

/// Builds a document from the choices in `c`.
pub fn build(c: &mut Choices) -> PolicyDocument {
    let sane = c.byte() & 1 == 0;
    let mut b = Builder { sane, peers: Vec::new() };
    let peers = indexed(c, 3, |c, i| Peer {
        name: if sane { PEERS[i].into() } else { c.pick(&PEERS).into() },
        keys: indexed(c, 2, |c, j| {
            let window =
                (c.flag().then(|| c.pick(&[0u64, 10, u64::MAX])), c.flag().then(|| c.pick(&[0u64, 5, u64::MAX])));
            PeerKey {
                id: if sane { 100 + 10 * i as u32 + j as u32 } else { c.pick(&KEY_IDS) },
                public_key: c.good(sane, &KEYS, GOOD_KEYS).into(),
                not_before: if sane { None } else { window.0 },
                not_after: if sane { window.1.filter(|&t| t > 0) } else { window.1 },
            }
        }),
        networks: c.list(2, |c| b.address(c, None)),
        // not chosen: a choice here would shift every later byte of the
        // stored corpora (the compiler's tests cover option_version)
        option_version: None,
    });
    b.peers = peers.iter().filter(|p| !p.keys.is_empty()).map(|p| p.name.clone()).collect();
    let peers = if sane { peers.into_iter().filter(|p| !p.keys.is_empty()).collect() } else { peers };
    let local = c.flag().then(|| {
        let file = c.flag();
        LocalKeys {
            gateway: "gw-self".into(),
            key_id: if sane { 7 } else { c.pick(&KEY_IDS) },
            private_key_file: (file || !sane && c.flag()).then(|| "/etc/gateway/key".into()),
            private_key: (!file || !sane && c.flag()).then(|| c.good(sane, &KEYS, GOOD_KEYS).into()),
            // Not drawn from the choices, so that the committed corpora keep
            // building the documents they were found with.
            not_before: None,
            previous_keys: Vec::new(),
        }
    });
    let processing_units = indexed(c, 5, |c, i| ProcessingUnit {
        name: b.name(c, i),
        tags: b.tags(c),
        addresses: {
            let mut v = b.list(c, 2, |c| b.address(c, Some(i)));
            if sane {
                v.sort();
                v.dedup();
            }
            v
        },
        identity: if sane { 1000 + i as u32 } else { c.pick(&IDENTITIES) },
    });
    let identities = if sane && b.peers.is_empty() {
        Vec::new()
    } else {
        indexed(c, 5, |c, i| IdentityEntry {
            identity: if sane { 2000 + i as u32 } else { c.pick(&IDENTITIES) },
            name: c.flag().then(|| b.name(c, i)),
            tags: b.tags(c),
            peer: b.peer_name(c),
        })
    };
    let rulesets = indexed(c, 3, |c, i| Ruleset {
        name: b.name(c, i),
        subject: b.selector(c, 0),
        incoming: indexed(c, 3, |c, j| b.rule(c, j)),
        outgoing: indexed(c, 3, |c, j| b.rule(c, j)),
    });
    let external_networks = indexed(c, 3, |c, i| {
        let (protocols, ports) = b.protocols_ports(c);
        ExternalNetwork {
            name: b.name(c, i),
            tags: b.tags(c),
            cidrs: b.list(c, 2, |c| b.address(c, None)),
            protocols,
            ports,
            fqdns: c.list(2, |c| c.pick(&["api.example.test", "*.example.test", "a..b", "*", "x.*.y"]).into()),
        }
    });
    let enforcer_profile = if c.flag() {
        EnforcerProfile::default()
    } else {
        EnforcerProfile {
            managed_tcp_networks: c.list(2, |c| b.address(c, None)),
            managed_udp_networks: c.list(2, |c| b.address(c, None)),
            excluded_networks: c.list(1, |c| b.address(c, None)),
            ignore: c.flag().then(|| b.selector(c, 2)),
            layer4_identity: c.flag(),
            stripping_cache_s: if c.flag() { 0 } else { 2 },
            dns_servers: c.flag().then(|| c.list(2, |c| b.address(c, None))),
            fqdn_min_ttl: c.flag().then(|| c.pick(&[0u32, 5, 3600, u32::MAX])),
            fqdn_max_ttl: c.flag().then(|| c.pick(&[0u32, 1, 3600])),
        }
    };
    PolicyDocument {
        revision: c.flag().then(|| c.pick(&["r1", "", "null", "'", "\u{0}", "2024-05-17.3"]).into()),
        local,
        processing_units,
        identities,
        peers,
        rulesets,
        external_networks,
        enforcer_profile,
    }
}
