//! The commit pipeline: the committer thread and the durability bookkeeping.
//!
//! Engine `Commit`s and the driver's own records gather in one pending batch; [`submit`] hands a
//! batch to the committer thread (one redb two-phase commit for whatever queued up meanwhile)
//! and returns its seq. What must wait for a batch to be durable (a spawn, a kill, a finished
//! run, a dispatched attempt's start) is parked here with that seq; [`on_durable`] returns it,
//! with the status events for the observer, once the committer reports the batch durable. The
//! pipeline carries out nothing itself: the driver does, in order.
//!
//! [`submit`]: CommitPipeline::submit
//! [`on_durable`]: CommitPipeline::on_durable

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_agent_core::engine::Action;
use outpost_common::record::{RunId, StatusEvent};

use crate::store::{Batch, Store};

/// Group commit: how long engine records that no spawn or kill waits for (a process's pid, an
/// outcome whose follow-up needs no new process) may be held back so that they join the next
/// commit, while processes are running (whose events will bring that commit soon).
///
/// Every spawn and kill is still preceded by the commit of everything before it (durable
/// first). A crash loses at most this window's records, which recovery treats like a crash just
/// before them: an attempt without a committed outcome is recovered as interrupted.
pub const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(5);

/// How the committer reports a batch durable (or failed): `(seq, Ok(outbox last seq))`.
pub(crate) type OnCommitted = Box<dyn Fn(u64, Result<u64, String>) + Send>;

/// What became ready when batches turned durable: to carry out, in order.
#[derive(Default)]
pub(crate) struct Durable {
    /// Actions that waited for their batch.
    pub actions: Vec<Action>,
    /// Status events of the durable batches, for the observer.
    pub events: Vec<StatusEvent>,
    /// A durable batch wrote hook jobs: the hook runner has work.
    pub hooks: bool,
}

/// A batch for the committer thread; `reply` for a caller that waits.
struct CommitJob {
    seq: u64,
    batch: Batch,
    reply: Option<std::sync::mpsc::SyncSender<Result<u64, String>>>,
}

pub(crate) struct CommitPipeline {
    committer: Committer,
    /// Planner state, versions and engine records waiting for the next commit.
    pending: Batch,
    /// Since when (monotonic) `pending` holds records held back by the group commit.
    pending_since: Option<Duration>,
    /// Seq of the last batch submitted to the committer, and of the last one durable.
    submitted: u64,
    durable: u64,
    /// The batch that holds each dispatched attempt not yet durable: its `Start` waits for it.
    claims: HashMap<(RunId, String, u32), u64>,
    /// Actions waiting for a batch to be durable, in order: (batch seq, action).
    waiting: VecDeque<(u64, Action)>,
    /// Events of submitted batches, for the observer once they are durable.
    inflight: VecDeque<(u64, Vec<StatusEvent>)>,
    /// Seqs of submitted batches that wrote hook jobs.
    hook_batches: VecDeque<u64>,
    /// Keep events for an observer.
    observed: bool,
    /// A commit failed: the driver stops with this error.
    failed: Option<String>,
    /// Set by the committer while a commit fails and is retried (see `commit_until_done`).
    stalled: Arc<Mutex<Option<String>>>,
    /// Tells the hub link the outbox's last seq after each commit.
    outbox_watch: Option<tokio::sync::watch::Sender<u64>>,
}

impl CommitPipeline {
    pub fn new(store: Arc<Store>, on_committed: OnCommitted) -> CommitPipeline {
        let stalled = Arc::new(Mutex::new(None));
        CommitPipeline {
            committer: start_committer(store, on_committed, stalled.clone()),
            pending: Batch::default(),
            pending_since: None,
            submitted: 0,
            durable: 0,
            claims: HashMap::new(),
            waiting: VecDeque::new(),
            inflight: VecDeque::new(),
            hook_batches: VecDeque::new(),
            observed: false,
            failed: None,
            stalled,
            outbox_watch: None,
        }
    }

    /// Keep the events of each batch until it is durable (for an observer).
    pub fn observe(&mut self) {
        self.observed = true;
    }

    /// Publish the outbox's last seq after every commit, starting from `last`.
    pub fn outbox_watch(&mut self, last: u64) -> tokio::sync::watch::Receiver<u64> {
        let (tx, rx) = tokio::sync::watch::channel(last);
        self.outbox_watch = Some(tx);
        rx
    }

    /// The batch gathering records for the next commit.
    pub fn pending(&mut self) -> &mut Batch {
        &mut self.pending
    }

