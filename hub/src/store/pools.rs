//! Node pools and per-pool decisions (deploy, pin; a rollout's start is one too, see
//! `rollouts.rs`). See `docs/rollouts.md` for the rules.

use minicbor::{Decode, Encode};
use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::audit::audit_in;
use super::error::{StoreError, decode, decode_all, encode};
use super::file::Store;
use super::records::sorted;
use super::schema::{DECISIONS, META, META_DECISION_SEQ, POOLS, VERSIONS, WORKFLOWS};

/// Prefix of the default pools made from workflow `target` selectors.
pub(crate) const DEFAULT_POOL_PREFIX: &str = "wf:";

/// The default pool of a workflow: `wf:<name>`.
pub(crate) fn default_pool(workflow: &str) -> String {
    format!("{DEFAULT_POOL_PREFIX}{workflow}")
}

/// A node pool: a named label selector.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PoolRecord {
    /// Name.
    #[n(0)]
    pub name: String,
    /// Label selector (sorted); empty = every agent.
    #[n(1)]
    pub selector: Vec<(String, String)>,
    /// When it was made.
    #[n(2)]
    pub created_ms: UnixMillis,
    /// Who made it.
    #[n(3)]
    pub created_by: String,
}

/// A pool's desired version of one workflow.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PoolDecision {
    /// Version (0 = the workflow is not deployed in the pool). During a rollout: the version
    /// the rollout started from (what unselected members keep).
    #[n(0)]
    pub version: u64,
    /// Held by `workflow pin`.
    #[n(1)]
    pub pinned: bool,
    /// Global decision sequence: an agent in several pools follows the decision with the
    /// highest seq (the most recent deploy, pin or rollout start).
    #[n(2)]
    pub seq: u64,
    /// When.
    #[n(3)]
    pub at_ms: UnixMillis,
    /// Who.
    #[n(4)]
    pub actor: String,
    /// Default pools only: each `workflow apply` deploys the new version (the behaviour before pools),
    /// until the workflow is managed explicitly (deploy, pin or rollout in any pool).
    #[n(5)]
    pub follow_latest: bool,
    /// The active rollout (its seq), if any.
    #[n(6)]
    pub rollout: Option<u64>,
}

/// `(workflow, pool)`.
pub(crate) type WorkflowPool = (String, String);

/// Whether a pool name is acceptable: `[A-Za-z0-9._:-]`, 1..=64 characters.
pub(crate) fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

pub(crate) fn next_decision_seq(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let seq = meta.get(META_DECISION_SEQ)?.map(|v| v.value()).unwrap_or(0) + 1;
    meta.insert(META_DECISION_SEQ, seq)?;
    Ok(seq)
}

/// Set the default pool of a workflow at apply (selector = the target) and, while it follows
/// the latest version, deploy `version` to it. Returns whether the default pool's version moved.
pub(crate) fn apply_default_pool(
    txn: &WriteTransaction,
    workflow: &str,
    target: &[(String, String)],
    version: u64,
    actor: &str,
    now_ms: UnixMillis,
) -> Result<bool, StoreError> {
    let pool = default_pool(workflow);
    {
        let mut pools = txn.open_table(POOLS)?;
        let rec = match pools.get(pool.as_str())? {
            Some(v) => {
                let mut r: PoolRecord = decode(v.value(), "pools", &pool)?;
                r.selector = target.to_vec();
                r
            }
            None => PoolRecord {
                name: pool.clone(),
                selector: target.to_vec(),
                created_ms: now_ms,
                created_by: actor.into(),
            },
        };
        pools.insert(pool.as_str(), encode(&rec)?.as_slice())?;
    }
    let current: Option<PoolDecision> =
        match txn.open_table(DECISIONS)?.get((workflow, pool.as_str()))? {
            Some(v) => Some(decode(v.value(), "pool_decisions", workflow)?),
            None => None,
        };
    let follow = current
        .as_ref()
        .is_none_or(|d| d.follow_latest && !d.pinned && d.rollout.is_none());
    if !follow {
        return Ok(false);
    }
    let seq = match &current {
        Some(d) => d.seq,
        None => next_decision_seq(txn)?,
    };
    let d = PoolDecision {
        version,
        pinned: false,
        seq,
        at_ms: now_ms,
        actor: actor.into(),
        follow_latest: true,
        rollout: None,
    };
    txn.open_table(DECISIONS)?
        .insert((workflow, pool.as_str()), encode(&d)?.as_slice())?;
    Ok(true)
}

impl Store {
    // ----- pools ------------------------------------------------------------------------------

