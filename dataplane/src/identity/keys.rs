//! Pairwise keys and the key ring.
//!
//! Each gateway has a static X25519 key pair with a 16-bit key id assigned by
//! the control plane (ids are unique among live keys fleet-wide). Gateways A and
//! B derive, off the fast path,
//!
//! ```text
//! K(A→B) = HKDF-SHA256(salt = "igw-identity-v1",
//!                      ikm  = X25519(a, B),
//!                      info = "igw pairwise mac" ‖ min(pubA,pubB) ‖ max(pubA,pubB) ‖ key_id(A→B))
//! key_id(A→B) = keyid16(A) << 8 | (keyid16(B) & 0xff)        (24 bits, on the wire)
//! ```
//!
//! so each direction has its own key, and a third gateway C, knowing neither
//! `a` nor `b`, cannot compute K(A→B): compromising C lets it forge only
//! towards peers as C itself. The receiver finds the key by the sender's key id
//! alone; the low byte tells which of the receiver's own key pairs (current or
//! previous) the sender used, so both sides can rotate independently.
//!
//! A [`MacKey`] holds the HMAC-SHA256 state already keyed (inner and outer pads
//! absorbed), so a version-1 MAC on the fast path is a clone plus two SHA-256
//! compressions, and the chaining value after the version-2 key block
//! `K2 = HKDF-Expand(K(A→B), "igw one-block mac" ‖ key_id, 64)`, so a
//! version-2 MAC is one compression. The [`KeyRing`] is built off the fast path and only read on
//! it (share it with `arc-swap`); lookups are a binary search, no allocation.

use core::fmt;

use hkdf::Hkdf;
use sha2::digest::generic_array::GenericArray;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use super::mac::TCP_INPUT_LEN;
use super::option::TcpVersion;

/// A 24-bit key identifier as carried in the option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(u32);

impl KeyId {
    pub const MAX: u32 = 0x00ff_ffff;

    /// A key id from its 24-bit value; `None` if it does not fit.
    pub const fn new(v: u32) -> Option<KeyId> {
        if v <= Self::MAX {
            Some(KeyId(v))
        } else {
            None
        }
    }

    /// The key id of the pairwise key sender → receiver.
    pub const fn pairwise(sender: u16, receiver: u16) -> KeyId {
        KeyId(((sender as u32) << 8) | (receiver as u32 & 0xff))
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// The sender's own 16-bit key id (`peers[].keys[].id` at the
    /// receiver): the high 16 bits of the 24 (see [`Self::pairwise`]).
    pub const fn sender(self) -> u32 {
        self.0 >> 8
    }

    /// What an answer needs of a received key id: its low 16 bits, the low
    /// byte of the sender's key id then the low byte of the receiver's
    /// (see [`KeyRing::tx_key_answering`]).
    pub const fn answer_bytes(self) -> u16 {
        self.0 as u16
    }
}

/// The control plane's name for a peer gateway.
pub type PeerId = u32;

/// A pre-keyed MAC state for one pairwise, one-directional key: the SHA-256
/// chaining values after absorbing `key ⊕ ipad` and `key ⊕ opad` (RFC 2104),
/// so a MAC of a message ≤ 55 bytes is exactly two compressions; and the
/// chaining value after the 64-byte version-2 key block, so a version-2 TCP
/// MAC is one.
#[derive(Clone)]
pub struct MacKey {
    key_id: KeyId,
    peer: PeerId,
    not_before: u64,
    not_after: u64,
    inner: [u32; 8],
    outer: [u32; 8],
    one_block: [u32; 8],
    /// The TCP option version signed with this key when it transmits
    /// (`peers[].option_version`); a receive key verifies both.
    tx_version: TcpVersion,
}

/// The HKDF-Expand label of the version-2 key block.
const ONE_BLOCK_LABEL: &[u8; 17] = b"igw one-block mac";
/// Bits hashed by a version-2 MAC: the 64-byte key block and the 55-byte input.
const ONE_BLOCK_BITS: u64 = (64 + TCP_INPUT_LEN as u64) * 8;

const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

#[inline(always)]
fn compress(state: &mut [u32; 8], block: &[u8]) {
    // `block` is always exactly 64 bytes here (chunks_exact / fixed arrays)
    sha2::compress256(state, core::slice::from_ref(GenericArray::from_slice(block)));
}

/// Finishes a SHA-256 whose state has absorbed `prefix` bytes (a multiple of
/// 64) with `msg`: full blocks, then the padding (one or two blocks).
#[inline(always)]
fn sha256_finish(state: &mut [u32; 8], prefix: u64, msg: &[u8]) -> [u8; 32] {
    let mut chunks = msg.chunks_exact(64);
    for c in &mut chunks {
        compress(state, c);
    }
    let rem = chunks.remainder();
    let mut last = [0u8; 128];
    last[..rem.len()].copy_from_slice(rem);
    last[rem.len()] = 0x80;
    let n = if rem.len() + 9 <= 64 { 64 } else { 128 };
    let bits = (prefix + msg.len() as u64) * 8;
    last[n - 8..n].copy_from_slice(&bits.to_be_bytes());
    for c in last[..n].chunks_exact(64) {
        compress(state, c);
    }
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state.iter()) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MacKey")
            .field("key_id", &self.key_id)
            .field("peer", &self.peer)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl MacKey {
    /// A key from 32 secret bytes (derived, or issued by the control plane),
    /// valid for `not_before <= now <= not_after`.
    ///
    /// The version-2 key block is derived from the same secret, see
    /// [`Self::one_block_key`].
    pub fn from_secret(key_id: KeyId, peer: PeerId, secret: &[u8; 32], not_before: u64, not_after: u64) -> Self {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, k) in secret.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let mut inner = SHA256_IV;
        let mut outer = SHA256_IV;
        compress(&mut inner, &ipad);
        compress(&mut outer, &opad);
        let mut k = MacKey {
            key_id,
            peer,
            not_before,
            not_after,
            inner,
            outer,
            one_block: SHA256_IV,
            tx_version: TcpVersion::default(),
        };
        let block = k.one_block_key();
        compress(&mut k.one_block, &block);
        k
    }

