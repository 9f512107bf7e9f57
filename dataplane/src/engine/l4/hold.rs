//! Our PU's segments held while the exchange is pending (our PU is the
//! client): in a hold slot of the UDP handshake's pool (the worker keeps
//! the frames; `udp::pending`), bounded by the same per-flow and per-worker
//! limits, already shifted so that their release is a plain transmit. Beside
//! each held segment our record goes out again (a made segment), and the
//! slot sends it again on the UDP backoff as it would a UDP request: a
//! record or an answer lost on the wire is repaired within the backoff's
//! waits, not at the client's retransmission timer, which backs off to
//! seconds (a capture at a third of records lost showed six rounds paced
//! by it: 16 s for one GET). The server's record verified and allowed:
//! released in order; refused: discarded; never answered: discarded when
//! the slot's last wait runs out, for the client's TCP to retransmit.

use super::segment::{self, Made};
use super::{Engine, L4Seg, SHIFT};
use crate::buf::PacketBuf;
use crate::engine::context::Ctx;
use crate::engine::udp::{Ending, PendingFlow};
use crate::engine::Action;
use crate::stats::{DropReason, Note};
use crate::Side;

impl Engine {
    /// Holds a segment of our PU (data or FIN) and sends our record again.
    /// `None`: no room (no slot, a bound reached, the outbox full): the
    /// caller makes the segment the record's carrier instead.
    pub(super) fn l4_client_hold<B: PacketBuf>(
        &mut self,
        c: &Ctx<'_>,
        buf: &mut B,
        s: L4Seg<'_>,
        record: &[u8],
    ) -> Option<Action> {
        let L4Seg { seg, f } = s;
        let i = c.info;
        let m = Made {
            src: i.src,
            dst: i.dst,
            sport: i.src_port,
            dport: i.dst_port,
            seq: f.isn_c.wrapping_add(1),
            ack: f.isn_s.wrapping_add(1),
        };
        let mut out = [0u8; segment::MAX_MADE];
        let n = segment::make(&mut out, buf.data().get(..usize::from(i.l3_offset))?, false, &m, record)?;
        let held = self.table.get(&c.key)?.l4_hold_slot().filter(|&s| self.udp.pending_flow(s, &c.key).is_some());
        let slot = match held {
            Some(s) => {
                self.udp.hold(s, &c.key).ok()?;
                s
            }
            None => {
                self.udp.can_start().ok()?;
                let s = self.udp.take_slot()?;
                let flow = PendingFlow { key: c.key, pu: c.pu.id, nonce: [0; 8] };
                self.udp.start_tcp_hold(s, flow, &out[..n], c.now);
                if let Some(e) = self.table.lookup(&c.key, c.now) {
                    e.set_l4_hold_slot(s);
                }
                s
            }
        };
        // Shifted now: released after the server's record verified, which
        // its acknowledgment then covers.
        segment::shift(buf.data_mut(), seg, i.seq.wrapping_add(SHIFT), |a| a.wrapping_add(SHIFT));
        if self.udp.send(Side::Outside, &out[..n]) {
            self.note(c.side, Note::L4RecordSent);
        }
        self.note(c.side, Note::L4Held);
        Some(Action::Hold(slot))
    }

    /// Ends the hold of a flow whose exchange ended (`release`: allowed).
    pub(super) fn l4_finish_hold(&mut self, c: &Ctx<'_>, slot: Option<u32>, release: bool, reason: DropReason) {
        let Some(slot) = slot.filter(|&s| self.udp.pending_flow(s, &c.key).is_some()) else { return };
        self.finish_l4_slot(slot, release, reason, c.now);
    }

    fn finish_l4_slot(&mut self, slot: u32, release: bool, reason: DropReason, now: u64) {
        let ending = if release { Ending::Release } else { Ending::Discard(reason) };
        let held = u64::from(self.udp.finish(slot, ending, now));
        if held > 0 {
            match ending {
                Ending::Release => self.dir(Side::Inside).note_count(Note::L4Released).add(held),
                Ending::Discard(r) => self.dir(Side::Inside).drop_count(r).add(held),
            }
        }
    }

    /// The hold slot's timer ran out: the server's record never came.
    pub(in crate::engine) fn l4_hold_expired(&mut self, slot: u32, now: u64) {
        self.finish_l4_slot(slot, false, DropReason::L4Pending, now);
    }
}
