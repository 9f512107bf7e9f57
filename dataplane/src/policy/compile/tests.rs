//! Whole documents through [`compile`]: every problem reported, in order,
//! with its field; what reaches the snapshot.

use super::{compile, ResourceKind};
use crate::policy::model::{self, Action, PolicyDocument, Protocol};
use crate::policy::snapshot::PreviousKeyInfo;
use crate::policy::Direction;

const BAD: &str = r#"
local:
  gateway: gw
  key_id: 1
processing_units:
  - name: a
    tags: [app=a, app=b]
    addresses: [10.0.0.0/24]
    identity: 1
  - name: b
    addresses: [10.0.0.128/25, "10.1.0.1/16", "fd00::1"]
    identity: 2
  - name: a
    addresses: [192.168.0.1]
    identity: 1
identities:
  - identity: 2
    peer: west
  - identity: 7
    tags: [novalue]
    peer: nowhere
peers:
  - name: west
    keys:
      - id: 5
        public_key: "not a key!"
  - name: east
    keys:
      - id: 5
        public_key: "0000000000000000000000000000000000000000000000000000000000000000"
rulesets:
  - name: db
    subject: "role == "
    incoming:
      - name: r0
        action: allow
        object: all()
      - name: r0
        action: allow
        object: app == web &&
      - name: r2
        action: allow
        object: all()
        protocols: [tcp]
        ports: [80, 70000, "90-80", "x"]
      - name: r3
        action: allow
        object: all()
        protocols: [icmp]
        ports: [1]
external_networks:
  - name: e
    cidrs: [10.0.0.0/33]
enforcer_profile:
  excluded_networks: [bogus]
  ignore: "has(x"
"#;

#[test]
fn collects_every_error() {
    let doc = PolicyDocument::from_yaml(BAD).unwrap();
    let errs = compile(&doc).unwrap_err();
    let text: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
    let expect = [
        r#"local.private_key: exactly one of private_key and private_key_file must be set"#,
        r#"peers["west"].keys[0].public_key: "not a key!" is neither 64 hex digits nor base64"#,
        r#"peers["east"].keys[0].id: "5" is already used by peer "west""#,
        r#"processing_units["a"].tags: key "app" appears more than once"#,
        r#"processing_units["b"].addresses[1]: "10.1.0.1/16" has host bits set (did you mean 10.1.0.0/16?)"#,
        r#"processing_units["a"].name: "a" is already used by another processing unit"#,
        r#"processing_units["a"].identity: identity 1 is already used by processing unit "a""#,
        r#"processing_units["b"].addresses[0]: "10.0.0.128/25" overlaps "10.0.0.0/24" of processing unit "a""#,
        r#"identities["2"].identity: identity 2 is already used by processing unit "b""#,
        r#"identities["7"].tags: "novalue" is not a key=value tag"#,
        r#"identities["7"].peer: "nowhere" is not a peer in `peers`"#,
        r#"external_networks["e"].cidrs[0]: "10.0.0.0/33" has a prefix length over 32"#,
        r#"rulesets["db"].subject: selector "role == " at column 9: expected a value"#,
        r#"rulesets["db"].incoming[1].name: "r0" is already used by incoming[0]"#,
        r#"rulesets["db"].incoming[1].object: selector "app == web &&" at column 14: expected a tag key"#,
        r#"rulesets["db"].incoming[2].ports: "70000" is not a port"#,
        r#"rulesets["db"].incoming[2].ports: "90-80" has its low end above its high end"#,
        r#"rulesets["db"].incoming[2].ports: "x" is not a port"#,
        r#"rulesets["db"].incoming[3].ports: ports [1] given but the protocols (icmp) have no ports"#,
        r#"enforcer_profile.excluded_networks[0]: "bogus" is not an IP address or CIDR"#,
        r#"enforcer_profile.ignore: selector "has(x" at column 6: expected ')' closing has("#,
    ];
    for e in expect {
        assert!(text.iter().any(|t| t.starts_with(e)), "missing {e:?} in\n{}", text.join("\n"));
    }
    // "fd00::1" alone is a valid /128: the only error on addresses[2] would be a bug.
    let fd = text.iter().filter(|t| t.contains("addresses[2]")).count();
    assert_eq!(fd, 0, "{}", text.join("\n"));
    assert_eq!(text.len(), expect.len(), "{}", text.join("\n"));
    assert_eq!(errs.0[0].resource, ResourceKind::Local);
    assert!(errs.to_string().starts_with("21 problem(s)"));
}

