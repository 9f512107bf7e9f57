//! What `gwctl fleet` does: validate a fleet document with the gateways' own
//! compiler, write it signed in one transaction that bumps the fleet
//! version, and read back what every gateway applied.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dataplane::policy::model::PolicyDocument;
use dataplane::problem::{cut, ConfigProblem};
use ed25519_dalek::{SigningKey, VerifyingKey};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use serde::Serialize;

use super::etcd::{describe, Connection};
use super::layout::{KeyKind, Layout};
use super::model::{valid_name, FleetDocument, GatewayStatus, Registration, RotateRequest};
use super::sign::{self, seal, OPERATOR};

fn problem(resource: &str, name: &str, field: &str, value: &str, message: String) -> ConfigProblem {
    ConfigProblem::new(resource, name, field, value, message).bounded()
}

/// Every problem of `doc` on its own (no etcd needed).
pub fn validate(doc: &FleetDocument) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, g) in doc.gateways.iter().enumerate() {
        let field = format!("gateways[{i}]");
        if !valid_name(&g.name) || g.name == OPERATOR {
            out.push(problem(
                "gateways",
                &g.name,
                &field,
                &g.name,
                format!("gateways[{i}].name {:?}: 1-64 of A-Z a-z 0-9 . _ - (and not \"operator\")", cut(&g.name, 64)),
            ));
        }
        if !names.insert(g.name.as_str()) {
            out.push(problem("gateways", &g.name, &field, &g.name, format!("gateway {:?} is enrolled twice", g.name)));
        }
        if let Err(e) = sign::public_key(&g.signing_key) {
            out.push(problem(
                "gateways",
                &g.name,
                "signing_key",
                "",
                format!("gateway {:?}: signing_key: {e}", g.name),
            ));
        }
    }
    // Rulesets and external networks: the compiler every gateway runs.
    let mut probe = PolicyDocument {
        rulesets: doc.rulesets.clone(),
        external_networks: doc.external_networks.clone(),
        ..PolicyDocument::default()
    };
    if let Err(errors) = dataplane::policy::compile(&probe) {
        out.extend(errors.0.iter().map(|e| ConfigProblem::from(e).bounded()));
    }
    let mut profiles = HashSet::new();
    for p in &doc.profiles {
        if !profiles.insert(p.name.as_str()) {
            out.push(problem("profiles", &p.name, "name", &p.name, format!("profile {:?} is defined twice", p.name)));
        }
        probe = PolicyDocument { enforcer_profile: p.profile(), ..PolicyDocument::default() };
        if let Err(errors) = dataplane::policy::compile(&probe) {
            for e in &errors.0 {
                let mut pr = ConfigProblem::from(e);
                pr.resource = "profiles".into();
                pr.name = p.name.clone();
                pr.message = format!("profile {:?}: {}", p.name, pr.message);
                out.push(pr.bounded());
            }
        }
    }
    let mut mappings = HashSet::new();
    for m in &doc.profile_mappings {
        if !mappings.insert(m.name.as_str()) {
            out.push(problem(
                "profile_mappings",
                &m.name,
                "name",
                &m.name,
                format!("profile mapping {:?} is defined twice", m.name),
            ));
        }
        if let Err(e) = dataplane::policy::Selector::parse(&m.selector) {
            out.push(problem(
                "profile_mappings",
                &m.name,
                "selector",
                &m.selector,
                format!("profile mapping {:?}: {e}", m.name),
            ));
        }
        if !profiles.contains(m.profile.as_str()) {
            out.push(problem(
                "profile_mappings",
                &m.name,
                "profile",
                &m.profile,
                format!("profile mapping {:?} names profile {:?}, which is not defined", m.name, m.profile),
            ));
        }
    }
    if let Some(d) = &doc.settings.default_profile {
        if !profiles.contains(d.as_str()) {
            out.push(problem(
                "settings",
                "",
                "default_profile",
                d,
                format!("settings.default_profile {d:?} is not defined in profiles"),
            ));
        }
    }
    if doc.settings.key_lead_s == 0 || doc.settings.key_overlap_s == 0 {
        out.push(problem(
            "settings",
            "",
            "key_lead_s",
            "0",
            "settings.key_lead_s and key_overlap_s must be at least 1 second: peers need time to learn a new key"
                .into(),
        ));
    }
    out
}

