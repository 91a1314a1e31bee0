#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outpost_common::record::{
    AttemptOutcome, AttemptRecord, LimitsMode, MissedFirings, RunKind, RunRecord, RunState,
    StatusEvent, TaskInstanceRecord, TaskState,
};
use rand::Rng;
use redb::ReadableDatabase;

use outpost_common::store::META_SCHEMA_VERSION;

use super::schema::{META, RUNS, SCHEMA_VERSION};
use super::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn run(id: &str, workflow: &str, created_ms: i64, state: RunState) -> RunRecord {
    RunRecord {
        run_id: id.to_string(),
        workflow: workflow.to_string(),
        version: 1,
        kind: RunKind::Scheduled,
        scheduled_ms: created_ms,
        state,
        params: vec![("k".into(), "v".into())],
        created_ms,
        started_ms: Some(created_ms),
        ended_ms: state.is_terminal().then_some(created_ms + 10),
        agent_id: None,
        skip_reason: None,
    }
}

fn task(run_id: &str, task_id: &str, state: TaskState) -> TaskInstanceRecord {
    TaskInstanceRecord {
        run_id: run_id.to_string(),
        task_id: task_id.to_string(),
        state,
        attempts: vec![AttemptRecord {
            attempt: 1,
            started_ms: 5,
            ended_ms: Some(9),
            pid: Some(4242),
            outcome: Some(AttemptOutcome::Exited(0)),
            limits: LimitsMode::Rlimit,
            reason: None,
            log_path: Some(format!("/logs/{run_id}/{task_id}/1.log")),
            dispatched_ms: None,
        }],
        outputs: vec![("rows".into(), "12".into())],
        retry_at_ms: None,
        updated_ms: 9,
    }
}

fn events(events: Vec<StatusEvent>) -> Batch {
    Batch {
        events,
        ..Batch::default()
    }
}

fn version(name: &str, v: u64, hash: &str) -> WorkflowVersion {
    WorkflowVersion {
        name: name.to_string(),
        version: v,
        content_hash: hash.to_string(),
        source: format!("name: {name}\n").into_bytes(),
        format: "yaml".into(),
        origin: "/etc/outpost/workflows/x.yaml".into(),
        created_ms: 1_000 + v as i64,
    }
}

fn outbox_seqs(store: &Store) -> Vec<u64> {
    store
        .outbox_after(0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

#[test]
fn open_creates_parent_dirs_with_private_file() {
    let dir = tmp();
    let path = dir.path().join("a/b/agent.redb");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.path(), path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(store.last_seq().unwrap(), 0);
    assert_eq!(store.acked_seq().unwrap(), 0);
}

#[test]
fn open_tightens_permissions_of_existing_file() {
    let dir = tmp();
    let path = dir.path().join("agent.redb");
    drop(Store::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Store::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn second_open_is_refused_clearly() {
    let dir = tmp();
    let path = dir.path().join("agent.redb");
    let _store = Store::open(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::Db(DbError::AlreadyOpen { .. })),
        "{err:?}"
    );
}

#[test]
fn commit_survives_reopen() {
    let dir = tmp();
    let path = dir.path().join("agent.redb");
    let r = run("wf@v1@a", "wf", 100, RunState::Running);
    let t1 = task("wf@v1@a", "extract", TaskState::Succeeded);
    let t2 = task("wf@v1@a", "load", TaskState::Running);
    {
        let store = Store::open(&path).unwrap();
        let info = store
            .commit(Batch {
                events: vec![
                    StatusEvent::Run(r.clone()),
                    StatusEvent::Task(t1.clone()),
                    StatusEvent::Task(t2.clone()),
                ],
                last_fired: vec![("wf".into(), 100)],
                paused: vec![("wf".into(), true)],
                workflow_puts: vec![version("wf", 1, "h1")],
                hook_jobs: vec![],
                meta_puts: vec![("deploy/wf".into(), vec![1, 2, 3])],
            })
            .unwrap();
        assert_eq!(info.last_seq, 3);
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.run("wf@v1@a").unwrap(), Some(r.clone()));
    assert!(store.run_exists("wf@v1@a").unwrap());
    // Meta entries of a batch commit with it.
    assert_eq!(store.get_meta("deploy/wf").unwrap(), Some(vec![1, 2, 3]));
    assert!(!store.run_exists("wf@v1@b").unwrap());
    assert_eq!(
        store.tasks("wf@v1@a").unwrap(),
        vec![t1.clone(), t2.clone()]
    );
    assert_eq!(store.last_fired("wf").unwrap(), Some(100));
    assert!(store.is_paused("wf").unwrap());
    assert_eq!(store.highest_version("wf").unwrap(), Some(1));
    let outbox = store.outbox_after(0, 10).unwrap();
    assert_eq!(
        outbox.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![
            StatusEvent::Run(r),
            StatusEvent::Task(t1),
            StatusEvent::Task(t2)
        ]
    );
    assert_eq!(outbox_seqs(&store), vec![1, 2, 3]);
}

#[test]
fn empty_batch_changes_nothing() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    store
        .commit(events(vec![StatusEvent::Run(run(
            "r",
            "wf",
            1,
            RunState::Queued,
        ))]))
        .unwrap();
    let info = store.commit(Batch::default()).unwrap();
    assert_eq!(info.last_seq, 1);
    assert_eq!(store.outbox_len().unwrap(), 1);
}

#[test]
fn same_run_twice_keeps_one_record_and_two_outbox_entries() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let queued = run("r1", "wf", 50, RunState::Queued);
    let mut done = queued.clone();
    done.state = RunState::Succeeded;
    done.ended_ms = Some(70);
    store
        .commit(events(vec![StatusEvent::Run(queued)]))
        .unwrap();
    store
        .commit(events(vec![StatusEvent::Run(done.clone())]))
        .unwrap();
    assert_eq!(store.run("r1").unwrap(), Some(done.clone()));
    assert_eq!(store.runs(RunFilter::default()).unwrap(), vec![done]);
    assert_eq!(outbox_seqs(&store), vec![1, 2]);
    assert!(store.unfinished_runs().unwrap().is_empty());
}

#[test]
fn changed_created_time_moves_the_index_entry() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    store
        .commit(events(vec![
            StatusEvent::Run(run("a", "wf", 10, RunState::Queued)),
            StatusEvent::Run(run("b", "wf", 20, RunState::Queued)),
            StatusEvent::Run(run("a", "wf", 30, RunState::Queued)),
        ]))
        .unwrap();
    let ids: Vec<_> = store
        .runs(RunFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(ids, vec!["a", "b"]);
    let by_wf = store
        .runs(RunFilter {
            workflow: Some("wf".into()),
            ..RunFilter::default()
        })
        .unwrap();
    assert_eq!(by_wf.len(), 2);
}

#[test]
fn outbox_seq_strictly_increases_across_reopen() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    let mut seen = Vec::new();
    for round in 0..3 {
        let store = Store::open(&path).unwrap();
        for i in 0..3 {
            let id = format!("r{round}-{i}");
            let info = store
                .commit(events(vec![
                    StatusEvent::Run(run(&id, "wf", i, RunState::Running)),
                    StatusEvent::Task(task(&id, "t", TaskState::Running)),
                ]))
                .unwrap();
            seen.push(info.last_seq);
        }
    }
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 2), "{seen:?}");
    let store = Store::open(&path).unwrap();
    assert_eq!(outbox_seqs(&store), (1..=18).collect::<Vec<_>>());
}

