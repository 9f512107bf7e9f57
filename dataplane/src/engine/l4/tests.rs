//! The layer-4 exchange between two engines (gateway A: clients, B:
//! servers, the harness of `engine::tests`), with the option stripped by
//! hand between them as `TCPOPTSTRIP` does.

use super::segment::Seg;
use crate::buf::{PacketBuf, VecBuf};
use crate::engine::test_harness::Counted;
use crate::engine::tests::{a_key, checksums_ok, doc_a, doc_b, option_of, Conn, Gw, NOW};
use crate::engine::udp::Effect;
use crate::engine::Action;
use crate::events::EventKind;
use crate::flow::FlowKey;
use crate::identity::l4::looks_like_record;
use crate::identity::strip_tcp;
use crate::stats::{DropReason, Note};
use crate::wire::tcp::flags as tf;
use crate::wire::{self, parse_frame, Addr};
use crate::Side;

const S: u64 = 1_000_000_000;

fn pair_with(profile_extra: &str, web_rule: bool) -> (Gw, Gw) {
    let add = |d: String| d.replace("enforcer_profile:\n", &format!("enforcer_profile:\n{profile_extra}"));
    (Gw::new(&add(doc_a(1, 1))), Gw::new(&add(doc_b(&a_key(1, 1), web_rule))))
}

fn pair() -> (Gw, Gw) {
    pair_with("", true)
}

/// The middlebox: the identity option removed (`TCPOPTSTRIP --strip-options 253`).
fn stripped(frame: &[u8]) -> Vec<u8> {
    let mut b = VecBuf::from_frame(frame);
    let info = parse_frame(frame).unwrap();
    strip_tcp(&mut b, &info).unwrap();
    b.data().to_vec()
}

fn payload(frame: &[u8]) -> Vec<u8> {
    let i = parse_frame(frame).unwrap();
    frame[usize::from(i.payload_offset)..usize::from(i.payload_offset) + usize::from(i.payload_len)].to_vec()
}

fn seq_ack(frame: &[u8]) -> (u32, u32) {
    let i = parse_frame(frame).unwrap();
    (i.seq, i.ack)
}

/// The frames B queued to send (its records), drained.
fn sent(g: &mut Gw) -> Vec<(Side, Vec<u8>)> {
    let out = g
        .engine
        .effects()
        .iter()
        .filter_map(|e| match *e {
            Effect::Send { out, frame } => Some((out, g.engine.effect_frame(frame).to_vec())),
            _ => None,
        })
        .collect();
    g.engine.clear_effects();
    out
}

/// SYN and SYN-ACK through A, the stripper and B; `syn` as the client sends it.
fn handshake(a: &mut Gw, b: &mut Gw, c: &Conn, syn: &[u8]) {
    let (act, w) = a.pass(Side::Inside, syn);
    assert_eq!(act, Action::Forward);
    let (act, at_server) = b.pass(Side::Outside, &stripped(&w));
    assert_eq!(act, Action::Forward);
    assert_eq!(at_server, stripped(&w), "B passes the SYN without identity (layer 4)");
    let sa = c.syn_ack();
    let (act, w) = b.pass(Side::Inside, &sa);
    assert_eq!((act, &w), (Action::Forward, &sa), "B sends the SYN-ACK bare in layer-4 mode");
    let (act, at_client) = a.pass(Side::Outside, &w);
    assert_eq!((act, at_client), (Action::Forward, sa));
}

/// The exchange after the handshake: the client's ACK carries A's record, B
/// answers with its own. Returns B's record frame.
fn exchange(a: &mut Gw, b: &mut Gw, c: &Conn) -> Vec<u8> {
    let ack = c.ack();
    let (act, carrier) = a.pass(Side::Inside, &ack);
    assert_eq!(act, Action::Forward);
    assert!(looks_like_record(&payload(&carrier)), "A's record is the stream's first bytes");
    assert_eq!(seq_ack(&carrier), (c.isn + 1, c.sisn + 1));
    assert!(checksums_ok(&carrier));
    let (act, at_server) = b.pass(Side::Outside, &carrier);
    assert_eq!((act, &at_server), (Action::Forward, &ack), "B removes the record: the server gets the client's ACK");
    let out = sent(b);
    assert_eq!(out.len(), 1, "B's record goes back");
    let (side, rec) = out.into_iter().next().unwrap();
    assert_eq!(side, Side::Outside);
    assert!(looks_like_record(&payload(&rec)));
    assert_eq!(seq_ack(&rec), (c.sisn + 1, c.isn + 21));
    assert!(checksums_ok(&rec));
    assert_eq!(a.pass(Side::Outside, &rec).0, Action::Consume, "A consumes B's record");
    rec
}

/// Data both ways after the exchange: shifted between the gateways, as sent
/// at the ends (18 bytes from the client, 19 from the server).
fn data_both_ways(a: &mut Gw, b: &mut Gw, c: &Conn) {
    let req = c.data_c2s(b"GET / HTTP/1.1\r\n\r\n");
    let (act, w) = a.pass(Side::Inside, &req);
    assert_eq!(act, Action::Forward);
    assert_eq!(seq_ack(&w), (c.isn + 21, c.sisn + 21), "shifted past both records");
    assert!(checksums_ok(&w));
    assert_eq!(b.pass(Side::Outside, &w), (Action::Forward, req));
    let resp = c.data_s2c(b"HTTP/1.1 200 OK\r\n\r\n");
    let (act, w) = b.pass(Side::Inside, &resp);
    assert_eq!(act, Action::Forward);
    assert_eq!(seq_ack(&w).0, c.sisn + 21);
    assert!(checksums_ok(&w));
    assert_eq!(a.pass(Side::Outside, &w), (Action::Forward, resp));
}

