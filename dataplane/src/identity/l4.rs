//! The layer-4 identity record (`docs/identity-l4.md`): the option's 20 bytes
//! carried as the first bytes of one direction of a TCP stream, when the
//! option cannot travel in the handshake.
//!
//! Same bytes, keys and MAC input as the option ([`super::mac::tcp_input`]),
//! with its own contexts (4: the client's record, 5: the server's) and both
//! ISNs bound: `seq` is the sender's ISN, `ack` the receiver's. A record made
//! for one connection therefore fails on any other, and a client record can
//! never pass for a server record or for a handshake option.

use subtle::ConstantTimeEq;

use super::keys::{KeyId, KeyRing, MacKey};
use super::mac::{self, Flow};
use super::option::{self, tcp_field, TcpVersion, EXID, TCP_KIND, TCP_LEN, TCP_MAC_LEN, VERSION};
use super::{Verified, VerifyError};

/// MAC contexts of the records (after the option's 1 and 2 and UDP's 3).
pub mod context {
    /// The client's record, client → server.
    pub const CLIENT: u8 = 4;
    /// The server's record, server → client.
    pub const SERVER: u8 = 5;
}

/// Bytes a record adds to its direction of the stream (the sequence shift).
pub const RECORD_LEN: usize = TCP_LEN;

/// What a record binds besides the identity: the carrying segment's flow (its
/// source and destination as sent) and the two ISNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub flow: Flow,
    /// The sender's initial sequence number.
    pub own_isn: u32,
    /// The receiver's initial sequence number.
    pub peer_isn: u32,
    /// [`context::CLIENT`] or [`context::SERVER`].
    pub ctx: u8,
}

impl Binding {
    fn input(&self, bound: &[u8; 8]) -> [u8; mac::TCP_INPUT_LEN] {
        mac::tcp_input(self.ctx, bound, &self.flow, self.own_isn, self.peer_isn)
    }
}

/// Whether `payload` starts like a record (kind, length and ExID), before any
/// check of its key or MAC: what tells a record from stream data at offset 0.
#[inline]
pub fn looks_like_record(payload: &[u8]) -> bool {
    let e = EXID.to_be_bytes();
    matches!(payload, [TCP_KIND, l, a, b, ..] if usize::from(*l) == TCP_LEN && *a == e[0] && *b == e[1])
}

/// Whether `payload` is the start of a record cut short: at least the
/// record's first four bytes (kind, length, ExID: 32 bits a stream's data
/// does not start with by chance) and fewer bytes than a record. A record is
/// sent whole; only a re-segmenting middlebox makes this. (A head of one to
/// three bytes is not told from data.)
#[inline]
pub fn is_split_record(payload: &[u8]) -> bool {
    (4..RECORD_LEN).contains(&payload.len()) && looks_like_record(payload)
}

/// The record of `identity`, signed with `key` for `b`.
pub fn make_record(key: &MacKey, identity: u32, b: &Binding) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[tcp_field::KIND] = TCP_KIND;
    r[tcp_field::LEN] = TCP_LEN as u8;
    r[tcp_field::EXID].copy_from_slice(&EXID.to_be_bytes());
    r[tcp_field::VER_FLAGS] = option::ver_flags();
    option::put_u24(&mut r[tcp_field::KEY_ID], key.key_id().get());
    r[tcp_field::IDENTITY].copy_from_slice(&identity.to_be_bytes());
    let mut bound = [0u8; 8];
    bound.copy_from_slice(&r[tcp_field::BOUND]);
    let m = key.mac(&b.input(&bound));
    r[tcp_field::MAC].copy_from_slice(&m[..TCP_MAC_LEN]);
    r
}

