//! The UDP handshake with two engines in one process: gateway A (clients)
//! and gateway B (servers). Handshake frames are carried (or lost,
//! duplicated, reordered, forged) by hand; the hold store is emulated the
//! way the worker keeps it (frames per slot, in order).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::buf::VecBuf;
use crate::engine::test_harness::Counted;
use crate::engine::tests::{a_head, b_head, hex, public};
use crate::engine::{Action, Engine, EngineConfig};
use crate::events::{channel, Consumer, EventKind, FlowRecord};
use crate::flow::{FlowKey, FlowState, UdpState};
use crate::policy::Reason;
use crate::stats::{DropReason, Note, WorkerStats};
use crate::wire::builder::{build, Spec};
use crate::wire::{checksum, parse_frame, udp as wudp, Addr};
use crate::Side;

const NOW: u64 = 2_000 * 1_000_000_000;
const MS: u64 = 1_000_000;

fn doc_a() -> String {
    a_head(&format!("{{gateway: gw-a, key_id: 1, private_key: \"{}\"}}", hex([1; 32])))
        + r#"rulesets:
  - name: front
    subject: all()
    outgoing:
      - {name: dns-to-web, action: allow, object: app == web, protocols: [udp], ports: [53]}
      - {name: no-db, action: reject, object: app == db}
      - {name: lab-dns, action: allow, object: ext == lab, protocols: [udp], ports: [53]}
external_networks:
  - {name: lab, tags: [ext=lab], cidrs: [10.0.0.0/8]}
enforcer_profile:
  managed_tcp_networks: [10.0.0.0/8, "fd00::/8"]
  managed_udp_networks: [10.2.0.0/16, 10.5.0.0/16, "fd00::/8"]
"#
}

fn doc_b() -> String {
    b_head()
        + &format!(
            r#"peers:
  - {{name: gw-a, keys: [{{id: 1, public_key: "{pa}"}}], networks: [10.1.0.0/16, "fd00:1::/64"]}}
rulesets:
  - name: web
    subject: app == web
    incoming:
      - {{name: frontends, action: allow, object: app == frontend, protocols: [udp], ports: [53]}}
  - name: db
    subject: app == db
    incoming:
      - {{name: anyone, action: allow, object: has(app), protocols: [udp]}}
enforcer_profile:
  managed_udp_networks: [10.1.0.0/16, "fd00::/8"]
"#,
            pa = public(1)
        )
}

struct Gw {
    engine: Engine,
    cfg: Arc<EngineConfig>,
    events: Consumer,
    stats: Arc<WorkerStats>,
    /// The emulated hold store: frames per slot, in order.
    held: HashMap<u32, Vec<Vec<u8>>>,
}

/// What one call did: the frame's action and buffer, and the effects.
#[derive(Debug, Default)]
struct Out {
    action: Option<Action>,
    frame: Vec<u8>,
    /// Generated frames: (port they leave by, bytes).
    sent: Vec<(Side, Vec<u8>)>,
    /// Held frames released to the outside port, in order.
    released: Vec<Vec<u8>>,
    /// Held frames freed, with the reason.
    discarded: Vec<(usize, DropReason)>,
}

impl Gw {
    fn new(yaml: &str) -> Gw {
        let stats = Arc::new(WorkerStats::default());
        let (p, c) = channel(1024);
        let cfg = EngineConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{}", crate::problem::lines(&e)));
        Gw {
            engine: Engine::new(1024, 7, stats.clone(), Some(p)),
            cfg: Arc::new(cfg),
            events: c,
            stats,
            held: HashMap::new(),
        }
    }

    fn a() -> Gw {
        Gw::new(&doc_a())
    }
    fn b() -> Gw {
        Gw::new(&doc_b())
    }

    fn effects(&mut self, out: &mut Out) {
        for e in self.engine.effects().to_vec() {
            match e {
                Effect::Send { out: side, frame } => out.sent.push((side, self.engine.effect_frame(frame).to_vec())),
                Effect::Release { slot } => out.released.extend(self.held.remove(&slot).unwrap_or_default()),
                Effect::Discard { slot, reason } => {
                    out.discarded.push((self.held.remove(&slot).map_or(0, |v| v.len()), reason))
                }
            }
        }
        self.engine.clear_effects();
    }

    fn pass_at(&mut self, side: Side, frame: &[u8], now: u64) -> Out {
        let mut b = VecBuf::from_frame(frame);
        let a = self.engine.process(&self.cfg, side, &mut b, now);
        if let Action::Hold(slot) = a {
            self.held.entry(slot).or_default().push(b.data().to_vec());
        }
        let mut out = Out { action: Some(a), frame: b.data().to_vec(), ..Out::default() };
        self.effects(&mut out);
        out
    }

