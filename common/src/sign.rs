//! Workflow signing (hub side) and verification (agent side): ed25519 via ring, domain-separated
//! messages, verify-before-decode, key rotation by endorsement chain, and the agent's pure
//! acceptance check for a deploy ([`check_deploy`]).
//!
//! The signing key is separate from every TLS key: TLS keys authenticate *connections*, this key
//! authenticates *content*, which stays verifiable after it has left the connection (stored on the
//! agent, relayed, replayed). See `docs/security.md`.

use minicbor::{Decode, Encode};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::proto::{
    Assignment, BundleHeader, DOMAIN_ASSIGNMENT, DOMAIN_BUNDLE, DOMAIN_KEY_ENDORSEMENT,
    KeyEndorsement, KeyEndorsementBody, Rejection, SignedAssignment, SignedBundle, key_id,
};
use crate::record::UnixMillis;

/// Length of a raw ed25519 public key.
pub(crate) const PUBLIC_KEY_LEN: usize = 32;

/// Errors making or loading a signing key, or building a [`Trust`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("cannot generate an ed25519 key")]
    Generate,
    #[error("not a valid ed25519 PKCS#8 key: {0}")]
    BadKey(String),
    #[error("an ed25519 public key has {PUBLIC_KEY_LEN} bytes, got {0}")]
    BadPublicKey(usize),
}

/// The hub's workflow-signing key (ed25519).
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

fn concat(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

fn to_cbor<T: Encode<()>>(v: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail (the writer is infallible, our types encode totally).
    minicbor::to_vec(v).unwrap_or_default()
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

    /// The key's id ([`key_id`] of the public key).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn sign(&self, domain: &[u8], body: &[u8]) -> Vec<u8> {
        self.pair.sign(&concat(domain, body)).as_ref().to_vec()
    }

    /// Sign a workflow version. `header.content_hash` must be blake3 hex of `content`
    /// (use [`content_hash`]); the header is encoded once, here, and never again.
    pub fn sign_bundle(&self, header: &BundleHeader, content: Vec<u8>) -> SignedBundle {
        let header_bytes = to_cbor(header);
        let sig = self.sign(DOMAIN_BUNDLE, &header_bytes);
        SignedBundle {
            header_bytes,
            content,
            key_id: self.key_id.clone(),
            sig,
        }
    }

    /// Sign an assignment.
    pub fn sign_assignment(&self, assignment: &Assignment) -> SignedAssignment {
        let body_bytes = to_cbor(assignment);
        let sig = self.sign(DOMAIN_ASSIGNMENT, &body_bytes);
        SignedAssignment {
            body_bytes,
            key_id: self.key_id.clone(),
            sig,
        }
    }

    /// Sign a bundle's exact header bytes again with this key (a version signed before a key
    /// rotation); the bytes are never re-encoded.
    pub fn resign_bundle(&self, mut bundle: SignedBundle) -> SignedBundle {
        bundle.sig = self.sign(DOMAIN_BUNDLE, &bundle.header_bytes);
        bundle.key_id = self.key_id.clone();
        bundle
    }

    /// Sign an assignment's exact body bytes again with this key.
    pub fn resign_assignment(&self, mut signed: SignedAssignment) -> SignedAssignment {
        signed.sig = self.sign(DOMAIN_ASSIGNMENT, &signed.body_bytes);
        signed.key_id = self.key_id.clone();
        signed
    }

    /// Endorse `new_public` (raw 32 bytes) as this key's successor.
    pub fn endorse(&self, new_public: &[u8], now_ms: UnixMillis) -> KeyEndorsement {
        let body = KeyEndorsementBody {
            old_key_id: self.key_id.clone(),
            new_public_key: new_public.to_vec(),
            new_key_id: key_id(new_public),
            issued_ms: now_ms,
        };
        let body_bytes = to_cbor(&body);
        let sig = self.sign(DOMAIN_KEY_ENDORSEMENT, &body_bytes);
        KeyEndorsement { body_bytes, sig }
    }
}

/// blake3 hex of a bundle's content, as [`BundleHeader::content_hash`] carries it.
pub fn content_hash(content: &[u8]) -> String {
    blake3::hash(content).to_hex().to_string()
}

/// A trusted public key.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TrustedKey {
    #[n(0)]
    pub key_id: String,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub public_key: Vec<u8>,
}

