//! The dispatcher: a frame's way in, and the choice of the path it takes.
//!
//! [`Engine::look`] reads a plain frame's flow key ([`peek`]) and prefetches
//! its table slot, a few frames ahead of the one processed; the fast path then
//! costs one lookup ([`super::established`]). Anything else is parsed in full
//! ([`parse_frame`]), classified (excluded, ignored, no local PU, or a local
//! PU), and sent down one path with its packet context ([`Ctx`]): the UDP
//! handshake, the TCP handshake, TCP without state, the established path, or
//! the other protocols.

use std::net::IpAddr;

use super::context::{Ctx, LocalPu};
use super::established::{redecide, Seen};
use super::{Action, Engine, EngineConfig};
use crate::buf::PacketBuf;
use crate::flow::key::{Tuple, ZERO_KEY};
use crate::flow::{FlowKey, TcpFlags};
use crate::policy::Classification;
use crate::stats::{DropReason, Note};
use crate::wire::{icmpv6, ip_proto, parse_frame, peek::peek, Addr, FrameInfo, L4Kind};
use crate::Side;

/// What [`Engine::look`] found in a frame, for [`Engine::process_looked`].
#[derive(Debug, Clone, Copy)]
pub struct Looked {
    key: FlowKey,
    h: u64,
    seq: u32,
    tcp_flags: u8,
    kind: LookKind,
    /// The TCP header's offset and length with its options (layer-4 flows).
    tcp_at: u16,
    tcp_len: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LookKind {
    /// Not a shape [`peek`] reads: the full parse decides.
    NotPlain,
    /// A TCP SYN or SYN-ACK: the full path.
    Handshake,
    Tcp,
    /// TCP carrying an identity option outside the handshake.
    Replay,
    Udp,
}

impl Looked {
    pub const NOT_PLAIN: Looked = Looked::of(LookKind::NotPlain);

    fn peeked(&self) -> super::l4::Peeked<'_> {
        super::l4::Peeked {
            key: &self.key,
            h: self.h,
            flags: self.tcp_flags,
            seq: self.seq,
            tcp_at: usize::from(self.tcp_at),
            tcp_len: usize::from(self.tcp_len),
        }
    }
    const HANDSHAKE: Looked = Looked::of(LookKind::Handshake);

    const fn of(kind: LookKind) -> Looked {
        Looked { key: ZERO_KEY, h: 0, seq: 0, tcp_flags: 0, kind, tcp_at: 0, tcp_len: 0 }
    }
}

impl Engine {
    /// Processes one frame that arrived on `side`. `now` is Unix time in
    /// nanoseconds (key windows and flow timeouts use it).
    #[inline]
    pub fn process<B: PacketBuf>(&mut self, cfg: &EngineConfig, side: Side, buf: &mut B, now: u64) -> Action {
        let l = self.look(side, buf.data(), |_| ());
        self.process_looked(cfg, side, buf, &l, now)
    }

    /// The first half of [`Self::process`]: reads a plain frame's flow key
    /// ([`peek`]), hashes it, and hands `hint` the table lines its lookup
    /// will read ([`crate::flow::FlowTable::prefetch`]). The worker looks a
    /// few frames ahead of the one it processes, so those lines arrive while
    /// it works. (A whole burst looked at first and processed after was
    /// measured slower: that pass waits for the frames' bytes instead.)
    #[inline(always)]
    pub fn look(&self, side: Side, frame: &[u8], hint: impl Fn(*const u8)) -> Looked {
        let Some(p) = peek(frame) else { return Looked::NOT_PLAIN };
        let tcp = p.proto == ip_proto::TCP;
        let t = Tuple {
            src: p.src,
            dst: p.dst,
            family: p.family,
            proto: p.proto,
            src_port: p.src_port,
            dst_port: p.dst_port,
        };
        let (key, h) = self.table.key_hashed(side, &t);
        self.table.prefetch(h, hint);
        // A handshake packet takes the full path, which looks its flow up:
        // the slot is on its way by then.
        if tcp && p.tcp_flags & TcpFlags::SYN != 0 {
            return Looked::HANDSHAKE;
        }
        let replay = tcp && super::option_scan::has_identity_option(frame, p.tcp_opts_offset, p.tcp_opts_len);
        let kind = if replay {
            LookKind::Replay
        } else if tcp {
            LookKind::Tcp
        } else {
            LookKind::Udp
        };
        let tcp_at = p.tcp_opts_offset.saturating_sub(crate::wire::tcp::HEADER_LEN as u16);
        let tcp_len = p.tcp_opts_len + crate::wire::tcp::HEADER_LEN as u8;
        Looked { key, h, seq: p.seq, tcp_flags: p.tcp_flags, kind, tcp_at, tcp_len }
    }

