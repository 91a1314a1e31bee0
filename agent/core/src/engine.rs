//! The agent-wide scheduler of task attempts across all active runs.
//!
//! # Call order (quinn-proto style)
//!
//! 1. Feed inputs with `add_run`, `restore_run`, `handle_started`, `handle_exited`,
//!    `handle_cancel`, `handle_timeout`, `stop_starting`. Each takes `now` and updates state; the
//!    `handle_*` calls (but not `restore_run`) also admit queued runs and start ready tasks.
//! 2. Drain [`Engine::poll_action`] until it returns `None`, performing each action in order.
//! 3. Arm a timer for [`Engine::poll_timeout`] (monotonic) and call `handle_timeout` when it
//!    passes. After `restore_run`, `poll_timeout` returns `Some(ZERO)` so that the driver calls
//!    `handle_timeout` once every run is restored, which starts scheduling.
//!
//! # Ordering contract (durable first)
//!
//! Actions are emitted in bursts: one [`Action::Commit`] holding a full snapshot of every run and
//! task record that changed since the previous burst, followed by the `Spawn`, `Kill` and
//! `RunFinished` actions of that burst. So every `Spawn` is preceded by a `Commit` containing that
//! task's `Running` snapshot. The driver may merge consecutive commits into one transaction but
//! must commit before performing any later `Spawn` or `Kill`. State changes from several
//! `handle_*` calls made before polling coalesce into one commit.
//!
//! The one exception is [`Action::Start`] (see "Dispatch ahead"): it comes at the *front* of a
//! burst, and the driver performs it at once, before committing anything, because its attempt
//! was committed by an earlier burst. A burst that dispatches attempts ends its records with
//! [`Action::Flush`]: the driver must commit them before it returns to the engine (it may not
//! hold them back for a group commit). `handle_*` calls must not be made between polling an
//! action and performing it.
//!
//! # Dispatch ahead
//!
//! With `dispatch_ahead = k > 0`, once every slot is taken the next `k` ready tasks (queue
//! order) get their next attempt committed already: state `Running`, with the attempt's
//! `dispatched_ms` set and no process. The queue is refilled (to `k`) only once at most half of
//! it is left, so that one commit carries several dispatches and the exits that arrived
//! meanwhile, not one commit per freed slot; and [`Engine::top_up`] refills it whenever the
//! driver commits anyway (its group commit is due). When a slot frees, the best
//! ready-or-dispatched task by the queue order takes it; a dispatched one starts with `Start`, so
//! the commit of the exit that freed the slot (and the next dispatches) overlaps with the new
//! process instead of delaying it.
//! Its `started_ms` is set (and `dispatched_ms` cleared) when it starts; its timeout counts from
//! then. A dispatched attempt is never killed: cancelling its run ends it `Cancelled` at once,
//! and `stop_starting` takes it back (the task is `Ready` again). After a crash it is recovered
//! like any attempt without an outcome, as `Interrupted` (it may or may not have started), with
//! a reason that says it was dispatched; unless the driver knows it never started (its start
//! journal, `Engine::restore_run_knowing`): then it is taken back as by `stop_starting`.
//!
//! # Deferred starts (the cron pre-commit)
//!
//! The driver commits a cron run a little before its instant and starts its first processes at
//! the instant. While [`Engine::set_deferred_starts`] is on, the attempts the engine opens for
//! `Spawn` are marked like dispatched ones (`dispatched_ms` set: committed, not started), though
//! they hold their slots as ordinary running attempts; the driver reports the real start with
//! [`Engine::handle_deferred_start`], which clears the mark. So a crash inside that lead leaves
//! an attempt that says it may not have started, and the start journal can take it back like a
//! dispatched one.
//!
//! # Run admission (per workflow, by the run's own workflow version)
//!
//! "Active" runs are the `Running` runs of the workflow that are not being cancelled.
//! - `skip`: if another run is active, the new run is committed as `Skipped` (and `RunFinished`).
//! - `queue` and `allow`: the run starts while fewer than `max_active_runs` (at least 1) are
//!   active and no older run waits; otherwise it is `Queued`. Queued runs start in order of
//!   (scheduled time, run id) when active runs drop below the bound.
//! - `cancel_running`: every active or queued run of the workflow is cancelled, and the new run
//!   starts at once.
//!
//! A run that never started (skipped, or cancelled while queued) has no task records: only its
//! run record is committed.
//!
//! # Trigger rules
//!
//! Tasks without upstream tasks are ready as soon as the run starts, whatever their rule.
//! "Failed-ish" means `Failed` or `UpstreamFailed`. Only terminal upstream states count.
//!
//! | rule          | ready when                               | can no longer be met when      |
//! |---------------|------------------------------------------|--------------------------------|
//! | `all_success` | all upstream `Succeeded`                 | any upstream terminal, not ok  |
//! | `all_done`    | all upstream terminal                    | never                          |
//! | `all_failed`  | all terminal and all failed-ish          | any terminal, not failed-ish   |
//! | `one_success` | at least one `Succeeded` (early)         | all terminal, none succeeded   |
//! | `one_failed`  | at least one failed-ish (early)          | all terminal, none failed-ish  |
//! | `none_failed` | all terminal, none failed-ish            | any failed-ish                 |
//!
//! When a rule can no longer be met, the task ends `UpstreamFailed` if some upstream task is
//! failed-ish and the rule needs upstream success (`all_success`, `one_success`, `none_failed`),
//! else `Skipped`.
//!
//! # Run outcome
//!
//! When every task is terminal: `Cancelled` if the run was cancelled; else `Failed` if any leaf
//! task (one with no downstream task) is failed-ish; else `Succeeded` (Airflow's leaf rule).
//!
//! # Slots, resources and priority
//!
//! Ready tasks of all runs form one queue ordered by (task priority, higher first; run scheduled
//! time, earlier first; run id; task index). A task starts when a slot is free (`max_running`)
//! and all its resources are available. The queue is scanned in order and a task whose resources
//! are busy is passed over, so lower-priority tasks that fit may start ahead of it (no
//! head-of-line blocking). The price: a task needing many units of a busy resource can be
//! overtaken repeatedly. A task asking for a resource that is not configured, or for more units
//! than its capacity, fails at once (no retry; it could never run) with an explanatory reason.
//!
//! # Attempts, retries, timeouts, cancellation
//!
//! Success is `Exited(0)`. A failed attempt is retried (state `UpForRetry`, `retry_at` per
//! [`crate::retry`]) while attempts are left, else the task is `Failed`. A running attempt whose
//! `timeout` passes (monotonic clock) is killed (`Kill { reason: Timeout }`) and its exit is
//! recorded as `TimedOut` whatever it died of. `handle_cancel` kills running attempts (their exits
//! are recorded as `Cancelled`), cancels every non-running, non-terminal task, and ends the run
//! `Cancelled` when the last running attempt has exited.
//!
//! # Complexity
//!
//! Work per event does not grow with the size of the run: each task keeps counters of its
//! terminal, succeeded and failed-ish upstream tasks (updated when an upstream task changes
//! state, so a rule is decided in O(1)); each run counts its terminal tasks; deadlines and retry
//! instants live in one ordered timer index (`poll_timeout` is O(log n), `handle_timeout` is
//! O(expired log n)); `schedule` walks the ready queue from its head and stops when the slots are
//! full. Starting, restoring or cancelling a run, and finishing it, are O(tasks) once per run.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;
use std::time::Duration;