    /// Create a pool (refuses an existing name, a bad name, and the reserved `wf:` prefix).
    pub fn create_pool(
        &self,
        name: &str,
        selector: Vec<(String, String)>,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<PoolRecord, StoreError> {
        if !valid_pool_name(name) {
            return Err(StoreError::Refused(format!(
                "invalid pool name {name:?}: use 1 to 64 of A-Z a-z 0-9 . _ : -"
            )));
        }
        if name.starts_with(DEFAULT_POOL_PREFIX) {
            return Err(StoreError::Refused(format!(
                "pool names starting with {DEFAULT_POOL_PREFIX:?} are reserved for the default pools of workflows"
            )));
        }
        let rec = PoolRecord {
            name: name.into(),
            selector: sorted(selector),
            created_ms: now_ms,
            created_by: actor.into(),
        };
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(POOLS)?;
            if t.get(name)?.is_some() {
                return Err(StoreError::Conflict(format!("pool {name} already exists")));
            }
            t.insert(name, encode(&rec)?.as_slice())?;
        }
        let sel = rec
            .selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        audit_in(
            &txn,
            now_ms,
            actor,
            "pool.create",
            name,
            &format!("selector {sel}"),
        )?;
        txn.commit()?;
        Ok(rec)
    }

    /// Every pool, by name.
    pub(crate) fn pools(&self) -> Result<Vec<PoolRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(decode_all(&txn.open_table(POOLS)?, "pools")?)
    }

    /// One pool.
    pub(crate) fn pool(&self, name: &str) -> Result<PoolRecord, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(POOLS)?;
        let v = t
            .get(name)?
            .ok_or_else(|| StoreError::NoPool(name.into()))?;
        Ok(decode(v.value(), "pools", name)?)
    }

    /// Delete a pool and its decisions; refused while a rollout is active in it.
    pub fn delete_pool(
        &self,
        name: &str,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut pools = txn.open_table(POOLS)?;
            if pools.remove(name)?.is_none() {
                return Err(StoreError::NoPool(name.into()));
            }
            let mut dec = txn.open_table(DECISIONS)?;
            let mut gone = Vec::new();
            for e in dec.iter()? {
                let (k, v) = e?;
                let (w, p) = k.value();
                if p == name {
                    let d: PoolDecision = decode(v.value(), "pool_decisions", w)?;
                    if d.rollout.is_some() {
                        return Err(StoreError::Conflict(format!(
                            "a rollout of {w} is active in pool {name}; abort it first"
                        )));
                    }
                    gone.push(w.to_string());
                }
            }
            for w in gone {
                dec.remove((w.as_str(), name))?;
            }
        }
        audit_in(&txn, now_ms, actor, "pool.delete", name, "")?;
        txn.commit()?;
        Ok(())
    }

    /// Every decision: `((workflow, pool), decision)`.
    pub(crate) fn decisions(&self) -> Result<Vec<(WorkflowPool, PoolDecision)>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(DECISIONS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            let (w, p) = k.value();
            out.push((
                (w.to_string(), p.to_string()),
                decode(v.value(), "pool_decisions", w)?,
            ));
        }
        Ok(out)
    }

    /// The decision of (workflow, pool), if any.
    pub fn decision(&self, workflow: &str, pool: &str) -> Result<Option<PoolDecision>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(DECISIONS)?;
        match t.get((workflow, pool))? {
            Some(v) => Ok(Some(decode(v.value(), "pool_decisions", workflow)?)),
            None => Ok(None),
        }
    }

    pub(super) fn check_pool_and_version(
        &self,
        txn: &WriteTransaction,
        workflow: &str,
        pool: &str,
        version: u64,
    ) -> Result<Option<PoolDecision>, StoreError> {
        if txn.open_table(POOLS)?.get(pool)?.is_none() {
            return Err(StoreError::NoPool(pool.into()));
        }
        if txn
            .open_table(VERSIONS)?
            .get((workflow, version))?
            .is_none()
        {
            return Err(if txn.open_table(WORKFLOWS)?.get(workflow)?.is_none() {
                StoreError::NoWorkflow(workflow.into())
            } else {
                StoreError::NoVersion {
                    name: workflow.into(),
                    version,
                }
            });
        }
        match txn.open_table(DECISIONS)?.get((workflow, pool))? {
            Some(v) => Ok(Some(decode(v.value(), "pool_decisions", workflow)?)),
            None => Ok(None),
        }
    }

    /// Stop the default pool of `workflow` from following `apply` (the workflow is managed).
    pub(super) fn stop_following(txn: &WriteTransaction, workflow: &str) -> Result<(), StoreError> {
        let pool = default_pool(workflow);
        let mut t = txn.open_table(DECISIONS)?;
        let d: Option<PoolDecision> = match t.get((workflow, pool.as_str()))? {
            Some(v) => Some(decode(v.value(), "pool_decisions", workflow)?),
            None => None,
        };
        if let Some(mut d) = d
            && d.follow_latest
        {
            d.follow_latest = false;
            t.insert((workflow, pool.as_str()), encode(&d)?.as_slice())?;
        }
        Ok(())
    }

    /// `workflow deploy NAME --pool P --version V`: refused when the pool is pinned or has an
    /// active rollout of the workflow.
    pub fn deploy_to_pool(
        &self,
        workflow: &str,
        pool: &str,
        version: u64,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<PoolDecision, StoreError> {
        let txn = self.begin_write()?;
        let cur = self.check_pool_and_version(&txn, workflow, pool, version)?;
        if let Some(c) = &cur {
            refuse_if_held(workflow, pool, c, "deploy to")?;
        }
        let d = Self::put_decision(
            &txn,
            workflow,
            pool,
            version,
            false,
            actor,
            now_ms,
            (
                "workflow.deploy",
                &format!("version {version} to pool {pool}"),
            ),
        )?;
        txn.commit()?;
        Ok(d)
    }

    /// `workflow pin`: hold the pool on `version` (refused during an active rollout).
    pub fn pin(
        &self,
        workflow: &str,
        pool: &str,
        version: u64,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<PoolDecision, StoreError> {
        let txn = self.begin_write()?;
        let cur = self.check_pool_and_version(&txn, workflow, pool, version)?;
        if let Some(c) = &cur
            && let Some(r) = c.rollout
        {
            return Err(StoreError::Conflict(format!(
                "rollout ro-{r} of {workflow} is active in pool {pool}; abort it or let it finish before pinning"
            )));
        }
        let d = Self::put_decision(
            &txn,
            workflow,
            pool,
            version,
            true,
            actor,
            now_ms,
            (
                "workflow.pin",
                &format!("pool {pool} pinned to version {version}"),
            ),
        )?;
        txn.commit()?;
        Ok(d)
    }

    /// The pool's new operator decision (`version`, `pinned`), replacing whatever it followed,
    /// with its audit entry `(action, detail)`, in `txn`.
    #[allow(clippy::too_many_arguments)]
    fn put_decision(
        txn: &WriteTransaction,
        workflow: &str,
        pool: &str,
        version: u64,
        pinned: bool,
        actor: &str,
        now_ms: UnixMillis,
        (action, detail): (&str, &str),
    ) -> Result<PoolDecision, StoreError> {
        Self::stop_following(txn, workflow)?;
        let d = PoolDecision {
            version,
            pinned,
            seq: next_decision_seq(txn)?,
            at_ms: now_ms,
            actor: actor.into(),
            follow_latest: false,
            rollout: None,
        };
        txn.open_table(DECISIONS)?
            .insert((workflow, pool), encode(&d)?.as_slice())?;
        audit_in(txn, now_ms, actor, action, workflow, detail)?;
        Ok(d)
    }

    /// `workflow unpin`: the pool keeps its version but deploys and rollouts are allowed again.
    pub fn unpin(
        &self,
        workflow: &str,
        pool: &str,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let changed = {
            let mut t = txn.open_table(DECISIONS)?;
            let d: Option<PoolDecision> = match t.get((workflow, pool))? {
                Some(v) => Some(decode(v.value(), "pool_decisions", workflow)?),
                None => None,
            };
            match d {
                Some(mut d) if d.pinned => {
                    d.pinned = false;
                    t.insert((workflow, pool), encode(&d)?.as_slice())?;
                    true
                }
                _ => false,
            }
        };
        audit_in(
            &txn,
            now_ms,
            actor,
            "workflow.unpin",
            workflow,
            &format!("pool {pool}"),
        )?;
        txn.commit()?;
        Ok(changed)
    }

    // ----- rollouts ---------------------------------------------------------------------------

    /// Change an agent's labels (`set` adds or replaces, `remove` deletes keys). Audited.
    pub fn set_labels(
        &self,
        id: &str,
        set: &[(String, String)],
        remove: &[String],
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let labels = self.update_agent_identity(
            id,
            |a| {
                a.labels
                    .retain(|(k, _)| !remove.contains(k) && !set.iter().any(|(sk, _)| sk == k));
                a.labels.extend(set.iter().cloned());
                a.labels = sorted(std::mem::take(&mut a.labels));
                a.labels.clone()
            },
            None,
        )?;
        let detail = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        self.audit(
            actor,
            "agent.label",
            id,
            &format!("labels now {detail}"),
            now_ms,
        )?;
        Ok(labels)
    }
}

/// Refuse a deploy or rollout into a pool that is pinned or has an active rollout of the
/// workflow, saying why.
pub(crate) fn refuse_if_held(
    workflow: &str,
    pool: &str,
    d: &PoolDecision,
    what: &str,
) -> Result<(), StoreError> {
    if d.pinned {
        return Err(StoreError::Conflict(format!(
            "cannot {what} pool {pool}: workflow {workflow} is pinned to version {} there (by {} \
             at {}); run `outpost-hub workflow unpin {workflow} --pool {pool}` first",
            d.version,
            d.actor,
            chrono::DateTime::from_timestamp_millis(d.at_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        )));
    }
    if let Some(r) = d.rollout {
        return Err(StoreError::Conflict(format!(
            "cannot {what} pool {pool}: rollout ro-{r} of {workflow} is active there (one active \
             rollout per workflow and pool); wait for it or abort it"
        )));
    }
    Ok(())
}
