//! The driver: the thin async layer that wires the sans-IO core (`outpost_agent_core`) to the
//! store (redb), the executor (OS processes) and the outside world (control socket, hub link,
//! signals).
//!
//! One task owns everything mutable ([`Driver::run_loop`]); processes report back through a
//! channel. The driver owns parts that each own their state and return what is to be done
//! instead of calling each other; the driver alone sequences them:
//!
//! - [`commit::CommitPipeline`]: the committer thread and the durability bookkeeping. Engine
//!   `Commit`s are merged into batches that one thread commits in order (one redb two-phase
//!   commit for whatever queued up meanwhile); every `Spawn`, `Kill` or `RunFinished` waits until
//!   the batch holding its records is durable ([`Event::Committed`]). A `Start` (an attempt
//!   dispatched ahead of a free slot, see `outpost_agent_core::engine`) waits only for the batch
//!   that held its dispatch, normally durable long before; so the driver keeps taking exits and
//!   refilling slots while a commit is in flight. Callers that read the store afterwards
//!   (control requests, the end of a foreground run) wait for everything submitted
//!   ([`Driver::flush`]).
//! - [`processes::ProcessTable`]: spawns, kills, deferred starts, the start journal.
//! - [`catalog::Catalog`]: the loaded workflows, their planners and clock floors, rescans.
//! - [`deploy_gate::DeployGate`]: the only writer of the hub's deploy state (anti-rollback,
//!   probation); decisions from `outpost_agent_core::deploy`.
//! - `control`: the control requests; `runs`: recovery, triggers, firings; `run_loop`: time,
//!   events, and carrying out the engine's actions durable first.

mod alerts;
mod catalog;
mod commit;
mod control;
pub(crate) mod deploy_gate;
mod figures;
mod processes;
mod reruns;
mod run_loop;
mod runs;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use outpost_agent_core::engine::{Engine, EngineConfig};
use outpost_common::clock::{Clock, Now};
use outpost_common::model::{TaskIdx, Workflow};
use outpost_common::record::{AttemptOutcome, LimitsMode, RunId, RunState, StatusEvent};
use tokio::sync::{mpsc, oneshot};

pub use processes::precise_sleep;

use crate::exec::{ExecConfig, Killer};
use crate::store::{Batch, Store};
use catalog::Catalog;
use commit::{CommitPipeline, Durable};
use deploy_gate::{Decision, DeployGate, Install, ProbationStep};
pub use deploy_gate::{DeployError, DeployVerdict};
pub use figures::LocalFigures;
use processes::ProcessTable;

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
    /// A deploy from the hub, as received: the deploy gate checks and decides it; the verdict
    /// is for the hub.
    HubDeploy {
        assignment: outpost_common::proto::SignedAssignment,
        bundle: Option<outpost_common::proto::SignedBundle>,
        /// The session's verified snapshot of this agent's assignments.
        snapshot: Option<outpost_common::proto::Snapshot>,
        reply: oneshot::Sender<DeployVerdict>,
    },
    /// The session followed a root rotation (verified): store it before anything after it.
    HubRoots {
        trust: outpost_common::trust::Trust,
        reset_counters: bool,
    },
    /// The hub link asks for the agent's figures (its telemetry report to the hub).
    Telemetry(oneshot::Sender<outpost_common::proto::AgentTelemetry>),
    /// The agent's own `/metrics` asks for its figures (the report's window is not reset).
    Figures(oneshot::Sender<LocalFigures>),
    /// A verified snapshot: the hub's signed time and the director view's freshness.
    HubFresh(outpost_agent_core::deploy::DirectorView),
    /// Workflows paused at the hub (level-triggered: the others are not).
    HubPaused(Vec<String>),
    /// The committer made batch `seq` durable (or failed to: the driver stops).
    Committed {
        seq: u64,
        result: Result<u64, String>,
    },
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
/// the processes ([`crate::exec::prepare`]), then sleeps precisely until the instant and starts
/// them. Durable-first holds: every commit happens before the spawn it covers.
///
/// Crash semantics: the attempts are committed as not started yet (the engine's "deferred
/// starts": `dispatched_ms` set), and each is written to the start journal
/// ([`crate::startlog`]) just before its process starts (`ARM_AHEAD`), like a dispatched
/// attempt. So after a crash inside the lead (same boot), an attempt that never started is
/// taken back and runs once the agent is back; without a trusted journal it is recovered like
/// any attempt without an outcome, as interrupted (retried if the task is idempotent and has
/// attempts left, else failed). Decisions that depend on other runs (`overlap`,
/// `max_active_runs`, `cancel_running`) are taken at the pre-commit, up to this lead before the
/// instant.
///
/// The default; `precommit_lead` in the agent config sets it (slow storage needs a longer
/// lead for precise starts), up to [`MAX_PRECOMMIT_LEAD`].
pub const PRECOMMIT_LEAD: Duration = Duration::from_millis(50);

