//! Real etcd members for the fleet tests: one member or a static cluster of
//! several on this machine, each its own `etcd` process with its own client
//! and peer ports, data dir and log file, driven with `etcdctl` (API v3).
//!
//! With TLS, a test CA (rcgen) signs a server certificate per member, used
//! for client and peer traffic alike (peers authenticate each other with it),
//! and client certificates on demand; etcd runs with `--client-cert-auth`,
//! so every client presents one, and once auth is enabled a certificate's CN
//! is the etcd user it acts as. The harness acts as `root` (CN=root) unless
//! told otherwise.
//!
//! Ports come from 20000..32000, below Linux's ephemeral range, so outgoing
//! connections never take them; each is checked free by binding it, and a
//! start that still loses a race ("address already in use") is retried on
//! fresh ports. Tests using this harness can run in parallel.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use super::run;

/// How long a member may take to answer after it is started.
const START_LIMIT: Duration = Duration::from_secs(15);
/// Every etcdctl run is killed after this long (a watch that never ends, a
/// cluster without quorum).
const ETCDCTL_LIMIT: &str = "30";
/// A key nobody writes: the harness reads it to probe members and revisions.
const PROBE_KEY: &str = "gw-harness/probe";

#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// The address members listen on for clients and peers (default
    /// 127.0.0.1; the fleet topology's management bridge is 10.254.0.1).
    pub listen: String,
    /// `--quota-backend-bytes`: past it etcd raises NOSPACE and refuses writes.
    pub quota_bytes: Option<u64>,
    /// TLS for clients (`--client-cert-auth`) and peers, from a test CA.
    pub tls: bool,
    /// Further etcd flags, e.g. `--auto-compaction-retention=1`.
    pub extra_args: Vec<String>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions { listen: "127.0.0.1".into(), quota_bytes: None, tls: false, extra_args: Vec::new() }
    }
}

/// A client certificate signed by the harness CA; `cn` is the etcd user it
/// authenticates as once auth is enabled.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cn: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

/// Whom an etcdctl run acts as.
#[derive(Clone, Copy, Debug)]
pub enum Cred<'a> {
    /// The user named by the certificate's CN.
    Cert(&'a ClientCert),
    /// `--user name:password` (with TLS, over a certificate that names no user).
    Password(&'a str, &'a str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    Read,
    Write,
    ReadWrite,
}

impl Perm {
    fn as_str(self) -> &'static str {
        match self {
            Perm::Read => "read",
            Perm::Write => "write",
            Perm::ReadWrite => "readwrite",
        }
    }
}

/// What a permission covers: one key, or every key that starts with a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keys {
    Key(String),
    Prefix(String),
}

#[derive(Clone, Debug)]
pub struct RoleSpec {
    pub name: String,
    pub perms: Vec<(Perm, Keys)>,
}

#[derive(Clone, Debug)]
pub struct UserSpec {
    pub name: String,
    /// None: no password (`--no-password`); the user authenticates by certificate.
    pub password: Option<String>,
    pub roles: Vec<String>,
}

/// Roles and users for [`EtcdCluster::enable_auth`]. `root` (with the root
/// role) is added when the spec does not name it.
#[derive(Clone, Debug, Default)]
pub struct AuthSpec {
    pub roles: Vec<RoleSpec>,
    pub users: Vec<UserSpec>,
}

impl AuthSpec {
    pub fn user_mut(&mut self, name: &str) -> &mut UserSpec {
        self.users.iter_mut().find(|u| u.name == name).unwrap_or_else(|| panic!("no user {name} in the spec"))
    }
}

