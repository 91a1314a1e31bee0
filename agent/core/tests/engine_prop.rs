#![allow(clippy::unwrap_used)] // tests may unwrap
//! Property tests: random DAGs driven by a seeded simulated executor.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::Sim;
use outpost_agent_core::engine::{Action, Engine, EngineConfig};
use outpost_agent_core::retry::SplitMix64;
use outpost_agent_core::testutil::{BASE_WALL_MS, run_record, workflow};
use outpost_common::model::{Overlap, TriggerRule, Workflow};
use outpost_common::record::{
    AttemptOutcome, LimitsMode, RunKind, RunRecord, TaskInstanceRecord, TaskState,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct TaskSpec {
    deps: Vec<usize>,
    rule: usize,
    retries: u32,
    priority: i32,
    res: u32,
    timeout_s: Option<u64>,
    idempotent: bool,
}

#[derive(Debug, Clone)]
struct Scenario {
    tasks: Vec<TaskSpec>,
    overlap: usize,
    max_active: u32,
    max_running: usize,
    runs_at: Vec<u64>,
    cancels_at: Vec<(u64, usize)>,
    /// The agent crashes at this time and is rebuilt from the committed store.
    crash_at: Option<u64>,
    seed: u64,
}

const RULES: [TriggerRule; 6] = [
    TriggerRule::AllSuccess,
    TriggerRule::AllDone,
    TriggerRule::AllFailed,
    TriggerRule::OneSuccess,
    TriggerRule::OneFailed,
    TriggerRule::NoneFailed,
];
const OVERLAPS: [Overlap; 4] = [
    Overlap::Skip,
    Overlap::Queue,
    Overlap::Allow,
    Overlap::CancelRunning,
];
const CAP: u32 = 2;

fn task_spec(i: usize) -> impl Strategy<Value = TaskSpec> {
    (
        proptest::collection::vec(0..i.max(1), 0..=(i.min(3))),
        0..6usize,
        0..3u32,
        -2..3i32,
        prop_oneof![3 => Just(0u32), 1 => 1..=CAP],
        proptest::option::weighted(0.3, 1..8u64),
        any::<bool>(),
    )
        .prop_map(
            move |(mut deps, rule, retries, priority, res, timeout_s, idempotent)| {
                if i == 0 {
                    deps.clear();
                }
                deps.sort();
                deps.dedup();
                TaskSpec {
                    deps,
                    rule,
                    retries,
                    priority,
                    res,
                    timeout_s,
                    idempotent,
                }
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1..10usize)
        .prop_flat_map(|n| (0..n).map(task_spec).collect::<Vec<_>>())
        .prop_flat_map(|tasks| {
            (
                Just(tasks),
                0..4usize,
                1..3u32,
                1..4usize,
                proptest::collection::vec(0..20_000u64, 1..4),
                proptest::collection::vec((0..40_000u64, 0..4usize), 0..2),
                proptest::option::weighted(0.4, 0..40_000u64),
                any::<u64>(),
            )
        })
        .prop_map(
            |(tasks, overlap, max_active, max_running, runs_at, cancels_at, crash_at, seed)| {
                Scenario {
                    tasks,
                    overlap,
                    max_active,
                    max_running,
                    runs_at,
                    cancels_at,
                    crash_at,
                    seed,
                }
            },
        )
}

fn build(s: &Scenario) -> Arc<Workflow> {
    let mut b = workflow("prop")
        .overlap(OVERLAPS[s.overlap])
        .max_active_runs(s.max_active);
    for (i, t) in s.tasks.iter().enumerate() {
        b = b
            .task_idx(&format!("t{i}"), &t.deps)
            .rule(RULES[t.rule])
            .retries(t.retries, Duration::from_millis(500))
            .priority(t.priority)
            .idempotent(t.idempotent);
        if t.res > 0 {
            b = b.resource("r", t.res);
        }
        if let Some(to) = t.timeout_s {
            b = b.timeout(Duration::from_secs(to));
        }
    }
    b.build()
}

fn accepts(rule: TriggerRule, ups: &[TaskState]) -> bool {
    let failed = |s: &TaskState| matches!(s, TaskState::Failed | TaskState::UpstreamFailed);
    if ups.is_empty() {
        return true;
    }
    match rule {
        TriggerRule::AllSuccess => ups.iter().all(|s| *s == TaskState::Succeeded),
        TriggerRule::AllDone => ups.iter().all(|s| s.is_terminal()),
        TriggerRule::AllFailed => ups.iter().all(failed),
        TriggerRule::OneSuccess => ups.contains(&TaskState::Succeeded),
        TriggerRule::OneFailed => ups.iter().any(failed),
        TriggerRule::NoneFailed => ups.iter().all(|s| s.is_terminal() && !failed(s)),
    }
}

struct Running {
    run: String,
    task: usize,
    attempt: u32,
    end: u64,
    outcome: AttemptOutcome,
}

/// Simulate the scenario; returns the full action log. Panics (fails the property) on any
/// violated invariant.
fn simulate(s: &Scenario) -> Vec<Action> {
    let wf = build(s);
    let cfg = EngineConfig {
        max_running: s.max_running,
        resources: BTreeMap::from([("r".to_string(), CAP)]),
        seed: s.seed,
        // A quarter of the scenarios each without dispatching, and with one, two or five
        // dispatched ahead (five: refills happen at two left, see "Dispatch ahead").
        dispatch_ahead: [0, 1, 2, 5][(s.seed % 4) as usize],
    };
    let mut sim = Sim::new(Engine::new(cfg.clone()));
    sim.snapshot_starts = s.crash_at.is_some();
    let mut crash_at = s.crash_at;
    let mut rng = SplitMix64::new(s.seed ^ 0xabcdef);
    let mut running: Vec<Running> = Vec::new();
    let mut adds: Vec<u64> = s.runs_at.clone();
    adds.sort();
    adds.dedup();
    let mut cancels = s.cancels_at.clone();
    cancels.sort();
    let mut run_ids: Vec<String> = Vec::new();
    let mut seen_actions = 0;
    // The start journal: every attempt whose process started. An attempt starts at most once.
    let mut journal: BTreeSet<(String, usize, u32)> = BTreeSet::new();

    for _step in 0..10_000 {
        // Process actions produced since the last step.
        let new: Vec<Action> = sim.log[seen_actions..].to_vec();
        let base = seen_actions;
        seen_actions = sim.log.len();
        for (k, a) in new.into_iter().enumerate() {
            let is_start = matches!(a, Action::Start { .. });
            match a {
                Action::Spawn {
                    run_id,
                    task,
                    attempt,
                }
                | Action::Start {
                    run_id,
                    task,
                    attempt,
                } => {
                    let (_, tasks) = sim
                        .engine
                        .run_snapshot(&run_id)
                        .expect("spawned run exists");
                    assert!(
                        journal.insert((run_id.clone(), task, attempt)),
                        "attempt {attempt} of t{task} in {run_id} started twice"
                    );
                    // A deferred start (a run added with deferred starts on): the driver says
                    // when its process really starts.
                    let deferred = tasks[task]
                        .attempts
                        .last()
                        .is_some_and(|a| a.dispatched_ms.is_some());
                    if deferred {
                        let now = sim.now();
                        sim.engine
                            .handle_deferred_start(&run_id, task, attempt, now)
                            .expect("deferred start");
                        let (_, after) = sim.engine.run_snapshot(&run_id).expect("run");
                        assert_eq!(after[task].attempts.last().unwrap().dispatched_ms, None);
                    }
                    let ups: Vec<TaskState> = wf.tasks[task]
                        .upstream
                        .iter()
                        .map(|&u| tasks[u].state)
                        .collect();
                    assert!(
                        accepts(wf.tasks[task].trigger_rule, &ups),
                        "t{task} started with upstream {ups:?}"
                    );
                    assert!(attempt <= wf.tasks[task].retry.retries + 1);
                    let r = rng.next_u64();
                    let outcome = match r % 10 {
                        0 => AttemptOutcome::SpawnFailed("no such file".into()),
                        1..=5 => AttemptOutcome::Exited(0),
                        _ => AttemptOutcome::Exited(1),
                    };
                    let dur = 1 + (r >> 8) % 10_000;
                    if r.is_multiple_of(3) {
                        let now = sim.now();
                        sim.engine
                            .handle_started(
                                &run_id,
                                task,
                                attempt,
                                Some(1),
                                LimitsMode::None,
                                None,
                                now,
                            )
                            .expect("started");
                    }
                    running.push(Running {
                        run: run_id,
                        task,
                        attempt,
                        end: sim.t + dur,
                        outcome,
                    });
                }
                Action::Kill {
                    run_id,
                    task,
                    attempt,
                    ..
                } => {
                    let r = running
                        .iter_mut()
                        .find(|r| r.run == run_id && r.task == task && r.attempt == attempt)
                        .expect("kill of a running attempt");
                    r.end = r.end.min(sim.t + 5);
                    r.outcome = AttemptOutcome::Signaled(9);
                }
                _ => {}
            }
            // Sometimes the crash comes right after a dispatched attempt's start, before its
            // burst is committed: the store still says "not started", the journal says started.
            if is_start && crash_at.is_some() && rng.next_u64().is_multiple_of(3) {
                let snap = sim
                    .start_snapshots
                    .iter()
                    .find(|p| p.log_index == base + k)
                    .cloned()
                    .expect("a snapshot of every start");
                crash_at = None;
                running.clear();
                crash(&mut sim, &cfg, &wf, &journal, snap.runs, snap.tasks);
                seen_actions = sim.log.len();
                break;
            }
        }
        sim.drain();
        if sim.log.len() != seen_actions {
            continue;
        }
        // A driver tops the dispatch queue up whenever its group commit is due: at random here.
        if rng.next_u64().is_multiple_of(4) {
            let now = sim.now();
            if sim.engine.top_up(now) {
                sim.drain();
                continue;
            }
        }
        // Invariants after every burst.
        assert!(sim.engine.running_count() <= s.max_running);
        assert_eq!(sim.engine.running_count(), running.len());
        assert!(sim.engine.resources_in_use().get("r").copied().unwrap_or(0) <= CAP);
        let held: u32 = running
            .iter()
            .map(|r| wf.tasks[r.task].resources.get("r").copied().unwrap_or(0))
            .sum();
        assert!(held <= CAP);

        // Next event.
        let t_exit = running.iter().map(|r| r.end).min();
        let t_timer = sim.engine.poll_timeout().map(|d| d.as_millis() as u64);
        let t_add = adds.first().copied();
        let t_cancel = cancels.first().map(|c| c.0);
        let Some(next) = [t_exit, t_timer, t_add, t_cancel, crash_at]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        sim.t = sim.t.max(next);
        if crash_at.is_some_and(|t| t <= sim.t) {
            // Crash: the processes die with the agent; rebuild from the committed store.
            crash_at = None;
            running.clear();
            let (runs, tasks) = (sim.store_runs.clone(), sim.store_tasks.clone());
            crash(&mut sim, &cfg, &wf, &journal, runs, tasks);
        } else if t_add.is_some_and(|t| t <= sim.t) {
            let at = adds.remove(0);
            let run = run_record(&wf, BASE_WALL_MS + at as i64, RunKind::Manual);
            run_ids.push(run.run_id.clone());
            // A third of the runs start like cron pre-commits: their first attempts are
            // committed as not started, and started when the driver says so.
            let deferred = rng.next_u64().is_multiple_of(3);
            sim.engine.set_deferred_starts(deferred);
            sim.add(run, wf.clone());
            sim.engine.set_deferred_starts(false);
        } else if t_cancel.is_some_and(|t| t <= sim.t) {
            let (_, which) = cancels.remove(0);
            if let Some(id) = run_ids.get(which % run_ids.len().max(1)).cloned() {
                let now = sim.now();
                let _ = sim.engine.handle_cancel(&id, now);
                sim.drain();
            }
        } else if t_exit.is_some_and(|t| t <= sim.t) {
            let i = running
                .iter()
                .position(|r| r.end <= sim.t)
                .expect("due exit");
            let r = running.remove(i);
            sim.exit_with(
                &r.run,
                r.task,
                r.outcome,
                vec![("k".into(), r.attempt.to_string())],
            );
        } else {
            sim.tick();
        }
    }
    assert!(running.is_empty(), "simulation did not settle");
    assert!(adds.is_empty());
    for id in &run_ids {
        assert!(
            sim.finished.iter().any(|f| &f.0 == id),
            "run {id} never finished"
        );
        let stored: Vec<_> = sim
            .store_tasks
            .values()
            .filter(|t| &t.run_id == id)
            .collect();
        for t in stored {
            assert!(t.state.is_terminal(), "{} left {:?}", t.task_id, t.state);
            let idx = wf.task_index(&t.task_id).expect("task");
            assert!(t.attempts.len() as u32 <= wf.tasks[idx].retry.retries + 1);
        }
        assert!(sim.store_runs[id].state.is_terminal());
        // The engine remembers runs that finished since the last (simulated) restart.
        if let Some((run, tasks)) = sim.engine.run_snapshot(id) {
            assert_eq!(run, sim.store_runs[id]);
            assert!(tasks.iter().all(|t| t.state.is_terminal()));
        }
    }
    assert_eq!(sim.engine.active_run_records().count(), 0);
    sim.log
}

type StoredTasks = BTreeMap<(String, String), TaskInstanceRecord>;

/// The agent dies (its processes with it) leaving the store as `runs` and `tasks`; a new engine
/// is rebuilt from them, told by the start journal which attempts never started.
fn crash(
    sim: &mut Sim,
    cfg: &EngineConfig,
    wf: &Arc<Workflow>,
    journal: &BTreeSet<(String, usize, u32)>,
    runs: BTreeMap<String, RunRecord>,
    tasks: StoredTasks,
) {
    sim.store_runs = runs;
    sim.store_tasks = tasks;
    let mut fresh = Engine::new(cfg.clone());
    let now = sim.now();
    for (id, run) in sim.store_runs.clone() {
        let tasks = sim
            .store_tasks
            .values()
            .filter(|t| t.run_id == id)
            .cloned()
            .collect();
        let never_started = |task_id: &str, attempt: u32| {
            wf.task_index(task_id)
                .is_some_and(|i| !journal.contains(&(id.clone(), i, attempt)))
        };
        fresh
            .restore_run_knowing(run, tasks, wf.clone(), now, &never_started)
            .expect("restore");
    }
    sim.engine = fresh;
    sim.drain();
    for (id, run) in &sim.store_runs {
        if run.state.is_terminal() {
            continue;
        }
        for t in sim.store_tasks.values().filter(|t| &t.run_id == id) {
            assert!(
                t.attempts.iter().all(|a| a.outcome.is_some()),
                "open attempt after restore"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_hold_invariants_and_are_deterministic(s in scenario()) {
        let a = simulate(&s);
        let b = simulate(&s);
        prop_assert_eq!(a, b);
    }
}
