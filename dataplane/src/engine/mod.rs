//! The per-packet engine: identity and policy on TCP handshakes and UDP
//! identity handshakes, cached verdicts for everything after. Pure Rust over
//! [`PacketBuf`](crate::buf::PacketBuf): the worker runs it on mbufs, tests on
//! [`crate::buf::VecBuf`].
//!
//! One call per frame: [`Engine::process`] parses it once, finds its flow,
//! and returns what to do with it. An established packet costs one parse, one
//! flow lookup and a look at the cached verdict; no byte of it changes.
//!
//! The path a packet takes, one file each:
//!
//! - `process`: the dispatcher. The look ahead (flow key and
//!   table prefetch from the plain headers), the fast path, the full parse,
//!   the local PU's classification, and the choice of one of the paths below.
//!   Everything after the classification reads one packet context
//!   (`context`: configuration, side, parsed summary, flow key, local PU,
//!   policy generation, time).
//! - `established`: a packet of a flow already decided (the fast path and
//!   every other way there): one lookup, the flow's state step, the cached
//!   verdict.
//! - `syn` and `syn_ack`: the TCP handshake, where identity is inserted,
//!   verified and judged.
//! - `no_state`: TCP of no known flow (mid-stream after a restart).
//! - `other`: UDP without a handshake, ICMP and other protocols, decided by
//!   the ACLs on the first packet each way.
//! - [`l4`]: the layer-4 identity exchange, where the option cannot travel
//!   (`docs/identity-l4.md`): an in-band record and a sequence shift.
//! - [`udp`]: the UDP identity handshake (its pending pool and timers, its
//!   frames, the client's and the server's side).
//! - `record`: how a packet's end is counted (one drop reason or note) and
//!   told (flow events), and the replies within the reset budget; `reasons`
//!   maps policy and identity errors to drop reasons.
//! - `sweep`: idle flows ended, `End` events, replay memory.
//! - [`dns`]: forwarded frames to or from port 53: queries remembered,
//!   responses read into DNS events and FQDN learning.
//!
//! What happens to a frame (the semantics are documented in `docs/config.md`,
//! "The packet path"):
//!
//! - Not IP (ARP, …) and IPv6 neighbour discovery: forwarded untouched.
//! - Either end in an excluded network, or the local PU ignored: forwarded
//!   untouched, no flow, no event.
//! - No local PU at the inside end (the source of a frame from the inside
//!   port, the destination of one from the outside port): dropped
//!   (`no_local_pu`). The gateway fails closed; traffic that must cross it
//!   without a PU belongs in `excluded_networks`.
//! - TCP SYN from a PU (it is the client) to a managed network: the PU's
//!   identity is inserted, signed with the pairwise key towards the peer whose
//!   `networks` contain the destination. No such peer (or no valid key): no
//!   identity, and the external-network ACLs decide at once.
//! - TCP SYN to a PU (it is the server): an identity option is verified (MAC,
//!   key, key window, identity owned by the sending peer) and stripped; the PU's
//!   incoming rules decide; a reject drops the SYN and answers the client with
//!   a RST. No option: the ACLs decide. An option that does not verify: drop
//!   (no RST: the source may be spoofed).
//! - The server PU's SYN-ACK gets the PU's identity (towards the peer that
//!   owns the client's verified identity), signed with our key paired with
//!   the peer key the SYN was signed with, so that during a key rotation a
//!   peer still on its old key verifies it.
//! - The client PU's gateway verifies and strips the SYN-ACK's identity and
//!   judges it against the PU's outgoing rules; a reject drops it and resets
//!   both ends. No option: the ACLs decide (unless they already did at the SYN).
//! - SYN and SYN-ACK retransmissions are handled again in full (re-insert with
//!   the same key; the MAC binds the sequence numbers, so they verify again).
//! - Any non-handshake packet carrying an identity option, or the flow's own
//!   SYN replayed once established, is dropped (`replay`).
//! - TCP without flow state (mid-stream after a restart): the ACLs decide with
//!   the lower port taken as the server's; allowed flows are re-created as
//!   established, others dropped (`no_flow_state`).
//! - UDP from a PU to a managed UDP network with a peer: held while a signed
//!   identity handshake runs with the peer gateway ([`udp`],
//!   `docs/udp-handshake.md`). Other UDP, ICMP and other protocols of a PU:
//!   decided by the ACLs on the first packet each way (flow cached).
//! - A new policy snapshot (generation): flows decided under an older one are
//!   decided again on their next packet, with the same remote identity.

pub mod config;
mod context;
pub mod dns;
mod established;
mod fqdn;
pub mod l4;
mod no_state;
mod option_scan;
mod other;
mod process;
mod reasons;
mod record;
pub mod replay;
pub mod reply_limit;
pub mod rst;
pub mod rule_hits;
mod sweep;
mod syn;
mod syn_ack;
pub mod udp;

use std::sync::Arc;

