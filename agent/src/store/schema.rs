//! Every redb table of the agent store, and the forward-only migrations that create them.
//!
//! All table definitions live here so that the on-disk layout can be read in one place. Values
//! that are records are minicbor bytes (`&[u8]`) of the types in `outpost_common::record` or of
//! [`super::WorkflowVersion`] / `WorkflowState`; index tables have `()` values.
//!
//! **Migrations** are a list applied in order at open: `MIGRATIONS[i]` takes a store from schema
//! version `i` to `i + 1`, and [`SCHEMA_VERSION`] is `MIGRATIONS.len()`. A migration is never
//! edited once released; a layout change is a new migration appended to the list. A file with no
//! `meta` table is version 0 (a new, empty file).

use outpost_common::store::Migrations;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::StoreError;

/// `meta`: store bookkeeping, `&str -> u64`. Keys: [`META_SCHEMA_VERSION`] (the number of
/// migrations applied), [`META_LAST_SEQ`], [`META_ACKED_SEQ`].
pub(crate) use outpost_common::store::META;
/// Highest outbox sequence number ever assigned (0: none yet). Never decreases.
pub(crate) const META_LAST_SEQ: &str = "last_seq";
/// Highest outbox sequence number the hub acknowledged (0: none yet). Never decreases.
pub(crate) const META_ACKED_SEQ: &str = "acked_seq";

/// `agent_meta`: free key/value for the agent (identity, enrolment), `&str -> &[u8]`.
pub(crate) const AGENT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_meta");

/// `workflow_versions`: `(name, version) -> cbor WorkflowVersion`. Append-only history.
pub(crate) const WORKFLOW_VERSIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("workflow_versions");

/// `workflow_state`: `name -> cbor WorkflowState` (removed, paused, planner's last firing).
pub(crate) const WORKFLOW_STATE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("workflow_state");

/// `runs`: `run_id -> cbor RunRecord` (the latest snapshot).
pub(crate) const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");

/// `runs_by_created`: `(created_ms, run_id) -> ()`. Index for "latest N runs".
pub(crate) const RUNS_BY_CREATED: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("runs_by_created");

/// `runs_by_workflow`: `(workflow, created_ms, run_id) -> ()`. Index for "latest N runs of a
/// workflow" and per-workflow retention.
pub(crate) const RUNS_BY_WORKFLOW: TableDefinition<(&str, i64, &str), ()> =
    TableDefinition::new("runs_by_workflow");

/// `runs_unfinished`: `run_id -> ()` for every run whose state is not terminal (added by
/// migration 2). Crash recovery reads it instead of scanning all runs.
pub(crate) const RUNS_UNFINISHED: TableDefinition<&str, ()> =
    TableDefinition::new("runs_unfinished");

/// `task_instances`: `(run_id, task_id) -> cbor TaskInstanceRecord` (attempts, outputs).
pub(crate) const TASKS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("task_instances");

/// `missed_firings`: `(workflow, seq) -> cbor MissedFirings`; `seq` is the outbox sequence number
/// the event was committed under.
pub(crate) const MISSED: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("missed_firings");

/// `outbox`: `seq -> (run_ref, cbor StatusEvent)`. `run_ref` is the run id the event refers to
/// (empty for `Missed`). Entries are deleted only by an acknowledgement.
pub(crate) const OUTBOX: TableDefinition<u64, (&str, &[u8])> = TableDefinition::new("outbox");

/// `outbox_run_refs`: `(run_id, seq) -> ()` for every outbox entry that refers to a run; lets
/// retention check "has this run unacknowledged events" without scanning the outbox.
pub(crate) const OUTBOX_RUN_REFS: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("outbox_run_refs");

/// `hook_jobs`: `key -> cbor HookJob` (`outpost_agent_core::hooks`): one per event that has
/// hooks, written in the transaction of that event, only when its key is absent (added by
/// migration 3). The key starts with the run id and `\u{1f}`.
pub(crate) const HOOK_JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("hook_jobs");

/// `hook_jobs_unfinished`: `key -> ()` for every hook job not finished: what runs (again) after a
/// restart (added by migration 3).
pub(crate) const HOOK_JOBS_UNFINISHED: TableDefinition<&str, ()> =
    TableDefinition::new("hook_jobs_unfinished");

/// `deadline_misses`: `(run_id, task id or "", kind) -> detected_ms` for every deadline miss
/// committed, so that a restarted agent never reports one twice (added by migration 3).
pub(crate) const DEADLINE_MISSES: TableDefinition<(&str, &str, &str), i64> =
    TableDefinition::new("deadline_misses");

/// The migration list; `MIGRATIONS.list[i]` upgrades version `i` to `i + 1`.
pub(crate) const MIGRATIONS: Migrations<'static, StoreError> = Migrations {
    list: &[
        migrate_v1_initial,
        migrate_v2_unfinished_index,
        migrate_v3_hooks_and_deadlines,
    ],
    program: "agent",
};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u64 = MIGRATIONS.version();

/// v0 -> v1: create the ledger tables and the counters.
fn migrate_v1_initial(txn: &WriteTransaction) -> Result<(), StoreError> {
    {
        let mut meta = txn.open_table(META)?;
        for key in [META_LAST_SEQ, META_ACKED_SEQ] {
            if meta.get(key)?.is_none() {
                meta.insert(key, 0)?;
            }
        }
    }
    txn.open_table(AGENT_META)?;
    txn.open_table(WORKFLOW_VERSIONS)?;
    txn.open_table(WORKFLOW_STATE)?;
    txn.open_table(RUNS)?;
    txn.open_table(RUNS_BY_CREATED)?;
    txn.open_table(RUNS_BY_WORKFLOW)?;
    txn.open_table(TASKS)?;
    txn.open_table(MISSED)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(OUTBOX_RUN_REFS)?;
    Ok(())
}

/// v1 -> v2: add `runs_unfinished`, back-filled from `runs`.
fn migrate_v2_unfinished_index(txn: &WriteTransaction) -> Result<(), StoreError> {
    let runs = txn.open_table(RUNS)?;
    let mut unfinished = txn.open_table(RUNS_UNFINISHED)?;
    for entry in runs.iter()? {
        let (key, value) = entry?;
        let record: outpost_common::record::RunRecord =
            super::decode(value.value(), "runs", key.value())?;
        if !record.state.is_terminal() {
            unfinished.insert(key.value(), ())?;
        }
    }
    Ok(())
}

/// v2 -> v3: add the hook job and deadline miss tables (empty).
fn migrate_v3_hooks_and_deadlines(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(HOOK_JOBS)?;
    txn.open_table(HOOK_JOBS_UNFINISHED)?;
    txn.open_table(DEADLINE_MISSES)?;
    Ok(())
}
