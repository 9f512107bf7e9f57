//! What an apply would remove from the config in force, and whether it may.
//!
//! Two rules, each lifted by a flag of the apply ([`ApplyOptions`]):
//! - **empty** (`allow_empty`): an apply that replaces the processing units
//!   and leaves none, or replaces the rulesets and leaves no rule, is
//!   refused: the gateway would drop everything it judges.
//! - **most removed** (`replace`, or `allow_empty`): an apply that removes
//!   more than half of the processing units, rulesets, identities, peers or
//!   external networks in force (matched by name, identities by number), or
//!   removes `local` or replaces a non-default enforcer profile with the
//!   default, is refused. A whole document that lacks a kind (absent or
//!   empty) removes all of it, so it falls under this rule: a document cut
//!   short is refused, naming the kinds it lacks.
//!
//! Each problem names the kind, how many of how many would go, and the first
//! few names.

use std::collections::HashSet;
use std::fmt::Display;
use std::hash::Hash;

use super::{ApplyOptions, Kind, Parts};
use dataplane::problem::{cut, ConfigProblem};

/// How many removed names a problem lists before "and N more".
const NAMES_SHOWN: usize = 5;
/// Each listed name is cut to this many bytes (the message stays readable
/// within [`super::MESSAGE_MAX`]).
const NAME_MAX: usize = 32;

/// What the apply would remove from one list in force.
struct Removal {
    /// Plural noun, e.g. "processing units".
    noun: &'static str,
    in_force: usize,
    /// The removed entries' names (or numbers).
    removed: Vec<String>,
    /// Removed in all, of which `removed` holds the first few.
    count: usize,
}

impl Removal {
    fn of<T, K: Hash + Eq + Display>(noun: &'static str, old: &[T], new: &[T], key: impl Fn(&T) -> K) -> Removal {
        let kept: HashSet<K> = new.iter().map(&key).collect();
        let mut removed = Vec::new();
        let mut count = 0;
        for k in old.iter().map(&key).filter(|k| !kept.contains(k)) {
            if removed.len() < NAMES_SHOWN {
                removed.push(cut(&k.to_string(), NAME_MAX));
            }
            count += 1;
        }
        Removal { noun, in_force: old.len(), removed, count }
    }

    /// More than half of what is in force.
    fn is_most(&self) -> bool {
        self.in_force > 0 && self.count * 2 > self.in_force
    }

    /// "3 of the 4 processing units in force (web-1, web-2, db-1)".
    fn describe(&self) -> String {
        let all = if self.count == self.in_force { "all ".to_owned() } else { String::new() };
        let mut names = self.removed.join(", ");
        if self.count > self.removed.len() {
            names += &format!(", and {} more", self.count - self.removed.len());
        }
        if all.is_empty() {
            format!("{} of the {} {} in force ({names})", self.count, self.in_force, self.noun)
        } else {
            format!("{all}{} {} in force ({names})", self.in_force, self.noun)
        }
    }
}

fn rule_count(p: &Parts) -> usize {
    p.rulesets.iter().map(|r| r.incoming.len() + r.outgoing.len()).sum()
}

