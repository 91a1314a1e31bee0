//! The loop: time (cron firings, pre-committed starts, engine timers, disk checks), events
//! (process starts and exits, control requests, hub deploys, commits), and carrying out the
//! engine's actions durable first.

use std::time::Duration;

use outpost_agent_core::engine::Action;
use outpost_common::clock::Now;

use super::{DISK_CHECK_EVERY, Driver, Event, precise_sleep};

impl Driver {
    /// Start pre-committed attempts whose instant has come, then fire due cron instants (and
    /// those due within [`PRECOMMIT_LEAD`], deferring their spawns) and engine timers.
    pub(super) fn on_time(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        self.check_disk(now);
        self.start_due(now);
        self.engine.handle_timeout(now);
        self.check_deadlines(now);
        if self.stopping {
            return Ok(());
        }
        // Carry out what the timers asked for now, so that only the pre-committed runs' spawns
        // are deferred below.
        self.pump()?;
        if let Err(e) = self.release_backfill(now) {
            tracing::error!("starting backfill runs: {e:#}");
        }
        let disk_low = self.disk_low();
        for name in self.catalog.names() {
            let Some(firings) = self.catalog.poll_planner(
                &name,
                now,
                self.cfg.precommit_lead,
                disk_low,
                self.commits.pending(),
            ) else {
                continue;
            };
            // Commit the runs and their first attempts now, as not started yet; their
            // processes start at the instant (durable first: the commit precedes the spawn).
            let pnow = firings.now;
            if pnow.mono > now.mono {
                self.pump_deferred(pnow.mono, |d| d.fire(firings.fires, pnow))?;
            } else {
                self.fire(firings.fires, pnow);
                self.pump()?;
            }
        }
        Ok(())
    }

    /// Do `f`, then pump with the spawns deferred to `due` (monotonic): prepared now, started at
    /// `due` (see [`PRECOMMIT_LEAD`]).
    pub(super) fn pump_deferred(
        &mut self,
        due: Duration,
        f: impl FnOnce(&mut Driver),
    ) -> anyhow::Result<()> {
        self.defer_to = Some(due);
        self.engine.set_deferred_starts(true);
        f(self);
        let r = self.pump();
        self.defer_to = None;
        self.engine.set_deferred_starts(false);
        r
    }

