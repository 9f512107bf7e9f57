//! The gateway's packet engine.
//!
//! Layers, each depending only on those above it in this list (and on
//! [`Side`], the port a packet arrived on, at the crate root):
//! - [`buf`]: the byte-buffer abstraction (headroom/tailroom) every rewrite works on.
//! - [`wire`]: zero-copy views over Ethernet, VLAN, ARP, IPv4, IPv6, TCP, UDP,
//!   ICMP (`ethernet`, `arp`, `ipv4`, `ipv6`, `tcp`, `udp`, `checksum`), the
//!   one-pass parse (`parse_frame`) and the fast path's look (`peek`), the
//!   frame writer that emits headers through the same views (`emit`), test
//!   frames written with it (`builder`) and fuzz bodies (`fuzzing`).
//! - [`identity`]: the signed identity option (`option`, `mac`), key rings
//!   (`keys`), insert/verify/strip for TCP (`tcp`) and UDP (`udp`).
//! - [`stats`]: per-worker counters with one slot per drop reason and note.
//! - [`policy`]: the document (`model`), selectors (`selector`), prefix
//!   tables (`lpm`), the compiled snapshot (`compile`) and its decisions
//!   (`decide`).
//! - [`flow`]: flow keys (`key`), entries and their TCP/UDP state (`entry`,
//!   `state`), the fixed-size table (`table`).
//! - [`events`]: flow events and the lock-free queue that carries them off the worker.
//! - [`dispatch`]: the symmetric flow hash that picks a frame's worker.
//! - [`dns`]: the DNS message view (header, question, answers through
//!   compression pointers) the engine reads responses with.
//! - [`engine`]: identity and policy per packet, one file per path a packet
//!   takes: `process` (look ahead, fast path, full parse, choice of path),
//!   `context` (the packet context), `established`, `syn`, `syn_ack`,
//!   `no_state`, `other`, `udp` (the UDP handshake: `pending`, `frame`,
//!   `client`, `server`); beside them `record` (counters and events),
//!   `reasons`, `option_scan`, `sweep`, `rst`, `replay`, `reply_limit`,
//!   `config`.
//! - [`worker`] (feature `dpdk`): the poll-mode, run-to-completion loop, its
//!   hold store for datagrams of pending UDP handshakes (`hold`) and the
//!   mbuf as a packet buffer (`io`).
//!
//! Nothing outside `worker` touches DPDK, and no code here is `unsafe`: the
//! bindings (`dpdk-bindings`) hold all of it.
//!
//! Beside them, [`problem`] says what is wrong with a configuration, in the
//! one shape the policy compiler and the control plane report.

#![forbid(unsafe_code)]

pub mod buf;
pub mod dispatch;
pub mod dns;
pub mod engine;
pub mod events;
pub mod flow;
pub mod identity;
pub mod policy;
pub mod problem;
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