/// How often the driver reads the state directory's free space ([`crate::disk`]).
pub const DISK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest pre-commit lead the agent config may set.
pub const MAX_PRECOMMIT_LEAD: Duration = Duration::from_secs(2);

/// Something interesting for a foreground observer (the `run` command's progress display).
pub type Observer = Box<dyn FnMut(&StatusEvent) + Send>;

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
    commits: CommitPipeline,
    procs: ProcessTable,
    catalog: Catalog,
    gate: DeployGate,
    /// The workflow version of each active run (the engine owns its state).
    runs: HashMap<RunId, Arc<Workflow>>,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    observer: Option<Observer>,
    finished: Vec<(RunId, RunState)>,
    stopping: bool,
    /// Hub workflows whose probation must be re-evaluated (a run of them finished).
    probation_due: HashSet<String>,
    pub started: DateTime<Utc>,
    /// While set (monotonic), `pump` defers the spawns it carries out to this instant.
    defer_to: Option<Duration>,
    /// Retention's view of time (clock steps, see `outpost_agent_core::retention`).
    retention_clock: outpost_agent_core::retention::RetentionClock,
    /// When free disk space was last read (monotonic).
    disk_checked: Option<Duration>,
    /// Deadline detection of the active runs (`outpost_agent_core::deadlines`).
    deadlines: outpost_agent_core::deadlines::Deadlines,
    /// Runs the hook jobs once they are durable ([`crate::hook_runner`]).
    hooks: crate::hook_runner::HookRunner,
    /// Active runs whose workflow has hooks: only their events are looked at for jobs.
    hooked: HashSet<RunId>,
    /// Run starts since the last telemetry report (lateness).
    starts: figures::StartFigures,
    /// The hub link's own state (connected since, last error), for `status`; `None` standalone.
    hub_link: Option<crate::hub_link::LinkState>,
    /// The backfill queues (`None`: not read from the store yet).
    backfills: Option<Vec<reruns::BackfillQueue>>,
}

impl Driver {
    pub fn new(cfg: DriverConfig, clock: Arc<dyn Clock>, store: Arc<Store>) -> Driver {
        let (tx, rx) = mpsc::unbounded_channel();
        let committed = tx.clone();
        let commits = CommitPipeline::new(
            store.clone(),
            Box::new(move |seq, result| {
                let _ = committed.send(Event::Committed { seq, result });
            }),
        );
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
        let procs = ProcessTable::new(
            cfg.exec.clone(),
            tx.clone(),
            cfg.start_journal_dir.as_deref(),
        );
        let catalog = Catalog::new(cfg.workflows_dir.clone(), cfg.validate.clone());
        let gate = DeployGate::new(cfg.agent_id.clone(), cfg.validate.clone())
            .with_local(cfg.exec.secrets.clone(), cfg.exec.run_as.clone());
        let hooks =
            crate::hook_runner::HookRunner::start(store.clone(), cfg.exec.clone(), clock.clone());
        Driver {
            cfg,
            clock,
            store,
            engine,
            commits,
            procs,
            catalog,
            gate,
            runs: HashMap::new(),
            tx,
            rx,
            observer: None,
            finished: Vec::new(),
            stopping: false,
            probation_due: HashSet::new(),
            started,
            defer_to: None,
            retention_clock,
            hub_link: None,
            disk_checked: None,
            deadlines: Default::default(),
            hooks,
            hooked: HashSet::new(),
            starts: figures::StartFigures::default(),
            backfills: None,
        }
    }

