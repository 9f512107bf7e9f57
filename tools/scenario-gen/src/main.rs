//! `scenario-gen`: writes a load-test scenario as a pcap file and prints a
//! one-line summary. See `docs/lab.md` and `tools/pktgen-scripts/README.md`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use scenario_gen::layer4::{l4_server, L4ServerConfig};
use scenario_gen::net::{IpNet, MacAddr, PortRange};
use scenario_gen::pcap::PcapWriter;
use scenario_gen::scenario::{write_pcap, DEFAULT_FLOWS, PCAP_EPOCH_USEC};
use scenario_gen::tcp_options::FORGED_IDENTITY;
use scenario_gen::{
    Config, ForgedOption, IdentitySigner, Kind, Mix, NoExtraOptions, OsProfile, Scenario, SynOptionHook,
};

#[derive(Parser)]
#[command(
    name = "scenario-gen",
    version,
    about = "Write gateway load-test scenarios as pcap files (classic libpcap, Ethernet, no FCS)",
    after_help = "Frames go from the inside (--src-net, workloads) to the outside (--dst-net): \
replay them into the gateway's inside port, e.g. with DPDK net_pcap \
(--vdev net_pcap0,rx_pcap=FILE,infinite_rx=1) or pktgen -s 0:FILE."
)]
struct Cli {
    #[command(subcommand)]
    scenario: ScenarioCmd,
}