pub use arc_swap::ArcSwap;
pub use config::EngineConfig;
pub use process::Looked;
pub use replay::ReplayMemory;
pub use reply_limit::{ReplyLimiter, ReplyLimits, Trust};
pub use rule_hits::RuleHits;
pub use sweep::{SWEEP_MAX, SWEEP_PASS_NS};

use crate::events::Producer;
use crate::flow::FlowTable;
use crate::stats::{DropReason, WorkerStats};

/// What the caller does with the frame after [`Engine::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transmit it on the opposite port.
    Forward,
    /// Free it (the reason is already counted).
    Drop(DropReason),
    /// The frame was dropped for the reason given, and the buffer now holds
    /// the gateway's answer (a RST, or a UDP signed reject): transmit it on
    /// the port it came from.
    Reply(DropReason),
    /// The buffer now holds a RST for the port it came from, and
    /// [`Engine::extra_frame`] another for the opposite port (reset both ends).
    ReplyAndReset(DropReason),
    /// Keep the frame in hold slot `n` (after the frames already there) until
    /// an [`udp::Effect`] releases or discards the slot (UDP handshake pending).
    Hold(u32),
    /// The frame was a handshake message for this gateway: free it (not a drop).
    Consume,
    /// The buffer now holds a handshake answer: transmit it on the port it came from.
    Answer,
}

/// One worker's engine: its flow table, its event queue, its counters.
pub struct Engine {
    table: FlowTable,
    events: Option<Producer>,
    stats: Arc<WorkerStats>,
    /// The second reset of an [`Action::ReplyAndReset`].
    extra: [u8; rst::MAX_RST],
    extra_len: usize,
    udp: udp::UdpHandshake,
    /// Ended verified connections, against replays of their SYNs.
    replay: ReplayMemory,
    /// The budget for resets and signed rejects.
    replies: ReplyLimiter,
    /// Time up to which the sweep has examined its share of slots.
    swept_at: u64,
    /// This worker's row in the policy's rule-hit slots ([`RuleHits`]).
    worker: usize,
    /// Destinations whose path strips the identity option (layer 4 at once).
    l4_cache: l4::StripCache,
    /// Queries seen going out (`dns`).
    dns: dns::DnsState,
}

impl Engine {
    /// An engine with a flow table of `flows` entries (allocated now, never
    /// again), counting into `stats` and queueing flow events into `events`.
    pub fn new(flows: usize, seed: u64, stats: Arc<WorkerStats>, events: Option<Producer>) -> Engine {
        let ended = (flows / 4).clamp(64, 65536);
        let table = FlowTable::new(flows, ended, seed, crate::flow::Timeouts::default());
        stats.flow_capacity.set(table.capacity() as u64);
        // As many remembered connections as flows, up to the default.
        let replay_slots = flows.clamp(64, replay::DEFAULT_SLOTS);
        Engine {
            table,
            events,
            stats,
            extra: [0; rst::MAX_RST],
            extra_len: 0,
            udp: udp::UdpHandshake::new(udp::UdpConfig::default(), seed),
            replay: ReplayMemory::new(replay_slots, replay::DEFAULT_WINDOW_S, seed),
            replies: ReplyLimiter::default(),
            swept_at: 0,
            worker: 0,
            l4_cache: l4::StripCache::new(seed),
            dns: dns::DnsState::default(),
        }
    }

    /// Which worker this engine runs on (its row in the policy's [`RuleHits`]).
    pub fn set_worker(&mut self, index: usize) {
        self.worker = index;
    }

    /// Replaces the replay memory (before the engine runs): `slots`
    /// connections (0: none remembered), each for `window_s` seconds after it
    /// ended.
    pub fn set_replay_memory(&mut self, slots: usize, window_s: u32, seed: u64) {
        self.replay = ReplayMemory::new(slots, window_s, seed);
    }

    pub fn replay_memory(&self) -> &ReplayMemory {
        &self.replay
    }

    /// Replaces the budgets for resets and signed rejects. Every problem is
    /// returned, naming its field.
    pub fn set_reply_limits(&mut self, l: ReplyLimits) -> Result<(), Vec<String>> {
        let p = l.problems();
        if !p.is_empty() {
            return Err(p);
        }
        self.replies = ReplyLimiter::new(l);
        Ok(())
    }

    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// The second reset of an [`Action::ReplyAndReset`], for the opposite port.
    pub fn extra_frame(&self) -> &[u8] {
        &self.extra[..self.extra_len]
    }

    /// Makes the flow events queued so far visible to the control thread
    /// (the worker calls it once per round of bursts; see [`Producer`]).
    #[inline]
    pub fn publish_events(&mut self) {
        if let Some(p) = self.events.as_mut() {
            p.publish();
        }
    }

    /// Hands `hint` the lines of the next `k` event slots
    /// ([`Producer::next_slots`]).
    #[inline]
    pub fn prefetch_events(&self, k: usize, hint: impl Fn(*const u8)) {
        if let Some(p) = self.events.as_ref() {
            p.next_slots(k, hint);
        }
    }
}

#[cfg(test)]
mod dns_tests;
#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod test_harness;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod version_tests;
