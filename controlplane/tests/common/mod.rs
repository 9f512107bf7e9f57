//! Support for tests that run the real gatewayd: pcap files, network
//! namespaces and the gateway process. Everything here drives real parts
//! (the EAL, af_packet, kernel TCP stacks); nothing is mocked.
#![allow(dead_code)]

pub mod etcd;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn gatewayd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gatewayd")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gw-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}

/// Fails the test with a clear message when something it needs is missing:
/// these tests exist to run against the real thing, so they never skip.
pub fn require(cmds: &[&str]) {
    assert!(is_root(), "this test needs root (namespaces, hugepages, af_packet); run it via tools/run-tests.sh");
    for c in cmds {
        let ok = Command::new("sh").arg("-c").arg(format!("command -v {c}")).output().map(|o| o.status.success());
        assert!(matches!(ok, Ok(true)), "{c} is not installed; tools/setup.sh installs it");
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Reads a classic libpcap file (either byte order, µs or ns) into frames.
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
        .read_to_end(&mut data)
        .unwrap();
    assert!(data.len() >= 24, "{} is not a pcap file", path.display());
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        m => panic!("{}: bad pcap magic {m:#x}", path.display()),
    };
    let rd = |b: &[u8]| {
        let a: [u8; 4] = b.try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut off = 24;
    let mut frames = Vec::new();
    while off + 16 <= data.len() {
        let incl = rd(&data[off + 8..off + 12]) as usize;
        off += 16;
        assert!(off + incl <= data.len(), "{}: truncated record", path.display());
        frames.push(data[off..off + incl].to_vec());
        off += incl;
    }
    frames
}

pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let f = std::fs::File::create(path).expect("creating pcap");
    let mut w = scenario_gen::pcap::PcapWriter::new(std::io::BufWriter::new(f)).expect("pcap header");
    for (i, fr) in frames.iter().enumerate() {
        w.write_frame(i as u64, fr).expect("pcap record");
    }
    w.finish().expect("flushing pcap");
}

/// Runs a command, returning its output.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

/// Runs a shell command inside a namespace.
pub fn in_ns(ns: &str, script: &str) -> Output {
    run("ip", &["netns", "exec", ns, "sh", "-c", script])
}

/// The namespaces of tools/topology.sh, torn down on drop.
pub struct Topology {
    pub kind: &'static str,
}

pub const CLIENT: &str = "gwt-client";
pub const SERVER: &str = "gwt-server";
pub const CLIENT_V4: &str = "198.18.0.1";
pub const SERVER_V4: &str = "198.18.0.2";
pub const SERVER_V6: &str = "fd00:2544::2";
/// The fleet topology's third workload, behind gateway C.
pub const CLIENT_C: &str = "gwt-client-c";
pub const CLIENT_C_V4: &str = "198.18.0.4";
/// The fleet topology's management network: the root namespace's end
/// (bridge `gwmgmt`), where a fleet test's etcd listens...
pub const MGMT_HOST: &str = "10.254.0.1";
/// ...and each gateway namespace's address on its `mgmt0`.
pub const MGMT_GATEWAYS: [(&str, &str); 3] =
    [("gwt-a", "10.254.0.11"), ("gwt-b", "10.254.0.12"), ("gwt-c", "10.254.0.13")];

impl Topology {
    pub fn up(kind: &'static str) -> Topology {
        let out = run("bash", &[repo_root().join("tools/topology.sh").to_str().unwrap(), "up", kind]);
        assert!(out.status.success(), "topology up {kind}: {}", String::from_utf8_lossy(&out.stderr));
        Topology { kind }
    }

    /// A gatewayd.toml for the gateway in namespace `ns`.
    pub fn config(&self, ns: &str, workers: u32, dir: &Path) -> PathBuf {
        let out =
            run("bash", &[repo_root().join("tools/topology.sh").to_str().unwrap(), "config", ns, &workers.to_string()]);
        assert!(out.status.success(), "topology config: {}", String::from_utf8_lossy(&out.stderr));
        let path = dir.join(format!("{ns}.toml"));
        std::fs::write(&path, out.stdout).unwrap();
        path
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = run("bash", &[repo_root().join("tools/topology.sh").to_str().unwrap(), "down"]);
    }
}

/// A gatewayd process (optionally in a namespace), stopped with SIGINT.
pub struct Gatewayd {
    child: Option<Child>,
    output: Arc<Mutex<String>>,
    pub counters: PathBuf,
}

