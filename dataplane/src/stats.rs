//! Counters: one slot per way a packet can end.
//!
//! Each worker owns its counters and is their only writer; the control thread
//! reads them. A single writer needs no read-modify-write instruction, so an
//! update is a relaxed load and a relaxed store (no `lock` prefix on x86), and
//! workers add their per-burst totals once per burst.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Side;

/// A monotonically increasing counter with exactly one writer.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Sets a gauge. Only the owning worker may call this.
    #[inline(always)]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Reads the current value (any thread).
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a packet was dropped. Every drop the gateway makes has exactly one.
/// `ALL`, `COUNT` and `name()` list every variant: the report and the JSON
/// counters print them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// The transmit queue of the opposite port did not take the packet.
    TxFull = 0,
    /// The ring to the worker that owns the packet's flow was full.
    HandoffFull,
    /// The frame does not parse (any `wire::Malformed`), or its identity option is malformed.
    Malformed,
    /// A fragment of a TCP segment: handshakes are never fragmented and TCP
    /// stacks set DF, so fragments are refused rather than judged without ports.
    TcpFragment,
    /// Neither end is a local PU (and no excluded network covers it).
    NoLocalPu,
    /// A handshake retransmission lost the identity the flow was verified with.
    NoIdentity,
    /// The identity option's MAC does not verify (forged, or copied from another connection).
    IdentityBadMac,
    /// No receive key has the option's key id.
    IdentityUnknownKey,
    /// The key exists but is outside its validity window.
    IdentityExpiredKey,
    /// The option's format version is not ours.
    IdentityBadVersion,
    /// The identity is verified but the directory says another peer owns it.
    IdentityNotAllowedForPeer,
    /// The verified identity is not in the directory.
    UnknownIdentity,
    /// An enforced reject rule matched the remote identity.
    PolicyReject,
    /// An enforced reject rule matched an external network of the remote address.
    ExternalNetworkReject,
    /// No rule matched (implicit reject).
    NoMatch,
    /// Only observe rules matched (implicit reject, observed action reported).
    ObservedOnly,
    /// The SYN's options leave no room for the 20-byte identity option.
    IdentityNoRoom,
    /// The buffer has no headroom/tailroom for the longer frame.
    IdentityBufferFull,
    /// A packet from a local PU already carries an identity option (spoofing).
    IdentityAlreadyPresent,
    /// No flow entry could be made (table full of established flows).
    FlowTableFull,
    /// A non-handshake packet (or a SYN of an established flow) carries an
    /// identity option: a middlebox or attacker replay.
    Replay,
    /// A TCP packet that does not fit its flow's state (e.g. data before the handshake).
    OutOfState,
    /// A TCP packet with no flow state (e.g. mid-stream after a restart) the
    /// external-network ACLs do not allow.
    NoFlowState,
    /// UDP: the peer gateway answered the handshake with a signed reject
    /// (its PU's incoming rules refused the flow); held datagrams are dropped.
    UdpRejectedByPeer,
    /// UDP: the flow's hold queue (`hold_per_flow`) is full while its
    /// handshake is pending.
    UdpHoldQueueFull,
    /// UDP: the worker holds `hold_total` datagrams of pending flows already.
    UdpHoldTotalFull,
    /// UDP: every pending-handshake slot of the worker (`pending`) is in use.
    UdpPendingFull,
    /// UDP: a datagram from the network for a flow whose handshake this
    /// gateway has not finished (the peer cannot have sent it legitimately).
    UdpNotAuthorized,
    /// UDP: a handshake message that fits no flow here (a response with no
    /// pending handshake, a request for a flow this side initiated), or one
    /// that answers an older request (its echo is not the pending nonce).
    UdpUnexpectedHandshake,
    /// A second identity option after the one that verified (only one may
    /// travel; the second would reach the workload).
    IdentityDuplicate,
    /// The second reset of a reset-both-ends (to the client) was made but
    /// the pool had no mbuf for it (counted as made, then dropped).
    RstNoMbuf,
    /// A UDP handshake message (request, retransmission) was made but the
    /// pool had no mbuf for it (counted as made, then dropped).
    UdpHandshakeNoMbuf,
    /// A TCP SYN (or, at layer 4, the first segment) from an address inside a
    /// peer's `networks` arrived without identity and the external-network
    /// rules refused it: identity was lost on the path (not `no_match`).
    NoIdentityFromPeer,
    /// Layer 4: a record's MAC does not verify (forged, or copied from another
    /// connection: the MAC binds the tuple and both ISNs).
    L4RecordBadMac,
    /// Layer 4: no receive key has the record's key id.
    L4RecordUnknownKey,
    /// Layer 4: the record's key is outside its validity window.
    L4RecordExpiredKey,
    /// Layer 4: the record's format version is not ours.
    L4RecordBadVersion,
    /// Layer 4: the first bytes of the peer gateway's direction of the stream
    /// are not its record (a segment before it, or one that does not start
    /// with it, while the exchange is pending).
    L4RecordMissing,
    /// Layer 4: a workload's segment before the exchange completed (its TCP
    /// retransmits it; nothing unauthenticated is delivered).
    L4Pending,
    /// Layer 4: the peer gateway's record arrived split across segments (a
    /// re-segmenting middlebox): a segment at the stream's start holding only
    /// the record's first bytes, or one starting inside the record. Not
    /// reassembled: dropped (docs/identity-l4.md).
    L4RecordSplit,
    /// Told in flow events only, never counted as a drop (the reset is
    /// forwarded; the count is the note `peer_refused`): the far side
    /// reset our PU's connection before it was decided (its gateway refused it).
    RefusedByPeer,
    /// TCP without flow state (a restart mid-connection) between our PU and a
    /// peer's networks, layer 4 on: the connection may have been shifted by
    /// the layer-4 exchange, which this gateway no longer knows, so it is not
    /// re-created by address (that could skip or repeat 20 bytes of the
    /// stream silently); the sender is reset instead (docs/identity-l4.md).
    NoFlowStateFromPeer,
}

