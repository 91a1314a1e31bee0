//! The JSON shapes of the workflow lifecycle: an apply's dry-run plan and `workflow delete`.

use serde::{Deserialize, Serialize};

/// What applying one valid file would do (`POST /v1/workflows?dry_run=true`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanView {
    /// `new`, `changed`, `unchanged`, `revived` (after `workflow delete`) or `waiting` (the same
    /// content already waits for release signatures).
    pub status: String,
    /// The hub's latest version, if any.
    pub latest: Option<u64>,
    /// Unified diff from the latest version to the file (empty when new or unchanged).
    pub diff: String,
    /// A new version would wait for release signatures before reaching any agent.
    pub needs_release: bool,
    /// The pools with a decision for the workflow (and its default pool).
    pub pools: Vec<PoolPlanView>,
    /// The agents that would get the new version (once released).
    pub agents: Vec<String>,
}

/// One pool of a [`PlanView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolPlanView {
    /// Pool name.
    pub pool: String,
    /// Its version now (0: none).
    pub version: u64,
    /// Whether it would get the new version.
    pub gets_new: bool,
    /// Why.
    pub note: String,
}

/// `POST /v1/workflows/{name}/delete` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// Delete even while a rollout of it is in progress (the rollout ends, aborted).
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/workflows/{name}/delete` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// The workflow.
    pub name: String,
    /// The pools it was removed from.
    pub pools: Vec<String>,
    /// The agents it was deployed to: each gets a removal.
    pub agents: Vec<String>,
    /// Rollouts ended by `--force`.
    pub aborted_rollouts: Vec<String>,
    /// A version that was waiting for release signatures and was dropped.
    pub dropped_pending: Option<u64>,
}