    pub fn sender(&self) -> mpsc::UnboundedSender<Event> {
        self.tx.clone()
    }

    /// Publish the outbox's last seq after every commit (for the hub link).
    pub fn outbox_watch(&mut self) -> tokio::sync::watch::Receiver<u64> {
        let last = self.store.last_seq().unwrap_or(0);
        self.commits.outbox_watch(last)
    }

    pub fn set_observer(&mut self, o: Observer) {
        self.observer = Some(o);
        self.commits.observe();
    }

    pub(super) fn now(&self) -> Now {
        Now::read(self.clock.as_ref())
    }

    /// Take the runs that finished since the last call.
    pub fn take_finished(&mut self) -> Vec<(RunId, RunState)> {
        std::mem::take(&mut self.finished)
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
        self.catalog.install(
            &self.store,
            self.commits.pending(),
            now,
            wf,
            version,
            origin,
            scheduled,
        )
    }

    /// Task ids of an installed workflow in topological order.
    pub fn task_order(&self, name: &str) -> Option<Vec<String>> {
        self.catalog
            .get(name)
            .map(|l| l.wf.tasks.iter().map(|t| t.id.clone()).collect())
    }

    /// Standalone mode: load new and changed workflow files, drop removed ones. An invalid file
    /// is reported and its previous version keeps running.
    pub fn rescan(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        if self
            .catalog
            .rescan(&self.store, self.commits.pending(), now)?
        {
            self.commits.hold_back_since(self.clock.mono());
        }
        Ok(())
    }

    pub fn workflow_names(&self) -> Vec<String> {
        self.catalog.names()
    }

    #[cfg(test)]
    pub fn installed(&self, name: &str) -> Option<(u64, &str)> {
        self.catalog
            .get(name)
            .map(|l| (l.version, l.wf.content_hash.as_str()))
    }

