//! One flow's record: 128 bytes (two cache lines), asserted by a test.
//!
//! | bytes | field |
//! |------:|-------|
//! | 8  | idle deadline |
//! | 8  | creation time |
//! | 32 | packets and bytes, per direction (from inside, from outside) |
//! | 40 | key |
//! | 16 | cached verdict (rule, observed rule, external networks, actions, reason) |
//! | 20 | remote identity, PU, policy generation, SYN and SYN-ACK sequence numbers |
//! | 4  | state, flags, padding |

use crate::policy::{Action, Decision, ExtNetRef, Observed, PuId, Reason, RuleRef};
use crate::Side;

use super::key::FlowKey;
use super::state::{FlowState, TcpFlags, TcpStep, Timeouts, UdpState};

const NONE32: u32 = u32::MAX;
const NONE16: u16 = u16::MAX;
const UNDECIDED: u8 = u8::MAX;

/// A [`Decision`] packed into 16 bytes. External-network indices above 65534
/// are not representable (the compiler refuses more external networks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct CachedVerdict {
    rule: u32,
    obs_rule: u32,
    ext: u16,
    obs_ext: u16,
    /// 0 allow, 1 reject.
    action: u8,
    /// 0 none, 1 allow, 2 reject.
    obs_action: u8,
    /// `Reason as u8`, or `UNDECIDED`.
    reason: u8,
    _pad: u8,
}

impl CachedVerdict {
    pub const UNDECIDED: CachedVerdict = CachedVerdict {
        rule: NONE32,
        obs_rule: NONE32,
        ext: NONE16,
        obs_ext: NONE16,
        action: 1,
        obs_action: 0,
        reason: UNDECIDED,
        _pad: 0,
    };

    #[inline]
    pub fn pack(d: &Decision) -> CachedVerdict {
        let ext = |e: Option<ExtNetRef>| e.map_or(NONE16, |x| u16::try_from(x.0).unwrap_or(NONE16));
        CachedVerdict {
            rule: d.rule.map_or(NONE32, |r| r.0),
            obs_rule: d.observed.map_or(NONE32, |o| o.rule.0),
            ext: ext(d.external),
            obs_ext: ext(d.observed.and_then(|o| o.external)),
            action: (d.action == Action::Reject) as u8,
            obs_action: d.observed.map_or(0, |o| if o.action == Action::Reject { 2 } else { 1 }),
            reason: d.reason as u8,
            _pad: 0,
        }
    }

    /// The decision, or `None` if none was cached yet.
    #[inline]
    pub fn unpack(&self) -> Option<Decision> {
        if self.reason == UNDECIDED {
            return None;
        }
        let ext = |e: u16| (e != NONE16).then_some(ExtNetRef(e as u32));
        let action = |a: u8| if a == 0 { Action::Allow } else { Action::Reject };
        Some(Decision {
            action: action(self.action),
            rule: (self.rule != NONE32).then_some(RuleRef(self.rule)),
            external: ext(self.ext),
            observed: (self.obs_action != 0).then(|| Observed {
                action: action(self.obs_action - 1),
                rule: RuleRef(self.obs_rule),
                external: ext(self.obs_ext),
            }),
            reason: Reason::ALL[self.reason as usize],
        })
    }

    /// The 16 bytes as one number (flow events carry it so).
    pub fn to_bits(&self) -> u128 {
        u128::from(self.rule)
            | u128::from(self.obs_rule) << 32
            | u128::from(self.ext) << 64
            | u128::from(self.obs_ext) << 80
            | u128::from(self.action) << 96
            | u128::from(self.obs_action) << 104
            | u128::from(self.reason) << 112
    }

    /// The inverse of [`Self::to_bits`]. Values that name no reason unpack as undecided.
    pub fn from_bits(b: u128) -> CachedVerdict {
        let reason = (b >> 112) as u8;
        CachedVerdict {
            rule: b as u32,
            obs_rule: (b >> 32) as u32,
            ext: (b >> 64) as u16,
            obs_ext: (b >> 80) as u16,
            action: ((b >> 96) as u8).min(1),
            obs_action: ((b >> 104) as u8).min(2),
            reason: if usize::from(reason) < Reason::COUNT { reason } else { UNDECIDED },
            _pad: 0,
        }
    }

