//! Fleet mode end to end (issue 12): three real gatewayd processes in
//! network namespaces (tools/topology.sh up fleet), each reaching a real etcd
//! over its management port with TLS client certificates and etcd auth, the
//! operator driving them with `gwctl fleet`. Real kernels, real curl, real
//! captures.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::etcd::{fleet_auth, ClientCert, Cred, Etcd, EtcdCluster, EtcdOptions};
use common::*;

const WEB_C_V4: &str = "198.18.0.5";
const GATEWAYS: [(&str, &str); 3] = [("gw-a", "gwt-a"), ("gw-b", "gwt-b"), ("gw-c", "gwt-c")];

fn gwctl_bin() -> PathBuf {
    Path::new(gatewayd_bin()).with_file_name("gwctl")
}

/// curl from `ns`: (exit code, output).
fn curl(ns: &str, url: &str, max_time: u32) -> (i32, String) {
    let out = in_ns(ns, &format!("curl -sS -g --max-time {max_time} {url}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The operator's side: `gwctl fleet` with its certificate and signing key.
struct Operator {
    endpoints: String,
    cert: ClientCert,
    key: PathBuf,
}

impl Operator {
    fn new(etcd: &EtcdCluster, dir: &Path) -> Operator {
        let key = dir.join("operator.key");
        let out =
            std::process::Command::new(gwctl_bin()).args(["fleet", "keygen", "--out"]).arg(&key).output().unwrap();
        assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
        Operator { endpoints: etcd.endpoints().join(","), cert: etcd.client_cert("operator"), key }
    }

    fn public(&self) -> String {
        let text = std::fs::read_to_string(&self.key).unwrap();
        let secret: [u8; 32] = hex::decode(text.trim()).unwrap().try_into().unwrap();
        hex::encode(ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key().to_bytes())
    }

    fn fleet(&self, args: &[&str]) -> Output {
        std::process::Command::new(gwctl_bin())
            .arg("fleet")
            .args(["--etcd", &self.endpoints])
            .arg("--etcd-ca")
            .arg(&self.cert.ca_file)
            .arg("--etcd-cert")
            .arg(&self.cert.cert_file)
            .arg("--etcd-key")
            .arg(&self.cert.key_file)
            .arg("--signing-key")
            .arg(&self.key)
            .args(args)
            .output()
            .unwrap()
    }

    fn fleet_ok(&self, args: &[&str]) -> String {
        let out = self.fleet(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "gwctl fleet {args:?}: {text}");
        text
    }

    fn apply(&self, dir: &Path, name: &str, yaml: &str) -> Output {
        let f = dir.join(name);
        std::fs::write(&f, yaml).unwrap();
        self.fleet(&["apply", "-f", f.to_str().unwrap()])
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.fleet_ok(&["status", "-o", "json"])).unwrap()
    }
}

/// One gateway of the fleet: its config, PU file and control socket.
struct Member {
    name: &'static str,
    ns: &'static str,
    config: PathBuf,
    pus: PathBuf,
    socket: PathBuf,
    signing_key: String,
}

impl Member {
    fn status(&self) -> serde_json::Value {
        let out = std::process::Command::new(gwctl_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(["status", "-o", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "gwctl status {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn fleet_status(&self) -> serde_json::Value {
        self.status()["fleet"].clone()
    }
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0)
}

/// Writes each gateway's config: the topology's ports, [control], [fleet].
fn members(
    topo: Option<&Topology>,
    etcd: &EtcdCluster,
    dir: &Path,
    operator_key: &str,
    tags: &[&[&str]],
    extra: &str,
) -> Vec<Member> {
    GATEWAYS
        .iter()
        .zip(tags)
        .enumerate()
        .map(|(i, ((name, ns), tags))| {
            let mdir = dir.join(name);
            std::fs::create_dir_all(&mdir).unwrap();
            let mut text = match topo {
                Some(t) => std::fs::read_to_string(t.config(ns, 1, &mdir)).unwrap(),
                None => null_ports(name),
            };
            let cert = etcd.client_cert(name);
            let pus = mdir.join("pus.yaml");
            let socket = mdir.join("gw.sock");
            let networks = match i {
                0 => "[\"198.18.0.1/32\"]",
                1 => "[\"198.18.0.2/32\"]",
                _ => "[\"198.18.0.4/32\", \"198.18.0.5/32\"]",
            };
            let tag_list = tags.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
            text += &format!(
                "[flows]\ncapacity = 65536\n\
                 [control]\nsocket = \"{}\"\nreadonly_socket = \"\"\nstate_dir = \"{}\"\n\
                 [fleet]\nendpoints = [{}]\nname = \"{name}\"\ntags = [{tag_list}]\nnetworks = {networks}\n\
                 processing_units = \"{}\"\noperator_key = \"{operator_key}\"\nlease_ttl_s = 4\n\
                 ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
                socket.display(),
                mdir.join("state").display(),
                etcd.endpoints().iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join(", "),
                pus.display(),
                cert.ca_file.display(),
                cert.cert_file.display(),
                cert.key_file.display(),
            );
            let config = mdir.join("gatewayd.toml");
            std::fs::write(&config, text).unwrap();
            let out =
                std::process::Command::new(gatewayd_bin()).arg("-c").arg(&config).arg("--fleet-key").output().unwrap();
            assert!(out.status.success(), "--fleet-key: {}", String::from_utf8_lossy(&out.stderr));
            let signing_key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Member { name, ns, config, pus, socket, signing_key }
        })
        .collect()
}

/// Ports without a topology: two null devices (control-plane-only tests).
fn null_ports(name: &str) -> String {
    format!(
        "[eal]\nargs = [\"--lcores\", \"0,1\", \"--no-pci\", \"--file-prefix\", \"fleet-{name}\", \"--no-huge\", \"-m\", \"256\", \
         \"--vdev\", \"net_null0\", \"--vdev\", \"net_null1\"]\n\
         [ports]\ninside = \"net_null0\"\noutside = \"net_null1\"\n[[workers]]\nlcore = 1\n"
    )
}

fn enrollment(ms: &[Member]) -> String {
    ms.iter().map(|m| format!("  - {{name: {}, signing_key: {}}}\n", m.name, m.signing_key)).collect()
}

fn fleet_yaml(ms: &[Member], revision: &str, web_ports: &str) -> String {
    format!(
        "revision: {revision}\n\
         gateways:\n{}\
         rulesets:\n\
         \x20 - name: frontend\n\
         \x20   subject: app == frontend\n\
         \x20   outgoing:\n\
         \x20     - {{name: web, action: allow, object: app == web, protocols: [tcp], ports: {web_ports}}}\n\
         \x20 - name: web\n\
         \x20   subject: app == web\n\
         \x20   incoming:\n\
         \x20     - {{name: from-frontend, action: allow, object: app == frontend, protocols: [tcp], ports: {web_ports}}}\n\
         \x20 - name: other\n\
         \x20   subject: app == other\n\
         \x20   outgoing:\n\
         \x20     - {{name: anything, action: allow, object: all(), protocols: [tcp]}}\n\
         profiles:\n\
         \x20 - {{name: lab, managed_tcp_networks: [198.18.0.0/24], excluded_networks: [\"fd00:2544::/64\"]}}\n\
         \x20 - {{name: dmz, managed_tcp_networks: [198.18.0.0/24], excluded_networks: [\"10.0.0.0/8\"]}}\n\
         profile_mappings:\n\
         \x20 - {{name: lab-sites, selector: site == lab, profile: lab}}\n\
         \x20 - {{name: dmz-zones, selector: zone == dmz, profile: dmz}}\n\
         settings: {{key_lead_s: 2, key_overlap_s: 30, peer_grace_s: 60}}\n",
        enrollment(ms)
    )
}

fn write_pus(m: &Member, pus: &[(&str, &str, &str)]) {
    let mut text = String::from("processing_units:\n");
    for (name, tag, addr) in pus {
        text += &format!("  - {{name: {name}, tags: [{tag}], addresses: [{addr}]}}\n");
    }
    // A new file (rename) so that the agent never reads it half written.
    let tmp = m.pus.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &m.pus).unwrap();
}

/// Polls `f` until it holds (every 100 ms) or panics with `what` after `limit`.
fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn etcd_tls(dir: &Path, listen: &str) -> Etcd {
    common::etcd::require_etcd();
    Etcd::start(dir, EtcdOptions { listen: listen.into(), tls: true, ..EtcdOptions::default() })
}

fn stop_all(gws: Vec<Gatewayd>) -> Vec<(String, serde_json::Value)> {
    gws.into_iter().map(|g| g.stop()).collect()
}

#[test]
fn three_gateways_pull_policy_from_etcd() {
    require(&["ip", "ethtool", "curl", "python3", "ss", "tcpdump"]);
    let dir = scratch("e2e-fleet");
    let topo = Topology::up("fleet");
    let mut etcd = etcd_tls(&dir.join("etcd"), MGMT_HOST);
    etcd.enable_auth(&fleet_auth("/igw", &["gw-a", "gw-b", "gw-c"]));
    let op = Operator::new(&etcd, &dir);
    let tags: [&[&str]; 3] = [&["site=lab"], &["site=lab"], &["site=lab"]];
    let ms = members(Some(&topo), &etcd, &dir, &op.public(), &tags, "");
    write_pus(&ms[0], &[("client", "app=frontend", "198.18.0.1")]);
    write_pus(&ms[1], &[("server", "app=web", "198.18.0.2")]);
    write_pus(&ms[2], &[("client-c", "app=other", "198.18.0.4")]);
    let gws: Vec<Gatewayd> = ms.iter().map(|m| Gatewayd::start(Some(m.ns), &m.config, &[])).collect();

    // A broken fleet document: every problem named, nothing written.
    let rev0 = etcd.revision();
    let out = op.apply(
        &dir,
        "broken.yaml",
        &fleet_yaml(&ms, "broken", "[8080]")
            .replace("profile: lab}", "profile: nope}")
            .replace("subject: app == web", "subject: app = = web"),
    );
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("names profile \"nope\", which is not defined") && text.contains("nothing was written"),
        "{text}"
    );
    assert!(text.contains("rulesets"), "the ruleset's selector is named too: {text}");
    // (registrations and PUs may have been written meanwhile: no fleet document is)
    assert!(etcd.etcdctl_ok(&["get", "/igw/fleet/document", "--print-value-only"], None).trim().is_empty(), "{rev0}");

    // Version 1: A's client reaches B's server; C's client is reset by B's policy.
    let web = dir.join("www");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.txt"), "hello fleet\n").unwrap();
    let _http = http_server(&web, "0.0.0.0", 8080);
    op.fleet_ok(&["apply", "-f", {
        std::fs::write(dir.join("v1.yaml"), fleet_yaml(&ms, "v1", "[8080, 9000]")).unwrap();
        dir.join("v1.yaml").to_str().unwrap()
    }]);
    op.fleet_ok(&["wait", "--version", "1", "--timeout", "20"]);
    let (code, out) = curl(CLIENT, "http://198.18.0.2:8080/index.txt", 8);
    assert_eq!((code, out.as_str()), (0, "hello fleet\n"), "A's client to B's server");
    let (code, out) = curl(CLIENT_C, "http://198.18.0.2:8080/index.txt", 8);
    assert!(code == 7 || code == 56, "C's client is reset by B's policy: curl exit {code}: {out}");
    for m in &ms {
        let f = m.fleet_status();
        assert_eq!(
            (f["connected"].as_bool(), u(&f["applied_fleet_version"]), f["profile"].as_str()),
            (Some(true), 1, Some("lab")),
            "{}: {f}",
            m.name
        );
    }

    // A PU added on C by C's own file, reachable from A with no edit anywhere else.
    in_ns(CLIENT_C, &format!("ip addr add {WEB_C_V4}/24 dev eth0"));
    let _web_c = spawn_ns(
        CLIENT_C,
        &["python3", "-m", "http.server", "8080", "--bind", WEB_C_V4, "--directory", web.to_str().unwrap()],
    );
    let ids_before = u(&ms[0].status()["identities"]);
    write_pus(&ms[2], &[("client-c", "app=other", "198.18.0.4"), ("web-c", "app=web", WEB_C_V4)]);
    until(Duration::from_secs(10), "A learns C's new PU", || u(&ms[0].status()["identities"]) == ids_before + 1);
    let (code, out) = curl(CLIENT, &format!("http://{WEB_C_V4}:8080/index.txt"), 8);
    assert_eq!((code, out.as_str()), (0, "hello fleet\n"), "A's client to C's new PU");

    // A ruleset change reaches all three.
    std::fs::write(dir.join("v2.yaml"), fleet_yaml(&ms, "v2", "[8080, 8081, 9000]")).unwrap();
    let out = op.fleet_ok(&["apply", "-f", dir.join("v2.yaml").to_str().unwrap()]);
    assert!(out.contains("fleet version 2 written"), "{out}");
    let out = op.fleet_ok(&["wait", "--version", "2", "--timeout", "20"]);
    assert!(out.contains("applied by all 3 live gateway(s)"), "{out}");
    let st = op.status();
    for g in st["gateways"].as_array().unwrap() {
        assert_eq!(
            (g["alive"].as_bool(), g["applied_fleet_version"].as_u64(), g["lag"].as_u64()),
            (Some(true), Some(2), Some(0)),
            "{g}"
        );
    }

    // A gateway cannot write another's keys: etcd says so.
    let a_cert = etcd.client_cert("gw-a");
    let out = etcd.etcdctl(&["put", "/igw/gateways/gw-b/registration", "x"], Some(Cred::Cert(&a_cert)));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A fleet document altered in etcd after signing is refused by every
    // gateway, which keeps version 2 and says why.
    let value = etcd.etcdctl_ok(&["get", "/igw/fleet/document", "--print-value-only"], None);
    let altered = value.trim().replace("8081", "8082");
    assert_ne!(altered, value.trim());
    let op_cert = etcd.client_cert("operator");
    let out = etcd.etcdctl(&["put", "/igw/fleet/document", &altered], Some(Cred::Cert(&op_cert)));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for m in &ms {
        until(Duration::from_secs(10), &format!("{} reports the altered document", m.name), || {
            let f = m.fleet_status();
            f["unverified_examples"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|e| e.as_str().unwrap_or("").starts_with("/igw/fleet/document: the signature does not verify"))
            })
        });
        let f = m.fleet_status();
        assert_eq!(u(&f["applied_fleet_version"]), 2, "{}: {f}", m.name);
    }
    let (code, _) = curl(CLIENT, "http://198.18.0.2:8080/index.txt", 8);
    assert_eq!(code, 0, "still enforcing version 2");
    // the operator writes a good one again (version 3: the altered one is skipped over)
    op.fleet_ok(&["apply", "--replace", "-f", dir.join("v2.yaml").to_str().unwrap()]);
    op.fleet_ok(&["wait", "--version", "3", "--timeout", "20"]);

    // etcd stopped: every gateway keeps enforcing and says disconnected; back: they resume.
    etcd.stop(0);
    for m in &ms {
        until(Duration::from_secs(20), &format!("{} says disconnected", m.name), || {
            m.fleet_status()["connected"].as_bool() != Some(true)
        });
    }
    let (code, out) = curl(CLIENT, "http://198.18.0.2:8080/index.txt", 8);
    assert_eq!((code, out.as_str()), (0, "hello fleet\n"), "enforcing without etcd");
    let (code, _) = curl(CLIENT_C, "http://198.18.0.2:8080/index.txt", 8);
    assert!(code == 7 || code == 56, "and still rejecting without etcd: {code}");
    etcd.restart(0);
    for m in &ms {
        until(Duration::from_secs(20), &format!("{} reconnects", m.name), || {
            m.fleet_status()["connected"].as_bool() == Some(true)
        });
        assert!(u(&m.fleet_status()["disconnects"]) >= 1);
    }

    // C away (its management link down) while the fleet changes and etcd
    // compacts its history: back, it lists again and converges.
    in_ns("gwt-c", "ip link set mgmt0 down");
    std::fs::write(dir.join("v4.yaml"), fleet_yaml(&ms, "v4", "[8080, 8083, 9000]")).unwrap();
    op.fleet_ok(&["apply", "-f", dir.join("v4.yaml").to_str().unwrap()]);
    op.fleet_ok(&["rotate-key", "gw-a"]); // more history to compact
    etcd.compact();
    in_ns("gwt-c", "ip link set mgmt0 up");
    op.fleet_ok(&["wait", "--version", "4", "--timeout", "40"]);
    let f = ms[2].fleet_status();
    assert!(u(&f["relists"]) + u(&f["disconnects"]) >= 1, "C listed again: {f}");

    let results = stop_all(gws);
    // (stop checked every frame and mbuf was accounted for)
    for ((out, _), m) in results.iter().zip(&ms) {
        assert!(out.contains("gatewayd: fleet: applied fleet version 1"), "{}: {out}", m.name);
    }
    assert!(drops(&results[1].1, "from_outside", "no_match") >= 2, "B rejected C's client: {}", results[1].1);
}

