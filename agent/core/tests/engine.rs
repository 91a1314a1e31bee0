#![allow(clippy::unwrap_used)] // tests may unwrap
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Sim, spawns_of};
use outpost_agent_core::engine::{Action, Engine, EngineConfig, KillReason};
use outpost_agent_core::testutil::{BASE_WALL_MS, now_ms, run_record, workflow};
use outpost_common::model::{Backoff, Overlap, TriggerRule, Workflow};
use outpost_common::record::{
    AttemptOutcome, LimitsMode, RunKind, RunState, StatusEvent, TaskState,
};

fn engine(max_running: usize, resources: &[(&str, u32)]) -> Engine {
    Engine::new(EngineConfig {
        max_running,
        resources: resources.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        seed: 7,
        dispatch_ahead: 0,
    })
}

fn start(sim: &mut Sim, wf: &Arc<Workflow>, scheduled_ms: i64) -> String {
    let run = run_record(wf, BASE_WALL_MS + scheduled_ms, RunKind::Scheduled);
    let id = run.run_id.clone();
    sim.add(run, wf.clone());
    id
}

/// a -> (b, c) -> d(rule); b fails first while c still runs, then c succeeds.
fn diamond(rule: TriggerRule) -> (TaskState, RunState, bool) {
    let wf = workflow("diamond")
        .task("a", &[])
        .task("b", &["a"])
        .task("c", &["a"])
        .task("d", &["b", "c"])
        .rule(rule)
        .build();
    let mut sim = Sim::new(engine(4, &[]));
    let id = start(&mut sim, &wf, 0);
    assert_eq!(sim.spawned(&id), [0]);
    sim.exit(&id, 0, 0);
    assert_eq!(sim.spawned(&id), [0, 1, 2]);
    sim.exit(&id, 1, 3);
    let early = sim.spawned(&id).contains(&3);
    sim.exit(&id, 2, 0);
    if sim.state(&id, 3) == TaskState::Running {
        sim.exit(&id, 3, 0);
    }
    let d = sim.state(&id, 3);
    let r = sim.run_state(&id);
    assert_eq!(sim.finished, vec![(id.clone(), r)]);
    (d, r, early)
}

#[test]
fn diamond_under_each_trigger_rule() {
    use TriggerRule::*;
    assert_eq!(
        diamond(AllSuccess),
        (TaskState::UpstreamFailed, RunState::Failed, false)
    );
    assert_eq!(
        diamond(AllDone),
        (TaskState::Succeeded, RunState::Succeeded, false)
    );
    assert_eq!(
        diamond(AllFailed),
        (TaskState::Skipped, RunState::Succeeded, false)
    );
    assert_eq!(
        diamond(OneSuccess),
        (TaskState::Succeeded, RunState::Succeeded, false)
    );
    // one_failed fires early: d starts as soon as b failed, while c still runs.
    assert_eq!(
        diamond(OneFailed),
        (TaskState::Succeeded, RunState::Succeeded, true)
    );
    // none_failed can no longer be met once b failed: decided early, without running d.
    assert_eq!(
        diamond(NoneFailed),
        (TaskState::UpstreamFailed, RunState::Failed, false)
    );
}

#[test]
fn upstream_failure_propagates_and_leaf_rule_decides_the_run() {
    // a fails; b (all_success) -> UpstreamFailed; c (all_success on b) -> UpstreamFailed;
    // e (all_done on c) runs and succeeds; e is the only leaf -> run Succeeded.
    let wf = workflow("chain")
        .task("a", &[])
        .task("b", &["a"])
        .task("c", &["b"])
        .task("e", &["c"])
        .rule(TriggerRule::AllDone)
        .build();
    let mut sim = Sim::new(engine(4, &[]));
    let id = start(&mut sim, &wf, 0);
    sim.exit(&id, 0, 1);
    assert_eq!(sim.state(&id, 1), TaskState::UpstreamFailed);
    assert_eq!(sim.state(&id, 2), TaskState::UpstreamFailed);
    assert_eq!(sim.spawned(&id), [0, 3]);
    sim.exit(&id, 3, 0);
    assert_eq!(sim.run_state(&id), RunState::Succeeded);
}

#[test]
fn one_success_becomes_ready_early() {
    let wf = workflow("os")
        .task("a", &[])
        .task("b", &[])
        .task("j", &["a", "b"])
        .rule(TriggerRule::OneSuccess)
        .build();
    let mut sim = Sim::new(engine(4, &[]));
    let id = start(&mut sim, &wf, 0);
    let acts = sim.exit(&id, 0, 0);
    assert_eq!(spawns_of(&acts), [(2, 1)], "j starts while b still runs");
}

#[test]
fn fixed_retry_delays_exact() {
    let wf = workflow("r")
        .task("a", &[])
        .retries(2, Duration::from_secs(10))
        .build();
    let mut sim = Sim::new(engine(1, &[]));
    let id = start(&mut sim, &wf, 0);
    for attempt in 1..=3u32 {
        assert_eq!(sim.attempt_of(&id, 0), attempt);
        sim.advance(1000);
        let fail_at = sim.t;
        sim.exit(&id, 0, 2);
        if attempt == 3 {
            break;
        }
        assert_eq!(sim.state(&id, 0), TaskState::UpForRetry);
        let (_, tasks) = sim.engine.run_snapshot(&id).unwrap();
        assert_eq!(
            tasks[0].retry_at_ms,
            Some(BASE_WALL_MS + fail_at as i64 + 10_000)
        );
        assert_eq!(
            sim.engine.poll_timeout(),
            Some(Duration::from_millis(fail_at + 10_000))
        );
        sim.advance(9_999);
        assert!(spawns_of(&sim.tick()).is_empty());
        sim.advance(1);
        assert_eq!(spawns_of(&sim.tick()), [(0, attempt + 1)]);
    }
    assert_eq!(sim.state(&id, 0), TaskState::Failed);
    assert_eq!(sim.attempt_of(&id, 0), 3);
    assert_eq!(sim.run_state(&id), RunState::Failed);
    assert_eq!(sim.engine.poll_timeout(), None);
}

