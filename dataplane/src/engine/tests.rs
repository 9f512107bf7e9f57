//! Two engines in one process: gateway A (clients) and gateway B (servers)
//! with complementary policy documents; frames are built with the wire
//! builders and carried A → B and back by hand.

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::buf::{PacketBuf, VecBuf};
use crate::engine::test_harness::Counted;
use crate::events::{channel, Consumer, EventKind, FlowRecord};
use crate::flow::{FlowKey, FlowState};
use crate::identity::{GatewayKeyPair, KeyId};
use crate::policy::{Reason, RuleRef};
use crate::stats::{Note, WorkerStats};
use crate::wire::builder::{build, Spec};
use crate::wire::tcp::flags as tf;
use crate::wire::{self, parse_frame, Addr};
use crate::Side;

pub(super) const NOW: u64 = 2_000 * 1_000_000_000; // Unix ns

pub(super) fn hex(b: [u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn public(secret: u8) -> String {
    hex(GatewayKeyPair::from_secret_bytes(0, [secret; 32]).public())
}

pub(super) fn doc_a(key_id: u32, secret: u8) -> String {
    doc_a_local(&format!("{{gateway: gw-a, key_id: {key_id}, private_key: \"{}\"}}", hex([secret; 32])))
}

/// Gateway A's head, shared by the TCP and UDP tests' documents: `local`
/// as given (a YAML flow mapping), PUs client and batch, identities web and
/// db of peer gw-b.
pub(super) fn a_head(local: &str) -> String {
    format!(
        r#"
local: {local}
processing_units:
  - {{name: client, tags: [app=frontend], addresses: [10.1.0.10, "fd00:1::10"], identity: 1001}}
  - {{name: batch, tags: [app=batch], addresses: [10.1.0.11], identity: 1002}}
identities:
  - {{identity: 2001, name: web, tags: [app=web], peer: gw-b}}
  - {{identity: 2002, name: db, tags: [app=db], peer: gw-b}}
peers:
  - {{name: gw-b, keys: [{{id: 2, public_key: "{pb}"}}], networks: [10.2.0.0/16, "fd00:2::/64"]}}
"#,
        pb = public(2)
    )
}

/// Gateway B's head (key 2, PUs web and db, identities client and batch of
/// peer gw-a); its peers follow.
pub(super) fn b_head() -> String {
    format!(
        r#"
local: {{gateway: gw-b, key_id: 2, private_key: "{sk}"}}
processing_units:
  - {{name: web, tags: [app=web], addresses: [10.2.0.20, "fd00:2::20"], identity: 2001}}
  - {{name: db, tags: [app=db], addresses: [10.2.0.30], identity: 2002}}
identities:
  - {{identity: 1001, name: client, tags: [app=frontend], peer: gw-a}}
  - {{identity: 1002, name: batch, tags: [app=batch], peer: gw-a}}
"#,
        sk = hex([2; 32])
    )
}

/// A with `local` as given (a YAML flow mapping).
fn doc_a_local(local: &str) -> String {
    a_head(local)
        + r#"rulesets:
  - name: front
    subject: all()
    outgoing:
      - {name: to-web, action: allow, object: app == web, protocols: [tcp], ports: [80]}
      - {name: no-db, action: reject, object: app == db}
      - {name: internet-https, action: allow, object: ext == internet, protocols: [tcp, udp], ports: [443]}
external_networks:
  - {name: internet, tags: [ext=internet], cidrs: [0.0.0.0/0, "::/0"]}
enforcer_profile:
  managed_tcp_networks: [10.0.0.0/8, "fd00::/8"]
  excluded_networks: [10.9.0.0/16]
"#
}

/// B: `a_keys` lists gateway A's keys as YAML flow items.
pub(super) fn doc_b(a_keys: &str, web_rule: bool) -> String {
    let web = if web_rule {
        "      - {name: frontends, action: allow, object: app == frontend, protocols: [tcp], ports: [80]}\n"
    } else {
        ""
    };
    b_head()
        + &format!(
            r#"peers:
  - {{name: gw-a, keys: [{a_keys}], networks: [10.1.0.0/16, "fd00:1::/64"]}}
  - {{name: gw-c, keys: [{{id: 3, public_key: "{pc}"}}], networks: [10.3.0.0/16]}}
rulesets:
  - name: web
    subject: app == web
    incoming:
{web}      - {{name: office, action: allow, object: ext == office, protocols: [tcp], ports: [80]}}
  - name: db
    subject: app == db
    incoming:
      - {{name: anyone, action: allow, object: has(app), protocols: [tcp]}}
external_networks:
  - {{name: office, tags: [ext=office], cidrs: [192.168.50.0/24]}}
enforcer_profile:
  managed_tcp_networks: [10.0.0.0/8, "fd00::/8"]
  excluded_networks: [10.9.0.0/16]
"#,
            pc = public(3)
        )
}

pub(super) fn a_key(id: u32, secret: u8) -> String {
    format!("{{id: {id}, public_key: \"{}\"}}", public(secret))
}

/// Gateway C claims identity 1001, which the directory gives to gw-a.
fn doc_c() -> String {
    format!(
        r#"
local: {{gateway: gw-c, key_id: 3, private_key: "{sk}"}}
processing_units:
  - {{name: imposter, addresses: [10.3.0.5], identity: 1001}}
peers:
  - {{name: gw-b, keys: [{{id: 2, public_key: "{pb}"}}], networks: [10.2.0.0/16]}}
rulesets:
  - {{name: all, subject: all(), outgoing: [{{name: any, action: allow, object: all()}}]}}
"#,
        sk = hex([3; 32]),
        pb = public(2)
    )
}

fn cfg(yaml: &str) -> EngineConfig {
    EngineConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{}", crate::problem::lines(&e)))
}

pub(super) struct Gw {
    pub(super) engine: Engine,
    pub(super) cfg: Arc<EngineConfig>,
    events: Consumer,
    pub(super) stats: Arc<WorkerStats>,
}

impl Gw {
    pub(super) fn new(yaml: &str) -> Gw {
        let stats = Arc::new(WorkerStats::default());
        let (p, c) = channel(1024);
        Gw { engine: Engine::new(1024, 7, stats.clone(), Some(p)), cfg: Arc::new(cfg(yaml)), events: c, stats }
    }

    pub(super) fn pass(&mut self, side: Side, frame: &[u8]) -> (Action, Vec<u8>) {
        self.pass_at(side, frame, NOW)
    }

    pub(super) fn pass_at(&mut self, side: Side, frame: &[u8], now: u64) -> (Action, Vec<u8>) {
        let mut b = VecBuf::from_frame(frame);
        let a = self.engine.process(&self.cfg, side, &mut b, now);
        (a, b.data().to_vec())
    }

    pub(super) fn events(&mut self) -> Vec<FlowRecord> {
        {
            self.engine.publish_events();
            std::iter::from_fn(|| self.events.pop())
        }
        .collect()
    }
}

pub(super) const LINUX_OPTS: [u8; 20] = [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0, 1, 3, 3, 7];

fn addr(s: &str) -> [u8; 16] {
    match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            o
        }
        IpAddr::V6(a) => a.octets(),
    }
}

