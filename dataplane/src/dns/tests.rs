//! The parser on real responses (captured from `dig` against dnsmasq by
//! `tests/fixtures/dns/capture.sh`) and on hostile ones built by hand.

use super::*;

macro_rules! fixture {
    ($f:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dns/", $f))
    };
}

fn text(n: &Name<'_>) -> String {
    n.to_wire().to_string()
}

fn answer_text(r: &Record<'_>, on: bool) -> String {
    let value = match r.data {
        RData::A(a) => format!("A {}", std::net::Ipv4Addr::from(a)),
        RData::Aaaa(a) => format!("AAAA {}", std::net::Ipv6Addr::from(a)),
        RData::Cname(n) => format!("CNAME {}", text(&n)),
        RData::Other { rtype } => format!("TYPE{rtype}"),
    };
    format!("{} {value} {} {on}", text(&r.name), r.ttl)
}

/// Every answer as `owner type value ttl on-chain`, by `walk_chain`; the
/// one-walk `parse_walk` must hand the same.
fn answers(m: &Message<'_>) -> Vec<String> {
    let mut v = Vec::new();
    m.walk_chain(|r, on| v.push(answer_text(r, on)));
    let mut w = Vec::new();
    assert!(Message::parse_walk(m.bytes(), |r, on| w.push(answer_text(r, on))).is_ok());
    assert_eq!(v, w, "parse_walk and walk_chain disagree");
    v
}

#[test]
fn a_record() {
    let m = Message::parse(fixture!("a.bin")).unwrap();
    let h = m.header();
    assert!(h.is_response() && !h.truncated() && h.rcode() == 0);
    let q = m.question();
    assert_eq!((text(&q.name).as_str(), q.qtype, q.qclass), ("api.example.test", rtype::A, CLASS_IN));
    assert_eq!(answers(&m), ["api.example.test A 10.9.0.2 300 true"]);
}

#[test]
fn aaaa_record() {
    let m = Message::parse(fixture!("aaaa.bin")).unwrap();
    assert_eq!(m.question().qtype, rtype::AAAA);
    assert_eq!(answers(&m), ["v6.example.test AAAA fd00:9::2 300 true"]);
}

#[test]
fn cname_chain_through_compression() {
    let m = Message::parse(fixture!("cname_chain.bin")).unwrap();
    assert_eq!(
        answers(&m),
        [
            "a.example.test CNAME b.example.test 300 true",
            "b.example.test CNAME api.example.test 300 true",
            "api.example.test A 10.9.0.2 300 true",
        ]
    );
}

#[test]
fn nxdomain() {
    let m = Message::parse(fixture!("nxdomain.bin")).unwrap();
    assert_eq!(m.header().rcode(), 3);
    assert_eq!(text(&m.question().name), "missing.example.test");
    assert!(answers(&m).is_empty());
}

#[test]
fn truncated_flag() {
    let m = Message::parse(fixture!("truncated.bin")).unwrap();
    assert!(m.header().truncated());
    assert_eq!(m.question().qtype, 16);
}

#[test]
fn edns0_opt_in_additional_is_tolerated() {
    let b = fixture!("edns0.bin");
    assert_eq!(u16::from_be_bytes([b[10], b[11]]), 1, "the fixture carries an OPT record");
    let m = Message::parse(b).unwrap();
    let mut a = answers(&m);
    a.sort();
    assert_eq!(a, ["multi.example.test A 10.9.0.3 300 true", "multi.example.test A 10.9.0.4 300 true"]);
}

#[test]
fn dns_over_tcp() {
    let seg = fixture!("tcp.bin");
    let m = Message::parse(tcp_message(seg).unwrap()).unwrap();
    assert_eq!(answers(&m).len(), 2);
    assert_eq!(tcp_message(&seg[..seg.len() - 1]).unwrap_err(), DnsError::TcpIncomplete);
    assert_eq!(tcp_message(&seg[..1]).unwrap_err(), DnsError::TcpIncomplete);
}