/// The fleet's roles under `prefix` (e.g. `/igw`):
/// - `fleet-operator` (user `operator`): readwrite `P/fleet/`, readwrite
///   `P/gateways/` (garbage collection), read `P/`;
/// - `fleet-gw-<name>` (user `<name>`, per gateway): read `P/`, readwrite
///   `P/gateways/<name>/`, readwrite `P/alloc/` (fleet-wide counters).
///
/// No passwords: the users authenticate by certificate CN (set
/// [`AuthSpec::user_mut`]`(..).password` for the password path).
pub fn fleet_auth(prefix: &str, gateways: &[&str]) -> AuthSpec {
    let p = prefix.trim_end_matches('/');
    let pre = |s: &str| Keys::Prefix(format!("{p}/{s}"));
    let mut roles = vec![RoleSpec {
        name: "fleet-operator".into(),
        perms: vec![(Perm::ReadWrite, pre("fleet/")), (Perm::ReadWrite, pre("gateways/")), (Perm::Read, pre(""))],
    }];
    let mut users = vec![UserSpec { name: "operator".into(), password: None, roles: vec!["fleet-operator".into()] }];
    for gw in gateways {
        let role = format!("fleet-gw-{gw}");
        roles.push(RoleSpec {
            name: role.clone(),
            perms: vec![
                (Perm::Read, pre("")),
                (Perm::ReadWrite, pre(&format!("gateways/{gw}/"))),
                (Perm::ReadWrite, pre("alloc/")),
            ],
        });
        users.push(UserSpec { name: gw.to_string(), password: None, roles: vec![role] });
    }
    AuthSpec { roles, users }
}

/// Fails the test with a clear message when etcd is not installed.
pub fn require_etcd() {
    for c in ["etcd", "etcdctl", "timeout"] {
        let ok = Command::new("sh").arg("-c").arg(format!("command -v {c}")).output().map(|o| o.status.success());
        assert!(matches!(ok, Ok(true)), "{c} is not installed; tools/setup.sh installs it (etcd-server, etcd-client)");
    }
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The test CA, and the certificates it writes under `dir`.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
    file: PathBuf,
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        let dir = dir.join("certs");
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "etcd test CA");
        let cert = p.self_signed(&key).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, cert.pem()).unwrap();
        Ca { cert, key, dir, file }
    }

    /// Writes `<name>.pem` and `<name>.key` (mode 0600); returns their paths.
    fn leaf(&self, name: &str, cn: &str, sans: &[&str], ekus: Vec<ExtendedKeyUsagePurpose>) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = ekus;
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let (c, k) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&k).unwrap();
        f.write_all(key.serialize_pem().as_bytes()).unwrap();
        (c, k)
    }

    fn client(&self, cn: &str) -> ClientCert {
        let (cert_file, key_file) =
            self.leaf(&format!("client-{cn}"), cn, &[], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        ClientCert { cn: cn.into(), cert_file, key_file, ca_file: self.file.clone() }
    }

    /// A member's certificate: it serves clients and peers, and is the client
    /// side of its own connections to peers.
    fn server(&self, member: &str, listen: &str) -> (PathBuf, PathBuf) {
        let ekus = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let mut sans = vec!["127.0.0.1", "localhost"];
        if !sans.contains(&listen) {
            sans.push(listen);
        }
        self.leaf(&format!("server-{member}"), member, &sans, ekus)
    }
}

struct Tls {
    ca: Ca,
    /// The harness's own identity: CN=root.
    root: ClientCert,
    /// A certificate that names no user, for `--user` runs.
    nobody: ClientCert,
}

impl Tls {
    fn new(dir: &Path) -> Tls {
        let ca = Ca::new(dir);
        let (root, nobody) = (ca.client("root"), ca.client("harness-nobody"));
        Tls { ca, root, nobody }
    }
}