    fn pass(&mut self, side: Side, frame: &[u8]) -> Out {
        self.pass_at(side, frame, NOW)
    }

    fn tick(&mut self, now: u64) -> Out {
        let cfg = self.cfg.clone();
        self.engine.udp_timers(&cfg, now);
        let mut out = Out::default();
        self.effects(&mut out);
        out
    }

    fn events(&mut self) -> Vec<FlowRecord> {
        {
            self.engine.publish_events();
            std::iter::from_fn(|| self.events.pop())
        }
        .collect()
    }

    fn state(&self, f: &Flow) -> Option<FlowState> {
        let k = FlowKey::new(Side::Inside, ip(f.client), ip(f.server), f.cport, f.sport, 17);
        self.engine.table().get(&k).map(|e| e.state())
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> [u8; 16] {
    match ip(s) {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            o
        }
        IpAddr::V6(a) => a.octets(),
    }
}

#[derive(Clone, Copy)]
struct Flow {
    client: &'static str,
    server: &'static str,
    cport: u16,
    sport: u16,
    vlans: &'static [u16],
}

impl Flow {
    fn new(client: &'static str, server: &'static str, sport: u16) -> Flow {
        Flow { client, server, cport: 33000, sport, vlans: &[] }
    }
    fn c2s(&self, payload: &[u8]) -> Vec<u8> {
        build(&Spec {
            vlans: self.vlans,
            v6: self.client.contains(':'),
            proto: 17,
            src: addr(self.client),
            dst: addr(self.server),
            sport: self.cport,
            dport: self.sport,
            payload,
            ..Spec::default()
        })
    }
    fn s2c(&self, payload: &[u8]) -> Vec<u8> {
        build(&Spec {
            vlans: self.vlans,
            v6: self.client.contains(':'),
            proto: 17,
            src: addr(self.server),
            dst: addr(self.client),
            sport: self.sport,
            dport: self.cport,
            payload,
            ..Spec::default()
        })
    }
}

/// The identity option of a handshake frame: (msg, identity, nonce, echo).
fn hs(frame: &[u8]) -> (u8, u32, [u8; 8], [u8; 8]) {
    let info = parse_frame(frame).expect("parses");
    let at = usize::from(info.udp_opts_offset);
    let surplus = &frame[at..at + usize::from(info.udp_opts_len)];
    let (_, opts) = wudp::options_area(surplus, usize::from(info.udp_len)).expect("options area");
    let data = wudp::options(opts)
        .find_map(|r| match r {
            Ok((_, wudp::UdpOption::Experimental { kind: 127, exid: 0x4d49, data })) => Some(data),
            _ => None,
        })
        .expect("identity option");
    // data = option bytes 4..
    let o = |i: usize| data[i - 4];
    let mut nonce = [0u8; 8];
    let mut echo = [0u8; 8];
    for k in 0..8 {
        nonce[k] = o(13 + k);
        echo[k] = o(21 + k);
    }
    (o(5), u32::from_be_bytes([o(9), o(10), o(11), o(12)]), nonce, echo)
}

/// IP header and UDP checksums of a frame are right, and it carries no payload.
fn well_formed_handshake(frame: &[u8]) -> bool {
    let info = parse_frame(frame).unwrap();
    let u = usize::from(info.l4_offset);
    let udp = &frame[u..u + 8];
    let pseudo = match (info.src, info.dst) {
        (Addr::V4(s), Addr::V4(d)) => checksum::pseudo_v4(&s, &d, 17, 8),
        (Addr::V6(s), Addr::V6(d)) => checksum::pseudo_v6(&s, &d, 17, 8),
        _ => return false,
    };
    let udp_ok = checksum::fold(pseudo + checksum::sum(udp)) == 0xffff;
    let ip_ok = match info.src {
        Addr::V4(_) => {
            let l3 = usize::from(info.l3_offset);
            checksum::fold(checksum::sum(&frame[l3..l3 + 20])) == 0xffff
        }
        _ => true,
    };
    udp_ok && ip_ok && info.udp_len == 8 && info.payload_len == 0 && info.ip_end as usize == frame.len()
}

fn only_sent(o: &Out) -> Vec<u8> {
    assert_eq!(o.sent.len(), 1, "one generated frame: {:?}", o.sent.len());
    assert_eq!(o.sent[0].0, Side::Outside, "handshake requests leave by the outside port");
    o.sent[0].1.clone()
}

/// Client A → B for an allowed flow, datagrams `d` sent before the answer.
/// Returns what reached the server.
fn allowed_exchange(a: &mut Gw, b: &mut Gw, f: Flow, d: &[&[u8]]) -> Vec<Vec<u8>> {
    let first = f.c2s(d[0]);
    let o = a.pass(Side::Inside, &first);
    assert!(matches!(o.action, Some(Action::Hold(_))), "{:?}", o.action);
    let req = only_sent(&o);
    assert!(well_formed_handshake(&req));
    let (msg, id, ni, echo) = hs(&req);
    assert_eq!((msg, id, echo), (1, 1001, [0; 8]));
    let ri = parse_frame(&req).unwrap();
    let fi = parse_frame(&first).unwrap();
    assert_eq!((ri.src, ri.dst, ri.src_port, ri.dst_port), (fi.src, fi.dst, fi.src_port, fi.dst_port));
    for x in &d[1..] {
        let o = a.pass(Side::Inside, &f.c2s(x));
        assert!(matches!(o.action, Some(Action::Hold(_))));
        assert!(o.sent.is_empty(), "one request per handshake, not per datagram");
    }
    let o = b.pass(Side::Outside, &req);
    assert_eq!(o.action, Some(Action::Answer), "B answers, never forwards a request to its PU");
    let resp = o.frame;
    assert!(well_formed_handshake(&resp));
    let (msg, id, _nr, echo) = hs(&resp);
    assert_eq!((msg, id, echo), (2, 2001, ni), "a response with B's PU identity, echoing N_i");
    let pi = parse_frame(&resp).unwrap();
    assert_eq!((pi.src, pi.dst, pi.src_port, pi.dst_port), (fi.dst, fi.src, fi.dst_port, fi.src_port));
    assert_eq!(&resp[0..6], &req[6..12], "back to the sender's MAC");
    let o = a.pass(Side::Outside, &resp);
    assert_eq!(o.action, Some(Action::Consume));
    let want: Vec<Vec<u8>> = d.iter().map(|x| f.c2s(x)).collect();
    assert_eq!(o.released, want, "held datagrams released in order, unchanged");
    let mut at_server = Vec::new();
    for r in &o.released {
        let o = b.pass(Side::Outside, r);
        assert_eq!(o.action, Some(Action::Forward));
        at_server.push(o.frame);
    }
    at_server
}

#[test]
fn allowed_flow_holds_then_releases_in_order_and_passes_both_ways() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let f = Flow::new("10.1.0.10", "10.2.0.20", 53);
    let d: [&[u8]; 3] = [b"q1", b"q2", b"q3"];
    let at_server = allowed_exchange(&mut a, &mut b, f, &d);
    assert_eq!(
        at_server,
        d.iter().map(|x| f.c2s(x)).collect::<Vec<_>>(),
        "the server sees only the application's datagrams"
    );
    // Authorized both ways, one lookup, unchanged.
    let reply = f.s2c(b"answer");
    let o = b.pass(Side::Inside, &reply);
    assert_eq!((o.action, &o.frame), (Some(Action::Forward), &reply));
    assert_eq!(a.pass(Side::Outside, &reply).action, Some(Action::Forward));
    let more = f.c2s(b"q4");
    let o = a.pass(Side::Inside, &more);
    assert_eq!((o.action, o.sent.len()), (Some(Action::Forward), 0));
    assert_eq!(b.pass(Side::Outside, &more).action, Some(Action::Forward));
    assert_eq!(a.state(&f), Some(FlowState::Udp(UdpState::Authorized)));

