//! The driver: the thin async layer that wires the sans-IO core (`outpost_agent_core`) to the
//! store (redb), the executor (OS processes) and the outside world (control socket, signals).
//!
//! One task owns everything mutable ([`Driver::run_loop`]); processes report back through a
//! channel. The durable-first rule is kept here: engine `Commit`s are merged into batches that
//! one committer thread commits in order (one redb two-phase commit for whatever queued up
//! meanwhile), and every `Spawn`, `Kill` or `RunFinished` waits until the batch holding its
//! records is durable ([`Event::Committed`]). A `Start` (an attempt dispatched ahead of a free
//! slot, see `outpost_agent_core::engine`) waits only for the batch that held its dispatch,
//! normally durable long before; so the driver keeps taking exits and refilling slots while a
//! commit is in flight. Callers that read the store afterwards (control requests, the end of a
//! foreground run) wait for everything submitted ([`Driver::flush`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use outpost_agent_core::engine::{Action, Engine, EngineConfig, KillReason};
use outpost_agent_core::planner::{Planner, PlannerOutput};
use outpost_common::clock::{Clock, Now};
use outpost_common::model::{Exec, TaskIdx, Workflow};
use outpost_common::record::{
    AttemptOutcome, LimitsMode, MissedFirings, RunId, RunKind, RunRecord, RunState, StatusEvent,
    TaskInstanceRecord,
};
use tokio::sync::{mpsc, oneshot};

use crate::exec::{self, ExecConfig, Killer, Prepared, SpawnRequest};
use crate::store::{Batch, Store, WorkflowVersion};

/// Messages into the driver loop.
pub enum Event {
    Started {
        run_id: RunId,
        task: TaskIdx,
        attempt: u32,
        pid: u32,
        limits: LimitsMode,
        log: PathBuf,
        killer: Killer,
    },
    Exited {
        run_id: RunId,
        task: TaskIdx,
        attempt: u32,
        outcome: AttemptOutcome,
        reason: Option<String>,
        outputs: Vec<(String, String)>,
    },
    Control(
        crate::control::Request,
        oneshot::Sender<crate::control::Response>,
    ),
    /// Rescan the workflows directory now.
    Rescan,
    /// Apply the retention policy now.
    Prune,
    /// Begin graceful shutdown.
    Shutdown,
    /// Activate (or remove) a workflow version the hub link verified.
    HubActivate(
        crate::hub_link::Activation,
        oneshot::Sender<Result<(), outpost_common::proto::Rejection>>,
    ),
    /// Workflows paused at the hub (level-triggered: the others are not).
    HubPaused(Vec<String>),
    /// The committer made batch `seq` durable (or failed to: the driver stops).
    Committed {
        seq: u64,
        result: Result<u64, String>,
    },
}

/// A batch for the committer thread; `reply` for a caller that waits.
struct CommitJob {
    seq: u64,
    batch: Batch,
    reply: Option<std::sync::mpsc::SyncSender<Result<u64, String>>>,
}