#[derive(Subcommand)]
enum ScenarioCmd {
    /// ACK (64 B) or PSH-ACK data frames, round-robin over --flows flows
    TcpEstablished {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        size: SizeArgs,
        /// Emit one SYN per flow first (extra to --count), so a stateful gateway sees each flow open
        #[arg(long)]
        prelude_syn: bool,
        #[command(flatten)]
        syn: SynArgs,
    },
    /// SYNs from a source range toward a destination range (the gateway's SYN path)
    SynFlood {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        syn: SynArgs,
    },
    /// UDP datagrams toward a destination range (a managed UDP network)
    UdpRequest {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// The layer-4 identity exchange at the server's gateway, in two captures: --output for its
    /// inside port (LEAD established frames from the servers, a SYN-ACK per flow, the rest of the
    /// established frames: meant to loop) and --outside for its outside port (a SYN per flow,
    /// then the client gateway's record on the client's ACK: finite). See src/layer4.rs.
    L4Server {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        size: SizeArgs,
        /// The outside port's capture
        #[arg(long, value_name = "FILE")]
        outside: PathBuf,
        /// The client gateway's key (its policy document or a key file, as for syn-flood)
        #[arg(long, value_name = "FILE", required_unless_present = "no_record")]
        identity_key: Option<PathBuf>,
        /// Bare ACKs instead of records: a client gateway without layer 4 (the flows stay unshifted)
        #[arg(long, conflicts_with = "identity_key")]
        no_record: bool,
    },
    /// Established TCP, SYNs and UDP interleaved by --mix weights
    Mixed {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        size: SizeArgs,
        #[command(flatten)]
        syn: SynArgs,
        /// Weights EST:SYN:UDP
        #[arg(long, default_value = "8:1:1")]
        mix: Mix,
        /// Destination port of the UDP frames (--dst-port is the TCP one)
        #[arg(long, default_value_t = 5001)]
        udp_dst_port: u16,
        /// Emit one SYN per established flow first (extra to --count)
        #[arg(long)]
        prelude_syn: bool,
        /// Destination port of the SYN share (default: --dst-port), e.g. one
        /// the policy rejects, so that each SYN is a rejected connection
        #[arg(long)]
        syn_dst_port: Option<u16>,
    },
}

#[derive(Args)]
struct Common {
    /// Output pcap file ("-" for standard output)
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Frames to write
    #[arg(short, long, default_value_t = 10_000)]
    count: u64,
    /// Flows (default 1024; for syn-flood: every SYN a new flow)
    #[arg(long)]
    flows: Option<u64>,
    /// IPv6 instead of IPv4 (changes the default networks and minimum size)
    #[arg(long)]
    ipv6: bool,
    /// Source network [default: 10.0.0.0/16, or fd00:a::/64 with --ipv6]
    #[arg(long, value_name = "CIDR")]
    src_net: Option<IpNet>,
    /// Destination network [default: 10.1.0.0/24, or fd00:b::/120 with --ipv6]
    #[arg(long, value_name = "CIDR")]
    dst_net: Option<IpNet>,
    /// Source port range
    #[arg(long, default_value = "1024-65535", value_name = "FIRST-LAST")]
    src_ports: PortRange,
    /// Destination port [default: 80 for TCP, 5001 for udp-request]
    #[arg(long)]
    dst_port: Option<u16>,
    #[arg(long, default_value = "02:00:00:00:00:01")]
    src_mac: MacAddr,
    #[arg(long, default_value = "02:00:00:00:00:02")]
    dst_mac: MacAddr,
    /// Seed: the same seed and flags give the same file, byte for byte
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timestamp spacing in frames per second (net_pcap and pktgen ignore it; tcpreplay honours it)
    #[arg(long, default_value_t = 1_000_000)]
    pps: u64,
}

#[derive(Args)]
struct SizeArgs {
    /// Frame size on the wire, FCS included: 64 writes 60-byte frames [default: 64, or 78 with --ipv6]
    #[arg(short, long)]
    size: Option<usize>,
}

#[derive(Args)]
struct SynArgs {
    /// Whose SYN options to imitate: linux (MSS,SACK_PERM,TS,NOP,WS), windows (MSS,NOP,WS,NOP,NOP,SACK_PERM), macos (MSS,NOP,WS,NOP,NOP,TS,SACK_PERM,EOL,EOL)
    #[arg(long, default_value = "linux")]
    os: OsProfile,
    /// Add a forged option KIND:LEN (seeded random value) to every SYN, e.g. the identity option's kind and length
    #[arg(long, value_name = "KIND:LEN")]
    forge_option: Option<ForgedOption>,
    /// Add a forged identity option (kind 253, 20 bytes, ExID 0x4D49, version 1, random key id/identity/MAC): the verify path under attack
    #[arg(long, conflicts_with = "forge_option")]
    forge_identity: bool,
    /// Sign SYNs with valid identity options as the gateway of this key file would: the sending gateway's policy document (its local key, the peer covering --dst-net, the PU covering --src-net) or a key file (key_id, private_key, peer_key_id, peer_public_key, identity; TOML or YAML)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["forge_option", "forge_identity"])]
    identity_key: Option<PathBuf>,
    /// With --identity-key: the workload identity to claim (instead of the file's)
    #[arg(long, requires = "identity_key")]
    identity: Option<u32>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scenario-gen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if let ScenarioCmd::L4Server { common, size, outside, identity_key, no_record: _ } = cli.scenario {
        return run_l4_server(common, size, &outside, identity_key.as_deref());
    }
    let mut syn_port = None;
    let (kind, common, size, syn, mix, udp_port, prelude) = match cli.scenario {
        ScenarioCmd::TcpEstablished { common, size, prelude_syn, syn } => {
            (Kind::TcpEstablished, common, size.size, Some(syn), Mix::default(), None, prelude_syn)
        }
        ScenarioCmd::SynFlood { common, syn } => (Kind::SynFlood, common, None, Some(syn), Mix::default(), None, false),
        ScenarioCmd::UdpRequest { common, size } => {
            (Kind::UdpRequest, common, size.size, None, Mix::default(), None, false)
        }
        ScenarioCmd::Mixed { common, size, syn, mix, udp_dst_port, prelude_syn, syn_dst_port } => {
            syn_port = syn_dst_port;
            (Kind::Mixed, common, size.size, Some(syn), mix, Some(udp_dst_port), prelude_syn)
        }
        ScenarioCmd::L4Server { .. } => unreachable!("handled above"),
    };
    let v6 = common.ipv6;
    let default_net =
        |v4: &str, v6s: &str| -> IpNet { (if v6 { v6s } else { v4 }).parse().expect("valid default network") };
    let src_net = common.src_net.unwrap_or_else(|| default_net("10.0.0.0/16", "fd00:a::/64"));
    let dst_net = common.dst_net.unwrap_or_else(|| default_net("10.1.0.0/24", "fd00:b::/120"));
    if src_net.is_ipv6() != v6 || dst_net.is_ipv6() != v6 {
        return Err(format!(
            "--src-net {src_net} / --dst-net {dst_net} do not match the IP version ({}); use --ipv6 for IPv6 networks",
            if v6 { "--ipv6 given" } else { "IPv4 unless --ipv6" }
        ));
    }
    let (os, hook): (OsProfile, Box<dyn SynOptionHook>) = match syn {
        None => (OsProfile::Linux, Box::new(NoExtraOptions)),
        Some(s) => {
            if let Some(key) = s.identity_key {
                let signer = IdentitySigner::from_file(&key, src_net.host(0), dst_net.host(0), s.identity)
                    .map_err(|e| format!("--identity-key {e}"))?;
                eprintln!(
                    "scenario-gen: SYNs signed with key id {:#08x}, identity {}",
                    signer.key_id(),
                    signer.identity()
                );
                (s.os, Box::new(signer) as Box<dyn SynOptionHook>)
            } else {
                let forged = match (s.forge_option, s.forge_identity) {
                    (Some(f), _) => Some(f),
                    (None, true) => Some(FORGED_IDENTITY.parse::<ForgedOption>()?),
                    (None, false) => None,
                };
                let hook: Box<dyn SynOptionHook> = match forged {
                    Some(f) => Box::new(f.reseed(common.seed)),
                    None => Box::new(NoExtraOptions),
                };
                (s.os, hook)
            }
        }
    };
    let dst_port = common.dst_port.unwrap_or(if kind == Kind::UdpRequest { 5001 } else { 80 });
    let cfg = Config {
        kind,
        src_mac: common.src_mac,
        dst_mac: common.dst_mac,
        src_net,
        dst_net,
        src_ports: common.src_ports,
        tcp_dst_port: dst_port,
        syn_dst_port: syn_port.unwrap_or(dst_port),
        udp_dst_port: udp_port.unwrap_or(dst_port),
        frame_size: size.unwrap_or(if v6 { 78 } else { 64 }),
        flows: match kind {
            Kind::SynFlood => common.flows,
            _ => Some(common.flows.unwrap_or(DEFAULT_FLOWS)),
        },
        count: common.count,
        seed: common.seed,
        os,
        mix,
        prelude_syn: prelude,
    };
    let frame_size = cfg.frame_size;
    let mut scenario = Scenario::new(cfg, hook).map_err(|e| e.to_string())?;

