//! The per-packet engine: identity and policy on TCP handshakes, cached
//! verdicts for everything after. Pure Rust over [`PacketBuf`]: the worker
//! runs it on mbufs, tests on [`crate::buf::VecBuf`].
//!
//! One call per frame: [`Engine::process`] parses it once, finds its flow,
//! and returns what to do with it. An established packet costs one parse, one
//! flow lookup and a look at the cached verdict; no byte of it changes.
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
//! - UDP, ICMP and other protocols of a PU: decided by the ACLs on the first
//!   packet each way (flow cached); UDP identity comes with issue 6.
//! - A new policy snapshot (generation): flows decided under an older one are
//!   decided again on their next packet, with the same remote identity.

pub mod config;
pub mod replay;
pub mod reply_limit;
pub mod rst;
pub mod udp;

use std::net::IpAddr;
use std::sync::Arc;

pub use arc_swap::ArcSwap;
pub use config::EngineConfig;
pub use replay::ReplayMemory;
pub use reply_limit::{ReplyLimiter, ReplyLimits, Trust};

use crate::buf::PacketBuf;
use crate::events::{EventKind, FlowRecord, Producer};
use crate::flow::{FlowEntry, FlowKey, FlowState, FlowTable, NewFlow, TcpFlags, TcpStep, UdpState};
use crate::identity::{insert_tcp, option, verify_and_strip_tcp, RewriteError, VerifyError};
use crate::policy::{Classification, Decision, Direction, PolicySnapshot, PuId, Reason, Remote, Side};
use crate::stats::{DirStats, DropReason, Note, WorkerStats};
use crate::wire::{self, parse_frame, peek::peek, Addr, FrameInfo, L4Kind};

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

/// What [`Engine::look`] found in a frame, for [`Engine::process_looked`].
#[derive(Debug, Clone, Copy)]
pub struct Looked {
    key: FlowKey,
    h: u64,
    seq: u32,
    tcp_flags: u8,
    kind: LookKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LookKind {
    /// Not a shape [`peek`] reads: the full parse decides.
    NotPlain,
    /// A TCP SYN or SYN-ACK: the full path.
    Handshake,
    Tcp,
    /// TCP carrying an identity option outside the handshake.
    Replay,
    Udp,
}

impl Looked {
    pub const NOT_PLAIN: Looked = Looked::of(LookKind::NotPlain);
    const HANDSHAKE: Looked = Looked::of(LookKind::Handshake);