/// The committer: one thread that commits batches in the order they were submitted and reports
/// each as [`Event::Committed`] (a redb commit is a blocking two-phase commit: two fsyncs). The
/// driver goes on meanwhile: starting dispatched attempts, taking in exits, preparing the next
/// batch; what needs a batch durable waits for its `Committed`.
fn start_committer(
    store: Arc<Store>,
    tx: mpsc::UnboundedSender<Event>,
    stalled: Arc<std::sync::Mutex<Option<String>>>,
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
                let _ = tx.send(Event::Committed { seq, result });
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
    stalled: &std::sync::Mutex<Option<String>>,
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

/// `origin` of workflows deployed by the hub (others are file paths).
pub const HUB_ORIGIN: &str = "hub";

/// How long before a cron instant its run is created and committed ("pre-commit").
///
/// A scheduled run must be durable before its first process starts, and the commit (a redb
/// two-phase commit: two fsyncs) plus the attempt's directory and files take a few
/// milliseconds. So the driver wakes this much before the instant, hands the planner and the
/// engine the instant itself as "now" (the run's `started_ms` and the attempts' `started_ms`
/// and timeouts are those of the instant), commits the run with its first attempts, prepares
/// the processes ([`exec::prepare`]), then sleeps precisely until the instant and starts them.
/// Durable-first holds: every commit happens before the spawn it covers.
///
/// Crash semantics: the attempts are committed as not started yet (the engine's "deferred
/// starts": `dispatched_ms` set), and each is written to the start journal
/// ([`crate::startlog`]) just before its process starts (`ARM_AHEAD`), like a dispatched
/// attempt. So after
/// a crash inside the lead (same boot), an attempt that never started is taken back and runs
/// once the agent is back; without a trusted journal it is recovered like any attempt without
/// an outcome, as interrupted (retried if the task is idempotent and has attempts left, else
/// failed). Decisions that depend on other runs (`overlap`, `max_active_runs`,
/// `cancel_running`) are taken at the pre-commit, up to this lead before the instant.
///
/// The default; `precommit_lead` in the agent config sets it (slow storage needs a longer
/// lead for precise starts), up to [`MAX_PRECOMMIT_LEAD`].
pub const PRECOMMIT_LEAD: Duration = Duration::from_millis(50);

/// How often the driver reads the state directory's free space ([`crate::disk`]).
pub const DISK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest pre-commit lead the agent config may set.
pub const MAX_PRECOMMIT_LEAD: Duration = Duration::from_secs(2);

/// Group commit: how long engine records that no spawn or kill waits for (a process's pid, an
/// outcome whose follow-up needs no new process) may be held back so that they join the next
/// commit, while processes are running (whose events will bring that commit soon).
///
/// Every spawn and kill is still preceded by the commit of everything before it (durable
/// first). A crash loses at most this window's records, which recovery treats like a crash just
/// before them: an attempt without a committed outcome is recovered as interrupted.
pub const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(5);

/// An attempt committed ahead of its scheduled instant, started when `due` (monotonic) comes.
struct DeferredSpawn {
    due: Duration,
    /// The batch that must be durable first.
    seq: u64,
    run_id: RunId,
    task: TaskIdx,
    attempt: u32,
    scheduled_ms: Option<i64>,
    prepared: Prepared,
    /// Journalled and reported to the engine as started (see [`ARM_AHEAD`]).
    armed: bool,
}

/// How long before its instant a pre-committed attempt is *armed*: written to the start
/// journal and reported to the engine as started, so that neither is on the path between the
/// wake-up at the instant and the spawn (the journal's `write` took ~50 µs at the median and
/// more in the tail). A crash in this window leaves an attempt that may have started, which
/// recovery handles conservatively (as interrupted).
const ARM_AHEAD: Duration = Duration::from_millis(2);

/// Something interesting for a foreground observer (the `run` command's progress display).
pub type Observer = Box<dyn FnMut(&StatusEvent) + Send>;

/// A loaded workflow version and its clock.
struct Loaded {
    wf: Arc<Workflow>,
    version: u64,
    origin: String,
    planner: Option<Planner>,
    paused: bool,
    /// The planner was last shown this (future) instant by a pre-commit; it is shown no
    /// earlier time until the clocks pass it.
    clock_floor: Option<Now>,
}

pub struct DriverConfig {
    pub max_running: usize,
    /// See `EngineConfig::dispatch_ahead`.
    pub dispatch_ahead: usize,
    pub resources: BTreeMap<String, u32>,
    pub exec: ExecConfig,
    pub shutdown_grace: Duration,
    pub agent_id: Option<String>,
    /// Standalone mode: the directory of workflow files, rescanned on [`Event::Rescan`].
    pub workflows_dir: Option<PathBuf>,
    pub validate: outpost_common::workflow::ValidateOptions,
    /// Pruning of finished runs and their logs, on [`Event::Prune`].
    pub retention: Option<crate::store::Retention>,
    /// The state directory, for the start journal of dispatched attempts
    /// ([`crate::startlog`]); `None`: no journal (every dispatched attempt found after a crash
    /// counts as interrupted).
    pub start_journal_dir: Option<PathBuf>,
    /// How long before a cron instant its run is committed ([`PRECOMMIT_LEAD`] by default).
    pub precommit_lead: Duration,
    /// Watch the state directory's free space: no attempt starts while it is low
    /// ([`crate::disk`]); `None`: not watched.
    pub disk_guard: Option<crate::disk::DiskGuard>,
}

pub struct Driver {
    cfg: DriverConfig,
    clock: Arc<dyn Clock>,
    pub store: Arc<Store>,
    engine: Engine,
    workflows: BTreeMap<String, Loaded>,
    /// The workflow version and record of each active run (the engine owns its state).
    runs: HashMap<RunId, Arc<Workflow>>,
    killers: HashMap<(RunId, TaskIdx, u32), Killer>,
    /// Kills requested before the process reported its start.
    pending_kills: HashSet<(RunId, TaskIdx, u32)>,
    running: usize,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    /// Planner state and missed-firing events waiting for the next commit.
    pending: Batch,
    observer: Option<Observer>,
    /// Invalid-file diagnostics already logged (so a rescan does not repeat them every time).
    reported_bad: HashSet<String>,
    finished: Vec<(RunId, RunState)>,
    stopping: bool,
    /// Hub workflows whose probation must be re-evaluated (a run of them finished).
    probation_due: HashSet<String>,
    /// Tells the hub link the outbox's last seq after each commit.
    outbox_watch: Option<tokio::sync::watch::Sender<u64>>,
    pub started: DateTime<Utc>,
    /// Pre-committed attempts waiting for their instant (see [`PRECOMMIT_LEAD`]).
    deferred: Vec<DeferredSpawn>,
    /// While set (monotonic), `pump` defers the spawns it carries out to this instant.
    defer_to: Option<Duration>,
    /// Since when (monotonic) `pending` holds records held back by the group commit.
    pending_since: Option<Duration>,
    /// The committer thread's queue.
    committer: Committer,
    /// Seq of the last batch submitted to the committer, and of the last one durable.
    submitted: u64,
    durable: u64,
    /// The batch that holds each dispatched attempt not yet durable: its `Start` waits for it.
    claims: HashMap<(RunId, String, u32), u64>,
    /// Actions waiting for a batch to be durable, in order: (batch seq, action).
    waiting: std::collections::VecDeque<(u64, Action)>,
    /// Events of submitted batches, for the observer once they are durable.
    inflight: std::collections::VecDeque<(u64, Vec<StatusEvent>)>,
    /// A commit failed: the loop stops with this error.
    failed: Option<String>,
    /// The start journal of dispatched attempts, and what the previous process's said.
    start_log: Option<crate::startlog::StartLog>,
    journal_found: crate::startlog::Recovered,
    /// The journal must start over once every start journalled so far is durable.
    journal_reset_due: bool,
    /// `recover` ran: the dispatched attempts found in the store are resolved (once their
    /// records are durable), so the journal's old lines may be dropped.
    recovered: bool,
    /// Retention's view of time (clock steps, see `outpost_agent_core::retention`).
    retention_clock: outpost_agent_core::retention::RetentionClock,
    /// When free disk space was last read (monotonic).
    disk_checked: Option<Duration>,
    /// Set by the committer while a commit fails and is retried (see `commit_until_done`).
    store_stalled: Arc<std::sync::Mutex<Option<String>>>,
}

impl Driver {
    pub fn new(cfg: DriverConfig, clock: Arc<dyn Clock>, store: Arc<Store>) -> Driver {
        let (tx, rx) = mpsc::unbounded_channel();
        let store_stalled = Arc::new(std::sync::Mutex::new(None));
        let committer = start_committer(store.clone(), tx.clone(), store_stalled.clone());
        let seed =
            clock.wall().timestamp_nanos_opt().unwrap_or(0) as u64 ^ u64::from(std::process::id());
        let engine = Engine::new(EngineConfig {
            max_running: cfg.max_running.max(1),
            resources: cfg.resources.clone(),
            seed,
            dispatch_ahead: cfg.dispatch_ahead,
        });
        let started = clock.wall();
        let retention_clock =
            outpost_agent_core::retention::RetentionClock::new(Now::read(clock.as_ref()));
        let (start_log, journal_found) = match &cfg.start_journal_dir {
            Some(dir) => {
                let found = crate::startlog::recover(dir);
                let mut log = crate::startlog::StartLog::new(dir);
                if matches!(found, crate::startlog::Recovered::Trusted(_)) {
                    // Same boot: keep appending (more lines only claim more starts).
                    log.append();
                } else {
                    // Nobody may trust it (nor a journal that lacks this process's starts)
                    // until it starts over after recovery.
                    log.discard();
                }
                (Some(log), found)
            }
            None => (
                None,
                crate::startlog::Recovered::Untrusted("no start journal configured".into()),
            ),
        };
        let journal_reset_due = start_log.is_some();
        Driver {
            cfg,
            clock,
            store,
            engine,
            workflows: BTreeMap::new(),
            runs: HashMap::new(),
            killers: HashMap::new(),
            pending_kills: HashSet::new(),
            running: 0,
            tx,
            rx,
            pending: Batch::default(),
            observer: None,
            reported_bad: HashSet::new(),
            finished: Vec::new(),
            stopping: false,
            outbox_watch: None,
            probation_due: HashSet::new(),
            started,
            deferred: Vec::new(),
            defer_to: None,
            pending_since: None,
            committer,
            submitted: 0,
            durable: 0,
            claims: HashMap::new(),
            waiting: std::collections::VecDeque::new(),
            inflight: std::collections::VecDeque::new(),
            failed: None,
            start_log,
            journal_found,
            journal_reset_due,
            recovered: false,
            retention_clock,
            disk_checked: None,
            store_stalled,
        }
    }

    /// Restart or rotate the start journal when every start journalled so far is durable:
    /// nothing submitted is still in flight, nothing is pending, the engine holds nothing
    /// unpolled (see [`crate::startlog`]).
    fn maybe_reset_journal(&mut self) {
        let Some(log) = self.start_log.as_mut() else {
            return;
        };
        if !(self.journal_reset_due || log.wants_rotation()) {
            return;
        }
        // Before recovery (or in `run`, which recovers nothing) the journal may hold the only
        // evidence about dispatched attempts still open in the store: keep it.
        if !self.recovered
            || self.durable < self.submitted
            || !self.pending.is_empty()
            || self.engine.has_unpolled_output()
        {
            return;
        }
        log.reset();
        self.journal_reset_due = false;
    }

    pub fn sender(&self) -> mpsc::UnboundedSender<Event> {
        self.tx.clone()
    }

    /// Publish the outbox's last seq after every commit (for the hub link).
    pub fn outbox_watch(&mut self) -> tokio::sync::watch::Receiver<u64> {
        let last = self.store.last_seq().unwrap_or(0);
        let (tx, rx) = tokio::sync::watch::channel(last);
        self.outbox_watch = Some(tx);
        rx
    }

    pub fn set_observer(&mut self, o: Observer) {
        self.observer = Some(o);
    }

    fn now(&self) -> Now {
        Now::read(self.clock.as_ref())
    }

    /// Take the runs that finished since the last call.
    pub fn take_finished(&mut self) -> Vec<(RunId, RunState)> {
        std::mem::take(&mut self.finished)
    }

    pub fn running_tasks(&self) -> usize {
        self.running
    }

    // ----- workflows -------------------------------------------------------------------------

    /// Install (or replace) a workflow version. Runs in progress keep the version they started
    /// with; new firings use this one. The planner's last-fired instant comes from the store, so
    /// a restart or an edit never fires an instant twice.
    pub fn install_workflow(
        &mut self,
        wf: Workflow,
        version: u64,
        origin: String,
        scheduled: bool,
    ) -> anyhow::Result<()> {
        let now = self.now();
        let name = wf.name.clone();
        let last_fired = match self
            .workflows
            .get(&name)
            .and_then(|l| l.planner.as_ref())
            .and_then(|p| p.last_fired())
        {
            Some(t) => Some(t),
            None => self
                .store
                .last_fired(&name)?
                .and_then(DateTime::<Utc>::from_timestamp_millis),
        };
        // A workflow that never fired starts accounting at its activation instant, persisted now
        // so that downtime before its first firing is caught up (or reported) too.
        let last_fired = match last_fired {
            None if scheduled && wf.schedule.is_some() => {
                self.pending.last_fired.push((name.clone(), now.wall_ms()));
                Some(now.wall)
            }
            other => other,
        };
        let prev = self.workflows.get(&name).and_then(|l| l.planner.as_ref());
        let planner = wf.schedule.clone().filter(|_| scheduled).map(|s| {
            let p = Planner::new(
                s,
                wf.timezone,
                wf.catchup,
                wf.catchup_window,
                last_fired,
                now,
            )
            .with_workflow(&name);
            // A new version of a workflow this process already watches keeps that watch.
            match prev {
                Some(prev) => p.continuing(prev),
                None => p,
            }
        });
        let paused = self.store.is_paused(&name)?;
        self.workflows.insert(
            name,
            Loaded {
                wf: Arc::new(wf),
                version,
                origin,
                planner,
                paused,
                clock_floor: None,
            },
        );
        Ok(())
    }

    /// Stop scheduling a workflow whose file went away. Its active runs finish.
    pub fn uninstall_workflow(&mut self, name: &str) {
        self.workflows.remove(name);
    }

    /// Commit a batch now and wait for it (after everything submitted before it).
    fn commit(&mut self, batch: Batch) -> anyhow::Result<()> {
        let events = self.observer.as_ref().map(|_| batch.events.clone());
        let seq = self.submit(batch, events);
        self.wait_durable(seq)
    }

    /// Hand a batch to the committer; returns its seq.
    fn submit(&mut self, batch: Batch, events: Option<Vec<StatusEvent>>) -> u64 {
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
        if let Some(ev) = events {
            self.inflight.push_back((seq, ev));
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

    /// Block until batch `seq` is durable (the committer commits in order), then carry out what
    /// waited for it.
    fn wait_durable(&mut self, seq: u64) -> anyhow::Result<()> {
        if let Some(e) = &self.failed {
            anyhow::bail!("committing to the store: {e}");
        }
        if self.durable >= seq {
            return Ok(());
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
            Ok(Ok(last_seq)) => {
                self.on_durable(barrier, last_seq);
                Ok(())
            }
            Ok(Err(e)) => {
                self.failed = Some(e.clone());
                anyhow::bail!("committing to the store: {e}")
            }
            Err(_) => anyhow::bail!("committing to the store: the committer thread is gone"),
        }
    }

    /// Batches up to `seq` are durable: tell the hub link and the observer, and carry out the
    /// actions that waited.
    fn on_durable(&mut self, seq: u64, last_seq: u64) {
        if seq <= self.durable {
            return;
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
            if let Some((_, events)) = self.inflight.pop_front()
                && let Some(obs) = self.observer.as_mut()
            {
                for e in &events {
                    obs(e);
                }
            }
        }
        let mut ready = Vec::new();
        while self.waiting.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, a)) = self.waiting.pop_front() {
                ready.push(a);
            }
        }
        self.carry_out(ready);
        self.maybe_reset_journal();
    }

    /// Local probation: once more than `max_failures` of the first `runs` runs of the
    /// active version have failed, switch back to the previous version (held locally) at once,
    /// hub or no hub, and record why in the outbox. Derived from the stored runs, so a crash
    /// loses no count.
    fn check_probation(&mut self, name: &str) -> anyhow::Result<()> {
        use outpost_agent_core::deploy::{FinishedRun, ProbationVerdict, evaluate_probation};
        let st = crate::identity::deploy_state(&self.store, name)?;
        if st.probation.is_none() {
            return Ok(());
        }
        let runs: Vec<FinishedRun> = self
            .store
            .runs(crate::store::RunFilter {
                workflow: Some(name.to_string()),
                limit: usize::MAX,
                states: None,
            })?
            .into_iter()
            .map(|r| FinishedRun {
                run_id: r.run_id,
                version: r.version,
                created_ms: r.created_ms,
                state: r.state,
            })
            .collect();
        let key = format!("deploy/{name}");
        let mut batch = Batch::default();
        match evaluate_probation(name, &st, &runs, self.now().wall_ms()) {
            ProbationVerdict::Continue => {}
            ProbationVerdict::Revert { state, revert } => {
                let prev = Arc::unwrap_or_clone(self.workflow_for(name, revert.to_version)?);
                batch
                    .meta_puts
                    .push((key, minicbor::to_vec(&state).unwrap_or_default()));
                let (from, to, reason) = (
                    revert.from_version,
                    revert.to_version,
                    revert.reason.clone(),
                );
                batch.events.push(StatusEvent::Reverted(revert));
                self.commit(batch)?;
                self.install_workflow(prev, to, HUB_ORIGIN.into(), true)?;
                tracing::warn!(workflow = %name, from, to, "reverted under probation: {reason}");
            }
            ProbationVerdict::Passed { state, failed } => {
                batch
                    .meta_puts
                    .push((key, minicbor::to_vec(&state).unwrap_or_default()));
                self.commit(batch)?;
                tracing::info!(workflow = %name, version = state.active_version, failed, "version passed probation");
            }
        }
        Ok(())
    }

    /// Install the hub-deployed workflows recorded in the store (at start-up, before recovery),
    /// and take a probation decision that was due at the stop.
    pub fn load_hub_workflows(&mut self) -> anyhow::Result<usize> {
        let mut n = 0;
        for (name, st) in crate::identity::deploy_states(&self.store)? {
            if st.active_version == 0 {
                continue;
            }
            let wf = Arc::unwrap_or_clone(self.workflow_for(&name, st.active_version)?);
            self.install_workflow(wf, st.active_version, HUB_ORIGIN.into(), true)?;
            if st.paused
                && let Some(l) = self.workflows.get_mut(&name)
            {
                l.paused = true;
            }
            n += 1;
            // A revert due when the agent stopped (the failing run committed, the revert not)
            // happens now, not after yet another run of the version.
            if st.probation.is_some() {
                self.check_probation(&name)?;
            }
        }
        Ok(n)
    }

    /// Activate a verified hub deploy: the version and its anti-rollback state are committed in
    /// one transaction, then installed. Runs in progress finish on the version they started with.
    fn activate_hub(
        &mut self,
        act: crate::hub_link::Activation,
    ) -> Result<(), outpost_common::proto::Rejection> {
        use outpost_common::proto::Rejection;
        let internal =
            |e: &dyn std::fmt::Display| Rejection::Malformed(format!("agent store: {e}"));
        let state =
            crate::identity::deploy_state(&self.store, &act.workflow).map_err(|e| internal(&e))?;
        if let Some(l) = self.workflows.get(&act.workflow)
            && l.origin != HUB_ORIGIN
        {
            return Err(Rejection::Invalid(format!(
                "a local workflow file ({}) already defines `{}`",
                l.origin, act.workflow
            )));
        }
        let held_by_hub = self
            .store
            .workflow_versions(&act.workflow)
            .map_err(|e| internal(&e))?
            .iter()
            .any(|v| v.version == act.version && v.origin == HUB_ORIGIN);
        let verified = outpost_agent_core::deploy::VerifiedDeploy {
            version: act.version,
            epoch: act.epoch,
            remove: act.remove,
            held: held_by_hub,
            probation: act.probation,
            previous_version: act.previous_version,
            rollout_id: act.rollout_id.clone(),
        };
        let mut batch = Batch::default();
        let key = format!("deploy/{}", act.workflow);
        if act.remove {
            let state =
                outpost_agent_core::deploy::accept(&state, &verified, self.now().wall_ms())?;
            batch
                .meta_puts
                .push((key, minicbor::to_vec(&state).unwrap_or_default()));
            self.commit(batch).map_err(|e| internal(&e))?;
            self.uninstall_workflow(&act.workflow);
            tracing::info!(workflow = %act.workflow, "removed by the hub");
            return Ok(());
        }
        let wf = match &act.content {
            Some((content, format)) => {
                let fmt = if format == "toml" {
                    outpost_common::workflow::Format::Toml
                } else {
                    outpost_common::workflow::Format::Yaml
                };
                let text = std::str::from_utf8(content)
                    .map_err(|_| Rejection::Invalid("the workflow file is not UTF-8".into()))?;
                let origin = format!("{}@v{}", act.workflow, act.version);
                let wf = outpost_common::workflow::parse(&origin, text, fmt, &self.cfg.validate)
                    .map_err(|d| {
                        Rejection::Invalid(
                            d.iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join("; "),
                        )
                    })?;
                if wf.name != act.workflow {
                    return Err(Rejection::Mismatch);
                }
                let held = self
                    .store
                    .workflow_versions(&act.workflow)
                    .map_err(|e| internal(&e))?
                    .iter()
                    .any(|v| v.version == act.version);
                if !held {
                    batch.workflow_puts.push(WorkflowVersion {
                        name: act.workflow.clone(),
                        version: act.version,
                        content_hash: wf.content_hash.clone(),
                        source: content.clone(),
                        format: format.clone(),
                        origin: HUB_ORIGIN.into(),
                        created_ms: self.now().wall_ms(),
                    });
                }
                wf
            }
            None => Arc::unwrap_or_clone(self.workflow_for(&act.workflow, act.version).map_err(
                |e| Rejection::Invalid(format!("version {} is not held here: {e:#}", act.version)),
            )?),
        };
        let state = outpost_agent_core::deploy::accept(&state, &verified, self.now().wall_ms())?;
        batch
            .meta_puts
            .push((key, minicbor::to_vec(&state).unwrap_or_default()));
        self.commit(batch).map_err(|e| internal(&e))?;
        let paused = state.paused;
        self.install_workflow(wf, act.version, HUB_ORIGIN.into(), true)
            .map_err(|e| internal(&e))?;
        if paused && let Some(l) = self.workflows.get_mut(&act.workflow) {
            l.paused = true;
        }
        tracing::info!(workflow = %act.workflow, version = act.version, epoch = act.epoch, "activated a version from the hub");
        Ok(())
    }

    /// Task ids of an installed workflow in topological order.
    pub fn task_order(&self, name: &str) -> Option<Vec<String>> {
        self.workflows
            .get(name)
            .map(|l| l.wf.tasks.iter().map(|t| t.id.clone()).collect())
    }

    /// Standalone mode: load new and changed workflow files, drop removed ones. An invalid file
    /// is reported and its previous version keeps running.
    pub fn rescan(&mut self) -> anyhow::Result<()> {
        let Some(dir) = self.cfg.workflows_dir.clone() else {
            return Ok(());
        };
        let scan = crate::standalone::scan(&dir, &self.cfg.validate)
            .with_context(|| format!("reading workflows_dir {}", dir.display()))?;
        let mut seen: HashSet<String> = HashSet::new();
        for (path, diags) in &scan.bad {
            // Keep the previous version of whatever this file defined.
            if let Some((name, _)) = self
                .workflows
                .iter()
                .find(|(_, l)| Path::new(&l.origin) == path.as_path())
            {
                seen.insert(name.clone());
            }
            let key = format!(
                "{}:{}",
                path.display(),
                diags
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("|")
            );
            if self.reported_bad.insert(key) {
                for d in diags {
                    tracing::error!(file = %path.display(), "invalid workflow: {d}");
                }
            }
        }
        for item in scan.ok {
            let name = item.workflow.name.clone();
            if self
                .workflows
                .get(&name)
                .is_some_and(|l| l.origin == HUB_ORIGIN)
            {
                let key = format!("{}:hub-name-clash", item.path.display());
                if self.reported_bad.insert(key) {
                    tracing::error!(file = %item.path.display(), workflow = %name, "ignored: the hub deploys a workflow of this name");
                }
                continue;
            }
            seen.insert(name.clone());
            let origin = item.path.display().to_string();
            if self
                .installed(&name)
                .map(|(_, h)| h == item.workflow.content_hash)
                .unwrap_or(false)
            {
                continue;
            }
            let fmt = match item.format {
                outpost_common::workflow::Format::Toml => "toml",
                _ => "yaml",
            };
            let version = self.record_version(&item.workflow, &item.source, fmt, &origin)?;
            tracing::info!(workflow = %name, version, file = %origin, "workflow loaded");
            self.install_workflow(item.workflow, version, origin, true)?;
        }
        let gone: Vec<String> = self
            .workflows
            .iter()
            .filter(|(n, l)| l.origin != HUB_ORIGIN && !seen.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            tracing::info!(workflow = %name, "workflow file removed: no longer scheduled");
            self.uninstall_workflow(&name);
        }
        Ok(())
    }

    /// Apply the retention policy: prune old finished runs (never unsynced ones) and their logs.
    pub fn prune(&mut self) -> anyhow::Result<usize> {
        let Some(policy) = self.cfg.retention else {
            return Ok(0);
        };
        let now_ms = match self.retention_clock.pass(self.now()) {
            outpost_agent_core::retention::Pass::Prune { now_ms } => now_ms,
            outpost_agent_core::retention::Pass::Skip { step } => {
                tracing::warn!(
                    step_s = step.num_seconds(),
                    "the wall clock stepped forward since the last retention pass: nothing is \
                     pruned now, and later passes measure age without the step"
                );
                return Ok(0);
            }
        };
        let limit = outpost_agent_core::retention::prune_limit(self.store.run_count()?);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let pruned = self.store.prune_at_most(policy, now_ms, limit)?;
        for id in &pruned {
            let dir = crate::exec::run_dir(&self.cfg.exec, id);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                tracing::warn!(dir = %dir.display(), "removing logs: {e}");
            }
            self.cfg.exec.forget_run_dir(id);
        }
        if !pruned.is_empty() {
            tracing::info!(count = pruned.len(), "pruned finished runs");
        }
        Ok(pruned.len())
    }

    pub fn workflow_names(&self) -> Vec<String> {
        self.workflows.keys().cloned().collect()
    }

    pub fn installed(&self, name: &str) -> Option<(u64, &str)> {
        self.workflows
            .get(name)
            .map(|l| (l.version, l.wf.content_hash.as_str()))
    }

    /// Record a workflow's source as a new version in the store if its content changed; returns
    /// the version to use.
    pub fn record_version(
        &mut self,
        wf: &Workflow,
        source: &[u8],
        format: &str,
        origin: &str,
    ) -> anyhow::Result<u64> {
        // Versions still waiting in `pending` count too (see below).
        let mut versions = self.store.workflow_versions(&wf.name)?;
        versions.extend(
            self.pending
                .workflow_puts
                .iter()
                .filter(|v| v.name == wf.name)
                .cloned(),
        );
        if let Some(last) = versions.iter().max_by_key(|v| v.version)
            && last.content_hash == wf.content_hash
        {
            return Ok(last.version);
        }
        let version = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        // Not committed on its own: the version joins the next commit (at the latest after the
        // group-commit window), which is the one that commits the first run of it, if any; a
        // run record never becomes durable without its version. Losing a version that no run
        // used yet in a crash loses nothing: the file is read and recorded again.
        self.pending.workflow_puts.push(WorkflowVersion {
            name: wf.name.clone(),
            version,
            content_hash: wf.content_hash.clone(),
            source: source.to_vec(),
            format: format.to_string(),
            origin: origin.to_string(),
            created_ms: self.now().wall_ms(),
        });
        if self.pending_since.is_none() {
            self.pending_since = Some(self.clock.mono());
        }
        Ok(version)
    }

    // ----- runs ------------------------------------------------------------------------------

    /// Re-adopt runs that were active when the agent stopped (crash, power loss, kill -9).
    pub fn recover(&mut self) -> anyhow::Result<usize> {
        let now = self.now();
        let mut unfinished = self.store.unfinished_runs()?;
        let n = unfinished.len();
        // Runs pre-committed ahead of an instant still to come (a crash inside the lead) go
        // last: their attempts that never started are deferred to the instant again, so that a
        // quick restart does not start a scheduled task early. (Only within the lead: an
        // instant further ahead means the wall clock was stepped back, and a run already under
        // way does not wait for that.)
        let lead = self.cfg.precommit_lead;
        let ahead_of = |run: &RunRecord| -> Option<Duration> {
            if run.kind == RunKind::Manual {
                return None;
            }
            let ms = u64::try_from(run.scheduled_ms.checked_sub(now.wall_ms())?).ok()?;
            let ahead = Duration::from_millis(ms);
            (ms > 0 && ahead <= lead).then_some(ahead)
        };
        unfinished.sort_by_key(|(run, _)| ahead_of(run).is_some());
        let mut pumped = false;
        for (run, tasks) in unfinished {
            let ahead = ahead_of(&run);
            if ahead.is_some() && !pumped {
                // Schedule the other runs' tasks, and carry out their spawns, undeferred first.
                self.engine.handle_timeout(now);
                self.pump()?;
                pumped = true;
            }
            let wf = match self.workflow_for(&run.workflow, run.version) {
                Ok(wf) => wf,
                Err(e) => {
                    tracing::error!(run = %run.run_id, "cannot recover run: {e:#}");
                    continue;
                }
            };
            self.runs.insert(run.run_id.clone(), wf.clone());
            let id = run.run_id.clone();
            let found = &self.journal_found;
            let never_started = |task: &str, attempt: u32| found.never_started(&id, task, attempt);
            if let Err(e) = self
                .engine
                .restore_run_knowing(run, tasks, wf, now, &never_started)
            {
                tracing::error!(run = %id, "cannot recover run: {e}");
            }
            if let Some(ahead) = ahead {
                self.defer_to = Some(now.mono + ahead);
                self.engine.set_deferred_starts(true);
                // Restored tasks are scheduled on the engine's next timeout: now.
                self.engine.handle_timeout(now);
                let r = self.pump();
                self.defer_to = None;
                self.engine.set_deferred_starts(false);
                r?;
            }
        }
        if let crate::startlog::Recovered::Untrusted(why) = &self.journal_found
            && n > 0
        {
            tracing::info!(
                "start journal not used ({why}): dispatched attempts count as interrupted"
            );
        }
        self.journal_found = crate::startlog::Recovered::Untrusted("already used".into());
        self.recovered = true;
        Ok(n)
    }

    /// The workflow of a given version: the installed one, or re-parsed from the stored source.
    fn workflow_for(&self, name: &str, version: u64) -> anyhow::Result<Arc<Workflow>> {
        if let Some(l) = self.workflows.get(name)
            && l.version == version
        {
            return Ok(l.wf.clone());
        }
        let v = self
            .store
            .workflow_versions(name)?
            .into_iter()
            .find(|v| v.version == version)
            .with_context(|| format!("workflow {name} version {version} is not in the store"))?;
        let src = String::from_utf8_lossy(&v.source).into_owned();
        let format = if v.format == "toml" {
            outpost_common::workflow::Format::Toml
        } else {
            outpost_common::workflow::Format::Yaml
        };
        let wf = outpost_common::workflow::parse(
            &format!("{name}@v{version}"),
            &src,
            format,
            &outpost_common::workflow::ValidateOptions::default(),
        )
        .map_err(|d| {
            anyhow::anyhow!(
                "stored version no longer parses: {}",
                d.first().map(|d| d.to_string()).unwrap_or_default()
            )
        })?;
        Ok(Arc::new(wf))
    }

    /// Start a run of `name` now (manual trigger). Returns its run id.
    pub fn trigger(&mut self, name: &str, params: Vec<(String, String)>) -> anyhow::Result<RunId> {
        let loaded = self
            .workflows
            .get(name)
            .with_context(|| format!("no workflow named `{name}`"))?;
        // Every value is checked against its declaration before the run exists.
        outpost_common::params::check_params(name, &loaded.wf.param_rules, &params)
            .map_err(anyhow::Error::msg)?;
        let now = self.now();
        let mut ms = now.wall_ms();
        // Two triggers in the same millisecond are two runs.
        while self.store.run_exists(&outpost_common::record::run_id(
            name,
            loaded.version,
            ms,
            RunKind::Manual,
        ))? {
            ms += 1;
        }
        let wf = loaded.wf.clone();
        let version = loaded.version;
        let id = self.add_run(wf, version, ms, RunKind::Manual, params, now);
        Ok(id)
    }

    fn add_run(
        &mut self,
        wf: Arc<Workflow>,
        version: u64,
        scheduled_ms: i64,
        kind: RunKind,
        overrides: Vec<(String, String)>,
        now: Now,
    ) -> RunId {
        // Before the engine may start its first tasks.
        self.check_disk(now);
        let mut params: BTreeMap<String, String> = wf.params.clone();
        for (k, v) in overrides {
            params.insert(k, v);
        }
        let run_id = outpost_common::record::run_id(&wf.name, version, scheduled_ms, kind);
        let rec = RunRecord {
            run_id: run_id.clone(),
            workflow: wf.name.clone(),
            version,
            kind,
            scheduled_ms,
            state: RunState::Queued,
            params: params.into_iter().collect(),
            created_ms: now.wall_ms(),
            started_ms: None,
            ended_ms: None,
            agent_id: self.cfg.agent_id.clone(),
        };
        self.runs.insert(run_id.clone(), wf.clone());
        if let Err(e) = self.engine.add_run(rec, wf, now) {
            tracing::error!(run = %run_id, "cannot add run: {e}");
        }
        run_id
    }

    pub fn cancel(&mut self, run_id: &str) -> anyhow::Result<()> {
        if !self.runs.contains_key(run_id) {
            match self.store.run(run_id)? {
                Some(r) => anyhow::bail!("run {run_id} is already {}", r.state.as_str()),
                None => anyhow::bail!("no run {run_id}"),
            }
        }
        let now = self.now();
        self.engine.handle_cancel(run_id, now)?;
        Ok(())
    }

    pub fn set_paused(&mut self, name: &str, paused: bool) -> anyhow::Result<()> {
        let l = self
            .workflows
            .get_mut(name)
            .with_context(|| format!("no workflow named `{name}`"))?;
        l.paused = paused;
        self.pending.paused.push((name.to_string(), paused));
        Ok(())
    }

    // ----- the loop ----------------------------------------------------------------------------

    /// Start pre-committed attempts whose instant has come, then fire due cron instants (and
    /// those due within [`PRECOMMIT_LEAD`], deferring their spawns) and engine timers.
    fn on_time(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        self.check_disk(now);
        self.start_due(now);
        self.engine.handle_timeout(now);
        if self.stopping {
            return Ok(());
        }
        // Carry out what the timers asked for now, so that only the pre-committed runs' spawns
        // are deferred below.
        self.pump()?;
        let disk_low = self.disk_low();
        let names: Vec<String> = self.workflows.keys().cloned().collect();
        for name in names {
            let Some(l) = self.workflows.get_mut(&name) else {
                continue;
            };
            let Some(p) = l.planner.as_mut() else {
                continue;
            };
            let mut pnow = match l.clock_floor {
                Some(f) if f.mono > now.mono => f,
                _ => {
                    l.clock_floor = None;
                    now
                }
            };
            if let Some(at) = p.poll_timeout()
                && at > pnow.wall
                && let Ok(ahead) = (at - now.wall).to_std()
                && ahead <= self.cfg.precommit_lead
            {
                pnow = Now {
                    wall: at,
                    mono: now.mono + ahead,
                };
                l.clock_floor = Some(pnow);
            }
            let mut fires: Vec<(Arc<Workflow>, u64, DateTime<Utc>, RunKind)> = Vec::new();
            let outs = p.handle_time(pnow);
            let last = p.last_fired();
            if outs.is_empty() {
                continue;
            }
            if let Some(t) = last {
                self.pending
                    .last_fired
                    .push((name.clone(), t.timestamp_millis()));
            }
            let mut paused_fires: Vec<DateTime<Utc>> = Vec::new();
            for o in outs {
                match o {
                    PlannerOutput::Fire { scheduled, kind } => {
                        if l.paused || disk_low {
                            paused_fires.push(scheduled);
                        } else {
                            fires.push((l.wf.clone(), l.version, scheduled, kind));
                        }
                    }
                    PlannerOutput::Missed(m) => self.pending.events.push(StatusEvent::Missed(m)),
                }
            }
            if let (Some(first), Some(last)) = (paused_fires.first(), paused_fires.last()) {
                self.pending.events.push(StatusEvent::Missed(MissedFirings {
                    workflow: name.clone(),
                    count: paused_fires.len() as u64,
                    first_ms: first.timestamp_millis(),
                    last_ms: last.timestamp_millis(),
                    reason: if l.paused {
                        "workflow paused".into()
                    } else {
                        "low disk space (min_free_disk)".into()
                    },
                    recorded_ms: now.wall_ms(),
                }));
            }
            if fires.is_empty() {
                continue;
            }
            // Commit the runs and their first attempts now, as not started yet; their
            // processes start at the instant (durable first: the commit precedes the spawn).
            self.defer_to = (pnow.mono > now.mono).then_some(pnow.mono);
            self.engine.set_deferred_starts(self.defer_to.is_some());
            self.fire(fires, pnow);
            let r = self.pump();
            self.defer_to = None;
            self.engine.set_deferred_starts(false);
            r?;
        }
        Ok(())
    }

    /// Read the free disk space (at most every [`DISK_CHECK_EVERY`]) and pause or resume
    /// starting attempts (see [`crate::disk`]).
    fn check_disk(&mut self, now: Now) {
        if self.stopping
            || self
                .disk_checked
                .is_some_and(|t| now.mono.saturating_sub(t) < DISK_CHECK_EVERY)
        {
            return;
        }
        let Some(guard) = self.cfg.disk_guard.as_mut() else {
            return;
        };
        self.disk_checked = Some(now.mono);
        match guard.check() {
            Ok(crate::disk::Change::BecameLow) => {
                tracing::error!("{}", guard.describe());
                self.engine.stop_starting();
            }
            Ok(crate::disk::Change::Recovered) => {
                tracing::info!(
                    dir = %guard.dir.display(),
                    "disk space is back above min_free_disk: attempts start again"
                );
                self.engine.resume_starting();
            }
            Ok(crate::disk::Change::Same) => {}
            Err(e) => {
                tracing::warn!(dir = %guard.dir.display(), "cannot read free disk space: {e}")
            }
        }
    }

    /// Why the store cannot commit now, while the committer retries.
    pub fn store_stalled(&self) -> Option<String> {
        self.store_stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Is free disk space below the minimum (no attempt starts)?
    pub fn disk_low(&self) -> bool {
        self.cfg.disk_guard.as_ref().is_some_and(|g| g.is_low())
    }

    fn fire(&mut self, fires: Vec<(Arc<Workflow>, u64, DateTime<Utc>, RunKind)>, now: Now) {
        for (wf, version, scheduled, kind) in fires {
            let ms = scheduled.timestamp_millis();
            let id = outpost_common::record::run_id(&wf.name, version, ms, kind);
            // One instant, one run, even across restarts.
            match self.store.run_exists(&id) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!("store read failed: {e}");
                    continue;
                }
            }
            self.add_run(wf, version, ms, kind, Vec::new(), now);
        }
    }

    /// Start the deferred attempts whose instant has come.
    fn start_due(&mut self, now: Now) {
        if self.deferred.is_empty() {
            return;
        }
        let durable = self.durable;
        let mut deferred = std::mem::take(&mut self.deferred);
        for d in deferred
            .iter_mut()
            .filter(|d| !d.armed && d.seq <= durable && d.due <= now.mono + ARM_AHEAD)
        {
            self.arm(d, now);
        }
        let (due, later): (Vec<_>, Vec<_>) = deferred
            .into_iter()
            .partition(|d| d.due <= now.mono && d.seq <= durable);
        self.deferred = later;
        for d in due {
            let t0 = std::time::Instant::now();
            let started = d.prepared.start();
            let spawn = t0.elapsed();
            if started.is_ok() {
                log_lateness(&d.run_id, d.task, d.scheduled_ms, Some(spawn));
            }
            self.on_spawned(d.run_id, d.task, d.attempt, started);
        }
    }

    /// Like a dispatched attempt's `Start`: journal a pre-committed attempt, and tell the engine
    /// it starts at its instant (committed with the next batch), right before its spawn.
    fn arm(&mut self, d: &mut DeferredSpawn, now: Now) {
        d.armed = true;
        self.journal_start(&d.run_id, d.task, d.attempt);
        let ahead = d.due.saturating_sub(now.mono);
        let at = Now {
            wall: now.wall + chrono::Duration::from_std(ahead).unwrap_or_default(),
            mono: now.mono.max(d.due),
        };
        if let Err(e) = self
            .engine
            .handle_deferred_start(&d.run_id, d.task, d.attempt, at)
        {
            tracing::debug!(run = %d.run_id, "deferred start: {e}");
        }
    }

    /// Carry out every action the engine has, durable first.
    ///
    /// Per burst: `Start`s of dispatched attempts go at once (their batch is durable; else they
    /// wait for it); the records are submitted to the committer unless nothing waits for them (no
    /// `Spawn`, `Kill`, `Flush` or `RunFinished` follows), in which case the group commit may hold
    /// them back for up to [`GROUP_COMMIT_WINDOW`]; the other actions wait for their batch to be
    /// durable ([`Event::Committed`]).
    pub fn pump(&mut self) -> anyhow::Result<()> {
        if let Some(e) = &self.failed {
            anyhow::bail!("committing to the store: {e}");
        }
        loop {
            let mut acts = Vec::new();
            let mut urgent = false;
            let mut any = false;
            while let Some(a) = self.engine.poll_action() {
                any = true;
                match a {
                    Action::Start {
                        ref run_id,
                        task,
                        attempt,
                    } => {
                        // Its batch (from an earlier burst) is usually durable by now.
                        let gate = self
                            .runs
                            .get(run_id)
                            .and_then(|wf| wf.tasks.get(task))
                            .and_then(|t| self.claims.get(&(run_id.clone(), t.id.clone(), attempt)))
                            .copied()
                            .unwrap_or(0);
                        if self.durable >= gate {
                            self.carry_out(vec![a]);
                        } else {
                            tracing::trace!(
                                gate,
                                durable = self.durable,
                                "start waits for its batch"
                            );
                            self.waiting.push_back((gate, a));
                        }
                    }
                    Action::Commit(events) => self.pending.events.extend(events),
                    Action::Flush => urgent = true,
                    other => {
                        urgent |= !matches!(other, Action::Commit(_));
                        acts.push(other);
                    }
                }
            }
            if !self.pending.is_empty() {
                if urgent || !self.may_hold_back() {
                    if !urgent && self.engine.top_up(self.now()) {
                        // The held-back records are written now: let the next dispatches ride
                        // on the same commit (the burst is polled on the next turn).
                        continue;
                    }
                    self.submit_pending();
                } else if self.pending_since.is_none() {
                    // Group commit: nothing waits for these records; let them join the next one.
                    self.pending_since = Some(self.clock.mono());
                }
            }
            if !acts.is_empty() {
                if self.defer_to.is_some() {
                    // The cron pre-commit: spawns are prepared now and start at the instant (once
                    // their batch is durable, long before).
                    let (spawns, rest): (Vec<_>, Vec<_>) = acts
                        .into_iter()
                        .partition(|a| matches!(a, Action::Spawn { .. }));
                    self.carry_out(spawns);
                    acts = rest;
                }
                let seq = self.submitted;
                if self.durable >= seq {
                    self.carry_out(acts);
                } else {
                    self.waiting.extend(acts.into_iter().map(|a| (seq, a)));
                }
            }
            for name in std::mem::take(&mut self.probation_due) {
                if let Err(e) = self.check_probation(&name) {
                    tracing::error!(workflow = %name, "probation check failed: {e:#}");
                }
            }
            if !any {
                self.maybe_reset_journal();
                return Ok(());
            }
        }
    }

    /// Submit what `pending` holds.
    fn submit_pending(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        self.pending_since = None;
        if batch.is_empty() {
            return;
        }
        let events = self.observer.as_ref().map(|_| batch.events.clone());
        self.submit(batch, events);
    }

    /// May records be held back for the group commit now?
    fn may_hold_back(&self) -> bool {
        self.running > 0
            && !self.stopping
            && self
                .pending_since
                .is_none_or(|t| self.clock.mono().saturating_sub(t) < GROUP_COMMIT_WINDOW)
    }

    /// Commit whatever the group commit holds back and wait until everything submitted is
    /// durable (before returning to a caller that reads the store).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.submit_pending();
        let seq = self.submitted;
        self.wait_durable(seq)
    }

    fn carry_out(&mut self, acts: Vec<Action>) {
        {
            for a in acts {
                match a {
                    Action::Commit(events) => self.pending.events.extend(events),
                    Action::Flush => {}
                    // Not queued by `pump` (performed at once); handled for completeness.
                    Action::Start {
                        run_id,
                        task,
                        attempt,
                    } => {
                        // A dispatched attempt: journalled before its spawn (crate::startlog).
                        self.journal_start(&run_id, task, attempt);
                        self.spawn(run_id, task, attempt)
                    }
                    Action::Spawn {
                        run_id,
                        task,
                        attempt,
                    } => match self.defer_to {
                        Some(due) => self.defer_spawn(due, run_id, task, attempt),
                        None => self.spawn(run_id, task, attempt),
                    },
                    Action::Kill {
                        run_id,
                        task,
                        attempt,
                        reason,
                    } => self.kill(run_id, task, attempt, reason),
                    Action::RunFinished { run_id, state } => {
                        if let Some(wf) = self.runs.remove(&run_id)
                            && self
                                .workflows
                                .get(&wf.name)
                                .is_some_and(|l| l.origin == HUB_ORIGIN)
                        {
                            self.probation_due.insert(wf.name.clone());
                        }
                        self.finished.push((run_id, state));
                    }
                }
            }
        }
    }

    /// Write an attempt committed ahead of its start (dispatched, or pre-committed) to the start
    /// journal, right before its spawn.
    fn journal_start(&mut self, run_id: &RunId, task: TaskIdx, attempt: u32) {
        if let Some(log) = self.start_log.as_mut()
            && let Some(t) = self.runs.get(run_id).and_then(|wf| wf.tasks.get(task))
        {
            log.record(run_id, &t.id, attempt);
        }
    }

    fn kill(&mut self, run_id: RunId, task: TaskIdx, attempt: u32, reason: KillReason) {
        let grace = match reason {
            KillReason::Timeout | KillReason::Cancel => self.cfg.exec.kill_grace,
            #[allow(unreachable_patterns)]
            _ => self.cfg.exec.kill_grace,
        };
        let key = (run_id, task, attempt);
        match self.killers.get(&key) {
            Some(k) => k.terminate(grace),
            None => {
                self.pending_kills.insert(key);
            }
        }
    }

    /// For a scheduled (or catch-up) run's first attempts: the instant the process was meant to
    /// start, so that its lateness can be measured (`RUST_LOG=outpost_agent::driver=debug`; the
    /// benchmark harness parses it).
    fn scheduled_at(&self, run_id: &str, attempt: u32) -> Option<i64> {
        if attempt != 1 {
            return None;
        }
        self.engine
            .active_run_records()
            .find(|r| r.run_id == run_id && r.kind != RunKind::Manual)
            .map(|r| r.scheduled_ms)
    }

    fn spawn(&mut self, run_id: RunId, task: TaskIdx, attempt: u32) {
        self.running += 1;
        let tx = self.tx.clone();
        let req = match self.spawn_request(&run_id, task, attempt) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(spawn_failed(run_id, task, attempt, format!("{e:#}")));
                return;
            }
        };
        let scheduled_at = self.scheduled_at(&run_id, attempt);
        // Started here, on the driver's thread: no hand-off to a worker between the decision and
        // the `fork`/`exec` (the preparation is a few page-cache file operations at most).
        let started = exec::prepare(&self.cfg.exec, req).and_then(exec::Prepared::start);
        tokio::spawn(supervise(tx, run_id, task, attempt, scheduled_at, started));
    }

    /// Prepare an attempt now and start it at `due` (monotonic), see [`PRECOMMIT_LEAD`].
    fn defer_spawn(&mut self, due: Duration, run_id: RunId, task: TaskIdx, attempt: u32) {
        self.running += 1;
        let prepared = self
            .spawn_request(&run_id, task, attempt)
            .and_then(|req| Ok(exec::prepare(&self.cfg.exec, req)?));
        match prepared {
            Ok(prepared) => {
                let scheduled_ms = self.scheduled_at(&run_id, attempt);
                self.deferred.push(DeferredSpawn {
                    due,
                    seq: self.submitted,
                    run_id,
                    task,
                    attempt,
                    scheduled_ms,
                    prepared,
                    armed: false,
                });
            }
            Err(e) => {
                let _ = self
                    .tx
                    .send(spawn_failed(run_id, task, attempt, format!("{e:#}")));
            }
        }
    }

    /// A deferred attempt was started (here, on the driver's thread: no hand-off between the
    /// instant and the spawn).
    fn on_spawned(
        &mut self,
        run_id: RunId,
        task: TaskIdx,
        attempt: u32,
        started: Result<exec::Running, exec::ExecError>,
    ) {
        let tx = self.tx.clone();
        tokio::spawn(supervise(tx, run_id, task, attempt, None, started));
    }

    /// Build the process request: templates rendered, run context in the environment.
    fn spawn_request(
        &self,
        run_id: &RunId,
        task: TaskIdx,
        attempt: u32,
    ) -> anyhow::Result<SpawnRequest> {
        let wf = self
            .runs
            .get(run_id)
            .with_context(|| format!("unknown run {run_id}"))?;
        // The run record only: a full snapshot would clone every task record of the run for
        // every spawn (quadratic in the size of the DAG).
        let rec = self
            .engine
            .active_run_records()
            .find(|r| r.run_id == *run_id)
            .with_context(|| format!("engine has no active run {run_id}"))?;
        let t = wf.tasks.get(task).context("task index out of range")?;
        let params: BTreeMap<String, String> = rec.params.iter().cloned().collect();
        let upstream = self.engine.upstream_outputs(run_id, task);
        let scheduled = crate::views::rfc3339(rec.scheduled_ms);
        let ctx = crate::render::Context {
            run_id,
            workflow: &wf.name,
            task: &t.id,
            attempt,
            scheduled: &scheduled,
            params: &params,
            outputs: &upstream,
        };
        // Values never become script text: a `script`'s placeholders are references to variables
        // set below (a `command` argument is one argv element, never parsed by a shell).
        let mut values_env = Vec::new();
        let program = match &t.exec {
            Exec::Command(argv) => argv
                .iter()
                .map(|a| ctx.render(a))
                .collect::<Result<Vec<_>, _>>()?,
            Exec::Script { script, shell } => {
                let (text, vars) = ctx.render_script(script)?;
                values_env = vars;
                exec::script_argv(shell.as_deref(), &text)
            }
        };
        let mut env: Vec<(String, String)> = Vec::new();
        env.extend(wf.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(t.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(ctx.env());
        env.extend(values_env);
        Ok(SpawnRequest {
            run_id: run_id.clone(),
            task_id: t.id.clone(),
            attempt,
            program,
            env,
            working_dir: t.working_dir.as_ref().map(PathBuf::from),
            limits: t.limits.clone(),
            timeout: t.timeout,
        })
    }

    fn handle_event(&mut self, ev: Event) {
        let now = self.now();
        // Before an exit lets the engine start the next tasks.
        self.check_disk(now);
        match ev {
            Event::Started {
                run_id,
                task,
                attempt,
                pid,
                limits,
                log,
                killer,
            } => {
                let key = (run_id.clone(), task, attempt);
                if self.pending_kills.remove(&key) {
                    killer.terminate(self.cfg.exec.kill_grace);
                }
                self.killers.insert(key, killer);
                if let Err(e) = self.engine.handle_started(
                    &run_id,
                    task,
                    attempt,
                    Some(pid),
                    limits,
                    Some(log.display().to_string()),
                    now,
                ) {
                    tracing::warn!("engine: {e}");
                }
            }
            Event::Exited {
                run_id,
                task,
                attempt,
                outcome,
                reason,
                outputs,
            } => {
                self.running = self.running.saturating_sub(1);
                let key = (run_id.clone(), task, attempt);
                self.killers.remove(&key);
                self.pending_kills.remove(&key);
                if let Err(e) = self
                    .engine
                    .handle_exited(&run_id, task, attempt, outcome, reason, outputs, now)
                {
                    tracing::warn!("engine: {e}");
                }
            }
            Event::Control(req, reply) => {
                let resp = self.control(req);
                let _ = reply.send(resp);
            }
            Event::Rescan => {
                if let Err(e) = self.rescan() {
                    tracing::error!("rescanning workflows: {e:#}");
                }
            }
            Event::Prune => {
                if let Err(e) = self.prune() {
                    tracing::error!("pruning history: {e:#}");
                }
            }
            Event::Shutdown => self.begin_shutdown(),
            Event::Committed { seq, result } => match result {
                Ok(last_seq) => self.on_durable(seq, last_seq),
                Err(e) => {
                    tracing::error!(batch = seq, "commit failed: {e}");
                    self.failed = Some(e);
                }
            },
            Event::HubActivate(act, reply) => {
                let r = self.activate_hub(act);
                let _ = reply.send(r);
            }
            Event::HubPaused(list) => {
                let names: Vec<String> = self
                    .workflows
                    .iter()
                    .filter(|(_, l)| l.origin == HUB_ORIGIN)
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in names {
                    let want = list.contains(&n);
                    if self.workflows.get(&n).is_some_and(|l| l.paused != want) {
                        let _ = self.set_paused(&n, want);
                    }
                }
            }
        }
    }

    pub fn begin_shutdown(&mut self) {
        if !self.stopping {
            self.stopping = true;
            self.engine.stop_starting();
        }
    }

    /// Terminate every running attempt (after the shutdown grace ran out).
    pub fn terminate_all(&mut self) {
        for k in self.killers.values() {
            k.terminate(self.cfg.exec.kill_grace);
        }
    }

    /// The next moment something is due, as a monotonic deadline.
    fn next_deadline(&self, now: Now) -> Option<Duration> {
        let mut best = self.engine.poll_timeout();
        if let Some(t) = self.pending_since {
            let d = t + GROUP_COMMIT_WINDOW;
            best = Some(best.map_or(d, |b| b.min(d)));
        }
        // Those whose batch is not durable yet are woken by its `Committed`.
        for d in self.deferred.iter().filter(|d| d.seq <= self.durable) {
            let at = if d.armed {
                d.due
            } else {
                d.due.saturating_sub(ARM_AHEAD)
            };
            best = Some(best.map_or(at, |b| b.min(at)));
        }
        if self.disk_low() {
            // Look again for the space to come back.
            let d = now.mono + DISK_CHECK_EVERY;
            best = Some(best.map_or(d, |b| b.min(d)));
        }
        if !self.stopping {
            for l in self.workflows.values() {
                if let Some(at) = l.planner.as_ref().and_then(|p| p.poll_timeout()) {
                    // Wake a little early: the run is committed ahead of its instant.
                    let wait = (at - now.wall)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .saturating_sub(self.cfg.precommit_lead);
                    // Re-read the wall clock at least every second: it may jump.
                    let wait = wait.min(Duration::from_secs(1));
                    let d = now.mono + wait;
                    best = Some(best.map_or(d, |b| b.min(d)));
                }
            }
        }
        best
    }

    /// Run until `until` says stop (checked after every step) or shutdown completes.
    pub async fn run_loop(
        &mut self,
        mut until: impl FnMut(&mut Driver) -> bool,
    ) -> anyhow::Result<()> {
        let mut shutdown_deadline: Option<tokio::time::Instant> = None;
        loop {
            self.on_time()?;
            self.pump()?;
            if until(self) {
                return self.flush();
            }
            if self.stopping {
                if self.running == 0 && self.waiting.is_empty() {
                    return self.flush();
                }
                let dl = *shutdown_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + self.cfg.shutdown_grace);
                if tokio::time::Instant::now() >= dl {
                    tracing::warn!(
                        running = self.running,
                        "shutdown grace over: terminating running tasks"
                    );
                    self.terminate_all();
                    shutdown_deadline = Some(
                        tokio::time::Instant::now()
                            + self.cfg.exec.kill_grace
                            + Duration::from_secs(5),
                    );
                }
            }
            let now = self.now();
            let mut wait = self.next_deadline(now).map(|d| d.saturating_sub(now.mono));
            if let Some(dl) = shutdown_deadline {
                let left = dl.saturating_duration_since(tokio::time::Instant::now());
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
            let ev = match wait {
                Some(w) => tokio::select! {
                    ev = self.rx.recv() => ev,
                    _ = precise_sleep(w) => None,
                },
                None => self.rx.recv().await,
            };
            if let Some(ev) = ev {
                self.handle_event(ev);
                // Take everything already queued before the next commit: batching.
                while let Ok(ev) = self.rx.try_recv() {
                    self.handle_event(ev);
                }
            }
        }
    }

    // ----- control -------------------------------------------------------------------------------

    fn control(&mut self, req: crate::control::Request) -> crate::control::Response {
        use crate::control::{Request, Response};
        if let Some(stall) = self.store_stalled() {
            // The store cannot write (the committer retries): answer what can be answered now.
            return match req {
                Request::Status => match self.status() {
                    Ok(mut s) => {
                        s.disk_low = Some(format!(
                            "{stall}; retrying: no attempt starts until it succeeds"
                        ));
                        Response::Status(s)
                    }
                    Err(e) => Response::Error {
                        message: format!("{stall}; retrying ({e:#})"),
                    },
                },
                _ => Response::Error {
                    message: format!("{stall}; retrying: try again when it succeeds"),
                },
            };
        }
        // Answer from the store as of everything decided so far.
        if let Err(e) = self.flush() {
            return Response::Error {
                message: format!("{e:#}"),
            };
        }
        let r: anyhow::Result<Response> = (|| match req {
            Request::Status => Ok(Response::Status(self.status()?)),
            Request::Runs { workflow, limit } => {
                let runs = self.store.runs(crate::store::RunFilter {
                    workflow,
                    limit: limit.clamp(1, 10_000),
                    states: None,
                })?;
                Ok(Response::Runs {
                    runs: runs
                        .iter()
                        .map(|r| crate::views::RunView::new(r, &[]))
                        .collect(),
                })
            }
            Request::Show { run_id } => {
                let (r, t) = self.lookup_run(&run_id)?;
                Ok(Response::Run(crate::views::RunView::new(&r, &t)))
            }
            Request::Logs {
                run_id,
                task,
                attempt,
            } => {
                let (_, tasks) = self.lookup_run(&run_id)?;
                let t = tasks
                    .iter()
                    .find(|t| t.task_id == task)
                    .with_context(|| format!("run {run_id} has no task `{task}`"))?;
                let a = match attempt {
                    Some(n) => t
                        .attempts
                        .iter()
                        .find(|a| a.attempt == n)
                        .with_context(|| format!("task `{task}` has no attempt {n}"))?,
                    None => t
                        .attempts
                        .last()
                        .with_context(|| format!("task `{task}` has not started"))?,
                };
                let path = a
                    .log_path
                    .clone()
                    .with_context(|| format!("attempt {} has no log", a.attempt))?;
                Ok(Response::Log {
                    path,
                    attempt: a.attempt,
                    running: a.outcome.is_none(),
                })
            }
            Request::Trigger { workflow, params } => {
                if self.stopping {
                    anyhow::bail!("the agent is shutting down");
                }
                let run_id = self.trigger(&workflow, params)?;
                Ok(Response::Triggered { run_id })
            }
            Request::Pause { workflow } => {
                self.set_paused(&workflow, true)?;
                Ok(Response::Ok {
                    message: format!("paused {workflow}"),
                })
            }
            Request::Resume { workflow } => {
                self.set_paused(&workflow, false)?;
                Ok(Response::Ok {
                    message: format!("resumed {workflow}"),
                })
            }
            Request::Cancel { run_id } => {
                self.cancel(&run_id)?;
                Ok(Response::Ok {
                    message: format!("cancelling {run_id}"),
                })
            }
        })();
        r.unwrap_or_else(|e| Response::Error {
            message: format!("{e:#}"),
        })
    }

    fn lookup_run(&self, run_id: &str) -> anyhow::Result<(RunRecord, Vec<TaskInstanceRecord>)> {
        if let Some(s) = self.engine.run_snapshot(run_id) {
            return Ok(s);
        }
        let r = self
            .store
            .run(run_id)?
            .with_context(|| format!("no run {run_id}"))?;
        let t = self.store.tasks(run_id)?;
        Ok((r, t))
    }

    fn status(&self) -> anyhow::Result<crate::control::StatusView> {
        let mut active: HashMap<&str, usize> = HashMap::new();
        for wf in self.runs.values() {
            *active.entry(wf.name.as_str()).or_default() += 1;
        }
        Ok(crate::control::StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            started: self.started.to_rfc3339(),
            // The store is `<state_dir>/agent.redb`.
            state_dir: self
                .store
                .path()
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            running_tasks: self.running,
            max_running: self.cfg.max_running,
            active_runs: self.runs.len(),
            outbox_pending: self.store.outbox_len()?,
            disk_low: self
                .cfg
                .disk_guard
                .as_ref()
                .filter(|g| g.is_low())
                .map(|g| g.describe()),
            workflows: self
                .workflows
                .iter()
                .map(|(name, l)| crate::control::WorkflowStatus {
                    name: name.clone(),
                    version: l.version,
                    schedule: l.wf.schedule.as_ref().map(|s| s.expr().to_string()),
                    paused: l.paused,
                    next_fire: l
                        .planner
                        .as_ref()
                        .and_then(|p| p.poll_timeout())
                        .map(|t| t.to_rfc3339()),
                    active_runs: active.get(name.as_str()).copied().unwrap_or(0),
                    origin: l.origin.clone(),
                })
                .collect(),
        })
    }
}

