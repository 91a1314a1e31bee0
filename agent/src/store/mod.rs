//! The agent's durable store: workflows, runs, task instances and the status outbox, in one redb
//! file.
//!
//! The daemon and the `run` command go through [`Store`]; nothing else opens the file. Every
//! write is one redb write transaction with two-phase commit
//! ([`redb::WriteTransaction::set_two_phase_commit`]), so a crash leaves the file either before
//! or after a [`Store::commit`], never in between.
//!
//! # Tables
//!
//! All tables are defined in [`schema`]. "cbor T" is the minicbor encoding (explicit indices) of
//! `T`.
//!
//! | table               | key                              | value                                  |
//! |---------------------|----------------------------------|----------------------------------------|
//! | `meta`              | `&str` (`schema_version`, `last_seq`, `acked_seq`) | `u64`                |
//! | `agent_meta`        | `&str`                           | `&[u8]` (opaque, owned by the caller)  |
//! | `workflow_versions` | `(name: &str, version: u64)`     | cbor [`WorkflowVersion`]               |
//! | `workflow_state`    | `name: &str`                     | cbor `WorkflowState` (removed, paused, last fired) |
//! | `runs`              | `run_id: &str`                   | cbor [`RunRecord`]                     |
//! | `runs_by_created`   | `(created_ms: i64, run_id: &str)` | `()`                                  |
//! | `runs_by_workflow`  | `(workflow: &str, created_ms: i64, run_id: &str)` | `()`                  |
//! | `runs_unfinished`   | `run_id: &str` (non-terminal runs only) | `()`                            |
//! | `task_instances`    | `(run_id: &str, task_id: &str)`  | cbor [`TaskInstanceRecord`] (attempts, outputs) |
//! | `missed_firings`    | `(workflow: &str, seq: u64)`     | cbor [`MissedFirings`]                 |
//! | `outbox`            | `seq: u64`                       | `(run_ref: &str, cbor StatusEvent)` (`run_ref` empty for `Missed`) |
//! | `outbox_run_refs`   | `(run_id: &str, seq: u64)`       | `()`                                   |
//! | `hook_jobs`         | `key: &str` (run, task, attempt, event, kind) | cbor `HookJob`            |
//! | `hook_jobs_unfinished` | `key: &str` (jobs not finished) | `()`                                 |
//! | `deadline_misses`   | `(run_id: &str, task: &str, kind: &str)` | `detected_ms: i64`             |
//!
//! # Invariants
//!
//! - **A state change and its outbox event are committed in one transaction.** A `Run` or `Task`
//!   [`StatusEvent`] in a [`Batch`] upserts the record *and* appends the outbox entry in the same
//!   write transaction; there is no API that writes one without the other.
//! - **Outbox sequence numbers** are assigned from `meta.last_seq`, strictly increasing across
//!   commits and reopens, without gaps; `outbox` holds exactly the seqs in
//!   `acked_seq + 1 ..= last_seq`.
//! - **The outbox is never pruned before acknowledgement**: entries leave it only through
//!   [`Store::ack_outbox`], and [`Store::prune`] never deletes a run that an outbox entry (i.e. an
//!   unacknowledged one) still refers to, nor a run that is not terminal.
//! - The index tables (`runs_by_created`, `runs_by_workflow`, `runs_unfinished`,
//!   `outbox_run_refs`) are maintained in the same transaction as the table they index.
//! - **A hook job is committed with the event that makes it** ([`Batch::hook_jobs`]) and only
//!   when its key is absent: one job per event. It leaves `hook_jobs_unfinished` only through
//!   [`Store::finish_hook_job`]; retention keeps a run while a job of it is unfinished.
//! - Stored bytes that fail to decode surface as [`DbError::Decode`], never as a panic.

#[cfg(test)]
mod hook_tests;
mod hooks;
#[cfg(test)]
mod power_loss;
mod resend;
mod retention;
pub mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Duration;

use minicbor::{Decode, Encode};
use outpost_common::record::{
    MissedFirings, OutboxEntry, RunId, RunRecord, RunState, StatusEvent, TaskInstanceRecord,
    UnixMillis,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};

use outpost_agent_core::hooks::HookJob;
use outpost_common::record::DeadlineKind;
pub(crate) use outpost_common::store::{DbError, decode, encode};
use outpost_common::store::{open_error, prepare_private_file};
use schema::{
    AGENT_META, DEADLINE_MISSES, HOOK_JOBS, HOOK_JOBS_UNFINISHED, META, META_ACKED_SEQ,
    META_LAST_SEQ, MISSED, OUTBOX, OUTBOX_RUN_REFS, RUNS, RUNS_BY_CREATED, RUNS_BY_WORKFLOW,
    RUNS_UNFINISHED, SCHEMA_VERSION, TASKS, WORKFLOW_STATE, WORKFLOW_VERSIONS,
};

