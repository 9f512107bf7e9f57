//! The established path: a packet of a flow whose verdict is cached. One
//! lookup, the flow's state step (TCP flags and sequence, or UDP and other
//! protocols' idle timer), the cached verdict, the flow's counters; no byte
//! of the packet changes. The fast path comes here from the look ahead, the
//! full parse from a frame the look ahead could not read, and the TCP and
//! other-protocol paths after re-deciding a flow of an older policy.

use super::option_scan::has_identity_option;
use super::reasons::drop_of_verdict;
use super::{Action, Engine, EngineConfig};
use crate::flow::{FlowEntry, FlowKey, TcpFlags, TcpStep, Timeouts};
use crate::policy::{PuId, Remote};
use crate::stats::DropReason;
use crate::wire::{FrameInfo, L4Kind};
use crate::Side;

/// What the established path reads of a packet, from the look ahead or from
/// the full parse.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    /// TCP (else UDP, or another protocol).
    pub tcp: bool,
    pub tcp_flags: u8,
    pub seq: u32,
    /// TCP carrying our identity option outside the handshake.
    pub replay: bool,
    /// Bytes accounted to the flow.
    pub len: u32,
}

impl Seen {
    /// From the full parse of `frame`, `len` bytes accounted.
    #[inline]
    pub fn parsed(info: &FrameInfo, frame: &[u8], len: u32) -> Seen {
        let tcp = info.l4 == L4Kind::Tcp;
        let replay = tcp && has_identity_option(frame, info.tcp_opts_offset, info.tcp_opts_len);
        Seen { tcp, tcp_flags: info.tcp_flags, seq: info.seq, replay, len }
    }

    /// A packet of a protocol without flow state (UDP, ICMP, …).
    pub fn stateless(len: u32) -> Seen {
        Seen { tcp: false, tcp_flags: 0, seq: 0, replay: false, len }
    }
}

impl Engine {
    /// The established path for the flow of `key` (hash `h`): `None` if the
    /// table has no such flow, or (with `current` = this policy's generation)
    /// one not decided under it.
    #[inline(always)]
    pub(super) fn established(
        &mut self,
        side: Side,
        key: &FlowKey,
        h: u64,
        p: &Seen,
        current: Option<u32>,
        now: u64,
    ) -> Option<Action> {
        let (e, t) = self.table.lookup_with_timeouts(key, h, now)?;
        if let Some(gen) = current {
            // Layer-4 flows are shifted on the full path (`super::l4`).
            if e.policy_generation() != gen || !e.verdict().is_decided() || e.l4_path() {
                return None;
            }
        }
        // One lookup: the entry found is the one updated.
        let r = step(e, side, p, now, t);
        Some(self.forward_or_drop(side, r))
    }
}

/// A packet's step on its flow, already looked up: forward (`Ok`) or drop
/// for the reason given.
#[inline(always)]
pub(super) fn step(e: &mut FlowEntry, side: Side, p: &Seen, now: u64, t: &Timeouts) -> Result<(), DropReason> {
    if !p.tcp {
        e.on_udp(now, t);
        if !e.verdict().allowed() {
            return Err(drop_of_verdict(e.verdict().unpack(), DropReason::NoMatch));
        }
        e.account(side, p.len);
        return Ok(());
    }
    if p.replay {
        return Err(DropReason::Replay);
    }
    if e.on_tcp_data(TcpFlags(p.tcp_flags), now, t) {
        if !e.verdict().allowed() {
            return Err(drop_of_verdict(e.verdict().unpack(), DropReason::OutOfState));
        }
        e.account(side, p.len);
        return Ok(());
    }
    match e.on_tcp(side, TcpFlags(p.tcp_flags), p.seq, now, t) {
        TcpStep::Rst => {
            e.account(side, p.len);
            Ok(())
        }
        TcpStep::OutOfState => Err(DropReason::OutOfState),
        _ => {
            if !e.verdict().allowed() {
                return Err(drop_of_verdict(e.verdict().unpack(), DropReason::OutOfState));
            }
            e.account(side, p.len);
            Ok(())
        }
    }
}

/// Decides a flow of an older policy snapshot again, with the remote
/// identity it was verified with (or its address).
pub(super) fn redecide(cfg: &EngineConfig, e: &mut FlowEntry, pu: PuId, now: u64) {
    let remote = match e.remote_identity() {
        Some(id) => Remote::Identity(id),
        None => Remote::Address(e.key().outside_ip()),
    };
    let d = cfg.decide(pu, e.direction(), remote, e.key().proto, server_port(e), now);
    let id = e.remote_identity();
    e.set_verdict(&d, id, cfg.generation());
}

/// The server's port of a flow (the destination port of its first packet).
fn server_port(e: &FlowEntry) -> u16 {
    match e.initiator() {
        Side::Inside => e.key().outside_port,
        Side::Outside => e.key().inside_port,
    }
}
