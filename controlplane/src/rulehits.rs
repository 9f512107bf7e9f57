//! Per-rule hit counts as operators read them (`gwctl get rules --hits`,
//! `GetStats.rule_hits`, the `igw_rule_hits_total` metric).
//!
//! The workers count into the slots of the policy that decided
//! ([`dataplane::engine::RuleHits`], one row per worker). A re-compile
//! publishes a policy with fresh slots; the book keeps the policies it
//! replaced for a while (a worker picks up a new policy at its next burst,
//! so a replaced one stops moving within microseconds; [`RETIRE_AFTER`] is
//! far beyond that), then adds their counts to the rules of the same
//! ruleset, direction and name, and forgets the policy. A rule that no longer
//! exists is forgotten with it; one that comes back starts from zero.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataplane::engine::EngineConfig;
use dataplane::policy::RuleRef;

/// A replaced policy is folded into the totals this long after it was replaced.
pub const RETIRE_AFTER: Duration = Duration::from_secs(2);

/// A rule by name: ruleset, direction, rule.
type RuleKey = (Box<str>, &'static str, Box<str>);

/// One rule of the policy in force and its hits.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCount {
    pub ruleset: String,
    /// `incoming` or `outgoing`.
    pub direction: &'static str,
    pub rule: String,
    /// `allow` or `reject`.
    pub action: &'static str,
    /// An observe rule: what it counts is what it would have decided.
    pub observe: bool,
    /// Per worker, since the gateway started (across re-compiles).
    pub per_worker: Vec<u64>,
    pub hits: u64,
}

#[derive(Default)]
struct Book {
    /// The policies whose slots workers may still write: the one in force
    /// last, each with when it was replaced.
    live: Vec<(Arc<EngineConfig>, Option<Instant>)>,
    /// Counts of retired policies, per worker, by rule name.
    retired: HashMap<RuleKey, Vec<u64>>,
}

/// The control plane's view of every policy's rule-hit slots.
#[derive(Default)]
pub struct RuleHitBook {
    book: Mutex<Book>,
}

fn key_of(cfg: &EngineConfig, r: RuleRef) -> Option<RuleKey> {
    cfg.policy.rule(r).map(|x| (x.ruleset.clone(), x.direction.name(), x.name.clone()))
}

fn rules(cfg: &EngineConfig) -> impl Iterator<Item = RuleRef> + '_ {
    (0..cfg.policy.rule_count() as u32).map(RuleRef)
}

/// Adds `cfg`'s per-worker counts of rule `r` into `into`.
fn add_counts(cfg: &EngineConfig, r: RuleRef, into: &mut Vec<u64>) {
    let h = &cfg.rule_hits;
    if into.len() < h.workers() {
        into.resize(h.workers(), 0);
    }
    for (w, v) in into.iter_mut().enumerate().take(h.workers()) {
        *v += h.get(w, r);
    }
}

impl Book {
    /// Folds the policies replaced at least [`RETIRE_AFTER`] ago into `retired`.
    fn retire(&mut self, now: Instant) {
        let Some(current) = self.live.last().map(|(c, _)| c.clone()) else { return };
        let mut kept = Vec::with_capacity(self.live.len());
        for (cfg, replaced) in std::mem::take(&mut self.live) {
            match replaced {
                Some(at) if now.duration_since(at) >= RETIRE_AFTER => {
                    for r in rules(&cfg) {
                        if let Some(k) = key_of(&cfg, r) {
                            add_counts(&cfg, r, self.retired.entry(k).or_default());
                        }
                    }
                }
                _ => kept.push((cfg, replaced)),
            }
        }
        self.live = kept;
        // Rules gone from the policy in force are forgotten.
        let exists: std::collections::HashSet<RuleKey> = rules(&current).filter_map(|r| key_of(&current, r)).collect();
        self.retired.retain(|k, _| exists.contains(k));
    }
}

impl RuleHitBook {
    /// `cfg` is the policy in force from now on.
    pub fn publish(&self, cfg: Arc<EngineConfig>) {
        self.publish_at(cfg, Instant::now());
    }

    fn publish_at(&self, cfg: Arc<EngineConfig>, now: Instant) {
        let mut b = self.book.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = b.live.last_mut() {
            last.1 = Some(now);
        }
        b.live.push((cfg, None));
        b.retire(now);
    }