    pub fn pending_ref(&self) -> &Batch {
        &self.pending
    }

    /// Records were added to `pending` at `mono` that nothing waits for: start the group-commit
    /// window if it is not running.
    pub fn hold_back_since(&mut self, mono: Duration) {
        if self.pending_since.is_none() {
            self.pending_since = Some(mono);
        }
    }

    /// May records be held back for the group commit now?
    pub fn may_hold_back(&self, running: usize, stopping: bool, mono: Duration) -> bool {
        running > 0
            && !stopping
            && self
                .pending_since
                .is_none_or(|t| mono.saturating_sub(t) < GROUP_COMMIT_WINDOW)
    }

    /// When the group commit's window ends (monotonic).
    pub fn deadline(&self) -> Option<Duration> {
        self.pending_since.map(|t| t + GROUP_COMMIT_WINDOW)
    }

    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Everything submitted is durable and nothing is pending.
    pub fn is_settled(&self) -> bool {
        self.durable >= self.submitted && self.pending.is_empty()
    }

    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Park `action` until batch `seq` is durable.
    pub fn wait_for(&mut self, seq: u64, action: Action) {
        self.waiting.push_back((seq, action));
    }

    /// The batch a dispatched attempt's `Start` waits for (0: none in flight).
    pub fn claim(&self, run_id: &RunId, task_id: &str, attempt: u32) -> u64 {
        self.claims
            .get(&(run_id.clone(), task_id.to_string(), attempt))
            .copied()
            .unwrap_or(0)
    }

    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Why the store cannot commit now, while the committer retries.
    pub fn stalled(&self) -> Option<String> {
        self.stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// For tests: the committer's stall report.
    #[cfg(test)]
    pub fn stall_report(&self) -> Arc<Mutex<Option<String>>> {
        self.stalled.clone()
    }

    /// Hand a batch to the committer; returns its seq.
    pub fn submit(&mut self, batch: Batch) -> u64 {
        self.submitted += 1;
        let seq = self.submitted;
        for e in &batch.events {
            if let StatusEvent::Task(t) = e
                && let Some(a) = t.attempts.last()
                && a.dispatched_ms.is_some()
                && a.outcome.is_none()
            {
                self.claims
                    .insert((t.run_id.clone(), t.task_id.clone(), a.attempt), seq);
            }
        }
        if self.observed {
            self.inflight.push_back((seq, batch.events.clone()));
        }
        if !batch.hook_jobs.is_empty() {
            self.hook_batches.push_back(seq);
        }
        let job = CommitJob {
            seq,
            batch,
            reply: None,
        };
        if self.committer.send(job).is_err() {
            self.failed = Some("the committer thread is gone".into());
        }
        seq
    }

    /// Submit what `pending` holds (if anything).
    pub fn submit_pending(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        self.pending_since = None;
        if !batch.is_empty() {
            self.submit(batch);
        }
    }

    /// Block until batch `seq` is durable (the committer commits in order); what became ready.
    pub fn wait_durable(&mut self, seq: u64) -> anyhow::Result<Durable> {
        if let Some(e) = &self.failed {
            anyhow::bail!("committing to the store: {e}");
        }
        if self.durable >= seq {
            return Ok(Durable::default());
        }
        // An empty batch behind the others: its reply means they are all durable.
        let (rtx, rrx) = std::sync::mpsc::sync_channel(1);
        self.submitted += 1;
        let barrier = self.submitted;
        let job = CommitJob {
            seq: barrier,
            batch: Batch::default(),
            reply: Some(rtx),
        };
        if self.committer.send(job).is_err() {
            anyhow::bail!("committing to the store: the committer thread is gone");
        }
        match rrx.recv() {
            Ok(Ok(last_seq)) => Ok(self.on_durable(barrier, last_seq)),
            Ok(Err(e)) => {
                self.failed = Some(e.clone());
                anyhow::bail!("committing to the store: {e}")
            }
            Err(_) => anyhow::bail!("committing to the store: the committer thread is gone"),
        }
    }

    /// The committer's report on batch `seq`.
    pub fn on_committed(&mut self, seq: u64, result: Result<u64, String>) -> Durable {
        match result {
            Ok(last_seq) => self.on_durable(seq, last_seq),
            Err(e) => {
                tracing::error!(batch = seq, "commit failed: {e}");
                self.failed = Some(e);
                Durable::default()
            }
        }
    }

    /// Batches up to `seq` are durable: tell the hub link; return the observer's events and the
    /// actions that waited.
    pub fn on_durable(&mut self, seq: u64, last_seq: u64) -> Durable {
        let mut out = Durable::default();
        if seq <= self.durable {
            return out;
        }
        self.durable = seq;
        if !self.claims.is_empty() {
            self.claims.retain(|_, s| *s > seq);
        }
        if let Some(w) = &self.outbox_watch {
            w.send_if_modified(|v| {
                let changed = *v < last_seq;
                *v = (*v).max(last_seq);
                changed
            });
        }
        while self.inflight.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, events)) = self.inflight.pop_front() {
                out.events.extend(events);
            }
        }
        while self.hook_batches.front().is_some_and(|s| *s <= seq) {
            self.hook_batches.pop_front();
            out.hooks = true;
        }
        while self.waiting.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, a)) = self.waiting.pop_front() {
                out.actions.push(a);
            }
        }
        out
    }
}

