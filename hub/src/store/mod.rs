//! The hub's durable store: workflow versions (with their signed bundles), agents, bootstrap
//! tokens, assignment epochs, runs and task instances from every agent, missed firings, deploy
//! results, the signing-key history and an append-only audit log, in one redb file.
//!
//! Every write is one redb write transaction with two-phase commit, so a crash leaves the file
//! before or after a call, never in between; a call that returns `Ok` is durable (this is what
//! lets the session driver acknowledge an agent's status batch only after [`Store::ingest`]).
//!
//! # Tables (see [`schema`])
//!
//! | table | key | value |
//! |---|---|---|
//! | `workflows` | `name` | cbor [`WorkflowMeta`] |
//! | `workflow_versions` | `(name, version)` | cbor [`StoredVersion`] (incl. the signed bundle bytes) |
//! | `agents` | `agent_id` | cbor [`AgentRecord`] |
//! | `tokens` | `token_id` | cbor [`TokenRecord`] (blake3 of the secret only) |
//! | `assignments` | `(agent_id, workflow)` | cbor [`IssuedAssignment`] (last issued) |
//! | `runs` | `(agent_id, run_id)` | cbor `RunRecord` |
//! | `runs_by_id` | `(run_id, agent_id)` | `()` |
//! | `runs_by_created` | `(created_ms, agent_id, run_id)` | `()` |
//! | `task_instances` | `(agent_id, run_id, task_id)` | cbor `TaskInstanceRecord` |
//! | `missed_firings` | `(agent_id, seq)` | cbor `MissedFirings` |
//! | `deploy_results` | `(agent_id, workflow)` | cbor [`DeployResultRecord`] |
//! | `signing_keys` | `index` | cbor [`KeyRecord`] |
//! | `audit` | `seq` | cbor [`AuditEntry`] |
//! | `pools` | `name` | cbor [`PoolRecord`] |
//! | `pool_decisions` | `(workflow, pool)` | cbor [`PoolDecision`] |
//! | `rollouts` | `seq` | cbor [`RolloutRecord`] |
//! | `rollout_state` | `seq` | the controller's encoded state |
//! | `rollout_agents` | `(agent, workflow, pool)` | cbor [`RolloutAssign`] |
//! | `rollout_inbox` | `seq` | cbor [`RolloutEvent`] |
//! | `agent_versions` | `(agent, workflow, version)` | first seen (ms) |
//!
//! Runs are keyed by `(agent, run id)`: run ids are derived from (workflow, version, time), so
//! two agents running the same workflow make the same run id.
//!
//! # Invariants
//! - Versions of a workflow strictly increase (1, 2, ...; after a restore from an older backup
//!   the next one skips above the highest any agent reported, `sync::next_version`); unchanged
//!   content makes no new version; a version's stored bundle bytes are the bytes signed, never re-encoded.
//! - Assignment epochs per (agent, workflow) strictly increase, across reopens, forever, and
//!   above the highest the agent reported accepting (`sync::next_epoch`).
//! - [`Store::ingest`] commits a batch in one transaction, ignores seqs ≤ the agent's
//!   committed seq, commits a gap (the session reports it), refuses entries out of order, and
//!   returns the new committed seq.
//! - A token is redeemed at most once and never after it expires.
//! - Decision seqs are global and strictly increasing; at most one active rollout per
//!   (workflow, pool); a rollout event is queued in the transaction that ingested it and removed
//!   in the transaction that commits the controller state that used it.

mod backup;
pub mod pools;
pub mod schema;
pub mod sessions;
#[cfg(test)]
mod tests;

use std::fmt::Display;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use minicbor::{Decode, Encode};
use outpost_common::proto::{
    ActiveWorkflow, Assignment, BundleHeader, KeyEndorsement, SignedAssignment, SignedBundle,
};
use outpost_common::record::{
    MissedFirings, OutboxEntry, RunRecord, RunState, StatusEvent, TaskInstanceRecord, UnixMillis,
};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};

use outpost_common::sign::SigningKey;
pub use pools::*;
use schema::{
    AGENTS, ASSIGNMENTS, AUDIT, DEPLOY_RESULTS, MISSED, RUNS, RUNS_BY_CREATED, RUNS_BY_ID,
    SIGNING_KEYS, TASKS, TOKENS, VERSIONS, WORKFLOWS,
};

