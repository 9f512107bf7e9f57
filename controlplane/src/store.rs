//! The versioned config store: what policy is in force, and how a new one
//! gets there.
//!
//! An apply carries either a whole [`PolicyDocument`] or one *kind* of
//! resource (rulesets, PUs, the identity directory with peers and `local`,
//! external networks, the enforcer profile), and a version. The store merges
//! the kind into the document in force, validates and compiles the **whole**
//! result off the fast path (a second thread writes the state file's temp copy
//! meanwhile), and only then persists it (rename) and hands the snapshot
//! to the [`Enforcer`] (the workers' `ArcSwap`). Any problem — a stale
//! version, a compile error, a state file that cannot be written — refuses the
//! apply whole, with every problem named, and leaves the config in force
//! untouched (Envoy's ACK/NACK with last-known-good).
//!
//! Versions are kept per kind (like xDS's per-type versions): an apply must
//! carry a version greater than the one in force for every kind it replaces;
//! a whole document replaces every kind. The document's version is the
//! highest of them.
//!
//! An apply cannot wipe the gateway by accident ([`ApplyOptions`]): one that
//! would leave no processing units or no rules is refused unless it carries
//! `allow_empty`; one that removes more than half of the processing units,
//! rulesets, identities, peers or external networks in force (by name, or
//! number for identities) — which is what a whole document that lacks a kind
//! does — or drops `local` or a non-default enforcer profile, is refused
//! unless it carries `replace` (or `allow_empty`). The problem names what
//! would be removed.
//!
//! Every refusal is a list of [`ConfigProblem`]s, bounded ([`bounded`]):
//! each echoed value is cut to [`VALUE_MAX`](dataplane::problem::VALUE_MAX)
//! bytes (with its length), a message to
//! [`MESSAGE_MAX`](dataplane::problem::MESSAGE_MAX), an answer lists at most [`PROBLEMS_MAX`]
//! problems and `last_refused` keeps [`KEPT_MAX`], then one "and K more
//! problems".
//!
//! The last good document is written atomically under the state directory
//! (`policy.json`: temp file, fsync, rename, fsync of the directory) and
//! restored by [`ConfigStore::open`] before the ports start. Before any config
//! exists the gateway fails closed by default: the empty policy is published,
//! which has no PU, so the engine drops everything it would judge
//! (`no_local_pu`); [`BeforeConfig::FailOpen`] publishes a catch-all PU that
//! the profile ignores instead, so everything is forwarded untouched.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dataplane::policy::compile::SnapshotStats;
use dataplane::policy::model::{
    EnforcerProfile, ExternalNetwork, IdentityEntry, LocalKeys, Peer, ProcessingUnit, Ruleset,
};
use dataplane::policy::{compile, compile_view, DocumentRef, PolicyDocument, PolicySnapshot};
use dataplane::problem::{bounded, ConfigProblem};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

mod guard;
pub use guard::drops_everything;

/// The state file's name under the state directory.
pub const STATE_FILE: &str = "policy.json";
const STATE_TMP: &str = "policy.json.tmp";
const STATE_FORMAT: u32 = 1;

/// The parts of the document that are applied and versioned separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Rulesets,
    ProcessingUnits,
    /// The identity directory, the peers and their keys, and `local`.
    Identities,
    ExternalNetworks,
    EnforcerProfile,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::Rulesets, Kind::ProcessingUnits, Kind::Identities, Kind::ExternalNetworks, Kind::EnforcerProfile];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Rulesets => "rulesets",
            Kind::ProcessingUnits => "processing_units",
            Kind::Identities => "identities",
            Kind::ExternalNetworks => "external_networks",
            Kind::EnforcerProfile => "enforcer_profile",
        }
    }
}

/// Versions in force per kind; 0 means never applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    pub rulesets: u64,
    pub processing_units: u64,
    pub identities: u64,
    pub external_networks: u64,
    pub enforcer_profile: u64,
}

impl Versions {
    pub fn get(&self, k: Kind) -> u64 {
        match k {
            Kind::Rulesets => self.rulesets,
            Kind::ProcessingUnits => self.processing_units,
            Kind::Identities => self.identities,
            Kind::ExternalNetworks => self.external_networks,
            Kind::EnforcerProfile => self.enforcer_profile,
        }
    }

    fn set(&mut self, k: Kind, v: u64) {
        match k {
            Kind::Rulesets => self.rulesets = v,
            Kind::ProcessingUnits => self.processing_units = v,
            Kind::Identities => self.identities = v,
            Kind::ExternalNetworks => self.external_networks = v,
            Kind::EnforcerProfile => self.enforcer_profile = v,
        }
    }

    /// The document's version: the highest of the kinds'.
    pub fn document(&self) -> u64 {
        Kind::ALL.iter().map(|&k| self.get(k)).max().unwrap_or(0)
    }
}

/// What an apply replaces.
// One per apply, moved a few times: the document's size (grown with the
// enforcer profile's DNS settings) is not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Everything, `revision` included.
    Document(PolicyDocument),
    Rulesets(Vec<Ruleset>),
    ProcessingUnits(Vec<ProcessingUnit>),
    Identities {
        local: Option<LocalKeys>,
        identities: Vec<IdentityEntry>,
        peers: Vec<Peer>,
    },
    ExternalNetworks(Vec<ExternalNetwork>),
    EnforcerProfile(EnforcerProfile),
}

impl Content {
    /// The kinds this content replaces.
    pub fn kinds(&self) -> &'static [Kind] {
        match self {
            Content::Document(_) => &Kind::ALL,
            Content::Rulesets(_) => &[Kind::Rulesets],
            Content::ProcessingUnits(_) => &[Kind::ProcessingUnits],
            Content::Identities { .. } => &[Kind::Identities],
            Content::ExternalNetworks(_) => &[Kind::ExternalNetworks],
            Content::EnforcerProfile(_) => &[Kind::EnforcerProfile],
        }
    }

    /// The document that results from applying this content on `base`: the
    /// kinds it does not replace are shared with `base`, not copied.
    fn merge(self, base: &Parts) -> Parts {
        let mut doc = base.clone();
        match self {
            Content::Document(d) => return Parts::from(d),
            Content::Rulesets(v) => doc.rulesets = Arc::new(v),
            Content::ProcessingUnits(v) => doc.processing_units = Arc::new(v),
            Content::Identities { local, identities, peers } => {
                doc.local = local;
                doc.identities = Arc::new(identities);
                doc.peers = Arc::new(peers);
            }
            Content::ExternalNetworks(v) => doc.external_networks = Arc::new(v),
            Content::EnforcerProfile(p) => doc.enforcer_profile = Arc::new(p),
        }
        doc
    }
}