#[derive(Clone, Copy)]
pub(super) struct Conn {
    pub(super) client: &'static str,
    pub(super) server: &'static str,
    pub(super) cport: u16,
    pub(super) sport: u16,
    pub(super) isn: u32,
    pub(super) sisn: u32,
    pub(super) vlans: &'static [u16],
}

impl Conn {
    pub(super) fn new(client: &'static str, server: &'static str, sport: u16) -> Conn {
        Conn { client, server, cport: 40000, sport, isn: 0x1000, sisn: 0x9000, vlans: &[] }
    }
    fn v6(&self) -> bool {
        self.client.contains(':')
    }
    pub(super) fn c2s(&self, flags: u8, seq: u32, ack: u32, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        build(&Spec {
            vlans: self.vlans,
            v6: self.v6(),
            src: addr(self.client),
            dst: addr(self.server),
            sport: self.cport,
            dport: self.sport,
            flags,
            seq,
            ack,
            tcp_options: opts,
            payload,
            ..Spec::default()
        })
    }
    pub(super) fn s2c(&self, flags: u8, seq: u32, ack: u32, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        build(&Spec {
            vlans: self.vlans,
            v6: self.v6(),
            src: addr(self.server),
            dst: addr(self.client),
            sport: self.sport,
            dport: self.cport,
            flags,
            seq,
            ack,
            tcp_options: opts,
            payload,
            ..Spec::default()
        })
    }
    pub(super) fn syn(&self) -> Vec<u8> {
        self.c2s(tf::SYN, self.isn, 0, &LINUX_OPTS, &[])
    }
    pub(super) fn syn_ack(&self) -> Vec<u8> {
        self.s2c(tf::SYN | tf::ACK, self.sisn, self.isn + 1, &LINUX_OPTS, &[])
    }
    pub(super) fn ack(&self) -> Vec<u8> {
        self.c2s(tf::ACK, self.isn + 1, self.sisn + 1, &[], &[])
    }
    pub(super) fn data_c2s(&self, d: &[u8]) -> Vec<u8> {
        self.c2s(tf::ACK | tf::PSH, self.isn + 1, self.sisn + 1, &[], d)
    }
    pub(super) fn data_s2c(&self, d: &[u8]) -> Vec<u8> {
        self.s2c(tf::ACK | tf::PSH, self.sisn + 1, self.isn + 1 + d.len() as u32, &[], d)
    }
}

/// The identity option of a frame: (key id, identity).
pub(super) fn option_of(frame: &[u8]) -> Option<(u32, u32)> {
    let info = parse_frame(frame).expect("parses");
    let o = usize::from(info.tcp_opts_offset);
    let opts = &frame[o..o + usize::from(info.tcp_opts_len)];
    wire::tcp::options(opts).find_map(|r| match r {
        Ok((off, wire::tcp::TcpOption::Experimental { kind: 253, exid: 0x4d49, .. })) => {
            let b = &opts[off..off + 20];
            Some((u32::from_be_bytes([0, b[5], b[6], b[7]]), u32::from_be_bytes([b[8], b[9], b[10], b[11]])))
        }
        _ => None,
    })
}

/// Whether the frame's IPv4 header and TCP checksums hold.
pub(super) fn checksums_ok(frame: &[u8]) -> bool {
    let info = parse_frame(frame).unwrap();
    let l4 = &frame[usize::from(info.l4_offset)..usize::from(info.ip_end)];
    let pseudo = match (info.src, info.dst) {
        (Addr::V4(s), Addr::V4(d)) => wire::checksum::pseudo_v4(&s, &d, 6, l4.len() as u16),
        (Addr::V6(s), Addr::V6(d)) => wire::checksum::pseudo_v6(&s, &d, 6, l4.len() as u32),
        _ => return false,
    };
    let tcp_ok = wire::checksum::fold(pseudo + wire::checksum::sum(l4)) == 0xffff;
    let ip_ok = match info.src {
        Addr::V4(_) => {
            let l3 = usize::from(info.l3_offset);
            wire::checksum::fold(wire::checksum::sum(&frame[l3..l3 + 20])) == 0xffff
        }
        _ => true,
    };
    tcp_ok && ip_ok
}

