//! The TCP handshake's answer. From the inside (our PU is the server): the
//! PU's identity is inserted towards the peer that owns the client's verified
//! identity, signed with the pair of keys the SYN used. From the outside (our
//! PU is the client): the server's identity is verified, stripped and judged
//! by the PU's outgoing rules (or the ACLs' verdict from the SYN stands); a
//! reject drops it and resets both ends.

use super::context::Ctx;
use super::option_scan::has_identity_option;
use super::reasons::{drop_of_reason, drop_of_rewrite, note_of_allow};
use super::reply_limit::Trust;
use super::rst::{self, RstSpec};
use super::{Action, Engine};
use crate::buf::PacketBuf;
use crate::events::FlowRecord;
use crate::flow::{TcpFlags, TcpStep};
use crate::identity::insert_tcp;
use crate::policy::{Decision, Direction, Remote};
use crate::stats::{DropReason, Note};
use crate::wire::ip_proto;
use crate::Side;

/// What the SYN left in the flow.
#[derive(Clone, Copy)]
struct FromSyn {
    /// The verdict, if the SYN was decided (by the ACLs, or at our server).
    cached: Option<Decision>,
    /// The client's identity, verified at our server.
    identity: Option<u32>,
    /// The key id bytes the SYN's identity was signed with.
    syn_key: u16,
    /// The first SYN-ACK of the flow (not a retransmission).
    first: bool,
}

