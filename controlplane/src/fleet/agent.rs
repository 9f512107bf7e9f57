//! The fleet agent inside gatewayd. On its own thread (a small tokio
//! runtime), never in the workers' way: the workers keep enforcing whatever
//! the config store last published, whether etcd answers or not.
//!
//! A session: connect; make sure this gateway has a key; register under a
//! lease (kept alive); publish its PUs (new ones get fleet-wide identities);
//! list the prefix at revision R; build this gateway's document and apply it
//! through the store (ACK, or NACK with every problem and the last good kept);
//! write its status; watch from R+1, gathering a burst of events into one
//! apply. A compacted watch re-lists. Any etcd failure ends the session: the
//! agent says so (status, counters) and starts a new one with backoff.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dataplane::policy::model::PolicyDocument;
use dataplane::problem::{bounded, cut, ConfigProblem};
use ed25519_dalek::{SigningKey, VerifyingKey};
use etcd_client::{Client, EventType, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::sync::watch;

use super::build::{build, Built, Me};
use super::config::FleetConfig;
use super::etcd::{describe, list, take_numbers, Connection, EtcdResult, MESSAGE_MAX};
use super::keys::KeyStore;
use super::layout::{KeyKind, Layout};
use super::model::{GatewayStatus, PuFile, PuRecord, Registration};
use super::sign::{self, seal};
use super::view::{FleetView, Raw};
use super::FleetReport;
use crate::store::{ApplyOptions, ConfigStore, Content, Parts};

/// Identity numbers the fleet hands out start here.
pub const FIRST_IDENTITY: u64 = 100_000;
/// etcd's default limit on operations in one transaction.
const TXN_OPS: usize = 100;
/// How often the PU file is checked for changes.
const PU_FILE_POLL: Duration = Duration::from_millis(250);

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The gateway's fleet signing key file under the state directory.
pub fn signing_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("fleet").join("signing.key")
}

/// The public half of this gateway's signing key (created if absent), as
/// the operator enrolls it (`gatewayd --fleet-key`).
pub fn signing_public(state_dir: &Path) -> Result<String, String> {
    let dir = state_dir.join("fleet");
    KeyStore::open(&dir, String::new())?; // creates the directory, mode 0700
    let k = sign::signing_key_at(&signing_key_path(state_dir))?;
    Ok(hex::encode(k.verifying_key().to_bytes()))
}

struct Ctx {
    cfg: FleetConfig,
    conn: Connection,
    layout: Layout,
    operator: VerifyingKey,
    signer: SigningKey,
    store: Arc<ConfigStore>,
    keys: KeyStore,
    report: Arc<Mutex<FleetReport>>,
    stop: watch::Receiver<bool>,
    /// What the last build refused, so that the same refusal is not recorded twice.
    last_refusal: Option<(u64, Vec<ConfigProblem>)>,
    /// The last status written.
    last_status: Option<GatewayStatus>,
    pu_file_stamp: Option<SystemTime>,
    /// The registration's lease in this session.
    lease: i64,
}

/// A running agent; stopping it (or dropping it) ends its thread.
pub struct FleetAgent {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    report: Arc<Mutex<FleetReport>>,
}

impl FleetAgent {
    /// Starts the agent for `cfg`, applying through `store`; keys live under
    /// `state_dir/fleet`.
    pub fn start(cfg: &FleetConfig, state_dir: &Path, store: Arc<ConfigStore>) -> Result<FleetAgent, String> {
        let layout = Layout::new(&cfg.prefix);
        let operator = sign::public_key(&cfg.operator_key).map_err(|e| format!("fleet.operator_key: {e}"))?;
        let dir = state_dir.join("fleet");
        let keys = KeyStore::open(&dir, layout.key_id_counter())?;
        let signer = sign::signing_key_at(&signing_key_path(state_dir))?;
        let report = Arc::new(Mutex::new(FleetReport {
            name: cfg.name.clone(),
            last_error: "connecting".into(),
            key_id: keys.current().map_or(0, |k| k.id),
            ..FleetReport::default()
        }));
        store.set_fleet_report(report.lock().unwrap_or_else(|e| e.into_inner()).clone());
        let (stop_tx, stop) = watch::channel(false);
        let conn = Connection {
            endpoints: cfg.endpoints.clone(),
            ca_file: cfg.ca_file.clone(),
            cert_file: cfg.cert_file.clone(),
            key_file: cfg.key_file.clone(),
            user: cfg.user.clone(),
            password_file: cfg.password_file.clone(),
        };
        let mut ctx = Ctx {
            cfg: cfg.clone(),
            conn,
            layout,
            operator,
            signer,
            store,
            keys,
            report: report.clone(),
            stop,
            last_refusal: None,
            last_status: None,
            pu_file_stamp: None,
            lease: 0,
        };
        let thread = std::thread::Builder::new()
            .name("fleet".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("gatewayd: fleet: cannot start its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(run(&mut ctx));
            })
            .map_err(|e| format!("cannot start the fleet thread: {e}"))?;
        Ok(FleetAgent { stop: stop_tx, thread: Some(thread), report })
    }

