//! The Config service with a real server and the generated client: ACK, NACK
//! with every problem and the old config untouched, per-kind applies, stale
//! versions, persistence across a restart, roles, and the watch stream.

mod api_harness;

use api_harness::*;
use controlplane::api::pb;
use tonic::Code;

#[test]
fn apply_valid_then_get_returns_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    assert_eq!(h.published(), 1, "the fail-closed policy is in force before any apply");
    rt().block_on(async {
        let mut c = clients(&h.rw).await;
        let g = c.config.get(pb::GetRequest { kind: 0, ..Default::default() }).await.unwrap().into_inner();
        assert!(g.document.is_none());
        assert_eq!(g.status.unwrap().state, pb::EnforcementState::NoConfigFailClosed as i32);

        let r = c.config.apply(apply_yaml(1, GOOD)).await.unwrap().into_inner();
        assert!(r.accepted, "{:?}", r.errors);
        assert_eq!(r.version, 1);
        assert_eq!(r.revision, "r1");
        assert_eq!(r.in_force.unwrap().rulesets, 1);
        assert_eq!(h.published(), 2);
        assert_eq!(h.published.lock().unwrap()[1].pus().len(), 2);

        let g = c.config.get(pb::GetRequest { kind: 0, ..Default::default() }).await.unwrap().into_inner();
        let doc = g.document.unwrap();
        assert_eq!(doc.processing_units.len(), 2);
        assert_eq!(doc.rulesets[0].incoming[0].ports, vec!["5432"]);
        assert_eq!(g.versions.unwrap().document, 1);
        let st = g.status.unwrap();
        assert_eq!(st.state, pb::EnforcementState::Enforcing as i32);
        assert_eq!(st.revision, "r1");
        assert_eq!(st.source, "apply");
        let again = dataplane::policy::PolicyDocument::from_yaml(&g.document_yaml).unwrap();
        assert_eq!(again, dataplane::policy::PolicyDocument::from_yaml(GOOD).unwrap());

        // versions_only: the versions and status, not the document
        let v = c.config.get(pb::GetRequest { kind: 0, versions_only: true }).await.unwrap().into_inner();
        assert!(v.document.is_none() && v.document_yaml.is_empty());
        assert_eq!(v.versions.unwrap().document, 1);
        assert_eq!(v.status.unwrap().revision, "r1");

        // One kind, structured: only its version moves, the rest is kept.
        let mut rs = doc.rulesets.clone();
        rs[0].incoming[0].ports = vec!["5433".into()];
        let r = c
            .config
            .apply(pb::ApplyRequest {
                version: 2,
                content: Some(pb::apply_request::Content::Rulesets(pb::Rulesets { rulesets: rs })),
                dry_run: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.accepted, "{:?}", r.errors);
        let v = r.in_force.unwrap();
        assert_eq!((v.document, v.rulesets, v.processing_units), (2, 2, 1));
        let g = c
            .config
            .get(pb::GetRequest { kind: pb::ResourceKind::Rulesets as i32, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let d = g.document.unwrap();
        assert_eq!(d.rulesets[0].incoming[0].ports, vec!["5433"]);
        assert!(d.processing_units.is_empty(), "only the kind asked for");
    });
}

#[test]
fn broken_apply_is_refused_with_every_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    rt().block_on(async {
        let mut c = clients(&h.rw).await;
        assert!(c.config.apply(apply_yaml(5, GOOD)).await.unwrap().into_inner().accepted);
        let published = h.published();
        let state_file = std::fs::read(dir.path().join("state/policy.json")).unwrap();

        let r = c.config.apply(apply_yaml(6, BROKEN)).await.unwrap().into_inner();
        assert!(!r.accepted);
        assert_eq!(r.version, 6);
        assert_eq!(r.in_force.unwrap().document, 5);
        let find = |resource: &str, field: &str| {
            r.errors
                .iter()
                .find(|e| e.resource == resource && e.field.starts_with(field))
                .unwrap_or_else(|| panic!("no {resource}.{field} error in {:#?}", r.errors))
                .clone()
        };
        let sel = find("rulesets", "subject");
        assert_eq!((sel.name.as_str(), sel.value.as_str()), ("db", "role == "));
        assert!(sel.message.contains("column 9"), "{}", sel.message);
        let overlap = find("processing_units", "addresses");
        assert_eq!(overlap.value, "10.0.0.128/25");
        assert!(overlap.message.contains("overlaps"), "{}", overlap.message);
        let peer = find("identities", "peer");
        assert_eq!(peer.value, "nowhere");
        assert_eq!(r.errors.len(), 3, "{:#?}", r.errors);

        // A stale version is refused too, and said so, alongside any other problem.
        let r = c.config.apply(apply_yaml(5, BROKEN)).await.unwrap().into_inner();
        assert!(!r.accepted);
        assert!(r
            .errors
            .iter()
            .any(|e| e.resource == "request" && e.field == "version" && e.message.contains("stale version")));
        assert_eq!(r.errors.len(), 4, "stale + the three: {:#?}", r.errors);
        let r = c.config.apply(apply_yaml(4, GOOD)).await.unwrap().into_inner();
        assert!(!r.accepted);
        assert_eq!(r.errors.len(), 1);
        assert!(
            r.errors[0].message.contains("stale version: 4 is not greater than version 5"),
            "{}",
            r.errors[0].message
        );

        // A document that does not parse names where.
        let r = c.config.apply(apply_yaml(7, "rulesets:\n  - name: x\n    subjekt: y\n")).await.unwrap().into_inner();
        assert!(!r.accepted);
        assert_eq!(r.errors[0].resource, "document");
        assert!(r.errors[0].message.contains("subjekt"), "{}", r.errors[0].message);

        // Nothing changed: same document, no publish, same state file.
        let g = c.config.get(pb::GetRequest { kind: 0, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(g.versions.unwrap().document, 5);
        assert_eq!(g.status.as_ref().unwrap().revision, "r1");
        assert_eq!(g.document.unwrap().processing_units[1].addresses, vec!["10.0.1.0/24"]);
        assert_eq!(h.published(), published);
        assert_eq!(std::fs::read(dir.path().join("state/policy.json")).unwrap(), state_file);
        let st = g.status.unwrap();
        assert_eq!(st.applies_refused, 4);
        assert_eq!(st.last_refused.unwrap().version, 7);
    });
}

#[test]
fn persisted_policy_is_restored_before_any_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(dir.path(), 1024);
    rt().block_on(async {
        let mut c = clients(&h.rw).await;
        assert!(c.config.apply(apply_yaml(3, GOOD)).await.unwrap().into_inner().accepted);
    });
    h.stop();
    drop(h);
    // A crash mid-write would leave a torn temp file: it must not matter.
    std::fs::write(dir.path().join("state/policy.json.tmp"), b"{\"format\":1,\"ver").unwrap();
    let h = Harness::start(dir.path(), 1024);
    // Published at open, before any client connected.
    assert_eq!(h.published(), 1);
    assert_eq!(h.published.lock().unwrap()[0].pus().len(), 2);
    assert_eq!(h.published.lock().unwrap()[0].revision(), Some("r1"));
    rt().block_on(async {
        let mut c = clients(&h.ro).await;
        let g = c.config.get(pb::GetRequest { kind: 0, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(g.versions.unwrap().document, 3);
        let st = g.status.unwrap();
        assert_eq!(st.state, pb::EnforcementState::Enforcing as i32);
        assert!(st.source.starts_with("restored from"), "{}", st.source);
        // The restored versions still rule out stale applies.
        let mut w = clients(&h.rw).await;
        assert!(!w.config.apply(apply_yaml(3, GOOD)).await.unwrap().into_inner().accepted);
    });
}

#[test]
fn read_only_clients_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&h.rw), 0o660);
    assert_eq!(mode(&h.ro), 0o666);
    rt().block_on(async {
        let mut ro = clients(&h.ro).await;
        let e = ro.config.apply(apply_yaml(1, GOOD)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.message().contains("read-only"), "{}", e.message());
        assert!(ro.config.get(pb::GetRequest { kind: 0, ..Default::default() }).await.is_ok());
        assert!(ro.stats.get_stats(pb::GetStatsRequest::default()).await.is_ok());
        assert_eq!(h.published(), 1);
        assert!(h.store.current().is_none());
    });
}

#[test]
fn watch_reports_applied_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    rt().block_on(async {
        let mut ro = clients(&h.ro).await;
        let mut w = ro.config.watch(pb::WatchRequest {}).await.unwrap().into_inner();
        let first = w.message().await.unwrap().unwrap();
        assert_eq!(first.state, pb::EnforcementState::NoConfigFailClosed as i32);
        let mut c = clients(&h.rw).await;
        assert!(c.config.apply(apply_yaml(1, GOOD)).await.unwrap().into_inner().accepted);
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), w.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(
            (m.event.as_str(), m.versions.unwrap().document, m.state),
            ("applied", 1, pb::EnforcementState::Enforcing as i32)
        );
        assert!(!c.config.apply(apply_yaml(2, BROKEN)).await.unwrap().into_inner().accepted);
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), w.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(m.event, "refused");
        assert_eq!(m.versions.unwrap().document, 1, "what is enforced, not what was sent");
        assert_eq!(m.last_refused.unwrap().errors.len(), 3);
    });
}

