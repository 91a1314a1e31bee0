//! Root metadata: which keys hold which role, with thresholds and an expiry, signed by a
//! threshold of the offline root keys (TUF's root role, specification section 5.3).
//!
//! Roles: **root** (signs root metadata; offline, m-of-n), **release** (operators' keys; a
//! threshold of them must sign a workflow version's exact header bytes before any agent runs it)
//! and **director** (the serving hub's online key; signs assignments, snapshots, commands and
//! acknowledgements, each bound to one agent and one session). A root version N+1 is accepted
//! only with a threshold of version N's root keys AND a threshold of its own root keys, so a
//! rotation needs the old and the new quorum.

use minicbor::{Decode, Encode};

use super::key::{SigningKey, TrustedKey, key_id, to_cbor};
use super::{Role, Signature, verify_threshold};
use crate::proto::{DOMAIN_ROOT, Rejection};
use crate::record::UnixMillis;

/// The keys of one role and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RoleKeys {
    #[n(0)]
    pub key_ids: Vec<String>,
    #[n(1)]
    pub threshold: u32,
}

/// One version of the root metadata.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RootBody {
    /// 1 for the first root; each successor is exactly one above.
    #[n(0)]
    pub version: u64,
    #[n(1)]
    pub issued_ms: UnixMillis,
    /// After this instant the root is expired: agents keep running what they accepted and
    /// refuse anything new until a fresh root arrives.
    #[n(2)]
    pub expires_ms: UnixMillis,
    /// Every key any role names.
    #[n(3)]
    pub keys: Vec<TrustedKey>,
    #[n(4)]
    pub root: RoleKeys,
    #[n(5)]
    pub release: RoleKeys,
    /// Threshold 1: the director signs online, one statement at a time.
    #[n(6)]
    pub director: RoleKeys,
    /// Recovery from a fast-forward: an agent that accepts this root forgets every assignment
    /// epoch and highest version it holds (set them to 0) in the same commit, so a director or
    /// release key that was stolen and signed epoch or version `u64::MAX` stops blocking
    /// updates. Only a threshold of root keys can set it.
    #[n(7)]
    pub reset_counters: bool,
}

/// Root metadata as shipped: the exact body bytes and the root keys' signatures over
/// `DOMAIN_ROOT || body_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SignedRoot {
    #[n(0)]
    #[cbor(with = "minicbor::bytes")]
    pub body_bytes: Vec<u8>,
    #[n(1)]
    pub signatures: Vec<Signature>,
}

impl RootBody {
    /// A first root (version 1) over the given keys. Thresholds are checked by
    /// [`check`](Self::check) when it is verified, not here.
    #[allow(clippy::too_many_arguments)]
    pub fn first(
        root: &[TrustedKey],
        root_threshold: u32,
        release: &[TrustedKey],
        release_threshold: u32,
        director: &TrustedKey,
        issued_ms: UnixMillis,
        expires_ms: UnixMillis,
    ) -> RootBody {
        let mut keys: Vec<TrustedKey> = Vec::new();
        for k in root.iter().chain(release).chain(std::iter::once(director)) {
            if !keys.iter().any(|x| x.key_id == k.key_id) {
                keys.push(k.clone());
            }
        }
        let ids = |ks: &[TrustedKey]| ks.iter().map(|k| k.key_id.clone()).collect();
        RootBody {
            version: 1,
            issued_ms,
            expires_ms,
            keys,
            root: RoleKeys {
                key_ids: ids(root),
                threshold: root_threshold,
            },
            release: RoleKeys {
                key_ids: ids(release),
                threshold: release_threshold,
            },
            director: RoleKeys {
                key_ids: vec![director.key_id.clone()],
                threshold: 1,
            },
            reset_counters: false,
        }
    }

    /// This root's successor: one version above, `reset_counters` off, everything else equal
    /// (the caller then changes keys, thresholds, expiry).
    pub fn successor(&self, issued_ms: UnixMillis, expires_ms: UnixMillis) -> RootBody {
        RootBody {
            version: self.version.saturating_add(1),
            issued_ms,
            expires_ms,
            reset_counters: false,
            ..self.clone()
        }
    }

    /// Put `key` in `role` (and in the key list), or take it out of the role (and out of the
    /// list once no role names it).
    pub fn set_key(&mut self, role: Role, key: &TrustedKey, member: bool) {
        let r = match role {
            Role::Root => &mut self.root,
            Role::Release => &mut self.release,
            Role::Director => &mut self.director,
        };
        r.key_ids.retain(|id| *id != key.key_id);
        if member {
            r.key_ids.push(key.key_id.clone());
        }
        let used = |id: &str| {
            [&self.root, &self.release, &self.director]
                .iter()
                .any(|r| r.key_ids.iter().any(|k| k == id))
        };
        if member && !self.keys.iter().any(|k| k.key_id == key.key_id) {
            self.keys.push(key.clone());
        }
        let keep: Vec<TrustedKey> = self
            .keys
            .iter()
            .filter(|k| used(&k.key_id))
            .cloned()
            .collect();
        self.keys = keep;
    }

