//! What the fast path needs, built once off the fast path and published to the
//! workers as one immutable value: the compiled policy, the key ring with every
//! pairwise key derived, and the local key id.

use std::path::Path;

use crate::identity::{GatewayKeyPair, KeyRing, PeerPublicKey};
use crate::policy::{compile, compile::decode_key32, PolicyDocument, PolicySnapshot};

/// One immutable configuration of the packet engine. Publish it with
/// `arc_swap::ArcSwap<EngineConfig>`; workers load it once per burst.
#[derive(Debug)]
pub struct EngineConfig {
    pub policy: PolicySnapshot,
    /// Receive keys by key id, transmit keys by peer index (the `PeerId` of
    /// every key is the peer's index in `policy.peers()`).
    pub keys: KeyRing,
    /// This gateway's 16-bit key id, when `local` is configured.
    pub local_key_id: Option<u16>,
}

const NS: u64 = 1_000_000_000;

impl EngineConfig {
    /// No policy at all: every PU lookup fails. Used only as a placeholder.
    pub fn empty() -> EngineConfig {
        let policy = compile(&PolicyDocument::default()).expect("the empty document compiles");
        EngineConfig { policy, keys: KeyRing::new(), local_key_id: None }
    }

    /// Parses, compiles and derives keys. Every problem is returned, each
    /// naming its field; nothing is half-built.
    pub fn from_yaml(text: &str) -> Result<EngineConfig, Vec<String>> {
        let doc = PolicyDocument::from_yaml(text).map_err(|e| vec![format!("(syntax): {e}")])?;
        Self::from_document(&doc)
    }

    /// Reads a YAML file (see [`Self::from_yaml`]).
    pub fn load(path: &Path) -> Result<EngineConfig, Vec<String>> {
        let text =
            std::fs::read_to_string(path).map_err(|e| vec![format!("(file) {}: cannot read: {e}", path.display())])?;
        Self::from_yaml(&text)
    }

    pub fn from_document(doc: &PolicyDocument) -> Result<EngineConfig, Vec<String>> {
        let policy = compile(doc).map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        Self::from_snapshot(policy)
    }

    /// Loads the local private key (inline or from its file) and derives the
    /// pairwise keys with every key of every peer. Key windows are Unix
    /// seconds in the document and nanoseconds in the ring (the engine's `now`).
    pub fn from_snapshot(policy: PolicySnapshot) -> Result<EngineConfig, Vec<String>> {
        let mut errors = Vec::new();
        let mut keys = KeyRing::new();
        let mut local_key_id = None;
        if let Some(local) = policy.local() {
            let secret = match (&local.private_key, &local.private_key_file) {
                (Some(k), _) => Some(*k),
                (None, Some(file)) => match std::fs::read_to_string(&**file) {
                    Ok(text) => match decode_key32(&text) {
                        Ok(k) => Some(k),
                        Err(_) => {
                            errors.push(format!(
                                "local.private_key_file: {file:?} does not hold 32 bytes as base64 or 64 hex digits"
                            ));
                            None
                        }
                    },
                    Err(e) => {
                        errors.push(format!("local.private_key_file: cannot read {file:?}: {e}"));
                        None
                    }
                },
                (None, None) => None, // the compiler already refused this
            };
            // The compiler refuses ids above 0xffff.
            let id = u16::try_from(local.key_id).unwrap_or(u16::MAX);
            local_key_id = Some(id);
            if let Some(secret) = secret {
                let me = GatewayKeyPair::from_secret_bytes(id, secret);
                for (pi, peer) in policy.peers().iter().enumerate() {
                    for (j, ((kid, public), (nb, na))) in peer.keys.iter().zip(peer.key_windows.iter()).enumerate() {
                        let pk = PeerPublicKey {
                            peer: pi as u32,
                            key_id: u16::try_from(*kid).unwrap_or(u16::MAX),
                            public: *public,
                        };
                        if let Err(e) = keys.add_peer(&me, &pk, nb.saturating_mul(NS), na.saturating_mul(NS)) {
                            errors.push(format!("peers[{:?}].keys[{j}]: {e}", peer.name));
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(EngineConfig { policy, keys, local_key_id })
        } else {
            Err(errors)
        }
    }

    /// The policy snapshot's generation (flow entries remember it).
    #[inline]
    pub fn generation(&self) -> u32 {
        self.policy.generation()
    }
}