fn layer4_through_a_stripper(c: Conn) {
    let (mut a, mut b) = pair();
    handshake(&mut a, &mut b, &c, &c.syn());
    assert_eq!(a.noted(Side::Outside, Note::L4Stripped), 1);
    assert_eq!(a.noted(Side::Outside, Note::L4CacheLearned), 1);
    exchange(&mut a, &mut b, &c);
    data_both_ways(&mut a, &mut b, &c);

    let ea = a.events();
    assert_eq!(ea.len(), 1, "{ea:?}");
    assert_eq!(
        (ea[0].kind, ea[0].remote_identity, ea[0].note),
        (EventKind::Decision, Some(2001), Some(Note::L4Stripped))
    );
    assert_eq!(a.rule_name(&ea[0]), "to-web");
    let eb = b.events();
    assert_eq!(eb.len(), 1, "{eb:?}");
    assert_eq!((eb[0].remote_identity, eb[0].note), (Some(1001), Some(Note::L4FromPeer)));
    assert_eq!(b.rule_name(&eb[0]), "frontends");
    assert_eq!(a.noted(Side::Outside, Note::L4RecordVerified), 1);
    assert_eq!(b.noted(Side::Outside, Note::L4RecordVerified), 1);
    assert_eq!(a.stats.read().dir(Side::Inside).dropped_total() + b.stats.read().dir(Side::Outside).dropped_total(), 0);
}

#[test]
fn a_stripping_path_goes_to_layer4_ipv4() {
    layer4_through_a_stripper(Conn::new("10.1.0.10", "10.2.0.20", 80));
}

#[test]
fn a_stripping_path_goes_to_layer4_ipv6() {
    layer4_through_a_stripper(Conn::new("fd00:1::10", "fd00:2::20", 80));
}

#[test]
fn a_syn_without_room_goes_to_layer4() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    // MSS, SACK_PERM, TS, WS and a TFO cookie (kind 34, 8 bytes): 40 bytes.
    let opts = [
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0, 1, 3, 3, 7, 34, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 0,
    ];
    let syn = c.c2s(tf::SYN, c.isn, 0, &opts, &[]);
    let (act, w) = a.pass(Side::Inside, &syn);
    assert_eq!((act, &w), (Action::Forward, &syn), "sent as it was");
    assert_eq!(a.noted(Side::Inside, Note::L4NoRoom), 1);
    assert_eq!(a.dropped(Side::Inside, DropReason::IdentityNoRoom), 0);
    // The rest of the handshake and the exchange, no stripper needed.
    let (act, _) = b.pass(Side::Outside, &w);
    assert_eq!(act, Action::Forward);
    let sa = c.syn_ack();
    assert_eq!(b.pass(Side::Inside, &sa), (Action::Forward, sa.clone()));
    assert_eq!(a.pass(Side::Outside, &sa), (Action::Forward, sa));
    exchange(&mut a, &mut b, &c);
    data_both_ways(&mut a, &mut b, &c);
    assert_eq!(a.events()[0].note, Some(Note::L4NoRoom));
}

#[test]
fn a_cached_stripping_path_skips_the_option_until_it_expires() {
    let (mut a, mut b) = pair_with("  stripping_cache_s: 30\n", true);
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    exchange(&mut a, &mut b, &c);
    // A second connection to the same server: no option, layer 4 at once.
    let c2 = Conn { cport: 40001, isn: 0x5000, sisn: 0x7000, ..c };
    let (act, w) = a.pass(Side::Inside, &c2.syn());
    assert_eq!((act, &w), (Action::Forward, &c2.syn()));
    assert_eq!(a.noted(Side::Inside, Note::L4Cached), 1);
    handshake(&mut a, &mut b, &c2, &c2.syn());
    exchange(&mut a, &mut b, &c2);
    data_both_ways(&mut a, &mut b, &c2);
    assert_eq!(a.events().last().unwrap().note, Some(Note::L4Cached));
    // After the lifetime: the option again.
    let c3 = Conn { cport: 40002, ..c2 };
    let (_, w) = a.pass_at(Side::Inside, &c3.syn(), NOW + 31 * S);
    assert!(option_of(&w).is_some(), "the entry expired: the option path is tried again");
}

#[test]
fn a_lost_carrier_is_sent_again_beside_the_clients_held_data() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, lost) = a.pass(Side::Inside, &c.ack());
    assert!(looks_like_record(&payload(&lost)));
    // The client's request while the exchange is pending: held (already
    // shifted), and A's record sent again beside it.
    let req = c.data_c2s(b"GET / HTTP/1.1\r\n\r\n");
    let (act, held) = a.pass(Side::Inside, &req);
    let Action::Hold(slot) = act else { panic!("held: {act:?}") };
    assert_eq!(seq_ack(&held), (c.isn + 21, c.sisn + 21));
    let again = sent(&mut a);
    assert_eq!(again.len(), 1);
    let (side, carrier) = &again[0];
    assert_eq!(*side, Side::Outside);
    assert_eq!(payload(carrier), payload(&lost), "the same record: same bytes, same MAC");
    assert_eq!(seq_ack(carrier), seq_ack(&lost));
    assert!(checksums_ok(carrier));
    assert_eq!(a.noted(Side::Inside, Note::L4Held), 1);
    let (act, _) = b.pass(Side::Outside, carrier);
    assert_eq!(act, Action::Forward);
    let (_, rec) = sent(&mut b).pop().unwrap();
    // B's record verified at A: the held request released, in order.
    assert_eq!(a.pass(Side::Outside, &rec).0, Action::Consume);
    assert!(a.engine.effects().contains(&Effect::Release { slot }), "{:?}", a.engine.effects());
    a.engine.clear_effects();
    assert_eq!(a.noted(Side::Inside, Note::L4Released), 1);
    assert_eq!(b.pass(Side::Outside, &held), (Action::Forward, req), "the server gets the request as sent");
}

