//! Bringing runs back into the engine: after a restart ([`Engine::restore_run`]) and when an
//! operator retries a finished run ([`Engine::reopen_run`]).

use super::*;

impl Engine {
    /// Restore a run from the store after a restart. Attempts without an outcome become
    /// `Interrupted`; their task is retried if `idempotent` and attempts are left, else `Failed`.
    /// Queued runs stay queued. Terminal runs are ignored. Call `handle_timeout` once every run
    /// is restored (`poll_timeout` asks for it) to resume scheduling.
    pub fn restore_run(
        &mut self,
        run: RunRecord,
        tasks: Vec<TaskInstanceRecord>,
        wf: Arc<Workflow>,
        now: Now,
    ) -> Result<(), EngineError> {
        self.restore_run_knowing(run, tasks, wf, now, &|_, _| false)
    }

    /// [`Engine::restore_run`], told which *dispatched* attempts certainly never started
    /// (`never_started(task_id, attempt)`, from the driver's start journal): those are taken
    /// back, as a graceful stop would (the attempt is dropped and the task is `Ready` again),
    /// instead of being counted as interrupted. Every other open attempt is interrupted as
    /// usual.
    pub fn restore_run_knowing(
        &mut self,
        run: RunRecord,
        tasks: Vec<TaskInstanceRecord>,
        wf: Arc<Workflow>,
        now: Now,
        never_started: &dyn Fn(&str, u32) -> bool,
    ) -> Result<(), EngineError> {
        if run.state.is_terminal() {
            return Ok(());
        }
        if self.runs.contains_key(&run.run_id) || self.finished.contains_key(&run.run_id) {
            return Err(EngineError::DuplicateRun(run.run_id));
        }
        let state = run.state;
        let mut slot = RunSlot::new(run, wf.clone(), now);
        let id = slot.rec.run_id.clone();
        self.needs_schedule = true;
        if state == RunState::Queued {
            self.queued
                .entry(wf.name.clone())
                .or_default()
                .insert((slot.rec.scheduled_ms, id.clone()));
            self.runs.insert(id, slot);
            return Ok(());
        }
        let mut by_id: BTreeMap<String, TaskInstanceRecord> =
            tasks.into_iter().map(|t| (t.task_id.clone(), t)).collect();
        for (i, ts) in slot.tasks.iter_mut().enumerate() {
            let Some(mut rec) = by_id.remove(&ts.rec.task_id) else {
                continue;
            };
            rec.run_id = id.clone();
            let task = &wf.tasks[i];
            let open = rec.attempts.last().is_some_and(|a| a.outcome.is_none());
            let unstarted = rec.attempts.last().is_some_and(|a| {
                a.outcome.is_none()
                    && a.dispatched_ms.is_some()
                    && never_started(&rec.task_id, a.attempt)
            });
            if unstarted {
                rec.attempts.pop();
                rec.state = TaskState::Ready;
                rec.updated_ms = now.wall_ms();
                rec.retry_at_ms = None;
                self.dirty.insert((id.clone(), Some(i)));
            } else if open || rec.state == TaskState::Running {
                let n = rec.attempts.len() as u32;
                let mut note = "";
                if let Some(a) = rec.attempts.last_mut().filter(|a| a.outcome.is_none()) {
                    if a.dispatched_ms.is_some() {
                        note = " (it was dispatched, committed ahead of its start, and may not have started)";
                    }
                    a.outcome = Some(AttemptOutcome::Interrupted);
                    a.ended_ms = Some(now.wall_ms());
                    a.reason = Some(format!("interrupted by agent restart{note}"));
                }
                if task.idempotent && n < retry::max_attempts(&task.retry) {
                    rec.state = TaskState::Ready;
                } else {
                    rec.state = TaskState::Failed;
                    let why = if task.idempotent {
                        "interrupted by agent restart; no attempts left"
                    } else {
                        "interrupted by agent restart; task not idempotent"
                    };
                    if let Some(a) = rec.attempts.last_mut() {
                        a.reason = Some(format!("{why}{note}"));
                    }
                }
                rec.updated_ms = now.wall_ms();
                rec.retry_at_ms = None;
                self.dirty.insert((id.clone(), Some(i)));
            }
            if rec.state == TaskState::UpForRetry {
                let wait = rec
                    .retry_at_ms
                    .map_or(0, |at| at.saturating_sub(now.wall_ms()).max(0));
                ts.retry_at = Some(now.mono.saturating_add(Duration::from_millis(wait as u64)));
            }
            ts.rec = rec;
            sync_timer(&mut self.timers, &id, i, ts);
        }
        slot.recount();
        if slot.rec.state != RunState::Running {
            slot.rec.state = RunState::Running;
            self.dirty.insert((id.clone(), None));
        }
        if slot.rec.started_ms.is_none() {
            slot.rec.started_ms = Some(now.wall_ms());
        }
        self.runs.insert(id.clone(), slot);
        if let Some(run) = self.runs.get(&id) {
            let ready: Vec<TaskIdx> = (0..run.tasks.len())
                .filter(|&i| run.tasks[i].rec.state == TaskState::Ready)
                .collect();
            for i in ready {
                self.mark_ready(&id, i, now);
            }
        }
        self.evaluate_pending(&id, now);
        self.check_finished(&id, now);
        Ok(())
    }