fn spawn_failed(run_id: RunId, task: TaskIdx, attempt: u32, e: String) -> Event {
    Event::Exited {
        run_id,
        task,
        attempt,
        outcome: AttemptOutcome::SpawnFailed(e.clone()),
        reason: Some(e),
        outputs: Vec::new(),
    }
}

/// How late after its scheduled instant a scheduled run's first attempt started (debug), and
/// how long the spawn itself took (`fork`/`exec`, when known).
fn log_lateness(run_id: &str, task: TaskIdx, scheduled_at: Option<i64>, spawn: Option<Duration>) {
    if let Some(ms) = scheduled_at
        && tracing::enabled!(tracing::Level::DEBUG)
    {
        let late_us = Utc::now().timestamp_micros() - ms * 1000;
        let spawn_us = spawn.map_or(-1, |d| d.as_micros() as i64);
        tracing::debug!(run = %run_id, task, late_us, spawn_us, "scheduled spawn");
    }
}

/// Report an attempt's start to the driver, wait for its exit and report that.
async fn supervise(
    tx: mpsc::UnboundedSender<Event>,
    run_id: RunId,
    task: TaskIdx,
    attempt: u32,
    scheduled_at: Option<i64>,
    started: Result<exec::Running, exec::ExecError>,
) {
    match started {
        Ok(running) => {
            log_lateness(&run_id, task, scheduled_at, None);
            let _ = tx.send(Event::Started {
                run_id: run_id.clone(),
                task,
                attempt,
                pid: running.pid,
                limits: running.limits_mode,
                log: running.log_path.clone(),
                killer: running.killer(),
            });
            let exit = running.wait().await;
            let _ = tx.send(Event::Exited {
                run_id,
                task,
                attempt,
                outcome: exit.outcome,
                reason: exit.reason,
                outputs: exit.outputs,
            });
        }
        Err(e) => {
            let _ = tx.send(spawn_failed(run_id, task, attempt, e.to_string()));
        }
    }
}

/// Sleep for `d` with sub-millisecond precision: tokio's timer (1 ms granularity) for the bulk,
/// then a short thread sleep for the rest.
pub async fn precise_sleep(d: Duration) {
    const SPIN: Duration = Duration::from_millis(2);
    let start = std::time::Instant::now();
    if d > SPIN {
        tokio::time::sleep(d - SPIN).await;
    }
    let left = d.saturating_sub(start.elapsed());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
}

#[cfg(test)]
mod deploy_tests;
#[cfg(test)]
mod store_tests;