/// While data is held, A sends its record again on the `[udp_handshake]`
/// backoff (50, 100, 200 ms: at 50, 150 and 350 ms), not only when the
/// client's TCP retransmits (its timer backs off to seconds); the server's
/// record never coming, the held data is discarded at the last wait's end
/// (750 ms).
#[test]
fn held_data_is_discarded_when_the_server_record_never_comes() {
    const MS: u64 = 1_000_000;
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    let (act, _) = a.pass(Side::Inside, &c.data_c2s(b"x"));
    let Action::Hold(slot) = act else { panic!("{act:?}") };
    a.engine.clear_effects();
    let mut resent = Vec::new();
    for at in [49, 50, 149, 150, 349, 350, 749] {
        a.engine.udp_timers(&a.cfg.clone(), NOW + at * MS);
        for (side, f) in sent(&mut a) {
            assert_eq!(side, Side::Outside);
            assert_eq!((payload(&f), seq_ack(&f)), (payload(&carrier), seq_ack(&carrier)), "the same record");
            assert!(checksums_ok(&f));
            resent.push(at);
        }
    }
    assert_eq!(resent, [50, 150, 350], "our record again on the backoff");
    assert_eq!(a.noted(Side::Inside, Note::L4RecordResent), 3);
    assert_eq!(a.dropped(Side::Inside, DropReason::L4Pending), 0, "still held at 749 ms");
    a.engine.udp_timers(&a.cfg.clone(), NOW + 750 * MS);
    assert!(a.engine.effects().iter().any(|e| matches!(e, Effect::Discard { slot: s, .. } if *s == slot)));
    assert_eq!(a.dropped(Side::Inside, DropReason::L4Pending), 1);
    // A record re-sent by the timer is answered by B as any repeat is.
    assert_eq!(b.pass(Side::Outside, &carrier).0, Action::Forward);
    assert!(looks_like_record(&payload(&sent(&mut b).pop().unwrap().1)));
}

/// The record re-sent by the hold's timer repairs a lost server record with
/// no help from the client's TCP: A's first records and B's first answer
/// lost, the timer's record brings B's answer again and the held request
/// goes out.
#[test]
fn a_lost_exchange_is_repaired_by_the_hold_timer() {
    const MS: u64 = 1_000_000;
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    // The carrier reaches B, whose record is lost on the way back.
    assert_eq!(b.pass(Side::Outside, &carrier).0, Action::Forward);
    let _lost = sent(&mut b);
    let req = c.data_c2s(b"GET / HTTP/1.1\r\n\r\n");
    let (act, held) = a.pass(Side::Inside, &req);
    let Action::Hold(slot) = act else { panic!("{act:?}") };
    let _lost_too = sent(&mut a);
    a.engine.udp_timers(&a.cfg.clone(), NOW + 50 * MS);
    let (_, again) = sent(&mut a).pop().expect("our record again at 50 ms");
    assert_eq!(b.pass(Side::Outside, &again).0, Action::Forward);
    let (_, rec) = sent(&mut b).pop().expect("B answers again");
    assert_eq!(a.pass(Side::Outside, &rec).0, Action::Consume);
    assert!(a.engine.effects().contains(&Effect::Release { slot }), "{:?}", a.engine.effects());
    a.engine.clear_effects();
    assert_eq!(b.pass(Side::Outside, &held), (Action::Forward, req));
    // Released: no timer left to fire.
    a.engine.udp_timers(&a.cfg.clone(), NOW + 2 * S);
    assert!(sent(&mut a).is_empty());
    assert_eq!(a.noted(Side::Inside, Note::L4RecordResent), 1);
}

#[test]
fn a_lost_server_record_is_asked_for_again() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    assert_eq!(b.pass(Side::Outside, &carrier).0, Action::Forward);
    let (_, rec) = sent(&mut b).pop().unwrap(); // lost on the way to A
                                                // The server's banner reaches A before B's record: dropped, A's record back.
    let banner = c.data_s2c(b"220 hello\r\n");
    let (act, w) = b.pass(Side::Inside, &banner);
    assert_eq!(act, Action::Forward);
    let (act, again) = a.pass(Side::Outside, &w);
    assert_eq!(act, Action::Reply(DropReason::L4Pending));
    assert!(looks_like_record(&payload(&again)));
    assert!(checksums_ok(&again));
    // B verifies it again and sends its record again.
    let (act, _) = b.pass(Side::Outside, &again);
    assert_eq!(act, Action::Forward);
    let (_, rec2) = sent(&mut b).pop().unwrap();
    assert_eq!(payload(&rec2), payload(&rec));
    assert_eq!(a.pass(Side::Outside, &rec2).0, Action::Consume);
    // The server's retransmitted banner now reaches the client as it sent it.
    let (_, w) = b.pass(Side::Inside, &banner);
    assert_eq!(a.pass(Side::Outside, &w), (Action::Forward, banner));
    // A late duplicate of B's record: consumed again, nothing delivered.
    assert_eq!(a.pass(Side::Outside, &rec).0, Action::Consume);
}

#[test]
fn sack_blocks_move_with_the_shift_and_timestamps_do_not() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    exchange(&mut a, &mut b, &c);
    // The client acknowledges with a SACK block (NOP NOP SACK 10) and timestamps.
    let (l, r) = (c.sisn + 1001, c.sisn + 2001);
    let mut opts = vec![1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9, 1, 1, 5, 10];
    opts.extend_from_slice(&l.to_be_bytes());
    opts.extend_from_slice(&r.to_be_bytes());
    let ack = c.c2s(tf::ACK, c.isn + 1, c.sisn + 1, &opts, &[]);
    let (act, w) = a.pass(Side::Inside, &ack);
    assert_eq!(act, Action::Forward);
    assert!(checksums_ok(&w));
    let info = parse_frame(&w).unwrap();
    let o = &w[usize::from(info.tcp_opts_offset)..][..usize::from(info.tcp_opts_len)];
    assert_eq!(&o[..12], &opts[..12], "timestamps untouched");
    assert_eq!(u32::from_be_bytes(o[16..20].try_into().unwrap()), l + 20);
    assert_eq!(u32::from_be_bytes(o[20..24].try_into().unwrap()), r + 20);
    assert_eq!(b.pass(Side::Outside, &w), (Action::Forward, ack), "restored at B byte for byte");
    // And the server's SACK of the client's data, the other way.
    let (l, r) = (c.isn + 101, c.isn + 201);
    let mut opts = vec![1, 1, 5, 10];
    opts.extend_from_slice(&l.to_be_bytes());
    opts.extend_from_slice(&r.to_be_bytes());
    let sack = c.s2c(tf::ACK, c.sisn + 1, c.isn + 1, &opts, &[]);
    let (_, w) = b.pass(Side::Inside, &sack);
    assert_eq!(seq_ack(&w), (c.sisn + 21, c.isn + 21));
    assert_eq!(a.pass(Side::Outside, &w), (Action::Forward, sack));
}

