//! The look-ahead fast path of TCP, flows shifted by the layer-4 exchange
//! included: one lookup (the line the look ahead prefetched), the state
//! step, the cached verdict and, for a shifted flow, the shift written into
//! the TCP header in place (sequence, acknowledgment, SACK edges; the
//! checksum updated incrementally). Anything unusual on a shifted flow (SYN,
//! FIN, RST, a segment where a record sits, an odd SACK block) goes to the
//! full path (`super::l4_segment`) untouched.

use super::segment::{shift_at, shift_inside_at};
use super::{from_outside, seq_diff, SHIFT};
use crate::buf::PacketBuf;
use crate::engine::established::{step, Seen};
use crate::engine::reasons::drop_of_verdict;
use crate::engine::{Action, Engine};
use crate::flow::{FlowEntry, FlowKey, TcpFlags, Timeouts};
use crate::stats::DropReason;
use crate::Side;

/// What the look ahead read of a TCP segment that a shift needs.
#[derive(Debug, Clone, Copy)]
pub(in crate::engine) struct Peeked<'k> {
    pub key: &'k FlowKey,
    pub h: u64,
    pub flags: u8,
    pub seq: u32,
    /// Offset of the TCP header in the frame, and its length with options.
    pub tcp_at: usize,
    pub tcp_len: usize,
}

impl Engine {
    /// The established path of a plain TCP segment from the look ahead:
    /// `None` if its flow is unknown, not decided under generation `gen`, or
    /// a shifted flow's segment the full path must see (nothing changed).
    #[inline(always)]
    pub(in crate::engine) fn established_or_shifted<B: PacketBuf>(
        &mut self,
        side: Side,
        buf: &mut B,
        pk: &Peeked<'_>,
        p: &Seen,
        gen: u32,
        now: u64,
    ) -> Option<Action> {
        let (e, t) = self.table.lookup_with_timeouts(pk.key, pk.h, now)?;
        if e.policy_generation() != gen || !e.verdict().is_decided() {
            return None;
        }
        let r = if e.l4_path() { shifted_step(e, t, side, buf, pk, p, now)? } else { step(e, side, p, now, t) };
        Some(self.forward_or_drop(side, r))
    }
}

/// The step of a shifted flow's segment: `None` (nothing changed) for
/// anything the full path must see. Inlined: out of line, the call and its
/// seven arguments cost more than the shift (measured, `est-l4-1k`), and the
/// plain flows' path measured no slower for it (`est-1k`).
#[inline(always)]
fn shifted_step<B: PacketBuf>(
    e: &mut FlowEntry,
    t: &Timeouts,
    side: Side,
    buf: &mut B,
    pk: &Peeked<'_>,
    p: &Seen,
    now: u64,
) -> Option<Result<(), DropReason>> {
    // Established and neither SYN, FIN nor RST, or the full path (the
    // deadline refreshed either way, as that path would).
    if !e.l4_done() || p.replay || !e.on_tcp_data(TcpFlags(pk.flags), now, t) || !shift(e, side, buf, pk) {
        return None;
    }
    if !e.verdict().allowed() {
        return Some(Err(drop_of_verdict(e.verdict().unpack(), DropReason::OutOfState)));
    }
    e.account(side, p.len);
    Some(Ok(()))
}

/// Shifts a plain segment of a done layer-4 flow in place; false (nothing
/// changed) for anything the full path must see.
#[inline(always)]
fn shift<B: PacketBuf>(e: &FlowEntry, side: Side, buf: &mut B, pk: &Peeked<'_>) -> bool {
    let (frame, at, len) = (buf.data_mut(), pk.tcp_at, pk.tcp_len);
    match side {
        Side::Inside => shift_inside_at(frame, at, len, pk.seq.wrapping_add(SHIFT)),
        Side::Outside => {
            let (in_isn, out_isn) = match e.initiator() {
                Side::Inside => (e.syn_seq(), e.synack_seq()),
                Side::Outside => (e.synack_seq(), e.syn_seq()),
            };
            // Where the peer's record sits: the full path looks.
            if (0..SHIFT as i32).contains(&seq_diff(pk.seq, out_isn.wrapping_add(1))) {
                return false;
            }
            shift_at(frame, at, len, from_outside(pk.seq, out_isn), &|a| from_outside(a, in_isn))
        }
    }
}
