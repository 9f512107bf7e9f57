//! The DNS part of a policy snapshot (`enforcer_profile.dns_servers`,
//! `fqdn_min_ttl`/`fqdn_max_ttl`, `external_networks[].fqdns`) and the
//! decision of an address learned for an FQDN pattern.

use std::net::IpAddr;

use super::decide::evaluate_external;
use super::lpm::LpmPair;
use super::snapshot::PolicySnapshot;
use super::{Decision, Direction, PuId, Remote};
use crate::dns::patterns::FqdnPatterns;

/// What a snapshot says about DNS.
#[derive(Debug, Default)]
pub struct DnsPolicy {
    /// Trusted DNS servers; `None`: any.
    pub(crate) servers: Option<LpmPair>,
    /// TTL bounds (seconds) for learned addresses.
    pub(crate) ttl_bounds: (u32, u32),
    pub(crate) patterns: FqdnPatterns,
}

impl PolicySnapshot {
    /// Whether answers from `server` are read (logged and learned from).
    #[inline]
    pub fn dns_server_trusted(&self, server: IpAddr) -> bool {
        self.dns.servers.as_ref().is_none_or(|l| l.lookup(server).is_some())
    }

    /// The FQDN patterns of the external networks.
    pub fn fqdn_patterns(&self) -> &FqdnPatterns {
        &self.dns.patterns
    }

    /// `fqdn_min_ttl`, `fqdn_max_ttl` in seconds.
    pub fn fqdn_ttl_bounds(&self) -> (u32, u32) {
        self.dns.ttl_bounds
    }

    /// [`Self::decide`] for a remote address that is also learned for the
    /// FQDN patterns `learned` (their ids): each pattern's networks are
    /// judged like CIDR members, and the strongest decision wins, as in one
    /// verdict list: an enforced reject over an enforced allow over no
    /// match. An observed entry comes from the address's CIDR networks first.
    pub fn decide_learned(
        &self,
        pu: PuId,
        dir: Direction,
        remote: IpAddr,
        learned: &[u64],
        proto: u8,
        port: u16,
    ) -> Decision {
        let mut d = self.decide(pu, dir, Remote::Address(remote), proto, port);
        let Some(p) = self.pus.get(pu.0 as usize) else { return d };
        let strength = |d: &Decision| match (d.rule, d.action) {
            (None, _) => 0,
            (Some(_), super::Action::Allow) => 1,
            (Some(_), super::Action::Reject) => 2,
        };
        for &id in learned {
            for &set in self.dns.patterns.sets(id) {
                let e = evaluate_external(self, p.class, dir, set, proto, port);
                if strength(&e) > strength(&d) {
                    let observed = d.observed.or(e.observed);
                    d = Decision { observed, ..e };
                } else if d.observed.is_none() {
                    d.observed = e.observed;
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::patterns::MAX_MATCH;
    use crate::dns::WireName;
    use crate::policy::{compile, Action, PolicyDocument, Reason};
    use crate::wire::ip_proto;

    pub(crate) const DOC: &str = r#"
processing_units:
  - {name: client, tags: [app=client], addresses: [10.1.0.1], identity: 1}
rulesets:
  - name: client
    subject: app == client
    outgoing:
      - {name: api, action: allow, object: ext == api, protocols: [tcp], ports: [8080]}
      - {name: no-bad, action: reject, object: ext == bad, protocols: [tcp]}
external_networks:
  - {name: api, tags: [ext=api], fqdns: [api.example.test, "*.svc.example.test"]}
  - {name: bad, tags: [ext=bad], cidrs: [10.66.0.0/16]}
enforcer_profile:
  dns_servers: [10.2.0.53/32]
  fqdn_min_ttl: 2
  fqdn_max_ttl: 60
"#;

    fn ids(s: &PolicySnapshot, name: &str) -> Vec<u64> {
        let mut out = [0; MAX_MATCH];
        let n = s.fqdn_patterns().matching(WireName::from_text(name).unwrap().as_bytes(), &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn learned_addresses_are_decided_like_cidr_members() {
        let s = compile(&PolicyDocument::from_yaml(DOC).unwrap()).unwrap();
        let pu = s.pu_by_address("10.1.0.1".parse().unwrap()).unwrap();
        assert!(s.dns_server_trusted("10.2.0.53".parse().unwrap()));
        assert!(!s.dns_server_trusted("10.2.0.54".parse().unwrap()));
        assert_eq!(s.fqdn_ttl_bounds(), (2, 60));
        let api = ids(&s, "api.example.test");
        assert_eq!(api.len(), 1);
        assert_eq!(ids(&s, "x.y.svc.example.test").len(), 1);
        assert!(ids(&s, "other.example.test").is_empty());
        let x: IpAddr = "10.9.0.2".parse().unwrap();
        let d = s.decide(pu, Direction::Outgoing, Remote::Address(x), ip_proto::TCP, 8080);
        assert_eq!((d.action, d.reason), (Action::Reject, Reason::NoMatch), "not learned: no match");
        let d = s.decide_learned(pu, Direction::Outgoing, x, &api, ip_proto::TCP, 8080);
        assert_eq!((d.action, d.reason), (Action::Allow, Reason::ExternalNetworkAllow));
        assert_eq!(s.external_network(d.external.unwrap()).unwrap().name.as_ref(), "api");
        let d = s.decide_learned(pu, Direction::Outgoing, x, &api, ip_proto::TCP, 8081);
        assert_eq!(d.action, Action::Reject, "other port");
        // an address both learned for api and inside the rejected CIDR: reject wins
        let bad: IpAddr = "10.66.0.1".parse().unwrap();
        let d = s.decide_learned(pu, Direction::Outgoing, bad, &api, ip_proto::TCP, 8080);
        assert_eq!((d.action, d.reason), (Action::Reject, Reason::ExternalNetworkReject));
    }

    #[test]
    fn fqdn_problems_are_named() {
        let doc = DOC
            .replace("fqdns: [api.example.test,", "fqdns: [\"a.*.test\", \"a..b\", api.example.test, api.example.test,")
            .replace("fqdn_max_ttl: 60", "fqdn_max_ttl: 1");
        let e = compile(&PolicyDocument::from_yaml(&doc).unwrap()).unwrap_err().to_string();
        assert!(e.contains("external_networks[\"api\"].fqdns[0]: \"a.*.test\" is not an FQDN pattern"), "{e}");
        assert!(e.contains("fqdns[1]: \"a..b\" is not an FQDN pattern: empty label"), "{e}");
        assert!(e.contains("fqdns[3]: \"api.example.test\" is already used by this network"), "{e}");
        assert!(e.contains("enforcer_profile.fqdn_max_ttl: min 2, max 1"), "{e}");
        let none = DOC.replace("fqdns: [api.example.test, \"*.svc.example.test\"]", "fqdns: []");
        let e = compile(&PolicyDocument::from_yaml(&none).unwrap()).unwrap_err().to_string();
        assert!(e.contains("at least one CIDR or FQDN"), "{e}");
    }
}
