//! The decision of a new connection with the learned FQDN addresses: what
//! every handler calls where it decides by the remote address. Only at
//! decision time (new flows, re-decisions after an apply): the established
//! path never looks at the learned table.

use super::EngineConfig;
use crate::dns::learned;
use crate::dns::patterns::MAX_MATCH;
use crate::policy::{Decision, Direction, PuId, Remote};

impl EngineConfig {
    /// [`crate::policy::PolicySnapshot::decide`], and for a remote address
    /// learned (live at `now`) for FQDN patterns this policy names,
    /// [`crate::policy::PolicySnapshot::decide_learned`].
    #[inline]
    pub fn decide(&self, pu: PuId, dir: Direction, remote: Remote, proto: u8, port: u16, now: u64) -> Decision {
        if let (Remote::Address(ip), Some(t)) = (remote, self.fqdn.as_deref()) {
            if !self.policy.fqdn_patterns().is_empty() {
                let mut ids = [0u64; MAX_MATCH];
                let n = t.lookup(learned::key(ip), now, &mut ids);
                if n > 0 {
                    return self.policy.decide_learned(pu, dir, ip, &ids[..n], proto, port);
                }
            }
        }
        self.policy.decide(pu, dir, remote, proto, port)
    }
}
