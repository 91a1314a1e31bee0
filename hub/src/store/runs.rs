//! Status ingest (an agent's outbox batch, committed in one transaction) and the runs, task
//! instances and missed firings it stores.

use outpost_alerts::{Input, InputEvent, Subject};
use outpost_common::record::{
    DeadlineKind, MissedFirings, OutboxEntry, RunKind, RunRecord, RunState, StatusEvent,
    TaskInstanceRecord, UnixMillis,
};
use redb::{ReadableDatabase, ReadableTable};

use super::alerts::enqueue_alert;
use super::audit::audit_in;
use super::error::{DbError, StoreError, decode, encode};
use super::file::Store;
use super::history::IngestBatch;
use super::records::{AgentRecord, HubRun, RunQuery};
use super::rollouts::{self, RolloutEvent, RolloutEventKind};
use super::schema::{
    AGENTS, MISSED, RUNS, RUNS_BY_CREATED, RUNS_BY_ID, RUNS_BY_INSTANT, RUNS_BY_WORKFLOW, TASKS,
};

/// Whether a task of the run ended `failed` (task records reach the hub before the run's end).
fn had_failed_task(
    tasks: &impl redb::ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    agent_id: &str,
    run_id: &str,
) -> Result<bool, StoreError> {
    for e in tasks.range((agent_id, run_id, "")..)? {
        let (k, v) = e?;
        let (a, r, _) = k.value();
        if a != agent_id || r != run_id {
            break;
        }
        let t: TaskInstanceRecord = decode(v.value(), "task_instances", run_id)?;
        if t.state == outpost_common::record::TaskState::Failed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Each entry's record as stored: the run record with the agent's id, the task instance, the
/// missed-firing record (`None` for the other events). Encoded on the session's own thread,
/// before joining the group: the group's closures run one at a time inside its one transaction,
/// so whatever is done outside it runs in parallel (docs/BENCHMARKS.md, "Group commit at the
/// hub").
fn encode_entries(
    agent_id: &str,
    entries: &[OutboxEntry],
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    entries
        .iter()
        .map(|e| match &e.event {
            StatusEvent::Run(run) => {
                let mut rec = run.clone();
                rec.agent_id = Some(agent_id.to_string());
                encode(&rec).map(Some)
            }
            StatusEvent::Task(t) => encode(t).map(Some),
            StatusEvent::Missed(m) => encode(m).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

impl Store {
    /// The highest outbox seq of `agent_id` committed (in the shared history if there is one).
    pub(crate) fn committed_seq(&self, agent_id: &str) -> Result<u64, StoreError> {
        if let Some(h) = self.shared_history() {
            return h.committed_seq(agent_id);
        }
        Ok(self.agent(agent_id)?.committed_seq)
    }

    /// Commit a status batch from `agent_id` in ONE transaction and return the new committed
    /// seq. Entries with seq ≤ the committed seq are ignored (retransmissions); the others must
    /// be in increasing order (else nothing is committed). A gap is committed: the session
    /// ([`outpost_common::sync::HubSession`]) reports it as `HubEvent::Gap`. `Run`/`Task`
    /// entries upsert the (agent, run) records; `Missed` entries are stored under their seq.
    pub fn ingest(&self, agent_id: &str, entries: &[OutboxEntry]) -> Result<u64, StoreError> {
        self.ingest_at(agent_id, entries, crate::clock::now_ms())
    }

    /// [`Store::ingest`] at `received_ms` (the hub's time of the ingest). Each newly committed
    /// terminal run, deadline miss, missed-firing record and probation revert is also queued for
    /// the alert pipeline in the same transaction (so exactly once: seqs already committed are
    /// skipped), with its own time and `received_ms`.
    pub fn ingest_at(
        &self,
        agent_id: &str,
        entries: &[OutboxEntry],
        received_ms: UnixMillis,
    ) -> Result<u64, StoreError> {
        Ok(self.ingest_batch(agent_id, entries, received_ms)?.1)
    }

    /// [`Store::ingest_at`], returning the committed seq before the batch and after it. With a
    /// shared run history (`history.rs`), the batch is committed there too, after this store,
    /// under the agent's lock there, and the sequences are the shared history's.
    pub(crate) fn ingest_batch(
        &self,
        agent_id: &str,
        entries: &[OutboxEntry],
        received_ms: UnixMillis,
    ) -> Result<(u64, u64), StoreError> {
        let Some(history) = self.shared_history() else {
            let encoded = encode_entries(agent_id, entries)?;
            let before = self.agent(agent_id)?.committed_seq;
            let seq = self.ingest_local(agent_id, entries, &encoded, received_ms, &[])?;
            return Ok((before, seq));
        };
        // A run may end here after a task of it failed while its agent was at another replica:
        // the lock also reads which of the runs the batch ends had a task fail there.
        let ending: Vec<&str> = entries
            .iter()
            .filter_map(|e| match &e.event {
                StatusEvent::Run(r)
                    if matches!(r.state, RunState::Succeeded | RunState::Failed) =>
                {
                    Some(r.run_id.as_str())
                }
                _ => None,
            })
            .collect();
        let lock = history.lock_agent(agent_id, &ending)?;
        let shared = lock.committed_seq();
        // Entries the shared history has are skipped here too; the local ingest refuses a batch
        // out of order as before.
        let start = entries
            .iter()
            .position(|e| e.seq > shared)
            .unwrap_or(entries.len());
        let fresh = &entries[start..];
        if fresh.is_empty() {
            return Ok((shared, shared));
        }
        let encoded = encode_entries(agent_id, fresh)?;
        let failed_elsewhere: Vec<String> = lock.failed_task_runs().iter().cloned().collect();
        self.ingest_local(agent_id, fresh, &encoded, received_ms, &failed_elsewhere)?;
        let seq = fresh.last().map_or(shared, |e| e.seq.max(shared));
        lock.commit(&IngestBatch {
            agent: agent_id,
            entries: fresh,
            encoded: &encoded,
            seq,
        })?;
        Ok((shared, seq))
    }

    /// The ingest into this store (see [`Store::ingest_at`]); `encoded` holds each entry's
    /// record, and `failed_elsewhere` the runs known to have a failed task though this store
    /// has none of it.
    fn ingest_local(
        &self,
        agent_id: &str,
        entries: &[OutboxEntry],
        encoded: &[Option<Vec<u8>>],
        received_ms: UnixMillis,
        failed_elsewhere: &[String],
    ) -> Result<u64, StoreError> {
        self.write(|txn| {
            let mut agents = txn.open_table(AGENTS)?;
            let mut agent: AgentRecord = match agents.get(agent_id)? {
                Some(v) => decode(v.value(), "agents", agent_id)?,
                None => return Err(StoreError::NoAgent(agent_id.into())),
            };
            if agent.revoked_ms.is_some() {
                return Err(StoreError::Revoked(agent_id.into()));
            }
            let mut runs = txn.open_table(RUNS)?;
            let mut by_id = txn.open_table(RUNS_BY_ID)?;
            let mut by_created = txn.open_table(RUNS_BY_CREATED)?;
            let mut tasks = txn.open_table(TASKS)?;
            let mut missed = txn.open_table(MISSED)?;
            let mut by_instant = txn.open_table(RUNS_BY_INSTANT)?;
            let mut by_workflow = txn.open_table(RUNS_BY_WORKFLOW)?;
            let mut seq = agent.committed_seq;
            // The agent's labels and pools are filled in when the input is evaluated (from its
            // record then), not copied into every queued input.
            let alert = |workflow: &str, event: InputEvent, at_ms: UnixMillis| Input {
                subject: Subject {
                    agent: Some(agent_id.to_string()),
                    workflow: Some(workflow.to_string()),
                    pools: Vec::new(),
                    labels: Default::default(),
                },
                event,
                at_ms,
                received_ms,
            };
            let mut rollout_cache: std::collections::HashMap<String, bool> =
                std::collections::HashMap::new();
            for (entry, bytes) in entries.iter().zip(encoded) {
                let bytes = bytes.as_deref().unwrap_or_default();
                if entry.seq <= seq {
                    if entry.seq <= agent.committed_seq {
                        continue;
                    }
                    return Err(StoreError::Refused(format!(
                        "status batch from agent {agent_id} is not in increasing seq order"
                    )));
                }
                seq = entry.seq;
                match &entry.event {
                    StatusEvent::Run(run) => {
                        let key = (agent_id, run.run_id.as_str());
                        let (old_created, old_terminal) = match runs.get(key)? {
                            Some(v) => {
                                let old: RunRecord = decode(v.value(), "runs", &run.run_id)?;
                                (Some(old.created_ms), old.state.is_terminal())
                            }
                            None => (None, false),
                        };
                        if !old_terminal
                            && matches!(run.state, RunState::Succeeded | RunState::Failed)
                        {
                            let failed_task = had_failed_task(&tasks, agent_id, &run.run_id)?
                                || failed_elsewhere.contains(&run.run_id);
                            let detail = match (run.state, failed_task) {
                                (RunState::Succeeded, false) => {
                                    format!("v{} succeeded", run.version)
                                }
                                (RunState::Succeeded, true) => {
                                    format!("v{} succeeded past a failed task", run.version)
                                }
                                _ => format!("v{} failed", run.version),
                            };
                            enqueue_alert(
                                txn,
                                &alert(
                                    &run.workflow,
                                    InputEvent::RunFinished {
                                        run_id: run.run_id.clone(),
                                        version: run.version,
                                        // Past a failed task: a failure to be told of.
                                        succeeded: run.state == RunState::Succeeded && !failed_task,
                                        detail,
                                    },
                                    run.ended_ms.unwrap_or(run.created_ms),
                                ),
                            )?;
                            let active = match rollout_cache.get(&run.workflow) {
                                Some(a) => *a,
                                None => {
                                    let a = rollouts::has_active_rollout(txn, &run.workflow)?;
                                    rollout_cache.insert(run.workflow.clone(), a);
                                    a
                                }
                            };
                            if active {
                                rollouts::enqueue_event(
                                    txn,
                                    &RolloutEvent {
                                        agent: agent_id.into(),
                                        workflow: run.workflow.clone(),
                                        kind: RolloutEventKind::Run {
                                            version: run.version,
                                            // A run that "succeeded" past a failed task (an
                                            // `all_done` leaf) is a failure for a gate.
                                            succeeded: run.state == RunState::Succeeded
                                                && !failed_task,
                                        },
                                        at_ms: run.ended_ms.unwrap_or(run.created_ms),
                                    },
                                )?;
                            }
                        }
                        runs.insert(key, bytes)?;
                        // An update of a run whose creation time is unchanged (running, then
                        // succeeded: the usual case) finds every index entry in place: a
                        // run's id, workflow, kind and instant never change.
                        if old_created == Some(run.created_ms) {
                            continue;
                        }
                        if let Some(c) = old_created {
                            by_created.remove((c, agent_id, run.run_id.as_str()))?;
                            by_workflow.remove((
                                agent_id,
                                run.workflow.as_str(),
                                c,
                                run.run_id.as_str(),
                            ))?;
                        }
                        by_id.insert((run.run_id.as_str(), agent_id), ())?;
                        if run.kind != RunKind::Manual {
                            by_instant
                                .insert((agent_id, run.workflow.as_str(), run.scheduled_ms), ())?;
                        }
                        by_created.insert((run.created_ms, agent_id, run.run_id.as_str()), ())?;
                        by_workflow.insert(
                            (
                                agent_id,
                                run.workflow.as_str(),
                                run.created_ms,
                                run.run_id.as_str(),
                            ),
                            (),
                        )?;
                    }
                    StatusEvent::Task(t) => {
                        tasks.insert((agent_id, t.run_id.as_str(), t.task_id.as_str()), bytes)?;
                    }
                    StatusEvent::Missed(m) => {
                        missed.insert((agent_id, entry.seq), bytes)?;
                        let detail = format!(
                            "{} firing{} not run ({})",
                            m.count,
                            if m.count == 1 { "" } else { "s" },
                            m.reason
                        );
                        enqueue_alert(
                            txn,
                            &alert(
                                &m.workflow,
                                InputEvent::FiringsMissed {
                                    count: m.count,
                                    detail,
                                },
                                m.recorded_ms,
                            ),
                        )?;
                    }
                    StatusEvent::Deadline(d) => {
                        let what = d
                            .task
                            .as_deref()
                            .map_or_else(|| "run".to_string(), |t| format!("task {t}"));
                        let verb = match d.kind {
                            DeadlineKind::Finish => "did not finish",
                            DeadlineKind::Start => "did not start",
                        };
                        let detail =
                            format!("{what} {verb} by its {} (v{})", d.kind.as_str(), d.version);
                        enqueue_alert(
                            txn,
                            &alert(
                                &d.workflow,
                                InputEvent::DeadlineMissed {
                                    run_id: d.run_id.clone(),
                                    task: d.task.clone(),
                                    detail,
                                },
                                d.detected_ms,
                            ),
                        )?;
                    }
                    StatusEvent::Reverted(r) => {
                        let detail = format!(
                            "reverted v{} -> v{} under probation: {}",
                            r.from_version, r.to_version, r.reason
                        );
                        enqueue_alert(
                            txn,
                            &alert(
                                &r.workflow,
                                InputEvent::ProbationRevert {
                                    detail: detail.clone(),
                                },
                                r.at_ms,
                            ),
                        )?;
                        audit_in(txn, r.at_ms, agent_id, "agent.revert", &r.workflow, &detail)?;
                        if rollouts::has_active_rollout(txn, &r.workflow)? {
                            rollouts::enqueue_event(
                                txn,
                                &RolloutEvent {
                                    agent: agent_id.into(),
                                    workflow: r.workflow.clone(),
                                    kind: RolloutEventKind::Reverted {
                                        from: r.from_version,
                                        to: r.to_version,
                                        reason: r.reason.clone(),
                                    },
                                    at_ms: r.at_ms,
                                },
                            )?;
                        }
                    }
                }
            }
            agent.committed_seq = seq;
            agents.insert(agent_id, encode(&agent)?.as_slice())?;
            Ok(seq)
        })
    }

    /// Runs matching `q`, newest first.
    pub fn runs(&self, q: &RunQuery) -> Result<Vec<HubRun>, StoreError> {
        if let Some(h) = self.shared_history() {
            return h.runs(q);
        }
        if let (Some(agent), Some(workflow)) = (q.agent.as_deref(), q.workflow.as_deref()) {
            return self.runs_of(agent, workflow, q);
        }
        let txn = self.db().begin_read()?;
        let idx = txn.open_table(RUNS_BY_CREATED)?;
        let runs = txn.open_table(RUNS)?;
        let lo = q.since_ms.unwrap_or(i64::MIN);
        let mut out = Vec::new();
        // The page after a cursor starts at it in the index: as cheap at any depth.
        let range = match &q.before {
            Some(c) if c.created_ms < lo => return Ok(out),
            Some(c) => {
                idx.range((lo, "", "")..(c.created_ms, c.agent.as_str(), c.run_id.as_str()))?
            }
            None => idx.range((lo, "", "")..)?,
        };
        for e in range.rev() {
            if out.len() >= q.limit {
                break;
            }
            let (k, _) = e?;
            let (_, agent, run_id) = k.value();
            if q.agent.as_deref().is_some_and(|a| a != agent) {
                continue;
            }
            let v = runs.get((agent, run_id))?.ok_or_else(|| {
                DbError::Inconsistent(format!("index names missing run {agent}/{run_id}"))
            })?;
            let record: RunRecord = decode(v.value(), "runs", run_id)?;
            if q.workflow.as_deref().is_some_and(|w| w != record.workflow)
                || q.state.is_some_and(|s| s != record.state)
            {
                continue;
            }
            out.push(HubRun {
                agent_id: agent.to_string(),
                record,
            });
        }
        Ok(out)
    }

    /// The workflow of a stored run, if the hub has it.
    pub(crate) fn run_workflow(
        &self,
        agent_id: &str,
        run_id: &str,
    ) -> Result<Option<String>, StoreError> {
        // A run's workflow never changes: this replica's own copy answers when it has the run
        // (asked for every run a batch of task records updates, so no round trip to the shared
        // history then); a run ingested at another replica is looked up there.
        let txn = self.db().begin_read()?;
        let runs = txn.open_table(RUNS)?;
        let Some(v) = runs.get((agent_id, run_id))? else {
            return match self.shared_history() {
                Some(h) => Ok(h.run(agent_id, run_id)?.map(|(r, _)| r.workflow)),
                None => Ok(None),
            };
        };
        let run: RunRecord = decode(v.value(), "runs", run_id)?;
        Ok(Some(run.workflow))
    }

    /// The agents that hold a run with this id (run ids repeat across agents).
    pub fn run_agents(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        if let Some(h) = self.shared_history() {
            return h.run_agents(run_id);
        }
        let txn = self.db().begin_read()?;
        let t = txn.open_table(RUNS_BY_ID)?;
        let mut out = Vec::new();
        for e in t.range((run_id, "")..)? {
            let (k, _) = e?;
            let (r, a) = k.value();
            if r != run_id {
                break;
            }
            out.push(a.to_string());
        }
        Ok(out)
    }

    /// Whether a task of the run ended `failed` (its run may still have succeeded: a failed task
    /// followed by an `all_done` leaf).
    pub(crate) fn run_had_failed_task(
        &self,
        agent_id: &str,
        run_id: &str,
    ) -> Result<bool, StoreError> {
        if let Some(h) = self.shared_history() {
            return h.run_had_failed_task(agent_id, run_id);
        }
        let txn = self.db().begin_read()?;
        let tasks = txn.open_table(TASKS)?;
        had_failed_task(&tasks, agent_id, run_id)
    }

    /// One run of one agent with its task instances.
    pub fn run(
        &self,
        agent_id: &str,
        run_id: &str,
    ) -> Result<Option<(RunRecord, Vec<TaskInstanceRecord>)>, StoreError> {
        if let Some(h) = self.shared_history() {
            return h.run(agent_id, run_id);
        }
        let txn = self.db().begin_read()?;
        let runs = txn.open_table(RUNS)?;
        let Some(v) = runs.get((agent_id, run_id))? else {
            return Ok(None);
        };
        let run: RunRecord = decode(v.value(), "runs", run_id)?;
        let tasks = txn.open_table(TASKS)?;
        let mut out = Vec::new();
        for e in tasks.range((agent_id, run_id, "")..)? {
            let (k, v) = e?;
            let (a, r, _) = k.value();
            if a != agent_id || r != run_id {
                break;
            }
            out.push(decode(v.value(), "task_instances", run_id)?);
        }
        Ok(Some((run, out)))
    }

    /// Missed-firing events of an agent, in seq order.
    pub fn missed(&self, agent_id: &str) -> Result<Vec<(u64, MissedFirings)>, StoreError> {
        if let Some(h) = self.shared_history() {
            return h.missed(agent_id);
        }
        let txn = self.db().begin_read()?;
        let t = txn.open_table(MISSED)?;
        let mut out = Vec::new();
        for e in t.range((agent_id, 0)..=(agent_id, u64::MAX))? {
            let (k, v) = e?;
            out.push((k.value().1, decode(v.value(), "missed_firings", agent_id)?));
        }
        Ok(out)
    }
}