/// What the apply may do beyond the default (as for a gateway's own apply).
#[derive(Debug, Clone, Copy, Default)]
pub struct FleetApplyOptions {
    pub allow_empty: bool,
    pub replace: bool,
    pub dry_run: bool,
}

/// Refuses a document that would empty the fleet or remove most of it by accident.
pub fn guard(old: Option<&FleetDocument>, new: &FleetDocument, opts: FleetApplyOptions) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    if !opts.allow_empty && (new.gateways.is_empty() || new.rulesets.is_empty()) {
        let what = if new.gateways.is_empty() { "no gateway is enrolled" } else { "there is no ruleset" };
        out.push(problem(
            "document",
            "",
            "",
            "",
            format!("{what}: every gateway would drop everything it judges (say --allow-empty if that is the intent)"),
        ));
    }
    if let (Some(old), false) = (old, opts.replace || opts.allow_empty) {
        let kinds: [(&str, Vec<&str>, Vec<&str>); 4] = [
            (
                "gateways",
                old.gateways.iter().map(|g| g.name.as_str()).collect(),
                new.gateways.iter().map(|g| g.name.as_str()).collect(),
            ),
            (
                "rulesets",
                old.rulesets.iter().map(|r| r.name.as_str()).collect(),
                new.rulesets.iter().map(|r| r.name.as_str()).collect(),
            ),
            (
                "external_networks",
                old.external_networks.iter().map(|r| r.name.as_str()).collect(),
                new.external_networks.iter().map(|r| r.name.as_str()).collect(),
            ),
            (
                "profiles",
                old.profiles.iter().map(|r| r.name.as_str()).collect(),
                new.profiles.iter().map(|r| r.name.as_str()).collect(),
            ),
        ];
        for (kind, before, after) in kinds {
            let after: HashSet<&str> = after.into_iter().collect();
            let gone: Vec<&str> = before.iter().copied().filter(|n| !after.contains(n)).collect();
            if !before.is_empty() && gone.len() * 2 > before.len() {
                out.push(problem(
                    "document",
                    kind,
                    "",
                    &gone.len().to_string(),
                    format!(
                        "this removes {} of the {} {kind} in force ({}{}); say --replace if that is the intent",
                        gone.len(),
                        before.len(),
                        gone.iter().take(5).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", "),
                        if gone.len() > 5 { ", …" } else { "" }
                    ),
                ));
            }
        }
    }
    out
}

/// The fleet document in etcd: verified (or why not), with its modification revision.
pub async fn current_document(
    client: &mut Client,
    layout: &Layout,
    operator: &VerifyingKey,
) -> Result<Option<(Result<FleetDocument, String>, i64)>, String> {
    let key = layout.fleet_document();
    let resp = client.get(key.as_str(), None).await.map_err(|e| describe(&e))?;
    Ok(resp.kvs().first().map(|kv| {
        (
            sign::open::<FleetDocument>(kv.value(), &key, OPERATOR, Some(operator)).map_err(|e| e.to_string()),
            kv.mod_revision(),
        )
    }))
}

