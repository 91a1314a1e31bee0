//! Rollouts in the store: their records, the controller state committed after every change,
//! what each active rollout assigned each agent, and the inbox of agent events for the
//! controllers (queued in the ingest's transaction, dropped with the commit that used them).
//! See `docs/rollouts.md` for the rules.

use minicbor::{Decode, Encode};
use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::audit::audit_in;
use super::error::{DbError, StoreError, decode, decode_all, encode};
use super::file::Store;
use super::pools::{PoolDecision, WorkflowPool, next_decision_seq, refuse_if_held};
use super::schema::{
    DECISIONS, META_EVENT_SEQ, ROLLOUT_AGENTS, ROLLOUT_EVENTS, ROLLOUT_INBOX, ROLLOUT_STATE,
    ROLLOUTS,
};
use redb::TableDefinition;

use super::replicated::Scope;

/// One rollout, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RolloutRecord {
    /// Seq (also its decision seq).
    #[n(0)]
    pub seq: u64,
    /// Rollout id (`ro-<seq>`).
    #[n(1)]
    pub id: String,
    /// Workflow.
    #[n(2)]
    pub workflow: String,
    /// Pool.
    #[n(3)]
    pub pool: String,
    /// From version (0 = none).
    #[n(4)]
    pub from_version: u64,
    /// To version.
    #[n(5)]
    pub to_version: u64,
    /// Who started it.
    #[n(6)]
    pub started_by: String,
    /// When.
    #[n(7)]
    pub started_ms: UnixMillis,
    /// Not finished yet.
    #[n(8)]
    pub active: bool,
    /// Last phase, for humans (`deploying step 1`, `succeeded`, ...).
    #[n(9)]
    pub phase: String,
    /// When it finished.
    #[n(10)]
    pub finished_ms: Option<UnixMillis>,
    /// How it ended (`succeeded`, `rolled back: ...`, `aborted`).
    #[n(11)]
    pub outcome: Option<String>,
}

/// What an active rollout assigned one agent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RolloutAssign {
    /// Version (0 = remove).
    #[n(0)]
    pub version: u64,
    /// Version to return to under probation.
    #[n(1)]
    pub previous_version: Option<u64>,
    /// Probation `(runs, max_failures)`.
    #[n(2)]
    pub probation: Option<(u32, u32)>,
    /// The rollout id.
    #[n(3)]
    pub rollout_id: String,
}

/// An agent event a rollout controller needs, queued durably.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum RolloutEventKind {
    /// A run of `version` reached Succeeded or Failed.
    #[n(0)]
    Run {
        /// Version.
        #[n(0)]
        version: u64,
        /// Succeeded.
        #[n(1)]
        succeeded: bool,
    },
    /// The agent activated `version`.
    #[n(1)]
    Activated {
        /// Version (0 = removed).
        #[n(0)]
        version: u64,
    },
    /// The agent refused `version`.
    #[n(2)]
    Rejected {
        /// Version.
        #[n(0)]
        version: u64,
        /// Why.
        #[n(1)]
        reason: String,
    },
    /// The agent reverted under probation.
    #[n(3)]
    Reverted {
        /// From.
        #[n(0)]
        from: u64,
        /// To.
        #[n(1)]
        to: u64,
        /// Why.
        #[n(2)]
        reason: String,
    },
}

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RolloutEvent {
    /// Agent.
    #[n(0)]
    pub agent: String,
    /// Workflow.
    #[n(1)]
    pub workflow: String,
    /// What happened.
    #[n(2)]
    pub kind: RolloutEventKind,
    /// When the hub got it.
    #[n(3)]
    pub at_ms: UnixMillis,
}

/// What one rollout step commits, atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RolloutCommit {
    /// The rollout's seq.
    pub seq: u64,
    /// New controller state.
    pub state: Vec<u8>,
    /// Agent assignments made: `(agent, assign)`.
    pub assigns: Vec<(String, RolloutAssign)>,
    /// New phase text.
    pub phase: Option<String>,
    /// Finished: `(final pool version, outcome text)`.
    pub finished: Option<(u64, String)>,
    /// Audit lines `(actor, action, detail)`.
    pub audit: Vec<(String, String, String)>,
    /// Inbox entries consumed.
    pub consumed: Vec<u64>,
}

