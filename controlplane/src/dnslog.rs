//! DNS events from the workers to operators: each [`DnsRecord`] (numbers
//! and wire-form names) resolved to names through the configuration of its
//! generation, written as JSON lines (`[dnslog] file`), and the address →
//! name memory ([`NameCache`]) that puts the resolved name on flow events.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;

use dataplane::engine::EngineConfig;
use dataplane::events::DnsRecord;
use serde_json::{json, Value};

use crate::flowlog::ConfigHistory;

/// A record type's mnemonic (RFC 1035, 3596, 2782, 9460), else `TYPE<n>`.
pub fn rtype_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        41 => "OPT".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        n => format!("TYPE{n}"),
    }
}

/// The response code's name (RFC 1035, 2136), else `RCODE<n>`.
pub fn rcode_name(r: u8) -> String {
    match r {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

/// A DNS event with names.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsEvent {
    pub time_ns: u64,
    pub worker: u32,
    pub pu: Option<String>,
    pub pu_tags: Vec<String>,
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    /// `udp` or `tcp`.
    pub transport: &'static str,
    pub id: u16,
    pub qname: String,
    pub qtype: String,
    pub qclass: u16,
    pub rcode: String,
    pub truncated: bool,
    /// The CNAME chain from the query name, each target with its TTL.
    pub cnames: Vec<(String, u32)>,
    /// Addresses on the chain, with their TTLs.
    pub answers: Vec<(IpAddr, u32)>,
    /// Addresses beyond what a record carries; answers for names not on the
    /// chain (not believed).
    pub more_answers: u8,
    /// CNAMEs on the chain the worker's record had no room for.
    pub more_cnames: u8,
    pub off_chain: u8,
    /// Addresses learned for FQDN external networks.
    pub learned: u8,
    /// From the query seen going out, if it was seen.
    pub latency_ns: Option<u64>,
    pub generation: u32,
}

impl DnsEvent {
    pub fn resolve(r: &DnsRecord, cfg: &EngineConfig) -> DnsEvent {
        let pu = cfg.policy.pus().get(r.pu as usize);
        let mut names = r.names();
        let qname = names.next().unwrap_or_default().to_string();
        let cnames = names.zip(r.cname_ttls.iter()).map(|(n, &t)| (n.to_string(), t)).collect();
        DnsEvent {
            time_ns: r.time,
            worker: 0,
            pu: pu.map(|x| x.name.to_string()),
            pu_tags: pu.map(|x| x.tags.iter().map(|(k, v)| format!("{k}={v}")).collect()).unwrap_or_default(),
            client: (r.client_ip(), r.client_port),
            server: (r.server_ip(), r.server_port),
            transport: if r.proto == 6 { "tcp" } else { "udp" },
            id: r.id,
            qname,
            qtype: rtype_name(r.qtype),
            qclass: r.qclass,
            rcode: rcode_name(r.rcode()),
            truncated: r.truncated(),
            cnames,
            answers: r.answers().iter().map(|a| (a.ip(), a.ttl)).collect(),
            more_answers: r.more_answers,
            more_cnames: r.more_cnames,
            off_chain: r.off_chain,
            learned: r.learned,
            latency_ns: r.latency_ns,
            generation: r.generation,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "time": self.time_ns as f64 / 1e9,
            "event": "dns",
            "pu": self.pu,
            "pu_tags": self.pu_tags,
            "client": {"ip": self.client.0.to_string(), "port": self.client.1},
            "server": {"ip": self.server.0.to_string(), "port": self.server.1},
            "transport": self.transport,
            "id": self.id,
            "query": self.qname,
            "qtype": self.qtype,
            "qclass": self.qclass,
            "rcode": self.rcode,
            "truncated": self.truncated,
            "cnames": self.cnames.iter().map(|(n, t)| json!({"name": n, "ttl": t})).collect::<Vec<_>>(),
            "answers": self.answers.iter().map(|(a, t)| json!({"ip": a.to_string(), "ttl": t})).collect::<Vec<_>>(),
            "more_answers": self.more_answers,
            "more_cnames": self.more_cnames,
            "answers_off_chain": self.off_chain,
            "learned": self.learned,
            "latency_ms": self.latency_ns.map(|l| l as f64 / 1e6),
            "worker": self.worker,
        })
    }
}

/// Resolves drained DNS records (with their worker) to events; records of a
/// generation no configuration covers are skipped.
pub fn resolve_all(history: &ConfigHistory, records: &[(u32, DnsRecord)]) -> Vec<DnsEvent> {
    let mut out = Vec::with_capacity(records.len());
    for (w, r) in records {
        if let Some(c) = history.get(r.generation) {
            let mut e = DnsEvent::resolve(r, &c);
            e.worker = *w;
            out.push(e);
        }
    }
    out
}