impl DropReason {
    pub const ALL: [DropReason; 42] = [
        DropReason::TxFull,
        DropReason::HandoffFull,
        DropReason::Malformed,
        DropReason::TcpFragment,
        DropReason::NoLocalPu,
        DropReason::NoIdentity,
        DropReason::IdentityBadMac,
        DropReason::IdentityUnknownKey,
        DropReason::IdentityExpiredKey,
        DropReason::IdentityBadVersion,
        DropReason::IdentityNotAllowedForPeer,
        DropReason::UnknownIdentity,
        DropReason::PolicyReject,
        DropReason::ExternalNetworkReject,
        DropReason::NoMatch,
        DropReason::ObservedOnly,
        DropReason::IdentityNoRoom,
        DropReason::IdentityBufferFull,
        DropReason::IdentityAlreadyPresent,
        DropReason::FlowTableFull,
        DropReason::Replay,
        DropReason::OutOfState,
        DropReason::NoFlowState,
        DropReason::UdpRejectedByPeer,
        DropReason::UdpHoldQueueFull,
        DropReason::UdpHoldTotalFull,
        DropReason::UdpPendingFull,
        DropReason::UdpNotAuthorized,
        DropReason::UdpUnexpectedHandshake,
        DropReason::IdentityDuplicate,
        DropReason::RstNoMbuf,
        DropReason::UdpHandshakeNoMbuf,
        DropReason::NoIdentityFromPeer,
        DropReason::L4RecordBadMac,
        DropReason::L4RecordUnknownKey,
        DropReason::L4RecordExpiredKey,
        DropReason::L4RecordBadVersion,
        DropReason::L4RecordMissing,
        DropReason::L4Pending,
        DropReason::L4RecordSplit,
        DropReason::RefusedByPeer,
        DropReason::NoFlowStateFromPeer,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// A stable snake_case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TxFull => "tx_full",
            DropReason::HandoffFull => "handoff_full",
            DropReason::Malformed => "malformed",
            DropReason::TcpFragment => "tcp_fragment",
            DropReason::NoLocalPu => "no_local_pu",
            DropReason::NoIdentity => "no_identity",
            DropReason::IdentityBadMac => "identity_bad_mac",
            DropReason::IdentityUnknownKey => "identity_unknown_key",
            DropReason::IdentityExpiredKey => "identity_expired_key",
            DropReason::IdentityBadVersion => "identity_bad_version",
            DropReason::IdentityNotAllowedForPeer => "identity_not_allowed_for_peer",
            DropReason::UnknownIdentity => "unknown_identity",
            DropReason::PolicyReject => "policy_reject",
            DropReason::ExternalNetworkReject => "external_network_reject",
            DropReason::NoMatch => "no_match",
            DropReason::ObservedOnly => "observed_only",
            DropReason::IdentityNoRoom => "identity_no_room",
            DropReason::IdentityBufferFull => "identity_buffer_full",
            DropReason::IdentityAlreadyPresent => "identity_already_present",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::Replay => "replay",
            DropReason::OutOfState => "out_of_state",
            DropReason::NoFlowState => "no_flow_state",
            DropReason::UdpRejectedByPeer => "udp_rejected_by_peer",
            DropReason::UdpHoldQueueFull => "udp_hold_queue_full",
            DropReason::UdpHoldTotalFull => "udp_hold_total_full",
            DropReason::UdpPendingFull => "udp_pending_full",
            DropReason::UdpNotAuthorized => "udp_not_authorized",
            DropReason::UdpUnexpectedHandshake => "udp_unexpected_handshake",
            DropReason::IdentityDuplicate => "identity_duplicate",
            DropReason::RstNoMbuf => "rst_no_mbuf",
            DropReason::UdpHandshakeNoMbuf => "udp_handshake_no_mbuf",
            DropReason::NoIdentityFromPeer => "no_identity_from_peer",
            DropReason::L4RecordBadMac => "l4_record_bad_mac",
            DropReason::L4RecordUnknownKey => "l4_record_unknown_key",
            DropReason::L4RecordExpiredKey => "l4_record_expired_key",
            DropReason::L4RecordBadVersion => "l4_record_bad_version",
            DropReason::L4RecordMissing => "l4_record_missing",
            DropReason::L4Pending => "l4_pending",
            DropReason::L4RecordSplit => "l4_record_split",
            DropReason::RefusedByPeer => "refused_by_peer",
            DropReason::NoFlowStateFromPeer => "no_flow_state_from_peer",
        }
    }

    /// From its `repr(u8)` value (flow events carry it as a byte).
    pub fn from_u8(v: u8) -> Option<DropReason> {
        Self::ALL.get(usize::from(v)).copied()
    }
}

