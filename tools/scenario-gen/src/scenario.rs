//! The scenarios: which frames, over which flows, in which order.
//!
//! Traffic flows from the *inside* (workloads, `src_net`) toward the
//! *outside* (`dst_net`): replay a file into the gateway's inside port.
//! Everything is derived from the seed, so a file is reproducible.

use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;
use std::str::FromStr;

use crate::frame::{
    self, tcp_flags, Envelope, FrameError, TcpHeader, FCS_LEN, MIN_FRAME_LEN, TCP_HDR_LEN, UDP_HDR_LEN,
};
use crate::net::{IpNet, MacAddr, PortRange};
use crate::pcap::PcapWriter;
use crate::rng::{self, Rng};
use crate::tcp_options::{self, OsProfile, SynInfo, SynOptionHook};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ACK (minimum-size frames) or PSH-ACK data segments, round-robin
    /// over `flows` flows.
    TcpEstablished,
    /// SYNs, by default each from a new flow (source address and port).
    SynFlood,
    /// UDP datagrams, round-robin over `flows` flows.
    UdpRequest,
    /// The three above, interleaved by `mix` weights.
    Mixed,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::TcpEstablished => "tcp-established",
            Kind::SynFlood => "syn-flood",
            Kind::UdpRequest => "udp-request",
            Kind::Mixed => "mixed",
        })
    }
}

/// Relative weights of established TCP, SYN and UDP frames in `mixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub established: u32,
    pub syn: u32,
    pub udp: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { established: 8, syn: 1, udp: 1 }
    }
}

impl FromStr for Mix {
    type Err = String;
    /// `EST:SYN:UDP`, e.g. `8:1:1`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || format!("mix {s:?}: expected three weights EST:SYN:UDP, e.g. 8:1:1");
        if parts.len() != 3 {
            return Err(bad());
        }
        let w: Vec<u32> = parts.iter().map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        if w.iter().all(|&x| x == 0) {
            return Err(format!("mix {s:?}: at least one weight must be non-zero"));
        }
        Ok(Mix { established: w[0], syn: w[1], udp: w[2] })
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub kind: Kind,
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_net: IpNet,
    pub dst_net: IpNet,
    pub src_ports: PortRange,
    pub tcp_dst_port: u16,
    /// Destination port of the SYNs of `syn-flood` and of `mixed`'s SYN
    /// share (the prelude SYNs open established flows: `tcp_dst_port`).
    pub syn_dst_port: u16,
    pub udp_dst_port: u16,
    /// Frame size on the wire, FCS included (64 means a 60-byte frame).
    /// Applies to established TCP and UDP frames; SYNs have their natural size.
    pub frame_size: usize,
    /// Established TCP and UDP flows; for `syn-flood`, how many distinct
    /// SYN tuples to cycle through (`None`: every SYN a new flow).
    pub flows: Option<u64>,
    /// Frames to generate (not counting the prelude SYNs).
    pub count: u64,
    pub seed: u64,
    pub os: OsProfile,
    pub mix: Mix,
    /// Emit one SYN per established flow before the data frames, so a
    /// stateful gateway sees each flow open.
    pub prelude_syn: bool,
}

pub const DEFAULT_FLOWS: u64 = 1024;

#[derive(Debug)]
pub enum ScenarioError {
    /// The configuration cannot produce this scenario; the message says why.
    Config(String),
    Frame(FrameError),
    Io(io::Error),
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Config(m) => f.write_str(m),
            ScenarioError::Frame(e) => write!(f, "building a frame: {e}"),
            ScenarioError::Io(e) => write!(f, "writing the pcap: {e}"),
        }
    }
}

impl std::error::Error for ScenarioError {}

impl From<FrameError> for ScenarioError {
    fn from(e: FrameError) -> Self {
        ScenarioError::Frame(e)
    }
}

impl From<io::Error> for ScenarioError {
    fn from(e: io::Error) -> Self {
        ScenarioError::Io(e)
    }
}

// Independent random streams derived from the seed.
const STREAM_OFFSETS: u64 = 1;
const STREAM_DST: u64 = 2;
const STREAM_ISN: u64 = 3;
const STREAM_IPID: u64 = 4;
const STREAM_PAYLOAD: u64 = 5;
const STREAM_MIX: u64 = 6;
const STREAM_TS: u64 = 7;

/// One flow's addresses and running TCP state.
#[derive(Clone, Debug)]
struct Flow {
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    seq: u32,
    ack: u32,
    ip_id: u16,
    flow_label: u32,
}