/// Verifies the record at the start of `payload` for `b`. `NoIdentity`: the
/// payload does not start with a record (shorter, or other bytes).
pub fn verify_record(payload: &[u8], b: &Binding, ring: &KeyRing, now: u64) -> Result<Verified, VerifyError> {
    if !looks_like_record(payload) {
        return Err(VerifyError::NoIdentity);
    }
    let Some(r) = payload.get(..RECORD_LEN) else { return Err(VerifyError::NoIdentity) };
    if r[tcp_field::VER_FLAGS] >> 4 != VERSION {
        return Err(VerifyError::BadVersion);
    }
    let key_id = KeyId::new(option::get_u24(&r[tcp_field::KEY_ID])).ok_or(VerifyError::UnknownKey)?;
    let key = ring.rx_key(key_id).ok_or(VerifyError::UnknownKey)?;
    if !key.is_valid_at(now) {
        return Err(VerifyError::ExpiredKey);
    }
    let mut bound = [0u8; 8];
    bound.copy_from_slice(&r[tcp_field::BOUND]);
    let m = key.mac(&b.input(&bound));
    if !bool::from(m[..TCP_MAC_LEN].ct_eq(&r[tcp_field::MAC])) {
        return Err(VerifyError::BadMac);
    }
    let identity = u32::from_be_bytes([r[8], r[9], r[10], r[11]]);
    Ok(Verified { key_id, peer: key.peer(), identity, version: TcpVersion::Hmac })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Addr;

    fn key() -> MacKey {
        MacKey::from_secret(KeyId::new(0x01_0203).unwrap(), 7, &[9; 32], 0, u64::MAX)
    }

    fn ring() -> KeyRing {
        let mut r = KeyRing::new();
        r.add_rx(key()).unwrap();
        r
    }

    fn binding(ctx: u8) -> Binding {
        Binding {
            flow: Flow {
                src: Addr::V4([10, 0, 0, 1]),
                dst: Addr::V4([10, 1, 0, 1]),
                src_port: 40000,
                dst_port: 80,
                proto: 6,
            },
            own_isn: 1000,
            peer_isn: 5000,
            ctx,
        }
    }

    #[test]
    fn a_record_verifies_for_its_connection_only() {
        let b = binding(context::CLIENT);
        let r = make_record(&key(), 42, &b);
        assert!(looks_like_record(&r));
        let v = verify_record(&r, &b, &ring(), 1).unwrap();
        assert_eq!((v.identity, v.peer), (42, 7));
        // another server ISN, port, direction or context: refused
        for other in [
            Binding { peer_isn: 5001, ..b },
            Binding { own_isn: 999, ..b },
            Binding { flow: Flow { src_port: 40001, ..b.flow }, ..b },
            Binding { ctx: context::SERVER, ..b },
            Binding { ctx: mac::context::TCP_SYN, ..b },
        ] {
            assert_eq!(verify_record(&r, &other, &ring(), 1), Err(VerifyError::BadMac));
        }
    }

    #[test]
    fn forged_truncated_and_unknown_records_are_refused() {
        let b = binding(context::SERVER);
        let mut r = make_record(&key(), 42, &b);
        assert_eq!(verify_record(&r[..19], &b, &ring(), 1), Err(VerifyError::NoIdentity));
        assert_eq!(verify_record(b"GET / HTTP/1.1\r\n\r\n..", &b, &ring(), 1), Err(VerifyError::NoIdentity));
        r[9] ^= 1; // another identity under the same MAC
        assert_eq!(verify_record(&r, &b, &ring(), 1), Err(VerifyError::BadMac));
        r[9] ^= 1;
        r[5] ^= 0x80; // another key
        assert_eq!(verify_record(&r, &b, &ring(), 1), Err(VerifyError::UnknownKey));
        r[5] ^= 0x80;
        r[4] = 0x20;
        assert_eq!(verify_record(&r, &b, &ring(), 1), Err(VerifyError::BadVersion));
    }

    #[test]
    fn hostile_prefixes_never_panic() {
        let b = binding(context::CLIENT);
        for n in 0..40 {
            let p: Vec<u8> = (0..n).map(|i| if i == 0 { TCP_KIND } else { (i * 37) as u8 }).collect();
            let _ = verify_record(&p, &b, &ring(), 1);
        }
    }
}
