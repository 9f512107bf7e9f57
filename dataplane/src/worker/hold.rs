//! The worker's store of datagrams held while their flow's UDP handshake is
//! pending: a fixed number of hold slots (one per pending handshake the
//! engine can have), each a fixed ring of mbuf handles, all allocated when
//! the worker starts. The engine decides (by slot id) what is held, released
//! or discarded and enforces the per-flow and per-worker bounds; this store
//! only keeps the handles, so holding a datagram is one array store.
//!
//! The store is generic over what it holds (mbufs in the worker), so that it
//! is tested without DPDK.

use dpdk_bindings::Mbuf;

pub struct HoldStore<M = Mbuf> {
    per_slot: usize,
    frames: Box<[Option<M>]>,
    /// Per slot: index of the oldest frame, and how many are held.
    head: Box<[u16]>,
    len: Box<[u16]>,
    /// Frames held over all slots.
    total: usize,
}

impl<M> HoldStore<M> {
    /// `slots` hold slots of `per_slot` frames each (the engine's `pending`
    /// and `hold_per_flow`).
    pub fn new(slots: usize, per_slot: usize) -> HoldStore<M> {
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
    pub fn push(&mut self, slot: u32, m: M) -> Result<(), M> {
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
    pub fn pop(&mut self, slot: u32) -> Option<M> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_gives_back_its_frames_in_the_order_they_were_held() {
        let mut h = HoldStore::<u32>::new(3, 4);
        for f in [10, 11, 12] {
            h.push(1, f).unwrap();
        }
        h.push(2, 20).unwrap();
        assert_eq!((h.len(1), h.len(2), h.len(0), h.total()), (3, 1, 0, 4));
        assert_eq!(h.pop(1), Some(10));
        // Wraps around its ring: 11 12 13 14 fill the slot again.
        h.push(1, 13).unwrap();
        h.push(1, 14).unwrap();
        assert_eq!(h.push(1, 15), Err(15), "a full slot gives the frame back");
        let out: Vec<u32> = std::iter::from_fn(|| h.pop(1)).collect();
        assert_eq!(out, [11, 12, 13, 14]);
        assert_eq!((h.len(1), h.total(), h.pop(1)), (0, 1, None));
        assert_eq!(h.pop(2), Some(20));
    }

    #[test]
    fn unknown_slots_refuse_and_discard_empties_a_slot() {
        let mut h = HoldStore::<u32>::new(2, 2);
        assert_eq!(h.push(2, 1), Err(1));
        assert_eq!((h.pop(7), h.len(7)), (None, 0));
        h.push(0, 1).unwrap();
        h.push(0, 2).unwrap();
        h.push(1, 3).unwrap();
        assert_eq!(h.discard(0), 2);
        assert_eq!((h.len(0), h.total(), h.discard(0)), (0, 1, 0));
        // The emptied slot starts over.
        h.push(0, 4).unwrap();
        assert_eq!(h.pop(0), Some(4));
    }

    #[test]
    fn slot_sizes_are_clamped_to_at_least_one() {
        let mut h = HoldStore::<u32>::new(1, 0);
        h.push(0, 1).unwrap();
        assert_eq!(h.push(0, 2), Err(2));
    }
}
