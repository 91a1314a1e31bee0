//! Deadline detection: `deadline` (finish within D of the run's scheduled instant) and
//! `max_start_delay` (start within D), of a run and of each task.
//!
//! Sans-IO: the driver [`Deadlines::watch`]es each run it starts or restores (with the misses
//! already committed for it), shows it every record it commits ([`Deadlines::observe`]), and
//! calls [`Deadlines::handle_time`] when [`Deadlines::poll_timeout`] (wall milliseconds) has
//! come. Each returns the misses to commit as [`StatusEvent::Deadline`]: at most one per
//! (run, task or none, kind), ever (a restored run is watched with the misses it has).
//!
//! A deadline is missed when its instant passes while the run or task has not started /
//! finished, or when it starts / finishes after the instant (noticed from its record: the agent
//! was stopped, or the wake-up came late). What ends without starting (skipped, upstream failed,
//! cancelled) never misses a start deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use outpost_common::model::Workflow;
use outpost_common::record::{
    DeadlineKind, DeadlineMiss, RunId, RunRecord, StatusEvent, TaskInstanceRecord, UnixMillis,
};

#[derive(Debug, Clone)]
struct Item {
    task: Option<String>,
    kind: DeadlineKind,
    due_ms: UnixMillis,
    /// Started (kind `Start`) or finished (`Finish`) in time, or missed already: nothing to do.
    done: bool,
}

#[derive(Debug, Clone)]
struct Watch {
    workflow: String,
    version: u64,
    scheduled_ms: UnixMillis,
    items: Vec<Item>,
    /// Task id -> indices into `items`.
    by_task: HashMap<String, Vec<usize>>,
}

/// The deadline watch of every active run that has a deadline.
#[derive(Debug, Default)]
pub struct Deadlines {
    runs: BTreeMap<RunId, Watch>,
    /// (due, run, item) of every item not done.
    timers: BTreeSet<(UnixMillis, RunId, usize)>,
}