/// A policy document kept kind by kind, each behind an `Arc`: an apply of
/// one kind shares the others with the config in force instead of copying
/// them (at scale the identity directory alone is 100k entries, and copying
/// it cost more than a tenth of a 10k-rule apply). Compiled and persisted
/// through [`Parts::view`], without assembling an owned document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parts {
    pub revision: Option<String>,
    pub local: Option<LocalKeys>,
    pub processing_units: Arc<Vec<ProcessingUnit>>,
    pub identities: Arc<Vec<IdentityEntry>>,
    pub peers: Arc<Vec<Peer>>,
    pub rulesets: Arc<Vec<Ruleset>>,
    pub external_networks: Arc<Vec<ExternalNetwork>>,
    pub enforcer_profile: Arc<EnforcerProfile>,
}

impl From<PolicyDocument> for Parts {
    fn from(d: PolicyDocument) -> Parts {
        Parts {
            revision: d.revision,
            local: d.local,
            processing_units: Arc::new(d.processing_units),
            identities: Arc::new(d.identities),
            peers: Arc::new(d.peers),
            rulesets: Arc::new(d.rulesets),
            external_networks: Arc::new(d.external_networks),
            enforcer_profile: Arc::new(d.enforcer_profile),
        }
    }
}

impl Parts {
    /// The document, borrowed.
    pub fn view(&self) -> DocumentRef<'_> {
        DocumentRef {
            revision: self.revision.as_deref(),
            local: self.local.as_ref(),
            processing_units: &self.processing_units,
            identities: &self.identities,
            peers: &self.peers,
            rulesets: &self.rulesets,
            external_networks: &self.external_networks,
            enforcer_profile: &self.enforcer_profile,
        }
    }

    /// An owned copy of the whole document.
    pub fn to_document(&self) -> PolicyDocument {
        PolicyDocument {
            revision: self.revision.clone(),
            local: self.local.clone(),
            processing_units: self.processing_units.to_vec(),
            identities: self.identities.to_vec(),
            peers: self.peers.to_vec(),
            rulesets: self.rulesets.to_vec(),
            external_networks: self.external_networks.to_vec(),
            enforcer_profile: (*self.enforcer_profile).clone(),
        }
    }
}

/// At most this many problems in an apply's answer (then "and K more problems").
pub const PROBLEMS_MAX: usize = 100;
/// At most this many problems kept as `last_refused` (status, watchers).
pub const KEPT_MAX: usize = 20;

/// What an apply may do beyond the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Validate and compile only; nothing is swapped or persisted.
    pub dry_run: bool,
    /// The result may have no processing units or no rules (the gateway then
    /// drops everything it judges). Implies `replace`.
    pub allow_empty: bool,
    /// The apply may remove more than half of a kind in force (a whole
    /// document that lacks a kind removes all of it).
    pub replace: bool,
}

/// Swaps the prepared config in. Runs once, after the document was persisted.
pub type Commit = Box<dyn FnOnce() + Send>;

/// Where the compiled snapshot goes: the workers' `ArcSwap`.
pub trait Enforcer: Send + Sync {
    /// Builds everything the workers need from `snapshot` (for instance the
    /// key ring, which needs the private key file) without publishing it.
    /// A problem here refuses the apply whole; nothing may have changed.
    fn prepare(&self, snapshot: PolicySnapshot) -> Result<Commit, Vec<ConfigProblem>>;
}

/// An [`Enforcer`] over a function that takes the snapshot (tests, tools).
pub struct SnapshotPublisher<F>(pub Arc<F>);

impl<F: Fn(Arc<PolicySnapshot>) + Send + Sync + 'static> Enforcer for SnapshotPublisher<F> {
    fn prepare(&self, snapshot: PolicySnapshot) -> Result<Commit, Vec<ConfigProblem>> {
        let f = self.0.clone();
        Ok(Box::new(move || f(Arc::new(snapshot))))
    }
}

/// An [`Enforcer`] that publishes nowhere (a store used only for validation).
pub struct Discard;

impl Enforcer for Discard {
    fn prepare(&self, _: PolicySnapshot) -> Result<Commit, Vec<ConfigProblem>> {
        Ok(Box::new(|| {}))
    }
}

/// What the gateway does before any config was ever applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BeforeConfig {
    /// The empty policy: no PU, so the engine drops everything it judges.
    #[default]
    FailClosed,
    /// Every address is a PU the profile ignores: everything is forwarded untouched.
    FailOpen,
}

/// How the store is set up.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Where `policy.json` lives; `None` keeps everything in memory (tests).
    pub state_dir: Option<PathBuf>,
    pub before_config: BeforeConfig,
}

/// Where the config in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Apply,
    Restored(PathBuf),
}

/// The config in force.
#[derive(Debug, Clone)]
pub struct InForce {
    pub document: Parts,
    pub versions: Versions,
    /// The compiled snapshot's generation and sizes.
    pub generation: u32,
    pub stats: SnapshotStats,
    /// When the apply began validating this document (as recorded in the state file).
    pub applied_at: SystemTime,
    pub source: Source,
    /// Why this policy drops everything it judges, if it does ([`drops_everything`]).
    pub drops_all: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnforcementState {
    NoConfigFailClosed,
    NoConfigFailOpen,
    Enforcing,
    /// A policy is in force, but it drops everything it judges (the reason is
    /// [`Status::drops_all`]): no processing units, or no allow rules.
    EnforcingDropAll,
}

impl EnforcementState {
    /// The state's name, as `gwctl status -o json` and the start-up line give it.
    pub fn name(self) -> &'static str {
        match self {
            EnforcementState::NoConfigFailClosed => "no_config_fail_closed",
            EnforcementState::NoConfigFailOpen => "no_config_fail_open",
            EnforcementState::Enforcing => "enforcing",
            EnforcementState::EnforcingDropAll => "enforcing_drop_all",
        }
    }
}

/// Why a status was sent on the watch channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusEvent {
    Current,
    Applied,
    Refused,
}

/// A refused apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub version: u64,
    pub at: SystemTime,
    pub problems: Vec<ConfigProblem>,
}

/// What a manager needs to know: what is enforced, and what was refused.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: EnforcementState,
    pub versions: Versions,
    pub revision: Option<String>,
    pub applied_at: Option<SystemTime>,
    pub generation: u32,
    pub source: Option<Source>,
    pub applies_accepted: u64,
    pub applies_refused: u64,
    pub last_refused: Option<Refusal>,
    pub pus: usize,
    pub identities: usize,
    pub rules: usize,
    /// With [`EnforcementState::EnforcingDropAll`]: why ("no processing units", "no allow rules").
    pub drops_all: Option<&'static str>,
    pub event: StatusEvent,
    /// In fleet mode, the agent's state.
    pub fleet: Option<crate::fleet::FleetReport>,
}