/// The problems that refuse this apply under `opts`; empty if it may go on.
/// `whole` says the apply is a whole document (every kind replaced).
pub(super) fn check(
    old: Option<&Parts>,
    new: &Parts,
    kinds: &[Kind],
    whole: bool,
    opts: ApplyOptions,
) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let replace = opts.replace || opts.allow_empty;
    let lacks = |kind: Kind| {
        if whole {
            format!("the document has no {} (absent or empty), and a whole document replaces every kind: ", kind.name())
        } else {
            String::new()
        }
    };
    for &kind in kinds {
        let removals: Vec<Removal> = match (kind, old) {
            (_, None) => Vec::new(),
            (Kind::ProcessingUnits, Some(o)) => {
                vec![Removal::of("processing units", &o.processing_units, &new.processing_units, |p| p.name.clone())]
            }
            (Kind::Rulesets, Some(o)) => vec![Removal::of("rulesets", &o.rulesets, &new.rulesets, |r| r.name.clone())],
            (Kind::Identities, Some(o)) => vec![
                Removal::of("identities", &o.identities, &new.identities, |i| i.identity),
                Removal::of("peers", &o.peers, &new.peers, |p| p.name.clone()),
            ],
            (Kind::ExternalNetworks, Some(o)) => {
                vec![Removal::of("external networks", &o.external_networks, &new.external_networks, |n| n.name.clone())]
            }
            (Kind::EnforcerProfile, Some(_)) => Vec::new(),
        };
        // The empty rule first: it names what would go as well.
        let empty = match kind {
            Kind::ProcessingUnits if new.processing_units.is_empty() => Some("no processing units"),
            Kind::Rulesets if rule_count(new) == 0 => Some("no rules"),
            _ => None,
        };
        if let (Some(what), false) = (empty, opts.allow_empty) {
            let gone: Vec<String> = removals.iter().filter(|r| r.count > 0).map(Removal::describe).collect();
            let gone = if gone.is_empty() { String::new() } else { format!(", removing {}", gone.join(" and ")) };
            problems.push(ConfigProblem::new(
                "request",
                kind.name(),
                "allow_empty",
                "",
                format!(
                    "{}the apply would leave the gateway with {what}{gone}: it would drop everything it judges \
                     (if that is meant, apply with allow_empty: gwctl apply --allow-empty)",
                    lacks(kind)
                ),
            ));
            continue;
        }
        if replace {
            continue;
        }
        let most: Vec<&Removal> = removals.iter().filter(|r| r.is_most()).collect();
        if !most.is_empty() {
            let text: Vec<String> = most.iter().map(|r| r.describe()).collect();
            let counts: Vec<String> =
                most.iter().map(|r| format!("{} of {} {}", r.count, r.in_force, r.noun)).collect();
            problems.push(ConfigProblem::new(
                "request",
                kind.name(),
                "replace",
                &counts.join(", "),
                format!(
                    "{}the apply would remove {}: more than half of what is in force \
                     (if that is meant, apply with replace: gwctl apply --replace)",
                    if new_is_empty(kind, new) { lacks(kind) } else { String::new() },
                    text.join(" and ")
                ),
            ));
        }
        if let Some(o) = old {
            let dropped = match kind {
                Kind::Identities if o.local.is_some() && new.local.is_none() => {
                    Some(("local", "this gateway's own name and key (`local`)".to_owned()))
                }
                Kind::EnforcerProfile
                    if *o.enforcer_profile != Default::default() && *new.enforcer_profile == Default::default() =>
                {
                    Some(("enforcer_profile", "the enforcer profile in force (it would become the default one)".into()))
                }
                _ => None,
            };
            if let Some((field, what)) = dropped {
                problems.push(ConfigProblem::new(
                    "request",
                    kind.name(),
                    "replace",
                    field,
                    format!(
                        "{}the apply would remove {what} (if that is meant, apply with replace: gwctl apply --replace)",
                        if whole { format!("the document has no {field}: ") } else { String::new() }
                    ),
                ));
            }
        }
    }
    problems
}

/// The kind holds nothing in `p`.
fn new_is_empty(kind: Kind, p: &Parts) -> bool {
    match kind {
        Kind::ProcessingUnits => p.processing_units.is_empty(),
        Kind::Rulesets => p.rulesets.is_empty(),
        Kind::Identities => p.identities.is_empty() && p.peers.is_empty(),
        Kind::ExternalNetworks => p.external_networks.is_empty(),
        Kind::EnforcerProfile => false,
    }
}

/// Why the policy `p` drops everything it judges, if it does: no processing
/// unit, or no rule that allows (an observe-only rule decides nothing).
pub fn drops_everything(p: &Parts) -> Option<&'static str> {
    use dataplane::policy::model::Action;
    if p.processing_units.is_empty() {
        return Some("no processing units");
    }
    let allows = p
        .rulesets
        .iter()
        .flat_map(|r| r.incoming.iter().chain(&r.outgoing))
        .any(|r| r.action == Action::Allow && !r.observe);
    if !allows {
        return Some("no allow rules");
    }
    None
}
