//! Who may tell an agent what: TUF-style roles with thresholds ([`root`]), the agent's trust
//! state ([`Trust`]), the director's signed statements and the agent's deploy check
//! ([`director`]), all over ed25519 via ring ([`key`]).
//!
//! Outpost implements the roles from the TUF specification instead of using a TUF library: the
//! well-kept one (awslabs `tough`) depends on aws-lc-rs, and Outpost keeps ring as its only
//! crypto provider; TUF's repository model (JSON files fetched over HTTP) does not fit a
//! session over QUIC either. What is TUF's: the root role with m-of-n keys, expiry, rotation
//! that needs the old and the new quorum, a signed reset after a fast-forward. What is
//! Outpost's own (Uptane's director and image repository, adapted): the release role's
//! threshold over one version's exact bytes, and the director's statements bound to one agent
//! and one session. See `docs/security.md`.
//!
//! Every signature is over `domain || bytes`, with a domain per kind of statement
//! (`proto::DOMAIN_*`), and is checked over the exact received bytes BEFORE they are decoded.

pub mod director;
pub mod key;
pub mod root;

pub use director::{
    Accepted, Director, WorkflowTrustState, check_deploy, check_verified_deploy, content_hash,
};
pub use key::{SignError, Signature, SigningKey, TrustedKey, key_id};
pub use root::{RoleKeys, RootBody, SignedRoot};

use minicbor::Decode;

use crate::proto::{BundleHeader, DOMAIN_RELEASE, Rejection, SignedBundle, Statement};
use crate::record::UnixMillis;

/// The three roles of the root metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Root,
    Release,
    Director,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Release => "release",
            Role::Director => "director",
        }
    }
}

/// Check that at least the role's threshold of DISTINCT keys of `role` in `root` signed
/// `domain || body`. Signatures by keys outside the role, repeated keys and bad signatures do
/// not count (and do not fail the check by themselves: a quorum is a quorum).
pub fn verify_threshold(
    root: &RootBody,
    role: Role,
    domain: &[u8],
    body: &[u8],
    signatures: &[Signature],
) -> Result<(), Rejection> {
    let keys = root.role(role);
    let mut valid: Vec<&str> = Vec::new();
    for s in signatures {
        if valid.contains(&s.key_id.as_str()) || !keys.key_ids.contains(&s.key_id) {
            continue;
        }
        let Some(k) = root.keys.iter().find(|k| k.key_id == s.key_id) else {
            continue;
        };
        if k.verifies(domain, body, &s.sig) {
            valid.push(&s.key_id);
        }
    }
    if valid.len() < keys.threshold as usize {
        return Err(Rejection::Threshold {
            role: role.name().to_string(),
            valid: valid.len() as u32,
            needed: keys.threshold,
        });
    }
    Ok(())
}

/// A release key's signature over a version's exact header bytes.
pub fn sign_release(key: &SigningKey, header_bytes: &[u8]) -> Signature {
    key.sign(DOMAIN_RELEASE, header_bytes)
}

/// What applying a chain of root metadata changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RootUpdate {
    /// The trusted root moved to a newer version.
    pub changed: bool,
    /// One of the new roots resets the agent's counters (epochs, highest versions): the caller
    /// sets them to 0 in the same commit that stores the new root.
    pub reset_counters: bool,
}

/// What an agent trusts: the newest root metadata it verified. Stored as the [`SignedRoot`]'s
/// CBOR in the agent's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    signed: SignedRoot,
    body: RootBody,
}

impl Trust {
    /// Trust a first root: the one received at enrollment (over TLS pinned to the hub CA by the
    /// bootstrap token) or stored earlier. It must be well formed and signed by a threshold of
    /// its own root keys.
    pub fn new(signed: SignedRoot) -> Result<Trust, Rejection> {
        let body = signed.verify_self_signed()?;
        Ok(Trust { signed, body })
    }

    /// The trusted root metadata.
    pub fn root(&self) -> &RootBody {
        &self.body
    }

    /// Its signed form (to store it).
    pub fn signed(&self) -> &SignedRoot {
        &self.signed
    }

    /// The trusted root's version.
    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// Follow `chain` (consecutive root versions, possibly starting at or below the trusted one:
    /// those are skipped) from the trusted root. All or nothing: on error `self` is unchanged.
    pub fn update(&mut self, chain: &[SignedRoot]) -> Result<RootUpdate, Rejection> {
        let mut next = self.clone();
        let mut out = RootUpdate::default();
        for r in chain {
            // A version already passed is skipped without being trusted or acted on.
            let claimed = r.body_unverified()?;
            if claimed.version <= next.body.version {
                continue;
            }
            let body = r.verify_successor(&next.body)?;
            out.changed = true;
            out.reset_counters |= body.reset_counters;
            next = Trust {
                signed: r.clone(),
                body,
            };
        }
        *self = next;
        Ok(out)
    }

    /// Verify a workflow version: a threshold of release keys signed its exact header bytes
    /// (checked BEFORE they are decoded), then blake3(content) equals the header's hash.
    pub fn verify_release(&self, bundle: &SignedBundle) -> Result<BundleHeader, Rejection> {
        verify_threshold(
            &self.body,
            Role::Release,
            DOMAIN_RELEASE,
            &bundle.header_bytes,
            &bundle.release,
        )?;
        let header: BundleHeader = minicbor::decode(&bundle.header_bytes)
            .map_err(|e| Rejection::Malformed(format!("bundle header: {e}")))?;
        if content_hash(&bundle.content) != header.content_hash {
            return Err(Rejection::HashMismatch);
        }
        Ok(header)
    }

    /// Verify a director statement of kind `domain` (its signature by a director key of the
    /// trusted root, BEFORE decoding), then decode its body.
    pub fn verify_statement<T>(&self, domain: &[u8], st: &Statement) -> Result<T, Rejection>
    where
        T: for<'b> Decode<'b, ()>,
    {
        let keys = &self.body.director;
        if !keys.key_ids.contains(&st.signature.key_id) {
            return Err(Rejection::UnknownKey(st.signature.key_id.clone()));
        }
        verify_threshold(
            &self.body,
            Role::Director,
            domain,
            &st.body_bytes,
            std::slice::from_ref(&st.signature),
        )
        .map_err(|_| Rejection::BadSignature)?;
        minicbor::decode(&st.body_bytes)
            .map_err(|e| Rejection::Malformed(format!("statement: {e}")))
    }

    /// Whether the trusted root has expired at `now_ms` (the agent's trusted time).
    pub fn expired(&self, now_ms: UnixMillis) -> bool {
        self.body.expired(now_ms)
    }

    /// `Err(Expired)` once the trusted root has expired at `now_ms`: nothing new is accepted.
    pub fn check_fresh(&self, now_ms: UnixMillis) -> Result<(), Rejection> {
        if self.expired(now_ms) {
            return Err(Rejection::Expired {
                what: format!("root metadata version {}", self.version()),
                at_ms: self.body.expires_ms,
            });
        }
        Ok(())
    }
}