/// What the agent trusts: the hub's current signing key, and the ids of keys it has rotated away
/// from (refused from then on). Stored in the agent's store with minicbor.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Trust {
    #[n(0)]
    pub current: TrustedKey,
    #[n(1)]
    pub retired: Vec<String>,
}

impl Trust {
    /// Trust `public_key` (raw 32 bytes), as received at enrollment.
    pub fn new(public_key: &[u8]) -> Result<Trust, SignError> {
        if public_key.len() != PUBLIC_KEY_LEN {
            return Err(SignError::BadPublicKey(public_key.len()));
        }
        Ok(Trust {
            current: TrustedKey {
                key_id: key_id(public_key),
                public_key: public_key.to_vec(),
            },
            retired: Vec::new(),
        })
    }

    /// Id of the key trusted now.
    pub fn current_key_id(&self) -> &str {
        &self.current.key_id
    }

    /// Check `sig` by the current key over `domain || body`. The key id in a message is only a
    /// hint: a retired or unknown id is refused without trying it.
    fn verify(
        &self,
        key_hint: &str,
        domain: &[u8],
        body: &[u8],
        sig: &[u8],
    ) -> Result<(), Rejection> {
        if key_hint != self.current.key_id {
            return Err(Rejection::UnknownKey(key_hint.to_string()));
        }
        UnparsedPublicKey::new(&ED25519, &self.current.public_key)
            .verify(&concat(domain, body), sig)
            .map_err(|_| Rejection::BadSignature)
    }

    /// Verify a bundle: signature over `DOMAIN_BUNDLE || header_bytes` BEFORE decoding the header,
    /// then blake3(content) against the header's hash.
    pub fn verify_bundle(&self, bundle: &SignedBundle) -> Result<BundleHeader, Rejection> {
        self.verify(
            &bundle.key_id,
            DOMAIN_BUNDLE,
            &bundle.header_bytes,
            &bundle.sig,
        )?;
        let header: BundleHeader = minicbor::decode(&bundle.header_bytes)
            .map_err(|e| Rejection::Malformed(format!("bundle header: {e}")))?;
        if content_hash(&bundle.content) != header.content_hash {
            return Err(Rejection::HashMismatch);
        }
        Ok(header)
    }

    /// Verify an assignment's signature BEFORE decoding its body.
    pub fn verify_assignment(&self, signed: &SignedAssignment) -> Result<Assignment, Rejection> {
        self.verify(
            &signed.key_id,
            DOMAIN_ASSIGNMENT,
            &signed.body_bytes,
            &signed.sig,
        )?;
        minicbor::decode(&signed.body_bytes)
            .map_err(|e| Rejection::Malformed(format!("assignment: {e}")))
    }

    /// Follow a chain of key endorsements from the current key. Each endorsement must be signed
    /// by the then-current key and name it as `old_key_id`; the old key is then retired.
    /// Endorsements of keys already passed (a chain resent from the start) are skipped. All or
    /// nothing: on error `self` is unchanged. Returns whether the current key changed.
    pub fn apply_chain(&mut self, chain: &[KeyEndorsement]) -> Result<bool, Rejection> {
        let mut next = self.clone();
        for e in chain {
            let verified = UnparsedPublicKey::new(&ED25519, &next.current.public_key)
                .verify(&concat(DOMAIN_KEY_ENDORSEMENT, &e.body_bytes), &e.sig)
                .is_ok();
            if !verified {
                // Not signed by the current key. Only acceptable if it is an old link we have
                // already followed; decoding it is harmless as nothing is acted on.
                let already = minicbor::decode::<KeyEndorsementBody>(&e.body_bytes)
                    .map(|b| {
                        next.retired.contains(&b.old_key_id)
                            && (b.new_key_id == next.current.key_id
                                || next.retired.contains(&b.new_key_id))
                    })
                    .unwrap_or(false);
                if already {
                    continue;
                }
                return Err(Rejection::BadSignature);
            }
            let body: KeyEndorsementBody = minicbor::decode(&e.body_bytes)
                .map_err(|err| Rejection::Malformed(format!("key endorsement: {err}")))?;
            if body.old_key_id != next.current.key_id {
                return Err(Rejection::UnknownKey(body.old_key_id));
            }
            if body.new_public_key.len() != PUBLIC_KEY_LEN
                || key_id(&body.new_public_key) != body.new_key_id
            {
                return Err(Rejection::Malformed("key endorsement: bad new key".into()));
            }
            if body.new_key_id == next.current.key_id || next.retired.contains(&body.new_key_id) {
                return Err(Rejection::Malformed(
                    "key endorsement: endorses a key already used".into(),
                ));
            }
            let old = std::mem::replace(
                &mut next.current,
                TrustedKey {
                    key_id: body.new_key_id,
                    public_key: body.new_public_key,
                },
            );
            next.retired.push(old.key_id);
        }
        let changed = next.current != self.current;
        *self = next;
        Ok(changed)
    }
}

