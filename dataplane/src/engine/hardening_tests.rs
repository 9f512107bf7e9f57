//! The engine against replays after a flow ended, reset floods and identity
//! options hidden where a workload would receive them, on the two
//! gateways of `tests.rs`.

use super::tests::{allowed_handshake, option_of, pair, Conn, Gw, NOW};
use super::*;
use crate::engine::test_harness::Counted;
use crate::events::EventKind;
use crate::stats::Note;
use crate::wire::parse_frame;
use crate::wire::tcp::flags as tf;
use crate::Side;

const S: u64 = 1_000_000_000;

/// The identity option A puts on `c`'s SYN (20 bytes), and the signed SYN.
fn signed_syn(a: &mut Gw, c: &Conn) -> (Vec<u8>, Vec<u8>) {
    let (act, w) = a.pass(Side::Inside, &c.syn());
    assert_eq!(act, Action::Forward);
    let info = parse_frame(&w).unwrap();
    let o = usize::from(info.tcp_opts_offset);
    (w[o..o + 20].to_vec(), w)
}

/// Closes `c` (FIN both ways, last ACK) through A and B at `now`.
fn close(a: &mut Gw, b: &mut Gw, c: &Conn, now: u64) {
    let fin_c = c.c2s(tf::FIN | tf::ACK, c.isn + 1, c.sisn + 1, &[], &[]);
    let fin_s = c.s2c(tf::FIN | tf::ACK, c.sisn + 1, c.isn + 2, &[], &[]);
    let last = c.c2s(tf::ACK, c.isn + 2, c.sisn + 2, &[], &[]);
    assert_eq!(a.pass_at(Side::Inside, &fin_c, now).0, Action::Forward);
    assert_eq!(b.pass_at(Side::Outside, &fin_c, now).0, Action::Forward);
    assert_eq!(b.pass_at(Side::Inside, &fin_s, now).0, Action::Forward);
    assert_eq!(a.pass_at(Side::Outside, &fin_s, now).0, Action::Forward);
    assert_eq!(b.pass_at(Side::Outside, &last, now).0, Action::Forward);
}

#[test]
fn an_exact_syn_replay_after_the_flow_ended_is_refused() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, signed) = signed_syn(&mut a, &c);
    allowed_handshake(&mut a, &mut b, c, 1001, 2001);
    close(&mut a, &mut b, &c, NOW + S);
    // The closed flow idles out (5 s) and leaves the table.
    let ended = NOW + 7 * S;
    b.engine.sweep(ended);
    assert_eq!(b.engine.table().len(), 0);
    assert_eq!(b.engine.replay_memory().stats().remembered, 1);
    assert_eq!(b.stats.read().replay_remembered, 1, "exported as a counter");
    b.events();

    // 8 s after the close, the captured SYN again: it would verify, but the
    // connection it belongs to is over.
    assert_eq!(b.pass_at(Side::Outside, &signed, NOW + 9 * S).0, Action::Drop(DropReason::Replay));
    assert_eq!(b.dropped(Side::Outside, DropReason::Replay), 1);
    assert_eq!(b.noted(Side::Outside, Note::IdentityVerified), 1, "refused before its MAC was computed");
    let ev = b.events();
    assert_eq!((ev.len(), ev[0].kind, ev[0].drop), (1, EventKind::Drop, Some(DropReason::Replay)));
    assert_eq!(b.engine.table().len(), 0, "no flow made for it");
    // Still refused near the end of the window (counted from when the flow
    // left the table); forgotten after it (the documented limit:
    // docs/identity-option.md, "Replays").
    let w = u64::from(replay::DEFAULT_WINDOW_S) * S;
    assert_eq!(b.pass_at(Side::Outside, &signed, ended + w - S).0, Action::Drop(DropReason::Replay));
    assert_eq!(b.pass_at(Side::Outside, &signed, ended + w + S).0, Action::Forward);
    // Another connection of the same client (another ISN) is not a replay.
    let next = Conn { isn: 0x5000, ..c };
    let (_, signed_next) = signed_syn(&mut a, &next);
    assert_eq!(b.pass_at(Side::Outside, &signed_next, NOW + 10 * S).0, Action::Forward);
}

