//! The poll-mode, run-to-completion worker.
//!
//! One worker per pinned lcore. Each iteration: receive a burst from its queue
//! on each port, send frames whose flow another worker owns to that worker's
//! ring, take in frames handed to it, process, transmit a burst to the
//! opposite port, add the burst's totals to its counters. Nothing here
//! allocates, locks or makes a syscall per packet; the shared words it reads
//! per iteration are the stop flag (a relaxed load) and, with a policy, the
//! published engine configuration (one `ArcSwap` load per iteration).
//!
//! With a policy ([`EngineSetup`]), every frame goes through the packet
//! engine ([`crate::engine`]): forwarded, dropped, or turned into a TCP reset
//! sent back out of the port it came from (the per-side reply bursts); when
//! the engine resets both ends, the second reset goes out in an mbuf from the
//! pool. Time (`now`, Unix ns) is read from the TSC once per iteration.
//! UDP datagrams whose handshake is pending wait in the worker's hold store
//! ([`hold`]); the engine's effects (handshake frames to send, hold slots to
//! release or discard) are carried out after every frame and after the
//! per-iteration timer check.

pub mod hold;
mod io;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dpdk_bindings::burst::{Burst, MAX_BURST};
use dpdk_bindings::ring::{RingConsumer, RingProducer};
use dpdk_bindings::{Mbuf, Mempool};

use crate::dispatch;
use crate::engine::udp::Effect;
use crate::engine::{Action, Engine, EngineConfig, Looked};
use crate::policy::Side as PSide;
use crate::stats::{DirStats, DropReason, Note, WorkerStats};

/// Which port a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The workloads' side.
    Inside,
    /// The network's side.
    Outside,
}

/// Everything a worker needs, built by the process before launch.
pub struct WorkerSetup {
    /// This worker's index among `workers`.
    pub index: usize,
    pub workers: usize,
    pub inside_port: u16,
    pub outside_port: u16,
    /// The queue this worker owns on both ports (rx and tx).
    pub queue: u16,
    /// Packets per receive call, at most [`MAX_BURST`].
    pub burst: usize,
    /// Sleep this long after a run of empty polls (zero: pure busy polling).
    pub idle_backoff: Duration,
    /// `handoff_out[w]` carries frames to worker `w` (`None` for itself).
    pub handoff_out: Vec<Option<RingProducer>>,
    /// Rings from every other worker to this one.
    pub handoff_in: Vec<RingConsumer>,
    pub stats: Arc<WorkerStats>,
    pub stop: Arc<AtomicBool>,
    /// The packet engine; `None` forwards every frame untouched.
    pub engine: Option<EngineSetup>,
}

/// The packet engine of one worker, built before launch (its flow table is
/// allocated then, never on the fast path).
pub struct EngineSetup {
    /// Must count into the same `WorkerStats` as the worker.
    pub engine: Engine,
    /// Published by the control thread; loaded once per poll iteration.
    pub config: Arc<ArcSwap<EngineConfig>>,
    /// For the second reset of a reset-both-ends.
    pub pool: Arc<Mempool>,
    /// Converts TSC ticks to Unix ns: `unix_ns = unix0 + (tsc - tsc0) * 1e9 / hz`.
    pub clock: Clock,
}

/// A TSC-to-Unix-time mapping taken once at start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub tsc0: u64,
    pub unix0_ns: u64,
    pub hz: u64,
}

impl Clock {
    /// Reads the TSC and the wall clock now.
    pub fn now() -> Clock {
        let unix0_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Clock { tsc0: dpdk_bindings::tsc(), unix0_ns, hz: dpdk_bindings::tsc_hz().max(1) }
    }

    #[inline]
    pub fn unix_ns(&self, tsc: u64) -> u64 {
        let dt = tsc.wrapping_sub(self.tsc0) as u128;
        self.unix0_ns + (dt * 1_000_000_000 / u128::from(self.hz)) as u64
    }
}

/// How many frames ahead of the one it processes the worker reads a frame's
/// flow key and prefetches its flow-table slot ([`Engine::look`]): far enough
/// for the slot's lines to arrive, near enough that they are still in L1.
const LOOK_AHEAD: usize = 4;

/// Flow-event slots prefetched for writing before each burst: as many
/// records as a burst of rejected handshakes can fill with 1 frame in 8 an
/// event, more being a flood that the queue absorbs anyway.
const EVENTS_AHEAD: usize = 4;

/// Empty polls in a row before an idle back-off sleep.
const IDLE_POLLS_BEFORE_BACKOFF: u32 = 256;

/// Per-burst totals, added to the shared counters once per iteration.
#[derive(Default)]
struct Tally {
    rx_packets: u64,
    rx_bytes: u64,
}

