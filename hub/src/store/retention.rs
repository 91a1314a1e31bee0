//! Run-history retention: delete runs past an age or beyond a count per (agent, workflow), with
//! their task instances and every index entry, in bounded batches.
//!
//! One call of [`Store::apply_retention`] finds at most `batch` victims in a read transaction
//! (readers never block the writer) and deletes them in one short write transaction, re-checking
//! each one there. Never deleted: a run that is not finished, a run younger than `keep_recent`
//! (the missed-firing watch still looks its instant up), and the runs of a workflow with an
//! active rollout. Time is an argument (sans-IO): the caller's timer decides when.

use outpost_common::record::{RunKind, RunRecord, UnixMillis};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

use super::error::{StoreError, decode};
use super::file::Store;
use super::rollouts::has_active_rollout;
use super::schema::{
    DECISIONS, RUNS, RUNS_BY_CREATED, RUNS_BY_ID, RUNS_BY_INSTANT, RUNS_BY_WORKFLOW, TASKS,
};

/// What retention keeps. Both limits are optional; with neither, nothing is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Delete finished runs created longer ago than this (ms).
    pub max_age_ms: Option<i64>,
    /// Keep at most this many runs of each workflow on each agent (the newest).
    pub max_runs_per_workflow: Option<u64>,
    /// Never delete a run created less than this long ago (ms).
    pub keep_recent_ms: i64,
    /// Most runs deleted in one write transaction.
    pub batch: usize,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            max_age_ms: None,
            max_runs_per_workflow: None,
            keep_recent_ms: 3_600_000,
            batch: 500,
        }
    }
}

impl RetentionPolicy {
    /// Whether it deletes anything at all.
    pub fn enabled(&self) -> bool {
        self.max_age_ms.is_some() || self.max_runs_per_workflow.is_some()
    }
}

/// What one [`Store::apply_retention`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Runs deleted.
    pub runs: usize,
    /// Task instances deleted with them.
    pub tasks: usize,
    /// The batch was full: call again for more.
    pub more: bool,
}

/// A run to delete: (agent, run id).
type Victim = (String, String);

/// The upper bound of the keys that start with `s` (for `(s, ...)` ranges): `s` + NUL.
fn after(s: &str) -> String {
    format!("{s}\0")
}