/// The established fast path's shift (`fast.rs`, the checksum updated over
/// the words as they sit in memory) on Linux's timestamps-only segments,
/// with sequence and acknowledgment numbers that wrap past 2^32 when
/// shifted, both ways, IPv4 and IPv6: the checksums hold and each end gets
/// the bytes its peer sent.
#[test]
fn shifted_numbers_that_wrap_keep_their_checksums_on_the_fast_path() {
    for (client, server) in [("10.1.0.10", "10.2.0.20"), ("fd00:1::10", "fd00:2::20")] {
        let (mut a, mut b) = pair();
        let c = Conn { isn: u32::MAX - 30, sisn: u32::MAX - 25, ..Conn::new(client, server, 80) };
        handshake(&mut a, &mut b, &c, &c.syn());
        exchange(&mut a, &mut b, &c);
        let ts = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        // 15 bytes into each stream: +20 crosses 2^32.
        let (seq, ack) = (c.isn + 16, c.sisn + 16);
        let req = c.c2s(tf::ACK | tf::PSH, seq, ack, &ts, b"more");
        let (act, w) = a.pass(Side::Inside, &req);
        assert_eq!(act, Action::Forward);
        assert_eq!(seq_ack(&w), (seq.wrapping_add(20), ack.wrapping_add(20)), "{client}");
        assert!(checksums_ok(&w), "{client}");
        let info = parse_frame(&w).unwrap();
        assert_eq!(&w[usize::from(info.tcp_opts_offset)..][..12], &ts, "timestamps untouched");
        assert_eq!(b.pass(Side::Outside, &w), (Action::Forward, req), "{client}: restored at B");
        let resp = c.s2c(tf::ACK | tf::PSH, ack, seq + 4, &ts, b"ok");
        let (act, w) = b.pass(Side::Inside, &resp);
        assert_eq!(act, Action::Forward);
        assert_eq!(seq_ack(&w), (ack.wrapping_add(20), (seq + 4).wrapping_add(20)), "{client}");
        assert!(checksums_ok(&w), "{client}");
        assert_eq!(a.pass(Side::Outside, &w), (Action::Forward, resp), "{client}: restored at A");
        // A pure ACK without the ACK flag's number (RST|ACK aside, none is
        // sent, but the flag decides): the sequence alone moves.
        let bare = c.c2s(tf::PSH, seq + 4, 0, &[], b"x");
        let (act, w) = a.pass(Side::Inside, &bare);
        assert_eq!(act, Action::Forward);
        assert_eq!(seq_ack(&w), ((seq + 4).wrapping_add(20), 0));
        assert!(checksums_ok(&w));
    }
}

#[test]
fn forged_and_replayed_records_are_refused_with_their_own_reasons() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    // A forged MAC.
    let mut forged = carrier.clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    let (act, _) = b.pass(Side::Outside, &fix(&forged));
    assert_eq!(act, Action::Drop(DropReason::L4RecordBadMac));
    // The same record replayed on another connection (another client ISN).
    let (mut a2, mut b2) = pair();
    let other = Conn { isn: 0x2222, ..c };
    handshake(&mut a2, &mut b2, &other, &other.syn());
    let replay = other.c2s(tf::ACK, other.isn + 1, other.sisn + 1, &[], &payload(&carrier));
    assert_eq!(b2.pass(Side::Outside, &replay).0, Action::Drop(DropReason::L4RecordBadMac));
    assert_eq!(b2.dropped(Side::Outside, DropReason::L4RecordBadMac), 1);
    let ev = b2.events();
    assert_eq!(ev.last().unwrap().drop, Some(DropReason::L4RecordBadMac));
    // The genuine record still passes at B.
    assert_eq!(b.pass(Side::Outside, &carrier).0, Action::Forward);
}

/// The frame with its TCP checksum made right again (a forger's frame).
fn fix(frame: &[u8]) -> Vec<u8> {
    let info = parse_frame(frame).unwrap();
    let mut f = frame.to_vec();
    let seg = Seg::of(&f, &info).unwrap();
    super::segment::shift(&mut f, &seg, info.seq, |a| a);
    let l4 = usize::from(info.l4_offset);
    let end = usize::from(info.ip_end);
    let (Addr::V4(s), Addr::V4(d)) = (info.src, info.dst) else { panic!() };
    let p = wire::checksum::pseudo_v4(&s, &d, 6, (end - l4) as u16);
    wire::tcp::Packet::new_unchecked(&mut f[l4..end]).fill_checksum(p);
    f
}

#[test]
fn a_workload_cannot_make_its_gateway_forward_a_record() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    // The client sends, as its own first bytes, a valid record (the one A made).
    let rec = payload(&carrier);
    assert_eq!(b.pass(Side::Outside, &carrier).0, Action::Forward);
    let (_, srec) = sent(&mut b).pop().unwrap();
    assert_eq!(a.pass(Side::Outside, &srec).0, Action::Consume);
    let inj = c.c2s(tf::ACK | tf::PSH, c.isn + 1, c.sisn + 1, &[], &rec);
    let (act, w) = a.pass(Side::Inside, &inj);
    assert_eq!(act, Action::Forward);
    assert_eq!(seq_ack(&w).0, c.isn + 21, "the workload's bytes come after A's record");
    let before = b.noted(Side::Outside, Note::L4RecordVerified);
    assert_eq!(b.pass(Side::Outside, &w), (Action::Forward, inj), "data to the server, not a record");
    assert_eq!(b.noted(Side::Outside, Note::L4RecordVerified), before);
    // A server workload's record-like bytes are only data too (records come from the outside only).
    let sinj = c.s2c(tf::ACK | tf::PSH, c.sisn + 1, c.isn + 1, &[], &rec);
    let (_, w) = b.pass(Side::Inside, &sinj);
    assert_eq!(a.pass(Side::Outside, &w), (Action::Forward, sinj));
}

