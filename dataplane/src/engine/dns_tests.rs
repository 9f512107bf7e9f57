//! DNS through the engine: responses from trusted servers become DNS events
//! and teach FQDN networks their addresses; the first connection after the
//! answer is allowed, other names and expired addresses are not; untrusted,
//! unsolicited and malformed responses teach nothing.

use std::sync::Arc;

use super::{Action, Engine, EngineConfig};
use crate::buf::{PacketBuf, VecBuf};
use crate::dns::counters::DnsCount;
use crate::dns::learned::FqdnTable;
use crate::events::{channel, Consumer, DnsRecord, Event};
use crate::flow::TcpFlags;
use crate::stats::WorkerStats;
use crate::wire::builder::{build, Spec};
use crate::wire::ip_proto;
use crate::Side;

const NOW: u64 = 1_700_000_000_000_000_000;
const S: u64 = 1_000_000_000;

const DOC: &str = r#"
processing_units:
  - {name: client, tags: [app=client], addresses: [10.1.0.1, "fd00:1::1"], identity: 1}
rulesets:
  - name: client
    subject: app == client
    outgoing:
      - {name: dns, action: allow, object: ext == dns, protocols: [udp, tcp], ports: [53]}
      - {name: api, action: allow, object: ext == api, protocols: [tcp], ports: [8080]}
external_networks:
  - {name: dns, tags: [ext=dns], cidrs: [10.2.0.0/24, "fd00:2::/64"]}
  - {name: api, tags: [ext=api], fqdns: [api.example.test, "v6.example.test"]}
enforcer_profile:
  managed_tcp_networks: []
  dns_servers: [10.2.0.53/32, "fd00:2::53/128"]
  fqdn_min_ttl: 2
  fqdn_max_ttl: 60
"#;

const A: &[u8] = include_bytes!("../../tests/fixtures/dns/a.bin");
const AAAA: &[u8] = include_bytes!("../../tests/fixtures/dns/aaaa.bin");
const CNAME: &[u8] = include_bytes!("../../tests/fixtures/dns/cname_chain.bin");
const OFF_CHAIN: &[u8] = include_bytes!("../../tests/fixtures/dns/hostile_off_chain.bin");
const LOOP: &[u8] = include_bytes!("../../tests/fixtures/dns/hostile_pointer_loop.bin");

struct Gw {
    engine: Engine,
    cfg: Arc<EngineConfig>,
    events: Consumer,
    stats: Arc<WorkerStats>,
    table: Arc<FqdnTable>,
}

fn ip16(s: &str) -> [u8; 16] {
    match s.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            o
        }
        std::net::IpAddr::V6(a) => a.octets(),
    }
}

/// A query for `name` (type A) with `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(crate::dns::WireName::from_text(name).unwrap().as_bytes());
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

fn id_of(m: &[u8]) -> u16 {
    u16::from_be_bytes([m[0], m[1]])
}

/// One DNS datagram between a client PU and a server, on VLANs `vlans`.
#[derive(Clone, Copy)]
struct Dgram<'a> {
    client: &'a str,
    server: &'a str,
    client_port: u16,
    payload: &'a [u8],
    vlans: &'a [u16],
}

impl Gw {
    fn new() -> Gw {
        let stats = Arc::new(WorkerStats::default());
        let (p, c) = channel(1024);
        let table = Arc::new(FqdnTable::new(1024));
        let mut cfg = EngineConfig::from_yaml(DOC).unwrap_or_else(|e| panic!("{}", crate::problem::lines(&e)));
        cfg.fqdn = Some(table.clone());
        Gw { engine: Engine::new(1024, 7, stats.clone(), Some(p)), cfg: Arc::new(cfg), events: c, stats, table }
    }

    fn pass(&mut self, side: Side, frame: &[u8], now: u64) -> Action {
        let mut b = VecBuf::from_frame(frame);
        let a = self.engine.process(&self.cfg, side, &mut b, now);
        assert!(a != Action::Forward || b.data() == frame, "a forwarded DNS frame is not changed");
        a
    }

    fn udp(&mut self, side: Side, client: &str, server: &str, sport_client: u16, payload: &[u8], now: u64) -> Action {
        let d = Dgram { client, server, client_port: sport_client, payload, vlans: &[] };
        self.udp_spec(side, &d, now)
    }

