//! Our PU is the client. Layer 4 starts at the SYN (no room for the option,
//! or a destination in the cache of stripping paths) or at the SYN-ACK (our
//! SYN carried the option, the answer came without: the path strips, and is
//! remembered). While the exchange is pending, every segment of our PU
//! becomes the carrier of our record (its data dropped, for its TCP to
//! retransmit); the server's record is verified and judged by our PU's
//! outgoing rules; a segment of the server before its record is dropped and
//! answered by our record again (the server's gateway then repeats its own).

use super::segment::{self, Made};
use super::{flow_of, note_of, Engine, L4Flow, L4Seg, Learned};
use crate::buf::PacketBuf;
use crate::engine::context::Ctx;
use crate::engine::reasons::{drop_of_reason, note_of_allow};
use crate::engine::reply_limit::Trust;
use crate::engine::rst::RstSpec;
use crate::engine::Action;
use crate::flow::key::addr128;
use crate::flow::TcpFlags;
use crate::identity::l4::{context, is_split_record, looks_like_record, make_record, Binding, RECORD_LEN};
use crate::policy::{Direction, Remote};
use crate::stats::{DropReason, Note};
use crate::wire::{ip_proto, tcp::flags};
use crate::Side;

impl Engine {
    /// Whether a SYN of our PU to `c`'s destination goes to layer 4 at once
    /// (the destination is a remembered stripping path).
    pub(in crate::engine) fn l4_cached(&mut self, c: &Ctx<'_>) -> bool {
        if !Self::l4_enabled(c) || c.cfg.policy.layer4().cache_ns == 0 {
            return false;
        }
        self.l4_cache.hit(addr128(c.key.outside_ip()), c.now)
    }

