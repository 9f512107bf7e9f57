//! `gwctl status`: what is enforced, once or at every change.

use std::time::{Duration, SystemTime};

use controlplane::api::client::Clients;
use controlplane::api::pb;

use crate::output::{ms_time, print_problems, Output};
use crate::{from_status, with_timeout, Fail, Res};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Keep printing each change (applied or refused).
    #[arg(short = 'w', long)]
    watch: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub async fn run(c: &mut Clients, a: StatusArgs, t: Duration) -> Res {
    let show = |s: &pb::ConfigStatus| match a.output {
        Output::Json => println!("{}", serde_json::to_string(s).unwrap_or_default()),
        Output::Text => print_status(s),
    };
    if !a.watch {
        let r = with_timeout(t, "status", c.config.get(pb::GetRequest { kind: 0, versions_only: true })).await?;
        show(&r.status.unwrap_or_default());
        return Ok(());
    }
    let mut stream = with_timeout(t, "watch", c.config.watch(pb::WatchRequest {})).await?;
    loop {
        match stream.message().await {
            Ok(Some(s)) => {
                if a.output == Output::Text {
                    println!("--- {} ({})", humantime::format_rfc3339_seconds(SystemTime::now()), s.event);
                }
                show(&s);
            }
            Ok(None) => return Err(Fail(3, "watch: the gateway ended the stream".into())),
            Err(e) => return Err(from_status("watch", e)),
        }
    }
}

/// The state in words: never just "enforcing" for a policy that drops everything.
fn state_text(s: &pb::ConfigStatus) -> String {
    match pb::EnforcementState::try_from(s.state) {
        Ok(pb::EnforcementState::Enforcing) => "enforcing".into(),
        Ok(pb::EnforcementState::EnforcingDropAll) => {
            let why = if s.drops_all.is_empty() { "nothing is allowed" } else { &s.drops_all };
            format!("enforcing a policy that drops everything: {why}")
        }
        Ok(pb::EnforcementState::NoConfigFailClosed) => {
            "no config applied: failing closed (everything judged is dropped)".into()
        }
        Ok(pb::EnforcementState::NoConfigFailOpen) => {
            "no config applied: failing open (everything forwarded untouched)".into()
        }
        _ => format!("unknown ({})", s.state),
    }
}

fn print_status(s: &pb::ConfigStatus) {
    let v = s.versions.unwrap_or_default();
    println!("state:        {}", state_text(s));
    println!(
        "version:      {} (rulesets {}, processing_units {}, identities {}, external_networks {}, enforcer_profile {})",
        v.document, v.rulesets, v.processing_units, v.identities, v.external_networks, v.enforcer_profile
    );
    if !s.revision.is_empty() {
        println!("revision:     {}", s.revision);
    }
    println!(
        "applied at:   {}{}",
        ms_time(s.applied_at_unix_ms),
        if s.source.is_empty() { String::new() } else { format!(" ({})", s.source) }
    );
    println!("generation:   {}", s.generation);
    println!("policy:       {} processing units, {} identities, {} rules", s.processing_units, s.identities, s.rules);
    println!("applies:      {} accepted, {} refused since start", s.applies_accepted, s.applies_refused);
    if let Some(r) = &s.last_refused {
        println!("last refused: version {} at {}:", r.version, ms_time(r.at_unix_ms));
        print_problems(&r.errors);
    }
    if let Some(f) = &s.fleet {
        print_fleet(f);
    }
}

fn print_fleet(f: &pb::FleetStatus) {
    let link = if f.connected { "connected".to_owned() } else { format!("disconnected ({})", f.last_error) };
    println!("fleet:        gateway {} (key id {}), {link}", f.name, f.key_id);
    println!(
        "              fleet version {} in force (newest seen {}), etcd revision {}, profile {}",
        f.applied_fleet_version,
        f.seen_fleet_version,
        f.etcd_revision,
        if f.profile.is_empty() { "-" } else { &f.profile }
    );
    println!(
        "              {} applies, {} refusals, {} disconnects, {} re-lists, {} unverified objects ignored",
        f.applies, f.refusals, f.disconnects, f.relists, f.unverified_objects
    );
    for e in &f.unverified_examples {
        println!("  unverified: {e}");
    }
    for c in &f.conflicts {
        println!("  conflict:   {c}");
    }
}
