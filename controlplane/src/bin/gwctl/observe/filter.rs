//! `observe`'s filters as clap parses them: one table ([`FILTERS`]) defines
//! each option and what it matches; clap reads the command line and says
//! where each value and each `--not` stood ([`ArgMatches::indices_of`]), so
//! a `--not` applies to the filter that follows it.

use clap::{value_parser, Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use controlplane::api::pb;
use controlplane::flownames;

use crate::{usage, Fail};

/// What a filter compares.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Ip,
    Port,
    Protocol,
    Identity,
    Tag,
    Name,
    Verdict,
    Reason,
    Ruleset,
    Direction,
}

/// Which end of the flow a filter looks at (`Flow`: the flow as a whole).
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Source,
    Destination,
    Either,
    Flow,
}

/// One filter option: `--long VALUE_NAME`, its help, what it matches.
struct Filter {
    long: &'static str,
    value_name: &'static str,
    help: &'static str,
    field: Field,
    end: End,
}

const fn filter(long: &'static str, value_name: &'static str, help: &'static str, field: Field, end: End) -> Filter {
    Filter { long, value_name, help, field, end }
}

/// Every filter option, in the order `--help` lists them.
const FILTERS: [Filter; 20] = [
    filter("from-ip", "CIDR", "Source IP or CIDR", Field::Ip, End::Source),
    filter("to-ip", "CIDR", "Destination IP or CIDR", Field::Ip, End::Destination),
    filter("ip", "CIDR", "Either end's IP or CIDR", Field::Ip, End::Either),
    filter("from-port", "PORT", "Source port or range lo-hi", Field::Port, End::Source),
    filter("to-port", "PORT", "Destination port or range lo-hi", Field::Port, End::Destination),
    filter("port", "PORT", "Either end's port", Field::Port, End::Either),
    filter("protocol", "PROTO", "tcp, udp, icmp or a number 1-255", Field::Protocol, End::Flow),
    filter("from-identity", "ID", "Source numeric identity", Field::Identity, End::Source),
    filter("to-identity", "ID", "Destination numeric identity", Field::Identity, End::Destination),
    filter("identity", "ID", "Either end's identity", Field::Identity, End::Either),
    filter(
        "from-tag",
        "SELECTOR",
        "Source tags: key=value or a selector (\"role in {db, cache}\")",
        Field::Tag,
        End::Source,
    ),
    filter("to-tag", "SELECTOR", "Destination tags", Field::Tag, End::Destination),
    filter("tag", "SELECTOR", "Either end's tags", Field::Tag, End::Either),
    filter("from-name", "NAME", "Source name (PU, identity or external network)", Field::Name, End::Source),
    filter("to-name", "NAME", "Destination name", Field::Name, End::Destination),
    filter("name", "NAME", "Either end's name", Field::Name, End::Either),
    filter("verdict", "VERDICT", "allowed, rejected or passed", Field::Verdict, End::Flow),
    filter("reason", "REASON", "A reason as flow events carry it: policy_allow, policy_reject, no_match, identity_bad_mac, … (a wrong one is refused with the list)", Field::Reason, End::Flow),
    filter("ruleset", "NAME", "The deciding rule's ruleset", Field::Ruleset, End::Flow),
    filter("direction", "DIR", "incoming or outgoing, seen from the local PU", Field::Direction, End::Flow),
];

/// The `--not` option.
const NOT: &str = "not";

/// A filter's value: identities are numbers (clap refuses anything else).
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Number(u32),
}

/// One filter value as given.
#[derive(Debug, Clone, PartialEq)]
struct Given {
    filter: &'static Filter,
    value: Value,
    /// A `--not` came before it (since the previous filter).
    negated: bool,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}", self.long)
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        self.long == other.long
    }
}

/// The filters of one `observe`, in the order given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    given: Vec<Given>,
    /// A `--not` after the last filter: it excludes nothing.
    dangling_not: bool,
}

