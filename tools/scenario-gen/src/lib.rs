//! Load-test scenarios for the identity gateway, written as pcap files.
//!
//! - [`frame`]: Ethernet + IPv4/IPv6 + TCP/UDP builders with valid lengths
//!   and checksums (no FCS; padded to the 60-byte minimum).
//! - [`tcp_options`]: SYN option layouts of Linux, Windows and macOS, and
//!   [`tcp_options::SynOptionHook`], the extension point through which SYNs
//!   carry extra options.
//! - [`identity`]: the hook that signs SYNs with valid identity options
//!   (`--identity-key`), through `dataplane::identity`.
//! - [`layer4`]: `l4-server`, the layer-4 exchange at the server's gateway
//!   in two captures (one per port).
//! - [`scenario`]: flows and frame order of `tcp-established`, `syn-flood`,
//!   `udp-request` and `mixed`; deterministic for a given seed.
//! - [`pcap`]: the classic libpcap writer (LINKTYPE_ETHERNET, microseconds).
//!
//! No DPDK here (dataplane is used without its `dpdk` feature): the files feed `net_pcap` (`rx_pcap=...,infinite_rx=1`)
//! in benchmarks and tests, and pktgen's `-s P:file.pcap` on real NICs.

pub mod checksum;
pub mod frame;
pub mod identity;
pub mod layer4;
pub mod net;
pub mod pcap;
pub mod rng;
pub mod scenario;
pub mod tcp_options;

pub use identity::IdentitySigner;
pub use scenario::{Config, Kind, Mix, Scenario, ScenarioError, Summary};
pub use tcp_options::{ForgedOption, NoExtraOptions, OsProfile, SynInfo, SynOptionHook};
