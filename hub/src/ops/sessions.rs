//! What agent sessions report (the QUIC driver calls these): a session accepted or ended,
//! status batches, deploy results, and the session bookkeeping in the store.

use outpost_common::proto::{ActiveWorkflow, AgentTelemetry, Rejection};
use outpost_common::record::{OutboxEntry, StatusEvent};
use outpost_common::trust::SignedRoot;

use super::{EventKind, HUB_ACTOR, OpResult};
use crate::hub::{DesiredAssignment, Hub, now_ms, rejection_text};
use crate::store::DeployResultRecord;
use crate::store::sessions::SessionLease;

/// What an accepted session starts from.
#[derive(Debug)]
pub struct SessionStart {
    /// The highest status sequence the hub has committed for the agent.
    pub committed_seq: u64,
    /// Root metadata from the version after the agent's to the newest.
    pub roots: Vec<SignedRoot>,
    /// The agent's desired state.
    pub desired: Vec<DesiredAssignment>,
}

impl Hub {
    /// An agent's Hello was accepted: record what it runs, and return what its session starts
    /// from. Refuses a revoked agent.
    pub fn agent_connected(
        &self,
        agent_id: &str,
        software_version: &str,
        active: Vec<ActiveWorkflow>,
        root_version: u64,
    ) -> OpResult<SessionStart> {
        self.store()
            .agent_hello(agent_id, software_version, active, now_ms())?;
        let start = SessionStart {
            committed_seq: self.store().committed_seq(agent_id)?,
            roots: self.store().roots_after(root_version)?,
            desired: self.desired_for(agent_id)?,
        };
        self.emit(
            agent_id,
            EventKind::AgentConnected {
                agent: agent_id.to_string(),
                software_version: software_version.to_string(),
            },
        );
        Ok(start)
    }

    /// The agent reported its clock offset against the hub's signed time: an observation, kept
    /// in memory and written with the others in one batch (`store/observations.rs`).
    pub fn clock_offset(&self, agent_id: &str, offset_ms: i64, at_ms: i64) {
        self.store().record_clock_offset(agent_id, offset_ms, at_ms);
    }

    /// Record an agent's telemetry report.
    pub fn telemetry(&self, agent_id: &str, telemetry: AgentTelemetry) -> OpResult<()> {
        Ok(self
            .store()
            .record_telemetry(agent_id, telemetry, now_ms())?)
    }

    /// An accepted session ended: its end is the agent's last contact (an observation, written
    /// with the next batch: `store/observations.rs`).
    pub fn agent_disconnected(&self, agent_id: &str) -> OpResult<()> {
        self.store().touch_agent(agent_id, now_ms());
        self.emit(
            agent_id,
            EventKind::AgentDisconnected {
                agent: agent_id.to_string(),
            },
        );
        Ok(())
    }

    /// Commit a status batch durably (entries the hub already has are skipped), wake the
    /// rollout driver, emit `RunFinished` for each newly committed terminal run,
    /// `VersionReverted` for each probation revert and `RunUpdated` once for each other run
    /// the batch changed (its state or a task's); returns the highest committed sequence
    /// number.
    pub fn ingest(&self, agent_id: &str, entries: &[OutboxEntry]) -> OpResult<u64> {
        let (before, seq) = self.store().ingest_batch(agent_id, entries, now_ms())?;
        self.rollout_wake.notify_one();
        self.alert_wake.notify_one();
        let fresh: Vec<&OutboxEntry> = entries
            .iter()
            .filter(|e| e.seq > before && e.seq <= seq)
            .collect();
        self.count_ingested(agent_id, &fresh);
        // Runs changed by the batch, in first-seen order, with their workflow when the batch
        // says it; finished ones are told by `RunFinished`.
        let mut updated: Vec<(String, Option<String>)> = Vec::new();
        let mut finished: Vec<&str> = Vec::new();
        for e in fresh.iter().copied() {
            let (run_id, workflow) = match &e.event {
                StatusEvent::Run(r) if r.state.is_terminal() => {
                    finished.push(&r.run_id);
                    continue;
                }
                StatusEvent::Run(r) => (&r.run_id, Some(&r.workflow)),
                StatusEvent::Task(t) => (&t.run_id, None),
                _ => continue,
            };
            match updated.iter_mut().find(|(id, _)| id == run_id) {
                Some((_, w)) => {
                    if w.is_none() {
                        *w = workflow.cloned();
                    }
                }
                None => updated.push((run_id.clone(), workflow.cloned())),
            }
        }
        for e in fresh {
            let kind = match &e.event {
                StatusEvent::Run(r) if r.state.is_terminal() => EventKind::RunFinished {
                    agent: agent_id.to_string(),
                    workflow: r.workflow.clone(),
                    version: r.version,
                    run_id: r.run_id.clone(),
                    state: r.state.as_str().to_string(),
                },
                StatusEvent::Reverted(r) => EventKind::VersionReverted {
                    agent: agent_id.to_string(),
                    workflow: r.workflow.clone(),
                    from_version: r.from_version,
                    to_version: r.to_version,
                    reason: r.reason.clone(),
                },
                _ => continue,
            };
            self.emit(agent_id, kind);
        }
        for (run_id, workflow) in updated {
            if finished.contains(&run_id.as_str()) {
                continue;
            }
            // A batch of task records alone: the run is in the store (agents report a run
            // before its tasks).
            let workflow = match workflow {
                Some(w) => w,
                None => match self.store().run_workflow(agent_id, &run_id) {
                    Ok(Some(w)) => w,
                    Ok(None) => continue,
                    // The batch is committed; only the live notice is lost.
                    Err(e) => {
                        tracing::warn!("run {run_id} of agent {agent_id}: {e}");
                        continue;
                    }
                },
            };
            self.emit(
                agent_id,
                EventKind::RunUpdated {
                    agent: agent_id.to_string(),
                    workflow,
                    run_id,
                },
            );
        }
        Ok(seq)
    }