/// Whether a workflow has an active rollout, from a read transaction.
fn rollout_active(txn: &ReadTransaction, workflow: &str) -> Result<bool, StoreError> {
    let t = txn.open_table(DECISIONS)?;
    let end = after(workflow);
    for e in t.range((workflow, "")..(end.as_str(), ""))? {
        let (k, v) = e?;
        let d: super::pools::PoolDecision = decode(v.value(), "pool_decisions", k.value().0)?;
        if d.rollout.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Store {
    /// Delete at most `policy.batch` runs that `policy` no longer keeps at `now_ms`, with their
    /// task instances and index entries, in one write transaction.
    pub fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        now_ms: UnixMillis,
    ) -> Result<RetentionReport, StoreError> {
        if !policy.enabled() || policy.batch == 0 {
            return Ok(RetentionReport::default());
        }
        let victims = self.retention_victims(policy, now_ms)?;
        let mut report = RetentionReport::default();
        if !victims.is_empty() {
            let more = victims.len() >= policy.batch;
            let txn = self.begin_write()?;
            let (runs, tasks) = delete_runs(&txn, &victims, policy.keep_recent_ms, now_ms)?;
            txn.commit()?;
            report = RetentionReport { runs, tasks, more };
        }
        // The shared run history (HA mode): the same policy, by the same rules, there.
        if let Some(h) = self.shared_history() {
            let held = self.rollout_workflows()?;
            let shared = h.apply_retention(policy, now_ms, &held)?;
            report.runs += shared.runs;
            report.tasks += shared.tasks;
            report.more |= shared.more;
        }
        Ok(report)
    }

    /// The workflows with an active rollout (their runs are kept).
    fn rollout_workflows(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(DECISIONS)?;
        let mut out: Vec<String> = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            let d: super::pools::PoolDecision = decode(v.value(), "pool_decisions", k.value().0)?;
            let wf = k.value().0;
            if d.rollout.is_some() && out.last().map(String::as_str) != Some(wf) {
                out.push(wf.to_string());
            }
        }
        Ok(out)
    }

    /// Up to `policy.batch` runs to delete: by age first (oldest first), then by count.
    fn retention_victims(
        &self,
        policy: &RetentionPolicy,
        now_ms: UnixMillis,
    ) -> Result<Vec<Victim>, StoreError> {
        let txn = self.db().begin_read()?;
        let runs = txn.open_table(RUNS)?;
        let recent = now_ms.saturating_sub(policy.keep_recent_ms);
        let mut rollout_cache: std::collections::HashMap<String, bool> = Default::default();
        let mut keep_for_rollout = |wf: &str| -> Result<bool, StoreError> {
            if let Some(a) = rollout_cache.get(wf) {
                return Ok(*a);
            }
            let a = rollout_active(&txn, wf)?;
            rollout_cache.insert(wf.to_string(), a);
            Ok(a)
        };
        let deletable = |r: &RunRecord| r.state.is_terminal() && r.created_ms < recent;
        let mut out: Vec<Victim> = Vec::new();
        let mut seen: std::collections::HashSet<Victim> = Default::default();
        if let Some(age) = policy.max_age_ms {
            let cutoff = now_ms.saturating_sub(age).min(recent);
            let idx = txn.open_table(RUNS_BY_CREATED)?;
            for e in idx.range((i64::MIN, "", "")..(cutoff, "", ""))? {
                if out.len() >= policy.batch {
                    break;
                }
                let (k, _) = e?;
                let (_, agent, run_id) = k.value();
                let Some(v) = runs.get((agent, run_id))? else {
                    continue;
                };
                let r: RunRecord = decode(v.value(), "runs", run_id)?;
                if deletable(&r) && !keep_for_rollout(&r.workflow)? {
                    let victim = (agent.to_string(), run_id.to_string());
                    seen.insert(victim.clone());
                    out.push(victim);
                }
            }
        }
        if let Some(max) = policy.max_runs_per_workflow {
            let idx = txn.open_table(RUNS_BY_WORKFLOW)?;
            // Group by group: count the group's runs, then take its oldest beyond `max`.
            let mut cursor: Option<(String, String)> = None;
            while out.len() < policy.batch {
                let next = match &cursor {
                    None => idx.first()?.map(|(k, _)| {
                        let (a, w, _, _) = k.value();
                        (a.to_string(), w.to_string())
                    }),
                    Some((a, w)) => {
                        let end = after(w);
                        idx.range((a.as_str(), end.as_str(), i64::MIN, "")..)?
                            .next()
                            .transpose()?
                            .map(|(k, _)| {
                                let (a, w, _, _) = k.value();
                                (a.to_string(), w.to_string())
                            })
                    }
                };
                let Some((agent, wf)) = next else { break };
                let end = after(&wf);
                let lo = (agent.as_str(), wf.as_str(), i64::MIN, "");
                let hi = (agent.as_str(), end.as_str(), i64::MIN, "");
                let count = idx.range(lo..hi)?.count() as u64;
                if count > max && !keep_for_rollout(&wf)? {
                    let mut excess = count - max;
                    for e in idx.range(lo..hi)? {
                        if excess == 0 || out.len() >= policy.batch {
                            break;
                        }
                        excess -= 1;
                        let (k, _) = e?;
                        let (_, _, _, run_id) = k.value();
                        let victim = (agent.clone(), run_id.to_string());
                        if seen.contains(&victim) {
                            continue;
                        }
                        let Some(v) = runs.get((agent.as_str(), run_id))? else {
                            continue;
                        };
                        let r: RunRecord = decode(v.value(), "runs", run_id)?;
                        if deletable(&r) {
                            seen.insert(victim.clone());
                            out.push(victim);
                        }
                    }
                }
                cursor = Some((agent, wf));
            }
        }
        Ok(out)
    }
}