/// Things worth counting that are not drops: decisions that let traffic
/// through, and what the engine did to packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Note {
    /// An identity option was added to a SYN or SYN-ACK.
    IdentityInserted = 0,
    /// An identity option verified (and was stripped).
    IdentityVerified,
    /// A connection was allowed by a rule matching the remote identity.
    PolicyAllow,
    /// A connection was allowed by a rule matching an external network.
    ExternalNetworkAllow,
    /// A SYN to a managed network with no peer whose `networks` contain the
    /// destination: no identity sent; the external-network ACLs decided.
    NoPeerForDestination,
    /// A peer covers the destination but none of its keys is valid now: no
    /// identity sent; the external-network ACLs decided.
    NoKeyForPeer,
    /// A TCP packet without flow state allowed by the ACLs (flow re-created).
    NoFlowStateAllowed,
    /// A cached verdict was decided again under a new policy snapshot.
    Redecided,
    /// A RST was sent back (to the client, or to both ends).
    RstSent,
    /// Passed untouched: an end is in an excluded network.
    Excluded,
    /// Passed untouched: the local PU is ignored by the enforcer profile.
    Ignored,
    /// Passed untouched: not IP (ARP, …) or IPv6 neighbour discovery.
    NotIpOrNd,
    /// Flow events the worker could not queue (the drain is behind).
    EventsLost,
    /// UDP: a datagram was held while its flow's handshake is pending.
    UdpHeld,
    /// UDP: a handshake request was sent (first try).
    UdpRequestSent,
    /// UDP: a handshake request was sent again (no answer within its backoff).
    UdpRequestRetransmit,
    /// UDP: a signed response was sent to a verified, allowed request.
    UdpResponseSent,
    /// UDP: a signed reject was sent to a verified request the PU's incoming rules refuse.
    UdpRejectSent,
    /// UDP: a response (or reject) verified and finished a pending handshake.
    UdpHandshakeDone,
    /// UDP: no answer after the last retransmit; the external-network ACLs decided.
    UdpHandshakeTimeout,
    /// UDP: held datagrams released in order after the flow was allowed.
    UdpReleased,
    /// UDP: a second answer to a finished handshake (e.g. to a retransmitted
    /// request), consumed.
    UdpDuplicateAnswer,
    /// A RST was not sent: the worker's reset budget for its kind of
    /// receiver was spent (`[resets]`). The frame was dropped all the same.
    RstSuppressed,
    /// UDP: a signed reject was not sent (reset budget spent); the request
    /// was consumed all the same.
    UdpRejectSuppressed,
    /// Frames the gateway made (resets, UDP handshake messages), counted in
    /// `tx_packets` of this direction when sent, or in its drops when not
    /// (`tx_full`, `rst_no_mbuf`, `udp_handshake_no_mbuf`): for every
    /// direction, `rx + made = tx + drops + consumed` (+ frames still held).
    FramesMade,
    /// Frames received that ended at the gateway, neither forwarded nor
    /// dropped: handshake messages for it (a request answered in place is
    /// consumed, its answer made).
    FramesConsumed,
    /// Layer 4: our record was sent (first, or again for a retransmission).
    L4RecordSent,
    /// Layer 4: the peer's record verified and was removed from the stream.
    L4RecordVerified,
    /// Layer 4 chosen: the SYN had no room for the option.
    L4NoRoom,
    /// Layer 4 chosen: our SYN carried the option and the SYN-ACK from a managed
    /// peer network came back without one (a stripping path, now cached).
    L4Stripped,
    /// Layer 4 chosen: the destination is in the cache of stripping paths.
    L4Cached,
    /// Layer 4 accepted (our PU is the server): the SYN came without identity
    /// from a peer's networks, the peer's record verified.
    L4FromPeer,
    /// Layer 4: a workload segment with data became the record's carrier (its
    /// data is dropped for its TCP to retransmit).
    L4DataReplaced,
    /// The cache of stripping paths learned (or refreshed) a destination.
    L4CacheLearned,
    /// A live entry of the cache of stripping paths was replaced (cache too small).
    L4CacheEvicted,
    /// Layer 4 pending at our server but the client's gateway sent no record:
    /// the external-network rules decided.
    L4PeerWithoutRecord,
    /// Our PU's connection was reset by the far side (its gateway refused it)
    /// before the handshake or the layer-4 exchange completed (told in a flow event).
    PeerRefused,
    /// Layer 4: a segment of our PU held while the exchange is pending (its
    /// sequence numbers already shifted), our record sent again beside it.
    L4Held,
    /// Layer 4: held segments released in order when the peer's record verified.
    L4Released,
    /// Layer 4: our record sent again by the hold's timer (the backoff of
    /// `[udp_handshake]`), the peer's record not yet come (also counted in
    /// `l4_record_sent`).
    L4RecordResent,
    /// Of `identity_verified`, the TCP options of format version 1 (HMAC):
    /// when it stays at zero on every gateway, no peer signs version 1 any
    /// more (`docs/identity-option.md`, "Rolling upgrade"). Last, so that
    /// the other notes keep their numbers.
    IdentityVerifiedV1,
}