    /// Whether a decision is cached.
    #[inline]
    pub fn is_decided(&self) -> bool {
        self.reason != UNDECIDED
    }

    /// The enforced action without unpacking (undecided counts as not allowed).
    #[inline]
    pub fn allowed(&self) -> bool {
        self.reason != UNDECIDED && self.action == 0
    }
}

const F_INITIATOR_OUTSIDE: u8 = 1;
const F_HAS_IDENTITY: u8 = 2;
const F_FIN_INSIDE: u8 = 4;
const F_FIN_OUTSIDE: u8 = 8;
/// The connection reached `Established` (it may be closing or closed now).
const F_WAS_ESTABLISHED: u8 = 16;
/// Identity travels at layer 4 (`docs/identity-l4.md`): the flow leaves the
/// look-ahead fast path for the engine's layer-4 path.
const F_L4: u8 = 32;
/// The layer-4 exchange is complete: both records are in the stream between
/// the gateways, whose sequence numbers are shifted.
const F_L4_DONE: u8 = 64;
/// Option mode at our server, watching the client's first bytes for its
/// gateway's record: the SYN-ACK's option may be stripped on the way back
/// (an asymmetric path), and the client's gateway then speaks layer 4.
const F_L4_WATCH: u8 = 128;

/// What the caller knows when it creates a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFlow {
    pub pu: PuId,
    /// Where the first packet came from: `Inside` when the PU is the client.
    pub initiator: Side,
    /// `SynSent` for TCP, a `Udp` state for UDP.
    pub state: FlowState,
    /// The SYN's sequence number (TCP), for retransmission detection.
    pub seq: u32,
}

/// One flow.
// Aligned to a cache line: a lookup then touches exactly the entry's two
// lines (unaligned, most entries straddle three), and the worker's prefetch
// of a slot names both.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct FlowEntry {
    pub(crate) deadline: u64,
    created: u64,
    /// Index 0: packets from the inside port; 1: from the outside port.
    packets: [u64; 2],
    bytes: [u64; 2],
    pub(crate) key: FlowKey,
    verdict: CachedVerdict,
    remote_identity: u32,
    pu: u32,
    policy_generation: u32,
    syn_seq: u32,
    synack_seq: u32,
    state: u8,
    flags: u8,
    /// The low 16 bits of the key id a verified SYN was signed with (the low
    /// byte of the peer's key id, then of ours): the SYN-ACK is signed back
    /// with the pairwise key of those same two keys.
    syn_key: u16,
}

impl FlowEntry {
    pub(crate) const EMPTY: FlowEntry = FlowEntry {
        deadline: 0,
        created: 0,
        packets: [0; 2],
        bytes: [0; 2],
        key: super::key::ZERO_KEY,
        verdict: CachedVerdict::UNDECIDED,
        remote_identity: 0,
        pu: 0,
        policy_generation: 0,
        syn_seq: 0,
        synack_seq: 0,
        state: 0,
        flags: 0,
        syn_key: 0,
    };

    pub(crate) fn init(key: FlowKey, f: NewFlow, now: u64, t: &Timeouts) -> FlowEntry {
        FlowEntry {
            deadline: now.saturating_add(t.for_state(f.state)),
            created: now,
            key,
            pu: f.pu.0,
            syn_seq: f.seq,
            state: f.state.to_u8(),
            flags: if f.initiator == Side::Outside { F_INITIATOR_OUTSIDE } else { 0 }
                | if f.state == FlowState::Established { F_WAS_ESTABLISHED } else { 0 },
            ..FlowEntry::EMPTY
        }
    }

