//! The `Dns` service: `GetDns` (the DNS events the control thread drained,
//! last N and follow, filtered by PU, name suffix and rcode, with a notice
//! of what a slow reader lost) and `GetFqdn` (the learned FQDN table).
//!
//! The control thread pushes each resolved event into a [`DnsHub`]: a ring
//! of the latest events (for "last N") and a broadcast channel (for
//! followers). Neither ever makes the control thread wait: a full ring drops
//! its oldest event, a lagging follower is told how many it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::Access;
use super::pb;
use crate::dnslog::DnsEvent;

/// Events the hub keeps for "last N".
pub const DNS_RING: usize = 4096;

/// The learned table as the API shows it (asked of the control thread).
pub type FqdnSource = Arc<dyn Fn() -> Option<pb::GetFqdnResponse> + Send + Sync>;

pub struct DnsHub {
    ring: Mutex<VecDeque<Arc<pb::DnsEvent>>>,
    live: broadcast::Sender<Arc<pb::DnsEvent>>,
}

impl Default for DnsHub {
    fn default() -> Self {
        DnsHub { ring: Mutex::new(VecDeque::with_capacity(DNS_RING)), live: broadcast::channel(1024).0 }
    }
}

pub fn event_to_pb(e: &DnsEvent) -> pb::DnsEvent {
    pb::DnsEvent {
        time_unix_ns: e.time_ns,
        pu: e.pu.clone().unwrap_or_default(),
        pu_tags: e.pu_tags.clone(),
        client_ip: e.client.0.to_string(),
        client_port: u32::from(e.client.1),
        server_ip: e.server.0.to_string(),
        server_port: u32::from(e.server.1),
        transport: e.transport.into(),
        id: u32::from(e.id),
        query: e.qname.clone(),
        qtype: e.qtype.clone(),
        rcode: e.rcode.clone(),
        truncated: e.truncated,
        cnames: e.cnames.iter().map(|(n, t)| pb::DnsCname { name: n.clone(), ttl: *t }).collect(),
        answers: e.answers.iter().map(|(a, t)| pb::DnsAnswer { ip: a.to_string(), ttl: *t }).collect(),
        latency_ms: e.latency_ns.map(|l| l as f64 / 1e6),
        learned: u32::from(e.learned),
        answers_off_chain: u32::from(e.off_chain),
        worker: e.worker,
    }
}

impl DnsHub {
    /// Adds resolved events (the control thread; never waits on readers).
    pub fn push(&self, events: &[DnsEvent]) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for e in events {
            let p = Arc::new(event_to_pb(e));
            if ring.len() == DNS_RING {
                ring.pop_front();
            }
            ring.push_back(p.clone());
            let _ = self.live.send(p);
        }
    }
}

/// A request's filters.
struct DnsFilter {
    pu: Vec<String>,
    suffix: Vec<String>,
    rcode: Vec<String>,
}

impl DnsFilter {
    fn new(r: &pb::GetDnsRequest) -> Result<DnsFilter, Status> {
        let bound = |v: &[String], what: &str| -> Result<Vec<String>, Status> {
            if v.len() > 64 || v.iter().any(|s| s.len() > 255) {
                return Err(Status::invalid_argument(format!("{what}: at most 64 values of 255 bytes")));
            }
            Ok(v.iter().map(|s| s.trim_end_matches('.').to_ascii_lowercase()).collect())
        };
        let rcode = bound(&r.rcode, "rcode")?.iter().map(|s| s.to_ascii_uppercase()).collect::<Vec<_>>();
        for c in &rcode {
            let known = (0..16).map(crate::dnslog::rcode_name).any(|n| &n == c);
            if !known {
                return Err(Status::invalid_argument(format!(
                    "unknown rcode {:?}; DNS events carry NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, RCODE6..RCODE15",
                    dataplane::problem::cut(c, 32)
                )));
            }
        }
        Ok(DnsFilter { pu: r.pu.clone(), suffix: bound(&r.name_suffix, "name_suffix")?, rcode })
    }

    fn matches(&self, e: &pb::DnsEvent) -> bool {
        let q = e.query.to_ascii_lowercase();
        (self.pu.is_empty() || self.pu.contains(&e.pu))
            && (self.rcode.is_empty() || self.rcode.contains(&e.rcode))
            && (self.suffix.is_empty()
                || self.suffix.iter().any(|s| q == *s || q.strip_suffix(s.as_str()).is_some_and(|p| p.ends_with('.'))))
    }
}

pub struct DnsService {
    hub: Arc<DnsHub>,
    fqdn: Option<FqdnSource>,
    access: Access,
}

impl DnsService {
    pub fn new(hub: Arc<DnsHub>, fqdn: Option<FqdnSource>, access: Access) -> DnsService {
        DnsService { hub, fqdn, access }
    }
}

#[tonic::async_trait]
impl pb::dns_server::Dns for DnsService {
    type GetDnsStream = ReceiverStream<Result<pb::GetDnsResponse, Status>>;

    async fn get_dns(&self, req: Request<pb::GetDnsRequest>) -> Result<Response<Self::GetDnsStream>, Status> {
        self.access.role(&req)?;
        let r = req.into_inner();
        let filter = DnsFilter::new(&r)?;
        // subscribe before reading the ring: nothing falls between the two
        let mut live = r.follow.then(|| self.hub.live.subscribe());
        let past: Vec<Arc<pb::DnsEvent>> = {
            let ring = self.hub.ring.lock().unwrap_or_else(|e| e.into_inner());
            let m: Vec<_> = ring.iter().filter(|e| filter.matches(e)).cloned().collect();
            let n = if r.number == 0 && !r.follow { m.len() } else { (r.number as usize).min(m.len()) };
            m[m.len() - n..].to_vec()
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let event = |e: &pb::DnsEvent| {
                Ok(pb::GetDnsResponse { response: Some(pb::get_dns_response::Response::Event(e.clone())) })
            };
            for e in &past {
                if tx.send(event(e)).await.is_err() {
                    return;
                }
            }
            let Some(live) = live.as_mut() else { return };
            loop {
                let msg = match live.recv().await {
                    Ok(e) if filter.matches(&e) => event(&e),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Ok(pb::GetDnsResponse { response: Some(pb::get_dns_response::Response::LostEvents(n)) })
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_fqdn(&self, req: Request<pb::GetFqdnRequest>) -> Result<Response<pb::GetFqdnResponse>, Status> {
        self.access.role(&req)?;
        let Some(src) = self.fqdn.clone() else {
            return Err(Status::unavailable("this control plane runs without a gateway"));
        };
        let out = tokio::task::spawn_blocking(move || src())
            .await
            .map_err(|e| Status::internal(format!("reading the learned table failed: {e}")))?;
        out.map(Response::new).ok_or_else(|| Status::unavailable("the control thread did not answer"))
    }
}