impl Note {
    pub const ALL: [Note; 41] = [
        Note::IdentityInserted,
        Note::IdentityVerified,
        Note::PolicyAllow,
        Note::ExternalNetworkAllow,
        Note::NoPeerForDestination,
        Note::NoKeyForPeer,
        Note::NoFlowStateAllowed,
        Note::Redecided,
        Note::RstSent,
        Note::Excluded,
        Note::Ignored,
        Note::NotIpOrNd,
        Note::EventsLost,
        Note::UdpHeld,
        Note::UdpRequestSent,
        Note::UdpRequestRetransmit,
        Note::UdpResponseSent,
        Note::UdpRejectSent,
        Note::UdpHandshakeDone,
        Note::UdpHandshakeTimeout,
        Note::UdpReleased,
        Note::UdpDuplicateAnswer,
        Note::RstSuppressed,
        Note::UdpRejectSuppressed,
        Note::FramesMade,
        Note::FramesConsumed,
        Note::L4RecordSent,
        Note::L4RecordVerified,
        Note::L4NoRoom,
        Note::L4Stripped,
        Note::L4Cached,
        Note::L4FromPeer,
        Note::L4DataReplaced,
        Note::L4CacheLearned,
        Note::L4CacheEvicted,
        Note::L4PeerWithoutRecord,
        Note::PeerRefused,
        Note::L4Held,
        Note::L4Released,
        Note::L4RecordResent,
        Note::IdentityVerifiedV1,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            Note::IdentityInserted => "identity_inserted",
            Note::IdentityVerified => "identity_verified",
            Note::IdentityVerifiedV1 => "identity_verified_v1",
            Note::PolicyAllow => "policy_allow",
            Note::ExternalNetworkAllow => "external_network_allow",
            Note::NoPeerForDestination => "no_peer_for_destination",
            Note::NoKeyForPeer => "no_key_for_peer",
            Note::NoFlowStateAllowed => "no_flow_state_allowed",
            Note::Redecided => "redecided",
            Note::RstSent => "rst_sent",
            Note::Excluded => "excluded",
            Note::Ignored => "ignored",
            Note::NotIpOrNd => "not_ip_or_nd",
            Note::EventsLost => "events_lost",
            Note::UdpHeld => "udp_held",
            Note::UdpRequestSent => "udp_request_sent",
            Note::UdpRequestRetransmit => "udp_request_retransmit",
            Note::UdpResponseSent => "udp_response_sent",
            Note::UdpRejectSent => "udp_reject_sent",
            Note::UdpHandshakeDone => "udp_handshake_done",
            Note::UdpHandshakeTimeout => "udp_handshake_timeout",
            Note::UdpReleased => "udp_released",
            Note::UdpDuplicateAnswer => "udp_duplicate_answer",
            Note::RstSuppressed => "rst_suppressed",
            Note::UdpRejectSuppressed => "udp_reject_suppressed",
            Note::FramesMade => "frames_made",
            Note::FramesConsumed => "frames_consumed",
            Note::L4RecordSent => "l4_record_sent",
            Note::L4RecordVerified => "l4_record_verified",
            Note::L4NoRoom => "l4_no_room",
            Note::L4Stripped => "l4_stripped",
            Note::L4Cached => "l4_cached",
            Note::L4FromPeer => "l4_from_peer",
            Note::L4DataReplaced => "l4_data_replaced",
            Note::L4CacheLearned => "l4_cache_learned",
            Note::L4CacheEvicted => "l4_cache_evicted",
            Note::L4PeerWithoutRecord => "l4_peer_without_record",
            Note::PeerRefused => "peer_refused",
            Note::L4Held => "l4_held",
            Note::L4Released => "l4_released",
            Note::L4RecordResent => "l4_record_resent",
        }
    }
}