    /// The version-2 key block: `HKDF-Expand(PRK = secret, info =
    /// "igw one-block mac" ‖ key id (3 bytes), 64 bytes)` (RFC 5869), i.e.
    /// `T1 = HMAC(secret, info ‖ 1)`, `T2 = HMAC(secret, T1 ‖ info ‖ 2)`.
    /// Those HMAC inputs are 21 and 53 bytes long, and the secret MACs
    /// nothing else of those lengths (TCP MAC inputs are 55 bytes, UDP's 64):
    /// the block is independent of every version-1 MAC (HMAC as a PRF).
    fn one_block_key(&self) -> [u8; 64] {
        let mut info = [0u8; 17 + 3];
        info[..17].copy_from_slice(ONE_BLOCK_LABEL);
        info[17..].copy_from_slice(&self.key_id.get().to_be_bytes()[1..]);
        let mut m1 = [0u8; 21];
        m1[..20].copy_from_slice(&info);
        m1[20] = 1;
        let t1 = self.mac(&m1);
        let mut m2 = [0u8; 53];
        m2[..32].copy_from_slice(&t1);
        m2[32..52].copy_from_slice(&info);
        m2[52] = 2;
        let t2 = self.mac(&m2);
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&t1);
        block[32..].copy_from_slice(&t2);
        block
    }

    /// This key, signing TCP options of version `v` when it transmits.
    pub fn sending(mut self, v: TcpVersion) -> Self {
        self.tx_version = v;
        self
    }

    /// The TCP option version this key signs with.
    #[inline]
    pub fn tx_version(&self) -> TcpVersion {
        self.tx_version
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    pub fn peer(&self) -> PeerId {
        self.peer
    }
    pub fn window(&self) -> (u64, u64) {
        (self.not_before, self.not_after)
    }
    pub fn is_valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// HMAC-SHA256 of `msg` under this key (full 32 bytes).
    #[inline]
    pub fn mac(&self, msg: &[u8]) -> [u8; 32] {
        let mut s = self.inner;
        let d = sha256_finish(&mut s, 64, msg);
        let mut o = self.outer;
        sha256_finish(&mut o, 64, &d)
    }

    /// The version-2 MAC: SHA-256(K2 ‖ msg) (full 32 bytes), one compression
    /// of `msg` and its padding from the chaining value after K2. Only the
    /// one input length exists: length extension needs another.
    #[inline]
    pub fn mac_one_block(&self, msg: &[u8; TCP_INPUT_LEN]) -> [u8; 32] {
        let s = self.one_block_state(msg);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(s.iter()) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// The MAC of a TCP option (or layer-4 record) of version `v` over its
    /// 55-byte input, full width (the option carries the first 8 bytes).
    #[inline]
    pub fn tcp_mac(&self, v: TcpVersion, msg: &[u8; TCP_INPUT_LEN]) -> [u8; 32] {
        match v {
            TcpVersion::Hmac => self.mac(msg),
            TcpVersion::OneBlock => self.mac_one_block(msg),
        }
    }

    /// The 8 bytes of a TCP option's MAC of version `v` as one big-endian
    /// word, what the option carries and what verification compares whole.
    /// Inlined into the SYN paths: version 2 then converts only the two
    /// state words it keeps.
    #[inline(always)]
    pub fn tcp_tag(&self, v: TcpVersion, msg: &[u8; TCP_INPUT_LEN]) -> u64 {
        match v {
            TcpVersion::Hmac => {
                let m = self.mac(msg);
                u64::from_be_bytes([m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]])
            }
            TcpVersion::OneBlock => {
                let s = self.one_block_state(msg);
                (u64::from(s[0]) << 32) | u64::from(s[1])
            }
        }
    }

    /// The SHA-256 state after K2 ‖ `msg` and its padding: one compression.
    #[inline(always)]
    fn one_block_state(&self, msg: &[u8; TCP_INPUT_LEN]) -> [u32; 8] {
        let mut block = [0u8; 64];
        block[..TCP_INPUT_LEN].copy_from_slice(msg);
        block[TCP_INPUT_LEN] = 0x80;
        block[56..].copy_from_slice(&ONE_BLOCK_BITS.to_be_bytes());
        let mut s = self.one_block;
        compress(&mut s, &block);
        s
    }
}

