//! Insert, verify and strip the identity option on TCP SYN and SYN-ACK.
//!
//! Insertion puts the 20-byte option first in the options area and keeps the
//! original option bytes unchanged after it; 20 being a multiple of 4, every
//! original option keeps its alignment. Only when the original options exceed
//! 20 bytes are NOP/EOL bytes dropped (kept options stay in order, byte for
//! byte) and the area re-padded with EOL to a 4-byte boundary. Stripping removes
//! the 20 bytes wherever they are. Lengths and checksums are updated
//! incrementally (RFC 1624): a packet whose checksum was wrong stays wrong.

use subtle::ConstantTimeEq;

use super::keys::{KeyId, KeyRing, MacKey, PeerId};
use super::mac::{self, context, Flow};
use super::option::{self, tcp_field, TcpVersion, EXID, TCP_KIND, TCP_LEN, TCP_MAC_LEN};
use super::{RewriteError, VerifyError};
use crate::buf::PacketBuf;
use crate::wire::tcp::{self as wtcp, TcpOption};
use crate::wire::{checksum, ip_proto, FrameInfo, L3Kind, L4Kind, Malformed};

/// A verified identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verified {
    /// The key that verified it (its high 16 bits name the sender's key pair).
    pub key_id: KeyId,
    /// The peer gateway the key belongs to.
    pub peer: PeerId,
    /// The workload's numeric identity.
    pub identity: u32,
    /// The option's format version (its MAC).
    pub version: TcpVersion,
}

/// Offsets of one TCP segment inside a frame, cross-checked against the bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loc {
    pub l3: usize,
    pub l4: usize,
    pub ip_end: usize,
    pub v6: bool,
}

pub(crate) enum LocError {
    NotApplicable,
    Fragmented,
    Malformed(Malformed),
}

impl From<LocError> for RewriteError {
    fn from(e: LocError) -> Self {
        match e {
            LocError::NotApplicable => RewriteError::NotApplicable,
            LocError::Fragmented => RewriteError::Fragmented,
            LocError::Malformed(m) => RewriteError::Malformed(m),
        }
    }
}

impl From<LocError> for VerifyError {
    fn from(e: LocError) -> Self {
        match e {
            LocError::NotApplicable | LocError::Fragmented => VerifyError::NotApplicable,
            LocError::Malformed(m) => VerifyError::Malformed(m),
        }
    }
}

/// Finds the IP datagram and L4 header described by `info` in `frame`, checking
/// that the IP length field agrees (so a stale or foreign `info` is refused).
pub(crate) fn locate(frame: &[u8], info: &FrameInfo, l4: L4Kind) -> Result<Loc, LocError> {
    if info.l4 != l4 {
        return Err(LocError::NotApplicable);
    }
    if info.fragment {
        return Err(LocError::Fragmented);
    }
    let l3 = usize::from(info.l3_offset);
    let l4o = usize::from(info.l4_offset);
    let ip_end = usize::from(info.ip_end);
    if ip_end > frame.len() || l4o > ip_end || l3 > l4o {
        return Err(LocError::Malformed(Malformed::Ipv4Truncated));
    }
    let (v6, stated) = match info.l3 {
        L3Kind::Ipv4 => {
            let b = frame.get(l3 + 2..l3 + 4).ok_or(LocError::Malformed(Malformed::Ipv4Truncated))?;
            (false, usize::from(u16::from_be_bytes([b[0], b[1]])))
        }
        L3Kind::Ipv6 => {
            let b = frame.get(l3 + 4..l3 + 6).ok_or(LocError::Malformed(Malformed::Ipv6Truncated))?;
            (true, 40 + usize::from(u16::from_be_bytes([b[0], b[1]])))
        }
        _ => return Err(LocError::NotApplicable),
    };
    // the IP header lies between l3 and l4 (guards the length/checksum writes)
    if l4o < l3 + if v6 { 40 } else { 20 } {
        return Err(LocError::Malformed(if v6 { Malformed::Ipv6Truncated } else { Malformed::Ipv4BadHeaderLen }));
    }
    if l3 + stated != ip_end {
        return Err(LocError::Malformed(if v6 { Malformed::Ipv6BadPayloadLen } else { Malformed::Ipv4BadTotalLen }));
    }
    Ok(Loc { l3, l4: l4o, ip_end, v6 })
}