    const fn of(kind: LookKind) -> Looked {
        Looked { key: crate::flow::key::ZERO_KEY, h: 0, seq: 0, tcp_flags: 0, kind }
    }
}

/// One pass of [`Engine::sweep`] over the whole flow table takes about this
/// long, however often it is called: an idle flow ends within this much of
/// its timeout, and a busy worker does not re-read the table thousands of
/// times a second (a fixed budget per call did, at a cost per burst).
pub const SWEEP_PASS_NS: u64 = 1_000_000_000;

/// Most slots one [`Engine::sweep`] call examines (after a long pause the
/// backlog is dropped, not worked off in one burst's time).
pub const SWEEP_MAX: usize = 4096;

/// One worker's engine: its flow table, its event queue, its counters.
pub struct Engine {
    table: FlowTable,
    events: Option<Producer>,
    stats: Arc<WorkerStats>,
    extra: [u8; rst::MAX_RST],
    extra_len: usize,
    udp: udp::UdpHandshake,
    /// Ended verified connections, against replays of their SYNs.
    replay: ReplayMemory,
    /// The budget for resets and signed rejects.
    replies: ReplyLimiter,
    /// Time up to which the sweep has examined its share of slots.
    swept_at: u64,
}

fn drop_of_reason(r: Reason) -> DropReason {
    match r {
        Reason::PolicyReject => DropReason::PolicyReject,
        Reason::ExternalNetworkReject => DropReason::ExternalNetworkReject,
        Reason::ObservedOnly => DropReason::ObservedOnly,
        Reason::UnknownIdentity => DropReason::UnknownIdentity,
        Reason::UnknownPu => DropReason::NoLocalPu,
        _ => DropReason::NoMatch,
    }
}

fn drop_of_verify(e: VerifyError) -> DropReason {
    match e {
        VerifyError::NoIdentity => DropReason::NoIdentity,
        VerifyError::BadVersion => DropReason::IdentityBadVersion,
        VerifyError::UnknownKey => DropReason::IdentityUnknownKey,
        VerifyError::ExpiredKey => DropReason::IdentityExpiredKey,
        VerifyError::BadMac => DropReason::IdentityBadMac,
        VerifyError::NotApplicable | VerifyError::Malformed(_) => DropReason::Malformed,
    }
}

fn drop_of_rewrite(e: RewriteError) -> DropReason {
    match e {
        RewriteError::NoRoom => DropReason::IdentityNoRoom,
        RewriteError::BufferFull => DropReason::IdentityBufferFull,
        RewriteError::AlreadyPresent => DropReason::IdentityAlreadyPresent,
        RewriteError::Fragmented => DropReason::TcpFragment,
        _ => DropReason::Malformed,
    }
}

fn note_of_allow(d: &Decision) -> Note {
    if d.reason == Reason::ExternalNetworkAllow {
        Note::ExternalNetworkAllow
    } else {
        Note::PolicyAllow
    }
}

/// An IPv4 address as the IPv4-mapped IPv6 value flow keys store.
#[inline(always)]
fn v4_mapped(a: [u8; 4]) -> u128 {
    (0xffff_u128 << 32) | u128::from(u32::from_be_bytes(a))
}

fn ip(a: Addr) -> Option<IpAddr> {
    match a {
        Addr::V4(b) => Some(IpAddr::from(b)),
        Addr::V6(b) => Some(IpAddr::from(b)),
        Addr::None => None,
    }
}

/// Whether the TCP options (`len` bytes at `offset` in the frame) hold our
/// identity option. Options are walked as a host would; if the walk meets a
/// malformed option, the bytes after it are searched for the option's first
/// four bytes (kind, length, ExID), so that an option hidden behind a broken
/// one is still found: the gateway never lets one through to a workload.
#[inline]
fn has_identity_option(frame: &[u8], offset: u16, len: u8) -> bool {
    if usize::from(len) < option::TCP_LEN {
        return false;
    }
    let o = usize::from(offset);
    let Some(opts) = frame.get(o..o + usize::from(len)) else { return false };
    for r in wire::tcp::options(opts) {
        match r {
            Ok((_, wire::tcp::TcpOption::Experimental { kind: option::TCP_KIND, exid: option::EXID, .. })) => {
                return true
            }
            Ok(_) => {}
            Err(_) => return option_bytes_anywhere(opts),
        }
    }
    false
}

/// Whether `opts` holds the identity option's first four bytes at any offset.
#[cold]
fn option_bytes_anywhere(opts: &[u8]) -> bool {
    let [e0, e1] = option::EXID.to_be_bytes();
    let head = [option::TCP_KIND, option::TCP_LEN as u8, e0, e1];
    opts.windows(4).any(|w| w == head)
}

/// Whether the options of a frame whose identity option was just stripped
/// still hold one (a second copy). Only an options area that had room for two
/// (40 bytes) is parsed again.
fn second_identity_option(frame: &[u8], opts_len_before: u8) -> bool {
    if usize::from(opts_len_before) < 2 * option::TCP_LEN {
        return false;
    }
    match parse_frame(frame) {
        Ok(i) => has_identity_option(frame, i.tcp_opts_offset, i.tcp_opts_len),
        Err(_) => true,
    }
}

/// The server's port of a flow (the destination port of its first packet).
fn server_port(e: &FlowEntry) -> u16 {
    match e.initiator() {
        Side::Inside => e.key().outside_port,
        Side::Outside => e.key().inside_port,
    }
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
        }
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

