//! `rulesets`: a subject selector over local PUs and its incoming and
//! outgoing rules, each an action on the identities (or external networks)
//! its object selects.

use std::collections::HashMap;

use super::error::{Problem, ResourceKind as K};
use super::population::selector_keys;
use super::validate::Validation;
use super::values::{parse_port, ports_without_protocol, proto_mask};
use crate::policy::hash::FxHashMap;
use crate::policy::model::{Action, Ruleset};
use crate::policy::selector::Selector;
use crate::policy::snapshot::{RuleInfo, F_OBSERVE, F_REJECT};
use crate::policy::Direction;

/// A rule as the verdict lists need it.
pub(super) struct CompiledRule {
    pub dir: Direction,
    pub ruleset: u32,
    pub protos: u8,
    pub flags: u8,
    pub ports: Vec<(u16, u16)>,
    pub object: Selector,
}

/// The rulesets: their subjects, and every rule (of all rulesets, in
/// document order) twice, for the build and for flow events.
pub(super) struct Rulesets {
    pub subjects: Vec<Selector>,
    pub rules: Vec<CompiledRule>,
    pub infos: Vec<RuleInfo>,
}

/// The rules' object selectors, parsed ahead of the rulesets' pass, in rule
/// order (`None`: does not parse; the rulesets' pass reports it).
pub(super) struct Objects(std::vec::IntoIter<Option<Selector>>);

impl Objects {
    pub fn parse(rulesets: &[Ruleset]) -> Objects {
        let objects = rulesets
            .iter()
            .flat_map(|rs| rs.incoming.iter().chain(&rs.outgoing))
            .map(|r| Selector::parse(&r.object).ok())
            .collect::<Vec<_>>();
        Objects(objects.into_iter())
    }

    /// Each tag key the objects test, numbered.
    pub fn key_slots(&self) -> FxHashMap<Box<str>, usize> {
        selector_keys(self.0.as_slice().iter().flatten()).keys().enumerate().map(|(i, &k)| (k.into(), i)).collect()
    }

    /// The next rule's object, if it parsed.
    fn next(&mut self) -> Option<Selector> {
        self.0.next().flatten()
    }
}

impl Validation<'_> {
    /// `objects`: every rule's object, parsed (taken in rule order).
    pub fn rulesets(&mut self, objects: &mut Objects) -> Rulesets {
        let doc = self.doc;
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut out =
            Rulesets { subjects: Vec::with_capacity(doc.rulesets.len()), rules: Vec::new(), infos: Vec::new() };
        for (i, rs) in doc.rulesets.iter().enumerate() {
            if names.insert(&rs.name, i).is_some() {
                self.duplicate_name(K::Ruleset, &rs.name, "another ruleset");
            }
            out.subjects.push(self.selector(K::Ruleset, &rs.name, "subject", &rs.subject));
            for (dir, list) in [(Direction::Incoming, &rs.incoming), (Direction::Outgoing, &rs.outgoing)] {
                let mut rule_names: HashMap<&str, usize> = HashMap::new();
                for (j, r) in list.iter().enumerate() {
                    if let Some(first) = rule_names.insert(&r.name, j) {
                        let why = Problem::Duplicate { first: format!("{}[{first}]", dir.name()) };
                        self.err(K::Ruleset, &rs.name, rule_field(dir, j, "name"), r.name.clone(), why);
                    }
                    let rule = self.rule(i as u32, dir, j, objects.next());
                    out.rules.push(rule);
                    out.infos.push(RuleInfo {
                        ruleset: rs.name.as_str().into(),
                        direction: dir,
                        index: j as u32,
                        name: r.name.as_str().into(),
                        action: r.action,
                        observe: r.observe,
                    });
                }
            }
        }
        out
    }

    /// Rule `j` of ruleset `i`'s `dir` list, its object parsed already
    /// (`None`: it does not parse). Field names are formatted only when there
    /// is a problem to report.
    fn rule(&mut self, i: u32, dir: Direction, j: usize, object: Option<Selector>) -> CompiledRule {
        let doc = self.doc;
        let rs = &doc.rulesets[i as usize];
        let r = match dir {
            Direction::Incoming => &rs.incoming[j],
            Direction::Outgoing => &rs.outgoing[j],
        };
        let ruleset = rs.name.as_str();
        let object = match object {
            Some(s) => s,
            None => self.selector(K::Ruleset, ruleset, &rule_field(dir, j, "object"), &r.object),
        };
        let ports = match r.ports.iter().map(parse_port).collect::<Result<Vec<_>, _>>() {
            Ok(mut v) => {
                if v.is_empty() {
                    v.push((0, u16::MAX));
                }
                v
            }
            Err(_) => self.ports(K::Ruleset, ruleset, &rule_field(dir, j, "ports"), &r.ports),
        };
        let protos = proto_mask(&r.protocols);
        if r.protocols.is_empty() {
            let field = rule_field(dir, j, "protocols");
            self.missing_list(K::Ruleset, ruleset, field, "protocols must not be empty (omit it for any)");
        }
        if let Some(v) = ports_without_protocol(protos, &r.ports) {
            self.err(K::Ruleset, ruleset, rule_field(dir, j, "ports"), v, Problem::PortsWithoutProtocol);
        }
        let flags = if r.action == Action::Reject { F_REJECT } else { 0 } | if r.observe { F_OBSERVE } else { 0 };
        CompiledRule { dir, ruleset: i, protos, flags, ports, object }
    }
}

/// A rule's field as problems name it: `incoming[2].ports`.
fn rule_field(dir: Direction, j: usize, field: &str) -> String {
    format!("{}[{j}].{field}", dir.name())
}
