#![allow(clippy::unwrap_used)] // tests may unwrap
//! `run retry`: choosing the tasks, and reopening a finished run in the engine (deterministic).
mod common;

use std::sync::Arc;

use common::Sim;
use outpost_agent_core::engine::{Engine, EngineConfig, EngineError};
use outpost_agent_core::rerun::{RetryError, RetrySelection, select};
use outpost_agent_core::testutil::{BASE_WALL_MS, run_record, workflow};
use outpost_common::model::{TriggerRule, Workflow};
use outpost_common::record::{RunKind, RunRecord, RunState, TaskInstanceRecord, TaskState};

fn engine() -> Engine {
    Engine::new(EngineConfig {
        max_running: 4,
        resources: Default::default(),
        seed: 7,
        dispatch_ahead: 0,
    })
}

/// a -> b -> c, and a -> d (d independent of b).
fn chain() -> Arc<Workflow> {
    workflow("chain")
        .task("a", &[])
        .task("b", &["a"])
        .task("c", &["b"])
        .task("d", &["a"])
        .build()
}

/// Run the chain with b failing: b Failed, c UpstreamFailed, a and d Succeeded.
fn failed_run(sim: &mut Sim, wf: &Arc<Workflow>) -> String {
    let run = run_record(wf, BASE_WALL_MS, RunKind::Scheduled);
    let id = run.run_id.clone();
    sim.add(run, wf.clone());
    sim.exit(&id, 0, 0);
    sim.exit(&id, 3, 0);
    sim.exit(&id, 1, 1);
    assert_eq!(sim.run_state(&id), RunState::Failed);
    assert_eq!(sim.state(&id, 2), TaskState::UpstreamFailed);
    id
}

fn stored(sim: &Sim, id: &str) -> (RunRecord, Vec<TaskInstanceRecord>) {
    let run = sim.store_runs.get(id).unwrap().clone();
    let tasks = sim
        .store_tasks
        .iter()
        .filter(|((r, _), _)| r == id)
        .map(|(_, t)| t.clone())
        .collect();
    (run, tasks)
}

#[test]
fn default_selection_is_failed_tasks_and_what_they_blocked() {
    let wf = chain();
    let mut sim = Sim::new(engine());
    let id = failed_run(&mut sim, &wf);
    let (run, tasks) = stored(&sim, &id);
    assert_eq!(
        select(&wf, &run, &tasks, &RetrySelection::default()),
        Ok(vec![1, 2])
    );
    let only_b = RetrySelection {
        task: Some("b".into()),
        downstream: false,
    };
    assert_eq!(select(&wf, &run, &tasks, &only_b), Ok(vec![1]));
    let b_down = RetrySelection {
        task: Some("b".into()),
        downstream: true,
    };
    assert_eq!(select(&wf, &run, &tasks, &b_down), Ok(vec![1, 2]));
    // A succeeded task may be run again by name; its succeeded dependents are not dragged in.
    let a_down = RetrySelection {
        task: Some("a".into()),
        downstream: true,
    };
    assert_eq!(select(&wf, &run, &tasks, &a_down), Ok(vec![0, 1, 2]));
    assert_eq!(
        select(
            &wf,
            &run,
            &tasks,
            &RetrySelection {
                task: Some("zz".into()),
                downstream: false
            }
        ),
        Err(RetryError::UnknownTask("zz".into()))
    );
}

#[test]
fn unfinished_or_never_started_runs_are_refused() {
    let wf = chain();
    let mut run = run_record(&wf, BASE_WALL_MS, RunKind::Scheduled);
    run.state = RunState::Running;
    assert_eq!(
        select(&wf, &run, &[], &RetrySelection::default()),
        Err(RetryError::NotFinished(RunState::Running))
    );
    run.state = RunState::Skipped;
    assert_eq!(
        select(&wf, &run, &[], &RetrySelection::default()),
        Err(RetryError::NeverStarted(RunState::Skipped))
    );
}

