//! The TCP option's two format versions between the two gateways of
//! `tests.rs`: each sends what its document says for the peer
//! (`peers[].option_version`), each verifies both, and an option passed off
//! as the other version, or of a version no gateway speaks, is refused.

use super::tests::{a_key, allowed_handshake, doc_a, doc_b, Conn, Gw};
use super::*;
use crate::engine::test_harness::Counted;
use crate::stats::Note;
use crate::wire::parse_frame;
use crate::Side;

/// A's and B's documents, each sending `a`/`b` to the other (`None`: the
/// field left out, the default).
fn pair_sending(a: Option<u8>, b: Option<u8>) -> (Gw, Gw) {
    let field = |v: Option<u8>| v.map(|v| format!(", option_version: {v}")).unwrap_or_default();
    let a_nets = r#"networks: [10.2.0.0/16, "fd00:2::/64"]"#;
    let b_nets = r#"networks: [10.1.0.0/16, "fd00:1::/64"]"#;
    let da = doc_a(1, 1).replace(a_nets, &format!("{a_nets}{}", field(a)));
    let db = doc_b(&a_key(1, 1), true).replacen(b_nets, &format!("{b_nets}{}", field(b)), 1);
    assert!(a.is_none() || da.contains("option_version"), "{da}");
    assert!(b.is_none() || db.contains("option_version"), "{db}");
    (Gw::new(&da), Gw::new(&db))
}

/// Where the identity option starts in a frame (the engine puts it first).
fn option_at(frame: &[u8]) -> usize {
    usize::from(parse_frame(frame).unwrap().tcp_opts_offset)
}

/// The version nibble of the option a gateway puts on `frame` from its inside.
fn sent_version(gw: &mut Gw, frame: &[u8]) -> (u8, Vec<u8>) {
    let (act, w) = gw.pass(Side::Inside, frame);
    assert_eq!(act, Action::Forward);
    (w[option_at(&w) + 4] >> 4, w)
}

#[test]
fn a_version_1_and_a_version_2_gateway_interoperate_both_ways() {
    for (a_sends, b_sends) in [(None, Some(2)), (Some(2), None), (Some(2), Some(2)), (Some(1), Some(1))] {
        let (mut a, mut b) = pair_sending(a_sends, b_sends);
        let (av, bv) = (a_sends.unwrap_or(1), b_sends.unwrap_or(1));
        let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
        // What each puts on the wire (the first SYN and SYN-ACK of a
        // connection on another port, so that the handshake below is fresh).
        let probe = Conn { cport: 40001, ..c };
        let (v, syn) = sent_version(&mut a, &probe.syn());
        assert_eq!(v, av, "A sends {a_sends:?}");
        assert_eq!(b.pass(Side::Outside, &syn), (Action::Forward, probe.syn()), "B verifies version {av}");
        let (v, _) = sent_version(&mut b, &probe.syn_ack());
        assert_eq!(v, bv, "B answers with what it sends to A");

        allowed_handshake(&mut a, &mut b, c, 1001, 2001);
        // Verified at B: two SYNs of version av; at A: one SYN-ACK of bv.
        assert_eq!(b.noted(Side::Outside, Note::IdentityVerified), 2);
        assert_eq!(a.noted(Side::Outside, Note::IdentityVerified), 1);
        assert_eq!(b.noted(Side::Outside, Note::IdentityVerifiedV1), if av == 1 { 2 } else { 0 });
        assert_eq!(a.noted(Side::Outside, Note::IdentityVerifiedV1), if bv == 1 { 1 } else { 0 });
    }
}

#[test]
fn an_option_passed_off_as_the_other_version_is_refused() {
    for (sends, other) in [(2u8, 1u8), (1, 2)] {
        let (mut a, mut b) = pair_sending(Some(sends), None);
        let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
        let (v, mut syn) = sent_version(&mut a, &c.syn());
        assert_eq!(v, sends);
        // The version nibble is bound by the MAC: the same key, MAC and
        // bytes read as the other version do not verify.
        let at = option_at(&syn) + 4;
        syn[at] = (other << 4) | (syn[at] & 0x0f);
        assert_eq!(b.pass(Side::Outside, &syn).0, Action::Drop(DropReason::IdentityBadMac));
        assert_eq!(b.dropped(Side::Outside, DropReason::IdentityBadMac), 1);
        assert_eq!(b.noted(Side::Outside, Note::IdentityVerified), 0);
    }
}

#[test]
fn an_option_of_a_version_no_gateway_speaks_is_refused_as_before() {
    let (mut a, mut b) = pair_sending(Some(2), None);
    for (i, v) in [0u8, 3, 15].into_iter().enumerate() {
        let c = Conn { cport: 40000 + i as u16, ..Conn::new("10.1.0.10", "10.2.0.20", 80) };
        let (_, mut syn) = sent_version(&mut a, &c.syn());
        let at = option_at(&syn) + 4;
        syn[at] = (v << 4) | (syn[at] & 0x0f);
        assert_eq!(b.pass(Side::Outside, &syn).0, Action::Drop(DropReason::IdentityBadVersion), "version {v}");
    }
    assert_eq!(b.dropped(Side::Outside, DropReason::IdentityBadVersion), 3);
}

#[test]
fn a_bad_option_version_is_a_named_problem() {
    let a_nets = r#"networks: [10.2.0.0/16, "fd00:2::/64"]"#;
    for bad in ["0", "3", "300"] {
        let doc = doc_a(1, 1).replace(a_nets, &format!("{a_nets}, option_version: {bad}"));
        let e = EngineConfig::from_yaml(&doc).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        let p = &e[0];
        assert_eq!((p.resource.as_str(), p.name.as_str(), p.field.as_str()), ("peers", "gw-b", "option_version"));
        assert_eq!(p.value, bad);
        assert!(p.message.starts_with(&format!("peers[\"gw-b\"].option_version: {bad} is not an identity option")));
    }
}
