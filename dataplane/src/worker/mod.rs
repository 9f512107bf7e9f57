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
//! per-iteration timer check. Every frame is accounted for: a frame the
//! engine made that the pool has no mbuf for is counted as made and dropped
//! (`rst_no_mbuf`, `udp_handshake_no_mbuf`), so that per direction
//! rx + made = tx + drops + consumed + held ([`crate::stats::WorkerCounts::unaccounted`]).

pub mod hold;
mod io;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::cache::Cache;
use arc_swap::ArcSwap;
use dpdk_bindings::burst::{Burst, MAX_BURST};
use dpdk_bindings::ring::{RingConsumer, RingProducer};
use dpdk_bindings::{Mbuf, Mempool};

use crate::dispatch;
use crate::engine::udp::Effect;
use crate::engine::{Action, Engine, EngineConfig, Looked};
use crate::stats::{DirStats, DropReason, Note, WorkerStats};
use crate::Side;

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
    /// Nanoseconds per tick in 64.64 fixed point: two multiplies per
    /// iteration instead of a 128-bit division (`__udivti3` showed in `perf
    /// record` of the worker). Its rounding is under 2^-64 ns per tick:
    /// within a nanosecond of the division over centuries of ticks.
    ns_per_tick_q64: u128,
}

impl Clock {
    /// The mapping `unix_ns = unix0_ns + (tsc - tsc0) * 1e9 / hz`.
    pub fn new(tsc0: u64, unix0_ns: u64, hz: u64) -> Clock {
        let ns_per_tick_q64 = (1_000_000_000u128 << 64) / u128::from(hz.max(1));
        Clock { tsc0, unix0_ns, ns_per_tick_q64 }
    }

    /// Reads the TSC and the wall clock now.
    pub fn now() -> Clock {
        let unix0_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Clock::new(dpdk_bindings::tsc(), unix0_ns, dpdk_bindings::tsc_hz())
    }

    #[inline]
    pub fn unix_ns(&self, tsc: u64) -> u64 {
        let dt = u128::from(tsc.wrapping_sub(self.tsc0));
        // whole nanoseconds per tick (< 2^30) and the fraction, apart: no overflow
        let (whole, frac) = (self.ns_per_tick_q64 >> 64, self.ns_per_tick_q64 & u128::from(u64::MAX));
        self.unix0_ns.wrapping_add((dt * whole + ((dt * frac) >> 64)) as u64)
    }
}

/// How many frames ahead of the one it processes the worker reads a frame's
/// flow key and prefetches its flow-table slot ([`Engine::look`]): far enough
/// for the slot's lines to arrive, near enough that they are still in L1.
/// With a million flows each slot is a DRAM miss (~350 cycles a frame): 4
/// frames ahead left ~20 % of the worker's samples waiting on the entry's
/// second line; 8 ran est-1m-huge 8.72 / 8.60 Mpps against 8.01 / 7.73 at 4
/// (alternating), and est-1k at 102.7 / 100.3 cycles against 99.4 / 101.8;
/// 16 cost est-1k ~5 % (docs/benchmarks.md).
const LOOK_AHEAD: usize = 8;

/// Flow-event slots prefetched for writing before each burst: as many
/// records as a burst of rejected handshakes can fill with 1 frame in 8 an
/// event, more being a flood that the queue absorbs anyway.
const EVENTS_AHEAD: usize = 4;

/// Empty polls in a row before an idle back-off sleep. Few: back-off is set
/// where the worker shares its CPU, and there every poll spun before the
/// sleep is CPU taken from the workloads, paid again at each wake-up.
/// `benches/cps.sh` (two gateways, ab and the server on 2 vCPUs): 256
/// spun polls gave 0.79–0.83 of the kernel's connections/s in 3-round
/// runs, 32 gave 0.77–0.89, 8 gave 0.88 and 0.96, and 0.85 in a 5-round
/// run after (docs/benchmarks.md).
const IDLE_POLLS_BEFORE_BACKOFF: u32 = 8;

/// Per-burst totals, added to the shared counters once per iteration.
#[derive(Default)]
struct Tally {
    rx_packets: u64,
    rx_bytes: u64,
}

