//! gwctl: the gateway's management client.
//!
//! Exit codes: 0 done; 1 refused (a NACK, or the gateway refused this client);
//! 2 usage (bad arguments or files); 3 the gateway cannot be reached.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use controlplane::api::client::{get_flows_framed, Clients, ConnectError, Target, TlsTarget};
use controlplane::api::convert::{document_from_yaml, document_to_pb};
use controlplane::api::pb;
use tonic::Code;

const DEFAULT_SOCKET: &str = "/run/gatewayd/gatewayd.sock";

/// Manage an identity gateway: apply policy, read it back, watch its status,
/// read its counters and observe its flows.
///
/// Connects to gatewayd's Unix socket (default /run/gatewayd/gatewayd.sock, or
/// $GWCTL_SOCKET; the read-only socket /run/gatewayd/gatewayd-ro.sock serves
/// everything but apply), or with --server to its TCP port with mutual TLS.
///
/// Exit codes: 0 ok, 1 refused (NACK or permission denied), 2 usage, 3 unreachable.
#[derive(Parser, Debug)]
#[command(name = "gwctl", version, about, long_about)]
struct Cli {
    /// The gateway's Unix socket.
    #[arg(long, global = true, env = "GWCTL_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Connect over TCP with mutual TLS instead: host:port.
    #[arg(long, global = true, env = "GWCTL_SERVER", value_name = "HOST:PORT")]
    server: Option<String>,
    /// CA certificate that signed the server's certificate (PEM; with --server).
    #[arg(long, global = true, env = "GWCTL_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// This client's certificate (PEM; with --server).
    #[arg(long, global = true, env = "GWCTL_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// This client's private key (PEM; with --server).
    #[arg(long, global = true, env = "GWCTL_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Name to check the server's certificate against (default: the host of --server).
    #[arg(long, global = true, value_name = "NAME")]
    tls_domain: Option<String>,
    /// Give up on a call after this many seconds (not for --follow/--watch).
    #[arg(long, global = true, default_value_t = 30.0, value_name = "SECS")]
    timeout: f64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Apply a policy document (docs/config.md), or one kind of resource from it.
    ///
    /// The gateway validates and compiles the whole resulting document before
    /// swapping it in: it answers ACK with the version now in force, or NACK
    /// with every problem (and the previous config stays in force).
    Apply {
        /// The policy document (YAML); "-" reads standard input.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// The version to apply; must be greater than the one in force
        /// (default: the version in force + 1).
        #[arg(long)]
        version: Option<u64>,
        /// Apply only this kind from the file; the other kinds in force are kept.
        #[arg(long, value_enum)]
        kind: Option<ApplyKind>,
        /// Validate and compile only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a result with no processing units or no rules (the gateway
        /// then drops everything it judges). Implies --replace.
        #[arg(long)]
        allow_empty: bool,
        /// Allow removing more than half of the processing units, rulesets,
        /// identities, peers or external networks in force (a whole document
        /// that lacks a kind in force removes all of it).
        #[arg(long)]
        replace: bool,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print what is in force.
    Get {
        /// What to print.
        #[arg(value_enum)]
        what: GetWhat,
        #[arg(short = 'o', long, value_enum, default_value_t = DocOutput::Yaml)]
        output: DocOutput,
    },
    /// What is enforced: versions, revision, when, and the last refused apply.
    Status {
        /// Keep printing each change (applied or refused).
        #[arg(short = 'w', long)]
        watch: bool,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Counters: ports, workers, every reason, flow tables, queues, latency histograms.
    Stats {
        /// Also print reasons and counters that are zero.
        #[arg(long)]
        all: bool,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print flows, one line each: time, source → destination, protocol, verdict, reason, rule.
    ///
    /// Filters of different kinds must all match; repeating a filter accepts any
    /// of its values. --not before a filter excludes what it matches instead.
    /// --ip/--port/--identity/--tag/--name match either end.
    /// Examples:
    ///   gwctl observe --last 50 --verdict rejected
    ///   gwctl observe -f --from-tag role=db --not --reason no_match
    ///   gwctl observe --since 10m --to-port 443 -o json
    #[command(verbatim_doc_comment)]
    Observe(ObserveArgs),
    /// The fleet in etcd (docs/fleet.md): apply, get, status, wait, rotate-key, keygen.
    ///
    /// Talks to etcd, not to a gateway: --socket and --server do not apply.
    Fleet(controlplane::fleet::operator::FleetArgs),
}

#[derive(clap::Args, Debug)]
struct ObserveArgs {
    /// Keep printing new flows as they come.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The last N matching flows (default 20 without --follow).
    #[arg(long, value_name = "N")]
    last: Option<u64>,
    /// Only flows at or after this time: RFC 3339 (2026-11-22T11:00:00Z) or an age (30s, 10m, 2h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only flows before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Instead of flows, print per-interval aggregates (source, destination, port, protocol, verdict).
    #[arg(long, value_name = "SECS")]
    aggregate: Option<f64>,
    /// text: one line per flow; json: one JSON object per line; count: once a
    /// second, how many flows arrived and how many were reported lost (the
    /// records are framed, not decoded: for measuring rates).
    #[arg(short = 'o', long, value_enum, default_value_t = ObserveOutput::Text)]
    output: ObserveOutput,
    /// Exclude what the next filter matches.
    #[arg(long, action = clap::ArgAction::Count)]
    not: u8,
    /// Source IP or CIDR.
    #[arg(long, value_name = "CIDR")]
    from_ip: Vec<String>,
    /// Destination IP or CIDR.
    #[arg(long, value_name = "CIDR")]
    to_ip: Vec<String>,
    /// Either end's IP or CIDR.
    #[arg(long, value_name = "CIDR")]
    ip: Vec<String>,
    /// Source port or range lo-hi.
    #[arg(long, value_name = "PORT")]
    from_port: Vec<String>,
    /// Destination port or range lo-hi.
    #[arg(long, value_name = "PORT")]
    to_port: Vec<String>,
    /// Either end's port.
    #[arg(long, value_name = "PORT")]
    port: Vec<String>,
    /// tcp, udp, icmp or a number.
    #[arg(long, value_name = "PROTO")]
    protocol: Vec<String>,
    /// Source numeric identity.
    #[arg(long, value_name = "ID")]
    from_identity: Vec<u32>,
    /// Destination numeric identity.
    #[arg(long, value_name = "ID")]
    to_identity: Vec<u32>,
    /// Either end's identity.
    #[arg(long, value_name = "ID")]
    identity: Vec<u32>,
    /// Source tags: key=value or a selector ("role in {db, cache}").
    #[arg(long, value_name = "SELECTOR")]
    from_tag: Vec<String>,
    /// Destination tags.
    #[arg(long, value_name = "SELECTOR")]
    to_tag: Vec<String>,
    /// Either end's tags.
    #[arg(long, value_name = "SELECTOR")]
    tag: Vec<String>,
    /// Source name (PU, identity or external network).
    #[arg(long, value_name = "NAME")]
    from_name: Vec<String>,
    /// Destination name.
    #[arg(long, value_name = "NAME")]
    to_name: Vec<String>,
    /// Either end's name.
    #[arg(long, value_name = "NAME")]
    name: Vec<String>,
    /// allowed, rejected or passed.
    #[arg(long, value_name = "VERDICT")]
    verdict: Vec<String>,
    /// A reason: policy_allow, policy_reject, no_match, bad_mac, …
    #[arg(long, value_name = "REASON")]
    reason: Vec<String>,
    /// The deciding rule's ruleset.
    #[arg(long, value_name = "NAME")]
    ruleset: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Output {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum ObserveOutput {
    Text,
    Json,
    Count,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum DocOutput {
    Yaml,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum ApplyKind {
    Rulesets,
    Pus,
    Identities,
    Networks,
    Profile,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum GetWhat {
    Rulesets,
    Pus,
    Identities,
    Peers,
    Networks,
    Profile,
    All,
}

/// Why gwctl stops: its message and exit code.
struct Fail(u8, String);

type Res = Result<(), Fail>;

fn usage(m: impl Into<String>) -> Fail {
    Fail(2, m.into())
}

fn from_connect(e: ConnectError) -> Fail {
    match e {
        ConnectError::Unreachable { .. } => Fail(3, e.to_string()),
        ConnectError::Refused { .. } => Fail(1, e.to_string()),
        ConnectError::Setup(m) => Fail(2, m),
    }
}

fn from_status(what: &str, s: tonic::Status) -> Fail {
    let msg = s.message();
    let text = format!("{what}: {msg}");
    match s.code() {
        Code::PermissionDenied | Code::Unauthenticated => Fail(1, format!("{what}: refused: {msg}")),
        Code::InvalidArgument => Fail(2, text),
        Code::Unavailable if msg == controlplane::api::flows::STOPPING => Fail(3, format!("{what}: ended: {msg}")),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            let low = msg.to_ascii_lowercase();
            if low.contains("certificate") || low.contains("handshake") || low.contains("tls") || low.contains("alert")
            {
                Fail(1, format!("{what}: the gateway refused this client (TLS): {msg}"))
            } else {
                Fail(3, format!("{what}: the gateway is unreachable: {msg}"))
            }
        }
        _ => Fail(1, text),
    }
}

fn target(cli: &Cli) -> Result<Target, Fail> {
    match &cli.server {
        None => {
            if cli.cert.is_some() || cli.key.is_some() || cli.ca.is_some() {
                return Err(usage("--ca/--cert/--key go with --server (a Unix socket needs no TLS)"));
            }
            Ok(Target::Unix(cli.socket.clone().unwrap_or_else(|| DEFAULT_SOCKET.into())))
        }
        Some(server) => {
            if cli.socket.is_some() {
                return Err(usage("give either --socket or --server, not both"));
            }
            let ca = cli.ca.clone().ok_or_else(|| usage("--server needs --ca (the CA of the server's certificate)"))?;
            Ok(Target::Tls(TlsTarget {
                server: server.clone(),
                ca,
                cert: cli.cert.clone(),
                key: cli.key.clone(),
                domain: cli.tls_domain.clone(),
            }))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gwctl: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("gwctl: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Res {
    if let Cmd::Fleet(a) = cli.cmd {
        return controlplane::fleet::operator::cli(a).await.map_err(|(code, m)| Fail(code, m));
    }
    let target = target(&cli)?;
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
    // Read local files before connecting: a typo is a usage error even when the gateway is down.
    let apply_input = match &cli.cmd {
        Cmd::Apply { file, .. } => Some(read_input(file)?),
        _ => None,
    };
    let observe = match &cli.cmd {
        Cmd::Observe(a) => Some(observe_request(a, &std::env::args().collect::<Vec<_>>())?),
        _ => None,
    };
    let mut c = tokio::time::timeout(timeout, Clients::connect(&target))
        .await
        .map_err(|_| {
            Fail(3, format!("cannot reach the gateway at {target}: no answer in {:.0}s", timeout.as_secs_f64()))
        })?
        .map_err(from_connect)?;
    match cli.cmd {
        Cmd::Apply { file, version, kind, dry_run, allow_empty, replace, output } => {
            let text = apply_input.unwrap_or_default();
            let flags = ApplyFlags { dry_run, allow_empty, replace };
            apply(&mut c, &file, text, version, kind, flags, output, timeout).await
        }
        Cmd::Get { what, output } => get(&mut c, what, output, timeout).await,
        Cmd::Status { watch, output } => status(&mut c, watch, output, timeout).await,
        Cmd::Stats { all, output } => stats(&mut c, all, output, timeout).await,
        Cmd::Observe(a) => {
            let req = observe.unwrap_or_default();
            match a.output {
                ObserveOutput::Text => observe_flows(&mut c, req, Output::Text, timeout).await,
                ObserveOutput::Json => observe_flows(&mut c, req, Output::Json, timeout).await,
                ObserveOutput::Count => observe_count(&c, req, timeout).await,
            }
        }
        Cmd::Fleet(_) => Ok(()), // answered before connecting (above)
    }
}

fn read_input(file: &PathBuf) -> Result<String, Fail> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| usage(format!("reading standard input: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(|e| usage(format!("-f {}: {e}", file.display())))
    }
}

async fn with_timeout<T>(
    t: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Fail> {
    match tokio::time::timeout(t, f).await {
        Err(_) => Err(Fail(3, format!("{what}: no answer in {:.0}s", t.as_secs_f64()))),
        Ok(Err(s)) => Err(from_status(what, s)),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

// ---------------------------------------------------------------------------
// apply

/// What an apply may do beyond the default.
struct ApplyFlags {
    dry_run: bool,
    allow_empty: bool,
    replace: bool,
}

#[allow(clippy::too_many_arguments)]
async fn apply(
    c: &mut Clients,
    file: &PathBuf,
    text: String,
    version: Option<u64>,
    kind: Option<ApplyKind>,
    flags: ApplyFlags,
    output: Output,
    t: Duration,
) -> Res {
    use pb::apply_request::Content;
    let content = match kind {
        None => Content::DocumentYaml(text),
        Some(k) => {
            let doc =
                document_from_yaml(&text).map_err(|p| usage(format!("{}: {}", file.display(), p.bounded().message)))?;
            let d = document_to_pb(&doc, false);
            match k {
                ApplyKind::Rulesets => Content::Rulesets(pb::Rulesets { rulesets: d.rulesets }),
                ApplyKind::Pus => {
                    Content::ProcessingUnits(pb::ProcessingUnits { processing_units: d.processing_units })
                }
                ApplyKind::Identities => Content::Identities(pb::IdentityDirectory {
                    local: d.local,
                    identities: d.identities,
                    peers: d.peers,
                }),
                ApplyKind::Networks => {
                    Content::ExternalNetworks(pb::ExternalNetworks { external_networks: d.external_networks })
                }
                ApplyKind::Profile => Content::EnforcerProfile(d.enforcer_profile.unwrap_or_default()),
            }
        }
    };
    let version = match version {
        Some(v) => v,
        None => {
            let got = with_timeout(t, "get", c.config.get(pb::GetRequest { kind: 0, versions_only: true })).await?;
            got.versions.map_or(0, |v| v.document) + 1
        }
    };
    let req = pb::ApplyRequest {
        version,
        content: Some(content),
        dry_run: flags.dry_run,
        allow_empty: flags.allow_empty,
        replace: flags.replace,
    };
    let r = with_timeout(t, "apply", c.config.apply(req)).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else if r.accepted {
        let rev = if r.revision.is_empty() { String::new() } else { format!(" (revision {:?})", r.revision) };
        let what = if r.dry_run { "valid (dry run, nothing applied):" } else { "applied" };
        println!("{what} version {}{rev}, compiled in {:.1} ms", r.version, r.compile_us as f64 / 1000.0);
    } else {
        let n = r.errors.len();
        let in_force = r.in_force.map_or(0, |v| v.document);
        println!(
            "refused version {}: {n} problem{}; version {in_force} stays in force",
            r.version,
            if n == 1 { "" } else { "s" }
        );
        for e in &r.errors {
            println!("  {}", e.message);
        }
    }
    if r.accepted {
        Ok(())
    } else {
        Err(Fail(1, format!("apply of {} refused", file.display())))
    }
}

// ---------------------------------------------------------------------------
// get

async fn get(c: &mut Clients, what: GetWhat, output: DocOutput, t: Duration) -> Res {
    let (kind, keys): (pb::ResourceKind, &[&str]) = match what {
        GetWhat::Rulesets => (pb::ResourceKind::Rulesets, &["rulesets"]),
        GetWhat::Pus => (pb::ResourceKind::ProcessingUnits, &["processing_units"]),
        GetWhat::Identities => (pb::ResourceKind::Identities, &["local", "identities"]),
        GetWhat::Peers => (pb::ResourceKind::Identities, &["peers"]),
        GetWhat::Networks => (pb::ResourceKind::ExternalNetworks, &["external_networks"]),
        GetWhat::Profile => (pb::ResourceKind::EnforcerProfile, &["enforcer_profile"]),
        GetWhat::All => (pb::ResourceKind::Unspecified, &[]),
    };
    let r = with_timeout(t, "get", c.config.get(pb::GetRequest { kind: kind as i32, versions_only: false })).await?;
    let v = r.versions.unwrap_or_default();
    if r.document.is_none() {
        return Err(Fail(1, "no config has been applied to this gateway yet".into()));
    }
    let doc: serde_yaml::Value = serde_yaml::from_str(&r.document_yaml)
        .map_err(|e| Fail(1, format!("the gateway sent a document that does not parse: {e}")))?;
    let selected = if keys.is_empty() {
        doc
    } else {
        let mut m = serde_yaml::Mapping::new();
        for k in keys {
            if let Some(x) = doc.get(*k) {
                if !x.is_null() {
                    m.insert((*k).into(), x.clone());
                }
            }
        }
        serde_yaml::Value::Mapping(m)
    };
    let kind_version = match what {
        GetWhat::Rulesets => v.rulesets,
        GetWhat::Pus => v.processing_units,
        GetWhat::Identities | GetWhat::Peers => v.identities,
        GetWhat::Networks => v.external_networks,
        GetWhat::Profile => v.enforcer_profile,
        GetWhat::All => v.document,
    };
    match output {
        DocOutput::Yaml => {
            println!("# in force: version {kind_version} (document version {})", v.document);
            print!("{}", serde_yaml::to_string(&selected).unwrap_or_default());
        }
        DocOutput::Json => {
            let mut j = serde_json::to_value(&selected).unwrap_or_default();
            if let Some(o) = j.as_object_mut() {
                o.insert("versions".into(), serde_json::to_value(v).unwrap_or_default());
            }
            println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// status

fn ms_time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The state in words: never just "enforcing" for a policy that drops everything.
fn state_text(s: &pb::ConfigStatus) -> String {
    match pb::EnforcementState::try_from(s.state) {
        Ok(pb::EnforcementState::Enforcing) => "enforcing".into(),
        Ok(pb::EnforcementState::EnforcingDropAll) => {
            let why = if s.drops_all.is_empty() { "nothing is allowed" } else { &s.drops_all };
            format!("enforcing a policy that drops everything: {why}")
        }
        Ok(pb::EnforcementState::NoConfigFailClosed) => {
            "no config applied: failing closed (everything judged is dropped)".into()
        }
        Ok(pb::EnforcementState::NoConfigFailOpen) => {
            "no config applied: failing open (everything forwarded untouched)".into()
        }
        _ => format!("unknown ({})", s.state),
    }
}

fn print_status(s: &pb::ConfigStatus) {
    let v = s.versions.unwrap_or_default();
    println!("state:        {}", state_text(s));
    println!(
        "version:      {} (rulesets {}, processing_units {}, identities {}, external_networks {}, enforcer_profile {})",
        v.document, v.rulesets, v.processing_units, v.identities, v.external_networks, v.enforcer_profile
    );
    if !s.revision.is_empty() {
        println!("revision:     {}", s.revision);
    }
    println!(
        "applied at:   {}{}",
        ms_time(s.applied_at_unix_ms),
        if s.source.is_empty() { String::new() } else { format!(" ({})", s.source) }
    );
    println!("generation:   {}", s.generation);
    println!("policy:       {} processing units, {} identities, {} rules", s.processing_units, s.identities, s.rules);
    println!("applies:      {} accepted, {} refused since start", s.applies_accepted, s.applies_refused);
    if let Some(r) = &s.last_refused {
        println!("last refused: version {} at {}:", r.version, ms_time(r.at_unix_ms));
        for e in &r.errors {
            println!("  {}", e.message);
        }
    }
    if let Some(f) = &s.fleet {
        print_fleet(f);
    }
}

fn print_fleet(f: &pb::FleetStatus) {
    let link = if f.connected { "connected".to_owned() } else { format!("disconnected ({})", f.last_error) };
    println!("fleet:        gateway {} (key id {}), {link}", f.name, f.key_id);
    println!(
        "              fleet version {} in force (newest seen {}), etcd revision {}, profile {}",
        f.applied_fleet_version,
        f.seen_fleet_version,
        f.etcd_revision,
        if f.profile.is_empty() { "-" } else { &f.profile }
    );
    println!(
        "              {} applies, {} refusals, {} disconnects, {} re-lists, {} unverified objects ignored",
        f.applies, f.refusals, f.disconnects, f.relists, f.unverified_objects
    );
    for e in &f.unverified_examples {
        println!("  unverified: {e}");
    }
    for c in &f.conflicts {
        println!("  conflict:   {c}");
    }
}

async fn status(c: &mut Clients, watch: bool, output: Output, t: Duration) -> Res {
    let show = |s: &pb::ConfigStatus| match output {
        Output::Json => println!("{}", serde_json::to_string(s).unwrap_or_default()),
        Output::Text => print_status(s),
    };
    if !watch {
        let r = with_timeout(t, "status", c.config.get(pb::GetRequest { kind: 0, versions_only: true })).await?;
        show(&r.status.unwrap_or_default());
        return Ok(());
    }
    let mut stream = with_timeout(t, "watch", c.config.watch(pb::WatchRequest {})).await?;
    loop {
        match stream.message().await {
            Ok(Some(s)) => {
                if output == Output::Text {
                    println!("--- {} ({})", humantime::format_rfc3339_seconds(SystemTime::now()), s.event);
                }
                show(&s);
            }
            Ok(None) => return Err(Fail(3, "watch: the gateway ended the stream".into())),
            Err(e) => return Err(from_status("watch", e)),
        }
    }
}

// ---------------------------------------------------------------------------
// stats

async fn stats(c: &mut Clients, all: bool, output: Output, t: Duration) -> Res {
    let s = with_timeout(t, "stats", c.stats.get_stats(pb::GetStatsRequest {})).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(());
    }
    println!("uptime {:.1}s, config version {}", s.uptime_s, s.config_version);
    for p in &s.ports {
        println!(
            "port {:<7} {}: rx {} pkts {} B, tx {} pkts {} B, missed {}, rx-errors {}, tx-errors {}, rx-nombuf {}",
            p.role,
            p.name,
            p.rx_packets,
            p.rx_bytes,
            p.tx_packets,
            p.tx_bytes,
            p.missed,
            p.rx_errors,
            p.tx_errors,
            p.rx_nombuf
        );
    }
    let reasons = |v: &[pb::ReasonCount]| -> String {
        v.iter()
            .filter(|r| all || r.count > 0)
            .map(|r| format!("{} {}", r.reason, r.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for w in &s.workers {
        println!(
            "worker {} (lcore {}, queue {}): polls {} (idle {}), handed off {}, in {}, flows {}/{} (evicted {}), events queued {}, dropped {}, replay memory {} (forgotten early {})",
            w.index, w.lcore, w.queue, w.polls, w.idle_polls, w.handed_off, w.handed_in, w.flows_active, w.flow_capacity,
            w.flows_evicted, w.events_queued, w.event_queue_drops, w.replay_remembered, w.replay_overwritten
        );
        for (label, d) in [("inside->outside", &w.from_inside), ("outside->inside", &w.from_outside)] {
            if let Some(d) = d {
                let r = reasons(&d.reasons);
                println!(
                    "  {label}: rx {} pkts {} B, tx {} pkts {} B{}",
                    d.rx_packets,
                    d.rx_bytes,
                    d.tx_packets,
                    d.tx_bytes,
                    if r.is_empty() { String::new() } else { format!(" | {r}") }
                );
            }
        }
    }
    let r = reasons(&s.reasons);
    println!("reasons: {}", if r.is_empty() { "none counted".into() } else { r });
    if let Some(h) = &s.flowhub {
        println!(
            "flow ring: {} of {} held, {} received ({} lost-event notices), {} overwritten, {} readers, {} lost by worker queues",
            h.held, h.capacity, h.received, h.notices, h.overwritten, h.readers, h.lost_by_workers
        );
    }
    for h in &s.histograms {
        if h.count == 0 && !all {
            println!("histogram {}: no samples", h.name);
            continue;
        }
        let p: Vec<String> = h.percentiles.iter().map(|p| format!("p{} {}", p.quantile * 100.0, p.value)).collect();
        println!(
            "histogram {} ({}): n {}, min {}, mean {:.1}, {}, max {}",
            h.name,
            h.unit,
            h.count,
            h.min,
            h.mean,
            p.join(", "),
            h.max
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// observe

/// Filter flags and what they set.
const FILTER_FLAGS: &[&str] = &[
    "from-ip",
    "to-ip",
    "ip",
    "from-port",
    "to-port",
    "port",
    "protocol",
    "from-identity",
    "to-identity",
    "identity",
    "from-tag",
    "to-tag",
    "tag",
    "from-name",
    "to-name",
    "name",
    "verdict",
    "reason",
    "ruleset",
];
/// Other options of observe (and global ones) that take a value.
const VALUE_FLAGS: &[&str] = &[
    "last",
    "since",
    "until",
    "aggregate",
    "output",
    "socket",
    "server",
    "ca",
    "cert",
    "key",
    "tls-domain",
    "timeout",
];

fn parse_time(s: &str, flag: &str) -> Result<u64, Fail> {
    if let Ok(d) = humantime::parse_duration(s) {
        let t = SystemTime::now().checked_sub(d).unwrap_or(UNIX_EPOCH);
        return Ok(t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| {
        usage(format!("{flag} {s:?}: not an RFC 3339 time (2026-11-22T11:00:00Z) or an age (30s, 10m, 2h)"))
    })?;
    Ok(t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0))
}

fn verdict_of(s: &str) -> Result<i32, Fail> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "allowed" | "allow" | "forwarded" => pb::Verdict::Allowed,
        "rejected" | "reject" | "dropped" | "denied" => pb::Verdict::Rejected,
        "passed" | "pass" => pb::Verdict::Passed,
        _ => return Err(usage(format!("--verdict {s:?}: not a verdict (allowed, rejected, passed)"))),
    } as i32)
}

/// Adds one filter value to `f`; `end` picks source (0), destination (1).
fn add(f: &mut pb::FlowFilter, flag: &str, end: Option<usize>, v: &str) -> Result<(), Fail> {
    let num = |v: &str| v.parse::<u32>().map_err(|_| usage(format!("--{flag} {v:?}: not a number")));
    let base = flag.trim_start_matches("from-").trim_start_matches("to-");
    let src = end == Some(0);
    match base {
        "ip" => if src { &mut f.source_ip } else { &mut f.destination_ip }.push(v.into()),
        "port" => if src { &mut f.source_port } else { &mut f.destination_port }.push(v.into()),
        "identity" => if src { &mut f.source_identity } else { &mut f.destination_identity }.push(num(v)?),
        "tag" => if src { &mut f.source_tags } else { &mut f.destination_tags }.push(v.into()),
        "name" => if src { &mut f.source_name } else { &mut f.destination_name }.push(v.into()),
        "protocol" => f.protocol.push(v.into()),
        "verdict" => f.verdict.push(verdict_of(v)?),
        "reason" => f.reason.push(v.into()),
        "ruleset" => f.ruleset.push(v.into()),
        _ => return Err(usage(format!("--{flag}: unknown filter"))),
    }
    Ok(())
}

/// Builds the request from the parsed arguments and, for the filters, the raw
/// ones (to know which filter each --not applies to).
fn observe_request(a: &ObserveArgs, raw: &[String]) -> Result<pb::GetFlowsRequest, Fail> {
    // Positive filters: one filter, all fields ANDed; an either-end flag forks it in two.
    let mut allow = vec![pb::FlowFilter::default()];
    let mut deny = Vec::new();
    let mut negate = false;
    let start = raw.iter().position(|s| s == "observe").map_or(raw.len(), |i| i + 1);
    let mut i = start;
    while i < raw.len() {
        let tok = &raw[i];
        i += 1;
        if tok == "--" {
            break;
        }
        let Some(name) = tok.strip_prefix("--") else { continue };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (name, None),
        };
        if name == "not" {
            negate = true;
            continue;
        }
        if VALUE_FLAGS.contains(&name) {
            if inline.is_none() {
                i += 1;
            }
            continue;
        }
        if !FILTER_FLAGS.contains(&name) {
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = raw.get(i).cloned().ok_or_else(|| usage(format!("--{name} needs a value")))?;
                i += 1;
                v
            }
        };
        let either = matches!(name, "ip" | "port" | "identity" | "tag" | "name");
        let end = if name.starts_with("from-") {
            Some(0)
        } else if name.starts_with("to-") {
            Some(1)
        } else {
            None
        };
        if negate {
            // Each excluded filter stands alone: a flow is dropped if any matches.
            for e in if either { vec![Some(0), Some(1)] } else { vec![end] } {
                let mut f = pb::FlowFilter::default();
                add(&mut f, name, e, &value)?;
                deny.push(f);
            }
            negate = false;
        } else if either {
            let mut forked = Vec::new();
            for f in &allow {
                for e in [0, 1] {
                    let mut g = f.clone();
                    add(&mut g, name, Some(e), &value)?;
                    forked.push(g);
                }
            }
            allow = forked;
        } else {
            for f in &mut allow {
                add(f, name, end, &value)?;
            }
        }
    }
    if negate {
        return Err(usage("--not must come before a filter, e.g. --not --reason no_match"));
    }
    if allow.len() == 1 && allow[0] == pb::FlowFilter::default() {
        allow.clear();
    }
    let number = match (a.last, a.follow) {
        (Some(n), _) => n,
        (None, true) => 0,
        (None, false) if a.since.is_some() || a.aggregate.is_some() => 0,
        (None, false) => 20,
    };
    let aggregate_interval_ms = match a.aggregate {
        None => 0,
        Some(s) if s > 0.0 && s <= 86400.0 => (s * 1000.0) as u32,
        Some(s) => return Err(usage(format!("--aggregate {s}: not in (0, 86400] seconds"))),
    };
    if aggregate_interval_ms > 0 && a.last.is_some() {
        return Err(usage("--aggregate takes --follow or --since, not --last"));
    }
    Ok(pb::GetFlowsRequest {
        number,
        follow: a.follow,
        since_unix_ns: a.since.as_deref().map(|s| parse_time(s, "--since")).transpose()?,
        until_unix_ns: a.until.as_deref().map(|s| parse_time(s, "--until")).transpose()?,
        allow,
        deny,
        aggregate_interval_ms,
    })
}

fn verdict_name(v: i32) -> &'static str {
    match pb::Verdict::try_from(v) {
        Ok(pb::Verdict::Allowed) => "ALLOWED",
        Ok(pb::Verdict::Rejected) => "REJECTED",
        Ok(pb::Verdict::Passed) => "PASSED",
        _ => "UNKNOWN",
    }
}

fn event_name(v: i32) -> &'static str {
    match pb::FlowEventType::try_from(v) {
        Ok(pb::FlowEventType::Started) => "started",
        Ok(pb::FlowEventType::Ended) => "ended",
        Ok(pb::FlowEventType::Rejected) => "rejected",
        _ => "",
    }
}

fn lost_source(v: i32) -> &'static str {
    match pb::LostEventSource::try_from(v) {
        Ok(pb::LostEventSource::WorkerQueue) => "worker_queue",
        Ok(pb::LostEventSource::Ring) => "ring",
        Ok(pb::LostEventSource::Reader) => "reader",
        _ => "unknown",
    }
}

fn endpoint_text(e: &pb::Endpoint, with_port: bool) -> String {
    let mut s = if e.ip.contains(':') { format!("[{}]", e.ip) } else { e.ip.clone() };
    if with_port && e.port != 0 {
        s = format!("{s}:{}", e.port);
    }
    let mut who = Vec::new();
    if !e.name.is_empty() {
        who.push(e.name.clone());
    }
    if e.identity != 0 {
        who.push(format!("id {}", e.identity));
    }
    if !e.tags.is_empty() {
        who.push(e.tags.join(","));
    }
    if who.is_empty() {
        s
    } else if s.is_empty() {
        format!("({})", who.join(" "))
    } else {
        format!("{s} ({})", who.join(" "))
    }
}

fn ns_time(ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

fn policy_text(p: &pb::PolicyRef) -> String {
    format!("{}/{}/{}", p.ruleset, p.direction, p.rule)
}

/// One line per flow, in the manner of `hubble observe`.
fn flow_line(f: &pb::Flow) -> String {
    let src = f.source.as_ref().map(|e| endpoint_text(e, true)).unwrap_or_default();
    let dst = f.destination.as_ref().map(|e| endpoint_text(e, true)).unwrap_or_default();
    let mut line = format!(
        "{}  {src} -> {dst}  {}  {}  {}",
        ns_time(f.time_unix_ns),
        f.protocol,
        verdict_name(f.verdict),
        if f.reason.is_empty() { "-" } else { &f.reason }
    );
    if let Some(p) = &f.policy {
        line.push_str(&format!("  rule {}", policy_text(p)));
    }
    if let Some(o) = &f.observed {
        line.push_str(&format!("  observed {} {}", o.action, policy_text(o)));
    }
    let ev = event_name(f.r#type);
    if !ev.is_empty() {
        line.push_str(&format!("  [{ev}"));
        if f.r#type == pb::FlowEventType::Ended as i32 {
            line.push_str(&format!(
                " {}/{} pkts {}/{} B",
                f.packets_to_server, f.packets_to_client, f.bytes_to_server, f.bytes_to_client
            ));
        }
        line.push(']');
    }
    line
}

/// `observe -o json`: one object per line, `{"flow": {...}}`, the `Flow`
/// message's fields with the verdict and event type by name and the time in
/// RFC 3339 beside the nanoseconds. Serialized from borrowed fields straight
/// into the output (no intermediate `serde_json::Value` per line).
#[derive(serde::Serialize)]
struct FlowJson<'a> {
    flow: FlowFields<'a>,
}

#[derive(serde::Serialize)]
struct FlowFields<'a> {
    time: String,
    time_unix_ns: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    worker: u32,
    source: &'a Option<pb::Endpoint>,
    destination: &'a Option<pb::Endpoint>,
    protocol: &'a str,
    verdict: &'static str,
    reason: &'a str,
    policy: &'a Option<pb::PolicyRef>,
    observed: &'a Option<pb::PolicyRef>,
    policy_generation: u32,
    policy_revision: &'a str,
    packets_to_server: u64,
    bytes_to_server: u64,
    packets_to_client: u64,
    bytes_to_client: u64,
    handshake_ns: u64,
    direction: &'a str,
}

fn flow_json(f: &pb::Flow) -> FlowJson<'_> {
    FlowJson {
        flow: FlowFields {
            time: ns_time(f.time_unix_ns),
            time_unix_ns: f.time_unix_ns,
            kind: event_name(f.r#type),
            worker: f.worker,
            source: &f.source,
            destination: &f.destination,
            protocol: &f.protocol,
            verdict: match pb::Verdict::try_from(f.verdict) {
                Ok(pb::Verdict::Allowed) => "allowed",
                Ok(pb::Verdict::Rejected) => "rejected",
                Ok(pb::Verdict::Passed) => "passed",
                _ => "unknown",
            },
            reason: &f.reason,
            policy: &f.policy,
            observed: &f.observed,
            policy_generation: f.policy_generation,
            policy_revision: &f.policy_revision,
            packets_to_server: f.packets_to_server,
            bytes_to_server: f.bytes_to_server,
            packets_to_client: f.packets_to_client,
            bytes_to_client: f.bytes_to_client,
            handshake_ns: f.handshake_ns,
            direction: &f.direction,
        },
    }
}

/// Writes one flow as `output` prints it, with its newline.
fn write_flow(out: &mut impl std::io::Write, f: &pb::Flow, output: Output) -> std::io::Result<()> {
    match output {
        Output::Json => serde_json::to_writer(&mut *out, &flow_json(f)).map_err(std::io::Error::from)?,
        Output::Text => out.write_all(flow_line(f).as_bytes())?,
    }
    out.write_all(b"\n")
}

async fn observe_flows(c: &mut Clients, req: pb::GetFlowsRequest, output: Output, t: Duration) -> Res {
    use pb::get_flows_response::Response as R;
    use std::io::Write;
    let mut stream = with_timeout(t, "observe", c.flows.get_flows(req)).await?;
    let stdout = std::io::stdout();
    loop {
        let m = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => return Err(from_status("observe", e)),
        };
        let line = match (m.response, output) {
            (None, _) => continue,
            (Some(R::Flows(b)), _) => {
                // A batch is one write (stdout alone flushes at every newline).
                let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
                if b.flows.iter().try_for_each(|f| write_flow(&mut out, f, output)).and_then(|_| out.flush()).is_err() {
                    return Ok(()); // the reader of our output went away (e.g. `| head`)
                }
                continue;
            }
            (Some(R::Flow(f)), Output::Text) => flow_line(&f),
            (Some(R::Flow(f)), Output::Json) => serde_json::to_string(&flow_json(&f)).unwrap_or_default(),
            (Some(R::LostEvents(l)), Output::Text) => format!(
                "{}  LOST {} event(s): {}{}",
                ns_time(l.time_unix_ns),
                l.count,
                match lost_source(l.source) {
                    "ring" => "this reader fell behind the gateway's flow ring".to_string(),
                    "worker_queue" => format!("worker {}'s flow-event queue was full", l.worker),
                    other => other.to_string(),
                },
                ""
            ),
            (Some(R::LostEvents(l)), Output::Json) => serde_json::json!({
                "lost_events": { "source": lost_source(l.source), "count": l.count, "worker": l.worker, "time": ns_time(l.time_unix_ns) }
            })
            .to_string(),
            (Some(R::Aggregate(a)), Output::Text) => {
                let src = a.source.as_ref().map(|e| endpoint_text(e, false)).unwrap_or_default();
                let dst = a.destination.as_ref().map(|e| endpoint_text(e, true)).unwrap_or_default();
                format!(
                    "{} .. {}  {src} -> {dst}  {}  {}  started {} completed {} rejected {}  to server {} pkts {} B, to client {} pkts {} B",
                    ns_time(a.start_unix_ns),
                    ns_time(a.end_unix_ns),
                    a.protocol,
                    verdict_name(a.verdict),
                    a.flows_started,
                    a.flows_completed,
                    a.flows_rejected,
                    a.packets_to_server,
                    a.bytes_to_server,
                    a.packets_to_client,
                    a.bytes_to_client
                )
            }
            (Some(R::Aggregate(a)), Output::Json) => serde_json::json!({ "aggregate": a }).to_string(),
        };
        let mut out = stdout.lock();
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            // The reader of our output went away (e.g. `| head`).
            return Ok(());
        }
    }
}

/// `observe -o count`: a line per second with the flows received in it and
/// the lost-event notices' counts, then the totals when the stream ends.
async fn observe_count(c: &Clients, req: pb::GetFlowsRequest, t: Duration) -> Res {
    use std::io::Write;
    let mut stream = with_timeout(t, "observe", get_flows_framed(c.channel.clone(), req)).await?;
    let started = Instant::now();
    let (mut flows, mut aggregates, mut lost) = (0u64, 0u64, [0u64; 3]);
    let (mut last_flows, mut last_lost) = (0u64, [0u64; 3]);
    let mut next = started + Duration::from_secs(1);
    let line = |secs: f64, flows: u64, lost: &[u64; 3]| {
        format!("{secs:.1}s  flows {flows}  lost: worker_queue {}, ring {}, reader {}", lost[0], lost[1], lost[2])
    };
    let mut ended = Ok(());
    loop {
        let m = match tokio::time::timeout_at(next.into(), stream.message()).await {
            Err(_) => None, // a second passed
            Ok(Ok(Some(m))) => Some(m),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                // e.g. the gateway stopped: the totals so far, then the error
                ended = Err(from_status("observe", e));
                break;
            }
        };
        if let Some(m) = m {
            flows += m.flow_count();
            aggregates += u64::from(m.aggregate.is_some());
            if let Some(l) = &m.lost_events {
                let i = match pb::LostEventSource::try_from(l.source) {
                    Ok(pb::LostEventSource::WorkerQueue) => 0,
                    Ok(pb::LostEventSource::Ring) => 1,
                    _ => 2,
                };
                lost[i] += l.count;
            }
        }
        if Instant::now() >= next {
            let d: [u64; 3] = std::array::from_fn(|i| lost[i] - last_lost[i]);
            let text = line(started.elapsed().as_secs_f64(), flows - last_flows, &d);
            if writeln!(std::io::stdout(), "{text}").is_err() {
                return Ok(());
            }
            (last_flows, last_lost) = (flows, lost);
            next += Duration::from_secs(1);
        }
    }
    let el = started.elapsed().as_secs_f64();
    println!("total {}  ({:.0}/s)", line(el, flows, &lost), flows as f64 / el.max(1e-9));
    if aggregates > 0 {
        println!("aggregates {aggregates}");
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-o json` names the `Flow` message's fields one by one: a field added
    /// to the .proto must be added there too, or it would silently vanish.
    #[test]
    fn json_lines_carry_every_field_of_the_flow_message() {
        let f = pb::Flow {
            time_unix_ns: 1_700_000_000_123_456_789,
            r#type: pb::FlowEventType::Rejected as i32,
            verdict: pb::Verdict::Rejected as i32,
            protocol: "tcp".into(),
            reason: "no_match".into(),
            ..Default::default()
        };
        let all = serde_json::to_value(&f).unwrap();
        let line = serde_json::to_value(flow_json(&f)).unwrap();
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
        let mut want = keys(&all);
        want.insert("time".into());
        assert_eq!(keys(&line["flow"]), want);
        assert_eq!(line["flow"]["verdict"], "rejected");
        assert_eq!(line["flow"]["type"], "rejected");
        assert_eq!(line["flow"]["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(line["flow"]["time_unix_ns"], 1_700_000_000_123_456_789u64);
        assert_eq!(line["flow"]["reason"], all["reason"]);
    }
}
