//! Connecting to a gateway's API: over its Unix socket, or over TCP with
//! mutual TLS.

use std::fmt;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use super::pb::config_client::ConfigClient;
use super::pb::flows_client::FlowsClient;
use super::pb::policy_client::PolicyClient;
use super::pb::stats_client::StatsClient;

/// Where the gateway is.
#[derive(Debug, Clone)]
pub enum Target {
    Unix(PathBuf),
    Tls(TlsTarget),
}

#[derive(Debug, Clone)]
pub struct TlsTarget {
    /// `host:port`.
    pub server: String,
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// This client's certificate and key (PEM); the server refuses clients without one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name to verify the server's certificate against (default: the host).
    pub domain: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Tls(t) => write!(f, "https://{}", t.server),
        }
    }
}

/// Why no connection could be made.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing answers there (no socket, connection refused, timeout).
    Unreachable { target: String, message: String },
    /// It answered but refused this client (socket permissions, TLS handshake).
    Refused { target: String, message: String },
    /// The client's own files or arguments are wrong.
    Setup(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Unreachable { target, message } => {
                write!(f, "cannot reach the gateway at {target}: {message}")
            }
            ConnectError::Refused { target, message } => {
                write!(f, "the gateway at {target} refused this client: {message}")
            }
            ConnectError::Setup(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConnectError {}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn read(p: &Path, what: &str) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(p).map_err(|e| ConnectError::Setup(format!("{what} {}: {e}", p.display())))
}

/// Opens a channel (the connection is made now, so errors surface here).
pub async fn connect(target: &Target) -> Result<Channel, ConnectError> {
    let name = target.to_string();
    match target {
        Target::Unix(path) => {
            let path = path.clone();
            // The URI is not used: the connector dials the socket.
            let ep = Endpoint::from_static("http://gatewayd.local");
            let p2 = path.clone();
            ep.connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = p2.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?)) }
            }))
            .await
            .map_err(|e| {
                let msg = chain(&e);
                if msg.contains("ermission denied") {
                    ConnectError::Refused {
                        target: name,
                        message: format!("{msg} (the read-write socket is for root and its group; the read-only socket is open to all)"),
                    }
                } else {
                    ConnectError::Unreachable { target: name, message: msg }
                }
            })
        }
        Target::Tls(t) => {
            let host = t.server.rsplit_once(':').map(|(h, _)| h).unwrap_or(&t.server);
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(&t.ca, "--ca")?))
                .domain_name(t.domain.clone().unwrap_or(host));
            match (&t.cert, &t.key) {
                (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read(c, "--cert")?, read(k, "--key")?)),
                (None, None) => {}
                _ => return Err(ConnectError::Setup("--cert and --key go together".into())),
            }
            let ep = Endpoint::from_shared(format!("https://{}", t.server))
                .map_err(|e| ConnectError::Setup(format!("--server {:?}: {e}", t.server)))?
                .tls_config(tls)
                .map_err(|e| ConnectError::Setup(format!("TLS settings: {}", chain(&e))))?
                .connect_timeout(std::time::Duration::from_secs(5));
            ep.connect().await.map_err(|e| {
                let msg = chain(&e);
                if msg.contains("refused") && !msg.contains("certificate") || msg.contains("timed out") {
                    ConnectError::Unreachable { target: name, message: msg }
                } else {
                    ConnectError::Refused { target: name, message: msg }
                }
            })
        }
    }
}

/// The three clients over one channel.
#[derive(Clone)]
pub struct Clients {
    /// The channel they share (for calls made without a generated client,
    /// e.g. [`get_flows_framed`]).
    pub channel: Channel,
    pub config: ConfigClient<Channel>,
    pub flows: FlowsClient<Channel>,
    pub stats: StatsClient<Channel>,
    pub policy: PolicyClient<Channel>,
}

impl Clients {
    pub async fn connect(target: &Target) -> Result<Clients, ConnectError> {
        let ch = connect(target).await?;
        Ok(Clients {
            channel: ch.clone(),
            config: ConfigClient::new(ch.clone())
                .max_decoding_message_size(super::server::MAX_MESSAGE)
                .max_encoding_message_size(super::server::MAX_MESSAGE),
            flows: FlowsClient::new(ch.clone()),
            stats: StatsClient::new(ch.clone()),
            policy: PolicyClient::new(ch),
        })
    }
}

/// A `GetFlowsResponse` read only as far as framing: records stay the bytes
/// they came as, not decoded into `pb::Flow` (each decoded one is a dozen
/// allocations). What a relay or a rate counter needs. The same wire format:
/// the `oneof`'s fields 1 to 4.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FramedFlowsResponse {
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub flow: Option<prost::bytes::Bytes>,
    #[prost(message, optional, tag = "2")]
    pub lost_events: Option<super::pb::LostEvent>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub aggregate: Option<prost::bytes::Bytes>,
    #[prost(message, optional, tag = "4")]
    pub flows: Option<FramedFlowBatch>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FramedFlowBatch {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub flows: Vec<prost::bytes::Bytes>,
}

impl FramedFlowsResponse {
    /// Flow records in this message.
    pub fn flow_count(&self) -> u64 {
        self.flows.as_ref().map_or(0, |b| b.flows.len() as u64) + u64::from(self.flow.is_some())
    }
}

/// `Flows/GetFlows`, its responses framed only ([`FramedFlowsResponse`]).
pub async fn get_flows_framed(
    ch: Channel,
    req: super::pb::GetFlowsRequest,
) -> Result<tonic::Response<tonic::Streaming<FramedFlowsResponse>>, tonic::Status> {
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic::codec::ProstCodec::<super::pb::GetFlowsRequest, FramedFlowsResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/gateway.v1.Flows/GetFlows");
    g.server_streaming(tonic::Request::new(req), path, codec).await
}