/// The committer: one thread that commits batches in the order they were submitted and reports
/// each through `on_committed` (a redb commit is a blocking two-phase commit: two fsyncs). The
/// driver goes on meanwhile: starting dispatched attempts, taking in exits, preparing the next
/// batch; what needs a batch durable waits for its report.
fn start_committer(
    store: Arc<Store>,
    on_committed: OnCommitted,
    stalled: Arc<Mutex<Option<String>>>,
) -> Committer {
    let (jtx, jrx) = std::sync::mpsc::channel::<CommitJob>();
    let spawned = std::thread::Builder::new()
        .name("outpost-commit".into())
        .spawn(move || {
            while let Ok(first) = jrx.recv() {
                // Everything queued meanwhile joins this commit (in order): one two-phase commit
                // for all of it.
                let mut seq = first.seq;
                let mut batch = first.batch;
                let mut replies: Vec<_> = first.reply.into_iter().collect();
                while let Ok(next) = jrx.try_recv() {
                    seq = next.seq;
                    batch.append(next.batch);
                    replies.extend(next.reply);
                }
                let result = commit_until_done(&store, batch, &stalled);
                for r in replies {
                    let _ = r.send(result.clone());
                }
                on_committed(seq, result);
            }
        });
    let thread = match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            // Without a thread, jobs are never committed: every waiter gets an error at once.
            tracing::error!("cannot start the committer thread: {e}");
            None
        }
    };
    Committer {
        jobs: Some(jtx),
        thread,
    }
}

/// Commit `batch`; on failure (a full disk, an I/O error) keep it, reopen the store and retry,
/// with a growing pause, until it is durable. Nothing that waits for it (a spawn, a kill, an
/// acknowledgement) happens meanwhile, so no attempt starts; `stalled` says why, for `status`.
/// A failed commit that landed after all (an error after its last write) is not repeated: its
/// events moved `last_seq`.
fn commit_until_done(
    store: &Store,
    batch: Batch,
    stalled: &Mutex<Option<String>>,
) -> Result<u64, String> {
    let before = store.last_seq().ok();
    let has_events = !batch.events.is_empty();
    let mut result = store.commit(batch.clone()).map(|i| i.last_seq);
    let mut pause = Duration::from_millis(200);
    while let Err(e) = &result {
        let message = format!("cannot commit to the store: {e:#}");
        tracing::error!("{message}; no attempt starts until it succeeds; retrying in {pause:?}");
        *stalled.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
        if let Err(e) = store.reopen() {
            result = Err(e);
            continue;
        }
        let now = store.last_seq();
        if has_events && before.is_some() && now.as_ref().ok() != before.as_ref() {
            result = now;
            break;
        }
        result = store.commit(batch.clone()).map(|i| i.last_seq);
    }
    let mut s = stalled.lock().unwrap_or_else(|p| p.into_inner());
    if s.take().is_some() {
        tracing::info!("the store commits again: attempts start again");
    }
    result.map_err(|e| format!("{e:#}"))
}

/// The committer thread's queue and handle. Dropping it closes the queue and joins the thread,
/// so that whatever it still commits, and its `Arc<Store>` (whose last drop closes the redb file
/// cleanly), is done before the process can exit: an exit during that close would leave the
/// file to be repaired on the next open.
struct Committer {
    jobs: Option<std::sync::mpsc::Sender<CommitJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    fn send(&self, job: CommitJob) -> Result<(), ()> {
        match &self.jobs {
            Some(j) => j.send(job).map_err(|_| ()),
            None => Err(()),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the committer thread panicked");
        }
    }
}