/// Rewrites the IP length field by `+delta` / `-delta` (IPv4: and its header
/// checksum, incrementally).
pub(crate) fn set_ip_len(frame: &mut [u8], loc: &Loc, new_ip_end: usize) {
    if loc.v6 {
        let pl = (new_ip_end - loc.l3 - 40) as u16;
        frame[loc.l3 + 4..loc.l3 + 6].copy_from_slice(&pl.to_be_bytes());
    } else {
        let old = u16::from_be_bytes([frame[loc.l3 + 2], frame[loc.l3 + 3]]);
        let new = (new_ip_end - loc.l3) as u16;
        let c = u16::from_be_bytes([frame[loc.l3 + 10], frame[loc.l3 + 11]]);
        let c = checksum::adjust_word(c, old, new);
        frame[loc.l3 + 2..loc.l3 + 4].copy_from_slice(&new.to_be_bytes());
        frame[loc.l3 + 10..loc.l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
}

fn handshake_ctx(flags: u8) -> Option<u8> {
    use wtcp::flags::{ACK, RST, SYN};
    match flags & (SYN | ACK | RST) {
        SYN => Some(context::TCP_SYN),
        x if x == SYN | ACK => Some(context::TCP_SYN_ACK),
        _ => None,
    }
}

fn flow(info: &FrameInfo, tcp: &[u8]) -> Flow {
    Flow {
        src: info.src,
        dst: info.dst,
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        proto: ip_proto::TCP,
    }
}

fn seq_ack(tcp: &[u8], ctx: u8) -> (u32, u32) {
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ack = if ctx == context::TCP_SYN_ACK { u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]) } else { 0 };
    (seq, ack)
}

/// The TCP segment `[l4, ip_end)` and its header length, validated.
fn segment<'a>(frame: &'a [u8], loc: &Loc) -> Result<(&'a [u8], usize), Malformed> {
    let tcp = frame.get(loc.l4..loc.ip_end).ok_or(Malformed::TcpTruncated)?;
    let t = wtcp::Packet::new_checked(tcp)?;
    Ok((tcp, t.header_len()))
}

/// The one's-complement sum of `bytes` as they sit at an even (`odd == false`)
/// or odd offset from the start of the checksummed data.
fn sum_at(bytes: &[u8], odd: bool) -> u32 {
    let s = checksum::sum(bytes);
    if odd {
        u32::from(checksum::fold(s).swap_bytes())
    } else {
        s
    }
}