/// Everything that can go wrong in the hub store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store file could not be created or its permissions set.
    #[error("cannot prepare store file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Another process has the file open.
    #[error("store {path} is already open (is another hub running?)")]
    AlreadyOpen {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer hub.
    #[error(
        "store schema version {found} is newer than the {supported} this hub supports; upgrade \
         the hub (the store is left untouched)"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: u64,
        /// Highest version this build reads.
        supported: u64,
    },
    /// A stored value could not be decoded.
    #[error("corrupt value in table {table} at key {key}: {source}")]
    Decode {
        /// The table.
        table: &'static str,
        /// The key, for humans.
        key: String,
        /// The decoder's error.
        source: minicbor::decode::Error,
    },
    /// A value could not be encoded.
    #[error("cannot encode value: {0}")]
    Encode(String),
    /// No such workflow (or version).
    #[error("workflow {0} not found")]
    NoWorkflow(String),
    /// No such version of a workflow.
    #[error("workflow {name} has no version {version}")]
    NoVersion {
        /// Workflow.
        name: String,
        /// Version asked for.
        version: u64,
    },
    /// No such agent.
    #[error("agent {0} not found")]
    NoAgent(String),
    /// The agent is revoked.
    #[error("agent {0} is revoked")]
    Revoked(String),
    /// The agent id is taken.
    #[error("agent {0} already exists")]
    AgentExists(String),
    /// The bootstrap token is unknown, wrong, used or expired (one message for all: no oracle).
    #[error("bootstrap token is invalid, already used or expired")]
    BadToken,
    /// No bootstrap token has this id.
    #[error("no bootstrap token {0}")]
    NoToken(String),
    /// No such pool.
    #[error("pool {0} not found")]
    NoPool(String),
    /// No such rollout.
    #[error("rollout {0} not found")]
    NoRollout(String),
    /// The operation conflicts with the current state (pinned pool, active rollout, ...).
    #[error("{0}")]
    Conflict(String),
    /// Bad input.
    #[error("{0}")]
    Refused(String),
    /// An index entry points at a missing record.
    #[error("store is inconsistent: {0}")]
    Inconsistent(String),
    /// redb failed.
    #[error("store database error: {0}")]
    Db(#[from] redb::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

fn decode<T>(bytes: &[u8], table: &'static str, key: impl Display) -> Result<T, StoreError>
where
    T: for<'b> Decode<'b, ()>,
{
    minicbor::decode(bytes).map_err(|source| StoreError::Decode {
        table,
        key: key.to_string(),
        source,
    })
}

fn encode<T: Encode<()>>(value: &T) -> Result<Vec<u8>, StoreError> {
    minicbor::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

/// Per-workflow state.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WorkflowMeta {
    /// Latest version number (≥ 1).
    #[n(0)]
    pub latest: u64,
    /// Paused at the hub.
    #[n(1)]
    pub paused: bool,
    /// When the latest version was made.
    #[n(2)]
    pub updated_ms: UnixMillis,
}

/// One version of a workflow as applied.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoredVersion {
    /// Workflow name.
    #[n(0)]
    pub name: String,
    /// Version number.
    #[n(1)]
    pub version: u64,
    /// The workflow file's exact bytes.
    #[n(2)]
    #[cbor(with = "minicbor::bytes")]
    pub content: Vec<u8>,
    /// `"yaml"` or `"toml"`.
    #[n(3)]
    pub format: String,
    /// blake3 hex of `content`.
    #[n(4)]
    pub content_hash: String,
    /// When this version was made.
    #[n(5)]
    pub created_ms: UnixMillis,
    /// Where it came from: a file path, or `rollback of vN`.
    #[n(6)]
    pub origin: String,
    /// Who applied it.
    #[n(7)]
    pub applied_by: String,
    /// The target label selector, sorted by key.
    #[n(8)]
    pub target: Vec<(String, String)>,
    /// The [`SignedBundle`] cbor, exactly as signed.
    #[n(9)]
    #[cbor(with = "minicbor::bytes")]
    pub bundle: Vec<u8>,
}

impl StoredVersion {
    /// Decode the signed bundle (the signed `header_bytes` are carried through unchanged).
    pub fn signed_bundle(&self) -> Result<SignedBundle, StoreError> {
        decode(&self.bundle, "workflow_versions", &self.name)
    }
}

/// What to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    /// Workflow name (from the validated file).
    pub name: String,
    /// The file's exact bytes.
    pub content: Vec<u8>,
    /// `"yaml"` or `"toml"`.
    pub format: String,
    /// Target label selector (any order; stored sorted).
    pub target: Vec<(String, String)>,
    /// A file path or description.
    pub origin: String,
    /// Who applies it (audit).
    pub applied_by: String,
}

/// Result of [`Store::apply_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The workflow's latest version after the call.
    pub version: u64,
    /// Whether a new version was made.
    pub changed: bool,
}

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AgentRecord {
    /// `agent-` + 16 hex.
    #[n(0)]
    pub id: String,
    /// Labels (sorted by key).
    #[n(1)]
    pub labels: Vec<(String, String)>,
    /// When it enrolled.
    #[n(2)]
    pub enrolled_ms: UnixMillis,
    /// Certificate serial (hex).
    #[n(3)]
    pub cert_serial: String,
    /// SHA-256 of the certificate DER (hex).
    #[n(4)]
    pub cert_fingerprint: String,
    /// When it was revoked, if it was.
    #[n(5)]
    pub revoked_ms: Option<UnixMillis>,
    /// Last time it was heard from (session start or message).
    #[n(6)]
    pub last_seen_ms: Option<UnixMillis>,
    /// Software version it reported.
    #[n(7)]
    pub software_version: String,
    /// Workflows it reported active (at Hello, updated by deploy results).
    #[n(8)]
    pub active: Vec<ActiveWorkflow>,
    /// Highest outbox seq of this agent committed here.
    #[n(9)]
    pub committed_seq: u64,
    /// Host name it reported at enrollment.
    #[n(10)]
    pub hostname: String,
}

/// A bootstrap token. Only the blake3 hash of the secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TokenRecord {
    /// Public id.
    #[n(0)]
    pub id: String,
    /// blake3 hex of the secret.
    #[n(1)]
    pub secret_hash: String,
    /// Labels an agent enrolled with this token gets (they take precedence).
    #[n(2)]
    pub labels: Vec<(String, String)>,
    /// When it was made.
    #[n(3)]
    pub created_ms: UnixMillis,
    /// When it stops working.
    #[n(4)]
    pub expires_ms: UnixMillis,
    /// When it was used.
    #[n(5)]
    pub used_ms: Option<UnixMillis>,
    /// The agent it enrolled (the last one, for a token of several uses).
    #[n(6)]
    pub used_by: Option<String>,
    /// How many agents may enroll with it (`None`: one, the tokens of older hubs).
    #[n(7)]
    pub max_uses: Option<u32>,
    /// How many agents enrolled with it (`None`: derived from `used_ms`, older records).
    #[n(8)]
    pub uses: Option<u32>,
    /// When an operator revoked it.
    #[n(9)]
    pub revoked_ms: Option<UnixMillis>,
}

