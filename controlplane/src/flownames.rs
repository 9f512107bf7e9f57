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

/// The directions, seen from the local PU (the dataplane's names), and the
/// [`pb::TrafficDirection`] each travels as.
pub const DIRECTIONS: [Direction; 2] = [Direction::Incoming, Direction::Outgoing];

/// Named protocols by IP protocol number (ICMPv6 is `icmp`, as the policy
/// treats both); any other protocol is its number. On the wire a flow's
/// protocol is the number ([`pb::Protocol`] is an open enum of IANA numbers).
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

/// The [`pb::TrafficDirection`] of a direction.
pub fn direction_pb(d: Direction) -> pb::TrafficDirection {
    match d {
        Direction::Incoming => pb::TrafficDirection::Incoming,
        Direction::Outgoing => pb::TrafficDirection::Outgoing,
    }
}

/// A [`pb::TrafficDirection`] number by its name (`None`: unspecified or unknown).
pub fn direction_name(v: i32) -> Option<&'static str> {
    DIRECTIONS.iter().find(|d| direction_pb(**d) as i32 == v).map(|d| d.name())
}

/// A [`pb::Protocol`] number by its name: `tcp`, `udp`, `icmp` or the
/// number (`None`: unspecified, or not 1-255).
pub fn protocol_name_of(v: i32) -> Option<Cow<'static, str>> {
    u8::try_from(v).ok().filter(|p| *p != 0).map(protocol_name)
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

fn direction_list() -> String {
    DIRECTIONS.map(|d| d.name()).join(", ")
}

/// A direction filter value: one of [`DIRECTIONS`].
pub fn check_direction(s: &str) -> Result<Direction, String> {
    DIRECTIONS
        .iter()
        .find(|d| d.name() == s)
        .copied()
        .ok_or_else(|| format!("unknown direction {}; flows carry: {}", shown(s), direction_list()))
}

/// A direction filter value as it comes in a request: a
/// [`pb::TrafficDirection`] number other than unspecified.
pub fn check_direction_value(v: i32) -> Result<&'static str, String> {
    direction_name(v).ok_or_else(|| {
        let valid = DIRECTIONS.map(|d| format!("{} ({})", direction_pb(d) as i32, d.name())).join(", ");
        format!("unknown direction {v}; flows carry: {valid}")
    })
}

const PROTOCOL_LIST: &str = "tcp, udp, icmp or a protocol number (1-255)";

/// A protocol filter value: a name of [`PROTOCOLS`] or a number 1–255, as
/// the protocol numbers flows carry (`icmp` is both 1 and 58; `6` is `tcp`).
pub fn check_protocol(s: &str) -> Result<Vec<u8>, String> {
    let named: Vec<u8> = PROTOCOLS.iter().filter(|(_, n)| *n == s).map(|(p, _)| *p).collect();
    if !named.is_empty() {
        return Ok(named);
    }
    match s.parse::<u8>() {
        Ok(p) if p != 0 => Ok(vec![p]),
        _ => Err(format!("unknown protocol {}; flows carry: {PROTOCOL_LIST}", shown(s))),
    }
}

/// A protocol filter value as it comes in a request: a [`pb::Protocol`]
/// number 1–255.
pub fn check_protocol_value(v: i32) -> Result<u8, String> {
    u8::try_from(v)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("unknown protocol {v}; flows carry: {PROTOCOL_LIST}"))
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
            assert_eq!(check_direction(d.name()), Ok(d));
            assert_eq!(check_direction_value(direction_pb(d) as i32), Ok(d.name()));
            assert_eq!(direction_name(direction_pb(d) as i32), Some(d.name()));
        }
        for (p, n) in PROTOCOLS {
            assert!(check_protocol(n).unwrap().contains(&p));
            assert_eq!(check_protocol(&p.to_string()).unwrap(), [p]);
            assert_eq!(protocol_name_of(i32::from(p)).as_deref(), Some(n));
            assert_eq!(check_protocol_value(i32::from(p)), Ok(p));
        }
        assert_eq!(check_protocol("icmp").unwrap(), [1, 58]);
        assert_eq!(check_protocol("47").unwrap(), [47]);
        assert_eq!(protocol_name_of(47).as_deref(), Some("47"));
        // the enum's named values are the IANA numbers the list has
        for (v, p) in
            [(pb::Protocol::Tcp, 6), (pb::Protocol::Udp, 17), (pb::Protocol::Icmp, 1), (pb::Protocol::Icmpv6, 58)]
        {
            assert_eq!(v as i32, p);
            assert!(PROTOCOLS.iter().any(|(n, _)| i32::from(*n) == p));
        }
        let e = check_direction_value(0).unwrap_err();
        assert!(e.contains("1 (incoming), 2 (outgoing)"), "{e}");
        assert!(check_protocol_value(0).is_err() && check_protocol_value(256).is_err());
        assert!(check_protocol("0").is_err());
        for r in reason_names() {
            assert_eq!(check_reason(r), Ok(r));
        }
        let e = check_verdict("ALLOWED").unwrap_err();
        assert!(e.contains("allowed, rejected, passed"), "{e}");
        assert!(check_direction("inbound").unwrap_err().contains("incoming, outgoing"));
        assert!(check_protocol("sctp").unwrap_err().contains("tcp, udp, icmp"));
        assert!(check_protocol("256").is_err());
        assert!(check_protocol_value(-1).unwrap_err().contains("tcp, udp, icmp"));
        let long = "x".repeat(10_000);
        assert!(check_reason(&long).unwrap_err().len() < 2_000, "the echoed value is bounded");
    }
}
