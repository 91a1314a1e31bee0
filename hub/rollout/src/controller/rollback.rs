//! Rolling back: after a failed gate or an abort, every agent ever assigned the new version is
//! assigned the old one, and the rollout ends once they all are back (or offline, or refused).

use super::{Action, Agent, Controller};
use crate::phase::{Outcome, Phase};

impl Controller {
    pub(super) fn rolled_back(&self, a: &Agent) -> bool {
        a.version == self.spec.from_version
    }

    pub(super) fn rollback_done(&self) -> bool {
        self.agents
            .iter()
            .filter(|a| a.selected_at.is_some())
            .all(|a| !a.online || a.rollback_refused || self.rolled_back(a))
    }

    pub(super) fn start_rollback(&mut self, reason: String, aborted: bool) {
        if aborted {
            self.audit(format!("aborted by command at step {}", self.step));
        } else {
            self.audit(format!("gate of step {} failed: {reason}", self.step));
        }
        self.aborting = aborted;
        let to = self.spec.from_version.unwrap_or(0);
        let mut n = 0;
        for i in 0..self.agents.len() {
            if self.agents[i].selected_at.is_some() {
                self.agents[i].assigned = Some(to);
                let id = self.agents[i].id.clone();
                self.push_rollback_assign(id);
                n += 1;
            }
        }
        let target = self
            .spec
            .from_version
            .map_or("removal".to_string(), |v| format!("v{v}"));
        self.audit(format!("rolling back {n} agents to {target}"));
        self.set_phase(Phase::RollingBack { reason });
    }

    pub(super) fn finish_rollback(&mut self, reason: String) {
        let updated: Vec<&Agent> = self
            .agents
            .iter()
            .filter(|a| a.selected_at.is_some())
            .collect();
        let back = updated.iter().filter(|a| self.rolled_back(a)).count();
        let offline = updated
            .iter()
            .filter(|a| !self.rolled_back(a) && !a.online)
            .count();
        let refused = updated
            .iter()
            .filter(|a| !self.rolled_back(a) && a.online && a.rollback_refused)
            .count();
        self.audit(format!(
            "rolled back {} agents: {back} on the old version, {offline} offline (they get it when they return), {refused} refused",
            updated.len()
        ));
        if self.aborting {
            self.set_phase(Phase::Aborted);
            self.actions.push_back(Action::Finished(Outcome::Aborted));
        } else {
            self.set_phase(Phase::RolledBack {
                reason: reason.clone(),
            });
            self.actions
                .push_back(Action::Finished(Outcome::RolledBack { reason }));
        }
    }
}
