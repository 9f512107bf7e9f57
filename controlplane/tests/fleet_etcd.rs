//! The etcd harness fleet mode is tested with (tests/common/etcd.rs), proved
//! against real etcd members with etcdctl alone: the fleet's roles under
//! client-certificate auth, a three-member cluster losing and regaining a
//! member, and what a watch from before a compaction is told.

mod common;

use common::etcd::*;
use common::scratch;

/// etcd's own refusal, as etcdctl prints it.
const DENIED: &str = "etcdserver: permission denied";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn fleet_roles_under_client_certificate_auth() {
    let dir = scratch("etcd-auth");
    let etcd = Etcd::start(&dir, EtcdOptions { tls: true, ..Default::default() });
    assert!(etcd.endpoints()[0].starts_with("https://127.0.0.1:"), "{:?}", etcd.endpoints());
    let mut spec = fleet_auth("/igw", &["gw-a", "gw-b"]);
    spec.user_mut("operator").password = Some("op-secret".into());
    etcd.enable_auth(&spec);
    let (gw_a, operator) = (etcd.client_cert("gw-a"), etcd.client_cert("operator"));
    let key_mode = std::fs::metadata(&gw_a.key_file).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777, 0o600);

    // A gateway writes under its own key space and nowhere else.
    let as_a = Some(Cred::Cert(&gw_a));
    assert_eq!(etcd.etcdctl_ok(&["put", "/igw/gateways/gw-a/x", "1"], as_a).trim(), "OK");
    assert_eq!(etcd.etcdctl_ok(&["put", "/igw/alloc/identity", "7"], as_a).trim(), "OK");
    let out = etcd.etcdctl(&["put", "/igw/gateways/gw-b/x", "1"], as_a);
    assert!(!out.status.success() && stderr(&out).contains(DENIED), "gw-a writing gw-b's keys: {}", stderr(&out));

    // The operator writes the fleet document (by certificate or password);
    // a gateway reads it and cannot write it.
    let doc = "{\"version\": 1}";
    assert_eq!(etcd.etcdctl_ok(&["put", "/igw/fleet/document", doc], Some(Cred::Cert(&operator))).trim(), "OK");
    let by_password = Some(Cred::Password("operator", "op-secret"));
    assert_eq!(etcd.etcdctl_ok(&["put", "/igw/fleet/other", "x"], by_password).trim(), "OK");
    let out = etcd.etcdctl(&["put", "/igw/fleet/document", "{}"], as_a);
    assert!(!out.status.success() && stderr(&out).contains(DENIED), "gw-a writing the fleet: {}", stderr(&out));
    let got = etcd.etcdctl_ok(&["get", "/igw/fleet/document", "--print-value-only"], as_a);
    assert_eq!(got.trim(), doc);
    // A certificate that names no etcd user gets nothing.
    let stranger = etcd.client_cert("stranger");
    let out = etcd.etcdctl(&["get", "/igw/fleet/document"], Some(Cred::Cert(&stranger)));
    assert!(!out.status.success() && stderr(&out).contains(DENIED), "CN=stranger: {}", stderr(&out));
    // Nothing outside the prefix, even to read.
    let out = etcd.etcdctl(&["get", "/other"], as_a);
    assert!(!out.status.success() && stderr(&out).contains(DENIED), "gw-a reading outside /igw: {}", stderr(&out));
}

/// Without TLS, users log in with passwords, and the harness as root with
/// the password it chose.
#[test]
fn fleet_roles_by_password_without_tls() {
    let dir = scratch("etcd-password");
    let etcd = Etcd::start(&dir, EtcdOptions::default());
    let mut spec = fleet_auth("/igw/", &["gw-a"]);
    spec.user_mut("gw-a").password = Some("a-secret".into());
    etcd.enable_auth(&spec);
    let as_a = Some(Cred::Password("gw-a", "a-secret"));
    assert_eq!(etcd.etcdctl_ok(&["put", "/igw/gateways/gw-a/x", "1"], as_a).trim(), "OK");
    let out = etcd.etcdctl(&["put", "/igw/fleet/document", "{}"], as_a);
    assert!(!out.status.success() && stderr(&out).contains(DENIED), "gw-a writing the fleet: {}", stderr(&out));
    let out = etcd.etcdctl(&["get", "/igw/gateways/gw-a/x"], Some(Cred::Password("gw-a", "wrong")));
    assert!(
        stderr(&out).contains("etcdserver: authentication failed, invalid user ID or password"),
        "{}",
        stderr(&out)
    );
    // The harness itself still gets in, as root.
    assert!(etcd.revision() > 0);
    let roles = etcd.etcdctl_ok(&["user", "get", "gw-a"], None);
    assert!(roles.contains("fleet-gw-gw-a"), "{roles}");
}