#[test]
fn exponential_retry_delays_exact_and_capped() {
    let wf = workflow("r")
        .task("a", &[])
        .retries(4, Duration::from_secs(10))
        .backoff(Backoff::Exponential, Some(Duration::from_secs(35)), 0.0)
        .build();
    let mut sim = Sim::new(engine(1, &[]));
    let id = start(&mut sim, &wf, 0);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let fail_at = sim.t;
        sim.exit(&id, 0, 1);
        let (_, tasks) = sim.engine.run_snapshot(&id).unwrap();
        let at = tasks[0].retry_at_ms.unwrap();
        delays.push((at - BASE_WALL_MS - fail_at as i64) / 1000);
        sim.t = (at - BASE_WALL_MS) as u64;
        sim.tick();
    }
    assert_eq!(delays, [10, 20, 35, 35]);
    sim.exit(&id, 0, 1);
    assert_eq!(sim.attempt_of(&id, 0), 5);
    assert_eq!(sim.state(&id, 0), TaskState::Failed);
}

#[test]
fn jittered_retry_within_bounds() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..50 {
        let wf = workflow("j")
            .task("a", &[])
            .retries(1, Duration::from_secs(100))
            .backoff(Backoff::Fixed, None, 0.2)
            .build();
        let mut sim = Sim::new(Engine::new(EngineConfig {
            max_running: 1,
            resources: BTreeMap::new(),
            seed,
            dispatch_ahead: 0,
        }));
        let id = start(&mut sim, &wf, 0);
        sim.exit(&id, 0, 1);
        let at = sim.engine.run_snapshot(&id).unwrap().1[0]
            .retry_at_ms
            .unwrap()
            - BASE_WALL_MS;
        assert!((80_000..=120_000).contains(&at), "{at}");
        seen.insert(at);
    }
    assert!(seen.len() > 10);
}

#[test]
fn timeout_kills_and_records_timed_out() {
    let wf = workflow("t")
        .task("a", &[])
        .timeout(Duration::from_secs(5))
        .build();
    let mut sim = Sim::new(engine(1, &[]));
    sim.advance(100);
    let id = start(&mut sim, &wf, 0);
    let now = sim.now();
    sim.engine
        .handle_started(
            &id,
            0,
            1,
            Some(42),
            LimitsMode::Rlimit,
            Some("/log".into()),
            now,
        )
        .unwrap();
    sim.drain();
    assert_eq!(sim.engine.poll_timeout(), Some(Duration::from_millis(5100)));
    sim.advance(4999);
    sim.tick();
    assert!(sim.kills.is_empty());
    sim.advance(1);
    sim.tick();
    assert_eq!(sim.kills, vec![(id.clone(), 0, 1, KillReason::Timeout)]);
    assert_eq!(sim.engine.poll_timeout(), None, "no repeated kill deadline");
    sim.tick();
    assert_eq!(sim.kills.len(), 1);
    sim.exit_with(&id, 0, AttemptOutcome::Signaled(9), vec![]);
    let (_, tasks) = sim.engine.run_snapshot(&id).unwrap();
    let a = &tasks[0].attempts[0];
    assert_eq!(a.outcome, Some(AttemptOutcome::TimedOut));
    assert_eq!(
        (a.pid, a.limits, a.log_path.as_deref()),
        (Some(42), LimitsMode::Rlimit, Some("/log"))
    );
    assert_eq!(tasks[0].state, TaskState::Failed);
}

#[test]
fn cancel_kills_running_and_cancels_the_rest() {
    let wf = workflow("c")
        .task("a", &[])
        .task("b", &[])
        .task("c", &["a", "b"])
        .task("r", &[])
        .retries(3, Duration::from_secs(60))
        .build();
    let mut sim = Sim::new(engine(8, &[]));
    let id = start(&mut sim, &wf, 0);
    sim.exit(&id, 3, 1); // r up for retry
    assert_eq!(sim.state(&id, 3), TaskState::UpForRetry);
    let now = sim.now();
    sim.engine.handle_cancel(&id, now).unwrap();
    sim.drain();
    let mut kills: Vec<_> = sim.kills.iter().map(|k| (k.1, k.3)).collect();
    kills.sort_by_key(|k| k.0);
    assert_eq!(kills, [(0, KillReason::Cancel), (1, KillReason::Cancel)]);
    assert_eq!(sim.state(&id, 2), TaskState::Cancelled);
    assert_eq!(sim.state(&id, 3), TaskState::Cancelled);
    assert!(
        sim.finished.is_empty(),
        "run ends only when its attempts exited"
    );
    sim.exit_with(&id, 0, AttemptOutcome::Signaled(15), vec![]);
    assert!(sim.finished.is_empty());
    sim.exit(&id, 1, 143);
    assert_eq!(sim.finished, vec![(id.clone(), RunState::Cancelled)]);
    let (_, tasks) = sim.engine.run_snapshot(&id).unwrap();
    assert_eq!(
        tasks[0].attempts[0].outcome,
        Some(AttemptOutcome::Cancelled)
    );
    assert_eq!(tasks[1].state, TaskState::Cancelled);
    assert_eq!(sim.store_runs[&id].state, RunState::Cancelled);
}