/// A SYN or SYN-ACK through its sender's gateway, which adds its PU's
/// identity `id`, then the receiver's, which strips it: the receiving PU
/// sees the packet its peer sent, byte for byte.
fn signed_leg(from: &mut Gw, to: &mut Gw, packet: &[u8], id: u32) {
    let (act, on_wire) = from.pass(Side::Inside, packet);
    assert_eq!(act, Action::Forward);
    assert_eq!(option_of(&on_wire).map(|o| o.1), Some(id), "the sender's gateway adds its PU's identity");
    assert!(checksums_ok(&on_wire));
    assert_eq!(to.pass(Side::Outside, &on_wire), (Action::Forward, packet.to_vec()), "the option stripped");
}

/// A full allowed handshake and data both ways through A then B.
pub(super) fn allowed_handshake(a: &mut Gw, b: &mut Gw, c: Conn, a_id: u32, b_id: u32) {
    signed_leg(a, b, &c.syn(), a_id);
    signed_leg(b, a, &c.syn_ack(), b_id);

    for f in [c.ack(), c.data_c2s(b"GET / HTTP/1.1\r\n\r\n")] {
        assert_eq!(a.pass(Side::Inside, &f), (Action::Forward, f.clone()), "established: no byte changed");
        assert_eq!(b.pass(Side::Outside, &f), (Action::Forward, f.clone()));
    }
    let f = c.data_s2c(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(b.pass(Side::Inside, &f), (Action::Forward, f.clone()));
    assert_eq!(a.pass(Side::Outside, &f), (Action::Forward, f.clone()));
}

pub(super) fn pair() -> (Gw, Gw) {
    (Gw::new(&doc_a(1, 1)), Gw::new(&doc_b(&a_key(1, 1), true)))
}

#[test]
fn allowed_handshake_carries_identity_both_ways_and_logs_both_decisions() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    allowed_handshake(&mut a, &mut b, c, 1001, 2001);

    let ea = a.events();
    assert_eq!(ea.len(), 1, "{ea:?}");
    assert_eq!(ea[0].kind, EventKind::Decision);
    assert_eq!(ea[0].remote_identity, Some(2001));
    assert_eq!(ea[0].initiator, Side::Inside);
    assert!(ea[0].decision().unwrap().allowed());
    assert_eq!(a.rule_name(&ea[0]), "to-web");
    let eb = b.events();
    assert_eq!(eb.len(), 1, "{eb:?}");
    assert_eq!((eb[0].remote_identity, eb[0].initiator), (Some(1001), Side::Outside));
    assert_eq!(b.rule_name(&eb[0]), "frontends");
    assert_eq!(eb[0].client_server().1, ("10.2.0.20".parse().unwrap(), 80));

    assert_eq!(a.noted(Side::Inside, Note::IdentityInserted), 1);
    assert_eq!(a.noted(Side::Outside, Note::IdentityVerified), 1);
    assert_eq!(b.noted(Side::Outside, Note::IdentityVerified), 1);
    assert_eq!(b.noted(Side::Inside, Note::IdentityInserted), 1);
    assert_eq!(a.noted(Side::Outside, Note::PolicyAllow), 1);
    let key = FlowKey::new(Side::Inside, "10.1.0.10".parse().unwrap(), "10.2.0.20".parse().unwrap(), 40000, 80, 6);
    let e = a.engine.table().get(&key).unwrap();
    assert_eq!(e.state(), FlowState::Established);
    assert_eq!(e.counters(Side::Inside).0, 3);
    assert_eq!(e.counters(Side::Outside).0, 2);
}

#[test]
fn retransmitted_syn_and_syn_ack_are_signed_and_verified_again() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, w1) = a.pass(Side::Inside, &c.syn());
    let (_, w2) = a.pass(Side::Inside, &c.syn());
    assert_eq!(w1, w2, "the same SYN gets the same option (the MAC binds the ISN)");
    assert_eq!(b.pass(Side::Outside, &w1).0, Action::Forward);
    assert_eq!(b.pass(Side::Outside, &w2).0, Action::Forward, "a retransmission verifies again");
    let (_, s1) = b.pass(Side::Inside, &c.syn_ack());
    let (_, s2) = b.pass(Side::Inside, &c.syn_ack());
    assert_eq!(s1, s2);
    assert_eq!(a.pass(Side::Outside, &s1).0, Action::Forward);
    assert_eq!(a.pass(Side::Outside, &s2), (Action::Forward, c.syn_ack()));
    assert_eq!(a.events().len(), 1, "one decision per connection, not per retransmission");
    assert_eq!(b.events().len(), 1);
}

#[test]
fn rejected_at_b_resets_the_client() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.11", "10.2.0.20", 80); // batch → web: no rule at B
    let (act, w) = a.pass(Side::Inside, &c.syn());
    assert_eq!(act, Action::Forward);
    assert_eq!(option_of(&w).map(|o| o.1), Some(1002));
    let (act, rst) = b.pass(Side::Outside, &w);
    assert_eq!(act, Action::Reply(DropReason::NoMatch));
    let i = parse_frame(&rst).unwrap();
    assert_eq!((i.src, i.dst), (Addr::V4([10, 2, 0, 20]), Addr::V4([10, 1, 0, 11])));
    assert_eq!((i.src_port, i.dst_port), (80, 40000));
    assert_eq!(i.tcp_flags, tf::RST | tf::ACK);
    assert_eq!(i.ack, c.isn + 1);
    assert!(checksums_ok(&rst));
    assert_eq!(&rst[0..6], &w[6..12], "sent back to the sender's MAC");
    // The reset travels back through A, which lets it through to the client.
    assert_eq!(a.pass(Side::Outside, &rst), (Action::Forward, rst.clone()));
    assert_eq!(b.dropped(Side::Outside, DropReason::NoMatch), 1);
    assert_eq!(b.noted(Side::Outside, Note::RstSent), 1);
    let ev = b.events();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].drop, ev[0].remote_identity), (Some(DropReason::NoMatch), Some(1002)));
    assert!(!ev[0].decision().unwrap().allowed());
}

