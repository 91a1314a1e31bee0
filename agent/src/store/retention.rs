//! Retention: which finished runs the agent's store deletes, and what keeps one.

use super::*;

impl Store {
    // ---- retention -------------------------------------------------------------------------

    /// Delete terminal runs (and their task instances) that are older than `max_age` or beyond
    /// the newest `max_runs_per_workflow` of their workflow, in one transaction. Never deletes a
    /// non-terminal run, nor a run an unacknowledged outbox entry refers to. Returns the pruned
    /// run ids (the caller deletes their log directories).
    pub fn prune(&self, policy: Retention, now_ms: UnixMillis) -> Result<Vec<RunId>, StoreError> {
        self.prune_at_most(policy, now_ms, usize::MAX)
    }

    /// [`Store::prune`], deleting at most `limit` runs, oldest (by creation) first.
    pub fn prune_at_most(
        &self,
        policy: Retention,
        now_ms: UnixMillis,
        limit: usize,
    ) -> Result<Vec<RunId>, StoreError> {
        if (policy.max_age.is_none() && policy.max_runs_per_workflow.is_none()) || limit == 0 {
            return Ok(Vec::new());
        }
        let cutoff = policy
            .max_age
            .map(|age| now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
        let txn = self.begin_write()?;
        let pruned = {
            let mut runs = RunTables::open(&txn)?;
            let mut tasks = txn.open_table(TASKS)?;
            let refs = txn.open_table(OUTBOX_RUN_REFS)?;
            let mut jobs = txn.open_table(HOOK_JOBS)?;
            let unfinished_jobs = txn.open_table(HOOK_JOBS_UNFINISHED)?;
            let mut deadlines = txn.open_table(DEADLINE_MISSES)?;
            // Candidates from the index alone: (created, run id, beyond the per-workflow count).
            let mut candidates: Vec<(i64, String, bool)> = Vec::new();
            let mut current: Option<String> = None;
            let mut rank = 0usize;
            for entry in runs.by_workflow.iter()?.rev() {
                let (key, _) = entry?;
                let (workflow, created_ms, run_id) = key.value();
                if current.as_deref() != Some(workflow) {
                    current = Some(workflow.to_string());
                    rank = 0;
                }
                let over_count = policy.max_runs_per_workflow.is_some_and(|n| rank >= n);
                // created ≤ ended, so a run created after the cutoff cannot have ended before it.
                let maybe_old = cutoff.is_some_and(|c| created_ms < c);
                if over_count || maybe_old {
                    candidates.push((created_ms, run_id.to_string(), over_count));
                }
                rank += 1;
            }
            candidates.sort();
            let mut pruned = Vec::new();
            for (_, run_id, over_count) in candidates {
                if pruned.len() >= limit {
                    break;
                }
                let Some(run) = get_run(&runs.runs, &run_id)? else {
                    return Err(DbError::Inconsistent(format!(
                        "run index refers to missing run {run_id}"
                    ))
                    .into());
                };
                if !run.state.is_terminal() {
                    continue;
                }
                let old = cutoff.is_some_and(|c| run.ended_ms.unwrap_or(run.created_ms) < c);
                if !(over_count || old) {
                    continue;
                }
                let hi = successor(&run_id);
                if refs
                    .range((run_id.as_str(), 0)..(hi.as_str(), 0))?
                    .next()
                    .is_some()
                {
                    continue;
                }
                // A hook job still to run keeps its run (its log directory) too.
                let (jlo, jhi) = (format!("{run_id}\u{1f}"), format!("{run_id}\u{20}"));
                if unfinished_jobs
                    .range(jlo.as_str()..jhi.as_str())?
                    .next()
                    .is_some()
                {
                    continue;
                }
                runs.delete(&run)?;
                let mut job_keys = Vec::new();
                for entry in jobs.range(jlo.as_str()..jhi.as_str())? {
                    let (key, _) = entry?;
                    job_keys.push(key.value().to_string());
                }
                for key in &job_keys {
                    jobs.remove(key.as_str())?;
                }
                let mut miss_keys = Vec::new();
                for entry in deadlines.range((run_id.as_str(), "", "")..(hi.as_str(), "", ""))? {
                    let (key, _) = entry?;
                    let (_, task, kind) = key.value();
                    miss_keys.push((task.to_string(), kind.to_string()));
                }
                for (task, kind) in &miss_keys {
                    deadlines.remove((run_id.as_str(), task.as_str(), kind.as_str()))?;
                }
                let mut task_keys = Vec::new();
                for entry in tasks.range((run_id.as_str(), "")..(hi.as_str(), ""))? {
                    let (key, _) = entry?;
                    task_keys.push(key.value().1.to_string());
                }
                for task_id in &task_keys {
                    tasks.remove((run_id.as_str(), task_id.as_str()))?;
                }
                pruned.push(run_id);
            }
            pruned
        };
        if pruned.is_empty() {
            txn.abort()?;
        } else {
            txn.commit()?;
        }
        Ok(pruned)
    }
}
