//! Our PU is the server. A SYN without identity from inside a peer's
//! networks (the option stripped on the path, or no room for it) starts
//! layer 4: the SYN and the SYN-ACK pass bare, and the first bytes of the
//! client's stream must be its gateway's record. Verified, it is judged by
//! our PU's incoming rules; allowed, our record goes back to the client's
//! gateway (a segment we make) and the client's ACK it rode on goes on to
//! our PU. A first segment that is not a record means the client's gateway
//! does not speak layer 4 (no key, or turned off): the external-network
//! rules decide, as they would have at the SYN.

use super::segment::{self, Made, Seg};
use super::{Engine, L4Flow, L4Seg, SHIFT};
use crate::buf::PacketBuf;
use crate::engine::context::Ctx;
use crate::engine::reasons::{drop_of_reason, note_of_allow};
use crate::engine::reply_limit::Trust;
use crate::engine::rst::RstSpec;
use crate::engine::Action;
use crate::identity::l4::{context, is_split_record, looks_like_record, make_record, Binding};
use crate::identity::mac::Flow;
use crate::identity::PeerId;
use crate::policy::{Decision, Direction, Remote};
use crate::stats::{DropReason, Note};
use crate::wire::ip_proto;
use crate::Side;

impl Engine {
    /// A SYN to our PU without identity: `Some` if layer 4 takes it (on,
    /// the client's address in a peer's networks and a managed network).
    pub(in crate::engine) fn l4_start_server<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &B) -> Option<Action> {
        if !Self::l4_enabled(c) || !c.pu.managed_tcp || c.cfg.policy.peer_for(c.key.outside_ip()).is_none() {
            return None;
        }
        Some(match self.upsert_syn(c, buf.len() as u32, None, None) {
            Ok(_) => {
                if let Some(e) = self.table.lookup(&c.key, c.now) {
                    if !e.is_l4() {
                        e.set_l4(Note::L4FromPeer as u8);
                    }
                }
                Action::Forward
            }
            Err(r) => self.drop(c.side, r),
        })
    }

    /// The reason of a refused SYN (or first segment) without identity: from
    /// inside a peer's networks, the implicit reject says identity was lost.
    pub(in crate::engine) fn reason_without_identity(c: &Ctx<'_>, d: &Decision) -> DropReason {
        let r = drop_of_reason(d.reason);
        if r == DropReason::NoMatch && c.cfg.policy.peer_for(c.key.outside_ip()).is_some() {
            DropReason::NoIdentityFromPeer
        } else {
            r
        }
    }

    /// A segment of the client while the exchange is pending.
    pub(super) fn l4_server_from_client<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, s: L4Seg<'_>) -> Action {
        let L4Seg { seg, f } = s;
        let at = super::seq_diff(c.info.seq, f.isn_c.wrapping_add(1));
        if at != 0 || is_split_record(seg.payload(buf.data())) {
            return self.l4_record_not_whole(c, at, f);
        }
        if !looks_like_record(seg.payload(buf.data())) {
            return self.l4_server_without_record(c, buf, f);
        }
        let v = match self.l4_verify(c, buf.data(), s) {
            Ok(v) => v,
            Err(a) => return a,
        };
        let p = &c.cfg.policy;
        let d = p.decide(c.pu.id, Direction::Incoming, Remote::Identity(v.identity), ip_proto::TCP, c.key.inside_port);
        let key_bytes = v.key_id.answer_bytes();
        let Some(e) = self.table.lookup(&c.key, c.now) else { return self.drop(c.side, DropReason::OutOfState) };
        e.set_verdict(&d, Some(v.identity), c.gen);
        e.set_l4_done();
        e.set_syn_key(key_bytes);
        let mut rec = c.flow(Side::Outside).decision(&d, Some(v.identity));
        rec.note = Some(Note::L4FromPeer);
        if d.allowed() {
            self.note(c.side, note_of_allow(&d));
            self.emit(c.side, &rec);
            self.l4_send_server_record(c, buf.data(), f, (v.peer, key_bytes));
            let done = L4Flow { done: true, why: key_bytes, ..*f };
            return self.l4_strip_and_forward(c, buf, L4Seg { seg, f: &done });
        }
        self.l4_server_refuse(c, buf, rec, drop_of_reason(d.reason), f, Trust::Verified)
    }

    /// Resets to both ends of a refused client: back to the client (at the
    /// sequence number it acknowledged), onwards to our PU (at the client's
    /// first byte).
    fn l4_server_refuse<B: PacketBuf>(
        &mut self,
        c: &Ctx<'_>,
        buf: &mut B,
        rec: crate::events::FlowRecord,
        r: DropReason,
        f: &L4Flow,
        to: Trust,
    ) -> Action {
        let i = c.info;
        let back = RstSpec::to_sender(i);
        let onwards = RstSpec::onwards(i, f.isn_c.wrapping_add(1), None);
        self.l4_reset_both(c, buf, rec, r, (back, onwards), to)
    }

    /// The client's gateway sent no record: the external-network rules
    /// decide, the flow leaves layer 4 (nothing shifted).
    fn l4_server_without_record<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, f: &L4Flow) -> Action {
        self.note(c.side, Note::L4PeerWithoutRecord);
        let p = &c.cfg.policy;
        let remote = Remote::Address(c.key.outside_ip());
        let d = p.decide(c.pu.id, Direction::Incoming, remote, ip_proto::TCP, c.key.inside_port);
        let Some(e) = self.table.lookup(&c.key, c.now) else { return self.drop(c.side, DropReason::OutOfState) };
        e.clear_l4();
        e.set_verdict(&d, None, c.gen);
        let mut rec = c.flow(Side::Outside).decision(&d, None);
        rec.note = Some(Note::L4PeerWithoutRecord);
        if d.allowed() {
            e.account(c.side, buf.len() as u32);
            self.note(c.side, note_of_allow(&d));
            self.emit(c.side, &rec);
            return Action::Forward;
        }
        let r = Self::reason_without_identity(c, &d);
        self.l4_server_refuse(c, buf, rec, r, f, Trust::Unverified)
    }

    /// Makes our record (our PU's identity, signed with the key pair the
    /// client's record used) and queues it to the client's gateway, as the
    /// first bytes of our PU's stream, acknowledging the client's record.
    pub(super) fn l4_send_server_record(&mut self, c: &Ctx<'_>, frame: &[u8], f: &L4Flow, from: (PeerId, u16)) {
        let (peer, key_bytes) = from;
        let p = &c.cfg.policy;
        let keys = &c.cfg.keys;
        let Some(identity) = p.pu(c.pu.id).map(|x| x.identity) else { return };
        let Some(k) = keys.tx_key_answering(peer, key_bytes, c.now).or_else(|| keys.tx_key(peer, c.now)) else {
            self.note(c.side, Note::NoKeyForPeer);
            return;
        };
        let i = c.info;
        let flow = Flow { src: i.dst, dst: i.src, src_port: i.dst_port, dst_port: i.src_port, proto: ip_proto::TCP };
        let b = Binding { flow, own_isn: f.isn_s, peer_isn: f.isn_c, ctx: context::SERVER };
        let rec = make_record(k, identity, &b);
        let m = Made {
            src: i.dst,
            dst: i.src,
            sport: i.dst_port,
            dport: i.src_port,
            seq: f.isn_s.wrapping_add(1),
            ack: f.isn_c.wrapping_add(1).wrapping_add(SHIFT),
        };
        let l3 = usize::from(i.l3_offset);
        let mut out = [0u8; segment::MAX_MADE];
        let Some(n) = frame.get(..l3).and_then(|eth| segment::make(&mut out, eth, true, &m, &rec)) else { return };
        // A full outbox loses it: the client's gateway sends its record
        // again on the client's next segment, and we answer again.
        if self.udp.send(Side::Outside, &out[..n]) {
            self.note(c.side, Note::L4RecordSent);
        }
    }
}