    /// Every rule of the policy in force with its hits (in the policy's order).
    pub fn counts(&self) -> Vec<RuleCount> {
        self.counts_at(Instant::now())
    }

    fn counts_at(&self, now: Instant) -> Vec<RuleCount> {
        let mut b = self.book.lock().unwrap_or_else(|e| e.into_inner());
        b.retire(now);
        let Some((current, _)) = b.live.last() else { return Vec::new() };
        // Replaced policies still live: their rules by name.
        let older: Vec<(&EngineConfig, HashMap<RuleKey, RuleRef>)> = b.live[..b.live.len() - 1]
            .iter()
            .map(|(c, _)| (&**c, rules(c).filter_map(|r| key_of(c, r).map(|k| (k, r))).collect()))
            .collect();
        rules(current)
            .filter_map(|r| {
                let info = current.policy.rule(r)?;
                let key = key_of(current, r)?;
                let mut per_worker = b.retired.get(&key).cloned().unwrap_or_default();
                for (c, by_name) in &older {
                    if let Some(&o) = by_name.get(&key) {
                        add_counts(c, o, &mut per_worker);
                    }
                }
                add_counts(current, r, &mut per_worker);
                Some(RuleCount {
                    ruleset: info.ruleset.to_string(),
                    direction: info.direction.name(),
                    rule: info.name.to_string(),
                    action: crate::flownames::action_name(info.action),
                    observe: info.observe,
                    hits: per_worker.iter().sum(),
                    per_worker,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::policy::{Action, Decision, Reason};

    fn policy(rules: &[&str]) -> EngineConfig {
        let list: Vec<String> =
            rules.iter().map(|r| format!("{{name: {r}, action: allow, object: all(), protocols: [tcp]}}")).collect();
        let yaml = format!(
            "processing_units: [{{name: web, tags: [app=web], addresses: [10.2.0.20], identity: 2001}}]\n\
             rulesets: [{{name: web, subject: all(), incoming: [{}]}}]\n",
            list.join(", ")
        );
        let mut c = EngineConfig::from_yaml(&yaml).unwrap();
        c.count_rule_hits(2);
        c
    }

    fn hit(c: &EngineConfig, worker: usize, rule: &str, n: usize) {
        let r = rules(c).find(|&r| &*c.policy.rule(r).unwrap().name == rule).unwrap();
        let d = Decision {
            action: Action::Allow,
            rule: Some(r),
            external: None,
            observed: None,
            reason: Reason::PolicyAllow,
        };
        for _ in 0..n {
            c.rule_hits.count(worker, &d);
        }
    }

    fn of(book: &RuleHitBook, now: Instant) -> Vec<(String, Vec<u64>)> {
        book.counts_at(now).into_iter().map(|c| (c.rule, c.per_worker)).collect()
    }

    #[test]
    fn counts_survive_recompiles_for_rules_that_still_exist() {
        let book = RuleHitBook::default();
        let t0 = Instant::now();
        let a = Arc::new(policy(&["http", "ssh"]));
        book.publish_at(a.clone(), t0);
        hit(&a, 0, "http", 3);
        hit(&a, 1, "ssh", 2);
        // A re-compile without ssh, with a new rule before http.
        let b = Arc::new(policy(&["dns", "http"]));
        book.publish_at(b.clone(), t0);
        hit(&a, 1, "http", 1); // a worker still on the old policy
        hit(&b, 0, "http", 1);
        let want = vec![("dns".to_string(), vec![0, 0]), ("http".to_string(), vec![4, 1])];
        assert_eq!(of(&book, t0), want, "the replaced policy is still live");
        assert_eq!(of(&book, t0 + RETIRE_AFTER), want, "and then retired into the totals");
        assert_eq!(book.book.lock().unwrap().live.len(), 1);
        // ssh comes back: from zero.
        let c = Arc::new(policy(&["http", "ssh"]));
        book.publish_at(c, t0 + 2 * RETIRE_AFTER);
        assert_eq!(
            of(&book, t0 + 4 * RETIRE_AFTER),
            vec![("http".to_string(), vec![4, 1]), ("ssh".to_string(), vec![0, 0])]
        );
        let all = book.counts();
        assert_eq!((all[0].hits, all[0].action, all[0].direction, all[0].observe), (5, "allow", "incoming", false));
    }
}
