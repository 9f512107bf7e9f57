//! The UDP identity handshake (`docs/udp-handshake.md`).
//!
//! A new UDP flow from a local PU to a managed UDP network with a known peer
//! is *pending*: its datagrams are held (by the worker, in the hold slot the
//! engine names), a handshake **request** (a separate datagram with the flow's
//! addresses and ports, an empty payload and the identity option, msg 1) goes
//! to the peer gateway, which verifies it, judges it against its PU's
//! incoming rules and answers with a signed **response** (msg 2) or a signed
//! **reject** (msg 3), both echoing the request's nonce. The response is
//! judged against the local PU's outgoing rules; held datagrams are then
//! released in order (or dropped). Requests are sent again on a backoff;
//! after the last try the external-network ACLs decide.
//!
//! The engine cannot own mbufs, so the held-packet store is the caller's:
//! [`Action::Hold`] tells it to keep the frame in slot `n`, and the
//! [`Effect`]s it collects (drain them with [`Engine::effects`] and
//! [`Engine::clear_effects`] after every [`Engine::process`] and
//! [`Engine::udp_timers`] call) say when to release or drop a slot and carry
//! the generated handshake frames.
//!
//! Pending handshakes live in a fixed pool allocated at start (`pending`
//! slots, each with its request frame ready for retransmission). Timers are
//! FIFO lists, one per retransmit stage: every entry of stage `k` was (re)sent
//! `backoff[k]` before its deadline and entries enter in time order, so each
//! list is sorted by deadline and a timer check looks at list heads only.
//! Nothing here allocates after [`UdpHandshake::new`] or reads a clock.

use std::net::IpAddr;

use crate::buf::{NoRoom, PacketBuf};
use crate::events::{EventKind, FlowRecord};
use crate::flow::{FlowKey, FlowState, NewFlow, UdpState};
use crate::identity::{insert_udp, option, verify_udp, MacKey, UdpIdentity, UdpMsg};
use crate::policy::{Action as PAction, Decision, Direction, PuId, Reason, Remote, Side};
use crate::stats::{DropReason, Note};
use crate::wire::emit::{self, IpRepr, UdpDatagram};
use crate::wire::{ip_proto, parse_frame, udp as wudp, Addr, FrameInfo};

use super::reply_limit::Trust;
use super::{drop_of_reason, drop_of_verify, note_of_allow, Action, Engine, EngineConfig};

/// Largest handshake frame: Ethernet with two VLAN tags (22) + IPv6 (40) +
/// UDP header (8) + alignment byte (≤ 1) + OCS (2) + the option (45) = 118.
pub const MAX_HANDSHAKE_FRAME: usize = 128;

const NS_PER_MS: u64 = 1_000_000;
const NIL: u32 = u32::MAX;
/// Generated frames the engine can queue between two drains.
const OUTBOX: usize = 64;

/// Tuning of the UDP handshake (gatewayd: `[udp_handshake]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Wait after each request before sending it again, in milliseconds; the
    /// number of entries is the number of requests sent. After the last wait
    /// the external-network ACLs decide. 1..=8 entries, each 1..=10000 ms.
    pub backoff_ms: Vec<u32>,
    /// Datagrams held per pending flow (1..=256).
    pub hold_per_flow: u16,
    /// Datagrams held over all pending flows of one worker.
    pub hold_total: u32,
    /// Pending handshakes per worker (1..=1048576).
    pub pending: u32,
}

impl Default for UdpConfig {
    /// 50/100/200/400 ms (fallback 750 ms after the first datagram), 16
    /// datagrams per flow, 4096 per worker, 1024 pending handshakes.
    fn default() -> Self {
        UdpConfig { backoff_ms: vec![50, 100, 200, 400], hold_per_flow: 16, hold_total: 4096, pending: 1024 }
    }
}

impl UdpConfig {
    /// Every problem, each naming its field (`prefix` is prepended, e.g.
    /// `udp_handshake.`). `pending_timeout_ns` is the flow table's UDP pending
    /// idle timeout: the whole backoff must fit in it.
    pub fn validate(&self, prefix: &str, pending_timeout_ns: u64) -> Vec<String> {
        let mut e = Vec::new();
        if self.backoff_ms.is_empty() || self.backoff_ms.len() > 8 {
            e.push(format!("{prefix}backoff_ms: {} entries; 1 to 8 are allowed", self.backoff_ms.len()));
        }
        for (i, &b) in self.backoff_ms.iter().enumerate() {
            if !(1..=10_000).contains(&b) {
                e.push(format!("{prefix}backoff_ms[{i}]: {b} is not in 1..=10000 (milliseconds)"));
            }
        }
        let total: u64 = self.backoff_ms.iter().map(|&b| u64::from(b)).sum();
        if total * NS_PER_MS >= pending_timeout_ns {
            e.push(format!(
                "{prefix}backoff_ms: the waits add up to {total} ms, not less than the UDP pending flow timeout ({} ms)",
                pending_timeout_ns / NS_PER_MS
            ));
        }
        if !(1..=256).contains(&self.hold_per_flow) {
            e.push(format!("{prefix}hold_per_flow: {} is not in 1..=256", self.hold_per_flow));
        }
        if self.hold_total == 0 || self.hold_total > 1 << 20 {
            e.push(format!("{prefix}hold_total: {} is not in 1..=1048576", self.hold_total));
        }
        if self.pending == 0 || self.pending > 1 << 20 {
            e.push(format!("{prefix}pending: {} is not in 1..=1048576", self.pending));
        }
        e
    }
}