    pub fn report(&self) -> FleetReport {
        self.report.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FleetAgent {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Ctx {
    fn update(&self, f: impl FnOnce(&mut FleetReport)) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut r);
        self.store.set_fleet_report(r.clone());
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Sessions, with backoff between them, until stopped.
async fn run(ctx: &mut Ctx) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = Instant::now();
        let outcome = session(ctx).await;
        if ctx.stopping() {
            return;
        }
        let why = match outcome {
            Ok(()) => return,
            Err(e) => e,
        };
        let was_connected = ctx.report.lock().unwrap_or_else(|e| e.into_inner()).connected;
        if was_connected {
            eprintln!("gatewayd: fleet: lost etcd ({why}); enforcing the last good document, reconnecting");
        }
        ctx.update(|r| {
            if r.connected {
                r.disconnects += 1;
            }
            r.connected = false;
            r.last_error = cut(&why, 300);
        });
        // A session that ran a while resets the backoff.
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(200);
        }
        let mut stop = ctx.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// What ended a watch.
enum WatchEnd {
    Relist,
    Stopped,
}

async fn session(ctx: &mut Ctx) -> EtcdResult<()> {
    let mut client = ctx.conn.connect().await?;
    if ctx.keys.ensure(&mut client).await? {
        let id = ctx.keys.current().map_or(0, |k| k.id);
        println!("gatewayd: fleet: created this gateway's key (key id {id})");
    }
    retire_keys(ctx)?;
    let lease = client.lease_grant(ctx.cfg.lease_ttl_s as i64, None).await.map_err(|e| describe(&e))?.id();
    ctx.lease = lease;
    register(ctx, &mut client, lease).await?;
    let (keeper, acks) = client.lease_keep_alive(lease).await.map_err(|e| describe(&e))?;
    let mut lease_task = tokio::spawn(keep_lease(keeper, acks, Duration::from_secs(ctx.cfg.lease_ttl_s)));
    let result = async {
        sync_pus(ctx, &mut client, true).await?;
        let mut view = FleetView::new(ctx.layout.clone(), ctx.operator);
        if let Some(c) = ctx.store.current() {
            view.remember_peers(&c.document.peers);
        }
        loop {
            let rev = relist(ctx, &mut client, &mut view).await?;
            match watch_from(ctx, &mut client, &mut view, rev + 1, lease, &mut lease_task).await? {
                WatchEnd::Relist => ctx.update(|r| r.relists += 1),
                WatchEnd::Stopped => return Ok(()),
            }
        }
    }
    .await;
    // Whatever ended the session: this lease is not kept alive any more.
    lease_task.abort();
    if ctx.stopping() {
        // Leave at once: the others see this gateway gone now, not in a TTL.
        let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(lease)).await;
    }
    result
}

/// Lists the whole prefix, rebuilds the view and applies; returns the revision.
async fn relist(ctx: &mut Ctx, client: &mut Client, view: &mut FleetView) -> EtcdResult<i64> {
    let (kvs, rev) = list(client, &ctx.layout.all()).await?;
    let keys = kvs.iter().filter_map(|kv| {
        let key = std::str::from_utf8(kv.key()).ok()?.to_owned();
        Some((
            key,
            Raw { value: kv.value().to_vec(), create_revision: kv.create_revision(), mod_revision: kv.mod_revision() },
        ))
    });
    view.reset(keys, rev);
    ctx.update(|r| {
        r.connected = true;
        r.last_error.clear();
    });
    converge(ctx, client, view).await?;
    Ok(rev)
}

/// Keeps the lease alive (every TTL/3) on a task of its own, so that a long
/// build or compile cannot let it expire (a first list of 100k PUs verifies
/// 100k signatures); returns why it stopped.
async fn keep_lease(mut keeper: LeaseKeeper, mut acks: LeaseKeepAliveStream, ttl: Duration) -> String {
    let mut keepalive = tokio::time::interval(ttl / 3);
    let mut last_ack = Instant::now();
    loop {
        tokio::select! {
            _ = keepalive.tick() => {
                if let Err(e) = keeper.keep_alive().await {
                    return describe(&e);
                }
                if last_ack.elapsed() > ttl {
                    return "the lease was not renewed within its TTL".into();
                }
            }
            ack = acks.message() => match ack {
                Err(e) => return describe(&e),
                Ok(None) => return "etcd closed the lease keep-alive".into(),
                Ok(Some(a)) if a.ttl() <= 0 => return "the registration's lease expired".into(),
                Ok(Some(_)) => last_ack = Instant::now(),
            },
        }
    }
}

async fn watch_from(
    ctx: &mut Ctx,
    client: &mut Client,
    view: &mut FleetView,
    from: i64,
    lease: i64,
    lease_task: &mut tokio::task::JoinHandle<String>,
) -> EtcdResult<WatchEnd> {
    let mut stream = client
        .watch_client()
        .max_decoding_message_size(MESSAGE_MAX)
        .watch(ctx.layout.all(), Some(WatchOptions::new().with_prefix().with_start_revision(from)))
        .await
        .map_err(|e| describe(&e))?;
    let mut pu_poll = tokio::time::interval(PU_FILE_POLL);
    let coalesce = Duration::from_millis(ctx.cfg.coalesce_ms);
    let mut stop = ctx.stop.clone();
    let mut dirty = false;
    loop {
        let timer = next_timer(ctx, view);
        // With events pending, wait at most the coalescing window for more.
        let wait = if dirty { coalesce } else { timer.unwrap_or(Duration::from_secs(3600)) };
        tokio::select! {
            msg = stream.message() => {
                let msg = msg.map_err(|e| describe(&e))?.ok_or("etcd closed the watch")?;
                if msg.canceled() || msg.compact_revision() > 0 {
                    if msg.compact_revision() > 0 {
                        println!(
                            "gatewayd: fleet: history compacted past revision {} (at {}): listing again",
                            view.revision, msg.compact_revision()
                        );
                        return Ok(WatchEnd::Relist);
                    }
                    return Err(format!("etcd cancelled the watch: {}", cut(msg.cancel_reason(), 200)));
                }
                for ev in msg.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let Ok(key) = std::str::from_utf8(kv.key()) else { continue };
                    match ev.event_type() {
                        EventType::Put => view.put(key.to_owned(), Raw {
                            value: kv.value().to_vec(),
                            create_revision: kv.create_revision(),
                            mod_revision: kv.mod_revision(),
                        }),
                        EventType::Delete => view.delete(key, kv.mod_revision()),
                    }
                    // Our own status echoes back: nothing to rebuild for it.
                    if !matches!(ctx.layout.classify(key), KeyKind::Status { .. }) {
                        dirty = true;
                    }
                }
                if let Some(h) = msg.header() {
                    view.revision = view.revision.max(h.revision());
                }
            }
            _ = tokio::time::sleep(wait) => {
                if dirty {
                    dirty = false;
                    converge(ctx, client, view).await?;
                } else if timer.is_some() {
                    retire_keys(ctx)?;
                    register(ctx, client, lease).await?;
                    converge(ctx, client, view).await?;
                }
            }
            why = &mut *lease_task => {
                return Err(why.unwrap_or_else(|e| format!("the lease task failed: {e}")));
            }
            _ = pu_poll.tick() => {
                if sync_pus(ctx, client, false).await? {
                    dirty = true;
                }
            }
            _ = stop.changed() => return Ok(WatchEnd::Stopped),
        }
    }
}

