//! Hook jobs and deadline misses in the store: a job is committed with its event, once per key;
//! a reopened store hands back the unfinished jobs, never the finished ones.
#![allow(clippy::unwrap_used)]

use outpost_agent_core::hooks::{HookCommand, HookJob};
use outpost_common::model::HookEvent;
use outpost_common::record::{
    DeadlineKind, DeadlineMiss, RunKind, RunRecord, RunState, StatusEvent,
};

use super::*;

fn run(id: &str, state: RunState) -> RunRecord {
    RunRecord {
        run_id: id.to_string(),
        workflow: "w".into(),
        version: 1,
        kind: RunKind::Scheduled,
        scheduled_ms: 1_000,
        state,
        params: vec![],
        created_ms: 1_000,
        started_ms: Some(1_000),
        ended_ms: state.is_terminal().then_some(2_000),
        agent_id: None,
        skip_reason: None,
    }
}

fn job(run_id: &str, attempt: u32, tag: &str) -> HookJob {
    HookJob {
        key: HookJob::key(run_id, Some("a"), attempt, HookEvent::Failure, ""),
        run_id: run_id.into(),
        env: vec![("OUTPOST_EVENT".into(), "failure".into())],
        commands: vec![HookCommand {
            argv: vec!["echo".into(), tag.into()],
            timeout_ms: 1_000,
        }],
        finished_ms: None,
        log_name: "hook.a.1.failure.log".into(),
    }
}

fn miss(run_id: &str, task: Option<&str>, kind: DeadlineKind) -> StatusEvent {
    StatusEvent::Deadline(DeadlineMiss {
        workflow: "w".into(),
        version: 1,
        run_id: run_id.into(),
        task: task.map(str::to_string),
        kind,
        scheduled_ms: 1_000,
        due_ms: 1_500,
        detected_ms: 1_600,
    })
}

#[test]
fn a_job_is_committed_with_its_event_and_only_once_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    store
        .commit(Batch {
            events: vec![StatusEvent::Run(run("r1", RunState::Failed))],
            hook_jobs: vec![job("r1", 1, "first")],
            ..Batch::default()
        })
        .unwrap();
    assert!(store.run("r1").unwrap().is_some());
    let jobs = store.unfinished_hook_jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].commands[0].argv[1], "first");
    // The same event committed again (a snapshot re-sent) makes no second job, and does not
    // replace the first.
    store
        .commit(Batch {
            events: vec![StatusEvent::Run(run("r1", RunState::Failed))],
            hook_jobs: vec![job("r1", 1, "second")],
            ..Batch::default()
        })
        .unwrap();
    let jobs = store.unfinished_hook_jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].commands[0].argv[1], "first");
    // A finished job is not made again by a later commit of its event.
    store.finish_hook_job(&jobs[0].key, 3_000).unwrap();
    store
        .commit(Batch {
            hook_jobs: vec![job("r1", 1, "third")],
            ..Batch::default()
        })
        .unwrap();
    assert!(store.unfinished_hook_jobs().unwrap().is_empty());
    let stored = store.hook_job(&jobs[0].key).unwrap().unwrap();
    assert_eq!(stored.finished_ms, Some(3_000));
    assert_eq!(stored.commands[0].argv[1], "first");
}

#[test]
fn after_a_reopen_unfinished_jobs_run_again_and_finished_ones_never() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let (done, open) = (job("r1", 1, "done"), job("r1", 2, "open"));
    {
        let store = Store::open(&path).unwrap();
        store
            .commit(Batch {
                events: vec![StatusEvent::Run(run("r1", RunState::Failed))],
                hook_jobs: vec![done.clone(), open.clone()],
                ..Batch::default()
            })
            .unwrap();
        store.finish_hook_job(&done.key, 5).unwrap();
    }
    let store = Store::open(&path).unwrap();
    let keys: Vec<String> = store
        .unfinished_hook_jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    assert_eq!(keys, vec![open.key.clone()]);
}

#[test]
fn deadline_misses_are_remembered_per_run_task_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    {
        let store = Store::open(&path).unwrap();
        store
            .commit(Batch {
                events: vec![
                    miss("r1", None, DeadlineKind::Start),
                    miss("r1", Some("a"), DeadlineKind::Finish),
                    miss("r2", None, DeadlineKind::Finish),
                ],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.outbox_len().unwrap(), 3);
    }
    let store = Store::open(&path).unwrap();
    let mut seen = store.deadline_misses("r1").unwrap();
    seen.sort_by_key(|(t, k)| (t.clone(), k.as_str()));
    assert_eq!(
        seen,
        vec![
            (None, DeadlineKind::Start),
            (Some("a".to_string()), DeadlineKind::Finish)
        ]
    );
    assert_eq!(store.deadline_misses("r2").unwrap().len(), 1);
    assert!(store.deadline_misses("r").unwrap().is_empty());
}

#[test]
fn retention_keeps_a_run_while_a_hook_job_of_it_is_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    let j = job("r1", 1, "x");
    store
        .commit(Batch {
            events: vec![StatusEvent::Run(run("r1", RunState::Failed))],
            hook_jobs: vec![j.clone()],
            ..Batch::default()
        })
        .unwrap();
    let last = store.last_seq().unwrap();
    store.ack_outbox(last).unwrap();
    let policy = Retention {
        max_age: Some(Duration::from_millis(1)),
        max_runs_per_workflow: None,
    };
    assert!(store.prune(policy, 1_000_000).unwrap().is_empty());
    store.finish_hook_job(&j.key, 10).unwrap();
    assert_eq!(
        store.prune(policy, 1_000_000).unwrap(),
        vec!["r1".to_string()]
    );
    assert!(store.hook_job(&j.key).unwrap().is_none());
}