/// What the caller does besides the per-frame [`Action`]: drained after every
/// [`Engine::process`] and [`Engine::udp_timers`] call, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Transmit [`Engine::effect_frame`]`(frame)` out of the `out` port.
    Send { out: Side, frame: u16 },
    /// Transmit every frame held in `slot`, in the order they were held, out
    /// of the outside port; the slot is empty afterwards.
    Release { slot: u32 },
    /// Free every frame held in `slot` (the engine has counted them as
    /// dropped with `reason`).
    Discard { slot: u32, reason: DropReason },
}

/// Handshake counters (plain integers; the worker is the only writer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpHandshakeStats {
    /// Handshakes this side started (first requests).
    pub started: u64,
    /// Finished by a verified response or reject.
    pub answered: u64,
    /// Finished by the ACL fallback after the last retransmit.
    pub timed_out: u64,
    /// First held datagram to its release: sum and maximum, in ns, over
    /// answered handshakes whose datagrams were released.
    pub release_delay_sum_ns: u64,
    pub release_delay_max_ns: u64,
    pub released: u64,
}

#[derive(Clone, Copy)]
struct Pending {
    key: FlowKey,
    pu: PuId,
    nonce: [u8; 8],
    /// Intrusive links of the stage list this slot is on.
    prev: u32,
    next: u32,
    /// Retransmit stage (index into the backoff), or `IDLE` when free.
    stage: u8,
    deadline: u64,
    started: u64,
    held: u16,
    frame_len: u8,
    frame: [u8; MAX_HANDSHAKE_FRAME],
}

const IDLE: u8 = u8::MAX;