/// Delete `victims` in `txn` (each re-checked: still finished, still old enough, no active
/// rollout of its workflow): the run, its task instances and its entries in every run index.
/// Returns (runs, tasks) deleted.
fn delete_runs(
    txn: &WriteTransaction,
    victims: &[Victim],
    keep_recent_ms: i64,
    now_ms: UnixMillis,
) -> Result<(usize, usize), StoreError> {
    let mut runs = txn.open_table(RUNS)?;
    let mut by_id = txn.open_table(RUNS_BY_ID)?;
    let mut by_created = txn.open_table(RUNS_BY_CREATED)?;
    let mut by_instant = txn.open_table(RUNS_BY_INSTANT)?;
    let mut by_workflow = txn.open_table(RUNS_BY_WORKFLOW)?;
    let mut tasks = txn.open_table(TASKS)?;
    let recent = now_ms.saturating_sub(keep_recent_ms);
    let mut rollout_cache: std::collections::HashMap<String, bool> = Default::default();
    let (mut n_runs, mut n_tasks) = (0, 0);
    for (agent, run_id) in victims {
        let (a, id) = (agent.as_str(), run_id.as_str());
        let r: RunRecord = match runs.get((a, id))? {
            Some(v) => decode(v.value(), "runs", id)?,
            None => continue,
        };
        if !r.state.is_terminal() || r.created_ms >= recent {
            continue;
        }
        let active = match rollout_cache.get(&r.workflow) {
            Some(x) => *x,
            None => {
                let x = has_active_rollout(txn, &r.workflow)?;
                rollout_cache.insert(r.workflow.clone(), x);
                x
            }
        };
        if active {
            continue;
        }
        runs.remove((a, id))?;
        by_id.remove((id, a))?;
        by_created.remove((r.created_ms, a, id))?;
        by_workflow.remove((a, r.workflow.as_str(), r.created_ms, id))?;
        if r.kind != RunKind::Manual {
            by_instant.remove((a, r.workflow.as_str(), r.scheduled_ms))?;
        }
        let end = after(id);
        let n = tasks.range((a, id, "")..(a, end.as_str(), ""))?.count();
        tasks.retain_in((a, id, "")..(a, end.as_str(), ""), |_, _| false)?;
        n_tasks += n;
        n_runs += 1;
    }
    Ok((n_runs, n_tasks))
}

impl Store {
    /// Compact the store file in place: move pages down and truncate the free space at its end
    /// (redb `Database::compact`, repeated until it has nothing left to do). Online: it waits
    /// for the store to itself (no transaction in progress), and transactions wait while it runs.
    /// Returns the file size before and after.
    pub fn compact(&self) -> Result<(u64, u64), StoreError> {
        let size = |p: &std::path::Path| {
            std::fs::metadata(p).map(|m| m.len()).map_err(|source| {
                StoreError::Db(super::error::DbError::File {
                    path: p.to_path_buf(),
                    source,
                })
            })
        };
        let before = size(&self.path)?;
        // The write lock stops new transactions; one begun before it was taken may still be
        // open (a transaction outlives the read guard it began under): wait for it to finish.
        let mut db = self.db_mut();
        let mut busy = 0;
        let mut rounds = 0;
        while rounds < 16 {
            match db.compact() {
                Ok(true) => rounds += 1,
                Ok(false) => break,
                Err(redb::CompactionError::TransactionInProgress) if busy < 500 => {
                    busy += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(StoreError::Db(super::error::DbError::Redb(
                        redb::Error::from(e),
                    )));
                }
            }
        }
        drop(db);
        Ok((before, size(&self.path)?))
    }
}

impl Store {
    /// [`Store::runs`] of one agent and one workflow, newest first, straight from the
    /// `runs_by_workflow` index (the other filters of `q` applied on the way).
    pub(super) fn runs_of(
        &self,
        agent: &str,
        workflow: &str,
        q: &super::records::RunQuery,
    ) -> Result<Vec<super::records::HubRun>, StoreError> {
        let txn = self.db().begin_read()?;
        let idx = txn.open_table(RUNS_BY_WORKFLOW)?;
        let runs = txn.open_table(RUNS)?;
        let end = after(workflow);
        let since = q.since_ms.unwrap_or(i64::MIN);
        let lo = (agent, workflow, since, "");
        let mut out = Vec::new();
        // A cursor bounds the range at its creation time (the rows of that very millisecond
        // are sorted out below, in the listing's order: time, agent, run id).
        let range = match &q.before {
            Some(c) if c.created_ms < since => return Ok(out),
            Some(c) => match c.created_ms.checked_add(1) {
                Some(t) => idx.range(lo..(agent, workflow, t, ""))?,
                None => idx.range(lo..(agent, end.as_str(), i64::MIN, ""))?,
            },
            None => idx.range(lo..(agent, end.as_str(), i64::MIN, ""))?,
        };
        for e in range.rev() {
            if out.len() >= q.limit {
                break;
            }
            let (k, _) = e?;
            let (_, _, created, run_id) = k.value();
            if q.before.as_ref().is_some_and(|c| {
                (created, agent, run_id) >= (c.created_ms, c.agent.as_str(), c.run_id.as_str())
            }) {
                continue;
            }
            let Some(v) = runs.get((agent, run_id))? else {
                continue;
            };
            let record: RunRecord = decode(v.value(), "runs", run_id)?;
            if q.state.is_some_and(|s| s != record.state) {
                continue;
            }
            out.push(super::records::HubRun {
                agent_id: agent.to_string(),
                record,
            });
        }
        Ok(out)
    }
}
