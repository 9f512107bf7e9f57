//! The decision functions the per-packet glue calls on a [`PolicySnapshot`].
//!
//! None of them allocates, evaluates a selector or touches a string:
//! `classify` is a few LPM lookups, `decide` one hash lookup plus a scan of a
//! short entry list, `identity_allowed_for_peer` two hash lookups.

use std::net::IpAddr;

use super::compile::{
    verdict_key, Entry, PolicySnapshot, F_OBSERVE, F_REJECT, KIND_EXTERNAL, KIND_IDENTITY, NO_EXT, P_ICMP, P_OTHER,
    P_TCP, P_UDP,
};
use super::{Action, Classification, Decision, Direction, ExtNetRef, Observed, PuId, Reason, Remote, RuleRef, Side};

/// IP protocol numbers the policy distinguishes.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

#[inline]
fn proto_bit(proto: u8) -> u8 {
    match proto {
        IPPROTO_TCP => P_TCP,
        IPPROTO_UDP => P_UDP,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => P_ICMP,
        _ => P_OTHER,
    }
}

impl PolicySnapshot {
    /// Classifies a packet by its addresses. `side` is the port it arrived on:
    /// from `Inside` the local end is `src`, from `Outside` it is `dst`.
    ///
    /// Order: excluded networks (either end) first, then the local PU lookup,
    /// then the ignore selector, then the managed networks of the remote end.
    #[inline]
    pub fn classify(&self, side: Side, src: IpAddr, dst: IpAddr) -> Classification {
        let (local, remote) = match side {
            Side::Inside => (src, dst),
            Side::Outside => (dst, src),
        };
        if self.excluded.lookup(remote).is_some() || self.excluded.lookup(local).is_some() {
            return Classification::Excluded;
        }
        let Some(pu) = self.pu_addresses.lookup(local) else {
            return Classification::NotLocal;
        };
        if self.pus[pu as usize].ignored {
            return Classification::Ignored;
        }
        Classification::LocalPu {
            pu: PuId(pu),
            managed_tcp: self.managed_tcp.lookup(remote).is_some(),
            managed_udp: self.managed_udp.lookup(remote).is_some(),
        }
    }

    /// The local PU owning `addr`, ignoring exclusions and the ignore selector.
    #[inline]
    pub fn pu_by_address(&self, addr: IpAddr) -> Option<PuId> {
        self.pu_addresses.lookup(addr).map(PuId)
    }

    /// Decides a connection of local PU `pu` with `remote`, for IP protocol
    /// `proto` and the server's port `port` (the destination port of the
    /// connection's first packet; ignored for protocols without ports).
    ///
    /// `Outgoing` judges the PU's outgoing rules (it is the client), `Incoming`
    /// its incoming rules (it is the server).
    #[inline]
    pub fn decide(&self, pu: PuId, dir: Direction, remote: Remote, proto: u8, port: u16) -> Decision {
        let Some(p) = self.pus.get(pu.0 as usize) else {
            return Decision::implicit(Reason::UnknownPu);
        };
        let (list, external) = match remote {
            Remote::Identity(id) => {
                let Some(&i) = self.identity_index.get(&id) else {
                    return Decision::implicit(Reason::UnknownIdentity);
                };
                let class = self.identities[i as usize].class;
                let r = match self.verdicts.get(&verdict_key(dir, KIND_IDENTITY, p.class, class)) {
                    Some(&r) => r,
                    None => self.defaults[2 * p.class as usize + dir as usize],
                };
                (r, false)
            }
            Remote::Address(ip) => {
                let r = self
                    .ext_lpm
                    .lookup(ip)
                    .and_then(|set| self.verdicts.get(&verdict_key(dir, KIND_EXTERNAL, p.class, set)).copied())
                    .unwrap_or((0, 0));
                (r, true)
            }
        };
        let entries = &self.entries[list.0 as usize..(list.0 + list.1) as usize];
        evaluate(entries, proto, port, external)
    }

    /// Whether the peer owning `key_id` may claim `identity` (the directory's
    /// `peer` of the identity is that peer). Unknown key or identity: `false`.
    #[inline]
    pub fn identity_allowed_for_peer(&self, identity: u32, key_id: u32) -> bool {
        match (self.identity_index.get(&identity), self.key_index.get(&key_id)) {
            (Some(&i), Some(&p)) => self.identities[i as usize].peer == p,
            _ => false,
        }
    }
}

/// Scans a verdict list (sorted: enforced before observed, reject before allow).
#[inline]
fn evaluate(entries: &[Entry], proto: u8, port: u16, external: bool) -> Decision {
    let bit = proto_bit(proto);
    let has_ports = bit & (P_TCP | P_UDP) != 0;
    let mut enforced: Option<&Entry> = None;
    let mut observed: Option<&Entry> = None;
    for e in entries {
        if e.protos & bit == 0 {
            continue;
        }
        let port_ok = if has_ports { e.lo <= port && port <= e.hi } else { e.lo == 0 && e.hi == u16::MAX };
        if !port_ok {
            continue;
        }
        if e.flags & F_OBSERVE != 0 {
            observed = Some(e);
            break; // observed entries come last; the first is the strongest
        } else if enforced.is_none() {
            enforced = Some(e);
        }
    }
    let ext = |e: &Entry| (e.ext != NO_EXT).then_some(ExtNetRef(e.ext));
    let action = |e: &Entry| if e.flags & F_REJECT != 0 { Action::Reject } else { Action::Allow };
    let observed = observed.map(|e| Observed { action: action(e), rule: RuleRef(e.rule), external: ext(e) });
    match enforced {
        Some(e) => {
            let a = action(e);
            let reason = match (a, external) {
                (Action::Allow, false) => Reason::PolicyAllow,
                (Action::Reject, false) => Reason::PolicyReject,
                (Action::Allow, true) => Reason::ExternalNetworkAllow,
                (Action::Reject, true) => Reason::ExternalNetworkReject,
            };
            Decision { action: a, rule: Some(RuleRef(e.rule)), external: ext(e), observed, reason }
        }
        None => Decision {
            action: Action::Reject,
            rule: None,
            external: None,
            observed,
            reason: if observed.is_some() { Reason::ObservedOnly } else { Reason::NoMatch },
        },
    }
}
