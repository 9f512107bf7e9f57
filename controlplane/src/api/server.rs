//! The `[control]` settings and the server: listeners, roles, and the tokio
//! runtime they run on.
//!
//! The runtime lives on its own threads, started from the control thread
//! (they inherit its CPU affinity, the EAL main lcore, so they never run on a
//! worker's lcore). Nothing in the dataplane waits for it: a manager that
//! disconnects, hangs or floods it changes nothing the workers do.
//!
//! ```toml
//! [control]
//! socket = "/run/gatewayd/gatewayd.sock"              # read-write, mode 0660
//! readonly_socket = "/run/gatewayd/gatewayd-ro.sock"  # read-only, mode 0666 ("" disables)
//! state_dir = "/var/lib/gatewayd"                     # the last good policy (policy.json)
//! before_config = "fail_closed"                       # or "fail_open"
//! flow_ring = 65536                                   # flow records kept for GetFlows
//! [control.tcp]                                       # optional: TCP with mutual TLS
//! listen = "0.0.0.0:7443"
//! cert = "/etc/gatewayd/tls/server.pem"
//! key = "/etc/gatewayd/tls/server.key"
//! client_ca = "/etc/gatewayd/tls/clients-ca.pem"
//! [[control.tcp.clients]]                             # certificate name (CN or DNS SAN) -> role
//! name = "manager.example.net"
//! role = "read-write"
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dataplane::problem::ConfigProblem;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::auth::{Access, Role};
use super::config::ConfigService;
use super::explain::ExplainService;
use super::flows::{FlowRing, FlowsServer, FlowsService};
use super::pb;
use super::stats::{StatsService, StatsSource};
use crate::store::{BeforeConfig, ConfigStore, StoreOptions};

/// The largest message accepted or sent: a whole document with 100k
/// identities is ~7 MB as protobuf (gRPC's default limit is 4 MiB).
pub const MAX_MESSAGE: usize = 256 << 20;

fn config_server(b: &Backends, access: Access) -> pb::config_server::ConfigServer<ConfigService> {
    pb::config_server::ConfigServer::new(ConfigService::new(b.store.clone(), access))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/gatewayd/gatewayd.sock")
}
fn default_ro_socket() -> String {
    "/run/gatewayd/gatewayd-ro.sock".into()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/gatewayd")
}
fn default_flow_ring() -> usize {
    65536
}
fn yes() -> bool {
    true
}

/// `[control]` in gatewayd.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Serve the API at all (the policy store and persistence work either way).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The read-write Unix socket (mode 0660).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The read-only Unix socket (mode 0666); empty: none.
    #[serde(default = "default_ro_socket")]
    pub readonly_socket: String,
    /// Where the last good policy is kept.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub before_config: BeforeConfig,
    /// Flow records the ring keeps for GetFlows (rounded up to a power of two).
    #[serde(default = "default_flow_ring")]
    pub flow_ring: usize,
    #[serde(default)]
    pub tcp: Option<TcpConfig>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            enabled: true,
            socket: default_socket(),
            readonly_socket: default_ro_socket(),
            state_dir: default_state_dir(),
            before_config: BeforeConfig::default(),
            flow_ring: default_flow_ring(),
            tcp: None,
        }
    }
}

/// `[control.tcp]`: gRPC over TCP with mutual TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// `address:port`.
    pub listen: String,
    /// The server's certificate chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs client certificates (PEM). A client must present one.
    pub client_ca: PathBuf,
    /// Which client certificate gets which role.
    #[serde(default)]
    pub clients: Vec<ClientRole>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRole {
    /// A subject common name or DNS subject-alternative name.
    pub name: String,
    pub role: Role,
}