#[test]
fn ack_is_durable_and_keeps_newer_entries() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    {
        let store = Store::open(&path).unwrap();
        for i in 0..5 {
            store
                .commit(events(vec![StatusEvent::Run(run(
                    &format!("r{i}"),
                    "wf",
                    i,
                    RunState::Queued,
                ))]))
                .unwrap();
        }
        assert_eq!(store.ack_outbox(3).unwrap(), 3);
        assert_eq!(store.ack_outbox(2).unwrap(), 0, "already acknowledged");
        let err = store.ack_outbox(6).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::AckBeyondLast {
                    requested: 6,
                    last: 5
                }
            ),
            "{err:?}"
        );
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.acked_seq().unwrap(), 3);
    assert_eq!(store.last_seq().unwrap(), 5);
    assert_eq!(outbox_seqs(&store), vec![4, 5]);
    assert_eq!(store.outbox_len().unwrap(), 2);
    assert_eq!(
        store
            .outbox_after(4, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![5]
    );
    // Acknowledging everything empties the outbox; new commits continue after last_seq.
    assert_eq!(store.ack_outbox(5).unwrap(), 2);
    let info = store
        .commit(events(vec![StatusEvent::Run(run(
            "r9",
            "wf",
            9,
            RunState::Queued,
        ))]))
        .unwrap();
    assert_eq!(info.last_seq, 6);
    assert_eq!(outbox_seqs(&store), vec![6]);
}

#[test]
fn runs_lists_newest_first_with_filters() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let mut evs = Vec::new();
    for i in 0..10 {
        let wf = if i % 2 == 0 { "even" } else { "odd" };
        let state = if i % 3 == 0 {
            RunState::Failed
        } else {
            RunState::Succeeded
        };
        evs.push(StatusEvent::Run(run(&format!("r{i}"), wf, 1000 + i, state)));
    }
    store.commit(events(evs)).unwrap();
    let ids = |f: RunFilter| -> Vec<String> {
        store
            .runs(f)
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect()
    };
    assert_eq!(
        ids(RunFilter {
            limit: 3,
            ..RunFilter::default()
        }),
        vec!["r9", "r8", "r7"]
    );
    assert_eq!(
        ids(RunFilter {
            workflow: Some("even".into()),
            limit: 2,
            states: None
        }),
        vec!["r8", "r6"]
    );
    assert_eq!(
        ids(RunFilter {
            workflow: Some("odd".into()),
            limit: 10,
            states: Some(vec![RunState::Failed])
        }),
        vec!["r9", "r3"]
    );
    // A workflow whose name is a prefix of another does not see the other's runs.
    assert!(
        ids(RunFilter {
            workflow: Some("eve".into()),
            ..RunFilter::default()
        })
        .is_empty()
    );
    assert!(
        ids(RunFilter {
            limit: 0,
            ..RunFilter::default()
        })
        .is_empty()
    );
}

