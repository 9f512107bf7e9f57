//! The rewrites of a layer-4 flow's segments, in place through the TCP view:
//! the sequence shift (sequence, acknowledgment and SACK edges, checksum
//! updated incrementally), the record removed from the front of a payload,
//! a payload replaced by a record (a carrier), and a made segment carrying
//! a record. Nothing allocates; every length is checked first and a
//! rewrite that does not fit changes nothing and says so.

use crate::buf::PacketBuf;
use crate::identity::tcp::{locate, set_ip_len, Loc};
use crate::wire::emit::{self, IpRepr, TcpSegment};
use crate::wire::tcp::{self as wtcp, flags, TcpOption};
use crate::wire::{checksum, ip_proto, ipv6, Addr, FrameInfo, L4Kind};

use super::SHIFT;

/// Largest made segment: two VLAN tags, IPv6, a bare TCP header and a record.
pub(super) const MAX_MADE: usize = emit::MAX_L2_LEN + ipv6::HEADER_LEN + wtcp::HEADER_LEN + super::RECORD;

/// Window advertised by the segments the gateway makes (a carrier sent back,
/// the server's record). Small on purpose: the workloads' own segments, which
/// follow, state the real windows; a middlebox only ever widens what it saw.
const MADE_WINDOW: u16 = 1024;

/// One TCP segment of a frame, located and checked against its bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seg {
    loc: Loc,
    hdr_len: usize,
}

impl Seg {
    pub fn of(frame: &[u8], info: &FrameInfo) -> Option<Seg> {
        let loc = locate(frame, info, L4Kind::Tcp).ok()?;
        let t = wtcp::Packet::new_checked(frame.get(loc.l4..loc.ip_end)?).ok()?;
        Some(Seg { loc, hdr_len: t.header_len() })
    }

    /// The same segment after [`remove_front`] took `n` bytes.
    pub fn of_shrunk(frame: &[u8], s: &Seg, n: usize) -> Option<Seg> {
        let ip_end = s.loc.ip_end.checked_sub(n)?;
        if ip_end > frame.len() || ip_end < s.payload_at() {
            return None;
        }
        Some(Seg { loc: Loc { ip_end, ..s.loc }, hdr_len: s.hdr_len })
    }

    fn payload_at(&self) -> usize {
        self.loc.l4 + self.hdr_len
    }

    /// The segment's payload in `frame`.
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.payload_at()..self.loc.ip_end).unwrap_or(&[])
    }
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes `v` at `at` in the TCP header of `tcp`, the checksum following.
fn put_u32(tcp: &mut [u8], at: usize, v: u32) {
    let old = get_u32(tcp, at);
    if old == v {
        return;
    }
    let sum = |x: u32| (x >> 16) + (x & 0xffff);
    let c = u16::from_be_bytes([tcp[16], tcp[17]]);
    let c = checksum::adjust(c, sum(old), sum(v));
    tcp[at..at + 4].copy_from_slice(&v.to_be_bytes());
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
}

/// Sets the sequence number to `seq` and maps the acknowledgment (if the
/// ACK flag is set) and every SACK edge (D-SACK included) through `ack`,
/// the checksum updated incrementally. (A SACK block at an odd offset, which
/// no stack sends, costs a full checksum.)
pub(super) fn shift(frame: &mut [u8], s: &Seg, seq: u32, ack: impl Fn(u32) -> u32) {
    let (l4, hl) = (s.loc.l4, s.hdr_len);
    let Some(tcp) = frame.get_mut(l4..l4 + hl) else { return };
    if shift_header(tcp, seq, &ack) {
        return;
    }
    put_u32(tcp, 4, seq);
    if tcp[13] & flags::ACK != 0 {
        let a = get_u32(tcp, 8);
        put_u32(tcp, 8, ack(a));
    }
    let (edges, n, _) = sack_edges(tcp);
    for &e in &edges[..n] {
        let v = get_u32(tcp, e);
        tcp[e..e + 4].copy_from_slice(&ack(v).to_be_bytes());
    }
    let len = s.loc.ip_end - l4;
    let p = pseudo(frame, &s.loc, len);
    wtcp::Packet::new_unchecked(&mut frame[l4..s.loc.ip_end]).fill_checksum(p);
}