#[test]
fn peer_networks_and_key_id_range() {
    let k = "11".repeat(32);
    let doc = PolicyDocument::from_yaml(&format!(
        "local: {{gateway: me, key_id: 70000, private_key: \"{k}\"}}\n\
         peers:\n\
         - {{name: a, keys: [{{id: 65536, public_key: \"{k}\"}}], networks: [10.2.0.0/16, \"fd00:2::/64\"]}}\n\
         - {{name: b, keys: [{{id: 7, public_key: \"{k}\", not_before: 9, not_after: 3}}], networks: [10.2.0.0/16, 10.2.5.0/24, bogus]}}\n"
    ))
    .unwrap();
    let text: Vec<String> = compile(&doc).unwrap_err().0.iter().map(ToString::to_string).collect();
    for e in [
        r#"local.key_id: 70000 does not fit"#,
        r#"peers["a"].keys[0].id: 65536 does not fit"#,
        r#"peers["b"].keys[0].not_after: not_after is before not_before"#,
        r#"peers["b"].networks[2]: "bogus" is not an IP address or CIDR"#,
        r#"peers["b"].networks[0]: "10.2.0.0/16" is already used by peer "a""#,
    ] {
        assert!(text.iter().any(|t| t.starts_with(e)), "missing {e:?} in\n{}", text.join("\n"));
    }
    assert_eq!(text.len(), 5, "{}", text.join("\n"));

    let doc = PolicyDocument::from_yaml(&format!(
        "peers:\n\
         - {{name: a, keys: [{{id: 65535, public_key: \"{k}\"}}], networks: [10.2.0.0/16, \"fd00:2::/64\"]}}\n\
         - {{name: b, keys: [{{id: 7, public_key: \"{k}\", not_after: 100}}], networks: [10.2.5.0/24]}}\n"
    ))
    .unwrap();
    let s = compile(&doc).unwrap();
    let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(s.peer_for(ip("10.2.1.1")), Some(0));
    assert_eq!(s.peer_for(ip("10.2.5.1")), Some(1), "the longest prefix wins");
    assert_eq!(s.peer_for(ip("fd00:2::9")), Some(0));
    assert_eq!(s.peer_for(ip("10.3.0.1")), None);
    assert_eq!(&*s.peers()[1].key_windows, &[(0, 100)]);
}