#[test]
fn succeeded_run_has_nothing_to_retry_by_default() {
    let wf = chain();
    let mut sim = Sim::new(engine());
    let run = run_record(&wf, BASE_WALL_MS, RunKind::Scheduled);
    let id = run.run_id.clone();
    sim.add(run, wf.clone());
    for t in [0, 1, 3, 2] {
        sim.exit(&id, t, 0);
    }
    assert_eq!(sim.run_state(&id), RunState::Succeeded);
    let (run, tasks) = stored(&sim, &id);
    assert!(matches!(
        select(&wf, &run, &tasks, &RetrySelection::default()),
        Err(RetryError::NothingToRetry(_))
    ));
}

/// Retry in the same engine (the run is among its recently finished ones) and in a fresh one
/// (after a restart): the failed task runs as attempt 2, then its dependent, and the run
/// succeeds; the reopened records are committed before the spawn (the simulator checks it).
#[test]
fn retry_reopens_the_run_and_attempts_go_on() {
    for fresh in [false, true] {
        let wf = chain();
        let mut sim = Sim::new(engine());
        let id = failed_run(&mut sim, &wf);
        let (run, tasks) = stored(&sim, &id);
        let reopen = select(&wf, &run, &tasks, &RetrySelection::default()).unwrap();
        if fresh {
            sim.engine = engine();
        }
        sim.advance(1_000);
        let now = sim.now();
        sim.engine
            .reopen_run(run.clone(), tasks.clone(), wf.clone(), &reopen, now)
            .unwrap();
        let acts = sim.drain();
        assert_eq!(common::spawns_of(&acts), vec![(1, 2)]);
        // Durable: the store says the run is running again, c is pending.
        assert_eq!(sim.store_runs[&id].state, RunState::Running);
        assert_eq!(sim.store_runs[&id].ended_ms, None);
        assert_eq!(
            sim.store_tasks[&(id.clone(), "c".to_string())].state,
            TaskState::Pending
        );
        // A repeated request while it runs starts nothing.
        assert_eq!(
            sim.engine
                .reopen_run(run.clone(), tasks.clone(), wf.clone(), &reopen, now),
            Err(EngineError::DuplicateRun(id.clone()))
        );
        assert!(sim.drain().is_empty());
        sim.exit(&id, 1, 0);
        assert_eq!(sim.spawned(&id).last(), Some(&2));
        sim.exit(&id, 2, 0);
        assert_eq!(sim.run_state(&id), RunState::Succeeded);
        assert_eq!(
            sim.finished,
            vec![
                (id.clone(), RunState::Failed),
                (id.clone(), RunState::Succeeded)
            ]
        );
        let b = &sim.store_tasks[&(id.clone(), "b".to_string())];
        assert_eq!(b.attempts.len(), 2);
        assert_eq!(b.attempts[1].attempt, 2);
        assert_eq!(b.state, TaskState::Succeeded);
        // a and d were not run again.
        assert_eq!(
            sim.spawned(&id)
                .iter()
                .filter(|&&t| t == 0 || t == 3)
                .count(),
            2
        );
    }
}

/// Reopening only a task whose upstream still failed ends it again at once (by its rule).
#[test]
fn retrying_a_blocked_task_alone_ends_the_run_again() {
    let wf = workflow("w")
        .task("a", &[])
        .task("b", &["a"])
        .rule(TriggerRule::AllSuccess)
        .build();
    let mut sim = Sim::new(engine());
    let run = run_record(&wf, BASE_WALL_MS, RunKind::Scheduled);
    let id = run.run_id.clone();
    sim.add(run, wf.clone());
    sim.exit(&id, 0, 1);
    assert_eq!(sim.run_state(&id), RunState::Failed);
    let (run, tasks) = stored(&sim, &id);
    let sel = RetrySelection {
        task: Some("b".into()),
        downstream: false,
    };
    let reopen = select(&wf, &run, &tasks, &sel).unwrap();
    let now = sim.now();
    sim.engine
        .reopen_run(run, tasks, wf.clone(), &reopen, now)
        .unwrap();
    sim.drain();
    assert_eq!(sim.run_state(&id), RunState::Failed);
    assert_eq!(sim.state(&id, 1), TaskState::UpstreamFailed);
    assert_eq!(sim.finished.len(), 2);
}