    fn udp_spec(&mut self, side: Side, d: &Dgram<'_>, now: u64) -> Action {
        let Dgram { client, server, client_port, payload, vlans } = *d;
        let v6 = client.contains(':');
        let (src, dst, sport, dport) = match side {
            Side::Inside => (ip16(client), ip16(server), client_port, 53),
            Side::Outside => (ip16(server), ip16(client), 53, client_port),
        };
        let f = build(&Spec { v6, vlans, src, dst, proto: ip_proto::UDP, sport, dport, payload, ..Spec::default() });
        self.pass(side, &f, now)
    }

    fn syn(&mut self, dst: &str, sport: u16, dport: u16, now: u64) -> Action {
        let v6 = dst.contains(':');
        let src = if v6 { ip16("fd00:1::1") } else { ip16("10.1.0.1") };
        let f = build(&Spec { v6, src, dst: ip16(dst), sport, dport, flags: TcpFlags::SYN, seq: 1, ..Spec::default() });
        self.pass(Side::Inside, &f, now)
    }

    fn dns_events(&mut self) -> Vec<DnsRecord> {
        self.engine.publish_events();
        let mut v = Vec::new();
        self.events.pop_events(1000, |e| {
            if let Event::Dns(d) = e {
                v.push(d)
            }
        });
        v
    }

    fn count(&self, c: DnsCount) -> u64 {
        self.stats.dns.get(c)
    }
}

#[test]
fn a_trusted_answer_allows_the_first_connection_until_its_ttl_ends() {
    let mut g = Gw::new();
    assert_ne!(g.syn("10.9.0.2", 41000, 8080, NOW), Action::Forward, "not learned yet");
    let q = query(id_of(A), "api.example.test");
    assert_eq!(g.udp(Side::Inside, "10.1.0.1", "10.2.0.53", 40000, &q, NOW), Action::Forward);
    assert_eq!(g.udp(Side::Outside, "10.1.0.1", "10.2.0.53", 40000, A, NOW + 1500), Action::Forward);
    let ev = g.dns_events();
    assert_eq!(ev.len(), 1);
    let d = &ev[0];
    assert_eq!(d.qname().to_string(), "api.example.test");
    assert_eq!((d.latency_ns, d.learned, d.rcode()), (Some(1500), 1, 0));
    assert_eq!(d.answers()[0].ip().to_string(), "10.9.0.2");
    assert_eq!((d.client_ip().to_string(), d.server_ip().to_string()), ("10.1.0.1".into(), "10.2.0.53".into()));
    assert_eq!(g.cfg.policy.pu(crate::policy::PuId(d.pu)).unwrap().name.as_ref(), "client");
    assert_eq!((g.count(DnsCount::Queries), g.count(DnsCount::Responses), g.count(DnsCount::Learned)), (1, 1, 1));
    // the very next connection is allowed, on the rule's port only
    assert_eq!(g.syn("10.9.0.2", 41001, 8080, NOW + 2000), Action::Forward);
    assert_ne!(g.syn("10.9.0.2", 41002, 8081, NOW + 2000), Action::Forward);
    // the TTL (300) is clamped to fqdn_max_ttl (60): expired after 60 s
    assert_eq!(g.syn("10.9.0.2", 41003, 8080, NOW + 59 * S), Action::Forward);
    assert_ne!(g.syn("10.9.0.2", 41004, 8080, NOW + 61 * S), Action::Forward, "expired");
    assert_eq!(g.table.entries(NOW + 61 * S).len(), 0);
}

#[test]
fn the_hold_of_each_learning_answer_is_measured() {
    use crate::dns::counters::HOLD_BUCKET_NAMES;
    let mut g = Gw::new();
    // the clock reads 3 µs after the round's `now` the answer came with
    g.engine.set_dns_clock(Box::new(|| NOW + 3_500));
    let q = query(id_of(A), "api.example.test");
    g.udp(Side::Inside, "10.1.0.1", "10.2.0.53", 40000, &q, NOW);
    g.udp(Side::Outside, "10.1.0.1", "10.2.0.53", 40000, A, NOW);
    // an answer that learns nothing (unsolicited) has no hold
    g.udp(Side::Outside, "10.1.0.1", "10.2.0.53", 40000, A, NOW);
    let d = &g.engine.stats.dns;
    let held: Vec<(&str, u64)> =
        HOLD_BUCKET_NAMES.iter().zip(&d.hold).map(|(&n, c)| (n, c.get())).filter(|(_, v)| *v > 0).collect();
    assert_eq!(held, [("hold_lt_4us", 1)]);
    assert_eq!(d.hold_max_ns.get(), 3_500);
    // the bucket edges
    d.hold(999);
    d.hold(1_000);
    d.hold(20_000_000);
    assert_eq!((d.hold[0].get(), d.hold[1].get(), d.hold[14].get()), (1, 1, 1));
    assert_eq!(d.hold_max_ns.get(), 20_000_000);
}