/// The asymmetric path: our server's flow verified the client's option, but
/// our SYN-ACK's option may be stripped on the way back, and the client's
/// gateway then sends its record as the stream's first bytes.
impl Engine {
    /// Watches a flow our server accepted with the option (layer 4 on).
    pub(in crate::engine) fn l4_watch_option_flow(&mut self, c: &Ctx<'_>) {
        if !Self::l4_enabled(c) {
            return;
        }
        if let Some(e) = self.table.lookup_hashed(&c.key, c.h, c.now) {
            if !e.is_l4() {
                e.set_l4_watch(true);
            }
        }
    }

    /// A segment of a watched flow: the client gateway's record at the
    /// stream's start (its identity the one the option verified) turns the
    /// flow to layer 4, our record answering it; the first data either way
    /// ends the watch. Everything else takes the established path as it is.
    pub(super) fn l4_watching<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, f: &L4Flow) -> Action {
        let i = c.info;
        let t = *self.table.timeouts();
        if c.side == Side::Outside && i.seq == f.isn_c.wrapping_add(1) && i.payload_len > 0 {
            if let Some(seg) = Seg::of(buf.data(), i) {
                if is_split_record(seg.payload(buf.data())) {
                    return self.drop_told(c.side, c.flow(f.initiator), DropReason::L4RecordSplit, None);
                }
                if looks_like_record(seg.payload(buf.data())) {
                    let b =
                        Binding { flow: super::flow_of(c), own_isn: f.isn_c, peer_isn: f.isn_s, ctx: context::CLIENT };
                    let v = crate::identity::l4::verify_record(seg.payload(buf.data()), &b, &c.cfg.keys, c.now);
                    let e = self.table.lookup(&c.key, c.now);
                    if let (Ok(v), Some(e)) = (v, e) {
                        if e.remote_identity() == Some(v.identity) {
                            e.on_tcp(c.side, crate::flow::TcpFlags(i.tcp_flags), i.seq, c.now, &t);
                            e.set_l4(Note::L4FromPeer as u8);
                            e.set_l4_done();
                            let key_bytes = v.key_id.answer_bytes();
                            e.set_syn_key(key_bytes);
                            self.note(c.side, Note::L4RecordVerified);
                            self.l4_send_server_record(c, buf.data(), f, (v.peer, key_bytes));
                            let done = L4Flow { done: true, why: key_bytes, ..*f };
                            return self.l4_strip_and_forward(c, buf, L4Seg { seg: &seg, f: &done });
                        }
                    }
                }
            }
        }
        let data = i.payload_len > 0 || crate::flow::TcpFlags(i.tcp_flags).has(crate::flow::TcpFlags::FIN);
        if data {
            if let Some(e) = self.table.lookup(&c.key, c.now) {
                e.set_l4_watch(false);
            }
        }
        let p = crate::engine::established::Seen::parsed(i, buf.data(), buf.len() as u32);
        let h = self.table.hash(&c.key);
        match self.established(c.side, &c.key, h, &p, None, c.now) {
            Some(a) => a,
            None => self.drop(c.side, DropReason::OutOfState),
        }
    }
}