struct Worker {
    s: WorkerSetup,
    handoff_burst: Vec<Burst>,
    to_outside: Burst,
    to_inside: Burst,
    /// Resets answering frames from the inside / outside port (sent back there).
    reply_inside: Burst,
    reply_outside: Burst,
    engine: Option<EngineSetup>,
    /// The configuration loaded for this iteration.
    cfg: Option<Arc<EngineConfig>>,
    now: u64,
    /// Datagrams of pending UDP handshakes (allocated at start).
    hold: Option<hold::HoldStore>,
}

impl WorkerSetup {
    /// Runs until the stop flag is set; returns 0 (the lcore's exit code).
    pub fn run(self) -> i32 {
        let n = self.workers;
        let mut s = self;
        let engine = s.engine.take();
        let hold = engine.as_ref().map(|e| {
            let c = e.engine.udp().config();
            hold::HoldStore::new(c.pending as usize, usize::from(c.hold_per_flow))
        });
        let mut w = Worker {
            s,
            // Allocated once, before the loop.
            handoff_burst: (0..n).map(|_| Burst::new()).collect(),
            to_outside: Burst::new(),
            to_inside: Burst::new(),
            reply_inside: Burst::new(),
            reply_outside: Burst::new(),
            engine,
            cfg: None,
            now: 0,
            hold,
        };
        w.run();
        0
    }
}

impl Worker {
    fn run(&mut self) {
        let mut idle = 0u32;
        let burst = self.s.burst.clamp(1, MAX_BURST);
        // The receive burst lives outside `self` so frames can be drained from
        // it while `self` processes them.
        let mut rx = Burst::new();
        while !self.s.stop.load(Ordering::Relaxed) {
            if let Some(e) = self.engine.as_mut() {
                // Once per iteration: the configuration and the time.
                self.cfg = Some(e.config.load_full());
                self.now = e.clock.unix_ns(dpdk_bindings::tsc());
                e.engine.sweep(self.now);
                if let Some(cfg) = self.cfg.as_ref() {
                    e.engine.udp_timers(cfg, self.now);
                }
                self.effects();
            }
            let mut got = self.poll_port(&mut rx, Side::Inside, burst);
            got += self.poll_port(&mut rx, Side::Outside, burst);
            got += self.poll_handoff(&mut rx);
            self.flush();
            if let Some(e) = self.engine.as_mut() {
                e.engine.publish_events();
            }
            if let Some(h) = self.hold.as_ref() {
                self.s.stats.held.set(h.total() as u64);
            }
            self.s.stats.polls.add(1);
            if got == 0 {
                self.s.stats.idle_polls.add(1);
                idle += 1;
                if !self.s.idle_backoff.is_zero() && idle >= IDLE_POLLS_BEFORE_BACKOFF {
                    // Only when idle: lets a small test machine's other processes run.
                    std::thread::sleep(self.s.idle_backoff);
                }
            } else {
                idle = 0;
            }
        }
        // Drain: whatever reached this worker before the stop goes out.
        self.poll_handoff(&mut rx);
        self.flush();
        if let Some(e) = self.engine.as_mut() {
            e.engine.publish_events();
        }
        // Datagrams still held are freed with the store when the worker
        // ends: the gauge says how many.
        if let Some(h) = self.hold.as_ref() {
            self.s.stats.held.set(h.total() as u64);
        }
    }

    fn port(&self, side: Side) -> u16 {
        match side {
            Side::Inside => self.s.inside_port,
            Side::Outside => self.s.outside_port,
        }
    }

    #[inline]
    fn note(&self, side: Side, n: Note) {
        self.dir_stats(side).note_count(n).add(1);
    }

    fn dir_stats(&self, side: Side) -> &DirStats {
        match side {
            Side::Inside => &self.s.stats.from_inside,
            Side::Outside => &self.s.stats.from_outside,
        }
    }