impl Engine {
    pub(super) fn syn_ack<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B) -> Action {
        let has_opt = has_identity_option(buf.data(), c.info.tcp_opts_offset, c.info.tcp_opts_len);
        let len = buf.len() as u32;
        let t = *self.table.timeouts();
        let Some(e) = self.table.lookup_hashed(&c.key, c.h, c.now) else {
            return self.drop(c.side, DropReason::OutOfState);
        };
        let step = e.on_tcp(c.side, TcpFlags(c.info.tcp_flags), c.info.seq, c.now, &t);
        if !matches!(step, TcpStep::SynAck | TcpStep::SynAckRetransmit) {
            return self.drop(c.side, DropReason::OutOfState);
        }
        let syn = FromSyn {
            cached: e.verdict().unpack(),
            identity: e.remote_identity(),
            syn_key: e.syn_key(),
            first: step == TcpStep::SynAck,
        };
        let l4 = e.is_l4();
        match c.side {
            Side::Inside => {
                if l4 {
                    // Layer 4 (no identity came with the SYN): bare, so that
                    // the client's gateway takes layer 4 too.
                    e.account(c.side, len);
                    return Action::Forward;
                }
                if has_opt {
                    return self.drop(c.side, DropReason::IdentityAlreadyPresent);
                }
                match syn.cached {
                    Some(d) if d.allowed() => {}
                    Some(d) => return self.drop(c.side, drop_of_reason(d.reason)),
                    None => return self.drop(c.side, DropReason::OutOfState),
                }
                e.account(c.side, len);
                self.sign_syn_ack(c, buf, &syn)
            }
            Side::Outside => {
                if syn.first {
                    // our PU is the client: its SYN created the flow
                    self.stats.handshake_ns.record(c.now.saturating_sub(e.created()));
                }
                let signed = syn.cached.is_none() && syn.identity.is_none();
                if let Some(a) = self.l4_syn_ack(c, len, has_opt, l4, signed) {
                    return a;
                }
                self.judge_syn_ack(c, buf, has_opt, len, &syn)
            }
        }
    }

    /// Our PU is the server: its identity towards the client's gateway.
    fn sign_syn_ack<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, syn: &FromSyn) -> Action {
        let p = &c.cfg.policy;
        let Some(id) = syn.identity else { return Action::Forward };
        let Some(pu_identity) = p.pu(c.pu.id).map(|x| x.identity) else {
            return self.drop(c.side, DropReason::NoLocalPu);
        };
        // Signed with the pair of keys the SYN used, the other way round
        // (during a rotation the peer may not yet have our newest key, or
        // may still sign towards our previous one); the newest valid key
        // if that one is gone.
        let keys = &c.cfg.keys;
        let tx = p
            .identity_peer(id)
            .and_then(|peer| keys.tx_key_answering(peer, syn.syn_key, c.now).or_else(|| keys.tx_key(peer, c.now)));
        let Some(k) = tx else {
            self.note(c.side, Note::NoKeyForPeer);
            return Action::Forward;
        };
        match insert_tcp(buf, c.info, k, pu_identity) {
            Ok(()) => {
                self.note(c.side, Note::IdentityInserted);
                Action::Forward
            }
            Err(e) => self.drop(c.side, drop_of_rewrite(e)),
        }
    }

    /// Our PU is the client: verify the server's identity, judge it.
    fn judge_syn_ack<B: PacketBuf>(
        &mut self,
        c: &Ctx<'_>,
        buf: &mut B,
        has_opt: bool,
        len: u32,
        syn: &FromSyn,
    ) -> Action {
        let p = &c.cfg.policy;
        let port = c.key.outside_port;
        let (decision, remote_identity) = match self.verify_handshake(c, buf, has_opt, Side::Inside) {
            Err(a) => return a,
            Ok(Some(v)) => {
                if syn.identity.is_some_and(|f| f != v.identity) {
                    return self.drop(c.side, DropReason::IdentityBadMac);
                }
                let d = p.decide(c.pu.id, Direction::Outgoing, Remote::Identity(v.identity), ip_proto::TCP, port);
                (d, Some(v.identity))
            }
            // verified before: a retransmission must carry it again
            Ok(None) if syn.identity.is_some() => return self.drop(c.side, DropReason::NoIdentity),
            Ok(None) => match syn.cached {
                Some(d) => (d, None),
                None => {
                    let remote = Remote::Address(c.key.outside_ip());
                    (c.cfg.decide(c.pu.id, Direction::Outgoing, remote, ip_proto::TCP, port, c.now), None)
                }
            },
        };
        let fresh = syn.cached.is_none() || syn.first && syn.cached != Some(decision);
        let Some(e) = self.table.lookup_hashed(&c.key, c.h, c.now) else {
            return self.drop(c.side, DropReason::OutOfState);
        };
        e.set_verdict(&decision, remote_identity, c.gen);
        let rec = c.flow(Side::Inside).decision(&decision, remote_identity);
        if decision.allowed() {
            e.account(c.side, len);
            if fresh {
                self.count_decision(c.cfg, &decision);
                self.note(c.side, note_of_allow(&decision));
                self.emit(c.side, &rec);
            }
            return Action::Forward;
        }
        let to = if remote_identity.is_some() { Trust::Verified } else { Trust::Unverified };
        self.count_decision(c.cfg, &decision);
        self.reset_both_ends(c, buf, rec, drop_of_reason(decision.reason), to)
    }

    /// A refused SYN-ACK: the flow removed, and resets to both ends (the
    /// server, back where the SYN-ACK came from, in its buffer; the client,
    /// onwards as if from the server, in [`Engine::extra_frame`]).
    fn reset_both_ends<B: PacketBuf>(
        &mut self,
        c: &Ctx<'_>,
        buf: &mut B,
        mut rec: FlowRecord,
        r: DropReason,
        to: Trust,
    ) -> Action {
        rec.drop = Some(r);
        self.emit(c.side, &rec);
        self.table.remove_hashed(&c.key, c.h, c.now);
        let to_client = RstSpec::synack_to_client(c.info);
        let l3 = usize::from(c.info.l3_offset);
        self.extra_len =
            buf.data().get(..l3).and_then(|eth| rst::write(&mut self.extra, eth, false, &to_client)).unwrap_or(0);
        let to_server = RstSpec::synack_to_server(c.info);
        match self.reply_rst(c.side, buf, &to_server, r, to, c.now) {
            Action::Reply(r) if self.extra_len > 0 => Action::ReplyAndReset(r),
            a => a,
        }
    }
}