#[test]
fn a_second_server_on_a_live_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _h = Harness::start(dir.path(), 1024);
    let cfg = control_config(dir.path());
    let store = std::sync::Arc::new(
        controlplane::store::ConfigStore::open(
            controlplane::store::StoreOptions { state_dir: None, before_config: Default::default() },
            Box::new(controlplane::store::Discard),
        )
        .unwrap(),
    );
    let e = controlplane::api::ControlServer::start(
        &cfg,
        controlplane::api::server::Backends {
            store,
            hub: controlplane::flowhub::FlowHub::new(1024),
            stats: std::sync::Arc::new(controlplane::api::stats::NoDataplane),
        },
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("another server is listening"), "{e}");
}

fn apply_flags(version: u64, yaml: &str, allow_empty: bool, replace: bool) -> pb::ApplyRequest {
    pb::ApplyRequest { allow_empty, replace, ..apply_yaml(version, yaml) }
}

#[test]
fn empty_and_cut_short_documents_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    rt().block_on(async {
        let mut c = clients(&h.rw).await;
        assert!(c.config.apply(apply_yaml(1, GOOD)).await.unwrap().into_inner().accepted);
        let state_file = std::fs::read(dir.path().join("state/policy.json")).unwrap();
        // GOOD cut after its identities: no rulesets left.
        let cut_mid = &GOOD[..GOOD.find("rulesets:").unwrap()];
        for (v, doc) in [(2, ""), (3, "revision: ce\n"), (4, cut_mid)] {
            let r = c.config.apply(apply_yaml(v, doc)).await.unwrap().into_inner();
            assert!(!r.accepted, "{doc:?} was accepted");
            assert_eq!(r.in_force.unwrap().document, 1);
            let fields: Vec<(&str, &str)> = r.errors.iter().map(|e| (e.name.as_str(), e.field.as_str())).collect();
            assert!(fields.contains(&("rulesets", "allow_empty")), "{doc:?}: {:#?}", r.errors);
            let rs = r.errors.iter().find(|e| e.name == "rulesets").unwrap();
            assert!(rs.message.contains("no rules, removing all 1 rulesets in force (db)"), "{}", rs.message);
            if v < 4 {
                assert!(fields.contains(&("processing_units", "allow_empty")), "{:#?}", r.errors);
                assert!(fields.contains(&("identities", "replace")), "{:#?}", r.errors);
            } else {
                assert_eq!(r.errors.len(), 1, "the cut keeps the PUs and identities: {:#?}", r.errors);
            }
        }
        let st = c.config.get(pb::GetRequest { kind: 0, versions_only: true }).await.unwrap().into_inner();
        let st = st.status.unwrap();
        assert_eq!(st.state, pb::EnforcementState::Enforcing as i32);
        assert_eq!(st.applies_refused, 3);
        assert_eq!(h.published(), 2);
        assert_eq!(std::fs::read(dir.path().join("state/policy.json")).unwrap(), state_file);
        // replace is not enough for an empty result; allow_empty is.
        let r = c.config.apply(apply_flags(5, "revision: ce\n", false, true)).await.unwrap().into_inner();
        assert!(!r.accepted);
        assert!(r.errors.iter().all(|e| e.field == "allow_empty"), "{:#?}", r.errors);
        let r = c.config.apply(apply_flags(5, "revision: ce\n", true, false)).await.unwrap().into_inner();
        assert!(r.accepted, "{:#?}", r.errors);
        let st = c.config.get(pb::GetRequest { kind: 0, versions_only: true }).await.unwrap().into_inner();
        let st = st.status.unwrap();
        assert_eq!(st.state, pb::EnforcementState::EnforcingDropAll as i32);
        assert_eq!(st.drops_all, "no processing units");
        // Back to GOOD: PUs and rules again, enforcing.
        assert!(c.config.apply(apply_yaml(6, GOOD)).await.unwrap().into_inner().accepted);
        // A document without the identities (absent kind) needs replace.
        let no_ids = GOOD.replace("identities:\n- {identity: 200, name: client, tags: [role=client], peer: gw-b}\n", "");
        let no_ids = no_ids.replace("peers:\n- name: gw-b\n  keys: [{id: 7, public_key: \"0000000000000000000000000000000000000000000000000000000000000001\"}]\n", "");
        assert!(!no_ids.contains("identities") && !no_ids.contains("peers"), "{no_ids}");
        let r = c.config.apply(apply_yaml(7, &no_ids)).await.unwrap().into_inner();
        assert!(!r.accepted);
        assert_eq!(r.errors.len(), 1, "{:#?}", r.errors);
        assert!(r.errors[0].message.starts_with("the document has no identities (absent or empty)"), "{}", r.errors[0].message);
        let r = c.config.apply(apply_flags(7, &no_ids, false, true)).await.unwrap().into_inner();
        assert!(r.accepted, "{:#?}", r.errors);
        let st = c.config.get(pb::GetRequest { kind: 0, versions_only: true }).await.unwrap().into_inner();
        assert_eq!(st.status.unwrap().state, pb::EnforcementState::Enforcing as i32);
    });
}

