//! The one list of every name a flow carries: verdicts, event types, endpoint
//! kinds, directions, protocols and reasons. The flow-log file, `GetFlows`
//! (its filters and `gwctl observe -o json`) and `observe`'s text lines all
//! take their names from here, and each filter value is checked against the
//! same list (in the server, and in gwctl before it sends), so the three
//! shapes cannot drift apart and a filter that can match nothing is refused
//! with the names that can match.
//!
//! Where the dataplane has the list (directions, actions, reasons), the names
//! are the dataplane's own.

use std::borrow::Cow;

use dataplane::policy::{Action, Direction};

use crate::api::pb;

/// A [`pb::Verdict`] by name.
pub const VERDICTS: [(pb::Verdict, &str); 3] =
    [(pb::Verdict::Allowed, "allowed"), (pb::Verdict::Rejected, "rejected"), (pb::Verdict::Passed, "passed")];

/// A [`pb::FlowEventType`] by name: a connection decided and allowed, one
/// that ended (final counters), one refused.
pub const EVENT_TYPES: [(pb::FlowEventType, &str); 3] = [
    (pb::FlowEventType::Started, "started"),
    (pb::FlowEventType::Ended, "ended"),
    (pb::FlowEventType::Rejected, "rejected"),
];

/// A [`pb::EndpointKind`] by name: a local PU, a verified identity of the
/// directory, an external network (judged by address), or nothing known.
pub const ENDPOINT_KINDS: [(pb::EndpointKind, &str); 4] = [
    (pb::EndpointKind::ProcessingUnit, "pu"),
    (pb::EndpointKind::RemoteIdentity, "identity"),
    (pb::EndpointKind::ExternalNetwork, "external"),
    (pb::EndpointKind::Unknown, "unknown"),
];

/// The directions, seen from the local PU (the dataplane's names).
pub const DIRECTIONS: [Direction; 2] = [Direction::Incoming, Direction::Outgoing];

/// Named protocols by IP protocol number (ICMPv6 is `icmp`, as the policy
/// treats both); any other protocol is its number.
pub const PROTOCOLS: [(u8, &str); 4] = [(6, "tcp"), (17, "udp"), (1, "icmp"), (58, "icmp")];

/// The policy's actions (a rule's `action`, a `PolicyRef.action`).
pub const ACTIONS: [Action; 2] = [Action::Allow, Action::Reject];

fn by_number<T: Copy + Into<i32>>(list: &[(T, &'static str)], v: i32) -> Option<&'static str> {
    list.iter().find(|(t, _)| (*t).into() == v).map(|(_, n)| *n)
}

pub fn verdict_name(v: i32) -> Option<&'static str> {
    by_number(&VERDICTS, v)
}

pub fn event_type_name(v: i32) -> Option<&'static str> {
    by_number(&EVENT_TYPES, v)
}

pub fn endpoint_kind_name(v: i32) -> Option<&'static str> {
    by_number(&ENDPOINT_KINDS, v)
}

pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Reject => "reject",
    }
}

/// A protocol as flows name it: `tcp`, `udp`, `icmp`, or the number.
pub fn protocol_name(p: u8) -> Cow<'static, str> {
    match PROTOCOLS.iter().find(|(n, _)| *n == p) {
        Some((_, name)) => Cow::Borrowed(name),
        None => Cow::Owned(p.to_string()),
    }
}

/// A value shown in an error, cut short (it comes from a request).
fn shown(s: &str) -> String {
    format!("{:?}", dataplane::problem::cut(s, 64))
}

/// A verdict filter value: one of [`VERDICTS`].
pub fn check_verdict(s: &str) -> Result<pb::Verdict, String> {
    VERDICTS
        .iter()
        .find(|(_, n)| *n == s)
        .map(|(v, _)| *v)
        .ok_or_else(|| format!("unknown verdict {}; flows carry: {}", shown(s), VERDICTS.map(|(_, n)| n).join(", ")))
}

/// A direction filter value: one of [`DIRECTIONS`].
pub fn check_direction(s: &str) -> Result<&'static str, String> {
    DIRECTIONS.iter().map(|d| d.name()).find(|n| *n == s).ok_or_else(|| {
        format!("unknown direction {}; flows carry: {}", shown(s), DIRECTIONS.map(|d| d.name()).join(", "))
    })
}

/// A protocol filter value: a name of [`PROTOCOLS`] or a number 0–255, as
/// flows carry it (`6` is `tcp`, `58` is `icmp`).
pub fn check_protocol(s: &str) -> Result<Cow<'static, str>, String> {
    if let Some((_, n)) = PROTOCOLS.iter().find(|(_, n)| *n == s) {
        return Ok(Cow::Borrowed(n));
    }
    match s.parse::<u8>() {
        Ok(p) => Ok(protocol_name(p)),
        Err(_) => {
            Err(format!("unknown protocol {}; flows carry: tcp, udp, icmp or a protocol number (0-255)", shown(s)))
        }
    }
}

/// Every name a flow event's `reason` can carry: the policy's reasons, then
/// the dataplane's drop reasons.
pub fn reason_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = dataplane::policy::Reason::ALL.iter().map(|r| r.name()).collect();
    for r in dataplane::stats::DropReason::ALL {
        // a rejected decision's drop reason is its policy reason's name
        if !names.contains(&r.name()) {
            names.push(r.name());
        }
    }
    names
}

/// `name` if it is a reason flow events carry; otherwise why not, with the valid names.
pub fn check_reason(name: &str) -> Result<&'static str, String> {
    let names = reason_names();
    names
        .iter()
        .find(|n| **n == name)
        .copied()
        .ok_or_else(|| format!("unknown reason {}; flow events carry: {}", shown(name), names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_checks_and_others_are_refused_with_the_list() {
        for (v, n) in VERDICTS {
            assert_eq!(check_verdict(n), Ok(v));
            assert_eq!(verdict_name(v as i32), Some(n));
        }
        for d in DIRECTIONS {
            assert_eq!(check_direction(d.name()), Ok(d.name()));
        }
        for (p, n) in PROTOCOLS {
            assert_eq!(check_protocol(n).unwrap(), n);
            assert_eq!(check_protocol(&p.to_string()).unwrap(), n);
        }
        assert_eq!(check_protocol("47").unwrap(), "47");
        for r in reason_names() {
            assert_eq!(check_reason(r), Ok(r));
        }
        let e = check_verdict("ALLOWED").unwrap_err();
        assert!(e.contains("allowed, rejected, passed"), "{e}");
        assert!(check_direction("inbound").unwrap_err().contains("incoming, outgoing"));
        assert!(check_protocol("sctp").unwrap_err().contains("tcp, udp, icmp"));
        assert!(check_protocol("256").is_err());
        let long = "x".repeat(10_000);
        assert!(check_reason(&long).unwrap_err().len() < 2_000, "the echoed value is bounded");
    }
}
