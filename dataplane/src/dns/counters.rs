//! Per-worker DNS counters: one list makes both the enum and the names the
//! metrics and docs use.

use super::DnsError;
use crate::stats::Counter;

macro_rules! dns_counts {
    ($($v:ident => $name:literal, $doc:literal;)*) => {
        /// What a worker counts about the DNS it sees.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DnsCount { $(#[doc = $doc] $v,)* }
        impl DnsCount {
            pub const ALL: &'static [DnsCount] = &[$(DnsCount::$v,)*];
            pub const COUNT: usize = Self::ALL.len();
            pub fn name(self) -> &'static str {
                match self { $(DnsCount::$v => $name,)* }
            }
        }
    };
}

dns_counts! {
    Queries => "queries", "Queries seen going out from a local PU (recorded for latency).";
    Responses => "responses", "Responses read from a trusted server to a local PU (each one DNS event).";
    Untrusted => "untrusted_server", "Responses from a server outside `dns_servers`: not read, nothing learned.";
    NotLocal => "not_to_local_pu", "Responses whose destination is no local PU.";
    NotResponse => "not_a_response", "Messages from port 53 without the QR bit.";
    Malformed => "malformed", "Responses the parser refused (the reason is counted too, `dns_*`).";
    Unsolicited => "unsolicited", "Responses matching no query seen (id, addresses, ports): logged, nothing learned.";
    OffChain => "answers_off_chain", "Answer records for a name not on the chain from the question: not believed.";
    Learned => "fqdn_learned", "Addresses learned for FQDN patterns (new entries).";
    Refreshed => "fqdn_refreshed", "Addresses learned again before they expired.";
    LearnFull => "fqdn_table_full", "Addresses not learned: their slots in the learned table were all live.";
    QueryOverwritten => "query_overwritten", "Queries forgotten before their response (the query table slot was reused).";
    TcpIncomplete => "dns_tcp_incomplete", "DNS over TCP responses that start a segment but do not fit it (split over several segments: not reassembled, not read).";
    TcpNotStart => "dns_tcp_not_message_start", "DNS over TCP segments from a server that do not start the response to a query seen on the connection (a split message's continuation, or unasked): not read.";
}

/// The hold's histogram: bucket `i` counts holds under `2^i` µs (the last,
/// 8192 µs or more). Names in [`HOLD_BUCKET_NAMES`].
pub const HOLD_BUCKETS: usize = 15;
pub const HOLD_BUCKET_NAMES: [&str; HOLD_BUCKETS] = [
    "hold_lt_1us",
    "hold_lt_2us",
    "hold_lt_4us",
    "hold_lt_8us",
    "hold_lt_16us",
    "hold_lt_32us",
    "hold_lt_64us",
    "hold_lt_128us",
    "hold_lt_256us",
    "hold_lt_512us",
    "hold_lt_1024us",
    "hold_lt_2048us",
    "hold_lt_4096us",
    "hold_lt_8192us",
    "hold_ge_8192us",
];

/// The counters of one worker.
#[derive(Debug)]
pub struct DnsCounters {
    pub counts: [Counter; DnsCount::COUNT],
    /// Per parser error ([`DnsError::ALL`] order).
    pub errors: [Counter; DnsError::ALL.len()],
    /// The hold of each answer that taught the learned table (new or
    /// refreshed entries): from the worker's timestamp of the round of
    /// bursts that brought the answer to the last learned entry published
    /// (visible to every worker; the answer is transmitted after). Only
    /// with a clock set ([`crate::engine::Engine::set_dns_clock`]).
    pub hold: [Counter; HOLD_BUCKETS],
    /// The longest hold seen (ns, a gauge).
    pub hold_max_ns: Counter,
}

impl Default for DnsCounters {
    fn default() -> Self {
        DnsCounters {
            counts: std::array::from_fn(|_| Counter::default()),
            errors: std::array::from_fn(|_| Counter::default()),
            hold: std::array::from_fn(|_| Counter::default()),
            hold_max_ns: Counter::default(),
        }
    }
}

impl DnsCounters {
    #[inline]
    pub fn add(&self, c: DnsCount) {
        self.counts[c as usize].add(1);
    }

    /// Adds `n` (nothing when 0: no write to the counter's line).
    #[inline]
    pub fn add_n(&self, c: DnsCount, n: u64) {
        if n > 0 {
            self.counts[c as usize].add(n);
        }
    }

    pub fn error(&self, e: DnsError) {
        self.add(DnsCount::Malformed);
        if let Some(i) = DnsError::ALL.iter().position(|&x| x == e) {
            self.errors[i].add(1);
        }
    }

    /// Records one answer's hold of `ns`.
    pub fn hold(&self, ns: u64) {
        let us = ns / 1000;
        let i = (u64::BITS - us.leading_zeros()) as usize;
        self.hold[i.min(HOLD_BUCKETS - 1)].add(1);
        if ns > self.hold_max_ns.get() {
            self.hold_max_ns.set(ns);
        }
    }

    pub fn get(&self, c: DnsCount) -> u64 {
        self.counts[c as usize].get()
    }

    /// Every counter with its name: counts, parser errors, then the hold's
    /// histogram and maximum.
    pub fn read(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = DnsCount::ALL.iter().map(|&c| (c.name(), self.get(c))).collect();
        v.extend(DnsError::ALL.iter().zip(&self.errors).map(|(e, c)| (e.name(), c.get())));
        v.extend(HOLD_BUCKET_NAMES.iter().zip(&self.hold).map(|(&n, c)| (n, c.get())));
        v.push(("hold_max_ns", self.hold_max_ns.get()));
        v
    }
}