use outpost_common::clock::Now;
use outpost_common::model::{Overlap, TaskIdx, Workflow};
use outpost_common::record::{
    AttemptOutcome, AttemptRecord, LimitsMode, RunId, RunRecord, RunState, StatusEvent,
    TaskInstanceRecord, TaskState, UnixMillis,
};

use crate::retry::{self, SplitMix64};

mod dispatch;
mod queries;
mod restore;
mod rules;

use rules::failed_ish;
pub use rules::{RuleVerdict, UpstreamCounts, evaluate_counts, evaluate_rule};

/// How many finished runs are kept for [`Engine::run_snapshot`].
pub const RECENT_FINISHED: usize = 256;

/// Engine configuration.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Agent-wide limit on running tasks.
    pub max_running: usize,
    /// Capacities of the named local semaphores tasks may ask for.
    pub resources: BTreeMap<String, u32>,
    /// Seed of the jitter generator.
    pub seed: u64,
    /// How many ready attempts may be *dispatched* ahead of a free slot (0: none). See
    /// "Dispatch ahead" in the module docs.
    pub dispatch_ahead: usize,
}

/// Why an attempt is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    Timeout,
    Cancel,
}

/// What the driver must do, in order. See the module docs for the ordering contract.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Durably commit these full snapshots (one transaction) before performing later actions.
    Commit(Vec<StatusEvent>),
    /// Start attempt `attempt` of `task` in run `run_id`.
    Spawn {
        run_id: RunId,
        task: TaskIdx,
        attempt: u32,
    },
    /// Start a *dispatched* attempt now, without committing first: its record was committed by
    /// an earlier burst (which ended with [`Action::Flush`]). Emitted at the front of a burst,
    /// before its `Commit`.
    Start {
        run_id: RunId,
        task: TaskIdx,
        attempt: u32,
    },
    /// Commit everything so far now, without holding it back: a later `Start` depends on it.
    Flush,
    /// Kill the process of that attempt (its exit is still reported with `handle_exited`).
    Kill {
        run_id: RunId,
        task: TaskIdx,
        attempt: u32,
        reason: KillReason,
    },
    /// The run reached a terminal state (already committed).
    RunFinished { run_id: RunId, state: RunState },
}

/// Input the engine refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// No active run has this id.
    UnknownRun(RunId),
    /// The run is known (active or finished) already.
    DuplicateRun(RunId),
    /// The task index is out of range for the run's workflow.
    UnknownTask { run_id: RunId, task: TaskIdx },
    /// The report is about an attempt that is not the task's current running attempt.
    StaleAttempt {
        run_id: RunId,
        task: TaskIdx,
        attempt: u32,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::UnknownRun(r) => write!(f, "no active run `{r}`"),
            EngineError::DuplicateRun(r) => write!(f, "run `{r}` is already known"),
            EngineError::UnknownTask { run_id, task } => {
                write!(f, "run `{run_id}` has no task #{task}")
            }
            EngineError::StaleAttempt {
                run_id,
                task,
                attempt,
            } => {
                write!(
                    f,
                    "attempt {attempt} of task #{task} in run `{run_id}` is not running"
                )
            }
        }
    }
}