impl TokenRecord {
    /// Agents enrolled with it so far.
    pub fn used(&self) -> u32 {
        self.uses.unwrap_or(u32::from(self.used_ms.is_some()))
    }

    /// Agents it may enroll in all.
    pub fn allowed(&self) -> u32 {
        self.max_uses.unwrap_or(1).max(1)
    }

    /// Whether it can enroll an agent at `now_ms`: not revoked, not spent, not expired.
    pub fn usable(&self, now_ms: UnixMillis) -> bool {
        self.revoked_ms.is_none() && self.used() < self.allowed() && now_ms < self.expires_ms
    }
}

/// The last assignment issued for (agent, workflow).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct IssuedAssignment {
    /// Workflow.
    #[n(0)]
    pub workflow: String,
    /// Epoch (strictly increasing per (agent, workflow)).
    #[n(1)]
    pub epoch: u64,
    /// Version assigned (0 with `remove`).
    #[n(2)]
    pub version: u64,
    /// Content hash of that version (empty with `remove`).
    #[n(3)]
    pub content_hash: String,
    /// A removal.
    #[n(4)]
    pub remove: bool,
    /// The [`SignedAssignment`] as issued.
    #[n(5)]
    pub signed: SignedAssignment,
    /// When.
    #[n(6)]
    pub issued_ms: UnixMillis,
}

/// What an agent should run: one workflow at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredVersion {
    /// Workflow.
    pub workflow: String,
    /// Version.
    pub version: u64,
    /// Its content hash.
    pub content_hash: String,
    /// Version to return to under probation (rollouts).
    pub previous_version: Option<u64>,
    /// Local probation `(runs, max_failures)` (rollouts).
    pub probation: Option<(u32, u32)>,
    /// The rollout this assignment belongs to.
    pub rollout_id: Option<String>,
}

/// The last deploy result of (agent, workflow).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct DeployResultRecord {
    /// Workflow.
    #[n(0)]
    pub workflow: String,
    /// Version offered.
    #[n(1)]
    pub version: u64,
    /// Epoch offered.
    #[n(2)]
    pub epoch: u64,
    /// `None`: activated; otherwise why it was rejected.
    #[n(3)]
    pub rejected: Option<String>,
    /// When the hub recorded it.
    #[n(4)]
    pub at_ms: UnixMillis,
}

/// A workflow-signing key the hub used.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct KeyRecord {
    /// Key id.
    #[n(0)]
    pub key_id: String,
    /// Raw ed25519 public key.
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub public_key: Vec<u8>,
    /// When it became current.
    #[n(2)]
    pub created_ms: UnixMillis,
    /// Endorsement by the previous key (`None` for the first key).
    #[n(3)]
    pub endorsement: Option<KeyEndorsement>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AuditEntry {
    /// Sequence number (assigned by the store).
    #[n(0)]
    pub seq: u64,
    /// When.
    #[n(1)]
    pub at_ms: UnixMillis,
    /// Who (operator token name, agent id, `hub`).
    #[n(2)]
    pub actor: String,
    /// What (`workflow.apply`, `agent.revoke`, ...).
    #[n(3)]
    pub action: String,
    /// On what (workflow name, agent id, ...).
    #[n(4)]
    pub target: String,
    /// Details for humans.
    #[n(5)]
    pub detail: String,
}

/// Filter of [`Store::runs`]. Runs are listed newest first (by creation time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunQuery {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this state.
    pub state: Option<RunState>,
    /// Only runs created at or after this time.
    pub since_ms: Option<UnixMillis>,
    /// At most this many.
    pub limit: usize,
}

impl Default for RunQuery {
    fn default() -> Self {
        RunQuery {
            workflow: None,
            agent: None,
            state: None,
            since_ms: None,
            limit: 1000,
        }
    }
}

/// A run as the hub holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct HubRun {
    /// The agent that made it.
    pub agent_id: String,
    /// Latest snapshot.
    pub record: RunRecord,
}

/// The hub's durable store. See the [module docs](self). `Send + Sync`; methods block on disk
/// I/O, so async callers use `spawn_blocking`.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The label selector `target` matches `labels` when every (k, v) of it is in `labels`.
pub fn selector_matches(target: &[(String, String)], labels: &[(String, String)]) -> bool {
    target
        .iter()
        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v.dedup();
    v
}

/// Whether a task of the run ended `failed` (task records reach the hub before the run's end).
fn had_failed_task(
    tasks: &impl redb::ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    agent_id: &str,
    run_id: &str,
) -> Result<bool, StoreError> {
    for e in tasks.range((agent_id, run_id, "")..)? {
        let (k, v) = e?;
        let (a, r, _) = k.value();
        if a != agent_id || r != run_id {
            break;
        }
        let t: TaskInstanceRecord = decode(v.value(), "task_instances", run_id)?;
        if t.state == outpost_common::record::TaskState::Failed {
            return Ok(true);
        }
    }
    Ok(false)
}