fn two_runs(overlap: Overlap, max_active: u32) -> (Sim, Arc<Workflow>, String, String) {
    let wf = workflow("o")
        .task("a", &[])
        .overlap(overlap)
        .max_active_runs(max_active)
        .build();
    let mut sim = Sim::new(engine(8, &[]));
    let r1 = start(&mut sim, &wf, 0);
    let r2 = start(&mut sim, &wf, 60_000);
    (sim, wf, r1, r2)
}

#[test]
fn overlap_skip() {
    let (mut sim, wf, r1, r2) = two_runs(Overlap::Skip, 1);
    assert_eq!(sim.store_runs[&r2].state, RunState::Skipped);
    assert!(sim.finished.contains(&(r2.clone(), RunState::Skipped)));
    // The skipped run says why (the active run), durably, for `run show`.
    assert_eq!(
        sim.store_runs[&r2].skip_reason,
        Some(format!("overlap=skip: run {r1} was active"))
    );
    assert_eq!(sim.store_runs[&r1].skip_reason, None);
    assert_eq!(sim.spawned(&r2), Vec::<usize>::new());
    sim.exit(&r1, 0, 0);
    let r3 = start(&mut sim, &wf, 120_000);
    assert_eq!(
        sim.run_state(&r3),
        RunState::Running,
        "no active run any more"
    );
}

#[test]
fn overlap_queue() {
    let (mut sim, wf, r1, r2) = two_runs(Overlap::Queue, 1);
    assert_eq!(sim.store_runs[&r2].state, RunState::Queued);
    let r3 = start(&mut sim, &wf, 30_000); // earlier scheduled time: runs before r2
    assert_eq!(sim.store_runs[&r3].state, RunState::Queued);
    sim.exit(&r1, 0, 0);
    assert_eq!(sim.run_state(&r3), RunState::Running);
    assert_eq!(sim.run_state(&r2), RunState::Queued);
    sim.exit(&r3, 0, 0);
    assert_eq!(sim.run_state(&r2), RunState::Running);
    sim.exit(&r2, 0, 0);
    let order: Vec<_> = sim.finished.iter().map(|f| f.0.clone()).collect();
    assert_eq!(order, [r1, r3, r2]);
}

#[test]
fn overlap_allow_up_to_max_active() {
    let (mut sim, wf, r1, r2) = two_runs(Overlap::Allow, 2);
    assert_eq!(sim.run_state(&r1), RunState::Running);
    assert_eq!(sim.run_state(&r2), RunState::Running);
    let r3 = start(&mut sim, &wf, 120_000);
    assert_eq!(sim.run_state(&r3), RunState::Queued);
    sim.exit(&r2, 0, 0);
    assert_eq!(sim.run_state(&r3), RunState::Running);
}

#[test]
fn overlap_cancel_running() {
    let (mut sim, _wf, r1, r2) = two_runs(Overlap::CancelRunning, 1);
    assert_eq!(sim.kills, vec![(r1.clone(), 0, 1, KillReason::Cancel)]);
    assert_eq!(sim.run_state(&r2), RunState::Running);
    assert_eq!(sim.spawned(&r2), [0]);
    sim.exit_with(&r1, 0, AttemptOutcome::Signaled(15), vec![]);
    assert_eq!(sim.finished, vec![(r1, RunState::Cancelled)]);
}

#[test]
fn priority_order_with_one_slot() {
    let wf = workflow("p")
        .task("low", &[])
        .priority(1)
        .task("high", &[])
        .priority(5)
        .task("mid", &[])
        .priority(3)
        .overlap(Overlap::Allow)
        .max_active_runs(2)
        .build();
    let mut sim = Sim::new(engine(1, &[]));
    let r1 = start(&mut sim, &wf, 0);
    let _r2 = start(&mut sim, &wf, 1000);
    // r1's three tasks became ready together: "high" wins the single slot before r2 exists.
    let mut order = Vec::new();
    while let Some((run, task, _)) = sim.spawns.get(order.len()).cloned() {
        order.push((if run == r1 { 1 } else { 2 }, wf.tasks[task].id.clone()));
        sim.exit(&run, task, 0);
    }
    let expect: Vec<(i32, String)> = [
        (1, "high"),
        (2, "high"),
        (1, "mid"),
        (2, "mid"),
        (1, "low"),
        (2, "low"),
    ]
    .iter()
    .map(|(r, t)| (*r, t.to_string()))
    .collect();
    // r1's "high" was spawned before r2 existed; afterwards priority, then scheduled time.
    assert_eq!(order, expect);
}

