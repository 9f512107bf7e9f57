//! Finding our identity option in a TCP options area, as a host would and
//! as an attacker hiding one would: every packet outside the handshake that
//! carries one is a replay, and no second copy may reach a workload.

use crate::identity::option;
use crate::wire::{self, parse_frame};

/// Whether the TCP options (`len` bytes at `offset` in the frame) hold our
/// identity option. Options are walked as a host would; if the walk meets a
/// malformed option, the bytes after it are searched for the option's first
/// four bytes (kind, length, ExID), so that an option hidden behind a broken
/// one is still found: the gateway never lets one through to a workload.
#[inline]
pub(super) fn has_identity_option(frame: &[u8], offset: u16, len: u8) -> bool {
    if usize::from(len) < option::TCP_LEN {
        return false;
    }
    let o = usize::from(offset);
    let Some(opts) = frame.get(o..o + usize::from(len)) else { return false };
    for r in wire::tcp::options(opts) {
        match r {
            Ok((_, wire::tcp::TcpOption::Experimental { kind: option::TCP_KIND, exid: option::EXID, .. })) => {
                return true
            }
            Ok(_) => {}
            Err(_) => return option_bytes_anywhere(opts),
        }
    }
    false
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
/// (40 bytes) is parsed again.
pub(super) fn second_identity_option(frame: &[u8], opts_len_before: u8) -> bool {
    if usize::from(opts_len_before) < 2 * option::TCP_LEN {
        return false;
    }
    match parse_frame(frame) {
        Ok(i) => has_identity_option(frame, i.tcp_opts_offset, i.tcp_opts_len),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{build, Spec};

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
    fn a_second_copy_is_found_after_the_first_was_stripped() {
        let mut two = ours();
        two.extend(ours());
        let f = build(&Spec { tcp_options: &ours(), ..Spec::default() });
        // Only an options area that had room for two is parsed again.
        assert!(!second_identity_option(&f, option::TCP_LEN as u8));
        assert!(second_identity_option(&f, two.len() as u8));
        let plain = build(&Spec::default());
        assert!(!second_identity_option(&plain, two.len() as u8));
        assert!(second_identity_option(&plain[..20], two.len() as u8), "unparsable: refused");
    }
}
