//! Pools and per-pool decisions: create, delete, deploy, pin, unpin.

use super::{EventKind, OpResult};
use crate::hub::{Hub, now_ms};
use crate::store::{PoolDecision, PoolRecord};

impl Hub {
    /// `pool create`: a named set of agents by label selector.
    pub fn create_pool(
        &self,
        actor: &str,
        name: &str,
        selector: Vec<(String, String)>,
    ) -> OpResult<PoolRecord> {
        let p = self.store().create_pool(name, selector, actor, now_ms())?;
        self.notify_changed();
        self.emit(
            actor,
            EventKind::PoolCreated {
                pool: name.to_string(),
            },
        );
        Ok(p)
    }

    /// `pool delete`.
    pub fn delete_pool(&self, actor: &str, name: &str) -> OpResult<()> {
        self.store().delete_pool(name, actor, now_ms())?;
        self.notify_changed();
        self.emit(
            actor,
            EventKind::PoolDeleted {
                pool: name.to_string(),
            },
        );
        Ok(())
    }

    /// `workflow deploy NAME --pool P [--version V]` (default: the latest version); refused
    /// when the pool is pinned or has an active rollout of the workflow.
    pub fn deploy(
        &self,
        actor: &str,
        workflow: &str,
        pool: &str,
        version: Option<u64>,
    ) -> OpResult<PoolDecision> {
        let version = match version {
            Some(v) => v,
            None => self.store().workflow(workflow)?.latest,
        };
        let d = self
            .store()
            .deploy_to_pool(workflow, pool, version, actor, now_ms())?;
        self.notify_changed();
        self.emit(
            actor,
            EventKind::WorkflowDeployed {
                workflow: workflow.to_string(),
                pool: pool.to_string(),
                version,
            },
        );
        Ok(d)
    }

    /// `workflow pin`: hold the pool on `version` (refused during an active rollout).
    pub fn pin(
        &self,
        actor: &str,
        workflow: &str,
        pool: &str,
        version: u64,
    ) -> OpResult<PoolDecision> {
        let d = self.store().pin(workflow, pool, version, actor, now_ms())?;
        self.notify_changed();
        self.emit(
            actor,
            EventKind::WorkflowPinned {
                workflow: workflow.to_string(),
                pool: pool.to_string(),
                version,
            },
        );
        Ok(d)
    }

    /// `workflow unpin`: the pool keeps its version; deploys and rollouts are allowed again.
    /// Returns whether there was a pin.
    pub fn unpin(&self, actor: &str, workflow: &str, pool: &str) -> OpResult<bool> {
        self.store().pool(pool)?;
        let changed = self.store().unpin(workflow, pool, actor, now_ms())?;
        self.emit(
            actor,
            EventKind::WorkflowUnpinned {
                workflow: workflow.to_string(),
                pool: pool.to_string(),
                changed,
            },
        );
        Ok(changed)
    }

    /// Every pool.
    pub fn pools(&self) -> OpResult<Vec<PoolRecord>> {
        Ok(self.store().pools()?)
    }

    /// One pool.
    pub fn pool(&self, name: &str) -> OpResult<PoolRecord> {
        Ok(self.store().pool(name)?)
    }

    /// Every (workflow, pool) decision.
    pub fn decisions(&self) -> OpResult<Vec<((String, String), PoolDecision)>> {
        Ok(self.store().decisions()?)
    }

    /// The decision of one workflow in one pool.
    pub fn decision(&self, workflow: &str, pool: &str) -> OpResult<Option<PoolDecision>> {
        Ok(self.store().decision(workflow, pool)?)
    }
}