#[test]
fn rejected_at_a_on_syn_ack_resets_both_ends() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.30", 5432); // client → db: B allows, A rejects
    let (_, w) = a.pass(Side::Inside, &c.syn());
    assert_eq!(b.pass(Side::Outside, &w).0, Action::Forward);
    let (act, w) = b.pass(Side::Inside, &c.syn_ack());
    assert_eq!(act, Action::Forward);
    assert_eq!(option_of(&w).map(|o| o.1), Some(2002));
    let (act, to_server) = a.pass(Side::Outside, &w);
    assert_eq!(act, Action::ReplyAndReset(DropReason::PolicyReject));
    let i = parse_frame(&to_server).unwrap();
    assert_eq!(
        (i.src, i.dst, i.src_port, i.dst_port),
        (Addr::V4([10, 1, 0, 10]), Addr::V4([10, 2, 0, 30]), 40000, 5432)
    );
    assert_eq!((i.tcp_flags, i.seq), (tf::RST, c.isn + 1), "at the server's rcv_nxt");
    assert!(checksums_ok(&to_server));
    let to_client = a.engine.extra_frame().to_vec();
    let j = parse_frame(&to_client).unwrap();
    assert_eq!(
        (j.src, j.dst, j.src_port, j.dst_port),
        (Addr::V4([10, 2, 0, 30]), Addr::V4([10, 1, 0, 10]), 5432, 40000)
    );
    assert_eq!((j.tcp_flags, j.ack), (tf::RST | tf::ACK, c.isn + 1), "acceptable to a client in SYN-SENT");
    assert!(checksums_ok(&to_client));
    assert_eq!(b.pass(Side::Outside, &to_server).0, Action::Forward, "B passes the reset to the server");
    let ev = a.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(a.rule_name(&ev[0]), "no-db");
    assert_eq!(ev[0].remote_identity, Some(2002));
    assert_eq!(a.dropped(Side::Outside, DropReason::PolicyReject), 1);
    // The client's late ACK finds no flow; to a peer's network with layer 4
    // on it is reset rather than judged by address (no_state.rs).
    assert_eq!(a.pass(Side::Inside, &c.ack()).0, Action::ReplyAndReset(DropReason::NoFlowStateFromPeer));
}

#[test]
fn no_identity_falls_back_to_external_network_acls() {
    let (mut a, mut b) = pair();
    // An office client without a gateway: allowed to web:80.
    let office = Conn::new("192.168.50.7", "10.2.0.20", 80);
    assert_eq!(b.pass(Side::Outside, &office.syn()), (Action::Forward, office.syn()));
    assert_eq!(
        b.pass(Side::Inside, &office.syn_ack()),
        (Action::Forward, office.syn_ack()),
        "no identity to sign back"
    );
    assert_eq!(b.pass(Side::Outside, &office.ack()).0, Action::Forward);
    let ev = b.events();
    assert_eq!(b.rule_name(&ev[0]), "office");
    assert_eq!(ev[0].decision().unwrap().reason, Reason::ExternalNetworkAllow);
    assert_eq!(b.noted(Side::Outside, Note::ExternalNetworkAllow), 1);
    // Anyone else: no match, reset.
    let other = Conn::new("192.168.60.7", "10.2.0.20", 80);
    assert_eq!(b.pass(Side::Outside, &other.syn()).0, Action::Reply(DropReason::NoMatch));
    // Outgoing to an unmanaged destination: the ACL decides at the SYN, no identity.
    let https = Conn::new("10.1.0.10", "8.8.8.8", 443);
    assert_eq!(a.pass(Side::Inside, &https.syn()), (Action::Forward, https.syn()));
    assert_eq!(a.pass(Side::Outside, &https.syn_ack()), (Action::Forward, https.syn_ack()));
    let ssh = Conn::new("10.1.0.10", "8.8.8.8", 22);
    let (act, rst) = a.pass(Side::Inside, &ssh.syn());
    assert_eq!(act, Action::Reply(DropReason::NoMatch), "reset back to the local client");
    assert_eq!(parse_frame(&rst).unwrap().dst, Addr::V4([10, 1, 0, 10]));
    // A managed destination no peer covers: no identity, its own note, the ACL decides.
    let nopeer = Conn::new("10.1.0.10", "10.5.0.5", 443);
    assert_eq!(a.pass(Side::Inside, &nopeer.syn()), (Action::Forward, nopeer.syn()));
    assert_eq!(a.noted(Side::Inside, Note::NoPeerForDestination), 1);
    let ev = a.events();
    assert_eq!(ev.last().unwrap().note, Some(Note::NoPeerForDestination));
    assert_eq!(a.rule_name(ev.last().unwrap()), "internet-https");
    // A managed peer that answers without identity: a stripping path, layer
    // 4 (`l4::tests`; with `layer4_identity: false` the ACLs decide here).
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, w) = a.pass(Side::Inside, &c.syn());
    assert!(option_of(&w).is_some());
    assert_eq!(a.pass(Side::Outside, &c.syn_ack()).0, Action::Forward);
    assert_eq!(a.noted(Side::Outside, Note::L4Stripped), 1);
}

#[test]
fn excluded_networks_pass_untouched_and_unlogged_and_strangers_are_dropped() {
    let (mut a, _) = pair();
    let c = Conn::new("10.1.0.10", "10.9.0.5", 80);
    assert_eq!(a.pass(Side::Inside, &c.syn()), (Action::Forward, c.syn()));
    assert_eq!(a.pass(Side::Outside, &c.syn_ack()), (Action::Forward, c.syn_ack()));
    assert!(a.events().is_empty());
    assert_eq!(a.engine.table().len(), 0);
    assert_eq!(a.noted(Side::Inside, Note::Excluded), 1);
    let stranger = Conn::new("10.1.0.99", "10.2.0.20", 80);
    assert_eq!(a.pass(Side::Inside, &stranger.syn()).0, Action::Drop(DropReason::NoLocalPu));
    // ARP and anything not IP passes.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0u8; 20]);
    assert_eq!(a.pass(Side::Inside, &arp), (Action::Forward, arp.clone()));
    assert_eq!(a.pass(Side::Inside, &[1, 2, 3]).0, Action::Drop(DropReason::Malformed));
}