struct Worker {
    /// Ports, queue, rings, counters and the stop flag.
    setup: WorkerSetup,
    handoff_burst: Vec<Burst>,
    to_outside: Burst,
    to_inside: Burst,
    /// Resets answering frames from the inside / outside port (sent back there).
    reply_inside: Burst,
    reply_outside: Burst,
    /// The packet engine and what the worker keeps for it; `None`: every
    /// frame is forwarded untouched.
    enforcer: Option<Enforcer>,
}

/// A worker's packet engine with its configuration, its mbuf pool, its clock
/// and the datagrams it holds.
struct Enforcer {
    engine: Engine,
    /// Published by the control thread, behind a cache: while nothing new
    /// is published, a load is one pointer compare (an `ArcSwap` load per
    /// iteration took a thread-local lookup and two reference-count atomics,
    /// ~1.5% of the forwarding thread in `perf record`).
    published: Cache<Arc<ArcSwap<EngineConfig>>, Arc<EngineConfig>>,
    /// The configuration loaded for this iteration.
    config: Arc<EngineConfig>,
    /// For the frames the engine makes (the second reset, UDP handshake messages).
    pool: Arc<Mempool>,
    clock: Clock,
    /// Unix ns, read once per iteration.
    now: u64,
    /// Datagrams of pending UDP handshakes (allocated at start).
    hold: hold::HoldStore,
}

impl Enforcer {
    fn new(mut e: EngineSetup) -> Enforcer {
        let clock = e.clock;
        e.engine.set_dns_clock(Box::new(move || clock.unix_ns(dpdk_bindings::tsc())));
        let c = e.engine.udp().config();
        let hold = hold::HoldStore::new(c.pending as usize, usize::from(c.hold_per_flow));
        let mut published = Cache::new(e.config);
        let config = Arc::clone(published.load());
        Enforcer { engine: e.engine, published, config, pool: e.pool, clock: e.clock, now: 0, hold }
    }

    /// Once per iteration: the configuration and the time, idle flows ended,
    /// UDP handshake timers run.
    fn start_iteration(&mut self) {
        let current = self.published.load();
        if !Arc::ptr_eq(current, &self.config) {
            self.config = Arc::clone(current);
        }
        self.now = self.clock.unix_ns(dpdk_bindings::tsc());
        self.engine.sweep(self.now);
        self.engine.udp_timers(&self.config, self.now);
    }

    /// A frame the engine made, copied into an mbuf from the pool.
    fn made_frame(&self, bytes: &[u8]) -> Option<Mbuf> {
        let mut m = self.pool.alloc()?;
        m.append(bytes.len()).then(|| m.data_mut().copy_from_slice(bytes))?;
        Some(m)
    }
}

impl WorkerSetup {
    /// Runs until the stop flag is set; returns 0 (the lcore's exit code).
    pub fn run(self) -> i32 {
        let n = self.workers;
        let mut setup = self;
        setup.stats.record_os_thread();
        let enforcer = setup.engine.take().map(Enforcer::new);
        let mut w = Worker {
            setup,
            // Allocated once, before the loop.
            handoff_burst: (0..n).map(|_| Burst::new()).collect(),
            to_outside: Burst::new(),
            to_inside: Burst::new(),
            reply_inside: Burst::new(),
            reply_outside: Burst::new(),
            enforcer,
        };
        w.run();
        0
    }
}

impl Worker {
    fn run(&mut self) {
        let mut idle = 0u32;
        let burst = self.setup.burst.clamp(1, MAX_BURST);
        // The receive burst lives outside `self` so frames can be drained from
        // it while `self` processes them.
        let mut rx = Burst::new();
        while !self.setup.stop.load(Ordering::Relaxed) {
            if let Some(en) = self.enforcer.as_mut() {
                en.start_iteration();
                self.effects();
            }
            let mut got = self.poll_port(&mut rx, Side::Inside, burst);
            got += self.poll_port(&mut rx, Side::Outside, burst);
            got += self.poll_handoff(&mut rx);
            self.flush();
            self.publish();
            self.setup.stats.polls.add(1);
            if got == 0 {
                self.setup.stats.idle_polls.add(1);
                idle += 1;
                if !self.setup.idle_backoff.is_zero() && idle >= IDLE_POLLS_BEFORE_BACKOFF {
                    // Only when idle: lets a small test machine's other processes run.
                    std::thread::sleep(self.setup.idle_backoff);
                }
            } else {
                idle = 0;
            }
        }
        // Drain: whatever reached this worker before the stop goes out.
        // Datagrams still held are freed with the store when the worker
        // ends: the gauge says how many.
        self.poll_handoff(&mut rx);
        self.flush();
        self.publish();
    }

