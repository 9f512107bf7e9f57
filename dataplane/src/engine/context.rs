//! The packet context: what every handler after the classification reads of
//! one packet, built once by the dispatcher ([`super::process`]) and passed
//! by reference instead of long argument lists.

use super::EngineConfig;
use crate::events::{EventKind, FlowRecord};
use crate::flow::FlowKey;
use crate::policy::{Decision, PuId};
use crate::stats::DropReason;
use crate::wire::FrameInfo;
use crate::Side;

/// The local PU at the inside end of a packet, as the policy classified it
/// ([`crate::policy::Classification::LocalPu`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LocalPu {
    pub id: PuId,
    /// The remote end is in a managed TCP network: SYNs carry identity.
    pub managed_tcp: bool,
    /// The remote end is in a managed UDP network: new flows handshake.
    pub managed_udp: bool,
}

/// One packet on the slow path.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub cfg: &'a EngineConfig,
    /// The port it arrived on.
    pub side: Side,
    /// What the full parse found (before any rewrite of the buffer).
    pub info: &'a FrameInfo,
    /// Its flow, inside end first.
    pub key: FlowKey,
    /// The key's hash in the flow table (computed once per packet: every
    /// lookup of the flow passes it).
    pub h: u64,
    pub pu: LocalPu,
    /// The policy snapshot's generation (`cfg.generation()`).
    pub gen: u32,
    /// Unix time in nanoseconds.
    pub now: u64,
}

impl Ctx<'_> {
    /// The flow as events name it, `initiator` being the side that opened it.
    pub fn flow(&self, initiator: Side) -> FlowRef {
        FlowRef { key: self.key, initiator, pu: self.pu.id, gen: self.gen, now: self.now }
    }
}

/// What a flow event says about whose flow it is.
#[derive(Debug, Clone, Copy)]
pub(super) struct FlowRef {
    pub key: FlowKey,
    pub initiator: Side,
    pub pu: PuId,
    pub gen: u32,
    pub now: u64,
}

impl FlowRef {
    /// A decision event: `d`, and the remote identity it was made for.
    pub fn decision(&self, d: &Decision, remote_identity: Option<u32>) -> FlowRecord {
        let mut r = self.record(EventKind::Decision).with_decision(d);
        r.remote_identity = remote_identity;
        r
    }

    /// A drop event without a decision.
    pub fn dropped(&self, reason: DropReason, remote_identity: Option<u32>) -> FlowRecord {
        let mut r = self.record(EventKind::Drop);
        r.remote_identity = remote_identity;
        r.drop = Some(reason);
        r
    }

    fn record(&self, kind: EventKind) -> FlowRecord {
        FlowRecord::new(kind, self.now, self.key, self.initiator, self.pu.0, self.gen)
    }
}