#[test]
fn forged_replayed_and_misattributed_options_are_refused_with_their_reason() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, signed) = a.pass(Side::Inside, &c.syn());
    // Forged MAC.
    let mut forged = signed.clone();
    let info = parse_frame(&forged).unwrap();
    let o = usize::from(info.tcp_opts_offset);
    forged[o + 19] ^= 0x55;
    assert_eq!(b.pass(Side::Outside, &forged).0, Action::Drop(DropReason::IdentityBadMac));
    // Unknown key id.
    let mut unknown = signed.clone();
    unknown[o + 5] = 0x7f;
    assert_eq!(b.pass(Side::Outside, &unknown).0, Action::Drop(DropReason::IdentityUnknownKey));
    // The option copied onto another connection (another source port).
    let other = Conn { cport: 40001, ..c };
    let src_opts = &signed[o..o + usize::from(info.tcp_opts_len)];
    let moved = other.c2s(tf::SYN, other.isn, 0, src_opts, &[]);
    assert_eq!(b.pass(Side::Outside, &moved).0, Action::Drop(DropReason::IdentityBadMac));
    assert_eq!(b.dropped(Side::Outside, DropReason::IdentityBadMac), 2);
    let ev = b.events();
    assert_eq!(ev.len(), 3);
    assert!(ev.iter().all(|e| e.kind == EventKind::Drop));
    assert_eq!(ev[1].drop, Some(DropReason::IdentityUnknownKey));

    // Complete the real handshake, then replay its SYN and an option on data.
    assert_eq!(b.pass(Side::Outside, &signed).0, Action::Forward);
    let (_, sa) = b.pass(Side::Inside, &c.syn_ack());
    assert_eq!(a.pass(Side::Outside, &sa).0, Action::Forward);
    assert_eq!(a.pass(Side::Inside, &c.ack()).0, Action::Forward);
    assert_eq!(b.pass(Side::Outside, &c.ack()).0, Action::Forward);
    assert_eq!(b.pass(Side::Outside, &signed).0, Action::Drop(DropReason::Replay), "the SYN again, established");
    let data_with_opt = c.c2s(tf::ACK | tf::PSH, c.isn + 1, c.sisn + 1, src_opts, b"x");
    assert_eq!(b.pass(Side::Outside, &data_with_opt).0, Action::Drop(DropReason::Replay));
    assert_eq!(b.dropped(Side::Outside, DropReason::Replay), 2);
    // A PU may not send the option itself.
    assert_eq!(a.pass(Side::Inside, &moved).0, Action::Drop(DropReason::IdentityAlreadyPresent));

    // Gateway C signs with its own valid key an identity that belongs to gw-a.
    let mut gc = Gw::new(&doc_c());
    let imp = Conn::new("10.3.0.5", "10.2.0.20", 80);
    let (act, w) = gc.pass(Side::Inside, &imp.syn());
    assert_eq!(act, Action::Forward);
    assert_eq!(option_of(&w), Some((KeyId::pairwise(3, 2).get(), 1001)));
    assert_eq!(b.pass(Side::Outside, &w).0, Action::Drop(DropReason::IdentityNotAllowedForPeer));
}

/// A handshake of A already on key 4 with B: signed 4 → 2, and back 2 → 4
/// (B's newest key towards A).
fn new_a_handshake(b: &mut Gw, a_new: &mut Gw, c: Conn) {
    let (_, w) = a_new.pass(Side::Inside, &c.syn());
    assert_eq!(option_of(&w).unwrap().0, KeyId::pairwise(4, 2).get());
    assert_eq!(b.pass(Side::Outside, &w).0, Action::Forward);
    let (_, sa) = b.pass(Side::Inside, &c.syn_ack());
    assert_eq!(option_of(&sa).unwrap().0, KeyId::pairwise(2, 4).get());
    assert_eq!(a_new.pass(Side::Outside, &sa).0, Action::Forward);
}

/// Gateway A rotating from key 1 to key 4 (valid from t = 1000 s): B, which
/// knows both of A's keys; A still on key 1; A already on key 4.
fn rotating_a() -> (Gw, Gw, Gw) {
    let both = format!("{}, {{id: 4, public_key: \"{}\", not_before: 1000}}", a_key(1, 1), public(4));
    (Gw::new(&doc_b(&both, true)), Gw::new(&doc_a(1, 1)), Gw::new(&doc_a(4, 4)))
}

#[test]
fn key_rotation_and_expiry() {
    let (mut b, mut a_old, mut a_new) = rotating_a();
    // Old A still verifies at B.
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, w) = a_old.pass(Side::Inside, &c.syn());
    assert_eq!(option_of(&w).unwrap().0, KeyId::pairwise(1, 2).get());
    assert_eq!(b.pass(Side::Outside, &w).0, Action::Forward);
    // New A: full handshake; B signs back with the newest key towards A.
    let c2 = Conn { cport: 40002, ..c };
    new_a_handshake(&mut b, &mut a_new, c2);
    // Key 1 expired (not_after 1000 s, now 2000 s), and key 1 dropped from the document.
    let expired = format!("{{id: 1, public_key: \"{}\", not_after: 1000}}", public(1));
    let mut b_exp = Gw::new(&doc_b(&expired, true));
    let c3 = Conn { cport: 40003, ..c };
    let (_, w) = a_old.pass(Side::Inside, &c3.syn());
    assert_eq!(b_exp.pass(Side::Outside, &w).0, Action::Drop(DropReason::IdentityExpiredKey));
    let mut b_gone = Gw::new(&doc_b(&a_key(4, 4), true));
    assert_eq!(b_gone.pass(Side::Outside, &w).0, Action::Drop(DropReason::IdentityUnknownKey));
}