/// Counters for one direction of one worker (packets received from one port).
#[derive(Debug)]
pub struct DirStats {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    pub drops: [Counter; DropReason::COUNT],
    pub notes: [Counter; Note::COUNT],
}

// By hand: `Default` is derived for arrays of at most 32 elements.
impl Default for DirStats {
    fn default() -> Self {
        DirStats {
            rx_packets: Counter::default(),
            rx_bytes: Counter::default(),
            tx_packets: Counter::default(),
            tx_bytes: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
            notes: std::array::from_fn(|_| Counter::default()),
        }
    }
}

impl DirStats {
    #[inline]
    pub fn note_count(&self, n: Note) -> &Counter {
        &self.notes[n as usize]
    }

    #[inline]
    pub fn drop_count(&self, r: DropReason) -> &Counter {
        &self.drops[r as usize]
    }

    /// The values now, as plain numbers.
    pub fn read(&self) -> DirCounts {
        DirCounts {
            rx_packets: self.rx_packets.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
            drops: std::array::from_fn(|i| self.drops[i].get()),
            notes: std::array::from_fn(|i| self.notes[i].get()),
        }
    }
}

/// A copy of [`DirStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirCounts {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
    pub notes: [u64; Note::COUNT],
}

impl Default for DirCounts {
    fn default() -> Self {
        DirCounts {
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            drops: [0; DropReason::COUNT],
            notes: [0; Note::COUNT],
        }
    }
}