    /// The problems that make this body unusable (empty: well formed).
    pub fn check(&self) -> Result<(), Rejection> {
        let bad = |m: String| Err(Rejection::Malformed(format!("root metadata: {m}")));
        if self.version == 0 {
            return bad("version 0".into());
        }
        let mut ids = std::collections::BTreeSet::new();
        for k in &self.keys {
            if k.public_key.len() != super::key::PUBLIC_KEY_LEN || key_id(&k.public_key) != k.key_id
            {
                return bad(format!("key {} does not match its public key", k.key_id));
            }
            if !ids.insert(k.key_id.as_str()) {
                return bad(format!("key {} listed twice", k.key_id));
            }
        }
        for (name, role) in [
            ("root", &self.root),
            ("release", &self.release),
            ("director", &self.director),
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for id in &role.key_ids {
                if !ids.contains(id.as_str()) {
                    return bad(format!("role {name} names unknown key {id}"));
                }
                if !seen.insert(id.as_str()) {
                    return bad(format!("role {name} names key {id} twice"));
                }
            }
            if role.threshold == 0 || role.threshold as usize > role.key_ids.len() {
                return bad(format!(
                    "role {name} has threshold {} of {} keys",
                    role.threshold,
                    role.key_ids.len()
                ));
            }
        }
        if self.director.threshold != 1 {
            return bad("the director role has threshold 1".into());
        }
        Ok(())
    }

    /// The keys of `role`.
    pub fn role(&self, role: Role) -> &RoleKeys {
        match role {
            Role::Root => &self.root,
            Role::Release => &self.release,
            Role::Director => &self.director,
        }
    }

    /// Whether the root has expired at `now_ms`.
    pub fn expired(&self, now_ms: UnixMillis) -> bool {
        now_ms >= self.expires_ms
    }

    /// Encode this body once and sign it with `keys` (each a root key of this body, for a first
    /// root; for a rotation, the old root's quorum signs the same bytes with
    /// [`SignedRoot::add_signature`]).
    pub fn sign(&self, keys: &[&SigningKey]) -> SignedRoot {
        let body_bytes = to_cbor(self);
        let signatures = keys
            .iter()
            .map(|k| k.sign(DOMAIN_ROOT, &body_bytes))
            .collect();
        SignedRoot {
            body_bytes,
            signatures,
        }
    }
}

impl SignedRoot {
    /// Add `key`'s signature over the exact body bytes (replacing an earlier one by the same key).
    pub fn add_signature(&mut self, key: &SigningKey) {
        self.signatures.retain(|s| s.key_id != key.key_id());
        self.signatures
            .push(key.sign(DOMAIN_ROOT, &self.body_bytes));
    }

    /// Decode the body WITHOUT verifying anything: for display and for the hub's own records.
    pub fn body_unverified(&self) -> Result<RootBody, Rejection> {
        minicbor::decode(&self.body_bytes)
            .map_err(|e| Rejection::Malformed(format!("root metadata: {e}")))
    }

    /// Verify a first root (the trust anchor received at enrollment over the pinned TLS channel,
    /// or written by `init`): well formed and signed by a threshold of its own root keys.
    pub fn verify_self_signed(&self) -> Result<RootBody, Rejection> {
        let body = self.body_unverified()?;
        body.check()?;
        self.signed_by_root_of(&body)?;
        Ok(body)
    }

    /// Verify this root as the successor of `trusted`: signed by a threshold of `trusted`'s root
    /// keys (checked BEFORE the body is decoded), then well formed, exactly one version above,
    /// and signed by a threshold of its own root keys.
    pub fn verify_successor(&self, trusted: &RootBody) -> Result<RootBody, Rejection> {
        self.signed_by_root_of(trusted)?;
        let body = self.body_unverified()?;
        body.check()?;
        if body.version != trusted.version.saturating_add(1) {
            return Err(Rejection::Malformed(format!(
                "root metadata version {} does not follow version {}",
                body.version, trusted.version
            )));
        }
        self.signed_by_root_of(&body)?;
        Ok(body)
    }

    /// A threshold of `root`'s root keys signed these exact body bytes.
    fn signed_by_root_of(&self, root: &RootBody) -> Result<(), Rejection> {
        verify_threshold(
            root,
            Role::Root,
            DOMAIN_ROOT,
            &self.body_bytes,
            &self.signatures,
        )
    }
}