#[test]
fn a_refused_record_resets_both_ends_and_the_client_side_tells_it() {
    let (mut a, mut b) = pair_with("", false);
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    let (act, back) = b.pass(Side::Outside, &carrier);
    assert_eq!(act, Action::ReplyAndReset(DropReason::NoMatch));
    let to_server = parse_frame(b.engine.extra_frame()).unwrap();
    assert_eq!((to_server.tcp_flags & tf::RST, to_server.seq), (tf::RST, c.isn + 1));
    let eb = b.events();
    assert_eq!(
        (eb[0].drop, eb[0].remote_identity, eb[0].note),
        (Some(DropReason::NoMatch), Some(1001), Some(Note::L4FromPeer))
    );
    // The reset reaches A: passed to the client, told as refused by the peer.
    let info = parse_frame(&back).unwrap();
    assert_eq!((info.tcp_flags & tf::RST, info.seq), (tf::RST, c.sisn + 1));
    assert_eq!(a.pass(Side::Outside, &back), (Action::Forward, back.clone()));
    assert_eq!(a.noted(Side::Outside, Note::PeerRefused), 1);
    assert_eq!(a.events().last().unwrap().drop, Some(DropReason::RefusedByPeer));
}

/// The far side refuses while A holds the client's request: the reset that
/// comes back ends A's hold (the request discarded, counted) and its timer,
/// which would otherwise send A's record to a connection B has forgotten.
#[test]
fn a_refusal_ends_the_hold_and_its_timer() {
    const MS: u64 = 1_000_000;
    let (mut a, mut b) = pair_with("", false);
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    let (act, _) = a.pass(Side::Inside, &c.data_c2s(b"GET / HTTP/1.1\r\n\r\n"));
    let Action::Hold(slot) = act else { panic!("{act:?}") };
    a.engine.clear_effects();
    let (act, back) = b.pass(Side::Outside, &carrier);
    assert_eq!(act, Action::ReplyAndReset(DropReason::NoMatch));
    assert_eq!(a.pass(Side::Outside, &back).0, Action::Forward);
    assert!(a.engine.effects().iter().any(|e| matches!(e, Effect::Discard { slot: s, .. } if *s == slot)));
    assert_eq!(a.dropped(Side::Inside, DropReason::L4Pending), 1, "the held request");
    a.engine.clear_effects();
    for at in [50, 150, 350, 750] {
        a.engine.udp_timers(&a.cfg.clone(), NOW + at * MS);
    }
    assert!(sent(&mut a).is_empty(), "no record after the reset");
    assert_eq!(a.noted(Side::Inside, Note::L4RecordResent), 0);
}

#[test]
fn an_option_path_refusal_is_told_at_the_client_side() {
    let (mut a, mut b) = pair_with("", false);
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, w) = a.pass(Side::Inside, &c.syn());
    let (act, rst) = b.pass(Side::Outside, &w);
    assert_eq!(act, Action::Reply(DropReason::NoMatch));
    assert_eq!(a.pass(Side::Outside, &rst).0, Action::Forward);
    assert_eq!(a.events().last().unwrap().drop, Some(DropReason::RefusedByPeer));
}

#[test]
fn a_peer_without_layer4_is_judged_by_the_acls_with_its_own_reason() {
    // B in layer-4 mode; A's gateway has layer 4 off, so its ACK carries no record.
    let (mut a, _) = pair_with("  layer4_identity: false\n", true);
    let (_, mut b) = pair_with("", true);
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, w) = a.pass(Side::Inside, &c.syn());
    assert_eq!(b.pass(Side::Outside, &stripped(&w)).0, Action::Forward);
    let (_, w) = b.pass(Side::Inside, &c.syn_ack());
    assert_eq!(a.pass(Side::Outside, &w).0, Action::ReplyAndReset(DropReason::NoMatch), "A: the ACLs, as before");
    let (act, _) = b.pass(Side::Outside, &c.ack());
    assert_eq!(act, Action::ReplyAndReset(DropReason::NoIdentityFromPeer));
    assert_eq!(b.noted(Side::Outside, Note::L4PeerWithoutRecord), 1);
    // With layer 4 off at B too, the SYN itself is refused, with the same reason.
    let (_, mut b) = pair_with("  layer4_identity: false\n", true);
    assert_eq!(b.pass(Side::Outside, &c.syn()).0, Action::Reply(DropReason::NoIdentityFromPeer));
}

#[test]
fn hostile_segments_on_layer4_flows_never_panic() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let req = c.data_c2s(b"GET / HTTP/1.1\r\n\r\n");
    for i in 0..4000 {
        let base = if i % 2 == 0 { &carrier } else { &req };
        let mut f = base.clone();
        for _ in 0..1 + rnd() % 4 {
            let at = (rnd() as usize) % f.len();
            f[at] ^= (rnd() as u8) | 1;
        }
        if rnd() % 8 == 0 {
            let n = (rnd() as usize) % f.len();
            f.truncate(n);
        }
        for (k, side) in [(0, Side::Outside), (1, Side::Outside), (1, Side::Inside)] {
            let g = if k == 0 { &mut b } else { &mut a };
            let (act, out) = g.pass(side, &f);
            if act == Action::Forward && !out.is_empty() {
                assert!(parse_frame(&out).is_ok() || parse_frame(&f).is_err(), "a forwarded frame still parses");
            }
            g.engine.clear_effects();
        }
    }
}

#[test]
fn an_asymmetric_path_that_strips_only_the_syn_ack_goes_to_layer4_too() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    let (_, w) = a.pass(Side::Inside, &c.syn());
    assert!(option_of(&w).is_some());
    let (act, at_server) = b.pass(Side::Outside, &w);
    assert_eq!((act, &at_server), (Action::Forward, &c.syn()), "B verified the option");
    let (_, w) = b.pass(Side::Inside, &c.syn_ack());
    assert!(option_of(&w).is_some(), "B signs its SYN-ACK");
    // The way back strips it: A takes layer 4, B watches for the record.
    let (act, at_client) = a.pass(Side::Outside, &stripped(&w));
    assert_eq!((act, at_client), (Action::Forward, c.syn_ack()));
    assert_eq!(a.noted(Side::Outside, Note::L4Stripped), 1);
    exchange(&mut a, &mut b, &c);
    data_both_ways(&mut a, &mut b, &c);
    assert_eq!(a.events().last().unwrap().remote_identity, Some(2001));
}

