//! TCP with mutual TLS: certificates from a test CA (rcgen); a client without
//! a certificate, or with one from another CA, is refused at the handshake; a
//! certificate the map does not name gets PermissionDenied; roles decide who
//! may apply.

mod api_harness;

use std::path::{Path, PathBuf};

use api_harness::*;
use controlplane::api::auth::Role;
use controlplane::api::client::{Clients, Target, TlsTarget};
use controlplane::api::pb;
use controlplane::api::server::{ClientRole, TcpConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    Ca { cert: p.self_signed(&key).unwrap(), key }
}

/// Writes `<name>.pem` and `<name>.key` signed by `ca`; returns their paths.
fn leaf(dir: &Path, ca: &Ca, name: &str, cn: &str, sans: &[&str], server: bool) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages =
        vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn mutual_tls_roles_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good_ca = ca("gateway test CA");
    let other_ca = ca("someone else's CA");
    std::fs::write(d.join("ca.pem"), good_ca.cert.pem()).unwrap();
    let (scert, skey) = leaf(d, &good_ca, "server", "gatewayd", &["localhost"], true);
    let manager = leaf(d, &good_ca, "manager", "manager", &["manager.example.net"], false);
    let auditor = leaf(d, &good_ca, "auditor", "auditor", &[], false);
    let stranger = leaf(d, &good_ca, "stranger", "stranger", &[], false);
    let forged = leaf(d, &other_ca, "forged", "manager", &["manager.example.net"], false);

    let mut cfg = control_config(d);
    cfg.tcp = Some(TcpConfig {
        listen: "127.0.0.1:0".into(),
        cert: scert,
        key: skey,
        client_ca: d.join("ca.pem"),
        clients: vec![
            ClientRole { name: "manager.example.net".into(), role: Role::ReadWrite },
            ClientRole { name: "auditor".into(), role: Role::ReadOnly },
        ],
    });
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let h = Harness::start_with(d, 1024, cfg);
    let addr = h.server.as_ref().unwrap().tcp_addr().unwrap();
    let target = |id: Option<&(PathBuf, PathBuf)>| {
        Target::Tls(TlsTarget {
            server: addr.to_string(),
            ca: d.join("ca.pem"),
            cert: id.map(|i| i.0.clone()),
            key: id.map(|i| i.1.clone()),
            domain: Some("localhost".into()),
        })
    };
    rt().block_on(async {
        // No certificate, or one another CA signed: the handshake fails, so
        // either the connection or the first call does.
        for (what, id) in [("no client certificate", None), ("a certificate from another CA", Some(&forged))] {
            match Clients::connect(&target(id)).await {
                Err(e) => eprintln!("{what}: refused at connect: {e}"),
                Ok(mut c) => {
                    let e = c.config.get(pb::GetRequest { kind: 0, ..Default::default() }).await.expect_err(what);
                    eprintln!("{what}: refused at the first call: {e}");
                    assert_ne!(e.code(), tonic::Code::Ok);
                }
            }
        }
        // Signed by the CA but not in the map: no role.
        let mut c = Clients::connect(&target(Some(&stranger))).await.unwrap();
        let e = c.config.get(pb::GetRequest { kind: 0, ..Default::default() }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("stranger"), "{}", e.message());
        // Read-only by CN.
        let mut c = Clients::connect(&target(Some(&auditor))).await.unwrap();
        assert!(c.config.get(pb::GetRequest { kind: 0, ..Default::default() }).await.is_ok());
        let e = c.config.apply(apply_yaml(1, GOOD)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        // Read-write by DNS SAN.
        let mut c = Clients::connect(&target(Some(&manager))).await.unwrap();
        let r = c.config.apply(apply_yaml(1, GOOD)).await.unwrap().into_inner();
        assert!(r.accepted, "{:?}", r.errors);
        assert!(c.stats.get_stats(pb::GetStatsRequest::default()).await.is_ok());
    });
    assert_eq!(h.store.versions().document(), 1);
}

#[test]
fn tcp_settings_are_validated() {
    let cfg = controlplane::api::ControlConfig {
        tcp: Some(TcpConfig {
            listen: "nowhere".into(),
            cert: "/x".into(),
            key: "/y".into(),
            client_ca: "/z".into(),
            clients: vec![],
        }),
        flow_ring: 10,
        ..Default::default()
    };
    let e = cfg.validate();
    let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, vec!["control.flow_ring", "control.tcp.listen", "control.tcp.clients"], "{e:?}");
}
