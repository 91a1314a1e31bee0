//! The agent's identity after enrollment, kept in its store (`agent_meta`).
//!
//! An enrolled agent holds: its id, its private key (generated on the agent, never sent), its
//! certificate signed by the hub CA, the hub CA itself (pinned), the name the hub's certificate
//! is issued for, the hub's address, and the workflow-signing trust (the hub's current signing
//! key and the keys it retired). The trust is written here at enrollment only; after that, the
//! driver's deploy gate is its only writer (a rotated key, committed like any other state).
//! Configuration fails closed: an agent configured for a hub but
//! missing any of these refuses to start and says which.

use minicbor::{Decode, Encode};

use crate::store::{Store, StoreError};

const IDENTITY_KEY: &str = "identity";
const TRUST_KEY: &str = "trust/root";

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Identity {
    #[n(0)]
    pub agent_id: String,
    /// PKCS#8 DER of the agent's TLS key.
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub key_pkcs8: Vec<u8>,
    #[n(2)]
    #[cbor(with = "minicbor::bytes")]
    pub cert_der: Vec<u8>,
    #[n(3)]
    #[cbor(with = "minicbor::bytes")]
    pub ca_der: Vec<u8>,
    #[n(4)]
    pub hub_name: String,
    #[n(5)]
    pub hub_address: String,
    #[n(6)]
    pub labels: Vec<(String, String)>,
    #[n(7)]
    pub enrolled_ms: i64,
    /// Root CAs pinned after enrollment (`outpost-hub ca rotate`), each accepted only with a
    /// proof from a root already pinned. `None`: none yet.
    #[n(8)]
    pub more_cas: Option<Vec<minicbor::bytes::ByteVec>>,
    /// The id of the bootstrap token it enrolled with (not the secret): enrolling again with
    /// the same token is a no-op. `None`: enrolled before this was kept.
    #[n(9)]
    pub token_id: Option<String>,
    /// The name the hub gave it at enrollment (the hub's is current: `agent rename`).
    #[n(10)]
    pub name: Option<String>,
}

impl Identity {
    /// Every pinned root CA (DER): the one from enrollment, then those added since.
    pub fn pinned_cas(&self) -> Vec<Vec<u8>> {
        let mut cas = vec![self.ca_der.clone()];
        for c in self.more_cas.iter().flatten() {
            cas.push(c.to_vec());
        }
        cas
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored {what} does not decode: {message}")]
    Decode { what: &'static str, message: String },
    #[error("cannot encode the {what}: {message}")]
    Encode { what: &'static str, message: String },
}

fn decode<T: for<'b> Decode<'b, ()>>(what: &'static str, bytes: &[u8]) -> Result<T, IdentityError> {
    minicbor::decode(bytes).map_err(|e| IdentityError::Decode {
        what,
        message: e.to_string(),
    })
}

fn encode<T: Encode<()>>(what: &'static str, v: &T) -> Result<Vec<u8>, IdentityError> {
    minicbor::to_vec(v).map_err(|e| IdentityError::Encode {
        what,
        message: e.to_string(),
    })
}

pub fn load(store: &Store) -> Result<Option<Identity>, IdentityError> {
    match store.get_meta(IDENTITY_KEY)? {
        Some(b) => Ok(Some(decode("identity", &b)?)),
        None => Ok(None),
    }
}

pub fn save(store: &Store, id: &Identity) -> Result<(), IdentityError> {
    store.put_meta(IDENTITY_KEY, &encode("identity", id)?)?;
    Ok(())
}

/// The root metadata this agent trusts (stored as the signed root's CBOR, verified again when
/// loaded).
pub fn load_trust(store: &Store) -> Result<Option<outpost_common::trust::Trust>, IdentityError> {
    match store.get_meta(TRUST_KEY)? {
        Some(b) => {
            let signed: outpost_common::trust::SignedRoot = decode("root metadata", &b)?;
            let t =
                outpost_common::trust::Trust::new(signed).map_err(|e| IdentityError::Encode {
                    what: "root metadata",
                    message: e.to_string(),
                })?;
            Ok(Some(t))
        }
        None => Ok(None),
    }
}

/// Store the root metadata the hub gave at enrollment.
pub fn save_trust(store: &Store, t: &outpost_common::trust::Trust) -> Result<(), IdentityError> {
    let (key, bytes) = trust_put(t)?;
    store.put_meta(&key, &bytes)?;
    Ok(())
}

/// The `agent_meta` entry that stores `t` (for a batch).
pub fn trust_put(t: &outpost_common::trust::Trust) -> Result<(String, Vec<u8>), IdentityError> {
    Ok((TRUST_KEY.to_string(), encode("root metadata", t.signed())?))
}

/// A bootstrap token: `opt2.<token id>.<secret>.<sha256 of the hub CA, hex>.<hub name>` (the
/// hub name is the rest, dots included), or the older `opt1.<token id>.<secret>.<ca>` without
/// the hub name (enroll then takes it from `--hub-name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `<token id>.<secret>`: what the hub checks.
    pub credential: String,
    /// `<token id>` alone (public).
    pub id: String,
    pub ca_sha256: String,
    /// The name the hub's certificate is issued for (`opt2` tokens).
    pub hub_name: Option<String>,
}

fn hub_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

pub fn parse_token(s: &str) -> Result<Token, String> {
    let parts: Vec<&str> = s.trim().splitn(5, '.').collect();
    let ca_ok = |ca: &str| ca.len() == 64 && ca.chars().all(|c| c.is_ascii_hexdigit());
    let (id, secret, ca, hub_name) = match parts.as_slice() {
        ["opt1", id, secret, ca] => (*id, *secret, *ca, None),
        ["opt2", id, secret, ca, name] if hub_name_ok(name) => (*id, *secret, *ca, Some(*name)),
        _ => ("", "", "", None),
    };
    if id.is_empty() || secret.is_empty() || !ca_ok(ca) {
        return Err(
            "malformed token: expected opt2.<id>.<secret>.<64 hex digits>.<hub name> \
                    (from `outpost-hub token create`)"
                .into(),
        );
    }
    Ok(Token {
        id: id.to_string(),
        credential: format!("{id}.{secret}"),
        ca_sha256: ca.to_ascii_lowercase(),
        hub_name: hub_name.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_or_say_why() {
        let ca = "ab".repeat(32);
        let t = parse_token(&format!("opt1.tok1.s3cret.{ca}")).unwrap();
        assert_eq!(t.credential, "tok1.s3cret");
        assert_eq!(t.ca_sha256, ca);
        assert_eq!(t.hub_name, None);
        assert!(parse_token("opt1.a.b").is_err());
        assert!(parse_token(&format!("opt2.a.b.{ca}")).is_err());
        assert!(parse_token(&format!("opt2.a.b.{ca}.")).is_err());
        assert!(parse_token(&format!("opt2.a.b.{ca}.bad/name")).is_err());
        assert!(parse_token(&format!("opt3.a.b.{ca}.x")).is_err());
        assert!(parse_token("opt1.a.b.nothex").is_err());
        // The hub name is the rest of the token, dots included.
        let t = parse_token(&format!("opt2.tok1.s3cret.{ca}.hub.example.com")).unwrap();
        assert_eq!(t.credential, "tok1.s3cret");
        assert_eq!(t.hub_name.as_deref(), Some("hub.example.com"));
    }
}