#[test]
fn an_option_flow_stops_being_watched_at_its_first_data() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    crate::engine::tests::allowed_handshake(&mut a, &mut b, c, 1001, 2001);
    let e = b.engine.table().get(&FlowKey::from_v4(Side::Outside, [10, 1, 0, 10], [10, 2, 0, 20], 40000, 80, 6));
    let e = e.expect("B's flow");
    assert!(!e.l4_path(), "back on the fast path after the client's first data");
}

/// A server that speaks first (SMTP, SSH): its banner follows the client's
/// handshake ACK, which is A's carrier, so B has verified the client's record
/// before the server can send a byte; the banner is shifted like any data.
/// On a path stripping both ways and on one stripping only the SYN-ACK (B
/// watching its option flow), IPv4 and IPv6.
#[test]
fn a_server_that_speaks_first_gets_its_banner_through() {
    for (client, server) in [("10.1.0.10", "10.2.0.20"), ("fd00:1::10", "fd00:2::20")] {
        for asymmetric in [false, true] {
            let (mut a, mut b) = pair();
            let c = Conn::new(client, server, 80);
            if asymmetric {
                let (_, w) = a.pass(Side::Inside, &c.syn());
                assert_eq!(b.pass(Side::Outside, &w).0, Action::Forward);
                let (_, w) = b.pass(Side::Inside, &c.syn_ack());
                assert_eq!(a.pass(Side::Outside, &stripped(&w)).0, Action::Forward);
            } else {
                handshake(&mut a, &mut b, &c, &c.syn());
            }
            exchange(&mut a, &mut b, &c);
            let banner = c.s2c(tf::ACK | tf::PSH, c.sisn + 1, c.isn + 1, &[], b"220 mail ESMTP\r\n");
            let (act, w) = b.pass(Side::Inside, &banner);
            assert_eq!(act, Action::Forward, "{client} asymmetric {asymmetric}");
            assert_eq!(seq_ack(&w), (c.sisn + 21, c.isn + 21));
            assert!(checksums_ok(&w));
            assert_eq!(a.pass(Side::Outside, &w), (Action::Forward, banner.clone()), "the client gets the banner");
            let ehlo = c.c2s(tf::ACK | tf::PSH, c.isn + 1, c.sisn + 17, &[], b"EHLO a\r\n");
            let (_, w) = a.pass(Side::Inside, &ehlo);
            assert_eq!(seq_ack(&w), (c.isn + 21, c.sisn + 37));
            assert_eq!(b.pass(Side::Outside, &w), (Action::Forward, ehlo), "the server gets the reply");
            let dropped =
                a.stats.read().dir(Side::Outside).dropped_total() + b.stats.read().dir(Side::Inside).dropped_total();
            assert_eq!(dropped, 0, "{client} asymmetric {asymmetric}: nothing of the server's dropped");
        }
    }
}

/// The client's ACK, A's carrier, lost before a server that speaks first:
/// the server never completed its handshake, so it has nothing to send but
/// its SYN-ACK again; the client's TCP answers that with the ACK again, which
/// A makes the carrier again. The banner then passes: one SYN-ACK
/// retransmission timeout of the server, nothing dropped by a gateway.
#[test]
fn a_lost_carrier_before_a_server_that_speaks_first_is_sent_again() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, lost) = a.pass(Side::Inside, &c.ack());
    assert!(looks_like_record(&payload(&lost)));
    // The server's SYN-ACK again, through both gateways as it was.
    let (act, w) = b.pass(Side::Inside, &c.syn_ack());
    assert_eq!((act, &w), (Action::Forward, &c.syn_ack()), "B passes the repeated SYN-ACK bare");
    assert_eq!(a.pass(Side::Outside, &w), (Action::Forward, c.syn_ack()));
    // The client's duplicate ACK carries A's record again: the exchange as usual.
    exchange(&mut a, &mut b, &c);
    let banner = c.s2c(tf::ACK | tf::PSH, c.sisn + 1, c.isn + 1, &[], b"220 hello\r\n");
    let (_, w) = b.pass(Side::Inside, &banner);
    assert_eq!(a.pass(Side::Outside, &w), (Action::Forward, banner));
    assert_eq!(a.noted(Side::Inside, Note::L4RecordSent), 2);
}