    let to_stdout = common.output.as_os_str() == "-";
    let summary = if to_stdout {
        let out = BufWriter::new(io::stdout().lock());
        write_pcap(&mut scenario, out, common.pps).map_err(|e| e.to_string())?.0
    } else {
        // Write beside the target and rename, so a reader never sees half a file.
        let mut tmp = common.output.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let result = write_pcap(&mut scenario, BufWriter::new(file), common.pps);
        let (summary, out) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e.to_string());
            }
        };
        out.into_inner().map_err(|e| e.to_string())?.sync_all().map_err(|e| e.to_string())?;
        fs::rename(&tmp, &common.output).map_err(|e| format!("renaming {} into place: {e}", tmp.display()))?;
        summary
    };
    let line = format!(
        "scenario-gen: {kind} frames={} bytes={} flows={} size={} ip={} os={os} seed={} -> {}",
        summary.frames,
        summary.bytes,
        summary.flows,
        if kind == Kind::SynFlood { "natural".to_string() } else { frame_size.to_string() },
        if v6 { "v6" } else { "v4" },
        common.seed,
        common.output.display()
    );
    if to_stdout {
        eprintln!("{line}");
    } else {
        println!("{line}");
        io::stdout().flush().ok();
    }
    Ok(())
}

/// `l4-server`: the two captures of the layer-4 exchange (src/layer4.rs).
fn run_l4_server(common: Common, size: SizeArgs, outside: &Path, key: Option<&Path>) -> Result<(), String> {
    let v6 = common.ipv6;
    let net = |given: Option<IpNet>, v4: &str, v6s: &str| -> IpNet {
        given.unwrap_or_else(|| (if v6 { v6s } else { v4 }).parse().expect("valid default network"))
    };
    let src_net = net(common.src_net, "10.0.0.0/16", "fd00:a::/64");
    let dst_net = net(common.dst_net, "10.1.0.0/24", "fd00:b::/120");
    if src_net.is_ipv6() != v6 || dst_net.is_ipv6() != v6 {
        return Err(format!("--src-net {src_net} / --dst-net {dst_net} do not match the IP version (--ipv6)"));
    }
    let signer = match key {
        Some(k) => Some(
            IdentitySigner::from_file(k, src_net.host(0), dst_net.host(0), None)
                .map_err(|e| format!("--identity-key {e}"))?,
        ),
        None => None,
    };
    let cfg = L4ServerConfig {
        src_net,
        dst_net,
        src_ports: common.src_ports,
        dst_port: common.dst_port.unwrap_or(80),
        src_mac: common.src_mac,
        dst_mac: common.dst_mac,
        flows: common.flows.unwrap_or(DEFAULT_FLOWS),
        count: common.count,
        frame_size: size.size.unwrap_or(if v6 { 78 } else { 64 }),
        seed: common.seed,
    };
    let caps = l4_server(&cfg, signer.as_ref()).map_err(|e| e.to_string())?;
    write_frames(&common.output, &caps.inside, common.pps)?;
    write_frames(outside, &caps.outside, common.pps)?;
    println!(
        "scenario-gen: l4-server flows={} inside={} frames ({} established, {} SYN-ACKs) outside={} frames ({} SYNs, {} {}) -> {} {}",
        cfg.flows,
        caps.inside.len(),
        cfg.count,
        cfg.flows,
        caps.outside.len(),
        cfg.flows,
        cfg.flows,
        if signer.is_some() { "records" } else { "bare ACKs" },
        common.output.display(),
        outside.display()
    );
    Ok(())
}

/// Writes `frames` as a pcap file beside its place, then renames it there.
fn write_frames(path: &Path, frames: &[Vec<u8>], pps: u64) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> io::Result<()> {
        let mut w = PcapWriter::new(BufWriter::new(File::create(&tmp)?))?;
        for (n, f) in frames.iter().enumerate() {
            w.write_frame(PCAP_EPOCH_USEC + (n as u128 * 1_000_000 / u128::from(pps.max(1))) as u64, f)?;
        }
        w.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", tmp.display()));
    }
    fs::rename(&tmp, path).map_err(|e| format!("renaming {} into place: {e}", tmp.display()))
}
