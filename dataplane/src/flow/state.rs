//! Connection states and their idle timeouts.
//!
//! TCP, as the gateway sees the handshake:
//!
//! ```text
//!   (new, initiator's SYN)                     RST (either side) → Closed
//!          │
//!       SynSent ──SYN again, same seq──▶ SynSent (SynRetransmit)
//!          │ SYN-ACK from the responder
//!       SynAckSeen ──SYN-ACK again, same seq──▶ SynAckSeen (SynAckRetransmit)
//!          │ ACK from the initiator
//!       Established ──data/ACK──▶ Established
//!          │ FIN (either side)
//!       Closing ──FIN from the other side──▶ Closed
//! ```
//!
//! A SYN with a new sequence number on an existing flow is `NewSyn` (port
//! reuse or a client restart): the flow is back in `SynSent` and the caller
//! decides it afresh. The state machine only classifies; the caller acts.

/// Per-state idle timeouts, in the caller's time unit (nanoseconds by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `SynSent` and `SynAckSeen`.
    pub handshake: u64,
    pub established: u64,
    /// `Closing` (one FIN seen).
    pub closing: u64,
    /// `Closed` (both FINs or a RST): late retransmissions still find the flow.
    pub closed: u64,
    /// UDP flows whose handshake has not completed (datagrams held).
    pub udp_pending: u64,
    pub udp_authorized: u64,
}

const S: u64 = 1_000_000_000;

impl Default for Timeouts {
    /// In nanoseconds: handshake 10 s, established 1 h, closing 30 s, closed
    /// 5 s, UDP pending 5 s, UDP authorized 120 s.
    fn default() -> Self {
        Timeouts {
            handshake: 10 * S,
            established: 3600 * S,
            closing: 30 * S,
            closed: 5 * S,
            udp_pending: 5 * S,
            udp_authorized: 120 * S,
        }
    }
}

impl Timeouts {
    #[inline]
    pub fn for_state(&self, s: FlowState) -> u64 {
        match s {
            FlowState::SynSent | FlowState::SynAckSeen => self.handshake,
            FlowState::Established => self.established,
            FlowState::Closing => self.closing,
            FlowState::Closed => self.closed,
            FlowState::Udp(UdpState::Pending) => self.udp_pending,
            FlowState::Udp(UdpState::Authorized) => self.udp_authorized,
        }
    }
}

/// UDP flow states. Issue 6 adds the identity handshake in `Pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdpState {
    /// Identity handshake in progress.
    Pending,
    /// Decided; datagrams pass on the cached verdict.
    Authorized,
}

/// The state of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// The initiator's SYN was seen (and identity sent or verified).
    SynSent,
    /// The responder's SYN-ACK was seen.
    SynAckSeen,
    Established,
    /// One side sent a FIN.
    Closing,
    /// Both FINs, or a RST.
    Closed,
    Udp(UdpState),
}

impl FlowState {
    /// States whose entries may be evicted to make room (never `Established`
    /// or authorized UDP).
    #[inline]
    pub fn evictable(self) -> bool {
        !matches!(self, FlowState::Established | FlowState::Udp(UdpState::Authorized))
    }

    pub fn name(self) -> &'static str {
        match self {
            FlowState::SynSent => "syn_sent",
            FlowState::SynAckSeen => "syn_ack_seen",
            FlowState::Established => "established",
            FlowState::Closing => "closing",
            FlowState::Closed => "closed",
            FlowState::Udp(UdpState::Pending) => "udp_pending",
            FlowState::Udp(UdpState::Authorized) => "udp_authorized",
        }
    }

    pub(crate) const fn to_u8(self) -> u8 {
        match self {
            FlowState::SynSent => 0,
            FlowState::SynAckSeen => 1,
            FlowState::Established => 2,
            FlowState::Closing => 3,
            FlowState::Closed => 4,
            FlowState::Udp(UdpState::Pending) => 5,
            FlowState::Udp(UdpState::Authorized) => 6,
        }
    }

    pub(crate) fn from_u8(v: u8) -> FlowState {
        match v {
            0 => FlowState::SynSent,
            1 => FlowState::SynAckSeen,
            2 => FlowState::Established,
            3 => FlowState::Closing,
            4 => FlowState::Closed,
            5 => FlowState::Udp(UdpState::Pending),
            _ => FlowState::Udp(UdpState::Authorized),
        }
    }
}

/// TCP header flags, as in the header's flag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    #[inline]
    pub fn has(self, f: u8) -> bool {
        self.0 & f != 0
    }
    #[inline]
    pub fn is_syn(self) -> bool {
        self.has(Self::SYN) && !self.has(Self::ACK)
    }
    #[inline]
    pub fn is_syn_ack(self) -> bool {
        self.has(Self::SYN) && self.has(Self::ACK)
    }
}

/// What a TCP packet was, in the flow's state. The caller acts on it
/// (insert or verify identity, forward, drop, reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpStep {
    /// The initiator's SYN again with the same sequence number.
    SynRetransmit,
    /// A SYN from the initiator with a new sequence number: the flow restarts
    /// in `SynSent` and should be decided again.
    NewSyn,
    /// The responder's first SYN-ACK: identity to verify or insert.
    SynAck,
    /// The same SYN-ACK again (same sequence number).
    SynAckRetransmit,
    /// The initiator's ACK completing the handshake.
    Established,
    /// A packet of an established or closing flow.
    Data,
    /// A FIN; the flow is now `Closing` or, if it was the second, `Closed`.
    Fin,
    /// A RST; the flow is now `Closed`.
    Rst,
    /// A packet that does not fit the state (e.g. data before the handshake
    /// completed, a SYN-ACK from the initiator, a SYN from the responder).
    OutOfState,
}