/// Writes events as JSON lines; returns how many.
pub fn write_json_lines(out: &mut impl Write, events: &[DnsEvent]) -> std::io::Result<usize> {
    for e in events {
        serde_json::to_writer(&mut *out, &e.to_json())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(events.len())
}

/// Which name a local PU last resolved to an address, for as long as the
/// answer's TTL: fixed memory (at most `capacity` entries; making room
/// drops expired entries first, then arbitrary ones, each eviction counted).
#[derive(Debug)]
pub struct NameCache {
    map: HashMap<(String, IpAddr), (String, u64)>,
    capacity: usize,
    pub evictions: u64,
}

/// Entries the gateway's cache holds by default.
pub const NAME_CACHE_ENTRIES: usize = 65536;

impl NameCache {
    pub fn new(capacity: usize) -> NameCache {
        NameCache { map: HashMap::new(), capacity: capacity.max(1), evictions: 0 }
    }

    /// Remembers the query name of `e` for each of its addresses, until
    /// their TTLs end.
    pub fn learn(&mut self, e: &DnsEvent) {
        let Some(pu) = &e.pu else { return };
        for &(a, ttl) in &e.answers {
            let key = (pu.clone(), a);
            if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
                self.make_room(e.time_ns);
            }
            self.map.insert(key, (e.qname.clone(), e.time_ns.saturating_add(u64::from(ttl) * 1_000_000_000)));
        }
    }

    fn make_room(&mut self, now: u64) {
        let before = self.map.len();
        self.map.retain(|_, (_, exp)| *exp > now);
        if self.map.len() == before {
            if let Some(k) = self.map.keys().next().cloned() {
                self.map.remove(&k);
            }
        }
        self.evictions += (before - self.map.len()) as u64;
    }

    /// The name `pu` resolved to `addr`, if its TTL lasts at `now`.
    pub fn name(&self, pu: &str, addr: IpAddr, now: u64) -> Option<&str> {
        let (n, exp) = self.map.get(&(pu.to_owned(), addr))?;
        (*exp > now).then_some(n.as_str())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::dns::WireName;
    use dataplane::events::DnsAnswer;

    const DOC: &str = "processing_units:\n  - {name: client, tags: [app=client], addresses: [10.1.0.1], identity: 1}\n";

    #[test]
    fn records_resolve_to_json_and_names_expire() {
        let cfg = EngineConfig::from_yaml(DOC).unwrap();
        let mut r = DnsRecord::default();
        (r.time, r.pu, r.generation) = (10_000_000_000, 0, cfg.generation());
        r.client[10..].copy_from_slice(&[0xff, 0xff, 10, 1, 0, 1]);
        r.server[10..].copy_from_slice(&[0xff, 0xff, 10, 2, 0, 53]);
        (r.client_port, r.server_port, r.qtype, r.qclass, r.flags, r.latency_ns) =
            (40000, 53, 1, 1, 0x8180, Some(1_500_000));
        r.set_qname(&WireName::from_text("a.example.test").unwrap());
        r.push_cname(&WireName::from_text("api.example.test").unwrap(), 30);
        let mut addr = [0u8; 16];
        addr[10..].copy_from_slice(&[0xff, 0xff, 10, 9, 0, 2]);
        r.push_answer(DnsAnswer { addr, v6: false, ttl: 5 });
        let e = DnsEvent::resolve(&r, &cfg);
        let j = e.to_json();
        assert_eq!(j["pu"], "client");
        assert_eq!(j["query"], "a.example.test");
        assert_eq!(j["qtype"], "A");
        assert_eq!(j["rcode"], "NOERROR");
        assert_eq!(j["cnames"][0]["name"], "api.example.test");
        assert_eq!(j["answers"][0]["ip"], "10.9.0.2");
        assert_eq!(j["latency_ms"], 1.5);
        assert_eq!(j["client"]["ip"], "10.1.0.1");
        let mut c = NameCache::new(1);
        c.learn(&e);
        let a: IpAddr = "10.9.0.2".parse().unwrap();
        assert_eq!(c.name("client", a, 14_000_000_000), Some("a.example.test"));
        assert_eq!(c.name("client", a, 15_000_000_000), None, "TTL over");
        assert_eq!(c.name("other", a, 14_000_000_000), None);
        // full: the next address evicts (counted)
        let mut e2 = e.clone();
        e2.answers = vec![("10.9.0.3".parse().unwrap(), 5)];
        c.learn(&e2);
        assert_eq!((c.len(), c.evictions), (1, 1));
    }
}
