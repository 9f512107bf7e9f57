//! The signed identity option: its bytes, its MAC, the key ring, and the
//! rewrites that insert, verify and strip it (see `docs/identity-option.md`).
//!
//! - [`option`]: the exact bytes of the TCP (20 bytes) and UDP (45 bytes) options.
//! - [`keys`]: pairwise keys (static X25519 + HKDF-SHA256), pre-keyed HMAC
//!   states and the [`KeyRing`] with validity windows for rotation.
//! - [`mac`]: what the MAC binds, laid out so that a TCP MAC costs two SHA-256
//!   compressions (option version 1, HMAC) or one (version 2).
//! - [`tcp`]: insert into / verify and strip from SYN and SYN-ACK.
//! - [`udp`]: the same for the UDP options area, with handshake nonces.
//! - [`l4`]: the layer-4 record, the option's bytes as the first bytes of a
//!   TCP stream when the option cannot travel (`docs/identity-l4.md`).
//!
//! Nothing here allocates, panics on packet data, or makes a system call:
//! time is always a parameter (`now`, in the same unit as the key windows).

mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod l4;
pub mod mac;
pub mod option;
pub mod tcp;
pub mod udp;

pub use error::{RewriteError, VerifyError};
pub use keys::{GatewayKeyPair, KeyError, KeyId, KeyRing, MacKey, PeerId, PeerPublicKey};
pub use option::TcpVersion;
pub use tcp::{insert_tcp, strip_tcp, verify_and_strip_tcp, verify_tcp, Verified};
pub use udp::{insert_udp, strip_udp, verify_and_strip_udp, verify_udp, UdpIdentity, UdpMsg, VerifiedUdp};
