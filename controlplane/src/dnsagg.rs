//! Per-interval aggregation of DNS events (`[dnslog] aggregate_s = N`):
//! instead of a line per response, the DNS log gets one record per
//! (PU, query name, type, class, rcode, server) per interval, with the count
//! and the latency's count, mean and maximum, and the answers seen. The
//! fields follow Calico Enterprise's DNS logs (`qname, qtype, qclass, rcode,
//! rrsets, servers, client labels, count, latency_count/mean/max`).
//!
//! Memory is bounded: at most `max_keys` records are open at once. An event
//! for a new key when the table is full flushes every open record early
//! (each marked `"flush": "table_full"`, and counted in
//! [`Aggregator::early_flushes`]) and starts a new interval with it: nothing
//! is dropped, and a record's counts are never merged into the wrong key.
//! Each record keeps at most [`MAX_RRS`] distinct addresses and CNAMEs; more
//! are counted in its `more_answers`.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::{json, Value};

use crate::dnslog::DnsEvent;

/// Distinct addresses (and CNAMEs) one aggregated record keeps.
pub const MAX_RRS: usize = 16;
/// Open records at most, by default.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// What an aggregated record is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    pu: Option<String>,
    qname: String,
    qtype: String,
    qclass: u16,
    rcode: String,
    server: IpAddr,
}

#[derive(Debug, Default)]
struct Agg {
    pu_tags: Vec<String>,
    count: u64,
    latency_count: u64,
    latency_sum_ns: u64,
    latency_max_ns: u64,
    answers: BTreeSet<IpAddr>,
    cnames: BTreeSet<String>,
    more_answers: u64,
    truncated: u64,
    learned: u64,
}

/// Why a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Its interval ended.
    Interval,
    /// A new key found the table full.
    TableFull,
    /// The gateway stopped.
    Stop,
}

impl Flush {
    fn name(self) -> &'static str {
        match self {
            Flush::Interval => "interval",
            Flush::TableFull => "table_full",
            Flush::Stop => "stop",
        }
    }
}

/// The open records of the current interval.
#[derive(Debug)]
pub struct Aggregator {
    interval_ns: u64,
    max_keys: usize,
    /// When the current interval started (the first event after a flush).
    start_ns: Option<u64>,
    open: HashMap<Key, Agg>,
    /// Times a full table flushed the interval early.
    pub early_flushes: u64,
    /// Records written.
    pub records: u64,
}

impl Aggregator {
    pub fn new(interval_s: u64, max_keys: usize) -> Aggregator {
        Aggregator {
            interval_ns: interval_s.max(1) * 1_000_000_000,
            max_keys: max_keys.max(1),
            start_ns: None,
            open: HashMap::new(),
            early_flushes: 0,
            records: 0,
        }
    }

    /// Adds `e`, seen at `now` (Unix ns); returns the records a full table
    /// flushed to make room (empty otherwise).
    pub fn add(&mut self, e: &DnsEvent, now: u64) -> Vec<Value> {
        let key = Key {
            pu: e.pu.clone(),
            qname: e.qname.clone(),
            qtype: e.qtype.clone(),
            qclass: e.qclass,
            rcode: e.rcode.clone(),
            server: e.server.0,
        };
        let mut flushed = Vec::new();
        if !self.open.contains_key(&key) && self.open.len() >= self.max_keys {
            self.early_flushes += 1;
            flushed = self.flush(now, Flush::TableFull);
        }
        self.start_ns.get_or_insert(now);
        let a = self.open.entry(key).or_default();
        if a.count == 0 {
            a.pu_tags = e.pu_tags.clone();
        }
        a.count += 1;
        if let Some(l) = e.latency_ns {
            a.latency_count += 1;
            a.latency_sum_ns = a.latency_sum_ns.saturating_add(l);
            a.latency_max_ns = a.latency_max_ns.max(l);
        }
        for &(ip, _) in &e.answers {
            if a.answers.len() < MAX_RRS || a.answers.contains(&ip) {
                a.answers.insert(ip);
            } else {
                a.more_answers += 1;
            }
        }
        a.more_answers += u64::from(e.more_answers);
        for (n, _) in &e.cnames {
            if a.cnames.len() < MAX_RRS {
                a.cnames.insert(n.clone());
            }
        }
        a.truncated += u64::from(e.truncated);
        a.learned += u64::from(e.learned);
        flushed
    }

    /// The records of an interval that has ended by `now` (empty if none).
    pub fn due(&mut self, now: u64) -> Vec<Value> {
        match self.start_ns {
            Some(s) if now >= s.saturating_add(self.interval_ns) => self.flush(now, Flush::Interval),
            _ => Vec::new(),
        }
    }

