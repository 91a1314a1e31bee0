#![allow(clippy::unwrap_used)] // tests may unwrap
//! Scale and index tests: a 20,000-task fan-out driven through the engine with a fake clock
//! (quadratic per-run work makes it effectively never finish), and the timer index across
//! cancel and restore.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use common::{Sim, spawns_of};
use outpost_agent_core::engine::{Action, Engine, EngineConfig, KillReason};
use outpost_agent_core::testutil::{BASE_WALL_MS, now_ms, run_record, workflow};
use outpost_common::model::{Overlap, Workflow};
use outpost_common::record::{AttemptOutcome, RunKind, RunState, TaskState};

/// root -> `n` parallel tasks -> sink (all_success). Every tenth fan task has one retry.
fn fan(n: usize) -> Arc<Workflow> {
    let mut b = workflow("fan").task("root", &[]);
    for i in 0..n {
        b = b
            .task(&format!("t{i:05}"), &["root"])
            .timeout(Duration::from_secs(3600));
        if i % 10 == 0 {
            b = b.retries(1, Duration::from_secs(1));
        }
    }
    let mut wf = (*b.task("sink", &[]).build()).clone();
    let sink = wf.tasks.last_mut().unwrap();
    // Set directly: the builder resolves ids by a linear search per dependency.
    sink.upstream = (1..=n).collect();
    sink.depends_on = (0..n).map(|i| format!("t{i:05}")).collect();
    Arc::new(wf)
}

/// Drive a 20,000-task fan-out to the end with two slots: each attempt exits 1 ms after it
/// started (every tenth fan task fails its first attempt and is retried 1 s later). Checks the
/// order of starts, the slot bound, the run outcome and the sink's view of upstream outputs.
/// Before the per-event work was made independent of the run's size, this run did hundreds of
/// millions of steps (the ready queue copied, the sink's 20,000 upstream states re-read, every
/// task scanned for timers, on each of ~22,000 events).
#[test]
fn fan_out_of_20k_tasks_runs_to_the_end() {
    const N: usize = 20_000;
    let wf = fan(N);
    let mut e = Engine::new(EngineConfig {
        max_running: 2,
        seed: 1,
        // As the agent runs by default.
        dispatch_ahead: 2,
        ..EngineConfig::default()
    });
    let run = run_record(&wf, BASE_WALL_MS, RunKind::Manual);
    let id = run.run_id.clone();
    let mut t: u64 = 0;
    e.add_run(run, wf.clone(), now_ms(t)).unwrap();
    let mut running: VecDeque<(usize, u32)> = VecDeque::new();
    let mut first_starts: Vec<usize> = Vec::new();
    let mut retries = 0usize;
    let mut finished = None;
    let mut sink_outputs = None;
    loop {
        while let Some(a) = e.poll_action() {
            match a {
                Action::Spawn { task, attempt, .. } | Action::Start { task, attempt, .. } => {
                    if attempt == 1 {
                        first_starts.push(task);
                    } else {
                        retries += 1;
                    }
                    let ups = e.upstream_outputs(&id, task);
                    if task == N + 1 {
                        sink_outputs = Some(ups);
                    } else {
                        assert_eq!(ups.len(), usize::from(task > 0), "task {task}");
                    }
                    running.push_back((task, attempt));
                }
                Action::RunFinished { state, .. } => finished = Some(state),
                Action::Kill { .. } => panic!("nothing times out"),
                Action::Commit(_) | Action::Flush => {}
            }
        }
        assert!(e.running_count() <= 2);
        assert_eq!(e.running_count(), running.len());
        // As the driver does: timers that are due first.
        if e.poll_timeout()
            .is_some_and(|d| d <= Duration::from_millis(t))
        {
            e.handle_timeout(now_ms(t));
            continue;
        }
        if running.iter().any(|&(task, _)| task > 0 && task <= N) {
            assert!(
                e.poll_timeout().is_some(),
                "a running fan task has a deadline"
            );
        }
        if let Some((task, attempt)) = running.pop_front() {
            t += 1;
            let fails = task > 0 && task <= N && (task - 1) % 10 == 0 && attempt == 1;
            let outcome = AttemptOutcome::Exited(if fails { 1 } else { 0 });
            let outputs = vec![("i".to_string(), task.to_string())];
            e.handle_exited(&id, task, attempt, outcome, None, outputs, now_ms(t))
                .unwrap();
        } else if let Some(at) = e.poll_timeout() {
            t = t.max(at.as_millis() as u64);
            e.handle_timeout(now_ms(t));
        } else {
            break;
        }
    }
    assert_eq!(finished, Some(RunState::Succeeded));
    assert_eq!(first_starts, (0..N + 2).collect::<Vec<_>>(), "queue order");
    assert_eq!(retries, N / 10);
    let outs = sink_outputs.unwrap();
    assert_eq!(outs.len(), N + 1, "root and every fan task, once");
    assert_eq!(outs[0], ("root".into(), "i".into(), "0".into()));
    assert_eq!(
        outs[N],
        (format!("t{:05}", N - 1), "i".into(), N.to_string())
    );
    assert_eq!(e.poll_timeout(), None);
    let (_, tasks) = e.run_snapshot(&id).unwrap();
    assert!(tasks.iter().all(|t| t.state == TaskState::Succeeded));
}