    /// Receives one burst from `side` and dispatches it.
    fn poll_port(&mut self, rx: &mut Burst, side: Side, burst: usize) -> usize {
        let n = rx.rx(self.port(side), self.s.queue, burst);
        if n == 0 {
            return 0;
        }
        let mut tally = Tally::default();
        let mut handed = 0u64;
        if self.s.workers > 1 || self.engine.is_some() {
            // The dispatch hash and the engine read each frame's headers.
            for i in 0..n {
                rx.prefetch(i);
            }
        }
        // The engine looks LOOK_AHEAD frames ahead (`ahead[i % LOOK_AHEAD]`
        // holds frame i's look until frame i is processed): its flow slot is
        // prefetched while the frames before it are processed.
        let pside = policy_side(side);
        let mut ahead = [Looked::NOT_PLAIN; LOOK_AHEAD];
        let mut frames = rx.drain();
        if let Some(e) = self.engine.as_ref() {
            e.engine.prefetch_events(EVENTS_AHEAD, dpdk_bindings::prefetch_write::<u8>);
            for (k, l) in ahead.iter_mut().enumerate() {
                let Some(f) = frames.ahead(k) else { break };
                *l = e.engine.look(pside, f, dpdk_bindings::prefetch::<u8>);
            }
        }
        let mut i = 0;
        while let Some(m) = frames.next() {
            tally.rx_packets += 1;
            tally.rx_bytes += u64::from(m.pkt_len());
            let slot = i % LOOK_AHEAD;
            i += 1;
            let l = ahead[slot];
            if let (Some(e), Some(f)) = (self.engine.as_ref(), frames.ahead(LOOK_AHEAD - 1)) {
                ahead[slot] = e.engine.look(pside, f, dpdk_bindings::prefetch::<u8>);
            }
            if self.s.workers > 1 {
                let owner = dispatch::owner(dispatch::symmetric_flow_hash(m.data()), self.s.workers);
                if owner != self.s.index {
                    self.hand_off(owner, m);
                    handed += 1;
                    continue;
                }
            }
            self.process(side, m, Some(&l));
        }
        let st = self.dir_stats(side);
        st.rx_packets.add(tally.rx_packets);
        st.rx_bytes.add(tally.rx_bytes);
        if handed > 0 {
            self.s.stats.handed_off.add(handed);
        }
        n
    }

    /// Takes in frames other workers received for flows this one owns.
    fn poll_handoff(&mut self, rx: &mut Burst) -> usize {
        let mut total = 0;
        for r in 0..self.s.handoff_in.len() {
            total += self.s.handoff_in[r].dequeue(rx);
            for m in rx.drain() {
                let side = if m.port() == self.s.inside_port { Side::Inside } else { Side::Outside };
                self.process(side, m, None);
            }
        }
        if total > 0 {
            self.s.stats.handed_in.add(total as u64);
        }
        total
    }

    /// The packet engine's verdict for one frame (`looked`: what
    /// [`Engine::look`] found in it, if the worker looked ahead); without a
    /// policy every frame is forwarded unchanged to the opposite port
    /// (L2-transparent).
    #[inline(always)]
    fn process(&mut self, from: Side, mut m: Mbuf, looked: Option<&Looked>) {
        let (Some(e), Some(cfg)) = (self.engine.as_mut(), self.cfg.as_ref()) else {
            self.forward(from, m);
            return;
        };
        let side = policy_side(from);
        let action = match looked {
            Some(l) => e.engine.process_looked(cfg, side, &mut m, l, self.now),
            None => e.engine.process(cfg, side, &mut m, self.now),
        };
        match action {
            Action::Forward => self.forward(from, m),
            Action::Drop(_) => drop(m),
            Action::Consume => {
                drop(m);
                self.note(from, Note::FramesConsumed);
            }
            // The frame was counted as a drop; the reset in its buffer is made.
            Action::Reply(_) => {
                self.note(from, Note::FramesMade);
                self.reply(from, m)
            }
            Action::Answer => {
                self.note(from, Note::FramesConsumed);
                self.note(from, Note::FramesMade);
                self.reply(from, m)
            }
            Action::Hold(slot) => {
                if let Some(Err(m)) = self.hold.as_mut().map(|h| h.push(slot, m)) {
                    drop(m);
                    self.dir_stats(from).drop_count(DropReason::UdpHoldQueueFull).add(1);
                }
            }
            Action::ReplyAndReset(_) => {
                let extra = e.engine.extra_frame();
                let second = e
                    .pool
                    .alloc()
                    .and_then(|mut x| x.append(extra.len()).then(|| x.data_mut().copy_from_slice(extra)).map(|_| x));
                self.note(from, Note::FramesMade);
                self.reply(from, m);
                if let Some(x) = second {
                    self.note(from, Note::FramesMade);
                    self.forward(from, x);
                }
            }
        }
        self.effects();
    }

    /// Carries out the engine's effects: generated handshake frames (in mbufs
    /// from the pool), held datagrams released (in order, to the outside
    /// port) or freed.
    #[inline(always)]
    fn effects(&mut self) {
        let n = self.engine.as_ref().map_or(0, |e| e.engine.effects().len());
        if n > 0 {
            self.run_effects(n);
        }
    }