/// Validates, guards and writes `doc` as the next fleet version; returns it.
pub async fn apply(
    client: &mut Client,
    layout: &Layout,
    secret: &SigningKey,
    mut doc: FleetDocument,
    opts: FleetApplyOptions,
) -> Result<u64, Vec<ConfigProblem>> {
    let mut problems = validate(&doc);
    let fail = |m: String| vec![problem("request", "", "", "", m)];
    let cur = current_document(client, layout, &secret.verifying_key()).await.map_err(fail)?;
    let (old, guard_cmp) = match &cur {
        Some((Ok(d), rev)) => (Some(d), Compare::mod_revision(layout.fleet_document(), CompareOp::Equal, *rev)),
        Some((Err(why), rev)) => {
            if !opts.replace {
                problems.push(problem(
                    "document",
                    "",
                    "",
                    "",
                    format!("the fleet document in etcd does not verify ({why}); say --replace to overwrite it"),
                ));
            }
            (None, Compare::mod_revision(layout.fleet_document(), CompareOp::Equal, *rev))
        }
        None => (None, Compare::create_revision(layout.fleet_document(), CompareOp::Equal, 0)),
    };
    problems.extend(guard(old, &doc, opts));
    if !problems.is_empty() {
        return Err(problems);
    }
    // Above every version a gateway may have seen: gateways refuse an older
    // one as a rollback. With the document in etcd unverifiable (altered),
    // its claimed version and the gateways' reports count too.
    let mut floor = old.map_or(0, |d| d.version);
    if old.is_none() && cur.is_some() {
        let reported = status(client, layout, secret.verifying_key()).await.map_err(fail)?;
        floor = reported.gateways.iter().map(|g| g.applied_fleet_version).max().unwrap_or(0);
        let raw = client.get(layout.fleet_document(), None).await.map_err(|e| fail(describe(&e)))?;
        let claimed = raw
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<sign::Envelope>(kv.value()).ok())
            .and_then(|env| serde_json::from_str::<serde_json::Value>(&env.body).ok())
            .and_then(|b| b["version"].as_u64())
            .unwrap_or(0);
        floor = floor.max(claimed);
    }
    doc.version = floor + 1;
    if opts.dry_run {
        return Ok(doc.version);
    }
    let key = layout.fleet_document();
    let value = seal(OPERATOR, secret, &key, &doc);
    let txn = Txn::new().when([guard_cmp]).and_then([TxnOp::put(key, value, None)]);
    let resp = client.txn(txn).await.map_err(|e| fail(describe(&e)))?;
    if !resp.succeeded() {
        return Err(fail(
            "the fleet document changed in etcd while this apply ran; nothing was written (run it again)".into(),
        ));
    }
    Ok(doc.version)
}

/// One gateway as `gwctl fleet status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayRow {
    pub name: String,
    pub enrolled: bool,
    /// Its registration is present (its lease is alive).
    pub alive: bool,
    pub tags: Vec<String>,
    pub profile: String,
    pub applied_fleet_version: u64,
    /// The fleet version in etcd minus the one it applied.
    pub lag: u64,
    pub result: String,
    pub last_problem: String,
    pub key_ids: Vec<u32>,
    pub pus: usize,
    pub reported_at_unix_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetStatusReport {
    pub fleet_version: u64,
    pub etcd_revision: i64,
    pub gateways: Vec<GatewayRow>,
    /// Keys that did not verify, and why.
    pub unverified: BTreeMap<String, String>,
    /// The answering member's database size and active alarms (NOSPACE:
    /// etcd refuses writes until an operator compacts, defrags and disarms).
    pub etcd_db_bytes: i64,
    pub etcd_errors: Vec<String>,
}

/// Reads every gateway's registration and status.
pub async fn status(client: &mut Client, layout: &Layout, operator: VerifyingKey) -> Result<FleetStatusReport, String> {
    let (kvs, rev) = super::etcd::list(client, &layout.all()).await?;
    let mut view = super::view::FleetView::new(layout.clone(), operator);
    view.reset(
        kvs.iter().filter_map(|kv| {
            Some((
                std::str::from_utf8(kv.key()).ok()?.to_owned(),
                super::view::Raw {
                    value: kv.value().to_vec(),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                },
            ))
        }),
        rev,
    );
    view.refresh(super::agent::unix_now());
    let v = &view.verified;
    let fleet_version = v.document.as_ref().map_or(0, |d| d.version);
    let mut rows: BTreeMap<String, GatewayRow> = BTreeMap::new();
    for g in v.document.iter().flat_map(|d| d.gateways.iter()) {
        rows.insert(g.name.clone(), GatewayRow { name: g.name.clone(), enrolled: true, ..GatewayRow::default() });
    }
    // Registrations of gateways not enrolled do not verify: name them anyway.
    for key in view.verified.refused.keys() {
        if let KeyKind::Registration { gateway } = layout.classify(key) {
            rows.entry(gateway.to_owned())
                .or_insert_with(|| GatewayRow { name: gateway.to_owned(), ..GatewayRow::default() })
                .alive = true;
        }
    }
    for (name, (reg, _)) in &v.registrations {
        let r = rows.entry(name.clone()).or_default();
        r.name = name.clone();
        r.alive = true;
        fill_registration(r, reg);
    }
    for (name, st) in &v.statuses {
        let r = rows.entry(name.clone()).or_default();
        r.name = name.clone();
        fill_status(r, st, fleet_version);
    }
    for (name, pus) in &v.pus {
        rows.entry(name.clone()).or_default().pus = pus.len();
    }
    let (etcd_db_bytes, etcd_errors) = match client.status().await {
        Ok(s) => (s.db_size(), s.errors().to_vec()),
        Err(e) => (0, vec![format!("status: {}", describe(&e))]),
    };
    Ok(FleetStatusReport {
        fleet_version,
        etcd_revision: view.revision,
        gateways: rows.into_values().collect(),
        unverified: view.verified.refused.clone(),
        etcd_db_bytes,
        etcd_errors,
    })
}