/// Deadlines and retry instants of a cancelled run leave the timer index; another run's still
/// fire at their exact instant; after a restart a restored retry fires at its stored instant
/// (not earlier) and a restarted attempt gets a fresh deadline.
#[test]
fn timers_fire_at_their_instants_across_cancel_and_restore() {
    let wf = workflow("tm")
        .task("slow", &[])
        .timeout(Duration::from_secs(5))
        .idempotent(true)
        .retries(1, Duration::from_secs(60))
        .task("flaky", &[])
        .retries(2, Duration::from_secs(60))
        .overlap(Overlap::Allow)
        .max_active_runs(2)
        .build();
    let mut sim = Sim::new(Engine::new(EngineConfig {
        max_running: 8,
        seed: 3,
        ..EngineConfig::default()
    }));
    let a = run_record(&wf, BASE_WALL_MS, RunKind::Manual);
    let a_id = a.run_id.clone();
    sim.add(a, wf.clone());
    assert_eq!(
        sim.engine.poll_timeout(),
        Some(Duration::from_millis(5_000))
    );
    sim.advance(1_000);
    sim.exit(&a_id, 1, 1); // A.flaky up for retry at 61 s
    assert_eq!(sim.state(&a_id, 1), TaskState::UpForRetry);
    sim.advance(1_000);
    let b = run_record(&wf, BASE_WALL_MS + 2_000, RunKind::Manual);
    let b_id = b.run_id.clone();
    sim.add(b, wf.clone()); // B.slow deadline 7 s
    assert_eq!(sim.spawned(&b_id), [0, 1]);
    assert_eq!(
        sim.engine.poll_timeout(),
        Some(Duration::from_millis(5_000))
    );

    sim.advance(1_000);
    let now = sim.now();
    sim.engine.handle_cancel(&a_id, now).unwrap();
    sim.drain();
    assert_eq!(sim.kills, [(a_id.clone(), 0, 1, KillReason::Cancel)]);
    assert_eq!(sim.state(&a_id, 1), TaskState::Cancelled);
    assert_eq!(
        sim.engine.poll_timeout(),
        Some(Duration::from_millis(7_000)),
        "A's deadline and retry are gone"
    );
    sim.advance(2_999); // 5.999 s: A's old deadline passed, nothing fires
    sim.tick();
    assert_eq!(sim.kills.len(), 1);
    sim.exit_with(&a_id, 0, AttemptOutcome::Signaled(15), vec![]);
    assert_eq!(sim.finished, [(a_id.clone(), RunState::Cancelled)]);
    sim.advance(1_000); // 6.999 s
    sim.tick();
    assert_eq!(sim.kills.len(), 1);
    sim.advance(1); // 7 s
    sim.tick();
    assert_eq!(sim.kills[1], (b_id.clone(), 0, 1, KillReason::Timeout));
    assert_eq!(sim.engine.poll_timeout(), None, "no second kill deadline");
    sim.exit(&b_id, 1, 1); // B.flaky up for retry at 67 s (wall)
    assert_eq!(
        sim.engine.poll_timeout(),
        Some(Duration::from_millis(67_000))
    );

    // Crash at 20 s (B.slow still being killed, its attempt open); the new process's
    // monotonic clock reads 500 s.
    let run = sim.store_runs[&b_id].clone();
    let tasks: Vec<_> = sim
        .store_tasks
        .values()
        .filter(|t| t.run_id == b_id)
        .cloned()
        .collect();
    let mut sim2 = Sim::new(Engine::new(EngineConfig {
        max_running: 8,
        seed: 3,
        ..EngineConfig::default()
    }));
    sim2.wfs.insert(b_id.clone(), wf.clone());
    let restart = |ms: u64| {
        let mut n = now_ms(ms);
        n.mono = Duration::from_millis(500_000 + ms - 20_000);
        n
    };
    sim2.engine
        .restore_run(run, tasks, wf.clone(), restart(20_000))
        .unwrap();
    assert_eq!(sim2.engine.poll_timeout(), Some(Duration::ZERO));
    sim2.drain();
    sim2.engine.handle_timeout(restart(20_000));
    assert_eq!(
        spawns_of(&sim2.drain()),
        [(0, 2)],
        "idempotent slow restarts"
    );
    // Its new deadline (25 s) comes before the restored retry (67 s).
    assert_eq!(
        sim2.engine.poll_timeout(),
        Some(restart(25_000).mono),
        "fresh deadline"
    );
    sim2.engine
        .handle_exited(
            &b_id,
            0,
            2,
            AttemptOutcome::Exited(0),
            None,
            vec![],
            restart(21_000),
        )
        .unwrap();
    sim2.drain();
    assert_eq!(sim2.engine.poll_timeout(), Some(restart(67_000).mono));
    sim2.engine.handle_timeout(restart(66_999));
    assert!(
        spawns_of(&sim2.drain()).is_empty(),
        "not before its instant"
    );
    sim2.engine.handle_timeout(restart(67_000));
    assert_eq!(spawns_of(&sim2.drain()), [(1, 2)]);
    sim2.engine
        .handle_exited(
            &b_id,
            1,
            2,
            AttemptOutcome::Exited(0),
            None,
            vec![],
            restart(68_000),
        )
        .unwrap();
    sim2.drain();
    assert_eq!(sim2.finished, [(b_id.clone(), RunState::Succeeded)]);
    assert_eq!(sim2.engine.poll_timeout(), None);
}