    /// The second half of [`Self::process`], on what [`Self::look`] found in
    /// this same, unchanged frame.
    #[inline(always)]
    pub fn process_looked<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        buf: &mut B,
        l: &Looked,
        now: u64,
    ) -> Action {
        let plain = match l.kind {
            LookKind::NotPlain => false,
            LookKind::Handshake => true,
            _ => match self.fast(side, buf, l, cfg.generation(), now) {
                Some(a) => {
                    if Self::is_dns_port(l.key.outside_port) && a == Action::Forward {
                        self.dns_seen(cfg, side, buf.data(), now);
                    }
                    return a;
                }
                None => true,
            },
        };
        self.full(cfg, side, buf, plain, now)
    }

    /// The fast path: a plain frame of a flow already decided under this
    /// snapshot (generation `gen`), not a handshake packet: one lookup,
    /// nothing parsed in full, no byte changed. `None`: not such a flow.
    #[inline(always)]
    fn fast<B: PacketBuf>(&mut self, side: Side, buf: &mut B, l: &Looked, gen: u32, now: u64) -> Option<Action> {
        let tcp = l.kind != LookKind::Udp;
        let p =
            Seen { tcp, tcp_flags: l.tcp_flags, seq: l.seq, replay: l.kind == LookKind::Replay, len: buf.len() as u32 };
        if tcp {
            // The same lookup, and flows shifted by the layer-4 exchange
            // (`super::l4`) shifted in place.
            return self.established_or_shifted(side, buf, &l.peeked(), &p, gen, now);
        }
        self.established(side, &l.key, l.h, &p, Some(gen), now)
    }

    /// Everything but the fast path, on the fully parsed frame. `plain`: the
    /// fast path read this frame and missed its flow (no second lookup).
    // Not inlined: the fast path's caller then saves only the registers the
    // fast path uses.
    #[inline(never)]
    fn full<B: PacketBuf>(&mut self, cfg: &EngineConfig, side: Side, buf: &mut B, plain: bool, now: u64) -> Action {
        let info = match parse_frame(buf.data()) {
            Ok(i) => i,
            Err(_) => return self.drop(side, DropReason::Malformed),
        };
        let a = self.full_parsed(cfg, side, buf, &info, plain, now);
        let remote_port = if side == Side::Inside { info.dst_port } else { info.src_port };
        if Self::is_dns_port(remote_port) && a == Action::Forward {
            self.dns_seen(cfg, side, buf.data(), now);
        }
        a
    }

    /// [`Self::full`] after the parse.
    fn full_parsed<B: PacketBuf>(
        &mut self,
        cfg: &EngineConfig,
        side: Side,
        buf: &mut B,
        info: &FrameInfo,
        plain: bool,
        now: u64,
    ) -> Action {
        let info = *info;
        let (Some(src), Some(dst)) = (ip(info.src), ip(info.dst)) else {
            self.note(side, Note::NotIpOrNd);
            return Action::Forward;
        };
        if info.l4 == L4Kind::Icmpv6 && icmpv6::is_neighbour_discovery(info.icmp_type) {
            self.note(side, Note::NotIpOrNd);
            return Action::Forward;
        }
        // The key and its hash once, for every lookup of this packet (the
        // paths after the classification read `Ctx::h`).
        let kh = self.table.key_hashed(side, &tuple_of(&info));
        let (key, h) = kh;
        if !plain {
            if let Some(a) = self.established_parsed(cfg.generation(), side, buf, &info, &kh, now) {
                return a;
            }
        }
        let pu = match cfg.policy.classify(side, src, dst) {
            Classification::Excluded => {
                self.note(side, Note::Excluded);
                return Action::Forward;
            }
            Classification::Ignored => {
                self.note(side, Note::Ignored);
                return Action::Forward;
            }
            Classification::NotLocal => return self.drop(side, DropReason::NoLocalPu),
            Classification::LocalPu { pu, managed_tcp, managed_udp } => LocalPu { id: pu, managed_tcp, managed_udp },
        };
        let c = Ctx { cfg, side, info: &info, key, h, pu, gen: cfg.generation(), now };
        self.by_protocol(&c, buf)
    }

    /// The established path for a frame the look ahead could not read: a
    /// decided flow of this generation, not a handshake packet (a UDP
    /// datagram with an options area may carry a handshake message).
    /// `(key, h)`: its flow key and hash, computed once by the caller.
    fn established_parsed<B: PacketBuf>(
        &mut self,
        gen: u32,
        side: Side,
        buf: &B,
        info: &FrameInfo,
        (key, h): &(FlowKey, u64),
        now: u64,
    ) -> Option<Action> {
        let tcp = info.l4 == L4Kind::Tcp;
        if info.fragment || (tcp && info.tcp_flags & TcpFlags::SYN != 0) || info.udp_opts_len > 0 {
            return None;
        }
        let p = Seen::parsed(info, buf.data(), buf.len() as u32);
        self.established(side, key, *h, &p, Some(gen), now)
    }

    /// The path of a local PU's packet, by protocol.
    fn by_protocol<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B) -> Action {
        let i = c.info;
        match i.l4 {
            L4Kind::Udp if !i.fragment => self.udp_datagram(c, buf),
            L4Kind::Tcp if !i.fragment => self.tcp(c, buf),
            // Handshakes are never fragmented and TCP stacks set DF.
            L4Kind::Tcp => self.drop(c.side, DropReason::TcpFragment),
            _ if i.fragment && i.proto == ip_proto::TCP => self.drop(c.side, DropReason::TcpFragment),
            _ => self.other(c),
        }
    }

    /// A TCP segment of a local PU: the handshake, no state, or the
    /// established path after re-deciding a flow of an older snapshot.
    fn tcp<B: PacketBuf>(&mut self, c: &Ctx<'_>, buf: &mut B) -> Action {
        let flags = TcpFlags(c.info.tcp_flags);
        if flags.is_syn() {
            return self.syn(c, buf);
        }
        let h = c.h;
        let Some(e) = self.table.lookup_hashed(&c.key, h, c.now) else { return self.no_state(c, buf) };
        e.set_pu(c.pu.id);
        let l4 = e.l4_path();
        if e.verdict().is_decided() && e.policy_generation() != c.gen {
            redecide(c.cfg, e, c.pu.id, c.now);
            self.note(c.side, Note::Redecided);
        }
        if flags.is_syn_ack() {
            return self.syn_ack(c, buf);
        }
        if flags.has(TcpFlags::RST) && c.side == Side::Outside {
            self.tell_refused_by_peer(c);
        }
        if l4 {
            return self.l4_segment(c, buf);
        }
        let p = Seen::parsed(c.info, buf.data(), buf.len() as u32);
        match self.established(c.side, &c.key, h, &p, None, c.now) {
            Some(a) => a,
            None => self.drop(c.side, DropReason::OutOfState),
        }
    }
}

/// The 5-tuple of a parsed IP frame, from the parsed addresses, not from
/// `IpAddr`s: no round trip through memory (see `FlowKey::new_hashed`).
#[inline(always)]
fn tuple_of(info: &FrameInfo) -> Tuple {
    let (src, dst, family) = match (info.src, info.dst) {
        (Addr::V4(s), Addr::V4(d)) => (v4_mapped(s), v4_mapped(d), 4),
        (Addr::V6(s), Addr::V6(d)) => (u128::from_be_bytes(s), u128::from_be_bytes(d), 6),
        _ => (0, 0, 0), // not reached: the callers have two IP addresses
    };
    Tuple { src, dst, family, proto: info.proto, src_port: info.src_port, dst_port: info.dst_port }
}

/// An IPv4 address as the IPv4-mapped IPv6 value flow keys store.
#[inline(always)]
fn v4_mapped(a: [u8; 4]) -> u128 {
    (0xffff_u128 << 32) | u128::from(u32::from_be_bytes(a))
}

fn ip(a: Addr) -> Option<IpAddr> {
    match a {
        Addr::V4(b) => Some(IpAddr::from(b)),
        Addr::V6(b) => Some(IpAddr::from(b)),
        Addr::None => None,
    }
}