/// The offsets of the SACK edges in a TCP header (`tcp`: header and
/// options), how many, and whether one sits at an odd offset.
fn sack_edges(tcp: &[u8]) -> ([usize; 8], usize, bool) {
    let mut edges = [0usize; 8];
    let (mut n, mut odd) = (0, false);
    let Some(opts) = tcp.get(wtcp::HEADER_LEN..) else { return (edges, 0, false) };
    for r in wtcp::options(opts) {
        let Ok((off, o)) = r else { break };
        if let TcpOption::Sack(blocks) = o {
            let start = wtcp::HEADER_LEN + off + 2;
            odd |= !start.is_multiple_of(2);
            for k in 0..(blocks.len() / 4).min(edges.len() - n) {
                edges[n] = start + 4 * k;
                n += 1;
            }
        }
    }
    (edges, n, odd)
}

/// [`shift`] on a TCP header alone (`tcp`: the header and its options), the
/// checksum updated once for every field changed: the established path of a
/// shifted flow. False, and nothing changed, if a SACK block sits at an odd
/// offset.
///
/// The common headers (no options, or Linux's `NOP NOP timestamps` alone)
/// cannot hold a SACK block: their fields are rewritten without walking the
/// options; anything else walks them out of line ([`shift_with_options`]).
#[inline(always)]
pub(super) fn shift_header(tcp: &mut [u8], seq: u32, ack: &impl Fn(u32) -> u32) -> bool {
    let Some((fixed, opts)) = tcp.split_first_chunk_mut::<{ wtcp::HEADER_LEN }>() else { return false };
    if may_hold_sack(opts) {
        return shift_with_options(tcp, seq, ack);
    }
    shift_fixed_raw(fixed, seq, ack);
    true
}

/// [`shift_header`] on the TCP header at `at` in `frame`, `len` bytes with
/// its options (as the look ahead found them): the established path of a
/// shifted flow, with nothing sliced twice.
#[inline(always)]
pub(super) fn shift_at(frame: &mut [u8], at: usize, len: usize, seq: u32, ack: &impl Fn(u32) -> u32) -> bool {
    let Some(tcp) = frame.get_mut(at..) else { return false };
    let Some((fixed, opts)) = tcp.split_first_chunk_mut::<{ wtcp::HEADER_LEN }>() else { return false };
    let Some(opts) = opts.get(..len.wrapping_sub(wtcp::HEADER_LEN)) else { return false };
    if may_hold_sack(opts) {
        return tcp.get_mut(..len).is_some_and(|t| shift_with_options(t, seq, ack));
    }
    shift_fixed_raw(fixed, seq, ack);
    true
}

/// [`shift_at`] for a segment from the inside, whose sequence and
/// acknowledgment numbers both grow by the shift (`seq`: the sequence
/// number already grown): the established path of a shifted flow's inside
/// frames, the checksum adjusted by a constant ([`shift_fixed_up`]). A
/// header without options takes one bounds check.
#[inline(always)]
pub(super) fn shift_inside_at(frame: &mut [u8], at: usize, len: usize, seq: u32) -> bool {
    if len == wtcp::HEADER_LEN {
        let Some(fixed) = frame.get_mut(at..).and_then(|t| t.first_chunk_mut::<{ wtcp::HEADER_LEN }>()) else {
            return false;
        };
        shift_fixed_up(fixed, seq);
        return true;
    }
    let Some(tcp) = frame.get_mut(at..) else { return false };
    let Some((fixed, opts)) = tcp.split_first_chunk_mut::<{ wtcp::HEADER_LEN }>() else { return false };
    let Some(opts) = opts.get(..len.wrapping_sub(wtcp::HEADER_LEN)) else { return false };
    if may_hold_sack(opts) {
        return tcp.get_mut(..len).is_some_and(|t| shift_with_options(t, seq, &|a: u32| a.wrapping_add(SHIFT)));
    }
    shift_fixed_up(fixed, seq);
    true
}