/// The answer to an apply that was taken (or would be, for a dry run).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub version: u64,
    pub versions: Versions,
    pub revision: Option<String>,
    pub compile_time: Duration,
    pub dry_run: bool,
}

/// The answer to an apply that was refused: nothing changed.
#[derive(Debug, Clone)]
pub struct Refused {
    pub version: u64,
    /// The versions still in force.
    pub versions: Versions,
    pub problems: Vec<ConfigProblem>,
    pub compile_time: Duration,
}

/// Why the store could not be opened.
#[derive(Debug)]
pub enum StoreError {
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state file is not what this version writes (hand-edited, or from elsewhere).
    Corrupt {
        path: PathBuf,
        message: String,
    },
    /// The persisted document no longer compiles (e.g. after an upgrade).
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::StateDir { path, source } => {
                write!(
                    f,
                    "state directory {}: {source} (set [control] state_dir to a writable directory)",
                    path.display()
                )
            }
            StoreError::Read { path, source } => write!(f, "reading {}: {source}", path.display()),
            StoreError::Corrupt { path, message } => write!(
                f,
                "{} is not a valid state file: {message} (move it away to start without a config, then apply one)",
                path.display()
            ),
            StoreError::Invalid { path, problems } => {
                write!(f, "the policy persisted in {} does not compile any more:", path.display())?;
                for p in problems {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// The persisted form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    versions: Versions,
    applied_at_unix_ms: u64,
    document: PolicyDocument,
}

/// [`StateFile`] as written: the document borrowed, not copied.
#[derive(Serialize)]
struct StateFileRef<'a> {
    format: u32,
    versions: Versions,
    applied_at_unix_ms: u64,
    document: DocumentRef<'a>,
}

struct Counters {
    accepted: u64,
    refused: u64,
    last_refused: Option<Refusal>,
}

/// The versioned config store. Cheap to share (`Arc`); applies are serialised,
/// reads never wait for a compile.
pub struct ConfigStore {
    apply_lock: Mutex<()>,
    current: RwLock<Option<Arc<InForce>>>,
    counters: Mutex<Counters>,
    compile_us: Mutex<Histogram<u64>>,
    status_tx: watch::Sender<Arc<Status>>,
    enforcer: Box<dyn Enforcer>,
    options: StoreOptions,
    fallback_generation: u32,
    /// In fleet mode, the agent's latest report (status shows it; local applies are refused).
    fleet: Mutex<Option<crate::fleet::FleetReport>>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The document published before any config exists.
pub fn before_config_document(b: BeforeConfig) -> PolicyDocument {
    match b {
        BeforeConfig::FailClosed => {
            PolicyDocument { revision: Some("fail-closed: no config applied yet".into()), ..PolicyDocument::default() }
        }
        BeforeConfig::FailOpen => PolicyDocument {
            revision: Some("fail-open: no config applied yet".into()),
            processing_units: vec![ProcessingUnit {
                name: "unconfigured".into(),
                tags: vec!["gateway=unconfigured".into()],
                addresses: vec!["0.0.0.0/0".into(), "::/0".into()],
                identity: 0,
            }],
            enforcer_profile: EnforcerProfile {
                ignore: Some("gateway == unconfigured".into()),
                ..EnforcerProfile::default()
            },
            ..PolicyDocument::default()
        },
    }
}

impl ConfigStore {
    /// Opens the store: restores the persisted document if there is one (and
    /// publishes it), else applies the before-config behaviour. Call before
    /// the ports start so that a restarted gateway enforces at once.
    pub fn open(options: StoreOptions, enforcer: Box<dyn Enforcer>) -> Result<ConfigStore, StoreError> {
        let mut restored = None;
        if let Some(dir) = &options.state_dir {
            restored = restore(dir, enforcer.as_ref())?;
        }
        let mut fallback_generation = 0;
        let restored = match restored {
            Some((inf, commit)) => {
                commit();
                Some(inf)
            }
            None => {
                let builtin = PathBuf::from("<built-in before-config policy>");
                let snap = compile(&before_config_document(options.before_config))
                    .map_err(|e| StoreError::Corrupt { path: builtin.clone(), message: e.to_string() })?;
                fallback_generation = snap.generation();
                let commit =
                    enforcer.prepare(snap).map_err(|problems| StoreError::Invalid { path: builtin, problems })?;
                commit();
                None
            }
        };
        let (status_tx, _) = watch::channel(Arc::new(placeholder_status()));
        let store = ConfigStore {
            apply_lock: Mutex::new(()),
            current: RwLock::new(restored.map(Arc::new)),
            counters: Mutex::new(Counters { accepted: 0, refused: 0, last_refused: None }),
            compile_us: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds")),
            status_tx,
            enforcer,
            options,
            fallback_generation,
            fleet: Mutex::new(None),
        };
        store.status_tx.send_replace(Arc::new(store.build_status(StatusEvent::Current)));
        Ok(store)
    }

    /// The config in force, if any was ever applied.
    pub fn current(&self) -> Option<Arc<InForce>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn versions(&self) -> Versions {
        self.current().map(|c| c.versions).unwrap_or_default()
    }