impl DirCounts {
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub fn noted(&self, n: Note) -> u64 {
        self.notes[n as usize]
    }
}

/// A latency histogram a worker records into without allocating: 256
/// counters, log-linear with 4 sub-buckets per power of two (a value is
/// counted in a bucket within 25% of it). The control thread reads it.
pub struct LatencyHist {
    buckets: [Counter; LatencyHist::BUCKETS],
}

impl LatencyHist {
    pub const BUCKETS: usize = 256;

    #[inline]
    fn index(v: u64) -> usize {
        if v < 4 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as usize; // >= 2
        4 * (e - 1) + ((v >> (e - 2)) & 3) as usize
    }

    /// The smallest value counted in bucket `i`.
    pub fn bucket_low(i: usize) -> u64 {
        if i < 4 {
            return i as u64;
        }
        let (e, m) = (i / 4 + 1, (i % 4) as u64);
        (4 + m) << (e - 2)
    }

    /// Counts `v`. Only the owning worker may call this.
    #[inline]
    pub fn record(&self, v: u64) {
        self.buckets[Self::index(v)].add(1);
    }

    /// (smallest value of the bucket, count) of every non-empty bucket.
    pub fn read(&self) -> Vec<(u64, u64)> {
        (0..Self::BUCKETS)
            .filter_map(|i| {
                let c = self.buckets[i].get();
                (c > 0).then(|| (Self::bucket_low(i), c))
            })
            .collect()
    }
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist { buckets: std::array::from_fn(|_| Counter::default()) }
    }
}

impl std::fmt::Debug for LatencyHist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.read()).finish()
    }
}

/// A worker's counters: `from_inside` counts frames received on the inside port
/// (workload → network), `from_outside` the reverse.
///
/// Aligned to a cache line: the counters the worker writes never share a
/// line with anything another thread writes (the `Arc`'s reference counts,
/// which come first in its allocation, or a heap neighbour's malloc header
/// or data), so the control thread's reads are the only traffic on them.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerStats {
    pub from_inside: DirStats,
    pub from_outside: DirStats,
    /// Frames handed to the worker that owns their flow.
    pub handed_off: Counter,
    /// Frames received from other workers' hand-off rings.
    pub handed_in: Counter,
    /// Poll iterations that received nothing on any queue.
    pub idle_polls: Counter,
    /// Poll iterations in total.
    pub polls: Counter,
    /// Flows in the worker's table (a gauge, set once per burst) and its size.
    pub flows_active: Counter,
    pub flow_capacity: Counter,
    /// Handshake flows evicted to make room for new ones (the table was full).
    pub flows_evicted: Counter,
    /// Ended verified connections remembered against replay, and those
    /// forgotten before their window ended (the memory was too small).
    pub replay_remembered: Counter,
    pub replay_overwritten: Counter,
    /// Datagrams from the inside held for pending UDP handshakes now (a gauge).
    pub held: Counter,
    /// At the client's gateway: SYN (flow created) to SYN-ACK from the
    /// network, in ns of the workers' per-burst clock.
    pub handshake_ns: LatencyHist,
    /// What the worker saw of DNS (`engine::dns`).
    pub dns: crate::dns::counters::DnsCounters,
    /// The worker's kernel thread id (0 until it starts; set once): the
    /// control plane reads the time the kernel gave the thread from it
    /// (`/proc/self/task/<tid>/schedstat`), which shows a worker whose core
    /// is shared with other tasks.
    pub os_thread: Counter,
}

impl WorkerStats {
    /// The counters of frames received on `side`'s port.
    #[inline(always)]
    pub fn dir(&self, side: Side) -> &DirStats {
        match side {
            Side::Inside => &self.from_inside,
            Side::Outside => &self.from_outside,
        }
    }