    /// Every open record, now, and a new interval.
    pub fn flush(&mut self, now: u64, why: Flush) -> Vec<Value> {
        let start = self.start_ns.take().unwrap_or(now);
        let mut out: Vec<(Key, Agg)> = self.open.drain().collect();
        let order = |k: &Key| (k.pu.clone(), k.qname.clone(), k.qtype.clone(), k.qclass, k.rcode.clone(), k.server);
        out.sort_by_key(|(k, _)| order(k));
        self.records += out.len() as u64;
        out.into_iter().map(|(k, a)| record(&k, &a, start, now, why)).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

fn record(k: &Key, a: &Agg, start: u64, end: u64, why: Flush) -> Value {
    let ms = |ns: u64| ns as f64 / 1e6;
    json!({
        "time_start": start as f64 / 1e9,
        "time_end": end as f64 / 1e9,
        "event": "dns_aggregate",
        "flush": why.name(),
        "pu": k.pu,
        "pu_tags": a.pu_tags,
        "qname": k.qname,
        "qtype": k.qtype,
        "qclass": k.qclass,
        "rcode": k.rcode,
        "servers": [{"ip": k.server.to_string()}],
        "rrsets": {
            "cnames": a.cnames.iter().collect::<Vec<_>>(),
            "answers": a.answers.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
            "more_answers": a.more_answers,
        },
        "count": a.count,
        "truncated": a.truncated,
        "learned": a.learned,
        "latency_count": a.latency_count,
        "latency_mean_ms": (a.latency_count > 0).then(|| ms(a.latency_sum_ns / a.latency_count)),
        "latency_max_ms": (a.latency_count > 0).then(|| ms(a.latency_max_ns)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ev(pu: &str, q: &str, rcode: &str, latency_ms: Option<u64>, ip: &str) -> DnsEvent {
        DnsEvent {
            time_ns: 0,
            worker: 0,
            pu: Some(pu.into()),
            pu_tags: vec![format!("app={pu}")],
            client: ("10.1.0.1".parse().unwrap(), 40000),
            server: ("10.2.0.53".parse().unwrap(), 53),
            transport: "udp",
            id: 1,
            qname: q.into(),
            qtype: "A".into(),
            qclass: 1,
            rcode: rcode.into(),
            truncated: false,
            cnames: vec![],
            answers: vec![(ip.parse().unwrap(), 30)],
            more_answers: 0,
            more_cnames: 0,
            off_chain: 0,
            learned: 1,
            latency_ns: latency_ms.map(|l| l * 1_000_000),
            generation: 1,
        }
    }

    #[test]
    fn one_record_per_key_per_interval_with_count_and_latency() {
        let mut a = Aggregator::new(10, 100);
        assert!(a.add(&ev("client", "api.test", "NOERROR", Some(2), "10.9.0.2"), 100 * S).is_empty());
        a.add(&ev("client", "api.test", "NOERROR", Some(4), "10.9.0.3"), 101 * S);
        a.add(&ev("client", "api.test", "NOERROR", None, "10.9.0.2"), 102 * S);
        a.add(&ev("client", "api.test", "NXDOMAIN", Some(1), "10.9.0.2"), 103 * S);
        a.add(&ev("other", "api.test", "NOERROR", Some(1), "10.9.0.2"), 103 * S);
        assert!(a.due(109 * S).is_empty(), "the interval has not ended");
        let r = a.due(110 * S);
        assert_eq!(r.len(), 3);
        let api = &r[0];
        assert_eq!((api["pu"].as_str(), api["rcode"].as_str()), (Some("client"), Some("NOERROR")));
        assert_eq!((api["count"].as_u64(), api["latency_count"].as_u64()), (Some(3), Some(2)));
        assert_eq!((api["latency_mean_ms"].as_f64(), api["latency_max_ms"].as_f64()), (Some(3.0), Some(4.0)));
        assert_eq!(api["rrsets"]["answers"], json!(["10.9.0.2", "10.9.0.3"]));
        assert_eq!((api["time_start"].as_f64(), api["time_end"].as_f64()), (Some(100.0), Some(110.0)));
        assert_eq!((api["flush"].as_str(), api["servers"][0]["ip"].as_str()), (Some("interval"), Some("10.2.0.53")));
        assert_eq!(r[1]["rcode"], "NXDOMAIN");
        assert_eq!(r[2]["pu"], "other");
        assert!(a.is_empty() && a.due(200 * S).is_empty(), "nothing open, nothing due");
        assert_eq!((a.records, a.early_flushes), (3, 0));
    }

    #[test]
    fn a_full_table_flushes_early_and_counts_it_never_drops() {
        let mut a = Aggregator::new(60, 2);
        a.add(&ev("c", "a.test", "NOERROR", Some(1), "10.0.0.1"), S);
        a.add(&ev("c", "b.test", "NOERROR", Some(1), "10.0.0.1"), S);
        // the same key again: no room needed
        assert!(a.add(&ev("c", "b.test", "NOERROR", Some(1), "10.0.0.1"), S).is_empty());
        let early = a.add(&ev("c", "c.test", "NOERROR", Some(1), "10.0.0.1"), 2 * S);
        assert_eq!(early.len(), 2);
        assert!(early.iter().all(|r| r["flush"] == "table_full"));
        assert_eq!(early.iter().map(|r| r["count"].as_u64().unwrap()).sum::<u64>(), 3);
        assert_eq!(a.early_flushes, 1);
        let rest = a.flush(3 * S, Flush::Stop);
        assert_eq!(
            (rest.len(), rest[0]["qname"].as_str(), rest[0]["flush"].as_str()),
            (1, Some("c.test"), Some("stop"))
        );
        assert_eq!(rest[0]["time_start"].as_f64(), Some(2.0), "a new interval started with the event that needed room");
    }

    #[test]
    fn answers_beyond_the_bound_are_counted() {
        let mut a = Aggregator::new(60, 10);
        for i in 0..20u8 {
            a.add(&ev("c", "many.test", "NOERROR", None, &format!("10.0.0.{i}")), S);
        }
        let r = a.flush(2 * S, Flush::Stop);
        assert_eq!(r[0]["rrsets"]["answers"].as_array().unwrap().len(), MAX_RRS);
        assert_eq!(r[0]["rrsets"]["more_answers"], 4);
        assert_eq!((r[0]["count"].as_u64(), r[0]["latency_mean_ms"].is_null()), (Some(20), true));
    }
}