    /// The latest status; subscribe for changes.
    pub fn status(&self) -> Arc<Status> {
        self.status_tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Status>> {
        self.status_tx.subscribe()
    }

    /// Validate+compile durations of every apply so far, microseconds.
    pub fn compile_histogram(&self) -> Histogram<u64> {
        self.compile_us.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn state_file(&self) -> Option<PathBuf> {
        self.options.state_dir.as_ref().map(|d| d.join(STATE_FILE))
    }

    /// Applies `content` at `version` with the default options (no empty
    /// result, no removal of most of a kind): see [`ConfigStore::apply_with`].
    pub fn apply(&self, version: u64, content: Content, dry_run: bool) -> Result<Accepted, Refused> {
        self.apply_with(version, content, ApplyOptions { dry_run, ..ApplyOptions::default() })
    }

    /// Applies `content` at `version`: all or nothing. Compiles on the calling
    /// thread (call it from a blocking context, never a worker).
    pub fn apply_with(&self, version: u64, content: Content, opts: ApplyOptions) -> Result<Accepted, Refused> {
        let dry_run = opts.dry_run;
        let _serial = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.current();
        let versions = cur.as_ref().map(|c| c.versions).unwrap_or_default();
        let mut problems = Vec::new();
        // A whole document must be newer than every kind (the document's
        // version); one kind only than that kind.
        let (what, in_force) = match &content {
            Content::Document(_) => ("document", versions.document()),
            other => {
                let k = other.kinds()[0];
                (k.name(), versions.get(k))
            }
        };
        if version <= in_force {
            problems.push(ConfigProblem::new(
                "request",
                what,
                "version",
                &version.to_string(),
                format!("stale version: {version} is not greater than version {in_force} of {what} in force (send a higher version)"),
            ));
        }
        let kinds = content.kinds();
        let whole = matches!(content, Content::Document(_));
        let doc = match &cur {
            Some(c) => content.merge(&c.document),
            None => content.merge(&Parts::default()),
        };
        problems.extend(guard::check(cur.as_ref().map(|c| &c.document), &doc, kinds, whole, opts));
        let mut new_versions = versions;
        for &k in kinds {
            new_versions.set(k, version);
        }
        let applied_at = SystemTime::now();
        // The state file's temp copy is written (serialized, fsynced) on a
        // second thread while the document compiles; it replaces the state
        // file (rename, fsync of the directory) only once the compile and the
        // enforcer accepted it, still before the swap and the ACK.
        let state_dir = self.options.state_dir.as_deref().filter(|_| !dry_run && problems.is_empty());
        let (compiled, compile_time, written) = std::thread::scope(|s| {
            let writer = state_dir.map(|dir| {
                let view = doc.view();
                s.spawn(move || write_temp(dir, view, new_versions, applied_at))
            });
            let t0 = Instant::now();
            let compiled = compile_view(doc.view());
            let compile_time = t0.elapsed();
            let written =
                writer.map(|w| w.join().unwrap_or_else(|_| Err(std::io::Error::other("the writer panicked"))));
            (compiled, compile_time, written)
        });
        let _ =
            self.compile_us.lock().unwrap_or_else(|e| e.into_inner()).record(compile_time.as_micros().max(1) as u64);
        let mut prepared = None;
        match compiled {
            Ok(s) => {
                let (generation, stats) = (s.generation(), s.stats());
                match self.enforcer.prepare(s) {
                    Ok(commit) => prepared = Some((commit, generation, stats)),
                    Err(p) => problems.extend(p),
                }
            }
            Err(errors) => problems.extend(errors.0.iter().map(ConfigProblem::from)),
        }
        let (commit, generation, stats) = match prepared {
            Some(p) if problems.is_empty() => p,
            _ => {
                if let (Some(dir), Some(_)) = (state_dir, &written) {
                    let _ = fs::remove_file(dir.join(STATE_TMP));
                }
                return Err(self.refuse(version, versions, problems, compile_time, dry_run));
            }
        };
        if dry_run {
            return Ok(Accepted { version, versions, revision: doc.revision.clone(), compile_time, dry_run });
        }
        if let (Some(dir), Some(written)) = (state_dir, written) {
            if let Err(e) = written.and_then(|()| install(dir)) {
                let _ = fs::remove_file(dir.join(STATE_TMP));
                let p = ConfigProblem::new(
                    "state",
                    "",
                    "state_dir",
                    &dir.display().to_string(),
                    format!("cannot persist the policy under {}: {e}; nothing was applied", dir.display()),
                );
                return Err(self.refuse(version, versions, vec![p], compile_time, false));
            }
        }
        let revision = doc.revision.clone();
        let inf = InForce {
            drops_all: drops_everything(&doc),
            document: doc,
            versions: new_versions,
            generation,
            stats,
            applied_at,
            source: Source::Apply,
        };
        commit();
        let old = self.current.write().unwrap_or_else(|e| e.into_inner()).replace(Arc::new(inf));
        drop_later(old);
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).accepted += 1;
        self.status_tx.send_replace(Arc::new(self.build_status(StatusEvent::Applied)));
        Ok(Accepted { version, versions: new_versions, revision, compile_time, dry_run: false })
    }

    /// Records an apply refused before it reached the store (the request did
    /// not parse), so that status and watchers see it like any other NACK.
    pub fn refuse_unparsed(&self, version: u64, problems: Vec<ConfigProblem>, dry_run: bool) -> Refused {
        let versions = self.versions();
        self.refuse(version, versions, problems, Duration::ZERO, dry_run)
    }

    fn refuse(
        &self,
        version: u64,
        versions: Versions,
        problems: Vec<ConfigProblem>,
        compile_time: Duration,
        dry_run: bool,
    ) -> Refused {
        // Every refusal passes here: the one place problems are bounded.
        let total = problems.len();
        let problems = bounded(problems, PROBLEMS_MAX);
        let mut kept = Vec::new();
        if !dry_run {
            kept.extend(problems.iter().take(KEPT_MAX).cloned());
            if total > KEPT_MAX {
                kept.push(ConfigProblem::more(total - KEPT_MAX));
            }
        }
        if !dry_run {
            let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            c.refused += 1;
            c.last_refused = Some(Refusal { version, at: SystemTime::now(), problems: kept });
            drop(c);
            self.status_tx.send_replace(Arc::new(self.build_status(StatusEvent::Refused)));
        }
        Refused { version, versions, problems, compile_time }
    }

    fn build_status(&self, event: StatusEvent) -> Status {
        let cur = self.current();
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let (state, generation) = match (&cur, self.options.before_config) {
            (Some(inf), _) if inf.drops_all.is_some() => (EnforcementState::EnforcingDropAll, inf.generation),
            (Some(inf), _) => (EnforcementState::Enforcing, inf.generation),
            (None, BeforeConfig::FailClosed) => (EnforcementState::NoConfigFailClosed, self.fallback_generation),
            (None, BeforeConfig::FailOpen) => (EnforcementState::NoConfigFailOpen, 0),
        };
        let stats = cur.as_ref().map(|c| c.stats);
        Status {
            state,
            versions: cur.as_ref().map(|c| c.versions).unwrap_or_default(),
            revision: cur.as_ref().and_then(|c| c.document.revision.clone()),
            applied_at: cur.as_ref().map(|c| c.applied_at),
            generation,
            source: cur.as_ref().map(|c| c.source.clone()),
            applies_accepted: c.accepted,
            applies_refused: c.refused,
            last_refused: c.last_refused.clone(),
            pus: stats.as_ref().map(|s| s.pus).unwrap_or(0),
            identities: stats.as_ref().map(|s| s.identities).unwrap_or(0),
            rules: stats.as_ref().map(|s| s.rules).unwrap_or(0),
            drops_all: cur.as_ref().and_then(|c| c.drops_all),
            event,
            fleet: self.fleet.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Marks the store as fed by the fleet agent and publishes its report
    /// (watchers get a status when it changed).
    pub fn set_fleet_report(&self, report: crate::fleet::FleetReport) {
        let mut f = self.fleet.lock().unwrap_or_else(|e| e.into_inner());
        if f.as_ref() == Some(&report) {
            return;
        }
        *f = Some(report);
        drop(f);
        self.status_tx.send_replace(Arc::new(self.build_status(StatusEvent::Current)));
    }

    /// Whether the fleet agent feeds this store (local applies are refused then).
    pub fn fleet_managed(&self) -> bool {
        self.fleet.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

fn placeholder_status() -> Status {
    Status {
        state: EnforcementState::NoConfigFailClosed,
        versions: Versions::default(),
        revision: None,
        applied_at: None,
        generation: 0,
        source: None,
        applies_accepted: 0,
        applies_refused: 0,
        last_refused: None,
        pus: 0,
        identities: 0,
        rules: 0,
        drops_all: None,
        event: StatusEvent::Current,
        fleet: None,
    }
}

/// Frees what an apply replaced off the apply's path: freeing a whole
/// document of 100k identities took about a tenth of an apply. Only memory
/// is released there; nothing observable happens after the ACK.
fn drop_later<T: Send + 'static>(old: T) {
    // If no thread can be started, `spawn` drops the closure, and `old` with
    // it, right here: slower, same result.
    let _ = std::thread::Builder::new().name("config-free".into()).spawn(move || drop(old));
}

/// The state file is written atomically in two halves. The first: the temp
/// file, written and fsynced.
fn write_temp(dir: &Path, doc: DocumentRef<'_>, versions: Versions, at: SystemTime) -> std::io::Result<()> {
    let state = StateFileRef { format: STATE_FORMAT, versions, applied_at_unix_ms: unix_ms(at), document: doc };
    let text = serde_json::to_vec(&state).map_err(std::io::Error::other)?;
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(dir.join(STATE_TMP))?;
    set_private(&f);
    f.write_all(&text)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// The second half: the temp file renamed over the state file, the directory fsynced.
fn install(dir: &Path) -> std::io::Result<()> {
    fs::rename(dir.join(STATE_TMP), dir.join(STATE_FILE))?;
    File::open(dir)?.sync_all()
}

#[cfg(unix)]
fn set_private(f: &File) {
    use std::os::unix::fs::PermissionsExt;
    // The document may hold an inline private key.
    let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn set_private(_: &File) {}

/// Reads the state directory: a left-over temp file (a crash between write
/// and rename) is removed; the state file, if any, is parsed and compiled.
fn restore(dir: &Path, enforcer: &dyn Enforcer) -> Result<Option<(InForce, Commit)>, StoreError> {
    let sd = |source| StoreError::StateDir { path: dir.to_owned(), source };
    fs::create_dir_all(dir).map_err(sd)?;
    let tmp = dir.join(STATE_TMP);
    if tmp.exists() {
        fs::remove_file(&tmp).map_err(sd)?;
    }
    let path = dir.join(STATE_FILE);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::Read { path, source }),
    };
    let state: StateFile = serde_json::from_slice(&text)
        .map_err(|e| StoreError::Corrupt { path: path.clone(), message: e.to_string() })?;
    if state.format != STATE_FORMAT {
        return Err(StoreError::Corrupt {
            path,
            message: format!("format {} (this gatewayd reads format {STATE_FORMAT})", state.format),
        });
    }
    let snapshot = compile(&state.document).map_err(|e| StoreError::Invalid {
        path: path.clone(),
        problems: bounded(e.0.iter().map(ConfigProblem::from).collect(), PROBLEMS_MAX),
    })?;
    let (generation, stats) = (snapshot.generation(), snapshot.stats());
    let commit = enforcer
        .prepare(snapshot)
        .map_err(|problems| StoreError::Invalid { path: path.clone(), problems: bounded(problems, PROBLEMS_MAX) })?;
    let document = Parts::from(state.document);
    let inf = InForce {
        drops_all: drops_everything(&document),
        document,
        versions: state.versions,
        generation,
        stats,
        applied_at: UNIX_EPOCH + Duration::from_millis(state.applied_at_unix_ms),
        source: Source::Restored(path),
    };
    Ok(Some((inf, commit)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::problem::{cut, MESSAGE_MAX, VALUE_MAX};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An enforcer that records what it was given.
    #[derive(Default)]
    struct Recorder {
        published: Mutex<Vec<Arc<PolicySnapshot>>>,
    }
    fn store(dir: Option<&Path>, before: BeforeConfig) -> (ConfigStore, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let r2 = rec.clone();
        let s = ConfigStore::open(
            StoreOptions { state_dir: dir.map(Path::to_owned), before_config: before },
            Box::new(SnapshotPublisher(Arc::new(move |s| r2.published.lock().unwrap().push(s)))),
        )
        .unwrap();
        (s, rec)
    }

    fn published(rec: &Recorder) -> usize {
        rec.published.lock().unwrap().len()
    }

    const GOOD: &str = r#"
revision: r1
processing_units:
- name: web
  tags: [role=web]
  addresses: [10.0.0.0/24]
  identity: 100
- name: db
  tags: [role=db]
  addresses: [10.0.1.0/24]
  identity: 101
peers:
- name: gw-b
  keys: [{id: 7, public_key: "0000000000000000000000000000000000000000000000000000000000000001"}]
identities:
- {identity: 200, name: client, tags: [role=client], peer: gw-b}
rulesets:
- name: db
  subject: role == db
  incoming:
  - {name: from-web, action: allow, object: role == web, protocols: [tcp], ports: [5432]}
"#;

    fn good() -> PolicyDocument {
        PolicyDocument::from_yaml(GOOD).unwrap()
    }

    const EMPTY_OK: ApplyOptions = ApplyOptions { dry_run: false, allow_empty: true, replace: false };

    #[test]
    fn ack_publishes_and_versions_per_kind() {
        let (s, rec) = store(None, BeforeConfig::FailOpen);
        assert_eq!(published(&rec), 1, "the before-config policy is published at open");
        assert_eq!(s.status().state, EnforcementState::NoConfigFailOpen);
        let a = s.apply(3, Content::Document(good()), false).unwrap();
        assert_eq!(a.versions.document(), 3);
        assert_eq!(a.versions.rulesets, 3);
        assert_eq!(published(&rec), 2);
        assert_eq!(rec.published.lock().unwrap()[1].pus().len(), 2);
        assert_eq!(s.status().state, EnforcementState::Enforcing);
        assert_eq!(s.status().pus, 2);
        // One kind: only its version moves; the rest of the document is kept.
        let mut rs = good().rulesets;
        rs[0].incoming[0].ports = vec![dataplane::policy::model::PortSpec::Number(5433)];
        let a = s.apply(4, Content::Rulesets(rs.clone()), false).unwrap();
        assert_eq!(a.versions.rulesets, 4);
        assert_eq!(a.versions.processing_units, 3);
        assert_eq!(a.versions.document(), 4);
        let cur = s.current().unwrap();
        assert_eq!(*cur.document.rulesets, rs);
        assert_eq!(*cur.document.processing_units, good().processing_units);
        assert_eq!(cur.document.revision.as_deref(), Some("r1"));
        assert_eq!(published(&rec), 3);
        // Per-kind versions: PUs at 4 is newer than PUs' 3 even though rulesets are at 4.
        s.apply(4, Content::ProcessingUnits(good().processing_units), false).unwrap();
        assert_eq!(s.status().applies_accepted, 3);
        assert_eq!(s.status().event, StatusEvent::Applied);
    }

    #[test]
    fn nack_keeps_old_and_lists_every_error() {
        let (s, rec) = store(None, BeforeConfig::FailOpen);
        s.apply(1, Content::Document(good()), false).unwrap();
        let before = s.current().unwrap();
        let n = published(&rec);
        let mut bad = good();
        bad.rulesets[0].subject = "role == ".into();
        bad.processing_units[1].addresses = vec!["10.0.0.128/25".into()];
        bad.identities[0].peer = "nowhere".into();
        let r = s.apply(2, Content::Document(bad), false).unwrap_err();
        let msgs: Vec<_> = r.problems.iter().map(|p| p.message.clone()).collect();
        assert!(msgs.iter().any(|m| m.contains("subject") && m.contains("column 9")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("overlaps")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("nowhere")), "{msgs:?}");
        assert!(r
            .problems
            .iter()
            .any(|p| p.resource == "processing_units" && p.name == "db" && p.value == "10.0.0.128/25"));
        assert_eq!(r.versions.document(), 1);
        let after = s.current().unwrap();
        assert!(Arc::ptr_eq(&before, &after), "the config in force is untouched");
        assert_eq!(published(&rec), n, "nothing was published");
        let st = s.status();
        assert_eq!(st.applies_refused, 1);
        assert_eq!(st.event, StatusEvent::Refused);
        assert_eq!(st.last_refused.as_ref().unwrap().version, 2);
        // A broken kind apply is judged against the whole merged document.
        let pus =
            vec![ProcessingUnit { name: "x".into(), tags: vec![], addresses: vec!["10.0.0.1".into()], identity: 200 }];
        let r = s.apply(5, Content::ProcessingUnits(pus), false).unwrap_err();
        assert!(r.problems.iter().any(|p| p.message.contains("200")), "{:?}", r.problems);
        assert!(Arc::ptr_eq(&before, &s.current().unwrap()));
    }

    #[test]
    fn stale_version_is_refused() {
        let (s, rec) = store(None, BeforeConfig::FailOpen);
        let r = s.apply(0, Content::Document(good()), false).unwrap_err();
        assert!(r.problems[0].message.contains("stale version"), "{:?}", r.problems);
        s.apply(5, Content::Document(good()), false).unwrap();
        for v in [5, 4] {
            let r = s.apply(v, Content::Rulesets(good().rulesets), false).unwrap_err();
            assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
            assert_eq!(r.problems[0].resource, "request");
            assert_eq!(r.problems[0].field, "version");
            assert_eq!(r.problems[0].value, v.to_string());
            assert!(r.problems[0].message.contains("stale version"));
        }
        // A whole document must be newer than every kind.
        s.apply(9, Content::Rulesets(good().rulesets), false).unwrap();
        let r = s.apply(7, Content::Document(good()), false).unwrap_err();
        assert_eq!(r.problems.len(), 1);
        assert_eq!(r.problems[0].name, "document");
        assert!(r.problems[0].message.contains("not greater than version 9"), "{}", r.problems[0].message);
        assert_eq!(published(&rec), 3);
        assert_eq!(s.versions().document(), 9);
    }

    #[test]
    fn dry_run_changes_nothing() {
        let (s, rec) = store(None, BeforeConfig::FailOpen);
        let a = s.apply(1, Content::Document(good()), true).unwrap();
        assert!(a.dry_run);
        assert!(s.current().is_none());
        assert_eq!(published(&rec), 1);
        assert_eq!(s.status().applies_accepted, 0);
    }

    #[test]
    fn before_config_policies() {
        use dataplane::policy::{Classification, Side};
        let (local, remote) = ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        // Fail closed: no PU at all, so the engine judges nothing as ours and drops it.
        let (s, rec) = store(None, BeforeConfig::FailClosed);
        assert_eq!(s.status().state, EnforcementState::NoConfigFailClosed);
        let snap = rec.published.lock().unwrap()[0].clone();
        assert_eq!(snap.classify(Side::Inside, local, remote), Classification::NotLocal);
        assert_eq!(snap.classify(Side::Outside, remote, local), Classification::NotLocal);
        assert_eq!(s.status().generation, snap.generation());
        // Fail open: every address is an ignored PU, forwarded untouched.
        let (s, rec) = store(None, BeforeConfig::FailOpen);
        assert_eq!(s.status().state, EnforcementState::NoConfigFailOpen);
        let snap = rec.published.lock().unwrap()[0].clone();
        assert_eq!(snap.classify(Side::Inside, local, remote), Classification::Ignored);
        assert_eq!(snap.classify(Side::Outside, remote, local), Classification::Ignored);
        // The first apply replaces it and merges into an empty document, not into it.
        s.apply_with(1, Content::Rulesets(vec![]), EMPTY_OK).unwrap();
        assert!(s.current().unwrap().document.processing_units.is_empty());
    }

    #[test]
    fn persistence_round_trip_and_torn_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _) = store(Some(dir.path()), BeforeConfig::FailClosed);
            assert!(s.current().is_none());
            s.apply(2, Content::Document(good()), false).unwrap();
            s.apply_with(3, Content::Rulesets(vec![]), EMPTY_OK).unwrap();
            // A refused apply does not touch the file.
            let mut bad = good();
            bad.rulesets[0].subject = "((".into();
            let on_disk = fs::read(dir.path().join(STATE_FILE)).unwrap();
            s.apply(4, Content::Document(bad), false).unwrap_err();
            // (its temp copy, written while it compiled, is removed)
            assert!(!dir.path().join(STATE_TMP).exists());
            s.apply(5, Content::Document(good()), true).unwrap();
            assert!(!dir.path().join(STATE_TMP).exists(), "a dry run writes nothing");
            assert_eq!(fs::read(dir.path().join(STATE_FILE)).unwrap(), on_disk);
        }
        // A crash between write and rename leaves a torn temp file: ignored.
        fs::write(dir.path().join(STATE_TMP), b"{\"format\": 1, \"vers").unwrap();
        let (s, rec) = store(Some(dir.path()), BeforeConfig::FailClosed);
        let cur = s.current().unwrap();
        assert_eq!(cur.versions.document(), 3);
        assert_eq!(cur.versions.processing_units, 2);
        assert!(cur.document.rulesets.is_empty());
        assert_eq!(*cur.document.processing_units, good().processing_units);
        assert!(matches!(cur.source, Source::Restored(_)));
        assert!(!dir.path().join(STATE_TMP).exists());
        assert_eq!(published(&rec), 1, "only the restored policy is published at open");
        assert_eq!(rec.published.lock().unwrap()[0].pus().len(), 2);
        // (version 3 removed every rule)
        assert_eq!(s.status().state, EnforcementState::EnforcingDropAll);
        assert_eq!(s.status().drops_all, Some("no allow rules"));
        // Versions survive: an older one is still stale.
        assert!(s.apply(3, Content::Rulesets(vec![]), false).is_err());
    }

    fn opts(allow_empty: bool, replace: bool) -> ApplyOptions {
        ApplyOptions { dry_run: false, allow_empty, replace }
    }

    #[test]
    fn empty_and_cut_short_documents_are_refused_unless_allowed() {
        let (s, rec) = store(None, BeforeConfig::FailClosed);
        s.apply(1, Content::Document(good()), false).unwrap();
        assert_eq!(s.status().state, EnforcementState::Enforcing);
        let before = s.current().unwrap();
        for (v, text) in [(2, ""), (3, "revision: ce\n"), (4, "# nothing but a comment\n")] {
            let doc = PolicyDocument::from_yaml(text).unwrap();
            let r = s.apply(v, Content::Document(doc.clone()), false).unwrap_err();
            let all: Vec<&str> = r.problems.iter().map(|p| p.message.as_str()).collect();
            let find = |kind: &str, field: &str| {
                r.problems
                    .iter()
                    .find(|p| p.resource == "request" && p.name == kind && p.field == field)
                    .unwrap_or_else(|| panic!("{text:?}: no {kind}/{field} problem in {all:#?}"))
                    .message
                    .clone()
            };
            let m = find("processing_units", "allow_empty");
            assert!(
                m.contains("no processing units") && m.contains("all 2 processing units in force (web, db)"),
                "{m}"
            );
            assert!(m.contains("--allow-empty"), "{m}");
            let m = find("rulesets", "allow_empty");
            assert!(m.contains("no rules") && m.contains("all 1 rulesets in force (db)"), "{m}");
            let m = find("identities", "replace");
            assert!(m.contains("the document has no identities"), "{m}");
            assert!(m.contains("all 1 identities in force (200)") && m.contains("all 1 peers in force (gw-b)"), "{m}");
            assert!(m.contains("--replace"), "{m}");
            assert_eq!(r.problems.len(), 3, "{all:#?}");
            assert!(Arc::ptr_eq(&before, &s.current().unwrap()), "nothing changed");
            // replace alone does not allow an empty result
            let r = s.apply_with(v, Content::Document(doc), opts(false, true)).unwrap_err();
            assert_eq!(r.problems.iter().filter(|p| p.field == "allow_empty").count(), 2, "{:?}", r.problems);
            assert_eq!(r.problems.len(), 2);
        }
        assert_eq!(published(&rec), 2);
        // Said explicitly, the empty document is taken, and status says what it does.
        s.apply_with(5, Content::Document(PolicyDocument::default()), opts(true, false)).unwrap();
        let st = s.status();
        assert_eq!(st.state, EnforcementState::EnforcingDropAll);
        assert_eq!(st.drops_all, Some("no processing units"));
        assert_eq!(st.state.name(), "enforcing_drop_all");
        // From nothing, an empty document is refused too (it would fail open → drop all, or
        // hide that nothing is configured).
        let (s, _) = store(None, BeforeConfig::FailOpen);
        let r = s.apply(1, Content::Document(PolicyDocument::default()), false).unwrap_err();
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        // A policy with PUs but no allow rule is in force only when said so, and named.
        let mut only_reject = good();
        only_reject.rulesets[0].incoming[0].action = dataplane::policy::model::Action::Reject;
        s.apply(2, Content::Document(only_reject), false).unwrap();
        assert_eq!(s.status().state, EnforcementState::EnforcingDropAll);
        assert_eq!(s.status().drops_all, Some("no allow rules"));
    }

    #[test]
    fn removing_most_of_a_kind_needs_replace() {
        let (s, _) = store(None, BeforeConfig::FailClosed);
        s.apply(1, Content::Document(good()), false).unwrap();
        // Both PUs replaced by other names: all in force removed.
        let pus = |names: &[&str]| -> Vec<ProcessingUnit> {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| ProcessingUnit {
                    name: (*n).into(),
                    tags: vec!["role=db".into()],
                    addresses: vec![format!("10.9.{i}.0/24")],
                    identity: 300 + i as u32,
                })
                .collect()
        };
        let r = s.apply(2, Content::ProcessingUnits(pus(&["x", "y"])), false).unwrap_err();
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        let p = &r.problems[0];
        assert_eq!(
            (p.resource.as_str(), p.name.as_str(), p.field.as_str()),
            ("request", "processing_units", "replace")
        );
        assert_eq!(p.value, "2 of 2 processing units");
        assert!(p.message.contains("would remove all 2 processing units in force (web, db)"), "{}", p.message);
        assert!(!p.message.contains("the document has no"), "{}", p.message);
        // Half is not most: web kept, db renamed.
        s.apply(3, Content::ProcessingUnits([pus(&["db2"]), good().processing_units[..1].to_vec()].concat()), false)
            .unwrap();
        // With replace, all may go.
        s.apply_with(4, Content::ProcessingUnits(pus(&["x", "y"])), opts(false, true)).unwrap();
        assert_eq!(s.current().unwrap().document.processing_units.len(), 2);
        // A whole document that lacks a kind in force: refused, the kind named; kept with replace.
        s.apply_with(5, Content::Document(good()), opts(false, true)).unwrap();
        let mut no_ids = good();
        no_ids.identities.clear();
        no_ids.peers.clear();
        let r = s.apply(6, Content::Document(no_ids.clone()), false).unwrap_err();
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].message.starts_with("the document has no identities (absent or empty)"));
        s.apply_with(6, Content::Document(no_ids), opts(false, true)).unwrap();
        assert!(s.current().unwrap().document.identities.is_empty());
        // A non-default profile dropped by a whole document, and `local` dropped.
        let mut with_profile = good();
        with_profile.enforcer_profile.excluded_networks = vec!["10.255.0.1".into()];
        s.apply_with(7, Content::Document(with_profile), opts(false, true)).unwrap();
        let r = s.apply(8, Content::Document(good()), false).unwrap_err();
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems.iter().any(|p| p.field == "replace" && p.value == "enforcer_profile"), "{:?}", r.problems);
        // A dry run is judged the same way.
        let r = s
            .apply_with(
                8,
                Content::ProcessingUnits(pus(&["p", "q"])),
                ApplyOptions { dry_run: true, ..opts(false, false) },
            )
            .unwrap_err();
        assert_eq!(r.problems[0].field, "replace");
    }