impl Gatewayd {
    /// Starts gatewayd and waits until it says it is running.
    pub fn start(ns: Option<&str>, config: &Path, extra: &[&str]) -> Gatewayd {
        let counters = config.with_extension("counters.json");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, gatewayd_bin()]);
                c
            }
            None => Command::new(gatewayd_bin()),
        };
        cmd.arg("--config").arg(config).arg("--counters-json").arg(&counters).args(extra);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawning gatewayd");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        ] {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let mut gw = Gatewayd { child: Some(child), output, counters };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if gw.output().contains("gatewayd: running") {
                return gw;
            }
            if let Some(status) = gw.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("gatewayd exited ({status}) before running:\n{}", gw.output());
            }
            assert!(Instant::now() < deadline, "gatewayd did not start in 30 s:\n{}", gw.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The process id (gatewayd itself when started without a namespace).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Sends SIGINT, waits for the exit, and returns (output, final counters).
    pub fn stop(self) -> (String, serde_json::Value) {
        let _ = run("kill", &["-INT", &self.child.as_ref().unwrap().id().to_string()]);
        self.exit_within(Duration::from_secs(20), "of SIGINT")
    }

    /// SIGKILL: no handler runs, nothing is flushed. Returns the output so far.
    pub fn kill9(mut self) -> String {
        let mut c = self.child.take().unwrap();
        let _ = c.kill();
        let _ = c.wait();
        std::thread::sleep(Duration::from_millis(100)); // let the reader threads finish
        self.output()
    }

    /// Waits for a gatewayd started with `--duration` to stop by itself.
    pub fn wait_exit(self) -> (String, serde_json::Value) {
        self.exit_within(Duration::from_secs(60), "(--duration)")
    }

    fn exit_within(mut self, limit: Duration, what: &str) -> (String, serde_json::Value) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gatewayd did not stop within {limit:?} {what}:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100)); // let the reader threads finish
        let out = self.output();
        assert!(status.success(), "gatewayd exited with {status}:\n{out}");
        let text = std::fs::read_to_string(&self.counters)
            .unwrap_or_else(|e| panic!("reading {}: {e}\n{out}", self.counters.display()));
        let counters: serde_json::Value = serde_json::from_str(&text).expect("counters are JSON");
        // Every stop of every test: each frame received was sent, dropped,
        // consumed or is still held (frames the gateway made counted in), and
        // every mbuf is back in the pool.
        for dir in ["from_inside", "from_outside"] {
            assert_eq!(counters["unaccounted"][dir], 0, "frames {dir} not accounted for:\n{out}");
        }
        assert_eq!(counters["mbufs"]["in_use"], 0, "mbufs not back in the pool after the stop:\n{out}");
        (out, counters)
    }
}

impl Drop for Gatewayd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = run("kill", &["-INT", &c.id().to_string()]);
            std::thread::sleep(Duration::from_millis(500));
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sum of a per-worker counter, e.g. `("from_inside", "tx_packets")`.
pub fn worker_sum(counters: &serde_json::Value, dir: &str, field: &str) -> u64 {
    counters["workers"].as_array().expect("workers").iter().map(|w| w[dir][field].as_u64().unwrap()).sum()
}

/// A packet capture with tcpdump on one interface of a namespace, written to
/// a pcap file and read back with [`read_pcap`] when stopped.
///
/// Why it is done this way (captures used to come back empty): tcpdump links
/// libpcap with TPACKET_V3, whose kernel ring hands packets to user space one
/// *block* at a time, when a block fills or its timeout (tcpdump's 1 s
/// buffer timeout) expires. A tcpdump stopped less than a second after a short
/// exchange exits on SIGINT with the packets still in an unretired block: its
/// stderr says "0 packets captured, N packets received by filter" and the file
/// holds only the pcap header. `-U` does not help (the packets never reached
/// tcpdump). `--immediate-mode` makes libpcap deliver every packet as it
/// arrives. Start-up is also awaited (the "listening on" line), and the stop
/// is a SIGINT followed by a wait, so tcpdump closes the file itself.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    what: String,
    stderr: Arc<Mutex<String>>,
}

