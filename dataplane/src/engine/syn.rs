//! The TCP handshake's first packet. From the inside (our PU is the client):
//! the PU's identity is inserted towards the peer gateway that covers the
//! destination, and the verdict waits for the SYN-ACK; without a peer or a
//! key, the external-network rules decide at once. From the outside (our PU
//! is the server): the identity is verified, stripped and judged by the PU's
//! incoming rules; without one, by the external-network rules. A reject drops
//! the SYN and answers the client with a reset.

use super::context::Ctx;
use super::option_scan::{has_identity_option, second_identity_option};
use super::reasons::{drop_of_reason, drop_of_rewrite, drop_of_verify, note_of_allow};
use super::reply_limit::Trust;
use super::rst::RstSpec;
use super::sweep::retire;
use super::{Action, Engine};
use crate::buf::PacketBuf;
use crate::flow::{FlowState, NewFlow, TcpFlags, TcpStep};
use crate::identity::{insert_tcp, verify_and_strip_tcp, MacKey, RewriteError, TcpVersion, Verified, VerifyError};
use crate::policy::{Decision, Direction, Remote};
use crate::stats::{DropReason, Note};
use crate::wire::ip_proto;
use crate::Side;

/// A SYN judged, waiting to be let through or refused.
struct Judged {
    decision: Decision,
    remote_identity: Option<u32>,
    /// Why no identity was sent (told in the decision event).
    note: Option<Note>,
    /// What answering the verified option needs of its key id.
    syn_key: Option<u16>,
}

