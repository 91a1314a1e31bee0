//! Every redb table of the hub store: the on-disk layout in one place. The migrations that
//! create them are in `migrations.rs`.

use redb::TableDefinition;

/// `meta`: `&str -> u64`; keys `schema_version` ([`outpost_common::store::META`]) and
/// [`META_DECISION_SEQ`].
pub(crate) use outpost_common::store::META;
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
/// deleted, so epochs stay monotonic for the hub's whole life; only a decommissioned agent's
/// are (it never connects again).
pub(crate) const ASSIGNMENTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("assignments");
/// `runs`: `(agent_id, run_id) -> cbor RunRecord` (latest snapshot).
pub(crate) const RUNS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("runs");
/// `runs_by_id`: `(run_id, agent_id) -> ()`.
pub(crate) const RUNS_BY_ID: TableDefinition<(&str, &str), ()> = TableDefinition::new("runs_by_id");
/// `runs_by_created`: `(created_ms, agent_id, run_id) -> ()`.
pub(crate) const RUNS_BY_CREATED: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("runs_by_created");
/// `runs_by_instant`: `(agent_id, workflow, scheduled_ms) -> ()` for scheduled and catch-up runs
/// (what missed-firing detection looks up).
pub(crate) const RUNS_BY_INSTANT: TableDefinition<(&str, &str, i64), ()> =
    TableDefinition::new("runs_by_instant");
/// `firing_watch`: `(agent_id, workflow) -> cbor WatchState` (missed-firing detection).
pub(crate) const FIRING_WATCH: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("firing_watch");
/// `task_instances`: `(agent_id, run_id, task_id) -> cbor TaskInstanceRecord`.
pub(crate) const TASKS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("task_instances");
/// `missed_firings`: `(agent_id, seq) -> cbor MissedFirings`.
pub(crate) const MISSED: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("missed_firings");
/// `deploy_results`: `(agent_id, workflow) -> cbor DeployResultRecord` (the last one).
pub(crate) const DEPLOY_RESULTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("deploy_results");
/// `signing_keys`: the key history of schema versions 1 and 2 (dropped by version 3).
pub(crate) const SIGNING_KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("signing_keys");
/// `roots`: `version -> cbor SignedRoot`: every root metadata version, in order.
pub(crate) const ROOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("roots");
/// `pending_versions`: `workflow -> cbor PendingVersion`: the version waiting for release
/// signatures (at most one per workflow).
pub(crate) const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending_versions");
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
/// `rollout_events` (HA mode only; replicated): `seq -> cbor RolloutEvent`: every replica's
/// rollout events, moved there from its own `rollout_inbox` (`rollouts.rs`
/// `forward_rollout_events`), consumed by the leader's controller commits. Created on first use.
pub(crate) const ROLLOUT_EVENTS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("rollout_events");
/// Key of the `rollout_events` sequence in `meta` (replicated with it).
pub(crate) const META_EVENT_SEQ: &str = "event_seq";
/// `alert_events` (HA mode only; replicated): `seq -> cbor outpost_alerts::Input`: every
/// replica's alert inputs, moved there from its own `alert_inbox`, consumed by the leader's
/// evaluator commits. Created on first use.
pub(crate) const ALERT_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alert_events");
/// Key of the `alert_events` sequence in `meta` (replicated with it).
pub(crate) const META_ALERT_EVENT_SEQ: &str = "alert_event_seq";
/// `agent_presence` (HA mode only; replicated): `agent_id -> cbor PresenceRecord`: which
/// replica holds each connected agent's session, and what the agent runs (`presence.rs`).
/// Created on first use.
pub(crate) const PRESENCE: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_presence");

/// `alert_inbox`: `seq -> cbor outpost_alerts::Input`: alert inputs, written in the ingest's
/// transaction, removed in the transaction that commits the evaluator state that used them.
pub(crate) const ALERT_INBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("alert_inbox");
/// `alert_state`: `"evaluator" -> Evaluator::encode()` bytes.
pub(crate) const ALERT_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_state");
/// `alert_history`: `seq -> cbor Notification`. Append-only.
pub(crate) const ALERT_HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("alert_history");
/// `alert_deliveries`: `(notification seq, channel) -> cbor DeliveryRecord`.
pub(crate) const ALERT_DELIVERIES: TableDefinition<(u64, &str), &[u8]> =
    TableDefinition::new("alert_deliveries");
/// `alert_delivery_keys`: `(dedup key, channel) -> notification seq`: one delivery per key and
/// channel, ever.
pub(crate) const ALERT_DELIVERY_KEYS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("alert_delivery_keys");
/// `alert_outbox`: `(notification seq, channel) -> ()`: the deliveries not finished yet.
pub(crate) const ALERT_OUTBOX: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("alert_outbox");
/// `silences`: `id -> cbor outpost_alerts::Silence`.
pub(crate) const SILENCES: TableDefinition<&str, &[u8]> = TableDefinition::new("silences");
/// Key of the silence id sequence in `meta`.
pub(crate) const META_SILENCE_SEQ: &str = "silence_seq";

/// `agent_names`: `name -> agent_id`: the unique names of agents (a decommissioned agent's name
/// is removed, so it is free again).
pub(crate) const AGENT_NAMES: TableDefinition<&str, &str> = TableDefinition::new("agent_names");
/// `runs_by_workflow`: `(agent_id, workflow, created_ms, run_id) -> ()`: each agent's runs of a
/// workflow, oldest first (what count-based retention walks).
pub(crate) const RUNS_BY_WORKFLOW: TableDefinition<(&str, &str, i64, &str), ()> =
    TableDefinition::new("runs_by_workflow");
