//! What the fast path needs, built once off the fast path and published to the
//! workers as one immutable value: the compiled policy, the key ring with every
//! pairwise key derived, and the local key id.

use super::rule_hits::RuleHits;
use std::path::Path;
use std::sync::Arc;

use crate::dns::learned::FqdnTable;

use crate::identity::{GatewayKeyPair, KeyRing, PeerPublicKey};
use crate::policy::compile::{decode_key32, LocalKeyInfo};
use crate::policy::{compile, PolicyDocument, PolicySnapshot};
use crate::problem::ConfigProblem;

/// One immutable configuration of the packet engine. Publish it with
/// `arc_swap::ArcSwap<EngineConfig>`; workers load it once per burst.
#[derive(Debug)]
pub struct EngineConfig {
    pub policy: PolicySnapshot,
    /// Receive keys by key id, transmit keys by peer index (the `PeerId` of
    /// every key is the peer's index in `policy.peers()`).
    pub keys: KeyRing,
    /// This gateway's main 16-bit key id (`local.key_id`), when `local` is
    /// configured; its previous keys are in `keys` only. An answer is signed
    /// with the keys its question used ([`KeyRing::tx_key_answering`]), not
    /// with this one.
    pub local_key_id: Option<u16>,
    /// Per-rule hit counters of this policy, one row per worker: sized by
    /// the control plane when it publishes the policy
    /// ([`EngineConfig::count_rule_hits`]); none until then.
    pub rule_hits: RuleHits,
    /// The addresses learned for FQDN patterns, shared by every worker and
    /// kept across applies: the control plane hands the same table to each
    /// new configuration ([`Self::with_fqdn_table`]). `None`: nothing is
    /// learned and FQDN networks match nothing.
    pub fqdn: Option<Arc<FqdnTable>>,
}

const NS: u64 = 1_000_000_000;

impl EngineConfig {
    /// No policy at all: every PU lookup fails. Used only as a placeholder.
    pub fn empty() -> EngineConfig {
        let policy = compile(&PolicyDocument::default()).expect("the empty document compiles");
        EngineConfig { policy, keys: KeyRing::new(), local_key_id: None, rule_hits: RuleHits::none(), fqdn: None }
    }

    /// Parses, compiles and derives keys. Every problem is returned, each
    /// naming its field; nothing is half-built.
    pub fn from_yaml(text: &str) -> Result<EngineConfig, Vec<ConfigProblem>> {
        let doc = PolicyDocument::from_yaml(text)
            .map_err(|e| vec![ConfigProblem::new("document", "", "", "", format!("(syntax): {e}"))])?;
        Self::from_document(&doc)
    }

    /// Reads a YAML file (see [`Self::from_yaml`]).
    pub fn load(path: &Path) -> Result<EngineConfig, Vec<ConfigProblem>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let file = path.display().to_string();
            vec![ConfigProblem::new("document", "", "", &file, format!("(file) {file}: cannot read: {e}"))]
        })?;
        Self::from_yaml(&text)
    }

    pub fn from_document(doc: &PolicyDocument) -> Result<EngineConfig, Vec<ConfigProblem>> {
        let policy = compile(doc).map_err(|e| e.0.iter().map(ConfigProblem::from).collect::<Vec<_>>())?;
        Self::from_snapshot(policy)
    }

    /// Loads every local private key (inline or from its file) and derives
    /// the pairwise keys of each with every key of every peer. Key windows
    /// are Unix seconds in the document and nanoseconds in the ring (the
    /// engine's `now`); a pair is valid where both its keys are, and a pair
    /// that never is is left out.
    pub fn from_snapshot(policy: PolicySnapshot) -> Result<EngineConfig, Vec<ConfigProblem>> {
        let mut errors = Vec::new();
        let mut keys = KeyRing::new();
        let local_key_id = policy.local().map(|l| key_id16(l.key_id));
        let mine = policy.local().map(|l| local_keys(l, &mut errors)).unwrap_or_default();
        for (me, (my_from, my_until)) in &mine {
            for (pi, peer) in policy.peers().iter().enumerate() {
                for (j, (&(id, public), &(from, until))) in peer.keys.iter().zip(peer.key_windows.iter()).enumerate() {
                    let (from, until) = (from.max(*my_from), until.min(*my_until));
                    if from > until {
                        continue; // the two keys are never valid at once
                    }
                    let pk = PeerPublicKey { peer: pi as u32, key_id: key_id16(id), public };
                    if let Err(e) = keys.add_peer(me, &pk, from.saturating_mul(NS), until.saturating_mul(NS)) {
                        let message = format!("peers[{:?}].keys[{j}]: {e}", peer.name);
                        let e = ConfigProblem::new("peers", &peer.name, &format!("keys[{j}]"), "", message);
                        // The same peer key refused with each local key is one error.
                        if !errors.contains(&e) {
                            errors.push(e);
                        }
                    }
                }
            }
        }
        for (pi, peer) in policy.peers().iter().enumerate() {
            keys.set_tx_version(pi as u32, peer.option_version);
        }
        if errors.is_empty() {
            Ok(EngineConfig { policy, keys, local_key_id, rule_hits: RuleHits::none(), fqdn: None })
        } else {
            Err(errors)
        }
    }

    /// Gives the policy rule-hit slots for `workers` workers (allocated now,
    /// before the workers see it).
    pub fn count_rule_hits(&mut self, workers: usize) {
        self.rule_hits = RuleHits::new(workers, self.policy.rule_count());
    }

    /// The policy snapshot's generation (flow entries remember it).
    #[inline]
    pub fn generation(&self) -> u32 {
        self.policy.generation()
    }
}