impl ControlConfig {
    /// Every problem, each a setting (`control.…`).
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut e = Vec::new();
        if !self.socket.is_absolute() {
            e.push(ConfigProblem::setting("control.socket", format!("{:?} is not an absolute path", self.socket)));
        }
        if !self.readonly_socket.is_empty() {
            if !Path::new(&self.readonly_socket).is_absolute() {
                e.push(ConfigProblem::setting(
                    "control.readonly_socket",
                    format!("{:?} is not an absolute path", self.readonly_socket),
                ));
            } else if Path::new(&self.readonly_socket) == self.socket {
                e.push(ConfigProblem::setting(
                    "control.readonly_socket",
                    format!("{:?} is also control.socket", self.readonly_socket),
                ));
            }
        }
        if !self.state_dir.is_absolute() {
            e.push(ConfigProblem::setting(
                "control.state_dir",
                format!("{:?} is not an absolute path", self.state_dir),
            ));
        }
        if !(1024..=(1 << 24)).contains(&self.flow_ring) {
            e.push(ConfigProblem::setting(
                "control.flow_ring",
                format!("{} is not in 1024..=16777216", self.flow_ring),
            ));
        }
        if let Some(t) = &self.tcp {
            if t.listen.parse::<SocketAddr>().is_err() {
                e.push(ConfigProblem::setting("control.tcp.listen", format!("{:?} is not an address:port", t.listen)));
            }
            if t.clients.is_empty() {
                e.push(ConfigProblem::setting(
                    "control.tcp.clients",
                    "is empty: no client certificate would get a role (add [[control.tcp.clients]] name/role)",
                ));
            }
            let mut seen = HashMap::new();
            for (i, c) in t.clients.iter().enumerate() {
                if let Some(j) = seen.insert(c.name.clone(), i) {
                    e.push(ConfigProblem::setting(
                        format!("control.tcp.clients[{i}].name"),
                        format!("{:?} is already clients[{j}]", c.name),
                    ));
                }
            }
        }
        e
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions { state_dir: Some(self.state_dir.clone()), before_config: self.before_config }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum ServerError {
    Socket { path: PathBuf, message: String },
    Tcp { listen: String, message: String },
    Tls { message: String },
    Runtime(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Socket { path, message } => write!(f, "control socket {}: {message}", path.display()),
            ServerError::Tcp { listen, message } => write!(f, "control.tcp.listen {listen:?}: {message}"),
            ServerError::Tls { message } => write!(f, "control.tcp TLS: {message}"),
            ServerError::Runtime(m) => write!(f, "control runtime: {m}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// The running API. Dropping it stops the listeners and removes the sockets.
pub struct ControlServer {
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    sockets: Vec<PathBuf>,
    tcp_addr: Option<SocketAddr>,
}

/// What the services share.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<ConfigStore>,
    pub hub: Arc<FlowRing>,
    pub stats: Arc<dyn StatsSource>,
}

fn routes(b: &Backends, access: Access, stopping: watch::Receiver<bool>) -> tonic::transport::server::Router {
    Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(config_server(b, access.clone()))
        .add_service(FlowsServer::new(FlowsService::new(b.hub.clone(), access.clone(), stopping)))
        .add_service(pb::policy_server::PolicyServer::new(ExplainService::new(b.stats.clone(), access.clone())))
        .add_service(pb::stats_server::StatsServer::new(StatsService::new(
            b.stats.clone(),
            b.hub.clone(),
            b.store.clone(),
            access,
        )))
}

/// Removes a stale socket file (nobody answers on it); refuses a live one.
fn prepare_socket(path: &Path) -> Result<(), ServerError> {
    let err = |message: String| ServerError::Socket { path: path.to_owned(), message };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err("another server is listening on it (is another gatewayd running?)".into()));
        }
        std::fs::remove_file(path).map_err(|e| err(format!("removing the stale socket: {e}")))?;
    }
    Ok(())
}

fn bind_unix(path: &Path, mode: u32) -> Result<std::os::unix::net::UnixListener, ServerError> {
    use std::os::unix::fs::PermissionsExt;
    prepare_socket(path)?;
    let l = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| ServerError::Socket { path: path.to_owned(), message: e.to_string() })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ServerError::Socket { path: path.to_owned(), message: format!("chmod {mode:o}: {e}") })?;
    l.set_nonblocking(true).map_err(|e| ServerError::Socket { path: path.to_owned(), message: e.to_string() })?;
    Ok(l)
}

async fn logged(f: impl std::future::Future<Output = Result<(), tonic::transport::Error>>) {
    if let Err(e) = f.await {
        eprintln!("gatewayd: a control listener stopped: {e}");
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|e| ServerError::Tls { message: format!("{what} {}: {e}", path.display()) })
}