    let ea = a.events();
    assert_eq!(ea.len(), 1, "{ea:?}");
    assert_eq!((ea[0].kind, ea[0].remote_identity, ea[0].initiator), (EventKind::Decision, Some(2001), Side::Inside));
    assert_eq!(a.rule_name(&ea[0]), "dns-to-web");
    let eb = b.events();
    assert_eq!(eb.len(), 1, "{eb:?}");
    assert_eq!((eb[0].remote_identity, eb[0].initiator), (Some(1001), Side::Outside));
    assert_eq!(b.rule_name(&eb[0]), "frontends");
    assert_eq!(a.noted(Side::Inside, Note::UdpRequestSent), 1);
    assert_eq!(a.noted(Side::Inside, Note::UdpHeld), 3);
    assert_eq!(a.noted(Side::Inside, Note::UdpReleased), 3);
    assert_eq!(a.noted(Side::Outside, Note::UdpHandshakeDone), 1);
    assert_eq!(b.noted(Side::Outside, Note::UdpResponseSent), 1);
    assert_eq!((a.engine.udp().pending(), a.engine.udp().held()), (0, 0), "the slot is free again");
    let st = a.engine.udp_stats();
    assert_eq!((st.started, st.answered, st.released, st.timed_out), (1, 1, 1, 0));
    let k = FlowKey::new(Side::Inside, ip(f.client), ip(f.server), f.cport, f.sport, 17);
    assert_eq!(a.engine.table().get(&k).unwrap().counters(Side::Inside).0, 4);
}

