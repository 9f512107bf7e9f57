//! UDP without an identity handshake, ICMP and every other IP protocol of a
//! local PU: the ACLs decide the first packet (outgoing from the inside,
//! incoming from the outside), and the flow caches the verdict, a reject
//! included, for both ways.

use super::context::Ctx;
use super::established::{redecide, step, Seen};
use super::reasons::drop_of_reason;
use super::{Action, Engine};
use crate::flow::{FlowState, NewFlow, UdpState};
use crate::policy::{Direction, Remote};
use crate::stats::{DropReason, Note};
use crate::Side;

impl Engine {
    pub(in crate::engine) fn other(&mut self, c: &Ctx<'_>) -> Action {
        // The IP datagram, without the frame's padding.
        let len = u32::from(c.info.ip_end);
        let h = self.table.hash(&c.key);
        if let Some((e, t)) = self.table.lookup_with_timeouts(&c.key, h, c.now) {
            e.set_pu(c.pu.id);
            let redo = e.policy_generation() != c.gen;
            if redo {
                redecide(c.cfg, e, c.pu.id);
            }
            let r = step(e, c.side, &Seen::stateless(len), c.now, t);
            if redo {
                self.note(c.side, Note::Redecided);
            }
            return self.forward_or_drop(c.side, r);
        }
        let dir = match c.side {
            Side::Inside => Direction::Outgoing,
            Side::Outside => Direction::Incoming,
        };
        let remote = Remote::Address(c.key.outside_ip());
        let d = c.cfg.policy.decide(c.pu.id, dir, remote, c.info.proto, c.info.dst_port);
        let state = FlowState::Udp(UdpState::Authorized);
        match self.table.insert(c.key, NewFlow { pu: c.pu.id, initiator: c.side, state, seq: 0 }, c.now) {
            Ok(e) => {
                e.set_verdict(&d, None, c.gen);
                if d.allowed() {
                    e.account(c.side, len);
                }
            }
            Err(_) => return self.drop(c.side, DropReason::FlowTableFull),
        }
        let rejected = drop_of_reason(d.reason);
        self.tell_decision(c.cfg, c.side, c.flow(c.side).decision(&d, None), &d, rejected);
        if d.allowed() {
            Action::Forward
        } else {
            self.drop(c.side, rejected)
        }
    }
}