/// Sequence number set to `seq` (the old one plus [`SHIFT`]) and the
/// acknowledgment (if the ACK flag is set) grown by [`SHIFT`], the checksum
/// adjusted without reading the old numbers: adding `d` to a 32-bit field
/// adds `d` to the one's-complement sum of its two 16-bit halves whatever
/// carries from the low half to the high one (2^16 ≡ 1), except that a carry
/// out of the top (the number wrapping past 2^32) is lost, which takes one
/// off. The sum is kept over the words as they sit in memory, as in
/// [`shift_fixed_raw`] (the constant's bytes swapped instead of the
/// checksum's); at most 0xffff + 0x2800, so one fold suffices.
#[inline(always)]
fn shift_fixed_up(fixed: &mut [u8; wtcp::HEADER_LEN], seq: u32) {
    let grown = |new: u32| SHIFT - u32::from(new < SHIFT);
    let mut d = grown(seq);
    fixed[4..8].copy_from_slice(&seq.to_be_bytes());
    if fixed[13] & flags::ACK != 0 {
        let ack = get_u32(fixed, 8).wrapping_add(SHIFT);
        d += grown(ack);
        fixed[8..12].copy_from_slice(&ack.to_be_bytes());
    }
    let csum = u16::from_ne_bytes([fixed[16], fixed[17]]);
    let acc = u32::from(!csum) + u32::from((d as u16).to_be());
    let c = !(((acc & 0xffff) + (acc >> 16)) as u16);
    fixed[16..18].copy_from_slice(&c.to_ne_bytes());
}

/// Whether an option area may hold a SACK block: not when empty, nor when
/// it is Linux's `NOP NOP timestamps` alone (nothing else fits beside it).
#[inline(always)]
fn may_hold_sack(opts: &[u8]) -> bool {
    !(opts.is_empty() || opts.len() == TS_ONLY.len() && opts[..4] == TS_ONLY[..4])
}

/// The option area Linux sends on every segment of a connection with
/// timestamps and no SACK: NOP, NOP, timestamps (kind 8, length 10).
const TS_ONLY: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];

/// Sequence and acknowledgment (if the ACK flag is set) rewritten in the
/// fixed header, the checksum updated by RFC 1624 eqn. 3 over the 32-bit
/// words as they sit in memory: the one's-complement sum does not depend on
/// byte order (RFC 1071 §2(B)) and a 32-bit word's complement is its two
/// halves' complements, so nothing is swapped but the two numbers and the
/// sum folds once at the end.
#[inline(always)]
fn shift_fixed_raw(fixed: &mut [u8; wtcp::HEADER_LEN], seq: u32, ack: &impl Fn(u32) -> u32) {
    let raw = |f: &[u8; wtcp::HEADER_LEN], at: usize| u32::from_ne_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
    let old_seq = raw(fixed, 4);
    let new_seq = seq.to_be();
    let csum = u16::from_ne_bytes([fixed[16], fixed[17]]);
    let mut acc = u64::from(!csum) + u64::from(!old_seq) + u64::from(new_seq);
    fixed[4..8].copy_from_slice(&new_seq.to_ne_bytes());
    if fixed[13] & flags::ACK != 0 {
        let old_ack = raw(fixed, 8);
        let new_ack = ack(u32::from_be(old_ack)).to_be();
        acc += u64::from(!old_ack) + u64::from(new_ack);
        fixed[8..12].copy_from_slice(&new_ack.to_ne_bytes());
    }
    let c = !fold64(acc);
    fixed[16..18].copy_from_slice(&c.to_ne_bytes());
}

/// Folds a one's-complement sum of 32-bit words (at most 2^34) to 16 bits.
#[inline(always)]
fn fold64(acc: u64) -> u16 {
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    checksum::fold(s as u32)
}

/// Sequence and acknowledgment (if the ACK flag is set) rewritten in the
/// fixed header: the one's-complement sums of the words replaced and of
/// their new values, for the checksum.
fn shift_fixed(fixed: &mut [u8; wtcp::HEADER_LEN], seq: u32, ack: &impl Fn(u32) -> u32) -> (u32, u32) {
    let words = |x: u32| (x >> 16) + (x & 0xffff);
    let old_seq = get_u32(fixed, 4);
    let (mut removed, mut added) = (words(old_seq), words(seq));
    fixed[4..8].copy_from_slice(&seq.to_be_bytes());
    if fixed[13] & flags::ACK != 0 {
        let a = get_u32(fixed, 8);
        let na = ack(a);
        removed += words(a);
        added += words(na);
        fixed[8..12].copy_from_slice(&na.to_be_bytes());
    }
    (removed, added)
}