impl Pending {
    const FREE: Pending = Pending {
        key: crate::flow::key::ZERO_KEY,
        pu: PuId(0),
        nonce: [0; 8],
        prev: NIL,
        next: NIL,
        stage: IDLE,
        deadline: 0,
        started: 0,
        held: 0,
        frame_len: 0,
        frame: [0; MAX_HANDSHAKE_FRAME],
    };
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// One worker's handshake state: the pending pool, the stage lists, the
/// outbox of effects and generated frames, the nonce generator.
pub struct UdpHandshake {
    cfg: UdpConfig,
    backoff_ns: [u64; 8],
    stages: usize,
    slots: Box<[Pending]>,
    free: Vec<u32>,
    lists: [List; 8],
    held_total: u32,
    effects: Vec<Effect>,
    frames: Box<[[u8; MAX_HANDSHAKE_FRAME]]>,
    frame_lens: [u8; OUTBOX],
    frames_used: usize,
    rng: u64,
    pub(super) stats: UdpHandshakeStats,
}

impl UdpHandshake {
    /// Allocates everything (pending pool, outbox). `cfg` must have passed
    /// [`UdpConfig::validate`]; out-of-range values are clamped.
    pub fn new(cfg: UdpConfig, seed: u64) -> UdpHandshake {
        let mut cfg = cfg;
        cfg.backoff_ms.truncate(8);
        if cfg.backoff_ms.is_empty() {
            cfg.backoff_ms.push(50);
        }
        cfg.hold_per_flow = cfg.hold_per_flow.clamp(1, 256);
        cfg.pending = cfg.pending.clamp(1, 1 << 20);
        let mut backoff_ns = [0u64; 8];
        for (i, &b) in cfg.backoff_ms.iter().enumerate() {
            backoff_ns[i] = u64::from(b.max(1)) * NS_PER_MS;
        }
        let n = cfg.pending as usize;
        // OS randomness once, at start: nonces differ across restarts.
        let os = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(seed);
            h.finish()
        };
        UdpHandshake {
            stages: cfg.backoff_ms.len(),
            backoff_ns,
            slots: vec![Pending::FREE; n].into_boxed_slice(),
            free: (0..n as u32).rev().collect(),
            lists: [List { head: NIL, tail: NIL }; 8],
            held_total: 0,
            effects: Vec::with_capacity(OUTBOX),
            frames: vec![[0u8; MAX_HANDSHAKE_FRAME]; OUTBOX].into_boxed_slice(),
            frame_lens: [0; OUTBOX],
            frames_used: 0,
            rng: seed ^ os ^ 0x6a09_e667_f3bc_c908,
            stats: UdpHandshakeStats::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &UdpConfig {
        &self.cfg
    }

    /// Pending handshakes now.
    pub fn pending(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Datagrams held now (over all pending flows).
    pub fn held(&self) -> u32 {
        self.held_total
    }

    /// SplitMix64: a fresh 8-byte nonce. Nonces must be unique, not secret
    /// (the MAC key is the secret); the state is seeded from OS randomness.
    fn nonce(&mut self) -> [u8; 8] {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).to_be_bytes()
    }

    fn unlink(&mut self, i: u32) {
        let s = self.slots[i as usize];
        if s.stage == IDLE {
            return;
        }
        let l = &mut self.lists[usize::from(s.stage)];
        match s.prev {
            NIL => l.head = s.next,
            p => self.slots[p as usize].next = s.next,
        }
        let l = &mut self.lists[usize::from(s.stage)];
        match s.next {
            NIL => l.tail = s.prev,
            n => self.slots[n as usize].prev = s.prev,
        }
        let e = &mut self.slots[i as usize];
        e.prev = NIL;
        e.next = NIL;
        e.stage = IDLE;
    }

    fn push_stage(&mut self, i: u32, stage: usize, now: u64) {
        let tail = self.lists[stage].tail;
        {
            let e = &mut self.slots[i as usize];
            e.stage = stage as u8;
            e.deadline = now.saturating_add(self.backoff_ns[stage]);
            e.prev = tail;
            e.next = NIL;
        }
        match tail {
            NIL => self.lists[stage].head = i,
            t => self.slots[t as usize].next = i,
        }
        self.lists[stage].tail = i;
    }

    fn release_slot(&mut self, i: u32) {
        self.unlink(i);
        let held = self.slots[i as usize].held;
        self.held_total = self.held_total.saturating_sub(u32::from(held));
        self.slots[i as usize] = Pending::FREE;
        self.free.push(i);
    }

    fn outbox_room(&self, frames: usize) -> bool {
        self.effects.len() + frames < OUTBOX && self.frames_used + frames <= OUTBOX
    }

    /// Queues a copy of `frame` to send out of `out`. False if the outbox is full.
    fn send(&mut self, out: Side, frame: &[u8]) -> bool {
        if self.frames_used >= OUTBOX || self.effects.len() >= OUTBOX || frame.len() > MAX_HANDSHAKE_FRAME {
            return false;
        }
        let f = self.frames_used;
        self.frames[f][..frame.len()].copy_from_slice(frame);
        self.frame_lens[f] = frame.len() as u8;
        self.frames_used += 1;
        self.effects.push(Effect::Send { out, frame: f as u16 });
        true
    }

    fn effect(&mut self, e: Effect) {
        // Release/Discard must never be lost (the caller's slot would leak):
        // the outbox keeps room for them (see `outbox_room`), and a full one
        // grows once rather than lose one.
        self.effects.push(e);
    }
}

/// A frame in a fixed array: the handshake builder's [`PacketBuf`].
struct ArrayBuf<'a> {
    mem: &'a mut [u8; MAX_HANDSHAKE_FRAME],
    len: usize,
}

impl PacketBuf for ArrayBuf<'_> {
    fn data(&self) -> &[u8] {
        &self.mem[..self.len]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.mem[..self.len]
    }
    fn headroom(&self) -> usize {
        0
    }
    fn tailroom(&self) -> usize {
        MAX_HANDSHAKE_FRAME - self.len
    }
    fn prepend(&mut self, _: usize) -> Result<(), NoRoom> {
        Err(NoRoom)
    }
    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.tailroom() {
            return Err(NoRoom);
        }
        self.len += n;
        Ok(())
    }
    fn adj(&mut self, _: usize) -> Result<(), NoRoom> {
        Err(NoRoom)
    }
    fn trim(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.len {
            return Err(NoRoom);
        }
        self.len -= n;
        Ok(())
    }
}

/// The fields of one handshake datagram.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeSpec {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
}

