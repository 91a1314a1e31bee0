//! A simulated driver: applies commits to an in-memory "store" and checks the durable-first
//! contract on every Spawn.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_agent_core::engine::{Action, Engine, KillReason};
use outpost_agent_core::testutil::now_ms;
use outpost_common::clock::Now;
use outpost_common::model::{TaskIdx, Workflow};
use outpost_common::record::{
    AttemptOutcome, RunId, RunRecord, RunState, StatusEvent, TaskInstanceRecord, TaskState,
};

/// The store right before a `Start` (see [`Sim::snapshot_starts`]).
#[derive(Debug, Clone)]
pub struct StartSnapshot {
    /// The `Start`'s index in [`Sim::log`].
    pub log_index: usize,
    pub runs: BTreeMap<RunId, RunRecord>,
    pub tasks: BTreeMap<(RunId, String), TaskInstanceRecord>,
}

pub struct Sim {
    pub engine: Engine,
    pub t: u64,
    pub store_runs: BTreeMap<RunId, RunRecord>,
    pub store_tasks: BTreeMap<(RunId, String), TaskInstanceRecord>,
    pub commits: usize,
    pub spawns: Vec<(RunId, TaskIdx, u32)>,
    pub kills: Vec<(RunId, TaskIdx, u32, KillReason)>,
    pub finished: Vec<(RunId, RunState)>,
    pub wfs: BTreeMap<RunId, Arc<Workflow>>,
    pub log: Vec<Action>,
    /// Task records a driver may still hold back for a group commit (committed only by a
    /// `Flush`, `Spawn`, `Kill` or `RunFinished`).
    pub held: Vec<TaskInstanceRecord>,
    /// Task records as certainly durable: what a `Start` may rely on.
    pub forced: BTreeMap<(RunId, String), TaskInstanceRecord>,
    pub starts: usize,
    /// When set, each `Start` keeps a copy of the store as it was right before it (its burst's
    /// commit comes after it): a crash right after that start finds this store.
    pub snapshot_starts: bool,
    pub start_snapshots: Vec<StartSnapshot>,
}

impl Sim {
    pub fn new(engine: Engine) -> Sim {
        Sim {
            engine,
            t: 0,
            store_runs: BTreeMap::new(),
            store_tasks: BTreeMap::new(),
            commits: 0,
            spawns: Vec::new(),
            kills: Vec::new(),
            finished: Vec::new(),
            wfs: BTreeMap::new(),
            log: Vec::new(),
            held: Vec::new(),
            forced: BTreeMap::new(),
            starts: 0,
            snapshot_starts: false,
            start_snapshots: Vec::new(),
        }
    }

    pub fn now(&self) -> Now {
        now_ms(self.t)
    }

    pub fn advance(&mut self, ms: u64) {
        self.t += ms;
    }