#[test]
fn ipv6_and_vlan_flows_handshake_too() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let f = Flow::new("fd00:1::10", "fd00:2::20", 53);
    allowed_exchange(&mut a, &mut b, f, &[b"v6"]);
    let mut v = Flow::new("10.1.0.10", "10.2.0.20", 53);
    v.vlans = &[100, 200];
    v.cport = 33001;
    let o = a.pass(Side::Inside, &v.c2s(b"x"));
    let req = only_sent(&o);
    assert_eq!(parse_frame(&req).unwrap().vlan_tags, 2, "the request keeps the flow's VLAN tags");
    allowed_exchange(&mut a, &mut b, Flow { cport: 33002, ..v }, &[b"tagged"]);
}

#[test]
fn lost_request_is_retransmitted_on_the_backoff() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let f = Flow::new("10.1.0.10", "10.2.0.20", 53);
    let o = a.pass(Side::Inside, &f.c2s(b"q"));
    let req1 = only_sent(&o); // lost
    assert!(a.tick(NOW + 49 * MS).sent.is_empty(), "not before 50 ms");
    let req2 = only_sent(&a.tick(NOW + 50 * MS));
    assert_eq!(req2, req1, "the same request again (same nonce)");
    assert!(a.tick(NOW + 149 * MS).sent.is_empty());
    let req3 = only_sent(&a.tick(NOW + 150 * MS)); // lost too
    assert_eq!(req3, req1);
    assert_eq!(a.noted(Side::Inside, Note::UdpRequestRetransmit), 2);
    let o = b.pass_at(Side::Outside, &req3, NOW + 151 * MS);
    let o = a.pass_at(Side::Outside, &o.frame, NOW + 152 * MS);
    assert_eq!((o.action, o.released.len()), (Some(Action::Consume), 1));
    assert!(a.tick(NOW + 10_000 * MS).sent.is_empty(), "no timer left once answered");
    let st = a.engine.udp_stats();
    assert_eq!(st.release_delay_max_ns, 152 * MS, "first datagram delayed by the loss, not by a drain delay");
}

#[test]
fn lost_response_duplicate_and_reordered_answers() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let f = Flow::new("10.1.0.10", "10.2.0.20", 53);
    let req = only_sent(&a.pass(Side::Inside, &f.c2s(b"q")));
    let resp1 = b.pass(Side::Outside, &req).frame; // lost on the way back
    let req2 = only_sent(&a.tick(NOW + 50 * MS));
    let o = b.pass(Side::Outside, &req2);
    assert_eq!(o.action, Some(Action::Answer), "a retransmitted request is answered again, not forwarded");
    let resp2 = o.frame;
    assert_eq!(hs(&resp1).3, hs(&resp2).3, "both echo the same N_i");
    assert_eq!(b.events().len(), 1, "one decision at B for both requests");
    // The later answer arrives first (reordered), then the earlier one (duplicate).
    let o = a.pass(Side::Outside, &resp2);
    assert_eq!((o.action, o.released.len()), (Some(Action::Consume), 1));
    let o = a.pass(Side::Outside, &resp1);
    assert_eq!(o.action, Some(Action::Consume));
    assert!(o.released.is_empty() && o.discarded.is_empty());
    assert_eq!(a.noted(Side::Outside, Note::UdpDuplicateAnswer), 1);
    assert_eq!(a.events().len(), 1);
    // A request after B authorized the flow still never reaches the server.
    assert_eq!(b.pass(Side::Outside, &req).action, Some(Action::Answer));
}

