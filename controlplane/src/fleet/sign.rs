//! Signed fleet objects. etcd's access control is not enough on its own
//! (docs/fleet.md, "Why objects are signed"): every value the fleet reads is
//! an envelope carrying the object, who signed it, and an Ed25519 signature
//! over the object *and the key it is stored under*, so that an object cannot
//! be moved to another key (a PU of one gateway replayed as another's).

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Domain separation: these signatures mean nothing anywhere else.
const CONTEXT: &[u8] = b"igw-fleet-v1\0";
/// The operator's signer name in envelopes.
pub const OPERATOR: &str = "operator";

/// The stored form of every fleet object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// `operator`, or the gateway's name.
    pub signer: String,
    /// The object as JSON text: the signature covers these exact bytes.
    pub body: String,
    /// 128 hex digits.
    pub sig: String,
}

/// Why a value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unverified {
    /// Not an envelope (not JSON, or the wrong shape).
    Malformed(String),
    /// Signed by someone else than the key's owner.
    WrongSigner { expected: String, found: String },
    /// The signer is not enrolled (no key known for it).
    UnknownSigner(String),
    /// The signature does not verify (forged, or altered after signing).
    BadSignature,
    /// Verified, but the object inside does not parse.
    BadBody(String),
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use dataplane::problem::cut;
        match self {
            Unverified::Malformed(e) => write!(f, "not a signed fleet object: {}", cut(e, 120)),
            Unverified::WrongSigner { expected, found } => {
                write!(f, "signed by {:?}, but only {:?} may write it", cut(found, 64), cut(expected, 64))
            }
            Unverified::UnknownSigner(s) => write!(f, "signed by {:?}, which is not enrolled", cut(s, 64)),
            Unverified::BadSignature => f.write_str("the signature does not verify (forged or altered)"),
            Unverified::BadBody(e) => write!(f, "signed, but the object does not parse: {}", cut(e, 160)),
        }
    }
}

fn message(key: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + key.len() + 1 + body.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(key.as_bytes());
    m.push(0);
    m.extend_from_slice(body);
    m
}

/// Serializes `object` and signs it for `key`; returns the value to store.
pub fn seal<T: Serialize>(signer: &str, secret: &SigningKey, key: &str, object: &T) -> Vec<u8> {
    // Serializing plain data structs into a String cannot fail.
    let body = serde_json::to_string(object).unwrap_or_default();
    let sig = secret.sign(&message(key, body.as_bytes()));
    let env = Envelope { signer: signer.to_owned(), body, sig: hex::encode(sig.to_bytes()) };
    serde_json::to_vec(&env).unwrap_or_default()
}

/// Opens the envelope stored at `key`: it must be signed by `expected` (the
/// key's owner) with `public`, and hold a `T`.
pub fn open<T: for<'de> Deserialize<'de>>(
    value: &[u8],
    key: &str,
    expected: &str,
    public: Option<&VerifyingKey>,
) -> Result<T, Unverified> {
    let env: Envelope = serde_json::from_slice(value).map_err(|e| Unverified::Malformed(e.to_string()))?;
    if env.signer != expected {
        return Err(Unverified::WrongSigner { expected: expected.to_owned(), found: env.signer });
    }
    let public = public.ok_or_else(|| Unverified::UnknownSigner(env.signer.clone()))?;
    let sig = hex::decode(&env.sig)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or(Unverified::BadSignature)?;
    public.verify(&message(key, env.body.as_bytes()), &sig).map_err(|_| Unverified::BadSignature)?;
    serde_json::from_str(&env.body).map_err(|e| Unverified::BadBody(e.to_string()))
}

/// Decodes a public key written as 64 hex digits.
pub fn public_key(hex_text: &str) -> Result<VerifyingKey, String> {
    let b = hex::decode(hex_text.trim()).map_err(|_| "not hex".to_owned())?;
    let b = <[u8; 32]>::try_from(b.as_slice()).map_err(|_| format!("{} bytes, not 32", b.len()))?;
    VerifyingKey::from_bytes(&b).map_err(|_| "not a valid Ed25519 public key".to_owned())
}

/// Reads a signing key (64 hex digits) from `path`.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let b = hex::decode(text.trim()).map_err(|_| format!("{} does not hold 64 hex digits", path.display()))?;
    let b = <[u8; 32]>::try_from(b.as_slice())
        .map_err(|_| format!("{} holds {} bytes, not 32", path.display(), b.len()))?;
    Ok(SigningKey::from_bytes(&b))
}

/// Writes 32 random bytes as hex to a new file of mode 0600 (never
/// overwriting one) and returns them.
pub fn create_secret_file(path: &Path) -> Result<[u8; 32], String> {
    use rand_core::{OsRng, RngCore};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(format!("{}\n", hex::encode(secret)).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(secret)
}

/// The signing key at `path`, created on first use.
pub fn signing_key_at(path: &Path) -> Result<SigningKey, String> {
    if path.exists() {
        return load_signing_key(path);
    }
    create_secret_file(path).map(|s| SigningKey::from_bytes(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::model::RotateRequest;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_sealed_object_opens_only_where_and_by_whom_it_was_sealed() {
        let k = key(1);
        let obj = RotateRequest { gateway: "gw-a".into(), requested_at: 7 };
        let v = seal(OPERATOR, &k, "/igw/fleet/rotate/gw-a", &obj);
        let pk = k.verifying_key();
        let back: RotateRequest = open(&v, "/igw/fleet/rotate/gw-a", OPERATOR, Some(&pk)).unwrap();
        assert_eq!(back, obj);
        // moved to another key
        let e = open::<RotateRequest>(&v, "/igw/fleet/rotate/gw-b", OPERATOR, Some(&pk)).unwrap_err();
        assert_eq!(e, Unverified::BadSignature);
        // another signer's key
        let e = open::<RotateRequest>(&v, "/igw/fleet/rotate/gw-a", OPERATOR, Some(&key(2).verifying_key()));
        assert_eq!(e.unwrap_err(), Unverified::BadSignature);
        // claims to be someone else
        let e = open::<RotateRequest>(&v, "/igw/fleet/rotate/gw-a", "gw-a", Some(&pk)).unwrap_err();
        assert!(matches!(e, Unverified::WrongSigner { .. }), "{e:?}");
        // altered after signing
        let mut env: Envelope = serde_json::from_slice(&v).unwrap();
        env.body = env.body.replace("7", "8");
        let v2 = serde_json::to_vec(&env).unwrap();
        let e = open::<RotateRequest>(&v2, "/igw/fleet/rotate/gw-a", OPERATOR, Some(&pk)).unwrap_err();
        assert_eq!(e, Unverified::BadSignature);
        // not an envelope at all; unknown signer
        assert!(matches!(
            open::<RotateRequest>(b"\xff{", "/k", OPERATOR, Some(&pk)).unwrap_err(),
            Unverified::Malformed(_)
        ));
        assert!(matches!(
            open::<RotateRequest>(&v, "/igw/fleet/rotate/gw-a", OPERATOR, None).unwrap_err(),
            Unverified::UnknownSigner(_)
        ));
    }

    #[test]
    fn secret_files_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let a = signing_key_at(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let b = signing_key_at(&p).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert!(create_secret_file(&p).is_err());
        assert!(public_key(&hex::encode(a.verifying_key().to_bytes())).is_ok());
        assert!(public_key("abc").is_err());
    }
}