impl std::error::Error for EngineError {}

#[derive(Debug, Clone)]
struct TaskSlot {
    rec: TaskInstanceRecord,
    retry_at: Option<Duration>,
    deadline: Option<Duration>,
    kill: Option<KillReason>,
    /// The current attempt is dispatched (committed, not started). `fresh`: by the burst not
    /// yet emitted, so not durable yet.
    dispatched: bool,
    fresh: bool,
    /// Counts over this task's (in-range) upstream edges.
    up: UpstreamCounts,
    /// This task's entry in [`Engine::timers`], if any.
    timer: Option<(Duration, TimerKind)>,
}

/// Which instant a timer entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// A running attempt's timeout.
    Deadline,
    /// The end of an `UpForRetry` task's delay.
    Retry,
}

/// Timer index key: (instant, run, task, kind).
type TimerKey = (Duration, RunId, TaskIdx, TimerKind);

/// Make task `i`'s entry in the timer index match its state: its deadline while it runs and is
/// not being killed, its retry instant while it is `UpForRetry`, else none.
fn sync_timer(timers: &mut BTreeSet<TimerKey>, id: &str, i: TaskIdx, ts: &mut TaskSlot) {
    let want = match ts.rec.state {
        TaskState::Running if ts.kill.is_none() => ts.deadline.map(|d| (d, TimerKind::Deadline)),
        TaskState::UpForRetry => ts.retry_at.map(|d| (d, TimerKind::Retry)),
        _ => None,
    };
    if want == ts.timer {
        return;
    }
    if let Some((at, kind)) = ts.timer.take() {
        timers.remove(&(at, id.to_string(), i, kind));
    }
    if let Some((at, kind)) = want {
        timers.insert((at, id.to_string(), i, kind));
    }
    ts.timer = want;
}

/// Append the task's next attempt, started (or, `dispatched`, committed ahead of its start) now;
/// returns its number.
fn open_attempt(rec: &mut TaskInstanceRecord, now: Now, dispatched: bool) -> u32 {
    let attempt = rec.attempts.len() as u32 + 1;
    rec.attempts.push(AttemptRecord {
        attempt,
        started_ms: now.wall_ms(),
        ended_ms: None,
        pid: None,
        outcome: None,
        limits: LimitsMode::None,
        reason: None,
        log_path: None,
        dispatched_ms: dispatched.then_some(now.wall_ms()),
    });
    attempt
}

/// Whether `s` counts differently from `t` in [`UpstreamCounts`].
fn counts_differ(s: TaskState, t: TaskState) -> bool {
    s.is_terminal() != t.is_terminal()
        || (s == TaskState::Succeeded) != (t == TaskState::Succeeded)
        || failed_ish(s) != failed_ish(t)
}

#[derive(Debug, Clone)]
struct RunSlot {
    rec: RunRecord,
    wf: Arc<Workflow>,
    tasks: Vec<TaskSlot>,
    downstream: Vec<Vec<TaskIdx>>,
    cancelling: bool,
    /// How many of `tasks` are terminal.
    terminal: usize,
    /// At least how many of `tasks` have recorded outputs (an upper bound, recounted exactly on
    /// restore): with none, [`Engine::upstream_outputs`] needs no
    /// ancestor walk (which would make a long chain quadratic over its run).
    with_outputs: usize,
}

impl RunSlot {
    fn new(mut rec: RunRecord, wf: Arc<Workflow>, now: Now) -> RunSlot {
        let mut downstream = vec![Vec::new(); wf.tasks.len()];
        for (i, t) in wf.tasks.iter().enumerate() {
            for &u in &t.upstream {
                if let Some(d) = downstream.get_mut(u) {
                    d.push(i);
                }
            }
        }
        let tasks = wf
            .tasks
            .iter()
            .map(|t| TaskSlot {
                rec: TaskInstanceRecord {
                    run_id: rec.run_id.clone(),
                    task_id: t.id.clone(),
                    state: TaskState::Pending,
                    attempts: Vec::new(),
                    outputs: Vec::new(),
                    retry_at_ms: None,
                    updated_ms: now.wall_ms(),
                },
                retry_at: None,
                deadline: None,
                kill: None,
                dispatched: false,
                fresh: false,
                up: UpstreamCounts::default(),
                timer: None,
            })
            .collect();
        rec.workflow = wf.name.clone();
        let mut slot = RunSlot {
            rec,
            wf,
            tasks,
            downstream,
            cancelling: false,
            terminal: 0,
            with_outputs: 0,
        };
        slot.recount();
        slot
    }

    /// Recompute every counter from the task states (O(tasks + edges)).
    fn recount(&mut self) {
        for ts in &mut self.tasks {
            ts.up = UpstreamCounts::default();
        }
        self.terminal = 0;
        self.with_outputs = self
            .tasks
            .iter()
            .filter(|t| !t.rec.outputs.is_empty())
            .count();
        for i in 0..self.tasks.len() {
            let s = self.tasks[i].rec.state;
            if s.is_terminal() {
                self.terminal += 1;
            }
            for &d in &self.downstream[i] {
                let up = &mut self.tasks[d].up;
                up.total += 1;
                up.add(s);
            }
        }
    }

