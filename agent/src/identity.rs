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
/// Most replica addresses the agent keeps.
const MAX_REPLICAS: usize = 32;
/// Longest replica address the agent keeps (a DNS name and a port).
const MAX_ADDRESS_LEN: usize = 262;

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
    /// The hub's replica addresses (`host:port`), from enrollment and replaced by every
    /// `Welcome` that brings a different list. `None`: the hub sent none; the agent dials the
    /// address it enrolled at.
    #[n(11)]
    pub replicas: Option<Vec<String>>,
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

/// Keep the hub's replica addresses a `Welcome` listed (non-empty) if they differ from the
/// stored ones. Returns whether they did (and were stored); `false` also without an identity.
pub fn save_replicas(store: &Store, replicas: Vec<String>) -> Result<bool, IdentityError> {
    // Addresses are only ever resolved and dialed (the TLS check of the hub name and CA is
    // the same for each); still, keep the list bounded and free of anything but an address.
    let replicas: Vec<String> = replicas
        .into_iter()
        .filter(|a| {
            a.len() <= MAX_ADDRESS_LEN && a.contains(':') && !a.contains(char::is_whitespace)
        })
        .take(MAX_REPLICAS)
        .collect();
    if replicas.is_empty() {
        return Ok(false);
    }
    let Some(mut id) = load(store)? else {
        return Ok(false);
    };
    if id.replicas.as_deref() == Some(replicas.as_slice()) {
        return Ok(false);
    }
    id.replicas = Some(replicas);
    save(store, &id)?;
    Ok(true)
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

    fn enrolled() -> Identity {
        Identity {
            agent_id: "agent-1".into(),
            key_pkcs8: vec![1],
            cert_der: vec![2],
            ca_der: vec![3],
            hub_name: "hub".into(),
            hub_address: "a.example:7443".into(),
            labels: vec![],
            enrolled_ms: 0,
            more_cas: None,
            token_id: None,
            name: None,
            replicas: Some(vec!["a.example:7443".into(), "b.example:7443".into()]),
        }
    }

    /// What a Welcome lists replaces the stored list when it differs, durably; an empty list,
    /// the same list, or no identity change nothing.
    #[test]
    fn a_welcome_with_a_new_list_replaces_the_stored_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        let store = Store::open(&path).unwrap();
        assert!(
            !save_replicas(&store, vec!["a:1".into()]).unwrap(),
            "no identity yet"
        );
        save(&store, &enrolled()).unwrap();
        let same = enrolled().replicas.unwrap();
        assert!(!save_replicas(&store, same).unwrap());
        assert!(!save_replicas(&store, vec![]).unwrap());
        let new = vec!["b.example:7443".to_string(), "c.example:7443".to_string()];
        assert!(save_replicas(&store, new.clone()).unwrap());
        drop(store);
        let store = Store::open(&path).unwrap();
        let id = load(&store).unwrap().unwrap();
        assert_eq!(id.replicas, Some(new));
        assert_eq!(
            id.hub_address, "a.example:7443",
            "the enrolled address is kept"
        );
        // Anything but an address is dropped; a list of nothing but that changes nothing.
        assert!(!save_replicas(&store, vec!["no port".into(), "x".repeat(300) + ":1"]).unwrap());
        assert!(save_replicas(&store, vec!["bad entry".into(), "d:1".into()]).unwrap());
        assert_eq!(
            load(&store).unwrap().unwrap().replicas,
            Some(vec!["d:1".to_string()])
        );
    }
}