#[test]
fn three_members_survive_losing_one_and_it_catches_up() {
    let dir = scratch("etcd-cluster");
    let mut c = EtcdCluster::start(&dir, 3, EtcdOptions { tls: true, ..Default::default() });
    let eps = c.endpoints();
    assert_eq!(eps.len(), 3);
    assert!(eps.iter().collect::<std::collections::HashSet<_>>().len() == 3, "{eps:?}");

    c.etcdctl_ok(&["put", "/igw/one", "1"], None);
    // The hard case: the member lost is the leader.
    c.move_leader(0);
    c.kill(0);
    let leader = c.wait_leader();
    assert!(leader == 1 || leader == 2, "m{leader} leads after m0 was killed");
    c.etcdctl_ok(&["put", "/igw/two", "2"], None);
    let got = c.etcdctl_at(2, &["get", "/igw/", "--prefix"], None);
    assert!(got.status.success(), "get via m2: {}", stderr(&got));
    let got = String::from_utf8_lossy(&got.stdout).into_owned();
    assert_eq!(got.lines().collect::<Vec<_>>(), ["/igw/one", "1", "/igw/two", "2"], "via m2");

    c.restart(0);
    let get0 = |consistency: &str| {
        let out = c.etcdctl_at(0, &["get", "/igw/two", "--print-value-only", consistency], None);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(get0("--consistency=l"), "2", "linearizable read via m0 after its restart");
    // And from its own store: a serializable read answers from m0's state.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get0("--consistency=s") != "2" {
        assert!(std::time::Instant::now() < deadline, "m0 did not catch up:\n{}", c.log_tail(0));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_watch_from_before_a_compaction_is_told_so() {
    let dir = scratch("etcd-compact");
    let etcd = Etcd::start(&dir, EtcdOptions { quota_bytes: Some(64 << 20), ..Default::default() });
    assert!(etcd.endpoints()[0].starts_with("http://127.0.0.1:"));
    etcd.etcdctl_ok(&["put", "/igw/k", "v1"], None);
    let first = etcd.revision();
    etcd.etcdctl_ok(&["put", "/igw/k", "v2"], None);
    etcd.etcdctl_ok(&["put", "/igw/k", "v3"], None);
    let compacted = etcd.compact();
    assert_eq!(compacted, first + 2);
    assert_eq!(etcd.revision(), compacted, "a compaction is not a revision");

    let out = etcd.etcdctl(&["watch", &format!("--rev={first}"), "/igw/k"], None);
    let err = stderr(&out);
    assert!(
        err.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"),
        "watch --rev={first} after compacting at {compacted}: {err}"
    );
    let out = etcd.etcdctl(&["get", "/igw/k", &format!("--rev={first}")], None);
    assert!(stderr(&out).contains("etcdserver: mvcc: required revision has been compacted"), "{}", stderr(&out));
    assert_eq!(etcd.etcdctl_ok(&["get", "/igw/k", "--print-value-only"], None).trim(), "v3");
}

/// What a fleet agent meets when the store is full, and the way back.
#[test]
fn writes_past_the_quota_raise_nospace() {
    let dir = scratch("etcd-quota");
    let etcd = Etcd::start(&dir, EtcdOptions { quota_bytes: Some(256 << 10), ..Default::default() });
    let value = "x".repeat(100_000);
    let refused = (0..20).find_map(|i| {
        let out = etcd.etcdctl(&["put", &format!("/igw/big/{i}"), &value], None);
        (!out.status.success()).then(|| stderr(&out))
    });
    let err = refused.expect("20 puts of 100 kB fit in a 256 KiB quota");
    assert!(err.contains("etcdserver: mvcc: database space exceeded"), "{err}");
    assert!(etcd.etcdctl_ok(&["alarm", "list"], None).contains("alarm:NOSPACE"));
    // Reads still work; deletes do too.
    assert!(etcd.etcdctl_ok(&["get", "/igw/big/0", "--keys-only"], None).contains("/igw/big/0"));
    etcd.etcdctl_ok(&["del", "/igw/big/", "--prefix"], None);

    // Compact, defragment, disarm: writes are accepted again.
    etcd.compact();
    etcd.etcdctl_ok(&["defrag"], None);
    etcd.etcdctl_ok(&["alarm", "disarm"], None);
    assert_eq!(etcd.etcdctl_ok(&["put", "/igw/small", "1"], None).trim(), "OK");
}
