//! The `Policy` service: `Explain` answers what the policy in force would
//! decide for a connection, why, and every rule that matches — through
//! [`dataplane::policy::PolicySnapshot::explain`], which calls the workers'
//! own `decide` on the snapshot they run (not a second implementation).

use std::net::IpAddr;
use std::sync::Arc;

use dataplane::engine::EngineConfig;
use dataplane::policy::{Classification, Direction, PolicySnapshot, PuId, Remote, RuleRef, Side, TagSet};
use dataplane::problem::cut;
use tonic::{Request, Response, Status};

use super::auth::Access;
use super::pb;
use super::stats::StatsSource;
use crate::flownames;

/// A PU or an identity named in an error: bounded, it comes from a request.
fn shown(s: &str) -> String {
    format!("{:?}", cut(s, 64))
}

fn tags_text(t: &TagSet) -> Vec<String> {
    t.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn policy_ref(p: &PolicySnapshot, r: RuleRef, action: &str) -> Option<pb::PolicyRef> {
    p.rule(r).map(|x| pb::PolicyRef {
        ruleset: x.ruleset.to_string(),
        rule: x.name.to_string(),
        direction: x.direction.name().into(),
        action: action.into(),
    })
}

/// The local PU: by name, else by address (with the address).
fn find_pu(p: &PolicySnapshot, pu: &str) -> Result<(PuId, Option<IpAddr>), Status> {
    if let Some(i) = p.pus().iter().position(|x| *x.name == *pu) {
        return Ok((PuId(i as u32), None));
    }
    let by_addr = pu.parse::<IpAddr>().ok().and_then(|a| p.pu_by_address(a).map(|id| (id, Some(a))));
    by_addr.ok_or_else(|| {
        Status::not_found(format!(
            "pu: no processing unit is named or has the address {} in the policy in force",
            shown(pu)
        ))
    })
}

/// At most this many identities are explained for one `remote_tags`.
pub const MAX_PER_IDENTITY: usize = 64;

/// The identities whose tags include every `k=v` of `tags`, by number: at
/// least one (none is NOT_FOUND).
fn identities_by_tags(p: &PolicySnapshot, tags: &str) -> Result<Vec<u32>, Status> {
    let want: Vec<String> = tags.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
    if want.is_empty() {
        return Err(Status::invalid_argument("remote_tags: give at least one k=v"));
    }
    let want =
        TagSet::parse(&want).map_err(|e| Status::invalid_argument(format!("remote_tags: {}: {e}", shown(tags))))?;
    let mut found: Vec<u32> = p
        .identities()
        .iter()
        .filter(|i| want.iter().all(|(k, v)| i.tags.iter().any(|(k2, v2)| k == k2 && v == v2)))
        .map(|i| i.identity)
        .collect();
    found.sort_unstable();
    if found.is_empty() {
        return Err(Status::not_found(format!(
            "remote_tags: no identity in the directory has the tags {} (the gateway would drop such a peer: unknown_identity)",
            shown(tags)
        )));
    }
    Ok(found)
}

/// Explains `req` against `cfg` (the engine configuration in force). Tags
/// that several identities have are explained once per identity, each by the
/// same decision code.
pub fn explain(cfg: &EngineConfig, req: &pb::ExplainRequest) -> Result<pb::ExplainResponse, Status> {
    use pb::explain_request::Remote as R;
    let Some(R::RemoteTags(t)) = &req.remote else { return explain_one(cfg, req) };
    let ids = identities_by_tags(&cfg.policy, t)?;
    let one = |id: u32| explain_one(cfg, &pb::ExplainRequest { remote: Some(R::RemoteIdentity(id)), ..req.clone() });
    if let [id] = ids[..] {
        return Ok(pb::ExplainResponse { identities_matched: 1, ..one(id)? });
    }
    let per_identity = ids.iter().take(MAX_PER_IDENTITY).map(|id| one(*id)).collect::<Result<Vec<_>, _>>()?;
    Ok(pb::ExplainResponse {
        local: per_identity.first().and_then(|r| r.local.clone()),
        policy_generation: cfg.generation(),
        policy_revision: cfg.policy.revision().unwrap_or("").into(),
        identities_matched: ids.len() as u32,
        per_identity,
        ..Default::default()
    })
}

/// Explains a request for one remote end (an identity number or an address).
fn explain_one(cfg: &EngineConfig, req: &pb::ExplainRequest) -> Result<pb::ExplainResponse, Status> {
    use pb::explain_request::Remote as R;
    let p = &cfg.policy;
    let dir =
        flownames::check_direction(&req.direction).map_err(|e| Status::invalid_argument(format!("direction: {e}")))?;
    // `icmp` is ICMP and ICMPv6 alike to the policy: the first (1) decides as both would.
    let proto: u8 =
        flownames::check_protocol(&req.protocol).map_err(|e| Status::invalid_argument(format!("protocol: {e}")))?[0];
    let port = u16::try_from(req.port)
        .map_err(|_| Status::invalid_argument(format!("port: {} is not a port (0-65535)", req.port)))?;
    let (pu, pu_addr) = find_pu(p, &req.pu)?;
    let remote = match &req.remote {
        Some(R::RemoteIdentity(id)) => {
            if p.identity(*id).is_none() {
                return Err(Status::not_found(format!(
                    "remote_identity: identity {id} is not in the directory (the gateway drops it: unknown_identity)"
                )));
            }
            Remote::Identity(*id)
        }
        Some(R::RemoteTags(_)) => return Err(Status::internal("remote_tags reach explain_one only as identities")),
        Some(R::RemoteAddress(a)) => Remote::Address(
            a.parse::<IpAddr>()
                .map_err(|_| Status::invalid_argument(format!("remote_address: {} is not an IP address", shown(a))))?,
        ),
        None => return Err(Status::invalid_argument("remote: give an identity, tags or an address")),
    };
    let e = p.explain(pu, dir, remote, proto, port);
    let d = e.decision;
    let info = &p.pus()[pu.0 as usize];
    // Traffic the gateway passes untouched: the classification comes first.
    let passed = match (pu_addr, remote) {
        _ if info.ignored => Some("ignored"),
        (Some(local), Remote::Address(r)) => {
            let (side, src, dst) = match dir {
                Direction::Outgoing => (Side::Inside, local, r),
                Direction::Incoming => (Side::Outside, r, local),
            };
            matches!(p.classify(side, src, dst), Classification::Excluded).then_some("excluded")
        }
        _ => None,
    };
    let (verdict, reason) = match passed {
        Some(r) => (pb::Verdict::Passed, r),
        None if d.allowed() => (pb::Verdict::Allowed, d.reason.name()),
        None => (pb::Verdict::Rejected, d.reason.name()),
    };
    let ext = d.external.or(d.observed.and_then(|o| o.external));
    let remote_end = match remote {
        Remote::Identity(id) => {
            let x = p.identity(id);
            pb::Endpoint {
                identity: id,
                name: x.and_then(|x| x.name.as_deref()).unwrap_or("").into(),
                tags: x.map(|x| tags_text(&x.tags)).unwrap_or_default(),
                kind: pb::EndpointKind::RemoteIdentity as i32,
                ..Default::default()
            }
        }
        Remote::Address(a) => {
            let x = ext.and_then(|x| p.external_network(x));
            pb::Endpoint {
                ip: a.to_string(),
                name: x.map(|x| x.name.to_string()).unwrap_or_default(),
                tags: x.map(|x| tags_text(&x.tags)).unwrap_or_default(),
                kind: pb::EndpointKind::ExternalNetwork as i32,
                ..Default::default()
            }
        }
    };
    let matching = e
        .matching
        .iter()
        .filter_map(|m| {
            let r = p.rule(m.rule)?;
            Some(pb::MatchingRule {
                ruleset: r.ruleset.to_string(),
                direction: r.direction.name().into(),
                rule: r.name.to_string(),
                action: flownames::action_name(m.action).into(),
                observe: m.observe,
                deciding: d.rule == Some(m.rule),
                external_network: m
                    .external
                    .and_then(|x| p.external_network(x))
                    .map(|x| x.name.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    Ok(pb::ExplainResponse {
        verdict: verdict as i32,
        reason: reason.into(),
        policy: d.rule.and_then(|r| policy_ref(p, r, flownames::action_name(d.action))),
        observed: d.observed.and_then(|o| policy_ref(p, o.rule, flownames::action_name(o.action))),
        matching,
        local: Some(pb::Endpoint {
            ip: pu_addr.map(|a| a.to_string()).unwrap_or_default(),
            port: if dir == Direction::Incoming { port.into() } else { 0 },
            identity: info.identity,
            name: info.name.to_string(),
            tags: tags_text(&info.tags),
            kind: pb::EndpointKind::ProcessingUnit as i32,
        }),
        remote: Some(pb::Endpoint { port: if dir == Direction::Outgoing { port.into() } else { 0 }, ..remote_end }),
        policy_generation: cfg.generation(),
        policy_revision: p.revision().unwrap_or("").into(),
        per_identity: Vec::new(),
        identities_matched: 0,
    })
}

pub struct ExplainService {
    source: Arc<dyn StatsSource>,
    access: Access,
}

impl ExplainService {
    pub fn new(source: Arc<dyn StatsSource>, access: Access) -> ExplainService {
        ExplainService { source, access }
    }
}

#[tonic::async_trait]
impl pb::policy_server::Policy for ExplainService {
    async fn explain(&self, req: Request<pb::ExplainRequest>) -> Result<Response<pb::ExplainResponse>, Status> {
        self.access.role(&req)?;
        let source = self.source.clone();
        let cfg = tokio::task::spawn_blocking(move || source.policy_in_force())
            .await
            .map_err(|e| Status::internal(format!("reading the policy failed: {e}")))?
            .ok_or_else(|| Status::failed_precondition("no policy is in force on this gateway"))?;
        explain(&cfg, req.get_ref()).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
revision: x1
processing_units:
  - {name: web, tags: [app=web], addresses: [10.2.0.20], identity: 2001}
identities:
  - {identity: 1001, name: client, tags: [app=frontend, env=prod], peer: gw-a}
  - {identity: 1002, name: batch, tags: [app=batch, env=prod], peer: gw-a}
peers:
  - {name: gw-a, keys: [{id: 21, public_key: rpkk17OQp1XpEndN4If+uJpXXc82EU7P8keCkbzIpBs=}]}
rulesets:
  - name: web
    subject: app == web
    incoming:
      - {name: frontends, action: allow, object: app == frontend, protocols: [tcp], ports: [80]}
      - {name: prod, action: allow, object: env == prod, protocols: [tcp], ports: [80, 81]}
      - {name: watch, action: reject, object: app == frontend, protocols: [tcp], ports: [80], observe: true}
      - {name: office, action: allow, object: ext == office, protocols: [tcp], ports: [443]}
external_networks:
  - {name: office, tags: [ext=office], cidrs: [192.168.50.0/24]}
"#;

    fn req(pu: &str, remote: pb::explain_request::Remote, port: u32) -> pb::ExplainRequest {
        pb::ExplainRequest {
            pu: pu.into(),
            remote: Some(remote),
            protocol: "tcp".into(),
            port,
            direction: "incoming".into(),
        }
    }

    #[test]
    fn explains_the_decision_its_rule_and_every_matching_rule() {
        use pb::explain_request::Remote as R;
        let cfg = EngineConfig::from_yaml(DOC).unwrap();
        let r = explain(&cfg, &req("web", R::RemoteIdentity(1001), 80)).unwrap();
        assert_eq!((r.verdict, r.reason.as_str()), (pb::Verdict::Allowed as i32, "policy_allow"));
        assert_eq!(r.policy.as_ref().map(|p| p.rule.as_str()), Some("frontends"));
        assert_eq!(r.observed.as_ref().map(|p| (p.rule.as_str(), p.action.as_str())), Some(("watch", "reject")));
        let names: Vec<(&str, bool, bool)> =
            r.matching.iter().map(|m| (m.rule.as_str(), m.deciding, m.observe)).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&("frontends", true, false)) && names.contains(&("prod", false, false)));
        assert!(names.contains(&("watch", false, true)));
        // By tags and by the PU's address; the same answer.
        let t = explain(&cfg, &req("10.2.0.20", R::RemoteTags("app=frontend".into()), 80)).unwrap();
        assert_eq!((t.identities_matched, t.per_identity.len()), (1, 0));
        assert_eq!((t.policy, t.local.unwrap().ip), (r.policy.clone(), "10.2.0.20".to_string()));
        let n = explain(&cfg, &req("web", R::RemoteIdentity(1002), 82)).unwrap();
        assert_eq!((n.verdict, n.reason.as_str(), n.matching.len()), (pb::Verdict::Rejected as i32, "no_match", 0));
        let x = explain(&cfg, &req("web", R::RemoteAddress("192.168.50.7".into()), 443)).unwrap();
        assert_eq!((x.reason.as_str(), x.remote.unwrap().name.as_str()), ("external_network_allow", "office"));
        // Clear errors.
        let e = explain(&cfg, &req("db", R::RemoteIdentity(1001), 80)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.message().contains("no processing unit") && e.message().contains("\"db\""), "{}", e.message());
        let e = explain(&cfg, &req("web", R::RemoteIdentity(4242), 80)).unwrap_err();
        assert!(e.code() == tonic::Code::NotFound && e.message().contains("identity 4242"), "{}", e.message());
        // Tags two identities have: each explained by itself, in identity order.
        let both = explain(&cfg, &req("web", R::RemoteTags("env=prod".into()), 80)).unwrap();
        assert_eq!((both.verdict, both.identities_matched, both.per_identity.len()), (0, 2, 2));
        let each: Vec<(u32, &str, Option<&str>)> = both
            .per_identity
            .iter()
            .map(|r| {
                (r.remote.as_ref().unwrap().identity, r.reason.as_str(), r.policy.as_ref().map(|p| p.rule.as_str()))
            })
            .collect();
        assert_eq!(each, [(1001, "policy_allow", Some("frontends")), (1002, "policy_allow", Some("prod"))]);
        assert_eq!(both.per_identity[0], r, "the same answer as by number");
        assert_eq!(both.local.as_ref().map(|l| l.name.as_str()), Some("web"));
        // ... on port 81 only the env=prod rule matches
        let on81 = explain(&cfg, &req("web", R::RemoteTags("env=prod".into()), 81)).unwrap();
        assert!(on81.per_identity.iter().all(|r| r.policy.as_ref().unwrap().rule == "prod"));
        // No identity has them: NOT_FOUND, saying so.
        let e = explain(&cfg, &req("web", R::RemoteTags("env=dev".into()), 80)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.message().contains("no identity") && e.message().contains("env=dev"), "{}", e.message());
        let e = explain(&cfg, &req("web", R::RemoteTags(" , ".into()), 80)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let mut bad = req("web", R::RemoteIdentity(1001), 80);
        bad.direction = "inbound".into();
        assert!(explain(&cfg, &bad).unwrap_err().message().contains("incoming, outgoing"));
    }
}