    /// Reopen a finished run for `run retry` (see [`crate::rerun`]): the tasks in `reopen` go
    /// back to `Pending` (attempts kept: the next attempt numbers go on; outputs dropped), the
    /// run goes back to `Running` at once (no admission: it is the same run), and the reopened
    /// tasks are decided by their trigger rules as usual. The run record and every reopened
    /// task are in the next `Commit`, ahead of any `Spawn` of the run. Refused for an active
    /// run (`DuplicateRun`): a repeated request starts nothing twice.
    pub fn reopen_run(
        &mut self,
        run: RunRecord,
        tasks: Vec<TaskInstanceRecord>,
        wf: Arc<Workflow>,
        reopen: &[TaskIdx],
        now: Now,
    ) -> Result<(), EngineError> {
        if self.runs.contains_key(&run.run_id) || !run.state.is_terminal() {
            return Err(EngineError::DuplicateRun(run.run_id));
        }
        if let Some(&bad) = reopen.iter().find(|&&i| i >= wf.tasks.len()) {
            return Err(EngineError::UnknownTask {
                run_id: run.run_id,
                task: bad,
            });
        }
        self.finished.remove(&run.run_id);
        self.finished_order.retain(|r| *r != run.run_id);
        let mut slot = RunSlot::new(run, wf, now);
        let id = slot.rec.run_id.clone();
        let mut by_id: BTreeMap<String, TaskInstanceRecord> =
            tasks.into_iter().map(|t| (t.task_id.clone(), t)).collect();
        for (i, ts) in slot.tasks.iter_mut().enumerate() {
            if let Some(mut rec) = by_id.remove(&ts.rec.task_id) {
                rec.run_id = id.clone();
                ts.rec = rec;
            }
            if reopen.contains(&i) || !ts.rec.state.is_terminal() {
                ts.rec.state = TaskState::Pending;
                ts.rec.retry_at_ms = None;
                ts.rec.outputs.clear();
                ts.rec.updated_ms = now.wall_ms();
                self.dirty.insert((id.clone(), Some(i)));
            }
        }
        slot.recount();
        slot.rec.state = RunState::Running;
        slot.rec.ended_ms = None;
        if slot.rec.started_ms.is_none() {
            slot.rec.started_ms = Some(now.wall_ms());
        }
        self.dirty.insert((id.clone(), None));
        self.runs.insert(id.clone(), slot);
        self.evaluate_pending(&id, now);
        self.check_finished(&id, now);
        self.schedule(now);
        Ok(())
    }
}