#[test]
fn unfinished_runs_returns_non_terminal_runs_with_tasks() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let running = run("a", "wf", 2, RunState::Running);
    let queued = run("b", "wf", 1, RunState::Queued);
    let t = task("a", "t1", TaskState::Running);
    store
        .commit(events(vec![
            StatusEvent::Run(running.clone()),
            StatusEvent::Run(queued.clone()),
            StatusEvent::Run(run("c", "wf", 3, RunState::Succeeded)),
            StatusEvent::Task(t.clone()),
        ]))
        .unwrap();
    assert_eq!(
        store.unfinished_runs().unwrap(),
        vec![(queued, vec![]), (running.clone(), vec![t])]
    );
    let mut finished = running;
    finished.state = RunState::Cancelled;
    store
        .commit(events(vec![StatusEvent::Run(finished)]))
        .unwrap();
    let left: Vec<_> = store
        .unfinished_runs()
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.run_id)
        .collect();
    assert_eq!(left, vec!["b"]);
}

#[test]
fn workflow_versions_history_removal_and_conflicts() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    store.put_workflow_version(version("etl", 1, "h1")).unwrap();
    store.put_workflow_version(version("etl", 2, "h2")).unwrap();
    store
        .put_workflow_version(version("etl-b", 1, "hb"))
        .unwrap();
    store.put_workflow_version(version("etl", 2, "h2")).unwrap(); // idempotent re-put
    let err = store
        .put_workflow_version(version("etl", 2, "other"))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::VersionConflict { version: 2, .. }),
        "{err:?}"
    );

    assert_eq!(store.highest_version("etl").unwrap(), Some(2));
    assert_eq!(store.highest_version("et").unwrap(), None);
    assert_eq!(
        store.workflow_versions("etl").unwrap(),
        vec![version("etl", 1, "h1"), version("etl", 2, "h2")]
    );
    assert_eq!(
        store.active_workflows().unwrap(),
        vec![version("etl", 2, "h2"), version("etl-b", 1, "hb")]
    );

    assert!(store.remove_workflow("etl").unwrap());
    assert!(!store.remove_workflow("nope").unwrap());
    assert_eq!(
        store.active_workflows().unwrap(),
        vec![version("etl-b", 1, "hb")]
    );
    assert_eq!(
        store.workflow_versions("etl").unwrap().len(),
        2,
        "history kept"
    );
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.active_workflows().unwrap().len(), 1);
    store.put_workflow_version(version("etl", 3, "h3")).unwrap();
    assert_eq!(store.highest_version("etl").unwrap(), Some(3));
    assert!(
        store
            .active_workflows()
            .unwrap()
            .contains(&version("etl", 3, "h3"))
    );

    assert!(!store.is_paused("etl").unwrap());
    store
        .commit(Batch {
            paused: vec![("etl".into(), true)],
            last_fired: vec![("etl".into(), 777)],
            ..Batch::default()
        })
        .unwrap();
    assert!(store.is_paused("etl").unwrap());
    assert_eq!(store.last_fired("etl").unwrap(), Some(777));
    store
        .commit(Batch {
            paused: vec![("etl".into(), false)],
            ..Batch::default()
        })
        .unwrap();
    assert!(!store.is_paused("etl").unwrap());
    assert_eq!(
        store.last_fired("etl").unwrap(),
        Some(777),
        "pause keeps last fired"
    );
    assert_eq!(store.last_seq().unwrap(), 0, "no events, no outbox entries");
}

#[test]
fn a_failed_batch_writes_nothing() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    store.put_workflow_version(version("etl", 1, "h1")).unwrap();
    let err = store
        .commit(Batch {
            events: vec![StatusEvent::Run(run("r", "etl", 1, RunState::Queued))],
            workflow_puts: vec![version("etl", 1, "conflict")],
            ..Batch::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict { .. }));
    assert!(!store.run_exists("r").unwrap());
    assert_eq!(store.last_seq().unwrap(), 0);
    assert_eq!(store.outbox_len().unwrap(), 0);
}

