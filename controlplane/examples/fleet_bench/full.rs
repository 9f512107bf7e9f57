//! Full gateways: the real fleet agent (`FleetAgent`) applying through a real
//! config store (compile, persist; `Discard` instead of the workers), each on
//! its own thread as in gatewayd, and what the bench sees of them: every
//! status their stores publish and every status they write to etcd, stamped
//! when it arrives on a thread that does nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::fleet::agent::FleetAgent;
use controlplane::fleet::etcd::MESSAGE_MAX;
use controlplane::fleet::layout::{KeyKind, Layout};
use controlplane::fleet::model::{GatewayStatus, LocalPu};
use controlplane::fleet::{sign, FleetConfig};
use controlplane::store::{ConfigStore, Discard, Status, StoreOptions};
use ed25519_dalek::VerifyingKey;
use etcd_client::{Client, WatchOptions};
use tokio::sync::mpsc;

use super::gen;

pub struct Full {
    pub index: usize,
    pub name: String,
    pub cfg: FleetConfig,
    pub state_dir: PathBuf,
    pub pu_file: PathBuf,
    pub pus: Vec<LocalPu>,
    pub store: Arc<ConfigStore>,
    pub agent: Option<FleetAgent>,
    pub signing_public: VerifyingKey,
}

/// What the bench knows of one full gateway, as of `at`.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The fleet version of the document in force (from its revision, "fleet N (…)").
    pub fleet_version: u64,
    pub identities: usize,
    pub pus: usize,
    pub connected: bool,
    pub relists: u64,
    pub report_applied: u64,
    pub last_error: String,
    /// The applied fleet version in the status it last wrote to etcd.
    pub acked_version: u64,
    pub at: Option<Instant>,
}

pub enum Event {
    Store(usize, Instant, Arc<Status>),
    Acked(usize, Instant, GatewayStatus),
}

impl Full {
    /// Prepares gateway `index` under `root`: its signing key (`signing_key`
    /// hex, or a new one), its PU file, its store (persisting under its
    /// state directory unless `persist` is false, as gatewayd's `[control] state_dir`).
    pub fn prepare(
        root: &Path,
        index: usize,
        base: &FleetConfig,
        pus: Vec<LocalPu>,
        signing_key: Option<&str>,
        persist: bool,
    ) -> Result<Full, String> {
        let name = gen::gateway_name(index);
        let state_dir = root.join(&name);
        let fleet_dir = state_dir.join("fleet");
        std::fs::create_dir_all(&fleet_dir).map_err(|e| format!("{}: {e}", fleet_dir.display()))?;
        if let Some(hex) = signing_key {
            std::fs::write(controlplane::fleet::agent::signing_key_path(&state_dir), format!("{hex}\n"))
                .map_err(|e| format!("{}: {e}", state_dir.display()))?;
        }
        let public = controlplane::fleet::agent::signing_public(&state_dir)?;
        let signing_public = sign::public_key(&public)?;
        let pu_file = state_dir.join("pus.yaml");
        std::fs::write(&pu_file, gen::pu_file_yaml(&pus)).map_err(|e| format!("{}: {e}", pu_file.display()))?;
        let mut cfg = base.clone();
        cfg.name = name.clone();
        cfg.networks = vec![gen::gateway_network(index)];
        cfg.processing_units = Some(pu_file.clone());
        let store = ConfigStore::open(
            StoreOptions { state_dir: persist.then(|| state_dir.clone()), before_config: Default::default() },
            Box::new(Discard),
        )
        .map_err(|e| format!("{name}: the store: {e}"))?;
        Ok(Full { index, name, cfg, state_dir, pu_file, pus, store: Arc::new(store), agent: None, signing_public })
    }

    pub fn start(&mut self) -> Result<(), String> {
        self.agent = Some(FleetAgent::start(&self.cfg, &self.state_dir, self.store.clone())?);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(a) = self.agent.take() {
            a.stop();
        }
    }

    /// Appends a PU to its file (the agent notices within its 1 s poll).
    pub fn append_pu(&mut self, pu: LocalPu) -> Result<(), String> {
        self.pus.push(pu);
        let tmp = self.pu_file.with_extension("tmp");
        std::fs::write(&tmp, gen::pu_file_yaml(&self.pus))
            .and_then(|()| std::fs::rename(&tmp, &self.pu_file))
            .map_err(|e| format!("{}: {e}", self.pu_file.display()))
    }

