//! Fuzz target bodies for the identity rewrites, shared by `cargo fuzz` and by a
//! unit test that replays the seed corpus plus pseudo-random mutations.
//!
//! Input format for all targets: byte 0 chooses the buffer's headroom/tailroom
//! (bits 0–1, so both growth paths run) and the TCP option version inserted
//! (bit 2: version 2), the rest is the frame. Verification accepts both.

use super::keys::{KeyId, KeyRing, MacKey};
use super::option::TcpVersion;
use super::{insert_tcp, insert_udp, strip_tcp, strip_udp, verify_and_strip_tcp, verify_and_strip_udp};
use super::{verify_tcp, verify_udp, RewriteError, UdpIdentity, UdpMsg, VerifyError};
use crate::buf::{PacketBuf, VecBuf};
use crate::wire::{checksum, parse_frame, tcp, FrameInfo, L3Kind, L4Kind};

/// The key both ends of the fuzz "link" use.
pub fn test_keys() -> (MacKey, KeyRing) {
    let id = KeyId::pairwise(0x0102, 0x03);
    let k = MacKey::from_secret(id, 7, &[0x42; 32], 0, u64::MAX);
    let mut ring = KeyRing::new();
    // cannot fail: the ring is empty
    let _ = ring.add_rx(k.clone());
    (k, ring)
}

/// The key signing the TCP option version bit 2 of the selector byte picks.
fn key_for(data: &[u8], key: MacKey) -> MacKey {
    match data.first() {
        Some(sel) if sel & 4 != 0 => key.sending(TcpVersion::OneBlock),
        _ => key,
    }
}

pub const NOW: u64 = 1_000;
pub const IDENTITY: u32 = 0xdead_beef;

pub fn test_udp_identity() -> UdpIdentity {
    UdpIdentity { msg: UdpMsg::Request, identity: IDENTITY, nonce: [1, 2, 3, 4, 5, 6, 7, 8], echo: [0; 8] }
}

fn buffer(data: &[u8]) -> Option<VecBuf> {
    let (&sel, frame) = data.split_first()?;
    let (head, tail) = match sel % 4 {
        0 => (128, 2048),
        1 => (128, 0),
        2 => (0, 64),
        _ => (0, 0),
    };
    Some(VecBuf::with_room(frame, head, tail))
}

/// Insert into whatever parses; an inserted option must parse and verify.
pub fn insert(data: &[u8]) {
    let Some(mut b) = buffer(data) else { return };
    let Ok(info) = parse_frame(b.data()) else { return };
    let (key, ring) = test_keys();
    let key = key_for(data, key);
    let before = b.clone();
    match info.l4 {
        L4Kind::Tcp => match insert_tcp(&mut b, &info, &key, IDENTITY) {
            Ok(()) => {
                let i2 = parse_frame(b.data()).expect("inserted frame parses");
                let v = verify_tcp(b.data(), &i2, &ring, NOW).expect("inserted option verifies");
                assert_eq!((v.identity, v.version), (IDENTITY, key.tx_version()));
            }
            Err(e) => assert_unchanged(&before, &b, e),
        },
        L4Kind::Udp => match insert_udp(&mut b, &info, &key, &test_udp_identity()) {
            Ok(()) => {
                let i2 = parse_frame(b.data()).expect("inserted frame parses");
                let v = verify_udp(b.data(), &i2, &ring, NOW).expect("inserted option verifies");
                assert_eq!(v.identity, IDENTITY);
            }
            Err(e) => assert_unchanged(&before, &b, e),
        },
        _ => {}
    }
}

fn assert_unchanged(before: &VecBuf, after: &VecBuf, e: RewriteError) {
    // Only Ethernet padding after the IP datagram may have gone.
    let a = after.data();
    assert!(before.data().starts_with(a) && !a.is_empty() || before.data().is_empty(), "{e:?} changed the packet");
    if let Ok(i) = parse_frame(before.data()) {
        assert!(a.len() >= usize::from(i.ip_end), "{e:?} changed the packet");
    }
}

/// Verify (and strip) arbitrary frames: never panic, and a stripped frame still
/// parses.
pub fn verify(data: &[u8]) {
    let Some(mut b) = buffer(data) else { return };
    let Ok(info) = parse_frame(b.data()) else { return };
    let (_, ring) = test_keys();
    let r: Result<(), VerifyError> = match info.l4 {
        L4Kind::Tcp => {
            let _ = verify_tcp(b.data(), &info, &ring, NOW);
            verify_and_strip_tcp(&mut b, &info, &ring, NOW).map(|_| ())
        }
        L4Kind::Udp => {
            let _ = verify_udp(b.data(), &info, &ring, NOW);
            verify_and_strip_udp(&mut b, &info, &ring, NOW).map(|_| ())
        }
        _ => Ok(()),
    };
    if r.is_ok() {
        parse_frame(b.data()).expect("stripped frame parses");
    }
    // unverified strip too
    let Some(mut b) = buffer(data) else { return };
    let stripped = match info.l4 {
        L4Kind::Tcp => strip_tcp(&mut b, &info),
        L4Kind::Udp => strip_udp(&mut b, &info),
        _ => Ok(false),
    };
    if let Ok(true) = stripped {
        parse_frame(b.data()).expect("stripped frame parses");
    }
}

