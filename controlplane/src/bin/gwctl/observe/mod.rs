//! `gwctl observe`: the gateway's flows, filtered ([`filter`]), printed one
//! line or JSON object each ([`format`]) or counted ([`stream`]).

mod filter;
mod format;
mod merge;
mod stream;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use controlplane::api::client::Clients;
use controlplane::api::pb;

use crate::output::Output;
use crate::{usage, Fail, Res};
use filter::Filters;

#[derive(clap::Args, Debug)]
pub struct ObserveArgs {
    /// Keep printing new flows as they come.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The last N matching flows (default 20 without --follow).
    #[arg(long, value_name = "N")]
    last: Option<u64>,
    /// Only flows at or after this time: RFC 3339 (2026-11-22T11:00:00Z) or an age (30s, 10m, 2h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only flows before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Instead of flows, print per-interval aggregates (source, destination, port, protocol, verdict).
    #[arg(long, value_name = "SECS")]
    aggregate: Option<f64>,
    /// text: one line per flow; json: one JSON object per line; count: once a
    /// second, how many flows arrived and how many were reported lost (the
    /// records are framed, not decoded: for measuring rates).
    #[arg(short = 'o', long, value_enum, default_value_t = ObserveOutput::Text)]
    output: ObserveOutput,
    /// Merge the flows of several gateways (their control sockets, comma-separated;
    /// NAME=PATH names one), in time order, each line naming its gateway; a gateway
    /// that is down is said so and (with --follow) tried again.
    #[arg(long, value_name = "SOCKETS")]
    gateways: Option<String>,
    /// With --gateways: how long a flow waits for older ones from the other gateways.
    #[arg(long, value_name = "SECS", default_value_t = 0.5)]
    reorder_window: f64,
    /// `--not` and the filters, in the order given.
    #[command(flatten)]
    filters: Filters,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum ObserveOutput {
    Text,
    Json,
    Count,
}

/// An observe, checked: the request and how to print its answer.
pub struct Observe {
    req: pb::GetFlowsRequest,
    output: ObserveOutput,
    /// `--gateways`: the merge of several gateways' streams.
    merge: Option<merge::Merge>,
}

impl Observe {
    pub fn new(a: &ObserveArgs) -> Result<Observe, Fail> {
        let (allow, deny) = a.filters.flow_filters()?;
        let number = match (a.last, a.follow) {
            (Some(n), _) => n,
            (None, true) => 0,
            (None, false) if a.since.is_some() || a.aggregate.is_some() => 0,
            (None, false) => 20,
        };
        let aggregate_interval_ms = match a.aggregate {
            None => 0,
            Some(s) if s > 0.0 && s <= 86400.0 => (s * 1000.0) as u32,
            Some(s) => return Err(usage(format!("--aggregate {s}: not in (0, 86400] seconds"))),
        };
        if aggregate_interval_ms > 0 && a.last.is_some() {
            return Err(usage("--aggregate takes --follow or --since, not --last"));
        }
        let req = pb::GetFlowsRequest {
            number,
            follow: a.follow,
            since_unix_ns: a.since.as_deref().map(|s| parse_time(s, "--since")).transpose()?,
            until_unix_ns: a.until.as_deref().map(|s| parse_time(s, "--until")).transpose()?,
            allow,
            deny,
            aggregate_interval_ms,
        };
        let merge = match &a.gateways {
            None => None,
            Some(list) => {
                if a.output == ObserveOutput::Count {
                    return Err(usage("--gateways prints flows (text or json), not -o count"));
                }
                if !(0.0..=60.0).contains(&a.reorder_window) {
                    return Err(usage(format!("--reorder-window {}: not in [0, 60] seconds", a.reorder_window)));
                }
                Some(merge::Merge {
                    gateways: merge::parse_gateways(list)?,
                    window: Duration::from_secs_f64(a.reorder_window),
                })
            }
        };
        Ok(Observe { req, output: a.output, merge })
    }

    /// Whether it merges several gateways (and so connects to them itself).
    pub fn is_merge(&self) -> bool {
        self.merge.is_some()
    }

    /// `--gateways`: the merged stream.
    pub async fn run_merge(self, t: Duration) -> Res {
        let output = if self.output == ObserveOutput::Json { Output::Json } else { Output::Text };
        match self.merge {
            Some(m) => m.run(self.req, output, t).await,
            None => Ok(()),
        }
    }

    pub async fn run(self, c: &mut Clients, t: Duration) -> Res {
        match self.output {
            ObserveOutput::Text => stream::flows(c, self.req, Output::Text, t).await,
            ObserveOutput::Json => stream::flows(c, self.req, Output::Json, t).await,
            ObserveOutput::Count => stream::count(c, self.req, t).await,
        }
    }
}

/// Unix nanoseconds of an RFC 3339 time or of an age before now.
fn parse_time(s: &str, flag: &str) -> Result<u64, Fail> {
    if let Ok(d) = humantime::parse_duration(s) {
        let t = SystemTime::now().checked_sub(d).unwrap_or(UNIX_EPOCH);
        return Ok(t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| {
        usage(format!("{flag} {s:?}: not an RFC 3339 time (2026-11-22T11:00:00Z) or an age (30s, 10m, 2h)"))
    })?;
    Ok(t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0))
}
