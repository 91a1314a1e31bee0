//! Ed25519 keys (ring), key ids and domain-separated signatures.

use minicbor::{Decode, Encode};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// Length of a raw ed25519 public key.
pub(crate) const PUBLIC_KEY_LEN: usize = 32;

/// Errors making or loading a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("cannot generate an ed25519 key")]
    Generate,
    #[error("not a valid ed25519 PKCS#8 key: {0}")]
    BadKey(String),
    #[error("an ed25519 public key has {PUBLIC_KEY_LEN} bytes, got {0}")]
    BadPublicKey(usize),
}

/// Id of an ed25519 public key: the first 16 hex digits of its blake3 hash.
pub fn key_id(public_key: &[u8]) -> String {
    let h = blake3::hash(public_key).to_hex();
    h.as_str()[..16].to_string()
}

/// One signature over `domain || body`, with the id of the key that made it (only a hint: the
/// verifier looks the id up among the keys it trusts for the role and never tries another).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Signature {
    #[n(0)]
    pub key_id: String,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub sig: Vec<u8>,
}

/// A public key named by its id.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TrustedKey {
    #[n(0)]
    pub key_id: String,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub public_key: Vec<u8>,
}

impl TrustedKey {
    /// The key for `public_key` (raw 32 bytes).
    pub fn new(public_key: &[u8]) -> Result<TrustedKey, SignError> {
        if public_key.len() != PUBLIC_KEY_LEN {
            return Err(SignError::BadPublicKey(public_key.len()));
        }
        Ok(TrustedKey {
            key_id: key_id(public_key),
            public_key: public_key.to_vec(),
        })
    }

    /// Whether `sig` is this key's signature over `domain || body`.
    pub fn verifies(&self, domain: &[u8], body: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(&concat(domain, body), sig)
            .is_ok()
    }
}

pub(crate) fn concat(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

pub(crate) fn to_cbor<T: Encode<()>>(v: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail (the writer is infallible, our types encode totally).
    minicbor::to_vec(v).unwrap_or_default()
}

/// An ed25519 private key: a root key and a release key on an operator's machine, the director
/// key in the serving hub.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key and its PKCS#8 (v2) encoding, to be stored with mode 0600.
    pub fn generate() -> Result<(SigningKey, Vec<u8>), SignError> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SignError::Generate)?;
        let key = Self::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    /// Load a key from its PKCS#8 encoding: v2 (what [`generate`](Self::generate) makes; its
    /// public key is checked against the private key) or v1 (private key only, as
    /// `openssl genpkey -algorithm ed25519` writes; the public key is derived).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, SignError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| SignError::BadKey(e.to_string()))?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(SigningKey { pair, key_id })
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// The public key with its id.
    pub fn trusted(&self) -> TrustedKey {
        TrustedKey {
            key_id: self.key_id.clone(),
            public_key: self.public_key().to_vec(),
        }
    }

    /// The key's id ([`key_id`] of the public key).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Sign `domain || body`.
    pub fn sign(&self, domain: &[u8], body: &[u8]) -> Signature {
        Signature {
            key_id: self.key_id.clone(),
            sig: self.pair.sign(&concat(domain, body)).as_ref().to_vec(),
        }
    }
}