/// Seconds: A's rotation from key 1 to key 4 (`not_before`), and how long
/// key 1 stays valid after it.
const ROTATE_AT: u64 = 3_000;
const OVERLAP: u64 = 1_000;

/// A rotating its own key: main key 4 from `ROTATE_AT`, previous key 1 until
/// `ROTATE_AT + OVERLAP`; its client also accepts B's web on port 8080, so
/// that B can open connections towards A.
fn doc_a_rotating() -> String {
    let local = format!(
        "{{gateway: gw-a, key_id: 4, private_key: \"{}\", not_before: {ROTATE_AT}, \
         previous_keys: [{{key_id: 1, private_key: \"{}\", not_after: {}}}]}}",
        hex([4; 32]),
        hex([1; 32]),
        ROTATE_AT + OVERLAP
    );
    let from_web =
        "    incoming:\n      - {name: from-web, action: allow, object: app == web, protocols: [tcp], ports: [8080]}\n";
    doc_a_local(&local).replace("    outgoing:\n", &format!("{from_web}    outgoing:\n"))
}

/// B knowing A's keys `a_keys`; its web may also open connections to A's
/// frontends on port 8080.
fn doc_b_towards_a(a_keys: &str) -> String {
    let to_a = "    outgoing:\n      - {name: to-frontends, action: allow, object: app == frontend, protocols: [tcp], ports: [8080]}\n";
    doc_b(a_keys, true).replace("  - name: db\n", &format!("{to_a}  - name: db\n"))
}

/// SYN and SYN-ACK of `c` through the client's gateway and the server's at
/// `now`, both let through: the key ids of the SYN's and the SYN-ACK's options.
fn signed_handshake_at(client_gw: &mut Gw, server_gw: &mut Gw, c: Conn, now: u64) -> (u32, u32) {
    let (act, syn) = client_gw.pass_at(Side::Inside, &c.syn(), now);
    assert_eq!(act, Action::Forward);
    assert_eq!(server_gw.pass_at(Side::Outside, &syn, now), (Action::Forward, c.syn()), "the SYN verifies");
    let (act, syn_ack) = server_gw.pass_at(Side::Inside, &c.syn_ack(), now);
    assert_eq!(act, Action::Forward);
    assert_eq!(client_gw.pass_at(Side::Outside, &syn_ack, now), (Action::Forward, c.syn_ack()), "the SYN-ACK verifies");
    (option_of(&syn).expect("signed SYN").0, option_of(&syn_ack).expect("signed SYN-ACK").0)
}

#[test]
fn a_gateway_holding_two_keys_signs_with_the_old_until_not_before_and_verifies_both_during_the_overlap() {
    const S: u64 = 1_000_000_000;
    let mut a = Gw::new(&doc_a_rotating());
    // B told about the rotation, and B that only ever knew key 1 (no window).
    let both = format!(
        "{{id: 1, public_key: \"{}\", not_after: {}}}, {{id: 4, public_key: \"{}\", not_before: {ROTATE_AT}}}",
        public(1),
        ROTATE_AT + OVERLAP,
        public(4)
    );
    let mut b_both = Gw::new(&doc_b_towards_a(&both));
    let mut b_old = Gw::new(&doc_b_towards_a(&a_key(1, 1)));
    let a_to_b = |cport| Conn { cport, ..Conn::new("10.1.0.10", "10.2.0.20", 80) };
    let b_to_a = |cport| Conn { cport, ..Conn::new("10.2.0.20", "10.1.0.10", 8080) };
    let id = |s, r| KeyId::pairwise(s, r).get();

    // Before the rotation (NOW = 2000 s): A signs with key 1; B signs towards key 1.
    let before = NOW;
    assert!(before < ROTATE_AT * S);
    assert_eq!(signed_handshake_at(&mut a, &mut b_both, a_to_b(41000), before), (id(1, 2), id(2, 1)));
    assert_eq!(signed_handshake_at(&mut a, &mut b_old, a_to_b(41001), before), (id(1, 2), id(2, 1)));
    assert_eq!(signed_handshake_at(&mut b_both, &mut a, b_to_a(41002), before), (id(2, 1), id(1, 2)));

    // During the overlap: A signs with key 4 and verifies SYNs towards either
    // key, answering each with the keys its SYN used.
    let during = (ROTATE_AT + OVERLAP / 2) * S;
    assert_eq!(signed_handshake_at(&mut a, &mut b_both, a_to_b(41010), during), (id(4, 2), id(2, 4)));
    assert_eq!(signed_handshake_at(&mut b_both, &mut a, b_to_a(41011), during), (id(2, 4), id(4, 2)));
    assert_eq!(
        signed_handshake_at(&mut b_old, &mut a, b_to_a(41012), during),
        (id(2, 1), id(1, 2)),
        "a peer that only knows key 1 is answered under key 1"
    );
    // A peer never told about key 4 cannot verify A's new SYNs: the overlap
    // is for peers to take the new key up.
    let (_, syn) = a.pass_at(Side::Inside, &a_to_b(41013).syn(), during);
    assert_eq!(b_old.pass_at(Side::Outside, &syn, during).0, Action::Drop(DropReason::IdentityUnknownKey));

    // After the overlap: key 1 is refused as expired; key 4 goes on.
    let after = (ROTATE_AT + OVERLAP + 1) * S;
    let c = b_to_a(41020);
    let (act, syn) = b_old.pass_at(Side::Inside, &c.syn(), after);
    assert_eq!((act, option_of(&syn).map(|o| o.0)), (Action::Forward, Some(id(2, 1))));
    assert_eq!(a.pass_at(Side::Outside, &syn, after).0, Action::Drop(DropReason::IdentityExpiredKey));
    assert_eq!(signed_handshake_at(&mut a, &mut b_both, a_to_b(41021), after), (id(4, 2), id(2, 4)));
    assert_eq!(signed_handshake_at(&mut b_both, &mut a, b_to_a(41022), after), (id(2, 4), id(4, 2)));

    assert_eq!(a.dropped(Side::Outside, DropReason::IdentityExpiredKey), 1);
    for r in [DropReason::IdentityUnknownKey, DropReason::IdentityBadMac] {
        assert_eq!(a.dropped(Side::Outside, r), 0, "{r:?}");
        assert_eq!(b_both.dropped(Side::Outside, r), 0, "{r:?}");
    }
}

