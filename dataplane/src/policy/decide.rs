//! The decision functions the per-packet glue calls on a [`PolicySnapshot`].
//!
//! None of them allocates, evaluates a selector or touches a string:
//! `classify` is a few LPM lookups, `decide` one hash lookup plus a scan of a
//! short entry list, `identity_allowed_for_peer` two hash lookups.

use std::net::IpAddr;

use super::snapshot::{
    verdict_key, Entry, PolicySnapshot, F_OBSERVE, F_REJECT, KIND_EXTERNAL, KIND_IDENTITY, NO_EXT, P_ICMP, P_OTHER,
    P_TCP, P_UDP,
};
use super::{Action, Classification, Decision, Direction, ExtNetRef, Observed, PuId, Reason, Remote, RuleRef};
use crate::wire::ip_proto;
use crate::Side;

#[inline]
fn proto_bit(proto: u8) -> u8 {
    match proto {
        ip_proto::TCP => P_TCP,
        ip_proto::UDP => P_UDP,
        ip_proto::ICMP | ip_proto::ICMPV6 => P_ICMP,
        _ => P_OTHER,
    }
}

impl PolicySnapshot {
    /// Classifies a packet by its addresses. `side` is the port it arrived on:
    /// from `Inside` the local end is `src`, from `Outside` it is `dst`.
    ///
    /// Order: excluded networks (either end) first, then the local PU lookup,
    /// then the ignore selector, then the managed networks of the remote end.
    #[inline]
    pub fn classify(&self, side: Side, src: IpAddr, dst: IpAddr) -> Classification {
        let (local, remote) = match side {
            Side::Inside => (src, dst),
            Side::Outside => (dst, src),
        };
        if self.excluded.lookup(remote).is_some() || self.excluded.lookup(local).is_some() {
            return Classification::Excluded;
        }
        let Some(pu) = self.pu_addresses.lookup(local) else {
            return Classification::NotLocal;
        };
        if self.pus[pu as usize].ignored {
            return Classification::Ignored;
        }
        Classification::LocalPu {
            pu: PuId(pu),
            managed_tcp: self.managed_tcp.lookup(remote).is_some(),
            managed_udp: self.managed_udp.lookup(remote).is_some(),
        }
    }

    /// The local PU owning `addr`, ignoring exclusions and the ignore selector.
    #[inline]
    pub fn pu_by_address(&self, addr: IpAddr) -> Option<PuId> {
        self.pu_addresses.lookup(addr).map(PuId)
    }

    /// Decides a connection of local PU `pu` with `remote`, for IP protocol
    /// `proto` and the server's port `port` (the destination port of the
    /// connection's first packet; ignored for protocols without ports).
    ///
    /// `Outgoing` judges the PU's outgoing rules (it is the client), `Incoming`
    /// its incoming rules (it is the server).
    #[inline]
    pub fn decide(&self, pu: PuId, dir: Direction, remote: Remote, proto: u8, port: u16) -> Decision {
        match self.verdict_list(pu, dir, remote) {
            Ok((entries, external)) => evaluate(entries, proto, port, external),
            Err(reason) => Decision::implicit(reason),
        }
    }

    /// Why [`PolicySnapshot::decide`] decides what it does: its decision
    /// (the same call) and every rule of the verdict list it scans that
    /// matches the protocol and port, enforced and observe, in the order the
    /// scan meets them (the first enforced one decides).
    pub fn explain(&self, pu: PuId, dir: Direction, remote: Remote, proto: u8, port: u16) -> Explanation {
        let decision = self.decide(pu, dir, remote, proto, port);
        let mut matching: Vec<Matched> = Vec::new();
        if let Ok((entries, _)) = self.verdict_list(pu, dir, remote) {
            let (bit, has_ports) = proto_match(proto);
            for e in entries.iter().filter(|e| entry_matches(e, bit, has_ports, port)) {
                let m = Matched {
                    rule: RuleRef(e.rule),
                    external: (e.ext != NO_EXT).then_some(ExtNetRef(e.ext)),
                    action: entry_action(e),
                    observe: e.flags & F_OBSERVE != 0,
                };
                // A rule's port ranges are entries of their own: listed once.
                if !matching.iter().any(|x| x.rule == m.rule) {
                    matching.push(m);
                }
            }
        }
        Explanation { decision, matching }
    }