fn due(scheduled_ms: UnixMillis, d: Duration) -> UnixMillis {
    scheduled_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// When the task's process first started (an attempt only committed ahead of its start, with
/// `dispatched_ms` set, has not).
fn first_start(t: &TaskInstanceRecord) -> Option<UnixMillis> {
    t.attempts
        .iter()
        .find(|a| a.dispatched_ms.is_none() || a.outcome.is_some())
        .map(|a| a.started_ms)
}

impl Deadlines {
    pub fn new() -> Deadlines {
        Deadlines::default()
    }

    /// Watch `run` of `wf` (nothing happens for a workflow without deadlines). `seen`: the misses
    /// already committed for this run (task, kind): they are never reported again.
    pub fn watch(
        &mut self,
        run: &RunRecord,
        wf: &Workflow,
        seen: &[(Option<String>, DeadlineKind)],
    ) {
        if run.state.is_terminal() || self.runs.contains_key(&run.run_id) {
            return;
        }
        let mut items = Vec::new();
        let mut add = |task: Option<&str>, kind, d: Option<Duration>| {
            if let Some(d) = d {
                let task = task.map(str::to_string);
                let done = seen.iter().any(|(t, k)| *t == task && *k == kind);
                items.push(Item {
                    task,
                    kind,
                    due_ms: due(run.scheduled_ms, d),
                    done,
                });
            }
        };
        add(None, DeadlineKind::Start, wf.max_start_delay);
        add(None, DeadlineKind::Finish, wf.deadline);
        for t in &wf.tasks {
            add(Some(&t.id), DeadlineKind::Start, t.max_start_delay);
            add(Some(&t.id), DeadlineKind::Finish, t.deadline);
        }
        if items.is_empty() {
            return;
        }
        if run.started_ms.is_some() {
            // Started already (a restored run): its start was judged when it started.
            for it in items.iter_mut() {
                if it.task.is_none() && it.kind == DeadlineKind::Start {
                    it.done = true;
                }
            }
        }
        let mut by_task: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, it) in items.iter().enumerate() {
            if let Some(t) = &it.task {
                by_task.entry(t.clone()).or_default().push(i);
            }
            if !it.done {
                self.timers.insert((it.due_ms, run.run_id.clone(), i));
            }
        }
        self.runs.insert(
            run.run_id.clone(),
            Watch {
                workflow: run.workflow.clone(),
                version: run.version,
                scheduled_ms: run.scheduled_ms,
                items,
                by_task,
            },
        );
    }

    /// Is anything watched?
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The next instant (wall ms) a deadline passes.
    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    /// Item `i` of `run` is settled: `late_at` is when it started / finished, if it did.
    fn settle(
        &mut self,
        run_id: &str,
        i: usize,
        late_at: Option<UnixMillis>,
        now_ms: UnixMillis,
        out: &mut Vec<DeadlineMiss>,
    ) {
        let Some(w) = self.runs.get_mut(run_id) else {
            return;
        };
        let Some(it) = w.items.get_mut(i) else { return };
        if it.done {
            return;
        }
        it.done = true;
        self.timers.remove(&(it.due_ms, run_id.to_string(), i));
        if late_at.is_some_and(|t| t > it.due_ms) {
            out.push(miss(run_id, w, i, now_ms));
        }
    }

    /// A record about to be committed: starts and ends settle deadlines (a late one is a miss,
    /// returned). A run's terminal record ends its watch.
    pub fn observe(&mut self, ev: &StatusEvent, now_ms: UnixMillis) -> Vec<DeadlineMiss> {
        let mut out = Vec::new();
        match ev {
            StatusEvent::Run(r) => {
                let Some(w) = self.runs.get(&r.run_id) else {
                    return out;
                };
                let mut settle: Vec<(usize, Option<UnixMillis>)> = Vec::new();
                for (i, it) in w.items.iter().enumerate() {
                    if it.task.is_some() || it.done {
                        continue;
                    }
                    match it.kind {
                        DeadlineKind::Start if r.started_ms.is_some() => {
                            settle.push((i, r.started_ms))
                        }
                        DeadlineKind::Start if r.state.is_terminal() => settle.push((i, None)),
                        DeadlineKind::Finish if r.state.is_terminal() => {
                            settle.push((i, Some(r.ended_ms.unwrap_or(now_ms))))
                        }
                        _ => {}
                    }
                }
                for (i, at) in settle {
                    self.settle(&r.run_id, i, at, now_ms, &mut out);
                }
                if r.state.is_terminal()
                    && let Some(w) = self.runs.remove(&r.run_id)
                {
                    for (i, it) in w.items.iter().enumerate() {
                        self.timers.remove(&(it.due_ms, r.run_id.clone(), i));
                    }
                }
            }
            StatusEvent::Task(t) => {
                let Some(w) = self.runs.get(&t.run_id) else {
                    return out;
                };
                let Some(idx) = w.by_task.get(&t.task_id) else {
                    return out;
                };
                let started = first_start(t);
                let terminal = t.state.is_terminal();
                let mut settle: Vec<(usize, Option<UnixMillis>)> = Vec::new();
                for &i in idx {
                    let it = &w.items[i];
                    if it.done {
                        continue;
                    }
                    match it.kind {
                        DeadlineKind::Start if started.is_some() => settle.push((i, started)),
                        DeadlineKind::Start if terminal => settle.push((i, None)),
                        DeadlineKind::Finish if terminal => settle.push((i, Some(t.updated_ms))),
                        _ => {}
                    }
                }
                for (i, at) in settle {
                    self.settle(&t.run_id, i, at, now_ms, &mut out);
                }
            }
            _ => {}
        }
        out
    }

    /// Time passed: every deadline due by `now_ms` not yet met is missed (once).
    pub fn handle_time(&mut self, now_ms: UnixMillis) -> Vec<DeadlineMiss> {
        let mut out = Vec::new();
        while let Some((at, _, _)) = self.timers.first() {
            if *at > now_ms {
                break;
            }
            let Some((_, run_id, i)) = self.timers.pop_first() else {
                break;
            };
            if let Some(w) = self.runs.get_mut(&run_id)
                && let Some(it) = w.items.get_mut(i)
                && !it.done
            {
                it.done = true;
                out.push(miss(&run_id, w, i, now_ms));
            }
        }
        out
    }
}

