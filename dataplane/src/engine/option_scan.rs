//! Finding our identity option in a TCP options area, as a host would and
//! as an attacker hiding one would: every packet outside the handshake that
//! carries one is a replay, and no second copy may reach a workload.

use crate::identity::option;
use crate::wire;

/// Whether the TCP options (`len` bytes at `offset` in the frame) hold our
/// identity option. Options are walked as a host would; if the walk meets a
/// malformed option, the bytes after it are searched for the option's first
/// four bytes (kind, length, ExID), so that an option hidden behind a broken
/// one is still found: the gateway never lets one through to a workload.
///
/// The walk reads each option's kind and length only
/// ([`wire::tcp::option_extent`], the checks of the full option parser): it
/// runs on every SYN, and a SYN's options are the Linux five plus ours.
#[inline]
pub(super) fn has_identity_option(frame: &[u8], offset: u16, len: u8) -> bool {
    if usize::from(len) < option::TCP_LEN {
        return false;
    }
    let o = usize::from(offset);
    let Some(opts) = frame.get(o..o + usize::from(len)) else { return false };
    // Where the option's kind byte appears nowhere it could start, neither
    // the walk nor the search behind a malformed option can find it: the
    // common case (a PU's SYN; the options left after ours was stripped)
    // costs a few word compares instead of a walk.
    if !has_byte(&opts[..opts.len() - 3], option::TCP_KIND) {
        return false;
    }
    let exid = option::EXID.to_be_bytes();
    let mut at = 0;
    while let Some(rest) = opts.get(at..).filter(|r| !r.is_empty()) {
        match wire::tcp::option_extent(rest) {
            Ok((wire::tcp::kind::EOL, _)) => return false,
            // (an experimental option's extent has its two ExID bytes)
            Ok((option::TCP_KIND, _)) if rest[2..4] == exid => return true,
            Ok((_, n)) => at += n,
            Err(_) => return option_bytes_anywhere(opts),
        }
    }
    false
}

/// Whether `b` is among `bytes`, eight at a time: a word holds it when the
/// word XOR eight copies of it has a zero byte (the classic test, which
/// never misses one: a false positive only costs the walk).
#[inline(always)]
fn has_byte(bytes: &[u8], b: u8) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    let pattern = LOW * u64::from(b);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ pattern;
        if x.wrapping_sub(LOW) & !x & (LOW << 7) != 0 {
            return true;
        }
    }
    words.remainder().contains(&b)
}

/// Whether `opts` holds the identity option's first four bytes at any offset.
#[cold]
fn option_bytes_anywhere(opts: &[u8]) -> bool {
    let [e0, e1] = option::EXID.to_be_bytes();
    let head = [option::TCP_KIND, option::TCP_LEN as u8, e0, e1];
    opts.windows(4).any(|w| w == head)
}

/// Whether the options of a frame whose identity option was just stripped
/// still hold one (a second copy). Only an options area that had room for two
/// (40 bytes) is scanned again. Stripping leaves the TCP header where it was
/// (`identity::tcp`: the bytes after the option move back, or those before
/// it forward with the frame's start), so the options are still at
/// `opts_offset`, 20 bytes fewer: no second parse of the frame.
pub(super) fn second_identity_option(frame: &[u8], opts_offset: u16, opts_len_before: u8) -> bool {
    if usize::from(opts_len_before) < 2 * option::TCP_LEN {
        return false;
    }
    has_identity_option(frame, opts_offset, opts_len_before - option::TCP_LEN as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{build, Spec};
    use crate::wire::parse_frame;

    /// Our option's first four bytes and 16 more.
    fn ours() -> Vec<u8> {
        let [e0, e1] = option::EXID.to_be_bytes();
        let mut o = vec![option::TCP_KIND, option::TCP_LEN as u8, e0, e1];
        o.resize(option::TCP_LEN, 0x5a);
        o
    }

    fn scan(opts: &[u8]) -> bool {
        let f = build(&Spec { tcp_options: opts, ..Spec::default() });
        let i = parse_frame(&f).unwrap();
        has_identity_option(&f, i.tcp_opts_offset, i.tcp_opts_len)
    }

    #[test]
    fn the_option_is_found_where_a_host_finds_it_and_behind_a_broken_one() {
        assert!(!scan(&[]));
        assert!(!scan(&[2, 4, 5, 180, 1, 1, 1, 0]));
        assert!(scan(&ours()));
        let mut after_mss = vec![2, 4, 5, 180];
        after_mss.extend(ours());
        assert!(scan(&after_mss));
        // A malformed option (length 1) hides the rest from a walk.
        let mut hidden = vec![8, 1, 1, 1];
        hidden.extend(ours());
        assert!(scan(&hidden));
    }

    #[test]
    fn the_byte_test_finds_every_byte_at_every_offset() {
        for n in 0..=40usize {
            for at in 0..n {
                for b in [0u8, 1, 0x7f, 0x80, 0xfd, 0xfe, 0xff] {
                    let mut bytes = vec![0xfcu8; n];
                    assert!(!has_byte(&bytes, b) || b == 0xfc);
                    bytes[at] = b;
                    assert!(has_byte(&bytes, b), "{b:#x} at {at} of {n}");
                    assert_eq!(has_byte(&bytes, 0xfd), b == 0xfd);
                }
            }
        }
    }

    #[test]
    fn a_second_copy_is_found_after_the_first_was_stripped() {
        let mut two = ours();
        two.extend(ours());
        // `ours()` as the options left after the first copy was stripped
        let f = build(&Spec { tcp_options: &ours(), ..Spec::default() });
        let at = parse_frame(&f).unwrap().tcp_opts_offset;
        // Only an options area that had room for two is scanned again.
        assert!(!second_identity_option(&f, at, option::TCP_LEN as u8));
        assert!(second_identity_option(&f, at, two.len() as u8));
        let mss = build(&Spec { tcp_options: &[2, 4, 5, 180, 1, 1, 1, 0], ..Spec::default() });
        assert!(!second_identity_option(&mss, at, (8 + option::TCP_LEN) as u8));
        let plain = build(&Spec::default());
        assert!(!second_identity_option(&plain, at, two.len() as u8));
    }
}
