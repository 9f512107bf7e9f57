//! Single-producer, single-consumer rings of mbufs (`rte_ring`) for handing
//! packets from one worker to another.
//!
//! The producer and consumer halves are separate owned values, neither
//! `Clone` nor `Sync`, so the single-producer/single-consumer contract the ring
//! is created with is enforced by the type system.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::burst::{Burst, MAX_BURST};
use crate::error::{Error, Result};
use crate::sys;

struct Inner {
    ring: NonNull<sys::rte_ring>,
}

// SAFETY: an SP/SC rte_ring is safe to use from one producer thread and one
// consumer thread concurrently; the halves below guarantee there is one of each.
unsafe impl Send for Inner {}
// SAFETY: as above; shared only between the two halves.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // Free any mbufs still queued, then the ring.
        let mut objs = [std::ptr::null_mut::<std::ffi::c_void>(); MAX_BURST];
        loop {
            // SAFETY: both halves are gone (this is the last Arc), so nobody else touches the ring.
            let n = unsafe { sys::gw_ring_dequeue_burst(self.ring.as_ptr(), objs.as_mut_ptr(), MAX_BURST as u32) };
            if n == 0 {
                break;
            }
            // SAFETY: the ring only ever holds owned mbuf pointers.
            unsafe { sys::gw_pktmbuf_free_bulk(objs.as_mut_ptr() as *mut *mut sys::rte_mbuf, n) };
        }
        // SAFETY: the ring is empty and unused.
        unsafe { sys::rte_ring_free(self.ring.as_ptr()) };
    }
}

/// Creates a ring of `size` slots (a power of two; it holds `size - 1`).
pub fn mbuf_ring(name: &str, size: u32, socket: i32) -> Result<(RingProducer, RingConsumer)> {
    if !size.is_power_of_two() {
        return Err(Error::InvalidArgument(format!("ring size {size} is not a power of two")));
    }
    let cname = CString::new(name).map_err(|_| Error::InvalidArgument(format!("ring name {name:?}")))?;
    let flags = sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ;
    // SAFETY: valid C string and plain arguments.
    let p = unsafe { sys::rte_ring_create(cname.as_ptr(), size, socket, flags) };
    let ring = NonNull::new(p).ok_or_else(|| Error::from_rte_errno("rte_ring_create"))?;
    let inner = Arc::new(Inner { ring });
    Ok((RingProducer { inner: inner.clone() }, RingConsumer { inner }))
}

/// Alias kept for readers looking for "the mbuf ring".
pub type MbufRing = (RingProducer, RingConsumer);

/// The enqueueing half.
pub struct RingProducer {
    inner: Arc<Inner>,
}

/// The dequeueing half.
pub struct RingConsumer {
    inner: Arc<Inner>,
}

impl RingProducer {
    /// Moves as many mbufs as fit from the front of `burst` into the ring; the
    /// rest stay in `burst`, in order. Returns how many moved.
    #[inline]
    pub fn enqueue(&mut self, burst: &mut Burst) -> usize {
        let (pkts, len) = burst.raw_parts();
        if *len == 0 {
            return 0;
        }
        // SAFETY: 0..len are owned mbuf pointers; the ring takes ownership of the first n.
        let n = unsafe {
            sys::gw_ring_enqueue_burst(self.inner.ring.as_ptr(), pkts.as_ptr() as *const *mut _, *len as u32)
        } as usize;
        pkts.copy_within(n..*len, 0);
        *len -= n;
        n
    }
}

impl RingConsumer {
    /// Moves up to the free space of `burst` mbufs from the ring into it.
    #[inline]
    pub fn dequeue(&mut self, burst: &mut Burst) -> usize {
        let (pkts, len) = burst.raw_parts();
        let room = (MAX_BURST - *len) as u32;
        // SAFETY: writes at most `room` pointers into the free tail of the array;
        // the burst takes ownership of them.
        let n = unsafe {
            sys::gw_ring_dequeue_burst(self.inner.ring.as_ptr(), pkts.as_mut_ptr().add(*len) as *mut *mut _, room)
        } as usize;
        *len += n;
        n
    }

    /// Entries waiting.
    pub fn len(&self) -> u32 {
        // SAFETY: a read of the ring's indices.
        unsafe { sys::gw_ring_count(self.inner.ring.as_ptr()) }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
