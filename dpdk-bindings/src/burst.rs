//! A fixed-size batch of owned mbufs: what one rx/tx call moves.
//!
//! A [`Burst`] owns the mbufs it holds. Receiving fills it; transmitting hands
//! the mbufs to the device and frees only those the device did not take;
//! dropping it frees whatever is left. No allocation: the array is inline.

use std::ptr::NonNull;

use crate::mbuf::Mbuf;
use crate::sys;

/// Most mbufs one burst holds.
pub const MAX_BURST: usize = 64;

pub struct Burst {
    pkts: [*mut sys::rte_mbuf; MAX_BURST],
    len: usize,
}

// SAFETY: the burst owns its mbufs (see Mbuf's Send).
unsafe impl Send for Burst {}

/// What a transmit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOutcome {
    /// Handed to the device.
    pub sent: usize,
    /// Not taken by the device, freed.
    pub dropped: usize,
    /// Bytes of the packets handed to the device.
    pub sent_bytes: u64,
    /// Bytes of all the packets offered (sent or not).
    pub bytes: u64,
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    pub const fn new() -> Burst {
        Burst { pkts: [std::ptr::null_mut(); MAX_BURST], len: 0 }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// Adds an mbuf; gives it back when the burst is full.
    #[inline(always)]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == MAX_BURST {
            return Err(m);
        }
        self.pkts[self.len] = m.into_raw().as_ptr();
        self.len += 1;
        Ok(())
    }

    /// Receives up to `max` (capped by the free space) packets from a device queue.
    #[inline]
    pub fn rx(&mut self, port: u16, queue: u16, max: usize) -> usize {
        let room = (MAX_BURST - self.len).min(max) as u16;
        // SAFETY: the array has `room` free slots from `len`; the device writes
        // that many valid mbuf pointers at most, which we then own.
        let n = unsafe { sys::gw_eth_rx_burst(port, queue, self.pkts.as_mut_ptr().add(self.len), room) } as usize;
        self.len += n;
        n
    }

    /// Transmits every packet on a device queue. The device owns those it
    /// took; the rest are freed here and counted as dropped. The burst is
    /// empty afterwards.
    #[inline]
    pub fn tx(&mut self, port: u16, queue: u16) -> TxOutcome {
        if self.len == 0 {
            return TxOutcome::default();
        }
        let mut bytes = 0u64;
        for &p in &self.pkts[..self.len] {
            // SAFETY: every pointer in 0..len is a valid mbuf we own.
            bytes += u64::from(unsafe { (*p).pkt_len });
        }
        // SAFETY: 0..len are valid owned mbufs; the device takes ownership of
        // the first `sent` of them.
        let sent = unsafe { sys::gw_eth_tx_burst(port, queue, self.pkts.as_mut_ptr(), self.len as u16) } as usize;
        let mut unsent_bytes = 0u64;
        for &p in &self.pkts[sent..self.len] {
            // SAFETY: still ours: the device did not take these.
            unsent_bytes += u64::from(unsafe { (*p).pkt_len });
        }
        let dropped = self.len - sent;
        if dropped > 0 {
            // SAFETY: sent..len are still ours and are freed exactly once here.
            unsafe { sys::gw_pktmbuf_free_bulk(self.pkts.as_mut_ptr().add(sent), dropped as u32) };
        }
        self.len = 0;
        TxOutcome { sent, dropped, sent_bytes: bytes - unsent_bytes, bytes }
    }

    /// Takes every mbuf out, in order. Those not taken by the time the
    /// iterator is dropped are freed.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let len = self.len;
        self.len = 0;
        Drain { burst: self, next: 0, end: len }
    }

    /// Hints the CPU to fetch packet `i`'s first cache line.
    #[inline(always)]
    pub fn prefetch(&self, i: usize) {
        if i < self.len {
            // SAFETY: a valid owned mbuf: its header is readable.
            let h = unsafe { &*self.pkts[i] };
            crate::prefetch((h.buf_addr as *const u8).wrapping_add(usize::from(h.data_off)));
        }
    }

    /// Raw access for ring enqueue/dequeue in this crate.
    pub(crate) fn raw_parts(&mut self) -> (&mut [*mut sys::rte_mbuf; MAX_BURST], &mut usize) {
        (&mut self.pkts, &mut self.len)
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: 0..len are valid mbufs we own, freed exactly once.
            unsafe { sys::gw_pktmbuf_free_bulk(self.pkts.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }
}

/// Iterator returned by [`Burst::drain`].
pub struct Drain<'a> {
    burst: &'a mut Burst,
    next: usize,
    end: usize,
}

impl Drain<'_> {
    /// The bytes of the frame `k` places after the next one [`Iterator::next`]
    /// yields (`ahead(0)` is that next one), without taking it: for a worker
    /// that reads a few frames ahead of the one it processes.
    #[inline(always)]
    pub fn ahead(&self, k: usize) -> Option<&[u8]> {
        let i = self.next + k;
        if i >= self.end {
            return None;
        }
        // SAFETY: slots next..end hold valid mbufs still owned by the burst and
        // not yet yielded, so nothing writes them while `&self` is borrowed;
        // data_off/data_len describe initialised bytes of the buffer (mbuf invariant).
        unsafe {
            let h = &*self.burst.pkts[i];
            Some(std::slice::from_raw_parts(
                (h.buf_addr as *const u8).add(usize::from(h.data_off)),
                usize::from(h.data_len),
            ))
        }
    }
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline(always)]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        let p = self.burst.pkts[self.next];
        self.next += 1;
        // SAFETY: slots next..end hold valid owned mbufs; each is yielded once
        // (the burst's len is already 0 so its Drop will not free it again).
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        let rest = self.end - self.next;
        if rest > 0 {
            // SAFETY: slots next..end were not yielded and are still ours.
            unsafe { sys::gw_pktmbuf_free_bulk(self.burst.pkts.as_mut_ptr().add(self.next), rest as u32) };
        }
    }
}
