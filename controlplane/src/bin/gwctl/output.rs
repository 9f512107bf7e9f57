//! What the commands share in printing: the output formats, times, JSON and
//! problem lists.

use std::time::{Duration, UNIX_EPOCH};

use clap::ValueEnum;
use controlplane::api::pb;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Output {
    Text,
    Json,
}

/// `v` as indented JSON, on stdout.
pub fn print_json_pretty(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Unix milliseconds in RFC 3339, "-" for 0 (never).
pub fn ms_time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Unix nanoseconds in RFC 3339, to the millisecond.
pub fn ns_time(ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// A refusal's problems, one indented line each.
pub fn print_problems(errors: &[pb::ConfigError]) {
    for e in errors {
        println!("  {}", e.message);
    }
}
