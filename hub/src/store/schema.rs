//! Every redb table of the hub store, and the forward-only migrations that create them.
//!
//! `MIGRATIONS[i]` takes a store from schema version `i` to `i + 1`; [`SCHEMA_VERSION`] is
//! `MIGRATIONS.len()`. A released migration is never edited: a layout change is a new migration
//! appended to the list. A file without a `meta` table is version 0 (new and empty).

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::StoreError;

/// `meta`: `&str -> u64`; key [`META_SCHEMA_VERSION`].
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Schema version of the file.
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
/// `workflows`: `name -> cbor WorkflowMeta` (latest version, paused).
pub(crate) const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");
/// `workflow_versions`: `(name, version) -> cbor StoredVersion`. Append-only.
pub(crate) const VERSIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("workflow_versions");
/// `agents`: `agent_id -> cbor AgentRecord`.
pub(crate) const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
/// `tokens`: `token_id -> cbor TokenRecord`.
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// `assignments`: `(agent_id, workflow) -> cbor IssuedAssignment` (the last one issued). Never
/// deleted, so epochs stay monotonic for the hub's whole life.
pub(crate) const ASSIGNMENTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("assignments");
/// `runs`: `(agent_id, run_id) -> cbor RunRecord` (latest snapshot).
pub(crate) const RUNS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("runs");
/// `runs_by_id`: `(run_id, agent_id) -> ()`.
pub(crate) const RUNS_BY_ID: TableDefinition<(&str, &str), ()> = TableDefinition::new("runs_by_id");
/// `runs_by_created`: `(created_ms, agent_id, run_id) -> ()`.
pub(crate) const RUNS_BY_CREATED: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("runs_by_created");
/// `task_instances`: `(agent_id, run_id, task_id) -> cbor TaskInstanceRecord`.
pub(crate) const TASKS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("task_instances");
/// `missed_firings`: `(agent_id, seq) -> cbor MissedFirings`.
pub(crate) const MISSED: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("missed_firings");
/// `deploy_results`: `(agent_id, workflow) -> cbor DeployResultRecord` (the last one).
pub(crate) const DEPLOY_RESULTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("deploy_results");
/// `signing_keys`: `index -> cbor KeyRecord`, in order of use (0 = the first key).
pub(crate) const SIGNING_KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("signing_keys");
/// `audit`: `seq -> cbor AuditEntry`. Append-only.
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// `pools`: `name -> cbor PoolRecord`.
pub(crate) const POOLS: TableDefinition<&str, &[u8]> = TableDefinition::new("pools");
/// `pool_decisions`: `(workflow, pool) -> cbor PoolDecision`: the pool's desired version.
pub(crate) const DECISIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("pool_decisions");
/// `rollouts`: `seq -> cbor RolloutRecord` (every rollout ever started; seq = its decision seq).
pub(crate) const ROLLOUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("rollouts");
/// `rollout_state`: `seq -> Controller::encode()` bytes.
pub(crate) const ROLLOUT_STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("rollout_state");
/// `rollout_agents`: `(agent, workflow, pool) -> cbor RolloutAssign`: what an active rollout
/// assigned an agent (cleared when the rollout finishes).
pub(crate) const ROLLOUT_AGENTS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("rollout_agents");
/// `rollout_inbox`: `seq -> cbor RolloutEvent`: agent events for active rollouts, written in the
/// same transaction as the ingest/deploy result, deleted with the controller commit that used
/// them (each event reaches the controller once, across crashes).
pub(crate) const ROLLOUT_INBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("rollout_inbox");
/// `agent_versions`: `(agent, workflow, version) -> first seen ms`: versions an agent is known
/// to hold locally (it activated or reported them), so a deploy of one needs no bundle.
pub(crate) const AGENT_VERSIONS: TableDefinition<(&str, &str, u64), i64> =
    TableDefinition::new("agent_versions");
/// Key of the global decision sequence in `meta`.
pub(crate) const META_DECISION_SEQ: &str = "decision_seq";

/// A forward-only migration, run inside the open's write transaction.
pub(crate) type Migration = fn(&WriteTransaction) -> Result<(), StoreError>;

/// The migration list.
pub(crate) const MIGRATIONS: &[Migration] = &[migrate_v1_initial, migrate_v2_pools];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u64 = MIGRATIONS.len() as u64;

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
            let meta: super::WorkflowMeta = super::decode(v.value(), "workflows", k.value())?;
            if let Some(sv) = versions.get((k.value(), meta.latest))? {
                let sv: super::StoredVersion =
                    super::decode(sv.value(), "workflow_versions", k.value())?;
                existing.push((sv.name, sv.target, sv.version, sv.created_ms));
            }
        }
    }
    for (name, target, version, at) in existing {
        super::pools::apply_default_pool(txn, &name, &target, version, "hub", at)?;
    }
    Ok(())
}

/// Apply pending migrations; refuses a newer file. Returns the version found.
pub(crate) fn migrate(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let found = txn
        .open_table(META)?
        .get(META_SCHEMA_VERSION)?
        .map(|v| v.value())
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let from = index as u64;
        if from < found {
            continue;
        }
        migration(txn)?;
        txn.open_table(META)?
            .insert(META_SCHEMA_VERSION, from + 1)?;
    }
    Ok(found)
}
