//! gwctl: the gateway's management client.
//!
//! One module per command ([`apply`], [`get`], [`status`], [`stats`],
//! [`observe`]; `fleet` is `controlplane::fleet::operator::cli`), the
//! output helpers they share in [`output`], and here the command line, the
//! connection and the exit codes: 0 done; 1 refused (a NACK, or the gateway
//! refused this client); 2 usage (bad arguments or files); 3 the gateway
//! cannot be reached.

#![forbid(unsafe_code)]

mod apply;
mod explain;
mod get;
mod observe;
mod output;
mod stats;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use controlplane::api::client::{Clients, ConnectError, Target, TlsTarget};
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
    Apply(apply::ApplyArgs),
    /// Print what is in force.
    Get(get::GetArgs),
    /// What is enforced: versions, revision, when, and the last refused apply.
    Status(status::StatusArgs),
    /// Counters: ports, workers, every reason, flow tables, queues, latency histograms.
    Stats(stats::StatsArgs),
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
    Observe(observe::ObserveArgs),
    /// What the policy in force would decide for a connection, why, and every rule that matches.
    ///
    /// Examples:
    ///   gwctl explain --pu web --identity 1001 --port 80 --direction incoming
    ///   gwctl explain --pu 10.2.0.20 --address 192.168.50.7 --protocol udp --port 53 --direction outgoing
    ///   gwctl observe --last 1 -o json | gwctl explain --flow -
    #[command(verbatim_doc_comment)]
    Explain(explain::ExplainArgs),
    /// The fleet in etcd (docs/fleet.md): apply, get, status, wait, rotate-key, keygen.
    ///
    /// Talks to etcd, not to a gateway: --socket and --server do not apply.
    Fleet(controlplane::fleet::operator::FleetArgs),
}

/// Why gwctl stops: its message and exit code.
#[derive(Debug)]
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

/// What a command has read and checked before connecting: a typo in a file
/// or a filter is a usage error even when the gateway is down.
enum Prepared {
    Apply(apply::ApplyArgs, String),
    Get(get::GetArgs),
    Status(status::StatusArgs),
    Stats(stats::StatsArgs),
    Observe(observe::Observe),
    Explain(explain::Prepared),
}

async fn run(cli: Cli) -> Res {
    if let Cmd::Fleet(a) = cli.cmd {
        return controlplane::fleet::operator::cli(a).await.map_err(|(code, m)| Fail(code, m));
    }
    let target = target(&cli)?;
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
    let prepared = match cli.cmd {
        Cmd::Apply(a) => {
            let text = apply::read_input(&a.file)?;
            Prepared::Apply(a, text)
        }
        Cmd::Get(a) => Prepared::Get(a),
        Cmd::Status(a) => Prepared::Status(a),
        Cmd::Stats(a) => Prepared::Stats(a),
        Cmd::Observe(a) => Prepared::Observe(observe::Observe::new(&a)?),
        Cmd::Explain(a) => Prepared::Explain(explain::prepare(a)?),
        Cmd::Fleet(_) => return Ok(()), // answered above, without a gateway
    };
    let prepared = match prepared {
        Prepared::Observe(o) if o.is_merge() => return o.run_merge(timeout).await,
        p => p,
    };
    let mut c = tokio::time::timeout(timeout, Clients::connect(&target))
        .await
        .map_err(|_| {
            Fail(3, format!("cannot reach the gateway at {target}: no answer in {:.0}s", timeout.as_secs_f64()))
        })?
        .map_err(from_connect)?;
    match prepared {
        Prepared::Apply(a, text) => apply::run(&mut c, a, text, timeout).await,
        Prepared::Get(a) => get::run(&mut c, a, timeout).await,
        Prepared::Status(a) => status::run(&mut c, a, timeout).await,
        Prepared::Stats(a) => stats::run(&mut c, a, timeout).await,
        Prepared::Observe(o) => o.run(&mut c, timeout).await,
        Prepared::Explain(e) => explain::run(&mut c, e, timeout).await,
    }
}

/// The answer to `f`, or why there is none within `t`.
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
