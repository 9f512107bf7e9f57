//! `local`: this gateway's main key and its previous ones.

use super::error::{Problem, ResourceKind};
use super::validate::Validation;
use super::values::decode_key32;
use super::MAX_KEY_ID;
use crate::policy::model;
use crate::policy::snapshot::{LocalKeyInfo, PreviousKeyInfo};

impl Validation<'_> {
    /// Checks `local` (the main key and every previous one) and keeps what
    /// the engine needs to load the keys.
    pub fn local(&mut self, l: &model::LocalKeys) -> LocalKeyInfo {
        let g = &l.gateway;
        let main = self.local_key(g, "", l.key_id, l.private_key.as_deref(), l.private_key_file.is_some());
        let mut previous_keys = Vec::with_capacity(l.previous_keys.len());
        for (i, k) in l.previous_keys.iter().enumerate() {
            let at = format!("previous_keys[{i}].");
            let private_key = self.local_key(g, &at, k.key_id, k.private_key.as_deref(), k.private_key_file.is_some());
            if k.not_after.is_none() {
                self.err(
                    ResourceKind::Local,
                    g,
                    format!("{at}not_after"),
                    "",
                    Problem::Missing("a previous key needs not_after"),
                );
            }
            previous_keys.push(PreviousKeyInfo {
                key_id: k.key_id,
                private_key_file: k.private_key_file.as_deref().map(Into::into),
                private_key,
                not_after: k.not_after.unwrap_or(u64::MAX),
            });
        }
        // A peer's option carries only the low 8 bits of the receiver's key
        // id: two local keys sharing them would share receive key ids.
        let ids = local_key_ids(l);
        for (n, (id, field)) in ids.iter().enumerate() {
            if let Some((other_id, other)) = ids[..n].iter().find(|(o, _)| o & 0xff == id & 0xff) {
                let field = field.strip_prefix("local.").unwrap_or(field);
                self.err(
                    ResourceKind::Local,
                    g,
                    field,
                    id.to_string(),
                    Problem::SameLowByte { other: format!("{other} ({other_id})") },
                );
            }
        }
        LocalKeyInfo {
            gateway: l.gateway.as_str().into(),
            key_id: l.key_id,
            private_key_file: l.private_key_file.as_deref().map(Into::into),
            private_key: main,
            not_before: l.not_before.unwrap_or(0),
            previous_keys: previous_keys.into(),
        }
    }

    /// One local key's id and secret (`at`: the field prefix within `local`,
    /// "" for the main key). The inline secret is never echoed.
    fn local_key(
        &mut self,
        gateway: &str,
        at: &str,
        key_id: u32,
        private_key: Option<&str>,
        has_file: bool,
    ) -> Option<[u8; 32]> {
        let decoded = private_key.and_then(|k| match decode_key32(k) {
            Ok(k) => Some(k),
            Err(why) => {
                self.err(
                    ResourceKind::Local,
                    gateway,
                    format!("{at}private_key"),
                    "(redacted)",
                    Problem::BadKey(why.replace(k.trim(), "(redacted)")),
                );
                None
            }
        });
        if private_key.is_some() == has_file {
            self.err(
                ResourceKind::Local,
                gateway,
                format!("{at}private_key"),
                "",
                Problem::Missing("exactly one of private_key and private_key_file must be set"),
            );
        }
        if key_id > MAX_KEY_ID {
            self.err(ResourceKind::Local, gateway, format!("{at}key_id"), key_id.to_string(), Problem::KeyIdRange);
        }
        decoded
    }
}

/// Every local key id (the main one first) with its field, to name it.
pub(super) fn local_key_ids(l: &model::LocalKeys) -> Vec<(u32, String)> {
    let previous = l.previous_keys.iter().enumerate();
    std::iter::once((l.key_id, "local.key_id".to_string()))
        .chain(previous.map(|(i, k)| (k.key_id, format!("local.previous_keys[{i}].key_id"))))
        .collect()
}