#[test]
fn previous_local_keys_are_checked_like_the_main_one_and_apart_from_each_other() {
    let k = "11".repeat(32);
    let doc = PolicyDocument::from_yaml(&format!(
        "local:\n\
         \x20 gateway: me\n\
         \x20 key_id: 4\n\
         \x20 private_key: \"{k}\"\n\
         \x20 not_before: 3000\n\
         \x20 previous_keys:\n\
         \x20 - {{key_id: 260, private_key: \"{k}\", not_after: 4000}}\n\
         \x20 - {{key_id: 70000, private_key: notakey, private_key_file: /k, not_after: 4000}}\n\
         \x20 - {{key_id: 7, private_key_file: /k7}}\n\
         \x20 - {{key_id: 1, private_key_file: /k1, not_after: 10}}\n\
         \x20 - {{key_id: 513, private_key_file: /k2, not_after: 4000}}\n\
         peers:\n\
         - {{name: b, keys: [{{id: 7, public_key: \"{k}\"}}, {{id: 4, public_key: \"{k}\"}}, {{id: 9, public_key: \"{k}\"}}]}}\n"
    ))
    .unwrap();
    let errs = compile(&doc).unwrap_err();
    let text: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
    let expect = [
        r#"local.previous_keys[1].private_key: "(redacted)" decodes to 5 bytes, an X25519 key has 32"#,
        r#"local.previous_keys[1].private_key: exactly one of private_key and private_key_file must be set"#,
        r#"local.previous_keys[1].key_id: 70000 does not fit"#,
        r#"local.previous_keys[2].not_after: a previous key needs not_after"#,
        r#"local.previous_keys[0].key_id: key id 260 has the same low 8 bits as local.key_id (4):"#,
        r#"local.previous_keys[4].key_id: key id 513 has the same low 8 bits as local.previous_keys[3].key_id (1):"#,
        r#"peers["b"].keys[0].id: "7" is already used by local.previous_keys[2].key_id"#,
        r#"peers["b"].keys[1].id: "4" is already used by local.key_id"#,
    ];
    for e in expect {
        assert!(text.iter().any(|t| t.starts_with(e)), "missing {e:?} in\n{}", text.join("\n"));
    }
    assert_eq!(text.len(), expect.len(), "{}", text.join("\n"));
    assert!(!text.iter().any(|t| t.contains("notakey")), "the secret is not echoed");
    let fields: Vec<&str> = errs.0.iter().filter(|e| e.resource == ResourceKind::Local).map(|e| &*e.field).collect();
    assert_eq!(
        fields,
        [
            "previous_keys[1].private_key",
            "previous_keys[1].private_key",
            "previous_keys[1].key_id",
            "previous_keys[2].not_after",
            "previous_keys[0].key_id",
            "previous_keys[4].key_id",
        ]
    );
}

#[test]
fn previous_local_keys_reach_the_snapshot() {
    let k = "11".repeat(32);
    // Key 1 ends before key 4 begins: a gap, allowed (nothing signs in it).
    let doc = PolicyDocument::from_yaml(&format!(
        "local: {{gateway: me, key_id: 4, private_key_file: /k4, not_before: 3000, previous_keys: [\
         {{key_id: 1, private_key: \"{k}\", not_after: 2000}}, {{key_id: 2, private_key_file: /k2, not_after: 5000}}]}}\n"
    ))
    .unwrap();
    let s = compile(&doc).unwrap();
    let l = s.local().unwrap();
    assert_eq!((l.key_id, l.not_before, l.private_key_file.as_deref(), l.private_key), (4, 3000, Some("/k4"), None));
    assert_eq!(
        &*l.previous_keys,
        &[
            PreviousKeyInfo { key_id: 1, private_key_file: None, private_key: Some([0x11; 32]), not_after: 2000 },
            PreviousKeyInfo { key_id: 2, private_key_file: Some("/k2".into()), private_key: None, not_after: 5000 },
        ]
    );
    // Without the new fields: always, and no previous key.
    let doc = PolicyDocument::from_yaml("local: {gateway: me, key_id: 4, private_key_file: /k4}\n").unwrap();
    let s = compile(&doc).unwrap();
    assert_eq!((s.local().unwrap().not_before, s.local().unwrap().previous_keys.len()), (0, 0));
}

#[test]
fn identities_grouped_by_the_tags_selectors_test() {
    use crate::policy::{Direction, PuId, Reason, Remote};
    let k = "11".repeat(32);
    let doc = PolicyDocument::from_yaml(&format!(
        "peers: [{{name: w, keys: [{{id: 1, public_key: \"{k}\"}}]}}]\n\
         processing_units: [{{name: db, tags: [app=db], addresses: [10.0.0.1], identity: 1}}]\n\
         identities:\n\
         - {{identity: 10, tags: [app=web, instance=a, pod=p1], peer: w}}\n\
         - {{identity: 11, tags: [app=web, instance=b, pod=p2], peer: w}}\n\
         - {{identity: 12, tags: [app=web, instance=c, pod=p3], peer: w}}\n\
         - {{identity: 13, tags: [app=web, pod=p4], peer: w}}\n\
         - {{identity: 14, tags: [app=api, instance=a, pod=p5], peer: w}}\n\
         rulesets:\n\
         - name: r\n  subject: app == db\n  incoming:\n\
         \x20 - {{name: a, action: allow, object: \"app == web && instance != b\"}}\n\
         \x20 - {{name: b, action: reject, object: \"has(instance) && app == api\"}}\n"
    ))
    .unwrap();
    let s = compile(&doc).unwrap();
    let d = |id| s.decide(PuId(0), Direction::Incoming, Remote::Identity(id), 6, 80).reason;
    assert_eq!(d(10), Reason::PolicyAllow);
    assert_eq!(d(11), Reason::NoMatch);
    assert_eq!(d(12), Reason::PolicyAllow);
    assert_eq!(d(13), Reason::PolicyAllow, "an absent key is not equal to b");
    assert_eq!(d(14), Reason::PolicyReject);
    // Same rules named, same class (whatever their untested `pod` and `instance` values).
    let class = |id| s.identity(id).unwrap().class;
    assert_eq!(class(10), class(12));
    assert_ne!(class(10), class(11));
}

