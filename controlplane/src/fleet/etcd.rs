//! Talking to etcd: connecting (TLS, users), and the fleet-wide counters.

use std::path::PathBuf;
use std::time::Duration;

use dataplane::problem::cut;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue, TlsOptions, Txn, TxnOp,
};

/// How to reach etcd, as `[fleet]` and `gwctl fleet` both describe it.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub endpoints: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// etcd's answer, or why there was none, in words.
pub type EtcdResult<T> = Result<T, String>;

/// Which endpoint the next connection starts with (round robin).
static NEXT_ENDPOINT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Requests that take longer than this fail (and the agent reconnects).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn read(p: &PathBuf, what: &str) -> EtcdResult<String> {
    std::fs::read_to_string(p).map_err(|e| format!("cannot read the {what} {}: {e}", p.display()))
}

impl Connection {
    pub async fn connect(&self) -> EtcdResult<Client> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        if self.ca_file.is_some() || self.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca, "CA file")?));
            }
            if let (Some(c), Some(k)) = (&self.cert_file, &self.key_file) {
                tls = tls.identity(Identity::from_pem(read(c, "certificate")?, read(k, "key")?));
            }
            opts = opts.with_tls(tls);
        }
        if let (Some(u), Some(p)) = (&self.user, &self.password_file) {
            opts = opts.with_user(u.clone(), read(p, "password file")?.trim().to_owned());
        }
        // One endpoint at a time, starting from a different one each call:
        // etcd-client's balanced channel over several endpoints keeps
        // routing requests to a dead member ("tcp connect error") instead of
        // failing over. A member that does not answer a status request is
        // skipped; a session that loses its member ends and the next
        // connect tries the others.
        let n = self.endpoints.len().max(1);
        let start = NEXT_ENDPOINT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        let mut why = Vec::new();
        for i in 0..self.endpoints.len() {
            let ep = &self.endpoints[(start + i) % n];
            let attempt = async {
                let mut c = Client::connect([ep.as_str()], Some(opts.clone())).await?;
                c.status().await?;
                Ok::<Client, etcd_client::Error>(c)
            };
            match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => why.push(format!("{ep}: {}", describe(&e))),
                Err(_) => why.push(format!("{ep}: no answer within 3 s")),
            }
        }
        Err(why.join("; "))
    }
}

/// etcd-client's error in one line (its Display of a gRPC status is long).
pub fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("etcd: {} ({:?})", cut(s.message(), 200), s.code()),
        other => cut(&other.to_string(), 240),
    }
}

/// Keys per page of [`list`] (~4 MB of PUs). etcd 3.4 walks the rest of the
/// range's index for every page: 100k keys took about 1 s to list in pages
/// of 1000, about 0.3 s in pages of 10 000.
const LIST_PAGE: i64 = 10_000;
/// The largest message taken from etcd: a page of [`list`], or a watch
/// response, which batches up to 1000 revisions of events for a watcher that
/// fell behind (a busy agent). The client's default, 4 MiB, is what a whole
/// 100k-PU prefix (~40 MB) and such batches hit.
pub const MESSAGE_MAX: usize = 256 << 20;

/// Every key under `prefix` at one revision, in pages (one range request
/// of a 100k-PU fleet is ~40 MB: past the client's message limit, and a
/// long read for etcd). Returns the keys and the revision they are at.
pub async fn list(client: &mut Client, prefix: &str) -> EtcdResult<(Vec<KeyValue>, i64)> {
    let mut kv = client.kv_client().max_decoding_message_size(MESSAGE_MAX);
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut out = Vec::new();
    let mut rev = 0;
    loop {
        let opts = GetOptions::new().with_range(end.clone()).with_limit(LIST_PAGE).with_revision(rev);
        let mut resp = kv.get(from.clone(), Some(opts)).await.map_err(|e| describe(&e))?;
        if rev == 0 {
            rev = resp.header().map_or(0, |h| h.revision());
        }
        let page = resp.take_kvs();
        let next = page.last().filter(|_| resp.more()).map(|last| [last.key(), &[0]].concat());
        out.extend(page);
        match next {
            Some(key) => from = key,
            None => return Ok((out, rev)),
        }
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // all keys
}

/// Takes `count` consecutive numbers from the counter at `key` (starting at
/// `first` when the counter does not exist yet): compare-and-swap on the
/// counter's modification revision, retried when another gateway won.
/// Returns the first number taken.
pub async fn take_numbers(client: &mut Client, key: &str, first: u64, count: u64, max: u64) -> EtcdResult<u64> {
    for _ in 0..100 {
        let resp = client.get(key, None).await.map_err(|e| describe(&e))?;
        let (next, guard) = match resp.kvs().first() {
            Some(kv) => {
                let n = std::str::from_utf8(kv.value())
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| format!("the counter {key} does not hold a number"))?;
                (n, Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()))
            }
            None => (first, Compare::create_revision(key, CompareOp::Equal, 0)),
        };
        let end = next
            .checked_add(count)
            .filter(|&e| e <= max.saturating_add(1))
            .ok_or_else(|| format!("the counter {key} is exhausted: {next} + {count} is past {max}"))?;
        let txn = Txn::new().when([guard]).and_then([TxnOp::put(key, end.to_string(), None)]);
        if client.txn(txn).await.map_err(|e| describe(&e))?.succeeded() {
            return Ok(next);
        }
    }
    Err(format!("the counter {key} kept changing under 100 attempts"))
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_at_the_next_key_after_all_it_starts() {
        assert_eq!(prefix_end(b"/igw/"), b"/igw0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