    /// docs/examples/policy.yaml cut short at every line, and in the middle
    /// of lines: a cut before its last kind is always refused.
    #[test]
    fn the_example_policy_cut_short_is_refused() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/policy.yaml")).unwrap();
        let full = PolicyDocument::from_yaml(&text).unwrap();
        let (s, _) = store(None, BeforeConfig::FailClosed);
        s.apply(1, Content::Document(full.clone()), false).unwrap();
        let last_kind = text.find("\nenforcer_profile:").unwrap();
        let mut cuts: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
        // mid-line: inside a rule's ports, a PU's name, a key, a CIDR
        for needle in ["ports: [443, \"84", "name: db-", "public_key: umQsqC", "cidrs: [172.16"] {
            cuts.push(text.find(needle).unwrap() + needle.len());
        }
        let (mut refused, mut version) = (0, 2);
        for at in cuts.into_iter().filter(|&at| at <= last_kind) {
            let cut = &text[..at];
            let Ok(doc) = PolicyDocument::from_yaml(cut) else {
                refused += 1;
                continue;
            };
            assert_ne!(doc, full);
            let r = s.apply(version, Content::Document(doc), false);
            assert!(r.is_err(), "the example cut at byte {at} was accepted:\n...{}", &cut[at.saturating_sub(80)..]);
            let problems = r.unwrap_err().problems;
            assert!(problems.iter().any(|p| p.resource == "request"), "{problems:?}");
            version += 1;
            refused += 1;
        }
        assert!(refused > 100, "{refused}");
        assert_eq!(s.versions().document(), 1);
        assert_eq!(*s.current().unwrap().document.rulesets, full.rulesets);
    }