/// [`shift_header`] for a header whose options may hold SACK blocks: every
/// edge mapped through `ack` too.
#[inline(never)]
fn shift_with_options(tcp: &mut [u8], seq: u32, ack: &impl Fn(u32) -> u32) -> bool {
    let (edges, n, odd) = sack_edges(tcp);
    if odd {
        return false;
    }
    let Some((fixed, _)) = tcp.split_first_chunk_mut::<{ wtcp::HEADER_LEN }>() else { return false };
    let words = |x: u32| (x >> 16) + (x & 0xffff);
    let (mut removed, mut added) = shift_fixed(fixed, seq, ack);
    for &e in &edges[..n] {
        let v = get_u32(tcp, e);
        let nv = ack(v);
        removed += words(v);
        added += words(nv);
        tcp[e..e + 4].copy_from_slice(&nv.to_be_bytes());
    }
    let c = checksum::adjust(u16::from_be_bytes([tcp[16], tcp[17]]), removed, added);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    true
}

/// The pseudo-header sum of the segment at `loc`, `len` bytes long.
fn pseudo(frame: &[u8], loc: &Loc, len: usize) -> u32 {
    let ip = &frame[loc.l3..];
    if loc.v6 {
        let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
        s.copy_from_slice(&ip[8..24]);
        d.copy_from_slice(&ip[24..40]);
        checksum::pseudo_v6(&s, &d, ip_proto::TCP, len as u32)
    } else {
        let (mut s, mut d) = ([0u8; 4], [0u8; 4]);
        s.copy_from_slice(&ip[12..16]);
        d.copy_from_slice(&ip[16..20]);
        checksum::pseudo_v4(&s, &d, ip_proto::TCP, len as u16)
    }
}

/// After a change of the segment's length: IP length and TCP checksum.
fn finish(frame: &mut [u8], loc: &Loc, new_ip_end: usize) {
    set_ip_len(frame, loc, new_ip_end);
    let len = new_ip_end - loc.l4;
    let p = pseudo(frame, loc, len);
    wtcp::Packet::new_unchecked(&mut frame[loc.l4..new_ip_end]).fill_checksum(p);
}

/// Removes the first `n` payload bytes (the record), moving the headers
/// towards the payload; Ethernet padding is dropped. False (unchanged) if the
/// payload is shorter.
pub(super) fn remove_front<B: PacketBuf>(buf: &mut B, s: &Seg, n: usize) -> bool {
    let at = s.payload_at();
    if at + n > s.loc.ip_end || s.loc.ip_end > buf.len() {
        return false;
    }
    let pad = buf.len() - s.loc.ip_end;
    if buf.trim(pad).is_err() {
        return false;
    }
    buf.data_mut().copy_within(0..at, n);
    if buf.adj(n).is_err() {
        return false;
    }
    finish(buf.data_mut(), &s.loc, s.loc.ip_end - n);
    true
}

/// Replaces the payload by `payload` (a carrier), Ethernet padding dropped.
/// False (unchanged but for padding) if the buffer cannot grow.
pub(super) fn set_payload<B: PacketBuf>(buf: &mut B, s: &Seg, payload: &[u8]) -> bool {
    let at = s.payload_at();
    if s.loc.ip_end > buf.len() || at + payload.len() - s.loc.l3 > usize::from(u16::MAX) {
        return false;
    }
    let len = buf.len();
    let cur = len - at;
    let ok = if cur >= payload.len() {
        buf.trim(cur - payload.len()).is_ok()
    } else {
        buf.append(payload.len() - cur).is_ok()
    };
    if !ok {
        return false;
    }
    let frame = buf.data_mut();
    frame[at..at + payload.len()].copy_from_slice(payload);
    finish(frame, &s.loc, at + payload.len());
    true
}