/// Builds a handshake datagram into `out`: the frame's Ethernet header and
/// VLAN tags (`eth`, MACs swapped when `swap_macs`), a fresh IPv4 (20 bytes,
/// DF, TTL 64) or IPv6 (40 bytes, hop limit 64) header, a UDP header with
/// length 8 and a valid checksum, no payload, then the signed option.
/// Returns the frame length, or `None` if `eth` or the addresses do not fit.
pub fn build_handshake(
    out: &mut [u8; MAX_HANDSHAKE_FRAME],
    eth: &[u8],
    swap_macs: bool,
    h: &HandshakeSpec,
    key: &MacKey,
    id: &UdpIdentity,
) -> Option<usize> {
    let l2 = emit::copy_l2(out, eth, swap_macs)?;
    let ip = IpRepr::new(h.src, h.dst, ip_proto::UDP)?;
    let d = UdpDatagram { src_port: h.sport, dst_port: h.dport, payload: &[], surplus: &[] };
    let n = emit::udp_packet(&mut out[l2..], ip, &d)?;
    let mut buf = ArrayBuf { mem: out, len: l2 + n };
    let info = parse_frame(buf.data()).ok()?;
    insert_udp(&mut buf, &info, key, id).ok()?;
    Some(buf.len)
}

/// The message byte of our identity option in a UDP datagram's options area,
/// unverified (to route the datagram), or `None` without one.
pub fn udp_option_msg(frame: &[u8], info: &FrameInfo) -> Option<u8> {
    if info.udp_opts_len == 0 {
        return None;
    }
    let at = usize::from(info.udp_opts_offset);
    let surplus = frame.get(at..at + usize::from(info.udp_opts_len))?;
    let (_, opts) = wudp::options_area(surplus, usize::from(info.udp_len)).ok()?;
    wudp::options(opts).find_map(|r| match r {
        Ok((_, wudp::UdpOption::Experimental { kind: option::UDP_KIND, exid: option::EXID, data })) => {
            // data starts after kind, length and ExID: msg is option byte 5.
            Some(data.get(option::udp_field::MSG - 4).copied().unwrap_or(0))
        }
        _ => None,
    })
}

/// A reject decision for a flow the peer gateway refused.
fn peer_reject() -> Decision {
    Decision { action: PAction::Reject, rule: None, external: None, observed: None, reason: Reason::PolicyReject }
}

impl Engine {
    /// Replaces the UDP handshake tuning (before the engine runs: the pending
    /// pool is allocated again). Every problem is returned, naming its field.
    pub fn set_udp_config(&mut self, cfg: UdpConfig) -> Result<(), Vec<String>> {
        let e = cfg.validate("", self.table.timeouts().udp_pending);
        if !e.is_empty() {
            return Err(e);
        }
        let seed = self.udp.rng;
        self.udp = UdpHandshake::new(cfg, seed);
        Ok(())
    }

    /// The UDP handshake's tuning and live counts.
    pub fn udp(&self) -> &UdpHandshake {
        &self.udp
    }

    pub fn udp_stats(&self) -> UdpHandshakeStats {
        self.udp.stats
    }

    /// What to do besides each frame's action (see [`Effect`]).
    pub fn effects(&self) -> &[Effect] {
        &self.udp.effects
    }

    /// The bytes of a generated frame named by [`Effect::Send`].
    pub fn effect_frame(&self, frame: u16) -> &[u8] {
        let f = usize::from(frame);
        match self.udp.frames.get(f) {
            Some(b) => &b[..usize::from(self.udp.frame_lens[f])],
            None => &[],
        }
    }

    /// Forgets the effects (call after handling them all).
    pub fn clear_effects(&mut self) {
        self.udp.effects.clear();
        self.udp.frames_used = 0;
    }

    /// Retransmits and fallbacks that are due at `now`; call once per burst
    /// with the burst's configuration, then drain the effects. Bounded work:
    /// what does not fit the outbox waits for the next call.
    pub fn udp_timers(&mut self, cfg: &EngineConfig, now: u64) {
        for stage in 0..self.udp.stages {
            loop {
                let i = self.udp.lists[stage].head;
                if i == NIL || self.udp.slots[i as usize].deadline > now || !self.udp.outbox_room(1) {
                    break;
                }
                self.udp.unlink(i);
                if stage + 1 < self.udp.stages {
                    let s = &self.udp.slots[i as usize];
                    let (frame, len) = (s.frame, usize::from(s.frame_len));
                    if self.udp.send(Side::Outside, &frame[..len]) {
                        self.note(Side::Inside, Note::UdpRequestRetransmit);
                    }
                    self.udp.push_stage(i, stage + 1, now);
                } else {
                    self.udp_fallback(cfg, i, now);
                }
            }
        }
    }