    /// Set task `i`'s state, keeping the run's terminal count and its downstream tasks'
    /// upstream counters in step.
    fn set_state(&mut self, i: TaskIdx, state: TaskState) {
        let old = self.tasks[i].rec.state;
        self.tasks[i].rec.state = state;
        if old.is_terminal() != state.is_terminal() {
            if state.is_terminal() {
                self.terminal += 1;
            } else {
                self.terminal = self.terminal.saturating_sub(1);
            }
        }
        if counts_differ(old, state) {
            for &d in &self.downstream[i] {
                let up = &mut self.tasks[d].up;
                up.remove(old);
                up.add(state);
            }
        }
    }

    /// A run that never started (skipped, or cancelled while queued) has no task records.
    fn snapshot(&self) -> (RunRecord, Vec<TaskInstanceRecord>) {
        let tasks = if self.rec.started_ms.is_some() {
            self.tasks.iter().map(|t| t.rec.clone()).collect()
        } else {
            Vec::new()
        };
        (self.rec.clone(), tasks)
    }
}

/// Ready-queue key: (negated priority, scheduled ms, run id, task index).
type ReadyKey = (i64, UnixMillis, RunId, TaskIdx);

/// The agent-wide scheduler. See the module docs.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    rng: SplitMix64,
    runs: BTreeMap<RunId, RunSlot>,
    finished: BTreeMap<RunId, RunSlot>,
    finished_order: VecDeque<RunId>,
    /// Queued runs per workflow name, by (scheduled ms, run id).
    queued: BTreeMap<String, BTreeSet<(UnixMillis, RunId)>>,
    ready: BTreeSet<ReadyKey>,
    /// Deadlines of running attempts not yet being killed, and retry instants of `UpForRetry`
    /// tasks, of active runs. Kept in step by [`Engine::sync_timer`].
    timers: BTreeSet<TimerKey>,
    running: usize,
    in_use: BTreeMap<String, u32>,
    /// Records changed since the last commit: (run, None) for the run record.
    dirty: BTreeSet<(RunId, Option<TaskIdx>)>,
    /// Actions to emit after the next commit.
    pending: Vec<Action>,
    /// `Start`s to emit before the next commit.
    early: Vec<Action>,
    /// Dispatched attempts (they are also in `ready`, by the same key).
    dispatched: usize,
    /// The next burst must end with a `Flush` (it dispatches attempts).
    must_flush: bool,
    /// Attempts dispatched since the last burst (not durable yet).
    fresh_claims: Vec<(RunId, TaskIdx)>,
    out: VecDeque<Action>,
    draining: bool,
    needs_schedule: bool,
    /// Attempts opened for `Spawn` now start later (see "Deferred starts").
    defer_starts: bool,
}

