//! Hook jobs and deadline misses in the agent's store: committed with the event that makes them
//! ([`Batch::hook_jobs`], `StatusEvent::Deadline`), read by the hook runner at start-up, marked
//! finished durably.

use super::*;

impl Store {
    // ---- hooks and deadlines --------------------------------------------------------------

    /// Hook jobs not finished, in key order: to run (again, after a restart).
    pub fn unfinished_hook_jobs(&self) -> Result<Vec<HookJob>, StoreError> {
        let read = self.begin_read()?;
        let index = read.open_table(HOOK_JOBS_UNFINISHED)?;
        let jobs = read.open_table(HOOK_JOBS)?;
        let mut out = Vec::new();
        for entry in index.iter()? {
            let (key, _) = entry?;
            let key = key.value();
            match jobs.get(key)? {
                Some(v) => match decode::<HookJob>(v.value(), "hook_jobs", key) {
                    Ok(job) => out.push(job),
                    Err(e) => tracing::error!(job = key, "hook job not run: {e}"),
                },
                None => {
                    return Err(DbError::Inconsistent(format!(
                        "unfinished hook index refers to missing job {key}"
                    ))
                    .into());
                }
            }
        }
        Ok(out)
    }

    /// The hook job with this key.
    pub fn hook_job(&self, key: &str) -> Result<Option<HookJob>, StoreError> {
        let read = self.begin_read()?;
        let jobs = read.open_table(HOOK_JOBS)?;
        jobs.get(key)?
            .map(|v| decode::<HookJob>(v.value(), "hook_jobs", key))
            .transpose()
            .map_err(Into::into)
    }

    /// Mark a hook job finished, durably: it never runs again. Unknown or finished: no-op.
    pub fn finish_hook_job(&self, key: &str, now_ms: UnixMillis) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut jobs = txn.open_table(HOOK_JOBS)?;
            let mut unfinished = txn.open_table(HOOK_JOBS_UNFINISHED)?;
            let job = jobs
                .get(key)?
                .map(|v| decode::<HookJob>(v.value(), "hook_jobs", key))
                .transpose()?;
            if let Some(mut job) = job
                && job.finished_ms.is_none()
            {
                job.finished_ms = Some(now_ms);
                let bytes = encode(&job)?;
                jobs.insert(key, bytes.as_slice())?;
            }
            unfinished.remove(key)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The deadline misses committed for a run: (task, kind), `None` for the run's own.
    pub fn deadline_misses(
        &self,
        run_id: &str,
    ) -> Result<Vec<(Option<String>, DeadlineKind)>, StoreError> {
        let read = self.begin_read()?;
        let table = read.open_table(DEADLINE_MISSES)?;
        let hi = successor(run_id);
        let mut out = Vec::new();
        for entry in table.range((run_id, "", "")..(hi.as_str(), "", ""))? {
            let (key, _) = entry?;
            let (_, task, kind) = key.value();
            let kind = match kind {
                "max_start_delay" => DeadlineKind::Start,
                _ => DeadlineKind::Finish,
            };
            out.push(((!task.is_empty()).then(|| task.to_string()), kind));
        }
        Ok(out)
    }
}
