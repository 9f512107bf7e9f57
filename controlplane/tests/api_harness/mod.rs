//! A real control server in-process: a config store over a temp state
//! directory, a flow hub, the gRPC services on temp Unix sockets; clients are
//! the generated ones (or the gwctl binary).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use controlplane::api::client::{Clients, Target};
use controlplane::api::flows::FlowRing;
use controlplane::api::server::Backends;
use controlplane::api::stats::{NoDataplane, StatsSource};
use controlplane::api::{pb, ControlConfig, ControlServer};
use controlplane::flowhub::FlowHub;
use controlplane::store::{BeforeConfig, ConfigStore, SnapshotPublisher, StoreOptions};
use dataplane::policy::PolicySnapshot;

pub const GOOD: &str = r#"
revision: r1
processing_units:
- name: web
  tags: [role=web]
  addresses: [10.0.0.0/24]
  identity: 100
- name: db
  tags: [role=db]
  addresses: [10.0.1.0/24]
  identity: 101
peers:
- name: gw-b
  keys: [{id: 7, public_key: "0000000000000000000000000000000000000000000000000000000000000001"}]
identities:
- {identity: 200, name: client, tags: [role=client], peer: gw-b}
rulesets:
- name: db
  subject: role == db
  incoming:
  - {name: from-web, action: allow, object: role == web, protocols: [tcp], ports: [5432]}
"#;

/// The same document with three problems: a bad selector, overlapping PU
/// addresses, and a reference to a peer that does not exist.
pub const BROKEN: &str = r#"
revision: r2-broken
processing_units:
- name: web
  tags: [role=web]
  addresses: [10.0.0.0/24]
  identity: 100
- name: db
  tags: [role=db]
  addresses: [10.0.0.128/25]
  identity: 101
peers:
- name: gw-b
  keys: [{id: 7, public_key: "0000000000000000000000000000000000000000000000000000000000000001"}]
identities:
- {identity: 200, name: client, tags: [role=client], peer: nowhere}
rulesets:
- name: db
  subject: "role == "
  incoming:
  - {name: from-web, action: allow, object: role == web, protocols: [tcp], ports: [5432]}
"#;

pub struct Harness {
    pub dir: PathBuf,
    pub server: Option<ControlServer>,
    pub store: Arc<ConfigStore>,
    pub hub: Arc<FlowRing>,
    /// Every snapshot the store handed to the "workers", in order.
    pub published: Arc<Mutex<Vec<Arc<PolicySnapshot>>>>,
    pub rw: PathBuf,
    pub ro: PathBuf,
}

pub fn control_config(dir: &Path) -> ControlConfig {
    ControlConfig {
        socket: dir.join("rw.sock"),
        readonly_socket: dir.join("ro.sock").display().to_string(),
        state_dir: dir.join("state"),
        flow_ring: 1024,
        ..ControlConfig::default()
    }
}

impl Harness {
    /// Opens the store under `dir/state` (restoring what is there) and serves.
    pub fn start(dir: &Path, ring: usize) -> Harness {
        Self::start_with(dir, ring, control_config(dir))
    }

    pub fn start_with(dir: &Path, ring: usize, cfg: ControlConfig) -> Harness {
        Self::start_with_stats(dir, ring, cfg, Arc::new(NoDataplane))
    }

    /// With `stats` as the dataplane (e.g. one with a policy in force for `Explain`).
    pub fn start_with_stats(dir: &Path, ring: usize, cfg: ControlConfig, stats: Arc<dyn StatsSource>) -> Harness {
        let published = Arc::new(Mutex::new(Vec::new()));
        let p2 = published.clone();
        let store = Arc::new(
            ConfigStore::open(
                StoreOptions { state_dir: Some(cfg.state_dir.clone()), before_config: BeforeConfig::FailClosed },
                Box::new(SnapshotPublisher(Arc::new(move |s| p2.lock().unwrap().push(s)))),
            )
            .expect("store opens"),
        );
        let hub = FlowHub::new(ring);
        let server = ControlServer::start(
            &cfg,
            Backends { store: store.clone(), hub: hub.clone(), stats, dns: Default::default(), fqdn: None },
        )
        .expect("server starts");
        Harness {
            dir: dir.to_owned(),
            server: Some(server),
            store,
            hub,
            published,
            rw: cfg.socket.clone(),
            ro: PathBuf::from(cfg.readonly_socket),
        }
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }

    pub fn published(&self) -> usize {
        self.published.lock().unwrap().len()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

pub async fn clients(sock: &Path) -> Clients {
    Clients::connect(&Target::Unix(sock.to_owned())).await.expect("connects")
}

pub fn apply_yaml(version: u64, yaml: &str) -> pb::ApplyRequest {
    pb::ApplyRequest {
        version,
        content: Some(pb::apply_request::Content::DocumentYaml(yaml.into())),
        dry_run: false,
        ..Default::default()
    }
}

/// A flow record as the drain would build it.
pub fn flow(
    t: u64,
    src: &str,
    src_tags: &[&str],
    dst: &str,
    dport: u32,
    verdict: pb::Verdict,
    reason: &str,
) -> pb::Flow {
    pb::Flow {
        time_unix_ns: t,
        r#type: if verdict == pb::Verdict::Allowed { pb::FlowEventType::Started } else { pb::FlowEventType::Rejected }
            as i32,
        source: Some(pb::Endpoint {
            ip: src.into(),
            port: 40000,
            identity: 200,
            name: "client".into(),
            tags: src_tags.iter().map(|s| s.to_string()).collect(),
            kind: pb::EndpointKind::RemoteIdentity as i32,
        }),
        destination: Some(pb::Endpoint {
            ip: dst.into(),
            port: dport,
            identity: 101,
            name: "db".into(),
            tags: vec!["role=db".into()],
            kind: pb::EndpointKind::ProcessingUnit as i32,
        }),
        protocol: pb::Protocol::Tcp as i32,
        direction: pb::TrafficDirection::Incoming as i32,
        verdict: verdict as i32,
        reason: reason.into(),
        policy: Some(pb::PolicyRef {
            ruleset: "db".into(),
            rule: "from-web".into(),
            direction: "incoming".into(),
            action: "allow".into(),
        }),
        ..Default::default()
    }
}