/// A TCP echo server on `port` in the server namespace (one thread per connection).
fn echo_server(port: u16) -> Proc {
    let script = format!(
        "import socket, threading\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', {port})); s.listen(16)\n\
         def serve(c):\n\
         \x20   while True:\n\
         \x20       d = c.recv(4096)\n\
         \x20       if not d: return\n\
         \x20       c.sendall(d)\n\
         while True:\n\
         \x20   c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()\n"
    );
    let p = spawn_ns(SERVER, &["python3", "-c", &script]);
    for _ in 0..100 {
        let out = in_ns(SERVER, &format!("ss -tlnH 'sport = :{port}'"));
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("echo server on {port} did not start");
}

/// Keeps one connection to the echo server for `secs`, a round trip every
/// 200 ms; prints "ok N" at the end, or fails.
fn long_connection(port: u16, secs: u32) -> std::process::Child {
    let script = format!(
        "import socket, time, sys\n\
         c = socket.create_connection(('198.18.0.2', {port}), timeout=5)\n\
         n = 0; end = time.time() + {secs}\n\
         while time.time() < end:\n\
         \x20   c.sendall(b'ping %d' % n)\n\
         \x20   assert c.recv(64) == b'ping %d' % n\n\
         \x20   n += 1; time.sleep(0.2)\n\
         print('ok', n)\n"
    );
    std::process::Command::new("ip")
        .args(["netns", "exec", CLIENT, "python3", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The 24-bit key id of the identity option on the SYNs and SYN-ACKs of a capture.
fn key_ids(frames: &[Vec<u8>], syn_ack: bool, port: u16) -> Vec<[u8; 3]> {
    handshakes(frames)
        .into_iter()
        .filter(|h| h.syn_ack == syn_ack && (if syn_ack { h.src_port } else { h.dst_port }) == port)
        .filter_map(|h| h.option.map(|o| [o[5], o[6], o[7]]))
        .collect()
}

#[test]
fn a_key_rotation_keeps_connections_and_new_ones_use_the_new_key() {
    require(&["ip", "ethtool", "curl", "python3", "ss", "tcpdump"]);
    let dir = scratch("e2e-fleet-rotate");
    let topo = Topology::up("fleet");
    let etcd = etcd_tls(&dir.join("etcd"), MGMT_HOST);
    let op = Operator::new(&etcd, &dir);
    let tags: [&[&str]; 3] = [&["site=lab"], &["site=lab"], &["site=lab"]];
    let ms = members(Some(&topo), &etcd, &dir, &op.public(), &tags, "");
    write_pus(&ms[0], &[("client", "app=frontend", "198.18.0.1")]);
    write_pus(&ms[1], &[("server", "app=web", "198.18.0.2")]);
    write_pus(&ms[2], &[]);
    let gws: Vec<Gatewayd> = ms.iter().map(|m| Gatewayd::start(Some(m.ns), &m.config, &[])).collect();
    std::fs::write(dir.join("v1.yaml"), fleet_yaml(&ms, "v1", "[8080, 9000]")).unwrap();
    op.fleet_ok(&["apply", "-f", dir.join("v1.yaml").to_str().unwrap()]);
    op.fleet_ok(&["wait", "--version", "1", "--timeout", "20"]);
    let key_ids_of = |gw: &str| -> Vec<u64> {
        let st = op.status();
        let g = st["gateways"].as_array().unwrap().iter().find(|g| g["name"] == gw).unwrap().clone();
        g["key_ids"].as_array().unwrap().iter().map(|k| k.as_u64().unwrap()).collect()
    };
    let old = key_ids_of("gw-b");
    assert_eq!(old.len(), 1, "{old:?}");
    let web = dir.join("www");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.txt"), "hello fleet\n").unwrap();
    let _http = http_server(&web, "0.0.0.0", 8080);
    let _echo = echo_server(9000);
    let cap = Capture::start("gwt-wire", "br0", "tcp[tcpflags] & tcp-syn != 0", &dir.join("wire.pcap"));
    let (code, _) = curl(CLIENT, "http://198.18.0.2:8080/index.txt", 8);
    assert_eq!(code, 0, "before the rotation");

    // A connection open across the rotation (lead 2 s) and well past it.
    let conn = long_connection(9000, 8);
    std::thread::sleep(Duration::from_millis(500));
    op.fleet_ok(&["rotate-key", "gw-b"]);
    until(Duration::from_secs(10), "gw-b publishes its new key", || key_ids_of("gw-b").len() == 2);
    let new = *key_ids_of("gw-b").iter().find(|k| !old.contains(k)).unwrap();
    std::thread::sleep(Duration::from_secs(3)); // past the new key's not_before
    let (code, out) = curl(CLIENT, "http://198.18.0.2:8080/index.txt", 8);
    assert_eq!((code, out.as_str()), (0, "hello fleet\n"), "a new connection after the rotation");
    let out = conn.wait_with_output().unwrap();
    assert!(out.status.success(), "the connection open across the rotation: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok "), "{}", String::from_utf8_lossy(&out.stdout));

    let frames = cap.stop();
    let syn_acks = key_ids(&frames, true, 8080);
    assert_eq!(syn_acks.len(), 2, "two SYN-ACKs from B on 8080: {syn_acks:?}");
    let sender = |k: [u8; 3]| u64::from(u16::from_be_bytes([k[0], k[1]]));
    assert_eq!(sender(syn_acks[0]), old[0], "before: B signs with its old key");
    assert_eq!(sender(syn_acks[1]), new, "after: B signs with its new key");
    let syns = key_ids(&frames, false, 8080);
    assert_eq!(syns.len(), 2, "{syns:?}");
    assert_eq!(
        (u64::from(syns[0][2]), u64::from(syns[1][2])),
        (old[0] & 0xff, new & 0xff),
        "A signs towards B's old, then new key"
    );
    let results = stop_all(gws);
    assert!(results[1].0.contains(&format!("gatewayd: fleet: rotating to key id {new}")), "{}", results[1].0);
}

/// Control-plane-only gateways (null ports): profiles and a three-member etcd.
#[test]
fn a_gateway_matching_two_profile_mappings_refuses_naming_both_and_fails_closed() {
    let dir = scratch("e2e-fleet-profiles");
    let etcd = etcd_tls(&dir.join("etcd"), "127.0.0.1");
    let op = Operator::new(&etcd, &dir);
    let tags: [&[&str]; 3] = [&["site=lab"], &["site=lab", "zone=dmz"], &["zone=dmz"]];
    let ms = members(None, &etcd, &dir, &op.public(), &tags, "");
    for m in &ms {
        write_pus(m, &[("pu", "app=web", "198.18.0.9")]);
    }
    let gws: Vec<Gatewayd> = ms.iter().map(|m| Gatewayd::start(None, &m.config, &[])).collect();
    std::fs::write(dir.join("v1.yaml"), fleet_yaml(&ms, "v1", "[8080]")).unwrap();
    op.fleet_ok(&["apply", "-f", dir.join("v1.yaml").to_str().unwrap()]);
    let out = op.fleet(&["wait", "--version", "1", "--timeout", "10"]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "gw-b refuses: {text}");
    assert!(text.contains("gw-b (refused: this gateway's tags [site=lab, zone=dmz] match 2 profile mappings (\"lab-sites\" and \"dmz-zones\")"), "{text}");
    assert!(!text.contains("gw-a") && !text.contains("gw-c"), "{text}");
    let st = ms[1].status();
    assert_eq!(st["state"], "no_config_fail_closed", "{st}");
    let problem = st["last_refused"]["errors"][0]["message"].as_str().unwrap_or("").to_owned();
    assert!(problem.contains("\"lab-sites\" and \"dmz-zones\""), "{st}");
    assert_eq!(ms[0].fleet_status()["profile"], "lab");
    assert_eq!(ms[2].fleet_status()["profile"], "dmz");
    stop_all(gws);
}

#[test]
fn gateways_fail_over_between_etcd_members_without_missing_an_update() {
    common::etcd::require_etcd();
    let dir = scratch("e2e-fleet-cluster");
    let mut etcd = EtcdCluster::start(&dir.join("etcd"), 3, EtcdOptions { tls: true, ..EtcdOptions::default() });
    let op = Operator::new(&etcd, &dir);
    let tags: [&[&str]; 3] = [&["site=lab"], &["site=lab"], &["site=lab"]];
    let ms = members(None, &etcd, &dir, &op.public(), &tags, "");
    for (i, m) in ms.iter().enumerate() {
        write_pus(m, &[("pu", "app=web", &format!("198.18.0.{}", 10 + i))]);
    }
    let gws: Vec<Gatewayd> = ms.iter().map(|m| Gatewayd::start(None, &m.config, &[])).collect();
    std::fs::write(dir.join("v1.yaml"), fleet_yaml(&ms, "v1", "[8080]")).unwrap();
    op.fleet_ok(&["apply", "-f", dir.join("v1.yaml").to_str().unwrap()]);
    op.fleet_ok(&["wait", "--version", "1", "--timeout", "20"]);
    // The leader goes away; a change made while it is down reaches everyone.
    let leader = etcd.wait_leader();
    etcd.kill(leader);
    std::fs::write(dir.join("v2.yaml"), fleet_yaml(&ms, "v2", "[8080, 8081]")).unwrap();
    let mut last;
    let t0 = Instant::now();
    while !{
        let out = op.fleet(&["apply", "-f", dir.join("v2.yaml").to_str().unwrap()]);
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.success()
    } {
        assert!(t0.elapsed() < Duration::from_secs(20), "the apply goes through the remaining members: {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
    op.fleet_ok(&["wait", "--version", "2", "--timeout", "30"]);
    for m in &ms {
        let f = m.fleet_status();
        assert_eq!((u(&f["applied_fleet_version"]), f["connected"].as_bool()), (2, Some(true)), "{}: {f}", m.name);
    }
    etcd.restart(leader);
    for (out, _) in stop_all(gws) {
        assert!(out.contains("applied fleet version 2"), "{out}");
    }
}