/// How long until something time-driven changes: a vanished peer's grace
/// ends, a key retires.
fn next_timer(ctx: &Ctx, view: &FleetView) -> Option<Duration> {
    let grace = view.verified.document.as_ref().map_or(600, |d| d.settings.peer_grace_s);
    let at = [view.next_expiry(grace), ctx.keys.next_retirement()].into_iter().flatten().min()?;
    Some(Duration::from_secs(at.saturating_sub(unix_now())).max(Duration::from_millis(100)))
}

fn retire_keys(ctx: &mut Ctx) -> EtcdResult<()> {
    if ctx.keys.retire(unix_now())? {
        println!(
            "gatewayd: fleet: retired keys past their overlap; in use: {:?}",
            ctx.keys.published().iter().map(|k| k.id).collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// Puts the registration under the lease.
async fn register(ctx: &mut Ctx, client: &mut Client, lease: i64) -> EtcdResult<()> {
    let reg = Registration {
        name: ctx.cfg.name.clone(),
        tags: ctx.cfg.tags.clone(),
        keys: ctx.keys.published(),
        networks: ctx.cfg.networks.clone(),
        api: ctx.cfg.api_address.clone(),
        started_at: unix_now(),
    };
    let key = ctx.layout.registration(&ctx.cfg.name);
    let value = seal(&ctx.cfg.name, &ctx.signer, &key, &reg);
    client.put(key, value, Some(PutOptions::new().with_lease(lease))).await.map_err(|e| describe(&e))?;
    let id = ctx.keys.current().map_or(0, |k| k.id);
    ctx.update(|r| r.key_id = id);
    Ok(())
}

/// Reads the PU file; `None` when unchanged since the last read.
fn read_pu_file(ctx: &mut Ctx, force: bool) -> Result<Option<PuFile>, String> {
    let Some(path) = &ctx.cfg.processing_units else {
        return Ok(if force { Some(PuFile::default()) } else { None });
    };
    let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if !force && stamp == ctx.pu_file_stamp {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: PuFile = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    ctx.pu_file_stamp = stamp;
    Ok(Some(file))
}

/// Makes this gateway's PU keys in etcd match its PU file: new PUs get a
/// fleet-wide identity, changed ones keep theirs, removed ones are deleted.
/// True if anything was written.
async fn sync_pus(ctx: &mut Ctx, client: &mut Client, force: bool) -> EtcdResult<bool> {
    let file = match read_pu_file(ctx, force) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(false),
        Err(e) => {
            // A broken file keeps what is published; the operator reads why.
            eprintln!("gatewayd: fleet: processing units file refused, the published PUs stay: {e}");
            return Ok(false);
        }
    };
    let mut problems = Vec::new();
    let mut names = std::collections::HashSet::new();
    for pu in &file.processing_units {
        let problem = |m: String| ConfigProblem::new("processing_units", &pu.name, "name", &pu.name, m);
        if !super::model::valid_name(&pu.name) {
            problems
                .push(problem(format!("processing unit {:?}: a name is 1-64 of A-Z a-z 0-9 . _ -", cut(&pu.name, 64))));
        }
        if !names.insert(pu.name.as_str()) {
            problems.push(problem(format!("processing unit {:?} is listed twice", pu.name)));
        }
    }
    if !problems.is_empty() {
        let text: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        eprintln!("gatewayd: fleet: processing units file refused, the published PUs stay: {}", text.join("; "));
        return Ok(false);
    }
    let prefix = ctx.layout.pus(&ctx.cfg.name);
    let (kvs, _) = list(client, &prefix).await?;
    let mut published: std::collections::HashMap<String, PuRecord> = std::collections::HashMap::new();
    for kv in &kvs {
        let Ok(key) = std::str::from_utf8(kv.key()) else { continue };
        let Some(name) = key.strip_prefix(prefix.as_str()) else { continue };
        // Our own records: trust only what our key signed.
        let own = ctx.signer.verifying_key();
        if let Ok(rec) = sign::open::<PuRecord>(kv.value(), key, &ctx.cfg.name, Some(&own)) {
            published.insert(name.to_owned(), rec);
        }
    }
    let new: Vec<&super::model::LocalPu> =
        file.processing_units.iter().filter(|p| !published.contains_key(&p.name)).collect();
    let mut next = if new.is_empty() {
        0
    } else {
        take_numbers(client, &ctx.layout.identity_counter(), FIRST_IDENTITY, new.len() as u64, u32::MAX as u64).await?
    };
    let mut ops = Vec::new();
    for pu in &file.processing_units {
        let identity = match published.get(&pu.name) {
            Some(rec) if rec.tags == pu.tags && rec.addresses == pu.addresses => continue,
            Some(rec) => rec.identity,
            None => {
                next += 1;
                (next - 1) as u32
            }
        };
        let rec = PuRecord { name: pu.name.clone(), tags: pu.tags.clone(), addresses: pu.addresses.clone(), identity };
        let key = ctx.layout.pu(&ctx.cfg.name, &pu.name);
        let value = seal(&ctx.cfg.name, &ctx.signer, &key, &rec);
        ops.push(TxnOp::put(key, value, None));
    }
    for name in published.keys() {
        if !names.contains(name.as_str()) {
            ops.push(TxnOp::delete(ctx.layout.pu(&ctx.cfg.name, name), None));
        }
    }
    let changed = !ops.is_empty();
    let count = ops.len();
    while !ops.is_empty() {
        let chunk: Vec<TxnOp> = ops.drain(..ops.len().min(TXN_OPS)).collect();
        client.txn(Txn::new().and_then(chunk)).await.map_err(|e| describe(&e))?;
    }
    if changed && !force {
        println!("gatewayd: fleet: processing units file changed: {count} PU record(s) written or removed");
    }
    Ok(changed)
}

/// Verifies what changed, acts on a rotation request, builds this gateway's
/// document and applies it if it differs from the one in force; then reports.
async fn converge(ctx: &mut Ctx, client: &mut Client, view: &mut FleetView) -> EtcdResult<()> {
    let now = unix_now();
    off_runtime(ctx, view, move |v| v.refresh(now)).await?;
    let grace = view.verified.document.as_ref().map_or(600, |d| d.settings.peer_grace_s);
    view.expire(now, grace);
    if let Some(req) = view.verified.rotates.get(&ctx.cfg.name).cloned() {
        if req.requested_at > ctx.keys.rotated_for() {
            let (lead, overlap) = view
                .verified
                .document
                .as_ref()
                .map_or((30, 600), |d| (d.settings.key_lead_s, d.settings.key_overlap_s));
            let id = ctx.keys.rotate(client, req.requested_at, now, lead, overlap).await?;
            println!("gatewayd: fleet: rotating to key id {id}: used from {lead}s from now, the old key valid {overlap}s after");
            let lease = ctx.lease;
            register(ctx, client, lease).await?;
        }
    }
    let Some(local) = ctx.keys.local(&ctx.cfg.name) else { return Ok(()) };
    let me = Me { name: ctx.cfg.name.clone(), tags: ctx.cfg.tags.clone(), local };
    let refused_examples: Vec<(String, String)> =
        view.verified.refused.iter().take(5).map(|(k, v)| (k.clone(), v.clone())).collect();
    let unverified = view.refused_total;
    let seen = view.verified.document.as_ref().map_or(0, |d| d.version);
    let revision = view.revision;
    ctx.update(|r| {
        r.unverified_objects = unverified;
        r.unverified_examples = refused_examples;
        r.seen_fleet_version = seen;
        r.etcd_revision = revision;
    });
    let store = ctx.store.clone();
    let in_force = store.current();
    let (built, same) = off_runtime(ctx, view, move |v| {
        let built = build(v, &me, now);
        let same = match (&built, &in_force) {
            (Some(Built { document: Ok(doc), .. }), Some(c)) => same_document(&c.document, doc),
            _ => false,
        };
        (built, same)
    })
    .await?;
    let Some(built) = built else {
        return Ok(()); // no fleet document yet: the last good one stays
    };
    let conflicts = built.conflicts.clone();
    let profile = built.profile.clone();
    ctx.update(|r| {
        r.conflicts = conflicts;
        r.profile = profile.clone();
    });
    let outcome = match built.document {
        Ok(doc) => {
            if same {
                None
            } else {
                let version = store.versions().document() + 1;
                let opts = ApplyOptions { replace: true, allow_empty: true, dry_run: false };
                let res = tokio::task::spawn_blocking(move || store.apply_with(version, Content::Document(doc), opts))
                    .await
                    .map_err(|e| format!("the apply task failed: {e}"))?;
                Some(res.map(|_| ()).map_err(|r| r.problems))
            }
        }
        Err(problems) => {
            let key = (built.fleet_version, problems.clone());
            if ctx.last_refusal.as_ref() == Some(&key) {
                None
            } else {
                ctx.last_refusal = Some(key);
                let version = store.versions().document() + 1;
                Some(Err(store.refuse_unparsed(version, problems, false).problems))
            }
        }
    };
    let fv = built.fleet_version;
    match &outcome {
        Some(Ok(())) => {
            ctx.last_refusal = None;
            println!("gatewayd: fleet: applied fleet version {fv} (etcd revision {revision}, profile {profile})");
            ctx.update(|r| {
                r.applies += 1;
                r.applied_fleet_version = fv;
            });
        }
        Some(Err(problems)) => {
            eprintln!(
                "gatewayd: fleet: fleet version {fv} refused ({} problem(s)); the document in force stays:",
                problems.len()
            );
            for p in problems.iter().take(10) {
                eprintln!("  {}", p.message);
            }
            ctx.update(|r| r.refusals += 1);
        }
        None => {
            if ctx.last_refusal.is_none() {
                ctx.update(|r| r.applied_fleet_version = fv);
            }
        }
    }
    write_status(ctx, client, fv, revision, &profile).await
}

/// Runs `f` on the view on a blocking thread (verifying and building for
/// 100k PUs take seconds): the runtime meanwhile keeps the lease and the
/// connection alive.
async fn off_runtime<T: Send + 'static>(
    ctx: &Ctx,
    view: &mut FleetView,
    f: impl FnOnce(&mut FleetView) -> T + Send + 'static,
) -> EtcdResult<T> {
    let mut v = std::mem::replace(view, FleetView::new(ctx.layout.clone(), ctx.operator));
    let (v, out) = tokio::task::spawn_blocking(move || {
        let out = f(&mut v);
        (v, out)
    })
    .await
    .map_err(|e| format!("the fleet build task failed: {e}"))?;
    *view = v;
    Ok(out)
}

/// Whether `doc` is the document in force, compared in place: copying the
/// one in force to compare (100k identities) cost about as much as the compare.
pub fn same_document(in_force: &Parts, doc: &PolicyDocument) -> bool {
    // Destructured: a field added to the document must be compared here too.
    let PolicyDocument {
        revision,
        local,
        processing_units,
        identities,
        peers,
        rulesets,
        external_networks,
        enforcer_profile,
    } = doc;
    in_force.revision == *revision
        && in_force.local == *local
        && *in_force.processing_units == *processing_units
        && *in_force.identities == *identities
        && *in_force.peers == *peers
        && *in_force.rulesets == *rulesets
        && *in_force.external_networks == *external_networks
        && *in_force.enforcer_profile == *enforcer_profile
}

/// Writes this gateway's status when it says something new.
async fn write_status(
    ctx: &mut Ctx,
    client: &mut Client,
    fleet_version: u64,
    revision: i64,
    profile: &str,
) -> EtcdResult<()> {
    let st = ctx.store.status();
    let r = ctx.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (result, problems) = match &ctx.last_refusal {
        Some((_, p)) => ("refused", p.clone()),
        None => ("applied", Vec::new()),
    };
    let status = GatewayStatus {
        name: ctx.cfg.name.clone(),
        fleet_version,
        etcd_revision: revision,
        result: result.into(),
        applied_fleet_version: r.applied_fleet_version,
        document_version: st.versions.document(),
        profile: profile.to_owned(),
        problems: bounded(problems, 20),
        unverified_objects: r.unverified_objects,
        at_unix_ms: 0,
    };
    // Only a change is worth a write (not the revision: every write bumps it).
    let comparable = |s: &GatewayStatus| GatewayStatus { etcd_revision: 0, at_unix_ms: 0, ..s.clone() };
    if ctx.last_status.as_ref().map(comparable) == Some(comparable(&status)) {
        return Ok(());
    }
    let mut stamped = status.clone();
    stamped.at_unix_ms = unix_ms();
    let key = ctx.layout.status(&ctx.cfg.name);
    let value = seal(&ctx.cfg.name, &ctx.signer, &key, &stamped);
    client.put(key, value, None).await.map_err(|e| describe(&e))?;
    ctx.last_status = Some(status);
    Ok(())
}
