//! The workflow-signing key: ed25519 (ring), stored as PKCS#8 with mode 0600, separate from
//! every TLS key.
//!
//! **Seam**: the hub signs through [`WorkflowSigner`]; [`Ed25519Signer`] is the implementation
//! used today. Messages are domain-separated with the `proto::DOMAIN_*` prefixes: a bundle
//! signature is over `DOMAIN_BUNDLE || header_bytes`, an assignment signature over
//! `DOMAIN_ASSIGNMENT || body_bytes`, an endorsement over `DOMAIN_KEY_ENDORSEMENT || body_bytes`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use outpost_common::proto::{self, DOMAIN_ASSIGNMENT, DOMAIN_BUNDLE, DOMAIN_KEY_ENDORSEMENT};
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

/// Errors loading or creating a signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("signing key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not an ed25519 PKCS#8 key.
    #[error("signing key {path} is not an ed25519 PKCS#8 key")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The system random number generator failed.
    #[error("cannot generate a key: random number generator failed")]
    Random,
}

/// What the hub needs from a workflow-signing key. Implementations must prepend the domain
/// prefix themselves: callers pass only the encoded body.
pub trait WorkflowSigner: Send + Sync {
    /// Id of the public key ([`proto::key_id`]).
    fn key_id(&self) -> String;
    /// The raw 32-byte ed25519 public key.
    fn public_key(&self) -> Vec<u8>;
    /// Signature over `DOMAIN_BUNDLE || header_bytes`.
    fn sign_bundle(&self, header_bytes: &[u8]) -> Vec<u8>;
    /// Signature over `DOMAIN_ASSIGNMENT || body_bytes`.
    fn sign_assignment(&self, body_bytes: &[u8]) -> Vec<u8>;
    /// Signature over `DOMAIN_KEY_ENDORSEMENT || body_bytes` (this key endorsing its successor).
    fn sign_endorsement(&self, body_bytes: &[u8]) -> Vec<u8>;
}

/// An ed25519 signing key held in memory.
pub struct Ed25519Signer {
    pair: Ed25519KeyPair,
    id: String,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("key_id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    /// Generate a new key; returns it and its PKCS#8 (v2) encoding.
    pub fn generate() -> Result<(Ed25519Signer, Vec<u8>), KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
        let bytes = pkcs8.as_ref().to_vec();
        let pair = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| KeyError::Random)?;
        Ok((Self::from_pair(pair), bytes))
    }

    /// A key from PKCS#8 bytes (v1 or v2).
    pub fn from_pkcs8(bytes: &[u8]) -> Option<Ed25519Signer> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
            .ok()
            .map(Self::from_pair)
    }

    fn from_pair(pair: Ed25519KeyPair) -> Ed25519Signer {
        let id = proto::key_id(pair.public_key().as_ref());
        Ed25519Signer { pair, id }
    }

    /// Load a key from a PKCS#8 DER file.
    pub fn load(path: &Path) -> Result<Ed25519Signer, KeyError> {
        let bytes = fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pkcs8(&bytes).ok_or_else(|| KeyError::Malformed {
            path: path.to_path_buf(),
        })
    }

    /// Generate a key and write it to `path` (mode 0600, refusing to overwrite a file).
    pub fn create(path: &Path) -> Result<Ed25519Signer, KeyError> {
        let (signer, pkcs8) = Self::generate()?;
        write_secret(path, &pkcs8).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(signer)
    }

    fn sign_with(&self, domain: &[u8], body: &[u8]) -> Vec<u8> {
        let mut msg = Vec::with_capacity(domain.len() + body.len());
        msg.extend_from_slice(domain);
        msg.extend_from_slice(body);
        self.pair.sign(&msg).as_ref().to_vec()
    }
}

impl WorkflowSigner for Ed25519Signer {
    fn key_id(&self) -> String {
        self.id.clone()
    }
    fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }
    fn sign_bundle(&self, header_bytes: &[u8]) -> Vec<u8> {
        self.sign_with(DOMAIN_BUNDLE, header_bytes)
    }
    fn sign_assignment(&self, body_bytes: &[u8]) -> Vec<u8> {
        self.sign_with(DOMAIN_ASSIGNMENT, body_bytes)
    }
    fn sign_endorsement(&self, body_bytes: &[u8]) -> Vec<u8> {
        self.sign_with(DOMAIN_KEY_ENDORSEMENT, body_bytes)
    }
}

/// Verify an ed25519 signature over `domain || body` (the hub uses it in tests and checks).
pub fn verify(public_key: &[u8], domain: &[u8], body: &[u8], sig: &[u8]) -> bool {
    let mut msg = Vec::with_capacity(domain.len() + body.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(body);
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&msg, sig)
        .is_ok()
}

/// Write a secret file with mode 0600; refuses to overwrite an existing file.
pub fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn signatures_are_domain_separated_and_verify() {
        let (k, _) = Ed25519Signer::generate().unwrap();
        let pk = k.public_key();
        let sig = k.sign_bundle(b"header");
        assert!(verify(&pk, DOMAIN_BUNDLE, b"header", &sig));
        assert!(!verify(&pk, DOMAIN_ASSIGNMENT, b"header", &sig));
        assert!(!verify(&pk, DOMAIN_BUNDLE, b"headeR", &sig));
        let sig = k.sign_assignment(b"body");
        assert!(verify(&pk, DOMAIN_ASSIGNMENT, b"body", &sig));
        assert_eq!(k.key_id(), proto::key_id(&pk));
    }

    #[test]
    fn key_file_roundtrip_mode_0600_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let k = Ed25519Signer::create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Ed25519Signer::load(&path).unwrap();
        assert_eq!(loaded.key_id(), k.key_id());
        assert!(Ed25519Signer::create(&path).is_err());
        fs::write(dir.path().join("bad"), b"nope").unwrap();
        assert!(matches!(
            Ed25519Signer::load(&dir.path().join("bad")),
            Err(KeyError::Malformed { .. })
        ));
    }
}