#[test]
fn ipv6_and_vlan_handshakes() {
    let (mut a, mut b) = pair();
    allowed_handshake(&mut a, &mut b, Conn::new("fd00:1::10", "fd00:2::20", 80), 1001, 2001);
    let mut v = Conn::new("10.1.0.10", "10.2.0.20", 80);
    v.vlans = &[100];
    v.cport = 41000;
    allowed_handshake(&mut a, &mut b, v, 1001, 2001);
    let mut q = Conn::new("fd00:1::10", "fd00:2::20", 80);
    q.vlans = &[10, 20];
    q.cport = 42000;
    allowed_handshake(&mut a, &mut b, q, 1001, 2001);
    // A reset keeps the VLAN tags.
    let mut r = Conn::new("10.1.0.11", "10.2.0.20", 80);
    r.vlans = &[100];
    let (_, w) = a.pass(Side::Inside, &r.syn());
    let (act, rst) = b.pass(Side::Outside, &w);
    assert_eq!(act, Action::Reply(DropReason::NoMatch));
    let i = parse_frame(&rst).unwrap();
    assert_eq!((i.vlan_tags, i.tcp_flags), (1, tf::RST | tf::ACK));
    assert_eq!(&rst[12..16], &[0x81, 0, 0, 100]);
}

#[test]
fn new_policy_generation_redecides_cached_verdicts() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    allowed_handshake(&mut a, &mut b, c, 1001, 2001);
    b.cfg = Arc::new(cfg(&doc_b(&a_key(1, 1), false)));
    let f = c.data_c2s(b"more");
    assert_eq!(b.pass(Side::Outside, &f).0, Action::Drop(DropReason::NoMatch));
    assert_eq!(b.noted(Side::Outside, Note::Redecided), 1);
    // and allowed again under a policy that allows it
    b.cfg = Arc::new(cfg(&doc_b(&a_key(1, 1), true)));
    assert_eq!(b.pass(Side::Outside, &f).0, Action::Forward);
}

#[test]
fn packets_without_flow_state_are_judged_by_acl() {
    let (_, mut b) = pair();
    let office = Conn::new("192.168.50.7", "10.2.0.20", 80);
    let f = office.data_c2s(b"mid-stream");
    assert_eq!(b.pass(Side::Outside, &f), (Action::Forward, f.clone()));
    assert_eq!(b.noted(Side::Outside, Note::NoFlowStateAllowed), 1);
    assert_eq!(
        b.pass(Side::Inside, &office.data_s2c(b"ok")).0,
        Action::Forward,
        "the re-created flow carries the reply"
    );
    let stranger = Conn::new("192.168.60.7", "10.2.0.20", 80);
    assert_eq!(b.pass(Side::Outside, &stranger.data_c2s(b"x")).0, Action::Drop(DropReason::NoFlowState));
    let ev = b.events();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].drop, Some(DropReason::NoFlowState));
}

#[test]
fn udp_is_judged_by_acl_and_cached_both_ways() {
    let (mut a, _) = pair();
    let q = build(&Spec {
        proto: 17,
        src: addr("10.1.0.10"),
        dst: addr("1.1.1.1"),
        sport: 5000,
        dport: 443,
        ..Spec::default()
    });
    let r = build(&Spec {
        proto: 17,
        src: addr("1.1.1.1"),
        dst: addr("10.1.0.10"),
        sport: 443,
        dport: 5000,
        ..Spec::default()
    });
    assert_eq!(a.pass(Side::Inside, &q).0, Action::Forward);
    assert_eq!(a.pass(Side::Outside, &r).0, Action::Forward);
    let bad = build(&Spec {
        proto: 17,
        src: addr("10.1.0.10"),
        dst: addr("1.1.1.1"),
        sport: 5000,
        dport: 53,
        ..Spec::default()
    });
    assert_eq!(a.pass(Side::Inside, &bad).0, Action::Drop(DropReason::NoMatch));
    assert_eq!(a.pass(Side::Inside, &bad).0, Action::Drop(DropReason::NoMatch), "the reject is cached");
    assert_eq!(a.events().len(), 2);
}

#[test]
fn ended_flows_become_end_events_with_counters() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    allowed_handshake(&mut a, &mut b, c, 1001, 2001);
    a.events();
    // far in the future: everything idles out
    let later = NOW + 10 * 3600 * 1_000_000_000;
    for _ in 0..64 {
        a.engine.sweep(later);
    }
    let ev = a.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].kind, EventKind::End);
    assert_eq!(ev[0].packets, [3, 2]);
    assert_eq!(ev[0].remote_identity, Some(2001));
    assert_eq!(a.engine.table().len(), 0);
}