/// Inserts the identity option into a SYN or SYN-ACK, signed with `key` in
/// the version it sends ([`MacKey::tx_version`]).
///
/// `info` must come from [`crate::wire::parse_frame`] on this buffer; it is stale
/// afterwards. On error the packet is unchanged (Ethernet padding after the IP
/// datagram may have been removed).
pub fn insert_tcp<B: PacketBuf>(
    buf: &mut B,
    info: &FrameInfo,
    key: &MacKey,
    identity: u32,
) -> Result<(), RewriteError> {
    let frame = buf.data();
    let loc = locate(frame, info, L4Kind::Tcp)?;
    let (tcp, hdr_len) = segment(frame, &loc)?;
    let ctx = handshake_ctx(tcp[13]).ok_or(RewriteError::NotApplicable)?;
    let old_opts = &tcp[wtcp::HEADER_LEN..hdr_len];
    let old_len = old_opts.len();

    let mut kept = 0usize;
    for (kind, at, n) in extents(old_opts) {
        match kind? {
            wtcp::kind::NOP => {}
            TCP_KIND if is_ours(&old_opts[at..]) => return Err(RewriteError::AlreadyPresent),
            _ => kept += n,
        }
    }

    // the option, MAC last
    let mut ours = [0u8; TCP_LEN];
    ours[tcp_field::KIND] = TCP_KIND;
    ours[tcp_field::LEN] = TCP_LEN as u8;
    ours[tcp_field::EXID].copy_from_slice(&EXID.to_be_bytes());
    let version = key.tx_version();
    ours[tcp_field::VER_FLAGS] = version.ver_flags();
    option::put_u24(&mut ours[tcp_field::KEY_ID], key.key_id().get());
    ours[tcp_field::IDENTITY].copy_from_slice(&identity.to_be_bytes());
    let mut bound = [0u8; 8];
    bound.copy_from_slice(&ours[tcp_field::BOUND]);
    let (seq, ack) = seq_ack(tcp, ctx);
    let tag = key.tcp_tag(version, &mac::tcp_input(ctx, &bound, &flow(info, tcp), seq, ack));
    ours[tcp_field::MAC].copy_from_slice(&tag.to_be_bytes());

    // The new options area: ours, then the old options as they are (the
    // common case: written in place, see below) or, when both do not fit,
    // the old options without NOP/EOL, built here.
    let mut compacted = [0u8; wtcp::MAX_OPTIONS_LEN];
    let (new_len, in_place) = if old_len + TCP_LEN <= wtcp::MAX_OPTIONS_LEN {
        (old_len + TCP_LEN, true)
    } else if kept + TCP_LEN <= wtcp::MAX_OPTIONS_LEN {
        compacted[..TCP_LEN].copy_from_slice(&ours);
        let mut at = TCP_LEN;
        for r in wtcp::options(old_opts) {
            let (off, o) = r?;
            if !matches!(o, TcpOption::Nop | TcpOption::EndOfList) {
                let n = o.buffer_len();
                let src = old_opts.get(off..off + n).ok_or(Malformed::TcpOptionTruncated)?;
                let dst = compacted.get_mut(at..at + n).ok_or(RewriteError::NoRoom)?;
                dst.copy_from_slice(src);
                at += n;
            }
        }
        // never shrink the header: pad with EOL up to the old length
        (((at + 3) & !3).max(old_len), false)
    } else {
        return Err(RewriteError::NoRoom);
    };
    let delta = new_len - old_len;
    let tcp_len = loc.ip_end - loc.l4;
    if loc.ip_end - loc.l3 + delta > usize::from(u16::MAX) {
        return Err(RewriteError::NoRoom);
    }
    let old_sum = checksum::sum(old_opts);
    // Ours is 20 bytes (even): the old options keep their word alignment
    // after it, so the new area's sum is the two sums added.
    let new_sum = if in_place { checksum::sum(&ours) + old_sum } else { checksum::sum(&compacted[..new_len]) };
    let old_word = u16::from_be_bytes([tcp[12], tcp[13]]);
    let new_word = (old_word & 0x0fff) | ((((wtcp::HEADER_LEN + new_len) / 4) as u16) << 12);
    let old_csum = u16::from_be_bytes([tcp[16], tcp[17]]);
    let opts_start = loc.l4 + wtcp::HEADER_LEN;
    let opts_end = loc.l4 + hdr_len;

    let grew = grow_at(buf, opts_start, opts_end, loc.ip_end, delta)?;

    let frame = buf.data_mut();
    if in_place {
        // The old options move 20 bytes on, unless growing at the head
        // moved them there already; ours goes before them.
        if grew == Grew::AtTail {
            frame.copy_within(opts_start..opts_start + old_len, opts_start + TCP_LEN);
        }
        frame[opts_start..opts_start + TCP_LEN].copy_from_slice(&ours);
    } else {
        frame[opts_start..opts_start + new_len].copy_from_slice(&compacted[..new_len]);
    }
    frame[loc.l4 + 12..loc.l4 + 14].copy_from_slice(&new_word.to_be_bytes());
    let removed = old_sum + u32::from(old_word) + tcp_len as u32;
    let added = new_sum + u32::from(new_word) + (tcp_len + delta) as u32;
    let c = checksum::adjust(old_csum, removed, added);
    frame[loc.l4 + 16..loc.l4 + 18].copy_from_slice(&c.to_be_bytes());
    set_ip_len(frame, &loc, loc.ip_end + delta);
    Ok(())
}

/// Where [`grow_at`] made its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grew {
    /// At `opts_end`: what was before it is where it was.
    AtTail,
    /// Before `opts_start`: what was from `opts_start` on is `delta` bytes
    /// further on.
    AtHead,
}

