//! Workflows and their versions: apply (a new version waits for release signatures), promote
//! (released: deployable), rollback, pause, reads.

use outpost_common::proto::{BundleHeader, SignedBundle};
use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::audit::audit_in;
use super::error::{DbError, StoreError, decode, encode};
use super::file::Store;
use super::pools;
use super::records::{
    AgentRecord, ApplyOutcome, DeleteOutcome, NewVersion, PendingVersion, StoredVersion,
    WorkflowMeta, sorted,
};
use super::rollouts::RolloutRecord;
use super::schema::{AGENTS, DECISIONS, PENDING, ROLLOUTS, VERSIONS, WORKFLOWS};

/// Release signatures the frame-size check of a new version makes room for.
const RELEASE_SIGNATURES_ROOM: usize = 16;

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

/// One file of [`Store::apply_versions`], in `txn` (not audited here).
fn apply_in(
    txn: &WriteTransaction,
    new: NewVersion,
    now_ms: UnixMillis,
) -> Result<ApplyOutcome, StoreError> {
    let wfs = txn.open_table(WORKFLOWS)?;
    let versions = txn.open_table(VERSIONS)?;
    let mut pending = txn.open_table(PENDING)?;
    let hash = blake3::hash(&new.content).to_hex().to_string();
    let meta: Option<WorkflowMeta> = match wfs.get(new.name.as_str())? {
        Some(v) => Some(decode(v.value(), "workflows", &new.name)?),
        None => None,
    };
    // A deleted workflow applied again is revived with a new version, even with the content
    // of its last one.
    if let Some(m) = meta.as_ref().filter(|m| m.deleted_ms.is_none()) {
        let latest = versions
            .get((new.name.as_str(), m.latest))?
            .ok_or_else(|| DbError::Inconsistent(format!("{} v{} missing", new.name, m.latest)))?;
        let latest: StoredVersion = decode(latest.value(), "workflow_versions", &new.name)?;
        if latest.content_hash == hash {
            return Ok(ApplyOutcome {
                version: m.latest,
                changed: false,
                pending: false,
            });
        }
    }
    let waiting: Option<PendingVersion> = match pending.get(new.name.as_str())? {
        Some(v) => Some(decode(v.value(), "pending_versions", &new.name)?),
        None => None,
    };
    if let Some(p) = waiting.as_ref().filter(|p| p.content_hash == hash) {
        return Ok(ApplyOutcome {
            version: p.version,
            changed: false,
            pending: true,
        });
    }
    let version = outpost_common::sync::next_version(
        meta.as_ref().map(|m| m.latest).unwrap_or(0),
        agents_highest(txn, &new.name)?,
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
    let header_bytes = encode(&header)?;
    let bundle = SignedBundle {
        header_bytes: header_bytes.clone(),
        content: new.content.clone(),
        release: Vec::new(),
    };
    let frame = outpost_common::sync::deploy_frame_len(&bundle, RELEASE_SIGNATURES_ROOM);
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
    let p = PendingVersion {
        name: new.name.clone(),
        version,
        content: new.content,
        format: new.format,
        content_hash: hash,
        created_ms: now_ms,
        origin: new.origin,
        applied_by: new.applied_by,
        target,
        header_bytes,
        signatures: Vec::new(),
    };
    pending.insert(new.name.as_str(), encode(&p)?.as_slice())?;
    Ok(ApplyOutcome {
        version,
        changed: true,
        pending: true,
    })
}

impl Store {
    /// Apply a workflow file: content equal to the latest version's, or to the version already
    /// waiting for release, makes nothing new; otherwise a new version (latest + 1) waits for
    /// release signatures, replacing any other version waiting (its signatures are over other
    /// bytes). Nothing reaches an agent before a threshold of release keys signed
    /// ([`Store::add_release_signatures`]). One transaction, audited.
    pub fn apply_version(
        &self,
        new: NewVersion,
        now_ms: UnixMillis,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut out = self.apply_versions(vec![new], now_ms)?;
        out.pop()
            .ok_or_else(|| DbError::Inconsistent("apply made no outcome".into()).into())
    }

    /// Apply several workflow files in one transaction: all of them or, on any error, none
    /// (`workflow apply -f DIR`). Each as [`Store::apply_version`].
    pub fn apply_versions(
        &self,
        news: Vec<NewVersion>,
        now_ms: UnixMillis,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        let txn = self.begin_write()?;
        let mut outs = Vec::with_capacity(news.len());
        for new in news {
            let (name, applied_by, origin) =
                (new.name.clone(), new.applied_by.clone(), new.origin.clone());
            let out = apply_in(&txn, new, now_ms)?;
            if out.changed {
                audit_in(
                    &txn,
                    now_ms,
                    &applied_by,
                    "workflow.apply",
                    &name,
                    &format!(
                        "version {} from {} (waiting for release)",
                        out.version, origin
                    ),
                )?;
            }
            outs.push(out);
        }
        txn.commit()?;
        Ok(outs)
    }

    /// Make a released version deployable: store it with its release signatures as the
    /// workflow's latest version and point the default pool at it (in `txn`).
    pub(super) fn promote_in(
        &self,
        txn: &WriteTransaction,
        p: PendingVersion,
        now_ms: UnixMillis,
    ) -> Result<(), StoreError> {
        let bundle = SignedBundle {
            header_bytes: p.header_bytes,
            content: p.content.clone(),
            release: p.signatures,
        };
        let stored = StoredVersion {
            name: p.name.clone(),
            version: p.version,
            content: p.content,
            format: p.format,
            content_hash: p.content_hash,
            created_ms: p.created_ms,
            origin: p.origin,
            applied_by: p.applied_by.clone(),
            target: p.target.clone(),
            bundle: encode(&bundle)?,
        };
        {
            let mut wfs = txn.open_table(WORKFLOWS)?;
            let mut versions = txn.open_table(VERSIONS)?;
            let paused = match wfs.get(p.name.as_str())? {
                Some(v) => decode::<WorkflowMeta>(v.value(), "workflows", &p.name)?.paused,
                None => false,
            };
            versions.insert((p.name.as_str(), p.version), encode(&stored)?.as_slice())?;
            let meta = WorkflowMeta {
                latest: p.version,
                paused,
                updated_ms: now_ms,
                deleted_ms: None,
            };
            wfs.insert(p.name.as_str(), encode(&meta)?.as_slice())?;
        }
        pools::apply_default_pool(txn, &p.name, &p.target, p.version, &p.applied_by, now_ms)?;
        audit_in(
            txn,
            now_ms,
            "hub",
            "workflow.released",
            &p.name,
            &format!("version {} is deployable", p.version),
        )?;
        Ok(())
    }

    /// `workflow delete`: mark the workflow deleted and drop every pool decision of it (so each
    /// agent that ran it gets a removal at its next sync) and any version waiting for release.
    /// Versions and runs are kept. Refused while a rollout of it is in progress, unless `force`
    /// (the rollout ends, "aborted: workflow deleted"). One transaction, audited.
    pub(crate) fn delete_workflow(
        &self,
        name: &str,
        force: bool,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<DeleteOutcome, StoreError> {
        let txn = self.begin_write()?;
        let mut out = DeleteOutcome::default();
        {
            let mut wfs = txn.open_table(WORKFLOWS)?;
            let mut meta: WorkflowMeta = match wfs.get(name)? {
                Some(v) => decode(v.value(), "workflows", name)?,
                None => return Err(StoreError::NoWorkflow(name.into())),
            };
            if meta.deleted_ms.is_some() {
                return Err(StoreError::NoWorkflow(name.into()));
            }
            let mut decisions = txn.open_table(DECISIONS)?;
            let mut rollouts = Vec::new();
            for e in decisions.range((name, "")..)? {
                let (k, v) = e?;
                let (w, p) = k.value();
                if w != name {
                    break;
                }
                let d: pools::PoolDecision = decode(v.value(), "pool_decisions", w)?;
                if let Some(seq) = d.rollout {
                    rollouts.push((p.to_string(), seq));
                }
                out.pools.push(p.to_string());
            }
            if !rollouts.is_empty() && !force {
                let pools: Vec<&str> = rollouts.iter().map(|(p, _)| p.as_str()).collect();
                return Err(StoreError::Conflict(format!(
                    "a rollout of {name} is in progress in pool {}; abort it first \
                     (`outpost-hub rollout abort {name} --pool POOL`) or delete with --force",
                    pools.join(", ")
                )));
            }
            let mut rt = txn.open_table(ROLLOUTS)?;
            for (_, seq) in &rollouts {
                let rec: Option<RolloutRecord> = match rt.get(*seq)? {
                    Some(v) => Some(decode(v.value(), "rollouts", name)?),
                    None => None,
                };
                if let Some(mut rec) = rec.filter(|r| r.active) {
                    rec.active = false;
                    rec.finished_ms = Some(now_ms);
                    rec.phase = "aborted".into();
                    rec.outcome = Some("aborted: workflow deleted".into());
                    out.aborted_rollouts.push(rec.id.clone());
                    rt.insert(*seq, encode(&rec)?.as_slice())?;
                }
            }
            for p in &out.pools {
                decisions.remove((name, p.as_str()))?;
            }
            let mut pending = txn.open_table(PENDING)?;
            if let Some(v) = pending.remove(name)? {
                let p: PendingVersion = decode(v.value(), "pending_versions", name)?;
                out.dropped_pending = Some(p.version);
            }
            meta.deleted_ms = Some(now_ms);
            wfs.insert(name, encode(&meta)?.as_slice())?;
        }
        let mut detail = format!("removed from pools: {}", out.pools.join(", "));
        if !out.aborted_rollouts.is_empty() {
            detail.push_str(&format!(
                "; rollouts aborted (--force): {}",
                out.aborted_rollouts.join(", ")
            ));
        }
        audit_in(&txn, now_ms, actor, "workflow.delete", name, &detail)?;
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
            now_ms,
        )
    }

    /// All workflows with their state, by name.
    pub(crate) fn workflows(&self) -> Result<Vec<(String, WorkflowMeta)>, StoreError> {
        let txn = self.db().begin_read()?;
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
        let txn = self.db().begin_read()?;
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
        let txn = self.db().begin_read()?;
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
        let txn = self.db().begin_read()?;
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