impl Args for Filters {
    fn augment_args(cmd: Command) -> Command {
        // Each `--not` is a value of its own (a count would keep only the last one's place).
        let not = Arg::new(NOT)
            .long(NOT)
            .num_args(0)
            .default_missing_value("true")
            .value_parser(value_parser!(bool))
            .action(ArgAction::Append)
            .help("Exclude what the next filter matches");
        FILTERS.iter().fold(cmd.arg(not), |cmd, f| {
            let arg = Arg::new(f.long).long(f.long).value_name(f.value_name).help(f.help).action(ArgAction::Append);
            cmd.arg(match f.field {
                Field::Identity => arg.value_parser(value_parser!(u32)),
                _ => arg.value_parser(value_parser!(String)),
            })
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for Filters {
    fn from_arg_matches(m: &ArgMatches) -> Result<Filters, clap::Error> {
        let mut given: Vec<(usize, Given)> = Vec::new();
        for f in &FILTERS {
            let Some(at) = m.indices_of(f.long) else { continue };
            let values: Vec<Value> = match f.field {
                Field::Identity => m.get_many::<u32>(f.long).into_iter().flatten().map(|&n| Value::Number(n)).collect(),
                _ => m.get_many::<String>(f.long).into_iter().flatten().map(|s| Value::Text(s.clone())).collect(),
            };
            given.extend(at.zip(values).map(|(at, value)| (at, Given { filter: f, value, negated: false })));
        }
        given.sort_by_key(|(at, _)| *at);
        let nots: Vec<usize> = m.indices_of(NOT).map(Iterator::collect).unwrap_or_default();
        let mut next_not = nots.iter().peekable();
        let mut out = Filters::default();
        for (at, mut g) in given {
            while next_not.next_if(|&&n| n < at).is_some() {
                g.negated = true;
            }
            out.given.push(g);
        }
        out.dangling_not = next_not.peek().is_some();
        Ok(out)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Filters::from_arg_matches(m)?;
        Ok(())
    }
}

impl Filters {
    /// The request's filters: `allow` (a flow passes if it matches any; all
    /// of one's fields must match) and `deny` (a flow is left out if it
    /// matches any). Positive filters make one filter, forked in two by each
    /// either-end filter; each excluded one stands alone.
    pub fn flow_filters(&self) -> Result<(Vec<pb::FlowFilter>, Vec<pb::FlowFilter>), Fail> {
        let mut allow = vec![pb::FlowFilter::default()];
        let mut deny = Vec::new();
        for g in &self.given {
            let ends: &[bool] = match g.filter.end {
                End::Source => &[true],
                End::Destination | End::Flow => &[false],
                End::Either => &[true, false],
            };
            if g.negated {
                for &source in ends {
                    let mut f = pb::FlowFilter::default();
                    add(&mut f, g, source)?;
                    deny.push(f);
                }
            } else if g.filter.end == End::Either {
                let mut forked = Vec::with_capacity(2 * allow.len());
                for f in &allow {
                    for &source in ends {
                        let mut f = f.clone();
                        add(&mut f, g, source)?;
                        forked.push(f);
                    }
                }
                allow = forked;
            } else {
                for f in &mut allow {
                    add(f, g, ends[0])?;
                }
            }
        }
        if self.dangling_not {
            return Err(usage("--not must come before a filter, e.g. --not --reason no_match"));
        }
        if allow.len() == 1 && allow[0] == pb::FlowFilter::default() {
            allow.clear();
        }
        Ok((allow, deny))
    }
}

/// Adds one filter value to `f`, at the source end or (`source` false) the destination.
fn add(f: &mut pb::FlowFilter, g: &Given, source: bool) -> Result<(), Fail> {
    let pick = |s: &mut Vec<String>, d: &mut Vec<String>, v: &str| if source { s } else { d }.push(v.to_owned());
    match (&g.value, g.filter.field) {
        (Value::Number(n), Field::Identity) => {
            if source { &mut f.source_identity } else { &mut f.destination_identity }.push(*n)
        }
        (Value::Text(v), Field::Ip) => pick(&mut f.source_ip, &mut f.destination_ip, v),
        (Value::Text(v), Field::Port) => pick(&mut f.source_port, &mut f.destination_port, v),
        (Value::Text(v), Field::Tag) => pick(&mut f.source_tags, &mut f.destination_tags, v),
        (Value::Text(v), Field::Name) => pick(&mut f.source_name, &mut f.destination_name, v),
        (Value::Text(v), Field::Protocol) => {
            f.protocol.extend(flownames::check_protocol(v).map_err(refused(g))?.into_iter().map(i32::from))
        }
        (Value::Text(v), Field::Verdict) => f.verdict.push(flownames::check_verdict(v).map_err(refused(g))? as i32),
        (Value::Text(v), Field::Reason) => f.reason.push(flownames::check_reason(v).map_err(refused(g))?.into()),
        (Value::Text(v), Field::Direction) => {
            f.direction.push(flownames::direction_pb(flownames::check_direction(v).map_err(refused(g))?) as i32)
        }
        (Value::Text(v), Field::Ruleset) => f.ruleset.push(v.clone()),
        (v, _) => return Err(usage(format!("--{}: {v:?} is not a value it takes", g.filter.long))),
    }
    Ok(())
}

/// A value the one list of flow names ([`flownames`]) does not have: refused
/// before anything is sent, with the names that can match.
fn refused(g: &Given) -> impl Fn(String) -> Fail + '_ {
    move |e| usage(format!("--{}: {e}", g.filter.long))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Lists = (Vec<pb::FlowFilter>, Vec<pb::FlowFilter>);

    fn parse(args: &[&str]) -> Result<Lists, String> {
        let cmd = Filters::augment_args(Command::new("observe").arg(Arg::new("last").long("last")));
        let m = cmd
            .try_get_matches_from(std::iter::once("observe").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Filters::from_arg_matches(&m).map_err(|e| e.to_string())?.flow_filters().map_err(|Fail(_, m)| m)
    }

    fn f(edit: impl FnOnce(&mut pb::FlowFilter)) -> pb::FlowFilter {
        let mut f = pb::FlowFilter::default();
        edit(&mut f);
        f
    }

    #[test]
    fn filters_of_different_kinds_all_apply_and_a_repeated_one_takes_any_value() {
        let bad_mac = dataplane::stats::DropReason::IdentityBadMac.name();
        let (allow, deny) = parse(&["--from-tag", "role=db", "--verdict", "rejected", "--reason", bad_mac]).unwrap();
        let want = f(|f| {
            f.source_tags = vec!["role=db".into()];
            f.verdict = vec![pb::Verdict::Rejected as i32];
            f.reason = vec![bad_mac.into()];
        });
        assert_eq!((allow, deny), (vec![want], vec![]));
        let (a, b) = (dataplane::policy::Reason::NoMatch.name(), dataplane::stats::DropReason::Replay.name());
        let (allow, _) = parse(&["--reason", a, "--to-port=80", "--reason", b]).unwrap();
        let want = f(|f| {
            f.reason = vec![a.into(), b.into()];
            f.destination_port = vec!["80".into()];
        });
        assert_eq!(allow, vec![want]);
        assert_eq!(parse(&["--last", "5"]).unwrap(), (vec![], vec![]));
        // a name the dataplane does not emit is refused, with the valid ones
        let e = parse(&["--reason", "bad_mac"]).unwrap_err();
        assert!(e.contains("unknown reason \"bad_mac\"") && e.contains("identity_bad_mac"), "{e}");
    }

    #[test]
    fn either_end_forks_and_not_applies_to_the_next_filter_only() {
        let (allow, deny) = parse(&["--ip", "10.9.0.4", "--from-identity", "7"]).unwrap();
        let src_ip = |f: &mut pb::FlowFilter| f.source_ip = vec!["10.9.0.4".into()];
        let dst_ip = |f: &mut pb::FlowFilter| f.destination_ip = vec!["10.9.0.4".into()];
        let id7 = |f: &mut pb::FlowFilter| f.source_identity = vec![7];
        assert_eq!(allow, [f(|f| (src_ip(f), id7(f)).1), f(|f| (dst_ip(f), id7(f)).1)]);
        assert!(deny.is_empty());

        // --not reaches over an option that is not a filter, and only to the next filter.
        let (allow, deny) = parse(&["--not", "--last", "5", "--ip", "10.9.0.4", "--to-identity", "8"]).unwrap();
        assert_eq!(allow, [f(|f| f.destination_identity = vec![8])]);
        assert_eq!(deny, [f(src_ip), f(dst_ip)]);

        let (allow, deny) =
            parse(&["--reason=no_match", "--not", "--not", "--from-identity", "7", "--not", "--verdict", "passed"])
                .unwrap();
        assert_eq!(allow, [f(|f| f.reason = vec!["no_match".into()])]);
        assert_eq!(deny, [f(id7), f(|f| f.verdict = vec![pb::Verdict::Passed as i32])]);
    }

    #[test]
    fn clap_gives_every_not_its_place() {
        let cmd = Filters::augment_args(Command::new("observe"));
        let m = cmd.try_get_matches_from(["observe", "--not", "--reason", "x", "--not", "--not", "--ip", "y"]).unwrap();
        let nots: Vec<usize> = m.indices_of(NOT).unwrap().collect();
        let (reason, ip) = (m.index_of("reason").unwrap(), m.index_of("ip").unwrap());
        assert!(nots.len() == 3 && nots[0] < reason && reason < nots[1] && nots[2] < ip, "{nots:?} {reason} {ip}");
    }

    #[test]
    fn every_listed_name_is_sent_as_it_is() {
        for d in flownames::DIRECTIONS {
            assert_eq!(parse(&["--direction", d.name()]).unwrap().0[0].direction, [flownames::direction_pb(d) as i32]);
        }
        for (v, n) in flownames::VERDICTS {
            assert_eq!(parse(&["--verdict", n]).unwrap().0[0].verdict, [v as i32]);
        }
        assert_eq!(parse(&["--protocol", "6"]).unwrap().0[0].protocol, [pb::Protocol::Tcp as i32]);
        assert_eq!(parse(&["--protocol", "tcp"]).unwrap().0[0].protocol, [6]);
        assert_eq!(parse(&["--protocol", "icmp"]).unwrap().0[0].protocol, [1, 58]);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse(&["--reason", "no_match", "--not"]).unwrap_err().contains("--not must come before a filter"));
        let valid = flownames::VERDICTS.map(|(_, n)| n).join(", ");
        assert!(parse(&["--verdict", "maybe"]).unwrap_err().contains(&valid));
        assert!(parse(&["--not", "--verdict", "maybe"]).unwrap_err().contains(&valid));
        assert!(parse(&["--protocol", "sctp"]).unwrap_err().contains("--protocol: unknown protocol"));
        let e = parse(&["--direction", "inbound"]).unwrap_err();
        assert!(e.contains("--direction") && e.contains("incoming, outgoing"), "{e}");
        assert!(parse(&["--identity", "web"]).is_err(), "an identity is a number");
        assert!(parse(&["--from-ip"]).is_err(), "a filter takes a value");
    }
}