/// `n` ports free on `ip`, from 20000..32000, distinct within this process.
fn free_ports(ip: IpAddr, n: usize) -> Vec<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const BASE: u32 = 20000;
    const SPAN: u32 = 12000;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..2000 {
        if ports.len() == n {
            return ports;
        }
        let port = (BASE + seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if let Ok(l) = TcpListener::bind((ip, port)) {
            held.push(l);
            ports.push(port);
        }
    }
    panic!("no {n} free ports on {ip} in {BASE}..{}: is the address configured here?", BASE + SPAN);
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A static etcd cluster of `n` members on this machine (one member is a
/// cluster too: see [`Etcd`]). Members are numbered from 0; dropping the
/// cluster kills them all.
pub struct EtcdCluster {
    dir: PathBuf,
    opts: EtcdOptions,
    token: String,
    members: Vec<Member>,
    tls: Option<Tls>,
    /// Without TLS, the harness's root password once auth is enabled.
    root_password: Mutex<Option<String>>,
}

impl EtcdCluster {
    /// Starts `n` members (data dirs `m<i>.etcd` and logs `m<i>.log` under
    /// `dir`, certificates under `dir/certs`) and returns once each answers a
    /// linearizable read.
    pub fn start(dir: &Path, n: usize, opts: EtcdOptions) -> EtcdCluster {
        require_etcd();
        assert!(n >= 1, "a cluster has at least one member");
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let ip: IpAddr = opts.listen.parse().unwrap_or_else(|e| panic!("listen address {:?}: {e}", opts.listen));
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: 0,
                peer_port: 0,
                data_dir: dir.join(format!("m{i}.etcd")),
                log: dir.join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let tls = opts.tls.then(|| Tls::new(dir));
        let mut c = EtcdCluster {
            dir: dir.to_path_buf(),
            opts,
            token: String::new(),
            members,
            tls,
            root_password: Mutex::new(None),
        };
        let mut failures = Vec::new();
        for _ in 0..3 {
            static CLUSTERS: AtomicU32 = AtomicU32::new(0);
            c.token = format!("gw-test-{}-{}", std::process::id(), CLUSTERS.fetch_add(1, Ordering::Relaxed));
            let ports = free_ports(ip, 2 * n);
            for (i, m) in c.members.iter_mut().enumerate() {
                (m.client_port, m.peer_port) = (ports[2 * i], ports[2 * i + 1]);
                let _ = std::fs::remove_dir_all(&m.data_dir);
            }
            (0..n).for_each(|i| c.launch(i));
            match (0..n).try_for_each(|i| c.try_wait_ready(i)) {
                Ok(()) => return c,
                Err(e) if e.contains("address already in use") => {
                    (0..n).for_each(|i| c.kill(i));
                    failures.push(e);
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("etcd lost the race for its ports three times:\n{}", failures.join("\n\n"));
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Client URLs of all members, running or not (`https://127.0.0.1:23791`).
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", host_port(&self.opts.listen, self.members[i].client_port))
    }

    /// The CA that signed the members' and clients' certificates (TLS only).
    pub fn ca_file(&self) -> PathBuf {
        self.tls().ca.file.clone()
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }

    pub fn log_file(&self, i: usize) -> &Path {
        &self.members[i].log
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// A client certificate whose CN is `cn`, the etcd user it acts as once
    /// auth is enabled (TLS only). Files `certs/client-<cn>.{pem,key}`.
    pub fn client_cert(&self, cn: &str) -> ClientCert {
        self.tls().ca.client(cn)
    }

    fn tls(&self) -> &Tls {
        self.tls.as_ref().expect("this etcd runs without TLS (EtcdOptions::tls)")
    }

    /// SIGKILL to member `i` (nothing flushed, no goodbye to its peers).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to member `i`, and waits up to 10 s for it to exit.
    pub fn stop(&mut self, i: usize) {
        let Some(mut c) = self.members[i].child.take() else { return };
        let _ = run("kill", &["-TERM", &c.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("etcd {} did not stop within 10 s of SIGTERM:\n{}", self.members[i].name, self.log_tail(i));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a stopped or killed member again (same data dir, same ports)
    /// and waits until it answers, which needs a quorum of the cluster.
    pub fn restart(&mut self, i: usize) {
        self.launch(i);
        self.wait_ready(i);
    }

    /// Starts member `i` without waiting (several members of a cluster that
    /// lost quorum must be launched before any can answer; then [`Self::wait_ready`]).
    pub fn launch(&mut self, i: usize) {
        assert!(!self.is_running(i), "etcd {} is already running", self.members[i].name);
        let args = self.args(i);
        let m = &mut self.members[i];
        let mut log = OpenOptions::new().create(true).append(true).open(&m.log).unwrap();
        writeln!(log, "=== harness: etcd {}", args.join(" ")).unwrap();
        let child = Command::new("etcd")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning etcd: {e}"));
        m.child = Some(child);
    }

    /// Waits until member `i` answers a linearizable read (as root), up to
    /// 15 s; fails with the log tails of members that exited or did not answer.
    pub fn wait_ready(&mut self, i: usize) {
        if let Err(e) = self.try_wait_ready(i) {
            panic!("{e}");
        }
    }

    fn try_wait_ready(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            for (j, m) in self.members.iter_mut().enumerate() {
                let Some(c) = m.child.as_mut() else { continue };
                if let Some(status) = c.try_wait().unwrap() {
                    m.child = None;
                    let waiting = if j == i { String::new() } else { format!(" while waiting for m{i}") };
                    let (name, log) = (&m.name, m.log.display());
                    return Err(format!("etcd {name} exited ({status}){waiting}; {log}:\n{}", tail(&m.log, 30)));
                }
            }
            let out = self.run_etcdctl(&[self.endpoint(i)], &["get", PROBE_KEY], None, "3s");
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd {} did not answer within {START_LIMIT:?} (last etcdctl: {}); {}:\n{}",
                    self.members[i].name,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.members[i].log.display(),
                    self.log_tail(i)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last 30 lines of member `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        tail(&self.members[i].log, 30)
    }

    fn args(&self, i: usize) -> Vec<String> {
        let o = &self.opts;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let m = &self.members[i];
        let peer = |m: &Member| format!("{scheme}://{}", host_port(&o.listen, m.peer_port));
        let initial: Vec<String> = self.members.iter().map(|m| format!("{}={}", m.name, peer(m))).collect();
        let mut a = vec![
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data_dir.display()),
            format!("--listen-client-urls={}", self.endpoint(i)),
            format!("--advertise-client-urls={}", self.endpoint(i)),
            format!("--listen-peer-urls={}", peer(m)),
            format!("--initial-advertise-peer-urls={}", peer(m)),
            format!("--initial-cluster={}", initial.join(",")),
            format!("--initial-cluster-token={}", self.token),
            "--initial-cluster-state=new".into(),
            "--logger=zap".into(),
        ];
        if let Some(q) = o.quota_bytes {
            a.push(format!("--quota-backend-bytes={q}"));
        }
        if let Some(t) = &self.tls {
            let (cert, key) = t.ca.server(&m.name, &o.listen);
            let (cert, key, ca) = (cert.display(), key.display(), t.ca.file.display());
            a.extend([
                format!("--cert-file={cert}"),
                format!("--key-file={key}"),
                format!("--trusted-ca-file={ca}"),
                "--client-cert-auth".into(),
                format!("--peer-cert-file={cert}"),
                format!("--peer-key-file={key}"),
                format!("--peer-trusted-ca-file={ca}"),
                "--peer-client-cert-auth".into(),
            ]);
        }
        a.extend(o.extra_args.iter().cloned());
        a
    }

    /// etcdctl (API v3) against the running members, with the TLS flags.
    /// `who`: None is the harness itself, root (by its CN=root certificate,
    /// or without TLS by the root password once auth is enabled).
    pub fn etcdctl(&self, args: &[&str], who: Option<Cred>) -> Output {
        self.run_etcdctl(&self.running_endpoints(), args, who, "10s")
    }

    /// etcdctl against member `i` only.
    pub fn etcdctl_at(&self, i: usize, args: &[&str], who: Option<Cred>) -> Output {
        self.run_etcdctl(&[self.endpoint(i)], args, who, "10s")
    }

    /// [`Self::etcdctl`] that must succeed; returns its stdout.
    pub fn etcdctl_ok(&self, args: &[&str], who: Option<Cred>) -> String {
        let out = self.etcdctl(args, who);
        assert!(
            out.status.success(),
            "etcdctl {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// etcdctl inside network namespace `ns` (a gateway's, reaching the
    /// members over the fleet topology's management network), against the
    /// running members.
    pub fn etcdctl_in(&self, ns: &str, args: &[&str], who: Option<Cred>) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        self.etcdctl_command(cmd, &self.running_endpoints(), args, who, "10s")
    }

    /// The flags that make a bare `etcdctl` talk to `endpoints` as `who`
    /// (endpoints, `--cacert/--cert/--key`, `--user`), for tests that run it
    /// some other way. ETCDCTL_API=3 is etcdctl 3.4's default.
    pub fn etcdctl_flags(&self, endpoints: &[String], who: Option<Cred>) -> Vec<String> {
        let mut flags = vec![format!("--endpoints={}", endpoints.join(","))];
        let cert = match (&self.tls, who) {
            (Some(_), Some(Cred::Cert(c))) => Some(c),
            (Some(t), Some(Cred::Password(..))) => Some(&t.nobody),
            (Some(t), None) => Some(&t.root),
            (None, Some(Cred::Cert(c))) => panic!("a client certificate ({}) for an etcd without TLS", c.cn),
            (None, _) => None,
        };
        if let Some(c) = cert {
            flags.push(format!("--cacert={}", c.ca_file.display()));
            flags.push(format!("--cert={}", c.cert_file.display()));
            flags.push(format!("--key={}", c.key_file.display()));
        }
        match who {
            Some(Cred::Password(user, password)) => flags.push(format!("--user={user}:{password}")),
            None if self.tls.is_none() => {
                if let Some(pw) = self.root_password.lock().unwrap().as_ref() {
                    flags.push(format!("--user=root:{pw}"));
                }
            }
            _ => {}
        }
        flags
    }

    fn running_endpoints(&self) -> Vec<String> {
        let eps: Vec<String> = (0..self.len()).filter(|&i| self.is_running(i)).map(|i| self.endpoint(i)).collect();
        assert!(!eps.is_empty(), "no etcd member is running");
        eps
    }

    fn run_etcdctl(&self, endpoints: &[String], args: &[&str], who: Option<Cred>, timeout: &str) -> Output {
        self.etcdctl_command(Command::new("env"), endpoints, args, who, timeout)
    }

    /// `wrapper` (a command to prefix, e.g. `ip netns exec NS`) running
    /// etcdctl under `timeout`, with the flags for `endpoints` and `who`.
    fn etcdctl_command(
        &self,
        mut wrapper: Command,
        endpoints: &[String],
        args: &[&str],
        who: Option<Cred>,
        timeout: &str,
    ) -> Output {
        wrapper.args(["timeout", "-k", "5", ETCDCTL_LIMIT, "etcdctl", "--dial-timeout=3s"]);
        wrapper.arg(format!("--command-timeout={timeout}")).args(self.etcdctl_flags(endpoints, who)).args(args);
        wrapper.env("ETCDCTL_API", "3");
        for var in ["ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY", "ETCDCTL_USER"] {
            wrapper.env_remove(var);
        }
        wrapper.output().unwrap_or_else(|e| panic!("running etcdctl: {e}"))
    }

    /// Creates the spec's roles and users, `root` with the root role (with no
    /// password under TLS, where its certificate names it; else with the
    /// spec's password or a generated one the harness keeps), then `auth enable`.
    pub fn enable_auth(&self, spec: &AuthSpec) {
        let mut users = spec.users.clone();
        if !users.iter().any(|u| u.name == "root") {
            let password = self.tls.is_none().then(|| format!("root-{}", std::process::id()));
            users.push(UserSpec { name: "root".into(), password, roles: vec![] });
        }
        let root = users.iter_mut().find(|u| u.name == "root").unwrap();
        assert!(self.tls.is_some() || root.password.is_some(), "without TLS, root needs a password");
        if !root.roles.iter().any(|r| r == "root") {
            root.roles.push("root".into());
        }
        let root_password = root.password.clone();
        for role in &spec.roles {
            self.etcdctl_ok(&["role", "add", &role.name], None);
            for (perm, keys) in &role.perms {
                let (key, prefix) = match keys {
                    Keys::Key(k) => (k, false),
                    Keys::Prefix(p) => (p, true),
                };
                let prefix = format!("--prefix={prefix}");
                self.etcdctl_ok(&["role", "grant-permission", &prefix, &role.name, perm.as_str(), key], None);
            }
        }
        for u in &users {
            match &u.password {
                Some(pw) => self.etcdctl_ok(&["user", "add", &format!("{}:{pw}", u.name), "--interactive=false"], None),
                None => self.etcdctl_ok(&["user", "add", &u.name, "--no-password"], None),
            };
            for r in &u.roles {
                self.etcdctl_ok(&["user", "grant-role", &u.name, r], None);
            }
        }
        self.etcdctl_ok(&["auth", "enable"], None);
        if self.tls.is_none() {
            *self.root_password.lock().unwrap() = root_password;
        }
    }

    /// Member `i`'s raft ID and the leader it follows (0: none), from
    /// `endpoint status`; None when it does not answer.
    fn status(&self, i: usize) -> Option<(u64, u64)> {
        let out = self.run_etcdctl(&[self.endpoint(i)], &["endpoint", "status", "-w", "json"], None, "3s");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let st = &v[0]["Status"];
        Some((st["header"]["member_id"].as_u64()?, st["leader"].as_u64()?))
    }

    /// Member `i`'s raft ID (hex in etcdctl's `member list`).
    pub fn member_id(&self, i: usize) -> u64 {
        self.status(i).unwrap_or_else(|| panic!("etcd m{i} does not answer endpoint status:\n{}", self.log_tail(i))).0
    }

    /// Waits (up to 15 s) until every running member follows the same
    /// leader and that leader is one of them; returns its index. A put that
    /// reaches a follower while its leader is dead is lost and times out
    /// ("etcdserver: request timed out"), as with any etcd client: wait for
    /// this after killing a member when the next write must succeed.
    pub fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(i)).collect();
            let seen: Vec<Option<(u64, u64)>> = running.iter().map(|&i| self.status(i)).collect();
            if let Some(Some((_, leader))) = seen.first() {
                let agree = seen.iter().all(|s| matches!(s, Some((_, l)) if l == leader));
                let at = seen.iter().position(|s| matches!(s, Some((id, _)) if id == leader));
                if let (true, Some(at)) = (agree, at) {
                    return running[at];
                }
            }
            assert!(Instant::now() < deadline, "the running members {running:?} agree on no leader: {seen:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Hands leadership to member `i` (`etcdctl move-leader`) and waits until
    /// the running members follow it.
    pub fn move_leader(&self, i: usize) {
        if self.wait_leader() == i {
            return;
        }
        self.etcdctl_ok(&["move-leader", &format!("{:x}", self.member_id(i))], None);
        let deadline = Instant::now() + START_LIMIT;
        while self.wait_leader() != i {
            assert!(Instant::now() < deadline, "m{i} did not become the leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The cluster's current revision (the header of a read, as root).
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl_ok(&["get", PROBE_KEY, "-w", "json"], None);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl get -w json: {e}: {out}"));
        v["header"]["revision"].as_i64().unwrap_or_else(|| panic!("no header.revision in {out}"))
    }

    /// Compacts at the current revision, waiting until the compaction is
    /// applied (`--physical`); returns the revision.
    pub fn compact(&self) -> i64 {
        let rev = self.revision();
        self.etcdctl_ok(&["compact", &rev.to_string(), "--physical"], None);
        rev
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Kills every member. The data dirs (each holds a 64 MB preallocated WAL)
/// go too unless the test is failing; the logs and certificates stay.
impl Drop for EtcdCluster {
    fn drop(&mut self) {
        (0..self.members.len()).for_each(|i| self.kill(i));
        if !std::thread::panicking() {
            for m in &self.members {
                let _ = std::fs::remove_dir_all(&m.data_dir);
            }
        }
    }
}

/// One etcd member: an [`EtcdCluster`] of one, with all its methods (member 0).
pub struct Etcd(EtcdCluster);

impl Etcd {
    pub fn start(dir: &Path, opts: EtcdOptions) -> Etcd {
        Etcd(EtcdCluster::start(dir, 1, opts))
    }
}

impl Deref for Etcd {
    type Target = EtcdCluster;
    fn deref(&self) -> &EtcdCluster {
        &self.0
    }
}

impl DerefMut for Etcd {
    fn deref_mut(&mut self) -> &mut EtcdCluster {
        &mut self.0
    }
}
