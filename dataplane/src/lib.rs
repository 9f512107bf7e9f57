//! The gateway's packet engine.
//!
//! Layers, each depending only on those above it in this list:
//! - [`buf`]: the byte-buffer abstraction (headroom/tailroom) every rewrite works on.
//! - [`wire`]: zero-copy views over Ethernet, VLAN, ARP, IPv4, IPv6, TCP, UDP, ICMP.
//! - [`identity`]: the signed identity option, key rings, insert/verify/strip.
//! - [`stats`]: per-worker counters with one slot per drop reason.
//! - [`dispatch`]: the symmetric flow hash that picks a frame's worker.
//! - [`engine`]: per-packet identity and policy on TCP handshakes, cached verdicts after.
//! - [`events`]: flow events and the lock-free queue that carries them off the worker.
//! - [`worker`] (feature `dpdk`): the poll-mode, run-to-completion loop.
//!
//! Nothing outside `worker` touches DPDK.

pub mod buf;
pub mod dispatch;
pub mod engine;
pub mod events;
pub mod flow;
pub mod identity;
pub mod policy;
pub mod stats;
pub mod wire;

#[cfg(feature = "dpdk")]
pub mod worker;

/// The port a packet arrived on: `Inside` faces the PUs, `Outside` the
/// network. One type for the whole crate: the worker names its ports with it,
/// the engine its packets, flow keys and events their initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    Inside = 0,
    Outside = 1,
}

impl Side {
    /// The other port.
    #[inline]
    pub fn opposite(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }
}
