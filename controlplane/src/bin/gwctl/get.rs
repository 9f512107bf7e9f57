//! `gwctl get`: what is in force, kind by kind.

use std::time::Duration;

use clap::ValueEnum;
use controlplane::api::client::Clients;
use controlplane::api::pb;

use crate::output::print_json_pretty;
use crate::{with_timeout, Fail, Res};

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// What to print.
    #[arg(value_enum)]
    what: GetWhat,
    #[arg(short = 'o', long, value_enum, default_value_t = DocOutput::Yaml)]
    output: DocOutput,
    /// With `rules`: each rule's hits (connections it decided, or would have
    /// for an observe rule), in total and per worker.
    #[arg(long)]
    hits: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum DocOutput {
    Yaml,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum GetWhat {
    Rulesets,
    Pus,
    Identities,
    Peers,
    Networks,
    Profile,
    /// Every rule in force, one line each (`--hits`: with its counts).
    Rules,
    All,
}

impl GetWhat {
    /// The kind to ask for, and the document's top-level keys to print (all: none named).
    fn request(self) -> (pb::ResourceKind, &'static [&'static str]) {
        match self {
            GetWhat::Rulesets => (pb::ResourceKind::Rulesets, &["rulesets"]),
            GetWhat::Pus => (pb::ResourceKind::ProcessingUnits, &["processing_units"]),
            GetWhat::Identities => (pb::ResourceKind::Identities, &["local", "identities"]),
            GetWhat::Peers => (pb::ResourceKind::Identities, &["peers"]),
            GetWhat::Networks => (pb::ResourceKind::ExternalNetworks, &["external_networks"]),
            GetWhat::Profile => (pb::ResourceKind::EnforcerProfile, &["enforcer_profile"]),
            GetWhat::Rules => (pb::ResourceKind::Rulesets, &["rulesets"]),
            GetWhat::All => (pb::ResourceKind::Unspecified, &[]),
        }
    }

    /// The version in force of what is printed.
    fn version(self, v: &pb::ConfigVersions) -> u64 {
        match self {
            GetWhat::Rulesets | GetWhat::Rules => v.rulesets,
            GetWhat::Pus => v.processing_units,
            GetWhat::Identities | GetWhat::Peers => v.identities,
            GetWhat::Networks => v.external_networks,
            GetWhat::Profile => v.enforcer_profile,
            GetWhat::All => v.document,
        }
    }
}

pub async fn run(c: &mut Clients, a: GetArgs, t: Duration) -> Res {
    if a.what == GetWhat::Rules {
        return rules(c, &a, t).await;
    }
    if a.hits {
        return Err(Fail(2, "--hits goes with `get rules`".into()));
    }
    let (kind, keys) = a.what.request();
    let r = with_timeout(t, "get", c.config.get(pb::GetRequest { kind: kind as i32, versions_only: false })).await?;
    let v = r.versions.unwrap_or_default();
    if r.document.is_none() {
        return Err(Fail(1, "no config has been applied to this gateway yet".into()));
    }
    let doc: serde_yaml::Value = serde_yaml::from_str(&r.document_yaml)
        .map_err(|e| Fail(1, format!("the gateway sent a document that does not parse: {e}")))?;
    let selected = if keys.is_empty() {
        doc
    } else {
        let mut m = serde_yaml::Mapping::new();
        for k in keys {
            if let Some(x) = doc.get(*k) {
                if !x.is_null() {
                    m.insert((*k).into(), x.clone());
                }
            }
        }
        serde_yaml::Value::Mapping(m)
    };
    match a.output {
        DocOutput::Yaml => {
            println!("# in force: version {} (document version {})", a.what.version(&v), v.document);
            print!("{}", serde_yaml::to_string(&selected).unwrap_or_default());
        }
        DocOutput::Json => {
            let mut j = serde_json::to_value(&selected).unwrap_or_default();
            if let Some(o) = j.as_object_mut() {
                o.insert("versions".into(), serde_json::to_value(v).unwrap_or_default());
            }
            print_json_pretty(&j);
        }
    }
    Ok(())
}

/// `get rules [--hits]`: the rules of the policy in force as the gateway
/// counts them (`GetStats` with `rule_hits`), in the policy's order.
async fn rules(c: &mut Clients, a: &GetArgs, t: Duration) -> Res {
    let req = pb::GetStatsRequest { rule_hits: true };
    let s = with_timeout(t, "get rules", c.stats.get_stats(req)).await?;
    if a.output == DocOutput::Json {
        print_json_pretty(&serde_json::json!({ "rules": s.rule_hits }));
        return Ok(());
    }
    print!("{}", rules_table(&s.rule_hits, a.hits));
    Ok(())
}

fn rules_table(rules: &[pb::RuleHits], hits: bool) -> String {
    let mut rows: Vec<Vec<String>> = vec![["RULESET", "DIRECTION", "RULE", "ACTION", "HITS", "PER WORKER"]
        .iter()
        .take(if hits { 6 } else { 4 })
        .map(|s| s.to_string())
        .collect()];
    for r in rules {
        let action = if r.observe { format!("{} (observe)", r.action) } else { r.action.clone() };
        let mut row = vec![r.ruleset.clone(), r.direction.clone(), r.rule.clone(), action];
        if hits {
            row.push(r.hits.to_string());
            row.push(r.per_worker.iter().map(u64::to_string).collect::<Vec<_>>().join(" "));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_table_lines_up_and_shows_hits_when_asked() {
        let r = pb::RuleHits {
            ruleset: "web".into(),
            direction: "incoming".into(),
            rule: "http".into(),
            action: "allow".into(),
            observe: true,
            hits: 12,
            per_worker: vec![5, 7],
        };
        let t = rules_table(std::slice::from_ref(&r), true);
        assert_eq!(t.lines().nth(1), Some("web      incoming   http  allow (observe)  12    5 7"), "{t}");
        assert!(!rules_table(&[r], false).contains("HITS"));
    }
}