/// The compiler refuses key ids above 0xffff.
fn key_id16(id: u32) -> u16 {
    u16::try_from(id).unwrap_or(u16::MAX)
}

/// Every local key that loads, with its window in Unix seconds (the main key
/// from `not_before` on, a previous one until its `not_after`). In the order
/// they go into the ring: previous keys by `not_after`, then the main key, so
/// that among pairs with equal `not_before` the ring signs with the key that
/// stays valid longest, and with the main key above all.
fn local_keys(local: &LocalKeyInfo, errors: &mut Vec<ConfigProblem>) -> Vec<(GatewayKeyPair, (u64, u64))> {
    let mut out = Vec::with_capacity(local.previous_keys.len() + 1);
    for (i, k) in local.previous_keys.iter().enumerate() {
        let at = format!("previous_keys[{i}].");
        if let Some(secret) = load_secret(k.private_key, k.private_key_file.as_deref(), &at, errors) {
            out.push((GatewayKeyPair::from_secret_bytes(key_id16(k.key_id), secret), (0, k.not_after)));
        }
    }
    out.sort_by_key(|(_, (_, until))| *until);
    if let Some(secret) = load_secret(local.private_key, local.private_key_file.as_deref(), "", errors) {
        out.push((GatewayKeyPair::from_secret_bytes(key_id16(local.key_id), secret), (local.not_before, u64::MAX)));
    }
    out
}

/// A local key file that cannot be used, as a problem of the `local`
/// resource (`at` is "" for the main key, "previous_keys[1]." for another).
fn key_file_problem(at: &str, file: &str, what: String) -> ConfigProblem {
    let field = format!("{at}private_key_file");
    ConfigProblem::new("local", "", &field, file, format!("local.{field}: {what}"))
}

