//! The `Config` service: Apply (ACK/NACK), Get, Watch.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::auth::Access;
use super::convert::{
    self, content_from_pb, document_to_pb, kind_from_pb, problem_to_pb, status_to_pb, versions_to_pb,
};
use super::pb;
use crate::store::{ApplyOptions, ConfigStore};
use dataplane::problem::ConfigProblem;

pub struct ConfigService {
    store: Arc<ConfigStore>,
    access: Access,
}

impl ConfigService {
    pub fn new(store: Arc<ConfigStore>, access: Access) -> ConfigService {
        ConfigService { store, access }
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::ConfigStatus, Status>> + Send>>;

#[tonic::async_trait]
impl pb::config_server::Config for ConfigService {
    async fn apply(&self, req: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyResponse>, Status> {
        self.access.require_write(&req)?;
        let req = req.into_inner();
        let version = req.version;
        let dry_run = req.dry_run;
        let opts = ApplyOptions { dry_run, allow_empty: req.allow_empty, replace: req.replace };
        let store = self.store.clone();
        // Refused before the store: recorded like any other NACK.
        let refuse = |problems: Vec<ConfigProblem>| {
            let r = store.refuse_unparsed(version, problems, dry_run);
            Ok(Response::new(pb::ApplyResponse {
                accepted: false,
                version,
                in_force: Some(versions_to_pb(&r.versions)),
                errors: r.problems.iter().map(problem_to_pb).collect(),
                dry_run,
                ..Default::default()
            }))
        };
        if store.fleet_managed() && !dry_run {
            return refuse(vec![ConfigProblem::new(
                "request",
                "",
                "",
                "",
                "this gateway takes its policy from the fleet (etcd): change the fleet document with `gwctl fleet apply`".into(),
            )]);
        }
        let content = match content_from_pb(req.content) {
            Ok(c) => c,
            Err(problems) => return refuse(problems),
        };
        // Compiling can take a while: off the async threads.
        let outcome = tokio::task::spawn_blocking(move || store.apply_with(version, content, opts))
            .await
            .map_err(|e| Status::internal(format!("the apply task failed: {e}")))?;
        Ok(Response::new(match outcome {
            Ok(a) => pb::ApplyResponse {
                accepted: true,
                version: a.version,
                in_force: Some(versions_to_pb(&a.versions)),
                errors: vec![],
                revision: a.revision.unwrap_or_default(),
                compile_us: a.compile_time.as_micros() as u64,
                dry_run: a.dry_run,
            },
            Err(r) => pb::ApplyResponse {
                accepted: false,
                version: r.version,
                in_force: Some(versions_to_pb(&r.versions)),
                errors: r.problems.iter().map(problem_to_pb).collect(),
                revision: String::new(),
                compile_us: r.compile_time.as_micros() as u64,
                dry_run,
            },
        }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.access.role(&req)?;
        let kind = kind_from_pb(req.get_ref().kind).map_err(Status::invalid_argument)?;
        let cur = self.store.current();
        let status = self.store.status();
        let (document, yaml) = match &cur {
            Some(_) if req.get_ref().versions_only => (None, String::new()),
            Some(c) => {
                let doc = convert::redacted(&convert::only_kind(&c.document, kind));
                let yaml = doc.to_yaml().map_err(|e| Status::internal(format!("rendering YAML: {e}")))?;
                (Some(document_to_pb(&doc, true)), yaml)
            }
            None => (None, String::new()),
        };
        Ok(Response::new(pb::GetResponse {
            versions: Some(versions_to_pb(&status.versions)),
            document,
            document_yaml: yaml,
            status: Some(status_to_pb(&status)),
        }))
    }

    type WatchStream = StatusStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        self.access.role(&req)?;
        let rx = self.store.subscribe();
        let s = tokio_stream::wrappers::WatchStream::new(rx).map(|st| Ok(status_to_pb(&st)));
        Ok(Response::new(Box::pin(s)))
    }
}