#[test]
fn a_5mb_junk_apply_and_the_next_status_are_small() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    let mb5 = 5 << 20;
    let junks = [
        // a scalar: YAML, but not a policy document
        "j".repeat(mb5),
        // an unknown field whose name is 5 MB (an explicit key: a plain one is at most 1024)
        format!("? {}\n: 1\n", "k".repeat(mb5)),
        // a syntax error after 5 MB of a flow sequence
        format!("rulesets: [{}", "x, ".repeat(mb5 / 3)),
        // a selector of 5 MB: the compiler echoes it
        GOOD.replace("subject: role == db", &format!("subject: \"role == db {}\"", "d".repeat(mb5))),
    ];
    rt().block_on(async {
        let c = clients(&h.rw).await;
        let mut config = c.config.clone();
        assert!(config.apply(apply_yaml(1, GOOD)).await.unwrap().into_inner().accepted);
        for (i, junk) in junks.iter().enumerate() {
            let r = config.apply(apply_yaml(2 + i as u64, junk)).await.unwrap().into_inner();
            assert!(!r.accepted, "junk {i}");
            let size = r.encoded_len();
            assert!(size < 4096, "junk {i}: the refusal is {size} bytes: {:#?}", r.errors);
            if i != 2 {
                assert!(r.errors[0].message.contains("bytes)"), "junk {i}: the cut says so: {}", r.errors[0].message);
            } else {
                assert!(r.errors[0].message.starts_with("the document is not valid YAML"), "{}", r.errors[0].message);
            }
            let st = config.get(pb::GetRequest { kind: 0, versions_only: true }).await.unwrap().into_inner();
            let size = st.encoded_len();
            assert!(size < 4096, "junk {i}: the status after it is {size} bytes");
            assert_eq!(st.status.unwrap().last_refused.unwrap().version, 2 + i as u64);
        }
    });
    assert_eq!(h.store.versions().document(), 1);
}

