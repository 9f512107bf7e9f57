//! Per-worker flow table: one per worker, single-threaded, preallocated.
//!
//! - [`key`]: the normalized 5-tuple (inside end first, so both directions of a
//!   flow find one entry) and its seeded hash.
//! - [`state`]: the TCP handshake state machine and the UDP states, with idle
//!   timeouts per state.
//! - [`entry`]: one flow's 128-byte record: key, state, cached verdict, counters.
//! - [`table`]: open addressing with linear probing, a 4-byte tag array probed
//!   before any entry is touched, backward-shift deletion (no tombstones),
//!   incremental expiry, bounded eviction, and a preallocated ring of ended
//!   flows for the flow-event writer.
//!
//! Nothing here allocates after [`FlowTable::new`], locks, or makes a syscall;
//! time is passed in by the caller (`u64` nanoseconds from any monotonic clock).

pub mod entry;
pub mod key;
pub mod state;
pub mod table;

pub use entry::{CachedVerdict, FlowEntry, NewFlow};
pub use key::{FlowKey, Tuple};
pub use state::{FlowState, TcpFlags, TcpStep, Timeouts, UdpState};
pub use table::{EndReason, Ended, FlowTable, FlowTableStats, TableFull};
