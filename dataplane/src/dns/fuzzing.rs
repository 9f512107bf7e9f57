//! The DNS fuzz target's body, shared by `cargo fuzz` (`fuzz_targets/dns.rs`)
//! and the replay test (`tests/dns_fuzz_replay.rs`).

use super::{tcp_message, Message, RData, WireName};

/// Parses `data` as a DNS message over UDP and as a DNS-over-TCP payload;
/// reads every part of what is accepted and checks that names copied out
/// are well formed and survive their text and wire round trips.
pub fn parse(data: &[u8]) {
    read(data);
    if let Ok(m) = tcp_message(data) {
        read(m);
    }
}

fn read(data: &[u8]) {
    // the one-walk parse (the engine's) accepts and refuses exactly what
    // parse does, and hands the same records as walk_chain
    let mut walked = Vec::new();
    let one = Message::parse_walk(data, |r, on| walked.push((r.ttl, on, r.name.to_wire())));
    let Ok(m) = Message::parse(data) else {
        assert!(one.is_err(), "parse_walk accepted what parse refused");
        return;
    };
    assert!(one.is_ok(), "parse_walk refused what parse accepted");
    let mut chained = Vec::new();
    m.walk_chain(|r, on| chained.push((r.ttl, on, r.name.to_wire())));
    assert!(walked == chained, "parse_walk and walk_chain disagree");
    let h = m.header();
    let _ = (h.is_response(), h.truncated(), h.rcode(), h.opcode());
    let q = m.question();
    check_name(&q.name.to_wire());
    let mut n = 0usize;
    m.walk_chain(|r, _| {
        n += 1;
        check_name(&r.name.to_wire());
        if let RData::Cname(t) = r.data {
            check_name(&t.to_wire());
            let _ = t.eq_ignore_case(&q.name);
        }
    });
    assert_eq!(n, usize::from(m.answer_count()), "an accepted message reads every answer it counts");
}

fn check_name(w: &WireName) {
    let b = w.as_bytes();
    assert!(!b.is_empty() && b.len() <= super::name::MAX_NAME && b[b.len() - 1] == 0);
    assert_eq!(WireName::from_wire(b).as_ref(), Some(w));
    let text = w.to_string();
    if !text.contains('\\') {
        assert_eq!(WireName::from_text(&text).as_ref(), Ok(w), "{text}");
    }
}
