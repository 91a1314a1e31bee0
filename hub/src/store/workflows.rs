//! Workflows and their versions: apply (sign and store a new version), rollback, pause, reads.

use outpost_common::proto::BundleHeader;
use outpost_common::record::UnixMillis;
use outpost_common::sign::SigningKey;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::audit::audit_in;
use super::error::{DbError, StoreError, decode, encode};
use super::file::Store;
use super::pools;
use super::records::{AgentRecord, ApplyOutcome, NewVersion, StoredVersion, WorkflowMeta, sorted};
use super::schema::{AGENTS, VERSIONS, WORKFLOWS};

/// The highest version of `workflow` any agent reported having accepted.
fn agents_highest(txn: &WriteTransaction, workflow: &str) -> Result<u64, StoreError> {
    let agents = txn.open_table(AGENTS)?;
    let mut highest = 0;
    for e in agents.iter()? {
        let (k, v) = e?;
        let agent: AgentRecord = decode(v.value(), "agents", k.value())?;
        for a in agent.active.iter().filter(|a| a.workflow == workflow) {
            highest = highest.max(a.version).max(a.highest_version.unwrap_or(0));
        }
    }
    Ok(highest)
}

impl Store {
    /// Apply a workflow file: unchanged content (same hash as the latest version) makes no new
    /// version; otherwise version = latest + 1, signed by `signer`. One transaction, audited.
    pub fn apply_version(
        &self,
        new: NewVersion,
        signer: &SigningKey,
        now_ms: UnixMillis,
    ) -> Result<ApplyOutcome, StoreError> {
        let txn = self.begin_write()?;
        let out = {
            let mut wfs = txn.open_table(WORKFLOWS)?;
            let mut versions = txn.open_table(VERSIONS)?;
            let hash = blake3::hash(&new.content).to_hex().to_string();
            let meta: Option<WorkflowMeta> = match wfs.get(new.name.as_str())? {
                Some(v) => Some(decode(v.value(), "workflows", &new.name)?),
                None => None,
            };
            if let Some(m) = &meta {
                let latest = versions
                    .get((new.name.as_str(), m.latest))?
                    .ok_or_else(|| {
                        DbError::Inconsistent(format!("{} v{} missing", new.name, m.latest))
                    })?;
                let latest: StoredVersion = decode(latest.value(), "workflow_versions", &new.name)?;
                if latest.content_hash == hash {
                    return Ok(ApplyOutcome {
                        version: m.latest,
                        changed: false,
                    });
                }
            }
            let version = outpost_common::sync::next_version(
                meta.as_ref().map(|m| m.latest).unwrap_or(0),
                agents_highest(&txn, &new.name)?,
            );
            let target = sorted(new.target);
            let header = BundleHeader {
                workflow: new.name.clone(),
                version,
                content_hash: hash.clone(),
                created_ms: now_ms,
                target: target.clone(),
                format: new.format.clone(),
            };
            let bundle = signer.sign_bundle(&header, new.content.clone());
            let frame = outpost_common::sync::deploy_frame_len(&bundle);
            if frame > outpost_common::proto::MAX_FRAME {
                return Err(StoreError::Refused(format!(
                    "workflow {} cannot be delivered to agents: its signed version with the deploy \
                     message is {frame} bytes, above the protocol's frame limit of {} bytes \
                     (MAX_FRAME, 1 MiB); make the workflow file smaller (it is {} bytes)",
                    new.name,
                    outpost_common::proto::MAX_FRAME,
                    new.content.len()
                )));
            }
            let stored = StoredVersion {
                name: new.name.clone(),
                version,
                content: new.content,
                format: new.format,
                content_hash: hash,
                created_ms: now_ms,
                origin: new.origin.clone(),
                applied_by: new.applied_by.clone(),
                target,
                bundle: encode(&bundle)?,
            };
            versions.insert((new.name.as_str(), version), encode(&stored)?.as_slice())?;
            let meta = WorkflowMeta {
                latest: version,
                paused: meta.map(|m| m.paused).unwrap_or(false),
                updated_ms: now_ms,
            };
            wfs.insert(new.name.as_str(), encode(&meta)?.as_slice())?;
            ApplyOutcome {
                version,
                changed: true,
            }
        };
        if out.changed {
            let target = {
                let versions = txn.open_table(VERSIONS)?;
                let v = versions
                    .get((new.name.as_str(), out.version))?
                    .ok_or_else(|| DbError::Inconsistent("applied version missing".into()))?;
                decode::<StoredVersion>(v.value(), "workflow_versions", &new.name)?.target
            };
            pools::apply_default_pool(
                &txn,
                &new.name,
                &target,
                out.version,
                &new.applied_by,
                now_ms,
            )?;
        }
        audit_in(
            &txn,
            now_ms,
            &new.applied_by,
            "workflow.apply",
            &new.name,
            &format!("version {} from {}", out.version, new.origin),
        )?;
        txn.commit()?;
        Ok(out)
    }

