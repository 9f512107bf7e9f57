//! Our PU is the client: its first datagram to a managed UDP network is held
//! and a signed request goes to the peer gateway; later datagrams are held
//! too, within the bounds; the peer's verified answer (or the last timer,
//! when the ACLs decide) lets the held datagrams go or drops them.

use super::frame::{build_handshake, HandshakeSpec, MAX_HANDSHAKE_FRAME};
use super::pending::{Due, Ending, PendingFlow};
use crate::buf::PacketBuf;
use crate::engine::context::{Ctx, FlowRef};
use crate::engine::reasons::{drop_of_reason, drop_of_verify};
use crate::engine::{Action, Engine, EngineConfig};
use crate::flow::{FlowState, NewFlow, UdpState};
use crate::identity::{verify_udp, UdpIdentity, UdpMsg, VerifiedUdp};
use crate::policy::{Action as Verdict, Decision, Direction, Reason, Remote};
use crate::stats::{DropReason, Note};
use crate::wire::ip_proto;
use crate::Side;

impl Engine {
    /// The first datagram of a new flow to a managed network: hold it and
    /// send a request, or (no peer, no key) let the ACLs decide at once.
    pub(super) fn udp_start<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &B) -> Action {
        let p = &c.cfg.policy;
        let peer = p.peer_for(c.key.outside_ip());
        let txk = peer.and_then(|peer| c.cfg.keys.tx_key(peer, c.now));
        let (Some(k), Some(pu_identity)) = (txk, p.pu(c.pu.id).map(|x| x.identity)) else {
            let n = if peer.is_none() { Note::NoPeerForDestination } else { Note::NoKeyForPeer };
            self.note(c.side, n);
            return self.other(c);
        };
        if let Err(r) = self.udp.can_start() {
            return self.drop(c.side, r);
        }
        let Some(slot) = self.udp.take_slot() else { return self.drop(c.side, DropReason::UdpPendingFull) };
        let nonce = self.udp.nonce();
        let id = UdpIdentity { msg: UdpMsg::Request, identity: pu_identity, nonce, echo: [0; 8] };
        let i = c.info;
        let spec = HandshakeSpec { src: i.src, dst: i.dst, sport: i.src_port, dport: i.dst_port };
        let l3 = usize::from(i.l3_offset);
        let mut frame = [0u8; MAX_HANDSHAKE_FRAME];
        let built = buf.data().get(..l3).and_then(|eth| build_handshake(&mut frame, eth, false, &spec, k, &id));
        let Some(len) = built else {
            self.udp.give_back(slot);
            return self.drop(c.side, DropReason::Malformed);
        };
        let init = NewFlow { pu: c.pu.id, initiator: c.side, state: FlowState::Udp(UdpState::Pending), seq: slot };
        match self.table.insert(c.key, init, c.now) {
            Ok(e) => e.account(c.side, buf.len() as u32),
            Err(_) => {
                self.udp.give_back(slot);
                return self.drop(c.side, DropReason::FlowTableFull);
            }
        }
        self.udp.start(slot, PendingFlow { key: c.key, pu: c.pu.id, nonce }, &frame[..len], c.now);
        self.note(c.side, Note::UdpRequestSent);
        self.note(c.side, Note::UdpHeld);
        Action::Hold(slot)
    }

    /// One more datagram of a pending flow: held if both bounds allow.
    pub(super) fn udp_hold<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &B, slot: u32) -> Action {
        if let Err(r) = self.udp.hold(slot, &c.key) {
            return self.drop(c.side, r);
        }
        let t = *self.table.timeouts();
        if let Some(e) = self.table.lookup(&c.key, c.now) {
            e.on_udp(c.now, &t);
            e.account(c.side, buf.len() as u32);
        }
        self.note(c.side, Note::UdpHeld);
        Action::Hold(slot)
    }

    /// A response or reject from the peer gateway for a pending flow of ours.
    pub(super) fn udp_answer<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &B) -> Action {
        let flow = self.table.lookup(&c.key, c.now).map(|e| (e.state(), e.syn_seq(), e.initiator(), e.pu()));
        let (slot, pu) = match flow {
            Some((FlowState::Udp(UdpState::Pending), slot, Side::Inside, pu)) => {
                (slot, c.cfg.policy.pu_by_address(c.key.inside_ip()).unwrap_or(pu))
            }
            Some((FlowState::Udp(UdpState::Authorized), _, Side::Inside, _)) => {
                // A second answer (to a retransmitted request): consumed, if genuine.
                return match verify_udp(buf.data(), c.info, &c.cfg.keys, c.now) {
                    Ok(_) => {
                        self.note(c.side, Note::UdpDuplicateAnswer);
                        Action::Consume
                    }
                    Err(e) => self.drop(c.side, drop_of_verify(e)),
                };
            }
            _ => return self.drop(c.side, DropReason::UdpUnexpectedHandshake),
        };
        let Some(pending) = self.udp.pending_flow(slot, &c.key) else {
            return self.drop(c.side, DropReason::OutOfState);
        };
        let flow = FlowRef { pu, ..c.flow(Side::Inside) };
        match self.verify_answer(c, buf, flow, &pending) {
            Ok(v) => self.conclude_answer(c, flow, slot, &v),
            Err(a) => a,
        }
    }

    /// A forged or replayed answer never ends the handshake: the flow stays
    /// pending. `Ok`: verified, the answer to our request, and from an
    /// identity its sender owns.
    fn verify_answer<B: PacketBuf>(
        &mut self,
        c: &Ctx<'_>,
        buf: &B,
        flow: FlowRef,
        pending: &PendingFlow,
    ) -> Result<VerifiedUdp, Action> {
        let v = match verify_udp(buf.data(), c.info, &c.cfg.keys, c.now) {
            Ok(v) => v,
            Err(e) => return Err(self.drop_told(c.side, flow, drop_of_verify(e), None)),
        };
        if v.echo != pending.nonce {
            return Err(self.drop(c.side, DropReason::UdpUnexpectedHandshake));
        }
        self.note(c.side, Note::IdentityVerified);
        self.refuse_unowned(c, flow, v.identity, v.key_id)?;
        Ok(v)
    }

    /// The verified answer decides: the peer's reject, or our PU's outgoing
    /// rules on the peer's identity. The flow is authorized with that verdict
    /// and the held datagrams go or are dropped by it.
    fn conclude_answer(&mut self, c: &Ctx<'_>, flow: FlowRef, slot: u32, v: &VerifiedUdp) -> Action {
        let (decision, rejected) = if v.msg == UdpMsg::Reject {
            (peer_reject(), DropReason::UdpRejectedByPeer)
        } else {
            let remote = Remote::Identity(v.identity);
            let d = c.cfg.policy.decide(flow.pu, Direction::Outgoing, remote, ip_proto::UDP, c.key.outside_port);
            (d, drop_of_reason(d.reason))
        };
        let t = *self.table.timeouts();
        if let Some(e) = self.table.lookup(&c.key, c.now) {
            e.set_pu(flow.pu);
            e.set_verdict(&decision, Some(v.identity), c.gen);
            e.set_udp_state(UdpState::Authorized, c.now, &t);
        }
        self.udp.count_answered();
        self.note(c.side, Note::UdpHandshakeDone);
        self.tell_decision(c.cfg, c.side, flow.decision(&decision, Some(v.identity)), &decision, rejected);
        self.finish_slot(slot, decision.allowed(), rejected, c.now);
        Action::Consume
    }

    /// Retransmits and fallbacks due at `now` (see [`Engine::udp_timers`]).
    pub(super) fn run_udp_timers(&mut self, cfg: &EngineConfig, now: u64) {
        while let Some(due) = self.udp.next_due(now) {
            match due {
                Due::Retransmitted { sent: true, proto: ip_proto::TCP } => {
                    self.note(Side::Inside, Note::L4RecordSent);
                    self.note(Side::Inside, Note::L4RecordResent);
                }
                Due::Retransmitted { sent: true, .. } => self.note(Side::Inside, Note::UdpRequestRetransmit),
                Due::Retransmitted { sent: false, .. } => {}
                // A layer-4 TCP flow's held segments (`super::super::l4`).
                Due::Expired { slot, flow } if flow.key.proto == ip_proto::TCP => self.l4_hold_expired(slot, now),
                Due::Expired { slot, flow } => self.udp_fallback(cfg, slot, &flow, now),
            }
        }
    }

    /// The last wait ran out: the outgoing rules against external networks
    /// decide; held datagrams go or are dropped by that verdict.
    fn udp_fallback(&mut self, cfg: &EngineConfig, slot: u32, pending: &PendingFlow, now: u64) {
        self.udp.count_timed_out();
        self.note(Side::Inside, Note::UdpHandshakeTimeout);
        let key = pending.key;
        let gen = cfg.generation();
        let pu = cfg.policy.pu_by_address(key.inside_ip()).unwrap_or(pending.pu);
        let t = *self.table.timeouts();
        let Some(e) = self.table.lookup(&key, now) else {
            // The flow was evicted (table full) while pending.
            self.finish_slot(slot, false, DropReason::FlowTableFull, now);
            return;
        };
        if e.state() != FlowState::Udp(UdpState::Pending) || e.syn_seq() != slot {
            self.finish_slot(slot, false, DropReason::FlowTableFull, now);
            return;
        }
        let d = cfg.decide(
            pu,
            Direction::Outgoing,
            Remote::Address(key.outside_ip()),
            ip_proto::UDP,
            key.outside_port,
            now,
        );
        e.set_pu(pu);
        e.set_verdict(&d, None, gen);
        e.set_udp_state(UdpState::Authorized, now, &t);
        let flow = FlowRef { key, initiator: Side::Inside, pu, gen, now };
        let mut rec = flow.decision(&d, None);
        rec.note = Some(Note::UdpHandshakeTimeout);
        let rejected = drop_of_reason(d.reason);
        self.tell_decision(cfg, Side::Inside, rec, &d, rejected);
        self.finish_slot(slot, d.allowed(), rejected, now);
    }

    /// Releases or discards a slot's held datagrams (counted, as from the
    /// inside: released, or dropped for `reason`) and frees it.
    fn finish_slot(&mut self, slot: u32, release: bool, reason: DropReason, now: u64) {
        let ending = if release { Ending::Release } else { Ending::Discard(reason) };
        let held = u64::from(self.udp.finish(slot, ending, now));
        if held > 0 {
            match ending {
                Ending::Release => self.dir(Side::Inside).note_count(Note::UdpReleased).add(held),
                Ending::Discard(r) => self.dir(Side::Inside).drop_count(r).add(held),
            }
        }
    }
}

/// A reject decision for a flow the peer gateway refused.
fn peer_reject() -> Decision {
    Decision { action: Verdict::Reject, rule: None, external: None, observed: None, reason: Reason::PolicyReject }
}
