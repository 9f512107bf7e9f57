//! `l4-server`: the layer-4 identity exchange (docs/identity-l4.md) as the
//! server's gateway sees it, in two captures for its two ports, so that a
//! gateway fed by DPDK `net_pcap` takes every flow through the real exchange
//! and then forwards shifted established frames (`benches/engine.sh
//! est-l4-1k`).
//!
//! The server's gateway is the side of the exchange a capture can complete:
//! everything its peer's frames carry is chosen in advance. The client's SYN
//! and the server's SYN-ACK carry the two ISNs (both chosen here), and the
//! client gateway's record binds the flow and those ISNs, signed with the
//! client gateway's key (`--identity-key`, as `syn-flood` signs SYNs). The
//! gateway verifies it, sends its own record back (which nobody needs to
//! answer) and the flow is shifted from then on. Nothing here depends on a
//! choice the gateway makes.
//!
//! - **outside** (finite): one SYN per flow (client → server, Linux options,
//!   no identity option), then the client's ACK per flow carrying the client
//!   gateway's record (or, with `--no-record`, a bare ACK: a client gateway
//!   without layer 4, after which the flow is plain: the comparison).
//! - **inside** (meant to loop, `infinite_rx`): `LEAD` established frames
//!   (server → client), the server's SYN-ACK per flow, then the rest of the
//!   established frames, round-robin over the flows.
//!
//! Order across the two ports: a worker polls inside then outside, one
//! burst (at most `LEAD`) each, and `net_pcap` gives full bursts (always
//! when looping; until the end of the file otherwise). So inside frame `p`
//! is handled in poll round `p / burst`, outside frame `q` in round
//! `q / burst`, after the inside's burst of that round. The SYN-ACK of flow
//! `j` (inside `LEAD + j`) therefore comes at least one round after its SYN
//! (outside `j`), and the record (outside `flows + j`, `flows >= LEAD`) in
//! the round of its SYN-ACK or later. On later passes over the inside
//! capture each SYN-ACK is a retransmission on an established flow (passed
//! on); the `LEAD` frames of the first pass meet no flow yet (dropped,
//! `no_flow_state_from_peer`).

use std::net::IpAddr;

use dataplane::identity::l4::{context, Binding};
use dataplane::identity::mac;
use dataplane::wire::Addr;

use crate::frame::{self, tcp_flags, Envelope, TcpHeader, FCS_LEN, MIN_FRAME_LEN, TCP_HDR_LEN};
use crate::identity::IdentitySigner;
use crate::net::{IpNet, MacAddr, PortRange};
use crate::rng;
use crate::scenario::ScenarioError;
use crate::tcp_options::OsProfile;

/// Established frames before the first SYN-ACK on the inside: the largest
/// receive burst of gatewayd (`dpdk_bindings::burst::MAX_BURST`), so each
/// SYN-ACK comes a full poll round after its SYN at any burst size.
pub const LEAD: usize = 64;

const STREAM_ISN_C: u64 = 11;
const STREAM_ISN_S: u64 = 12;

/// What to write.
#[derive(Clone, Debug)]
pub struct L4ServerConfig {
    /// The clients (behind the peer gateway) and the servers (our PU).
    pub src_net: IpNet,
    pub dst_net: IpNet,
    pub src_ports: PortRange,
    pub dst_port: u16,
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub flows: u64,
    /// Established frames on the inside (besides the SYN-ACKs).
    pub count: u64,
    /// Frame size of the established frames, FCS included.
    pub frame_size: usize,
    pub seed: u64,
}

/// The two captures, frames without FCS.
#[derive(Clone, Debug, Default)]
pub struct L4Captures {
    pub inside: Vec<Vec<u8>>,
    pub outside: Vec<Vec<u8>>,
}

/// One flow: the client and server ends and their ISNs.
struct Flow {
    client: IpAddr,
    server: IpAddr,
    client_port: u16,
    isn_c: u32,
    isn_s: u32,
}

fn addr(a: IpAddr) -> Addr {
    match a {
        IpAddr::V4(v) => Addr::V4(v.octets()),
        IpAddr::V6(v) => Addr::V6(v.octets()),
    }
}

