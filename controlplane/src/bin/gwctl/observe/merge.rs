//! `observe --gateways a.sock,b.sock,…`: one flow stream for several
//! gateways, in the manner of Hubble Relay. Each gateway's `GetFlows` runs on
//! its own task; records wait in a reorder buffer for a bounded time
//! ([`Merge::window`]) and leave it in time order, each line naming its
//! gateway. A gateway that cannot be reached or goes away is said so (once)
//! and, with `--follow`, tried again every second while the others go on;
//! each gateway's lost-event notices are passed on with its name.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use controlplane::api::client::{Clients, Target};
use controlplane::api::pb;
use controlplane::flowjson::flow_json;
use pb::get_flows_response::Response as R;
use tokio::sync::mpsc;

use super::format::response_line;
use crate::output::{ns_time, Output};
use crate::{usage, Fail, Res};

/// Records held for reordering at most, over all gateways: past it the oldest leaves at once.
const MAX_HELD: usize = 65_536;
/// Between two attempts to reach a gateway that is down (with --follow).
const RETRY: Duration = Duration::from_secs(1);

/// One gateway of the merge: the name its lines carry, and where it listens.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub name: String,
    pub socket: PathBuf,
}

/// `a.sock,b.sock` or `name=path,…`; a name defaults to the socket's file stem.
pub fn parse_gateways(s: &str) -> Result<Vec<Gateway>, Fail> {
    let mut out: Vec<Gateway> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, path) = match part.split_once('=') {
            Some((n, p)) => (n.trim().to_owned(), PathBuf::from(p.trim())),
            None => {
                let p = PathBuf::from(part);
                let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| part.to_owned());
                (stem, p)
            }
        };
        if name.is_empty() || path.as_os_str().is_empty() {
            return Err(usage(format!("--gateways: {part:?} is not a socket path or NAME=PATH")));
        }
        if out.iter().any(|g| g.name == name) {
            return Err(usage(format!("--gateways: the name {name:?} is given twice (name them: NAME=PATH)")));
        }
        out.push(Gateway { name, socket: path });
    }
    if out.is_empty() {
        return Err(usage("--gateways: give one or more sockets, comma-separated"));
    }
    Ok(out)
}

/// What a gateway's task reports.
enum Event {
    Item(usize, Box<R>),
    /// It cannot be reached or its stream broke (why).
    Down(usize, String),
    /// Reached again after being down.
    Up(usize),
}

/// The merge, checked.
pub struct Merge {
    pub gateways: Vec<Gateway>,
    /// How long a record waits for older ones from the other gateways.
    pub window: Duration,
}

fn time_of(r: &R) -> u64 {
    match r {
        R::Flow(f) => f.time_unix_ns,
        R::LostEvents(l) => l.time_unix_ns,
        R::Aggregate(a) => a.end_unix_ns,
        R::Flows(b) => b.flows.first().map_or(0, |f| f.time_unix_ns),
    }
}