impl Capture {
    /// Starts tcpdump in namespace `ns` on interface `iface` (a veth, a bridge
    /// port or the bridge itself, `any` for all) with an optional BPF `filter`
    /// (`""`: everything), writing `file`; returns once it listens.
    pub fn start(ns: &str, iface: &str, filter: &str, file: &Path) -> Capture {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "tcpdump", "--immediate-mode", "-U", "-n", "-Z", "root", "-i", iface, "-w"])
            .arg(file);
        if !filter.is_empty() {
            cmd.args(filter.split_whitespace());
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning tcpdump: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            // Reads to the end, so tcpdump never blocks on a full pipe.
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let what = format!("tcpdump in {ns} on {iface}");
        let mut cap = Capture { child: Some(child), file: file.to_path_buf(), what, stderr };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if cap.stderr().contains("listening on") {
                return cap;
            }
            if let Some(status) = cap.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited ({status}) before listening:\n{}", cap.what, cap.stderr());
            }
            assert!(Instant::now() < deadline, "{} did not start listening in 15 s:\n{}", cap.what, cap.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stops tcpdump with SIGINT, waits for it to close the file, and returns
    /// the frames. Fails if the file holds fewer frames than tcpdump says it
    /// captured; notes on stderr when the kernel counted more than it captured.
    pub fn stop(mut self) -> Vec<Vec<u8>> {
        let mut child = self.child.take().unwrap();
        let _ = run("kill", &["-INT", &child.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not stop within 10 s of SIGINT:\n{}", self.what, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // tcpdump prints its totals on the way out; give the reader a moment.
        let count = |s: &str, what: &str| {
            s.lines().find(|l| l.ends_with(what)).and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        };
        let mut err = self.stderr();
        for _ in 0..50 {
            if count(&err, "packets captured").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            err = self.stderr();
        }
        let frames = read_pcap(&self.file);
        if let Some(captured) = count(&err, "packets captured") {
            assert!(
                frames.len() as u64 >= captured,
                "{}: {} frames in the file, {captured} captured:\n{err}",
                self.what,
                frames.len()
            );
        }
        if let (Some(c), Some(r)) = (count(&err, "packets captured"), count(&err, "packets received by filter")) {
            if r > c {
                eprintln!("{}: {r} packets received by the filter, {c} captured (in flight at the stop)", self.what);
            }
        }
        frames
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = run("kill", &["-INT", &c.id().to_string()]);
            for _ in 0..100 {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Appends a policy file, a flow log and a flow-table size to the gatewayd
/// config `tools/topology.sh` writes for `ns`; returns (config, flow log).
pub fn gw_config_with_policy(topo: &Topology, ns: &str, dir: &Path, policy: &Path) -> (PathBuf, PathBuf) {
    let cfg = topo.config(ns, 1, dir);
    let flowlog = dir.join(format!("{ns}.flows.jsonl"));
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += &format!(
        "[policy]\nfile = \"{}\"\n[flowlog]\nfile = \"{}\"\n[flows]\ncapacity = 65536\n",
        policy.display(),
        flowlog.display()
    );
    std::fs::write(&cfg, text).unwrap();
    (cfg, flowlog)
}

/// The flow events a gatewayd wrote to its JSON-lines flow log: each line's
/// `flow` object (the shape `gwctl observe -o json` prints, controlplane::flowjson).
pub fn flows(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("a flow event is a JSON object");
            v["flow"].take()
        })
        .collect()
}

/// A drop reason's count summed over workers, for one direction (`from_inside`/`from_outside`).
pub fn drops(counters: &serde_json::Value, dir: &str, reason: &str) -> u64 {
    counters["workers"].as_array().unwrap().iter().map(|w| w[dir]["drops"][reason].as_u64().unwrap()).sum()
}

/// A note's count summed over workers, for one direction.
pub fn notes(counters: &serde_json::Value, dir: &str, note: &str) -> u64 {
    counters["workers"].as_array().unwrap().iter().map(|w| w[dir]["notes"][note].as_u64().unwrap()).sum()
}

/// A helper process (server, client, capture reader) stopped on drop: woken if
/// it was stopped, asked to exit with SIGINT, then killed.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = run("kill", &["-CONT", &self.0.id().to_string()]);
        let _ = run("kill", &["-INT", &self.0.id().to_string()]);
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `args` inside namespace `ns`, output discarded.
/// `python3 -m http.server` in the server namespace on `bind`:`port`,
/// serving `dir`; returns once it listens.
pub fn http_server(dir: &Path, bind: &str, port: u16) -> Proc {
    let p = spawn_ns(
        SERVER,
        &["python3", "-m", "http.server", &port.to_string(), "--bind", bind, "--directory", dir.to_str().unwrap()],
    );
    for _ in 0..100 {
        let out = in_ns(SERVER, &format!("ss -tlnH 'sport = :{port}'"));
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("http server on {port} did not start");
}

pub fn spawn_ns(ns: &str, args: &[&str]) -> Proc {
    let c = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning");
    Proc(c)
}

/// A SYN or SYN-ACK seen in a capture.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub syn_ack: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    /// The 20 bytes of the identity option (kind 253, ExID 0x4D49), if present.
    pub option: Option<Vec<u8>>,
    /// The IP datagram (from the IP header on).
    pub ip: Vec<u8>,
}

/// The SYNs and SYN-ACKs among captured frames, their TCP options walked.
pub fn handshakes(frames: &[Vec<u8>]) -> Vec<Handshake> {
    frames
        .iter()
        .filter_map(|f| {
            let i = dataplane::wire::parse_frame(f).ok()?;
            if i.tcp_flags & dataplane::wire::tcp::flags::SYN == 0 {
                return None;
            }
            let o = usize::from(i.tcp_opts_offset);
            let opts = &f[o..o + usize::from(i.tcp_opts_len)];
            let option = dataplane::wire::tcp::options(opts).find_map(|r| match r {
                Ok((off, dataplane::wire::tcp::TcpOption::Experimental { kind: 253, exid: 0x4d49, .. })) => {
                    Some(opts[off..off + 20].to_vec())
                }
                _ => None,
            });
            Some(Handshake {
                syn_ack: i.tcp_flags & dataplane::wire::tcp::flags::ACK != 0,
                src_port: i.src_port,
                dst_port: i.dst_port,
                seq: i.seq,
                option,
                ip: f[usize::from(i.l3_offset)..].to_vec(),
            })
        })
        .collect()
}