/// The two captures; `signer` (the client gateway's key) makes the records,
/// `None` writes bare ACKs instead.
pub fn l4_server(cfg: &L4ServerConfig, signer: Option<&IdentitySigner>) -> Result<L4Captures, ScenarioError> {
    let cerr = |m: String| Err(ScenarioError::Config(m));
    let v6 = cfg.src_net.is_ipv6();
    if v6 != cfg.dst_net.is_ipv6() {
        return cerr(format!("--src-net {} and --dst-net {} are of different IP versions", cfg.src_net, cfg.dst_net));
    }
    let hosts = cfg.src_net.host_count();
    let capacity = hosts.saturating_mul(cfg.src_ports.len());
    if cfg.flows < LEAD as u64 || cfg.flows > capacity.min(1 << 24) {
        return cerr(format!(
            "--flows {} must be at least {LEAD} (the records must come after the SYN-ACKs) and at most {}",
            cfg.flows,
            capacity.min(1 << 24)
        ));
    }
    if cfg.count < LEAD as u64 {
        return cerr(format!("--count {} must be at least {LEAD}", cfg.count));
    }
    let frame_len = cfg.frame_size.saturating_sub(FCS_LEN);
    let hdr = frame::header_len(v6, TCP_HDR_LEN);
    if frame_len < MIN_FRAME_LEN.max(hdr) || cfg.frame_size > 9018 {
        return cerr(format!(
            "frame size {} is not within {}..=9018",
            cfg.frame_size,
            MIN_FRAME_LEN.max(hdr) + FCS_LEN
        ));
    }
    let payload = vec![0x5au8; if frame_len <= MIN_FRAME_LEN { 0 } else { frame_len - hdr }];
    let flows: Vec<Flow> = (0..cfg.flows)
        .map(|i| Flow {
            client: cfg.src_net.host(i % hosts),
            server: cfg.dst_net.host(i % cfg.dst_net.host_count()),
            client_port: cfg.src_ports.nth(i / hosts),
            isn_c: rng::derive(cfg.seed ^ STREAM_ISN_C, i) as u32,
            isn_s: rng::derive(cfg.seed ^ STREAM_ISN_S, i) as u32,
        })
        .collect();
    let os = OsProfile::Linux;
    let env = |src: IpAddr, dst: IpAddr, mac: (MacAddr, MacAddr)| Envelope {
        src_mac: mac.0,
        dst_mac: mac.1,
        src,
        dst,
        ttl: os.ttl(),
        ip_id: 1,
        flow_label: 0,
    };
    // Frames from the client come from the outside, the server's from the inside.
    let to_server = |f: &Flow| env(f.client, f.server, (cfg.dst_mac, cfg.src_mac));
    let to_client = |f: &Flow| env(f.server, f.client, (cfg.src_mac, cfg.dst_mac));
    let mss = if v6 { 1440 } else { 1460 };
    let mut out = L4Captures::default();
    for f in &flows {
        let hdr = TcpHeader {
            src_port: f.client_port,
            dst_port: cfg.dst_port,
            seq: f.isn_c,
            ack: 0,
            flags: tcp_flags::SYN,
            window: os.syn_window(),
            options: &os.syn_options(mss, f.isn_c ^ 0x5555),
        };
        out.outside.push(frame::tcp_frame(&to_server(f), &hdr, &[])?);
    }
    for f in &flows {
        let record = signer.map(|s| {
            s.record_for(&Binding {
                flow: mac::Flow {
                    src: addr(f.client),
                    dst: addr(f.server),
                    src_port: f.client_port,
                    dst_port: cfg.dst_port,
                    proto: 6,
                },
                own_isn: f.isn_c,
                peer_isn: f.isn_s,
                ctx: context::CLIENT,
            })
        });
        let hdr = TcpHeader {
            src_port: f.client_port,
            dst_port: cfg.dst_port,
            seq: f.isn_c.wrapping_add(1),
            ack: f.isn_s.wrapping_add(1),
            flags: tcp_flags::ACK,
            window: 502,
            options: &[],
        };
        out.outside.push(frame::tcp_frame(&to_server(f), &hdr, record.as_ref().map_or(&[][..], |r| &r[..]))?);
    }
    let mut next = 0usize;
    let mut established = |n: u64, inside: &mut Vec<Vec<u8>>| -> Result<(), ScenarioError> {
        for _ in 0..n {
            let f = &flows[next];
            next = (next + 1) % flows.len();
            let flags = if payload.is_empty() { tcp_flags::ACK } else { tcp_flags::PSH | tcp_flags::ACK };
            let hdr = TcpHeader {
                src_port: cfg.dst_port,
                dst_port: f.client_port,
                seq: f.isn_s.wrapping_add(1),
                ack: f.isn_c.wrapping_add(1),
                flags,
                window: 502,
                options: &[],
            };
            inside.push(frame::tcp_frame(&to_client(f), &hdr, &payload)?);
        }
        Ok(())
    };
    established(LEAD as u64, &mut out.inside)?;
    for f in &flows {
        let hdr = TcpHeader {
            src_port: cfg.dst_port,
            dst_port: f.client_port,
            seq: f.isn_s,
            ack: f.isn_c.wrapping_add(1),
            flags: tcp_flags::SYN | tcp_flags::ACK,
            window: 65160,
            options: &os.syn_options(mss, f.isn_s ^ 0x5555),
        };
        out.inside.push(frame::tcp_frame(&to_client(f), &hdr, &[])?);
    }
    established(cfg.count - LEAD as u64, &mut out.inside)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use dataplane::buf::{PacketBuf, VecBuf};
    use dataplane::engine::{Action, Engine, EngineConfig};
    use dataplane::stats::{DropReason, Note, WorkerStats};
    use dataplane::wire::parse_frame;
    use dataplane::Side;

    use super::*;

    fn examples(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples").join(name)
    }

    fn cfg(flows: u64, count: u64) -> L4ServerConfig {
        L4ServerConfig {
            src_net: "10.0.0.0/16".parse().unwrap(),
            dst_net: "10.1.0.0/24".parse().unwrap(),
            src_ports: "1024-65535".parse().unwrap(),
            dst_port: 80,
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            flows,
            count,
            frame_size: 64,
            seed: 1,
        }
    }

    /// What a worker does with the two captures (inside looping, outside
    /// once), `burst` frames per port per poll round, for `rounds` rounds:
    /// the stats, and the actions on the inside frames of the last pass.
    fn poll(caps: &L4Captures, burst: usize, rounds: usize) -> (Arc<WorkerStats>, Vec<Action>, Vec<Vec<u8>>) {
        let b = EngineConfig::load(&examples("bench-gw-b-l4.yaml")).unwrap();
        let stats = Arc::new(WorkerStats::default());
        let mut e = Engine::new(65_536, 3, stats.clone(), None);
        let (mut p, mut q) = (0usize, 0usize);
        let mut last = (Vec::new(), Vec::new());
        for r in 0..rounds {
            for _ in 0..burst {
                let mut buf = VecBuf::with_room(&caps.inside[p % caps.inside.len()], 64, 64);
                let a = e.process(&b, Side::Inside, &mut buf, 1_000_000_000 + r as u64);
                if p >= caps.inside.len() * (rounds * burst / caps.inside.len() - 1) {
                    last.0.push(a);
                    last.1.push(buf.data().to_vec());
                }
                p += 1;
            }
            for _ in 0..burst {
                let Some(f) = caps.outside.get(q) else { break };
                let mut buf = VecBuf::with_room(f, 64, 64);
                e.process(&b, Side::Outside, &mut buf, 1_000_000_000 + r as u64);
                q += 1;
            }
            e.clear_effects();
        }
        (stats, last.0, last.1)
    }

    #[test]
    fn every_flow_completes_the_exchange_and_is_shifted_at_any_burst() {
        let a = IdentitySigner::from_file(
            &examples("bench-gw-a.yaml"),
            "10.0.0.1".parse().unwrap(),
            "10.1.0.1".parse().unwrap(),
            None,
        )
        .unwrap();
        let c = cfg(256, 4096);
        let caps = l4_server(&c, Some(&a)).unwrap();
        assert_eq!((caps.inside.len(), caps.outside.len()), (4096 + 256, 512));
        for burst in [1, 32, LEAD] {
            let rounds = caps.inside.len() * 3 / burst;
            let (st, acts, frames) = poll(&caps, burst, rounds);
            let (i, o) = (st.dir(Side::Inside), st.dir(Side::Outside));
            assert_eq!(o.note_count(Note::L4RecordVerified).get(), 256, "burst {burst}");
            assert_eq!(o.note_count(Note::L4RecordSent).get(), 256, "burst {burst}");
            assert_eq!(o.note_count(Note::L4PeerWithoutRecord).get(), 0);
            // only the first pass's lead meets no flow
            assert_eq!(i.drop_count(DropReason::NoFlowStateFromPeer).get(), LEAD as u64, "burst {burst}");
            // the last pass: every frame forwarded, the established ones shifted by the record
            assert!(acts.iter().all(|a| *a == Action::Forward), "burst {burst}: {acts:?}");
            for (sent, got) in caps.inside.iter().zip(&frames) {
                let (si, gi) = (parse_frame(sent).unwrap(), parse_frame(got).unwrap());
                let shift = if si.tcp_flags & tcp_flags::SYN != 0 { 0 } else { 20 };
                assert_eq!(gi.seq, si.seq.wrapping_add(shift));
            }
        }
    }

    #[test]
    fn without_records_the_flows_are_plain() {
        let caps = l4_server(&cfg(64, 1024), None).unwrap();
        let rounds = caps.inside.len() * 3 / 32;
        let (st, acts, frames) = poll(&caps, 32, rounds);
        let o = st.dir(Side::Outside);
        assert_eq!(o.note_count(Note::L4PeerWithoutRecord).get(), 64);
        assert_eq!(o.note_count(Note::L4RecordVerified).get(), 0);
        assert!(acts.iter().all(|a| *a == Action::Forward), "{acts:?}");
        assert_eq!(frames, caps.inside, "nothing rewritten");
    }

    #[test]
    fn too_few_flows_or_frames_for_the_order_are_refused() {
        assert!(l4_server(&cfg(LEAD as u64 - 1, 4096), None).is_err());
        assert!(l4_server(&cfg(1024, LEAD as u64 - 1), None).is_err());
    }
}