    #[test]
    fn problems_are_bounded() {
        let (s, _) = store(None, BeforeConfig::FailClosed);
        let huge = "x".repeat(5 << 20);
        let r = s.refuse_unparsed(
            1,
            vec![ConfigProblem::new(
                "document",
                &huge,
                "subject",
                &huge,
                format!("selector {huge:?} does not parse: {huge}"),
            )],
            false,
        );
        let p = &r.problems[0];
        assert_eq!(p.value, format!("{}… ({} bytes)", "x".repeat(VALUE_MAX), 5 << 20));
        assert_eq!(p.name, p.value);
        assert!(p.message.len() <= MESSAGE_MAX + 32, "{}", p.message.len());
        assert!(p.message.starts_with(&format!("selector \"{}… ({} bytes)\"", "x".repeat(VALUE_MAX), 5 << 20)));
        // A refusal lists at most PROBLEMS_MAX, last_refused KEPT_MAX, then "and K more".
        let many: Vec<ConfigProblem> = (0..1000)
            .map(|i| ConfigProblem::new("rulesets", &format!("r{i}"), "subject", "((", format!("bad {i}")))
            .collect();
        let r = s.refuse_unparsed(2, many, false);
        assert_eq!(r.problems.len(), PROBLEMS_MAX + 1);
        assert_eq!(r.problems[PROBLEMS_MAX].message, "and 900 more problems (fix the ones above first)");
        let kept = s.status().last_refused.clone().unwrap().problems;
        assert_eq!(kept.len(), KEPT_MAX + 1);
        assert_eq!(kept[KEPT_MAX].message, "and 980 more problems (fix the ones above first)");
        // multi-byte text is cut on a character boundary
        assert_eq!(cut("ééé", 3), "é… (6 bytes)");
    }

