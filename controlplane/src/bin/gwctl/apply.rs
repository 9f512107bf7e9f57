//! `gwctl apply`: a policy document, or one kind of resource from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use controlplane::api::client::Clients;
use controlplane::api::convert::{document_from_yaml, document_to_pb};
use controlplane::api::pb;
use pb::apply_request::Content;

use crate::output::{print_json_pretty, print_problems, Output};
use crate::{usage, with_timeout, Fail, Res};

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The policy document (YAML); "-" reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// The version to apply; must be greater than the one in force
    /// (default: the version in force + 1).
    #[arg(long)]
    version: Option<u64>,
    /// Apply only this kind from the file; the other kinds in force are kept.
    #[arg(long, value_enum)]
    kind: Option<ApplyKind>,
    /// Validate and compile only; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Allow a result with no processing units or no rules (the gateway
    /// then drops everything it judges). Implies --replace.
    #[arg(long)]
    allow_empty: bool,
    /// Allow removing more than half of the processing units, rulesets,
    /// identities, peers or external networks in force (a whole document
    /// that lacks a kind in force removes all of it).
    #[arg(long)]
    replace: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum ApplyKind {
    Rulesets,
    Pus,
    Identities,
    Networks,
    Profile,
}

/// The file's text (read before connecting).
pub fn read_input(file: &Path) -> Result<String, Fail> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| usage(format!("reading standard input: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(|e| usage(format!("-f {}: {e}", file.display())))
    }
}

pub async fn run(c: &mut Clients, a: ApplyArgs, text: String, t: Duration) -> Res {
    let content = content(&a.file, text, a.kind)?;
    let version = match a.version {
        Some(v) => v,
        None => {
            let got = with_timeout(t, "get", c.config.get(pb::GetRequest { kind: 0, versions_only: true })).await?;
            got.versions.map_or(0, |v| v.document) + 1
        }
    };
    let req = pb::ApplyRequest {
        version,
        content: Some(content),
        dry_run: a.dry_run,
        allow_empty: a.allow_empty,
        replace: a.replace,
    };
    let r = with_timeout(t, "apply", c.config.apply(req)).await?;
    if a.output == Output::Json {
        print_json_pretty(&r);
    } else if r.accepted {
        let rev = if r.revision.is_empty() { String::new() } else { format!(" (revision {:?})", r.revision) };
        let what = if r.dry_run { "valid (dry run, nothing applied):" } else { "applied" };
        println!("{what} version {}{rev}, compiled in {:.1} ms", r.version, r.compile_us as f64 / 1000.0);
    } else {
        let n = r.errors.len();
        let in_force = r.in_force.map_or(0, |v| v.document);
        println!(
            "refused version {}: {n} problem{}; version {in_force} stays in force",
            r.version,
            if n == 1 { "" } else { "s" }
        );
        print_problems(&r.errors);
    }
    if r.accepted {
        Ok(())
    } else {
        Err(Fail(1, format!("apply of {} refused", a.file.display())))
    }
}

/// The whole document as text, or the one kind (parsed here).
fn content(file: &Path, text: String, kind: Option<ApplyKind>) -> Result<Content, Fail> {
    let Some(k) = kind else {
        return Ok(Content::DocumentYaml(text));
    };
    let doc = document_from_yaml(&text).map_err(|p| usage(format!("{}: {}", file.display(), p.bounded().message)))?;
    let d = document_to_pb(&doc, false);
    Ok(match k {
        ApplyKind::Rulesets => Content::Rulesets(pb::Rulesets { rulesets: d.rulesets }),
        ApplyKind::Pus => Content::ProcessingUnits(pb::ProcessingUnits { processing_units: d.processing_units }),
        ApplyKind::Identities => {
            Content::Identities(pb::IdentityDirectory { local: d.local, identities: d.identities, peers: d.peers })
        }
        ApplyKind::Networks => {
            Content::ExternalNetworks(pb::ExternalNetworks { external_networks: d.external_networks })
        }
        ApplyKind::Profile => Content::EnforcerProfile(d.enforcer_profile.unwrap_or_default()),
    })
}