    #[inline]
    pub fn key(&self) -> &FlowKey {
        &self.key
    }
    #[inline]
    pub fn state(&self) -> FlowState {
        FlowState::from_u8(self.state)
    }
    #[inline]
    pub fn pu(&self) -> PuId {
        PuId(self.pu)
    }
    /// The side the first packet came from.
    #[inline]
    pub fn initiator(&self) -> Side {
        if self.flags & F_INITIATOR_OUTSIDE != 0 {
            Side::Outside
        } else {
            Side::Inside
        }
    }
    /// The policy direction of the flow for its PU.
    #[inline]
    pub fn direction(&self) -> crate::policy::Direction {
        match self.initiator() {
            Side::Inside => crate::policy::Direction::Outgoing,
            Side::Outside => crate::policy::Direction::Incoming,
        }
    }
    #[inline]
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
    #[inline]
    pub fn created(&self) -> u64 {
        self.created
    }
    /// Packets and bytes received from `side`.
    #[inline]
    pub fn counters(&self, side: Side) -> (u64, u64) {
        (self.packets[side as usize], self.bytes[side as usize])
    }
    #[inline]
    pub fn remote_identity(&self) -> Option<u32> {
        (self.flags & F_HAS_IDENTITY != 0).then_some(self.remote_identity)
    }
    #[inline]
    pub fn verdict(&self) -> &CachedVerdict {
        &self.verdict
    }
    /// The generation of the snapshot that decided (compare with
    /// `PolicySnapshot::generation` to see whether the verdict is current).
    #[inline]
    pub fn policy_generation(&self) -> u32 {
        self.policy_generation
    }

    /// The initiator's SYN sequence number.
    #[inline]
    pub fn syn_seq(&self) -> u32 {
        self.syn_seq
    }

    /// Whether the connection completed its handshake (it may have closed
    /// since). A SYN of such a connection is never a genuine retransmission.
    #[inline]
    pub fn was_established(&self) -> bool {
        self.flags & F_WAS_ESTABLISHED != 0
    }

    /// What [`Self::set_syn_key`] recorded (0 until then).
    #[inline]
    pub fn syn_key(&self) -> u16 {
        self.syn_key
    }

    /// Records what answering a verified SYN needs of its key id
    /// ([`crate::identity::KeyId::answer_bytes`]).
    #[inline]
    pub fn set_syn_key(&mut self, answer_bytes: u16) {
        self.syn_key = answer_bytes;
    }

    /// The responder's SYN-ACK sequence number (0 before the SYN-ACK).
    #[inline]
    pub fn synack_seq(&self) -> u32 {
        self.synack_seq
    }

    /// Whether identity travels at layer 4 on this flow (exchange pending or done).
    #[inline(always)]
    pub fn is_l4(&self) -> bool {
        self.flags & F_L4 != 0
    }

    /// Whether the flow takes the layer-4 path rather than the look-ahead
    /// fast path (layer 4, or an option-mode flow watched for a record).
    #[inline(always)]
    pub fn l4_path(&self) -> bool {
        self.flags & (F_L4 | F_L4_WATCH) != 0
    }

    /// Whether the client's first bytes are watched for a record (see
    /// [`Self::set_l4_watch`]).
    #[inline]
    pub fn l4_watch(&self) -> bool {
        self.flags & F_L4_WATCH != 0
    }

    /// Watches (or stops watching) an option-mode flow for the client
    /// gateway's record.
    #[inline]
    pub fn set_l4_watch(&mut self, on: bool) {
        if on {
            self.flags |= F_L4_WATCH;
        } else {
            self.flags &= !F_L4_WATCH;
        }
    }

    /// Whether the layer-4 exchange is complete (the stream is shifted).
    #[inline]
    pub fn l4_done(&self) -> bool {
        self.flags & F_L4_DONE != 0
    }

    /// Puts the flow in layer-4 mode, the exchange pending. `why` is kept
    /// for the decision event (a [`crate::stats::Note`] as a byte); it
    /// shares the 16 bits of [`Self::syn_key`], which a flow our PU opened
    /// never uses, and which our server's side sets after (the record's key).
    #[inline]
    pub fn set_l4(&mut self, why: u8) {
        self.flags = (self.flags | F_L4) & !(F_L4_DONE | F_L4_WATCH);
        self.syn_key = u16::from(why);
        if self.flags & F_HAS_IDENTITY == 0 {
            self.remote_identity = 0;
        }
    }

    /// Leaves layer-4 mode (the peer turned out not to speak it).
    #[inline]
    pub fn clear_l4(&mut self) {
        self.flags &= !(F_L4 | F_L4_DONE | F_L4_WATCH);
        self.syn_key = 0;
    }

