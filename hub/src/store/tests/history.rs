//! Ingest against a shared run history (`history.rs`), with an in-memory one standing in for
//! PostgreSQL: two replicas' stores share it; an agent moves between them; the shared commit
//! fails after the local one (the crash window); the history is down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use outpost_alerts::InputEvent;

use super::super::history::{HistoryLock, IngestBatch, SharedHistory};
use super::*;
use crate::firings::watch::Reported;

#[derive(Default)]
struct Mem {
    seq: HashMap<String, u64>,
    runs: BTreeMap<(String, String), RunRecord>,
    tasks: BTreeMap<(String, String, String), TaskInstanceRecord>,
    /// The next commit fails (after the local one: the crash window).
    fail_commit: bool,
    down: bool,
    commits: usize,
}

#[derive(Default, Clone)]
struct MemHistory(Arc<Mutex<Mem>>);

struct MemLock {
    h: MemHistory,
    seq: u64,
    failed: HashSet<String>,
}

impl HistoryLock for MemLock {
    fn committed_seq(&self) -> u64 {
        self.seq
    }
    fn failed_task_runs(&self) -> &HashSet<String> {
        &self.failed
    }
    fn commit(self: Box<Self>, b: &IngestBatch<'_>) -> Result<(), StoreError> {
        let mut m = self.h.0.lock().unwrap();
        if std::mem::take(&mut m.fail_commit) {
            return Err(StoreError::History("commit failed".into()));
        }
        for e in b.entries {
            match &e.event {
                StatusEvent::Run(r) => {
                    let mut r = r.clone();
                    r.agent_id = Some(b.agent.into());
                    m.runs.insert((b.agent.into(), r.run_id.clone()), r);
                }
                StatusEvent::Task(t) => {
                    m.tasks.insert(
                        (b.agent.into(), t.run_id.clone(), t.task_id.clone()),
                        t.clone(),
                    );
                }
                _ => {}
            }
        }
        m.seq.insert(b.agent.into(), b.seq);
        m.commits += 1;
        Ok(())
    }
}

impl SharedHistory for MemHistory {
    fn committed_seq(&self, agent: &str) -> Result<u64, StoreError> {
        Ok(self.0.lock().unwrap().seq.get(agent).copied().unwrap_or(0))
    }
    fn lock_agent<'a>(
        &'a self,
        agent: &str,
        ending: &[&str],
    ) -> Result<Box<dyn HistoryLock + 'a>, StoreError> {
        let m = self.0.lock().unwrap();
        if m.down {
            return Err(StoreError::History("down".into()));
        }
        let seq = m.seq.get(agent).copied().unwrap_or(0);
        let failed = m
            .tasks
            .iter()
            .filter(|((a, r, _), t)| {
                a == agent && t.state == TaskState::Failed && ending.contains(&r.as_str())
            })
            .map(|((_, r, _), _)| r.clone())
            .collect();
        Ok(Box::new(MemLock {
            h: self.clone(),
            seq,
            failed,
        }))
    }
    fn runs(&self, q: &RunQuery) -> Result<Vec<HubRun>, StoreError> {
        let m = self.0.lock().unwrap();
        let mut out: Vec<HubRun> = m
            .runs
            .iter()
            .filter(|((a, _), _)| q.agent.as_deref().is_none_or(|x| x == a))
            .map(|((a, _), r)| HubRun {
                agent_id: a.clone(),
                record: r.clone(),
            })
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.record.created_ms));
        out.truncate(q.limit);
        Ok(out)
    }
    fn run(
        &self,
        agent: &str,
        run_id: &str,
    ) -> Result<Option<(RunRecord, Vec<TaskInstanceRecord>)>, StoreError> {
        let m = self.0.lock().unwrap();
        Ok(m.runs.get(&(agent.into(), run_id.into())).map(|r| {
            let tasks = m
                .tasks
                .iter()
                .filter(|((a, r, _), _)| a == agent && r == run_id)
                .map(|(_, t)| t.clone())
                .collect();
            (r.clone(), tasks)
        }))
    }
    fn run_agents(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        let m = self.0.lock().unwrap();
        Ok(m.runs
            .keys()
            .filter(|(_, r)| r == run_id)
            .map(|(a, _)| a.clone())
            .collect())
    }
    fn run_had_failed_task(&self, agent: &str, run_id: &str) -> Result<bool, StoreError> {
        let m = self.0.lock().unwrap();
        Ok(m.tasks
            .iter()
            .any(|((a, r, _), t)| a == agent && r == run_id && t.state == TaskState::Failed))
    }
    fn reported_firings(
        &self,
        _agent: &str,
        _workflow: &str,
        _start: i64,
        _end: i64,
    ) -> Result<Reported, StoreError> {
        Ok(Reported::default())
    }
    fn missed(&self, _agent: &str) -> Result<Vec<(u64, MissedFirings)>, StoreError> {
        Ok(Vec::new())
    }
    fn apply_retention(
        &self,
        _policy: &RetentionPolicy,
        _now_ms: i64,
        _held: &[String],
    ) -> Result<RetentionReport, StoreError> {
        Ok(RetentionReport::default())
    }
}

