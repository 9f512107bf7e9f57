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