impl Engine {
    pub(super) fn syn<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B) -> Action {
        let has_opt = has_identity_option(buf.data(), c.info.tcp_opts_offset, c.info.tcp_opts_len);
        if let Err(a) = self.refuse_syn_replay(c, has_opt) {
            return a;
        }
        let judged = match c.side {
            Side::Inside => self.syn_from_pu(c, buf, has_opt),
            Side::Outside => self.syn_to_pu(c, buf, has_opt),
        };
        // By reference: moving the judgement (written field by field) into
        // a by-value argument reads it back in wider loads than it was
        // written with, and such loads wait for the stores to drain.
        match &judged {
            Ok(j) => self.syn_verdict(c, buf, j),
            Err(a) => *a,
        }
    }

    /// The flow's own SYN again once established, or the verified SYN of a
    /// connection that has left the table (the replay memory knows): a
    /// replay. A SYN against the flow's direction: out of state.
    fn refuse_syn_replay(&mut self, c: &Ctx<'_>, has_opt: bool) -> Result<(), Action> {
        let mut live = false;
        if let Some(e) = self.table.get_hashed(&c.key, c.h) {
            if e.initiator() != c.side {
                return Err(self.drop(c.side, DropReason::OutOfState));
            }
            live = e.syn_seq() == c.info.seq;
            let established = e.was_established()
                || matches!(e.state(), FlowState::Established | FlowState::Closing | FlowState::Closed);
            if has_opt && live && established {
                return Err(self.drop(c.side, DropReason::Replay));
            }
        }
        if has_opt && !live && c.side == Side::Outside && self.replay.seen(&c.key, c.info.seq, c.now) {
            return Err(self.drop_told(c.side, c.flow(c.side), DropReason::Replay, None));
        }
        Ok(())
    }

    /// Our PU is the client: sign the SYN towards the peer gateway covering
    /// the destination (decided at the SYN-ACK), or let the ACLs decide.
    fn syn_from_pu<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, has_opt: bool) -> Result<Judged, Action> {
        let p = &c.cfg.policy;
        if has_opt {
            return Err(self.drop(c.side, DropReason::IdentityAlreadyPresent));
        }
        let Some(pu_identity) = p.pu(c.pu.id).map(|x| x.identity) else {
            return Err(self.drop(c.side, DropReason::NoLocalPu));
        };
        let dst = c.key.outside_ip();
        let mut note = None;
        if c.pu.managed_tcp {
            match p.peer_for(dst) {
                Some(peer) => match c.cfg.keys.tx_key(peer, c.now) {
                    // A remembered stripping path: straight to layer 4.
                    Some(_) if self.l4_cached(c) => return Err(self.l4_start_client(c, buf, Note::L4Cached)),
                    Some(k) => return Err(self.sign_syn(c, buf, k, pu_identity)),
                    None => note = Some(Note::NoKeyForPeer),
                },
                None => note = Some(Note::NoPeerForDestination),
            }
        }
        if let Some(n) = note {
            self.note(c.side, n);
        }
        let decision =
            c.cfg.decide(c.pu.id, Direction::Outgoing, Remote::Address(dst), ip_proto::TCP, c.key.outside_port, c.now);
        Ok(Judged { decision, remote_identity: None, note, syn_key: None })
    }

    /// Inserts the PU's identity; the flow waits in `SynSent` for the
    /// SYN-ACK, when the peer's identity is known.
    fn sign_syn<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, k: &MacKey, pu_identity: u32) -> Action {
        if let Err(e) = insert_tcp(buf, c.info, k, pu_identity) {
            if e == RewriteError::NoRoom && Self::l4_enabled(c) {
                return self.l4_start_client(c, buf, Note::L4NoRoom);
            }
            return self.drop(c.side, drop_of_rewrite(e));
        }
        self.note(c.side, Note::IdentityInserted);
        let r = self.upsert_syn(c, buf.len() as u32, None, None).map(|_| ());
        self.forward_or_drop(c.side, r)
    }

    /// Our PU is the server: verify and strip the client's identity, judge it
    /// by the PU's incoming rules (its address, without one).
    fn syn_to_pu<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, has_opt: bool) -> Result<Judged, Action> {
        let p = &c.cfg.policy;
        let port = c.key.inside_port;
        Ok(match self.verify_handshake(c, buf, has_opt, c.side)? {
            Some(v) => Judged {
                decision: p.decide(c.pu.id, Direction::Incoming, Remote::Identity(v.identity), ip_proto::TCP, port),
                remote_identity: Some(v.identity),
                note: None,
                syn_key: Some(v.key_id.answer_bytes()),
            },
            None => {
                // From a peer's networks without identity: layer 4, if on.
                if let Some(a) = self.l4_start_server(c, buf) {
                    return Err(a);
                }
                Judged {
                    decision: p.decide(
                        c.pu.id,
                        Direction::Incoming,
                        Remote::Address(c.key.outside_ip()),
                        ip_proto::TCP,
                        port,
                    ),
                    remote_identity: None,
                    note: None,
                    syn_key: None,
                }
            }
        })
    }

    /// Verifies and strips the identity option of a handshake packet from a
    /// peer gateway. `Ok(Some)`: verified, the only one, and owned by the
    /// peer whose key signed it; `Ok(None)`: none. Otherwise the packet is
    /// dropped (with a drop event for an option that did not verify).
    /// `initiator` is the side that opened the flow.
    pub(super) fn verify_handshake<B: PacketBuf>(
        &mut self,
        c: &Ctx<'_>,
        buf: &mut B,
        has_opt: bool,
        initiator: Side,
    ) -> Result<Option<Verified>, Action> {
        match verify_and_strip_tcp(buf, c.info, &c.cfg.keys, c.now) {
            Ok(v) => {
                self.note(c.side, Note::IdentityVerified);
                if v.version == TcpVersion::Hmac {
                    self.note(c.side, Note::IdentityVerifiedV1);
                }
                if second_identity_option(buf.data(), c.info.tcp_opts_offset, c.info.tcp_opts_len) {
                    return Err(self.drop(c.side, DropReason::IdentityDuplicate));
                }
                self.refuse_unowned(c, c.flow(initiator), v.identity, v.key_id)?;
                Ok(Some(v))
            }
            // An option behind a malformed one: not verifiable, not to pass.
            Err(VerifyError::NoIdentity) if has_opt => Err(self.drop(c.side, DropReason::Malformed)),
            Err(VerifyError::NoIdentity) => Ok(None),
            Err(e) => Err(self.drop_told(c.side, c.flow(initiator), drop_of_verify(e), None)),
        }
    }

    /// Lets a judged SYN through (the flow made or restarted, a new
    /// connection told), or refuses it with a reset to the client.
    // The event and the reset are made only where they are used: a
    // retransmitted SYN, allowed, needs neither.
    fn syn_verdict<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B, j: &Judged) -> Action {
        let record = |drop: Option<DropReason>| {
            let mut rec = c.flow(c.side).decision(&j.decision, j.remote_identity);
            rec.note = j.note;
            rec.drop = drop;
            rec
        };
        if j.decision.allowed() {
            let decided = Some((&j.decision, j.remote_identity));
            return match self.upsert_syn(c, buf.len() as u32, decided, j.syn_key) {
                Ok(fresh) => {
                    if fresh {
                        self.count_decision(c.cfg, &j.decision);
                        self.note(c.side, note_of_allow(&j.decision));
                        self.emit(c.side, &record(None));
                    }
                    if c.side == Side::Outside && j.remote_identity.is_some() {
                        self.l4_watch_option_flow(c);
                    }
                    Action::Forward
                }
                Err(r) => self.drop(c.side, r),
            };
        }
        let r = match (c.side, j.remote_identity) {
            (Side::Outside, None) => Self::reason_without_identity(c, &j.decision),
            _ => drop_of_reason(j.decision.reason),
        };
        self.count_decision(c.cfg, &j.decision);
        self.emit(c.side, &record(Some(r)));
        self.table.remove_hashed(&c.key, c.h, c.now);
        // A local PU, or a peer that proved its identity: the generous
        // budget. A source that proved nothing may be forged.
        let proved = c.side == Side::Inside || j.remote_identity.is_some();
        let to = if proved { Trust::Verified } else { Trust::Unverified };
        // Of the SYN as it came (`c.info`: before an option was inserted or
        // stripped).
        self.reply_rst(c.side, buf, &RstSpec::answer_syn(c.info), r, to, c.now)
    }

    /// Creates or restarts the flow of a SYN of `len` bytes, with its verdict
    /// if it was decided. Returns whether it is a new connection (not a
    /// retransmission).
    pub(super) fn upsert_syn(
        &mut self,
        c: &Ctx<'_>,
        len: u32,
        decided: Option<(&Decision, Option<u32>)>,
        syn_key: Option<u16>,
    ) -> Result<bool, DropReason> {
        let (side, seq, now) = (c.side, c.info.seq, c.now);
        let t = *self.table.timeouts();
        let fresh;
        let e = match self.table.lookup_hashed(&c.key, c.h, now) {
            Some(e) => {
                if e.syn_seq() != seq {
                    // A new connection on the tuple replaces the old one.
                    retire(&mut self.replay, e, now);
                }
                fresh = e.on_tcp(side, TcpFlags(TcpFlags::SYN), seq, now, &t) != TcpStep::SynRetransmit;
                e.set_pu(c.pu.id);
                e
            }
            None => {
                fresh = true;
                let init = NewFlow { pu: c.pu.id, initiator: side, state: FlowState::SynSent, seq };
                self.table.insert_hashed(c.key, c.h, init, now).map_err(|_| DropReason::FlowTableFull)?
            }
        };
        if let Some((d, id)) = decided {
            e.set_verdict(d, id, c.gen);
        }
        if let Some(k) = syn_key {
            e.set_syn_key(k);
        }
        e.account(side, len);
        Ok(fresh)
    }
}