    /// Makes the flow events queued so far visible, and sets the gauge of
    /// held datagrams.
    fn publish(&mut self) {
        if let Some(en) = self.enforcer.as_mut() {
            en.engine.publish_events();
            self.setup.stats.held.set(en.hold.total() as u64);
        }
    }

    fn port(&self, side: Side) -> u16 {
        match side {
            Side::Inside => self.setup.inside_port,
            Side::Outside => self.setup.outside_port,
        }
    }

    #[inline]
    fn note(&self, side: Side, n: Note) {
        self.dir_stats(side).note_count(n).add(1);
    }

    #[inline]
    fn dir_stats(&self, side: Side) -> &DirStats {
        self.setup.stats.dir(side)
    }

    /// Receives one burst from `side` and dispatches it.
    fn poll_port(&mut self, rx: &mut Burst, side: Side, burst: usize) -> usize {
        let n = rx.rx(self.port(side), self.setup.queue, burst);
        if n == 0 {
            return 0;
        }
        if self.setup.workers == 1 && self.enforcer.is_none() {
            // No policy and no other worker: the received burst itself goes
            // out of the opposite port, as testpmd's io mode does; the one
            // pass over the frames is the transmit's byte count (it also
            // gives the received bytes). Nothing else queues frames in this
            // mode, so none overtakes another.
            let o = rx.tx(self.port(side.opposite()), self.setup.queue);
            let st = self.dir_stats(side);
            st.rx_packets.add(n as u64);
            st.rx_bytes.add(o.bytes);
            record_tx(st, o);
            return n;
        }
        let mut tally = Tally::default();
        let mut handed = 0u64;
        if self.setup.workers > 1 || self.enforcer.is_some() {
            // The dispatch hash and the engine read each frame's headers.
            for i in 0..n {
                rx.prefetch(i);
            }
        }
        // The engine looks LOOK_AHEAD frames ahead (`ahead[i % LOOK_AHEAD]`
        // holds frame i's look until frame i is processed): its flow slot is
        // prefetched while the frames before it are processed.
        let mut ahead = [Looked::NOT_PLAIN; LOOK_AHEAD];
        let mut frames = rx.drain();
        if let Some(en) = self.enforcer.as_ref() {
            en.engine.prefetch_events(EVENTS_AHEAD, dpdk_bindings::prefetch_write::<u8>);
            for (k, l) in ahead.iter_mut().enumerate() {
                let Some(f) = frames.ahead(k) else { break };
                *l = en.engine.look(side, f, dpdk_bindings::prefetch::<u8>);
            }
        }
        let mut i = 0;
        while let Some(m) = frames.next() {
            tally.rx_packets += 1;
            tally.rx_bytes += u64::from(m.pkt_len());
            let slot = i % LOOK_AHEAD;
            i += 1;
            let l = ahead[slot];
            if let (Some(en), Some(f)) = (self.enforcer.as_ref(), frames.ahead(LOOK_AHEAD - 1)) {
                ahead[slot] = en.engine.look(side, f, dpdk_bindings::prefetch::<u8>);
            }
            if self.setup.workers > 1 {
                let owner = dispatch::owner(dispatch::symmetric_flow_hash(m.data()), self.setup.workers);
                if owner != self.setup.index {
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
            self.setup.stats.handed_off.add(handed);
        }
        n
    }

    /// Takes in frames other workers received for flows this one owns.
    fn poll_handoff(&mut self, rx: &mut Burst) -> usize {
        let mut total = 0;
        for r in 0..self.setup.handoff_in.len() {
            total += self.setup.handoff_in[r].dequeue(rx);
            for m in rx.drain() {
                let side = if m.port() == self.setup.inside_port { Side::Inside } else { Side::Outside };
                self.process(side, m, None);
            }
        }
        if total > 0 {
            self.setup.stats.handed_in.add(total as u64);
        }
        total
    }

    /// The packet engine's verdict for one frame (`looked`: what
    /// [`Engine::look`] found in it, if the worker looked ahead); without a
    /// policy every frame is forwarded unchanged to the opposite port
    /// (L2-transparent).
    #[inline(always)]
    fn process(&mut self, from: Side, mut m: Mbuf, looked: Option<&Looked>) {
        let Some(en) = self.enforcer.as_mut() else {
            self.forward(from, m);
            return;
        };
        let action = match looked {
            Some(l) => en.engine.process_looked(&en.config, from, &mut m, l, en.now),
            None => en.engine.process(&en.config, from, &mut m, en.now),
        };
        let d = disposition(action);
        let second = d.second_reset.then(|| en.made_frame(en.engine.extra_frame()));
        self.dispose(from, m, d);
        if let Some(x) = second {
            self.send_made(from, x, DropReason::RstNoMbuf);
        }
        self.effects();
    }

    /// Sends, holds or frees a frame the engine has seen, and counts what
    /// the worker adds to the engine's counts: the frame consumed, the answer
    /// in its buffer made.
    #[inline(always)]
    fn dispose(&mut self, from: Side, m: Mbuf, d: Disposition) {
        if d.consumed {
            self.note(from, Note::FramesConsumed);
        }
        match d.to {
            Destination::Onwards => self.forward(from, m),
            Destination::Back => {
                self.note(from, Note::FramesMade);
                self.reply(from, m)
            }
            Destination::Freed => drop(m),
            Destination::Hold(slot) => {
                let refused = match self.enforcer.as_mut() {
                    Some(en) => en.hold.push(slot, m).err(),
                    None => Some(m),
                };
                if let Some(m) = refused {
                    drop(m);
                    self.dir_stats(from).drop_count(DropReason::UdpHoldQueueFull).add(1);
                }
            }
        }
    }

    /// Carries out the engine's effects: generated handshake frames (in mbufs
    /// from the pool), held datagrams released (in order, to the outside
    /// port) or freed.
    #[inline(always)]
    fn effects(&mut self) {
        let n = self.enforcer.as_ref().map_or(0, |en| en.engine.effects().len());
        if n > 0 {
            self.run_effects(n);
        }
    }

    #[cold]
    fn run_effects(&mut self, n: usize) {
        for i in 0..n {
            let Some(en) = self.enforcer.as_mut() else { return };
            match en.engine.effects()[i] {
                Effect::Send { out, frame } => {
                    let m = en.made_frame(en.engine.effect_frame(frame));
                    // Counted as if it came in on the port opposite `out`.
                    self.send_made(out.opposite(), m, DropReason::UdpHandshakeNoMbuf);
                }
                Effect::Release { slot } => {
                    while let Some(m) = self.enforcer.as_mut().and_then(|en| en.hold.pop(slot)) {
                        self.forward(Side::Inside, m);
                    }
                }
                Effect::Discard { slot, .. } => {
                    en.hold.discard(slot);
                }
            }
        }
        if let Some(en) = self.enforcer.as_mut() {
            en.engine.clear_effects();
        }
    }

    /// A frame the engine made, sent out of the port opposite `from` and
    /// counted in `from`'s direction (see [`count_made`]).
    fn send_made(&mut self, from: Side, m: Option<Mbuf>, no_mbuf: DropReason) {
        count_made(self.dir_stats(from), m.is_some(), no_mbuf);
        if let Some(m) = m {
            self.forward(from, m);
        }
    }

    /// Queues a frame back out of the port it came from.
    #[inline]
    fn reply(&mut self, from: Side, m: Mbuf) {
        let (out, port) = match from {
            Side::Inside => (&mut self.reply_inside, self.setup.inside_port),
            Side::Outside => (&mut self.reply_outside, self.setup.outside_port),
        };
        if let Err(m) = out.push(m) {
            let outcome = out.tx(port, self.setup.queue);
            out.push(m).ok();
            record_tx(self.setup.stats.dir(from), outcome);
        }
    }

    /// Queues a frame out of the port opposite the one it came from.
    #[inline(always)]
    fn forward(&mut self, from: Side, m: Mbuf) {
        let (out, port) = match from {
            Side::Inside => (&mut self.to_outside, self.setup.outside_port),
            Side::Outside => (&mut self.to_inside, self.setup.inside_port),
        };
        if let Err(m) = out.push(m) {
            // Full: send what is queued, then queue this one.
            let outcome = out.tx(port, self.setup.queue);
            out.push(m).ok();
            record_tx(self.setup.stats.dir(from), outcome);
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
        if let Some(ring) = self.setup.handoff_out[owner].as_mut() {
            ring.enqueue(b);
        }
        let left = b.len() as u64;
        if left > 0 {
            // The owner is not keeping up: drop rather than wait for it.
            let mut from_inside = 0;
            for m in b.drain() {
                if m.port() == self.setup.inside_port {
                    from_inside += 1;
                }
            }
            self.setup.stats.from_inside.drop_count(DropReason::HandoffFull).add(from_inside);
            self.setup.stats.from_outside.drop_count(DropReason::HandoffFull).add(left - from_inside);
        }
    }

    /// Transmits everything queued and pushes hand-offs to their rings.
    fn flush(&mut self) {
        let (inside, outside, queue) = (self.setup.inside_port, self.setup.outside_port, self.setup.queue);
        let st = &self.setup.stats;
        record_tx(&st.from_inside, self.to_outside.tx(outside, queue));
        record_tx(&st.from_outside, self.to_inside.tx(inside, queue));
        if !self.reply_inside.is_empty() {
            record_tx(&st.from_inside, self.reply_inside.tx(inside, queue));
        }
        if !self.reply_outside.is_empty() {
            record_tx(&st.from_outside, self.reply_outside.tx(outside, queue));
        }
        for w in 0..self.handoff_burst.len() {
            self.flush_handoff(w);
        }
    }
}

/// Where a frame goes after the engine's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    /// Out of the opposite port.
    Onwards,
    /// Back out of the port it came from: its buffer holds the gateway's
    /// answer, a frame the gateway made.
    Back,
    /// Into hold slot `n`.
    Hold(u32),
    /// Freed.
    Freed,
}

/// What the worker does with a frame after the engine's action (which has
/// counted any drop), and what it counts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Disposition {
    to: Destination,
    /// The frame ended at the gateway (a handshake message for it).
    consumed: bool,
    /// A second frame the gateway made goes out of the opposite port: the
    /// engine's reset to the client ([`Engine::extra_frame`]).
    second_reset: bool,
}

#[inline(always)]
fn disposition(a: Action) -> Disposition {
    let (to, consumed, second_reset) = match a {
        Action::Forward => (Destination::Onwards, false, false),
        Action::Drop(_) => (Destination::Freed, false, false),
        Action::Consume => (Destination::Freed, true, false),
        Action::Reply(_) => (Destination::Back, false, false),
        Action::Answer => (Destination::Back, true, false),
        Action::ReplyAndReset(_) => (Destination::Back, false, true),
        Action::Hold(slot) => (Destination::Hold(slot), false, false),
    };
    Disposition { to, consumed, second_reset }
}

/// Counts a frame the gateway made, in the direction it is counted in:
/// made, and dropped for `no_mbuf` when the pool had no mbuf for it (sent, it
/// is counted in `tx_packets` when the burst goes out).
fn count_made(st: &DirStats, sent: bool, no_mbuf: DropReason) {
    st.note_count(Note::FramesMade).add(1);
    if !sent {
        st.drop_count(no_mbuf).add(1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::DropReason as R;

    /// The books of frames through the worker without DPDK: each frame
    /// received on `from`, the engine's count for its action (a drop, when
    /// the action says one was counted), and what `process` counts and
    /// sends for its disposition; `mbufs`: whether the pool has an mbuf for
    /// a second reset; `room`: whether the hold slot takes the frame.
    fn book(st: &WorkerStats, from: Side, a: Action, mbufs: bool, room: bool) {
        let dir = st.dir(from);
        dir.rx_packets.add(1);
        if let Action::Drop(r) | Action::Reply(r) | Action::ReplyAndReset(r) = a {
            dir.drop_count(r).add(1);
        }
        let d = disposition(a);
        if d.consumed {
            dir.note_count(Note::FramesConsumed).add(1);
        }
        match d.to {
            Destination::Onwards => dir.tx_packets.add(1),
            Destination::Back => {
                dir.note_count(Note::FramesMade).add(1);
                dir.tx_packets.add(1);
            }
            Destination::Hold(_) if room => st.held.add(1),
            Destination::Hold(_) => dir.drop_count(R::UdpHoldQueueFull).add(1),
            Destination::Freed => {}
        }
        if d.second_reset {
            count_made(dir, mbufs, R::RstNoMbuf);
            if mbufs {
                dir.tx_packets.add(1);
            }
        }
    }

    #[test]
    fn every_action_keeps_the_books() {
        let actions = [
            Action::Forward,
            Action::Drop(R::PolicyReject),
            Action::Consume,
            Action::Reply(R::PolicyReject),
            Action::Answer,
            Action::ReplyAndReset(R::PolicyReject),
            Action::Hold(3),
        ];
        for a in actions {
            for (mbufs, room) in [(true, true), (false, false)] {
                for from in [Side::Inside, Side::Outside] {
                    if matches!(a, Action::Hold(_)) && from == Side::Outside {
                        continue; // the engine holds datagrams from the inside only
                    }
                    let st = WorkerStats::default();
                    book(&st, from, a, mbufs, room);
                    assert_eq!(st.read().unaccounted(), [0, 0], "{a:?} from {from:?}, mbufs {mbufs}, room {room}");
                }
            }
        }
    }

    #[test]
    fn a_made_frame_without_an_mbuf_is_made_and_dropped() {
        let st = WorkerStats::default();
        count_made(&st.from_outside, false, R::UdpHandshakeNoMbuf);
        count_made(&st.from_outside, true, R::UdpHandshakeNoMbuf);
        let c = st.read().from_outside;
        assert_eq!((c.noted(Note::FramesMade), c.dropped(R::UdpHandshakeNoMbuf), c.dropped_total()), (2, 1, 1));
    }

    #[test]
    fn only_a_reset_of_both_ends_makes_a_second_frame() {
        for a in [Action::Forward, Action::Reply(R::NoMatch), Action::Answer, Action::Hold(0), Action::Consume] {
            assert!(!disposition(a).second_reset, "{a:?}");
        }
        let d = disposition(Action::ReplyAndReset(R::NoMatch));
        assert_eq!((d.to, d.consumed, d.second_reset), (Destination::Back, false, true));
        assert_eq!(disposition(Action::Answer).to, Destination::Back);
        assert!(disposition(Action::Answer).consumed && disposition(Action::Consume).consumed);
    }

    #[test]
    fn the_clock_maps_ticks_to_unix_nanoseconds() {
        let c = Clock::new(1_000, 5_000_000_000, 2_000_000_000);
        assert_eq!(c.unix_ns(1_000), 5_000_000_000);
        assert_eq!(c.unix_ns(3_000), 5_000_001_000, "2000 ticks at 2 GHz: 1 µs");
        assert_eq!(c.unix_ns(1_000 + 2_000_000_000 * 3600), 5_000_000_000 + 3600 * 1_000_000_000);
        // A rate that is no power of two: within 1 ns of the exact division,
        // up to ten years of ticks.
        let hz = 2_593_906_000u64;
        let c = Clock::new(7, 0, hz);
        for dt in [1u64, 999, hz, hz * 3600, hz * 86_400, hz * 86_400 * 3650] {
            let exact = (u128::from(dt) * 1_000_000_000 / u128::from(hz)) as u64;
            assert!(c.unix_ns(7 + dt).abs_diff(exact) <= 1, "{dt} ticks: {} vs {exact}", c.unix_ns(7 + dt));
        }
    }
}