/// Insert then verify-and-strip: the result must be equivalent to the input.
pub fn round_trip(data: &[u8]) {
    let Some(mut b) = buffer(data) else { return };
    let Ok(info) = parse_frame(b.data()) else { return };
    let orig = b.data()[..usize::from(info.ip_end)].to_vec();
    let (key, ring) = test_keys();
    let key = key_for(data, key);
    match info.l4 {
        L4Kind::Tcp => {
            if insert_tcp(&mut b, &info, &key, IDENTITY).is_err() {
                return;
            }
            let i2 = parse_frame(b.data()).expect("inserted frame parses");
            let v = verify_and_strip_tcp(&mut b, &i2, &ring, NOW).expect("round trip verifies");
            assert_eq!(v.identity, IDENTITY);
        }
        L4Kind::Udp => {
            if insert_udp(&mut b, &info, &key, &test_udp_identity()).is_err() {
                return;
            }
            let i2 = parse_frame(b.data()).expect("inserted frame parses");
            let v = verify_and_strip_udp(&mut b, &i2, &ring, NOW).expect("round trip verifies");
            assert_eq!(v.nonce, test_udp_identity().nonce);
        }
        _ => return,
    }
    assert_equivalent(&orig, b.data());
}

fn normalized(frame: &[u8], info: &FrameInfo) -> Vec<u8> {
    // 0xffff and 0x0000 are the same one's-complement checksum
    let mut v = frame.to_vec();
    let mut fix = |at: usize| {
        if v.get(at..at + 2) == Some(&[0xff, 0xff][..]) {
            v[at] = 0;
            v[at + 1] = 0;
        }
    };
    if info.l3 == L3Kind::Ipv4 {
        fix(usize::from(info.l3_offset) + 10);
    }
    if info.l4 == L4Kind::Tcp {
        fix(usize::from(info.l4_offset) + tcp::CHECKSUM_OFFSET);
    }
    v
}

fn l4_checksum_ok(frame: &[u8], info: &FrameInfo) -> bool {
    let l4 = &frame[usize::from(info.l4_offset)..usize::from(info.ip_end)];
    let pseudo = match (info.src, info.dst) {
        (crate::wire::Addr::V4(s), crate::wire::Addr::V4(d)) => {
            checksum::pseudo_v4(&s, &d, info.proto, l4.len() as u16)
        }
        (crate::wire::Addr::V6(s), crate::wire::Addr::V6(d)) => {
            checksum::pseudo_v6(&s, &d, info.proto, l4.len() as u32)
        }
        _ => return false,
    };
    let len = if info.l4 == L4Kind::Udp { usize::from(info.udp_len).min(l4.len()) } else { l4.len() };
    let pseudo = if info.l4 == L4Kind::Udp { pseudo - l4.len() as u32 + len as u32 } else { pseudo };
    checksum::fold(pseudo + checksum::sum(&l4[..len])) == 0xffff
}

fn ipv4_checksum_ok(frame: &[u8], info: &FrameInfo) -> bool {
    let l3 = usize::from(info.l3_offset);
    let hl = usize::from(frame[l3] & 0x0f) * 4;
    checksum::fold(checksum::sum(&frame[l3..l3 + hl])) == 0xffff
}

fn kept_options(opts: &[u8]) -> Vec<Vec<u8>> {
    tcp::options(opts)
        .filter_map(|r| r.ok())
        .filter(|(_, o)| !matches!(o, tcp::TcpOption::Nop | tcp::TcpOption::EndOfList))
        .map(|(off, o)| opts[off..off + o.buffer_len()].to_vec())
        .collect()
}

/// The round-trip property: `after` (insert then strip of `orig`) has the same
/// headers, the same options in the same order, the same payload, and the same
/// checksum validity; when no padding had to be dropped it is byte-identical
/// (up to the ±0 representation of a checksum).
pub fn assert_equivalent(orig: &[u8], after: &[u8]) {
    let io = parse_frame(orig).expect("original parses");
    let ia = parse_frame(after).expect("result parses");
    assert_eq!((io.l3, io.l4, io.src, io.dst), (ia.l3, ia.l4, ia.src, ia.dst));
    assert_eq!(
        (io.src_port, io.dst_port, io.seq, io.ack, io.tcp_flags),
        (ia.src_port, ia.dst_port, ia.seq, ia.ack, ia.tcp_flags)
    );
    let pay = |f: &[u8], i: &FrameInfo| {
        f[usize::from(i.payload_offset)..usize::from(i.payload_offset) + usize::from(i.payload_len)].to_vec()
    };
    assert_eq!(pay(orig, &io), pay(after, &ia), "payload changed");
    if io.l3 == L3Kind::Ipv4 {
        assert_eq!(ipv4_checksum_ok(orig, &io), ipv4_checksum_ok(after, &ia), "IPv4 checksum validity changed");
    }
    assert_eq!(l4_checksum_ok(orig, &io), l4_checksum_ok(after, &ia), "L4 checksum validity changed");
    if io.l4 == L4Kind::Tcp && io.tcp_opts_len > 20 {
        let oo = usize::from(io.tcp_opts_offset);
        let ao = usize::from(ia.tcp_opts_offset);
        assert_eq!(
            kept_options(&orig[oo..oo + usize::from(io.tcp_opts_len)]),
            kept_options(&after[ao..ao + usize::from(ia.tcp_opts_len)]),
            "options changed"
        );
        assert_eq!(ia.tcp_opts_len % 4, 0);
    } else {
        assert_eq!(normalized(orig, &io), normalized(after, &ia), "not byte-identical");
    }
}
