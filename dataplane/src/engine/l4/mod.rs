//! The layer-4 identity exchange (`docs/identity-l4.md`): when the identity
//! option cannot travel in the handshake, each gateway puts a 20-byte record
//! ([`crate::identity::l4`]) at the start of its direction of the stream and
//! the peer gateway verifies and removes it; afterwards every segment of the
//! flow is shifted by the record's length (from the inside: +20 on sequence,
//! acknowledgment and SACK edges; from the outside: −20).
//!
//! - `cache`: the per-worker cache of stripping paths.
//! - `fast`: the look-ahead fast path of a shifted flow.
//! - `segment`: the rewrites (shift, record removed, carrier, made segment).
//! - `client`: our PU is the client: when layer 4 starts, our record sent
//!   (on the client's own segments), the server's record verified and judged.
//! - `server`: our PU is the server: the client's record verified and judged,
//!   ours made and sent back, the fallback to the ACLs for a peer without
//!   layer 4.
//!
//! - `hold`: our PU's data held (bounded, in order) while the exchange is
//!   pending, our record sent again beside it.
//!
//! Before the exchange is done nothing of a workload is delivered: the
//! client's pure ACK becomes the carrier of our record, its data is held
//! (or, with no room to hold, becomes a carrier and is dropped for its TCP
//! to retransmit, `l4_data_replaced`); the server's segments before the
//! client's record are dropped (`l4_pending`). A lost record is repeated on
//! the next segment of either workload; no gateway timer but the hold's.

mod cache;
mod client;
mod fast;
mod hold;
mod segment;
mod server;

pub use cache::{Learned, StripCache, SLOTS as STRIP_CACHE_SLOTS};
pub(super) use fast::Peeked;

use super::context::Ctx;
use super::reasons::drop_of_verdict;
use super::reply_limit::Trust;
use super::rst::{self, RstSpec};
use super::{Action, Engine};
use crate::buf::PacketBuf;
use crate::events::FlowRecord;
use crate::flow::{FlowState, TcpFlags, TcpStep};
use crate::identity::l4::{is_split_record, RECORD_LEN};
use crate::identity::mac::Flow;
use crate::identity::VerifyError;
use crate::stats::{DropReason, Note};
use crate::wire::ip_proto;
use crate::Side;
use segment::Seg;

/// The record's length, the shift of each direction.
pub(super) const RECORD: usize = RECORD_LEN;
const SHIFT: u32 = RECORD_LEN as u32;

/// A segment of a flow in layer-4 mode, as its handlers take it: where its
/// bytes are, and what the flow's entry says.
#[derive(Debug, Clone, Copy)]
struct L4Seg<'a> {
    seg: &'a Seg,
    f: &'a L4Flow,
}

/// What the layer-4 path reads of a flow's entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct L4Flow {
    pub initiator: Side,
    /// The client's and the server's ISNs.
    pub isn_c: u32,
    pub isn_s: u32,
    pub done: bool,
    /// Why layer 4 (a [`Note`] as a byte) or, at our server once done, the
    /// key id bytes the client's record was signed with.
    pub why: u16,
}

impl L4Flow {
    /// The ISN of the workload behind this gateway (its direction is the one
    /// we shift from the inside).
    fn inside_isn(&self) -> u32 {
        match self.initiator {
            Side::Inside => self.isn_c,
            Side::Outside => self.isn_s,
        }
    }

    /// The ISN of the workload behind the peer gateway.
    fn outside_isn(&self) -> u32 {
        match self.initiator {
            Side::Inside => self.isn_s,
            Side::Outside => self.isn_c,
        }
    }
}

/// The drop reason of a record that did not verify.
fn drop_of_record(e: VerifyError) -> DropReason {
    match e {
        VerifyError::BadMac => DropReason::L4RecordBadMac,
        VerifyError::UnknownKey => DropReason::L4RecordUnknownKey,
        VerifyError::ExpiredKey => DropReason::L4RecordExpiredKey,
        VerifyError::BadVersion => DropReason::L4RecordBadVersion,
        _ => DropReason::L4RecordMissing,
    }
}

/// The flow a segment travels on, as a record binds it (source and
/// destination as sent).
fn flow_of(c: &Ctx<'_>) -> Flow {
    let i = c.info;
    Flow { src: i.src, dst: i.dst, src_port: i.src_port, dst_port: i.dst_port, proto: ip_proto::TCP }
}

/// `a − b` in sequence space, as a signed distance.
#[inline]
fn seq_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Maps a sequence number of the outside's view of the inside workload's
/// stream back to the workload's: −20, except that anything inside our
/// record (acknowledging part of it, or none) becomes the first byte.
#[inline]
fn from_outside(v: u32, inside_isn: u32) -> u32 {
    let first = inside_isn.wrapping_add(1);
    if (0..SHIFT as i32).contains(&seq_diff(v, first)) {
        first
    } else {
        v.wrapping_sub(SHIFT)
    }
}