    /// Our PU's SYN, sent without the option: the flow waits in layer-4
    /// mode for the SYN-ACK and the exchange.
    pub(in crate::engine) fn l4_start_client<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &B, why: Note) -> Action {
        self.note(c.side, why);
        match self.upsert_syn(c, buf.len() as u32, None, None) {
            Ok(_) => {
                if let Some(e) = self.table.lookup(&c.key, c.now) {
                    if !e.is_l4() {
                        e.set_l4(why as u8);
                    }
                }
                Action::Forward
            }
            Err(r) => self.drop(c.side, r),
        }
    }

    /// The SYN-ACK to our PU, before the option path judges it: `Some` if
    /// layer 4 takes it. `l4`: the flow is in layer-4 mode already; `signed`:
    /// our SYN carried the option (nothing was decided at the SYN).
    pub(in crate::engine) fn l4_syn_ack(
        &mut self,
        c: &Ctx<'_>,
        len: u32,
        has_opt: bool,
        l4: bool,
        signed: bool,
    ) -> Option<Action> {
        let e = self.table.lookup(&c.key, c.now)?;
        if l4 {
            if has_opt {
                // The server's gateway sent the option after all: the option path.
                e.clear_l4();
                return None;
            }
            e.account(c.side, len);
            return Some(Action::Forward);
        }
        if has_opt || !signed || !Self::l4_enabled(c) {
            return None;
        }
        // Our option went out and none came back from a peer's network.
        e.set_l4(Note::L4Stripped as u8);
        e.account(c.side, len);
        self.note(c.side, Note::L4Stripped);
        let life = c.cfg.policy.layer4().cache_ns;
        match self.l4_cache.learn(addr128(c.key.outside_ip()), c.now, life) {
            Some(Learned::Stored) => self.note(c.side, Note::L4CacheLearned),
            Some(Learned::Evicted) => {
                self.note(c.side, Note::L4CacheLearned);
                self.note(c.side, Note::L4CacheEvicted);
            }
            None => {}
        }
        Some(Action::Forward)
    }

    /// Our record, signed for this connection. `None`: no key towards the
    /// peer covering the destination, or our PU is gone.
    fn l4_client_record(&self, c: &Ctx<'_>, b: &Binding) -> Option<[u8; RECORD_LEN]> {
        let p = &c.cfg.policy;
        let identity = p.pu(c.pu.id)?.identity;
        let peer = p.peer_for(c.key.outside_ip())?;
        let k = c.cfg.keys.tx_key(peer, c.now)?;
        Some(make_record(k, identity, b))
    }

    /// A segment of our PU while the exchange is pending: it becomes the
    /// carrier of our record at the start of the stream.
    pub(super) fn l4_client_carrier<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, s: L4Seg<'_>) -> Action {
        let L4Seg { seg, f } = s;
        let b = Binding { flow: flow_of(c), own_isn: f.isn_c, peer_isn: f.isn_s, ctx: context::CLIENT };
        let Some(rec) = self.l4_client_record(c, &b) else {
            self.note(c.side, Note::NoKeyForPeer);
            return self.drop(c.side, DropReason::L4Pending);
        };
        let had_data = c.info.payload_len > 0 || TcpFlags(c.info.tcp_flags).has(TcpFlags::FIN);
        if had_data {
            if let Some(a) = self.l4_client_hold(c, buf, s, &rec) {
                return a;
            }
        }
        let frame = buf.data_mut();
        // Nothing of the server acknowledged but its SYN: its record is not
        // verified yet.
        let isn_s = f.isn_s;
        segment::shift(frame, seg, f.isn_c.wrapping_add(1), |_| isn_s.wrapping_add(1));
        // The client's own flags but FIN (its data is dropped, so is its
        // FIN: both come again); a pure ACK stays one once the record is
        // removed, byte for byte.
        let f0 = c.info.tcp_flags & !(flags::FIN | flags::URG);
        segment::set_flags(frame, seg, f0 | flags::ACK);
        if !segment::set_payload(buf, seg, &rec) {
            return self.drop(c.side, DropReason::IdentityBufferFull);
        }
        if had_data {
            self.note(c.side, Note::L4DataReplaced);
        }
        self.note(c.side, Note::L4RecordSent);
        if let Some(e) = self.table.lookup(&c.key, c.now) {
            e.account(c.side, buf.len() as u32);
        }
        Action::Forward
    }

    /// A segment of the server while the exchange is pending: its record
    /// (verified, judged), or anything else (dropped, our record sent back).
    pub(super) fn l4_client_from_server<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, s: L4Seg<'_>) -> Action {
        let L4Seg { seg, f } = s;
        let at = super::seq_diff(c.info.seq, f.isn_s.wrapping_add(1));
        let in_record = (0..super::SHIFT as i32).contains(&at);
        if in_record && c.info.payload_len > 0 && (at > 0 || is_split_record(seg.payload(buf.data()))) {
            return self.l4_record_not_whole(c, at, f);
        }
        let first = at == 0;
        if first && looks_like_record(seg.payload(buf.data())) {
            return self.l4_client_judge(c, buf, s);
        }
        // The server's record was lost (or this came first): ours again,
        // back to the server's gateway, which answers with its record again.
        let b = Binding {
            flow: crate::identity::mac::Flow {
                src: c.info.dst,
                dst: c.info.src,
                src_port: c.info.dst_port,
                dst_port: c.info.src_port,
                proto: ip_proto::TCP,
            },
            own_isn: f.isn_c,
            peer_isn: f.isn_s,
            ctx: context::CLIENT,
        };
        let Some(rec) = self.l4_client_record(c, &b) else {
            return self.drop(c.side, DropReason::L4Pending);
        };
        let m = Made {
            src: c.info.dst,
            dst: c.info.src,
            sport: c.info.dst_port,
            dport: c.info.src_port,
            seq: f.isn_c.wrapping_add(1),
            ack: f.isn_s.wrapping_add(1),
        };
        self.dir(c.side).drop_count(DropReason::L4Pending).add(1);
        if !segment::make_in_place(buf, c.info, true, &m, &rec) {
            return Action::Drop(DropReason::L4Pending);
        }
        self.note(c.side, Note::L4RecordSent);
        Action::Reply(DropReason::L4Pending)
    }

    /// The server's record: verified, judged by our PU's outgoing rules; the
    /// flow decided (mode layer 4), or refused with resets to both ends.
    fn l4_client_judge<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, s: L4Seg<'_>) -> Action {
        let L4Seg { seg, f } = s;
        let v = match self.l4_verify(c, buf.data(), s) {
            Ok(v) => v,
            Err(a) => return a,
        };
        let p = &c.cfg.policy;
        let d = p.decide(c.pu.id, Direction::Outgoing, Remote::Identity(v.identity), ip_proto::TCP, c.key.outside_port);
        let Some(e) = self.table.lookup(&c.key, c.now) else { return self.drop(c.side, DropReason::OutOfState) };
        let held = e.l4_hold_slot();
        e.set_verdict(&d, Some(v.identity), c.gen);
        e.set_l4_done();
        let mut rec = c.flow(Side::Inside).decision(&d, Some(v.identity));
        rec.note = note_of(f.why);
        self.l4_finish_hold(c, held, d.allowed(), drop_of_reason(d.reason));
        if d.allowed() {
            self.note(c.side, note_of_allow(&d));
            self.emit(c.side, &rec);
            let done = L4Flow { done: true, ..*f };
            return self.l4_strip_and_forward(c, buf, L4Seg { seg, f: &done });
        }
        let i = c.info;
        let back = RstSpec::to_sender(i);
        let onwards = RstSpec::onwards(i, f.isn_s.wrapping_add(1), Some(f.isn_c.wrapping_add(1)));
        self.l4_reset_both(c, buf, rec, drop_of_reason(d.reason), (back, onwards), Trust::Verified)
    }
}