/// This gateway's static key pair.
pub struct GatewayKeyPair {
    key_id: u16,
    secret: StaticSecret,
    public: PublicKey,
}

impl fmt::Debug for GatewayKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayKeyPair")
            .field("key_id", &self.key_id)
            .field("public", &self.public.as_bytes())
            .finish_non_exhaustive()
    }
}

impl GatewayKeyPair {
    /// From the 32 secret bytes (generated by the control plane or from the OS
    /// RNG) and the key id the control plane assigned to this key.
    pub fn from_secret_bytes(key_id: u16, secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret);
        GatewayKeyPair { key_id, secret, public }
    }
    pub fn key_id(&self) -> u16 {
        self.key_id
    }
    pub fn public(&self) -> [u8; 32] {
        self.public.to_bytes()
    }
    /// What peers need to know about this key.
    pub fn peer_public(&self, peer: PeerId) -> PeerPublicKey {
        PeerPublicKey { peer, key_id: self.key_id, public: self.public.to_bytes() }
    }
}

/// A peer gateway's public key as distributed by the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPublicKey {
    pub peer: PeerId,
    pub key_id: u16,
    pub public: [u8; 32],
}

/// Why a key could not be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Another receive key already has this key id.
    DuplicateKeyId(KeyId),
    /// The peer's public key is a low-order point (shared secret all zero).
    WeakPeerKey,
    /// not_before > not_after.
    EmptyWindow,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::DuplicateKeyId(k) => write!(f, "duplicate key id {:#08x}", k.get()),
            KeyError::WeakPeerKey => f.write_str("peer public key is a low-order point"),
            KeyError::EmptyWindow => f.write_str("key validity window is empty"),
        }
    }
}

impl std::error::Error for KeyError {}

const HKDF_SALT: &[u8] = b"igw-identity-v1";
const HKDF_LABEL: &[u8] = b"igw pairwise mac";

/// Derives the 32-byte secret of the one-directional key `key_id` between the
/// two public keys from an X25519 shared secret.
fn derive_secret(shared: &[u8; 32], a: &[u8; 32], b: &[u8; 32], key_id: KeyId) -> [u8; 32] {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut info = [0u8; 16 + 32 + 32 + 3];
    info[..16].copy_from_slice(HKDF_LABEL);
    info[16..48].copy_from_slice(lo);
    info[48..80].copy_from_slice(hi);
    info[80..].copy_from_slice(&key_id.get().to_be_bytes()[1..]);
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), shared);
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = hk.expand(&info, &mut out);
    out
}