    /// Remembers a connection that is leaving the table (ended, or replaced
    /// by a new SYN on its tuple) if a replay of its SYN would verify: its
    /// SYN came from the outside with a verified identity and it completed
    /// its handshake.
    #[inline]
    fn retire(replay: &mut ReplayMemory, e: &FlowEntry, now: u64) {
        if e.initiator() == Side::Outside && e.remote_identity().is_some() && e.was_established() {
            replay.remember(e.key(), e.syn_seq(), now);
        }
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

    /// Ends idle flows (a bounded amount of work, paced by [`SWEEP_PASS_NS`];
    /// call once per burst) and turns every ended flow into an `End` event.
    pub fn sweep(&mut self, now: u64) {
        // (u64 arithmetic: a 128-bit division per burst showed in profiles.
        // Elapsed time is capped at one pass, slots are < 2^32: no overflow.)
        let slots = self.table.slots() as u64;
        let elapsed = now.saturating_sub(self.swept_at).min(SWEEP_PASS_NS);
        let due = (elapsed * slots / SWEEP_PASS_NS) as usize;
        if due > 0 {
            self.table.sweep(now, due.min(SWEEP_MAX));
            // Keep the fraction of a slot not yet due, unless the backlog was dropped.
            self.swept_at = if due > SWEEP_MAX || elapsed == SWEEP_PASS_NS {
                now
            } else {
                self.swept_at + due as u64 * SWEEP_PASS_NS / slots
            };
        }
        while let Some(e) = self.table.pop_ended() {
            let en = &e.entry;
            Self::retire(&mut self.replay, en, e.at);
            let mut r =
                FlowRecord::new(EventKind::End, e.at, *en.key(), en.initiator(), en.pu().0, en.policy_generation());
            r.verdict = *en.verdict();
            r.remote_identity = en.remote_identity();
            let (pi, bi) = en.counters(Side::Inside);
            let (po, bo) = en.counters(Side::Outside);
            r.packets = [pi, po];
            r.bytes = [bi, bo];
            self.emit(Side::Inside, &r);
        }
        self.stats.flows_active.set(self.table.len() as u64);
        self.stats.flows_evicted.set(self.table.stats().evicted);
        let r = self.replay.stats();
        self.stats.replay_remembered.set(r.remembered);
        self.stats.replay_overwritten.set(r.overwritten);
    }

    fn dir(&self, side: Side) -> &DirStats {
        match side {
            Side::Inside => &self.stats.from_inside,
            Side::Outside => &self.stats.from_outside,
        }
    }

    #[inline]
    fn note(&self, side: Side, n: Note) {
        self.dir(side).note_count(n).add(1);
    }

    #[inline]
    fn drop(&self, side: Side, r: DropReason) -> Action {
        self.dir(side).drop_count(r).add(1);
        Action::Drop(r)
    }

    /// Drops a verified identity that the peer whose key signed it may not
    /// claim (or that the directory does not know), with a drop event naming
    /// it; `None` when the peer owns it. `initiator` is the side that opened
    /// the flow, as flow records carry it.
    #[allow(clippy::too_many_arguments)]
    fn refuse_unowned(
        &mut self,
        p: &PolicySnapshot,
        identity: u32,
        sender_key: u32,
        side: Side,
        initiator: Side,
        key: FlowKey,
        pu: PuId,
        gen: u32,
        now: u64,
    ) -> Option<Action> {
        if p.identity_allowed_for_peer(identity, sender_key) {
            return None;
        }
        let r = if p.identity(identity).is_none() {
            DropReason::UnknownIdentity
        } else {
            DropReason::IdentityNotAllowedForPeer
        };
        let mut rec = FlowRecord::new(EventKind::Drop, now, key, initiator, pu.0, gen);
        rec.remote_identity = Some(identity);
        rec.drop = Some(r);
        self.emit(side, &rec);
        Some(self.drop(side, r))
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

    fn emit(&mut self, side: Side, r: &FlowRecord) {
        if let Some(p) = self.events.as_mut() {
            if !p.push(r) {
                let st = match side {
                    Side::Inside => &self.stats.from_inside,
                    Side::Outside => &self.stats.from_outside,
                };
                st.note_count(Note::EventsLost).add(1);
            }
        }
    }

    /// Processes one frame that arrived on `side`. `now` is Unix time in
    /// nanoseconds (key windows and flow timeouts use it).
    #[inline]
    pub fn process<B: PacketBuf>(&mut self, cfg: &EngineConfig, side: Side, buf: &mut B, now: u64) -> Action {
        let l = self.look(side, buf.data(), |_| ());
        self.process_looked(cfg, side, buf, &l, now)
    }

    /// The first half of [`Self::process`]: reads a plain frame's flow key
    /// ([`peek`]), hashes it, and hands `hint` the table lines its lookup
    /// will read ([`FlowTable::prefetch`]). The worker looks a few frames
    /// ahead of the one it processes, so those lines arrive while it works.
    /// (A whole burst looked at first and processed after was measured
    /// slower: that pass waits for the frames' bytes instead.)
    #[inline(always)]
    pub fn look(&self, side: Side, frame: &[u8], hint: impl Fn(*const u8)) -> Looked {
        let Some(p) = peek(frame) else { return Looked::NOT_PLAIN };
        let tcp = p.proto == wire::ip_proto::TCP;
        if tcp && p.tcp_flags & TcpFlags::SYN != 0 {
            return Looked::HANDSHAKE;
        }
        let (key, h) = self.table.key_hashed(side, p.src, p.dst, p.family, p.src_port, p.dst_port, p.proto);
        self.table.prefetch(h, hint);
        let replay = tcp && has_identity_option(frame, p.tcp_opts_offset, p.tcp_opts_len);
        let kind = if replay {
            LookKind::Replay
        } else if tcp {
            LookKind::Tcp
        } else {
            LookKind::Udp
        };
        Looked { key, h, seq: p.seq, tcp_flags: p.tcp_flags, kind }
    }

    /// The second half of [`Self::process`], on what [`Self::look`] found in
    /// this same, unchanged frame.
    #[inline(always)]
    pub fn process_looked<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        buf: &mut B,
        l: &Looked,
        now: u64,
    ) -> Action {
        let plain = match l.kind {
            LookKind::NotPlain => false,
            LookKind::Handshake => true,
            _ => match self.fast(cfg, side, buf.len() as u32, l, now) {
                Some(a) => return a,
                None => true,
            },
        };
        self.full(cfg, side, buf, plain, now)
    }

    /// The fast path: a plain frame of a flow already decided under this
    /// snapshot, not a handshake packet: one lookup, nothing parsed in full,
    /// no byte changed. `None`: not such a flow.
    #[inline(always)]
    fn fast(&mut self, cfg: &EngineConfig, side: Side, len: u32, l: &Looked, now: u64) -> Option<Action> {
        let gen = cfg.generation();
        let (e, t) = self.table.lookup_with_timeouts(&l.key, l.h, now)?;
        if e.policy_generation() != gen || !e.verdict().is_decided() {
            return None;
        }
        // One lookup: the entry found is the one updated.
        let (tcp, replay) = (l.kind != LookKind::Udp, l.kind == LookKind::Replay);
        Some(match Self::on_established(e, side, tcp, l.tcp_flags, l.seq, replay, len, now, t) {
            Ok(()) => Action::Forward,
            Err(r) => self.drop(side, r),
        })
    }

    /// Everything but the fast path, on the fully parsed frame. `plain`: the
    /// fast path read this frame and missed its flow (no second lookup).
    // Not inlined: the fast path's caller then saves only the registers the
    // fast path uses.
    #[inline(never)]
    fn full<B: PacketBuf>(&mut self, cfg: &EngineConfig, side: Side, buf: &mut B, plain: bool, now: u64) -> Action {
        let info = match parse_frame(buf.data()) {
            Ok(i) => i,
            Err(_) => return self.drop(side, DropReason::Malformed),
        };
        let (Some(src), Some(dst)) = (ip(info.src), ip(info.dst)) else {
            self.note(side, Note::NotIpOrNd);
            return Action::Forward;
        };
        if info.l4 == L4Kind::Icmpv6 && (133..=137).contains(&info.icmp_type) {
            self.note(side, Note::NotIpOrNd);
            return Action::Forward;
        }
        let gen = cfg.generation();
        let tcp = info.l4 == L4Kind::Tcp;
        // Fast path: a decided flow of this generation, not a handshake packet
        // (a UDP datagram with an options area may carry a handshake message).
        if !plain && !info.fragment && (!tcp || info.tcp_flags & TcpFlags::SYN == 0) && info.udp_opts_len == 0 {
            // The key from the parsed addresses, not from `src`/`dst`: no round
            // trip through `IpAddr` in memory (see `FlowKey::new_hashed`).
            let (s, d, fam) = match (info.src, info.dst) {
                (Addr::V4(s), Addr::V4(d)) => (v4_mapped(s), v4_mapped(d), 4),
                (Addr::V6(s), Addr::V6(d)) => (u128::from_be_bytes(s), u128::from_be_bytes(d), 6),
                _ => (0, 0, 0), // not reached: both are IP addresses here
            };
            let (key, h) = self.table.key_hashed(side, s, d, fam, info.src_port, info.dst_port, info.proto);
            let replay = tcp && has_identity_option(buf.data(), info.tcp_opts_offset, info.tcp_opts_len);
            let (len, t) = (buf.len() as u32, *self.table.timeouts());
            if let Some(e) = self.table.lookup_hashed(&key, h, now) {
                if e.policy_generation() == gen && e.verdict().is_decided() {
                    // One lookup: the entry found is the one updated.
                    return match Self::on_established(e, side, tcp, info.tcp_flags, info.seq, replay, len, now, &t) {
                        Ok(()) => Action::Forward,
                        Err(r) => self.drop(side, r),
                    };
                }
            }
        }
        let pu = match cfg.policy.classify(side, src, dst) {
            Classification::Excluded => {
                self.note(side, Note::Excluded);
                return Action::Forward;
            }
            Classification::Ignored => {
                self.note(side, Note::Ignored);
                return Action::Forward;
            }
            Classification::NotLocal => return self.drop(side, DropReason::NoLocalPu),
            Classification::LocalPu { pu, managed_tcp, managed_udp } => (pu, managed_tcp, managed_udp),
        };
        if info.l4 == L4Kind::Udp && !info.fragment {
            return self.udp_datagram(cfg, side, buf, &info, (src, dst), pu.0, pu.2, now);
        }
        if !tcp {
            if info.fragment && info.proto == wire::ip_proto::TCP {
                return self.drop(side, DropReason::TcpFragment);
            }
            return self.other(cfg, side, &info, src, dst, pu.0, now);
        }
        if info.fragment {
            return self.drop(side, DropReason::TcpFragment);
        }
        let key = FlowKey::new(side, src, dst, info.src_port, info.dst_port, info.proto);
        let flags = TcpFlags(info.tcp_flags);
        if flags.is_syn() {
            return self.syn(cfg, side, buf, &info, key, pu.0, pu.1, now);
        }
        // Re-point and re-decide a flow from an older snapshot.
        let Some(e) = self.table.lookup(&key, now) else {
            return self.no_state(cfg, side, buf, &info, key, pu.0, now);
        };
        e.set_pu(pu.0);
        if e.verdict().is_decided() && e.policy_generation() != gen {
            Self::redecide(cfg, e, pu.0);
            self.note(side, Note::Redecided);
        }
        if flags.is_syn_ack() {
            return self.syn_ack(cfg, side, buf, &info, key, pu.0, now);
        }
        self.established(side, buf, &info, key, now)
    }

    fn redecide(cfg: &EngineConfig, e: &mut FlowEntry, pu: PuId) {
        let remote = match e.remote_identity() {
            Some(id) => Remote::Identity(id),
            None => Remote::Address(e.key().outside_ip()),
        };
        let d = cfg.policy.decide(pu, e.direction(), remote, e.key().proto, server_port(e));
        let id = e.remote_identity();
        e.set_verdict(&d, id, cfg.generation());
    }

    /// A packet of a flow with a decided verdict (not a SYN).
    #[inline]
    fn established<B: PacketBuf>(
        &mut self,
        side: Side,
        buf: &mut B,
        info: &FrameInfo,
        key: FlowKey,
        now: u64,
    ) -> Action {
        let tcp = info.l4 == L4Kind::Tcp;
        let replay = tcp && has_identity_option(buf.data(), info.tcp_opts_offset, info.tcp_opts_len);
        let len = buf.len() as u32;
        let t = *self.table.timeouts();
        let Some(e) = self.table.lookup(&key, now) else { return self.drop(side, DropReason::OutOfState) };
        match Self::on_established(e, side, tcp, info.tcp_flags, info.seq, replay, len, now, &t) {
            Ok(()) => Action::Forward,
            Err(r) => self.drop(side, r),
        }
    }

    /// [`Self::established`] on the flow's entry, already looked up: forward
    /// (`Ok`) or drop for the reason given.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn on_established(
        e: &mut FlowEntry,
        side: Side,
        tcp: bool,
        tcp_flags: u8,
        seq: u32,
        replay: bool,
        len: u32,
        now: u64,
        t: &crate::flow::Timeouts,
    ) -> Result<(), DropReason> {
        if !tcp {
            e.on_udp(now, t);
            if !e.verdict().allowed() {
                return Err(e.verdict().unpack().map_or(DropReason::NoMatch, |d| drop_of_reason(d.reason)));
            }
            e.account(side, len);
            return Ok(());
        }
        if replay {
            return Err(DropReason::Replay);
        }
        if e.on_tcp_data(TcpFlags(tcp_flags), now, t) {
            if !e.verdict().allowed() {
                return Err(e.verdict().unpack().map_or(DropReason::OutOfState, |d| drop_of_reason(d.reason)));
            }
            e.account(side, len);
            return Ok(());
        }
        match e.on_tcp(side, TcpFlags(tcp_flags), seq, now, t) {
            TcpStep::Rst => {
                e.account(side, len);
                Ok(())
            }
            TcpStep::OutOfState => Err(DropReason::OutOfState),
            _ => {
                if !e.verdict().allowed() {
                    return Err(e.verdict().unpack().map_or(DropReason::OutOfState, |d| drop_of_reason(d.reason)));
                }
                e.account(side, len);
                Ok(())
            }
        }
    }

