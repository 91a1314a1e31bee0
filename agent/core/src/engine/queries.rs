//! What the engine answers about its state: runs, task states, counts, upstream outputs, and
//! the self-check of its indexes (tests and debug builds).

use super::*;

impl Engine {
    /// Outputs of the transitive upstream tasks of `task`: (task id, key, value), in task order.
    pub fn upstream_outputs(&self, run_id: &str, task: TaskIdx) -> Vec<(String, String, String)> {
        let Some(run) = self.runs.get(run_id).or_else(|| self.finished.get(run_id)) else {
            return Vec::new();
        };
        if task >= run.tasks.len() || run.with_outputs == 0 {
            return Vec::new();
        }
        // Ancestors through edges to lower indices (as validated workflows have), found by a
        // walk from `task`: O(ancestors), not O(task index).
        let mut seen: BTreeSet<TaskIdx> = BTreeSet::new();
        let mut stack = vec![task];
        while let Some(i) = stack.pop() {
            for &u in &run.wf.tasks[i].upstream {
                if u < i && seen.insert(u) {
                    stack.push(u);
                }
            }
        }
        let mut out = Vec::new();
        for i in seen {
            let rec = &run.tasks[i].rec;
            for (k, v) in &rec.outputs {
                out.push((rec.task_id.clone(), k.clone(), v.clone()));
            }
        }
        out
    }

    /// Records of the active (queued or running, including cancelling) runs.
    pub fn active_run_records(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs.values().map(|r| &r.rec)
    }

    /// (task id, state) of every task of an active or recently finished run (empty for a run
    /// that never started).
    pub fn task_states(&self, run_id: &str) -> Option<Vec<(String, TaskState)>> {
        let (_, tasks) = self.run_snapshot(run_id)?;
        Some(tasks.into_iter().map(|t| (t.task_id, t.state)).collect())
    }

    /// The run record of an active or recently finished run (no task records: cheap).
    pub fn run_record(&self, run_id: &str) -> Option<&RunRecord> {
        self.runs
            .get(run_id)
            .or_else(|| self.finished.get(run_id))
            .map(|r| &r.rec)
    }

    /// Full records of an active or recently finished run.
    pub fn run_snapshot(&self, run_id: &str) -> Option<(RunRecord, Vec<TaskInstanceRecord>)> {
        self.runs
            .get(run_id)
            .or_else(|| self.finished.get(run_id))
            .map(RunSlot::snapshot)
    }

    /// Number of running attempts.
    pub fn running_count(&self) -> usize {
        self.running
    }

    /// Number of ready attempts waiting for a slot (or a resource).
    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// Units in use per resource.
    pub fn resources_in_use(&self) -> &BTreeMap<String, u32> {
        &self.in_use
    }

    /// Whether `stop_starting` was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Check the incremental indexes (terminal counts, upstream counters, timer index, ready
    /// queue) against a full recomputation from the task states; O(tasks). For tests.
    #[cfg(any(test, feature = "testutil"))]
    pub fn check_indexes(&self) -> Result<(), String> {
        let mut timers = BTreeSet::new();
        let mut dispatched = 0usize;
        for (id, run) in &self.runs {
            let terminal = run
                .tasks
                .iter()
                .filter(|t| t.rec.state.is_terminal())
                .count();
            if terminal != run.terminal {
                return Err(format!("run {id}: terminal {} != {terminal}", run.terminal));
            }
            for (i, ts) in run.tasks.iter().enumerate() {
                let ups: Vec<TaskState> = run.wf.tasks[i]
                    .upstream
                    .iter()
                    .filter_map(|&u| run.tasks.get(u).map(|t| t.rec.state))
                    .collect();
                let want = UpstreamCounts::of(&ups);
                if ts.up != want {
                    return Err(format!("run {id} task {i}: counts {:?} != {want:?}", ts.up));
                }
                let t = match ts.rec.state {
                    TaskState::Running if ts.kill.is_none() => {
                        ts.deadline.map(|d| (d, TimerKind::Deadline))
                    }
                    TaskState::UpForRetry => ts.retry_at.map(|d| (d, TimerKind::Retry)),
                    _ => None,
                };
                if t != ts.timer {
                    return Err(format!("run {id} task {i}: timer {:?} != {t:?}", ts.timer));
                }
                if let Some((at, kind)) = t {
                    timers.insert((at, id.clone(), i, kind));
                }
                if ts.rec.state == TaskState::Ready {
                    let key = (
                        -(run.wf.tasks[i].priority as i64),
                        run.rec.scheduled_ms,
                        id.clone(),
                        i,
                    );
                    if !self.ready.contains(&key) {
                        return Err(format!("run {id} task {i}: ready but not queued"));
                    }
                }
                if ts.dispatched {
                    dispatched += 1;
                    let key = (
                        -(run.wf.tasks[i].priority as i64),
                        run.rec.scheduled_ms,
                        id.clone(),
                        i,
                    );
                    let open = ts
                        .rec
                        .attempts
                        .last()
                        .is_some_and(|a| a.outcome.is_none() && a.dispatched_ms.is_some());
                    if ts.rec.state != TaskState::Running || !open || !self.ready.contains(&key) {
                        return Err(format!("run {id} task {i}: dispatched but {ts:?}"));
                    }
                }
            }
        }
        if dispatched != self.dispatched || dispatched > self.cfg.dispatch_ahead {
            return Err(format!(
                "dispatched {} != recomputed {dispatched} (at most {})",
                self.dispatched, self.cfg.dispatch_ahead
            ));
        }
        if timers != self.timers {
            return Err(format!(
                "timer index {:?} != recomputed {timers:?}",
                self.timers
            ));
        }
        Ok(())
    }

    // ---- internals ----
}