    /// The verdict list `decide` scans for `pu` and `remote` in `dir`, and
    /// whether the remote is judged by address; or the reason there is none.
    #[inline(always)]
    fn verdict_list(&self, pu: PuId, dir: Direction, remote: Remote) -> Result<(&[Entry], bool), Reason> {
        let Some(p) = self.pus.get(pu.0 as usize) else {
            return Err(Reason::UnknownPu);
        };
        let (list, external) = match remote {
            Remote::Identity(id) => {
                let Some(&i) = self.identity_index.get(&id) else {
                    return Err(Reason::UnknownIdentity);
                };
                let class = self.identities[i as usize].class;
                let r = match self.verdicts.get(&verdict_key(dir, KIND_IDENTITY, p.class, class)) {
                    Some(&r) => r,
                    None => self.defaults[2 * p.class as usize + dir as usize],
                };
                (r, false)
            }
            Remote::Address(ip) => {
                let r = self
                    .ext_lpm
                    .lookup(ip)
                    .and_then(|set| self.verdicts.get(&verdict_key(dir, KIND_EXTERNAL, p.class, set)).copied())
                    .unwrap_or((0, 0));
                (r, true)
            }
        };
        Ok((&self.entries[list.0 as usize..(list.0 + list.1) as usize], external))
    }

    /// The peer gateway (index in [`PolicySnapshot::peers`]) whose
    /// `networks` contain `addr` (longest prefix wins).
    #[inline]
    pub fn peer_for(&self, addr: IpAddr) -> Option<u32> {
        self.peer_networks.lookup(addr)
    }

    /// The peer (index) that may claim `identity`, per the directory.
    #[inline]
    pub fn identity_peer(&self, identity: u32) -> Option<u32> {
        self.identity_index.get(&identity).map(|&i| self.identities[i as usize].peer)
    }

    /// Whether the peer owning `key_id` may claim `identity` (the directory's
    /// `peer` of the identity is that peer). Unknown key or identity: `false`.
    /// `key_id` is the peer's own 16-bit key id (`peers[].keys[].id`), i.e.
    /// the high 16 bits of the option's 24-bit key id.
    #[inline]
    pub fn identity_allowed_for_peer(&self, identity: u32, key_id: u32) -> bool {
        match (self.identity_index.get(&identity), self.key_index.get(&key_id)) {
            (Some(&i), Some(&p)) => self.identities[i as usize].peer == p,
            _ => false,
        }
    }
}

/// What [`PolicySnapshot::explain`] finds.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// What `decide` decides.
    pub decision: Decision,
    /// Every rule that matches (enforced and observe), each once.
    pub matching: Vec<Matched>,
}

/// A rule that matches a connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matched {
    pub rule: RuleRef,
    /// The external network it matched through, for an address.
    pub external: Option<ExtNetRef>,
    pub action: Action,
    pub observe: bool,
}

/// The protocol's bit, and whether it has ports.
#[inline(always)]
fn proto_match(proto: u8) -> (u8, bool) {
    let bit = proto_bit(proto);
    (bit, bit & (P_TCP | P_UDP) != 0)
}

/// Whether a verdict-list entry covers the protocol and port (the one test
/// `decide` and `explain` share).
#[inline(always)]
fn entry_matches(e: &Entry, bit: u8, has_ports: bool, port: u16) -> bool {
    e.protos & bit != 0 && if has_ports { e.lo <= port && port <= e.hi } else { e.lo == 0 && e.hi == u16::MAX }
}

#[inline(always)]
fn entry_action(e: &Entry) -> Action {
    if e.flags & F_REJECT != 0 {
        Action::Reject
    } else {
        Action::Allow
    }
}

/// The decision of external-network set `set`'s verdict list for subject
/// class `class` (an address learned for an FQDN network: `policy::dns`).
pub(crate) fn evaluate_external(
    s: &PolicySnapshot,
    class: u32,
    dir: Direction,
    set: u32,
    proto: u8,
    port: u16,
) -> Decision {
    let list = s.verdicts.get(&verdict_key(dir, KIND_EXTERNAL, class, set)).copied().unwrap_or((0, 0));
    let entries = s.entries.get(list.0 as usize..(list.0 + list.1) as usize).unwrap_or(&[]);
    evaluate(entries, proto, port, true)
}