    #[cold]
    fn run_effects(&mut self, n: usize) {
        for i in 0..n {
            let Some(e) = self.engine.as_ref() else { return };
            match e.engine.effects()[i] {
                Effect::Send { out, frame } => {
                    let bytes = e.engine.effect_frame(frame);
                    let m = e.pool.alloc().and_then(|mut x| {
                        x.append(bytes.len()).then(|| x.data_mut().copy_from_slice(bytes)).map(|_| x)
                    });
                    if let Some(m) = m {
                        // `forward` sends to the port opposite the one named.
                        let from = if out == PSide::Outside { Side::Inside } else { Side::Outside };
                        self.note(from, Note::FramesMade);
                        self.forward(from, m);
                    }
                }
                Effect::Release { slot } => {
                    while let Some(m) = self.hold.as_mut().and_then(|h| h.pop(slot)) {
                        self.forward(Side::Inside, m);
                    }
                }
                Effect::Discard { slot, .. } => {
                    if let Some(h) = self.hold.as_mut() {
                        h.discard(slot);
                    }
                }
            }
        }
        if let Some(e) = self.engine.as_mut() {
            e.engine.clear_effects();
        }
    }

    /// Queues a frame back out of the port it came from.
    #[inline]
    fn reply(&mut self, from: Side, m: Mbuf) {
        let (out, port, st) = match from {
            Side::Inside => (&mut self.reply_inside, self.s.inside_port, &self.s.stats.from_inside),
            Side::Outside => (&mut self.reply_outside, self.s.outside_port, &self.s.stats.from_outside),
        };
        if let Err(m) = out.push(m) {
            let outcome = out.tx(port, self.s.queue);
            out.push(m).ok();
            record_tx(st, outcome);
        }
    }

    #[inline(always)]
    fn forward(&mut self, from: Side, m: Mbuf) {
        let (out, port, side) = match from {
            Side::Inside => (&mut self.to_outside, self.s.outside_port, Side::Inside),
            Side::Outside => (&mut self.to_inside, self.s.inside_port, Side::Outside),
        };
        if let Err(m) = out.push(m) {
            // Full: send what is queued, then queue this one.
            let outcome = out.tx(port, self.s.queue);
            out.push(m).ok();
            let st = match side {
                Side::Inside => &self.s.stats.from_inside,
                Side::Outside => &self.s.stats.from_outside,
            };
            record_tx(st, outcome);
        }
    }

    fn hand_off(&mut self, owner: usize, m: Mbuf) {
        let b = &mut self.handoff_burst[owner];
        if let Err(m) = b.push(m) {
            self.flush_handoff(owner);
            // The burst is empty now (flushed or its leftovers freed).
            self.handoff_burst[owner].push(m).ok();
        }
    }

    fn flush_handoff(&mut self, owner: usize) {
        let b = &mut self.handoff_burst[owner];
        if b.is_empty() {
            return;
        }
        if let Some(ring) = self.s.handoff_out[owner].as_mut() {
            ring.enqueue(b);
        }
        let left = b.len() as u64;
        if left > 0 {
            // The owner is not keeping up: drop rather than wait for it.
            let mut from_inside = 0;
            for m in b.drain() {
                if m.port() == self.s.inside_port {
                    from_inside += 1;
                }
            }
            self.s.stats.from_inside.drop_count(DropReason::HandoffFull).add(from_inside);
            self.s.stats.from_outside.drop_count(DropReason::HandoffFull).add(left - from_inside);
        }
    }

    /// Transmits everything queued and pushes hand-offs to their rings.
    fn flush(&mut self) {
        let o = self.to_outside.tx(self.s.outside_port, self.s.queue);
        record_tx(&self.s.stats.from_inside, o);
        let o = self.to_inside.tx(self.s.inside_port, self.s.queue);
        record_tx(&self.s.stats.from_outside, o);
        if !self.reply_inside.is_empty() {
            let o = self.reply_inside.tx(self.s.inside_port, self.s.queue);
            record_tx(&self.s.stats.from_inside, o);
        }
        if !self.reply_outside.is_empty() {
            let o = self.reply_outside.tx(self.s.outside_port, self.s.queue);
            record_tx(&self.s.stats.from_outside, o);
        }
        for w in 0..self.handoff_burst.len() {
            self.flush_handoff(w);
        }
    }
}

/// The engine's name for the port a frame came from.
#[inline(always)]
fn policy_side(s: Side) -> PSide {
    match s {
        Side::Inside => PSide::Inside,
        Side::Outside => PSide::Outside,
    }
}

#[inline(always)]
fn record_tx(st: &DirStats, o: dpdk_bindings::burst::TxOutcome) {
    if o.sent > 0 {
        st.tx_packets.add(o.sent as u64);
        st.tx_bytes.add(o.sent_bytes);
    }
    if o.dropped > 0 {
        st.drop_count(DropReason::TxFull).add(o.dropped as u64);
    }
}