#[test]
fn missed_firings_are_recorded_and_sent() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let missed = |wf: &str, n: u64| MissedFirings {
        workflow: wf.into(),
        count: n,
        first_ms: 1,
        last_ms: 2,
        reason: "catchup=latest".into(),
        recorded_ms: 3,
    };
    store
        .commit(events(vec![
            StatusEvent::Missed(missed("wf", 1)),
            StatusEvent::Missed(missed("other", 9)),
            StatusEvent::Missed(missed("wf", 2)),
        ]))
        .unwrap();
    assert_eq!(
        store.missed("wf", 10).unwrap(),
        vec![missed("wf", 2), missed("wf", 1)]
    );
    assert_eq!(store.missed("wf", 1).unwrap(), vec![missed("wf", 2)]);
    assert_eq!(store.outbox_len().unwrap(), 3);
    // Missed events refer to no run: acknowledging them needs no run bookkeeping.
    assert_eq!(store.ack_outbox(3).unwrap(), 3);
    assert_eq!(
        store.missed("wf", 10).unwrap().len(),
        2,
        "history survives the ack"
    );
}

#[test]
fn prune_by_age_skips_unacked_and_unfinished_runs() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    store
        .commit(events(vec![
            StatusEvent::Run(run("old-done", "wf", 1_000, RunState::Succeeded)),
            StatusEvent::Task(task("old-done", "t", TaskState::Succeeded)),
            StatusEvent::Run(run("old-running", "wf", 1_000, RunState::Running)),
            StatusEvent::Run(run("new-done", "wf", 90_000, RunState::Failed)),
        ]))
        .unwrap();
    let policy = Retention {
        max_age: Some(Duration::from_secs(60)),
        max_runs_per_workflow: None,
    };
    // Nothing acknowledged yet: the old run's events are still owed to the hub.
    assert!(store.prune(policy, 100_000).unwrap().is_empty());
    assert!(store.run_exists("old-done").unwrap());

    store.ack_outbox(store.last_seq().unwrap()).unwrap();
    assert_eq!(
        store.prune(policy, 100_000).unwrap(),
        vec!["old-done".to_string()]
    );
    assert!(!store.run_exists("old-done").unwrap());
    assert!(store.tasks("old-done").unwrap().is_empty());
    assert!(
        store.run_exists("old-running").unwrap(),
        "non-terminal runs are never pruned"
    );
    assert!(store.run_exists("new-done").unwrap());
    let ids: Vec<_> = store
        .runs(RunFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(
        ids,
        vec!["new-done", "old-running"],
        "indexes follow the prune"
    );
    assert!(
        store
            .prune(Retention::default(), i64::MAX)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn prune_keeps_newest_n_per_workflow_and_honours_the_outbox() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let mut evs = Vec::new();
    for i in 0..5 {
        evs.push(StatusEvent::Run(run(
            &format!("a{i}"),
            "a",
            100 + i,
            RunState::Succeeded,
        )));
        evs.push(StatusEvent::Run(run(
            &format!("b{i}"),
            "b",
            100 + i,
            RunState::Succeeded,
        )));
    }
    store.commit(events(evs)).unwrap();
    store.ack_outbox(store.last_seq().unwrap()).unwrap();
    // a1 gets a new, unacknowledged event.
    let mut a1 = run("a1", "a", 101, RunState::Succeeded);
    a1.params.push(("note".into(), "re-sent".into()));
    store.commit(events(vec![StatusEvent::Run(a1)])).unwrap();
    let policy = Retention {
        max_age: None,
        max_runs_per_workflow: Some(2),
    };
    let mut pruned = store.prune(policy, 0).unwrap();
    pruned.sort();
    assert_eq!(pruned, vec!["a0", "a2", "b0", "b1", "b2"]);
    let left: BTreeSet<_> = store
        .runs(RunFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(
        left,
        ["a1", "a3", "a4", "b3", "b4"].map(String::from).into()
    );
    store.ack_outbox(store.last_seq().unwrap()).unwrap();
    assert_eq!(store.prune(policy, 0).unwrap(), vec!["a1".to_string()]);
}

#[test]
fn a_bounded_prune_deletes_the_oldest_first_and_no_more() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let evs = (0..20)
        .rev()
        .map(|i| {
            StatusEvent::Run(run(
                &format!("r{i:02}"),
                "wf",
                1_000 + i,
                RunState::Succeeded,
            ))
        })
        .collect();
    store.commit(events(evs)).unwrap();
    store.ack_outbox(store.last_seq().unwrap()).unwrap();
    assert_eq!(store.run_count().unwrap(), 20);
    let policy = Retention {
        max_age: Some(Duration::from_secs(1)),
        max_runs_per_workflow: None,
    };
    // The clock says everything is old; a pass deletes only its share, oldest first.
    let far = 400 * 86_400_000;
    assert_eq!(
        store.prune_at_most(policy, far, 2).unwrap(),
        vec!["r00".to_string(), "r01".to_string()]
    );
    assert_eq!(store.run_count().unwrap(), 18);
    assert!(store.prune_at_most(policy, far, 0).unwrap().is_empty());
    assert_eq!(store.prune(policy, far).unwrap().len(), 18);
}

#[test]
fn opening_a_v1_store_migrates_it() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    {
        let old = Store::open_at(&path, 1).unwrap();
        // Write runs the way a v1 agent did: no `runs_unfinished` index.
        let txn = old.begin_write().unwrap();
        {
            let mut runs = txn.open_table(RUNS).unwrap();
            for r in [
                run("live", "wf", 1, RunState::Running),
                run("done", "wf", 2, RunState::Succeeded),
            ] {
                runs.insert(r.run_id.as_str(), minicbor::to_vec(&r).unwrap().as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        let read = old.begin_read().unwrap();
        assert_eq!(
            read.open_table(META)
                .unwrap()
                .get(META_SCHEMA_VERSION)
                .unwrap()
                .unwrap()
                .value(),
            1
        );
        assert!(
            read.open_table(schema::RUNS_UNFINISHED).is_err(),
            "v1 has no such table"
        );
    }
    let store = Store::open(&path).unwrap();
    let read = store.begin_read().unwrap();
    assert_eq!(
        read.open_table(META)
            .unwrap()
            .get(META_SCHEMA_VERSION)
            .unwrap()
            .unwrap()
            .value(),
        SCHEMA_VERSION
    );
    let live: Vec<_> = store
        .unfinished_runs()
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.run_id)
        .collect();
    assert_eq!(live, vec!["live"]);
}

#[test]
fn a_store_from_a_newer_schema_is_refused_and_left_alone() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    {
        let store = Store::open(&path).unwrap();
        let txn = store.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA_VERSION, SCHEMA_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    match &err {
        StoreError::Db(DbError::SchemaTooNew {
            found, supported, ..
        }) => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(err.to_string().contains("upgrade the agent"), "{err}");
    let db = redb::Database::open(&path).unwrap();
    let read = db.begin_read().unwrap();
    assert_eq!(
        read.open_table(META)
            .unwrap()
            .get(META_SCHEMA_VERSION)
            .unwrap()
            .unwrap()
            .value(),
        SCHEMA_VERSION + 1
    );
}

#[test]
fn corrupt_values_are_typed_errors() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let txn = store.begin_write().unwrap();
    txn.open_table(RUNS)
        .unwrap()
        .insert("bad", &[0xff, 0x00, 0x13][..])
        .unwrap();
    txn.open_table(schema::RUNS_BY_CREATED)
        .unwrap()
        .insert((5, "bad"), ())
        .unwrap();
    txn.commit().unwrap();
    let err = store.run("bad").unwrap_err();
    assert!(
        matches!(err, StoreError::Db(DbError::Decode { table: "runs", .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("table runs at key bad"),
        "the message names the record: {err}"
    );
    assert!(store.runs(RunFilter::default()).is_err());
    assert!(store.run_exists("bad").unwrap());
    // Recovery at start-up skips the damaged run (logged) and still finds the others.
    store
        .commit(events(vec![StatusEvent::Run(run(
            "good",
            "wf",
            7,
            RunState::Running,
        ))]))
        .unwrap();
    let txn = store.begin_write().unwrap();
    txn.open_table(schema::RUNS_UNFINISHED)
        .unwrap()
        .insert("bad", ())
        .unwrap();
    txn.commit().unwrap();
    let unfinished = store.unfinished_runs().unwrap();
    let ids: Vec<_> = unfinished.iter().map(|(r, _)| r.run_id.as_str()).collect();
    assert_eq!(ids, vec!["good"]);
    assert!(store.run("good").unwrap().is_some());
}

#[test]
fn agent_meta_round_trips() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get_meta("agent_id").unwrap(), None);
        store.put_meta("agent_id", b"edge-17").unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.get_meta("agent_id").unwrap(),
        Some(b"edge-17".to_vec())
    );
}

// ---- crash consistency ----------------------------------------------------------------------

const CRASH_CHILD: &str = "OUTPOST_CRASH_CHILD";
const CRASH_PATH: &str = "OUTPOST_CRASH_PATH";
const CRASH_TEST: &str = "store::tests::crash_consistency_under_sigkill";

/// The child's loop: commit batches forever, print each committed seq.
fn crash_child(path: &Path) -> ! {
    let store = Store::open(path).unwrap();
    let mut out = std::io::stdout();
    // Crash recovery, as the daemon does it: the runs the last child left running failed.
    let recovered: Vec<_> = store
        .unfinished_runs()
        .unwrap()
        .into_iter()
        .map(|(mut r, _)| {
            r.state = RunState::Failed;
            StatusEvent::Run(r)
        })
        .collect();
    store.commit(events(recovered)).unwrap();
    let mut previous: Option<RunRecord> = None;
    loop {
        let n = store.last_seq().unwrap() + 1;
        let id = format!("crash-{n}");
        let mut evs = vec![StatusEvent::Run(run(
            &id,
            "crash",
            n as i64,
            RunState::Running,
        ))];
        for t in 0..3 {
            evs.push(StatusEvent::Task(task(
                &id,
                &format!("t{t}"),
                TaskState::Running,
            )));
        }
        // Finish the previous run: the same run id committed again.
        if let Some(mut prev) = previous.take() {
            prev.state = RunState::Succeeded;
            evs.push(StatusEvent::Run(prev));
        }
        previous = Some(run(&id, "crash", n as i64, RunState::Running));
        let info = store
            .commit(Batch {
                events: evs,
                last_fired: vec![("crash".into(), n as i64)],
                ..Batch::default()
            })
            .unwrap();
        if n.is_multiple_of(7) {
            store.ack_outbox(info.last_seq.saturating_sub(3)).unwrap();
        }
        writeln!(out, "SEQ {}", info.last_seq).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn crash_consistency_under_sigkill() {
    if std::env::var_os(CRASH_CHILD).is_some() {
        let path = std::env::var_os(CRASH_PATH).unwrap();
        crash_child(Path::new(&path));
    }
    let dir = tmp();
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut max_reported = 0u64;
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
            .env(CRASH_CHILD, "1")
            .env(CRASH_PATH, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(seq) = line.strip_prefix("SEQ ") {
                    tx.send(seq.parse::<u64>().unwrap()).unwrap();
                }
            }
        });
        // Let it commit a little (at least one batch, most rounds), then kill it mid-flight.
        let first = rx.recv_timeout(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(rng.random_range(0..120)));
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("crash child exited on its own ({status}): {err}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let reported: Vec<u64> = first.into_iter().chain(rx.try_iter()).collect();
        assert!(
            reported.windows(2).all(|w| w[0] < w[1]),
            "round {round}: reported seqs not increasing: {reported:?}"
        );
        if let Some(&last) = reported.last() {
            max_reported = max_reported.max(last);
        }

        let store = Store::open(&path).unwrap();
        let last = store.last_seq().unwrap();
        eprintln!(
            "round {round}: child reported {} commits, store at seq {last}",
            reported.len()
        );
        let acked = store.acked_seq().unwrap();
        assert!(
            last >= max_reported,
            "round {round}: committed seq {max_reported} lost (last {last})"
        );
        assert!(acked <= last);
        assert_eq!(
            outbox_seqs(&store),
            (acked + 1..=last).collect::<Vec<_>>(),
            "round {round}: outbox not contiguous"
        );
        let runs = store.runs(RunFilter::default()).unwrap();
        let ids: BTreeSet<_> = runs.iter().map(|r| r.run_id.clone()).collect();
        assert_eq!(ids.len(), runs.len(), "round {round}: duplicated run id");
        for (r, tasks) in store.unfinished_runs().unwrap() {
            assert!(!r.state.is_terminal());
            assert_eq!(
                tasks.len(),
                3,
                "round {round}: run and tasks committed apart"
            );
        }
        let running = runs.iter().filter(|r| !r.state.is_terminal()).count();
        assert!(running <= 1, "round {round}: {running} runs left running");
        assert_eq!(store.last_fired("crash").unwrap().is_some(), last > 0);
    }
    assert!(max_reported > 0, "the child never committed anything");
}

// ---- measurement ------------------------------------------------------------------------------

#[test]
#[ignore = "measurement only: cargo test -p outpost-agent --lib -- --ignored --nocapture bench_commit"]
fn bench_commit() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("bench.redb")).unwrap();
    for (events_per_commit, rounds) in [(1usize, 50u32), (200, 20)] {
        let start = Instant::now();
        for round in 0..rounds {
            let id = format!("bench-{events_per_commit}-{round}");
            let mut evs = vec![StatusEvent::Run(run(
                &id,
                "bench",
                round as i64,
                RunState::Running,
            ))];
            for t in 1..events_per_commit {
                evs.push(StatusEvent::Task(task(
                    &id,
                    &format!("t{t}"),
                    TaskState::Running,
                )));
            }
            store.commit(events(evs)).unwrap();
        }
        let per = start.elapsed() / rounds;
        println!(
            "2PC commit of {events_per_commit} event(s): {per:?} per commit ({rounds} rounds)"
        );
    }
}