    /// The values now, as plain numbers.
    pub fn read(&self) -> WorkerCounts {
        WorkerCounts {
            from_inside: self.from_inside.read(),
            from_outside: self.from_outside.read(),
            handed_off: self.handed_off.get(),
            handed_in: self.handed_in.get(),
            idle_polls: self.idle_polls.get(),
            polls: self.polls.get(),
            flows_active: self.flows_active.get(),
            flow_capacity: self.flow_capacity.get(),
            flows_evicted: self.flows_evicted.get(),
            replay_remembered: self.replay_remembered.get(),
            replay_overwritten: self.replay_overwritten.get(),
            held: self.held.get(),
            on_cpu_ns: 0,
        }
    }

    /// Records the calling thread's kernel id as the worker's (the worker
    /// calls this once when it starts; nothing when /proc is not mounted).
    pub fn record_os_thread(&self) {
        let tid = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u64>().ok()));
        if let Some(t) = tid {
            self.os_thread.set(t);
        }
    }
}

/// A copy of [`WorkerStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounts {
    pub from_inside: DirCounts,
    pub from_outside: DirCounts,
    pub handed_off: u64,
    pub handed_in: u64,
    pub idle_polls: u64,
    pub polls: u64,
    pub flows_active: u64,
    pub flow_capacity: u64,
    pub flows_evicted: u64,
    pub replay_remembered: u64,
    pub replay_overwritten: u64,
    pub held: u64,
    /// Time the kernel ran the worker's thread (ns since it started; 0 when
    /// unknown): filled in by the control plane, not by [`WorkerStats::read`].
    pub on_cpu_ns: u64,
}

impl WorkerCounts {
    /// The counts of frames received on `side`'s port.
    pub fn dir(&self, side: Side) -> &DirCounts {
        match side {
            Side::Inside => &self.from_inside,
            Side::Outside => &self.from_outside,
        }
    }

    /// For each direction (from inside, from outside): frames received plus
    /// frames made, minus frames sent, dropped, consumed and (from the
    /// inside) still held. Zero when every frame is accounted for; frames in
    /// flight (in a burst or a hand-off ring) while the worker runs make it
    /// move, and a worker's hand-offs are counted by the worker that takes
    /// them, so compare sums over all workers after they stopped.
    pub fn unaccounted(&self) -> [i128; 2] {
        let d = |c: &DirCounts| {
            i128::from(c.rx_packets) + i128::from(c.noted(Note::FramesMade))
                - i128::from(c.tx_packets)
                - i128::from(c.dropped_total())
                - i128::from(c.noted(Note::FramesConsumed))
        };
        [d(&self.from_inside) - i128::from(self.held), d(&self.from_outside)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_within_a_quarter() {
        for v in [0u64, 1, 3, 4, 5, 7, 8, 9, 15, 16, 100, 1000, 123_456, 10_000_000, u64::MAX] {
            let i = LatencyHist::index(v);
            assert!(i < LatencyHist::BUCKETS, "{v}");
            let low = LatencyHist::bucket_low(i);
            assert!(low <= v && (v - low) <= v / 4, "{v} in bucket {i} from {low}");
            assert_eq!(LatencyHist::index(low), i, "{v}");
        }
        let h = LatencyHist::default();
        h.record(1000);
        h.record(1001);
        h.record(5);
        assert_eq!(h.read(), vec![(5, 1), (896, 2)]);
    }

    #[test]
    fn counter_accumulates() {
        let c = Counter::default();
        c.add(3);
        c.add(4);
        assert_eq!(c.get(), 7);
    }

    #[test]
    fn drop_slots_are_distinct() {
        let s = DirStats::default();
        s.drop_count(DropReason::TxFull).add(2);
        s.drop_count(DropReason::HandoffFull).add(5);
        let c = s.read();
        assert_eq!(c.dropped(DropReason::TxFull), 2);
        assert_eq!(c.dropped(DropReason::HandoffFull), 5);
        assert_eq!(c.dropped_total(), 7);
        let mut names = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in discriminant order");
            assert_eq!(DropReason::from_u8(i as u8), Some(*r));
            assert!(names.insert(r.name()), "{} twice", r.name());
        }
        for (i, n) in Note::ALL.iter().enumerate() {
            assert_eq!(*n as usize, i);
            assert!(names.insert(n.name()), "{} twice", n.name());
        }
    }
}
