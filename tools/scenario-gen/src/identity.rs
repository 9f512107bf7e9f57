//! Valid identity options on generated SYNs (`--identity-key FILE`): a
//! [`SynOptionHook`] that signs each SYN as the sending gateway would, with
//! `dataplane::identity` (the same option bytes, MAC input and pairwise keys;
//! this crate adds no cryptography of its own).
//!
//! The key file is either
//!
//! - **a policy document** (`docs/config.md`, YAML) of the *sending* gateway,
//!   so the lab's documents work as they are: its `local` key (inline or
//!   `private_key_file`), the peer whose `networks` contain the destination
//!   (or the only peer) and that peer's key with the latest `not_before`; the
//!   identity is that of the processing unit containing the source address
//!   (or the only one), unless `identity` is given; the option version is
//!   that peer's `option_version` (default 1); or
//! - **a key file** (TOML when the name ends in `.toml`, else YAML):
//!
//! ```toml
//! key_id = 1                # the sending gateway's 16-bit key id
//! private_key = "0a0a…"     # its X25519 secret, 64 hex digits or base64
//!                           # (or private_key_file = "path", relative to this file)
//! peer_key_id = 2           # the receiving gateway's key id
//! peer_public_key = "73b2…" # its X25519 public key
//! identity = 1001           # the workload identity the SYNs claim
//! option_version = 2        # optional: the option's format version (default 1)
//! ```

use std::net::IpAddr;
use std::path::Path;

use dataplane::identity::keys::derive_pair;
use dataplane::identity::option::{self, tcp_field};
use dataplane::identity::{mac, GatewayKeyPair, MacKey, PeerPublicKey, TcpVersion};
use dataplane::policy::compile::decode_key32;
use dataplane::policy::PolicyDocument;
use dataplane::wire::Addr;
use serde::Deserialize;

use crate::tcp_options::{SynInfo, SynOptionHook};

/// Signs SYNs with one pairwise key and one workload identity.
#[derive(Clone, Debug)]
pub struct IdentitySigner {
    key: MacKey,
    identity: u32,
}

/// The flat key file (see the module documentation).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key_id: u16,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    private_key_file: Option<String>,
    peer_key_id: u16,
    peer_public_key: String,
    identity: u32,
    #[serde(default)]
    option_version: Option<u32>,
}

/// The option version a document or key file asks for (1 when unset).
fn tcp_version(v: Option<u32>, what: &str) -> Result<TcpVersion, String> {
    match v {
        None => Ok(TcpVersion::default()),
        Some(n) => TcpVersion::from_number(n).ok_or_else(|| format!("{what}option_version {n}: not 1 or 2")),
    }
}

fn secret(inline: Option<&str>, file: Option<&str>, base: &Path, what: &str) -> Result<[u8; 32], String> {
    let text = match (inline, file) {
        (Some(k), None) => k.to_string(),
        (None, Some(f)) => {
            let p = base.join(f);
            std::fs::read_to_string(&p).map_err(|e| format!("{what}private_key_file {}: {e}", p.display()))?
        }
        _ => return Err(format!("{what}exactly one of private_key and private_key_file must be set")),
    };
    decode_key32(&text).map_err(|_| format!("{what}private key: not 32 bytes as 64 hex digits or base64"))
}

