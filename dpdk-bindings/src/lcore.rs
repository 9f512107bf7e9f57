//! Running closures on EAL worker lcores (pinned threads).

use std::os::raw::{c_int, c_void};

use crate::error::{check, Result};
use crate::sys;

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `launch`, passed exactly once.
    let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
    // A panic must not unwind into C: it ends the lcore with -1.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(-1)
}

/// Runs `f` on worker lcore `lcore` (which must be idle). Its return value is
/// collected by [`wait`].
pub fn launch<F>(lcore: u32, f: F) -> Result<()>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job) as *mut c_void;
    // SAFETY: the trampoline reclaims `arg` exactly once when the lcore runs it.
    let ret = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if ret < 0 {
        // SAFETY: the launch failed, so the trampoline will never run; reclaim the job.
        drop(unsafe { Box::from_raw(arg as *mut Job) });
    }
    check("rte_eal_remote_launch", ret).map(|_| ())
}

/// Waits for the job on `lcore` to finish and returns its value.
pub fn wait(lcore: u32) -> i32 {
    // SAFETY: blocks until the lcore is idle; any lcore id is accepted.
    unsafe { sys::rte_eal_wait_lcore(lcore) }
}

/// The lcore the calling thread runs on (`u32::MAX` for non-EAL threads).
pub fn current() -> u32 {
    // SAFETY: reads a thread-local.
    unsafe { sys::gw_lcore_id() }
}