    /// The last wait ran out: the outgoing rules against external networks
    /// decide; held datagrams go or are dropped by that verdict.
    fn udp_fallback(&mut self, cfg: &EngineConfig, i: u32, now: u64) {
        let s = self.udp.slots[i as usize];
        self.udp.stats.timed_out += 1;
        self.note(Side::Inside, Note::UdpHandshakeTimeout);
        let key = s.key;
        let gen = cfg.generation();
        let pu = cfg.policy.pu_by_address(key.inside_ip()).unwrap_or(s.pu);
        let t = *self.table.timeouts();
        let live = matches!(self.table.lookup(&key, now), Some(e) if e.state() == FlowState::Udp(UdpState::Pending) && e.syn_seq() == i);
        if !live {
            // The flow was evicted (table full) while pending.
            self.finish_slot(i, false, DropReason::FlowTableFull, now);
            return;
        }
        let d = cfg.policy.decide(pu, Direction::Outgoing, Remote::Address(key.outside_ip()), 17, key.outside_port);
        if let Some(e) = self.table.lookup(&key, now) {
            e.set_pu(pu);
            e.set_verdict(&d, None, gen);
            e.set_udp_state(UdpState::Authorized, now, &t);
        }
        let mut rec = FlowRecord::new(EventKind::Decision, now, key, Side::Inside, pu.0, gen).with_decision(&d);
        rec.note = Some(Note::UdpHandshakeTimeout);
        if d.allowed() {
            self.note(Side::Inside, note_of_allow(&d));
        } else {
            rec.drop = Some(drop_of_reason(d.reason));
        }
        self.emit(Side::Inside, &rec);
        self.finish_slot(i, d.allowed(), drop_of_reason(d.reason), now);
    }

    /// Releases or discards a slot's held datagrams and frees it.
    fn finish_slot(&mut self, i: u32, release: bool, reason: DropReason, now: u64) {
        let s = self.udp.slots[i as usize];
        if s.held > 0 {
            if release {
                self.udp.effect(Effect::Release { slot: i });
                self.dir(Side::Inside).note_count(Note::UdpReleased).add(u64::from(s.held));
                let d = now.saturating_sub(s.started);
                let st = &mut self.udp.stats;
                st.released += 1;
                st.release_delay_sum_ns += d;
                st.release_delay_max_ns = st.release_delay_max_ns.max(d);
            } else {
                self.udp.effect(Effect::Discard { slot: i, reason });
                self.dir(Side::Inside).drop_count(reason).add(u64::from(s.held));
            }
        }
        self.udp.release_slot(i);
    }