/// Derives the pair of keys between `local` and `peer`: (transmit, receive).
pub fn derive_pair(
    local: &GatewayKeyPair,
    peer: &PeerPublicKey,
    not_before: u64,
    not_after: u64,
) -> Result<(MacKey, MacKey), KeyError> {
    if not_before > not_after {
        return Err(KeyError::EmptyWindow);
    }
    let peer_pk = PublicKey::from(peer.public);
    let shared = local.secret.diffie_hellman(&peer_pk);
    if !shared.was_contributory() {
        return Err(KeyError::WeakPeerKey);
    }
    let lp = local.public.to_bytes();
    let tx_id = KeyId::pairwise(local.key_id, peer.key_id);
    let rx_id = KeyId::pairwise(peer.key_id, local.key_id);
    let tx = derive_secret(shared.as_bytes(), &lp, &peer.public, tx_id);
    let rx = derive_secret(shared.as_bytes(), &lp, &peer.public, rx_id);
    Ok((
        MacKey::from_secret(tx_id, peer.peer, &tx, not_before, not_after),
        MacKey::from_secret(rx_id, peer.peer, &rx, not_before, not_after),
    ))
}

/// Receive keys by key id, transmit keys by peer; several generations of each
/// may coexist, each with its validity window.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    /// Sorted by key id, unique.
    rx: Vec<MacKey>,
    /// Sorted by (peer, not_before).
    tx: Vec<MacKey>,
}

