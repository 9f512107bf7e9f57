//! The flow-log hub: a bounded overwrite ring of recent flow records on the
//! control side, and one reader per `GetFlows` call.
//!
//! ```text
//! worker ─SPSC queue─┐
//! worker ─SPSC queue─┼─► drain (control thread) ─► FlowHub ring ─► Reader (per GetFlows) ─► gRPC stream
//! worker ─SPSC queue─┘        push / push_lost                       own cursor, own losses
//! ```
//!
//! Workers never touch the hub: they push into their own lock-free queues and
//! count what they drop; the control thread's drain moves events here. The
//! ring overwrites the oldest record when full, so the writer never waits for
//! a reader. Every reader has its own cursor (a sequence number); a reader
//! that was lapped learns how many records it missed and goes on from the
//! oldest one still held (Hubble's `LostEvent{HUBBLE_RING_BUFFER}`). Losses
//! upstream of the hub (a worker queue overflowed) travel in the ring itself
//! as [`Item::Lost`], so every reader sees them in order.
//!
//! Items pushed together are held together (one allocation per push, not
//! per record): the ring is a queue of such chunks, and an item's sequence
//! number finds its chunk. A reader takes `Arc`s of the chunks it reads
//! (one per chunk, not per record). A chunk is freed once every item in it
//! has left the ring; the ring's bounds stay exact per item (a reader below
//! `head - capacity` is lapped even if the chunk is still held).
//!
//! The lock is held only to copy `Arc`s in or out (a batch at a time), never
//! while filtering or sending.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// A record the hub can hold.
pub trait HubRecord: Send + Sync + 'static {
    /// When it happened, Unix nanoseconds.
    fn time_ns(&self) -> u64;
}

/// Decides whether a reader wants a record.
pub trait Filter<R>: Send + Sync {
    fn matches(&self, record: &R) -> bool;
}

/// Everything matches.
pub struct All;
impl<R> Filter<R> for All {
    fn matches(&self, _: &R) -> bool {
        true
    }
}

impl<R, F: Fn(&R) -> bool + Send + Sync> Filter<R> for F {
    fn matches(&self, r: &R) -> bool {
        self(r)
    }
}

/// Where records were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostSource {
    /// A worker's queue was full; it dropped events and went on.
    WorkerQueue,
    /// The reader was lapped by the ring.
    Ring,
}

/// What the ring holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<R> {
    Record(R),
    Lost { source: LostSource, count: u64, worker: u32, time_ns: u64 },
}

/// Items pushed in one go; the first has sequence number `first`.
struct Chunk<R> {
    first: u64,
    items: Arc<Vec<Item<R>>>,
}

impl<R> Chunk<R> {
    fn end(&self) -> u64 {
        self.first + self.items.len() as u64
    }
}

/// Some of a chunk's items.
type Segment<R> = (Arc<Vec<Item<R>>>, Range<usize>);

struct Ring<R> {
    /// Oldest first, contiguous: the last ends at `head`, the first holds `oldest()` (if anything is held).
    chunks: VecDeque<Chunk<R>>,
    capacity: u64,
    /// Sequence number of the next write.
    head: u64,
}

impl<R> Ring<R> {
    fn oldest(&self) -> u64 {
        self.head.saturating_sub(self.capacity)
    }

    /// The items with sequence numbers in `from..to` (within what is held), in order.
    fn segments(&self, from: u64, to: u64, out: &mut Vec<Segment<R>>) {
        let mut s = from.max(self.oldest());
        let mut i = self.chunks.partition_point(|c| c.end() <= s);
        while s < to && i < self.chunks.len() {
            let c = &self.chunks[i];
            let lo = (s - c.first) as usize;
            let hi = (to.min(c.end()) - c.first) as usize;
            out.push((c.items.clone(), lo..hi));
            s = c.end();
            i += 1;
        }
    }
}

/// Counters of the hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub capacity: u64,
    pub held: u64,
    pub received: u64,
    pub overwritten: u64,
    pub readers: u64,
    pub lost_by_workers: u64,
    /// Lost-event notices written into the ring (counted in `received`).
    pub notices: u64,
}

/// The ring. Share it as `Arc<FlowHub<R>>`.
pub struct FlowHub<R> {
    ring: Mutex<Ring<R>>,
    head_tx: watch::Sender<u64>,
    readers: AtomicU64,
    lost_by_workers: AtomicU64,
    notices: AtomicU64,
}