    /// What [`Self::set_l4`] recorded.
    #[inline]
    pub fn l4_why(&self) -> u8 {
        self.syn_key as u8
    }

    /// The hold slot of a layer-4 flow's segments while the exchange is
    /// pending (kept in the remote identity's bits, unused until the peer's
    /// record verifies and [`Self::set_verdict`] names the identity).
    #[inline]
    pub fn l4_hold_slot(&self) -> Option<u32> {
        if self.flags & F_HAS_IDENTITY != 0 || self.remote_identity == 0 {
            return None;
        }
        Some(self.remote_identity - 1)
    }

    /// Records the hold slot (see [`Self::l4_hold_slot`]).
    #[inline]
    pub fn set_l4_hold_slot(&mut self, slot: u32) {
        if self.flags & F_HAS_IDENTITY == 0 {
            self.remote_identity = slot.wrapping_add(1);
        }
    }

    /// Marks the layer-4 exchange complete.
    #[inline]
    pub fn set_l4_done(&mut self) {
        self.flags |= F_L4_DONE;
    }

    /// Re-points the flow at its PU's index in a newer snapshot.
    #[inline]
    pub fn set_pu(&mut self, pu: PuId) {
        self.pu = pu.0;
    }

    /// Caches a decision, the remote identity it was made for (if any) and the
    /// snapshot generation.
    #[inline]
    pub fn set_verdict(&mut self, d: &Decision, remote_identity: Option<u32>, generation: u32) {
        self.verdict = CachedVerdict::pack(d);
        self.policy_generation = generation;
        match remote_identity {
            Some(id) => {
                self.remote_identity = id;
                self.flags |= F_HAS_IDENTITY;
            }
            None => self.flags &= !F_HAS_IDENTITY,
        }
    }

    /// Counts one packet of `len` bytes received from `side`.
    #[inline(always)]
    pub fn account(&mut self, side: Side, len: u32) {
        let i = side as usize;
        self.packets[i] += 1;
        self.bytes[i] += len as u64;
    }

    #[inline]
    fn set_state(&mut self, s: FlowState, now: u64, t: &Timeouts) {
        self.state = s.to_u8();
        self.deadline = now.saturating_add(t.for_state(s));
    }

    #[inline]
    fn refresh(&mut self, now: u64, t: &Timeouts) {
        self.deadline = now.saturating_add(t.for_state(self.state()));
    }

