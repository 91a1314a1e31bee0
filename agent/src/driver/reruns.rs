//! Operator run commands beyond triggers: `run retry` (reopen a finished run), `trigger --at`
//! (a manual run with a past logical time) and `workflow backfill` (runs for past schedule
//! instants, a durable queue released at most `max_active` at a time).
//!
//! The backfill queue is one entry of the agent's key/value table ([`BACKFILL_KEY`]), written in
//! the commit pipeline's batches: a queued instant leaves the queue in the batch of its run's
//! record or a later one, so a crash never loses an instant, and an instant whose run exists
//! already is dropped as present (the run id is the live firing's: one instant, one run).

use anyhow::Context as _;
use minicbor::{Decode, Encode};
use outpost_agent_core::rerun::{self, RetrySelection};
use outpost_common::clock::Now;
use outpost_common::model::Overlap;
use outpost_common::record::{RunId, RunKind, run_id};

use super::Driver;

/// The `agent_meta` key of the backfill queues (cbor `Vec<BackfillQueue>`).
pub(super) const BACKFILL_KEY: &str = "backfill_queues";

/// The backfill runs of one workflow still to start, and those started and not finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub(crate) struct BackfillQueue {
    #[n(0)]
    pub workflow: String,
    /// At most this many of its runs active at once (at least 1).
    #[n(1)]
    pub max_active: u32,
    /// Instants (ms) still to run, ascending.
    #[n(2)]
    pub instants: Vec<i64>,
    /// Runs this queue started that were active when last written.
    #[n(3)]
    pub active: Vec<RunId>,
}

impl Driver {
    /// `run retry`: reopen the finished run `run_id` and run the chosen tasks again as new
    /// attempts. Refused while the run is active (so a repeated command starts nothing twice)
    /// and, with `if_ended_ms`, when the run ended at another time than the caller saw (it was
    /// retried meanwhile). The reopened records are committed before any attempt starts.
    pub fn retry(
        &mut self,
        run_id: &str,
        sel: RetrySelection,
        if_ended_ms: Option<i64>,
    ) -> anyhow::Result<String> {
        if self.stopping {
            anyhow::bail!("the agent is shutting down");
        }
        if self.runs.contains_key(run_id) {
            anyhow::bail!(
                "run {run_id} is active (already retried?): only a finished run can be retried"
            );
        }
        let (run, tasks) = self.lookup_run(run_id)?;
        if let Some(seen) = if_ended_ms
            && run.ended_ms != Some(seen)
        {
            anyhow::bail!(
                "run {run_id} changed since it was read (it is {} now): not retried again",
                run.state.as_str()
            );
        }
        let wf = self
            .catalog
            .workflow_for(&self.store, &run.workflow, run.version)
            .with_context(|| format!("workflow {} v{}", run.workflow, run.version))?;
        let reopen = rerun::select(&wf, &run, &tasks, &sel).map_err(anyhow::Error::msg)?;
        let names: Vec<&str> = reopen.iter().map(|&i| wf.tasks[i].id.as_str()).collect();
        let message = format!("retrying {run_id}: {}", names.join(", "));
        let now = self.now();
        self.check_disk(now);
        let mut watched = run.clone();
        watched.ended_ms = None;
        self.engine
            .reopen_run(run, tasks.clone(), wf.clone(), &reopen, now)?;
        self.runs.insert(run_id.to_string(), wf.clone());
        self.watch_run(&watched, &wf, &tasks);
        // Durable before the answer: the reopened run is committed (ahead of its spawns).
        self.pump()?;
        self.flush()?;
        Ok(message)
    }

    /// `trigger --at`: a manual run whose logical time is `at_ms`. One run per workflow version
    /// and instant: asking again returns the same run (`false`: it existed).
    pub fn trigger_at(
        &mut self,
        name: &str,
        params: Vec<(String, String)>,
        at_ms: i64,
    ) -> anyhow::Result<(RunId, bool)> {
        if self.stopping {
            anyhow::bail!("the agent is shutting down");
        }
        let loaded = self
            .catalog
            .get(name)
            .with_context(|| format!("no workflow named `{name}`"))?;
        outpost_common::params::check_params(name, &loaded.wf.param_rules, &params)
            .map_err(anyhow::Error::msg)?;
        let now = self.now();
        if at_ms > now.wall_ms() {
            anyhow::bail!("--at must not be in the future (use a schedule or trigger now)");
        }
        let (wf, version) = (loaded.wf.clone(), loaded.version);
        let id = run_id(name, version, at_ms, RunKind::Manual);
        if self.runs.contains_key(&id) || self.store.run_exists(&id)? {
            return Ok((id, false));
        }
        let id = self.add_run(wf, version, at_ms, RunKind::Manual, params, now);
        self.pump()?;
        self.flush()?;
        Ok((id, true))
    }