#[test]
fn resources_never_exceeded_and_no_head_of_line_blocking() {
    let wf = workflow("res")
        .task("big", &[])
        .resource("gpu", 2)
        .priority(10)
        .task("g1", &[])
        .resource("gpu", 1)
        .priority(5)
        .task("g2", &[])
        .resource("gpu", 1)
        .priority(5)
        .task("cpu", &[])
        .priority(0)
        .task("missing", &[])
        .resource("tpu", 1)
        .task("toomuch", &[])
        .resource("gpu", 3)
        .build();
    let mut sim = Sim::new(engine(4, &[("gpu", 2)]));
    let id = start(&mut sim, &wf, 0);
    // big takes both gpus; g1/g2 wait; cpu runs (not blocked behind them).
    assert_eq!(sim.spawned(&id), [0, 3]);
    assert_eq!(sim.engine.resources_in_use()["gpu"], 2);
    let (_, tasks) = sim.engine.run_snapshot(&id).unwrap();
    assert_eq!(tasks[4].state, TaskState::Failed);
    assert!(
        tasks[4].attempts[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("`tpu` is not configured")
    );
    assert_eq!(tasks[5].state, TaskState::Failed);
    assert!(
        tasks[5].attempts[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("capacity is 2")
    );
    sim.exit(&id, 0, 0);
    assert_eq!(sim.spawned(&id), [0, 3, 1, 2]);
    assert_eq!(sim.engine.resources_in_use()["gpu"], 2);
    sim.exit(&id, 1, 0);
    sim.exit(&id, 2, 0);
    sim.exit(&id, 3, 0);
    assert_eq!(sim.engine.resources_in_use()["gpu"], 0);
    assert_eq!(
        sim.run_state(&id),
        RunState::Failed,
        "missing/toomuch are failed leaves"
    );
}

#[test]
fn fan_out_commits_are_batched() {
    let mut b = workflow("fan").task("root", &[]);
    for i in 0..200 {
        b = b.task(&format!("t{i}"), &["root"]);
    }
    let wf = b.build();
    let mut sim = Sim::new(engine(500, &[]));
    let id = start(&mut sim, &wf, 0);
    let before = sim.commits;
    let acts = sim.exit(&id, 0, 0);
    assert_eq!(sim.commits - before, 1);
    assert_eq!(spawns_of(&acts).len(), 200);
    assert!(matches!(acts[0], Action::Commit(ref e) if e.len() == 201));
    // Two exits handled before polling coalesce into one commit.
    let now = sim.now();
    sim.engine
        .handle_exited(&id, 1, 1, AttemptOutcome::Exited(0), None, vec![], now)
        .unwrap();
    sim.engine
        .handle_exited(&id, 2, 1, AttemptOutcome::Exited(0), None, vec![], now)
        .unwrap();
    let before = sim.commits;
    sim.drain();
    assert_eq!(sim.commits - before, 1);
}

#[test]
fn stale_and_unknown_reports_are_errors() {
    let wf = workflow("s").task("a", &[]).build();
    let mut sim = Sim::new(engine(1, &[]));
    let id = start(&mut sim, &wf, 0);
    let now = sim.now();
    assert!(
        sim.engine
            .handle_exited(&id, 0, 2, AttemptOutcome::Exited(0), None, vec![], now)
            .is_err()
    );
    assert!(
        sim.engine
            .handle_exited(&id, 9, 1, AttemptOutcome::Exited(0), None, vec![], now)
            .is_err()
    );
    assert!(
        sim.engine
            .handle_exited("nope", 0, 1, AttemptOutcome::Exited(0), None, vec![], now)
            .is_err()
    );
    assert!(sim.engine.handle_cancel("nope", now).is_err());
    let dup = run_record(&wf, BASE_WALL_MS, RunKind::Scheduled);
    assert!(sim.engine.add_run(dup, wf.clone(), now).is_err());
    sim.exit(&id, 0, 0);
    assert!(
        sim.engine
            .handle_exited(&id, 0, 1, AttemptOutcome::Exited(0), None, vec![], now)
            .is_err()
    );
}

#[test]
fn upstream_outputs_are_transitive() {
    let wf = workflow("out")
        .task("a", &[])
        .task("x", &[])
        .task("b", &["a"])
        .task("c", &["b"])
        .build();
    let mut sim = Sim::new(engine(4, &[]));
    let id = start(&mut sim, &wf, 0);
    sim.exit_with(
        &id,
        0,
        AttemptOutcome::Exited(0),
        vec![("k".into(), "1".into())],
    );
    sim.exit_with(
        &id,
        1,
        AttemptOutcome::Exited(0),
        vec![("x".into(), "no".into())],
    );
    sim.exit_with(
        &id,
        2,
        AttemptOutcome::Exited(0),
        vec![("k".into(), "2".into())],
    );
    let got = sim.engine.upstream_outputs(&id, 3);
    assert_eq!(
        got,
        vec![
            ("a".into(), "k".into(), "1".into()),
            ("b".into(), "k".into(), "2".into())
        ]
    );
    assert!(sim.engine.upstream_outputs(&id, 0).is_empty());
}

#[test]
fn draining_starts_nothing_new() {
    let wf = workflow("d").task("a", &[]).task("b", &["a"]).build();
    let mut sim = Sim::new(engine(4, &[]));
    let id = start(&mut sim, &wf, 0);
    sim.engine.stop_starting();
    sim.exit(&id, 0, 0);
    assert_eq!(sim.spawned(&id), [0]);
    assert_eq!(sim.state(&id, 1), TaskState::Ready);
}

#[test]
fn recovery_of_interrupted_attempts() {
    let wf = workflow("rec")
        .task("idem", &[])
        .idempotent(true)
        .retries(1, Duration::from_secs(5))
        .task("once", &[])
        .task("after", &["idem"])
        .build();
    let mut sim = Sim::new(engine(4, &[]));
    let id = start(&mut sim, &wf, 0);
    assert_eq!(sim.spawned(&id), [0, 1]);
    // Crash: rebuild from the store.
    let run = sim.store_runs[&id].clone();
    let tasks: Vec<_> = sim
        .store_tasks
        .values()
        .filter(|t| t.run_id == id)
        .cloned()
        .collect();
    let mut sim2 = Sim::new(engine(4, &[]));
    sim2.t = 50_000;
    sim2.wfs.insert(id.clone(), wf.clone());
    let now = sim2.now();
    sim2.engine
        .restore_run(run, tasks, wf.clone(), now)
        .unwrap();
    assert_eq!(sim2.engine.poll_timeout(), Some(Duration::ZERO));
    sim2.drain();
    let (_, t) = sim2.engine.run_snapshot(&id).unwrap();
    assert_eq!(t[0].attempts[0].outcome, Some(AttemptOutcome::Interrupted));
    assert_eq!(t[1].state, TaskState::Failed);
    assert_eq!(t[1].attempts[0].outcome, Some(AttemptOutcome::Interrupted));
    assert_eq!(
        t[1].attempts[0].reason.as_deref(),
        Some("interrupted by agent restart; task not idempotent")
    );
    assert_eq!(
        sim2.store_tasks[&(id.clone(), "once".to_string())].state,
        TaskState::Failed
    );
    sim2.tick();
    assert_eq!(sim2.spawns, vec![(id.clone(), 0, 2)]);
    sim2.exit(&id, 0, 0);
    assert_eq!(sim2.spawned(&id), [0, 2]);
    sim2.exit(&id, 2, 0);
    // "once" is a failed leaf.
    assert_eq!(sim2.finished, vec![(id, RunState::Failed)]);
}

#[test]
fn restored_queued_run_stays_queued_behind_restored_running_run() {
    let wf = workflow("q")
        .task("a", &[])
        .idempotent(true)
        .retries(1, Duration::from_secs(1))
        .overlap(Overlap::Queue)
        .build();
    let mut sim = Sim::new(engine(4, &[]));
    let r1 = start(&mut sim, &wf, 0);
    let r2 = start(&mut sim, &wf, 1000);
    let snap = |sim: &Sim, id: &str| {
        let tasks: Vec<_> = sim
            .store_tasks
            .values()
            .filter(|t| t.run_id == id)
            .cloned()
            .collect();
        (sim.store_runs[id].clone(), tasks)
    };
    let (q, qt) = snap(&sim, &r2);
    let (r, rt) = snap(&sim, &r1);
    let mut sim2 = Sim::new(engine(4, &[]));
    sim2.wfs = sim.wfs.clone();
    let now = now_ms(10);
    // Queued first, running second: admission waits until everything is restored.
    sim2.engine.restore_run(q, qt, wf.clone(), now).unwrap();
    sim2.engine.restore_run(r, rt, wf.clone(), now).unwrap();
    assert_eq!(sim2.engine.poll_timeout(), Some(Duration::ZERO));
    sim2.tick();
    assert_eq!(sim2.run_state(&r2), RunState::Queued);
    assert_eq!(
        sim2.spawns,
        vec![(r1.clone(), 0, 2)],
        "idempotent task re-run"
    );
    sim2.exit(&r1, 0, 0);
    assert_eq!(sim2.finished, vec![(r1, RunState::Succeeded)]);
    assert_eq!(sim2.run_state(&r2), RunState::Running);
    assert!(
        matches!(sim2.log[0], Action::Commit(ref e) if e.iter().any(|e| matches!(e, StatusEvent::Task(t) if t.attempts[0].outcome == Some(AttemptOutcome::Interrupted))))
    );
}

#[test]
fn runs_that_never_started_have_no_task_records() {
    let (mut sim, wf, r1, r2) = two_runs(Overlap::Queue, 1);
    let now = sim.now();
    sim.engine.handle_cancel(&r2, now).unwrap();
    sim.drain();
    assert_eq!(sim.finished, vec![(r2.clone(), RunState::Cancelled)]);
    assert_eq!(sim.engine.run_snapshot(&r2).unwrap().1, vec![]);
    assert!(!sim.store_tasks.keys().any(|k| k.0 == r2));
    assert_eq!(sim.run_state(&r1), RunState::Running);

    let skip = workflow("sk").task("a", &[]).overlap(Overlap::Skip).build();
    let s1 = start(&mut sim, &skip, 0);
    let s2 = start(&mut sim, &skip, 1);
    assert_eq!(sim.run_state(&s1), RunState::Running);
    assert_eq!(sim.engine.task_states(&s2), Some(vec![]));
    assert!(!sim.store_tasks.keys().any(|k| k.0 == s2));
    let _ = wf;
}

// ---- dispatch ahead -------------------------------------------------------------------------

fn dispatching(max_running: usize, ahead: usize) -> Engine {
    Engine::new(EngineConfig {
        max_running,
        resources: BTreeMap::new(),
        seed: 7,
        dispatch_ahead: ahead,
    })
}

/// root -> t1..t5 -> sink
fn fan5() -> Arc<Workflow> {
    let mut b = workflow("fan").task("root", &[]);
    for i in 1..=5 {
        b = b.task(&format!("t{i}"), &["root"]);
    }
    b.task("sink", &["t1", "t2", "t3", "t4", "t5"]).build()
}

#[test]
fn dispatched_attempts_start_before_the_commit_of_the_exit_that_freed_the_slot() {
    let wf = fan5();
    let mut sim = Sim::new(dispatching(2, 2));
    let id = start(&mut sim, &wf, 0);
    let acts = sim.exit(&id, 0, 0);
    // t1, t2 take the slots; t3, t4 are dispatched: committed Running with no process, and the
    // burst ends with a Flush so that the driver cannot hold the commit back.
    assert_eq!(spawns_of(&acts), [(1, 1), (2, 1)]);
    assert!(acts.contains(&Action::Flush));
    for t in [3, 4] {
        assert_eq!(sim.state(&id, t), TaskState::Running);
        let rec = &sim.store_tasks[&(id.clone(), format!("t{t}"))];
        assert!(rec.attempts[0].dispatched_ms.is_some() && rec.attempts[0].outcome.is_none());
    }
    assert_eq!(sim.state(&id, 5), TaskState::Ready);
    assert_eq!(sim.engine.running_count(), 2);

    sim.advance(10);
    let acts = sim.exit(&id, 1, 0);
    // The dispatched t3 starts first, before the commit of t1's exit.
    assert_eq!(
        acts[0],
        Action::Start {
            run_id: id.clone(),
            task: 3,
            attempt: 1
        }
    );
    let Action::Commit(events) = &acts[1] else {
        panic!("expected a commit after the start: {acts:?}")
    };
    let t3 = events
        .iter()
        .find_map(|e| match e {
            StatusEvent::Task(t) if t.task_id == "t3" => Some(t),
            _ => None,
        })
        .expect("t3's start is recorded in the commit after it");
    assert_eq!(t3.attempts[0].dispatched_ms, None);
    assert_eq!(t3.attempts[0].started_ms, BASE_WALL_MS + 10);
    // t5 was dispatched in its place.
    assert!(acts.contains(&Action::Flush));
    assert!(
        sim.store_tasks[&(id.clone(), "t5".into())].attempts[0]
            .dispatched_ms
            .is_some()
    );

    for t in [2, 3, 4, 5] {
        sim.exit(&id, t, 0);
    }
    sim.exit(&id, 6, 0);
    assert_eq!(sim.finished, vec![(id.clone(), RunState::Succeeded)]);
    assert!(sim.starts >= 3, "starts: {}", sim.starts);
    let spawned = sim.spawned(&id);
    let mut sorted = spawned.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        spawned.len(),
        "a task started twice: {spawned:?}"
    );
    assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6]);
}