/// The note a stored `why` names.
fn note_of(why: u16) -> Option<Note> {
    Note::ALL.get(usize::from(why)).copied()
}

impl Engine {
    /// Whether the layer-4 exchange is on in this snapshot.
    pub(super) fn l4_enabled(c: &Ctx<'_>) -> bool {
        c.cfg.policy.layer4().enabled
    }

    /// The cache of stripping paths of this worker.
    pub fn strip_cache(&self) -> &StripCache {
        &self.l4_cache
    }

    /// A TCP segment (not SYN, not SYN-ACK) of a flow in layer-4 mode.
    pub(super) fn l4_segment<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B) -> Action {
        if super::option_scan::has_identity_option(buf.data(), c.info.tcp_opts_offset, c.info.tcp_opts_len) {
            return self.drop(c.side, DropReason::Replay);
        }
        let t = *self.table.timeouts();
        let flags = TcpFlags(c.info.tcp_flags);
        let Some(e) = self.table.lookup(&c.key, c.now) else { return self.drop(c.side, DropReason::OutOfState) };
        let f = L4Flow {
            initiator: e.initiator(),
            isn_c: e.syn_seq(),
            isn_s: e.synack_seq(),
            done: e.l4_done(),
            why: e.syn_key(),
        };
        if e.l4_watch() {
            return self.l4_watching(c, buf, &f);
        }
        if e.on_tcp(c.side, flags, c.info.seq, c.now, &t) == TcpStep::OutOfState {
            return self.drop(c.side, DropReason::OutOfState);
        }
        let Some(seg) = Seg::of(buf.data(), c.info) else { return self.drop(c.side, DropReason::Malformed) };
        let s = L4Seg { seg: &seg, f: &f };
        if f.done {
            return self.l4_shifted(c, buf, s);
        }
        if flags.has(TcpFlags::RST) {
            // Before the exchange nothing is shifted yet; a reset passes, and
            // ends a hold: its timer would send our record to a connection
            // that is gone (the far side refused it, or our PU gave up).
            e.account(c.side, buf.len() as u32);
            let held = e.l4_hold_slot();
            self.l4_finish_hold(c, held, false, DropReason::L4Pending);
            return Action::Forward;
        }
        match (f.initiator, c.side) {
            (Side::Inside, Side::Inside) => self.l4_client_carrier(c, buf, s),
            (Side::Inside, Side::Outside) => self.l4_client_from_server(c, buf, s),
            (Side::Outside, Side::Outside) => self.l4_server_from_client(c, buf, s),
            (Side::Outside, Side::Inside) => self.drop(c.side, DropReason::L4Pending),
        }
    }

    /// A segment of a flow whose exchange is done: shifted and forwarded on
    /// the cached verdict; a record again at the start of the peer's stream
    /// (a retransmission) is verified again and handled.
    fn l4_shifted<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, s: L4Seg<'_>) -> Action {
        let L4Seg { seg, f } = s;
        let seq = c.info.seq;
        if c.side == Side::Outside {
            let at = seq_diff(seq, f.outside_isn().wrapping_add(1));
            if (0..SHIFT as i32).contains(&at) && c.info.payload_len > 0 {
                if at == 0 && !is_split_record(seg.payload(buf.data())) {
                    return self.l4_record_again(c, buf, s);
                }
                return self.l4_record_not_whole(c, at, f);
            }
        }
        let Some(e) = self.table.lookup(&c.key, c.now) else { return self.drop(c.side, DropReason::OutOfState) };
        if !e.verdict().allowed() {
            let r = drop_of_verdict(e.verdict().unpack(), DropReason::OutOfState);
            return self.drop(c.side, r);
        }
        e.account(c.side, buf.len() as u32);
        let frame = buf.data_mut();
        match c.side {
            Side::Inside => segment::shift(frame, seg, seq.wrapping_add(SHIFT), |a| a.wrapping_add(SHIFT)),
            Side::Outside => {
                let (out_isn, in_isn) = (f.outside_isn(), f.inside_isn());
                segment::shift(frame, seg, from_outside(seq, out_isn), |a| from_outside(a, in_isn))
            }
        }
        Action::Forward
    }

    /// A segment from the peer gateway where its record should start whole
    /// and does not: a split record (its head alone, or a segment starting
    /// inside it: `l4_record_split`, told), or another segment before the
    /// record (`l4_record_missing`). Not reassembled (docs/identity-l4.md).
    fn l4_record_not_whole(&mut self, c: &Ctx<'_>, at: i32, f: &L4Flow) -> Action {
        if (0..SHIFT as i32).contains(&at) && c.info.payload_len > 0 {
            return self.drop_told(c.side, c.flow(f.initiator), DropReason::L4RecordSplit, None);
        }
        self.drop(c.side, DropReason::L4RecordMissing)
    }

    /// The peer's record again on a flow whose exchange is done: at our
    /// server, the client's gateway did not get our record (send it again);
    /// at our client, a duplicate of the server's. Forged: dropped.
    fn l4_record_again<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, s: L4Seg<'_>) -> Action {
        let f = s.f;
        let v = match self.l4_verify(c, buf.data(), s) {
            Ok(v) => v,
            Err(a) => return a,
        };
        if f.initiator == Side::Outside {
            self.l4_send_server_record(c, buf.data(), f, (v.peer, v.key_id.answer_bytes()));
        }
        self.l4_strip_and_forward(c, buf, s)
    }

    /// Removes the verified record at the front of the segment and forwards
    /// what remains, shifted; a segment that was only the record is
    /// consumed — unless our PU is the server, whose TCP needs the client's
    /// ACK the record rode on.
    fn l4_strip_and_forward<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, s: L4Seg<'_>) -> Action {
        let L4Seg { seg, f } = s;
        let only_record = usize::from(c.info.payload_len) == RECORD;
        let fin = TcpFlags(c.info.tcp_flags).has(TcpFlags::FIN);
        if only_record && !fin && f.initiator == Side::Inside {
            return Action::Consume;
        }
        if !segment::remove_front(buf, seg, RECORD) {
            return self.drop(c.side, DropReason::Malformed);
        }
        // The segment now starts at the first byte after the record.
        let Some(seg) = Seg::of_shrunk(buf.data(), seg, RECORD) else {
            return self.drop(c.side, DropReason::Malformed);
        };
        let in_isn = f.inside_isn();
        segment::shift(buf.data_mut(), &seg, f.outside_isn().wrapping_add(1), |a| from_outside(a, in_isn));
        if let Some(e) = self.table.lookup(&c.key, c.now) {
            e.account(c.side, buf.len() as u32);
        }
        Action::Forward
    }

    /// Verifies the record at the start of the segment from the peer gateway.
    fn l4_verify(&mut self, c: &Ctx<'_>, frame: &[u8], s: L4Seg<'_>) -> Result<crate::identity::Verified, Action> {
        let L4Seg { seg, f } = s;
        use crate::identity::l4::{context, verify_record, Binding};
        let ctx = if f.initiator == Side::Inside { context::SERVER } else { context::CLIENT };
        let b = Binding { flow: flow_of(c), own_isn: f.outside_isn(), peer_isn: f.inside_isn(), ctx };
        match verify_record(seg.payload(frame), &b, &c.cfg.keys, c.now) {
            Ok(v) => {
                self.refuse_unowned(c, c.flow(f.initiator), v.identity, v.key_id)?;
                self.note(c.side, Note::L4RecordVerified);
                Ok(v)
            }
            Err(e) => Err(self.drop_told(c.side, c.flow(f.initiator), drop_of_record(e), None)),
        }
    }

    /// A refused exchange: the event, the flow removed, a reset back to the
    /// peer (`back`) and one onwards to our PU (`onwards`).
    pub(super) fn l4_reset_both<B: PacketBuf>(
        &mut self,
        c: &Ctx<'_>,
        buf: &mut B,
        mut rec: FlowRecord,
        r: DropReason,
        resets: (RstSpec, RstSpec),
        to: Trust,
    ) -> Action {
        let (back, onwards) = resets;
        rec.drop = Some(r);
        self.emit(c.side, &rec);
        self.table.remove(&c.key, c.now);
        let l3 = usize::from(c.info.l3_offset);
        self.extra_len =
            buf.data().get(..l3).and_then(|eth| rst::write(&mut self.extra, eth, false, &onwards)).unwrap_or(0);
        match self.reply_rst(c.side, buf, &back, r, to, c.now) {
            Action::Reply(r) if self.extra_len > 0 => Action::ReplyAndReset(r),
            a => a,
        }
    }

    /// A reset from the far side for our PU's connection before it was
    /// decided (its gateway refused it): told in a flow event
    /// (`refused_by_peer`) and counted as a note; the reset is forwarded.
    pub(super) fn tell_refused_by_peer(&mut self, c: &Ctx<'_>) {
        let Some(e) = self.table.get(&c.key) else { return };
        let pending = matches!(e.state(), FlowState::SynSent | FlowState::SynAckSeen) || e.is_l4() && !e.l4_done();
        if e.initiator() != Side::Inside || !pending || e.verdict().is_decided() {
            return;
        }
        self.note(c.side, Note::PeerRefused);
        let rec = c.flow(Side::Inside).dropped(DropReason::RefusedByPeer, None);
        self.emit(c.side, &rec);
    }
}

#[cfg(test)]
mod tests;