#[test]
fn forged_and_replayed_answers_never_end_the_handshake() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let f = Flow::new("10.1.0.10", "10.2.0.20", 53);
    let req = only_sent(&a.pass(Side::Inside, &f.c2s(b"q")));
    let resp = b.pass(Side::Outside, &req).frame;
    let info = parse_frame(&resp).unwrap();
    let opt = usize::from(info.udp_opts_offset) + 2; // after the OCS
                                                     // A forged MAC.
    let mut forged = resp.clone();
    forged[opt + 44] ^= 1;
    let ocs_fix = |fr: &mut Vec<u8>| {
        let at = usize::from(info.udp_opts_offset);
        let end = fr.len();
        fr[at..at + 2].copy_from_slice(&[0, 0]); // OCS 0: "not computed"
        let _ = end;
    };
    ocs_fix(&mut forged);
    assert_eq!(a.pass(Side::Outside, &forged).action, Some(Action::Drop(DropReason::IdentityBadMac)));
    // A reject forged from the response: msg changed, MAC unchanged.
    let mut forged_reject = resp.clone();
    forged_reject[opt + 5] = 3;
    ocs_fix(&mut forged_reject);
    assert_eq!(a.pass(Side::Outside, &forged_reject).action, Some(Action::Drop(DropReason::IdentityBadMac)));
    // A reject signed by a third gateway's key: unknown key id.
    let mut third = forged_reject.clone();
    third[opt + 6..opt + 9].copy_from_slice(&[0, 9, 1]);
    assert_eq!(a.pass(Side::Outside, &third).action, Some(Action::Drop(DropReason::IdentityUnknownKey)));
    // The response moved to another flow (another client port).
    let other = Flow { cport: 33999, ..f };
    let _ = a.pass(Side::Inside, &other.c2s(b"x"));
    let mut moved = resp.clone();
    let l4 = usize::from(info.l4_offset);
    moved[l4 + 2..l4 + 4].copy_from_slice(&33999u16.to_be_bytes());
    moved[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
    assert_eq!(a.pass(Side::Outside, &moved).action, Some(Action::Drop(DropReason::IdentityBadMac)));
    assert_eq!(a.state(&f), Some(FlowState::Udp(UdpState::Pending)), "still pending after every forgery");
    assert_eq!(a.dropped(Side::Outside, DropReason::IdentityBadMac), 3);
    // The genuine answer still completes it.
    let o = a.pass(Side::Outside, &resp);
    assert_eq!((o.action, o.released.len()), (Some(Action::Consume), 1));
    // A response from an earlier handshake of the same flow (old echo) is refused.
    let g = Flow { cport: 34000, ..f };
    let req_old = only_sent(&a.pass(Side::Inside, &g.c2s(b"1")));
    let resp_old = b.pass(Side::Outside, &req_old).frame;
    assert_eq!(a.pass(Side::Outside, &resp_old).action, Some(Action::Consume));
    // flow g idles out, starts again with a new nonce
    let later = NOW + 600 * 1_000 * MS;
    let o = a.pass_at(Side::Inside, &g.c2s(b"2"), later);
    assert!(matches!(o.action, Some(Action::Hold(_))));
    assert_eq!(
        a.pass_at(Side::Outside, &resp_old, later).action,
        Some(Action::Drop(DropReason::UdpUnexpectedHandshake))
    );
    // Unsolicited answers: no pending flow.
    let h = Flow { cport: 34001, ..f };
    let req_h = only_sent(&Gw::a().pass(Side::Inside, &h.c2s(b"q")));
    let resp_h = b.pass(Side::Outside, &req_h).frame;
    assert_eq!(a.pass(Side::Outside, &resp_h).action, Some(Action::Drop(DropReason::UdpUnexpectedHandshake)));
}