/// root -> t1..t9 -> sink
fn fan9() -> Arc<Workflow> {
    let mut b = workflow("fan9").task("root", &[]);
    let mut mids = Vec::new();
    for i in 1..=9 {
        b = b.task(&format!("t{i}"), &["root"]);
        mids.push(format!("t{i}"));
    }
    let refs: Vec<&str> = mids.iter().map(String::as_str).collect();
    b.task("sink", &refs).build()
}

fn dispatched_tasks(sim: &Sim, id: &str) -> Vec<String> {
    let mut v: Vec<String> = sim
        .store_tasks
        .iter()
        .filter(|((run, _), rec)| {
            run == id
                && rec
                    .attempts
                    .last()
                    .is_some_and(|a| a.dispatched_ms.is_some() && a.outcome.is_none())
        })
        .map(|((_, task), _)| task.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn the_dispatch_queue_is_refilled_only_once_half_of_it_is_used() {
    let wf = fan9();
    let mut sim = Sim::new(dispatching(1, 4));
    let id = start(&mut sim, &wf, 0);
    sim.exit(&id, 0, 0);
    assert_eq!(dispatched_tasks(&sim, &id), ["t2", "t3", "t4", "t5"]);
    // t2 starts from the queue; three are left (more than half): no refill, and nothing in the
    // burst forces a commit (the driver may group it with later ones).
    let acts = sim.exit(&id, 1, 0);
    assert!(matches!(acts[0], Action::Start { task: 2, .. }), "{acts:?}");
    assert!(!acts.contains(&Action::Flush), "{acts:?}");
    assert_eq!(sim.state(&id, 6), TaskState::Ready);
    // t3 starts; two are left (half): refilled to four in one burst that must be committed.
    let acts = sim.exit(&id, 2, 0);
    assert!(matches!(acts[0], Action::Start { task: 3, .. }), "{acts:?}");
    assert!(acts.contains(&Action::Flush), "{acts:?}");
    assert_eq!(dispatched_tasks(&sim, &id), ["t4", "t5", "t6", "t7"]);
    for t in 3..=9 {
        sim.exit(&id, t, 0);
    }
    sim.exit(&id, 10, 0);
    assert_eq!(sim.finished, vec![(id.clone(), RunState::Succeeded)]);
    let mut spawned = sim.spawned(&id);
    spawned.sort();
    assert_eq!(spawned, (0..=10).collect::<Vec<_>>());
}

#[test]
fn top_up_fills_the_queue_for_a_commit_that_is_due_anyway() {
    let wf = fan9();
    let mut sim = Sim::new(dispatching(1, 4));
    let id = start(&mut sim, &wf, 0);
    sim.exit(&id, 0, 0);
    sim.exit(&id, 1, 0);
    assert_eq!(dispatched_tasks(&sim, &id), ["t3", "t4", "t5"]);
    let now = sim.now();
    assert!(sim.engine.top_up(now));
    let acts = sim.drain();
    assert!(matches!(acts[0], Action::Commit(_)), "{acts:?}");
    assert!(acts.contains(&Action::Flush), "{acts:?}");
    assert_eq!(dispatched_tasks(&sim, &id), ["t3", "t4", "t5", "t6"]);
    // Full: nothing to do.
    assert!(!sim.engine.top_up(now));
    // Nothing is dispatched while draining, nor with free slots.
    sim.engine.stop_starting();
    sim.drain();
    assert!(!sim.engine.top_up(now));
    let mut idle = Sim::new(dispatching(2, 4));
    let one = workflow("one").task("a", &[]).build();
    start(&mut idle, &one, 0);
    let now = idle.now();
    assert!(
        !idle.engine.top_up(now),
        "a free slot: nothing is dispatched"
    );
}

#[test]
fn a_higher_priority_task_overtakes_dispatched_ones() {
    // One slot: `slow` runs, `low1` is dispatched; `first` then makes `urgent` ready.
    let wf = workflow("prio")
        .task("first", &[])
        .priority(5)
        .task("low1", &[])
        .task("low2", &[])
        .task("urgent", &["first"])
        .priority(10)
        .build();
    let mut sim = Sim::new(dispatching(1, 1));
    let id = start(&mut sim, &wf, 0);
    assert_eq!(sim.spawned(&id), [0]);
    assert!(
        sim.store_tasks[&(id.clone(), "low1".into())].attempts[0]
            .dispatched_ms
            .is_some()
    );
    sim.exit(&id, 0, 0);
    // `urgent` (priority 10) takes the slot, with a commit first; low1 stays dispatched.
    assert_eq!(sim.spawned(&id), [0, 3]);
    assert_eq!(sim.state(&id, 1), TaskState::Running);
    assert_eq!(sim.engine.running_count(), 1);
    sim.exit(&id, 3, 0);
    assert_eq!(sim.spawned(&id), [0, 3, 1]);
    sim.exit(&id, 1, 0);
    sim.exit(&id, 2, 0);
    assert_eq!(sim.finished, vec![(id, RunState::Succeeded)]);
}

#[test]
fn cancelling_a_run_ends_dispatched_attempts_without_a_kill() {
    let wf = fan5();
    let mut sim = Sim::new(dispatching(2, 2));
    let id = start(&mut sim, &wf, 0);
    sim.exit(&id, 0, 0);
    let now = sim.now();
    sim.engine.handle_cancel(&id, now).unwrap();
    sim.drain();
    let killed: Vec<usize> = sim.kills.iter().map(|k| k.1).collect();
    assert_eq!(killed, [1, 2], "only started attempts are killed");
    for t in [3, 4] {
        assert_eq!(sim.state(&id, t), TaskState::Cancelled);
        let a = &sim.store_tasks[&(id.clone(), format!("t{t}"))].attempts[0];
        assert_eq!(a.outcome, Some(AttemptOutcome::Cancelled));
    }
    sim.exit_with(&id, 1, AttemptOutcome::Signaled(15), vec![]);
    sim.exit_with(&id, 2, AttemptOutcome::Signaled(15), vec![]);
    assert_eq!(sim.finished, vec![(id, RunState::Cancelled)]);
}

#[test]
fn shutdown_takes_dispatched_attempts_back() {
    let wf = fan5();
    let mut sim = Sim::new(dispatching(2, 2));
    let id = start(&mut sim, &wf, 0);
    sim.exit(&id, 0, 0);
    sim.engine.stop_starting();
    sim.drain();
    for t in [3, 4] {
        let rec = &sim.store_tasks[&(id.clone(), format!("t{t}"))];
        assert_eq!(rec.state, TaskState::Ready);
        assert!(rec.attempts.is_empty());
    }
    sim.exit(&id, 1, 0);
    sim.exit(&id, 2, 0);
    assert_eq!(sim.spawned(&id), [0, 1, 2], "nothing starts while draining");
}

/// After a crash that found `a` started and `b` (not idempotent either) known never to have
/// started: `a` is interrupted and failed; `b`'s attempt was dropped and it runs now, as
/// attempt 1.
fn a_interrupted_and_b_taken_back(sim2: &Sim, id: &str) {
    let a = &sim2.store_tasks[&(id.to_string(), "a".into())];
    assert_eq!(a.state, TaskState::Failed);
    assert_eq!(a.attempts[0].outcome, Some(AttemptOutcome::Interrupted));
    assert!(
        sim2.spawns.contains(&(id.to_string(), 1, 1)),
        "{:?}",
        sim2.spawns
    );
    let b = &sim2.store_tasks[&(id.to_string(), "b".into())];
    assert_eq!(b.attempts.len(), 1);
    assert_eq!(b.attempts[0].dispatched_ms, None);
    assert_eq!(b.attempts[0].outcome, None);
}

/// One slot, one dispatched: task 0 runs and task 1 is dispatched when the agent "crashes";
/// returns the run id and a new engine restored from the committed records.
fn crash_with_one_dispatched(
    wf: &Arc<Workflow>,
    never_started: &dyn Fn(&str, u32) -> bool,
) -> (String, Sim) {
    let mut sim = Sim::new(dispatching(1, 1));
    let id = start(&mut sim, wf, 0);
    assert_eq!(sim.spawned(&id), [0]);
    let tasks: Vec<_> = sim.store_tasks.values().cloned().collect();
    let run = sim.store_runs[&id].clone();
    let mut sim2 = Sim::new(dispatching(1, 1));
    sim2.wfs = sim.wfs.clone();
    sim2.engine
        .restore_run_knowing(run, tasks, wf.clone(), now_ms(50), never_started)
        .unwrap();
    sim2.tick();
    (id, sim2)
}

#[test]
fn a_dispatched_attempt_is_recovered_as_interrupted_and_says_so() {
    let wf = workflow("rec")
        .task("a", &[])
        .task("b", &[])
        .idempotent(true)
        .retries(1, Duration::from_secs(1))
        .build();
    let (id, sim2) = crash_with_one_dispatched(&wf, &|_, _| false);
    let b = &sim2.store_tasks[&(id.clone(), "b".into())];
    assert_eq!(b.attempts[0].outcome, Some(AttemptOutcome::Interrupted));
    let why = b.attempts[0].reason.clone().unwrap();
    assert!(
        why.contains("dispatched") && why.contains("may not have started"),
        "{why}"
    );
    // Idempotent with an attempt left: retried.
    assert!(
        sim2.spawns.contains(&(id.clone(), 1, 2)),
        "{:?}",
        sim2.spawns
    );
    let a = &sim2.store_tasks[&(id, "a".into())];
    assert!(
        a.attempts[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("not idempotent")
    );
}

#[test]
fn a_dispatched_attempt_known_never_to_have_started_is_taken_back() {
    // Neither task is idempotent: without the knowledge, both would fail.
    let wf = workflow("rec").task("a", &[]).task("b", &[]).build();
    let (id, mut sim2) =
        crash_with_one_dispatched(&wf, &|task, attempt| task == "b" && attempt == 1);
    a_interrupted_and_b_taken_back(&sim2, &id);
    sim2.exit(&id, 1, 0);
    assert_eq!(sim2.state(&id, 1), TaskState::Succeeded);
    assert_eq!(sim2.finished, vec![(id, RunState::Failed)]);
}

/// The cron pre-commit: two tasks start at the run's instant, their attempts committed while
/// deferred starts are on; the driver starts only `a` before the "crash".
fn precommitted(wf: &Arc<Workflow>) -> (String, Sim) {
    let mut sim = Sim::new(engine(2, &[]));
    sim.engine.set_deferred_starts(true);
    let id = start(&mut sim, wf, 0);
    sim.engine.set_deferred_starts(false);
    assert_eq!(sim.spawned(&id), [0, 1]);
    (id, sim)
}

#[test]
fn deferred_starts_are_committed_as_not_started_until_the_driver_starts_them() {
    let wf = workflow("cron").task("a", &[]).task("b", &[]).build();
    let (id, mut sim) = precommitted(&wf);
    for t in ["a", "b"] {
        let rec = &sim.store_tasks[&(id.clone(), t.into())];
        assert!(rec.attempts[0].dispatched_ms.is_some(), "{t}: {rec:?}");
        assert_eq!(rec.display_state(), "dispatched");
    }
    sim.advance(3);
    let now = sim.now();
    sim.engine.handle_deferred_start(&id, 0, 1, now).unwrap();
    let commits = sim.commits;
    sim.tick();
    assert_eq!(sim.commits, commits + 1, "the start is committed");
    let a = &sim.store_tasks[&(id.clone(), "a".into())];
    assert_eq!(a.attempts[0].dispatched_ms, None);
    assert_eq!(a.attempts[0].started_ms, now.wall_ms());
    assert_eq!(a.display_state(), "running");
    let b = &sim.store_tasks[&(id.clone(), "b".into())];
    assert!(b.attempts[0].dispatched_ms.is_some());
    // Reporting it again, or for an attempt that was never deferred, changes nothing.
    sim.engine.handle_deferred_start(&id, 0, 1, now).unwrap();
    sim.tick();
    assert_eq!(sim.commits, commits + 1);
    // With deferred starts off again, the next spawn is an ordinary one.
    sim.engine.handle_deferred_start(&id, 1, 1, now).unwrap();
    sim.exit(&id, 0, 0);
    sim.exit(&id, 1, 0);
    assert_eq!(sim.run_state(&id), RunState::Succeeded);
    let id2 = start(&mut sim, &wf, 60_000);
    let a2 = &sim.store_tasks[&(id2, "a".into())];
    assert_eq!(a2.attempts[0].dispatched_ms, None);
}

#[test]
fn a_precommitted_attempt_known_never_to_have_started_is_taken_back() {
    // Not idempotent: without the knowledge, an attempt that never started would fail.
    let wf = workflow("cron").task("a", &[]).task("b", &[]).build();
    let (id, mut sim) = precommitted(&wf);
    let now = sim.now();
    sim.engine.handle_deferred_start(&id, 0, 1, now).unwrap();
    sim.tick();
    // Crash: `a` had started, `b` had not (the journal says so).
    let tasks: Vec<_> = sim.store_tasks.values().cloned().collect();
    let run = sim.store_runs[&id].clone();
    let mut sim2 = Sim::new(engine(2, &[]));
    sim2.wfs = sim.wfs.clone();
    sim2.engine
        .restore_run_knowing(run, tasks, wf.clone(), now_ms(50), &|task, attempt| {
            task == "b" && attempt == 1
        })
        .unwrap();
    sim2.tick();
    a_interrupted_and_b_taken_back(&sim2, &id);
}

#[test]
fn a_precommitted_attempt_without_knowledge_is_interrupted_and_says_it_may_not_have_started() {
    let wf = workflow("cron").task("a", &[]).task("b", &[]).build();
    let (id, sim) = precommitted(&wf);
    let tasks: Vec<_> = sim.store_tasks.values().cloned().collect();
    let run = sim.store_runs[&id].clone();
    let mut sim2 = Sim::new(engine(2, &[]));
    sim2.wfs = sim.wfs.clone();
    sim2.engine
        .restore_run_knowing(run, tasks, wf.clone(), now_ms(50), &|_, _| false)
        .unwrap();
    sim2.tick();
    for t in ["a", "b"] {
        let rec = &sim2.store_tasks[&(id.clone(), t.into())];
        assert_eq!(rec.state, TaskState::Failed, "{t}");
        let why = rec.attempts[0].reason.clone().unwrap_or_default();
        assert!(why.contains("may not have started"), "{t}: {why}");
    }
}