    /// Drain every action; returns them. Panics if a Spawn was not committed first.
    pub fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.engine.poll_action() {
            if !matches!(a, Action::Commit(_) | Action::Start { .. }) {
                for t in self.held.drain(..) {
                    self.forced.insert((t.run_id.clone(), t.task_id.clone()), t);
                }
            }
            match &a {
                Action::Start {
                    run_id,
                    task,
                    attempt,
                } => {
                    // Performed before anything is committed: the dispatched attempt must be
                    // durable already, by a commit the driver could not hold back.
                    let wf = self.wfs.get(run_id).expect("start of unknown run");
                    let id = &wf.tasks[*task].id;
                    let rec = self
                        .forced
                        .get(&(run_id.clone(), id.clone()))
                        .expect("start of an attempt never force-committed");
                    assert_eq!(rec.state, TaskState::Running, "start of {id}: not Running");
                    assert_eq!(rec.attempts.len() as u32, *attempt, "start of {id}");
                    let last = rec.attempts.last().expect("attempt");
                    assert!(last.outcome.is_none() && last.dispatched_ms.is_some());
                    self.starts += 1;
                    self.spawns.push((run_id.clone(), *task, *attempt));
                    if self.snapshot_starts {
                        self.start_snapshots.push(StartSnapshot {
                            log_index: self.log.len(),
                            runs: self.store_runs.clone(),
                            tasks: self.store_tasks.clone(),
                        });
                    }
                }
                Action::Flush => {}
                Action::Commit(events) => {
                    assert!(!events.is_empty(), "empty commit");
                    self.commits += 1;
                    for e in events {
                        match e {
                            StatusEvent::Run(r) => {
                                self.store_runs.insert(r.run_id.clone(), r.clone());
                            }
                            StatusEvent::Task(t) => {
                                self.store_tasks
                                    .insert((t.run_id.clone(), t.task_id.clone()), t.clone());
                                self.held.push(t.clone());
                            }
                            StatusEvent::Missed(_)
                            | StatusEvent::Reverted(_)
                            | StatusEvent::Deadline(_) => {}
                        }
                    }
                }
                Action::Spawn {
                    run_id,
                    task,
                    attempt,
                } => {
                    let wf = self.wfs.get(run_id).expect("spawn of unknown run");
                    let id = &wf.tasks[*task].id;
                    let rec = self
                        .store_tasks
                        .get(&(run_id.clone(), id.clone()))
                        .expect("spawn before any commit of the task");
                    assert_eq!(
                        rec.state,
                        TaskState::Running,
                        "spawn of {id} not committed Running"
                    );
                    assert_eq!(rec.attempts.len() as u32, *attempt);
                    assert!(rec.attempts.last().is_some_and(|a| a.outcome.is_none()));
                    self.spawns.push((run_id.clone(), *task, *attempt));
                }
                Action::Kill {
                    run_id,
                    task,
                    attempt,
                    reason,
                } => {
                    self.kills.push((run_id.clone(), *task, *attempt, *reason));
                }
                Action::RunFinished { run_id, state } => {
                    let stored = self
                        .store_runs
                        .get(run_id)
                        .expect("finished run not committed");
                    assert_eq!(stored.state, *state);
                    self.finished.push((run_id.clone(), *state));
                }
            }
            self.log.push(a.clone());
            out.push(a);
        }
        // The incremental indexes agree with a recount after every burst.
        if let Err(e) = self.engine.check_indexes() {
            panic!("engine indexes out of step: {e}");
        }
        out
    }

    pub fn add(&mut self, run: RunRecord, wf: Arc<Workflow>) -> Vec<Action> {
        self.wfs.insert(run.run_id.clone(), wf.clone());
        let now = self.now();
        self.engine.add_run(run, wf, now).expect("add_run");
        self.drain()
    }

    pub fn exit(&mut self, run: &str, task: TaskIdx, code: i32) -> Vec<Action> {
        self.exit_with(run, task, AttemptOutcome::Exited(code), vec![])
    }

    pub fn exit_with(
        &mut self,
        run: &str,
        task: TaskIdx,
        outcome: AttemptOutcome,
        outputs: Vec<(String, String)>,
    ) -> Vec<Action> {
        let attempt = self.attempt_of(run, task);
        let now = self.now();
        self.engine
            .handle_exited(run, task, attempt, outcome, None, outputs, now)
            .expect("handle_exited");
        self.drain()
    }

    pub fn tick(&mut self) -> Vec<Action> {
        let now = self.now();
        self.engine.handle_timeout(now);
        self.drain()
    }

    pub fn attempt_of(&self, run: &str, task: TaskIdx) -> u32 {
        let (_, tasks) = self.engine.run_snapshot(run).expect("run");
        tasks[task].attempts.len() as u32
    }

    pub fn state(&self, run: &str, task: TaskIdx) -> TaskState {
        let (_, tasks) = self.engine.run_snapshot(run).expect("run");
        tasks[task].state
    }

    pub fn run_state(&self, run: &str) -> RunState {
        self.engine.run_snapshot(run).expect("run").0.state
    }

    /// Task indices spawned (in order) for a run.
    pub fn spawned(&self, run: &str) -> Vec<TaskIdx> {
        self.spawns
            .iter()
            .filter(|s| s.0 == run)
            .map(|s| s.1)
            .collect()
    }
}

pub fn spawns_of(actions: &[Action]) -> Vec<(TaskIdx, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { task, attempt, .. } | Action::Start { task, attempt, .. } => {
                Some((*task, *attempt))
            }
            _ => None,
        })
        .collect()
}