    #[test]
    fn corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), b"not json").unwrap();
        let e = ConfigStore::open(
            StoreOptions { state_dir: Some(dir.path().into()), before_config: BeforeConfig::FailClosed },
            Box::new(Discard),
        )
        .err()
        .unwrap();
        assert!(matches!(e, StoreError::Corrupt { .. }));
        assert!(e.to_string().contains("policy.json"), "{e}");
    }

    #[test]
    fn unwritable_state_dir_refuses_and_keeps_old() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let s = ConfigStore::open(
            StoreOptions { state_dir: Some(dir.path().into()), before_config: BeforeConfig::FailOpen },
            Box::new(SnapshotPublisher(Arc::new(move |_: Arc<PolicySnapshot>| {
                c2.fetch_add(1, Ordering::SeqCst);
            }))),
        )
        .unwrap();
        s.apply(1, Content::Document(good()), false).unwrap();
        // Make the temp file's path a directory: the write fails.
        fs::create_dir(dir.path().join(STATE_TMP)).unwrap();
        let r = s.apply_with(2, Content::Rulesets(vec![]), EMPTY_OK).unwrap_err();
        assert_eq!(r.problems[0].resource, "state");
        assert_eq!(s.versions().document(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the before-config policy and version 1 only");
    }

    #[test]
    fn check_hook_can_refuse() {
        /// Accepts only the empty document (the before-config one).
        struct No;
        impl Enforcer for No {
            fn prepare(&self, s: PolicySnapshot) -> Result<Commit, Vec<ConfigProblem>> {
                if s.pus().is_empty() {
                    return Ok(Box::new(|| {}));
                }
                Err(vec![ConfigProblem::new("local", "", "private_key_file", "/nope", "cannot read /nope".into())])
            }
        }
        let s =
            ConfigStore::open(StoreOptions { state_dir: None, before_config: BeforeConfig::FailClosed }, Box::new(No))
                .unwrap();
        let r = s.apply(1, Content::Document(good()), false).unwrap_err();
        assert_eq!(r.problems[0].field, "private_key_file");
        assert!(s.current().is_none());
    }
}