/// Scans a verdict list (sorted: enforced before observed, reject before allow).
#[inline]
fn evaluate(entries: &[Entry], proto: u8, port: u16, external: bool) -> Decision {
    let (bit, has_ports) = proto_match(proto);
    let mut enforced: Option<&Entry> = None;
    let mut observed: Option<&Entry> = None;
    for e in entries {
        if !entry_matches(e, bit, has_ports, port) {
            continue;
        }
        if e.flags & F_OBSERVE != 0 {
            observed = Some(e);
            break; // observed entries come last; the first is the strongest
        } else if enforced.is_none() {
            enforced = Some(e);
        }
    }
    let ext = |e: &Entry| (e.ext != NO_EXT).then_some(ExtNetRef(e.ext));
    let action = entry_action;
    let observed = observed.map(|e| Observed { action: action(e), rule: RuleRef(e.rule), external: ext(e) });
    match enforced {
        Some(e) => {
            let a = action(e);
            let reason = match (a, external) {
                (Action::Allow, false) => Reason::PolicyAllow,
                (Action::Reject, false) => Reason::PolicyReject,
                (Action::Allow, true) => Reason::ExternalNetworkAllow,
                (Action::Reject, true) => Reason::ExternalNetworkReject,
            };
            Decision { action: a, rule: Some(RuleRef(e.rule)), external: ext(e), observed, reason }
        }
        None => Decision {
            action: Action::Reject,
            rule: None,
            external: None,
            observed,
            reason: if observed.is_some() { Reason::ObservedOnly } else { Reason::NoMatch },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{self, PolicyDocument, PortSpec, Protocol};
    use crate::policy::{compile, Selector, TagSet};

    const EXAMPLE: &str = include_str!("../../../docs/examples/policy.yaml");

    fn example() -> PolicySnapshot {
        let doc = PolicyDocument::from_yaml(EXAMPLE).expect("example parses");
        compile(&doc).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pu(s: &PolicySnapshot, name: &str) -> PuId {
        PuId(s.pus().iter().position(|p| &*p.name == name).unwrap() as u32)
    }

    fn rule_name(s: &PolicySnapshot, d: &Decision) -> Option<String> {
        d.rule.map(|r| {
            let r = s.rule(r).unwrap();
            format!("{}/{}/{}", r.ruleset, r.direction.name(), r.name)
        })
    }

    #[test]
    fn example_classifies() {
        let s = example();
        let web1 = pu(&s, "web-1");
        assert_eq!(
            s.classify(Side::Inside, ip("10.1.0.10"), ip("10.2.0.5")),
            Classification::LocalPu { pu: web1, managed_tcp: true, managed_udp: false }
        );
        assert_eq!(
            s.classify(Side::Outside, ip("10.20.0.5"), ip("10.1.0.10")),
            Classification::LocalPu { pu: web1, managed_tcp: true, managed_udp: true }
        );
        assert_eq!(
            s.classify(Side::Inside, ip("10.1.0.10"), ip("8.8.8.8")),
            Classification::LocalPu { pu: web1, managed_tcp: false, managed_udp: false }
        );
        assert_eq!(
            s.classify(Side::Outside, ip("fd00:2::1"), ip("fd00:1::10")),
            Classification::LocalPu { pu: web1, managed_tcp: true, managed_udp: false }
        );
        assert_eq!(
            s.classify(Side::Inside, ip("10.1.1.7"), ip("10.2.0.5")),
            Classification::LocalPu { pu: pu(&s, "db-1"), managed_tcp: true, managed_udp: false }
        );
        assert_eq!(s.classify(Side::Inside, ip("10.1.2.5"), ip("10.2.0.5")), Classification::Ignored);
        assert_eq!(s.classify(Side::Inside, ip("10.1.0.10"), ip("169.254.169.254")), Classification::Excluded);
        assert_eq!(s.classify(Side::Outside, ip("10.255.0.1"), ip("10.1.0.10")), Classification::Excluded);
        assert_eq!(s.classify(Side::Inside, ip("10.9.9.9"), ip("10.1.0.10")), Classification::NotLocal);
        // Inside/outside matter: 10.1.0.10 is the remote here.
        assert_eq!(s.classify(Side::Outside, ip("10.1.0.10"), ip("10.9.9.9")), Classification::NotLocal);
        assert_eq!(s.pu_by_address(ip("10.1.1.15")), Some(pu(&s, "db-1")));
        assert_eq!(s.pu_by_address(ip("10.1.1.16")), None);
    }

    #[test]
    fn example_decides_identities() {
        let s = example();
        let (web1, db1) = (pu(&s, "web-1"), pu(&s, "db-1"));
        let d = s.decide(web1, Direction::Incoming, Remote::Identity(2001), ip_proto::TCP, 443);
        assert_eq!((d.action, d.reason, d.observed), (Action::Allow, Reason::PolicyAllow, None));
        assert_eq!(rule_name(&s, &d).unwrap(), "web/incoming/frontends-https");
        let d = s.decide(web1, Direction::Incoming, Remote::Identity(2002), ip_proto::TCP, 8443);
        assert_eq!(d.action, Action::Allow);
        // Port not allowed: implicit reject.
        let d = s.decide(web1, Direction::Incoming, Remote::Identity(2001), ip_proto::TCP, 80);
        assert_eq!(d, Decision::implicit(Reason::NoMatch));
        // Not a frontend, matches only the observed reject.
        let d = s.decide(web1, Direction::Incoming, Remote::Identity(2003), ip_proto::TCP, 443);
        assert_eq!((d.action, d.reason, d.rule), (Action::Reject, Reason::ObservedOnly, None));
        let o = d.observed.unwrap();
        assert_eq!(o.action, Action::Reject);
        assert_eq!(s.rule(o.rule).unwrap().name.as_ref(), "audit-dev");
        // The all() ruleset applies to every PU.
        let d = s.decide(web1, Direction::Incoming, Remote::Identity(3001), ip_proto::TCP, 9101);
        assert_eq!(rule_name(&s, &d).unwrap(), "monitoring/incoming/node-exporter");
        let d = s.decide(web1, Direction::Incoming, Remote::Identity(3001), ip_proto::TCP, 9103);
        assert_eq!(d.reason, Reason::NoMatch);
        let d = s.decide(db1, Direction::Incoming, Remote::Identity(2001), ip_proto::ICMP, 0);
        assert_eq!(rule_name(&s, &d).unwrap(), "monitoring/incoming/ping");
        // ICMP does not match port-restricted rules.
        let d = s.decide(web1, Direction::Incoming, Remote::Identity(2001), ip_proto::ICMPV6, 443);
        assert_eq!(rule_name(&s, &d).unwrap(), "monitoring/incoming/ping");
        let d = s.decide(db1, Direction::Incoming, Remote::Identity(2001), ip_proto::TCP, 5432);
        assert_eq!(rule_name(&s, &d).unwrap(), "db/incoming/shop-clients");
        // Reject wins over allow (batch is env=dev).
        let d = s.decide(db1, Direction::Incoming, Remote::Identity(2003), ip_proto::TCP, 5432);
        assert_eq!((d.action, d.reason), (Action::Reject, Reason::PolicyReject));
        assert_eq!(rule_name(&s, &d).unwrap(), "db/incoming/no-dev");
        // `env != prod` also matches identities without an env tag.
        let d = s.decide(db1, Direction::Incoming, Remote::Identity(3001), ip_proto::TCP, 9100);
        assert_eq!(rule_name(&s, &d).unwrap(), "db/incoming/no-dev");
        // Outgoing rules are separate.
        let d = s.decide(web1, Direction::Outgoing, Remote::Identity(2001), ip_proto::TCP, 443);
        assert_eq!(d.reason, Reason::NoMatch);
        let d = s.decide(web1, Direction::Incoming, Remote::Identity(4242), ip_proto::TCP, 443);
        assert_eq!(d, Decision::implicit(Reason::UnknownIdentity));
        let d = s.decide(PuId(99), Direction::Incoming, Remote::Identity(2001), ip_proto::TCP, 443);
        assert_eq!(d, Decision::implicit(Reason::UnknownPu));
    }

    #[test]
    fn example_decides_external_networks() {
        let s = example();
        let web1 = pu(&s, "web-1");
        let ext = |d: &Decision| d.external.map(|x| s.external_network(x).unwrap().name.to_string());
        let d = s.decide(web1, Direction::Outgoing, Remote::Address(ip("10.0.0.53")), ip_proto::UDP, 53);
        assert_eq!((d.action, d.reason), (Action::Allow, Reason::ExternalNetworkAllow));
        assert_eq!(rule_name(&s, &d).unwrap(), "web/outgoing/dns");
        assert_eq!(ext(&d).unwrap(), "dns-resolvers");
        // The resolver is also "internet", where tcp/443 is allowed.
        let d = s.decide(web1, Direction::Outgoing, Remote::Address(ip("10.0.0.53")), ip_proto::TCP, 443);
        assert_eq!(rule_name(&s, &d).unwrap(), "web/outgoing/payment-api");
        assert_eq!(ext(&d).unwrap(), "internet");
        // dns-resolvers only covers port 53, so the dns rule cannot match elsewhere.
        let d = s.decide(web1, Direction::Outgoing, Remote::Address(ip("10.0.0.53")), ip_proto::UDP, 54);
        assert_eq!(d.reason, Reason::NoMatch);
        let d = s.decide(web1, Direction::Outgoing, Remote::Address(ip("8.8.8.8")), ip_proto::UDP, 53);
        assert_eq!(d.reason, Reason::NoMatch);
        let d = s.decide(web1, Direction::Outgoing, Remote::Address(ip("2001:db8::1")), ip_proto::TCP, 443);
        assert_eq!(ext(&d).unwrap(), "internet");
        let d = s.decide(web1, Direction::Incoming, Remote::Address(ip("172.16.5.5")), ip_proto::TCP, 443);
        assert_eq!(rule_name(&s, &d).unwrap(), "web/incoming/office-https");
        assert_eq!(ext(&d).unwrap(), "corp-office");
        let d = s.decide(web1, Direction::Incoming, Remote::Address(ip("172.16.5.5")), ip_proto::ICMP, 0);
        assert_eq!(rule_name(&s, &d).unwrap(), "monitoring/incoming/ping");
        let d = s.decide(web1, Direction::Incoming, Remote::Address(ip("8.8.8.8")), ip_proto::ICMP, 0);
        assert_eq!(d.reason, Reason::NoMatch);
    }

    #[test]
    fn example_keys_and_peers() {
        let s = example();
        assert!(s.identity_allowed_for_peer(2001, 21));
        assert!(s.identity_allowed_for_peer(2001, 22));
        assert!(!s.identity_allowed_for_peer(2001, 31));
        assert!(s.identity_allowed_for_peer(3001, 31));
        assert!(!s.identity_allowed_for_peer(9999, 21));
        assert!(!s.identity_allowed_for_peer(2001, 99));
        // Local PU identities are not claimable by peers.
        assert!(!s.identity_allowed_for_peer(1001, 21));
        let (peer, key) = s.peer_key(31).unwrap();
        assert_eq!(&*peer.name, "gw-ops");
        assert_eq!(key[0], 0x2d);
        assert_eq!(s.local().unwrap().key_id, 11);
        assert_eq!(s.revision(), Some("2024-05-17.3"));
        assert_eq!(s.identity(2003).unwrap().tags.get("env"), Some("dev"));
    }

    // ---- Compiled decisions against a direct evaluation of every rule.

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
            &v[(self.next() % v.len() as u64) as usize]
        }
    }

    fn random_doc(rng: &mut Rng) -> PolicyDocument {
        let keys = ["app", "env", "team"];
        let vals = ["a", "b", "c"];
        let tags = |rng: &mut Rng| -> Vec<String> {
            let mut out = Vec::new();
            for k in keys {
                if !rng.next().is_multiple_of(4) {
                    out.push(format!("{k}={}", rng.pick(&vals)));
                }
            }
            out
        };
        let sels = [
            "all()",
            "app == a",
            "app != a",
            "env in {a, b}",
            "env not in {a}",
            "has(team)",
            "!has(env)",
            "app == a && env == b",
            "app == b || team == c",
            "(app == c || env == c) && !(team == a)",
            "team == a && has(app)",
            "ext == x",
            "ext == y || app == a",
            "zone in {in, out}",
        ];
        let mut doc = PolicyDocument::default();
        doc.peers.push(model::Peer {
            name: "p".into(),
            keys: vec![model::PeerKey { id: 1, public_key: "00".repeat(32), not_before: None, not_after: None }],
            networks: vec![],
            option_version: None,
        });
        for i in 0..6 {
            doc.processing_units.push(model::ProcessingUnit {
                name: format!("pu{i}"),
                tags: tags(rng),
                addresses: vec![format!("10.0.{i}.0/24")],
                identity: 100 + i,
            });
        }
        for i in 0..40 {
            doc.identities.push(model::IdentityEntry {
                identity: 1000 + i,
                name: None,
                tags: tags(rng),
                peer: "p".into(),
            });
        }
        let ext_tags = [vec!["ext=x"], vec!["ext=y", "zone=in"], vec!["zone=out"]];
        let ext_cidrs = [vec!["0.0.0.0/0"], vec!["10.9.0.0/16", "192.168.1.0/24"], vec!["10.9.1.0/24"]];
        for i in 0..3 {
            doc.external_networks.push(model::ExternalNetwork {
                name: format!("x{i}"),
                tags: ext_tags[i].iter().map(|s| s.to_string()).collect(),
                cidrs: ext_cidrs[i].iter().map(|s| s.to_string()).collect(),
                protocols: if i == 1 { vec![Protocol::Tcp] } else { vec![Protocol::Any] },
                ports: if i == 2 { vec![PortSpec::Text("20-30".into())] } else { vec![] },
                fqdns: vec![],
            });
        }
        let rule = |rng: &mut Rng, n: usize| model::Rule {
            name: format!("r{n}"),
            action: if rng.next().is_multiple_of(3) { Action::Reject } else { Action::Allow },
            object: rng.pick(&sels).to_string(),
            protocols: rng
                .pick(&[vec![Protocol::Any], vec![Protocol::Tcp], vec![Protocol::Udp, Protocol::Icmp]])
                .clone(),
            ports: rng
                .pick(&[vec![], vec![PortSpec::Number(25)], vec![PortSpec::Text("10-40".into()), PortSpec::Number(80)]])
                .clone(),
            observe: rng.next().is_multiple_of(5),
        };
        for i in 0..8 {
            let inc = (0..rng.next() % 5).map(|n| rule(rng, n as usize)).collect();
            let out = (0..rng.next() % 5).map(|n| rule(rng, n as usize)).collect();
            doc.rulesets.push(model::Ruleset {
                name: format!("rs{i}"),
                subject: rng.pick(&sels).to_string(),
                incoming: inc,
                outgoing: out,
            });
        }
        doc
    }

    /// What direct evaluation finds: the action, the (ruleset, rule) of the
    /// enforced rule that decided, and the observed rule's action and place.
    type Naive = (Action, Option<(usize, usize)>, Option<(Action, (usize, usize))>);

    /// Direct evaluation: every rule, in document order.
    fn naive(doc: &PolicyDocument, pu: usize, dir: Direction, remote: Remote, proto: u8, port: u16) -> Naive {
        let put = TagSet::parse(&doc.processing_units[pu].tags).unwrap();
        let pmatch = |protos: &[Protocol], ports: &[PortSpec]| {
            let pb = proto_bit(proto);
            let protos_ok = protos.iter().any(|p| match p {
                Protocol::Any => true,
                Protocol::Tcp => pb == P_TCP,
                Protocol::Udp => pb == P_UDP,
                Protocol::Icmp => pb == P_ICMP,
            });
            let has_ports = pb & (P_TCP | P_UDP) != 0;
            let ports_ok = ports.is_empty()
                || has_ports
                    && ports.iter().any(|p| {
                        let (lo, hi) = match p {
                            PortSpec::Number(n) => (*n as u16, *n as u16),
                            PortSpec::Text(t) => {
                                let (a, b) = t.split_once('-').unwrap();
                                (a.parse().unwrap(), b.parse().unwrap())
                            }
                        };
                        lo <= port && port <= hi
                    });
            protos_ok && ports_ok
        };
        // candidate (flags, rule global order) list
        let mut hits: Vec<(bool, bool, (usize, usize))> = Vec::new(); // (observe, reject, (ruleset, rule))
        for (ri, rs) in doc.rulesets.iter().enumerate() {
            if !Selector::parse(&rs.subject).unwrap().matches(&put) {
                continue;
            }
            let list = if dir == Direction::Incoming { &rs.incoming } else { &rs.outgoing };
            for (j, r) in list.iter().enumerate() {
                let obj = Selector::parse(&r.object).unwrap();
                let m = match remote {
                    Remote::Identity(id) => {
                        let e = doc.identities.iter().find(|e| e.identity == id).unwrap();
                        obj.matches(&TagSet::parse(&e.tags).unwrap()) && pmatch(&r.protocols, &r.ports)
                    }
                    Remote::Address(a) => doc.external_networks.iter().any(|x| {
                        x.cidrs.iter().any(|c| {
                            let (net, len) = c.split_once('/').unwrap();
                            let (net, len): (std::net::Ipv4Addr, u32) = (net.parse().unwrap(), len.parse().unwrap());
                            let IpAddr::V4(a) = a else { return false };
                            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                            u32::from(a) & mask == u32::from(net)
                        }) && pmatch(&x.protocols, &x.ports)
                            && obj.matches(&TagSet::parse(&x.tags).unwrap())
                            && pmatch(&r.protocols, &r.ports)
                    }),
                };
                if m {
                    hits.push((r.observe, r.action == Action::Reject, (ri, j)));
                }
            }
        }
        let best = |observe: bool| {
            hits.iter()
                .filter(|h| h.0 == observe && h.1)
                .chain(hits.iter().filter(|h| h.0 == observe && !h.1))
                .next()
                .map(|h| (if h.1 { Action::Reject } else { Action::Allow }, h.2))
        };
        let enforced = best(false);
        (enforced.map_or(Action::Reject, |e| e.0), enforced.map(|e| e.1), best(true))
    }

    #[test]
    fn compiled_matches_direct_evaluation() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for _round in 0..12 {
            let doc = random_doc(&mut rng);
            let s = compile(&doc).unwrap_or_else(|e| panic!("{e}"));
            let locate = |r: RuleRef| {
                let info = s.rule(r).unwrap();
                let rs = doc.rulesets.iter().position(|x| *x.name == *info.ruleset).unwrap();
                (rs, info.index as usize)
            };
            let remotes: Vec<Remote> = (0..40)
                .map(|i| Remote::Identity(1000 + i))
                .chain(["10.9.1.1", "10.9.2.2", "192.168.1.9", "8.8.8.8"].iter().map(|a| Remote::Address(ip(a))))
                .collect();
            for p in 0..doc.processing_units.len() {
                for dir in [Direction::Incoming, Direction::Outgoing] {
                    for &remote in &remotes {
                        for (proto, port) in [(6, 25), (6, 80), (17, 25), (17, 35), (1, 0), (6, 1000), (47, 0)] {
                            let d = s.decide(PuId(p as u32), dir, remote, proto, port);
                            let (a, rule, obs) = naive(&doc, p, dir, remote, proto, port);
                            let ctx = format!("pu{p} {dir:?} {remote:?} {proto}/{port}: {d:?}");
                            assert_eq!(d.action, a, "{ctx}");
                            assert_eq!(d.rule.map(locate), rule, "{ctx}");
                            assert_eq!(d.observed.map(|o| (o.action, locate(o.rule))), obs, "{ctx}");
                        }
                    }
                }
            }
        }
    }

    /// `explain` gives `decide`'s decision, and its deciding and observe
    /// rules are among the matching ones, the deciding one the first
    /// enforced; every matching rule covers the protocol.
    #[test]
    fn explain_agrees_with_decide_everywhere_in_the_example() {
        let s = example();
        let ids: Vec<u32> = s.identities.iter().map(|x| x.identity).chain([4242]).collect();
        let mut seen_several = false;
        for pu in 0..s.pus().len() as u32 {
            for dir in [Direction::Incoming, Direction::Outgoing] {
                let remotes = ids
                    .iter()
                    .map(|&i| Remote::Identity(i))
                    .chain(["203.0.113.9", "10.50.1.1", "192.168.1.1"].map(|a| Remote::Address(ip(a))));
                for remote in remotes {
                    for (proto, port) in [(6, 443), (6, 8443), (6, 22), (17, 53), (1, 0)] {
                        let e = s.explain(PuId(pu), dir, remote, proto, port);
                        let d = s.decide(PuId(pu), dir, remote, proto, port);
                        assert_eq!(e.decision, d);
                        let first_enforced = e.matching.iter().find(|m| !m.observe).map(|m| m.rule);
                        assert_eq!(d.rule, first_enforced, "{pu} {dir:?} {remote:?} {proto}/{port}");
                        if let Some(o) = d.observed {
                            assert!(e.matching.iter().any(|m| m.observe && m.rule == o.rule));
                        }
                        seen_several |= e.matching.len() > 1;
                    }
                }
            }
        }
        assert!(seen_several, "some connection matches several rules");
        let e = s.explain(PuId(999), Direction::Incoming, Remote::Identity(1), 6, 80);
        assert_eq!((e.decision.reason, e.matching.len()), (Reason::UnknownPu, 0));
    }
}
