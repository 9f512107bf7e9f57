//! Who may do what.
//!
//! Two roles: `read-only` (Get, Watch, GetFlows, GetStats) and `read-write`
//! (also Apply). A listener either gives every client one role (a Unix socket:
//! the read-write socket is 0660, the read-only one 0666, so file permissions
//! decide who connects), or, for TCP with mutual TLS, maps the verified client
//! certificate's names (subject CN and DNS SANs) to a role through
//! `[[control.tcp.clients]]`. A certificate the CA signed but the map does
//! not name gets no role: PermissionDenied.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use tonic::{Request, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Role {
    #[serde(rename = "read-only")]
    ReadOnly,
    #[serde(rename = "read-write")]
    ReadWrite,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::ReadWrite => "read-write",
        }
    }
}

/// How a listener decides a client's role.
#[derive(Debug, Clone)]
pub enum Access {
    /// Every client of this listener has this role.
    Fixed(Role),
    /// By the verified client certificate's names.
    ByCertificate(Arc<HashMap<String, Role>>),
}

impl Access {
    /// The role of the client behind `req`, or PermissionDenied.
    pub fn role<T>(&self, req: &Request<T>) -> Result<Role, Status> {
        match self {
            Access::Fixed(r) => Ok(*r),
            Access::ByCertificate(map) => {
                let certs =
                    req.peer_certs().ok_or_else(|| Status::permission_denied("no client certificate was presented"))?;
                let leaf =
                    certs.first().ok_or_else(|| Status::permission_denied("no client certificate was presented"))?;
                let names = certificate_names(leaf.as_ref())
                    .map_err(|e| Status::permission_denied(format!("the client certificate cannot be read: {e}")))?;
                names.iter().filter_map(|n| map.get(n).copied()).max().ok_or_else(|| {
                    Status::permission_denied(format!(
                        "the client certificate ({}) is not given a role in [[control.tcp.clients]]",
                        names.join(", ")
                    ))
                })
            }
        }
    }

    /// Ok if the client may change the config.
    pub fn require_write<T>(&self, req: &Request<T>) -> Result<(), Status> {
        match self.role(req)? {
            Role::ReadWrite => Ok(()),
            Role::ReadOnly => Err(Status::permission_denied(
                "this client is read-only: applying a config needs the read-write socket or a read-write certificate",
            )),
        }
    }
}

/// The subject common names and DNS subject-alternative names of a DER certificate.
pub fn certificate_names(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names: Vec<String> =
        cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_owned)).collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push((*d).to_owned());
            }
        }
    }
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(cn: &str, sans: &[&str]) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_are_the_common_name_and_the_dns_names() {
        let der = certificate("ops-laptop", &["ops.example.test", "gw-admin.example.test"]);
        assert_eq!(certificate_names(&der).unwrap(), ["ops-laptop", "ops.example.test", "gw-admin.example.test"]);
        assert!(certificate_names(b"not a certificate").is_err());
    }

    #[test]
    fn a_fixed_listener_gives_its_role() {
        let req = Request::new(());
        assert_eq!(Access::Fixed(Role::ReadWrite).role(&req).unwrap(), Role::ReadWrite);
        assert!(Access::Fixed(Role::ReadWrite).require_write(&req).is_ok());
        let e = Access::Fixed(Role::ReadOnly).require_write(&req).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("read-only"), "{}", e.message());
    }

    #[test]
    fn a_certificate_listener_refuses_a_client_without_one() {
        let map = Arc::new(HashMap::from([("ops-laptop".to_owned(), Role::ReadWrite)]));
        let e = Access::ByCertificate(map).role(&Request::new(())).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(e.message(), "no client certificate was presented");
    }

    #[test]
    fn roles_read_as_the_config_writes_them() {
        #[derive(Deserialize)]
        struct C {
            role: Role,
        }
        let c: C = toml::from_str("role = \"read-only\"").unwrap();
        assert_eq!((c.role, c.role.name()), (Role::ReadOnly, "read-only"));
        assert!(Role::ReadWrite > Role::ReadOnly, "the larger role of a certificate's names wins");
        assert!(toml::from_str::<C>("role = \"admin\"").is_err());
    }
}