    /// Read the free disk space (at most every [`DISK_CHECK_EVERY`]) and pause or resume
    /// starting attempts (see [`crate::disk`]).
    pub(super) fn check_disk(&mut self, now: Now) {
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

    /// Is free disk space below the minimum (no attempt starts)?
    pub fn disk_low(&self) -> bool {
        self.cfg.disk_guard.as_ref().is_some_and(|g| g.is_low())
    }

    /// Start the deferred attempts whose instant has come; tell the engine of those armed.
    pub(super) fn start_due(&mut self, now: Now) {
        for a in self.procs.start_due(now, self.commits.durable()) {
            if let Err(e) = self
                .engine
                .handle_deferred_start(&a.run_id, a.task, a.attempt, a.at)
            {
                tracing::debug!(run = %a.run_id, "deferred start: {e}");
            }
        }
    }

    /// Carry out every action the engine has, durable first.
    ///
    /// Per burst: `Start`s of dispatched attempts go at once (their batch is durable; else they
    /// wait for it); the records are submitted to the committer unless nothing waits for them (no
    /// `Spawn`, `Kill`, `Flush` or `RunFinished` follows), in which case the group commit may hold
    /// them back for up to [`super::commit::GROUP_COMMIT_WINDOW`]; the other actions wait for their batch to be
    /// durable ([`Event::Committed`]).
    pub fn pump(&mut self) -> anyhow::Result<()> {
        if let Some(e) = self.commits.failed() {
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
                            .task_id(run_id, task)
                            .map_or(0, |t| self.commits.claim(run_id, &t, attempt));
                        if self.commits.durable() >= gate {
                            self.carry_out(vec![a]);
                        } else {
                            tracing::trace!(
                                gate,
                                durable = self.commits.durable(),
                                "start waits for its batch"
                            );
                            self.commits.wait_for(gate, a);
                        }
                    }
                    Action::Commit(events) => {
                        self.starts.note(&events);
                        self.take_commit(events)
                    }
                    Action::Flush => urgent = true,
                    other => {
                        urgent = true;
                        acts.push(other);
                    }
                }
            }
            if !self.commits.pending_ref().is_empty() {
                let mono = self.clock.mono();
                let hold = self
                    .commits
                    .may_hold_back(self.procs.running(), self.stopping, mono);
                if urgent || !hold {
                    if !urgent && self.engine.top_up(self.now()) {
                        // The held-back records are written now: let the next dispatches ride
                        // on the same commit (the burst is polled on the next turn).
                        continue;
                    }
                    self.commits.submit_pending();
                } else {
                    // Group commit: nothing waits for these records; let them join the next one.
                    self.commits.hold_back_since(mono);
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
                let seq = self.commits.submitted();
                if self.commits.durable() >= seq {
                    self.carry_out(acts);
                } else {
                    for a in acts {
                        self.commits.wait_for(seq, a);
                    }
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

    pub(super) fn carry_out(&mut self, acts: Vec<Action>) {
        for a in acts {
            match a {
                Action::Commit(events) => {
                    self.starts.note(&events);
                    self.take_commit(events)
                }
                Action::Flush => {}
                Action::Start {
                    run_id,
                    task,
                    attempt,
                } => {
                    // A dispatched attempt: journalled before its spawn (crate::startlog).
                    if let Some(task_id) = self.task_id(&run_id, task) {
                        self.procs.journal_start(&run_id, &task_id, attempt);
                    }
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
                } => self.procs.kill((run_id, task, attempt), reason),
                Action::RunFinished { run_id, state } => {
                    self.hooked.remove(&run_id);
                    if let Some(wf) = self.runs.remove(&run_id)
                        && self.catalog.is_hub(&wf.name)
                    {
                        self.probation_due.insert(wf.name.clone());
                    }
                    self.finished.push((run_id, state));
                }
            }
        }
    }

    pub(super) fn handle_event(&mut self, ev: Event) {
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
                self.procs
                    .on_started((run_id.clone(), task, attempt), killer);
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
                self.procs.on_exited(&(run_id.clone(), task, attempt));
                if let Err(e) = self
                    .engine
                    .handle_exited(&run_id, task, attempt, outcome, reason, outputs, now)
                {
                    tracing::warn!("engine: {e}");
                }
            }
            Event::Telemetry(reply) => {
                let _ = reply.send(self.telemetry());
            }
            Event::Figures(reply) => {
                let _ = reply.send(self.local_figures());
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
            Event::Committed { seq, result } => {
                let ready = self.commits.on_committed(seq, result);
                self.on_durable(ready);
            }
            Event::HubDeploy {
                assignment,
                bundle,
                snapshot,
                reply,
            } => {
                let verdict = self.hub_deploy(&assignment, bundle.as_ref(), snapshot.as_ref());
                let _ = reply.send(verdict);
            }
            Event::HubRoots {
                trust,
                reset_counters,
            } => self.hub_roots(&trust, reset_counters),
            Event::HubFresh(view) => self.hub_fresh(view),
            Event::HubPaused(list) => {
                for (n, want) in self.catalog.hub_pause_changes(&list) {
                    let _ = self.set_paused(&n, want);
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
        self.procs.terminate_all();
    }

    /// The next moment something is due, as a monotonic deadline.
    pub(super) fn next_deadline(&self, now: Now) -> Option<Duration> {
        // Look again for the space to come back while it is low.
        let disk = self.disk_low().then(|| now.mono + DISK_CHECK_EVERY);
        let planners = if self.stopping {
            None
        } else {
            self.catalog.next_deadline(now, self.cfg.precommit_lead)
        };
        [
            self.engine.poll_timeout(),
            self.commits.deadline(),
            self.procs.next_deadline(self.commits.durable()),
            disk,
            planners,
            self.next_deadline_miss(now),
        ]
        .into_iter()
        .flatten()
        .min()
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
                if self.procs.running() == 0 && !self.commits.has_waiting() {
                    return self.flush();
                }
                let dl = *shutdown_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + self.cfg.shutdown_grace);
                if tokio::time::Instant::now() >= dl {
                    tracing::warn!(
                        running = self.procs.running(),
                        "shutdown grace over: terminating running tasks"
                    );
                    self.terminate_all();
                    shutdown_deadline = Some(
                        tokio::time::Instant::now()
                            + self.procs.exec.kill_grace
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
}
