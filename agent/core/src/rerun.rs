//! `run retry`: which tasks of a finished run to run again.
//!
//! A retry reopens a finished run in place: the chosen tasks go back to `Pending` (their
//! attempts are kept, so the next attempt numbers go on), the run goes back to `Running`, and
//! the engine ([`crate::engine::Engine::reopen_run`]) decides them by their trigger rules as
//! usual. This module only chooses the tasks; it is pure.
//!
//! - Default (no task named): every `Failed` or `Cancelled` task, plus every task downstream of
//!   one (transitively) that did not succeed (`UpstreamFailed`, `Skipped`, ...).
//! - `task`: that task only; with `downstream`, also its downstream tasks that did not succeed.
//!
//! A run can be retried once it is finished (any terminal state) and it started (a skipped
//! run, or one cancelled while queued, has no task records to retry).

use std::collections::BTreeMap;
use std::fmt;

use outpost_common::model::{TaskIdx, Workflow};
use outpost_common::record::{RunRecord, RunState, TaskInstanceRecord, TaskState};

/// What to retry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetrySelection {
    /// Only this task (by id); `None`: every failed task.
    pub task: Option<String>,
    /// With `task`: its downstream tasks that did not succeed too. (Without `task` they
    /// always are.)
    pub downstream: bool,
}

/// Why a run cannot be retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryError {
    /// The run is not finished.
    NotFinished(RunState),
    /// The run never started (skipped, or cancelled while queued): nothing to retry.
    NeverStarted(RunState),
    /// The workflow has no such task.
    UnknownTask(String),
    /// No task failed (or the named task has not finished).
    NothingToRetry(String),
}

impl fmt::Display for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryError::NotFinished(s) => {
                write!(
                    f,
                    "the run is {}, not finished: nothing to retry yet",
                    s.as_str()
                )
            }
            RetryError::NeverStarted(s) => {
                write!(
                    f,
                    "the run is {} and never started: no task to retry",
                    s.as_str()
                )
            }
            RetryError::UnknownTask(t) => write!(f, "the workflow has no task `{t}`"),
            RetryError::NothingToRetry(why) => write!(f, "nothing to retry: {why}"),
        }
    }
}

impl std::error::Error for RetryError {}

/// The tasks (indices, ascending) to reopen in `run` per `sel`.
pub fn select(
    wf: &Workflow,
    run: &RunRecord,
    tasks: &[TaskInstanceRecord],
    sel: &RetrySelection,
) -> Result<Vec<TaskIdx>, RetryError> {
    if !run.state.is_terminal() {
        return Err(RetryError::NotFinished(run.state));
    }
    if run.started_ms.is_none() || tasks.is_empty() {
        return Err(RetryError::NeverStarted(run.state));
    }
    let by_id: BTreeMap<&str, TaskState> = tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.state))
        .collect();
    let state = |i: TaskIdx| {
        by_id
            .get(wf.tasks[i].id.as_str())
            .copied()
            .unwrap_or(TaskState::Pending)
    };
    let mut downstream = vec![Vec::new(); wf.tasks.len()];
    for (i, t) in wf.tasks.iter().enumerate() {
        for &u in &t.upstream {
            if let Some(d) = downstream.get_mut(u) {
                d.push(i);
            }
        }
    }
    let (seeds, follow) = match &sel.task {
        Some(id) => {
            let i = wf
                .task_index(id)
                .ok_or_else(|| RetryError::UnknownTask(id.clone()))?;
            if !state(i).is_terminal() {
                return Err(RetryError::NothingToRetry(format!(
                    "task `{id}` has not finished"
                )));
            }
            (vec![i], sel.downstream)
        }
        None => {
            let failed: Vec<TaskIdx> = (0..wf.tasks.len())
                .filter(|&i| matches!(state(i), TaskState::Failed | TaskState::Cancelled))
                .collect();
            if failed.is_empty() {
                return Err(RetryError::NothingToRetry(
                    "no task failed or was cancelled (name one with --task)".into(),
                ));
            }
            (failed, true)
        }
    };
    let mut chosen = vec![false; wf.tasks.len()];
    let mut stack = seeds;
    while let Some(i) = stack.pop() {
        if chosen[i] {
            continue;
        }
        chosen[i] = true;
        if follow {
            stack.extend(
                downstream[i]
                    .iter()
                    .copied()
                    .filter(|&d| !chosen[d] && state(d) != TaskState::Succeeded),
            );
        }
    }
    Ok((0..wf.tasks.len()).filter(|&i| chosen[i]).collect())
}