#[test]
fn rejected_by_peer_is_signed_and_drops_the_held_datagrams() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let f = Flow::new("10.1.0.11", "10.2.0.20", 53); // batch → web: no rule at B
    let req = only_sent(&a.pass(Side::Inside, &f.c2s(b"q1")));
    assert!(matches!(a.pass(Side::Inside, &f.c2s(b"q2")).action, Some(Action::Hold(_))));
    let o = b.pass(Side::Outside, &req);
    assert_eq!(o.action, Some(Action::Reply(DropReason::NoMatch)), "the request dropped, a reject made");
    let (msg, id, _, echo) = hs(&o.frame);
    assert_eq!((msg, id, echo), (3, 2001, hs(&req).2), "a signed reject echoing N_i");
    assert!(well_formed_handshake(&o.frame));
    assert_eq!(b.dropped(Side::Outside, DropReason::NoMatch), 1);
    assert_eq!(b.noted(Side::Outside, Note::UdpRejectSent), 1);
    let eb = b.events();
    assert_eq!((eb.len(), eb[0].drop), (1, Some(DropReason::NoMatch)));
    let r = a.pass(Side::Outside, &o.frame);
    assert_eq!(r.action, Some(Action::Consume));
    assert_eq!(r.discarded, vec![(2, DropReason::UdpRejectedByPeer)]);
    assert!(r.released.is_empty());
    assert_eq!(a.dropped(Side::Inside, DropReason::UdpRejectedByPeer), 2);
    let ea = a.events();
    assert_eq!((ea.len(), ea[0].drop, ea[0].remote_identity), (1, Some(DropReason::UdpRejectedByPeer), Some(2001)));
    // Later datagrams hit the cached reject at once, no new handshake.
    let o = a.pass(Side::Inside, &f.c2s(b"q3"));
    assert_eq!((o.action, o.sent.len()), (Some(Action::Drop(DropReason::PolicyReject)), 0));
    // And B drops any datagram of the flow that gets there anyway.
    assert_eq!(b.pass(Side::Outside, &f.c2s(b"sneak")).action, Some(Action::Drop(DropReason::NoMatch)));
    // A lost reject: the retransmitted request gets the same signed reject.
    let g = Flow { cport: 33100, ..f };
    let req = only_sent(&a.pass(Side::Inside, &g.c2s(b"q")));
    let _lost = b.pass(Side::Outside, &req);
    let req2 = only_sent(&a.tick(NOW + 50 * MS));
    let o = b.pass(Side::Outside, &req2);
    assert_eq!(hs(&o.frame).0, 3);
    assert_eq!(a.pass(Side::Outside, &o.frame).discarded, vec![(1, DropReason::UdpRejectedByPeer)]);
}

#[test]
fn signed_rejects_come_out_of_the_reset_budget() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let none = crate::engine::ReplyLimits { verified_per_s: 0, verified_burst: 0, ..Default::default() };
    b.engine.set_reply_limits(none).unwrap();
    let f = Flow::new("10.1.0.11", "10.2.0.20", 53); // batch → web: no rule at B
    let req = only_sent(&a.pass(Side::Inside, &f.c2s(b"q1")));
    let o = b.pass(Side::Outside, &req);
    assert_eq!(o.action, Some(Action::Drop(DropReason::NoMatch)), "dropped, not answered");
    assert_eq!(b.noted(Side::Outside, Note::UdpRejectSuppressed), 1);
    assert_eq!(b.noted(Side::Outside, Note::UdpRejectSent), 0);
    assert_eq!(b.dropped(Side::Outside, DropReason::NoMatch), 1, "the decision is counted all the same");
}

#[test]
fn rejected_by_own_outgoing_rules_after_the_peer_allowed() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let f = Flow::new("10.1.0.10", "10.2.0.30", 5353); // client → db: B allows, A's no-db rejects
    let req = only_sent(&a.pass(Side::Inside, &f.c2s(b"q")));
    let o = b.pass(Side::Outside, &req);
    assert_eq!(hs(&o.frame).0, 2);
    let r = a.pass(Side::Outside, &o.frame);
    assert_eq!(r.discarded, vec![(1, DropReason::PolicyReject)]);
    let ea = a.events();
    assert_eq!(a.rule_name(&ea[0]), "no-db");
}

#[test]
fn no_answer_falls_back_to_the_acls_allow_and_reject() {
    let mut a = Gw::a();
    // Allowed by the lab external network (udp/53), no gateway answers.
    let f = Flow::new("10.1.0.10", "10.2.0.99", 53);
    let first = f.c2s(b"q");
    let o = a.pass(Side::Inside, &first);
    only_sent(&o);
    let mut sent = 1;
    for t in [50, 150, 350] {
        assert!(a.tick(NOW + (t - 1) * MS).sent.is_empty());
        let o = a.tick(NOW + t * MS);
        assert_eq!(o.sent.len(), 1, "retransmit at {t} ms");
        sent += 1;
    }
    assert_eq!(sent, 4, "one request per backoff entry");
    let o = a.tick(NOW + 749 * MS);
    assert!(o.released.is_empty() && o.sent.is_empty());
    let o = a.tick(NOW + 750 * MS);
    assert_eq!(o.released, vec![first.clone()], "fallback at 750 ms: the ACL allows, held datagram released");
    assert!(o.sent.is_empty());
    assert_eq!(a.noted(Side::Inside, Note::UdpHandshakeTimeout), 1);
    let ev = a.events();
    assert_eq!((ev.len(), ev[0].note, ev[0].remote_identity), (1, Some(Note::UdpHandshakeTimeout), None));
    assert_eq!(ev[0].decision().unwrap().reason, Reason::ExternalNetworkAllow);
    assert_eq!(a.rule_name(&ev[0]), "lab-dns");
    // The server's answer passes; later datagrams pass without a handshake.
    assert_eq!(a.pass_at(Side::Outside, &f.s2c(b"a"), NOW + 751 * MS).action, Some(Action::Forward));
    assert_eq!(a.pass_at(Side::Inside, &f.c2s(b"q2"), NOW + 752 * MS).action, Some(Action::Forward));
    // Port 54: no rule allows it: the held datagrams are dropped by the ACL verdict.
    let g = Flow::new("10.1.0.10", "10.2.0.99", 54);
    a.pass(Side::Inside, &g.c2s(b"1"));
    a.pass(Side::Inside, &g.c2s(b"2"));
    let mut discarded = Vec::new();
    for t in (0..=800).step_by(10) {
        discarded.extend(a.tick(NOW + t * MS).discarded);
    }
    assert_eq!(discarded, vec![(2, DropReason::NoMatch)]);
    assert_eq!(a.engine.udp_stats().timed_out, 2);
    assert_eq!(a.pass(Side::Inside, &g.c2s(b"3")).action, Some(Action::Drop(DropReason::NoMatch)));
    // Datagrams from the network for a flow still pending are refused.
    let h = Flow::new("10.1.0.10", "10.2.0.99", 55);
    a.pass(Side::Inside, &h.c2s(b"1"));
    assert_eq!(a.pass(Side::Outside, &h.s2c(b"early")).action, Some(Action::Drop(DropReason::UdpNotAuthorized)));
}

