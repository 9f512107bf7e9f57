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

    /// The mbuf header. Hot fields are read from it directly rather than
    /// through the C shim: a call per field per packet is measurable at line
    /// rate, and the layout is checked against the C compiler's in a test.
    #[inline(always)]
    fn hdr(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for the lifetime of &self.
        unsafe { self.0.as_ref() }
    }

    #[inline(always)]
    fn data_ptr(&self) -> *mut u8 {
        let h = self.hdr();
        // SAFETY: data_off is within the buffer of buf_len bytes at buf_addr (an mbuf invariant).
        unsafe { (h.buf_addr as *mut u8).add(usize::from(h.data_off)) }
    }

    /// The first segment's bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: data_ptr points at data_len initialised bytes inside the
        // mbuf's buffer, which we own for the lifetime of &self.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), usize::from(self.hdr().data_len)) }
    }

    /// The first segment's bytes, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.hdr().data_len);
        // SAFETY: as for data(); &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), len) }
    }

    /// Length of the whole packet (all segments).
    #[inline(always)]
    pub fn pkt_len(&self) -> u32 {
        self.hdr().pkt_len
    }

    /// The port this packet was received on.
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.hdr().port
    }

    /// True when the packet spans more than one segment.
    #[inline(always)]
    pub fn is_chained(&self) -> bool {
        self.hdr().nb_segs > 1
    }

    #[inline(always)]
    pub fn headroom(&self) -> usize {
        usize::from(self.hdr().data_off)
    }

    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        // rte_pktmbuf_tailroom's formula, on this (first) segment.
        let h = self.hdr();
        usize::from(h.buf_len).saturating_sub(usize::from(h.data_off) + usize::from(h.data_len))
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
        crate::prefetch(self.data_ptr());
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nobody else will free it.
        unsafe { sys::gw_pktmbuf_free(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use crate::sys;

    /// The fields read directly above sit where the C compiler put them.
    #[test]
    fn rust_and_c_agree_on_the_mbuf_layout() {
        let mut c = [0u32; 8];
        // SAFETY: writes 8 u32s into the array; needs no EAL.
        unsafe { sys::gw_mbuf_layout(c.as_mut_ptr()) };
        let rust = [
            offset_of!(sys::rte_mbuf, buf_addr),
            offset_of!(sys::rte_mbuf, data_off),
            offset_of!(sys::rte_mbuf, nb_segs),
            offset_of!(sys::rte_mbuf, port),
            offset_of!(sys::rte_mbuf, pkt_len),
            offset_of!(sys::rte_mbuf, data_len),
            offset_of!(sys::rte_mbuf, buf_len),
            std::mem::size_of::<sys::rte_mbuf>(),
        ];
        assert_eq!(rust.map(|x| x as u32), c);
    }
}
