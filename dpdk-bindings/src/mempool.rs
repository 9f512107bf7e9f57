//! Packet buffer pools.

use std::ffi::CString;
use std::ptr::NonNull;

use crate::error::{Error, Result};
use crate::mbuf::Mbuf;
use crate::sys;

/// A pool of mbufs (`rte_pktmbuf_pool_create`). Freed on drop: drop it only
/// after every port that receives into it is closed (ports hold an `Arc` to it).
#[derive(Debug)]
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
    name: String,
}

// SAFETY: rte_mempool get/put are thread-safe (per-lcore caches plus a
// multi-producer/consumer ring); the pointer is immutable after creation.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `count` mbufs with `data_room` bytes each (including
    /// the headroom, `RTE_PKTMBUF_HEADROOM`), on NUMA socket `socket`
    /// (`-1` for any).
    pub fn new(name: &str, count: u32, cache: u32, data_room: u16, socket: i32) -> Result<Mempool> {
        let cname = CString::new(name).map_err(|_| Error::InvalidArgument(format!("pool name {name:?}")))?;
        // SAFETY: name is a valid C string; the other arguments are plain values.
        let p = unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, data_room, socket) };
        NonNull::new(p)
            .map(|ptr| Mempool { ptr, name: name.to_owned() })
            .ok_or_else(|| Error::from_rte_errno("rte_pktmbuf_pool_create"))
    }

    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes one mbuf from the pool.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid; a non-NULL result is a fresh mbuf we now own.
        NonNull::new(unsafe { sys::gw_pktmbuf_alloc(self.ptr.as_ptr()) }).map(|p| unsafe {
            // SAFETY: freshly allocated, owned by nobody else.
            Mbuf::from_raw(p)
        })
    }

    /// Mbufs currently free in the pool (approximate under concurrency).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs currently out of the pool (in queues, bursts or flight).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool is valid and, by the contract above, no port or mbuf uses it any more.
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) }
    }
}