/// The agent's anti-rollback state for one workflow (durable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct WorkflowTrustState {
    /// Highest version ever accepted (0: none).
    #[n(0)]
    pub highest_version: u64,
    /// Epoch of the last accepted assignment (0: none).
    #[n(1)]
    pub last_epoch: u64,
    /// Versions the agent keeps locally (may be re-activated without a bundle).
    #[n(2)]
    pub held_versions: Vec<u64>,
}

/// A deploy that passed every check. Nothing has been changed yet: the caller parses and
/// validates `content`, activates, and then records `assignment.epoch`/version durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub assignment: Assignment,
    /// `None` for a removal or a version the agent already holds.
    pub header: Option<BundleHeader>,
    pub content: Option<Vec<u8>>,
}

/// The agent's acceptance check for a `HubMsg::Deploy`, in this order (the first failure is the
/// reported reason):
/// 1. the assignment's signature by the trusted key (before decoding it);
/// 2. the assignment names this agent (`WrongAgent`);
/// 3. its epoch is above the last accepted one (`StaleEpoch`);
/// 4. a removal must come without a bundle (`Mismatch`) and is then accepted;
/// 5. the bundle's signature over its exact header bytes (before decoding them);
/// 6. blake3(content) equals the header's hash (`HashMismatch`);
/// 7. the header matches the assignment: name, version, hash (`Mismatch`);
///    without a bundle the agent must hold that version (`Invalid`);
/// 8. the version is >= the highest accepted unless the agent holds that exact version
///    (`StaleVersion`).
pub fn check_deploy(
    me: &str,
    trust: &Trust,
    state: &WorkflowTrustState,
    assignment: &SignedAssignment,
    bundle: Option<&SignedBundle>,
) -> Result<Accepted, Rejection> {
    let a = trust.verify_assignment(assignment)?;
    check_verified_deploy(me, trust, state, a, bundle)
}

/// [`check_deploy`] from step 2 on, for an assignment already verified (step 1) with
/// [`Trust::verify_assignment`]: for a caller that needs the assignment (its workflow, to load
/// that workflow's state) before the rest of the check, without verifying it twice.
pub fn check_verified_deploy(
    me: &str,
    trust: &Trust,
    state: &WorkflowTrustState,
    a: Assignment,
    bundle: Option<&SignedBundle>,
) -> Result<Accepted, Rejection> {
    if a.agent_id != me {
        return Err(Rejection::WrongAgent(a.agent_id));
    }
    if a.epoch <= state.last_epoch {
        return Err(Rejection::StaleEpoch {
            offered: a.epoch,
            last: state.last_epoch,
        });
    }
    if a.remove {
        if bundle.is_some() {
            return Err(Rejection::Mismatch);
        }
        return Ok(Accepted {
            assignment: a,
            header: None,
            content: None,
        });
    }
    let held = state.held_versions.contains(&a.version);
    let (header, content) = match bundle {
        Some(b) => {
            let h = trust.verify_bundle(b)?;
            if h.workflow != a.workflow
                || h.version != a.version
                || h.content_hash != a.content_hash
            {
                return Err(Rejection::Mismatch);
            }
            (Some(h), Some(b.content.clone()))
        }
        None if held => (None, None),
        None => {
            return Err(Rejection::Invalid(format!(
                "no bundle sent for version {} of {}, which this agent does not hold",
                a.version, a.workflow
            )));
        }
    };
    if a.version < state.highest_version && !held {
        return Err(Rejection::StaleVersion {
            offered: a.version,
            highest: state.highest_version,
        });
    }
    Ok(Accepted {
        assignment: a,
        header,
        content,
    })
}
