//! The hub's durable store: workflow versions (with their signed bundles), agents, bootstrap
//! tokens, assignment epochs, runs and task instances from every agent, missed firings, deploy
//! results, the signing-key history and an append-only audit log, in one redb file.
//!
//! Every write is one redb write transaction with two-phase commit, so a crash leaves the file
//! before or after a call, never in between; a call that returns `Ok` is durable (this is what
//! lets the session driver acknowledge an agent's status batch only after [`Store::ingest`]).
//! The writes agent sessions make concurrently (status batches, assignment mints, deploy
//! results, Hello, session records) share transactions and commits (`group.rs`: group commit);
//! each call still returns only after the commit that holds its writes.
//!
//! # Tables (see `schema.rs`)
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
//! | `roots` | `version` | cbor `SignedRoot` |
//! | `pending_versions` | `workflow` | cbor [`PendingVersion`] |
//! | `audit` | `seq` | cbor [`AuditEntry`] |
//! | `pools` | `name` | cbor [`PoolRecord`] |
//! | `pool_decisions` | `(workflow, pool)` | cbor [`PoolDecision`] |
//! | `rollouts` | `seq` | cbor [`RolloutRecord`] |
//! | `rollout_state` | `seq` | the controller's encoded state |
//! | `rollout_agents` | `(agent, workflow, pool)` | cbor [`RolloutAssign`] |
//! | `rollout_inbox` | `seq` | cbor [`RolloutEvent`] |
//! | `agent_versions` | `(agent, workflow, version)` | first seen (ms) |
//! | `operators` | `id` | cbor [`OperatorRecord`] (blake3 of the secret only) |
//! | `alert_inbox` | `seq` | cbor `outpost_alerts::Input` |
//! | `alert_state` | `"evaluator"` | the evaluator's encoded state |
//! | `alert_history` | `seq` | cbor `outpost_alerts::Notification` |
//! | `alert_deliveries` | `(seq, channel)` | cbor [`DeliveryRecord`] |
//! | `alert_delivery_keys` | `(dedup key, channel)` | seq |
//! | `alert_outbox` | `(seq, channel)` | `()` (deliveries not finished) |
//! | `silences` | `id` | cbor `outpost_alerts::Silence` |
//! | `agent_names` | `name` | agent id (unique names; `names.rs`) |
//! | `runs_by_workflow` | `(agent_id, workflow, created_ms, run_id)` | `()` (count retention) |
//!
//! The `audit` table is a hash chain: each entry holds the previous entry's hash and its own
//! (`store/audit.rs`); [`Store::verify_audit`] names the first entry that breaks it.
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
//! - An alert input is queued in the transaction that ingested it and removed in the
//!   transaction that commits the evaluator state that used it, with the notifications it made
//!   and their deliveries (at most one per (dedup key, channel)).
//!
//! # Public surface
//!
//! Public: [`Store`] (opening, and the methods the hub's integration tests and the e2e tests
//! call), [`StoreError`], and the records those use or the fuzz targets decode (re-exported
//! here from `records.rs`, [`pools`] and `rollouts.rs`). Two `Store` methods nothing outside
//! the store's own tests calls yet (`missed`, `enqueue_rollout_event`) stay public as they
//! were. Everything else (tables, migrations, the session-lease table, transaction helpers,
//! `selector_matches`, the methods and records only the hub itself uses) is `pub(crate)` or
//! private. One file per concern; `mod.rs` only declares and re-exports, so the files' imports
//! form no circle.

mod agents;
mod alerts;
mod assignments;
mod audit;
mod backup;
mod config;
pub(crate) mod console_sessions;
mod error;
mod file;
mod firings;
mod group;
pub(crate) mod history;
pub(crate) mod migrations;
mod names;
mod observations;
mod open;
mod operators;
pub mod pools;
mod presence;
mod records;
mod replicated;
mod retention;
mod rollouts;
mod runs;
pub(crate) mod schema;
pub mod sessions;
#[cfg(test)]
mod tests;
mod tokens;
mod trust;
mod workflows;

pub(crate) use alerts::{AlertCommit, DeliveryOutcome};
pub use alerts::{AlertEntry, DeliveryRecord, DeliveryState};
pub use audit::{AUDIT_GENESIS, AuditBreak, AuditVerdict};
pub use error::StoreError;
pub use file::Store;
pub use group::GroupStats;
pub use history::{HistoryLock, IngestBatch, SharedHistory};
pub use names::{Decommissioned, check_agent_name, default_agent_name};
pub use operators::{
    CREDENTIAL_PREFIX, OperatorRecord, Role, check_operator_name, parse_credential,
};
pub use pools::*;
pub use presence::PresenceRecord;
pub use records::*;
pub use replicated::{Change, Publisher, Snapshot, as_changes, fenced, is_replicated_table};
pub use retention::{RetentionPolicy, RetentionReport};
pub use rollouts::*;
pub use trust::ReleaseStatus;
