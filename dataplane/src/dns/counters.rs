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
    TcpIncomplete => "dns_tcp_incomplete", "DNS over TCP segments that do not hold one whole message (not reassembled).";
}

/// The counters of one worker.
#[derive(Debug)]
pub struct DnsCounters {
    pub counts: [Counter; DnsCount::COUNT],
    /// Per parser error ([`DnsError::ALL`] order).
    pub errors: [Counter; DnsError::ALL.len()],
}

impl Default for DnsCounters {
    fn default() -> Self {
        DnsCounters {
            counts: std::array::from_fn(|_| Counter::default()),
            errors: std::array::from_fn(|_| Counter::default()),
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

    pub fn get(&self, c: DnsCount) -> u64 {
        self.counts[c as usize].get()
    }

    /// Every counter with its name, errors last.
    pub fn read(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = DnsCount::ALL.iter().map(|&c| (c.name(), self.get(c))).collect();
        v.extend(DnsError::ALL.iter().zip(&self.errors).map(|(e, c)| (e.name(), c.get())));
        v
    }
}