impl KeyRing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key used to verify options from a peer.
    pub fn add_rx(&mut self, key: MacKey) -> Result<(), KeyError> {
        match self.rx.binary_search_by_key(&key.key_id, |k| k.key_id) {
            Ok(_) => Err(KeyError::DuplicateKeyId(key.key_id)),
            Err(i) => {
                self.rx.insert(i, key);
                Ok(())
            }
        }
    }

    /// Adds a key used to sign options towards a peer.
    pub fn add_tx(&mut self, key: MacKey) {
        let i = self.tx.partition_point(|k| (k.peer, k.not_before) <= (key.peer, key.not_before));
        self.tx.insert(i, key);
    }

    /// Derives and adds both directions' keys with `peer`.
    pub fn add_peer(
        &mut self,
        local: &GatewayKeyPair,
        peer: &PeerPublicKey,
        not_before: u64,
        not_after: u64,
    ) -> Result<(), KeyError> {
        let (tx, rx) = derive_pair(local, peer, not_before, not_after)?;
        self.add_rx(rx)?;
        self.add_tx(tx);
        Ok(())
    }

    /// Every transmit key towards `peer` signs TCP options of version `v`.
    pub fn set_tx_version(&mut self, peer: PeerId, v: TcpVersion) {
        for k in self.tx.iter_mut().filter(|k| k.peer == peer) {
            k.tx_version = v;
        }
    }

    /// Drops keys whose window ended before `now`.
    pub fn remove_expired(&mut self, now: u64) {
        self.rx.retain(|k| k.not_after >= now);
        self.tx.retain(|k| k.not_after >= now);
    }

    /// The receive key with this id (valid or not: the caller checks, so that
    /// "unknown" and "expired" stay distinct reasons).
    #[inline]
    pub fn rx_key(&self, id: KeyId) -> Option<&MacKey> {
        self.rx.binary_search_by_key(&id, |k| k.key_id).ok().and_then(|i| self.rx.get(i))
    }

    /// The newest transmit key towards `peer` valid at `now`.
    #[inline]
    pub fn tx_key(&self, peer: PeerId, now: u64) -> Option<&MacKey> {
        let end = self.tx.partition_point(|k| k.peer <= peer);
        self.tx.get(..end)?.iter().rev().take_while(|k| k.peer == peer).find(|k| k.is_valid_at(now))
    }

    /// The transmit key towards `peer`, valid at `now`, that answers an
    /// option received with a key id whose low 16 bits are `rx` (see
    /// [`KeyId::answer_bytes`]): the same two key pairs the other way round.
    /// A SYN-ACK is signed so, so that a peer that has not yet taken up our
    /// newest key (or its own) can verify the answer to its SYN.
    ///
    /// A received key id names only the low byte of our key, and a transmit
    /// key id only the low byte of the peer's; those two bytes tell the keys
    /// apart as long as no two keys of one gateway share their low 8 bits
    /// (the policy compiler's rule).
    #[inline]
    pub fn tx_key_answering(&self, peer: PeerId, rx: u16, now: u64) -> Option<&MacKey> {
        let want = u32::from(rx.swap_bytes());
        let end = self.tx.partition_point(|k| k.peer <= peer);
        self.tx
            .get(..end)?
            .iter()
            .rev()
            .take_while(|k| k.peer == peer)
            .find(|k| k.key_id.get() & 0xffff == want && k.is_valid_at(now))
    }

    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }
    pub fn tx_len(&self) -> usize {
        self.tx.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(id: u16, seed: u8) -> GatewayKeyPair {
        GatewayKeyPair::from_secret_bytes(id, [seed; 32])
    }

    #[test]
    fn key_id_names_its_sender_and_the_answer_bytes() {
        let k = KeyId::pairwise(0x1234, 0x0556);
        assert_eq!(k.get(), 0x12_3456);
        assert_eq!(k.sender(), 0x1234);
        assert_eq!(k.answer_bytes(), 0x3456);
    }

    #[test]
    fn mac_matches_rustcrypto_hmac() {
        use hmac::{Hmac, Mac};
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..200usize {
            let mut key = [0u8; 32];
            let mut msg = vec![0u8; len];
            for b in key.iter_mut().chain(msg.iter_mut()) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let k = MacKey::from_secret(KeyId(1), 1, &key, 0, 1);
            let mut h = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
            h.update(&msg);
            let want: [u8; 32] = h.finalize().into_bytes().into();
            assert_eq!(k.mac(&msg), want, "len {len}");
        }
    }

    /// The version-2 MAC is plain SHA-256 over the key block and the input,
    /// the block being HKDF-Expand of the secret (both from other crates).
    #[test]
    fn one_block_mac_is_sha256_of_the_key_block_and_the_input() {
        use sha2::Digest;
        let mut x = 0x0bad_5eed_1234_5678u64;
        for round in 0..64u32 {
            let mut secret = [0u8; 32];
            let mut msg = [0u8; TCP_INPUT_LEN];
            for b in secret.iter_mut().chain(msg.iter_mut()) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let id = KeyId::new(round * 0x01_0307).unwrap();
            let k = MacKey::from_secret(id, 1, &secret, 0, 1);
            let mut info = b"igw one-block mac".to_vec();
            info.extend_from_slice(&id.get().to_be_bytes()[1..]);
            let mut k2 = [0u8; 64];
            Hkdf::<Sha256>::from_prk(&secret).unwrap().expand(&info, &mut k2).unwrap();
            assert_eq!(k.one_block_key(), k2, "round {round}");
            let mut h = Sha256::new();
            h.update(k2);
            h.update(msg);
            let want: [u8; 32] = h.finalize().into();
            assert_eq!(k.mac_one_block(&msg), want, "round {round}");
            assert_eq!(k.tcp_mac(TcpVersion::OneBlock, &msg), want);
            assert_eq!(k.tcp_mac(TcpVersion::Hmac, &msg), k.mac(&msg));
            for v in [TcpVersion::Hmac, TcpVersion::OneBlock] {
                let full = k.tcp_mac(v, &msg);
                assert_eq!(k.tcp_tag(v, &msg).to_be_bytes(), full[..8], "round {round} {v:?}");
            }
            assert_ne!(k.mac(&msg), want, "the versions' MACs differ");
        }
    }

    #[test]
    fn the_sending_version_is_set_per_peer() {
        let (a, b) = (kp(1, 11), kp(2, 22));
        let mut ring = KeyRing::new();
        ring.add_peer(&a, &b.peer_public(7), 0, 100).unwrap();
        ring.add_peer(&a, &kp(3, 33).peer_public(8), 0, 100).unwrap();
        assert_eq!(ring.tx_key(7, 1).unwrap().tx_version(), TcpVersion::Hmac, "the default");
        ring.set_tx_version(7, TcpVersion::OneBlock);
        assert_eq!(ring.tx_key(7, 1).unwrap().tx_version(), TcpVersion::OneBlock);
        assert_eq!(ring.tx_key(8, 1).unwrap().tx_version(), TcpVersion::Hmac);
    }

    #[test]
    fn pairwise_keys_agree_per_direction_and_differ_across_pairs() {
        let (a, b, c) = (kp(1, 11), kp(2, 22), kp(3, 33));
        let (ab_tx, ab_rx) = derive_pair(&a, &b.peer_public(2), 0, 100).unwrap();
        let (ba_tx, ba_rx) = derive_pair(&b, &a.peer_public(1), 0, 100).unwrap();
        let msg = b"hello";
        assert_eq!(ab_tx.key_id(), ba_rx.key_id());
        assert_eq!(ab_tx.mac(msg), ba_rx.mac(msg));
        assert_eq!(ba_tx.mac(msg), ab_rx.mac(msg));
        assert_ne!(ab_tx.mac(msg), ba_tx.mac(msg), "directions have distinct keys");
        // C's keys with B never equal A's keys with B
        let (cb_tx, _) = derive_pair(&c, &b.peer_public(2), 0, 100).unwrap();
        assert_ne!(cb_tx.mac(msg), ab_tx.mac(msg));
        assert_eq!(ab_tx.key_id(), KeyId::pairwise(1, 2));
    }

    #[test]
    fn an_answer_uses_the_two_keys_its_question_used() {
        // Two local keys (low bytes 0x01, 0x02) and two keys of one peer.
        let (l1, l2) = (kp(0x0101, 11), kp(0x0102, 12));
        let (p1, p2) = (kp(0x0201, 21), kp(0x0302, 22));
        let mut ring = KeyRing::new();
        for l in [&l1, &l2] {
            for p in [&p1, &p2] {
                ring.add_peer(l, &p.peer_public(7), 0, 100).unwrap();
            }
        }
        for (l, p) in [(&l1, &p1), (&l1, &p2), (&l2, &p1), (&l2, &p2)] {
            let rx = KeyId::pairwise(p.key_id(), l.key_id());
            assert!(ring.rx_key(rx).is_some());
            let tx = ring.tx_key_answering(7, rx.answer_bytes(), 50).unwrap();
            assert_eq!(tx.key_id(), KeyId::pairwise(l.key_id(), p.key_id()), "{rx:?}");
        }
        let rx = KeyId::pairwise(p1.key_id(), l1.key_id()).answer_bytes();
        assert!(ring.tx_key_answering(7, rx, 101).is_none(), "expired");
        assert!(ring.tx_key_answering(8, rx, 50).is_none(), "another peer");
    }

    #[test]
    fn ring_rotation_and_lookup() {
        let a = kp(1, 11);
        let b_old = kp(0x0200, 22);
        let b_new = kp(0x0201, 23);
        let mut ring = KeyRing::new();
        ring.add_peer(&a, &b_old.peer_public(7), 0, 100).unwrap();
        ring.add_peer(&a, &b_new.peer_public(7), 50, 200).unwrap();
        assert_eq!(ring.tx_key(7, 10).unwrap().key_id(), KeyId::pairwise(1, 0x0200));
        assert_eq!(ring.tx_key(7, 60).unwrap().key_id(), KeyId::pairwise(1, 0x0201));
        assert!(ring.tx_key(7, 300).is_none());
        assert!(ring.tx_key(8, 60).is_none());
        assert!(ring.rx_key(KeyId::pairwise(0x0200, 1)).is_some());
        assert!(ring.rx_key(KeyId::pairwise(0x0201, 1)).is_some());
        assert!(ring.rx_key(KeyId::pairwise(0x0202, 1)).is_none());
        assert_eq!(
            ring.add_peer(&a, &b_old.peer_public(7), 0, 100),
            Err(KeyError::DuplicateKeyId(KeyId::pairwise(0x0200, 1)))
        );
        ring.remove_expired(150);
        assert_eq!(ring.rx_len(), 1);
        assert_eq!(derive_pair(&a, &b_old.peer_public(7), 5, 4).err(), Some(KeyError::EmptyWindow));
        let weak = PeerPublicKey { peer: 9, key_id: 9, public: [0; 32] };
        assert_eq!(derive_pair(&a, &weak, 0, 1).err(), Some(KeyError::WeakPeerKey));
        assert_eq!(KeyId::new(1 << 24), None);
    }
}
