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
}

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
        }
    }
}