/// One local private key: the inline one the compiler decoded, or the
/// contents of its file. `at` names the key in errors ("" for the main key,
/// "previous_keys[1]." for another); `None` after an error (or when neither is set,
/// which the compiler already refused).
fn load_secret(
    inline: Option<[u8; 32]>,
    file: Option<&str>,
    at: &str,
    errors: &mut Vec<ConfigProblem>,
) -> Option<[u8; 32]> {
    if inline.is_some() {
        return inline;
    }
    let file = file?;
    match std::fs::read_to_string(file) {
        Ok(text) => match decode_key32(&text) {
            Ok(k) => Some(k),
            Err(_) => {
                let what = format!("{file:?} does not hold 32 bytes as base64 or 64 hex digits");
                errors.push(key_file_problem(at, file, what));
                None
            }
        },
        Err(e) => {
            errors.push(key_file_problem(at, file, format!("cannot read {file:?}: {e}")));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::KeyId;

    fn public(secret: u8) -> String {
        GatewayKeyPair::from_secret_bytes(0, [secret; 32]).public().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Local keys 1 (until 4000 s, from a file), 2 (until 100 s) and 4 (the
    /// main one, from 3000 s); peer keys 7 (always), 8 (from 5000 s) and 9
    /// (until 50 s).
    fn doc(key1_file: &str) -> String {
        format!(
            "local:\n  gateway: me\n  key_id: 4\n  private_key: \"{}\"\n  not_before: 3000\n  previous_keys:\n  \
             - {{key_id: 1, private_key_file: {key1_file:?}, not_after: 4000}}\n  \
             - {{key_id: 2, private_key: \"{}\", not_after: 100}}\n\
             peers:\n- name: b\n  keys:\n  - {{id: 7, public_key: \"{}\"}}\n  \
             - {{id: 8, public_key: \"{}\", not_before: 5000}}\n  - {{id: 9, public_key: \"{}\", not_after: 50}}\n",
            "44".repeat(32),
            "22".repeat(32),
            public(7),
            public(8),
            public(9)
        )
    }

    #[test]
    fn every_local_key_pairs_with_every_peer_key_where_both_are_valid() {
        let file = std::env::temp_dir().join(format!("igw-config-test-{}.key", std::process::id()));
        std::fs::write(&file, "11".repeat(32)).unwrap();
        let cfg = EngineConfig::from_yaml(&doc(file.to_str().unwrap()));
        std::fs::remove_file(&file).unwrap();
        let cfg = cfg.unwrap_or_else(|e| panic!("{}", crate::problem::lines(&e)));
        assert_eq!(cfg.local_key_id, Some(4));
        let rx = |peer, local| cfg.keys.rx_key(KeyId::pairwise(peer, local)).map(|k| k.window());
        // The window of a pair is where both keys are valid, in ns.
        assert_eq!(rx(7, 1), Some((0, 4000 * NS)));
        assert_eq!(rx(9, 1), Some((0, 50 * NS)));
        assert_eq!(rx(7, 2), Some((0, 100 * NS)));
        assert_eq!(rx(9, 2), Some((0, 50 * NS)));
        assert_eq!(rx(7, 4), Some((3000 * NS, u64::MAX)));
        assert_eq!(rx(8, 4), Some((5000 * NS, u64::MAX)));
        // Never valid together: left out.
        assert_eq!((rx(8, 1), rx(8, 2), rx(9, 4)), (None, None, None));
        assert_eq!((cfg.keys.rx_len(), cfg.keys.tx_len()), (6, 6));
        // Signing: the latest not_before, the key valid longest among equal ones.
        let tx = |s: u64| cfg.keys.tx_key(0, s * NS).map(|k| k.key_id());
        assert_eq!(tx(10), Some(KeyId::pairwise(1, 9)));
        assert_eq!(tx(200), Some(KeyId::pairwise(1, 7)));
        assert_eq!(tx(3500), Some(KeyId::pairwise(4, 7)));
        assert_eq!(tx(6000), Some(KeyId::pairwise(4, 8)));
    }

    #[test]
    fn a_previous_key_file_that_does_not_load_is_named() {
        let e = EngineConfig::from_yaml(&doc("/nonexistent/igw-key1")).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].resource.as_str(), e[0].field.as_str()), ("local", "previous_keys[0].private_key_file"));
        assert_eq!(e[0].value, "/nonexistent/igw-key1");
        assert!(
            e[0].message.starts_with("local.previous_keys[0].private_key_file: cannot read \"/nonexistent/igw-key1\""),
            "{e:?}"
        );
        let file = std::env::temp_dir().join(format!("igw-config-test-bad-{}.key", std::process::id()));
        std::fs::write(&file, "not a key").unwrap();
        let e = EngineConfig::from_yaml(&doc(file.to_str().unwrap()));
        std::fs::remove_file(&file).unwrap();
        let e = e.unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].message.starts_with("local.previous_keys[0].private_key_file: ")
                && e[0].message.ends_with("does not hold 32 bytes as base64 or 64 hex digits"),
            "{e:?}"
        );
    }
}