#[test]
fn retransmissions_of_a_handshake_that_never_completed_still_pass() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, signed) = signed_syn(&mut a, &c);
    assert_eq!(b.pass_at(Side::Outside, &signed, NOW).0, Action::Forward);
    assert_eq!(b.pass_at(Side::Outside, &signed, NOW + S).0, Action::Forward, "retransmitted in the handshake");
    // No answer: the handshake entry idles out (10 s) while the client keeps
    // retransmitting (Linux does for 127 s). It was never established, so it
    // is not remembered, and the next retransmission makes a new flow.
    b.engine.sweep(NOW + 12 * S);
    assert_eq!(b.engine.table().len(), 0);
    assert_eq!(b.engine.replay_memory().stats().remembered, 0);
    assert_eq!(b.pass_at(Side::Outside, &signed, NOW + 13 * S).0, Action::Forward);
    assert_eq!(b.dropped(Side::Outside, DropReason::Replay), 0);
}

#[test]
fn a_replayed_syn_of_a_connection_replaced_on_its_tuple_is_refused() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, old) = signed_syn(&mut a, &c);
    allowed_handshake(&mut a, &mut b, c, 1001, 2001);
    close(&mut a, &mut b, &c, NOW);
    // The client reuses the tuple with a new ISN before the closed flow left
    // B's table: the new SYN takes the entry over.
    let c2 = Conn { isn: 0x7000, sisn: 0xa000, ..c };
    allowed_handshake(&mut a, &mut b, c2, 1001, 2001);
    assert_eq!(b.engine.replay_memory().stats().remembered, 1, "the first connection was retired");
    // The first connection's SYN replayed now would have restarted the live
    // flow of the second.
    assert_eq!(b.pass(Side::Outside, &old).0, Action::Drop(DropReason::Replay));
    let f = c2.data_c2s(b"still here");
    assert_eq!(b.pass(Side::Outside, &f), (Action::Forward, f.clone()), "the second connection is untouched");
}

#[test]
fn a_spoofed_syn_flood_gets_at_most_the_bucket_of_resets() {
    let (mut a, mut b) = pair();
    let limits = ReplyLimits::default();
    // 1000 SYNs without identity from forged sources no rule allows, one per
    // millisecond: each is dropped with its reason, a few are answered.
    let mut replies = 0;
    for i in 0..1000u32 {
        let src: &'static str = Box::leak(format!("192.168.{}.{}", 60 + i / 250, 1 + i % 250).into_boxed_str());
        let c = Conn::new(src, "10.2.0.20", 80);
        match b.pass_at(Side::Outside, &c.syn(), NOW + u64::from(i) * 1_000_000).0 {
            Action::Reply(DropReason::NoMatch) => replies += 1,
            Action::Drop(DropReason::NoMatch) => {}
            other => panic!("{other:?}"),
        }
    }
    let most = limits.unverified_burst + limits.unverified_per_s; // one second's worth
    assert!(replies >= limits.unverified_burst && replies <= most, "{replies} resets");
    assert_eq!(b.noted(Side::Outside, Note::RstSent), u64::from(replies));
    assert_eq!(b.noted(Side::Outside, Note::RstSuppressed), u64::from(1000 - replies));
    assert_eq!(b.dropped(Side::Outside, DropReason::NoMatch), 1000, "every SYN counted with its reason");
    // A verified peer's rejected SYN draws from its own budget: still reset.
    let batch = Conn::new("10.1.0.11", "10.2.0.20", 80);
    let (_, w) = a.pass(Side::Inside, &batch.syn());
    assert_eq!(b.pass_at(Side::Outside, &w, NOW + S).0, Action::Reply(DropReason::NoMatch));
}