/// Two replicas' stores that know agent-1, sharing `h`.
fn replicas(h: &MemHistory) -> (tempfile::TempDir, Store, Store) {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(&dir.path().join("a.redb")).unwrap();
    let b = Store::open(&dir.path().join("b.redb")).unwrap();
    for s in [&a, &b] {
        enrolled(s, "agent-1");
        s.set_history(Arc::new(h.clone()));
    }
    (dir, a, b)
}

/// The `RunFinished` inputs queued for alerting: (run, succeeded).
fn finished(s: &Store) -> Vec<(String, bool)> {
    s.alert_inputs(1000)
        .unwrap()
        .into_iter()
        .filter_map(|(_, i)| match i.event {
            InputEvent::RunFinished {
                run_id, succeeded, ..
            } => Some((run_id, succeeded)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_agent_that_moves_resumes_from_the_shared_sequence_and_its_history_is_one() {
    let h = MemHistory::default();
    let (_d, a, b) = replicas(&h);
    let first = vec![
        entry(1, StatusEvent::Run(run("r1", 100, RunState::Running))),
        entry(2, StatusEvent::Task(task("r1", "t", TaskState::Failed))),
    ];
    assert_eq!(a.ingest("agent-1", &first).unwrap(), 2);
    // B never saw the agent: it answers from the shared history.
    assert_eq!(b.committed_seq("agent-1").unwrap(), 2);
    assert_eq!(b.run_agents("r1").unwrap(), ["agent-1"]);
    assert!(b.run_had_failed_task("agent-1", "r1").unwrap());
    // The agent moved to B and resends what A never acknowledged, then more: only what the
    // shared history lacks is taken, and the run that ends at B past the task that failed at
    // A is told as a failure.
    let moved = vec![
        entry(2, StatusEvent::Task(task("r1", "t", TaskState::Failed))),
        entry(3, StatusEvent::Run(run("r1", 100, RunState::Succeeded))),
    ];
    assert_eq!(b.ingest_batch("agent-1", &moved, 5).unwrap(), (2, 3));
    assert_eq!(finished(&b), [("r1".to_string(), false)]);
    assert!(finished(&a).is_empty());
    let (r, tasks) = a.run("agent-1", "r1").unwrap().unwrap();
    assert_eq!((r.state, tasks.len()), (RunState::Succeeded, 1));
    assert_eq!(a.runs(&RunQuery::default()).unwrap().len(), 1);
    // A retransmission anywhere changes nothing, and queues nothing again.
    assert_eq!(a.ingest_batch("agent-1", &moved, 6).unwrap(), (3, 3));
    assert_eq!(b.ingest_batch("agent-1", &moved, 6).unwrap(), (3, 3));
    assert_eq!(finished(&b).len(), 1);
    assert!(finished(&a).is_empty());
    assert_eq!(h.0.lock().unwrap().commits, 2);
}

#[test]
fn a_shared_commit_that_fails_is_not_acknowledged_and_its_retry_is_queued_once() {
    let h = MemHistory::default();
    let (_d, a, _b) = replicas(&h);
    let batch = vec![entry(1, StatusEvent::Run(run("r1", 100, RunState::Failed)))];
    h.0.lock().unwrap().fail_commit = true;
    assert!(matches!(
        a.ingest("agent-1", &batch),
        Err(StoreError::History(_))
    ));
    // Not in the shared history: the agent was not told it is committed, and sends it again.
    assert_eq!(a.committed_seq("agent-1").unwrap(), 0);
    assert!(a.run("agent-1", "r1").unwrap().is_none());
    assert_eq!(a.ingest("agent-1", &batch).unwrap(), 1);
    assert!(a.run("agent-1", "r1").unwrap().is_some());
    // The local ingest had queued its alert input before the shared commit failed; the retry
    // at the same replica does not queue it again.
    assert_eq!(finished(&a), [("r1".to_string(), false)]);
}

#[test]
fn with_the_shared_history_down_nothing_is_committed_anywhere() {
    let h = MemHistory::default();
    let (_d, a, _b) = replicas(&h);
    h.0.lock().unwrap().down = true;
    let batch = vec![entry(1, StatusEvent::Run(run("r1", 100, RunState::Failed)))];
    assert!(matches!(
        a.ingest("agent-1", &batch),
        Err(StoreError::History(_))
    ));
    assert!(finished(&a).is_empty());
    assert_eq!(a.agent("agent-1").unwrap().committed_seq, 0);
    h.0.lock().unwrap().down = false;
    assert_eq!(a.ingest("agent-1", &batch).unwrap(), 1);
    assert_eq!(finished(&a).len(), 1);
}