#[test]
fn ipv6_with_a_vlan_and_cname_chains_are_read() {
    let mut g = Gw::new();
    let q = query(id_of(AAAA), "v6.example.test");
    let d = |payload| Dgram { client: "fd00:1::1", server: "fd00:2::53", client_port: 40000, payload, vlans: &[7] };
    assert_eq!(g.udp_spec(Side::Inside, &d(&q), NOW), Action::Forward);
    assert_eq!(g.udp_spec(Side::Outside, &d(AAAA), NOW + 1), Action::Forward);
    assert_eq!(g.syn("fd00:9::2", 41000, 8080, NOW + 2), Action::Forward);
    // a.example.test -> b -> api: logged with its chain; not learned
    // (the pattern is api.example.test, matched on the name asked)
    let q = query(id_of(CNAME), "a.example.test");
    g.udp(Side::Inside, "10.1.0.1", "10.2.0.53", 40001, &q, NOW);
    g.udp(Side::Outside, "10.1.0.1", "10.2.0.53", 40001, CNAME, NOW + 5);
    let ev = g.dns_events();
    assert_eq!(ev.len(), 2);
    let names: Vec<String> = ev[1].names().map(|n| n.to_string()).collect();
    assert_eq!(names, ["a.example.test", "b.example.test", "api.example.test"]);
    assert_eq!((ev[1].n_answers, ev[1].learned), (1, 0));
    assert_ne!(g.syn("10.9.0.2", 41001, 8080, NOW + 6), Action::Forward);
}

#[test]
fn untrusted_unsolicited_off_chain_and_malformed_answers_teach_nothing() {
    let mut g = Gw::new();
    // from a server outside dns_servers (still forwarded: the policy allows it)
    let q = query(id_of(A), "api.example.test");
    g.udp(Side::Inside, "10.1.0.1", "10.2.0.54", 40000, &q, NOW);
    assert_eq!(g.udp(Side::Outside, "10.1.0.1", "10.2.0.54", 40000, A, NOW + 1), Action::Forward);
    assert_eq!(g.count(DnsCount::Untrusted), 1);
    // from the trusted server, but never asked (the query had another id)
    let other = query(id_of(A) ^ 1, "api.example.test");
    g.udp(Side::Inside, "10.1.0.1", "10.2.0.53", 40009, &other, NOW);
    assert_eq!(g.udp(Side::Outside, "10.1.0.1", "10.2.0.53", 40009, A, NOW + 1), Action::Forward);
    assert_eq!(g.count(DnsCount::Unsolicited), 1);
    // asked q.test, answered q.test and (off the chain) evil.test
    let q = query(id_of(OFF_CHAIN), "q.test");
    g.udp(Side::Inside, "10.1.0.1", "10.2.0.53", 40001, &q, NOW);
    g.udp(Side::Outside, "10.1.0.1", "10.2.0.53", 40001, OFF_CHAIN, NOW + 1);
    assert_eq!(g.count(DnsCount::OffChain), 1);
    // a pointer loop
    let q = query(id_of(LOOP), "q.test");
    g.udp(Side::Inside, "10.1.0.1", "10.2.0.53", 40002, &q, NOW);
    assert_eq!(g.udp(Side::Outside, "10.1.0.1", "10.2.0.53", 40002, LOOP, NOW + 1), Action::Forward);
    assert_eq!(g.count(DnsCount::Malformed), 1);
    assert_eq!(g.count(DnsCount::Learned), 0);
    assert_ne!(g.syn("10.9.0.2", 41000, 8080, NOW + 2), Action::Forward);
    let ev = g.dns_events();
    let names: Vec<String> = ev.iter().map(|d| d.qname().to_string()).collect();
    assert_eq!(names, ["api.example.test", "q.test"], "the unsolicited and the off-chain responses are logged");
}