#[test]
fn timers_fire_in_deadline_order_across_flows() {
    let mut a = Gw::a();
    let f1 = Flow::new("10.1.0.10", "10.2.0.99", 53);
    let f2 = Flow { cport: 33001, ..f1 };
    let r1 = only_sent(&a.pass_at(Side::Inside, &f1.c2s(b"1"), NOW));
    let r2 = only_sent(&a.pass_at(Side::Inside, &f2.c2s(b"2"), NOW + 10 * MS));
    assert_eq!(only_sent(&a.tick(NOW + 55 * MS)), r1, "only the first is due");
    assert_eq!(only_sent(&a.tick(NOW + 60 * MS)), r2);
    // Both due at once: both go, in order.
    let o = a.tick(NOW + 400 * MS);
    assert_eq!(o.sent.iter().map(|x| x.1.clone()).collect::<Vec<_>>(), vec![r1.clone(), r2.clone()]);
}

#[test]
fn hold_and_pending_bounds_drop_with_their_reasons() {
    let mut a = Gw::a();
    let cfg = UdpConfig { backoff_ms: vec![50, 100], hold_per_flow: 3, hold_total: 5, pending: 2 };
    a.engine.set_udp_config(cfg).unwrap();
    let f1 = Flow::new("10.1.0.10", "10.2.0.20", 53);
    for i in 0..3 {
        assert!(matches!(a.pass(Side::Inside, &f1.c2s(&[i])).action, Some(Action::Hold(_))));
    }
    assert_eq!(a.pass(Side::Inside, &f1.c2s(b"4")).action, Some(Action::Drop(DropReason::UdpHoldQueueFull)));
    let f2 = Flow { cport: 33001, ..f1 };
    assert!(matches!(a.pass(Side::Inside, &f2.c2s(b"a")).action, Some(Action::Hold(_))));
    assert!(matches!(a.pass(Side::Inside, &f2.c2s(b"b")).action, Some(Action::Hold(_))));
    assert_eq!(a.engine.udp().held(), 5);
    assert_eq!(a.pass(Side::Inside, &f2.c2s(b"c")).action, Some(Action::Drop(DropReason::UdpHoldTotalFull)));
    let f3 = Flow { cport: 33002, ..f1 };
    assert_eq!(a.pass(Side::Inside, &f3.c2s(b"x")).action, Some(Action::Drop(DropReason::UdpHoldTotalFull)));
    // Free some: f1 times out (fallback: lab-dns allows port 53) and frees 3.
    let mut released = 0;
    for t in (0..=200).step_by(10) {
        released += a.tick(NOW + t * MS).released.len();
    }
    assert_eq!(released, 5, "both flows fell back at 150 ms and were released");
    let f4 = Flow { cport: 33003, ..f1 };
    let f5 = Flow { cport: 33004, ..f1 };
    assert!(matches!(a.pass(Side::Inside, &f3.c2s(b"x")).action, Some(Action::Hold(_))));
    assert!(matches!(a.pass(Side::Inside, &f4.c2s(b"x")).action, Some(Action::Hold(_))));
    assert_eq!(a.pass(Side::Inside, &f5.c2s(b"x")).action, Some(Action::Drop(DropReason::UdpPendingFull)));
    assert_eq!(a.dropped(Side::Inside, DropReason::UdpPendingFull), 1);
    assert_eq!(a.dropped(Side::Inside, DropReason::UdpHoldTotalFull), 2);
    assert_eq!(a.dropped(Side::Inside, DropReason::UdpHoldQueueFull), 1);
}