/// Maps flow indices to distinct (source address, source port) pairs and
/// a seeded destination.
struct FlowSpace {
    src_net: IpNet,
    dst_net: IpNet,
    src_ports: PortRange,
    off_host: u64,
    off_port: u64,
    seed: u64,
}

impl FlowSpace {
    fn capacity(&self) -> u64 {
        self.src_net.host_count().saturating_mul(self.src_ports.len())
    }

    fn flow(&self, index: u64) -> Flow {
        let hosts = self.src_net.host_count();
        let h = rng::derive(self.seed ^ STREAM_DST, index);
        Flow {
            src: self.src_net.host((index % hosts + self.off_host) % hosts),
            src_port: self.src_ports.nth(index / hosts + self.off_port),
            dst: self.dst_net.host(h % self.dst_net.host_count()),
            seq: rng::derive(self.seed ^ STREAM_ISN, index) as u32,
            ack: (rng::derive(self.seed ^ STREAM_ISN, !index) as u32) | 1,
            ip_id: rng::derive(self.seed ^ STREAM_IPID, index) as u16,
            flow_label: (h >> 32) as u32 & 0x000F_FFFF,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub frames: u64,
    /// Frame bytes without FCS (what the pcap records hold).
    pub bytes: u64,
    /// Distinct flows (5-tuples) among the frames.
    pub flows: u64,
}

/// A frame source: call [`Scenario::next_frame`] until it returns `None`.
pub struct Scenario {
    cfg: Config,
    hook: Box<dyn SynOptionHook>,
    space: FlowSpace,
    tcp_flows: Vec<Flow>,
    udp_flows: Vec<Flow>,
    syn_flows: u64,
    syn_base: u64,
    payload: Vec<u8>,
    tcp_payload_len: usize,
    udp_payload_len: usize,
    mix_rng: Rng,
    ts_base: u32,
    prelude_left: usize,
    produced: u64,
    next_tcp: usize,
    next_udp: usize,
    syns: u64,
    tcp_frames: u64,
    udp_frames: u64,
    bytes: u64,
}

impl Scenario {
    pub fn new(cfg: Config, hook: Box<dyn SynOptionHook>) -> Result<Self, ScenarioError> {
        let cerr = |m: String| Err(ScenarioError::Config(m));
        let v6 = cfg.src_net.is_ipv6();
        if v6 != cfg.dst_net.is_ipv6() {
            return cerr(format!(
                "--src-net {} and --dst-net {} are of different IP versions",
                cfg.src_net, cfg.dst_net
            ));
        }
        if cfg.frame_size < MIN_FRAME_LEN + FCS_LEN {
            return cerr(format!("frame size {} is below the Ethernet minimum of 64 (FCS included)", cfg.frame_size));
        }
        let frame_len = cfg.frame_size - FCS_LEN;
        let uses_tcp_data =
            matches!(cfg.kind, Kind::TcpEstablished) || (cfg.kind == Kind::Mixed && cfg.mix.established > 0);
        let uses_udp = matches!(cfg.kind, Kind::UdpRequest) || (cfg.kind == Kind::Mixed && cfg.mix.udp > 0);
        let tcp_hdr = frame::header_len(v6, TCP_HDR_LEN);
        let udp_hdr = frame::header_len(v6, UDP_HDR_LEN);
        let ip = if v6 { "IPv6" } else { "IPv4" };
        if uses_tcp_data && frame_len < tcp_hdr {
            return cerr(format!(
                "frame size {} is too small for {ip}+TCP: the minimum is {}",
                cfg.frame_size,
                tcp_hdr + FCS_LEN
            ));
        }
        if uses_udp && frame_len < udp_hdr {
            return cerr(format!(
                "frame size {} is too small for {ip}+UDP: the minimum is {}",
                cfg.frame_size,
                udp_hdr + FCS_LEN
            ));
        }
        if cfg.frame_size > 9018 {
            return cerr(format!("frame size {} is above 9018 (a 9000-byte MTU jumbo frame)", cfg.frame_size));
        }
        // A minimum-size frame carries a bare ACK, padded (what real ACKs
        // look like); larger frames carry data up to the requested size.
        let tcp_payload_len = if frame_len <= MIN_FRAME_LEN { 0 } else { frame_len - tcp_hdr };
        let udp_payload_len = frame_len.saturating_sub(udp_hdr);

        let mut offsets = Rng::new(rng::derive(cfg.seed, STREAM_OFFSETS));
        let space = FlowSpace {
            src_net: cfg.src_net,
            dst_net: cfg.dst_net,
            src_ports: cfg.src_ports,
            off_host: offsets.below(cfg.src_net.host_count()),
            off_port: offsets.below(cfg.src_ports.len()),
            seed: cfg.seed,
        };
        let capacity = space.capacity();
        let flows = cfg.flows.unwrap_or(DEFAULT_FLOWS);
        if flows == 0 {
            return cerr("--flows must be at least 1".into());
        }
        let (n_tcp, n_udp, syn_base, syn_flows) = match cfg.kind {
            Kind::TcpEstablished => (flows, 0, 0, 0),
            Kind::UdpRequest => (0, flows, 0, 0),
            Kind::SynFlood => {
                let n = cfg.flows.unwrap_or(cfg.count.max(1)).min(capacity);
                (0, 0, 0, n)
            }
            Kind::Mixed => {
                let n_tcp = if cfg.mix.established > 0 || cfg.prelude_syn { flows } else { 0 };
                let n_udp = if cfg.mix.udp > 0 { flows } else { 0 };
                // SYN flows come after the established ones, so a SYN never
                // lands on a flow that is mid-stream.
                (n_tcp, n_udp, n_tcp, capacity.saturating_sub(n_tcp))
            }
        };
        let needed = n_tcp.max(n_udp);
        if needed > capacity || (cfg.kind == Kind::Mixed && cfg.mix.syn > 0 && syn_flows == 0) {
            let plus = if cfg.kind == Kind::Mixed { " plus at least one SYN flow" } else { "" };
            return cerr(format!(
                "{needed} flows{plus} do not fit in {} source hosts x {} source ports: widen --src-net or --src-ports",
                cfg.src_net.host_count(),
                cfg.src_ports.len()
            ));
        }
        if n_tcp.max(n_udp) > 50_000_000 {
            return cerr(format!("{} flows is more than this tool keeps in memory (50M)", n_tcp.max(n_udp)));
        }
        let tcp_flows = (0..n_tcp).map(|i| space.flow(i)).collect();
        let udp_flows = (0..n_udp).map(|i| space.flow(i)).collect();
        let mut payload = vec![0u8; frame_len];
        Rng::new(rng::derive(cfg.seed, STREAM_PAYLOAD)).fill(&mut payload);
        let prelude_left = if cfg.prelude_syn && n_tcp > 0 { n_tcp as usize } else { 0 };
        Ok(Scenario {
            mix_rng: Rng::new(rng::derive(cfg.seed, STREAM_MIX)),
            ts_base: rng::derive(cfg.seed, STREAM_TS) as u32,
            hook,
            space,
            tcp_flows,
            udp_flows,
            syn_flows,
            syn_base,
            payload,
            tcp_payload_len,
            udp_payload_len,
            prelude_left,
            produced: 0,
            next_tcp: 0,
            next_udp: 0,
            syns: 0,
            tcp_frames: 0,
            udp_frames: 0,
            bytes: 0,
            cfg,
        })
    }

    /// The next frame (without FCS), or `None` when the scenario is done.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ScenarioError> {
        let f = if self.prelude_left > 0 {
            let i = self.tcp_flows.len() - self.prelude_left;
            self.prelude_left -= 1;
            let flow = self.tcp_flows[i].clone();
            // The SYN's sequence number is one below the first data byte.
            let isn = flow.seq.wrapping_sub(1);
            self.tcp_flows[i].ip_id = flow.ip_id.wrapping_add(1);
            self.syn_frame(&flow, isn, self.cfg.tcp_dst_port)?
        } else if self.produced < self.cfg.count {
            self.produced += 1;
            match self.pick() {
                Pick::Tcp => self.tcp_frame()?,
                Pick::Syn => {
                    let index = self.syn_base + self.syns % self.syn_flows;
                    self.syns += 1;
                    let flow = self.space.flow(index);
                    self.syn_frame(&flow, flow.seq, self.cfg.syn_dst_port)?
                }
                Pick::Udp => self.udp_frame()?,
            }
        } else {
            return Ok(None);
        };
        self.bytes += f.len() as u64;
        Ok(Some(f))
    }

    /// Frames, bytes and distinct flows so far.
    pub fn summary(&self) -> Summary {
        let prelude = self.prelude_done();
        let tcp = prelude.max(self.tcp_frames.min(self.tcp_flows.len() as u64));
        Summary {
            frames: prelude + self.produced,
            bytes: self.bytes,
            flows: tcp + self.udp_frames.min(self.udp_flows.len() as u64) + self.syns.min(self.syn_flows),
        }
    }

    fn prelude_done(&self) -> u64 {
        if self.cfg.prelude_syn {
            (self.tcp_flows.len() - self.prelude_left) as u64
        } else {
            0
        }
    }

    fn pick(&mut self) -> Pick {
        match self.cfg.kind {
            Kind::TcpEstablished => Pick::Tcp,
            Kind::SynFlood => Pick::Syn,
            Kind::UdpRequest => Pick::Udp,
            Kind::Mixed => {
                let m = self.cfg.mix;
                let r = self.mix_rng.below(u64::from(m.established) + u64::from(m.syn) + u64::from(m.udp));
                if r < u64::from(m.established) {
                    Pick::Tcp
                } else if r < u64::from(m.established) + u64::from(m.syn) {
                    Pick::Syn
                } else {
                    Pick::Udp
                }
            }
        }
    }

    fn envelope(&self, flow: &Flow, ttl: u8) -> Envelope {
        Envelope {
            src_mac: self.cfg.src_mac,
            dst_mac: self.cfg.dst_mac,
            src: flow.src,
            dst: flow.dst,
            ttl,
            ip_id: flow.ip_id,
            flow_label: flow.flow_label,
        }
    }

    fn tcp_frame(&mut self) -> Result<Vec<u8>, ScenarioError> {
        let i = self.next_tcp;
        self.next_tcp = (i + 1) % self.tcp_flows.len();
        self.tcp_frames += 1;
        let n = self.tcp_payload_len;
        let flow = &self.tcp_flows[i];
        let env = self.envelope(flow, 64);
        let flags = if n > 0 { tcp_flags::PSH | tcp_flags::ACK } else { tcp_flags::ACK };
        let hdr = TcpHeader {
            src_port: flow.src_port,
            dst_port: self.cfg.tcp_dst_port,
            seq: flow.seq,
            ack: flow.ack,
            flags,
            window: 502,
            options: &[],
        };
        let f = frame::tcp_frame(&env, &hdr, &self.payload[..n])?;
        let flow = &mut self.tcp_flows[i];
        flow.seq = flow.seq.wrapping_add(n as u32);
        flow.ip_id = flow.ip_id.wrapping_add(1);
        Ok(f)
    }

    fn syn_frame(&mut self, flow: &Flow, isn: u32, dst_port: u16) -> Result<Vec<u8>, ScenarioError> {
        let os = self.cfg.os;
        let mss = if flow.src.is_ipv6() { 1440 } else { 1460 };
        let tsval = self.ts_base.wrapping_add((self.produced + self.syns) as u32);
        let base = os.syn_options(mss, tsval);
        let info = SynInfo {
            src: flow.src,
            dst: flow.dst,
            src_port: flow.src_port,
            dst_port,
            seq: isn,
            os,
            os_options: &base,
        };
        let extra = self.hook.extra_options(&info);
        let options = tcp_options::with_extra_options(&base, &extra)?;
        let hdr = TcpHeader {
            src_port: flow.src_port,
            dst_port,
            seq: isn,
            ack: 0,
            flags: tcp_flags::SYN,
            window: os.syn_window(),
            options: &options,
        };
        Ok(frame::tcp_frame(&self.envelope(flow, os.ttl()), &hdr, &[])?)
    }

    fn udp_frame(&mut self) -> Result<Vec<u8>, ScenarioError> {
        let i = self.next_udp;
        self.next_udp = (i + 1) % self.udp_flows.len();
        self.udp_frames += 1;
        let flow = &self.udp_flows[i];
        let env = self.envelope(flow, 64);
        let f = frame::udp_frame(&env, flow.src_port, self.cfg.udp_dst_port, &self.payload[..self.udp_payload_len])?;
        self.udp_flows[i].ip_id = self.udp_flows[i].ip_id.wrapping_add(1);
        Ok(f)
    }
}

enum Pick {
    Tcp,
    Syn,
    Udp,
}

/// First timestamp in written files: 2023-11-14T22:13:20Z (fixed, so files
/// are byte-for-byte reproducible).
pub const PCAP_EPOCH_USEC: u64 = 1_700_000_000 * 1_000_000;

/// Runs a scenario to the end into a pcap stream, stamping frames `pps`
/// frames per second apart.
pub fn write_pcap<W: Write>(scenario: &mut Scenario, out: W, pps: u64) -> Result<(Summary, W), ScenarioError> {
    if pps == 0 {
        return Err(ScenarioError::Config("--pps must be at least 1".into()));
    }
    let mut w = PcapWriter::new(out)?;
    let mut n: u64 = 0;
    while let Some(f) = scenario.next_frame()? {
        let ts = PCAP_EPOCH_USEC + (u128::from(n) * 1_000_000 / u128::from(pps)) as u64;
        w.write_frame(ts, &f)?;
        n += 1;
    }
    let out = w.finish()?;
    Ok((scenario.summary(), out))
}