fn miss(run_id: &str, w: &Watch, i: usize, now_ms: UnixMillis) -> DeadlineMiss {
    let it = &w.items[i];
    DeadlineMiss {
        workflow: w.workflow.clone(),
        version: w.version,
        run_id: run_id.to_string(),
        task: it.task.clone(),
        kind: it.kind,
        scheduled_ms: w.scheduled_ms,
        due_ms: it.due_ms,
        detected_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{run_record, workflow};
    use outpost_common::record::{AttemptRecord, LimitsMode, RunKind, RunState, TaskState};

    const T0: UnixMillis = 1_767_225_600_000;
    const S: Duration = Duration::from_secs(1);

    fn task(
        run: &RunRecord,
        id: &str,
        state: TaskState,
        start: Option<i64>,
        at: i64,
    ) -> StatusEvent {
        StatusEvent::Task(TaskInstanceRecord {
            run_id: run.run_id.clone(),
            task_id: id.into(),
            state,
            attempts: start
                .map(|s| AttemptRecord {
                    attempt: 1,
                    started_ms: s,
                    ended_ms: None,
                    pid: None,
                    outcome: None,
                    limits: LimitsMode::None,
                    reason: None,
                    log_path: None,
                    dispatched_ms: None,
                })
                .into_iter()
                .collect(),
            outputs: vec![],
            retry_at_ms: None,
            updated_ms: at,
        })
    }

    fn kinds(m: &[DeadlineMiss]) -> Vec<(Option<&str>, DeadlineKind, i64)> {
        m.iter()
            .map(|d| (d.task.as_deref(), d.kind, d.detected_ms - T0))
            .collect()
    }

    #[test]
    fn a_run_deadline_passes_once_at_its_instant() {
        let wf = workflow("w")
            .task("a", &[])
            .deadlines(Some(10 * S), None)
            .build();
        let run = run_record(&wf, T0, RunKind::Scheduled);
        let mut d = Deadlines::new();
        d.watch(&run, &wf, &[]);
        assert_eq!(d.poll_timeout(), Some(T0 + 10_000));
        assert!(d.handle_time(T0 + 9_999).is_empty());
        let m = d.handle_time(T0 + 10_000);
        assert_eq!(kinds(&m), vec![(None, DeadlineKind::Finish, 10_000)]);
        assert_eq!(m[0].due_ms, T0 + 10_000);
        assert_eq!(m[0].scheduled_ms, T0);
        assert!(d.handle_time(T0 + 60_000).is_empty());
        assert_eq!(d.poll_timeout(), None);
        // The run finishing late after that is not a second miss.
        let mut done = run.clone();
        done.state = RunState::Failed;
        done.ended_ms = Some(T0 + 70_000);
        assert!(d.observe(&StatusEvent::Run(done), T0 + 70_000).is_empty());
        assert!(d.is_empty());
    }

    #[test]
    fn a_task_start_delay_passes_while_it_waits_and_not_again_when_it_starts() {
        let wf = workflow("w")
            .task("a", &[])
            .task_deadlines(None, Some(5 * S))
            .build();
        let run = run_record(&wf, T0, RunKind::Scheduled);
        let mut d = Deadlines::new();
        d.watch(&run, &wf, &[]);
        assert!(
            d.observe(&task(&run, "a", TaskState::Ready, None, T0 + 1), T0 + 1)
                .is_empty()
        );
        let m = d.handle_time(T0 + 6_000);
        assert_eq!(kinds(&m), vec![(Some("a"), DeadlineKind::Start, 6_000)]);
        let late = task(&run, "a", TaskState::Running, Some(T0 + 7_000), T0 + 7_000);
        assert!(d.observe(&late, T0 + 7_000).is_empty());
        assert!(d.handle_time(T0 + 100_000).is_empty());
    }

    #[test]
    fn met_in_time_is_no_miss_and_late_seen_from_the_record_is_one() {
        let wf = workflow("w")
            .task("a", &[])
            .task_deadlines(Some(10 * S), Some(2 * S))
            .build();
        let run = run_record(&wf, T0, RunKind::Scheduled);
        let mut d = Deadlines::new();
        d.watch(&run, &wf, &[]);
        // Started in time ...
        let started = task(&run, "a", TaskState::Running, Some(T0 + 1_000), T0 + 1_000);
        assert!(d.observe(&started, T0 + 1_000).is_empty());
        assert_eq!(d.poll_timeout(), Some(T0 + 10_000));
        // ... finished late, noticed from its record before the timer was handled.
        let ended = task(
            &run,
            "a",
            TaskState::Succeeded,
            Some(T0 + 1_000),
            T0 + 12_000,
        );
        let m = d.observe(&ended, T0 + 12_000);
        assert_eq!(kinds(&m), vec![(Some("a"), DeadlineKind::Finish, 12_000)]);
        assert!(
            d.observe(&ended, T0 + 12_001).is_empty(),
            "the same snapshot again"
        );
        assert!(d.handle_time(T0 + 100_000).is_empty());
    }

    #[test]
    fn a_task_that_ends_without_starting_misses_no_start_deadline() {
        let wf = workflow("w")
            .task("a", &[])
            .task_deadlines(None, Some(2 * S))
            .build();
        let run = run_record(&wf, T0, RunKind::Scheduled);
        let mut d = Deadlines::new();
        d.watch(&run, &wf, &[]);
        let skipped = task(&run, "a", TaskState::UpstreamFailed, None, T0 + 3_000);
        assert!(d.observe(&skipped, T0 + 3_000).is_empty());
        assert!(d.handle_time(T0 + 100_000).is_empty());
    }

    #[test]
    fn a_restored_run_never_reports_a_miss_it_committed_before() {
        let wf = workflow("w")
            .task("a", &[])
            .task_deadlines(Some(10 * S), None)
            .deadlines(Some(20 * S), Some(S))
            .build();
        let mut run = run_record(&wf, T0, RunKind::Scheduled);
        run.state = RunState::Running;
        run.started_ms = Some(T0 + 5_000);
        let mut d = Deadlines::new();
        d.watch(&run, &wf, &[(Some("a".into()), DeadlineKind::Finish)]);
        // The run's start was judged when it started; the task's miss is committed already.
        let m = d.handle_time(T0 + 30_000);
        assert_eq!(kinds(&m), vec![(None, DeadlineKind::Finish, 30_000)]);
    }

    #[test]
    fn a_workflow_without_deadlines_is_not_watched() {
        let wf = workflow("w").task("a", &[]).build();
        let run = run_record(&wf, T0, RunKind::Scheduled);
        let mut d = Deadlines::new();
        d.watch(&run, &wf, &[]);
        assert!(d.is_empty());
        assert_eq!(d.poll_timeout(), None);
    }
}