#[test]
fn bad_udp_config_names_the_field() {
    let mut a = Gw::a();
    let e = a
        .engine
        .set_udp_config(UdpConfig { backoff_ms: vec![0, 3000, 3000], hold_per_flow: 0, hold_total: 0, pending: 0 })
        .unwrap_err();
    let all = crate::problem::lines(&e);
    for want in [
        "backoff_ms[0]: 0",
        "backoff_ms: the waits add up to 6000 ms",
        "hold_per_flow: 0",
        "hold_total: 0",
        "pending: 0",
    ] {
        assert!(all.contains(want), "{want:?} missing from:\n{all}");
    }
    assert!(a.engine.set_udp_config(UdpConfig { backoff_ms: vec![], ..UdpConfig::default() }).is_err());
}

#[test]
fn pus_may_not_send_the_option_and_no_peer_means_acls_at_once() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let f = Flow::new("10.1.0.10", "10.2.0.20", 53);
    let req = only_sent(&a.pass(Side::Inside, &f.c2s(b"q")));
    // The request replayed from the inside (a PU forging a handshake).
    let g = Gw::b().pass(Side::Outside, &req).frame;
    assert_eq!(b.pass(Side::Inside, &g).action, Some(Action::Drop(DropReason::IdentityAlreadyPresent)));
    // A managed destination no peer covers: no handshake, the ACLs decide now.
    let np = Flow::new("10.1.0.10", "10.5.0.5", 53);
    let o = a.pass(Side::Inside, &np.c2s(b"q"));
    assert_eq!((o.action, o.sent.len()), (Some(Action::Forward), 0));
    assert_eq!(a.noted(Side::Inside, Note::NoPeerForDestination), 1);
    // Unmanaged destination: as before, the ACL on the first packet.
    let un = Flow::new("10.1.0.10", "10.9.0.5", 53);
    let o = a.pass(Side::Inside, &un.c2s(b"q"));
    assert_eq!((o.action, o.sent.len()), (Some(Action::Forward), 0));
}

#[test]
fn evicted_pending_flow_discards_its_datagrams_at_its_deadline() {
    let mut a = Gw::new(&doc_a());
    a.engine = Engine::new(1, 7, a.stats.clone(), None);
    let f1 = Flow::new("10.1.0.10", "10.2.0.20", 53);
    let f2 = Flow { cport: 33001, ..f1 };
    assert!(matches!(a.pass(Side::Inside, &f1.c2s(b"1")).action, Some(Action::Hold(_))));
    // The one-entry table evicts f1's pending entry for f2.
    assert!(matches!(a.pass(Side::Inside, &f2.c2s(b"2")).action, Some(Action::Hold(_))));
    let mut discarded = Vec::new();
    let mut released = Vec::new();
    for t in (0..=800).step_by(50) {
        let o = a.tick(NOW + t * MS);
        discarded.extend(o.discarded);
        released.extend(o.released);
    }
    assert_eq!(discarded, vec![(1, DropReason::FlowTableFull)]);
    assert_eq!(released, vec![f2.c2s(b"2")]);
    assert_eq!(a.engine.udp().pending(), 0);
}

#[test]
fn hostile_handshake_frames_never_panic() {
    let (mut a, mut b) = (Gw::a(), Gw::b());
    let f = Flow::new("10.1.0.10", "10.2.0.20", 53);
    let req = only_sent(&a.pass(Side::Inside, &f.c2s(b"q")));
    let resp = b.pass(Side::Outside, &req).frame;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..20_000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut fr = if i % 2 == 0 { req.clone() } else { resp.clone() };
        for k in 0..1 + (rng % 4) as usize {
            let at = ((rng >> (8 * k)) as usize) % fr.len();
            fr[at] ^= (rng >> (16 + k)) as u8 | 1;
        }
        if i % 5 == 0 {
            fr.truncate((rng as usize) % fr.len());
        }
        let side = if i % 3 == 0 { Side::Inside } else { Side::Outside };
        let _ = a.pass_at(side, &fr, NOW + i * MS);
        let _ = b.pass_at(side, &fr, NOW + i * MS);
        if i % 64 == 0 {
            a.tick(NOW + i * MS);
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