fn fill_registration(r: &mut GatewayRow, reg: &Registration) {
    r.tags = reg.tags.clone();
    r.key_ids = reg.keys.iter().map(|k| k.id).collect();
}

fn fill_status(r: &mut GatewayRow, st: &GatewayStatus, fleet_version: u64) {
    r.profile = st.profile.clone();
    r.applied_fleet_version = st.applied_fleet_version;
    r.lag = fleet_version.saturating_sub(st.applied_fleet_version);
    r.result = st.result.clone();
    r.last_problem = st.problems.first().map(|p| p.message.clone()).unwrap_or_default();
    r.reported_at_unix_ms = st.at_unix_ms;
}

/// Waits until every live gateway applied `version`; on timeout, the laggards.
pub async fn wait(
    client: &mut Client,
    layout: &Layout,
    operator: VerifyingKey,
    version: u64,
    timeout: Duration,
) -> Result<FleetStatusReport, (FleetStatusReport, Vec<String>)> {
    let until = Instant::now() + timeout;
    loop {
        let report = match status(client, layout, operator).await {
            Ok(r) => r,
            Err(e) => {
                if Instant::now() >= until {
                    return Err((FleetStatusReport::default(), vec![format!("etcd: {e}")]));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let laggards: Vec<String> = report
            .gateways
            .iter()
            .filter(|g| g.alive && g.enrolled && (g.applied_fleet_version < version || g.result == "refused"))
            .map(|g| {
                if g.result == "refused" {
                    format!("{} (refused: {})", g.name, cut(&g.last_problem, 200))
                } else {
                    format!("{} (at fleet version {})", g.name, g.applied_fleet_version)
                }
            })
            .collect();
        let live = report.gateways.iter().filter(|g| g.alive && g.enrolled).count();
        if laggards.is_empty() && report.fleet_version >= version && live > 0 {
            return Ok(report);
        }
        if Instant::now() >= until {
            let mut l = laggards;
            if report.fleet_version < version {
                l.insert(0, format!("etcd holds fleet version {}, not {version}", report.fleet_version));
            }
            if live == 0 {
                l.push("no enrolled gateway is alive".into());
            }
            return Err((report, l));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks `gateway` to rotate its key.
pub async fn rotate_key(
    client: &mut Client,
    layout: &Layout,
    secret: &SigningKey,
    gateway: &str,
) -> Result<u64, String> {
    let now = super::agent::unix_now();
    let key = layout.rotate(gateway);
    let value = seal(OPERATOR, secret, &key, &RotateRequest { gateway: gateway.to_owned(), requested_at: now });
    client.put(key, value, None).await.map_err(|e| describe(&e))?;
    Ok(now)
}

/// Deletes the keys (PUs, status) of gateways whose registration has been
/// gone for `grace` or longer (judged by their last status report), or that
/// are no longer enrolled and not alive. Their identity numbers are retired,
/// never handed out again. Returns the gateways removed.
pub async fn gc(
    client: &mut Client,
    layout: &Layout,
    operator: VerifyingKey,
    grace: Duration,
    dry_run: bool,
) -> Result<Vec<String>, String> {
    let report = status(client, layout, operator).await?;
    let now_ms = super::agent::unix_now().saturating_mul(1000);
    let mut gone = Vec::new();
    for g in &report.gateways {
        if g.alive {
            continue;
        }
        let silent_for = Duration::from_millis(now_ms.saturating_sub(g.reported_at_unix_ms));
        if !g.enrolled || silent_for >= grace {
            gone.push(g.name.clone());
        }
    }
    if !dry_run {
        for name in &gone {
            // Only if it did not come back meanwhile.
            let txn = Txn::new()
                .when([Compare::create_revision(layout.registration(name), CompareOp::Equal, 0)])
                .and_then([TxnOp::delete(layout.gateway(name), Some(etcd_client::DeleteOptions::new().with_prefix()))]);
            client.txn(txn).await.map_err(|e| describe(&e))?;
        }
    }
    Ok(gone)
}

/// `gwctl fleet` and its options.
#[derive(clap::Args, Debug)]
pub struct FleetArgs {
    /// etcd endpoints, comma-separated.
    #[arg(long, env = "GWCTL_ETCD", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd: Vec<String>,
    #[arg(long, default_value = "/igw")]
    pub prefix: String,
    /// The CA of etcd's certificates (PEM).
    #[arg(long, env = "GWCTL_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// The operator's etcd client certificate (PEM; its CN is the etcd user).
    #[arg(long, env = "GWCTL_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    #[arg(long, env = "GWCTL_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
    #[arg(long)]
    pub etcd_user: Option<String>,
    #[arg(long)]
    pub etcd_password_file: Option<PathBuf>,
    /// The operator's Ed25519 signing key (64 hex digits in a file).
    #[arg(long, env = "GWCTL_FLEET_KEY")]
    pub signing_key: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: FleetCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum FleetCmd {
    /// Creates an operator signing key file (mode 0600) and prints its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Validates a fleet document and writes it as the next fleet version.
    Apply {
        #[arg(short, long)]
        file: PathBuf,
        /// Validate only; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        allow_empty: bool,
        #[arg(long)]
        replace: bool,
    },
    /// Prints the fleet document in force (YAML).
    Get,
    /// Every gateway: alive, tags, profile, applied fleet version, lag, last problem.
    Status {
        /// `json` for the whole report.
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
    /// Exits 0 once every live gateway applied fleet version N.
    Wait {
        #[arg(long)]
        version: u64,
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Asks a gateway to rotate its key (published ahead, old one kept for the overlap).
    RotateKey { gateway: String },
    /// Removes the PUs and status of gateways gone for at least --grace
    /// seconds (or no longer enrolled); their identity numbers are retired.
    Gc {
        #[arg(long, default_value_t = 600)]
        grace: u64,
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs `gwctl fleet …`; the error is (exit code, message).
pub async fn cli(a: FleetArgs) -> Result<(), (u8, String)> {
    let usage = |m: String| (2u8, m);
    if let FleetCmd::Keygen { out } = &a.cmd {
        let s = sign::create_secret_file(out).map_err(usage)?;
        println!("{}", hex::encode(SigningKey::from_bytes(&s).verifying_key().to_bytes()));
        return Ok(());
    }
    let secret = match &a.signing_key {
        Some(p) => sign::load_signing_key(p).map_err(usage)?,
        None => return Err(usage("the operator's --signing-key (or GWCTL_FLEET_KEY) is needed: it signs what is written and verifies what is read".into())),
    };
    let apply_doc = match &a.cmd {
        FleetCmd::Apply { file, .. } => {
            let text =
                std::fs::read_to_string(file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            Some(
                FleetDocument::from_yaml(&text)
                    .map_err(|e| (1, format!("{}: {}", file.display(), cut(&e.to_string(), 400))))?,
            )
        }
        _ => None,
    };
    let layout = Layout::new(&a.prefix);
    let conn = Connection {
        endpoints: a.etcd.clone(),
        ca_file: a.etcd_ca.clone(),
        cert_file: a.etcd_cert.clone(),
        key_file: a.etcd_key.clone(),
        user: a.etcd_user.clone(),
        password_file: a.etcd_password_file.clone(),
    };
    let mut client = conn.connect().await.map_err(|e| (3, e))?;
    let operator = secret.verifying_key();
    match a.cmd {
        FleetCmd::Keygen { .. } => Ok(()),
        FleetCmd::Apply { dry_run, allow_empty, replace, .. } => {
            let doc = apply_doc.unwrap_or_default();
            match apply(&mut client, &layout, &secret, doc, FleetApplyOptions { allow_empty, replace, dry_run }).await {
                Ok(v) if dry_run => {
                    println!("fleet document valid; it would be fleet version {v} (nothing written)");
                    Ok(())
                }
                Ok(v) => {
                    println!("fleet version {v} written");
                    Ok(())
                }
                Err(problems) => {
                    let mut m = format!("fleet document refused ({} problem(s)); nothing was written:", problems.len());
                    for p in &problems {
                        m.push_str(&format!("\n  {}", p.message));
                    }
                    Err((1, m))
                }
            }
        }
        FleetCmd::Get => match current_document(&mut client, &layout, &operator).await.map_err(|e| (3, e))? {
            None => Err((1, "no fleet document in etcd yet".into())),
            Some((Err(why), _)) => Err((1, format!("the fleet document in etcd does not verify: {why}"))),
            Some((Ok(d), _)) => {
                print!("{}", serde_yaml::to_string(&d).unwrap_or_default());
                Ok(())
            }
        },
        FleetCmd::Status { output } => {
            let r = status(&mut client, &layout, operator).await.map_err(|e| (3, e))?;
            print_status(&r, output == "json");
            Ok(())
        }
        FleetCmd::Wait { version, timeout } => {
            match wait(&mut client, &layout, operator, version, Duration::from_secs_f64(timeout.max(0.0))).await {
                Ok(r) => {
                    let live = r.gateways.iter().filter(|g| g.alive && g.enrolled).count();
                    println!("fleet version {version} applied by all {live} live gateway(s)");
                    Ok(())
                }
                Err((_, laggards)) => Err((
                    1,
                    format!(
                        "fleet version {version} not applied everywhere within {timeout}s: {}",
                        laggards.join("; ")
                    ),
                )),
            }
        }
        FleetCmd::Gc { grace, dry_run } => {
            let gone =
                gc(&mut client, &layout, operator, Duration::from_secs(grace), dry_run).await.map_err(|e| (3, e))?;
            let verb = if dry_run { "would remove" } else { "removed" };
            if gone.is_empty() {
                println!("nothing to collect: every gateway is alive or reported within {grace}s");
            } else {
                println!("{verb} the keys of {} gateway(s): {}", gone.len(), gone.join(", "));
            }
            Ok(())
        }
        FleetCmd::RotateKey { gateway } => {
            let at = rotate_key(&mut client, &layout, &secret, &gateway).await.map_err(|e| (3, e))?;
            println!("asked {gateway} to rotate its key (request {at}); `gwctl fleet status` shows its key ids");
            Ok(())
        }
    }
}

fn print_status(r: &FleetStatusReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    println!(
        "fleet version {} (etcd revision {}, database {:.1} MB{})",
        r.fleet_version,
        r.etcd_revision,
        r.etcd_db_bytes as f64 / 1e6,
        if r.etcd_errors.is_empty() { String::new() } else { format!("; etcd ALARMS: {}", r.etcd_errors.join(", ")) }
    );
    println!("GATEWAY          ALIVE  ENROLLED  PROFILE      APPLIED  LAG   PUS KEYS       LAST PROBLEM");
    for g in &r.gateways {
        println!(
            "{:<16} {:<6} {:<9} {:<12} {:>7} {:>4} {:>5} {:<10} {}",
            g.name,
            if g.alive { "yes" } else { "no" },
            if g.enrolled { "yes" } else { "no" },
            g.profile,
            g.applied_fleet_version,
            g.lag,
            g.pus,
            g.key_ids.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(","),
            g.last_problem
        );
    }
    if !r.unverified.is_empty() {
        println!("{} object(s) do not verify and are ignored by every gateway:", r.unverified.len());
        for (k, why) in r.unverified.iter().take(20) {
            println!("  {k}: {why}");
        }
    }
}
