//! Our PU is the server: a peer gateway's request is verified, judged by the
//! PU's incoming rules, and answered in place with a signed response or a
//! signed reject (the reject within the reset budget).

use super::frame::{build_handshake, HandshakeSpec, MAX_HANDSHAKE_FRAME};
use crate::buf::PacketBuf;
use crate::engine::context::Ctx;
use crate::engine::reasons::{drop_of_reason, drop_of_verify};
use crate::engine::reply_limit::Trust;
use crate::engine::{Action, Engine};
use crate::flow::{FlowState, NewFlow, UdpState};
use crate::identity::{verify_udp, MacKey, UdpIdentity, UdpMsg, VerifiedUdp};
use crate::policy::{Decision, Direction, Remote};
use crate::stats::{DropReason, Note};
use crate::wire::ip_proto;
use crate::Side;

impl Engine {
    /// A request from a peer gateway for our PU (the server): verify, judge
    /// by incoming rules, answer in place with a signed response or reject.
    pub(super) fn udp_request<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B) -> Action {
        let p = &c.cfg.policy;
        let v = match verify_udp(buf.data(), c.info, &c.cfg.keys, c.now) {
            Ok(v) => v,
            Err(e) => return self.drop_told(c.side, c.flow(c.side), drop_of_verify(e), None),
        };
        self.note(c.side, Note::IdentityVerified);
        if let Err(a) = self.refuse_unowned(c, c.flow(c.side), v.identity, v.key_id) {
            return a;
        }
        let (decision, fresh) = match self.request_decision(c, &v) {
            Ok(d) => d,
            Err(a) => return a,
        };
        let Some(pu_identity) = p.pu(c.pu.id).map(|x| x.identity) else {
            return self.drop(c.side, DropReason::NoLocalPu);
        };
        // Signed with the pair of keys the request used, the other way round
        // (as a SYN-ACK is: during a rotation the peer may not have our newest
        // key yet, or still sign towards our previous one); the newest valid
        // key if that one is gone.
        let keys = &c.cfg.keys;
        let tx = p.identity_peer(v.identity).and_then(|peer| {
            keys.tx_key_answering(peer, v.key_id.answer_bytes(), c.now).or_else(|| keys.tx_key(peer, c.now))
        });
        let Some(k) = tx else {
            self.note(c.side, Note::NoKeyForPeer);
            return self.drop(c.side, DropReason::IdentityUnknownKey);
        };
        if fresh {
            let init = NewFlow { pu: c.pu.id, initiator: c.side, state: FlowState::Udp(UdpState::Authorized), seq: 0 };
            match self.table.insert(c.key, init, c.now) {
                Ok(e) => e.set_verdict(&decision, Some(v.identity), c.gen),
                Err(_) => return self.drop(c.side, DropReason::FlowTableFull),
            }
            let rec = c.flow(c.side).decision(&decision, Some(v.identity));
            self.tell_decision(c.cfg, c.side, rec, &decision, drop_of_reason(decision.reason));
        } else {
            let t = *self.table.timeouts();
            if let Some(e) = self.table.lookup(&c.key, c.now) {
                e.on_udp(c.now, &t);
            }
        }
        self.answer_request(c, buf, &v, &decision, k, pu_identity)
    }

    /// The decision on a verified request, and whether it is new: a
    /// retransmitted request (our answer was lost) is answered the same way.
    fn request_decision(&mut self, c: &Ctx<'_>, v: &VerifiedUdp) -> Result<(Decision, bool), Action> {
        let existing = self
            .table
            .lookup(&c.key, c.now)
            .map(|e| (e.initiator(), e.remote_identity(), e.policy_generation(), e.verdict().unpack()));
        match existing {
            Some((Side::Inside, ..)) => Err(self.drop(c.side, DropReason::UdpUnexpectedHandshake)),
            Some((Side::Outside, Some(id), g, Some(d))) if id == v.identity && g == c.gen => Ok((d, false)),
            _ => {
                let remote = Remote::Identity(v.identity);
                let port = c.key.inside_port;
                Ok((c.cfg.policy.decide(c.pu.id, Direction::Incoming, remote, ip_proto::UDP, port), true))
            }
        }
    }

    /// Turns the request in `buf` into our signed answer: a response, or a
    /// reject (a drop each time it comes, answered like a reset: within the
    /// reset budget, as the request may be a replay with a forged source).
    fn answer_request<B: PacketBuf>(
        &mut self,
        c: &Ctx<'_>,
        buf: &mut B,
        v: &VerifiedUdp,
        decision: &Decision,
        k: &MacKey,
        pu_identity: u32,
    ) -> Action {
        let msg = if decision.allowed() { UdpMsg::Response } else { UdpMsg::Reject };
        let rejected = drop_of_reason(decision.reason);
        if msg == UdpMsg::Reject && !self.replies.allow(Trust::Verified, c.now) {
            self.note(c.side, Note::UdpRejectSuppressed);
            return self.drop(c.side, rejected);
        }
        let id = UdpIdentity { msg, identity: pu_identity, nonce: self.udp.nonce(), echo: v.nonce };
        // The answer goes back where the request came from: addresses, ports and MACs swapped.
        let i = c.info;
        let spec = HandshakeSpec { src: i.dst, dst: i.src, sport: i.dst_port, dport: i.src_port };
        let l3 = usize::from(i.l3_offset);
        let mut scratch = [0u8; MAX_HANDSHAKE_FRAME];
        let Some(n) = buf.data().get(..l3).and_then(|eth| build_handshake(&mut scratch, eth, true, &spec, k, &id))
        else {
            return self.drop(c.side, DropReason::Malformed);
        };
        if buf.replace(&scratch[..n]).is_err() {
            return self.drop(c.side, DropReason::IdentityBufferFull);
        }
        if decision.allowed() {
            self.note(c.side, Note::UdpResponseSent);
            Action::Answer
        } else {
            self.note(c.side, Note::UdpRejectSent);
            self.dir(c.side).drop_count(rejected).add(1);
            Action::Reply(rejected)
        }
    }
}
