//! Runs: recovery at start-up, manual triggers, cron firings, cancellation, and the process
//! requests of their attempts (handed to the process table).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use outpost_common::clock::Now;
use outpost_common::model::{TaskIdx, Workflow};
use outpost_common::record::{RunId, RunKind, RunRecord, RunState};

use super::{Driver, processes};

impl Driver {
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
            let wf = match self
                .catalog
                .workflow_for(&self.store, &run.workflow, run.version)
            {
                Ok(wf) => wf,
                Err(e) => {
                    tracing::error!(run = %run.run_id, "cannot recover run: {e:#}");
                    continue;
                }
            };
            self.runs.insert(run.run_id.clone(), wf.clone());
            let watch = (super::alerts::has_deadlines(&wf)
                || outpost_agent_core::hooks::has_hooks(&wf))
            .then(|| (run.clone(), tasks.clone()));
            let id = run.run_id.clone();
            let found = self.procs.journal_found();
            let never_started = |task: &str, attempt: u32| found.never_started(&id, task, attempt);
            if let Err(e) =
                self.engine
                    .restore_run_knowing(run, tasks, wf.clone(), now, &never_started)
            {
                tracing::error!(run = %id, "cannot recover run: {e}");
            }
            if let Some((run, tasks)) = watch {
                self.watch_run(&run, &wf, &tasks);
            }
            if let Some(ahead) = ahead {
                // Restored tasks are scheduled on the engine's next timeout: now.
                self.pump_deferred(now.mono + ahead, |d| {
                    d.engine.handle_timeout(now);
                })?;
            }
        }
        self.procs.recovered(n);
        Ok(n)
    }

    /// Start a run of `name` now (manual trigger). Returns its run id.
    pub fn trigger(&mut self, name: &str, params: Vec<(String, String)>) -> anyhow::Result<RunId> {
        let loaded = self
            .catalog
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

    pub(super) fn add_run(
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
            skip_reason: None,
        };
        self.runs.insert(run_id.clone(), wf.clone());
        self.watch_run(&rec, &wf, &[]);
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
        self.catalog.set_paused(name, paused)?;
        self.commits
            .pending()
            .paused
            .push((name.to_string(), paused));
        Ok(())
    }

    pub(super) fn fire(
        &mut self,
        fires: Vec<(Arc<Workflow>, u64, DateTime<Utc>, RunKind)>,
        now: Now,
    ) {
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

    pub(super) fn task_id(&self, run_id: &RunId, task: TaskIdx) -> Option<String> {
        self.runs
            .get(run_id)
            .and_then(|wf| wf.tasks.get(task))
            .map(|t| t.id.clone())
    }

    /// For a scheduled (or catch-up) run's first attempts: the instant the process was meant to
    /// start, so that its lateness can be measured (`RUST_LOG=outpost_agent::driver=debug`; the
    /// benchmark harness parses it).
    pub(super) fn scheduled_at(&self, run_id: &str, attempt: u32) -> Option<i64> {
        if attempt != 1 {
            return None;
        }
        self.engine
            .active_run_records()
            .find(|r| r.run_id == run_id && r.kind != RunKind::Manual)
            .map(|r| r.scheduled_ms)
    }

    /// The process request of an attempt: templates rendered, run context in the environment.
    pub(super) fn spawn_request(
        &self,
        run_id: &RunId,
        task: TaskIdx,
        attempt: u32,
    ) -> anyhow::Result<crate::exec::SpawnRequest> {
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
        let upstream = self.engine.upstream_outputs(run_id, task);
        processes::spawn_request(wf, rec, &upstream, task, attempt)
    }

    pub(super) fn spawn(&mut self, run_id: RunId, task: TaskIdx, attempt: u32) {
        let req = self.spawn_request(&run_id, task, attempt);
        let scheduled_at = self.scheduled_at(&run_id, attempt);
        self.procs.spawn((run_id, task, attempt), req, scheduled_at);
    }

    /// Prepare an attempt now and start it at `due` (monotonic), see [`PRECOMMIT_LEAD`].
    pub(super) fn defer_spawn(
        &mut self,
        due: Duration,
        run_id: RunId,
        task: TaskIdx,
        attempt: u32,
    ) {
        let req = self.spawn_request(&run_id, task, attempt);
        let scheduled_ms = self.scheduled_at(&run_id, attempt);
        let task_id = self.task_id(&run_id, task).unwrap_or_default();
        let seq = self.commits.submitted();
        self.procs.defer(
            due,
            seq,
            (run_id, task, attempt),
            task_id,
            req,
            scheduled_ms,
        );
    }
}