/// A response to `q.test A` with the given answer section bytes and counts.
fn message(ancount: u16, answers: &[u8]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
    m.extend_from_slice(&ancount.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(b"\x01q\x04test\x00\x00\x01\x00\x01");
    m.extend_from_slice(answers);
    m
}

/// An A record owned by the name at `name` bytes.
fn a_rr(name: &[u8], addr: [u8; 4]) -> Vec<u8> {
    let mut r = name.to_vec();
    r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    r.extend_from_slice(&addr);
    r
}

#[test]
fn hostile_messages_are_refused() {
    let err = |b: &[u8]| {
        let e = Message::parse(b).unwrap_err();
        assert_eq!(Message::parse_walk(b, |_, _| {}).unwrap_err(), e, "parse_walk refuses alike");
        e
    };
    assert_eq!(err(&[0; 11]), DnsError::HeaderTruncated);
    // a pointer to itself (offset 24 is where the answer starts)
    assert_eq!(err(&message(1, &a_rr(&[0xc0, 24], [1, 2, 3, 4]))), DnsError::BadPointer);
    // a pointer past the end
    assert_eq!(err(&message(1, &a_rr(&[0xc0, 0xff], [1, 2, 3, 4]))), DnsError::BadPointer);
    // a loop of two: 24 -> 26 -> 24 (refused at its first, forward, hop)
    assert_eq!(err(&message(1, &a_rr(&[0xc0, 26, 0xc0, 24], [1, 2, 3, 4]))), DnsError::BadPointer);
    // a 64-byte label (0x40 is a reserved label type) and 0x80
    let mut long = vec![64];
    long.extend_from_slice(&[b'a'; 64]);
    long.push(0);
    assert_eq!(err(&message(1, &a_rr(&long, [1, 2, 3, 4]))), DnsError::BadLabel);
    assert_eq!(err(&message(1, &a_rr(&[0x80, 0], [1, 2, 3, 4]))), DnsError::BadLabel);
    // a 63-byte label is fine
    let mut ok = vec![63];
    ok.extend_from_slice(&[b'a'; 63]);
    ok.push(0);
    assert!(Message::parse(&message(1, &a_rr(&ok, [1, 2, 3, 4]))).is_ok());
    // five 63-byte labels: 320 bytes > 255
    let mut huge = Vec::new();
    for _ in 0..5 {
        huge.push(63);
        huge.extend_from_slice(&[b'a'; 63]);
    }
    huge.push(0);
    assert_eq!(err(&message(1, &a_rr(&huge, [1, 2, 3, 4]))), DnsError::NameTooLong);
    // counts larger than the message
    assert_eq!(err(&message(5000, &[])), DnsError::CountsTooLarge);
    assert_eq!(err(&message(3, &a_rr(&[0xc0, 12], [1, 2, 3, 4]))), DnsError::CountsTooLarge);
    // a record running past the end
    let mut short = message(1, &a_rr(&[0xc0, 12], [1, 2, 3, 4]));
    short.pop();
    assert_eq!(err(&short), DnsError::Truncated);
    // an A record with 5 bytes of data
    let mut five = a_rr(&[0xc0, 12], [1, 2, 3, 4]);
    five[11] = 5;
    five.push(9);
    assert_eq!(err(&message(1, &five)), DnsError::BadRdata);
    // no question, two questions
    let mut q0 = message(0, &[]);
    q0[5] = 0;
    assert_eq!(err(&q0), DnsError::QuestionCount);
    q0[5] = 2;
    assert_eq!(err(&q0), DnsError::QuestionCount);
}

#[test]
fn many_pointers_are_bounded() {
    // a ladder of 20 names, each one label then a pointer to the previous
    let mut rrs = Vec::new();
    let mut prev = 12u16;
    let mut at = 24u16;
    let mut count = 0;
    for _ in 0..20 {
        let mut name = vec![1, b'x'];
        name.extend_from_slice(&(0xc000 | prev).to_be_bytes());
        let r = a_rr(&name, [1, 1, 1, 1]);
        prev = at;
        at += r.len() as u16;
        rrs.extend_from_slice(&r);
        count += 1;
    }
    assert_eq!(Message::parse(&message(count, &rrs)).unwrap_err(), DnsError::TooManyPointers);
}

#[test]
fn answers_for_names_not_asked_are_off_chain() {
    // answer for q.test, then one for evil.test (not asked)
    let mut rrs = a_rr(&[0xc0, 12], [1, 2, 3, 4]);
    rrs.extend_from_slice(&a_rr(b"\x04evil\x04test\x00", [6, 6, 6, 6]));
    // a CNAME from evil.test: does not make anything on the chain
    let m = message(2, &rrs);
    let m = Message::parse(&m).unwrap();
    assert_eq!(answers(&m), ["q.test A 1.2.3.4 60 true", "evil.test A 6.6.6.6 60 false"]);
}

#[test]
fn names_compare_without_case_and_match_wildcards() {
    let w = |s| WireName::from_text(s).unwrap();
    assert_eq!(w("API.Example.Test."), w("api.example.test"));
    assert_eq!(w("api.example.test").to_string(), "api.example.test");
    assert!(w("api.example.test").is_strict_subdomain_of(&w("example.test")));
    assert!(w("a.b.example.test").is_strict_subdomain_of(&w("example.test")));
    assert!(!w("example.test").is_strict_subdomain_of(&w("example.test")));
    assert!(!w("badexample.test").is_strict_subdomain_of(&w("example.test")));
    assert!(!w("test").is_strict_subdomain_of(&w("example.test")));
    assert_eq!(WireName::from_text("a..b"), Err(name::NameTextError::EmptyLabel));
    assert_eq!(WireName::from_text(&"a".repeat(64)), Err(name::NameTextError::LabelTooLong));
    assert_eq!(WireName::from_text(""), Err(name::NameTextError::Empty));
    assert_eq!(WireName::from_text(".").unwrap().to_string(), ".");
    // a label holding a dot is escaped, not shown as two labels
    let m = message(0, &[]);
    let mut m = m;
    m[13] = b'.';
    let msg = Message::parse(&m).unwrap();
    assert_eq!(text(&msg.question().name), "\\046.test");
}

#[test]
fn fixtures_survive_the_fuzz_body() {
    for f in [
        &fixture!("a.bin")[..],
        fixture!("aaaa.bin"),
        fixture!("cname_chain.bin"),
        fixture!("nxdomain.bin"),
        fixture!("truncated.bin"),
        fixture!("edns0.bin"),
        fixture!("tcp.bin"),
    ] {
        fuzzing::parse(f);
    }
}