    /// Answers the sender of `buf` with a RST (the packet is consumed), if
    /// the reset budget for `to` allows; else only drops it.
    fn reply_rst<B: PacketBuf>(
        &mut self,
        side: Side,
        buf: &mut B,
        spec: &rst::RstSpec,
        r: DropReason,
        to: Trust,
        now: u64,
    ) -> Action {
        self.dir(side).drop_count(r).add(1);
        if !self.replies.allow(to, now) {
            self.note(side, Note::RstSuppressed);
            return Action::Drop(r);
        }
        if rst::in_place(buf, &Self::info_of(buf), true, spec) {
            self.note(side, Note::RstSent);
            Action::Reply(r)
        } else {
            Action::Drop(r)
        }
    }

    fn info_of<B: PacketBuf>(buf: &B) -> FrameInfo {
        parse_frame(buf.data()).unwrap_or_default()
    }

    #[allow(clippy::too_many_arguments)]
    fn syn<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        buf: &mut B,
        info: &FrameInfo,
        key: FlowKey,
        pu: PuId,
        managed_tcp: bool,
        now: u64,
    ) -> Action {
        let p = &cfg.policy;
        let gen = cfg.generation();
        let has_opt = has_identity_option(buf.data(), info.tcp_opts_offset, info.tcp_opts_len);
        // The flow's own SYN again once established: a replay. A SYN of a
        // connection that has left the table: the replay memory knows.
        let mut live = false;
        if let Some(e) = self.table.get(&key) {
            if e.initiator() != side {
                return self.drop(side, DropReason::OutOfState);
            }
            live = e.syn_seq() == info.seq;
            if has_opt
                && live
                && (e.was_established()
                    || matches!(e.state(), FlowState::Established | FlowState::Closing | FlowState::Closed))
            {
                return self.drop(side, DropReason::Replay);
            }
        }
        if has_opt && !live && side == Side::Outside && self.replay.seen(&key, info.seq, now) {
            let mut rec = FlowRecord::new(EventKind::Drop, now, key, side, pu.0, gen);
            rec.drop = Some(DropReason::Replay);
            self.emit(side, &rec);
            return self.drop(side, DropReason::Replay);
        }
        let rst_spec = rst::RstSpec::answer_syn(info);
        let mut syn_key = None; // what answering a verified option needs of its key id
        let (decision, remote_identity, note) = match side {
            Side::Inside => {
                if has_opt {
                    return self.drop(side, DropReason::IdentityAlreadyPresent);
                }
                let Some(pu_identity) = p.pu(pu).map(|x| x.identity) else {
                    return self.drop(side, DropReason::NoLocalPu);
                };
                let dst = key.outside_ip();
                let mut note = None;
                if managed_tcp {
                    match p.peer_for(dst) {
                        Some(peer) => match cfg.keys.tx_key(peer, now) {
                            Some(k) => {
                                if let Err(e) = insert_tcp(buf, info, k, pu_identity) {
                                    return self.drop(side, drop_of_rewrite(e));
                                }
                                self.note(side, Note::IdentityInserted);
                                // Decided at the SYN-ACK, when the peer's identity is known.
                                let len = buf.len() as u32;
                                return match self.upsert_syn(side, key, pu, info.seq, len, None, None, gen, now) {
                                    Ok(_) => Action::Forward,
                                    Err(r) => self.drop(side, r),
                                };
                            }
                            None => note = Some(Note::NoKeyForPeer),
                        },
                        None => note = Some(Note::NoPeerForDestination),
                    }
                }
                if let Some(n) = note {
                    self.note(side, n);
                }
                (p.decide(pu, Direction::Outgoing, Remote::Address(dst), 6, key.outside_port), None, note)
            }
            Side::Outside => match verify_and_strip_tcp(buf, info, &cfg.keys, now) {
                Ok(v) => {
                    self.note(side, Note::IdentityVerified);
                    if second_identity_option(buf.data(), info.tcp_opts_len) {
                        return self.drop(side, DropReason::IdentityDuplicate);
                    }
                    if let Some(refused) =
                        self.refuse_unowned(p, v.identity, v.key_id.get() >> 8, side, side, key, pu, gen, now)
                    {
                        return refused;
                    }
                    let d = p.decide(pu, Direction::Incoming, Remote::Identity(v.identity), 6, key.inside_port);
                    syn_key = Some(v.key_id.answer_bytes());
                    (d, Some(v.identity), None)
                }
                // An option behind a malformed one: not verifiable, not to pass.
                Err(VerifyError::NoIdentity) if has_opt => return self.drop(side, DropReason::Malformed),
                Err(VerifyError::NoIdentity) => (
                    p.decide(pu, Direction::Incoming, Remote::Address(key.outside_ip()), 6, key.inside_port),
                    None,
                    None,
                ),
                Err(e) => {
                    let r = drop_of_verify(e);
                    let mut rec = FlowRecord::new(EventKind::Drop, now, key, side, pu.0, gen);
                    rec.drop = Some(r);
                    self.emit(side, &rec);
                    return self.drop(side, r);
                }
            },
        };
        let mut rec = FlowRecord::new(EventKind::Decision, now, key, side, pu.0, gen).with_decision(&decision);
        rec.remote_identity = remote_identity;
        rec.note = note;
        if decision.allowed() {
            let len = buf.len() as u32;
            match self.upsert_syn(side, key, pu, info.seq, len, Some((&decision, remote_identity)), syn_key, gen, now) {
                Ok(fresh) => {
                    if fresh {
                        self.note(side, note_of_allow(&decision));
                        self.emit(side, &rec);
                    }
                    Action::Forward
                }
                Err(r) => self.drop(side, r),
            }
        } else {
            let r = drop_of_reason(decision.reason);
            rec.drop = Some(r);
            self.emit(side, &rec);
            self.table.remove(&key, now);
            // A local PU, or a peer that proved its identity: the generous
            // budget. A source that proved nothing may be forged.
            let to =
                if side == Side::Inside || remote_identity.is_some() { Trust::Verified } else { Trust::Unverified };
            self.reply_rst(side, buf, &rst_spec, r, to, now)
        }
    }

    /// Creates or restarts the flow of a SYN. Returns whether it is a new
    /// connection (not a retransmission).
    #[allow(clippy::too_many_arguments)]
    fn upsert_syn(
        &mut self,
        side: Side,
        key: FlowKey,
        pu: PuId,
        seq: u32,
        len: u32,
        decided: Option<(&Decision, Option<u32>)>,
        syn_key: Option<u16>,
        gen: u32,
        now: u64,
    ) -> Result<bool, DropReason> {
        let t = *self.table.timeouts();
        let fresh;
        let e = match self.table.lookup(&key, now) {
            Some(e) => {
                if e.syn_seq() != seq {
                    // A new connection on the tuple replaces the old one.
                    Self::retire(&mut self.replay, e, now);
                }
                fresh = e.on_tcp(side, TcpFlags(TcpFlags::SYN), seq, now, &t) != TcpStep::SynRetransmit;
                e.set_pu(pu);
                e
            }
            None => {
                fresh = true;
                match self.table.insert(key, NewFlow { pu, initiator: side, state: FlowState::SynSent, seq }, now) {
                    Ok(e) => e,
                    Err(_) => return Err(DropReason::FlowTableFull),
                }
            }
        };
        if let Some((d, id)) = decided {
            e.set_verdict(d, id, gen);
        }
        if let Some(k) = syn_key {
            e.set_syn_key(k);
        }
        e.account(side, len);
        Ok(fresh)
    }

    #[allow(clippy::too_many_arguments)]
    fn syn_ack<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        buf: &mut B,
        info: &FrameInfo,
        key: FlowKey,
        pu: PuId,
        now: u64,
    ) -> Action {
        let p = &cfg.policy;
        let gen = cfg.generation();
        let t = *self.table.timeouts();
        let len = buf.len() as u32;
        let has_opt = has_identity_option(buf.data(), info.tcp_opts_offset, info.tcp_opts_len);
        let Some(e) = self.table.lookup(&key, now) else { return self.drop(side, DropReason::OutOfState) };
        let step = e.on_tcp(side, TcpFlags(info.tcp_flags), info.seq, now, &t);
        if !matches!(step, TcpStep::SynAck | TcpStep::SynAckRetransmit) {
            return self.drop(side, DropReason::OutOfState);
        }
        if side == Side::Outside && step == TcpStep::SynAck {
            // our PU is the client: its SYN created the flow
            self.stats.handshake_ns.record(now.saturating_sub(e.created()));
        }
        let cached = e.verdict().unpack();
        let flow_identity = e.remote_identity();
        let syn_key = e.syn_key();
        match side {
            // The server is our PU: sign its SYN-ACK towards the client's gateway.
            Side::Inside => {
                if has_opt {
                    return self.drop(side, DropReason::IdentityAlreadyPresent);
                }
                match cached {
                    Some(d) if d.allowed() => {}
                    Some(d) => return self.drop(side, drop_of_reason(d.reason)),
                    None => return self.drop(side, DropReason::OutOfState),
                }
                e.account(side, len);
                let Some(id) = flow_identity else { return Action::Forward };
                let Some(pu_identity) = p.pu(pu).map(|x| x.identity) else {
                    return self.drop(side, DropReason::NoLocalPu);
                };
                // Signed with the pair of keys the SYN used, the other way round
                // (during a rotation the peer may not yet have our newest key, or
                // may still sign towards our previous one); the newest valid key
                // if that one is gone.
                let tx = p.identity_peer(id).and_then(|peer| {
                    cfg.keys.tx_key_answering(peer, syn_key, now).or_else(|| cfg.keys.tx_key(peer, now))
                });
                match tx {
                    Some(k) => match insert_tcp(buf, info, k, pu_identity) {
                        Ok(()) => {
                            self.note(side, Note::IdentityInserted);
                            Action::Forward
                        }
                        Err(e) => self.drop(side, drop_of_rewrite(e)),
                    },
                    None => {
                        self.note(side, Note::NoKeyForPeer);
                        Action::Forward
                    }
                }
            }
            // The client is our PU: verify the server's identity, judge it.
            Side::Outside => {
                let (decision, remote_identity) = match verify_and_strip_tcp(buf, info, &cfg.keys, now) {
                    Ok(v) => {
                        self.note(side, Note::IdentityVerified);
                        if second_identity_option(buf.data(), info.tcp_opts_len) {
                            return self.drop(side, DropReason::IdentityDuplicate);
                        }
                        if let Some(refused) = self.refuse_unowned(
                            p,
                            v.identity,
                            v.key_id.get() >> 8,
                            side,
                            Side::Inside,
                            key,
                            pu,
                            gen,
                            now,
                        ) {
                            return refused;
                        }
                        if flow_identity.is_some_and(|f| f != v.identity) {
                            return self.drop(side, DropReason::IdentityBadMac);
                        }
                        let d = p.decide(pu, Direction::Outgoing, Remote::Identity(v.identity), 6, key.outside_port);
                        (d, Some(v.identity))
                    }
                    Err(VerifyError::NoIdentity) if has_opt => return self.drop(side, DropReason::Malformed),
                    Err(VerifyError::NoIdentity) => {
                        if flow_identity.is_some() {
                            // verified before: a retransmission must carry it again
                            return self.drop(side, DropReason::NoIdentity);
                        }
                        match cached {
                            Some(d) => (d, None),
                            None => (
                                p.decide(
                                    pu,
                                    Direction::Outgoing,
                                    Remote::Address(key.outside_ip()),
                                    6,
                                    key.outside_port,
                                ),
                                None,
                            ),
                        }
                    }
                    Err(e) => {
                        let r = drop_of_verify(e);
                        let mut rec = FlowRecord::new(EventKind::Drop, now, key, Side::Inside, pu.0, gen);
                        rec.drop = Some(r);
                        self.emit(side, &rec);
                        return self.drop(side, r);
                    }
                };
                let fresh = cached.is_none() || step == TcpStep::SynAck && cached != Some(decision);
                let Some(e) = self.table.lookup(&key, now) else { return self.drop(side, DropReason::OutOfState) };
                e.set_verdict(&decision, remote_identity, gen);
                let mut rec =
                    FlowRecord::new(EventKind::Decision, now, key, Side::Inside, pu.0, gen).with_decision(&decision);
                rec.remote_identity = remote_identity;
                if decision.allowed() {
                    e.account(side, len);
                    if fresh {
                        self.note(side, note_of_allow(&decision));
                        self.emit(side, &rec);
                    }
                    return Action::Forward;
                }
                let r = drop_of_reason(decision.reason);
                rec.drop = Some(r);
                self.emit(side, &rec);
                self.table.remove(&key, now);
                // Reset both ends: the server (back where the SYN-ACK came from)
                // and the client (onwards, as if from the server).
                let to_client = rst::RstSpec::synack_to_client(info);
                let l3 = usize::from(info.l3_offset);
                self.extra_len = buf
                    .data()
                    .get(..l3)
                    .and_then(|eth| rst::write(&mut self.extra, eth, false, &to_client))
                    .unwrap_or(0);
                let to_server = rst::RstSpec::synack_to_server(info);
                self.dir(side).drop_count(r).add(1);
                let to = if remote_identity.is_some() { Trust::Verified } else { Trust::Unverified };
                if !self.replies.allow(to, now) {
                    self.note(side, Note::RstSuppressed);
                    return Action::Drop(r);
                }
                if rst::in_place(buf, &Self::info_of(buf), true, &to_server) {
                    self.note(side, Note::RstSent);
                    if self.extra_len > 0 {
                        Action::ReplyAndReset(r)
                    } else {
                        Action::Reply(r)
                    }
                } else {
                    Action::Drop(r)
                }
            }
        }
    }

    /// A TCP packet, not a SYN, of no known flow: the ACLs decide.
    #[allow(clippy::too_many_arguments)]
    fn no_state<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        buf: &mut B,
        info: &FrameInfo,
        key: FlowKey,
        pu: PuId,
        now: u64,
    ) -> Action {
        // The option outside a handshake, with no flow to belong to.
        if has_identity_option(buf.data(), info.tcp_opts_offset, info.tcp_opts_len) {
            return self.drop(side, DropReason::Replay);
        }
        let flags = TcpFlags(info.tcp_flags);
        let pu_is_server = if flags.is_syn_ack() { side == Side::Inside } else { key.inside_port < key.outside_port };
        let (dir, port, initiator) = if pu_is_server {
            (Direction::Incoming, key.inside_port, Side::Outside)
        } else {
            (Direction::Outgoing, key.outside_port, Side::Inside)
        };
        let gen = cfg.generation();
        let d = cfg.policy.decide(pu, dir, Remote::Address(key.outside_ip()), 6, port);
        let mut rec = FlowRecord::new(EventKind::Decision, now, key, initiator, pu.0, gen).with_decision(&d);
        if !d.allowed() {
            rec.drop = Some(DropReason::NoFlowState);
            self.emit(side, &rec);
            return self.drop(side, DropReason::NoFlowState);
        }
        rec.note = Some(Note::NoFlowStateAllowed);
        self.note(side, Note::NoFlowStateAllowed);
        self.emit(side, &rec);
        if flags.has(TcpFlags::RST) {
            return Action::Forward;
        }
        let state = if flags.is_syn_ack() { FlowState::SynAckSeen } else { FlowState::Established };
        match self.table.insert(key, NewFlow { pu, initiator, state, seq: 0 }, now) {
            Ok(e) => {
                e.set_verdict(&d, None, gen);
                e.account(side, buf.len() as u32);
                Action::Forward
            }
            Err(_) => self.drop(side, DropReason::FlowTableFull),
        }
    }

    /// UDP, ICMP and other IP protocols of a PU: the ACLs decide the first
    /// packet; the flow caches the verdict (also a reject) both ways.
    #[allow(clippy::too_many_arguments)]
    fn other(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        info: &FrameInfo,
        src: IpAddr,
        dst: IpAddr,
        pu: PuId,
        now: u64,
    ) -> Action {
        let key = FlowKey::new(side, src, dst, info.src_port, info.dst_port, info.proto);
        let gen = cfg.generation();
        let len = u32::from(info.ip_end);
        let t = *self.table.timeouts();
        if let Some(e) = self.table.lookup(&key, now) {
            e.set_pu(pu);
            let redo = e.policy_generation() != gen;
            if redo {
                Self::redecide(cfg, e, pu);
            }
            e.on_udp(now, &t);
            let allowed = e.verdict().allowed();
            let r = e.verdict().unpack().map_or(DropReason::NoMatch, |d| drop_of_reason(d.reason));
            if allowed {
                e.account(side, len);
            }
            if redo {
                self.note(side, Note::Redecided);
            }
            return if allowed { Action::Forward } else { self.drop(side, r) };
        }
        let (dir, remote) = match side {
            Side::Inside => (Direction::Outgoing, dst),
            Side::Outside => (Direction::Incoming, src),
        };
        let d = cfg.policy.decide(pu, dir, Remote::Address(remote), info.proto, info.dst_port);
        let mut rec = FlowRecord::new(EventKind::Decision, now, key, side, pu.0, gen).with_decision(&d);
        let state = FlowState::Udp(UdpState::Authorized);
        match self.table.insert(key, NewFlow { pu, initiator: side, state, seq: 0 }, now) {
            Ok(e) => e.set_verdict(&d, None, gen),
            Err(_) => return self.drop(side, DropReason::FlowTableFull),
        }
        if d.allowed() {
            self.note(side, note_of_allow(&d));
            self.emit(side, &rec);
            if let Some(e) = self.table.lookup(&key, now) {
                e.account(side, len);
            }
            Action::Forward
        } else {
            let r = drop_of_reason(d.reason);
            rec.drop = Some(r);
            self.emit(side, &rec);
            self.drop(side, r)
        }
    }
}

#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod test_harness;
#[cfg(test)]
mod tests;