/// Page cache for the store; the ledger is small and the agent runs on small machines.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory that should hold the store file could not be created.
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The store file, its schema or a stored record (shared with the hub store).
    #[error(transparent)]
    Db(DbError),
    /// A workflow version was put twice with different contents.
    #[error("workflow {name} version {version} already exists with a different content hash")]
    VersionConflict {
        /// Workflow name.
        name: String,
        /// The version number.
        version: u64,
    },
    /// The hub acknowledged a sequence number that was never assigned.
    #[error("cannot acknowledge outbox seq {requested}: the last assigned seq is {last}")]
    AckBeyondLast {
        /// The acknowledged seq.
        requested: u64,
        /// The last assigned seq.
        last: u64,
    },
    /// The store file is missing or empty where a store was created before (its marker says
    /// so): the history is gone, and the agent does not start over silently.
    #[error(
        "store {path} is {found}, but {marker} records that a store was created here: its history \
         (runs, outbox, identity) would be lost silently. Restore {path} from a backup; or, to \
         start over deliberately with an empty store, delete {marker} and start again"
    )]
    Missing {
        /// The store file.
        path: PathBuf,
        /// What was found: "missing" or "empty (0 bytes)".
        found: &'static str,
        /// The marker file.
        marker: PathBuf,
    },
    /// The store is closed after a write error, until [`Store::reopen`] succeeds.
    #[error(
        "store {path} is closed after a write error (is the disk full?); it is reopened and the write retried"
    )]
    Closed {
        /// The file.
        path: PathBuf,
    },
}

outpost_common::impl_from_db_error!(StoreError, Db);

/// One stored version of a workflow definition: the source exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WorkflowVersion {
    /// Workflow name.
    #[n(0)]
    pub name: String,
    /// Version number; higher is newer.
    #[n(1)]
    pub version: u64,
    /// Hash of `source` (hex), to tell a re-put of the same version from a conflicting one.
    #[n(2)]
    pub content_hash: String,
    /// The file's bytes.
    #[n(3)]
    pub source: Vec<u8>,
    /// `"yaml"` or `"toml"`.
    #[n(4)]
    pub format: String,
    /// A file path, or `"hub"`.
    #[n(5)]
    pub origin: String,
    /// When this version was stored.
    #[n(6)]
    pub created_ms: UnixMillis,
}

/// Per-workflow mutable state (`workflow_state` table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub(crate) struct WorkflowState {
    /// Removed by the operator; history is kept, the workflow is not active.
    #[n(0)]
    pub removed: bool,
    #[n(1)]
    pub paused: bool,
    /// The planner's last fired instant.
    #[n(2)]
    pub last_fired_ms: Option<UnixMillis>,
}

/// Everything one [`Store::commit`] writes, in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Status events: each `Run`/`Task` upserts its record, each `Missed` is recorded; every
    /// event is appended to the outbox under the next seq, in order.
    pub events: Vec<StatusEvent>,
    /// Planner state: the last fired instant (ms) per workflow.
    pub last_fired: Vec<(String, UnixMillis)>,
    /// New workflow versions.
    pub workflow_puts: Vec<WorkflowVersion>,
    /// Pause (`true`) or resume (`false`) workflows.
    pub paused: Vec<(String, bool)>,
    /// Entries of the agent's own key/value table (`agent_meta`), written in the same
    /// transaction (e.g. a workflow's anti-rollback state with the version it activates).
    pub meta_puts: Vec<(String, Vec<u8>)>,
    /// Hook jobs made by this batch's events: each is written only if its key is absent (one
    /// job per event, however often the event's snapshot is committed).
    pub hook_jobs: Vec<HookJob>,
}

impl Batch {
    /// Append `other`'s writes after this batch's (one transaction that does both, in order).
    pub fn append(&mut self, other: Batch) {
        self.events.extend(other.events);
        self.last_fired.extend(other.last_fired);
        self.workflow_puts.extend(other.workflow_puts);
        self.paused.extend(other.paused);
        self.meta_puts.extend(other.meta_puts);
        self.hook_jobs.extend(other.hook_jobs);
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.last_fired.is_empty()
            && self.workflow_puts.is_empty()
            && self.paused.is_empty()
            && self.meta_puts.is_empty()
            && self.hook_jobs.is_empty()
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// The highest outbox seq after the commit (the last event's seq if the batch had events).
    pub last_seq: u64,
}

/// Which runs [`Store::runs`] lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// At most this many runs.
    pub limit: usize,
    /// Only runs in one of these states.
    pub states: Option<Vec<RunState>>,
}

