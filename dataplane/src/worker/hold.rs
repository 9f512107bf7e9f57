//! The worker's store of datagrams held while their flow's UDP handshake is
//! pending: a fixed number of hold slots (one per pending handshake the
//! engine can have), each a fixed ring of mbuf handles, all allocated when
//! the worker starts. The engine decides (by slot id) what is held, released
//! or discarded and enforces the per-flow and per-worker bounds; this store
//! only keeps the handles, so holding a datagram is one array store.

use dpdk_bindings::Mbuf;

pub struct HoldStore {
    per_slot: usize,
    frames: Box<[Option<Mbuf>]>,
    /// Per slot: index of the oldest frame, and how many are held.
    head: Box<[u16]>,
    len: Box<[u16]>,
    /// Frames held over all slots.
    total: usize,
}

impl HoldStore {
    /// `slots` hold slots of `per_slot` frames each (the engine's `pending`
    /// and `hold_per_flow`).
    pub fn new(slots: usize, per_slot: usize) -> HoldStore {
        let per_slot = per_slot.clamp(1, usize::from(u16::MAX));
        HoldStore {
            per_slot,
            frames: (0..slots * per_slot).map(|_| None).collect(),
            head: vec![0; slots].into_boxed_slice(),
            len: vec![0; slots].into_boxed_slice(),
            total: 0,
        }
    }

    /// Appends `m` to `slot`; gives it back if the slot is full or unknown
    /// (the engine's bounds make that a bug, counted by the caller).
    #[inline]
    pub fn push(&mut self, slot: u32, m: Mbuf) -> Result<(), Mbuf> {
        let s = slot as usize;
        let Some(&n) = self.len.get(s) else { return Err(m) };
        let n = usize::from(n);
        if n >= self.per_slot {
            return Err(m);
        }
        let at = s * self.per_slot + (usize::from(self.head[s]) + n) % self.per_slot;
        self.frames[at] = Some(m);
        self.len[s] += 1;
        self.total += 1;
        Ok(())
    }

    /// Takes the oldest frame of `slot`.
    #[inline]
    pub fn pop(&mut self, slot: u32) -> Option<Mbuf> {
        let s = slot as usize;
        if *self.len.get(s)? == 0 {
            return None;
        }
        let h = usize::from(self.head[s]);
        let m = self.frames[s * self.per_slot + h].take();
        self.head[s] = ((h + 1) % self.per_slot) as u16;
        self.len[s] -= 1;
        self.total -= 1;
        if self.len[s] == 0 {
            self.head[s] = 0;
        }
        m
    }

    /// Frees every frame of `slot`; returns how many.
    pub fn discard(&mut self, slot: u32) -> usize {
        let mut n = 0;
        while let Some(m) = self.pop(slot) {
            drop(m);
            n += 1;
        }
        n
    }

    /// Frames held over all slots.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Frames held in `slot`.
    pub fn len(&self, slot: u32) -> usize {
        self.len.get(slot as usize).map_or(0, |&n| usize::from(n))
    }
}