/// Sets the flags byte (the checksum following).
pub(super) fn set_flags(frame: &mut [u8], s: &Seg, f: u8) {
    let Some(tcp) = frame.get_mut(s.loc.l4..s.loc.l4 + wtcp::HEADER_LEN) else { return };
    let old = u16::from_be_bytes([tcp[12], tcp[13]]);
    let new = (old & 0xff00) | u16::from(f);
    let c = checksum::adjust_word(u16::from_be_bytes([tcp[16], tcp[17]]), old, new);
    tcp[13] = f;
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
}

/// A segment the gateway makes: the fields of its TCP header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Made {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
}

/// Writes a segment carrying `record` into `out`, reusing `eth` (the bytes
/// before the IP header; MACs swapped when it goes back where the frame
/// came from). ACK|PSH, no options.
pub(super) fn make(out: &mut [u8; MAX_MADE], eth: &[u8], swap_macs: bool, m: &Made, record: &[u8]) -> Option<usize> {
    let ip = IpRepr::new(m.src, m.dst, ip_proto::TCP)?;
    let header = wtcp::Repr {
        src_port: m.sport,
        dst_port: m.dport,
        seq: m.seq,
        ack: m.ack,
        flags: flags::ACK | flags::PSH,
        window: MADE_WINDOW,
        options_len: 0,
    };
    emit::tcp_frame(out, eth, swap_macs, ip, &TcpSegment { header, options: &[], payload: record })
}

/// Turns the frame in `buf` into the made segment, in place (the buffer
/// shrinks or grows to its length). False: unchanged.
pub(super) fn make_in_place<B: PacketBuf>(
    buf: &mut B,
    info: &FrameInfo,
    swap_macs: bool,
    m: &Made,
    record: &[u8],
) -> bool {
    let mut tmp = [0u8; MAX_MADE];
    let l3 = usize::from(info.l3_offset);
    let Some(eth) = buf.data().get(..l3) else { return false };
    let Some(n) = make(&mut tmp, eth, swap_macs, m, record) else { return false };
    buf.replace(&tmp[..n]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{build, Spec};
    use crate::wire::parse_frame;

    /// The inside's constant-checksum shift writes exactly what the general
    /// one (RFC 1624 over the old and new numbers) writes, for numbers that
    /// wrap past 2^32 and ones that carry between their halves, with and
    /// without the ACK flag, with no options, timestamps only and SACK.
    #[test]
    fn the_inside_shift_matches_the_general_one_byte_for_byte() {
        let ts: &[u8] = &[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        let sack: &[u8] = &[1, 1, 5, 10, 0, 0, 0x10, 0, 0, 0, 0x20, 0];
        let edges = [0, 1, 0xffec, 0xffff, 0x1_0000, 0xffff_ffeb, 0xffff_ffec, 0xffff_fff0, u32::MAX, 0x7fff_fff0];
        let mut checked = 0;
        for (i, &seq) in edges.iter().enumerate() {
            for &ack in &edges[i..] {
                for flags in [flags::ACK, flags::ACK | flags::PSH, flags::PSH] {
                    for opts in [&[][..], ts, sack] {
                        for dport in [80, 0xfff0, 7] {
                            let f = build(&Spec { seq, ack, flags, tcp_options: opts, dport, ..Spec::default() });
                            let info = parse_frame(&f).unwrap();
                            let (at, len) = (usize::from(info.l4_offset), 20 + opts.len());
                            let new_seq = seq.wrapping_add(SHIFT);
                            let (mut want, mut got) = (f.clone(), f.clone());
                            assert!(shift_at(&mut want, at, len, new_seq, &|a: u32| a.wrapping_add(SHIFT)));
                            assert!(shift_inside_at(&mut got, at, len, new_seq));
                            assert_eq!(got, want, "seq {seq:#x} ack {ack:#x} flags {flags:#x} opts {}", opts.len());
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 1000);
        // A header cut short changes nothing.
        let f = build(&Spec { flags: flags::ACK, ..Spec::default() });
        let at = usize::from(parse_frame(&f).unwrap().l4_offset);
        let mut short = f[..at + 19].to_vec();
        assert!(!shift_inside_at(&mut short, at, 20, 5));
        assert_eq!(short, f[..at + 19]);
    }
}
