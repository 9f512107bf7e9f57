//! The gateway's own X25519 keys in fleet mode: created on first start,
//! rotated on the operator's request with a lead and an overlap, retired
//! once the overlap is over. Kept in `<state_dir>/fleet/` (each private key
//! in its own 0600 file, the list in `keys.json`).

use std::path::{Path, PathBuf};

use dataplane::policy::model::{LocalKey, LocalKeys};
use etcd_client::Client;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use super::etcd::{take_numbers, EtcdResult};
use super::model::PublishedKey;

/// Key ids are 16 bits on the wire.
const MAX_KEY_ID: u64 = 0xffff;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnKey {
    pub id: u32,
    /// File name under the fleet state directory.
    pub file: String,
    pub public_key: String,
    #[serde(default)]
    pub not_before: Option<u64>,
    #[serde(default)]
    pub not_after: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct KeysFile {
    keys: Vec<OwnKey>,
    /// The `requested_at` of the last rotation request acted on.
    #[serde(default)]
    rotated_for: u64,
}

pub struct KeyStore {
    dir: PathBuf,
    /// The fleet's key id counter in etcd.
    counter_key: String,
    state: KeysFile,
}

impl KeyStore {
    /// Opens (creating the directory, mode 0700) the key list under `dir`;
    /// new key ids come from the counter at `counter_key`.
    pub fn open(dir: &Path, counter_key: String) -> Result<KeyStore, String> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join("keys.json");
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{} is damaged: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeysFile::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(KeyStore { dir: dir.to_owned(), counter_key, state })
    }

    fn save(&self) -> Result<(), String> {
        let path = self.dir.join("keys.json");
        let tmp = self.dir.join("keys.json.tmp");
        let text = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn keys(&self) -> &[OwnKey] {
        &self.state.keys
    }

    pub fn rotated_for(&self) -> u64 {
        self.state.rotated_for
    }

    /// The key in use last (the newest).
    pub fn current(&self) -> Option<&OwnKey> {
        self.state.keys.last()
    }

    async fn new_key(&self, client: &mut Client, avoid_low: Option<u32>) -> EtcdResult<OwnKey> {
        let layout_key = self.counter_key.clone();
        // Two local keys must differ in their low 8 bits (they give the
        // receive key ids); a taken id that does not is skipped.
        for _ in 0..4 {
            let id = take_numbers(client, &layout_key, 1, 1, MAX_KEY_ID).await? as u32;
            if avoid_low.is_some_and(|low| low & 0xff == id & 0xff) {
                continue;
            }
            let file = format!("x25519-{id}.key");
            let secret = super::sign::create_secret_file(&self.dir.join(&file))?;
            let public = PublicKey::from(&StaticSecret::from(secret));
            return Ok(OwnKey {
                id,
                file,
                public_key: hex::encode(public.as_bytes()),
                not_before: None,
                not_after: None,
            });
        }
        Err("no key id with free low bits after 4 attempts".into())
    }

    /// Creates the first key if there is none; true if it did.
    pub async fn ensure(&mut self, client: &mut Client) -> EtcdResult<bool> {
        if !self.state.keys.is_empty() {
            return Ok(false);
        }
        let k = self.new_key(client, None).await?;
        self.state.keys.push(k);
        self.save()?;
        Ok(true)
    }

    /// Starts a rotation asked for at `requested_at`: a new key used from
    /// `now + lead`, the current one valid until `now + lead + overlap`.
    pub async fn rotate(
        &mut self,
        client: &mut Client,
        requested_at: u64,
        now: u64,
        lead: u64,
        overlap: u64,
    ) -> EtcdResult<u32> {
        let avoid = self.current().map(|k| k.id);
        let mut k = self.new_key(client, avoid).await?;
        let start = now.saturating_add(lead);
        k.not_before = Some(start);
        let id = k.id;
        for old in &mut self.state.keys {
            let end = start.saturating_add(overlap);
            old.not_after = Some(old.not_after.map_or(end, |a| a.min(end)));
        }
        self.state.keys.push(k);
        self.state.rotated_for = requested_at;
        self.save()?;
        Ok(id)
    }

    /// Drops keys whose window ended before `now` (and their files); true if any.
    pub fn retire(&mut self, now: u64) -> Result<bool, String> {
        let (gone, kept): (Vec<OwnKey>, Vec<OwnKey>) =
            self.state.keys.drain(..).partition(|k| k.not_after.is_some_and(|a| a < now));
        self.state.keys = kept;
        if gone.is_empty() {
            return Ok(false);
        }
        self.save()?;
        for k in gone {
            let _ = std::fs::remove_file(self.dir.join(&k.file));
        }
        Ok(true)
    }

    /// When the next key retires (Unix seconds).
    pub fn next_retirement(&self) -> Option<u64> {
        self.state.keys.iter().filter_map(|k| k.not_after).min().map(|a| a.saturating_add(1))
    }

    /// The `local` section: the newest key as the main one, the others as previous keys.
    pub fn local(&self, gateway: &str) -> Option<LocalKeys> {
        let (main, older) = self.state.keys.split_last()?;
        let file = |k: &OwnKey| Some(self.dir.join(&k.file).display().to_string());
        Some(LocalKeys {
            gateway: gateway.to_owned(),
            key_id: main.id,
            private_key_file: file(main),
            private_key: None,
            not_before: main.not_before,
            previous_keys: older
                .iter()
                .map(|k| LocalKey {
                    key_id: k.id,
                    private_key_file: file(k),
                    private_key: None,
                    not_after: k.not_after,
                })
                .collect(),
        })
    }

    /// What the registration publishes.
    pub fn published(&self) -> Vec<PublishedKey> {
        self.state
            .keys
            .iter()
            .map(|k| PublishedKey {
                id: k.id,
                public_key: k.public_key.clone(),
                not_before: k.not_before,
                not_after: k.not_after,
            })
            .collect()
    }
}
