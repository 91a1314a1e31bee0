//! Rollouts: start and operator commands (the driver that advances them is
//! [`crate::rollouts`]), and what the API shows of them.

use outpost_rollout::{Command, Controller, RefusedReason, RolloutSpec, SpecError, Status};

use super::{EventKind, OpResult};
use crate::hub::{Hub, now_ms};
use crate::rollouts::{RolloutError, RolloutPlan, drain};
use crate::store::{RolloutRecord, StoreError};

impl Hub {
    /// `rollout start`: refused when the pool is pinned, already has an active rollout of the
    /// workflow, has no member, or the plan is invalid.
    pub fn start_rollout(
        &self,
        actor: &str,
        plan: &RolloutPlan,
    ) -> Result<RolloutRecord, RolloutError> {
        let _g = self.lock_rollouts();
        let now = now_ms();
        let pool = self.store().pool(&plan.pool)?;
        let to = match plan.version {
            Some(v) => v,
            None => self.store().workflow(&plan.workflow)?.latest,
        };
        self.store().version(&plan.workflow, Some(to))?;
        // A pinned pool or an active rollout is the first reason to give.
        if let Some(d) = self.store().decision(&plan.workflow, &plan.pool)? {
            crate::store::refuse_if_held(&plan.workflow, &plan.pool, &d, "roll out into")?;
        }
        let from = self.pool_version(&plan.workflow, &pool)?;
        let members = self.pool_members(&pool, &plan.workflow)?;
        let mk_spec = |seq: u64| RolloutSpec {
            id: format!("ro-{seq}"),
            workflow: plan.workflow.clone(),
            pool: plan.pool.clone(),
            from_version: (from != 0).then_some(from),
            to_version: to,
            canary: plan.canary,
            steps: plan.steps.clone(),
            bake_ms: plan.bake_ms,
            min_runs: plan.min_runs,
            min_runs_scope: plan.min_runs_scope,
            max_failure_rate: plan.max_failure_rate,
            manual: plan.manual,
            probation: plan.probation,
            offline: plan.offline,
            created_ms: now,
        };
        // Check the plan before touching the store (the id does not affect validity).
        let probe = mk_spec(1);
        probe.validate()?;
        if members.is_empty() {
            return Err(SpecError::EmptyPool.into());
        }
        let mut events = Vec::new();
        let rec = self.store().start_rollout(
            &plan.workflow,
            &plan.pool,
            from,
            to,
            actor,
            now,
            |seq| {
                let mut c = Controller::new(mk_spec(seq), members.clone(), now)
                    .map_err(|e| StoreError::Refused(e.to_string()))?;
                let before = c.phase().clone();
                let (commit, _, ev) = drain(&mut c, seq, actor, &before);
                events = ev;
                Ok(commit)
            },
        )?;
        self.notify_changed();
        self.rollout_wake.notify_one();
        self.emit(
            actor,
            EventKind::RolloutStarted {
                rollout: rec.id.clone(),
                workflow: rec.workflow.clone(),
                pool: rec.pool.clone(),
                version: rec.to_version,
            },
        );
        for e in events {
            self.emit(actor, e);
        }
        Ok(rec)
    }

    /// `rollout pause|resume|promote|abort` on the active rollout of (workflow, pool).
    pub fn rollout_command(
        &self,
        actor: &str,
        workflow: &str,
        pool: &str,
        cmd: Command,
    ) -> Result<RolloutRecord, RolloutError> {
        let _g = self.lock_rollouts();
        let now = now_ms();
        let rec = self.find_rollout(workflow, pool)?;
        if !rec.active {
            return Err(RefusedReason::Finished.into());
        }
        let mut c = Controller::decode(&self.store().rollout_state(rec.seq)?)?;
        let before = c.phase().clone();
        c.handle_command(cmd, now)?;
        let (mut commit, changed, events) = drain(&mut c, rec.seq, actor, &before);
        let verb = match cmd {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::Abort => "abort",
        };
        commit.audit.insert(
            0,
            (
                actor.to_string(),
                format!("rollout.{verb}"),
                format!("{} ({} v{})", rec.id, workflow, rec.to_version),
            ),
        );
        self.store().commit_rollout(commit, now)?;
        if changed {
            self.notify_changed();
        }
        self.rollout_wake.notify_one();
        self.emit(
            actor,
            EventKind::RolloutCommanded {
                rollout: rec.id.clone(),
                workflow: workflow.to_string(),
                pool: pool.to_string(),
                command: verb.to_string(),
            },
        );
        for e in events {
            self.emit(actor, e);
        }
        Ok(self.store().rollout(rec.seq)?)
    }

    /// Every rollout, oldest first.
    pub fn rollouts(&self) -> OpResult<Vec<RolloutRecord>> {
        Ok(self.store().rollouts()?)
    }

    /// The status and spec of the active (else latest) rollout of (workflow, pool).
    pub fn rollout_status_of(
        &self,
        workflow: &str,
        pool: &str,
    ) -> Result<(RolloutRecord, Status, RolloutSpec), RolloutError> {
        let rec = self.find_rollout(workflow, pool)?;
        let (status, spec) = self.rollout_status(&rec)?;
        Ok((rec, status, spec))
    }
}
