//! How a packet's end is counted and told: exactly one drop reason or the
//! notes of what was done, in the counters of the port it came from; a flow
//! event where the end is worth one (a decision, a drop of a flow's packet
//! for identity or policy); and the gateway's replies within the reset budget.

use super::context::{Ctx, FlowRef};
use super::reasons::note_of_allow;
use super::reply_limit::Trust;
use super::rst::{self, RstSpec};
use super::{Action, Engine, EngineConfig};
use crate::buf::PacketBuf;
use crate::events::FlowRecord;
use crate::identity::KeyId;
use crate::policy::Decision;
use crate::stats::{DirStats, DropReason, Note};
use crate::wire::parse_frame;
use crate::Side;

impl Engine {
    #[inline(always)]
    pub(super) fn dir(&self, side: Side) -> &DirStats {
        self.stats.dir(side)
    }

    #[inline]
    pub(super) fn note(&self, side: Side, n: Note) {
        self.dir(side).note_count(n).add(1);
    }

    /// Counts the drop of a packet from `side` for `r`.
    #[inline]
    pub(super) fn drop(&self, side: Side, r: DropReason) -> Action {
        self.dir(side).drop_count(r).add(1);
        Action::Drop(r)
    }

    /// Forward (`Ok`) or drop for the reason given.
    #[inline(always)]
    pub(super) fn forward_or_drop(&self, side: Side, r: Result<(), DropReason>) -> Action {
        match r {
            Ok(()) => Action::Forward,
            Err(r) => self.drop(side, r),
        }
    }

    /// Queues a flow event; a full queue is counted (`events_lost`).
    pub(super) fn emit(&mut self, side: Side, r: &FlowRecord) {
        if let Some(p) = self.events.as_mut() {
            if !p.push(r) {
                self.stats.dir(side).note_count(Note::EventsLost).add(1);
            }
        }
    }

    /// Drops a packet of `flow` for `r` and tells it with a drop event
    /// naming the remote identity, if one verified.
    pub(super) fn drop_told(
        &mut self,
        side: Side,
        flow: FlowRef,
        r: DropReason,
        remote_identity: Option<u32>,
    ) -> Action {
        self.emit(side, &flow.dropped(r, remote_identity));
        self.drop(side, r)
    }

    /// Counts a decision against the rule that made it and the observe rule
    /// that matched (this worker's slots of the policy that decided).
    #[inline]
    pub(super) fn count_decision(&self, cfg: &EngineConfig, d: &Decision) {
        cfg.rule_hits.count(self.worker, d);
    }

    /// Tells a decision: the event, and the note of an allow, or the drop
    /// reason `rejected` in the event of a reject (the caller counts the
    /// packets it drops); counts it against its rules.
    pub(super) fn tell_decision(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        mut rec: FlowRecord,
        d: &Decision,
        rejected: DropReason,
    ) {
        self.count_decision(cfg, d);
        if d.allowed() {
            self.note(side, note_of_allow(d));
        } else {
            rec.drop = Some(rejected);
        }
        self.emit(side, &rec);
    }

    /// Drops a verified identity that the peer whose key signed it may not
    /// claim (or that the directory does not know), with a drop event about
    /// `flow` naming it; `Ok` when the peer owns it.
    pub(super) fn refuse_unowned(
        &mut self,
        c: &Ctx<'_>,
        flow: FlowRef,
        identity: u32,
        key: KeyId,
    ) -> Result<(), Action> {
        let p = &c.cfg.policy;
        if p.identity_allowed_for_peer(identity, key.sender()) {
            return Ok(());
        }
        let r = if p.identity(identity).is_none() {
            DropReason::UnknownIdentity
        } else {
            DropReason::IdentityNotAllowedForPeer
        };
        Err(self.drop_told(c.side, flow, r, Some(identity)))
    }

    /// Drops the packet in `buf` for `r` and answers its sender with the
    /// reset `spec` in its place, if the reset budget for `to` allows.
    pub(super) fn reply_rst<B: PacketBuf>(
        &mut self,
        side: Side,
        buf: &mut B,
        spec: &RstSpec,
        r: DropReason,
        to: Trust,
        now: u64,
    ) -> Action {
        self.dir(side).drop_count(r).add(1);
        if !self.replies.allow(to, now) {
            self.note(side, Note::RstSuppressed);
            return Action::Drop(r);
        }
        // The buffer as it is now (an option may have been stripped).
        let info = parse_frame(buf.data()).unwrap_or_default();
        if rst::in_place(buf, &info, true, spec) {
            self.note(side, Note::RstSent);
            Action::Reply(r)
        } else {
            Action::Drop(r)
        }
    }
}
