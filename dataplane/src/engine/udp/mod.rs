//! The UDP identity handshake (`docs/udp-handshake.md`).
//!
//! A new UDP flow from a local PU to a managed UDP network with a known peer
//! is *pending*: its datagrams are held (by the worker, in the hold slot the
//! engine names), a handshake **request** (a separate datagram with the flow's
//! addresses and ports, an empty payload and the identity option, msg 1) goes
//! to the peer gateway, which verifies it, judges it against its PU's
//! incoming rules and answers with a signed **response** (msg 2) or a signed
//! **reject** (msg 3), both echoing the request's nonce. The response is
//! judged against the local PU's outgoing rules; held datagrams are then
//! released in order (or dropped). Requests are sent again on a backoff;
//! after the last try the external-network ACLs decide.
//!
//! The engine cannot own mbufs, so the held-packet store is the caller's:
//! [`Action::Hold`] tells it to keep the frame in slot `n`, and the
//! [`Effect`]s it collects (drain them with [`Engine::effects`] and
//! [`Engine::clear_effects`] after every [`Engine::process`] and
//! [`Engine::udp_timers`] call) say when to release or drop a slot and carry
//! the generated handshake frames.
//!
//! - `pending`: the pending pool, the hold bounds, the timers and the
//!   outbox, free of the engine.
//! - `frame`: the handshake frames, and the look at a datagram's option.
//! - `client`: our PU is the client: hold, request, answer, timers.
//! - `server`: our PU is the server: the peer's request verified, judged
//!   and answered in place.

mod client;
mod frame;
mod pending;
mod server;

pub use frame::{build_handshake, udp_option_msg, HandshakeSpec, MAX_HANDSHAKE_FRAME};
pub use pending::{Effect, UdpConfig, UdpHandshake, UdpHandshakeStats};
pub(in crate::engine) use pending::{Ending, PendingFlow};

use super::context::Ctx;
use super::{Action, Engine, EngineConfig};
use crate::buf::PacketBuf;
use crate::flow::{FlowState, UdpState};
use crate::identity::UdpMsg;
use crate::problem::ConfigProblem;
use crate::stats::DropReason;
use crate::Side;

impl Engine {
    /// Replaces the UDP handshake tuning (before the engine runs: the pending
    /// pool is allocated again). Every problem is returned, naming its field.
    pub fn set_udp_config(&mut self, cfg: UdpConfig) -> Result<(), Vec<ConfigProblem>> {
        let e = cfg.validate("", self.table.timeouts().udp_pending);
        if !e.is_empty() {
            return Err(e);
        }
        self.udp = self.udp.renewed(cfg);
        Ok(())
    }

    /// The UDP handshake's tuning and live counts.
    pub fn udp(&self) -> &UdpHandshake {
        &self.udp
    }

    pub fn udp_stats(&self) -> UdpHandshakeStats {
        self.udp.stats()
    }

    /// What to do besides each frame's action (see [`Effect`]).
    pub fn effects(&self) -> &[Effect] {
        self.udp.effects()
    }

    /// The bytes of a generated frame named by [`Effect::Send`].
    pub fn effect_frame(&self, frame: u16) -> &[u8] {
        self.udp.frame(frame)
    }

    /// Forgets the effects (call after handling them all).
    pub fn clear_effects(&mut self) {
        self.udp.clear_effects();
    }

    /// Retransmits and fallbacks that are due at `now`; call once per burst
    /// with the burst's configuration, then drain the effects. Bounded work:
    /// what does not fit the outbox waits for the next call.
    pub fn udp_timers(&mut self, cfg: &EngineConfig, now: u64) {
        self.run_udp_timers(cfg, now);
    }

    /// A UDP datagram (not a fragment) of a local PU: a handshake message,
    /// a datagram of a pending flow, the first of a flow to a managed UDP
    /// network, or one the ACLs decide.
    pub(in crate::engine) fn udp_datagram<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B) -> Action {
        let msg = udp_option_msg(buf.data(), c.info);
        match c.side {
            Side::Inside => {
                if msg.is_some() {
                    return self.drop(c.side, DropReason::IdentityAlreadyPresent);
                }
                match self.udp_flow(c) {
                    Some(UdpFlow::OurPending(slot)) => self.udp_hold(c, buf, slot),
                    None if c.pu.managed_udp => self.udp_start(c, buf),
                    _ => self.other(c),
                }
            }
            Side::Outside => match msg.and_then(UdpMsg::from_u8) {
                Some(UdpMsg::Request) => self.udp_request(c, buf),
                Some(UdpMsg::Response | UdpMsg::Reject) => self.udp_answer(c, buf),
                Some(UdpMsg::Data) => self.drop(c.side, DropReason::Replay),
                None if msg.is_some() => self.drop(c.side, DropReason::IdentityBadVersion),
                // The peer cannot have sent a datagram of a flow whose
                // handshake this gateway has not finished.
                None => match self.udp_flow(c) {
                    Some(UdpFlow::OurPending(_)) => self.drop(c.side, DropReason::UdpNotAuthorized),
                    _ => self.other(c),
                },
            },
        }
    }

    /// What the table knows of a datagram's flow.
    fn udp_flow(&mut self, c: &Ctx<'_>) -> Option<UdpFlow> {
        let e = self.table.lookup(&c.key, c.now)?;
        Some(match (e.state(), e.initiator()) {
            (FlowState::Udp(UdpState::Pending), Side::Inside) => UdpFlow::OurPending(e.syn_seq()),
            _ => UdpFlow::Other,
        })
    }
}

/// A UDP flow in the table.
enum UdpFlow {
    /// Our PU's flow, its handshake pending in this slot.
    OurPending(u32),
    /// Any other.
    Other,
}

#[cfg(test)]
mod tests;