/// Opens `delta` bytes at `opts_end` (moving what follows towards the tail,
/// or what precedes `opts_start` towards the head when the tail has no room)
/// and drops Ethernet padding after `ip_end`. Checks room before changing
/// anything.
fn grow_at<B: PacketBuf>(
    buf: &mut B,
    opts_start: usize,
    opts_end: usize,
    ip_end: usize,
    delta: usize,
) -> Result<Grew, RewriteError> {
    let extra = buf.len() - ip_end;
    let tail_ok = buf.tailroom() + extra >= delta;
    let head_ok = buf.headroom() >= delta;
    let tail_bytes = ip_end - opts_end;
    if tail_ok && (tail_bytes <= opts_start || !head_ok) {
        let r = if extra >= delta { buf.trim(extra - delta) } else { buf.append(delta - extra) };
        r.map_err(|_| RewriteError::BufferFull)?;
        if tail_bytes > 0 && delta > 0 {
            buf.data_mut().copy_within(opts_end..ip_end, opts_end + delta);
        }
        Ok(Grew::AtTail)
    } else if head_ok {
        buf.trim(extra).map_err(|_| RewriteError::BufferFull)?;
        buf.prepend(delta).map_err(|_| RewriteError::BufferFull)?;
        buf.data_mut().copy_within(delta..delta + opts_start, 0);
        Ok(Grew::AtHead)
    } else {
        Err(RewriteError::BufferFull)
    }
}

/// Where the first identity option sits (frame offset), if any.
fn find(frame: &[u8], loc: &Loc) -> Result<Option<(usize, usize)>, Malformed> {
    let (tcp, hdr_len) = segment(frame, loc)?;
    let opts = &tcp[wtcp::HEADER_LEN..hdr_len];
    for (kind, at, n) in extents(opts) {
        if kind? == TCP_KIND && is_ours(&opts[at..]) {
            return Ok(Some((loc.l4 + wtcp::HEADER_LEN + at, n)));
        }
    }
    Ok(None)
}

/// The options of `opts` as a host walks them, by kind and extent only
/// ([`wtcp::option_extent`]: the checks of [`wtcp::options`]' parser without
/// building each option): `(kind, offset, length)`, up to an End of List
/// (not yielded) or the first malformed option (yielded as the error, last).
fn extents(opts: &[u8]) -> impl Iterator<Item = (Result<u8, Malformed>, usize, usize)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = opts.get(at..).filter(|r| !r.is_empty())?;
        match wtcp::option_extent(rest) {
            Ok((wtcp::kind::EOL, _)) => None,
            Ok((kind, n)) => {
                let this = at;
                at += n;
                Some((Ok(kind), this, n))
            }
            Err(e) => {
                at = opts.len();
                Some((Err(e), 0, 0))
            }
        }
    })
}

/// Whether the experimental option at the start of `opt` (its extent
/// checked: four bytes at least) carries our ExID.
#[inline(always)]
fn is_ours(opt: &[u8]) -> bool {
    opt[2..4] == EXID.to_be_bytes()
}

// Inlined: its result (verified identity, offsets) then stays in registers.
#[inline(always)]
fn verify_inner(
    frame: &[u8],
    info: &FrameInfo,
    ring: &KeyRing,
    now: u64,
) -> Result<(Verified, Loc, usize), VerifyError> {
    let loc = locate(frame, info, L4Kind::Tcp)?;
    let (tcp, _) = segment(frame, &loc)?;
    let ctx = handshake_ctx(tcp[13]).ok_or(VerifyError::NotApplicable)?;
    let (at, len) = find(frame, &loc)?.ok_or(VerifyError::NoIdentity)?;
    let opt = frame.get(at..at + len).ok_or(Malformed::TcpOptionTruncated)?;
    let ver = opt.get(tcp_field::VER_FLAGS).ok_or(Malformed::TcpOptionBadLength)? >> 4;
    let version = TcpVersion::from_nibble(ver).ok_or(VerifyError::BadVersion)?;
    if len != TCP_LEN {
        return Err(Malformed::TcpOptionBadLength.into());
    }
    let key_id = KeyId::new(option::get_u24(&opt[tcp_field::KEY_ID])).ok_or(VerifyError::UnknownKey)?;
    let key = ring.rx_key(key_id).ok_or(VerifyError::UnknownKey)?;
    if !key.is_valid_at(now) {
        return Err(VerifyError::ExpiredKey);
    }
    let mut bound = [0u8; 8];
    bound.copy_from_slice(&opt[tcp_field::BOUND]);
    let (seq, ack) = seq_ack(tcp, ctx);
    // Both versions' MACs cover the version nibble (`bound`): an option
    // passed off as the other version is a MAC of another input.
    let tag = key.tcp_tag(version, &mac::tcp_input(ctx, &bound, &flow(info, tcp), seq, ack));
    let mut carried = [0u8; TCP_MAC_LEN];
    carried.copy_from_slice(&opt[tcp_field::MAC]);
    // One word compared in constant time (not byte by byte).
    if !bool::from(tag.ct_eq(&u64::from_be_bytes(carried))) {
        return Err(VerifyError::BadMac);
    }
    let identity = u32::from_be_bytes([opt[8], opt[9], opt[10], opt[11]]);
    Ok((Verified { key_id, peer: key.peer(), identity, version }, loc, at))
}