#[test]
fn learned_entries_survive_a_policy_reapply() {
    let mut g = Gw::new();
    let q = query(id_of(A), "api.example.test");
    g.udp(Side::Inside, "10.1.0.1", "10.2.0.53", 40000, &q, NOW);
    g.udp(Side::Outside, "10.1.0.1", "10.2.0.53", 40000, A, NOW + 1);
    // a new configuration (new generation) with the same table
    let mut cfg = EngineConfig::from_yaml(DOC).unwrap();
    cfg.fqdn = Some(g.table.clone());
    g.cfg = Arc::new(cfg);
    assert_eq!(g.syn("10.9.0.2", 41000, 8080, NOW + 2), Action::Forward);
}

#[test]
fn a_dns_response_through_the_engine_allocates_nothing_it_frees_later() {
    // the buffers are reused: what the engine does per response is counted
    let mut g = Gw::new();
    for i in 0..2000u16 {
        let mut a = A.to_vec();
        a[..2].copy_from_slice(&i.to_be_bytes());
        let q = query(i, "api.example.test");
        g.udp(Side::Inside, "10.1.0.1", "10.2.0.53", 40000, &q, NOW + u64::from(i));
        g.udp(Side::Outside, "10.1.0.1", "10.2.0.53", 40000, &a, NOW + u64::from(i) + 1);
    }
    assert_eq!(g.count(DnsCount::Responses), 2000);
    assert_eq!((g.count(DnsCount::Learned), g.count(DnsCount::Refreshed)), (1, 1999));
    let _ = g.dns_events();
}

#[test]
fn dns_over_tcp_is_read_when_a_message_fits_a_segment() {
    const TCP: &[u8] = include_bytes!("../../tests/fixtures/dns/tcp.bin");
    let mut g = Gw::new();
    // client seq 100.., server seq 200..
    let seg = |g: &mut Gw, side: Side, seq: u32, ack: u32, payload: &[u8], now: u64| {
        let (c, s) = (ip16("10.1.0.1"), ip16("10.2.0.53"));
        let (src, dst, sport, dport) = match side {
            Side::Inside => (c, s, 40100, 53),
            Side::Outside => (s, c, 53, 40100),
        };
        let flags = TcpFlags::ACK | TcpFlags::PSH;
        let f = build(&Spec { src, dst, sport, dport, flags, seq, ack, payload, ..Spec::default() });
        g.pass(side, &f, now)
    };
    // the query (length-prefixed), mid-stream: the no-state path allows it by the dns rule
    let id = u16::from_be_bytes([TCP[2], TCP[3]]);
    let mut q = query(id, "multi.example.test");
    q.splice(0..0, (q.len() as u16).to_be_bytes());
    assert_eq!(seg(&mut g, Side::Inside, 100, 200, &q, NOW), Action::Forward);
    // a segment where the response does not start (seq 201: not what the
    // query acknowledged) is not read, whatever it holds
    assert_eq!(seg(&mut g, Side::Outside, 201, 100, TCP, NOW + 6), Action::Forward);
    assert_eq!((g.count(DnsCount::TcpNotStart), g.count(DnsCount::Responses)), (1, 0));
    assert_eq!(seg(&mut g, Side::Outside, 200, 100, TCP, NOW + 7), Action::Forward);
    let ev = g.dns_events();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].proto, ev[0].n_answers, ev[0].latency_ns), (ip_proto::TCP, 2, Some(7)));
    // the next query on the connection; its response split over two
    // segments: the first starts the response but does not hold it (counted
    // dns_tcp_incomplete), the second does not start one (counted
    // dns_tcp_not_message_start): neither is read
    let (cseq, sseq) = (100 + q.len() as u32, 200 + TCP.len() as u32);
    assert_eq!(seg(&mut g, Side::Inside, cseq, sseq, &q, NOW + 8), Action::Forward);
    assert_eq!(seg(&mut g, Side::Outside, sseq, cseq + q.len() as u32, &TCP[..20], NOW + 9), Action::Forward);
    assert_eq!(seg(&mut g, Side::Outside, sseq + 20, cseq + q.len() as u32, &TCP[20..], NOW + 9), Action::Forward);
    assert_eq!(g.count(DnsCount::TcpIncomplete), 1);
    assert_eq!((g.count(DnsCount::TcpNotStart), g.count(DnsCount::Responses)), (2, 1));
    assert!(g.dns_events().is_empty());
}