// ---- model-based property test ------------------------------------------------------------------

mod model {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const STATES: [RunState; 6] = [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::Skipped,
    ];

    #[derive(Debug, Clone)]
    enum Op {
        /// (run index, workflow index, created_ms, state index, with a task event)
        Commit(Vec<(u8, u8, i64, usize, bool)>),
        /// Acknowledge this percentage of the unacknowledged entries.
        Ack(u64),
        Prune {
            max_age_ms: Option<u64>,
            max_runs: Option<usize>,
            now_ms: i64,
        },
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec((0u8..8, 0u8..2, 0i64..100, 0usize..6, any::<bool>()), 1..5)
                .prop_map(Op::Commit),
            2 => (0u64..=100).prop_map(Op::Ack),
            2 => (
                prop::option::of(0u64..200),
                prop::option::of(0usize..4),
                0i64..300
            )
                .prop_map(|(max_age_ms, max_runs, now_ms)| Op::Prune {
                    max_age_ms,
                    max_runs,
                    now_ms
                }),
            1 => Just(Op::Reopen),
        ]
    }

    /// The runs `prune` must delete, computed from the model.
    fn expected_prune(
        runs: &BTreeMap<String, RunRecord>,
        referenced: &BTreeSet<String>,
        policy: Retention,
        now_ms: i64,
    ) -> BTreeSet<String> {
        let cutoff = policy
            .max_age
            .map(|a| now_ms - i64::try_from(a.as_millis()).unwrap());
        let mut by_wf: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
        for r in runs.values() {
            by_wf.entry(&r.workflow).or_default().push(r);
        }
        let mut out = BTreeSet::new();
        for list in by_wf.values_mut() {
            list.sort_by(|a, b| (b.created_ms, &b.run_id).cmp(&(a.created_ms, &a.run_id)));
            for (rank, r) in list.iter().enumerate() {
                let over = policy.max_runs_per_workflow.is_some_and(|n| rank >= n);
                let old = cutoff.is_some_and(|c| r.ended_ms.unwrap_or(r.created_ms) < c);
                if r.state.is_terminal() && !referenced.contains(&r.run_id) && (over || old) {
                    out.insert(r.run_id.clone());
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn store_matches_model(ops in prop::collection::vec(op(), 1..30)) {
            let dir = tmp();
            let path = dir.path().join("m.redb");
            let mut store = Store::open(&path).unwrap();
            let mut model: BTreeMap<String, RunRecord> = BTreeMap::new();
            let mut tasks: BTreeMap<String, usize> = BTreeMap::new();
            let mut outbox: BTreeMap<u64, Option<String>> = BTreeMap::new();
            let mut last = 0u64;
            let mut acked = 0u64;
            for op in ops {
                match op {
                    Op::Commit(items) => {
                        let mut evs = Vec::new();
                        for (ri, wi, created, si, with_task) in items {
                            let id = format!("r{ri}");
                            let wf = ["a", "b"][wi as usize];
                            let r = run(&id, wf, created, STATES[si]);
                            evs.push(StatusEvent::Run(r.clone()));
                            model.insert(id.clone(), r);
                            if with_task {
                                let task_id = format!("t{}", tasks.get(&id).copied().unwrap_or(0));
                                evs.push(StatusEvent::Task(task(&id, &task_id, TaskState::Running)));
                                *tasks.entry(id.clone()).or_default() += 1;
                            }
                        }
                        for ev in &evs {
                            last += 1;
                            let run_ref = match ev {
                                StatusEvent::Run(r) => r.run_id.clone(),
                                StatusEvent::Task(t) => t.run_id.clone(),
                                StatusEvent::Missed(_) | StatusEvent::Reverted(_) | StatusEvent::Deadline(_) => unreachable!(),
                            };
                            outbox.insert(last, Some(run_ref));
                        }
                        let info = store.commit(events(evs)).unwrap();
                        prop_assert_eq!(info.last_seq, last);
                    }
                    Op::Ack(percent) => {
                        let up_to = acked + (last - acked) * percent / 100;
                        let removed = store.ack_outbox(up_to).unwrap();
                        let expected = outbox.range(..=up_to).count() as u64;
                        prop_assert_eq!(removed, expected);
                        outbox.retain(|seq, _| *seq > up_to);
                        acked = acked.max(up_to);
                    }
                    Op::Prune { max_age_ms, max_runs, now_ms } => {
                        let policy = Retention {
                            max_age: max_age_ms.map(Duration::from_millis),
                            max_runs_per_workflow: max_runs,
                        };
                        let referenced: BTreeSet<String> =
                            outbox.values().flatten().cloned().collect();
                        let expected = expected_prune(&model, &referenced, policy, now_ms);
                        let pruned: BTreeSet<String> =
                            store.prune(policy, now_ms).unwrap().into_iter().collect();
                        prop_assert_eq!(&pruned, &expected);
                        for id in &pruned {
                            prop_assert!(!referenced.contains(id), "pruned unacked run {}", id);
                            model.remove(id);
                            tasks.remove(id);
                        }
                    }
                    Op::Reopen => {
                        drop(store);
                        store = Store::open(&path).unwrap();
                    }
                }
                // Invariants after every step.
                prop_assert_eq!(store.last_seq().unwrap(), last);
                prop_assert_eq!(store.acked_seq().unwrap(), acked);
                prop_assert_eq!(outbox_seqs(&store), outbox.keys().copied().collect::<Vec<_>>());
                let listed: BTreeMap<String, RunRecord> = store
                    .runs(RunFilter::default())
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.run_id.clone(), r))
                    .collect();
                prop_assert_eq!(&listed, &model);
                let unfinished: BTreeSet<String> = store
                    .unfinished_runs()
                    .unwrap()
                    .into_iter()
                    .map(|(r, _)| r.run_id)
                    .collect();
                let expected_unfinished: BTreeSet<String> = model
                    .values()
                    .filter(|r| !r.state.is_terminal())
                    .map(|r| r.run_id.clone())
                    .collect();
                prop_assert_eq!(unfinished, expected_unfinished);
                for (id, n) in &tasks {
                    prop_assert_eq!(store.tasks(id).unwrap().len(), *n);
                }
            }
        }
    }
}