/// One gateway's stream into `tx`, reconnecting with `follow`.
async fn run_one(i: usize, gw: Gateway, mut req: pb::GetFlowsRequest, t: Duration, tx: mpsc::Sender<Event>) {
    let follow = req.follow;
    let mut down = false;
    loop {
        let target = Target::Unix(gw.socket.clone());
        let opened = tokio::time::timeout(t, async {
            let mut c = Clients::connect(&target).await.map_err(|e| e.to_string())?;
            c.flows.get_flows(req.clone()).await.map(|r| r.into_inner()).map_err(|s| s.message().to_owned())
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {:.0}s", t.as_secs_f64())));
        let why = match opened {
            Ok(mut stream) => {
                if down && tx.send(Event::Up(i)).await.is_err() {
                    return;
                }
                down = false;
                loop {
                    match stream.message().await {
                        Ok(Some(m)) => {
                            let items = match m.response {
                                Some(R::Flows(b)) => b.flows.into_iter().map(R::Flow).collect(),
                                Some(r) => vec![r],
                                None => Vec::new(),
                            };
                            for r in items {
                                if tx.send(Event::Item(i, Box::new(r))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(None) => break "its stream ended".to_owned(),
                        Err(s) => break s.message().to_owned(),
                    }
                }
            }
            Err(e) => e,
        };
        if !follow {
            // Done: the merge ends when every task has dropped its sender.
            if why != "its stream ended" {
                let _ = tx.send(Event::Down(i, why)).await;
            }
            return;
        }
        if !down {
            if tx.send(Event::Down(i, why)).await.is_err() {
                return;
            }
            down = true;
        }
        // Back again: only what is new (the history was sent).
        req.number = 0;
        req.since_unix_ns = None;
        tokio::time::sleep(RETRY).await;
    }
}

/// One merged line (without its newline).
fn line(name: &str, width: usize, r: &R, output: Output) -> String {
    match (output, r) {
        (Output::Json, R::Flow(f)) => serde_json::to_string(&flow_json(f, Some(name))).unwrap_or_default(),
        (Output::Json, r) => {
            let mut v: serde_json::Value = serde_json::from_str(&response_line(r, output)).unwrap_or_default();
            v["gateway"] = name.into();
            v.to_string()
        }
        (Output::Text, r) => format!("{name:<width$}  {}", response_line(r, output)),
    }
}

fn notice(name: &str, width: usize, what: &str, output: Output) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    match output {
        Output::Json => {
            serde_json::json!({ "gateway": name, "gateway_status": what, "time": ns_time(now) }).to_string()
        }
        Output::Text => format!("{name:<width$}  {}  GATEWAY {what}", ns_time(now)),
    }
}

impl Merge {
    pub async fn run(self, req: pb::GetFlowsRequest, output: Output, t: Duration) -> Res {
        let width = self.gateways.iter().map(|g| g.name.len()).max().unwrap_or(0);
        let (tx, mut rx) = mpsc::channel(4096);
        for (i, g) in self.gateways.iter().enumerate() {
            tokio::spawn(run_one(i, g.clone(), req.clone(), t, tx.clone()));
        }
        drop(tx);
        // (time, arrival order) → (gateway, item, when it arrived)
        let mut held: BTreeMap<(u64, u64), (usize, R, Instant)> = BTreeMap::new();
        let mut seq = 0u64;
        let mut reached = vec![false; self.gateways.len()];
        let mut failures: Vec<String> = Vec::new();
        let stdout = std::io::stdout();
        let print = |text: String| -> bool {
            let mut out = stdout.lock();
            writeln!(out, "{text}").and_then(|_| out.flush()).is_ok()
        };
        let tick = Duration::from_millis(20).min(self.window.max(Duration::from_millis(1)));
        let mut open = true;
        while open || !held.is_empty() {
            let ev = if open {
                match tokio::time::timeout(tick, rx.recv()).await {
                    Ok(Some(ev)) => Some(ev),
                    Ok(None) => {
                        open = false;
                        None
                    }
                    Err(_) => None,
                }
            } else {
                None
            };
            match ev {
                Some(Event::Item(i, r)) => {
                    reached[i] = true;
                    seq += 1;
                    held.insert((time_of(&r), seq), (i, *r, Instant::now()));
                }
                Some(Event::Down(i, why)) => {
                    let g = &self.gateways[i];
                    failures.push(format!("{}: {why}", g.name));
                    let what = format!("DOWN ({}): {}", g.socket.display(), dataplane::problem::cut(&why, 200));
                    if !print(notice(&g.name, width, &what, output)) {
                        return Ok(());
                    }
                }
                Some(Event::Up(i)) => {
                    reached[i] = true;
                    if !print(notice(&self.gateways[i].name, width, "BACK", output)) {
                        return Ok(());
                    }
                }
                None => {}
            }
            // Records whose wait is over leave in time order; all of them once every stream ended.
            let now = Instant::now();
            loop {
                let over = held.len() > MAX_HELD;
                let Some(entry) = held.first_entry() else { break };
                let (_, _, arrived) = entry.get();
                let due = !open || over || now.duration_since(*arrived) >= self.window;
                if !due {
                    break;
                }
                let (i, r, _) = entry.remove();
                if !print(line(&self.gateways[i].name, width, &r, output)) {
                    return Ok(());
                }
            }
        }
        if !reached.iter().any(|&r| r) && !failures.is_empty() {
            return Err(Fail(3, format!("observe: no gateway could be reached: {}", failures.join("; "))));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_are_named_by_their_socket_or_as_given() {
        let g = parse_gateways("/run/a.sock, b=/tmp/x.sock").unwrap();
        assert_eq!(g[0], Gateway { name: "a".into(), socket: "/run/a.sock".into() });
        assert_eq!(g[1], Gateway { name: "b".into(), socket: "/tmp/x.sock".into() });
        assert!(parse_gateways("/x/a.sock,/y/a.sock").is_err(), "two named a");
        assert!(parse_gateways(" , ").is_err());
    }
}