impl<R: HubRecord> FlowHub<R> {
    /// A hub holding the last `capacity` items (rounded up to a power of two, at least 2).
    pub fn new(capacity: usize) -> Arc<FlowHub<R>> {
        let cap = capacity.max(2).next_power_of_two();
        let (head_tx, _) = watch::channel(0);
        Arc::new(FlowHub {
            ring: Mutex::new(Ring { chunks: VecDeque::new(), capacity: cap as u64, head: 0 }),
            head_tx,
            readers: AtomicU64::new(0),
            lost_by_workers: AtomicU64::new(0),
            notices: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring<R>> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one record (overwriting the oldest when full) and wakes readers.
    pub fn push(&self, record: impl Into<R>) {
        self.push_items(std::iter::once(Item::Record(record.into())));
    }

    /// Adds records in one go: one lock and one wake-up for the batch.
    pub fn push_batch<I>(&self, records: I)
    where
        I: IntoIterator,
        I::Item: Into<R>,
    {
        self.push_items(records.into_iter().map(|r| Item::Record(r.into())));
    }

    /// Records that `count` events were lost before reaching the hub.
    pub fn push_lost(&self, source: LostSource, count: u64, worker: u32, time_ns: u64) {
        if count == 0 {
            return;
        }
        if source == LostSource::WorkerQueue {
            self.lost_by_workers.fetch_add(count, Ordering::Relaxed);
        }
        self.notices.fetch_add(1, Ordering::Relaxed);
        self.push_items(std::iter::once(Item::Lost { source, count, worker, time_ns }));
    }

    fn push_items(&self, items: impl Iterator<Item = Item<R>>) {
        // Allocate outside the lock.
        let items: Vec<Item<R>> = items.collect();
        if items.is_empty() {
            return;
        }
        let n = items.len() as u64;
        let items = Arc::new(items);
        let mut dropped = Vec::new();
        let head = {
            let mut ring = self.lock();
            let first = ring.head;
            ring.chunks.push_back(Chunk { first, items });
            ring.head += n;
            let oldest = ring.oldest();
            while ring.chunks.front().is_some_and(|c| c.end() <= oldest) {
                dropped.extend(ring.chunks.pop_front());
            }
            ring.head
        };
        // The overwritten records are freed outside the lock.
        drop(dropped);
        self.head_tx.send_replace(head);
    }

    pub fn stats(&self) -> HubStats {
        let ring = self.lock();
        let cap = ring.capacity;
        HubStats {
            capacity: cap,
            held: ring.head.min(cap),
            received: ring.head,
            overwritten: ring.head.saturating_sub(cap),
            readers: self.readers.load(Ordering::Relaxed),
            lost_by_workers: self.lost_by_workers.load(Ordering::Relaxed),
            notices: self.notices.load(Ordering::Relaxed),
        }
    }

    /// The sequence number the next record will get.
    pub fn head(&self) -> u64 {
        self.lock().head
    }

    /// A reader at `cursor` (clamped to what the ring holds).
    fn reader_at(self: &Arc<Self>, cursor: u64, end: Option<u64>) -> Reader<R> {
        self.readers.fetch_add(1, Ordering::Relaxed);
        Reader { hub: self.clone(), cursor, end, head_rx: self.head_tx.subscribe() }
    }

    /// A reader positioned by `query`: past the last `number` records that
    /// match `filter` (within the time bounds), or at the oldest record held,
    /// or (follow with no number) at the head.
    pub fn reader(self: &Arc<Self>, query: &Query, filter: &dyn Filter<R>) -> Reader<R> {
        let (oldest, head) = {
            let r = self.lock();
            (r.oldest(), r.head)
        };
        let end = if query.follow { None } else { Some(head) };
        let start = if query.number > 0 {
            self.find_last(query, filter, oldest, head)
        } else if query.follow && query.since_ns.is_none() {
            head
        } else {
            oldest
        };
        self.reader_at(start, end)
    }

    /// Scans backwards from `head` for the `number`-th matching record, a
    /// chunk at a time so the writer is never held up for long.
    fn find_last(&self, query: &Query, filter: &dyn Filter<R>, oldest: u64, head: u64) -> u64 {
        const CHUNK: u64 = 4096;
        let mut found = 0u64;
        let mut hi = head;
        let mut segments = Vec::new();
        while hi > oldest {
            let lo = hi.saturating_sub(CHUNK).max(oldest);
            segments.clear();
            let lo = {
                let r = self.lock();
                let lo = lo.max(r.oldest());
                r.segments(lo, hi, &mut segments);
                lo
            };
            // Sequence numbers back from `hi` (the segments cover `lo..hi` exactly).
            let mut s = hi;
            for (items, range) in segments.iter().rev() {
                for it in items[range.clone()].iter().rev() {
                    s -= 1;
                    if let Item::Record(rec) = it {
                        if query.in_time(rec.time_ns()) && filter.matches(rec) {
                            found += 1;
                            if found == query.number {
                                return s;
                            }
                        }
                    }
                }
            }
            if segments.is_empty() {
                break;
            }
            hi = lo;
        }
        oldest
    }
}

/// Where a reader starts and stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query {
    /// The last N matching records (0: see [`FlowHub::reader`]).
    pub number: u64,
    pub follow: bool,
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
}

impl Query {
    pub fn in_time(&self, t: u64) -> bool {
        self.since_ns.is_none_or(|s| t >= s) && self.until_ns.is_none_or(|u| t <= u)
    }
}

/// What one read returned.
pub struct Batch<R> {
    /// Records this reader missed because the ring lapped it since the last read.
    pub lapped: u64,
    segments: Vec<Segment<R>>,
    /// The reader reached its end (non-follow readers stop at the head they started with).
    pub done: bool,
}

impl<R> Batch<R> {
    /// The items read, in order.
    pub fn items(&self) -> impl Iterator<Item = &Item<R>> {
        self.segments.iter().flat_map(|(items, range)| items[range.clone()].iter())
    }

    pub fn len(&self) -> usize {
        self.segments.iter().map(|(_, r)| r.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One `GetFlows` call's view of the hub.
pub struct Reader<R> {
    hub: Arc<FlowHub<R>>,
    cursor: u64,
    end: Option<u64>,
    head_rx: watch::Receiver<u64>,
}

impl<R: HubRecord> Reader<R> {
    /// Takes up to `max` items from the cursor on, without waiting.
    pub fn read(&mut self, max: usize) -> Batch<R> {
        let mut b = Batch { lapped: 0, segments: Vec::new(), done: false };
        let ring = self.hub.lock();
        let oldest = ring.oldest();
        if self.cursor < oldest {
            b.lapped = oldest - self.cursor;
            self.cursor = oldest;
        }
        let stop = self.end.map_or(ring.head, |e| e.min(ring.head));
        let n = stop.saturating_sub(self.cursor).min(max as u64);
        ring.segments(self.cursor, self.cursor + n, &mut b.segments);
        self.cursor += n;
        drop(ring);
        b.done = self.end.is_some_and(|e| self.cursor >= e);
        b
    }

    /// Waits until there is something past the cursor.
    pub async fn wait(&mut self) {
        loop {
            if *self.head_rx.borrow_and_update() > self.cursor {
                return;
            }
            if self.head_rx.changed().await.is_err() {
                // The hub is gone: nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }
}

impl<R> Drop for Reader<R> {
    fn drop(&mut self) {
        self.hub.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Rec {
        t: u64,
        v: u32,
    }
    impl HubRecord for Rec {
        fn time_ns(&self) -> u64 {
            self.t
        }
    }

    fn recs(b: &Batch<Rec>) -> Vec<u32> {
        b.items()
            .filter_map(|i| match i {
                Item::Record(r) => Some(r.v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn overwrite_and_lapped_reader() {
        let hub = FlowHub::<Rec>::new(8);
        let mut r = hub.reader(&Query { follow: true, ..Query::default() }, &All);
        for v in 0..20 {
            hub.push(Rec { t: v as u64, v });
        }
        let s = hub.stats();
        assert_eq!((s.capacity, s.held, s.received, s.overwritten, s.readers), (8, 8, 20, 12, 1));
        let b = r.read(100);
        assert_eq!(b.lapped, 12);
        assert_eq!(recs(&b), (12..20).collect::<Vec<_>>());
        assert!(!b.done);
        // Keeps going after the notice.
        hub.push(Rec { t: 20, v: 20 });
        let b = r.read(100);
        assert_eq!((b.lapped, recs(&b)), (0, vec![20]));
        drop(r);
        assert_eq!(hub.stats().readers, 0);
    }

    #[test]
    fn batches_are_held_in_chunks_with_exact_bounds() {
        let hub = FlowHub::<Rec>::new(8);
        let mut r = hub.reader(&Query { follow: true, ..Query::default() }, &All);
        hub.push_batch((0..5).map(|v| Rec { t: v as u64, v }));
        hub.push_batch((5..10).map(|v| Rec { t: v as u64, v }));
        // 0 and 1 are out although their chunk is still held.
        assert_eq!(hub.lock().chunks.len(), 2);
        let s = hub.stats();
        assert_eq!((s.held, s.received, s.overwritten), (8, 10, 2));
        let b = r.read(4);
        assert_eq!((b.lapped, recs(&b), b.len()), (2, vec![2, 3, 4, 5], 4), "across the chunks");
        let b = r.read(100);
        assert_eq!((b.lapped, recs(&b)), (0, (6..10).collect::<Vec<_>>()));
        // The last 3 matching, searched back across chunks.
        let odd = |r: &Rec| r.v % 2 == 1;
        let mut last = hub.reader(&Query { number: 3, ..Query::default() }, &odd);
        assert_eq!(recs(&last.read(100)).into_iter().filter(|v| v % 2 == 1).collect::<Vec<_>>(), vec![5, 7, 9]);
        // A batch larger than the ring: the older chunks go, the ring keeps its last 8.
        hub.push_batch((10..30).map(|v| Rec { t: v as u64, v }));
        assert_eq!(hub.lock().chunks.len(), 1);
        let b = r.read(100);
        assert_eq!((b.lapped, recs(&b)), (12, (22..30).collect::<Vec<_>>()));
        hub.push(Rec { t: 30, v: 30 });
        assert_eq!(hub.lock().chunks.len(), 2, "the big chunk still holds 23..30");
        hub.push_batch((31..38).map(|v| Rec { t: v as u64, v }));
        assert_eq!(hub.lock().chunks.len(), 2, "now only the single and the last batch");
        let mut all = hub.reader(&Query::default(), &All);
        let b = all.read(100);
        assert_eq!((b.lapped, recs(&b), b.done), (0, (30..38).collect::<Vec<_>>(), true));
    }

    #[test]
    fn last_n_with_filter_and_non_follow_end() {
        let hub = FlowHub::<Rec>::new(64);
        hub.push_batch((0..30).map(|v| Rec { t: 100 + v as u64, v }));
        let even = |r: &Rec| r.v.is_multiple_of(2);
        let mut r = hub.reader(&Query { number: 3, ..Query::default() }, &even);
        hub.push(Rec { t: 200, v: 1000 }); // after the start: not part of a non-follow read
        let b = r.read(100);
        assert!(b.done);
        let got: Vec<u32> = recs(&b).into_iter().filter(|v| v % 2 == 0).collect();
        assert_eq!(got, vec![24, 26, 28]);
        // since/until bound the search.
        let q = Query { number: 2, until_ns: Some(110), ..Query::default() };
        let mut r = hub.reader(&q, &All);
        let b = r.read(2);
        assert_eq!(recs(&b), vec![9, 10]);
        // More than held: from the oldest.
        let mut r = hub.reader(&Query { number: 1000, ..Query::default() }, &All);
        assert_eq!(recs(&r.read(1000)).len(), 31);
        // Follow without a number starts at the head.
        let mut r = hub.reader(&Query { follow: true, ..Query::default() }, &All);
        assert!(r.read(10).is_empty());
    }

    #[test]
    fn worker_losses_travel_in_order() {
        let hub = FlowHub::<Rec>::new(16);
        let mut r = hub.reader(&Query { follow: true, ..Query::default() }, &All);
        hub.push(Rec { t: 1, v: 1 });
        hub.push_lost(LostSource::WorkerQueue, 5, 1, 2);
        hub.push_lost(LostSource::WorkerQueue, 0, 1, 2); // nothing lost: nothing pushed
        hub.push(Rec { t: 3, v: 2 });
        let b = r.read(10);
        assert_eq!(b.len(), 3);
        assert_eq!(
            *b.items().nth(1).unwrap(),
            Item::Lost { source: LostSource::WorkerQueue, count: 5, worker: 1, time_ns: 2 }
        );
        assert_eq!(hub.stats().lost_by_workers, 5);
    }

    #[tokio::test]
    async fn follower_wakes_on_push() {
        let hub = FlowHub::<Rec>::new(16);
        let mut r = hub.reader(&Query { follow: true, ..Query::default() }, &All);
        let h2 = hub.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            h2.push(Rec { t: 1, v: 7 });
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), r.wait()).await.expect("woken");
        assert_eq!(recs(&r.read(10)), vec![7]);
        t.join().unwrap();
    }

    #[test]
    fn writer_never_waits_for_a_reader_that_does_not_read() {
        let hub = FlowHub::<Rec>::new(1024);
        let _idle = hub.reader(&Query { follow: true, ..Query::default() }, &All);
        let t0 = std::time::Instant::now();
        for v in 0..200_000u32 {
            hub.push(Rec { t: v as u64, v });
        }
        assert_eq!(hub.stats().received, 200_000);
        assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    }
}