    /// `workflow backfill`: queue runs of `name` for `instants` (ms). Instants whose run exists
    /// (or is queued) are reported as present. The queue is durable before the answer.
    pub fn backfill(
        &mut self,
        name: &str,
        instants: Vec<i64>,
        max_active: u32,
    ) -> anyhow::Result<String> {
        if self.stopping {
            anyhow::bail!("the agent is shutting down");
        }
        let loaded = self
            .catalog
            .get(name)
            .with_context(|| format!("no workflow named `{name}`"))?;
        if loaded.wf.schedule.is_none() {
            anyhow::bail!("workflow `{name}` has no schedule: nothing to backfill");
        }
        let version = loaded.version;
        let now = self.now();
        let mut queues = self.backfill_queues()?;
        let at = match queues.iter().position(|q| q.workflow == name) {
            Some(i) => i,
            None => {
                queues.push(BackfillQueue {
                    workflow: name.to_string(),
                    ..BackfillQueue::default()
                });
                queues.len() - 1
            }
        };
        let mut sorted = instants;
        sorted.sort_unstable();
        sorted.dedup();
        let mut present = Vec::new();
        let mut queued = 0usize;
        for ms in sorted {
            let id = run_id(name, version, ms, RunKind::Catchup);
            let q = &mut queues[at];
            if q.instants.contains(&ms)
                || self.runs.contains_key(&id)
                || self.store.run_exists(&id)?
            {
                present.push(id);
            } else {
                q.instants.push(ms);
                queued += 1;
            }
        }
        let q = &mut queues[at];
        q.instants.sort_unstable();
        q.max_active = max_active.max(1);
        let waiting = q.instants.len();
        self.put_backfill(queues);
        self.flush()?;
        self.release_backfill(now)?;
        self.flush()?;
        let mut message = format!("queued {queued} run(s) ({waiting} waiting to start)");
        if !present.is_empty() {
            message.push_str(&format!(
                "; already present {}: {}",
                present.len(),
                present.join(", ")
            ));
        }
        Ok(message)
    }

    /// The backfill queues, read from the store the first time.
    fn backfill_queues(&mut self) -> anyhow::Result<Vec<BackfillQueue>> {
        if let Some(q) = &self.backfills {
            return Ok(q.clone());
        }
        let q: Vec<BackfillQueue> = match self.store.get_meta(BACKFILL_KEY)? {
            Some(bytes) => minicbor::decode(&bytes).context("reading the backfill queue")?,
            None => Vec::new(),
        };
        self.backfills = Some(q.clone());
        Ok(q)
    }

    /// Keep `queues` and write them with the pending batch.
    fn put_backfill(&mut self, queues: Vec<BackfillQueue>) {
        match minicbor::to_vec(&queues) {
            Ok(bytes) => self
                .commits
                .pending()
                .meta_puts
                .push((BACKFILL_KEY.to_string(), bytes)),
            Err(e) => tracing::error!("encoding the backfill queue: {e}"),
        }
        self.backfills = Some(queues);
    }

    /// Start queued backfill runs while fewer than their `max_active` are active (and, for an
    /// `overlap: skip` workflow, while no run of it is active: a backfill run is never added
    /// just to be skipped). Paused workflows wait.
    pub(super) fn release_backfill(&mut self, now: Now) -> anyhow::Result<()> {
        if self.stopping || self.backfills.as_ref().is_some_and(|q| q.is_empty()) {
            return Ok(());
        }
        let mut queues = self.backfill_queues()?;
        let mut changed = false;
        for q in &mut queues {
            let before = q.active.len();
            q.active.retain(|id| self.runs.contains_key(id));
            changed |= before != q.active.len();
            let Some(loaded) = self.catalog.get(&q.workflow) else {
                continue;
            };
            if loaded.paused {
                continue;
            }
            let (wf, version) = (loaded.wf.clone(), loaded.version);
            while (q.active.len() as u32) < q.max_active.max(1) && !q.instants.is_empty() {
                if wf.overlap == Overlap::Skip && self.runs.values().any(|w| w.name == wf.name) {
                    break;
                }
                let ms = q.instants.remove(0);
                changed = true;
                let id = run_id(&wf.name, version, ms, RunKind::Catchup);
                if self.runs.contains_key(&id) || self.store.run_exists(&id)? {
                    continue;
                }
                let id = self.add_run(wf.clone(), version, ms, RunKind::Catchup, Vec::new(), now);
                q.active.push(id);
            }
        }
        queues.retain(|q| !q.instants.is_empty() || !q.active.is_empty());
        if changed {
            // The runs' records go into the pending batch first; the queue with them or after.
            self.pump()?;
            self.put_backfill(queues);
        } else {
            self.backfills = Some(queues);
        }
        Ok(())
    }
}