#[test]
fn parse_errors_say_what_kind_and_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 1024);
    let huge_id = GOOD.replace("identity: 200", "identity: 1099511627776");
    let negative = GOOD.replace("identity: 101", "identity: -1");
    let missing = GOOD.replace("  identity: 101\n", "");
    let syntax = "rulesets:\n  - name: [unclosed\n";
    rt().block_on(async {
        let mut c = clients(&h.rw).await;
        let msg = |r: pb::ApplyResponse| {
            assert!(!r.accepted);
            assert_eq!(r.errors.len(), 1, "{:#?}", r.errors);
            assert_eq!(r.errors[0].resource, "document");
            r.errors[0].message.clone()
        };
        let m = msg(c.config.apply(apply_yaml(1, &huge_id)).await.unwrap().into_inner());
        assert!(m.contains("identities[0].identity: 1099511627776 is out of range (0..=4294967295)"), "{m}");
        assert!(m.starts_with("the document is YAML but not a valid policy document"), "{m}");
        let m = msg(c.config.apply(apply_yaml(1, &negative)).await.unwrap().into_inner());
        assert!(m.contains("processing_units[1].identity: -1 is out of range (0..=4294967295)"), "{m}");
        let m = msg(c.config.apply(apply_yaml(1, &missing)).await.unwrap().into_inner());
        assert!(m.starts_with("the document is YAML but not a valid policy document"), "{m}");
        assert!(m.contains("missing field `identity`"), "{m}");
        assert!(!m.contains("does not parse"), "{m}");
        let m = msg(c.config.apply(apply_yaml(1, syntax)).await.unwrap().into_inner());
        assert!(m.starts_with("the document is not valid YAML"), "{m}");
    });
}