impl ControlServer {
    /// Binds every listener (errors come back here) and serves on a runtime
    /// of its own threads until dropped.
    pub fn start(cfg: &ControlConfig, backends: Backends) -> Result<ControlServer, ServerError> {
        let mut unix = vec![(bind_unix(&cfg.socket, 0o660)?, Access::Fixed(Role::ReadWrite))];
        let mut sockets = vec![cfg.socket.clone()];
        if !cfg.readonly_socket.is_empty() {
            let p = PathBuf::from(&cfg.readonly_socket);
            unix.push((bind_unix(&p, 0o666)?, Access::Fixed(Role::ReadOnly)));
            sockets.push(p);
        }
        let mut tcp = None;
        let mut tcp_addr = None;
        if let Some(t) = &cfg.tcp {
            let tls = ServerTlsConfig::new()
                .identity(Identity::from_pem(read(&t.cert, "cert")?, read(&t.key, "key")?))
                .client_ca_root(Certificate::from_pem(read(&t.client_ca, "client_ca")?));
            let l = std::net::TcpListener::bind(&t.listen)
                .map_err(|e| ServerError::Tcp { listen: t.listen.clone(), message: e.to_string() })?;
            l.set_nonblocking(true)
                .map_err(|e| ServerError::Tcp { listen: t.listen.clone(), message: e.to_string() })?;
            tcp_addr = l.local_addr().ok();
            let roles: HashMap<String, Role> = t.clients.iter().map(|c| (c.name.clone(), c.role)).collect();
            tcp = Some((l, tls, Access::ByCertificate(Arc::new(roles))));
        }
        let (shutdown, rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), ServerError>>();
        let thread = std::thread::Builder::new()
            .name("gw-control".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("gw-control-rt")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ServerError::Runtime(e.to_string())));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    let stop = |mut rx: watch::Receiver<bool>| async move {
                        let _ = rx.wait_for(|s| *s).await;
                    };
                    for (l, access) in unix {
                        let l = match tokio::net::UnixListener::from_std(l) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready_tx.send(Err(ServerError::Runtime(e.to_string())));
                                return;
                            }
                        };
                        let r = routes(&backends, access, rx.clone());
                        tasks.push(tokio::spawn(logged(
                            r.serve_with_incoming_shutdown(UnixListenerStream::new(l), stop(rx.clone())),
                        )));
                    }
                    if let Some((l, tls, access)) = tcp {
                        let l = match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready_tx.send(Err(ServerError::Runtime(e.to_string())));
                                return;
                            }
                        };
                        let builder = match Server::builder().tls_config(tls) {
                            Ok(b) => b,
                            Err(e) => {
                                let _ = ready_tx.send(Err(ServerError::Tls { message: e.to_string() }));
                                return;
                            }
                        };
                        let b = &backends;
                        let r = builder
                            .http2_keepalive_interval(Some(Duration::from_secs(30)))
                            .add_service(config_server(b, access.clone()))
                            .add_service(FlowsServer::new(FlowsService::new(b.hub.clone(), access.clone(), rx.clone())))
                            .add_service(pb::policy_server::PolicyServer::new(ExplainService::new(
                                b.stats.clone(),
                                access.clone(),
                            )))
                            .add_service(pb::stats_server::StatsServer::new(StatsService::new(
                                b.stats.clone(),
                                b.hub.clone(),
                                b.store.clone(),
                                access,
                            )));
                        tasks.push(tokio::spawn(logged(
                            r.serve_with_incoming_shutdown(TcpListenerStream::new(l), stop(rx.clone())),
                        )));
                    }
                    let _ = ready_tx.send(Ok(()));
                    stop(rx.clone()).await;
                    // Graceful shutdown waits for open streams (a follower never
                    // ends by itself): give them a moment, then drop them.
                    let _ = tokio::time::timeout(Duration::from_millis(500), async {
                        for t in tasks {
                            let _ = t.await;
                        }
                    })
                    .await;
                });
                // Streams still open (a follower) must not hold the process.
                rt.shutdown_timeout(Duration::from_millis(500));
            })
            .map_err(|e| ServerError::Runtime(e.to_string()))?;
        let server = ControlServer { shutdown, thread: Some(thread), sockets, tcp_addr };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ServerError::Runtime("the control thread ended before serving".into())),
        }
    }

    /// The TCP listener's address (useful with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Stops serving and waits for the runtime to end (at most about a second).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