#[test]
fn large_directory_errors_in_order() {
    // Past the size where tag sets are parsed on two threads: errors are
    // still reported in document order, duplicates named as before.
    use model::{IdentityEntry, Peer, PeerKey};
    let mut doc = PolicyDocument::default();
    doc.peers.push(Peer {
        name: "w".into(),
        keys: vec![PeerKey { id: 1, public_key: "11".repeat(32), not_before: None, not_after: None }],
        networks: vec![],
        option_version: None,
    });
    for i in 0..20_000u32 {
        let tags = match i {
            3 | 15_000 => vec!["broken".to_string()],
            _ => vec![format!("app=a{}", i % 7), format!("n=i{i}")],
        };
        doc.identities.push(IdentityEntry { identity: 100 + i % 19_999, name: None, tags, peer: "w".into() });
    }
    let text: Vec<String> = compile(&doc).unwrap_err().0.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            r#"identities["103"].tags: "broken" is not a key=value tag"#,
            r#"identities["15100"].tags: "broken" is not a key=value tag"#,
            r#"identities["100"].identity: identity 100 is already used by identities["100"]"#,
        ]
    );
    doc.identities[3].tags = vec!["app=x".into()];
    doc.identities[15_000].tags = vec!["app=x".into()];
    doc.identities.pop();
    // Groups formed on both halves are one: decisions over the split.
    doc.processing_units.push(model::ProcessingUnit {
        name: "db".into(),
        tags: vec!["app=db".into()],
        addresses: vec!["10.0.0.1".into()],
        identity: 1,
    });
    doc.rulesets.push(model::Ruleset {
        name: "r".into(),
        subject: "app == db".into(),
        incoming: vec![model::Rule {
            name: "a".into(),
            action: Action::Allow,
            object: "app in {a3, x}".into(),
            protocols: vec![Protocol::Tcp],
            ports: vec![],
            observe: false,
        }],
        outgoing: vec![],
    });
    let s = compile(&doc).unwrap();
    let allowed =
        |id| s.decide(crate::policy::PuId(0), Direction::Incoming, crate::policy::Remote::Identity(id), 6, 1).allowed();
    for i in [3u32, 10, 15_000, 15_001, 19_998] {
        assert_eq!(allowed(100 + i), i % 7 == 3 || i == 3 || i == 15_000, "{i}");
    }
    assert_eq!(s.stats().identity_classes, 2);
    assert_eq!(s.stats().identities, 19_999);
    assert_eq!(s.identity(15_100).unwrap().tags.get("app"), Some("x"));
    assert_eq!(s.identity(19_000).unwrap().tags.get("n"), Some("i18900"));
}

#[test]
fn inline_private_key_is_not_echoed() {
    let doc = PolicyDocument::from_yaml("local: {gateway: g, key_id: 1, private_key: secretsecret}\n").unwrap();
    let e = compile(&doc).unwrap_err().to_string();
    assert!(!e.contains("secretsecret"), "{e}");
}

#[test]
fn empty_document_rejects_nothing_is_local() {
    let s = compile(&PolicyDocument::default()).unwrap();
    assert_eq!(s.stats().pus, 0);
    let c = s.classify(crate::policy::Side::Inside, "10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    assert_eq!(c, crate::policy::Classification::NotLocal);
}