    /// A UDP datagram (not a fragment) of local PU `pu`; `managed` when the
    /// remote end is in a managed UDP network.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn udp_datagram<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        buf: &mut B,
        info: &FrameInfo,
        (src, dst): (IpAddr, IpAddr),
        pu: PuId,
        managed: bool,
        now: u64,
    ) -> Action {
        let key = FlowKey::new(side, src, dst, info.src_port, info.dst_port, info.proto);
        let msg = udp_option_msg(buf.data(), info);
        match side {
            Side::Inside => {
                if msg.is_some() {
                    return self.drop(side, DropReason::IdentityAlreadyPresent);
                }
                let pending = self.table.lookup(&key, now).map(|e| (e.state(), e.syn_seq(), e.initiator()));
                match pending {
                    Some((FlowState::Udp(UdpState::Pending), slot, Side::Inside)) => {
                        self.udp_hold(side, buf, key, slot, now)
                    }
                    None if managed => self.udp_start(cfg, side, buf, info, key, pu, (src, dst), now),
                    _ => self.other(cfg, side, info, src, dst, pu, now),
                }
            }
            Side::Outside => match msg.and_then(UdpMsg::from_u8) {
                Some(UdpMsg::Request) => self.udp_request(cfg, buf, info, key, pu, now),
                Some(UdpMsg::Response | UdpMsg::Reject) => self.udp_answer(cfg, buf, info, key, now),
                Some(UdpMsg::Data) => self.drop(side, DropReason::Replay),
                None if msg.is_some() => self.drop(side, DropReason::IdentityBadVersion),
                None => {
                    let pending = self.table.lookup(&key, now).map(|e| (e.state(), e.initiator()));
                    if let Some((FlowState::Udp(UdpState::Pending), Side::Inside)) = pending {
                        return self.drop(side, DropReason::UdpNotAuthorized);
                    }
                    self.other(cfg, side, info, src, dst, pu, now)
                }
            },
        }
    }

    /// One more datagram of a pending flow: held if both bounds allow.
    fn udp_hold<B: PacketBuf>(&mut self, side: Side, buf: &B, key: FlowKey, slot: u32, now: u64) -> Action {
        let Some(s) = self.udp.slots.get(slot as usize) else { return self.drop(side, DropReason::OutOfState) };
        if s.stage == IDLE || s.key != key {
            return self.drop(side, DropReason::OutOfState);
        }
        if s.held >= self.udp.cfg.hold_per_flow {
            return self.drop(side, DropReason::UdpHoldQueueFull);
        }
        if self.udp.held_total >= self.udp.cfg.hold_total {
            return self.drop(side, DropReason::UdpHoldTotalFull);
        }
        self.udp.slots[slot as usize].held += 1;
        self.udp.held_total += 1;
        let t = *self.table.timeouts();
        if let Some(e) = self.table.lookup(&key, now) {
            e.on_udp(now, &t);
            e.account(side, buf.len() as u32);
        }
        self.note(side, Note::UdpHeld);
        Action::Hold(slot)
    }

    /// The first datagram of a new flow to a managed network: hold it and
    /// send a request, or (no peer, no key) let the ACLs decide at once.
    #[allow(clippy::too_many_arguments)]
    fn udp_start<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        buf: &B,
        info: &FrameInfo,
        key: FlowKey,
        pu: PuId,
        (src, dst): (IpAddr, IpAddr),
        now: u64,
    ) -> Action {
        let p = &cfg.policy;
        let peer = p.peer_for(dst);
        let txk = peer.and_then(|peer| cfg.keys.tx_key(peer, now));
        let (Some(k), Some(pu_identity)) = (txk, p.pu(pu).map(|x| x.identity)) else {
            let n = if peer.is_none() { Note::NoPeerForDestination } else { Note::NoKeyForPeer };
            self.note(side, n);
            return self.other(cfg, side, info, src, dst, pu, now);
        };
        if self.udp.held_total >= self.udp.cfg.hold_total {
            return self.drop(side, DropReason::UdpHoldTotalFull);
        }
        if !self.udp.outbox_room(1) {
            return self.drop(side, DropReason::UdpPendingFull);
        }
        let Some(slot) = self.udp.free.pop() else { return self.drop(side, DropReason::UdpPendingFull) };
        let nonce = self.udp.nonce();
        let id = UdpIdentity { msg: UdpMsg::Request, identity: pu_identity, nonce, echo: [0; 8] };
        let spec = HandshakeSpec { src: info.src, dst: info.dst, sport: info.src_port, dport: info.dst_port };
        let l3 = usize::from(info.l3_offset);
        let mut frame = [0u8; MAX_HANDSHAKE_FRAME];
        let built = buf.data().get(..l3).and_then(|eth| build_handshake(&mut frame, eth, false, &spec, k, &id));
        let Some(len) = built else {
            self.udp.free.push(slot);
            return self.drop(side, DropReason::Malformed);
        };
        match self.table.insert(
            key,
            NewFlow { pu, initiator: side, state: FlowState::Udp(UdpState::Pending), seq: slot },
            now,
        ) {
            Ok(e) => e.account(side, buf.len() as u32),
            Err(_) => {
                self.udp.free.push(slot);
                return self.drop(side, DropReason::FlowTableFull);
            }
        }
        {
            let s = &mut self.udp.slots[slot as usize];
            *s = Pending::FREE;
            s.key = key;
            s.pu = pu;
            s.nonce = nonce;
            s.started = now;
            s.held = 1;
            s.frame_len = len as u8;
            s.frame = frame;
        }
        self.udp.held_total += 1;
        self.udp.push_stage(slot, 0, now);
        self.udp.send(Side::Outside, &frame[..len]);
        self.udp.stats.started += 1;
        self.note(side, Note::UdpRequestSent);
        self.note(side, Note::UdpHeld);
        Action::Hold(slot)
    }

    /// A request from a peer gateway for our PU (the server): verify, judge
    /// by incoming rules, answer in place with a signed response or reject.
    fn udp_request<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        buf: &mut B,
        info: &FrameInfo,
        key: FlowKey,
        pu: PuId,
        now: u64,
    ) -> Action {
        let side = Side::Outside;
        let p = &cfg.policy;
        let gen = cfg.generation();
        let v = match verify_udp(buf.data(), info, &cfg.keys, now) {
            Ok(v) => v,
            Err(e) => {
                let r = drop_of_verify(e);
                let mut rec = FlowRecord::new(EventKind::Drop, now, key, side, pu.0, gen);
                rec.drop = Some(r);
                self.emit(side, &rec);
                return self.drop(side, r);
            }
        };
        self.note(side, Note::IdentityVerified);
        if let Some(refused) = self.refuse_unowned(p, v.identity, v.key_id.get() >> 8, side, side, key, pu, gen, now) {
            return refused;
        }
        let t = *self.table.timeouts();
        let existing = self
            .table
            .lookup(&key, now)
            .map(|e| (e.initiator(), e.remote_identity(), e.policy_generation(), e.verdict().unpack()));
        let (decision, fresh) = match existing {
            Some((Side::Inside, ..)) => return self.drop(side, DropReason::UdpUnexpectedHandshake),
            // A retransmitted request (our answer was lost): answer the same way.
            Some((Side::Outside, Some(id), g, Some(d))) if id == v.identity && g == gen => (d, false),
            _ => (p.decide(pu, Direction::Incoming, Remote::Identity(v.identity), 17, key.inside_port), true),
        };
        let Some(pu_identity) = p.pu(pu).map(|x| x.identity) else { return self.drop(side, DropReason::NoLocalPu) };
        // Signed with the pair of keys the request used, the other way round
        // (as a SYN-ACK is: during a rotation the peer may not have our newest
        // key yet, or still sign towards our previous one); the newest valid
        // key if that one is gone.
        let tx = p.identity_peer(v.identity).and_then(|peer| {
            cfg.keys.tx_key_answering(peer, v.key_id.answer_bytes(), now).or_else(|| cfg.keys.tx_key(peer, now))
        });
        let Some(k) = tx else {
            self.note(side, Note::NoKeyForPeer);
            return self.drop(side, DropReason::IdentityUnknownKey);
        };
        if fresh {
            let init = NewFlow { pu, initiator: side, state: FlowState::Udp(UdpState::Authorized), seq: 0 };
            match self.table.insert(key, init, now) {
                Ok(e) => e.set_verdict(&decision, Some(v.identity), gen),
                Err(_) => return self.drop(side, DropReason::FlowTableFull),
            }
            let mut rec = FlowRecord::new(EventKind::Decision, now, key, side, pu.0, gen).with_decision(&decision);
            rec.remote_identity = Some(v.identity);
            if decision.allowed() {
                self.note(side, note_of_allow(&decision));
            } else {
                rec.drop = Some(drop_of_reason(decision.reason));
            }
            self.emit(side, &rec);
        } else if let Some(e) = self.table.lookup(&key, now) {
            e.on_udp(now, &t);
        }
        let msg = if decision.allowed() { UdpMsg::Response } else { UdpMsg::Reject };
        // A rejected request is a drop (each time it comes), answered like a
        // reset: within the reset budget (the request may be a replay with a
        // forged source).
        let rejected = drop_of_reason(decision.reason);
        if msg == UdpMsg::Reject && !self.replies.allow(Trust::Verified, now) {
            self.note(side, Note::UdpRejectSuppressed);
            return self.drop(side, rejected);
        }
        let id = UdpIdentity { msg, identity: pu_identity, nonce: self.udp.nonce(), echo: v.nonce };
        // The answer goes back where the request came from: addresses, ports and MACs swapped.
        let spec = HandshakeSpec { src: info.dst, dst: info.src, sport: info.dst_port, dport: info.src_port };
        let l3 = usize::from(info.l3_offset);
        let mut scratch = [0u8; MAX_HANDSHAKE_FRAME];
        let Some(n) = buf.data().get(..l3).and_then(|eth| build_handshake(&mut scratch, eth, true, &spec, k, &id))
        else {
            return self.drop(side, DropReason::Malformed);
        };
        let len = buf.len();
        let fits = if n <= len { buf.trim(len - n).is_ok() } else { buf.append(n - len).is_ok() };
        if !fits {
            return self.drop(side, DropReason::IdentityBufferFull);
        }
        buf.data_mut()[..n].copy_from_slice(&scratch[..n]);
        if decision.allowed() {
            self.note(side, Note::UdpResponseSent);
            Action::Answer
        } else {
            self.note(side, Note::UdpRejectSent);
            self.dir(side).drop_count(rejected).add(1);
            Action::Reply(rejected)
        }
    }

    /// A response or reject from the peer gateway for a pending flow of ours.
    fn udp_answer<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        buf: &B,
        info: &FrameInfo,
        key: FlowKey,
        now: u64,
    ) -> Action {
        let side = Side::Outside;
        let p = &cfg.policy;
        let gen = cfg.generation();
        let flow = self.table.lookup(&key, now).map(|e| (e.state(), e.syn_seq(), e.initiator(), e.pu()));
        let (slot, pu) = match flow {
            Some((FlowState::Udp(UdpState::Pending), slot, Side::Inside, pu)) => {
                (slot, p.pu_by_address(key.inside_ip()).unwrap_or(pu))
            }
            Some((FlowState::Udp(UdpState::Authorized), _, Side::Inside, _)) => {
                // A second answer (to a retransmitted request): consumed, if genuine.
                return match verify_udp(buf.data(), info, &cfg.keys, now) {
                    Ok(_) => {
                        self.note(side, Note::UdpDuplicateAnswer);
                        Action::Consume
                    }
                    Err(e) => self.drop(side, drop_of_verify(e)),
                };
            }
            _ => return self.drop(side, DropReason::UdpUnexpectedHandshake),
        };
        let Some(s) = self.udp.slots.get(slot as usize).copied() else {
            return self.drop(side, DropReason::OutOfState);
        };
        if s.stage == IDLE || s.key != key {
            return self.drop(side, DropReason::OutOfState);
        }
        // A forged or replayed answer never ends the handshake: the flow stays pending.
        let v = match verify_udp(buf.data(), info, &cfg.keys, now) {
            Ok(v) => v,
            Err(e) => {
                let r = drop_of_verify(e);
                let mut rec = FlowRecord::new(EventKind::Drop, now, key, Side::Inside, pu.0, gen);
                rec.drop = Some(r);
                self.emit(side, &rec);
                return self.drop(side, r);
            }
        };
        if v.echo != s.nonce {
            return self.drop(side, DropReason::UdpUnexpectedHandshake);
        }
        self.note(side, Note::IdentityVerified);
        if let Some(refused) =
            self.refuse_unowned(p, v.identity, v.key_id.get() >> 8, side, Side::Inside, key, pu, gen, now)
        {
            return refused;
        }
        let (decision, drop) = if v.msg == UdpMsg::Reject {
            (peer_reject(), DropReason::UdpRejectedByPeer)
        } else {
            let d = p.decide(pu, Direction::Outgoing, Remote::Identity(v.identity), 17, key.outside_port);
            let r = drop_of_reason(d.reason);
            (d, r)
        };
        let t = *self.table.timeouts();
        if let Some(e) = self.table.lookup(&key, now) {
            e.set_pu(pu);
            e.set_verdict(&decision, Some(v.identity), gen);
            e.set_udp_state(UdpState::Authorized, now, &t);
        }
        self.udp.stats.answered += 1;
        self.note(side, Note::UdpHandshakeDone);
        let mut rec = FlowRecord::new(EventKind::Decision, now, key, Side::Inside, pu.0, gen).with_decision(&decision);
        rec.remote_identity = Some(v.identity);
        if decision.allowed() {
            self.note(side, note_of_allow(&decision));
        } else {
            rec.drop = Some(drop);
        }
        self.emit(side, &rec);
        self.finish_slot(slot, decision.allowed(), drop, now);
        Action::Consume
    }
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;

