//! Where each fleet object lives under the prefix (docs/fleet.md, "Keys").

/// The keys of one fleet, under `prefix` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind<'a> {
    FleetDocument,
    Rotate {
        gateway: &'a str,
    },
    Registration {
        gateway: &'a str,
    },
    Pu {
        gateway: &'a str,
        pu: &'a str,
    },
    Status {
        gateway: &'a str,
    },
    IdentityCounter,
    KeyIdCounter,
    /// Under the prefix, but nothing the fleet defines.
    Other,
}

impl Layout {
    pub fn new(prefix: &str) -> Layout {
        Layout { prefix: prefix.trim_end_matches('/').to_owned() }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Everything: `<prefix>/`.
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }
    pub fn fleet_document(&self) -> String {
        format!("{}/fleet/document", self.prefix)
    }
    pub fn rotate(&self, gateway: &str) -> String {
        format!("{}/fleet/rotate/{gateway}", self.prefix)
    }
    pub fn gateway(&self, gateway: &str) -> String {
        format!("{}/gateways/{gateway}/", self.prefix)
    }
    pub fn gateways(&self) -> String {
        format!("{}/gateways/", self.prefix)
    }
    pub fn registration(&self, gateway: &str) -> String {
        format!("{}/gateways/{gateway}/registration", self.prefix)
    }
    pub fn pus(&self, gateway: &str) -> String {
        format!("{}/gateways/{gateway}/pus/", self.prefix)
    }
    pub fn pu(&self, gateway: &str, pu: &str) -> String {
        format!("{}/gateways/{gateway}/pus/{pu}", self.prefix)
    }
    pub fn status(&self, gateway: &str) -> String {
        format!("{}/gateways/{gateway}/status", self.prefix)
    }
    pub fn identity_counter(&self) -> String {
        format!("{}/alloc/identity", self.prefix)
    }
    pub fn key_id_counter(&self) -> String {
        format!("{}/alloc/key_id", self.prefix)
    }

    /// What `key` is; `Other` for anything the fleet does not define.
    pub fn classify<'k>(&self, key: &'k str) -> KeyKind<'k> {
        let Some(rest) = key.strip_prefix(self.prefix.as_str()).and_then(|r| r.strip_prefix('/')) else {
            return KeyKind::Other;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["fleet", "document"] => KeyKind::FleetDocument,
            ["fleet", "rotate", g] => KeyKind::Rotate { gateway: g },
            ["gateways", g, "registration"] => KeyKind::Registration { gateway: g },
            ["gateways", g, "status"] => KeyKind::Status { gateway: g },
            ["gateways", g, "pus", p] => KeyKind::Pu { gateway: g, pu: p },
            ["alloc", "identity"] => KeyKind::IdentityCounter,
            ["alloc", "key_id"] => KeyKind::KeyIdCounter,
            _ => KeyKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_classifies_as_what_it_is() {
        let l = Layout::new("/igw/");
        assert_eq!(l.classify(&l.fleet_document()), KeyKind::FleetDocument);
        assert_eq!(l.classify(&l.rotate("a")), KeyKind::Rotate { gateway: "a" });
        assert_eq!(l.classify(&l.registration("a")), KeyKind::Registration { gateway: "a" });
        assert_eq!(l.classify(&l.status("a")), KeyKind::Status { gateway: "a" });
        assert_eq!(l.classify(&l.pu("a", "web")), KeyKind::Pu { gateway: "a", pu: "web" });
        assert_eq!(l.classify(&l.identity_counter()), KeyKind::IdentityCounter);
        assert_eq!(l.classify(&l.key_id_counter()), KeyKind::KeyIdCounter);
        assert_eq!(l.classify("/igw/gateways/a/pus/web/x"), KeyKind::Other);
        assert_eq!(l.classify("/igwx/fleet/document"), KeyKind::Other);
        assert_eq!(l.classify("/other/fleet/document"), KeyKind::Other);
    }
}
