//! `enforcer_profile`: which networks are managed, which excluded, and which
//! PUs ignored.

use super::error::ResourceKind as K;
use super::validate::Validation;
use crate::policy::lpm::Cidr;
use crate::policy::selector::Selector;

/// The profile, parsed.
pub(super) struct Profile {
    pub managed_tcp: Vec<Cidr>,
    pub managed_udp: Vec<Cidr>,
    pub excluded: Vec<Cidr>,
    pub ignore: Option<Selector>,
    pub layer4: crate::policy::snapshot::Layer4,
    /// `dns_servers`; `None`: any server.
    pub dns_servers: Option<Vec<Cidr>>,
    /// `fqdn_min_ttl`, `fqdn_max_ttl` (seconds).
    pub fqdn_ttl: (u32, u32),
}

/// Defaults of `fqdn_min_ttl` and `fqdn_max_ttl`.
pub const FQDN_MIN_TTL: u32 = 5;
pub const FQDN_MAX_TTL: u32 = 3600;

impl Validation<'_> {
    pub fn profile(&mut self) -> Profile {
        let prof = self.doc.enforcer_profile;
        Profile {
            managed_tcp: self.cidrs(K::EnforcerProfile, "", "managed_tcp_networks", &prof.managed_tcp_networks),
            managed_udp: self.cidrs(K::EnforcerProfile, "", "managed_udp_networks", &prof.managed_udp_networks),
            excluded: self.cidrs(K::EnforcerProfile, "", "excluded_networks", &prof.excluded_networks),
            ignore: prof.ignore.as_ref().map(|s| self.selector(K::EnforcerProfile, "", "ignore", s)),
            layer4: crate::policy::snapshot::Layer4 {
                enabled: prof.layer4_identity,
                cache_ns: u64::from(prof.stripping_cache_s) * 1_000_000_000,
            },
            dns_servers: prof.dns_servers.as_ref().map(|v| self.cidrs(K::EnforcerProfile, "", "dns_servers", v)),
            fqdn_ttl: self.fqdn_ttl(),
        }
    }

    fn fqdn_ttl(&mut self) -> (u32, u32) {
        let prof = self.doc.enforcer_profile;
        let min = prof.fqdn_min_ttl.unwrap_or(FQDN_MIN_TTL);
        let max = prof.fqdn_max_ttl.unwrap_or(FQDN_MAX_TTL.max(min));
        if max == 0 || max < min {
            let v = format!("min {min}, max {max}");
            self.err(K::EnforcerProfile, "", "fqdn_max_ttl", v, super::error::Problem::BadTtlBounds);
        }
        (min, max)
    }
}