#[cfg(test)]
mod frame_tests {
    use super::*;
    use crate::identity::KeyId;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn v6(x: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = x;
        a
    }

    /// Handshake messages as the hand-written writer this one replaced made
    /// them: an untagged IPv4 request, and an IPv6 response behind two
    /// 802.1Q tags sent back (MACs swapped).
    const REQUEST_V4: &str = concat!(
        "02aabbccdd0102112233440208004500004b00004000401126820a01000a0a0200149c40138900083bf4e5037f2d4d49",
        "1001000102000003e9010203040506070800000000000000002c4ce168fb2957922cc0ad7233b2d1e8",
    );
    const RESPONSE_V6_TWO_TAGS: &str = concat!(
        "02112233440202aabbccdd018100000a8100000b86dd6000000000371140fd000000000000000000000000000002fd00",
        "000000000000000000000000000113899c400008561039107f2d4d491002000102000007d10909090909090909010203",
        "0405060708dd43b29bf8782c98c5722df8e9a278e0",
    );

    #[test]
    fn handshake_frames_are_the_bytes_they_always_were() {
        let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x02, 0x11, 0x22, 0x33, 0x44, 0x02];
        let key = MacKey::from_secret(KeyId::pairwise(1, 2), 0, &[7; 32], 0, u64::MAX);
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        let mut eth = mac.to_vec();
        eth.extend_from_slice(&[0x08, 0x00]);
        let spec =
            HandshakeSpec { src: Addr::V4([10, 1, 0, 10]), dst: Addr::V4([10, 2, 0, 20]), sport: 40000, dport: 5001 };
        let id = UdpIdentity { msg: UdpMsg::Request, identity: 1001, nonce: [1, 2, 3, 4, 5, 6, 7, 8], echo: [0; 8] };
        let n = build_handshake(&mut out, &eth, false, &spec, &key, &id).unwrap();
        assert_eq!(out[..n], unhex(REQUEST_V4));
        let mut eth = mac.to_vec();
        eth.extend_from_slice(&[0x81, 0x00, 0x00, 10, 0x81, 0x00, 0x00, 11, 0x86, 0xdd]);
        let spec = HandshakeSpec { src: Addr::V6(v6(2)), dst: Addr::V6(v6(1)), sport: 5001, dport: 40000 };
        let id = UdpIdentity { msg: UdpMsg::Response, identity: 2001, nonce: [9; 8], echo: [1, 2, 3, 4, 5, 6, 7, 8] };
        let n = build_handshake(&mut out, &eth, true, &spec, &key, &id).unwrap();
        assert_eq!(out[..n], unhex(RESPONSE_V6_TWO_TAGS));
    }
}
