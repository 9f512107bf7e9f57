//! An owned packet buffer.

use std::ptr::NonNull;

use crate::sys;

/// An owned `rte_mbuf`. Dropping it returns it to its pool.
///
/// Only single-segment mbufs are rewritten by the gateway (its pools hold
/// 2 KiB data rooms and scatter is not enabled); [`Mbuf::data`] is the first
/// segment and [`Mbuf::is_chained`] tells when there are more.
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf value; moving it between threads
// moves that ownership, and DPDK's pool put/get are thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `p` is a valid mbuf that nobody else owns or will free.
    #[inline(always)]
    pub unsafe fn from_raw(p: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(p)
    }

    /// Gives up ownership (for handing to DPDK).
    #[inline(always)]
    pub fn into_raw(self) -> NonNull<sys::rte_mbuf> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    #[inline(always)]
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    /// The first segment's bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes inside the mbuf,
        // which we own for the lifetime of &self.
        unsafe {
            let m = self.0.as_ptr();
            std::slice::from_raw_parts(sys::gw_pktmbuf_mtod(m), sys::gw_pktmbuf_data_len(m) as usize)
        }
    }

    /// The first segment's bytes, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for data(); &mut self gives exclusive access.
        unsafe {
            let m = self.0.as_ptr();
            std::slice::from_raw_parts_mut(sys::gw_pktmbuf_mtod(m), sys::gw_pktmbuf_data_len(m) as usize)
        }
    }

    /// Length of the whole packet (all segments).
    #[inline(always)]
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::gw_pktmbuf_pkt_len(self.0.as_ptr()) }
    }

    /// The port this packet was received on.
    #[inline(always)]
    pub fn port(&self) -> u16 {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::gw_pktmbuf_port(self.0.as_ptr()) }
    }

    /// True when the packet spans more than one segment.
    #[inline(always)]
    pub fn is_chained(&self) -> bool {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::gw_pktmbuf_nb_segs(self.0.as_ptr()) > 1 }
    }

    #[inline(always)]
    pub fn headroom(&self) -> usize {
        // SAFETY: reads fields of an mbuf we own.
        unsafe { sys::gw_pktmbuf_headroom(self.0.as_ptr()) as usize }
    }

    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        // SAFETY: reads fields of an mbuf we own.
        unsafe { sys::gw_pktmbuf_tailroom(self.0.as_ptr()) as usize }
    }

    /// Grows the packet at the front; false (and unchanged) when there is no room.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else { return false };
        // SAFETY: rte_pktmbuf_prepend checks the headroom and returns NULL, changing nothing, if short.
        !unsafe { sys::gw_pktmbuf_prepend(self.0.as_ptr(), n) }.is_null()
    }

    /// Grows the packet at the end (last segment); false when there is no room.
    #[inline]
    pub fn append(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else { return false };
        // SAFETY: rte_pktmbuf_append checks the tailroom and returns NULL, changing nothing, if short.
        !unsafe { sys::gw_pktmbuf_append(self.0.as_ptr(), n) }.is_null()
    }

    /// Removes bytes from the front; false when `n` exceeds the first segment.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else { return false };
        // SAFETY: rte_pktmbuf_adj checks n against data_len and returns NULL if too large.
        !unsafe { sys::gw_pktmbuf_adj(self.0.as_ptr(), n) }.is_null()
    }

    /// Removes bytes from the end; false when `n` exceeds the last segment.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else { return false };
        // SAFETY: rte_pktmbuf_trim checks n against the last segment and returns -1 if too large.
        unsafe { sys::gw_pktmbuf_trim(self.0.as_ptr(), n) == 0 }
    }

    /// Hints the CPU to fetch the packet's first cache line.
    #[inline(always)]
    pub fn prefetch(&self) {
        // SAFETY: a prefetch hint; the address is valid and is not dereferenced by the hint.
        unsafe { sys::gw_prefetch0(sys::gw_pktmbuf_mtod(self.0.as_ptr()) as *const _) }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nobody else will free it.
        unsafe { sys::gw_pktmbuf_free(self.0.as_ptr()) }
    }
}
