//! The run history HA replicas share (`[ha] postgres`; PostgreSQL in `ha/history.rs`).
//!
//! An embedded hub, or a replica without `[ha] postgres`, keeps runs, task instances, missed
//! firings and each agent's committed status sequence in its own redb store only. With a shared
//! history set ([`Store::set_history`]), that history is the one every replica reads and
//! acknowledges from:
//!
//! - an ingest locks the agent's sequence there ([`SharedHistory::lock_agent`], which also
//!   reads which of the runs the batch ends had a task fail there), passes only
//!   the entries past it to the replica's own ingest (the same code as the embedded hub's: it
//!   keeps its local copy and queues the alert inputs and rollout events), then commits the
//!   entries and the new sequence there in one transaction; only then is the batch
//!   acknowledged. An agent that moves to another replica resumes from the shared sequence: no
//!   entry is stored twice, none is skipped;
//! - reads of runs, task instances and missed firings (the API, the console, missed-firing
//!   detection) go to the shared history, so every replica answers alike.
//!
//! Crash windows (docs/operations.md, "Run history in PostgreSQL"): if the replica dies after
//! its local commit and before the shared one, the agent sends the batch again; stored there
//! once, and its alert inputs and rollout events queued again only if the batch goes to another
//! replica (the same replica's local sequence skips them).

use std::collections::HashSet;

use outpost_common::record::{
    MissedFirings, OutboxEntry, RunRecord, TaskInstanceRecord, UnixMillis,
};

use super::error::StoreError;
use super::file::Store;
use super::records::{HubRun, RunQuery};
use super::retention::{RetentionPolicy, RetentionReport};
use crate::firings::watch::Reported;

/// The entries of one status batch the shared history stores: those past its committed
/// sequence, with their encoded records (`None` for events that are not stored as history).
pub struct IngestBatch<'a> {
    /// The agent.
    pub agent: &'a str,
    /// The entries, in increasing seq order.
    pub entries: &'a [OutboxEntry],
    /// Each entry's encoded record (the run record carries the agent's id).
    pub encoded: &'a [Option<Vec<u8>>],
    /// The agent's committed sequence once the batch is stored.
    pub seq: u64,
}

/// A run history several replicas share. Every method blocks until the history answered; a
/// failure is [`StoreError::History`] and changed nothing there.
pub trait SharedHistory: Send + Sync {
    /// The highest status sequence of `agent` committed in the shared history (0: none).
    fn committed_seq(&self, agent: &str) -> Result<u64, StoreError>;
    /// Lock `agent`'s sequence for an ingest, until the lock is committed or dropped (dropped:
    /// nothing of the batch is stored); `ending` names the runs the batch ends, whose failed
    /// tasks the lock reads too.
    fn lock_agent<'a>(
        &'a self,
        agent: &str,
        ending: &[&str],
    ) -> Result<Box<dyn HistoryLock + 'a>, StoreError>;
    /// Runs matching `q`, newest first (creation time, then agent, then run id).
    fn runs(&self, q: &RunQuery) -> Result<Vec<HubRun>, StoreError>;
    /// One run of one agent with its task instances (in task id order).
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        agent: &str,
        run_id: &str,
    ) -> Result<Option<(RunRecord, Vec<TaskInstanceRecord>)>, StoreError>;
    /// The agents that hold a run with this id, in order.
    fn run_agents(&self, run_id: &str) -> Result<Vec<String>, StoreError>;
    /// Whether a task of the run ended `failed`.
    fn run_had_failed_task(&self, agent: &str, run_id: &str) -> Result<bool, StoreError>;
    /// What `agent` reported for `workflow`'s instants in `[start, end]`.
    fn reported_firings(
        &self,
        agent: &str,
        workflow: &str,
        start: UnixMillis,
        end: UnixMillis,
    ) -> Result<Reported, StoreError>;
    /// Missed-firing events of an agent, in seq order.
    fn missed(&self, agent: &str) -> Result<Vec<(u64, MissedFirings)>, StoreError>;
    /// Delete at most `policy.batch` runs `policy` no longer keeps at `now_ms`, with their task
    /// instances, by the embedded store's rules (`retention.rs`); never a run of a workflow in
    /// `held` (an active rollout's).
    fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        now_ms: UnixMillis,
        held: &[String],
    ) -> Result<RetentionReport, StoreError>;
}

/// An agent's sequence, locked in the shared history for one ingest.
pub trait HistoryLock {
    /// The agent's committed sequence there.
    fn committed_seq(&self) -> u64;
    /// Of the runs named when locking, those with a task that ended `failed`.
    fn failed_task_runs(&self) -> &HashSet<String>;
    /// Store the batch and its sequence, and commit.
    fn commit(self: Box<Self>, batch: &IngestBatch<'_>) -> Result<(), StoreError>;
}

impl Store {
    /// Attach the shared run history (HA mode with `[ha] postgres`). Once per store.
    pub fn set_history(&self, h: std::sync::Arc<dyn SharedHistory>) {
        let _ = self.history.set(h);
    }

    /// The shared run history, if one is attached.
    pub(crate) fn shared_history(&self) -> Option<&dyn SharedHistory> {
        self.history.get().map(|h| h.as_ref())
    }
}