    /// Roll back: a new version with version `to`'s content (no new version if the latest
    /// already has that content). Returns the resulting latest version.
    pub(crate) fn rollback(
        &self,
        name: &str,
        to: u64,
        actor: &str,
        signer: &SigningKey,
        now_ms: UnixMillis,
    ) -> Result<ApplyOutcome, StoreError> {
        let old = self.version(name, Some(to))?;
        self.apply_version(
            NewVersion {
                name: name.into(),
                content: old.content,
                format: old.format,
                target: old.target,
                origin: format!("rollback to v{to}"),
                applied_by: actor.into(),
            },
            signer,
            now_ms,
        )
    }

    /// All workflows with their state, by name.
    pub(crate) fn workflows(&self) -> Result<Vec<(String, WorkflowMeta)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(WORKFLOWS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push((
                k.value().to_string(),
                decode(v.value(), "workflows", k.value())?,
            ));
        }
        Ok(out)
    }

    /// A workflow's state.
    pub(crate) fn workflow(&self, name: &str) -> Result<WorkflowMeta, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(WORKFLOWS)?;
        let v = t
            .get(name)?
            .ok_or_else(|| StoreError::NoWorkflow(name.into()))?;
        Ok(decode(v.value(), "workflows", name)?)
    }

    /// One version (`None`: the latest).
    pub fn version(&self, name: &str, version: Option<u64>) -> Result<StoredVersion, StoreError> {
        let version = match version {
            Some(v) => v,
            None => self.workflow(name)?.latest,
        };
        let txn = self.db.begin_read()?;
        let t = txn.open_table(VERSIONS)?;
        let v = t.get((name, version))?.ok_or_else(|| {
            if self.workflow(name).is_err() {
                StoreError::NoWorkflow(name.into())
            } else {
                StoreError::NoVersion {
                    name: name.into(),
                    version,
                }
            }
        })?;
        Ok(decode(v.value(), "workflow_versions", name)?)
    }

    /// Every version of a workflow, oldest first.
    pub(crate) fn history(&self, name: &str) -> Result<Vec<StoredVersion>, StoreError> {
        self.workflow(name)?;
        let txn = self.db.begin_read()?;
        let t = txn.open_table(VERSIONS)?;
        let mut out = Vec::new();
        for e in t.range((name, 0)..=(name, u64::MAX))? {
            let (_, v) = e?;
            out.push(decode(v.value(), "workflow_versions", name)?);
        }
        Ok(out)
    }

    /// The latest version of every workflow.
    pub(crate) fn latest_versions(&self) -> Result<Vec<(StoredVersion, WorkflowMeta)>, StoreError> {
        let mut out = Vec::new();
        for (name, meta) in self.workflows()? {
            out.push((self.version(&name, Some(meta.latest))?, meta));
        }
        Ok(out)
    }

    /// Pause or resume a workflow at the hub. Returns whether it changed.
    pub(crate) fn set_paused(
        &self,
        name: &str,
        paused: bool,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let changed = {
            let mut t = txn.open_table(WORKFLOWS)?;
            let mut meta: WorkflowMeta = match t.get(name)? {
                Some(v) => decode(v.value(), "workflows", name)?,
                None => return Err(StoreError::NoWorkflow(name.into())),
            };
            let changed = meta.paused != paused;
            meta.paused = paused;
            t.insert(name, encode(&meta)?.as_slice())?;
            changed
        };
        let action = if paused {
            "workflow.pause"
        } else {
            "workflow.resume"
        };
        audit_in(&txn, now_ms, actor, action, name, "")?;
        txn.commit()?;
        Ok(changed)
    }
}