    /// Handle `AgentMsg::DeployResult`: record it (a rejection is also audited) and wake the
    /// rollout driver.
    pub fn deploy_result(
        &self,
        agent_id: &str,
        workflow: &str,
        version: u64,
        epoch: u64,
        rejected: Option<&Rejection>,
    ) -> OpResult<()> {
        let now = now_ms();
        let reason = rejected.map(rejection_text);
        if let Some(r) = &reason {
            self.store().audit(
                agent_id,
                "deploy.rejected",
                workflow,
                &format!("version {version} epoch {epoch}: {r}"),
                now,
            )?;
        }
        self.store().record_deploy_result(
            agent_id,
            DeployResultRecord {
                workflow: workflow.into(),
                version,
                epoch,
                rejected: reason.clone(),
                at_ms: now,
            },
        )?;
        self.rollout_wake.notify_one();
        self.emit(
            agent_id,
            EventKind::DeployReported {
                agent: agent_id.to_string(),
                workflow: workflow.to_string(),
                version,
                rejected: reason,
            },
        );
        Ok(())
    }

    /// Record a refused second session of an agent (a copied state directory?).
    pub fn record_duplicate_session(&self, agent_id: &str, detail: &str) -> OpResult<()> {
        self.store().audit(
            agent_id,
            "agent.duplicate_session",
            agent_id,
            detail,
            now_ms(),
        )?;
        Ok(())
    }

    /// Record a message that could not be sent to an agent (above the frame limit).
    pub fn record_undeliverable(&self, agent_id: &str, detail: &str) -> OpResult<()> {
        self.store().audit(
            HUB_ACTOR,
            "message.undeliverable",
            agent_id,
            detail,
            now_ms(),
        )?;
        Ok(())
    }

    /// Record an agent's last contact (an open session does, now and then): an observation,
    /// written with the next batch (`store/observations.rs`).
    pub fn touch_agent(&self, agent_id: &str) {
        self.store().touch_agent(agent_id, now_ms());
    }

    /// Write the agents' pending observations (last contact, clock offset) in one batch.
    pub fn flush_observations(&self) -> OpResult<usize> {
        Ok(self.store().flush_observations()?)
    }

    /// Claim the session record of an agent for this process (see `store::sessions`): returns
    /// the live lease of another holder instead, if there is one.
    pub fn claim_session(
        &self,
        agent_id: &str,
        process: &str,
        lease: &SessionLease,
        stale_after_ms: i64,
    ) -> OpResult<Option<SessionLease>> {
        Ok(self
            .store()
            .claim_session(agent_id, process, lease, stale_after_ms)?)
    }

    /// Renew the session records of this process's live sessions.
    pub fn renew_sessions(&self, holders: &[(String, String)]) -> OpResult<()> {
        Ok(self.store().renew_sessions(holders, now_ms())?)
    }

    /// Release a session record this process holds.
    pub fn release_session(&self, agent_id: &str, holder: &str) -> OpResult<()> {
        Ok(self.store().release_session(agent_id, holder)?)
    }
}