#[test]
fn a_missing_or_empty_store_where_one_was_created_is_refused() {
    let dir = tmp();
    let path = dir.path().join("agent.redb");
    {
        let store = Store::open(&path).unwrap();
        store.put_meta("agent_id", b"edge-17").unwrap();
    }
    let marker = marker_path(&path);
    assert_eq!(marker, dir.path().join("agent.redb.created"));
    assert!(marker.is_file());
    // Emptied (a bad restore, a full disk, a careless `> agent.redb`): refused, not recreated.
    std::fs::File::create(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Missing {
                found: "empty (0 bytes)",
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("agent.redb.created") && msg.contains("delete"),
        "{msg}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left untouched");
    // Missing: the same.
    std::fs::remove_file(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Missing {
                found: "missing",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!path.exists(), "nothing created");
    // Starting over deliberately: delete the marker.
    std::fs::remove_file(&marker).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get_meta("agent_id").unwrap(), None);
    assert!(marker.is_file(), "the new store has its marker");
}

#[test]
fn a_damaged_file_is_refused_or_repaired_on_open_never_trusted() {
    let dir = tmp();
    let path = dir.path().join("agent.redb");
    {
        let store = Store::open(&path).unwrap();
        store.put_meta("agent_id", b"edge-17").unwrap();
    }
    // Flip bytes in the middle of the file (past the header).
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 2..n / 2 + 512] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    match Store::open(&path) {
        // Repaired from the last good commit: what it holds is what was committed.
        Ok(store) => {
            let v = store.get_meta("agent_id");
            assert!(
                matches!(&v, Ok(Some(b)) if b == b"edge-17") || v.is_err(),
                "{v:?}"
            );
        }
        Err(e) => assert!(matches!(e, StoreError::Db(DbError::Redb(_))), "{e:?}"),
    }
}

