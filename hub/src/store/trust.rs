//! The fleet's root metadata (every version, in order) and the workflow versions waiting for
//! release signatures.

use outpost_common::proto::DOMAIN_RELEASE;
use outpost_common::record::UnixMillis;
use outpost_common::trust::{Role, RootBody, Signature, SignedRoot, verify_threshold};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::audit::audit_in;
use super::error::{StoreError, decode, encode};
use super::file::Store;
use super::records::PendingVersion;
use super::schema::{PENDING, ROOTS};

/// Where a pending version stands after signatures were added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseStatus {
    pub workflow: String,
    pub version: u64,
    /// Ids of the release keys that signed.
    pub signed_by: Vec<String>,
    pub needed: u32,
    /// The threshold was reached: the version is deployable now.
    pub released: bool,
}

fn current_root_in(txn: &WriteTransaction) -> Result<Option<(SignedRoot, RootBody)>, StoreError> {
    let t = txn.open_table(ROOTS)?;
    let Some((k, v)) = t.last()? else {
        return Ok(None);
    };
    let signed: SignedRoot = decode(v.value(), "roots", k.value())?;
    let body = signed
        .body_unverified()
        .map_err(|e| StoreError::Refused(format!("stored root metadata: {e}")))?;
    Ok(Some((signed, body)))
}

impl Store {
    /// Store a new version of the root metadata: the first must be version 1 and signed by a
    /// threshold of its own root keys; every later one must follow the current one (signed by
    /// the old AND the new root threshold, exactly one version above). Audited.
    pub fn publish_root(
        &self,
        signed: &SignedRoot,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<RootBody, StoreError> {
        let txn = self.begin_write()?;
        let body = match current_root_in(&txn)? {
            None => {
                let b = signed.verify_self_signed().map_err(refused)?;
                if b.version != 1 {
                    return Err(StoreError::Refused(format!(
                        "the first root metadata must be version 1, not {}",
                        b.version
                    )));
                }
                b
            }
            Some((_, cur)) => signed.verify_successor(&cur).map_err(refused)?,
        };
        {
            let mut t = txn.open_table(ROOTS)?;
            t.insert(body.version, encode(signed)?.as_slice())?;
        }
        audit_in(
            &txn,
            now_ms,
            actor,
            "root.publish",
            &format!("v{}", body.version),
            &format!(
                "expires {} ms; release {}-of-{}; director {}{}",
                body.expires_ms,
                body.release.threshold,
                body.release.key_ids.len(),
                body.director.key_ids.join(","),
                if body.reset_counters {
                    "; resets agents' counters"
                } else {
                    ""
                }
            ),
        )?;
        txn.commit()?;
        Ok(body)
    }

    /// The newest root metadata (`None`: none published yet).
    pub fn current_root(&self) -> Result<Option<(SignedRoot, RootBody)>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(ROOTS)?;
        let Some((k, v)) = t.last()? else {
            return Ok(None);
        };
        let signed: SignedRoot = decode(v.value(), "roots", k.value())?;
        let body = signed.body_unverified().map_err(refused)?;
        Ok(Some((signed, body)))
    }

    /// The root metadata versions above `version`, in order (what an agent trusting `version`
    /// must follow).
    pub fn roots_after(&self, version: u64) -> Result<Vec<SignedRoot>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(ROOTS)?;
        let mut out = Vec::new();
        for e in t.range(version.saturating_add(1)..)? {
            let (k, v) = e?;
            out.push(decode(v.value(), "roots", k.value())?);
        }
        Ok(out)
    }

    /// The version of `workflow` waiting for release signatures, if any.
    pub fn pending(&self, workflow: &str) -> Result<Option<PendingVersion>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(PENDING)?;
        Ok(match t.get(workflow)? {
            Some(v) => Some(decode(v.value(), "pending_versions", workflow)?),
            None => None,
        })
    }

    /// Every version waiting for release signatures, by workflow.
    pub fn pending_all(&self) -> Result<Vec<PendingVersion>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(PENDING)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push(decode(v.value(), "pending_versions", k.value())?);
        }
        Ok(out)
    }

    /// Add release signatures to `workflow`'s pending `version`. Each must be a valid signature
    /// over the pending header bytes by a key of the current root's release role (anything
    /// else is refused, naming it, and nothing is stored). Once the role's threshold signed,
    /// the version is promoted to a deployable version in the same transaction.
    pub fn add_release_signatures(
        &self,
        workflow: &str,
        version: u64,
        sigs: &[Signature],
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<ReleaseStatus, StoreError> {
        let txn = self.begin_write()?;
        let (_, root) = current_root_in(&txn)?
            .ok_or_else(|| StoreError::Refused("no root metadata published".into()))?;
        let mut p: PendingVersion = {
            let t = txn.open_table(PENDING)?;
            let v = t.get(workflow)?.ok_or_else(|| {
                StoreError::Refused(format!("{workflow} has no version waiting for release"))
            })?;
            decode(v.value(), "pending_versions", workflow)?
        };
        if p.version != version {
            return Err(StoreError::Refused(format!(
                "{workflow} v{version} is not the version waiting for release (v{} is)",
                p.version
            )));
        }
        for s in sigs {
            verify_threshold_one(&root, &p.header_bytes, s)?;
            p.signatures.retain(|x| x.key_id != s.key_id);
            p.signatures.push(s.clone());
        }
        let released = verify_threshold(
            &root,
            Role::Release,
            DOMAIN_RELEASE,
            &p.header_bytes,
            &p.signatures,
        )
        .is_ok();
        let status = ReleaseStatus {
            workflow: workflow.to_string(),
            version,
            signed_by: p.signatures.iter().map(|s| s.key_id.clone()).collect(),
            needed: root.release.threshold,
            released,
        };
        let keys = sigs
            .iter()
            .map(|s| s.key_id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        audit_in(
            &txn,
            now_ms,
            actor,
            "workflow.release.sign",
            workflow,
            &format!(
                "v{version} signed by {keys} ({} of {})",
                status.signed_by.len(),
                status.needed
            ),
        )?;
        if released {
            {
                let mut t = txn.open_table(PENDING)?;
                t.remove(workflow)?;
            }
            self.promote_in(&txn, p, now_ms)?;
        } else {
            let mut t = txn.open_table(PENDING)?;
            t.insert(workflow, encode(&p)?.as_slice())?;
        }
        txn.commit()?;
        Ok(status)
    }
}

/// One signature must be a release key's, valid over `header_bytes`.
fn verify_threshold_one(
    root: &RootBody,
    header_bytes: &[u8],
    s: &Signature,
) -> Result<(), StoreError> {
    if !root.release.key_ids.contains(&s.key_id) {
        return Err(StoreError::Refused(format!(
            "key {} is not a release key of root metadata v{}",
            s.key_id, root.version
        )));
    }
    let ok = root
        .keys
        .iter()
        .find(|k| k.key_id == s.key_id)
        .is_some_and(|k| k.verifies(DOMAIN_RELEASE, header_bytes, &s.sig));
    if !ok {
        return Err(StoreError::Refused(format!(
            "the signature by {} does not verify over this version's header",
            s.key_id
        )));
    }
    Ok(())
}

fn refused(e: outpost_common::proto::Rejection) -> StoreError {
    StoreError::Refused(format!("root metadata refused: {e}"))
}