/// A record split across two segments by a re-segmenting middlebox is not
/// reassembled: each part is dropped with its own reason (`l4_record_split`,
/// counted and told in a flow event), nothing of it reaches a workload, and
/// the connection stays unauthenticated (fail closed). A's record at B, and
/// B's record at A.
#[test]
fn a_record_split_across_segments_fails_closed_with_its_own_reason() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    let rec = payload(&carrier);
    let head = c.c2s(tf::ACK, c.isn + 1, c.sisn + 1, &[], &rec[..8]);
    let tail = c.c2s(tf::ACK | tf::PSH, c.isn + 9, c.sisn + 1, &[], &rec[8..]);
    assert_eq!(b.pass(Side::Outside, &head).0, Action::Drop(DropReason::L4RecordSplit));
    assert_eq!(b.pass(Side::Outside, &tail).0, Action::Drop(DropReason::L4RecordSplit));
    assert_eq!(b.dropped(Side::Outside, DropReason::L4RecordSplit), 2);
    assert!(sent(&mut b).is_empty(), "B sends no record for a split one");
    let ev = b.events();
    assert_eq!(ev.last().map(|e| e.drop), Some(Some(DropReason::L4RecordSplit)), "{ev:?}");
    // A three-byte head is not told from data: B judges it as a peer
    // without layer 4 would be (the ACLs; here none allows: refused).
    let (mut a2, mut b2) = pair();
    handshake(&mut a2, &mut b2, &c, &c.syn());
    let short = c.c2s(tf::ACK, c.isn + 1, c.sisn + 1, &[], &rec[..3]);
    assert!(matches!(b2.pass(Side::Outside, &short).0, Action::Reply(_) | Action::ReplyAndReset(_)));
    assert_eq!(b2.dropped(Side::Outside, DropReason::NoIdentityFromPeer), 1);

    // B's record split on its way to A.
    let (mut a, mut b) = pair();
    handshake(&mut a, &mut b, &c, &c.syn());
    let (_, carrier) = a.pass(Side::Inside, &c.ack());
    assert_eq!(b.pass(Side::Outside, &carrier).0, Action::Forward);
    let (_, s) = sent(&mut b).pop().unwrap();
    let srec = payload(&s);
    let head = c.s2c(tf::ACK, c.sisn + 1, c.isn + 21, &[], &srec[..12]);
    let tail = c.s2c(tf::ACK | tf::PSH, c.sisn + 13, c.isn + 21, &[], &srec[12..]);
    assert_eq!(a.pass(Side::Outside, &head).0, Action::Drop(DropReason::L4RecordSplit));
    assert_eq!(a.pass(Side::Outside, &tail).0, Action::Drop(DropReason::L4RecordSplit));
    assert_eq!(a.dropped(Side::Outside, DropReason::L4RecordSplit), 2);
    let e = a.engine.table().get(&FlowKey::from_v4(Side::Inside, [10, 1, 0, 10], [10, 2, 0, 20], 40000, 80, 6));
    assert!(!e.expect("A's flow").verdict().is_decided(), "nothing decided on a split record");
    // And after the exchange, a repeated record split at B: the same reason.
    let (mut a, mut b) = pair();
    handshake(&mut a, &mut b, &c, &c.syn());
    exchange(&mut a, &mut b, &c);
    let head = c.c2s(tf::ACK, c.isn + 1, c.sisn + 21, &[], &rec[..8]);
    assert_eq!(b.pass(Side::Outside, &head).0, Action::Drop(DropReason::L4RecordSplit));
}

/// Gateway B restarted after a layer-4 exchange (a fresh engine, the same
/// policy; B's external networks even allow the client's network by address,
/// so the old path would re-create the flow unshifted and A, still shifting,
/// would skip 20 bytes of the server's stream): each end's next segment at
/// the new B is dropped with `no_flow_state_from_peer`, told in a flow event,
/// and its sender reset at exactly the sequence number its TCP expects; A
/// carries the client's reset back, shifted.
#[test]
fn a_restarted_gateway_resets_a_layer4_connection_instead_of_corrupting_it() {
    let wide = |d: String| d.replace("cidrs: [192.168.50.0/24]", "cidrs: [192.168.50.0/24, 10.1.0.0/16]");
    let (mut a, mut b) = pair();
    for c in
        [Conn::new("10.1.0.10", "10.2.0.20", 80), Conn { cport: 40001, ..Conn::new("fd00:1::10", "fd00:2::20", 80) }]
    {
        handshake(&mut a, &mut b, &c, &c.syn());
        exchange(&mut a, &mut b, &c);
        data_both_ways(&mut a, &mut b, &c);
        let mut b2 = Gw::new(&wide(doc_b(&a_key(1, 1), true)));
        // The client's next request, shifted by A, at the restarted B.
        let req = c.c2s(tf::ACK | tf::PSH, c.isn + 1 + 18, c.sisn + 1 + 19, &[], b"more");
        let (act, w) = a.pass(Side::Inside, &req);
        assert_eq!(act, Action::Forward);
        let (act, rst) = b2.pass(Side::Outside, &w);
        assert_eq!(act, Action::ReplyAndReset(DropReason::NoFlowStateFromPeer), "not re-created by address");
        // Onwards to the server: an ACK far outside its window, which its
        // TCP answers with an ACK of what it expects (reset below).
        let onwards = parse_frame(b2.engine.extra_frame()).unwrap();
        let probe = (c.isn + 1 + 18 + 20).wrapping_sub(1 << 30);
        assert_eq!((onwards.tcp_flags, onwards.seq, onwards.dst_port), (tf::ACK, probe, c.sport), "to the server");
        assert!(checksums_ok(b2.engine.extra_frame()));
        let i = parse_frame(&rst).unwrap();
        assert_eq!((i.tcp_flags, i.src_port, i.dst_port), (tf::RST, c.sport, c.cport));
        assert!(checksums_ok(&rst));
        let (act, at_client) = a.pass(Side::Outside, &rst);
        assert_eq!(act, Action::Forward, "A carries the reset to its client");
        let j = parse_frame(&at_client).unwrap();
        assert_eq!((j.tcp_flags, j.seq), (tf::RST, c.sisn + 1 + 19), "exactly the client's rcv_nxt");
        assert!(checksums_ok(&at_client));
        // The server's next segment at the restarted B: reset, not forwarded.
        let more = c.s2c(tf::ACK | tf::PSH, c.sisn + 1 + 19, c.isn + 1 + 18, &[], b"late");
        let (act, rst) = b2.pass(Side::Inside, &more);
        assert_eq!(act, Action::ReplyAndReset(DropReason::NoFlowStateFromPeer));
        let k = parse_frame(&rst).unwrap();
        assert_eq!((k.tcp_flags, k.seq, k.dst_port), (tf::RST, c.isn + 1 + 18, c.sport), "the server's rcv_nxt");
        // Onwards to the client: the probe, which A carries (shifted).
        let onwards = parse_frame(b2.engine.extra_frame()).unwrap();
        let probe = (c.sisn + 1 + 19).wrapping_sub(1 << 30);
        assert_eq!((onwards.tcp_flags, onwards.seq, onwards.dst_port), (tf::ACK, probe, c.cport));
        // A reset from either end is dropped, not answered.
        let r = c.c2s(tf::RST, c.isn + 1 + 38, 0, &[], &[]);
        assert_eq!(
            b2.pass(Side::Inside, &c.s2c(tf::RST, c.sisn + 20, 0, &[], &[])).0,
            Action::Drop(DropReason::NoFlowStateFromPeer)
        );
        assert_eq!(b2.pass(Side::Outside, &r).0, Action::Drop(DropReason::NoFlowStateFromPeer));
        assert_eq!(b2.dropped(Side::Outside, DropReason::NoFlowStateFromPeer), 2);
        assert_eq!(b2.dropped(Side::Inside, DropReason::NoFlowStateFromPeer), 2);
        assert_eq!(b2.noted(Side::Outside, Note::NoFlowStateAllowed), 0);
        let ev = b2.events();
        assert_eq!(ev.len(), 2, "resets are counted, not told: {ev:?}");
        assert!(ev.iter().all(|e| e.drop == Some(DropReason::NoFlowStateFromPeer)));
    }
}

