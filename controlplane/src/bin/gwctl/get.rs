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
    All,
    /// The addresses learned for FQDN patterns (not part of the document).
    Fqdn,
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
            GetWhat::All | GetWhat::Fqdn => (pb::ResourceKind::Unspecified, &[]),
        }
    }

    /// The version in force of what is printed.
    fn version(self, v: &pb::ConfigVersions) -> u64 {
        match self {
            GetWhat::Rulesets => v.rulesets,
            GetWhat::Pus => v.processing_units,
            GetWhat::Identities | GetWhat::Peers => v.identities,
            GetWhat::Networks => v.external_networks,
            GetWhat::Profile => v.enforcer_profile,
            GetWhat::All | GetWhat::Fqdn => v.document,
        }
    }
}

pub async fn run(c: &mut Clients, a: GetArgs, t: Duration) -> Res {
    if a.what == GetWhat::Fqdn {
        return fqdn(c, a.output, t).await;
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

/// `gwctl get fqdn`: the learned table, soonest expiry first.
async fn fqdn(c: &mut Clients, output: DocOutput, t: Duration) -> Res {
    let mut client = pb::dns_client::DnsClient::new(c.channel.clone());
    let mut r = with_timeout(t, "get fqdn", client.get_fqdn(pb::GetFqdnRequest {})).await?;
    r.entries.sort_by_key(|e| e.expires_unix_ns);
    match output {
        DocOutput::Json => print_json_pretty(&serde_json::to_value(&r).unwrap_or_default()),
        DocOutput::Yaml => {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            println!(
                "# {} learned entries of {} slots; learned {}, refreshed {}, refused (full) {}",
                r.entries.len(),
                r.capacity,
                r.learned,
                r.refreshed,
                r.full
            );
            println!("{:<40} {:<40} expires_in_s", "address", "pattern");
            for e in &r.entries {
                let left = e.expires_unix_ns.saturating_sub(now) as f64 / 1e9;
                println!("{:<40} {:<40} {left:.1}", e.address, e.pattern);
            }
        }
    }
    Ok(())
}