/// Whether `workflow` has an active rollout (any pool), inside a write transaction.
pub(crate) fn has_active_rollout(
    txn: &WriteTransaction,
    workflow: &str,
) -> Result<bool, StoreError> {
    let t = txn.open_table(DECISIONS)?;
    for e in t.range((workflow, "")..)? {
        let (k, v) = e?;
        if k.value().0 != workflow {
            break;
        }
        let d: PoolDecision = decode(v.value(), "pool_decisions", workflow)?;
        if d.rollout.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether an active rollout of `workflow` (any pool) rolls out `version`.
fn rolls_out(txn: &WriteTransaction, workflow: &str, version: u64) -> Result<bool, StoreError> {
    let decisions = txn.open_table(DECISIONS)?;
    let rollouts = txn.open_table(ROLLOUTS)?;
    for e in decisions.range((workflow, "")..)? {
        let (k, v) = e?;
        if k.value().0 != workflow {
            break;
        }
        let d: PoolDecision = decode(v.value(), "pool_decisions", workflow)?;
        let Some(seq) = d.rollout else { continue };
        if let Some(r) = rollouts.get(seq)? {
            let r: RolloutRecord = decode(r.value(), "rollouts", seq)?;
            if r.active && r.to_version == version {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Queue `ev` for the active rollouts of its workflow. A finished run is queued only when it is
/// a run of a version an active rollout of the workflow rolls out: a controller counts no other
/// run (`Controller::handle_run`), and the runs of the version the fleet already has are most
/// of the ingest, which the driver would otherwise have to read, feed and consume before the
/// activations and runs queued behind them.
pub(crate) fn enqueue_event(txn: &WriteTransaction, ev: &RolloutEvent) -> Result<(), StoreError> {
    if let RolloutEventKind::Run { version, .. } = ev.kind
        && !rolls_out(txn, &ev.workflow, version)?
    {
        return Ok(());
    }
    let mut t = txn.open_table(ROLLOUT_INBOX)?;
    let seq = t.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    t.insert(seq, encode(ev)?.as_slice())?;
    Ok(())
}

/// The replicated tables a controller commit changes (`replicated.rs`, [`Scope`]).
const ROLLOUT_SCOPE: Scope = Scope::Only(&[
    "rollouts",
    "rollout_state",
    "rollout_agents",
    "pool_decisions",
    "rollout_events",
]);

impl Store {
    /// Start a rollout: refused when the pool is pinned or already has an active rollout of the
    /// workflow. `make` builds the controller state from the rollout's seq (its id is
    /// `ro-<seq>`) and returns the first commit; all of it is committed in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_rollout(
        &self,
        workflow: &str,
        pool: &str,
        from_version: u64,
        to_version: u64,
        actor: &str,
        now_ms: UnixMillis,
        make: impl FnOnce(u64) -> Result<RolloutCommit, StoreError>,
    ) -> Result<RolloutRecord, StoreError> {
        let txn = self.begin_write()?;
        let cur = self.check_pool_and_version(&txn, workflow, pool, to_version)?;
        if let Some(c) = &cur {
            refuse_if_held(workflow, pool, c, "roll out into")?;
        }
        Self::stop_following(&txn, workflow)?;
        let seq = next_decision_seq(&txn)?;
        let d = PoolDecision {
            version: from_version,
            pinned: false,
            seq,
            at_ms: now_ms,
            actor: actor.into(),
            follow_latest: false,
            rollout: Some(seq),
        };
        txn.open_table(DECISIONS)?
            .insert((workflow, pool), encode(&d)?.as_slice())?;
        let rec = RolloutRecord {
            seq,
            id: format!("ro-{seq}"),
            workflow: workflow.into(),
            pool: pool.into(),
            from_version,
            to_version,
            started_by: actor.into(),
            started_ms: now_ms,
            active: true,
            phase: "deploying step 0".into(),
            finished_ms: None,
            outcome: None,
        };
        txn.open_table(ROLLOUTS)?
            .insert(seq, encode(&rec)?.as_slice())?;
        let commit = make(seq)?;
        Self::apply_commit(&txn, commit, now_ms, self.events_table())?;
        txn.commit()?;
        self.rollout(seq)
    }

    /// Commit one controller step (state, assignments, phase, finish, audit, consumed inbox
    /// entries) in one transaction.
    pub(crate) fn commit_rollout(
        &self,
        commit: RolloutCommit,
        now_ms: UnixMillis,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write_in(ROLLOUT_SCOPE)?;
        Self::apply_commit(&txn, commit, now_ms, self.events_table())?;
        txn.commit()?;
        Ok(())
    }

    /// Commit several controller steps in one transaction (the driver's turn: every rollout of
    /// a workflow sees the same events, and they are consumed with all of their new states),
    /// dropping the inbox entries `unused` that no active rollout needs.
    pub(crate) fn commit_rollouts(
        &self,
        commits: Vec<RolloutCommit>,
        unused: &[u64],
        now_ms: UnixMillis,
    ) -> Result<(), StoreError> {
        if commits.is_empty() && unused.is_empty() {
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        let txn = self.begin_write_in(ROLLOUT_SCOPE)?;
        let waited = t0.elapsed();
        for c in commits {
            Self::apply_commit(&txn, c, now_ms, self.events_table())?;
        }
        if !unused.is_empty() {
            let mut t = txn.open_table(self.events_table())?;
            for s in unused {
                t.remove(*s)?;
            }
        }
        let applied = t0.elapsed();
        txn.commit()?;
        tracing::debug!(
            lock_wait_ms = waited.as_secs_f64() * 1e3,
            apply_ms = (applied - waited).as_secs_f64() * 1e3,
            commit_ms = (t0.elapsed() - applied).as_secs_f64() * 1e3,
            "rollout commit"
        );
        Ok(())
    }

    /// Delete consumed inbox entries that no rollout needed.
    pub(crate) fn drop_events(&self, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write_in(ROLLOUT_SCOPE)?;
        {
            let mut t = txn.open_table(self.events_table())?;
            for s in seqs {
                t.remove(*s)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn apply_commit(
        txn: &WriteTransaction,
        c: RolloutCommit,
        now_ms: UnixMillis,
        events: TableDefinition<u64, &[u8]>,
    ) -> Result<(), StoreError> {
        let mut rollouts = txn.open_table(ROLLOUTS)?;
        let mut rec: RolloutRecord = match rollouts.get(c.seq)? {
            Some(v) => decode(v.value(), "rollouts", c.seq)?,
            None => {
                return Err(DbError::Inconsistent(format!("rollout {} missing", c.seq)).into());
            }
        };
        txn.open_table(ROLLOUT_STATE)?
            .insert(c.seq, c.state.as_slice())?;
        {
            let mut ra = txn.open_table(ROLLOUT_AGENTS)?;
            for (agent, a) in &c.assigns {
                ra.insert(
                    (agent.as_str(), rec.workflow.as_str(), rec.pool.as_str()),
                    encode(a)?.as_slice(),
                )?;
            }
            if c.finished.is_some() {
                // Keyed by agent first (desired state reads one agent's entries); the end of a
                // rollout is rare enough for a scan.
                let mut keys = Vec::new();
                for e in ra.iter()? {
                    let (k, _) = e?;
                    let (a, w, p) = k.value();
                    if w == rec.workflow && p == rec.pool {
                        keys.push(a.to_string());
                    }
                }
                for a in keys {
                    ra.remove((a.as_str(), rec.workflow.as_str(), rec.pool.as_str()))?;
                }
            }
        }
        if let Some(p) = c.phase {
            rec.phase = p;
        }
        if let Some((version, outcome)) = c.finished {
            rec.active = false;
            rec.finished_ms = Some(now_ms);
            rec.outcome = Some(outcome);
            let mut dec = txn.open_table(DECISIONS)?;
            let d: Option<PoolDecision> =
                match dec.get((rec.workflow.as_str(), rec.pool.as_str()))? {
                    Some(v) => Some(decode(v.value(), "pool_decisions", &rec.workflow)?),
                    None => None,
                };
            if let Some(mut d) = d
                && d.rollout == Some(c.seq)
            {
                d.rollout = None;
                d.version = version;
                dec.insert(
                    (rec.workflow.as_str(), rec.pool.as_str()),
                    encode(&d)?.as_slice(),
                )?;
            }
        }
        rollouts.insert(c.seq, encode(&rec)?.as_slice())?;
        drop(rollouts);
        for (actor, action, detail) in &c.audit {
            audit_in(
                txn,
                now_ms,
                actor,
                action,
                &format!("{}@{}", rec.workflow, rec.pool),
                detail,
            )?;
        }
        let mut inbox = txn.open_table(events)?;
        for s in &c.consumed {
            inbox.remove(*s)?;
        }
        Ok(())
    }

    /// Every rollout, oldest first.
    pub fn rollouts(&self) -> Result<Vec<RolloutRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(decode_all(&txn.open_table(ROLLOUTS)?, "rollouts")?)
    }

    /// One rollout by seq.
    pub(crate) fn rollout(&self, seq: u64) -> Result<RolloutRecord, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(ROLLOUTS)?;
        let v = t
            .get(seq)?
            .ok_or_else(|| StoreError::NoRollout(format!("ro-{seq}")))?;
        Ok(decode(v.value(), "rollouts", seq)?)
    }

    /// A rollout's controller state bytes.
    pub(crate) fn rollout_state(&self, seq: u64) -> Result<Vec<u8>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(ROLLOUT_STATE)?;
        let v = t
            .get(seq)?
            .ok_or_else(|| StoreError::NoRollout(format!("ro-{seq}")))?;
        Ok(v.value().to_vec())
    }

    /// What active rollouts assigned `agent`: `((workflow, pool), assign)`.
    pub(crate) fn rollout_assigns_for(
        &self,
        agent: &str,
    ) -> Result<Vec<(WorkflowPool, RolloutAssign)>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(ROLLOUT_AGENTS)?;
        let mut out = Vec::new();
        for e in t.range((agent, "", "")..)? {
            let (k, v) = e?;
            let (a, w, p) = k.value();
            if a != agent {
                break;
            }
            out.push((
                (w.to_string(), p.to_string()),
                decode(v.value(), "rollout_agents", a)?,
            ));
        }
        Ok(out)
    }

    /// The queued rollout events, oldest first (at most `limit`).
    pub fn pending_events(&self, limit: usize) -> Result<Vec<(u64, RolloutEvent)>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = match txn.open_table(self.events_table()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for e in t.iter()?.take(limit) {
            let (k, v) = e?;
            out.push((k.value(), decode(v.value(), "rollout_inbox", k.value())?));
        }
        Ok(out)
    }

    /// The queue the rollout controllers read and consume: this store's own inbox (embedded),
    /// or, in HA mode, the replicated queue every replica forwards its inbox to
    /// ([`Store::forward_rollout_events`]), so the leader sees the events of every replica's
    /// agents.
    pub(super) fn events_table(&self) -> TableDefinition<'static, u64, &'static [u8]> {
        self.queue_table(ROLLOUT_INBOX, ROLLOUT_EVENTS)
    }

    /// HA mode: move up to `limit` events of this replica's inbox to the replicated queue, in
    /// one write (published to etcd before it commits: an event is in exactly one of the two).
    /// How many moved; 0 in embedded mode.
    pub fn forward_rollout_events(&self, limit: usize) -> Result<usize, StoreError> {
        self.forward_queue(ROLLOUT_INBOX, ROLLOUT_EVENTS, META_EVENT_SEQ, limit)
    }

    /// Queue an event for the rollouts of its workflow (only when one is active).
    pub fn enqueue_rollout_event(&self, ev: &RolloutEvent) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        if has_active_rollout(&txn, &ev.workflow)? {
            enqueue_event(&txn, ev)?;
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(())
    }
}