    /// Stamps every status this gateway's store publishes; `slot` names it in the events.
    pub fn observe(&self, rt: &tokio::runtime::Handle, slot: usize, tx: mpsc::UnboundedSender<Event>) {
        let mut rx = self.store.subscribe();
        rt.spawn(async move {
            loop {
                let s = rx.borrow_and_update().clone();
                if tx.send(Event::Store(slot, Instant::now(), s)).is_err() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Stamps the statuses the full gateways write to etcd (what `gwctl fleet
/// wait` reads): one watch on `P/gateways/`.
pub async fn observe_acks(
    endpoints: Vec<String>,
    layout: Layout,
    gateways: Vec<(usize, String, VerifyingKey)>,
    tx: mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let client = Client::connect(&endpoints, None).await.map_err(|e| e.to_string())?;
    let mut stream = client
        .watch_client()
        .max_decoding_message_size(MESSAGE_MAX)
        .watch(layout.gateways(), Some(WatchOptions::new().with_prefix()))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(msg) = stream.message().await.map_err(|e| e.to_string())? {
        let at = Instant::now();
        for ev in msg.events() {
            let Some(kv) = ev.kv() else { continue };
            let Ok(key) = std::str::from_utf8(kv.key()) else { continue };
            let KeyKind::Status { gateway } = layout.classify(key) else { continue };
            let Some((slot, name, public)) = gateways.iter().find(|(_, n, _)| n == gateway) else { continue };
            if let Ok(st) = sign::open::<GatewayStatus>(kv.value(), key, name, Some(public)) {
                if tx.send(Event::Acked(*slot, at, st)).is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// The fleet version in a fleet-built revision ("fleet 7 (bench)").
fn fleet_version(revision: Option<&str>) -> u64 {
    revision
        .and_then(|r| r.strip_prefix("fleet "))
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The latest state of each observed gateway, fed by the events.
pub struct Tracker {
    rx: mpsc::UnboundedReceiver<Event>,
    pub seen: Vec<Seen>,
}

impl Tracker {
    pub fn new(rx: mpsc::UnboundedReceiver<Event>, slots: usize) -> Tracker {
        Tracker { rx, seen: vec![Seen::default(); slots] }
    }

    fn take(&mut self, ev: Event) -> (usize, Instant) {
        match ev {
            Event::Store(slot, at, s) => {
                let seen = &mut self.seen[slot];
                seen.fleet_version = fleet_version(s.revision.as_deref());
                seen.identities = s.identities;
                seen.pus = s.pus;
                if let Some(f) = &s.fleet {
                    seen.connected = f.connected;
                    seen.relists = f.relists;
                    seen.report_applied = f.applied_fleet_version;
                    seen.last_error.clone_from(&f.last_error);
                }
                seen.at = Some(at);
                (slot, at)
            }
            Event::Acked(slot, at, st) => {
                let seen = &mut self.seen[slot];
                if st.result == "applied" {
                    seen.acked_version = seen.acked_version.max(st.applied_fleet_version);
                }
                seen.at = Some(at);
                (slot, at)
            }
        }
    }

    /// Takes in what arrived so far.
    pub fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.take(ev);
        }
    }

    /// When each of `slots` first satisfied `done` (checked after each event;
    /// one already satisfied counts from its last event), or `None` for
    /// those that had not by `deadline`.
    pub async fn wait(
        &mut self,
        slots: &[usize],
        timeout: Duration,
        done: impl Fn(&Seen) -> bool,
    ) -> Vec<Option<Instant>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut when: Vec<Option<Instant>> = slots
            .iter()
            .map(|&s| if done(&self.seen[s]) { self.seen[s].at.or(Some(Instant::now())) } else { None })
            .collect();
        while when.iter().any(Option::is_none) {
            let ev = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) | Err(_) => break,
            };
            let (slot, at) = self.take(ev);
            if let Some(i) = slots.iter().position(|&s| s == slot) {
                if when[i].is_none() && done(&self.seen[slot]) {
                    when[i] = Some(at);
                }
            }
        }
        when
    }
}
