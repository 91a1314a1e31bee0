//! [`Controller::status`]: the snapshot `rollout status` shows.

use super::{Agent, Controller};
use crate::phase::{Outcome, Phase};
use crate::status::{AgentState, AgentStatus, GateStatus, Status, StepStatus};

impl Controller {
    /// Everything `rollout status` shows, at `now_ms`.
    pub fn status(&self, now_ms: i64) -> Status {
        let n = self.member_count();
        let targets = self.spec.targets(n);
        let in_rollback = matches!(
            self.phase,
            Phase::RollingBack { .. } | Phase::RolledBack { .. } | Phase::Aborted
        );
        let steps = self
            .spec
            .sizes()
            .enumerate()
            .map(|(k, size)| {
                let upd = self
                    .agents
                    .iter()
                    .filter(|a| a.selected_at.is_some_and(|s| s <= k));
                StepStatus {
                    index: k,
                    size,
                    target: targets.get(k).copied().unwrap_or(0),
                    updated: count(upd.clone()),
                    active: count(upd.filter(|a| a.activated_ms.is_some())),
                }
            })
            .collect();
        let agents = self
            .agents
            .iter()
            .map(|a| {
                let state = if a.failure.is_some() {
                    AgentState::Failed
                } else if in_rollback && a.selected_at.is_some() {
                    if self.rolled_back(a) {
                        AgentState::RolledBack
                    } else if !a.online {
                        AgentState::Offline
                    } else {
                        AgentState::RollingBack
                    }
                } else if a.selected_at.is_none() {
                    if self.phase == Phase::Succeeded {
                        AgentState::Assigned
                    } else if a.skipped_at.is_some() {
                        AgentState::Skipped
                    } else if !a.online {
                        AgentState::Offline
                    } else {
                        AgentState::Pending
                    }
                } else if a.activated_ms.is_some() {
                    AgentState::Active
                } else if !a.online {
                    AgentState::Offline
                } else {
                    AgentState::Assigned
                };
                AgentStatus {
                    agent_id: a.id.clone(),
                    selected_at: a.selected_at,
                    state,
                    online: a.online,
                    version: a.version,
                    desired_version: self.desired_for(a),
                    runs: a.runs,
                    failures: a.failures,
                    failure: a.failure.clone(),
                }
            })
            .collect();
        let bake_until_ms = match self.phase {
            Phase::Baking { until_ms, .. } => Some(until_ms),
            Phase::Paused { ref resume_to } => match **resume_to {
                Phase::Baking { until_ms, .. } => Some(until_ms),
                _ => None,
            },
            _ => None,
        };
        let gate = GateStatus {
            runs: self.total_runs,
            failures: self.total_failures,
            failure_rate: self.failure_rate(),
            max_failure_rate: self.spec.max_failure_rate,
            bake_ms: self.spec.bake_ms,
            bake_until_ms,
            bake_left_ms: bake_until_ms.map(|u| (u - now_ms).max(0)),
            min_runs: self.spec.min_runs,
            min_runs_scope: self.spec.min_runs_scope,
            step_runs: self.step_runs,
            runs_needed: self.runs_needed(),
            awaiting_activation: count(
                self.agents
                    .iter()
                    .filter(|a| self.required(a) && a.activated_ms.is_none()),
            ),
        };
        let outcome = match &self.phase {
            Phase::Succeeded => Some(Outcome::Succeeded),
            Phase::RolledBack { reason } => Some(Outcome::RolledBack {
                reason: reason.clone(),
            }),
            Phase::Aborted => Some(Outcome::Aborted),
            _ => None,
        };
        Status {
            id: self.spec.id.clone(),
            workflow: self.spec.workflow.clone(),
            pool: self.spec.pool.clone(),
            from_version: self.spec.from_version,
            to_version: self.spec.to_version,
            phase: self.phase.clone(),
            step: self.step,
            step_count: self.spec.step_count(),
            members: n,
            steps,
            agents,
            gate,
            outcome,
        }
    }
}

fn count<'a>(it: impl Iterator<Item = &'a Agent>) -> u32 {
    u32::try_from(it.count()).unwrap_or(u32::MAX)
}
