//! `external_networks`: addresses without identity, named and tagged so that
//! rules can select them.

use std::collections::HashMap;

use super::error::{Problem, ResourceKind as K};
use super::validate::Validation;
use super::values::{ports_without_protocol, proto_mask};
use super::MAX_EXTERNAL_NETWORKS;
use crate::dns::patterns::{Pattern, MAX_PATTERNS};
use crate::policy::lpm::Cidr;
use crate::policy::snapshot::ExternalNetworkInfo;

/// An external network as the verdict lists need it.
pub(super) struct ExternalNet {
    pub cidrs: Vec<Cidr>,
    pub protos: u8,
    pub ports: Vec<(u16, u16)>,
    /// `fqdns`, parsed (see [`crate::dns::patterns`]).
    pub fqdns: Vec<Pattern>,
}

/// The external networks, in document order.
pub(super) struct Externals {
    pub nets: Vec<ExternalNet>,
    pub infos: Vec<ExternalNetworkInfo>,
}

impl Validation<'_> {
    pub fn external_networks(&mut self) -> Externals {
        let doc = self.doc;
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut patterns = 0usize;
        let mut out = Externals {
            nets: Vec::with_capacity(doc.external_networks.len()),
            infos: Vec::with_capacity(doc.external_networks.len()),
        };
        for (i, x) in doc.external_networks.iter().enumerate() {
            if names.insert(&x.name, i).is_some() {
                self.duplicate_name(K::ExternalNetwork, &x.name, "another external network");
            }
            let tags = self.tags(K::ExternalNetwork, &x.name, &x.tags);
            if x.cidrs.is_empty() && x.fqdns.is_empty() {
                self.missing_list(
                    K::ExternalNetwork,
                    &x.name,
                    "cidrs",
                    "an external network needs at least one CIDR or FQDN",
                );
            }
            let fqdns = self.fqdns(&x.name, &x.fqdns, &mut patterns);
            let cidrs = self.cidrs(K::ExternalNetwork, &x.name, "cidrs", &x.cidrs);
            let ports = self.ports(K::ExternalNetwork, &x.name, "ports", &x.ports);
            let protos = proto_mask(&x.protocols);
            if let Some(v) = ports_without_protocol(protos, &x.ports) {
                self.err(K::ExternalNetwork, &x.name, "ports", v, Problem::PortsWithoutProtocol);
            }
            if x.protocols.is_empty() {
                self.missing_list(
                    K::ExternalNetwork,
                    &x.name,
                    "protocols",
                    "protocols must not be empty (omit it for any)",
                );
            }
            out.nets.push(ExternalNet { cidrs, protos, ports, fqdns });
            out.infos.push(ExternalNetworkInfo { name: x.name.as_str().into(), tags });
        }
        if doc.external_networks.len() > MAX_EXTERNAL_NETWORKS {
            let last = &doc.external_networks[MAX_EXTERNAL_NETWORKS];
            let why = Problem::Missing("more than 65534 external networks (flow entries index them in 16 bits)");
            self.err(K::ExternalNetwork, &last.name, "name", last.name.clone(), why);
        }
        out
    }
}

impl Validation<'_> {
    /// Parses one network's `fqdns`; `total` counts them across the document
    /// (at most [`MAX_PATTERNS`]).
    fn fqdns(&mut self, net: &str, texts: &[String], total: &mut usize) -> Vec<Pattern> {
        let mut out = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            *total += 1;
            let field = format!("fqdns[{i}]");
            // the value echoed in a problem is bounded
            let shown: String = t.chars().take(300).collect();
            if *total == MAX_PATTERNS + 1 {
                let why = Problem::Missing("more than 4096 FQDN patterns in the document");
                self.err(K::ExternalNetwork, net, field, shown, why);
                continue;
            }
            match Pattern::parse(t) {
                Ok(p) if out.contains(&p) => {
                    self.err(K::ExternalNetwork, net, field, shown, Problem::Duplicate { first: "this network".into() })
                }
                Ok(p) => out.push(p),
                Err(why) => self.err(K::ExternalNetwork, net, field, shown, Problem::BadFqdn(why)),
            }
        }
        out
    }
}