fn audit_in(
    txn: &WriteTransaction,
    at_ms: UnixMillis,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<u64, StoreError> {
    let mut t = txn.open_table(AUDIT)?;
    let seq = t.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    let entry = AuditEntry {
        seq,
        at_ms,
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        detail: detail.into(),
    };
    t.insert(seq, encode(&entry)?.as_slice())?;
    Ok(seq)
}

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
    /// Open (or create, mode 0600) the store at `path` and apply pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let file_err = |source| StoreError::File {
            path: path.to_path_buf(),
            source,
        };
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(file_err)?;
        if file.metadata().map_err(file_err)?.permissions().mode() & 0o777 != 0o600 {
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(file_err)?;
        }
        drop(file);
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                path: path.to_path_buf(),
            },
            other => other.into(),
        })?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        let txn = store.begin_write()?;
        if schema::migrate(&txn)? < schema::SCHEMA_VERSION {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(store)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }

    // ----- workflows ------------------------------------------------------------------------

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
                        StoreError::Inconsistent(format!("{} v{} missing", new.name, m.latest))
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
                    .ok_or_else(|| StoreError::Inconsistent("applied version missing".into()))?;
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
    pub fn rollback(
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
    pub fn workflows(&self) -> Result<Vec<(String, WorkflowMeta)>, StoreError> {
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
    pub fn workflow(&self, name: &str) -> Result<WorkflowMeta, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(WORKFLOWS)?;
        let v = t
            .get(name)?
            .ok_or_else(|| StoreError::NoWorkflow(name.into()))?;
        decode(v.value(), "workflows", name)
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
        decode(v.value(), "workflow_versions", name)
    }

    /// Every version of a workflow, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<StoredVersion>, StoreError> {
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
    pub fn latest_versions(&self) -> Result<Vec<(StoredVersion, WorkflowMeta)>, StoreError> {
        let mut out = Vec::new();
        for (name, meta) in self.workflows()? {
            out.push((self.version(&name, Some(meta.latest))?, meta));
        }
        Ok(out)
    }

    /// Pause or resume a workflow at the hub. Returns whether it changed.
    pub fn set_paused(
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

    // ----- tokens and agents ----------------------------------------------------------------

    /// Create a single-use bootstrap token; returns (token id, secret). Only blake3(secret) is
    /// stored.
    pub fn create_token(
        &self,
        labels: Vec<(String, String)>,
        expires_ms: UnixMillis,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<(String, String), StoreError> {
        self.create_token_uses(labels, expires_ms, 1, actor, now_ms)
    }

    /// Create a bootstrap token that enrolls up to `max_uses` agents (one each use).
    pub fn create_token_uses(
        &self,
        labels: Vec<(String, String)>,
        expires_ms: UnixMillis,
        max_uses: u32,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<(String, String), StoreError> {
        let id = hex::encode(rand::random::<[u8; 8]>());
        let secret = hex::encode(rand::random::<[u8; 24]>());
        let rec = TokenRecord {
            id: id.clone(),
            secret_hash: blake3::hash(secret.as_bytes()).to_hex().to_string(),
            labels: sorted(labels),
            created_ms: now_ms,
            expires_ms,
            used_ms: None,
            used_by: None,
            max_uses: Some(max_uses.max(1)),
            uses: Some(0),
            revoked_ms: None,
        };
        let txn = self.begin_write()?;
        txn.open_table(TOKENS)?
            .insert(id.as_str(), encode(&rec)?.as_slice())?;
        let detail = format!("uses {}", max_uses.max(1));
        audit_in(&txn, now_ms, actor, "token.create", &id, &detail)?;
        txn.commit()?;
        Ok((id, secret))
    }

    fn valid_token(
        t: &impl ReadableTable<&'static str, &'static [u8]>,
        id: &str,
        secret: &str,
        now_ms: UnixMillis,
    ) -> Result<TokenRecord, StoreError> {
        let rec: TokenRecord = match t.get(id)? {
            Some(v) => decode(v.value(), "tokens", id)?,
            None => return Err(StoreError::BadToken),
        };
        // blake3::Hash equality is constant-time.
        let same = blake3::Hash::from_hex(&rec.secret_hash)
            .is_ok_and(|stored| stored == blake3::hash(secret.as_bytes()));
        if !same || !rec.usable(now_ms) {
            return Err(StoreError::BadToken);
        }
        Ok(rec)
    }

    /// Check a token without using it (to learn its labels before issuing a certificate).
    pub fn check_token(
        &self,
        id: &str,
        secret: &str,
        now_ms: UnixMillis,
    ) -> Result<TokenRecord, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(TOKENS)?;
        Self::valid_token(&t, id, secret, now_ms)
    }

    /// Redeem a token and add the agent, atomically: the token must be valid (unused,
    /// unexpired, right secret) and the agent id new.
    pub fn enroll(
        &self,
        token_id: &str,
        secret: &str,
        agent: AgentRecord,
        now_ms: UnixMillis,
    ) -> Result<AgentRecord, StoreError> {
        let txn = self.begin_write()?;
        {
            let mut tokens = txn.open_table(TOKENS)?;
            let mut rec = Self::valid_token(&tokens, token_id, secret, now_ms)?;
            let mut agents = txn.open_table(AGENTS)?;
            if agents.get(agent.id.as_str())?.is_some() {
                return Err(StoreError::AgentExists(agent.id));
            }
            rec.uses = Some(rec.used() + 1);
            rec.used_ms = Some(now_ms);
            rec.used_by = Some(agent.id.clone());
            tokens.insert(token_id, encode(&rec)?.as_slice())?;
            agents.insert(agent.id.as_str(), encode(&agent)?.as_slice())?;
        }
        audit_in(
            &txn,
            now_ms,
            &agent.id,
            "agent.enroll",
            &agent.id,
            &format!("token {token_id}"),
        )?;
        txn.commit()?;
        Ok(agent)
    }

    /// Every bootstrap token (used, expired and revoked ones included), by id.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(TOKENS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(decode(v.value(), "tokens", k.value())?);
        }
        Ok(out)
    }

    /// Revoke a bootstrap token: it enrolls no more agents (those it enrolled stay). Returns
    /// whether it changed (false: already revoked); an unknown id is [`StoreError::NoToken`].
    pub fn revoke_token(
        &self,
        id: &str,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let changed = {
            let mut t = txn.open_table(TOKENS)?;
            let mut rec: TokenRecord = match t.get(id)? {
                Some(v) => decode(v.value(), "tokens", id)?,
                None => return Err(StoreError::NoToken(id.into())),
            };
            if rec.revoked_ms.is_some() {
                false
            } else {
                rec.revoked_ms = Some(now_ms);
                t.insert(id, encode(&rec)?.as_slice())?;
                true
            }
        };
        if changed {
            audit_in(&txn, now_ms, actor, "token.revoke", id, "")?;
        }
        txn.commit()?;
        Ok(changed)
    }

    /// All agents, by id.
    pub fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(AGENTS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push(decode(v.value(), "agents", k.value())?);
        }
        Ok(out)
    }

    /// One agent.
    pub fn agent(&self, id: &str) -> Result<AgentRecord, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(AGENTS)?;
        let v = t.get(id)?.ok_or_else(|| StoreError::NoAgent(id.into()))?;
        decode(v.value(), "agents", id)
    }

    fn update_agent<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut AgentRecord) -> R,
        audit: Option<(&str, &str, UnixMillis)>,
    ) -> Result<R, StoreError> {
        let txn = self.begin_write()?;
        let r = {
            let mut t = txn.open_table(AGENTS)?;
            let mut rec: AgentRecord = match t.get(id)? {
                Some(v) => decode(v.value(), "agents", id)?,
                None => return Err(StoreError::NoAgent(id.into())),
            };
            let r = f(&mut rec);
            t.insert(id, encode(&rec)?.as_slice())?;
            r
        };
        if let Some((actor, action, at)) = audit {
            audit_in(&txn, at, actor, action, id, "")?;
        }
        txn.commit()?;
        Ok(r)
    }

    /// Revoke an agent (idempotent). Returns whether it was newly revoked.
    pub fn revoke(&self, id: &str, actor: &str, now_ms: UnixMillis) -> Result<bool, StoreError> {
        self.update_agent(
            id,
            |a| {
                if a.revoked_ms.is_some() {
                    false
                } else {
                    a.revoked_ms = Some(now_ms);
                    true
                }
            },
            Some((actor, "agent.revoke", now_ms)),
        )
    }

    /// Record an agent's Hello: software version, active workflows, last seen. Refuses a
    /// revoked agent.
    pub fn agent_hello(
        &self,
        id: &str,
        software_version: &str,
        active: Vec<ActiveWorkflow>,
        now_ms: UnixMillis,
    ) -> Result<AgentRecord, StoreError> {
        let rec = self.update_agent(
            id,
            |a| {
                if a.revoked_ms.is_none() {
                    a.software_version = software_version.into();
                    a.active = active;
                    a.last_seen_ms = Some(now_ms);
                }
                a.clone()
            },
            None,
        )?;
        if rec.revoked_ms.is_some() {
            return Err(StoreError::Revoked(id.into()));
        }
        self.note_held(id, &rec.active, now_ms)?;
        Ok(rec)
    }

    /// Remember that `agent` holds these versions locally (reported active at Hello).
    pub fn note_held(
        &self,
        agent: &str,
        active: &[ActiveWorkflow],
        now_ms: UnixMillis,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        let mut changed = false;
        {
            let mut t = txn.open_table(schema::AGENT_VERSIONS)?;
            for a in active.iter().filter(|a| a.version != 0) {
                if t.get((agent, a.workflow.as_str(), a.version))?.is_none() {
                    t.insert((agent, a.workflow.as_str(), a.version), now_ms)?;
                    changed = true;
                }
            }
        }
        if changed {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(())
    }

    /// Whether `agent` is known to hold `version` of `workflow` locally.
    pub fn holds(&self, agent: &str, workflow: &str, version: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(schema::AGENT_VERSIONS)?;
        Ok(t.get((agent, workflow, version))?.is_some())
    }

    /// Record that an agent was heard from.
    pub fn touch_agent(&self, id: &str, now_ms: UnixMillis) -> Result<(), StoreError> {
        self.update_agent(id, |a| a.last_seen_ms = Some(now_ms), None)
    }

    // ----- status ingest --------------------------------------------------------------------

    /// The highest outbox seq of `agent_id` committed here.
    pub fn committed_seq(&self, agent_id: &str) -> Result<u64, StoreError> {
        Ok(self.agent(agent_id)?.committed_seq)
    }

    /// Commit a status batch from `agent_id` in ONE transaction and return the new committed
    /// seq. Entries with seq ≤ the committed seq are ignored (retransmissions); the others must
    /// be in increasing order (else nothing is committed). A gap is committed: the session
    /// ([`outpost_common::sync::HubSession`]) reports it as `HubEvent::Gap`. `Run`/`Task`
    /// entries upsert the (agent, run) records; `Missed` entries are stored under their seq.
    pub fn ingest(&self, agent_id: &str, entries: &[OutboxEntry]) -> Result<u64, StoreError> {
        let txn = self.begin_write()?;
        let committed = {
            let mut agents = txn.open_table(AGENTS)?;
            let mut agent: AgentRecord = match agents.get(agent_id)? {
                Some(v) => decode(v.value(), "agents", agent_id)?,
                None => return Err(StoreError::NoAgent(agent_id.into())),
            };
            if agent.revoked_ms.is_some() {
                return Err(StoreError::Revoked(agent_id.into()));
            }
            let mut runs = txn.open_table(RUNS)?;
            let mut by_id = txn.open_table(RUNS_BY_ID)?;
            let mut by_created = txn.open_table(RUNS_BY_CREATED)?;
            let mut tasks = txn.open_table(TASKS)?;
            let mut missed = txn.open_table(MISSED)?;
            let mut seq = agent.committed_seq;
            let mut rollout_cache: std::collections::HashMap<String, bool> =
                std::collections::HashMap::new();
            for entry in entries {
                if entry.seq <= seq {
                    if entry.seq <= agent.committed_seq {
                        continue;
                    }
                    return Err(StoreError::Refused(format!(
                        "status batch from agent {agent_id} is not in increasing seq order"
                    )));
                }
                seq = entry.seq;
                match &entry.event {
                    StatusEvent::Run(run) => {
                        let key = (agent_id, run.run_id.as_str());
                        let (old_created, old_terminal) = match runs.get(key)? {
                            Some(v) => {
                                let old: RunRecord = decode(v.value(), "runs", &run.run_id)?;
                                (Some(old.created_ms), old.state.is_terminal())
                            }
                            None => (None, false),
                        };
                        if !old_terminal
                            && matches!(run.state, RunState::Succeeded | RunState::Failed)
                        {
                            let active = match rollout_cache.get(&run.workflow) {
                                Some(a) => *a,
                                None => {
                                    let a = pools::has_active_rollout(&txn, &run.workflow)?;
                                    rollout_cache.insert(run.workflow.clone(), a);
                                    a
                                }
                            };
                            if active {
                                pools::enqueue_event(
                                    &txn,
                                    &RolloutEvent {
                                        agent: agent_id.into(),
                                        workflow: run.workflow.clone(),
                                        kind: RolloutEventKind::Run {
                                            version: run.version,
                                            // A run that "succeeded" past a failed task (an
                                            // `all_done` leaf) is a failure for a gate.
                                            succeeded: run.state == RunState::Succeeded
                                                && !had_failed_task(&tasks, agent_id, &run.run_id)?,
                                        },
                                        at_ms: run.ended_ms.unwrap_or(run.created_ms),
                                    },
                                )?;
                            }
                        }
                        if let Some(c) = old_created {
                            by_created.remove((c, agent_id, run.run_id.as_str()))?;
                        }
                        let mut rec = run.clone();
                        rec.agent_id = Some(agent_id.to_string());
                        runs.insert(key, encode(&rec)?.as_slice())?;
                        by_id.insert((run.run_id.as_str(), agent_id), ())?;
                        by_created.insert((run.created_ms, agent_id, run.run_id.as_str()), ())?;
                    }
                    StatusEvent::Task(t) => {
                        tasks.insert(
                            (agent_id, t.run_id.as_str(), t.task_id.as_str()),
                            encode(t)?.as_slice(),
                        )?;
                    }
                    StatusEvent::Missed(m) => {
                        missed.insert((agent_id, entry.seq), encode(m)?.as_slice())?;
                    }
                    StatusEvent::Reverted(r) => {
                        let detail = format!(
                            "reverted v{} -> v{} under probation: {}",
                            r.from_version, r.to_version, r.reason
                        );
                        audit_in(
                            &txn,
                            r.at_ms,
                            agent_id,
                            "agent.revert",
                            &r.workflow,
                            &detail,
                        )?;
                        if pools::has_active_rollout(&txn, &r.workflow)? {
                            pools::enqueue_event(
                                &txn,
                                &RolloutEvent {
                                    agent: agent_id.into(),
                                    workflow: r.workflow.clone(),
                                    kind: RolloutEventKind::Reverted {
                                        from: r.from_version,
                                        to: r.to_version,
                                        reason: r.reason.clone(),
                                    },
                                    at_ms: r.at_ms,
                                },
                            )?;
                        }
                    }
                }
            }
            agent.committed_seq = seq;
            agents.insert(agent_id, encode(&agent)?.as_slice())?;
            seq
        };
        txn.commit()?;
        Ok(committed)
    }

    /// Runs matching `q`, newest first.
    pub fn runs(&self, q: &RunQuery) -> Result<Vec<HubRun>, StoreError> {
        let txn = self.db.begin_read()?;
        let idx = txn.open_table(RUNS_BY_CREATED)?;
        let runs = txn.open_table(RUNS)?;
        let lo = q.since_ms.unwrap_or(i64::MIN);
        let mut out = Vec::new();
        for e in idx.range((lo, "", "")..)?.rev() {
            if out.len() >= q.limit {
                break;
            }
            let (k, _) = e?;
            let (_, agent, run_id) = k.value();
            if q.agent.as_deref().is_some_and(|a| a != agent) {
                continue;
            }
            let v = runs.get((agent, run_id))?.ok_or_else(|| {
                StoreError::Inconsistent(format!("index names missing run {agent}/{run_id}"))
            })?;
            let record: RunRecord = decode(v.value(), "runs", run_id)?;
            if q.workflow.as_deref().is_some_and(|w| w != record.workflow)
                || q.state.is_some_and(|s| s != record.state)
            {
                continue;
            }
            out.push(HubRun {
                agent_id: agent.to_string(),
                record,
            });
        }
        Ok(out)
    }

    /// The agents that hold a run with this id (run ids repeat across agents).
    pub fn run_agents(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(RUNS_BY_ID)?;
        let mut out = Vec::new();
        for e in t.range((run_id, "")..)? {
            let (k, _) = e?;
            let (r, a) = k.value();
            if r != run_id {
                break;
            }
            out.push(a.to_string());
        }
        Ok(out)
    }

    /// Whether a task of the run ended `failed` (its run may still have succeeded: a failed task
    /// followed by an `all_done` leaf).
    pub fn run_had_failed_task(&self, agent_id: &str, run_id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let tasks = txn.open_table(TASKS)?;
        had_failed_task(&tasks, agent_id, run_id)
    }

    /// One run of one agent with its task instances.
    pub fn run(
        &self,
        agent_id: &str,
        run_id: &str,
    ) -> Result<Option<(RunRecord, Vec<TaskInstanceRecord>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let runs = txn.open_table(RUNS)?;
        let Some(v) = runs.get((agent_id, run_id))? else {
            return Ok(None);
        };
        let run: RunRecord = decode(v.value(), "runs", run_id)?;
        let tasks = txn.open_table(TASKS)?;
        let mut out = Vec::new();
        for e in tasks.range((agent_id, run_id, "")..)? {
            let (k, v) = e?;
            let (a, r, _) = k.value();
            if a != agent_id || r != run_id {
                break;
            }
            out.push(decode(v.value(), "task_instances", run_id)?);
        }
        Ok(Some((run, out)))
    }

    /// Missed-firing events of an agent, in seq order.
    pub fn missed(&self, agent_id: &str) -> Result<Vec<(u64, MissedFirings)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(MISSED)?;
        let mut out = Vec::new();
        for e in t.range((agent_id, 0)..=(agent_id, u64::MAX))? {
            let (k, v) = e?;
            out.push((k.value().1, decode(v.value(), "missed_firings", agent_id)?));
        }
        Ok(out)
    }

    // ----- assignments ----------------------------------------------------------------------

    /// Bring the issued assignments of `agent_id` in line with `desired`, in one transaction:
    /// a workflow whose desired (version, hash) differs from the last issued assignment gets a
    /// new one with the next epoch; a workflow assigned before but no longer desired gets a
    /// removal (once). Returns the current assignment of every workflow ever assigned to the
    /// agent (removals included), by workflow name.
    pub fn sync_assignments(
        &self,
        agent_id: &str,
        desired: &[DesiredVersion],
        signer: &SigningKey,
        now_ms: UnixMillis,
    ) -> Result<Vec<IssuedAssignment>, StoreError> {
        let txn = self.begin_write()?;
        let mut minted = false;
        let out = {
            let mut t = txn.open_table(ASSIGNMENTS)?;
            let mut current: Vec<IssuedAssignment> = Vec::new();
            for e in t.range((agent_id, "")..)? {
                let (k, v) = e?;
                if k.value().0 != agent_id {
                    break;
                }
                current.push(decode(v.value(), "assignments", agent_id)?);
            }
            // What the agent reported accepting (Hello, deploy results): a hub restored from an
            // older backup continues above it (`sync::next_epoch`).
            let accepted: std::collections::HashMap<String, u64> =
                match txn.open_table(AGENTS)?.get(agent_id)? {
                    Some(v) => decode::<AgentRecord>(v.value(), "agents", agent_id)?
                        .active
                        .into_iter()
                        .map(|a| (a.workflow, a.epoch))
                        .collect(),
                    None => Default::default(),
                };
            let accepted_epoch = |w: &str| accepted.get(w).copied().unwrap_or(0);
            let mut out = Vec::new();
            let mint = |workflow: &str,
                        prev: Option<&IssuedAssignment>,
                        version: u64,
                        hash: &str,
                        remove: bool,
                        extra: Option<&DesiredVersion>|
             -> Result<IssuedAssignment, StoreError> {
                let epoch = outpost_common::sync::next_epoch(
                    prev.map(|p| p.epoch).unwrap_or(0),
                    accepted_epoch(workflow),
                );
                let body = Assignment {
                    agent_id: agent_id.into(),
                    workflow: workflow.into(),
                    version,
                    content_hash: hash.into(),
                    epoch,
                    issued_ms: now_ms,
                    remove,
                    previous_version: extra.and_then(|d| d.previous_version),
                    probation: extra.and_then(|d| d.probation).map(|(runs, max_failures)| {
                        outpost_common::proto::Probation { runs, max_failures }
                    }),
                    rollout_id: extra.and_then(|d| d.rollout_id.clone()),
                };
                Ok(IssuedAssignment {
                    workflow: workflow.into(),
                    epoch,
                    version,
                    content_hash: hash.into(),
                    remove,
                    signed: signer.sign_assignment(&body),
                    issued_ms: now_ms,
                })
            };
            for d in desired {
                let prev = current.iter().find(|c| c.workflow == d.workflow);
                let same = prev.is_some_and(|p| {
                    !p.remove
                        && p.version == d.version
                        && p.content_hash == d.content_hash
                        && !outpost_common::sync::issued_is_stale(
                            p.epoch,
                            accepted_epoch(&d.workflow),
                        )
                });
                let issued = if same {
                    prev.cloned()
                        .ok_or_else(|| StoreError::Inconsistent("prev".into()))?
                } else {
                    minted = true;
                    mint(
                        &d.workflow,
                        prev,
                        d.version,
                        &d.content_hash,
                        false,
                        Some(d),
                    )?
                };
                out.push(issued);
            }
            for c in &current {
                if desired.iter().any(|d| d.workflow == c.workflow) {
                    continue;
                }
                if c.remove
                    && !outpost_common::sync::issued_is_stale(c.epoch, accepted_epoch(&c.workflow))
                {
                    out.push(c.clone());
                } else {
                    minted = true;
                    out.push(mint(&c.workflow, Some(c), 0, "", true, None)?);
                }
            }
            if minted {
                for a in &out {
                    t.insert((agent_id, a.workflow.as_str()), encode(a)?.as_slice())?;
                }
            }
            out.sort_by(|a, b| a.workflow.cmp(&b.workflow));
            out
        };
        if minted {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(out)
    }

    /// The last assignment issued for (agent, workflow).
    pub fn assignment(
        &self,
        agent_id: &str,
        workflow: &str,
    ) -> Result<Option<IssuedAssignment>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ASSIGNMENTS)?;
        match t.get((agent_id, workflow))? {
            Some(v) => Ok(Some(decode(v.value(), "assignments", agent_id)?)),
            None => Ok(None),
        }
    }

    /// Record an agent's deploy result (the last per (agent, workflow)); an accepted one also
    /// updates the agent's reported active version.
    pub fn record_deploy_result(
        &self,
        agent_id: &str,
        result: DeployResultRecord,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut agents = txn.open_table(AGENTS)?;
            let mut agent: AgentRecord = match agents.get(agent_id)? {
                Some(v) => decode(v.value(), "agents", agent_id)?,
                None => return Err(StoreError::NoAgent(agent_id.into())),
            };
            if result.rejected.is_none() {
                let assignment = txn
                    .open_table(ASSIGNMENTS)?
                    .get((agent_id, result.workflow.as_str()))?
                    .map(|v| decode::<IssuedAssignment>(v.value(), "assignments", agent_id))
                    .transpose()?;
                let highest = agent
                    .active
                    .iter()
                    .filter(|a| a.workflow == result.workflow)
                    .map(|a| a.highest_version.unwrap_or(a.version))
                    .max()
                    .unwrap_or(0)
                    .max(result.version);
                agent.active.retain(|a| a.workflow != result.workflow);
                if !assignment.is_some_and(|a| a.remove && a.epoch == result.epoch) {
                    agent.active.push(ActiveWorkflow {
                        workflow: result.workflow.clone(),
                        version: result.version,
                        epoch: result.epoch,
                        paused: false,
                        highest_version: Some(highest),
                    });
                    agent.active.sort_by(|a, b| a.workflow.cmp(&b.workflow));
                }
                agent.last_seen_ms = Some(result.at_ms);
                agents.insert(agent_id, encode(&agent)?.as_slice())?;
                if result.version != 0 {
                    txn.open_table(schema::AGENT_VERSIONS)?.insert(
                        (agent_id, result.workflow.as_str(), result.version),
                        result.at_ms,
                    )?;
                }
            }
            txn.open_table(DEPLOY_RESULTS)?.insert(
                (agent_id, result.workflow.as_str()),
                encode(&result)?.as_slice(),
            )?;
            if pools::has_active_rollout(&txn, &result.workflow)? {
                let kind = match &result.rejected {
                    None => RolloutEventKind::Activated {
                        version: result.version,
                    },
                    Some(r) => RolloutEventKind::Rejected {
                        version: result.version,
                        reason: r.clone(),
                    },
                };
                pools::enqueue_event(
                    &txn,
                    &RolloutEvent {
                        agent: agent_id.into(),
                        workflow: result.workflow.clone(),
                        kind,
                        at_ms: result.at_ms,
                    },
                )?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The last deploy result of every workflow on an agent.
    pub fn deploy_results(&self, agent_id: &str) -> Result<Vec<DeployResultRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(DEPLOY_RESULTS)?;
        let mut out = Vec::new();
        for e in t.range((agent_id, "")..)? {
            let (k, v) = e?;
            if k.value().0 != agent_id {
                break;
            }
            out.push(decode(v.value(), "deploy_results", agent_id)?);
        }
        Ok(out)
    }

    // ----- signing keys and audit -----------------------------------------------------------

    /// Append a signing key to the history (idempotent for the current key).
    pub fn record_signing_key(&self, key: KeyRecord, actor: &str) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(SIGNING_KEYS)?;
            let last = match t.last()? {
                Some((k, v)) => Some((
                    k.value(),
                    decode::<KeyRecord>(v.value(), "signing_keys", k.value())?,
                )),
                None => None,
            };
            if last.as_ref().is_some_and(|(_, r)| r.key_id == key.key_id) {
                return Ok(());
            }
            let idx = last.map(|(k, _)| k + 1).unwrap_or(0);
            t.insert(idx, encode(&key)?.as_slice())?;
        }
        audit_in(&txn, key.created_ms, actor, "keys.add", &key.key_id, "")?;
        txn.commit()?;
        Ok(())
    }

    /// The signing-key history, oldest first.
    pub fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SIGNING_KEYS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push(decode(v.value(), "signing_keys", k.value())?);
        }
        Ok(out)
    }

    /// The endorsements leading from `trusted_key_id` to the current key, in order (empty when
    /// the agent trusts the current key or a key the hub does not know).
    pub fn key_chain_from(&self, trusted_key_id: &str) -> Result<Vec<KeyEndorsement>, StoreError> {
        let keys = self.signing_keys()?;
        let Some(pos) = keys.iter().position(|k| k.key_id == trusted_key_id) else {
            return Ok(Vec::new());
        };
        Ok(keys[pos + 1..]
            .iter()
            .filter_map(|k| k.endorsement.clone())
            .collect())
    }

    /// Append an audit entry.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        now_ms: UnixMillis,
    ) -> Result<u64, StoreError> {
        let txn = self.begin_write()?;
        let seq = audit_in(&txn, now_ms, actor, action, target, detail)?;
        txn.commit()?;
        Ok(seq)
    }

    /// The newest `limit` audit entries, oldest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for e in t.iter()?.rev().take(limit) {
            let (k, v) = e?;
            out.push(decode(v.value(), "audit", k.value())?);
        }
        out.reverse();
        Ok(out)
    }
}