#[test]
fn hostile_frames_never_panic() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, signed) = a.pass(Side::Inside, &c.syn());
    let mut rng = 0x1234_5678_9abc_def0u64;
    for i in 0..20_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut f = signed.clone();
        let n = 1 + (rng % 4) as usize;
        for k in 0..n {
            let at = ((rng >> (8 * k)) as usize) % f.len();
            f[at] ^= (rng >> (16 + k)) as u8 | 1;
        }
        if i % 7 == 0 {
            f.truncate((rng as usize) % f.len());
        }
        let side = if i % 2 == 0 { Side::Outside } else { Side::Inside };
        let _ = b.pass(side, &f);
        let _ = a.pass(side, &f);
    }
}

#[test]
fn syn_ack_is_signed_with_the_key_pair_the_syn_used_during_a_rotation_overlap() {
    // Gateway A is rotating from key 1 to key 4. The server's gateway (B here)
    // already lists both of A's keys, both valid now; the client's gateway is
    // still on key 1 and knows B only under it. Before the fix B signed every
    // SYN-ACK with its newest key towards A, (2 → 4), which old A cannot verify.
    let (mut b, mut a_old, mut a_new) = rotating_a();

    // Old A → B: the SYN (1 → 2) verifies at B; the SYN-ACK comes back signed
    // 2 → 1 and verifies at old A; data flows both ways.
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (act, w) = a_old.pass(Side::Inside, &c.syn());
    assert_eq!((act, option_of(&w).map(|o| o.0)), (Action::Forward, Some(KeyId::pairwise(1, 2).get())));
    assert_eq!(b.pass(Side::Outside, &w), (Action::Forward, c.syn()));
    let (act, sa) = b.pass(Side::Inside, &c.syn_ack());
    assert_eq!(act, Action::Forward);
    assert_eq!(option_of(&sa), Some((KeyId::pairwise(2, 1).get(), 2001)), "answered with the SYN's key pair");
    assert_eq!(a_old.pass(Side::Outside, &sa), (Action::Forward, c.syn_ack()), "old A verifies the SYN-ACK");
    // A retransmitted SYN-ACK is signed the same way.
    let (_, sa2) = b.pass(Side::Inside, &c.syn_ack());
    assert_eq!(sa2, sa);
    assert_eq!(a_old.pass(Side::Outside, &sa2).0, Action::Forward);
    for f in [c.ack(), c.data_c2s(b"ping")] {
        assert_eq!(a_old.pass(Side::Inside, &f), (Action::Forward, f.clone()));
        assert_eq!(b.pass(Side::Outside, &f), (Action::Forward, f.clone()));
    }
    let f = c.data_s2c(b"pong");
    assert_eq!(b.pass(Side::Inside, &f), (Action::Forward, f.clone()));
    assert_eq!(a_old.pass(Side::Outside, &f), (Action::Forward, f.clone()));

    // New A → B on another connection at the same time: 4 → 2 and back 2 → 4.
    let c2 = Conn { cport: 40002, ..c };
    new_a_handshake(&mut b, &mut a_new, c2);

    // Neither gateway refused anything.
    for g in [&a_old, &a_new, &b] {
        for side in [Side::Inside, Side::Outside] {
            for r in [DropReason::IdentityUnknownKey, DropReason::IdentityBadMac, DropReason::IdentityExpiredKey] {
                assert_eq!(g.dropped(side, r), 0, "{r:?} from {side:?}");
            }
        }
    }
}

impl Counted for Gw {
    fn worker_stats(&self) -> &WorkerStats {
        &self.stats
    }
    fn engine_config(&self) -> &EngineConfig {
        &self.cfg
    }
}

/// A gateway whose policy has rule-hit slots for `workers` workers, running as worker `index`.
fn counting(yaml: &str, workers: usize, index: usize) -> Gw {
    let mut g = Gw::new(yaml);
    let mut c = cfg(yaml);
    c.count_rule_hits(workers);
    g.cfg = Arc::new(c);
    g.engine.set_worker(index);
    g
}

fn hits_of(g: &Gw, rule: &str) -> Vec<u64> {
    let p = &g.cfg.policy;
    let r = (0..p.rule_count() as u32).map(RuleRef).find(|&r| &*p.rule(r).unwrap().name == rule).unwrap();
    (0..g.cfg.rule_hits.workers()).map(|w| g.cfg.rule_hits.get(w, r)).collect()
}

#[test]
fn each_decision_counts_once_against_its_rule_in_the_workers_row() {
    let mut a = counting(&doc_a(1, 1), 2, 1);
    let mut b = counting(&doc_b(&a_key(1, 1), true), 2, 0);
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    allowed_handshake(&mut a, &mut b, c, 1001, 2001);
    // Retransmissions and the established packets decide nothing again.
    let (_, w) = a.pass(Side::Inside, &c.syn());
    b.pass(Side::Outside, &w);
    a.pass(Side::Inside, &c.ack());
    assert_eq!(hits_of(&a, "to-web"), [0, 1], "A decided at the SYN-ACK, on worker 1");
    assert_eq!(hits_of(&b, "frontends"), [1, 0], "B decided at the SYN, on worker 0");
    // A reject counts against the rule that rejected.
    let c = Conn::new("10.1.0.10", "10.2.0.30", 5432);
    let (_, w) = a.pass(Side::Inside, &c.syn());
    b.pass(Side::Outside, &w);
    let (_, w) = b.pass(Side::Inside, &c.syn_ack());
    assert_eq!(a.pass(Side::Outside, &w).0, Action::ReplyAndReset(DropReason::PolicyReject));
    assert_eq!(hits_of(&a, "no-db"), [0, 1]);
    // A policy without slots counts nothing (and costs nothing).
    let (mut a, mut b) = pair();
    allowed_handshake(&mut a, &mut b, Conn::new("10.1.0.10", "10.2.0.20", 80), 1001, 2001);
    assert_eq!(a.cfg.rule_hits.workers(), 0);
}