#[test]
fn a_store_whose_creation_never_completed_is_kept_aside_and_created_again() {
    let dir = tmp();
    let path = dir.path().join("agent.redb");
    // What a power loss during the very first open can leave: a torn header, no marker.
    std::fs::write(&path, b"redb\x1a\x0a\xa9\x0d\x0a torn").unwrap();
    let store = Store::open(&path).unwrap();
    store.put_meta("k", b"v").unwrap();
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("agent.redb.unreadable."))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    drop(store);
    // With the marker (the store was created once), an unreadable file is refused instead.
    std::fs::write(&path, b"redb\x1a\x0a\xa9\x0d\x0a torn").unwrap();
    assert!(Store::open(&path).is_err());
    assert!(
        std::fs::read(&path).unwrap().ends_with(b"torn"),
        "left as found"
    );
}

#[test]
fn requeue_held_sends_every_held_record_again_above_the_last_seq() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let missed = |n: u64| MissedFirings {
        workflow: "wf".into(),
        count: n,
        first_ms: 1,
        last_ms: 2,
        reason: "catchup=latest".into(),
        recorded_ms: 3,
    };
    store
        .commit(events(vec![
            StatusEvent::Missed(missed(1)),
            StatusEvent::Run(run("r1", "wf", 10, RunState::Running)),
            StatusEvent::Task(task("r1", "t", TaskState::Succeeded)),
            StatusEvent::Run(run("r1", "wf", 10, RunState::Succeeded)),
            StatusEvent::Missed(missed(2)),
            StatusEvent::Run(run("r2", "wf", 20, RunState::Running)),
        ]))
        .unwrap();
    // The hub acknowledged 1..=5, then was restored to a copy holding only seq 1.
    store.ack_outbox(5).unwrap();
    let info = store.requeue_held(1, 5).unwrap();
    assert_eq!(
        info.last_seq,
        6 + 4,
        "two runs, one task, one missed (seq 5)"
    );
    assert_eq!(store.last_seq().unwrap(), info.last_seq);
    let again: Vec<StatusEvent> = store
        .outbox_after(5, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(again.contains(&StatusEvent::Run(run("r1", "wf", 10, RunState::Succeeded))));
    assert!(again.contains(&StatusEvent::Run(run("r2", "wf", 20, RunState::Running))));
    assert!(again.contains(&StatusEvent::Task(task("r1", "t", TaskState::Succeeded))));
    assert!(again.contains(&StatusEvent::Missed(missed(2))));
    assert!(
        !again.contains(&StatusEvent::Missed(missed(1))),
        "seq 1 is still at the hub"
    );
    // Records are unchanged.
    assert_eq!(store.run("r1").unwrap().unwrap().state, RunState::Succeeded);
    // The same lost range again (a reconnect before the hub committed any of it): nothing more.
    assert_eq!(store.requeue_held(1, 5).unwrap().last_seq, info.last_seq);
    assert_eq!(store.last_seq().unwrap(), info.last_seq);
    // A later restore of the same backup (the agent acknowledged more since): again.
    store.ack_outbox(info.last_seq).unwrap();
    assert!(store.requeue_held(1, info.last_seq).unwrap().last_seq > info.last_seq);
}