    /// The common case of [`Self::on_tcp`] tested first: a packet of an
    /// established flow without SYN, FIN or RST only refreshes the idle
    /// deadline. Returns whether that applied; if not, nothing changed and
    /// `on_tcp` takes the packet.
    #[inline(always)]
    pub fn on_tcp_data(&mut self, flags: TcpFlags, now: u64, t: &Timeouts) -> bool {
        const ESTABLISHED: u8 = FlowState::Established.to_u8();
        if self.state != ESTABLISHED || flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) != 0 {
            return false;
        }
        self.deadline = now.saturating_add(t.established);
        true
    }

    /// Advances the TCP state machine for a packet from `from` and refreshes
    /// the idle deadline. See [`super::state`] for the diagram.
    pub fn on_tcp(&mut self, from: Side, flags: TcpFlags, seq: u32, now: u64, t: &Timeouts) -> TcpStep {
        use FlowState as S;
        let from_initiator = from == self.initiator();
        let state = self.state();
        if flags.has(TcpFlags::RST) {
            self.set_state(S::Closed, now, t);
            return TcpStep::Rst;
        }
        if flags.is_syn() {
            if !from_initiator {
                self.refresh_unless_closed(now, t);
                return TcpStep::OutOfState;
            }
            if seq == self.syn_seq && matches!(state, S::SynSent | S::SynAckSeen | S::Established) {
                if state != S::Established {
                    self.refresh(now, t);
                }
                return TcpStep::SynRetransmit;
            }
            // A new connection on the same 5-tuple.
            self.syn_seq = seq;
            self.synack_seq = 0;
            self.flags &= !(F_FIN_INSIDE | F_FIN_OUTSIDE | F_WAS_ESTABLISHED | F_L4 | F_L4_DONE | F_L4_WATCH);
            self.verdict = CachedVerdict::UNDECIDED;
            self.set_state(S::SynSent, now, t);
            return TcpStep::NewSyn;
        }
        if flags.is_syn_ack() {
            if from_initiator {
                self.refresh_unless_closed(now, t);
                return TcpStep::OutOfState;
            }
            return match state {
                S::SynSent => {
                    self.synack_seq = seq;
                    self.set_state(S::SynAckSeen, now, t);
                    TcpStep::SynAck
                }
                S::SynAckSeen if seq == self.synack_seq => {
                    self.refresh(now, t);
                    TcpStep::SynAckRetransmit
                }
                S::SynAckSeen => {
                    self.synack_seq = seq;
                    self.refresh(now, t);
                    TcpStep::SynAck
                }
                // The client's final ACK was lost; the server repeats itself.
                S::Established if seq == self.synack_seq => TcpStep::SynAckRetransmit,
                _ => TcpStep::OutOfState,
            };
        }
        // Neither SYN nor RST.
        match state {
            S::SynSent | S::Udp(_) => TcpStep::OutOfState,
            S::SynAckSeen => {
                if from_initiator && flags.has(TcpFlags::ACK) {
                    self.set_state(S::Established, now, t);
                    self.flags |= F_WAS_ESTABLISHED;
                    if flags.has(TcpFlags::FIN) {
                        return self.fin(from, now, t);
                    }
                    TcpStep::Established
                } else {
                    TcpStep::OutOfState
                }
            }
            S::Established | S::Closing => {
                if flags.has(TcpFlags::FIN) {
                    return self.fin(from, now, t);
                }
                self.refresh(now, t);
                TcpStep::Data
            }
            S::Closed => TcpStep::Data,
        }
    }

    fn refresh_unless_closed(&mut self, now: u64, t: &Timeouts) {
        if self.state() != FlowState::Closed {
            self.refresh(now, t);
        }
    }

    fn fin(&mut self, from: Side, now: u64, t: &Timeouts) -> TcpStep {
        self.flags |= match from {
            Side::Inside => F_FIN_INSIDE,
            Side::Outside => F_FIN_OUTSIDE,
        };
        if self.flags & (F_FIN_INSIDE | F_FIN_OUTSIDE) == F_FIN_INSIDE | F_FIN_OUTSIDE {
            self.set_state(FlowState::Closed, now, t);
        } else {
            self.set_state(FlowState::Closing, now, t);
        }
        TcpStep::Fin
    }

    /// A UDP datagram from `from`: refreshes the deadline.
    #[inline]
    pub fn on_udp(&mut self, now: u64, t: &Timeouts) {
        self.refresh(now, t);
    }

    /// Moves a UDP flow to `Authorized` (or back to `Pending`).
    pub fn set_udp_state(&mut self, s: UdpState, now: u64, t: &Timeouts) {
        self.set_state(FlowState::Udp(s), now, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Direction;

    const SYN: TcpFlags = TcpFlags(TcpFlags::SYN);
    const SYNACK: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);
    const ACK: TcpFlags = TcpFlags(TcpFlags::ACK);
    const FINACK: TcpFlags = TcpFlags(TcpFlags::FIN | TcpFlags::ACK);
    const RST: TcpFlags = TcpFlags(TcpFlags::RST);

    fn t() -> Timeouts {
        Timeouts { handshake: 10, established: 1000, closing: 30, closed: 5, udp_pending: 7, udp_authorized: 100 }
    }

    fn flow(initiator: Side) -> FlowEntry {
        let init = NewFlow { pu: PuId(3), initiator, state: FlowState::SynSent, seq: 100 };
        FlowEntry::init(FlowKey::default(), init, 0, &t())
    }

    #[test]
    fn entry_is_128_bytes() {
        assert_eq!(std::mem::size_of::<FlowEntry>(), 128);
        assert_eq!(std::mem::size_of::<CachedVerdict>(), 16);
    }

    #[test]
    fn full_handshake_and_close_from_inside() {
        let t = t();
        let mut f = flow(Side::Inside);
        assert_eq!((f.state(), f.deadline(), f.direction()), (FlowState::SynSent, 10, Direction::Outgoing));
        assert_eq!(f.on_tcp(Side::Inside, SYN, 100, 2, &t), TcpStep::SynRetransmit);
        assert_eq!(f.deadline(), 12);
        assert_eq!(f.on_tcp(Side::Outside, SYNACK, 500, 3, &t), TcpStep::SynAck);
        assert_eq!((f.state(), f.deadline()), (FlowState::SynAckSeen, 13));
        assert_eq!(f.on_tcp(Side::Outside, SYNACK, 500, 4, &t), TcpStep::SynAckRetransmit);
        assert_eq!(f.on_tcp(Side::Inside, SYN, 100, 4, &t), TcpStep::SynRetransmit);
        assert_eq!(f.state(), FlowState::SynAckSeen);
        assert_eq!(f.on_tcp(Side::Inside, ACK, 101, 5, &t), TcpStep::Established);
        assert_eq!((f.state(), f.deadline()), (FlowState::Established, 1005));
        assert_eq!(f.on_tcp(Side::Outside, ACK, 501, 6, &t), TcpStep::Data);
        assert_eq!(f.deadline(), 1006);
        // The final ACK was lost: the server repeats its SYN-ACK.
        assert_eq!(f.on_tcp(Side::Outside, SYNACK, 500, 7, &t), TcpStep::SynAckRetransmit);
        assert_eq!(f.on_tcp(Side::Inside, FINACK, 200, 8, &t), TcpStep::Fin);
        assert_eq!((f.state(), f.deadline()), (FlowState::Closing, 38));
        assert_eq!(f.on_tcp(Side::Outside, ACK, 600, 9, &t), TcpStep::Data);
        assert_eq!(f.on_tcp(Side::Outside, FINACK, 600, 10, &t), TcpStep::Fin);
        assert_eq!((f.state(), f.deadline()), (FlowState::Closed, 15));
        // The last ACK does not extend a closed flow.
        assert_eq!(f.on_tcp(Side::Inside, ACK, 201, 11, &t), TcpStep::Data);
        assert_eq!(f.deadline(), 15);
    }

    #[test]
    fn handshake_from_outside() {
        let t = t();
        let mut f = flow(Side::Outside);
        assert_eq!(f.direction(), Direction::Incoming);
        // A SYN-ACK from the initiator's side, or a SYN from the responder, is out of state.
        assert_eq!(f.on_tcp(Side::Outside, SYNACK, 1, 1, &t), TcpStep::OutOfState);
        assert_eq!(f.on_tcp(Side::Inside, SYN, 1, 1, &t), TcpStep::OutOfState);
        assert_eq!(f.state(), FlowState::SynSent);
        // Data before the handshake completes.
        assert_eq!(f.on_tcp(Side::Outside, ACK, 101, 1, &t), TcpStep::OutOfState);
        assert_eq!(f.on_tcp(Side::Inside, SYNACK, 9, 2, &t), TcpStep::SynAck);
        // ACK from the responder does not complete the handshake.
        assert_eq!(f.on_tcp(Side::Inside, ACK, 10, 2, &t), TcpStep::OutOfState);
        // A SYN-ACK with a new sequence number is a new SYN-ACK.
        assert_eq!(f.on_tcp(Side::Inside, SYNACK, 77, 3, &t), TcpStep::SynAck);
        assert_eq!(f.on_tcp(Side::Inside, SYNACK, 77, 3, &t), TcpStep::SynAckRetransmit);
        assert_eq!(f.on_tcp(Side::Outside, FINACK, 101, 4, &t), TcpStep::Fin);
        assert_eq!(f.state(), FlowState::Closing);
        assert_eq!(f.on_tcp(Side::Inside, FINACK, 78, 5, &t), TcpStep::Fin);
        assert_eq!(f.state(), FlowState::Closed);
    }

    #[test]
    fn rst_in_every_state() {
        let t = t();
        for steps in 0..4 {
            let mut f = flow(Side::Inside);
            let pkts = [(Side::Outside, SYNACK, 5), (Side::Inside, ACK, 101), (Side::Inside, FINACK, 101)];
            for &(s, fl, seq) in &pkts[..steps.min(3)] {
                f.on_tcp(s, fl, seq, 1, &t);
            }
            assert_eq!(f.on_tcp(Side::Outside, RST, 0, 2, &t), TcpStep::Rst);
            assert_eq!((f.state(), f.deadline()), (FlowState::Closed, 7));
        }
    }

    #[test]
    fn new_syn_restarts_the_flow() {
        let t = t();
        let mut f = flow(Side::Inside);
        f.on_tcp(Side::Outside, SYNACK, 5, 1, &t);
        f.on_tcp(Side::Inside, ACK, 101, 1, &t);
        let d = Decision {
            action: Action::Allow,
            rule: Some(RuleRef(4)),
            external: None,
            observed: None,
            reason: Reason::PolicyAllow,
        };
        f.set_verdict(&d, Some(2001), 9);
        // A retransmitted SYN on an established flow is recognised and changes nothing.
        assert_eq!(f.on_tcp(Side::Inside, SYN, 100, 2, &t), TcpStep::SynRetransmit);
        assert_eq!(f.state(), FlowState::Established);
        assert_eq!(f.deadline(), 1001);
        // A different ISN: a new connection on the same tuple.
        assert_eq!(f.on_tcp(Side::Inside, SYN, 900, 3, &t), TcpStep::NewSyn);
        assert_eq!((f.state(), f.deadline()), (FlowState::SynSent, 13));
        assert_eq!(f.verdict().unpack(), None);
        // After a close, too.
        f.on_tcp(Side::Inside, RST, 0, 4, &t);
        assert_eq!(f.on_tcp(Side::Inside, SYN, 900, 5, &t), TcpStep::NewSyn);
        assert_eq!(f.state(), FlowState::SynSent);
    }

    #[test]
    fn verdict_cache_round_trips() {
        let mut f = flow(Side::Inside);
        assert!(!f.verdict().allowed());
        assert_eq!(f.remote_identity(), None);
        let d = Decision {
            action: Action::Reject,
            rule: None,
            external: None,
            observed: Some(Observed { action: Action::Allow, rule: RuleRef(7), external: Some(ExtNetRef(2)) }),
            reason: Reason::ObservedOnly,
        };
        f.set_verdict(&d, None, 3);
        assert_eq!(f.verdict().unpack(), Some(d));
        assert_eq!(f.policy_generation(), 3);
        let d2 = Decision {
            action: Action::Allow,
            rule: Some(RuleRef(1)),
            external: Some(ExtNetRef(0)),
            observed: None,
            reason: Reason::ExternalNetworkAllow,
        };
        f.set_verdict(&d2, Some(42), 4);
        assert_eq!(f.verdict().unpack(), Some(d2));
        assert!(f.verdict().allowed());
        assert_eq!(f.remote_identity(), Some(42));
        for r in Reason::ALL {
            let d = Decision { reason: r, ..d2 };
            assert_eq!(CachedVerdict::pack(&d).unpack(), Some(d));
        }
    }

    #[test]
    fn counters_and_udp() {
        let t = t();
        let init =
            NewFlow { pu: PuId(1), initiator: Side::Inside, state: FlowState::Udp(UdpState::Authorized), seq: 0 };
        let mut f = FlowEntry::init(FlowKey::default(), init, 50, &t);
        assert_eq!(f.deadline(), 150);
        f.account(Side::Inside, 100);
        f.account(Side::Inside, 60);
        f.account(Side::Outside, 1500);
        assert_eq!(f.counters(Side::Inside), (2, 160));
        assert_eq!(f.counters(Side::Outside), (1, 1500));
        f.on_udp(60, &t);
        assert_eq!(f.deadline(), 160);
        f.set_udp_state(UdpState::Pending, 61, &t);
        assert_eq!((f.state(), f.deadline()), (FlowState::Udp(UdpState::Pending), 68));
        assert!(f.state().evictable());
        // TCP segments on a UDP flow are out of state.
        assert_eq!(f.on_tcp(Side::Inside, ACK, 1, 62, &t), TcpStep::OutOfState);
        assert_eq!(f.created(), 50);
        assert_eq!(f.pu(), PuId(1));
    }
}
