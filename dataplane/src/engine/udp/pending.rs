//! The pending handshakes of one worker, free of the engine: a fixed pool
//! allocated at start (`pending` slots, each with its request frame ready for
//! retransmission), the per-flow and per-worker hold bounds, the retransmit
//! timers, and the outbox of effects and generated frames the worker drains.
//!
//! Timers are FIFO lists, one per retransmit stage: every entry of stage `k`
//! was (re)sent `backoff[k]` before its deadline and entries enter in time
//! order, so each list is sorted by deadline and a timer check looks at list
//! heads only. Nothing here allocates after [`UdpHandshake::new`] or reads a
//! clock.

use super::MAX_HANDSHAKE_FRAME;
use crate::flow::FlowKey;
use crate::policy::PuId;
use crate::problem::ConfigProblem;
use crate::stats::DropReason;
use crate::Side;

const NS_PER_MS: u64 = 1_000_000;
/// End of a stage list.
const NIL: u32 = u32::MAX;
/// The stage of a free slot.
const IDLE: u8 = u8::MAX;
/// Most retransmit stages (entries of `backoff_ms`).
const MAX_STAGES: usize = 8;
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
    pub fn validate(&self, prefix: &str, pending_timeout_ns: u64) -> Vec<ConfigProblem> {
        let mut e = Vec::new();
        if self.backoff_ms.is_empty() || self.backoff_ms.len() > MAX_STAGES {
            e.push(ConfigProblem::setting(
                format!("{prefix}backoff_ms"),
                format!("{} entries; 1 to 8 are allowed", self.backoff_ms.len()),
            ));
        }
        for (i, &b) in self.backoff_ms.iter().enumerate() {
            if !(1..=10_000).contains(&b) {
                e.push(ConfigProblem::setting(
                    format!("{prefix}backoff_ms[{i}]"),
                    format!("{b} is not in 1..=10000 (milliseconds)"),
                ));
            }
        }
        let total: u64 = self.backoff_ms.iter().map(|&b| u64::from(b)).sum();
        if total * NS_PER_MS >= pending_timeout_ns {
            e.push(ConfigProblem::setting(
                format!("{prefix}backoff_ms"),
                format!(
                    "the waits add up to {total} ms, not less than the UDP pending flow timeout ({} ms)",
                    pending_timeout_ns / NS_PER_MS
                ),
            ));
        }
        if !(1..=256).contains(&self.hold_per_flow) {
            e.push(ConfigProblem::setting(
                format!("{prefix}hold_per_flow"),
                format!("{} is not in 1..=256", self.hold_per_flow),
            ));
        }
        if self.hold_total == 0 || self.hold_total > 1 << 20 {
            e.push(ConfigProblem::setting(
                format!("{prefix}hold_total"),
                format!("{} is not in 1..=1048576", self.hold_total),
            ));
        }
        if self.pending == 0 || self.pending > 1 << 20 {
            e.push(ConfigProblem::setting(
                format!("{prefix}pending"),
                format!("{} is not in 1..=1048576", self.pending),
            ));
        }
        e
    }
}

/// What the caller does besides the per-frame action: drained after every
/// [`crate::engine::Engine::process`] and
/// [`crate::engine::Engine::udp_timers`] call, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Transmit [`crate::engine::Engine::effect_frame`]`(frame)` out of the `out` port.
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

/// One pending handshake: its flow, its nonce, its place on a stage list,
/// its held datagrams and its request frame.
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

/// What a pending slot says about the flow it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::engine) struct PendingFlow {
    pub key: FlowKey,
    pub pu: PuId,
    pub nonce: [u8; 8],
}

/// A timer that ran out ([`UdpHandshake::next_due`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::engine) enum Due {
    /// The request of a slot went out again (`sent`: it fit the outbox);
    /// `proto`: its flow's (UDP: our handshake request; TCP: our layer-4
    /// record, `start_tcp_hold`).
    Retransmitted { sent: bool, proto: u8 },
    /// The last wait of `slot` ran out: the ACLs decide its flow.
    Expired { slot: u32, flow: PendingFlow },
}

/// How a pending handshake ended, for [`UdpHandshake::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::engine) enum Ending {
    /// Send the held datagrams on.
    Release,
    /// Drop them, counted with this reason.
    Discard(DropReason),
}