#[test]
fn reset_budgets_are_set_from_the_configuration() {
    let (_, mut b) = pair();
    assert!(b.engine.set_reply_limits(ReplyLimits { unverified_burst: 0, ..Default::default() }).is_err());
    let none = ReplyLimits { unverified_per_s: 0, unverified_burst: 0, ..Default::default() };
    b.engine.set_reply_limits(none).unwrap();
    let c = Conn::new("192.168.60.7", "10.2.0.20", 80);
    assert_eq!(b.pass(Side::Outside, &c.syn()).0, Action::Drop(DropReason::NoMatch));
    assert_eq!(b.noted(Side::Outside, Note::RstSuppressed), 1);
}

#[test]
fn an_identity_option_never_reaches_a_workload() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (opt, signed) = signed_syn(&mut a, &c);
    let malformed: [u8; 4] = [8, 1, 0, 0]; // a timestamp option of length 1
    let then_bad = [opt.as_slice(), &malformed].concat();
    let bad_then = [&malformed, opt.as_slice()].concat();

    // No flow: an office host (its ACL would allow the flow) sends the
    // option on an ACK: a replay, whatever follows or precedes it.
    let office = Conn::new("192.168.50.7", "10.2.0.20", 80);
    for opts in [&opt, &then_bad, &bad_then] {
        let f = office.c2s(tf::ACK, 1, 1, opts, b"x");
        assert_eq!(b.pass(Side::Outside, &f).0, Action::Drop(DropReason::Replay), "{opts:?}");
    }
    let f = office.c2s(tf::ACK, 1, 1, &[], b"x");
    assert_eq!(b.pass(Side::Outside, &f).0, Action::Forward, "without the option the ACL decides");

    // Established: the option behind a malformed one is found too.
    allowed_handshake(&mut a, &mut b, c, 1001, 2001);
    for opts in [&then_bad, &bad_then] {
        let f = c.c2s(tf::ACK, c.isn + 1, c.sisn + 1, opts, &[]);
        assert_eq!(b.pass(Side::Outside, &f).0, Action::Drop(DropReason::Replay), "{opts:?}");
    }
    assert_eq!(b.dropped(Side::Outside, DropReason::Replay), 5);
    assert_eq!(b.dropped(Side::Outside, DropReason::NoFlowState), 0, "docs/config.md says replay");

    // A SYN whose option sits behind a malformed one cannot be verified and
    // does not pass; neither does a second option after one that verified.
    let other = Conn::new("10.1.0.10", "10.2.0.20", 8080);
    let (opt2, _) = signed_syn(&mut a, &other);
    let hidden = other.c2s(tf::SYN, other.isn, 0, &[&malformed, opt2.as_slice()].concat(), &[]);
    assert_eq!(b.pass(Side::Outside, &hidden).0, Action::Drop(DropReason::Malformed));
    let twice = other.c2s(tf::SYN, other.isn, 0, &[opt2.as_slice(), &opt2].concat(), &[]);
    assert_eq!(b.pass(Side::Outside, &twice).0, Action::Drop(DropReason::IdentityDuplicate));
    assert_eq!(option_of(&signed).map(|o| o.1), Some(1001));
    // The same on a SYN-ACK, at the client's gateway.
    let (mut a, mut b) = pair();
    let (_, w) = a.pass(Side::Inside, &c.syn());
    assert_eq!(b.pass(Side::Outside, &w).0, Action::Forward);
    let (_, sa) = b.pass(Side::Inside, &c.syn_ack());
    let info = parse_frame(&sa).unwrap();
    let o = usize::from(info.tcp_opts_offset);
    let sa_opt = &sa[o..o + 20];
    let hidden = c.s2c(tf::SYN | tf::ACK, c.sisn, c.isn + 1, &[&malformed, sa_opt].concat(), &[]);
    assert_eq!(a.pass(Side::Outside, &hidden).0, Action::Drop(DropReason::Malformed));
    let twice = c.s2c(tf::SYN | tf::ACK, c.sisn, c.isn + 1, &[sa_opt, sa_opt].concat(), &[]);
    assert_eq!(a.pass(Side::Outside, &twice).0, Action::Drop(DropReason::IdentityDuplicate));
    assert_eq!(a.pass(Side::Outside, &sa), (Action::Forward, c.syn_ack()), "the genuine SYN-ACK still passes");
}
