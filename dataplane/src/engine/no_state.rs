//! TCP without flow state: a segment (not a SYN) of no known flow, as after a
//! restart of the gateway mid-connection. The external-network rules decide,
//! the lower port taken as the server's; an allowed flow is made again as
//! established (or as after a SYN-ACK), a refused one is dropped
//! (`no_flow_state`).
//!
//! Except between our PU and a peer's networks with layer 4 on: such a
//! connection may have carried the layer-4 exchange, whose sequence shift
//! lived in the lost flow table, and re-creating it unshifted would corrupt
//! its stream silently (the peer gateway still shifts: 20 bytes skipped one
//! way, repeated the other). Its sender is reset instead
//! (`no_flow_state_from_peer`, a flow event), so the workloads see a clean
//! reset; the other end is reset by the same rule on its next segment.

use super::context::Ctx;
use super::option_scan::has_identity_option;
use super::reply_limit::Trust;
use super::rst::RstSpec;
use super::{Action, Engine};
use crate::buf::PacketBuf;
use crate::flow::{FlowState, NewFlow, TcpFlags};
use crate::policy::{Direction, Remote};
use crate::stats::{DropReason, Note};
use crate::wire::emit::{self, IpRepr, TcpSegment};
use crate::wire::ip_proto;
use crate::wire::{tcp, FrameInfo};
use crate::Side;

impl Engine {
    pub(super) fn no_state<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B) -> Action {
        // The option outside a handshake, with no flow to belong to.
        if has_identity_option(buf.data(), c.info.tcp_opts_offset, c.info.tcp_opts_len) {
            return self.drop(c.side, DropReason::Replay);
        }
        let key = &c.key;
        let flags = TcpFlags(c.info.tcp_flags);
        let pu_is_server = if flags.is_syn_ack() { c.side == Side::Inside } else { key.inside_port < key.outside_port };
        if Self::l4_enabled(c) && c.pu.managed_tcp && c.cfg.policy.peer_for(key.outside_ip()).is_some() {
            let initiator = if pu_is_server { Side::Outside } else { Side::Inside };
            return self.no_state_from_peer(c, buf, flags, initiator);
        }
        let (dir, port, initiator) = if pu_is_server {
            (Direction::Incoming, key.inside_port, Side::Outside)
        } else {
            (Direction::Outgoing, key.outside_port, Side::Inside)
        };
        let d = c.cfg.decide(c.pu.id, dir, Remote::Address(key.outside_ip()), ip_proto::TCP, port, c.now);
        let mut rec = c.flow(initiator).decision(&d, None);
        self.count_decision(c.cfg, &d);
        if !d.allowed() {
            rec.drop = Some(DropReason::NoFlowState);
            self.emit(c.side, &rec);
            return self.drop(c.side, DropReason::NoFlowState);
        }
        rec.note = Some(Note::NoFlowStateAllowed);
        self.note(c.side, Note::NoFlowStateAllowed);
        self.emit(c.side, &rec);
        if flags.has(TcpFlags::RST) {
            return Action::Forward;
        }
        let state = if flags.is_syn_ack() { FlowState::SynAckSeen } else { FlowState::Established };
        match self.table.insert(*key, NewFlow { pu: c.pu.id, initiator, state, seq: 0 }, c.now) {
            Ok(e) => {
                e.set_verdict(&d, None, c.gen);
                e.account(c.side, buf.len() as u32);
                Action::Forward
            }
            Err(_) => self.drop(c.side, DropReason::FlowTableFull),
        }
    }

    /// A segment without flow state between our PU and a peer's networks
    /// (layer 4 on): dropped, told, its sender reset, and the far end asked
    /// to speak (a reset is only dropped). The reset back carries the
    /// segment's acknowledgment as its sequence number (RFC 9293), exact in
    /// the sender's space (from the peer's side, its gateway still shifts
    /// it). The far end's next expected number is unknown here (data may be
    /// in flight, the flow may or may not have been shifted), and a reset
    /// that misses it is ignored; so onwards goes a bare ACK far outside its
    /// window, as if from the sender, which any TCP answers with an ACK of
    /// its next expected number (RFC 9293 3.10.7.4); that ACK meets this
    /// rule and is reset exactly. Without it a far end with nothing to send
    /// (a client waiting for data) would wait for its own timeout.
    fn no_state_from_peer<B: PacketBuf>(
        &mut self,
        c: &Ctx<'_>,
        buf: &mut B,
        flags: TcpFlags,
        initiator: Side,
    ) -> Action {
        let i = c.info;
        let r = DropReason::NoFlowStateFromPeer;
        // A reset is counted only: it ends the connection and needs no answer
        // (the far end's answer to our probe, when its TCP is gone, is one).
        if flags.has(TcpFlags::RST) {
            return self.drop(c.side, r);
        }
        self.emit(c.side, &c.flow(initiator).dropped(r, None));
        if !flags.has(TcpFlags::ACK) {
            return self.drop(c.side, r);
        }
        let l3 = usize::from(i.l3_offset);
        let eth = buf.data().get(..l3);
        self.extra_len = eth.and_then(|eth| probe_outside_the_window(&mut self.extra, eth, i)).unwrap_or(0);
        let to = if c.side == Side::Inside { Trust::Verified } else { Trust::Unverified };
        match self.reply_rst(c.side, buf, &RstSpec::to_sender(i), r, to, c.now) {
            Action::Reply(r) if self.extra_len > 0 => Action::ReplyAndReset(r),
            a => a,
        }
    }
}

/// How far behind the sender's sequence number the probe sits: a quarter
/// of the sequence space, outside any window (at most 2^30 with scaling).
const PROBE_BEHIND: u32 = 1 << 30;

/// Writes the onward probe into `out`: a bare ACK as if from the sender of
/// `i`, towards its destination, its sequence number a quarter of the space
/// behind the sender's. Its length, or `None`.
fn probe_outside_the_window(out: &mut [u8], eth: &[u8], i: &FrameInfo) -> Option<usize> {
    let ip = IpRepr::new(i.src, i.dst, ip_proto::TCP)?;
    let header = tcp::Repr {
        src_port: i.src_port,
        dst_port: i.dst_port,
        seq: i.seq.wrapping_sub(PROBE_BEHIND),
        ack: i.ack,
        flags: tcp::flags::ACK,
        window: 0,
        options_len: 0,
    };
    emit::tcp_frame(out, eth, false, ip, &TcpSegment { header, options: &[], payload: &[] })
}
