//! Deadlines and hooks in the driver: the engine's records pass through
//! [`Driver::take_commit`] on their way to the commit, which adds the deadline misses they reveal
//! and the hook jobs they make to the same batch (one transaction: a job is durable with its
//! event). After the batch is durable the hook runner is poked ([`crate::hook_runner`]).

use std::sync::Arc;

use outpost_agent_core::hooks;
use outpost_common::clock::Now;
use outpost_common::model::Workflow;
use outpost_common::record::{RunRecord, StatusEvent, TaskInstanceRecord};

use super::Driver;

impl Driver {
    /// Records to commit (from the engine): with the deadline misses they reveal and the hook
    /// jobs they (and those misses) make, into the pending batch.
    pub(super) fn take_commit(&mut self, mut events: Vec<StatusEvent>) {
        if !self.deadlines.is_empty() {
            let now_ms = self.now().wall_ms();
            let mut misses = Vec::new();
            for e in &events {
                misses.extend(self.deadlines.observe(e, now_ms));
            }
            events.extend(misses.into_iter().map(StatusEvent::Deadline));
        }
        let jobs = if self.hooked.is_empty() {
            Vec::new()
        } else {
            let (runs, engine, hooked) = (&self.runs, &self.engine, &self.hooked);
            hooks::decide(&events, |run_id| {
                if !hooked.contains(run_id) {
                    return None;
                }
                Some((engine.run_record(run_id)?, &**runs.get(run_id)?))
            })
        };
        let pending = self.commits.pending();
        pending.events.extend(events);
        pending.hook_jobs.extend(jobs);
    }

    /// A run was added or restored: note it if its workflow has hooks (only those runs' events
    /// are looked at), and watch its deadlines.
    pub(super) fn watch_run(
        &mut self,
        run: &RunRecord,
        wf: &Arc<Workflow>,
        tasks: &[TaskInstanceRecord],
    ) {
        if hooks::has_hooks(wf) {
            self.hooked.insert(run.run_id.clone());
        }
        self.watch_deadlines(run, wf, tasks);
    }

    /// Watch the deadlines of a run added or restored (`tasks`: its records, when restored).
    pub(super) fn watch_deadlines(
        &mut self,
        run: &RunRecord,
        wf: &Arc<Workflow>,
        tasks: &[TaskInstanceRecord],
    ) {
        if !has_deadlines(wf) {
            return;
        }
        let seen = match self.store.deadline_misses(&run.run_id) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(run = %run.run_id, "reading its deadline misses: {e}");
                Vec::new()
            }
        };
        self.deadlines.watch(run, wf, &seen);
        if !tasks.is_empty() {
            let now_ms = self.now().wall_ms();
            let mut misses = Vec::new();
            for t in tasks {
                misses.extend(
                    self.deadlines
                        .observe(&StatusEvent::Task(t.clone()), now_ms),
                );
            }
            if !misses.is_empty() {
                self.take_commit(misses.into_iter().map(StatusEvent::Deadline).collect());
            }
        }
    }

    /// Deadlines that passed by `now`: committed (with their hooks) on the next pump.
    pub(super) fn check_deadlines(&mut self, now: Now) {
        let misses = self.deadlines.handle_time(now.wall_ms());
        if !misses.is_empty() {
            for m in &misses {
                tracing::warn!(
                    run = %m.run_id,
                    task = m.task.as_deref().unwrap_or(""),
                    kind = m.kind.as_str(),
                    "deadline missed"
                );
            }
            self.take_commit(misses.into_iter().map(StatusEvent::Deadline).collect());
        }
    }

    /// When the next deadline passes, as a monotonic instant.
    pub(super) fn next_deadline_miss(&self, now: Now) -> Option<std::time::Duration> {
        let due = self.deadlines.poll_timeout()?;
        let ms = u64::try_from(due.saturating_sub(now.wall_ms())).unwrap_or(0);
        Some(now.mono + std::time::Duration::from_millis(ms))
    }
}

/// Does the workflow or one of its tasks have a deadline?
pub(super) fn has_deadlines(wf: &Workflow) -> bool {
    wf.deadline.is_some()
        || wf.max_start_delay.is_some()
        || wf
            .tasks
            .iter()
            .any(|t| t.deadline.is_some() || t.max_start_delay.is_some())
}