/// One worker's handshake state: the pending pool, the stage lists, the
/// outbox of effects and generated frames, the nonce generator.
pub struct UdpHandshake {
    cfg: UdpConfig,
    backoff_ns: [u64; MAX_STAGES],
    stages: usize,
    slots: Box<[Pending]>,
    free: Vec<u32>,
    lists: [List; MAX_STAGES],
    held_total: u32,
    effects: Vec<Effect>,
    frames: Box<[[u8; MAX_HANDSHAKE_FRAME]]>,
    frame_lens: [u8; OUTBOX],
    frames_used: usize,
    rng: u64,
    stats: UdpHandshakeStats,
}

impl UdpHandshake {
    /// Allocates everything (pending pool, outbox). `cfg` must have passed
    /// [`UdpConfig::validate`]; out-of-range values are clamped.
    pub fn new(cfg: UdpConfig, seed: u64) -> UdpHandshake {
        let mut cfg = cfg;
        cfg.backoff_ms.truncate(MAX_STAGES);
        if cfg.backoff_ms.is_empty() {
            cfg.backoff_ms.push(50);
        }
        cfg.hold_per_flow = cfg.hold_per_flow.clamp(1, 256);
        cfg.pending = cfg.pending.clamp(1, 1 << 20);
        let mut backoff_ns = [0u64; MAX_STAGES];
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
            lists: [List { head: NIL, tail: NIL }; MAX_STAGES],
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

    /// The same tuning, a fresh pool (the nonce generator goes on).
    pub(in crate::engine) fn renewed(&self, cfg: UdpConfig) -> UdpHandshake {
        UdpHandshake::new(cfg, self.rng)
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

    pub fn stats(&self) -> UdpHandshakeStats {
        self.stats
    }

    /// What to do besides each frame's action.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// The bytes of a generated frame named by [`Effect::Send`].
    pub fn frame(&self, frame: u16) -> &[u8] {
        let f = usize::from(frame);
        match self.frames.get(f) {
            Some(b) => &b[..usize::from(self.frame_lens[f])],
            None => &[],
        }
    }

    /// Forgets the effects (after the caller handled them all).
    pub fn clear_effects(&mut self) {
        self.effects.clear();
        self.frames_used = 0;
    }

    /// SplitMix64: a fresh 8-byte nonce. Nonces must be unique, not secret
    /// (the MAC key is the secret); the state is seeded from OS randomness.
    pub(in crate::engine) fn nonce(&mut self) -> [u8; 8] {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).to_be_bytes()
    }

    /// Whether a new handshake may start: `Err` names the bound in the way.
    pub(in crate::engine) fn can_start(&self) -> Result<(), DropReason> {
        if self.held_total >= self.cfg.hold_total {
            return Err(DropReason::UdpHoldTotalFull);
        }
        if !self.outbox_room(1) || self.free.is_empty() {
            return Err(DropReason::UdpPendingFull);
        }
        Ok(())
    }

    /// Takes a free slot ([`Self::can_start`] said there is one).
    pub(in crate::engine) fn take_slot(&mut self) -> Option<u32> {
        self.free.pop()
    }

    /// Gives back a slot taken but not started.
    pub(in crate::engine) fn give_back(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// Starts the handshake of `key` in `slot` (taken): its first datagram
    /// held, its request frame kept and sent, its first timer set.
    pub(in crate::engine) fn start(&mut self, slot: u32, flow: PendingFlow, request: &[u8], now: u64) {
        let s = &mut self.slots[slot as usize];
        *s = Pending::FREE;
        s.key = flow.key;
        s.pu = flow.pu;
        s.nonce = flow.nonce;
        s.started = now;
        s.held = 1;
        s.frame_len = request.len() as u8;
        s.frame[..request.len()].copy_from_slice(request);
        self.held_total += 1;
        self.push_stage(slot, 0, now);
        self.send(Side::Outside, request);
        self.stats.started += 1;
    }

    /// Holds the first segment of a layer-4 TCP flow (`docs/identity-l4.md`)
    /// in `slot` (taken). `record` is the segment carrying our record (the
    /// caller sent it beside the held segment): it goes out again on the
    /// backoff, as a UDP request does, so a record or an answer lost on the
    /// wire is repaired at the gateway's pace rather than at the workload's
    /// backed-off retransmission timer; the last wait's expiry discards what
    /// is held if the peer's record never comes.
    pub(in crate::engine) fn start_tcp_hold(&mut self, slot: u32, flow: PendingFlow, record: &[u8], now: u64) {
        let s = &mut self.slots[slot as usize];
        *s = Pending::FREE;
        s.key = flow.key;
        s.pu = flow.pu;
        s.started = now;
        s.held = 1;
        let n = record.len().min(MAX_HANDSHAKE_FRAME);
        s.frame_len = n as u8;
        s.frame[..n].copy_from_slice(&record[..n]);
        self.held_total += 1;
        self.push_stage(slot, 0, now);
    }

    /// The flow a busy slot serves, if `slot` is busy and serves `key`.
    pub(in crate::engine) fn pending_flow(&self, slot: u32, key: &FlowKey) -> Option<PendingFlow> {
        let s = self.slots.get(slot as usize)?;
        (s.stage != IDLE && s.key == *key).then_some(PendingFlow { key: s.key, pu: s.pu, nonce: s.nonce })
    }

    /// One more datagram of `key`'s pending handshake in `slot`, if both
    /// bounds allow; `Err` names what refused it.
    pub(in crate::engine) fn hold(&mut self, slot: u32, key: &FlowKey) -> Result<(), DropReason> {
        let s = self.pending_flow(slot, key).map(|_| self.slots[slot as usize].held).ok_or(DropReason::OutOfState)?;
        if s >= self.cfg.hold_per_flow {
            return Err(DropReason::UdpHoldQueueFull);
        }
        if self.held_total >= self.cfg.hold_total {
            return Err(DropReason::UdpHoldTotalFull);
        }
        self.slots[slot as usize].held += 1;
        self.held_total += 1;
        Ok(())
    }

    /// The next timer that ran out by `now`, in deadline order per stage
    /// and stages in order: a request sent again (and its next timer set),
    /// or the last wait of a slot over. `None` when nothing is due or the
    /// outbox is full (the rest waits for the next call).
    pub(in crate::engine) fn next_due(&mut self, now: u64) -> Option<Due> {
        if !self.outbox_room(1) {
            return None;
        }
        for stage in 0..self.stages {
            let i = self.lists[stage].head;
            if i == NIL || self.slots[i as usize].deadline > now {
                continue;
            }
            self.unlink(i);
            let s = &self.slots[i as usize];
            if stage + 1 == self.stages {
                return Some(Due::Expired { slot: i, flow: PendingFlow { key: s.key, pu: s.pu, nonce: s.nonce } });
            }
            let (frame, len, proto) = (s.frame, usize::from(s.frame_len), s.key.proto);
            let sent = self.send(Side::Outside, &frame[..len]);
            self.push_stage(i, stage + 1, now);
            return Some(Due::Retransmitted { sent, proto });
        }
        None
    }

    /// Ends the handshake in `slot`: its held datagrams released or
    /// discarded (an effect for the worker), the slot free again. Returns
    /// how many were held.
    pub(in crate::engine) fn finish(&mut self, slot: u32, ending: Ending, now: u64) -> u16 {
        let s = self.slots[slot as usize];
        if s.held > 0 {
            match ending {
                Ending::Release => {
                    self.effect(Effect::Release { slot });
                    let d = now.saturating_sub(s.started);
                    let st = &mut self.stats;
                    st.released += 1;
                    st.release_delay_sum_ns += d;
                    st.release_delay_max_ns = st.release_delay_max_ns.max(d);
                }
                Ending::Discard(reason) => self.effect(Effect::Discard { slot, reason }),
            }
        }
        self.release_slot(slot);
        s.held
    }

    /// Counts a handshake finished by a verified answer.
    pub(in crate::engine) fn count_answered(&mut self) {
        self.stats.answered += 1;
    }

    /// Counts a handshake finished by its last timer.
    pub(in crate::engine) fn count_timed_out(&mut self) {
        self.stats.timed_out += 1;
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
    pub(in crate::engine) fn send(&mut self, out: Side, frame: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;

    const MS: u64 = NS_PER_MS;

    fn key(port: u16) -> FlowKey {
        FlowKey::from_v4(Side::Inside, [10, 1, 0, 10], [10, 2, 0, 20], port, 53, ip_proto::UDP)
    }

    fn pool(backoff_ms: Vec<u32>, hold_per_flow: u16, hold_total: u32, pending: u32) -> UdpHandshake {
        UdpHandshake::new(UdpConfig { backoff_ms, hold_per_flow, hold_total, pending }, 7)
    }

    /// Starts a handshake for `port` at `now` with a one-byte request frame.
    fn start(h: &mut UdpHandshake, port: u16, now: u64) -> u32 {
        h.can_start().unwrap();
        let slot = h.take_slot().unwrap();
        let nonce = h.nonce();
        h.start(slot, PendingFlow { key: key(port), pu: PuId(1), nonce }, &[port as u8], now);
        slot
    }

    #[test]
    fn a_request_is_sent_on_the_backoff_then_expires() {
        let mut h = pool(vec![50, 100], 4, 16, 4);
        let s = start(&mut h, 1000, 0);
        assert_eq!(h.effects(), [Effect::Send { out: Side::Outside, frame: 0 }]);
        assert_eq!(h.frame(0), [1000u16 as u8]);
        h.clear_effects();
        assert_eq!(h.next_due(49 * MS), None);
        assert_eq!(h.next_due(50 * MS), Some(Due::Retransmitted { sent: true, proto: ip_proto::UDP }));
        assert_eq!(h.next_due(50 * MS), None, "the next wait starts at the retransmission");
        assert_eq!(h.next_due(149 * MS), None);
        let flow = h.pending_flow(s, &key(1000)).unwrap();
        assert_eq!(h.next_due(150 * MS), Some(Due::Expired { slot: s, flow }));
        assert_eq!((h.finish(s, Ending::Release, 150 * MS), h.pending(), h.held()), (1, 0, 0));
        assert_eq!(h.effects().last(), Some(&Effect::Release { slot: s }));
        let st = h.stats();
        assert_eq!((st.started, st.released, st.release_delay_max_ns), (1, 1, 150 * MS));
    }

    #[test]
    fn timers_fire_in_deadline_order_within_a_stage() {
        let mut h = pool(vec![10], 1, 8, 4);
        let a = start(&mut h, 1, 0);
        let b = start(&mut h, 2, 5 * MS);
        let expired = |d: Option<Due>| match d {
            Some(Due::Expired { slot, .. }) => Some(slot),
            _ => None,
        };
        assert_eq!(expired(h.next_due(20 * MS)), Some(a));
        assert_eq!(expired(h.next_due(20 * MS)), Some(b));
        assert_eq!(h.next_due(20 * MS), None);
    }

    #[test]
    fn bounds_name_what_refused() {
        let mut h = pool(vec![50], 2, 3, 2);
        let a = start(&mut h, 1, 0);
        assert_eq!(h.hold(a, &key(1)), Ok(()));
        assert_eq!(h.hold(a, &key(1)), Err(DropReason::UdpHoldQueueFull), "two per flow");
        assert_eq!(h.hold(a, &key(2)), Err(DropReason::OutOfState), "another flow's slot");
        assert_eq!(h.hold(9, &key(1)), Err(DropReason::OutOfState), "no such slot");
        let b = start(&mut h, 2, 0);
        assert_eq!(h.held(), 3);
        assert_eq!(h.hold(b, &key(2)), Err(DropReason::UdpHoldTotalFull), "three in all");
        assert_eq!(h.can_start(), Err(DropReason::UdpHoldTotalFull));
        assert_eq!(h.finish(a, Ending::Discard(DropReason::UdpRejectedByPeer), 0), 2);
        assert_eq!(h.effects().last(), Some(&Effect::Discard { slot: a, reason: DropReason::UdpRejectedByPeer }));
        assert_eq!((h.held(), h.pending()), (1, 1));
        start(&mut h, 3, 0);
        assert_eq!(h.can_start(), Err(DropReason::UdpPendingFull), "both slots busy");
        assert_eq!(h.pending_flow(a, &key(1)), None, "a finished slot no longer serves its flow");
    }

    #[test]
    fn a_full_outbox_waits_for_the_next_drain() {
        let mut h = pool(vec![1, 1], 1, OUTBOX as u32 * 2, OUTBOX as u32 * 2);
        for p in 0..OUTBOX as u16 - 1 {
            start(&mut h, p, 0);
        }
        assert_eq!(h.can_start(), Err(DropReason::UdpPendingFull), "the outbox is the bound now");
        assert_eq!(h.next_due(MS), None, "no room to retransmit");
        h.clear_effects();
        let mut sent = 0;
        while let Some(Due::Retransmitted { sent: true, proto: ip_proto::UDP }) = h.next_due(MS) {
            sent += 1;
        }
        assert_eq!(sent, OUTBOX - 1);
    }

    #[test]
    fn nonces_do_not_repeat() {
        let mut h = pool(vec![50], 1, 1, 1);
        let n: std::collections::HashSet<[u8; 8]> = (0..10_000).map(|_| h.nonce()).collect();
        assert_eq!(n.len(), 10_000);
    }
}