impl Default for RunFilter {
    /// All runs, no limit.
    fn default() -> Self {
        RunFilter {
            workflow: None,
            limit: usize::MAX,
            states: None,
        }
    }
}

/// Retention policy for [`Store::prune`]. A run is pruned when it is terminal, no unacknowledged
/// outbox entry refers to it, and it matches either rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Prune runs that ended (or, without an end time, were created) more than this long ago.
    pub max_age: Option<Duration>,
    /// Keep only the newest N runs of each workflow (by creation time, counting runs of any
    /// state); prune older terminal ones.
    pub max_runs_per_workflow: Option<usize>,
}

/// The upper bound of all tuple keys whose first element is `prefix`: the next string after
/// `prefix` in byte order.
fn successor(prefix: &str) -> String {
    format!("{prefix}\0")
}

/// The agent's durable store. See the [module docs](self).
///
/// `Store` is `Send + Sync`; share it behind an `Arc`. Every method blocks on disk I/O (a write
/// waits for two fsyncs), so async callers should use `spawn_blocking`. Writes are serialised by
/// redb: one write transaction at a time.
pub struct Store {
    /// `None` only while [`Store::reopen`] replaces it (or after a reopen failed).
    db: std::sync::RwLock<Option<Database>>,
    path: PathBuf,
    repaired: bool,
    /// Whether [`Store::reopen`] can open the file again (not for a test backend).
    file_backed: bool,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
};

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (or create) the store at `path`: creates the parent directories and the file with
    /// mode 0600, then applies pending migrations. Refuses a file from a newer schema with
    /// [`DbError::SchemaTooNew`] and a file already open with [`DbError::AlreadyOpen`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_at(path, SCHEMA_VERSION)
    }

    /// Open, migrating up to `target` only (tests build old stores with it).
    fn open_at(path: &Path, target: u64) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::private_fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let file_err = |source| DbError::File {
            path: path.to_path_buf(),
            source,
        };
        let marker = marker_path(path);
        let found = match fs::metadata(path) {
            Ok(m) if m.len() > 0 => None,
            Ok(_) => Some("empty (0 bytes)"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some("missing"),
            Err(e) => return Err(file_err(e).into()),
        };
        if let Some(found) = found
            && marker.exists()
        {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
                found,
                marker,
            });
        }
        prepare_private_file(path)?;
        // A file created just now (none was there, and no marker says one should be) has nothing
        // to repair: the open that detects an unclean shutdown is skipped.
        let fresh = found.is_some();
        let store = match Self::open_db(path, target, fresh, |b| b.create(path)) {
            Ok(mut s) => {
                s.file_backed = true;
                Ok(s)
            }
            Err(e) => Err(e),
        };
        let store = match store {
            // No marker: the file's creation never completed (a power loss during the very
            // first start leaves a torn header). Nothing was ever acknowledged from it; keep it
            // aside rather than delete it, and create the store again.
            Err(StoreError::Db(DbError::Redb(e))) if !marker.exists() => {
                let aside = path.with_file_name(format!(
                    "{}.unreadable.{}",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    chrono::Utc::now().timestamp()
                ));
                tracing::warn!(
                    path = %path.display(),
                    aside = %aside.display(),
                    "the store file is unreadable ({e}) and was never completely created: it is \
                     kept aside and a new store is created"
                );
                fs::rename(path, &aside).map_err(file_err)?;
                return Self::open_at(path, target);
            }
            other => other?,
        };
        if !marker.exists() {
            // From now on a missing or empty store file here is an error, not a fresh start.
            write_marker(&marker).map_err(|source| DbError::File {
                path: marker.clone(),
                source,
            })?;
        }
        Ok(store)
    }

    /// Open the database `create` makes with the store's builder settings (the file, or a test
    /// backend), then migrate up to `target`. `path` names it in messages.
    fn open_db(
        path: &Path,
        target: u64,
        fresh: bool,
        create: impl Fn(&redb::Builder) -> Result<Database, redb::DatabaseError>,
    ) -> Result<Store, StoreError> {
        let opened = |check: bool| {
            let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let set = flag.clone();
            let mut builder = redb::Builder::new();
            builder
                .set_cache_size(CACHE_BYTES)
                .set_check_integrity_on_open(check)
                .set_repair_callback(move |_| {
                    set.store(true, std::sync::atomic::Ordering::Relaxed)
                });
            let db = create(&builder).map_err(|e| open_error(e, path, "agent"));
            (db, flag.load(std::sync::atomic::Ordering::Relaxed))
        };
        // First a plain open, to learn whether the file was closed cleanly (the check below
        // runs the repair callback on every open, so it cannot tell). A damaged file may make
        // redb panic here: that counts as "needed a repair".
        let repaired = !fresh
            && match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| opened(false))) {
                Ok((Ok(db), repaired)) => {
                    drop(db);
                    repaired
                }
                Ok((Err(e @ DbError::AlreadyOpen { .. }), _)) => return Err(e.into()),
                Ok((Err(_), _)) | Err(_) => true,
            };
        // Then the open that is kept: the whole file is checked (checksums, tree structure)
        // before it is trusted; a file that fails is repaired from its last good commit, or
        // refused as corrupted.
        let db = opened(true).0?;
        if repaired {
            tracing::warn!(
                path = %path.display(),
                "the store was not closed cleanly (a crash or power loss); it was checked and repaired"
            );
        }
        let store = Store {
            db: std::sync::RwLock::new(Some(db)),
            path: path.to_path_buf(),
            repaired,
            file_backed: false,
        };
        let txn = store.begin_write()?;
        let found = schema::MIGRATIONS.migrate(&txn, target)?;
        if found < target {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(store)
    }

    /// Open a store over a redb storage backend instead of a file (the power-loss tests).
    #[cfg(test)]
    pub(crate) fn open_backend(
        backend: impl redb::StorageBackend + Clone,
    ) -> Result<Store, StoreError> {
        Self::open_db(Path::new("<test backend>"), SCHEMA_VERSION, false, |b| {
            b.create_with_backend(backend.clone())
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Did opening the file need a repair (it was not closed cleanly: a crash, a power loss or
    /// an exit before the last handle was dropped)? Committed data survives either way; the
    /// repair only rebuilds redb's allocator state, which takes longer the bigger the file.
    pub fn was_repaired(&self) -> bool {
        self.repaired
    }

    fn db(&self) -> Result<std::sync::RwLockReadGuard<'_, Option<Database>>, StoreError> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err(StoreError::Closed {
                path: self.path.clone(),
            });
        }
        Ok(guard)
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        let guard = self.db()?;
        match guard.as_ref() {
            Some(db) => Ok(db.begin_read()?),
            None => Err(StoreError::Closed {
                path: self.path.clone(),
            }),
        }
    }

    /// Close the file and open it again. After a failed write (a full disk), redb refuses every
    /// further operation on the open file until it is reopened; the committer reopens it before
    /// it retries. Committed data is as it was (the open checks and, if needed, repairs the
    /// file); on failure the store stays closed (every call fails) until a reopen succeeds.
    pub fn reopen(&self) -> Result<(), StoreError> {
        if !self.file_backed {
            return Err(StoreError::Closed {
                path: self.path.clone(),
            });
        }
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        drop(guard.take());
        *guard = Some(
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .set_check_integrity_on_open(true)
                .create(&self.path)?,
        );
        Ok(())
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let guard = self.db()?;
        let Some(db) = guard.as_ref() else {
            return Err(StoreError::Closed {
                path: self.path.clone(),
            });
        };
        let mut txn = db.begin_write()?;
        drop(guard);
        txn.set_two_phase_commit(true);
        Ok(txn)
    }

    /// Commit a batch in one two-phase write transaction. An empty batch writes nothing.
    pub fn commit(&self, batch: Batch) -> Result<CommitInfo, StoreError> {
        if batch.is_empty() {
            return Ok(CommitInfo {
                last_seq: self.last_seq()?,
            });
        }
        let txn = self.begin_write()?;
        let last_seq = {
            let mut meta = txn.open_table(META)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut refs = txn.open_table(OUTBOX_RUN_REFS)?;
            let mut tasks = txn.open_table(TASKS)?;
            let mut missed = txn.open_table(MISSED)?;
            let mut runs = RunTables::open(&txn)?;
            let mut deadlines = txn.open_table(DEADLINE_MISSES)?;
            let mut seq = meta.get(META_LAST_SEQ)?.map(|g| g.value()).unwrap_or(0);
            for event in &batch.events {
                seq = seq
                    .checked_add(1)
                    .ok_or_else(|| DbError::Inconsistent("outbox seq overflow".into()))?;
                let run_ref = match event {
                    StatusEvent::Run(run) => {
                        runs.upsert(run)?;
                        run.run_id.as_str()
                    }
                    StatusEvent::Task(task) => {
                        let bytes = encode(task)?;
                        tasks.insert(
                            (task.run_id.as_str(), task.task_id.as_str()),
                            bytes.as_slice(),
                        )?;
                        task.run_id.as_str()
                    }
                    StatusEvent::Missed(m) => {
                        let bytes = encode(m)?;
                        missed.insert((m.workflow.as_str(), seq), bytes.as_slice())?;
                        ""
                    }
                    // Only in the outbox: the deploy state itself lives in `agent_meta`.
                    StatusEvent::Reverted(_) => "",
                    StatusEvent::Deadline(d) => {
                        let task = d.task.as_deref().unwrap_or("");
                        let key = (d.run_id.as_str(), task, d.kind.as_str());
                        deadlines.insert(key, d.detected_ms)?;
                        d.run_id.as_str()
                    }
                };
                let bytes = encode(event)?;
                outbox.insert(seq, (run_ref, bytes.as_slice()))?;
                if !run_ref.is_empty() {
                    refs.insert((run_ref, seq), ())?;
                }
            }
            meta.insert(META_LAST_SEQ, seq)?;
            let mut versions = txn.open_table(WORKFLOW_VERSIONS)?;
            let mut states = txn.open_table(WORKFLOW_STATE)?;
            for v in &batch.workflow_puts {
                let existing = versions
                    .get((v.name.as_str(), v.version))?
                    .map(|g| decode::<WorkflowVersion>(g.value(), "workflow_versions", &v.name))
                    .transpose()?;
                match existing {
                    Some(old) if old.content_hash != v.content_hash => {
                        return Err(StoreError::VersionConflict {
                            name: v.name.clone(),
                            version: v.version,
                        });
                    }
                    Some(_) => {}
                    None => {
                        let bytes = encode(v)?;
                        versions.insert((v.name.as_str(), v.version), bytes.as_slice())?;
                    }
                }
                update_state(&mut states, &v.name, |s| s.removed = false)?;
            }
            for (name, ms) in &batch.last_fired {
                update_state(&mut states, name, |s| s.last_fired_ms = Some(*ms))?;
            }
            for (name, paused) in &batch.paused {
                update_state(&mut states, name, |s| s.paused = *paused)?;
            }
            if !batch.meta_puts.is_empty() {
                let mut meta = txn.open_table(AGENT_META)?;
                for (k, v) in &batch.meta_puts {
                    meta.insert(k.as_str(), v.as_slice())?;
                }
            }
            if !batch.hook_jobs.is_empty() {
                let mut jobs = txn.open_table(HOOK_JOBS)?;
                let mut unfinished = txn.open_table(HOOK_JOBS_UNFINISHED)?;
                for job in &batch.hook_jobs {
                    if jobs.get(job.key.as_str())?.is_some() {
                        continue;
                    }
                    let bytes = encode(job)?;
                    jobs.insert(job.key.as_str(), bytes.as_slice())?;
                    unfinished.insert(job.key.as_str(), ())?;
                }
            }
            seq
        };
        txn.commit()?;
        Ok(CommitInfo { last_seq })
    }

    // ---- workflows -------------------------------------------------------------------------

    /// Store one workflow version (same as a commit of a batch with only this put). Putting an
    /// existing version again with the same hash is a no-op; with another hash, an error. A put
    /// makes a removed workflow active again.
    pub fn put_workflow_version(&self, version: WorkflowVersion) -> Result<(), StoreError> {
        self.commit(Batch {
            workflow_puts: vec![version],
            ..Batch::default()
        })
        .map(|_| ())
    }

    /// All stored versions of a workflow, oldest first (including those of a removed workflow).
    pub fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>, StoreError> {
        let read = self.begin_read()?;
        let table = read.open_table(WORKFLOW_VERSIONS)?;
        let hi = successor(name);
        let mut out = Vec::new();
        for entry in table.range((name, 0)..(hi.as_str(), 0))? {
            let (key, value) = entry?;
            let (_, version) = key.value();
            out.push(decode(
                value.value(),
                "workflow_versions",
                format!("{name}@{version}"),
            )?);
        }
        Ok(out)
    }

    /// The latest version of every workflow that is not removed, by name.
    pub fn active_workflows(&self) -> Result<Vec<WorkflowVersion>, StoreError> {
        let read = self.begin_read()?;
        let table = read.open_table(WORKFLOW_VERSIONS)?;
        let states = read.open_table(WORKFLOW_STATE)?;
        let mut latest: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (name, version) = key.value();
            latest.insert(name.to_string(), (version, value.value().to_vec()));
        }
        let mut out = Vec::new();
        for (name, (version, bytes)) in latest {
            if read_state(&states, &name)?.removed {
                continue;
            }
            out.push(decode(
                &bytes,
                "workflow_versions",
                format!("{name}@{version}"),
            )?);
        }
        Ok(out)
    }

    /// The highest stored version number of a workflow (removed or not).
    pub fn highest_version(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let read = self.begin_read()?;
        let table = read.open_table(WORKFLOW_VERSIONS)?;
        let hi = successor(name);
        let last = table.range((name, 0)..(hi.as_str(), 0))?.next_back();
        match last {
            Some(entry) => Ok(Some(entry?.0.value().1)),
            None => Ok(None),
        }
    }

    /// Mark a workflow removed (it leaves [`Store::active_workflows`]; its versions and runs are
    /// kept). Returns `false` when no version of it is stored.
    pub fn remove_workflow(&self, name: &str) -> Result<bool, StoreError> {
        if self.highest_version(name)?.is_none() {
            return Ok(false);
        }
        let txn = self.begin_write()?;
        {
            let mut states = txn.open_table(WORKFLOW_STATE)?;
            update_state(&mut states, name, |s| s.removed = true)?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Whether a workflow is paused.
    pub fn is_paused(&self, name: &str) -> Result<bool, StoreError> {
        let read = self.begin_read()?;
        Ok(read_state(&read.open_table(WORKFLOW_STATE)?, name)?.paused)
    }

    /// The planner's last fired instant of a workflow.
    pub fn last_fired(&self, name: &str) -> Result<Option<UnixMillis>, StoreError> {
        let read = self.begin_read()?;
        Ok(read_state(&read.open_table(WORKFLOW_STATE)?, name)?.last_fired_ms)
    }

    // ---- runs ------------------------------------------------------------------------------

    /// A run's latest snapshot.
    pub fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let read = self.begin_read()?;
        let runs = read.open_table(RUNS)?;
        get_run(&runs, run_id)
    }

    /// Whether a run with this id is stored.
    pub fn run_exists(&self, run_id: &str) -> Result<bool, StoreError> {
        let read = self.begin_read()?;
        Ok(read.open_table(RUNS)?.get(run_id)?.is_some())
    }

    /// A run's task instances, by task id.
    pub fn tasks(&self, run_id: &str) -> Result<Vec<TaskInstanceRecord>, StoreError> {
        let read = self.begin_read()?;
        read_tasks(&read.open_table(TASKS)?, run_id)
    }

    /// Runs matching `filter`, newest (by `created_ms`) first. Without a state filter this reads
    /// `limit` index entries, not the whole table.
    pub fn runs(&self, filter: RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = Vec::new();
        if filter.limit == 0 {
            return Ok(out);
        }
        let read = self.begin_read()?;
        let runs = read.open_table(RUNS)?;
        let mut visit = |run_id: &str| -> Result<bool, StoreError> {
            let run = get_run(&runs, run_id)?.ok_or_else(|| {
                DbError::Inconsistent(format!("run index refers to missing run {run_id}"))
            })?;
            let wanted = filter
                .states
                .as_ref()
                .is_none_or(|states| states.contains(&run.state));
            if wanted {
                out.push(run);
            }
            Ok(out.len() >= filter.limit)
        };
        match &filter.workflow {
            Some(workflow) => {
                let index = read.open_table(RUNS_BY_WORKFLOW)?;
                let hi = successor(workflow);
                let range =
                    index.range((workflow.as_str(), i64::MIN, "")..(hi.as_str(), i64::MIN, ""))?;
                for entry in range.rev() {
                    let (key, _) = entry?;
                    if visit(key.value().2)? {
                        break;
                    }
                }
            }
            None => {
                let index = read.open_table(RUNS_BY_CREATED)?;
                for entry in index.iter()?.rev() {
                    let (key, _) = entry?;
                    if visit(key.value().1)? {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Runs that are not terminal, with their task instances, oldest first: what crash
    /// recovery resumes or marks interrupted. A run whose record (or a task's) cannot be
    /// decoded is left out and logged, naming the record, so that one damaged record does not
    /// keep the agent from starting; it stays in the store as it is.
    pub fn unfinished_runs(&self) -> Result<Vec<(RunRecord, Vec<TaskInstanceRecord>)>, StoreError> {
        let read = self.begin_read()?;
        let index = read.open_table(RUNS_UNFINISHED)?;
        let runs = read.open_table(RUNS)?;
        let tasks = read.open_table(TASKS)?;
        let mut out = Vec::new();
        for entry in index.iter()? {
            let (key, _) = entry?;
            let run_id = key.value();
            let found = get_run(&runs, run_id).and_then(|run| {
                let run = run.ok_or_else(|| {
                    DbError::Inconsistent(format!(
                        "unfinished index refers to missing run {run_id}"
                    ))
                })?;
                Ok((run, read_tasks(&tasks, run_id)?))
            });
            match found {
                Ok(found) => out.push(found),
                Err(e @ StoreError::Db(DbError::Decode { .. })) => {
                    tracing::error!(run = run_id, "run not recovered: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| (a.0.created_ms, &a.0.run_id).cmp(&(b.0.created_ms, &b.0.run_id)));
        Ok(out)
    }

    /// The latest `limit` missed-firing records of a workflow, newest first.
    pub fn missed(&self, workflow: &str, limit: usize) -> Result<Vec<MissedFirings>, StoreError> {
        let read = self.begin_read()?;
        let table = read.open_table(MISSED)?;
        let hi = successor(workflow);
        let mut out = Vec::new();
        for entry in table
            .range((workflow, 0)..(hi.as_str(), 0))?
            .rev()
            .take(limit)
        {
            let (key, value) = entry?;
            let (_, seq) = key.value();
            out.push(decode(
                value.value(),
                "missed_firings",
                format!("{workflow}#{seq}"),
            )?);
        }
        Ok(out)
    }

    // ---- outbox ----------------------------------------------------------------------------

    /// Up to `limit` outbox entries with seq > `after_seq`, in seq order.
    pub fn outbox_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let read = self.begin_read()?;
        let outbox = read.open_table(OUTBOX)?;
        let mut out = Vec::new();
        let range = outbox.range::<u64>((Bound::Excluded(after_seq), Bound::Unbounded))?;
        for entry in range.take(limit) {
            let (key, value) = entry?;
            let seq = key.value();
            let (_, bytes) = value.value();
            out.push(OutboxEntry {
                seq,
                event: decode(bytes, "outbox", seq)?,
            });
        }
        Ok(out)
    }

    /// Acknowledge every outbox entry with seq ≤ `up_to_seq`: deletes them and records
    /// `acked_seq`, durably. Returns how many entries were removed; acknowledging an already
    /// acknowledged seq removes nothing and writes nothing.
    pub fn ack_outbox(&self, up_to_seq: u64) -> Result<u64, StoreError> {
        let (last, acked) = self.seqs()?;
        if up_to_seq > last {
            return Err(StoreError::AckBeyondLast {
                requested: up_to_seq,
                last,
            });
        }
        if up_to_seq <= acked {
            return Ok(0);
        }
        let txn = self.begin_write()?;
        let removed = {
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut refs = txn.open_table(OUTBOX_RUN_REFS)?;
            let mut meta = txn.open_table(META)?;
            let mut doomed: Vec<(u64, String)> = Vec::new();
            for entry in outbox.range(..=up_to_seq)? {
                let (key, value) = entry?;
                doomed.push((key.value(), value.value().0.to_string()));
            }
            for (seq, run_ref) in &doomed {
                outbox.remove(*seq)?;
                if !run_ref.is_empty() {
                    refs.remove((run_ref.as_str(), *seq))?;
                }
            }
            meta.insert(META_ACKED_SEQ, up_to_seq)?;
            doomed.len() as u64
        };
        txn.commit()?;
        Ok(removed)
    }

    fn seqs(&self) -> Result<(u64, u64), StoreError> {
        let read = self.begin_read()?;
        let meta = read.open_table(META)?;
        let get =
            |key| -> Result<u64, StoreError> { Ok(meta.get(key)?.map(|g| g.value()).unwrap_or(0)) };
        Ok((get(META_LAST_SEQ)?, get(META_ACKED_SEQ)?))
    }

    /// The highest seq the hub acknowledged (0: none).
    pub fn acked_seq(&self) -> Result<u64, StoreError> {
        Ok(self.seqs()?.1)
    }

    /// The highest seq ever assigned (0: none).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.seqs()?.0)
    }

    /// Number of stored runs (any state).
    pub fn run_count(&self) -> Result<u64, StoreError> {
        let read = self.begin_read()?;
        Ok(read.open_table(RUNS)?.len()?)
    }

    /// Number of unacknowledged outbox entries.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        let read = self.begin_read()?;
        Ok(read.open_table(OUTBOX)?.len()?)
    }
}

impl Store {
    // ---- agent meta ------------------------------------------------------------------------

    /// A value of the agent's own key/value table.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.begin_read()?;
        let table = read.open_table(AGENT_META)?;
        Ok(table.get(key)?.map(|g| g.value().to_vec()))
    }

    /// Every entry of the agent's own key/value table whose key starts with `prefix`.
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let read = self.begin_read()?;
        let table = read.open_table(AGENT_META)?;
        let mut out = Vec::new();
        for item in table.range(prefix..)? {
            let (k, v) = item?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Set a value of the agent's own key/value table, durably.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        txn.open_table(AGENT_META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }
}

/// The marker written next to a store once it exists (`agent.redb` → `agent.redb.created`):
/// while it is there, a missing or empty store file is refused ([`StoreError::Missing`]).
pub fn marker_path(store: &Path) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push(".created");
    store.with_file_name(name)
}

/// Write the marker durably (the file, then its directory).
fn write_marker(marker: &Path) -> io::Result<()> {
    use std::io::Write as _;
    let mut f = crate::private_fs::file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(marker)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    writeln!(
        f,
        "A store was created next to this file at {now}. While this file exists, the agent \
         refuses to start with that store missing or empty; delete it to start over with an \
         empty store."
    )?;
    f.sync_all()?;
    if let Some(dir) = marker.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

type StrTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;

fn read_state(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<WorkflowState, StoreError> {
    match table.get(name)? {
        Some(g) => Ok(decode(g.value(), "workflow_state", name)?),
        None => Ok(WorkflowState::default()),
    }
}

fn update_state(
    table: &mut StrTable<'_>,
    name: &str,
    change: impl FnOnce(&mut WorkflowState),
) -> Result<(), StoreError> {
    let mut state = read_state(table, name)?;
    change(&mut state);
    let bytes = encode(&state)?;
    table.insert(name, bytes.as_slice())?;
    Ok(())
}

fn get_run(
    runs: &impl ReadableTable<&'static str, &'static [u8]>,
    run_id: &str,
) -> Result<Option<RunRecord>, StoreError> {
    match runs.get(run_id)? {
        Some(g) => Ok(Some(decode(g.value(), "runs", run_id)?)),
        None => Ok(None),
    }
}

fn read_tasks(
    tasks: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    run_id: &str,
) -> Result<Vec<TaskInstanceRecord>, StoreError> {
    let hi = successor(run_id);
    let mut out = Vec::new();
    for entry in tasks.range((run_id, "")..(hi.as_str(), ""))? {
        let (key, value) = entry?;
        let (_, task_id) = key.value();
        out.push(decode(
            value.value(),
            "task_instances",
            format!("{run_id}/{task_id}"),
        )?);
    }
    Ok(out)
}

/// The `runs` table and its indexes, opened together so they are updated together.
struct RunTables<'t> {
    runs: StrTable<'t>,
    by_created: redb::Table<'t, (i64, &'static str), ()>,
    by_workflow: redb::Table<'t, (&'static str, i64, &'static str), ()>,
    unfinished: redb::Table<'t, &'static str, ()>,
}

impl<'t> RunTables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(RunTables {
            runs: txn.open_table(RUNS)?,
            by_created: txn.open_table(RUNS_BY_CREATED)?,
            by_workflow: txn.open_table(RUNS_BY_WORKFLOW)?,
            unfinished: txn.open_table(RUNS_UNFINISHED)?,
        })
    }

    /// Insert or replace a run's snapshot, keeping the indexes in step.
    fn upsert(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        if let Some(old) = get_run(&self.runs, &run.run_id)?
            && (old.created_ms != run.created_ms || old.workflow != run.workflow)
        {
            self.remove_index(&old)?;
        }
        let id = run.run_id.as_str();
        let bytes = encode(run)?;
        self.runs.insert(id, bytes.as_slice())?;
        self.by_created.insert((run.created_ms, id), ())?;
        self.by_workflow
            .insert((run.workflow.as_str(), run.created_ms, id), ())?;
        if run.state.is_terminal() {
            self.unfinished.remove(id)?;
        } else {
            self.unfinished.insert(id, ())?;
        }
        Ok(())
    }

    fn remove_index(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        let id = run.run_id.as_str();
        self.by_created.remove((run.created_ms, id))?;
        self.by_workflow
            .remove((run.workflow.as_str(), run.created_ms, id))?;
        Ok(())
    }

    fn delete(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        self.remove_index(run)?;
        self.runs.remove(run.run_id.as_str())?;
        self.unfinished.remove(run.run_id.as_str())?;
        Ok(())
    }
}