fn contains(cidr: &str, a: IpAddr) -> bool {
    let (net, len) = match cidr.split_once('/') {
        Some((n, l)) => (n, l.parse::<u32>().ok()),
        None => (cidr, None),
    };
    match (net.parse::<IpAddr>(), a) {
        (Ok(IpAddr::V4(n)), IpAddr::V4(a)) => {
            let l = len.unwrap_or(32).min(32);
            let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (Ok(IpAddr::V6(n)), IpAddr::V6(a)) => {
            let l = len.unwrap_or(128).min(128);
            let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

impl IdentitySigner {
    pub fn new(key: MacKey, identity: u32) -> IdentitySigner {
        IdentitySigner { key, identity }
    }

    /// The key's 24-bit id (sender key id ‖ low byte of the receiver's).
    pub fn key_id(&self) -> u32 {
        self.key.key_id().get()
    }

    pub fn identity(&self) -> u32 {
        self.identity
    }

    /// Reads a key file or a policy document (see the module documentation).
    /// `src` and `dst` are an address of the source and destination networks:
    /// they pick the processing unit and the peer in a policy document.
    /// `identity` overrides the identity the file gives.
    pub fn from_file(path: &Path, src: IpAddr, dst: IpAddr, identity: Option<u32>) -> Result<IdentitySigner, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        Self::from_text(&text, is_toml, base, src, dst, identity).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// [`Self::from_file`] on text already read; `base` resolves relative
    /// `private_key_file` paths of the flat format.
    pub fn from_text(
        text: &str,
        is_toml: bool,
        base: &Path,
        src: IpAddr,
        dst: IpAddr,
        identity: Option<u32>,
    ) -> Result<IdentitySigner, String> {
        let is_policy = !is_toml && text.lines().any(|l| l.starts_with("local:"));
        if !is_policy {
            let k: KeyFile = if is_toml {
                toml::from_str(text).map_err(|e| e.to_string())?
            } else {
                serde_yaml::from_str(text).map_err(|e| e.to_string())?
            };
            let me = GatewayKeyPair::from_secret_bytes(
                k.key_id,
                secret(k.private_key.as_deref(), k.private_key_file.as_deref(), base, "")?,
            );
            let public = decode_key32(&k.peer_public_key).map_err(|e| format!("peer_public_key: {e}"))?;
            let peer = PeerPublicKey { peer: 0, key_id: k.peer_key_id, public };
            let (tx, _) = derive_pair(&me, &peer, 0, u64::MAX).map_err(|e| format!("peer_public_key: {e}"))?;
            let tx = tx.sending(tcp_version(k.option_version, "")?);
            return Ok(IdentitySigner::new(tx, identity.unwrap_or(k.identity)));
        }
        let doc = PolicyDocument::from_yaml(text).map_err(|e| format!("policy document: {e}"))?;
        let local = doc.local.as_ref().ok_or("policy document: no `local` key")?;
        let key_id =
            u16::try_from(local.key_id).map_err(|_| format!("local.key_id {} is not 0..=65535", local.key_id))?;
        // The document's private_key_file is used as written, as gatewayd does.
        let sk = secret(local.private_key.as_deref(), local.private_key_file.as_deref(), Path::new(""), "local.")?;
        let me = GatewayKeyPair::from_secret_bytes(key_id, sk);
        let peer = match doc.peers.as_slice() {
            [only] => only,
            peers => {
                // longest prefix among the peers' networks
                let best = peers
                    .iter()
                    .flat_map(|p| p.networks.iter().map(move |n| (p, n)))
                    .filter(|(_, n)| contains(n, dst))
                    .max_by_key(|(_, n)| n.split_once('/').and_then(|(_, l)| l.parse::<u32>().ok()).unwrap_or(128));
                best.map(|(p, _)| p).ok_or_else(|| format!("no peer's networks contain the destination {dst}"))?
            }
        };
        let pk = peer
            .keys
            .iter()
            .max_by_key(|k| k.not_before.unwrap_or(0))
            .ok_or_else(|| format!("peers[{:?}] has no key", peer.name))?;
        let public = decode_key32(&pk.public_key).map_err(|e| format!("peers[{:?}].public_key: {e}", peer.name))?;
        let pk_id =
            u16::try_from(pk.id).map_err(|_| format!("peers[{:?}] key id {} is not 0..=65535", peer.name, pk.id))?;
        let (tx, _) = derive_pair(&me, &PeerPublicKey { peer: 0, key_id: pk_id, public }, 0, u64::MAX)
            .map_err(|e| format!("peers[{:?}]: {e}", peer.name))?;
        let tx = tx.sending(tcp_version(peer.option_version, &format!("peers[{:?}].", peer.name))?);
        let identity = match identity {
            Some(i) => i,
            None => {
                let pus = &doc.processing_units;
                let by_src = pus.iter().find(|p| p.addresses.iter().any(|a| contains(a, src)));
                match (by_src, pus.as_slice()) {
                    (Some(p), _) | (None, [p]) => p.identity,
                    _ => return Err(format!("no processing unit contains the source {src}: give --identity")),
                }
            }
        };
        Ok(IdentitySigner::new(tx, identity))
    }

    /// The 20-byte option for a SYN, as the sending gateway computes it.
    pub fn option_for(&self, syn: &SynInfo<'_>) -> [u8; option::TCP_LEN] {
        let mut o = [0u8; option::TCP_LEN];
        o[tcp_field::KIND] = option::TCP_KIND;
        o[tcp_field::LEN] = option::TCP_LEN as u8;
        o[tcp_field::EXID].copy_from_slice(&option::EXID.to_be_bytes());
        let version = self.key.tx_version();
        o[tcp_field::VER_FLAGS] = version.ver_flags();
        o[tcp_field::KEY_ID].copy_from_slice(&self.key.key_id().get().to_be_bytes()[1..]);
        o[tcp_field::IDENTITY].copy_from_slice(&self.identity.to_be_bytes());
        let addr = |a: IpAddr| match a {
            IpAddr::V4(v) => Addr::V4(v.octets()),
            IpAddr::V6(v) => Addr::V6(v.octets()),
        };
        let flow = mac::Flow {
            src: addr(syn.src),
            dst: addr(syn.dst),
            src_port: syn.src_port,
            dst_port: syn.dst_port,
            proto: 6,
        };
        let mut bound = [0u8; 8];
        bound.copy_from_slice(&o[tcp_field::BOUND]);
        let m = self.key.tcp_mac(version, &mac::tcp_input(mac::context::TCP_SYN, &bound, &flow, syn.seq, 0));
        o[tcp_field::MAC].copy_from_slice(&m[..option::TCP_MAC_LEN]);
        o
    }
}

impl IdentitySigner {
    /// The layer-4 record (docs/identity-l4.md) for `b`, as the sending
    /// gateway makes it (`dataplane::identity::l4::make_record`).
    pub fn record_for(&self, b: &dataplane::identity::l4::Binding) -> [u8; dataplane::identity::l4::RECORD_LEN] {
        dataplane::identity::l4::make_record(&self.key, self.identity, b)
    }
}

impl SynOptionHook for IdentitySigner {
    fn extra_options(&mut self, syn: &SynInfo<'_>) -> Vec<u8> {
        self.option_for(syn).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::IpNet;
    use crate::scenario::{Config, Kind, Mix, Scenario};
    use crate::tcp_options::OsProfile;
    use dataplane::engine::EngineConfig;
    use dataplane::identity::{verify_tcp, KeyId, VerifyError};
    use dataplane::wire::parse_frame;

    fn examples(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples").join(name)
    }

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// SYN floods signed with `signer`, for every OS layout.
    fn syns(signer: &IdentitySigner, src: &str, dst: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for os in [OsProfile::Linux, OsProfile::Windows, OsProfile::Macos] {
            let cfg = Config {
                kind: Kind::SynFlood,
                src_mac: "02:00:00:00:00:01".parse().unwrap(),
                dst_mac: "02:00:00:00:00:02".parse().unwrap(),
                src_net: src.parse::<IpNet>().unwrap(),
                dst_net: dst.parse::<IpNet>().unwrap(),
                src_ports: "1024-65535".parse().unwrap(),
                tcp_dst_port: 8080,
                syn_dst_port: 80,
                udp_dst_port: 5001,
                frame_size: 64,
                flows: None,
                count: 50,
                seed: 1,
                os,
                mix: Mix::default(),
                prelude_syn: false,
            };
            let mut s = Scenario::new(cfg, Box::new(signer.clone())).unwrap();
            out.extend(std::iter::from_fn(|| s.next_frame().unwrap()));
        }
        out
    }

    #[test]
    fn syns_signed_with_the_lab_policy_verify_with_the_receivers_key_ring() {
        // Gateway A's lab document signs; gateway B's document builds the ring.
        let a = examples("e2e-gw-a.yaml");
        let signer = IdentitySigner::from_file(&a, v4("198.18.0.1"), v4("198.18.0.2"), None).unwrap();
        assert_eq!((signer.key_id(), signer.identity()), (KeyId::pairwise(1, 2).get(), 1001));
        let b = EngineConfig::load(&examples("e2e-gw-b.yaml")).unwrap();
        let frames = syns(&signer, "198.18.0.1/32", "198.18.0.2/32");
        assert_eq!(frames.len(), 150);
        for f in &frames {
            let info = parse_frame(f).unwrap();
            let v = verify_tcp(f, &info, &b.keys, 0).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!((v.key_id.get(), v.identity), (KeyId::pairwise(1, 2).get(), 1001));
        }
        // A flipped byte anywhere the MAC binds fails: the option is not a constant.
        let mut bad = frames[0].clone();
        let info = parse_frame(&bad).unwrap();
        let seq = usize::from(info.l4_offset) + 4;
        bad[seq] ^= 1;
        let info = parse_frame(&bad).unwrap();
        assert_eq!(verify_tcp(&bad, &info, &b.keys, 0).unwrap_err(), VerifyError::BadMac);
        // Another receiver (gateway A itself) has no key for it.
        let a_ring = EngineConfig::load(&a).unwrap();
        let info = parse_frame(&frames[0]).unwrap();
        assert_eq!(verify_tcp(&frames[0], &info, &a_ring.keys, 0).unwrap_err(), VerifyError::UnknownKey);
    }

    #[test]
    fn the_peers_option_version_is_signed() {
        // The bench documents send version 2: so do the SYNs signed with A's.
        let a = examples("bench-gw-a.yaml");
        let signer = IdentitySigner::from_file(&a, v4("10.0.0.1"), v4("10.1.0.1"), None).unwrap();
        let b = EngineConfig::load(&examples("bench-gw-b.yaml")).unwrap();
        for f in syns(&signer, "10.0.0.0/16", "10.1.0.0/24") {
            let info = parse_frame(&f).unwrap();
            let v = verify_tcp(&f, &info, &b.keys, 0).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(v.version, TcpVersion::OneBlock);
        }
        let text = std::fs::read_to_string(&a).unwrap().replace("option_version: 2", "option_version: 7");
        let e =
            IdentitySigner::from_text(&text, false, Path::new("."), v4("10.0.0.1"), v4("10.1.0.1"), None).unwrap_err();
        assert!(e.contains("option_version 7"), "{e}");
    }

    #[test]
    fn flat_key_files_in_toml_and_yaml() {
        let b_public = "73b2d8b76aa9b53660032bc8f5d8bee3a3ae4e3b3a7fd49ade81f7347a34aa68";
        let sk = "0a".repeat(32);
        let toml_text = format!(
            "key_id = 1\nprivate_key = \"{sk}\"\npeer_key_id = 2\npeer_public_key = \"{b_public}\"\nidentity = 77\n"
        );
        let yaml_text = format!(
            "key_id: 1\nprivate_key: \"{sk}\"\npeer_key_id: 2\npeer_public_key: \"{b_public}\"\nidentity: 77\n"
        );
        let b = EngineConfig::load(&examples("e2e-gw-b.yaml")).unwrap();
        for (text, is_toml) in [(toml_text, true), (yaml_text, false)] {
            let s = IdentitySigner::from_text(&text, is_toml, Path::new("."), v4("10.0.0.1"), v4("10.1.0.1"), None)
                .unwrap();
            assert_eq!(s.identity(), 77);
            for f in syns(&s, "10.0.0.0/16", "10.1.0.0/24") {
                let info = parse_frame(&f).unwrap();
                assert_eq!(verify_tcp(&f, &info, &b.keys, 0).map(|v| v.identity), Ok(77));
            }
        }
        let missing = "key_id: 1\npeer_key_id: 2\npeer_public_key: \"x\"\nidentity: 1\n";
        let e = IdentitySigner::from_text(missing, false, Path::new("."), v4("10.0.0.1"), v4("10.1.0.1"), None)
            .unwrap_err();
        assert!(e.contains("private_key"), "{e}");
    }
}