    /// Record a workflow's source as a new version in the store if its content changed; returns
    /// the version to use. The version joins the next commit.
    pub fn record_version(
        &mut self,
        wf: &Workflow,
        source: &[u8],
        format: &str,
        origin: &str,
    ) -> anyhow::Result<u64> {
        let now = self.now();
        let v = Catalog::record_version(
            &self.store,
            self.commits.pending(),
            now,
            wf,
            source,
            format,
            origin,
        )?;
        self.commits.hold_back_since(self.clock.mono());
        Ok(v)
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
            let dir = crate::exec::run_dir(&self.procs.exec, id);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                tracing::warn!(dir = %dir.display(), "removing logs: {e}");
            }
            self.procs.exec.forget_run_dir(id);
        }
        if !pruned.is_empty() {
            tracing::info!(count = pruned.len(), "pruned finished runs");
        }
        Ok(pruned.len())
    }

    // ----- hub deploys -----------------------------------------------------------------------

    /// Install the hub-deployed workflows recorded in the store (at start-up, before recovery),
    /// and take a probation decision that was due at the stop.
    pub fn load_hub_workflows(&mut self) -> anyhow::Result<usize> {
        let mut n = 0;
        for (name, st) in deploy_gate::stored_states(&self.store)? {
            if st.active_version == 0 {
                continue;
            }
            let wf = self
                .catalog
                .workflow_for(&self.store, &name, st.active_version)?;
            self.install_workflow(
                Arc::unwrap_or_clone(wf),
                st.active_version,
                HUB_ORIGIN.into(),
                true,
            )?;
            if st.paused {
                self.catalog.set_paused(&name, true)?;
            }
            n += 1;
            // A revert due when the agent stopped (the failing run committed, the revert not)
            // happens now, not after yet another run of the version.
            if st.probation.is_some()
                && let Err(e) = self.check_probation(&name)
            {
                tracing::error!(workflow = %name, "probation check failed: {e:#}");
            }
        }
        Ok(n)
    }

    /// A deploy from the hub: the gate checks and decides; the version and its state are
    /// committed in one transaction, then installed. Runs in progress finish on the version
    /// they started with.
    pub(super) fn hub_deploy(
        &mut self,
        assignment: &outpost_common::proto::SignedAssignment,
        bundle: Option<&outpost_common::proto::SignedBundle>,
        snapshot: Option<&outpost_common::proto::Snapshot>,
    ) -> DeployVerdict {
        let now = self.now();
        let catalog = &self.catalog;
        let (workflow, version, epoch, decided) = self.gate.deploy(
            &self.store,
            assignment,
            bundle,
            snapshot,
            |name| catalog.local_origin(name).map(str::to_string),
            now.wall_ms(),
        );
        let result = decided.and_then(|d| self.activate(d));
        match &result {
            Ok(()) => {}
            Err(DeployError::Rejected(r)) => {
                tracing::warn!(workflow = %workflow, version, "deploy rejected: {r:?}")
            }
            Err(DeployError::Store(m)) => {
                tracing::error!(workflow = %workflow, version, "deploy not taken: the agent's store failed: {m}")
            }
        }
        DeployVerdict {
            workflow,
            version,
            epoch,
            result,
        }
    }

    /// Carry out an accepted deploy: load a held version, commit, install.
    fn activate(&mut self, decision: Decision) -> Result<(), DeployError> {
        let wf = match decision.install {
            Install::Remove => None,
            Install::Parsed(wf) => Some(*wf),
            Install::Held => {
                let wf = self
                    .catalog
                    .workflow_for(&self.store, &decision.workflow, decision.version)
                    .map_err(|e| {
                        outpost_common::proto::Rejection::Invalid(format!(
                            "version {} is not held here: {e:#}",
                            decision.version
                        ))
                    })?;
                Some(Arc::unwrap_or_clone(wf))
            }
        };
        self.commit(decision.batch)
            .map_err(|e| DeployError::Store(format!("{e:#}")))?;
        let Some(wf) = wf else {
            self.catalog.uninstall(&decision.workflow);
            tracing::info!(workflow = %decision.workflow, "removed by the hub");
            return Ok(());
        };
        self.install_workflow(wf, decision.version, HUB_ORIGIN.into(), true)
            .map_err(|e| DeployError::Store(format!("{e:#}")))?;
        if decision.paused {
            let _ = self.catalog.set_paused(&decision.workflow, true);
        }
        tracing::info!(workflow = %decision.workflow, version = decision.version, epoch = decision.epoch, "activated a version from the hub");
        Ok(())
    }

    /// The session followed a root rotation: commit the new root (and a counter reset) before
    /// any later event is handled.
    pub(super) fn hub_roots(&mut self, trust: &outpost_common::trust::Trust, reset: bool) {
        let done = self
            .gate
            .roots(&self.store, trust, reset)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|batch| self.commit(batch));
        match done {
            Ok(()) => tracing::info!(
                version = trust.version(),
                reset_counters = reset,
                "now trusting a new version of the root metadata"
            ),
            Err(e) => tracing::error!("storing the new root metadata: {e:#}"),
        }
    }

    /// A verified snapshot: raise the time floor, record the director view.
    pub(super) fn hub_fresh(&mut self, view: outpost_agent_core::deploy::DirectorView) {
        let done = self
            .gate
            .fresh(&self.store, view)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|batch| self.commit(batch));
        if let Err(e) = done {
            tracing::error!("storing the hub's signed time: {e:#}");
        }
    }

    /// Local probation of a hub workflow (a run of it finished): pass or revert, see
    /// [`DeployGate::probation`].
    pub(super) fn check_probation(&mut self, name: &str) -> anyhow::Result<()> {
        let now_ms = self.now().wall_ms();
        match self.gate.probation(&self.store, name, now_ms)? {
            None => {}
            Some(ProbationStep::Passed {
                batch,
                version,
                failed,
            }) => {
                self.commit(batch)?;
                tracing::info!(workflow = %name, version, failed, "version passed probation");
            }
            Some(ProbationStep::Revert { batch, revert }) => {
                let prev = self
                    .catalog
                    .workflow_for(&self.store, name, revert.to_version)?;
                self.commit(batch)?;
                self.install_workflow(
                    Arc::unwrap_or_clone(prev),
                    revert.to_version,
                    HUB_ORIGIN.into(),
                    true,
                )?;
                tracing::warn!(workflow = %name, from = revert.from_version, to = revert.to_version, "reverted under probation: {}", revert.reason);
            }
        }
        Ok(())
    }

    // ----- commits -----------------------------------------------------------------------------

    /// Commit a batch now and wait for it (after everything submitted before it).
    pub(super) fn commit(&mut self, batch: Batch) -> anyhow::Result<()> {
        let seq = self.commits.submit(batch);
        self.wait_durable(seq)
    }

    /// Block until batch `seq` is durable, then carry out what waited for it.
    pub(super) fn wait_durable(&mut self, seq: u64) -> anyhow::Result<()> {
        let ready = self.commits.wait_durable(seq)?;
        self.on_durable(ready);
        Ok(())
    }

    /// Batches turned durable: show the observer their events, carry out the actions that
    /// waited.
    pub(super) fn on_durable(&mut self, ready: Durable) {
        if let Some(obs) = self.observer.as_mut() {
            for e in &ready.events {
                obs(e);
            }
        }
        if ready.hooks {
            self.hooks.poke();
        }
        self.carry_out(ready.actions);
        self.maybe_reset_journal();
    }

    /// Wait (at most `timeout`) until no hook runs: a foreground run lets its hooks finish.
    pub fn wait_hooks(&self, timeout: Duration) {
        self.hooks.wait_idle(timeout);
    }

    /// Restart or rotate the start journal once every start journalled so far is durable.
    pub(super) fn maybe_reset_journal(&mut self) {
        let settled = self.commits.is_settled() && !self.engine.has_unpolled_output();
        self.procs.maybe_reset_journal(settled);
    }

    /// Commit whatever the group commit holds back and wait until everything submitted is
    /// durable (before returning to a caller that reads the store).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.commits.submit_pending();
        let seq = self.commits.submitted();
        self.wait_durable(seq)
    }

    /// Why the store cannot commit now, while the committer retries.
    pub fn store_stalled(&self) -> Option<String> {
        self.commits.stalled()
    }
}

/// The driver configuration the unit tests start from: two slots, no dispatch ahead, logs in
/// `dir`, no retention, no start journal, no disk guard.
#[cfg(test)]
fn test_config(dir: &std::path::Path) -> DriverConfig {
    DriverConfig {
        max_running: 2,
        dispatch_ahead: 0,
        resources: Default::default(),
        exec: crate::exec::ExecConfig::new(dir.join("logs"), "/bin/false"),
        shutdown_grace: std::time::Duration::from_secs(1),
        agent_id: None,
        workflows_dir: None,
        validate: Default::default(),
        retention: None,
        start_journal_dir: None,
        precommit_lead: PRECOMMIT_LEAD,
        disk_guard: None,
    }
}

#[cfg(test)]
mod deploy_tests;
#[cfg(test)]
mod store_tests;
