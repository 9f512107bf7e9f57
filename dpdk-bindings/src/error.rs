use std::ffi::CStr;

/// A DPDK call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{call} failed: {msg} (errno {errno})")]
    Dpdk { call: &'static str, errno: i32, msg: String },
    #[error("no DPDK port named {0:?} (is the device string right, and was it given to the EAL as --vdev or an allowed PCI address?)")]
    NoSuchPort(String),
    #[error("the EAL is already initialised in this process (DPDK allows one EAL per process)")]
    EalAlreadyInitialised,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error from a call that reports failure through `rte_errno`.
    pub(crate) fn from_rte_errno(call: &'static str) -> Self {
        // SAFETY: reads the per-thread rte_errno.
        let errno = unsafe { crate::sys::gw_errno() };
        Self::from_code(call, errno)
    }

    /// An error from a call that returns a negative errno.
    pub(crate) fn from_code(call: &'static str, code: i32) -> Self {
        let errno = code.abs();
        // SAFETY: rte_strerror returns a pointer to a static or per-thread NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(crate::sys::rte_strerror(errno)) }.to_string_lossy().into_owned();
        Error::Dpdk { call, errno, msg }
    }
}

/// Turns a `ret < 0 => -errno` return into a `Result`.
pub(crate) fn check(call: &'static str, ret: i32) -> Result<i32> {
    if ret < 0 {
        Err(Error::from_code(call, ret))
    } else {
        Ok(ret)
    }
}