/// Gateway A restarted: the same rule at the client's side (A's own ACL
/// would not allow it anyway; the reset makes the failure clean instead of
/// a stall): the client's segment is reset at once, the server's, shifted by
/// B, is reset through B at the server's rcv_nxt.
#[test]
fn a_restarted_client_gateway_resets_its_side_too() {
    let (mut a, mut b) = pair();
    let c = Conn::new("10.1.0.10", "10.2.0.20", 80);
    handshake(&mut a, &mut b, &c, &c.syn());
    exchange(&mut a, &mut b, &c);
    data_both_ways(&mut a, &mut b, &c);
    let mut a2 = Gw::new(&doc_a(1, 1));
    let req = c.c2s(tf::ACK | tf::PSH, c.isn + 1 + 18, c.sisn + 1 + 19, &[], b"more");
    let (act, rst) = a2.pass(Side::Inside, &req);
    assert_eq!(act, Action::ReplyAndReset(DropReason::NoFlowStateFromPeer));
    assert_eq!(parse_frame(&rst).unwrap().seq, c.sisn + 1 + 19, "the client's rcv_nxt");
    let resp = c.s2c(tf::ACK | tf::PSH, c.sisn + 1 + 19, c.isn + 1 + 18, &[], b"late");
    let (act, w) = b.pass(Side::Inside, &resp);
    assert_eq!(act, Action::Forward);
    let (act, rst) = a2.pass(Side::Outside, &w);
    assert_eq!(act, Action::ReplyAndReset(DropReason::NoFlowStateFromPeer));
    let (act, at_server) = b.pass(Side::Outside, &rst);
    assert_eq!(act, Action::Forward, "B carries the reset to its server");
    let j = parse_frame(&at_server).unwrap();
    assert_eq!((j.tcp_flags, j.seq), (tf::RST, c.isn + 1 + 18), "exactly the server's rcv_nxt");
    assert!(checksums_ok(&at_server));
}

/// The lab pair with the roles reversed: B's PU `web` (10.2.0.20) is the
/// client, allowed out to `app == frontend` on 8443; A's PU `client`
/// (10.1.0.10) the server, allowing `app == web` in on 8443.
fn reversed_pair() -> (Gw, Gw) {
    let a = doc_a(1, 1).replace(
        "    outgoing:\n      - {name: to-web",
        "    incoming:\n      - {name: from-web, action: allow, object: app == web, protocols: [tcp], ports: [8443]}\n    \
         outgoing:\n      - {name: to-web",
    );
    let b = doc_b(&a_key(1, 1), true).replace(
        "rulesets:\n",
        "rulesets:\n  - name: web-out\n    subject: app == web\n    outgoing:\n      \
         - {name: to-front, action: allow, object: app == frontend, protocols: [tcp], ports: [8443]}\n",
    );
    (Gw::new(&a), Gw::new(&b))
}

/// The exchange with B's PU as the client and A's as the server, through a
/// stripper: B learns the stripping path and sends its record on its
/// client's ACK, A verifies it by its server's incoming rules and answers;
/// data both ways shifted between the gateways and as sent at the ends.
fn layer4_with_roles_reversed(c: Conn) {
    let (mut a, mut b) = reversed_pair();
    handshake(&mut b, &mut a, &c, &c.syn());
    assert_eq!(b.noted(Side::Outside, Note::L4Stripped), 1, "B, the client's gateway, saw the stripping");
    exchange(&mut b, &mut a, &c);
    data_both_ways(&mut b, &mut a, &c);
    let eb = b.events();
    assert_eq!(eb.len(), 1, "{eb:?}");
    assert_eq!(
        (eb[0].kind, eb[0].remote_identity, eb[0].note),
        (EventKind::Decision, Some(1001), Some(Note::L4Stripped))
    );
    assert_eq!(b.rule_name(&eb[0]), "to-front");
    let ea = a.events();
    assert_eq!(ea.len(), 1, "{ea:?}");
    assert_eq!((ea[0].remote_identity, ea[0].note), (Some(2001), Some(Note::L4FromPeer)));
    assert_eq!(a.rule_name(&ea[0]), "from-web");
    assert_eq!(a.noted(Side::Outside, Note::L4RecordVerified), 1);
    assert_eq!(b.noted(Side::Outside, Note::L4RecordVerified), 1);
    assert_eq!(b.stats.read().dir(Side::Inside).dropped_total() + a.stats.read().dir(Side::Outside).dropped_total(), 0);
    // A port A's server does not allow: its record refused, both ends reset.
    let refused = Conn { cport: 40100, ..Conn::new(c.client, c.server, 8444) };
    let (mut a, mut b) = reversed_pair();
    handshake(&mut b, &mut a, &refused, &refused.syn());
    let (_, carrier) = b.pass(Side::Inside, &refused.ack());
    let (act, _) = a.pass(Side::Outside, &carrier);
    assert_eq!(act, Action::ReplyAndReset(DropReason::NoMatch), "refused at A, the server's gateway");
}

#[test]
fn roles_reversed_the_peer_gateways_client_goes_to_layer4_ipv4() {
    layer4_with_roles_reversed(Conn::new("10.2.0.20", "10.1.0.10", 8443));
}

#[test]
fn roles_reversed_the_peer_gateways_client_goes_to_layer4_ipv6() {
    layer4_with_roles_reversed(Conn::new("fd00:2::20", "fd00:1::10", 8443));
}
