//! The Environment Abstraction Layer: once per process.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::sys;

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Proof that the EAL is up. Dropping it runs `rte_eal_cleanup`.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialises the EAL with `args` (without the program name; it is added).
    ///
    /// DPDK allows this once per process: a second call fails with
    /// [`Error::EalAlreadyInitialised`] (tests use one process per test).
    pub fn init<I, S>(args: I) -> Result<Eal>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(Error::EalAlreadyInitialised);
        }
        let mut owned = vec![CString::new("gatewayd").expect("static name has no NUL")];
        for a in args {
            let a = a.as_ref();
            owned.push(
                CString::new(a)
                    .map_err(|_| Error::InvalidArgument(format!("EAL argument {a:?} contains a NUL byte")))?,
            );
        }
        // The EAL keeps pointers into argv (and permutes it), so both the
        // strings and the array live for the rest of the process.
        let strings: &'static [CString] = Box::leak(owned.into_boxed_slice());
        let argv: &'static mut [*mut c_char] =
            Box::leak(strings.iter().map(|s| s.as_ptr() as *mut c_char).collect::<Vec<_>>().into_boxed_slice());
        let argc = argv.len() as c_int;
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the process's use of them.
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            INITIALISED.store(false, Ordering::SeqCst);
            return Err(Error::from_rte_errno("rte_eal_init"));
        }
        Ok(Eal { _private: () })
    }

    /// The lcore the initialising thread runs on.
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: plain getter, valid after init.
        unsafe { sys::rte_get_main_lcore() }
    }

    /// Every enabled lcore except the main one, in order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: iteration helper over the EAL's lcore table; valid after init.
        let mut l = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while l < sys::RTE_MAX_LCORE {
            out.push(l);
            // SAFETY: as above.
            l = unsafe { sys::rte_get_next_lcore(l, 1, 0) };
        }
        out
    }

    /// Whether `lcore` was enabled by the EAL arguments (`-l`/`--lcores`).
    pub fn lcore_enabled(&self, lcore: u32) -> bool {
        // SAFETY: plain getter; out-of-range ids return 0.
        lcore < sys::RTE_MAX_LCORE && unsafe { sys::rte_lcore_is_enabled(lcore) } != 0
    }

    /// Number of usable ports (probed devices).
    pub fn port_count(&self) -> u16 {
        // SAFETY: plain getter.
        unsafe { sys::rte_eth_dev_count_avail() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: called once, after every port and pool owned by the caller was dropped.
        unsafe { sys::rte_eal_cleanup() };
    }
}