/// Verifies the identity option of a SYN or SYN-ACK without changing it.
pub fn verify_tcp(frame: &[u8], info: &FrameInfo, ring: &KeyRing, now: u64) -> Result<Verified, VerifyError> {
    verify_inner(frame, info, ring, now).map(|(v, _, _)| v)
}

/// Verifies the identity option and, only if it verifies, removes it.
pub fn verify_and_strip_tcp<B: PacketBuf>(
    buf: &mut B,
    info: &FrameInfo,
    ring: &KeyRing,
    now: u64,
) -> Result<Verified, VerifyError> {
    let (v, loc, at) = verify_inner(buf.data(), info, ring, now)?;
    strip_at(buf, &loc, at).map_err(|e| match e {
        RewriteError::Malformed(m) => VerifyError::Malformed(m),
        _ => VerifyError::Malformed(Malformed::TcpOptionBadLength),
    })?;
    Ok(v)
}

/// Removes the identity option without verifying it (e.g. before passing an
/// unverifiable SYN to a workload that policy allows anyway). Returns whether
/// there was one.
pub fn strip_tcp<B: PacketBuf>(buf: &mut B, info: &FrameInfo) -> Result<bool, RewriteError> {
    let loc = locate(buf.data(), info, L4Kind::Tcp)?;
    let Some((at, len)) = find(buf.data(), &loc)? else {
        return Ok(false);
    };
    if len != TCP_LEN {
        return Err(Malformed::TcpOptionBadLength.into());
    }
    strip_at(buf, &loc, at)?;
    Ok(true)
}

fn strip_at<B: PacketBuf>(buf: &mut B, loc: &Loc, at: usize) -> Result<(), RewriteError> {
    let frame = buf.data();
    let (tcp, hdr_len) = segment(frame, loc)?;
    let end = at + TCP_LEN;
    if at < loc.l4 + wtcp::HEADER_LEN || end > loc.l4 + hdr_len {
        return Err(Malformed::TcpOptionBadLength.into());
    }
    let removed_opt = sum_at(&frame[at..end], (at - loc.l4) % 2 == 1);
    let old_word = u16::from_be_bytes([tcp[12], tcp[13]]);
    let new_word = (old_word & 0x0fff) | ((((hdr_len - TCP_LEN) / 4) as u16) << 12);
    let old_csum = u16::from_be_bytes([tcp[16], tcp[17]]);
    let tcp_len = loc.ip_end - loc.l4;
    let extra = frame.len() - loc.ip_end;

    if loc.ip_end - end <= at {
        if loc.ip_end > end {
            buf.data_mut().copy_within(end..loc.ip_end, at);
        }
        buf.trim(TCP_LEN + extra).map_err(|_| RewriteError::BufferFull)?;
    } else {
        buf.data_mut().copy_within(0..at, TCP_LEN);
        buf.adj(TCP_LEN).map_err(|_| RewriteError::BufferFull)?;
        buf.trim(extra).map_err(|_| RewriteError::BufferFull)?;
    }
    let frame = buf.data_mut();
    frame[loc.l4 + 12..loc.l4 + 14].copy_from_slice(&new_word.to_be_bytes());
    let removed = removed_opt + u32::from(old_word) + tcp_len as u32;
    let added = u32::from(new_word) + (tcp_len - TCP_LEN) as u32;
    let c = checksum::adjust(old_csum, removed, added);
    frame[loc.l4 + 16..loc.l4 + 18].copy_from_slice(&c.to_be_bytes());
    set_ip_len(frame, loc, loc.ip_end - TCP_LEN);
    Ok(())
}
