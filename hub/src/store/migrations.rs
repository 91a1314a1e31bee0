//! The forward-only migrations of the hub store.
//!
//! `MIGRATIONS[i]` takes a store from schema version `i` to `i + 1`; [`SCHEMA_VERSION`] is
//! `MIGRATIONS.len()`. A released migration is never edited: a layout change is a new migration
//! appended to the list. A file without a `meta` table is version 0 (new and empty).

use outpost_common::store::{META, Migrations};
use redb::{ReadableTable, WriteTransaction};

use super::audit::chain_existing;
use super::error::{StoreError, decode};
use super::operators::OPERATORS;
use super::pools::apply_default_pool;
use super::records::{StoredVersion, WorkflowMeta};
use super::schema::*;

/// The migration list (run by `Store::open`).
pub(super) const MIGRATIONS: Migrations<'static, StoreError> = Migrations {
    list: &[
        migrate_v1_initial,
        migrate_v2_pools,
        migrate_v3_operators_audit_chain,
        migrate_v4_roots,
        migrate_v5_alerts,
        migrate_v6_firing_watch,
        migrate_v7_agent_names,
    ],
    program: "hub",
};

/// The schema version this build reads and writes.
pub(super) const SCHEMA_VERSION: u64 = MIGRATIONS.version();

fn migrate_v1_initial(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(WORKFLOWS)?;
    txn.open_table(VERSIONS)?;
    txn.open_table(AGENTS)?;
    txn.open_table(TOKENS)?;
    txn.open_table(ASSIGNMENTS)?;
    txn.open_table(RUNS)?;
    txn.open_table(RUNS_BY_ID)?;
    txn.open_table(RUNS_BY_CREATED)?;
    txn.open_table(TASKS)?;
    txn.open_table(MISSED)?;
    txn.open_table(DEPLOY_RESULTS)?;
    txn.open_table(SIGNING_KEYS)?;
    txn.open_table(AUDIT)?;
    Ok(())
}

fn migrate_v2_pools(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(POOLS)?;
    txn.open_table(DECISIONS)?;
    txn.open_table(ROLLOUTS)?;
    txn.open_table(ROLLOUT_STATE)?;
    txn.open_table(ROLLOUT_AGENTS)?;
    txn.open_table(ROLLOUT_INBOX)?;
    txn.open_table(AGENT_VERSIONS)?;
    // Stores from before pools: every workflow gets its default pool, following the latest version.
    let mut existing = Vec::new();
    {
        let wfs = txn.open_table(WORKFLOWS)?;
        let versions = txn.open_table(VERSIONS)?;
        for e in wfs.iter()? {
            let (k, v) = e?;
            let meta: WorkflowMeta = decode(v.value(), "workflows", k.value())?;
            if let Some(sv) = versions.get((k.value(), meta.latest))? {
                let sv: StoredVersion = decode(sv.value(), "workflow_versions", k.value())?;
                existing.push((sv.name, sv.target, sv.version, sv.created_ms));
            }
        }
    }
    for (name, target, version, at) in existing {
        apply_default_pool(txn, &name, &target, version, "hub", at)?;
    }
    Ok(())
}

/// Operator credentials, and the audit hash chain: the entries already written are chained as
/// they stand now (what was changed before this migration cannot be detected; from here on any
/// change is).
fn migrate_v3_operators_audit_chain(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(OPERATORS)?;
    chain_existing(txn)?;
    Ok(())
}

/// Root metadata and release signatures replace the single signing key: the key history goes;
/// versions stored before carry no release signatures (re-apply and release them).
fn migrate_v4_roots(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ROOTS)?;
    txn.open_table(PENDING)?;
    txn.delete_table(SIGNING_KEYS)?;
    Ok(())
}

/// The alert pipeline: its inbox, the evaluator state, the notification history, the delivery
/// outbox and the silences.
fn migrate_v5_alerts(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ALERT_INBOX)?;
    txn.open_table(ALERT_STATE)?;
    txn.open_table(ALERT_HISTORY)?;
    txn.open_table(ALERT_DELIVERIES)?;
    txn.open_table(ALERT_DELIVERY_KEYS)?;
    txn.open_table(ALERT_OUTBOX)?;
    txn.open_table(SILENCES)?;
    Ok(())
}

/// Missed-firing detection: runs indexed by their scheduled instant, and the watch state. Runs
/// stored before are not indexed: the watch starts at the first evaluation after the upgrade and
/// never looks further back.
fn migrate_v6_firing_watch(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(RUNS_BY_INSTANT)?;
    txn.open_table(FIRING_WATCH)?;
    Ok(())
}

/// Agent names and run retention: the unique name index (agents enrolled before get no name;
/// an operator gives one with `agent rename`, and their ids keep working everywhere), and the
/// runs indexed by (agent, workflow, creation time), built here for the runs already stored.
fn migrate_v7_agent_names(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(AGENT_NAMES)?;
    let runs = txn.open_table(RUNS)?;
    let mut idx = txn.open_table(RUNS_BY_WORKFLOW)?;
    for e in runs.iter()? {
        let (k, v) = e?;
        let (agent, run_id) = k.value();
        let r: outpost_common::record::RunRecord = decode(v.value(), "runs", run_id)?;
        idx.insert((agent, r.workflow.as_str(), r.created_ms, run_id), ())?;
    }
    Ok(())
}
