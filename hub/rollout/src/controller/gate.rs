//! The gate: what a step still owes, when it fails, and the evaluation that applies the rules
//! after every event (see "Gate rules" in the crate docs).

use super::{Agent, Controller};
use crate::phase::Phase;
use crate::spec::{OfflinePolicy, Scope};

impl Controller {
    /// Whether the agent still owes the gate something (activation, or per-agent runs).
    pub(super) fn unmet(&self, a: &Agent) -> bool {
        a.activated_ms.is_none()
            || (self.spec.min_runs_scope == Scope::PerAgent && a.runs < self.spec.min_runs)
    }

    /// Whether the gate waits on this agent: selected, and not left out by the Skip policy.
    pub(super) fn required(&self, a: &Agent) -> bool {
        a.selected_at.is_some() && (self.spec.offline != OfflinePolicy::Skip || a.online)
    }

    pub(super) fn wait_deadline(&self, a: &Agent) -> Option<i64> {
        let OfflinePolicy::Wait { max_ms } = self.spec.offline else {
            return None;
        };
        if a.selected_at.is_none() || a.online || !self.unmet(a) {
            return None;
        }
        let since = a
            .offline_since_ms
            .unwrap_or(self.last_now_ms)
            .max(a.selected_ms.unwrap_or(i64::MIN));
        Some(since.saturating_add(max_ms))
    }

    pub(super) fn failure_rate(&self) -> Option<f64> {
        (self.total_runs > 0).then(|| f64::from(self.total_failures) / f64::from(self.total_runs))
    }

    pub(super) fn runs_needed(&self) -> u32 {
        match self.spec.min_runs_scope {
            Scope::Step => self.spec.min_runs.saturating_sub(self.step_runs),
            Scope::PerAgent => self
                .agents
                .iter()
                .filter(|a| self.required(a))
                .map(|a| self.spec.min_runs.saturating_sub(a.runs))
                .sum(),
        }
    }

    pub(super) fn gate_figures(&self, now_ms: i64) -> String {
        let active = self
            .agents
            .iter()
            .filter(|a| a.selected_at.is_some() && a.activated_ms.is_some())
            .count();
        let rate = self
            .failure_rate()
            .map_or("n/a".to_string(), |r| format!("{:.1}%", r * 100.0));
        let _ = now_ms;
        format!(
            "{active} agents active, {} runs, {} failures, failure rate {rate} (max {:.1}%), {} step runs",
            self.total_runs,
            self.total_failures,
            self.spec.max_failure_rate * 100.0,
            self.step_runs
        )
    }

    /// A reason to fail the gate now, if any.
    pub(super) fn detect_failure(&self, now_ms: i64) -> Option<String> {
        if let Some(r) = self.failure_rate()
            && r > self.spec.max_failure_rate
        {
            return Some(format!(
                "failure rate {:.1}% ({} of {} runs of v{}) above the maximum {:.1}%",
                r * 100.0,
                self.total_failures,
                self.total_runs,
                self.spec.to_version,
                self.spec.max_failure_rate * 100.0
            ));
        }
        for a in &self.agents {
            if a.selected_at.is_none() || a.online || !self.unmet(a) {
                continue;
            }
            match self.spec.offline {
                OfflinePolicy::Fail => {
                    return Some(format!("agent {} is offline (offline policy: fail)", a.id));
                }
                OfflinePolicy::Wait { max_ms } => {
                    if self.wait_deadline(a).is_some_and(|d| now_ms >= d) {
                        return Some(format!(
                            "agent {} stayed offline longer than {max_ms} ms (offline policy: wait)",
                            a.id
                        ));
                    }
                }
                OfflinePolicy::Skip => {}
            }
        }
        None
    }

    /// Apply the rules at `now_ms` until nothing changes.
    pub(super) fn evaluate(&mut self, now_ms: i64) {
        self.last_now_ms = self.last_now_ms.max(now_ms);
        loop {
            match &self.phase {
                Phase::Succeeded | Phase::RolledBack { .. } | Phase::Aborted => {
                    self.trip = None;
                    return;
                }
                Phase::RollingBack { reason } => {
                    self.trip = None;
                    if self.rollback_done() {
                        let reason = reason.clone();
                        self.finish_rollback(reason);
                    }
                    return;
                }
                _ => {}
            }
            if let Some(reason) = self.trip.take().or_else(|| self.detect_failure(now_ms)) {
                self.start_rollback(reason, false);
                continue;
            }
            match self.phase {
                Phase::Deploying { step } => {
                    if self.fill(now_ms) > 0 {
                        // Check the failure rules on the new selection first (offline policy).
                        continue;
                    }
                    let waiting = self
                        .agents
                        .iter()
                        .any(|a| self.required(a) && a.activated_ms.is_none());
                    if waiting {
                        return;
                    }
                    let until_ms = now_ms.saturating_add(self.spec.bake_ms);
                    let active = self.agents.iter().filter(|a| self.required(a)).count();
                    self.audit(format!(
                        "step {step}: {active} agents active, baking {} ms",
                        self.spec.bake_ms
                    ));
                    self.set_phase(Phase::Baking { step, until_ms });
                }
                Phase::Baking { step, until_ms } => {
                    // More agents for the step (a join raised the target), or one the gate had
                    // left out (Skip) is back and not active yet: back to Deploying.
                    let added = self.fill(now_ms) > 0;
                    if added
                        || self
                            .agents
                            .iter()
                            .any(|a| self.required(a) && a.activated_ms.is_none())
                    {
                        self.set_phase(Phase::Deploying { step });
                        continue;
                    }
                    if now_ms < until_ms || self.runs_needed() > 0 {
                        return;
                    }
                    let figures = self.gate_figures(now_ms);
                    self.audit(format!("gate of step {step} passed: {figures}"));
                    if self.spec.manual {
                        self.set_phase(Phase::AwaitingPromote { step });
                        return;
                    }
                    self.advance(now_ms);
                }
                _ => return,
            }
        }
    }
}
