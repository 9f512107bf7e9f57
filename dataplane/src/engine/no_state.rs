//! TCP without flow state: a segment (not a SYN) of no known flow, as after a
//! restart of the gateway mid-connection. The external-network rules decide,
//! the lower port taken as the server's; an allowed flow is made again as
//! established (or as after a SYN-ACK), a refused one is dropped
//! (`no_flow_state`).

use super::context::Ctx;
use super::option_scan::has_identity_option;
use super::{Action, Engine};
use crate::buf::PacketBuf;
use crate::flow::{FlowState, NewFlow, TcpFlags};
use crate::policy::{Direction, Remote};
use crate::stats::{DropReason, Note};
use crate::wire::ip_proto;
use crate::Side;

impl Engine {
    pub(super) fn no_state<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &B) -> Action {
        // The option outside a handshake, with no flow to belong to.
        if has_identity_option(buf.data(), c.info.tcp_opts_offset, c.info.tcp_opts_len) {
            return self.drop(c.side, DropReason::Replay);
        }
        let key = &c.key;
        let flags = TcpFlags(c.info.tcp_flags);
        let pu_is_server = if flags.is_syn_ack() { c.side == Side::Inside } else { key.inside_port < key.outside_port };
        let (dir, port, initiator) = if pu_is_server {
            (Direction::Incoming, key.inside_port, Side::Outside)
        } else {
            (Direction::Outgoing, key.outside_port, Side::Inside)
        };
        let d = c.cfg.policy.decide(c.pu.id, dir, Remote::Address(key.outside_ip()), ip_proto::TCP, port);
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
}