impl Engine {
    /// A new engine with no runs.
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            rng: SplitMix64::new(cfg.seed),
            cfg,
            runs: BTreeMap::new(),
            finished: BTreeMap::new(),
            finished_order: VecDeque::new(),
            queued: BTreeMap::new(),
            ready: BTreeSet::new(),
            timers: BTreeSet::new(),
            running: 0,
            in_use: BTreeMap::new(),
            dirty: BTreeSet::new(),
            pending: Vec::new(),
            early: Vec::new(),
            dispatched: 0,
            must_flush: false,
            fresh_claims: Vec::new(),
            out: VecDeque::new(),
            draining: false,
            needs_schedule: false,
            defer_starts: false,
        }
    }

    /// While on, the attempts opened for [`Action::Spawn`] are committed as not started yet
    /// (`dispatched_ms` set): the driver will start them later and report it with
    /// [`Engine::handle_deferred_start`]. See "Deferred starts" in the module docs.
    pub fn set_deferred_starts(&mut self, on: bool) {
        self.defer_starts = on;
    }

    /// The driver is starting the process of an attempt whose start was deferred (opened while
    /// [`Engine::set_deferred_starts`] was on): its record no longer says "not started", and its
    /// `started_ms` is the real start. A no-op for any other running attempt.
    pub fn handle_deferred_start(
        &mut self,
        run_id: &str,
        task: TaskIdx,
        attempt: u32,
        now: Now,
    ) -> Result<(), EngineError> {
        let ts = self.running_attempt(run_id, task, attempt)?;
        if ts.dispatched {
            return Ok(());
        }
        let Some(a) = ts
            .rec
            .attempts
            .last_mut()
            .filter(|a| a.outcome.is_none() && a.dispatched_ms.is_some())
        else {
            return Ok(());
        };
        a.dispatched_ms = None;
        a.started_ms = now.wall_ms();
        ts.rec.updated_ms = now.wall_ms();
        self.dirty.insert((run_id.to_string(), Some(task)));
        Ok(())
    }

    /// Add a new run (already decided by the planner or a trigger) and admit it per its
    /// workflow's overlap policy. The run's `state`, `started_ms` and `ended_ms` are set here.
    pub fn add_run(
        &mut self,
        run: RunRecord,
        wf: Arc<Workflow>,
        now: Now,
    ) -> Result<(), EngineError> {
        if self.runs.contains_key(&run.run_id) || self.finished.contains_key(&run.run_id) {
            return Err(EngineError::DuplicateRun(run.run_id));
        }
        let mut slot = RunSlot::new(run, wf.clone(), now);
        slot.rec.created_ms = if slot.rec.created_ms == 0 {
            now.wall_ms()
        } else {
            slot.rec.created_ms
        };
        slot.rec.started_ms = None;
        slot.rec.ended_ms = None;
        let id = slot.rec.run_id.clone();
        let active = self.active_runs(&wf.name);
        let bound = wf.max_active_runs.max(1) as usize;
        let waiting = self.queued.get(&wf.name).is_some_and(|q| !q.is_empty());
        match wf.overlap {
            Overlap::Skip if !active.is_empty() => {
                slot.rec.state = RunState::Skipped;
                // Why, for `run show`: the active run (and how many more).
                slot.rec.skip_reason = Some(match active.as_slice() {
                    [one] => format!("overlap=skip: run {one} was active"),
                    [first, rest @ ..] => {
                        format!(
                            "overlap=skip: run {first} and {} more were active",
                            rest.len()
                        )
                    }
                    [] => "overlap=skip".to_string(),
                });
                slot.rec.ended_ms = Some(now.wall_ms());
                self.dirty.insert((id.clone(), None));
                self.pending.push(Action::RunFinished {
                    run_id: id.clone(),
                    state: RunState::Skipped,
                });
                self.retire(id, slot);
                return Ok(());
            }
            Overlap::CancelRunning => {
                let victims: Vec<RunId> = active
                    .into_iter()
                    .chain(
                        self.queued
                            .get(&wf.name)
                            .into_iter()
                            .flatten()
                            .map(|(_, r)| r.clone()),
                    )
                    .collect();
                for v in victims {
                    self.cancel(&v, now);
                }
                self.runs.insert(id.clone(), slot);
                self.start_run(&id, now);
            }
            Overlap::Queue | Overlap::Allow if active.len() >= bound || waiting => {
                slot.rec.state = RunState::Queued;
                self.queued
                    .entry(wf.name.clone())
                    .or_default()
                    .insert((slot.rec.scheduled_ms, id.clone()));
                self.dirty.insert((id.clone(), None));
                self.runs.insert(id, slot);
            }
            _ => {
                self.runs.insert(id.clone(), slot);
                self.start_run(&id, now);
            }
        }
        self.schedule(now);
        Ok(())
    }

    /// The driver started the process of an attempt.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_started(
        &mut self,
        run_id: &str,
        task: TaskIdx,
        attempt: u32,
        pid: Option<u32>,
        limits: LimitsMode,
        log_path: Option<String>,
        now: Now,
    ) -> Result<(), EngineError> {
        let ts = self.running_attempt(run_id, task, attempt)?;
        if let Some(a) = ts.rec.attempts.last_mut() {
            a.pid = pid;
            a.limits = limits;
            a.log_path = log_path;
        }
        ts.rec.updated_ms = now.wall_ms();
        self.dirty.insert((run_id.to_string(), Some(task)));
        Ok(())
    }

    /// An attempt's process ended (or could not be started: `SpawnFailed`).
    #[allow(clippy::too_many_arguments)]
    pub fn handle_exited(
        &mut self,
        run_id: &str,
        task: TaskIdx,
        attempt: u32,
        outcome: AttemptOutcome,
        reason: Option<String>,
        outputs: Vec<(String, String)>,
        now: Now,
    ) -> Result<(), EngineError> {
        let rng = &mut self.rng;
        let ts = {
            let run = self
                .runs
                .get_mut(run_id)
                .ok_or_else(|| EngineError::UnknownRun(run_id.into()))?;
            let cancelling = run.cancelling;
            let policy = match run.wf.tasks.get(task) {
                Some(t) => t.retry.clone(),
                None => {
                    return Err(EngineError::UnknownTask {
                        run_id: run_id.into(),
                        task,
                    });
                }
            };
            let resources = run.wf.tasks[task].resources.clone();
            if !outputs.is_empty() {
                run.with_outputs += 1;
            }
            let ts = &mut run.tasks[task];
            let current = ts.rec.attempts.len() as u32;
            if ts.rec.state != TaskState::Running || current != attempt {
                return Err(EngineError::StaleAttempt {
                    run_id: run_id.into(),
                    task,
                    attempt,
                });
            }
            let outcome = match ts.kill {
                Some(KillReason::Timeout) => AttemptOutcome::TimedOut,
                Some(KillReason::Cancel) => AttemptOutcome::Cancelled,
                None => outcome,
            };
            let reason = match (ts.kill, reason) {
                (_, Some(r)) => Some(r),
                (Some(KillReason::Timeout), None) => Some("timed out".to_string()),
                (Some(KillReason::Cancel), None) => Some("run cancelled".to_string()),
                (None, None) => None,
            };
            ts.kill = None;
            ts.deadline = None;
            let success = outcome.is_success();
            let retry = !cancelling && retry::should_retry(&policy, attempt, &outcome);
            if let Some(a) = ts.rec.attempts.last_mut() {
                a.outcome = Some(outcome);
                a.ended_ms = Some(now.wall_ms());
                a.reason = reason;
            }
            ts.rec.outputs = outputs;
            ts.rec.updated_ms = now.wall_ms();
            let state = if success {
                TaskState::Succeeded
            } else if cancelling {
                TaskState::Cancelled
            } else if retry {
                let delay = retry::retry_delay(&policy, attempt, rng);
                ts.retry_at = Some(now.mono.saturating_add(delay));
                let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                ts.rec.retry_at_ms = Some(now.wall_ms().saturating_add(ms));
                TaskState::UpForRetry
            } else {
                TaskState::Failed
            };
            run.set_state(task, state);
            sync_timer(&mut self.timers, run_id, task, &mut run.tasks[task]);
            (resources, state)
        };
        let (resources, state) = ts;
        self.release(&resources);
        self.dirty.insert((run_id.to_string(), Some(task)));
        if state.is_terminal() {
            self.task_done(run_id, task, now);
        }
        self.schedule(now);
        Ok(())
    }

    /// Cancel a run: kill its running attempts, cancel its other unfinished tasks; the run ends
    /// `Cancelled` once its running attempts have exited. A queued run ends at once.
    pub fn handle_cancel(&mut self, run_id: &str, now: Now) -> Result<(), EngineError> {
        if !self.runs.contains_key(run_id) {
            return Err(EngineError::UnknownRun(run_id.into()));
        }
        self.cancel(run_id, now);
        self.schedule(now);
        Ok(())
    }

    /// Time passed: kill attempts past their deadline, make tasks whose retry delay is over
    /// ready, admit queued runs, start ready tasks.
    pub fn handle_timeout(&mut self, now: Now) {
        // Expired entries, processed in (run, task) order as a scan of the runs would.
        let mut expired: Vec<(RunId, TaskIdx, TimerKind)> = Vec::new();
        while let Some((at, _, _, _)) = self.timers.first() {
            if *at > now.mono {
                break;
            }
            if let Some((_, id, i, kind)) = self.timers.pop_first() {
                expired.push((id, i, kind));
            }
        }
        expired.sort();
        let mut to_ready = Vec::new();
        for (id, i, kind) in expired {
            let Some(ts) = self.runs.get_mut(&id).and_then(|r| r.tasks.get_mut(i)) else {
                continue;
            };
            ts.timer = None;
            match (kind, ts.rec.state) {
                (TimerKind::Deadline, TaskState::Running) if ts.kill.is_none() => {
                    ts.kill = Some(KillReason::Timeout);
                    ts.deadline = None;
                    self.pending.push(Action::Kill {
                        run_id: id.clone(),
                        task: i,
                        attempt: ts.rec.attempts.len() as u32,
                        reason: KillReason::Timeout,
                    });
                }
                (TimerKind::Retry, TaskState::UpForRetry) => to_ready.push((id, i)),
                // Stale entry (cannot happen while `sync_timer` is called on every change):
                // re-index whatever the task is waiting for now.
                _ => sync_timer(&mut self.timers, &id, i, ts),
            }
        }
        for (id, i) in to_ready {
            self.mark_ready(&id, i, now);
        }
        self.needs_schedule = false;
        self.schedule(now);
    }

    /// Graceful shutdown: no new attempt starts from now on; running ones continue.
    pub fn stop_starting(&mut self) {
        self.draining = true;
        if self.dispatched == 0 {
            return;
        }
        // Dispatched attempts never started: take them back (the task is ready again).
        for (id, run) in self.runs.iter_mut() {
            for i in 0..run.tasks.len() {
                let ts = &mut run.tasks[i];
                if ts.dispatched {
                    ts.dispatched = false;
                    ts.fresh = false;
                    ts.rec.attempts.pop();
                    run.set_state(i, TaskState::Ready);
                    self.dirty.insert((id.clone(), Some(i)));
                }
            }
        }
        self.dispatched = 0;
    }

    /// Start attempts again after [`Engine::stop_starting`] (the driver pauses starts while the
    /// disk is full); ready tasks are scheduled on the next `handle_timeout`.
    pub fn resume_starting(&mut self) {
        if self.draining {
            self.draining = false;
            self.needs_schedule = true;
        }
    }

    /// Does the engine hold records or actions not yet returned by [`Engine::poll_action`]?
    pub fn has_unpolled_output(&self) -> bool {
        !(self.out.is_empty()
            && self.dirty.is_empty()
            && self.pending.is_empty()
            && self.early.is_empty())
    }

    /// The next action to perform, in order (see the module docs).
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.out.is_empty() {
            self.flush();
        }
        self.out.pop_front()
    }

    /// When `handle_timeout` must next be called (monotonic), if ever.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.needs_schedule {
            return Some(Duration::ZERO);
        }
        self.timers.first().map(|(at, _, _, _)| *at)
    }

    fn active_runs(&self, workflow: &str) -> Vec<RunId> {
        self.runs
            .values()
            .filter(|r| {
                r.rec.workflow == workflow && r.rec.state == RunState::Running && !r.cancelling
            })
            .map(|r| r.rec.run_id.clone())
            .collect()
    }

    fn running_attempt(
        &mut self,
        run_id: &str,
        task: TaskIdx,
        attempt: u32,
    ) -> Result<&mut TaskSlot, EngineError> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| EngineError::UnknownRun(run_id.into()))?;
        let ts = run
            .tasks
            .get_mut(task)
            .ok_or_else(|| EngineError::UnknownTask {
                run_id: run_id.into(),
                task,
            })?;
        if ts.rec.state != TaskState::Running || ts.rec.attempts.len() as u32 != attempt {
            return Err(EngineError::StaleAttempt {
                run_id: run_id.into(),
                task,
                attempt,
            });
        }
        Ok(ts)
    }

    fn start_run(&mut self, id: &str, now: Now) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        run.rec.state = RunState::Running;
        run.rec.started_ms = Some(now.wall_ms());
        self.dirty.insert((id.to_string(), None));
        self.evaluate_pending(id, now);
        self.check_finished(id, now);
    }

    /// Decide every pending task of the run whose rule is now decided (topological order, so one
    /// pass propagates through chains).
    fn evaluate_pending(&mut self, id: &str, now: Now) {
        let Some(run) = self.runs.get(id) else { return };
        if run.cancelling || run.rec.state != RunState::Running {
            return;
        }
        for i in 0..run.tasks.len() {
            self.evaluate_task(id, i, now);
        }
    }

    fn evaluate_task(&mut self, id: &str, i: TaskIdx, now: Now) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        if run.cancelling || run.tasks[i].rec.state != TaskState::Pending {
            return;
        }
        // Counters over the in-range upstream indices (a validated workflow has only those).
        match evaluate_counts(run.wf.tasks[i].trigger_rule, run.tasks[i].up) {
            RuleVerdict::Wait => {}
            RuleVerdict::Ready => self.mark_ready(id, i, now),
            RuleVerdict::Unmet(state) => {
                run.set_state(i, state);
                run.tasks[i].rec.updated_ms = now.wall_ms();
                self.dirty.insert((id.to_string(), Some(i)));
                self.task_done(id, i, now);
            }
        }
    }

    /// A task became terminal: decide its downstream tasks, maybe finish the run.
    fn task_done(&mut self, id: &str, i: TaskIdx, now: Now) {
        let down = match self.runs.get(id) {
            Some(run) => run.downstream[i].clone(),
            None => return,
        };
        for d in down {
            self.evaluate_task(id, d, now);
        }
        self.check_finished(id, now);
    }

    fn mark_ready(&mut self, id: &str, i: TaskIdx, now: Now) {
        let cfg_resources = &self.cfg.resources;
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        let task = &run.wf.tasks[i];
        let mut impossible = None;
        for (name, &units) in &task.resources {
            match cfg_resources.get(name) {
                None => {
                    impossible = Some(format!("resource `{name}` is not configured on this agent"));
                    break;
                }
                Some(&cap) if units > cap => {
                    impossible = Some(format!(
                        "task needs {units} units of resource `{name}`, whose capacity is {cap}"
                    ));
                    break;
                }
                _ => {}
            }
        }
        let key = (
            -(task.priority as i64),
            run.rec.scheduled_ms,
            id.to_string(),
            i,
        );
        let ts = &mut run.tasks[i];
        ts.retry_at = None;
        ts.rec.retry_at_ms = None;
        ts.rec.updated_ms = now.wall_ms();
        self.dirty.insert((id.to_string(), Some(i)));
        if let Some(reason) = impossible {
            ts.rec.attempts.push(AttemptRecord {
                attempt: ts.rec.attempts.len() as u32 + 1,
                started_ms: now.wall_ms(),
                ended_ms: Some(now.wall_ms()),
                pid: None,
                outcome: Some(AttemptOutcome::SpawnFailed(reason.clone())),
                limits: LimitsMode::None,
                reason: Some(reason),
                log_path: None,
                dispatched_ms: None,
            });
            run.set_state(i, TaskState::Failed);
            sync_timer(&mut self.timers, id, i, &mut run.tasks[i]);
            self.task_done(id, i, now);
            return;
        }
        run.set_state(i, TaskState::Ready);
        sync_timer(&mut self.timers, id, i, &mut run.tasks[i]);
        self.ready.insert(key);
    }

    fn cancel(&mut self, id: &str, now: Now) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        if run.rec.state == RunState::Queued {
            let key = (run.rec.scheduled_ms, id.to_string());
            if let Some(q) = self.queued.get_mut(&run.rec.workflow) {
                q.remove(&key);
            }
        }
        run.cancelling = true;
        if run.rec.started_ms.is_none() {
            // Never started: no task records; the run ends at once.
            run.rec.state = RunState::Cancelled;
            run.rec.ended_ms = Some(now.wall_ms());
            self.dirty.insert((id.to_string(), None));
            self.pending.push(Action::RunFinished {
                run_id: id.to_string(),
                state: RunState::Cancelled,
            });
            if let Some(slot) = self.runs.remove(id) {
                self.retire(id.to_string(), slot);
            }
            return;
        }
        for i in 0..run.tasks.len() {
            let ts = &mut run.tasks[i];
            match ts.rec.state {
                TaskState::Running if ts.dispatched => {
                    // Never started: no process to kill.
                    ts.dispatched = false;
                    ts.fresh = false;
                    self.dispatched = self.dispatched.saturating_sub(1);
                    self.ready.remove(&(
                        -(run.wf.tasks[i].priority as i64),
                        run.rec.scheduled_ms,
                        id.to_string(),
                        i,
                    ));
                    if let Some(a) = ts.rec.attempts.last_mut() {
                        a.outcome = Some(AttemptOutcome::Cancelled);
                        a.ended_ms = Some(now.wall_ms());
                        a.reason = Some("run cancelled before the attempt started".into());
                    }
                    ts.rec.updated_ms = now.wall_ms();
                    run.set_state(i, TaskState::Cancelled);
                    sync_timer(&mut self.timers, id, i, &mut run.tasks[i]);
                    self.dirty.insert((id.to_string(), Some(i)));
                }
                TaskState::Running if ts.kill.is_none() => {
                    ts.kill = Some(KillReason::Cancel);
                    sync_timer(&mut self.timers, id, i, ts);
                    self.pending.push(Action::Kill {
                        run_id: id.to_string(),
                        task: i,
                        attempt: ts.rec.attempts.len() as u32,
                        reason: KillReason::Cancel,
                    });
                }
                // Already being killed (timeout): its exit ends it as Cancelled.
                TaskState::Running => {}
                s if !s.is_terminal() => {
                    ts.rec.retry_at_ms = None;
                    ts.retry_at = None;
                    ts.rec.updated_ms = now.wall_ms();
                    run.set_state(i, TaskState::Cancelled);
                    sync_timer(&mut self.timers, id, i, &mut run.tasks[i]);
                    self.dirty.insert((id.to_string(), Some(i)));
                }
                _ => {}
            }
        }
        self.check_finished(id, now);
    }

    fn check_finished(&mut self, id: &str, now: Now) {
        let Some(run) = self.runs.get(id) else { return };
        if run.rec.state == RunState::Queued {
            return;
        }
        if run.terminal < run.tasks.len() {
            return;
        }
        let state = if run.cancelling {
            RunState::Cancelled
        } else if run
            .tasks
            .iter()
            .enumerate()
            .any(|(i, t)| run.downstream[i].is_empty() && failed_ish(t.rec.state))
        {
            RunState::Failed
        } else {
            RunState::Succeeded
        };
        let Some(mut slot) = self.runs.remove(id) else {
            return;
        };
        slot.rec.state = state;
        slot.rec.ended_ms = Some(now.wall_ms());
        self.dirty.insert((id.to_string(), None));
        self.pending.push(Action::RunFinished {
            run_id: id.to_string(),
            state,
        });
        self.retire(id.to_string(), slot);
    }

    fn retire(&mut self, id: RunId, slot: RunSlot) {
        self.finished.insert(id.clone(), slot);
        self.finished_order.push_back(id);
    }

    fn flush(&mut self) {
        if self.dirty.is_empty() && self.pending.is_empty() && self.early.is_empty() {
            return;
        }
        // Starts of attempts dispatched by earlier (durable) bursts come first.
        self.out.extend(self.early.drain(..));
        // This burst's dispatched attempts are durable once the driver has performed it.
        for (id, i) in self.fresh_claims.drain(..) {
            if let Some(ts) = self.runs.get_mut(&id).and_then(|r| r.tasks.get_mut(i)) {
                ts.fresh = false;
            }
        }
        let dirty = std::mem::take(&mut self.dirty);
        let mut events = Vec::with_capacity(dirty.len());
        for (id, which) in dirty {
            let Some(run) = self.runs.get(&id).or_else(|| self.finished.get(&id)) else {
                continue;
            };
            match which {
                None => events.push(StatusEvent::Run(run.rec.clone())),
                Some(i) => {
                    if let Some(t) = run.tasks.get(i) {
                        events.push(StatusEvent::Task(t.rec.clone()));
                    }
                }
            }
        }
        if !events.is_empty() {
            self.out.push_back(Action::Commit(events));
        }
        if std::mem::take(&mut self.must_flush) {
            self.out.push_back(Action::Flush);
        }
        self.out.extend(self.pending.drain(..));
        while self.finished_order.len() > RECENT_FINISHED {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rules::tests::STATES;
    use super::*;

    /// Moving one upstream task through any sequence of states keeps the counters equal to a
    /// recount.
    #[test]
    fn set_state_keeps_counters_in_step() {
        let wf = crate::testutil::workflow("w")
            .task("a", &[])
            .task("b", &[])
            .task("c", &["a", "b"])
            .task("d", &["a", "c"])
            .build();
        let rec = crate::testutil::run_record(
            &wf,
            crate::testutil::BASE_WALL_MS,
            outpost_common::record::RunKind::Manual,
        );
        let mut run = RunSlot::new(rec, wf, crate::testutil::now_ms(0));
        let mut seq = 0usize;
        for step in 0..200 {
            seq = seq.wrapping_mul(31).wrapping_add(step * 7 + 3);
            let task = seq % 4;
            let state = STATES[(seq / 4) % STATES.len()];
            run.set_state(task, state);
            let mut fresh = run.clone();
            fresh.recount();
            assert_eq!(run.terminal, fresh.terminal, "step {step}");
            for i in 0..4 {
                assert_eq!(run.tasks[i].up, fresh.tasks[i].up, "step {step} task {i}");
            }
        }
        // c's upstream is a and b: their current states, counted.
        let ups = [run.tasks[0].rec.state, run.tasks[1].rec.state];
        assert_eq!(run.tasks[2].up, UpstreamCounts::of(&ups));
    }
}
