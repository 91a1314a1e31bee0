//! JSON shapes of the pool endpoints (and the label edits pool membership follows), and of
//! deploy, pin and unpin.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rfc3339;
use crate::store::PoolDecision;

/// `POST /v1/pools`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolCreate {
    /// Name.
    pub name: String,
    /// Selector.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

/// A pool in `pool list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolView {
    /// Name.
    pub name: String,
    /// Selector.
    pub selector: BTreeMap<String, String>,
    /// Number of current members.
    pub members: usize,
    /// How many are online.
    pub online: usize,
    /// A default pool (`wf:<workflow>`, from a workflow's target).
    pub default: bool,
    /// Workflow decisions in this pool.
    pub workflows: Vec<DecisionView>,
    /// Created.
    pub created: String,
    /// By.
    pub created_by: String,
}

/// A pool's decision for one workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionView {
    /// Workflow.
    pub workflow: String,
    /// Desired version (0 = not deployed; during a rollout, the version it started from).
    pub version: u64,
    /// Pinned.
    pub pinned: bool,
    /// Active rollout id.
    pub rollout: Option<String>,
    /// Follows `workflow apply` (default pools only, until the workflow is managed).
    pub follow_latest: bool,
    /// Decision sequence (the highest wins for an agent in several pools).
    pub seq: u64,
    /// When.
    pub at: String,
    /// Who.
    pub by: String,
}

impl DecisionView {
    /// From a stored decision.
    pub fn new(workflow: &str, d: &PoolDecision) -> DecisionView {
        DecisionView {
            workflow: workflow.into(),
            version: d.version,
            pinned: d.pinned,
            rollout: d.rollout.map(|r| format!("ro-{r}")),
            follow_latest: d.follow_latest,
            seq: d.seq,
            at: rfc3339(d.at_ms),
            by: d.actor.clone(),
        }
    }
}

/// One member in `pool show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberView {
    /// Agent id.
    pub id: String,
    /// Online.
    pub online: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Reported active workflow versions.
    pub versions: BTreeMap<String, u64>,
    /// What the hub wants it to run (workflow → version), all pools considered.
    pub desired: BTreeMap<String, u64>,
}

/// `pool show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolDetail {
    /// The pool.
    #[serde(flatten)]
    pub pool: PoolView,
    /// Its members.
    pub agents: Vec<MemberView>,
}

/// `POST /v1/agents/{id}/labels`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabelRequest {
    /// Labels to add or replace.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Keys to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `POST /v1/workflows/{name}/deploy|pin|unpin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolVersionRequest {
    /// Pool.
    pub pool: String,
    /// Version (deploy: default latest; pin: required; unpin: unused).
    #[serde(default)]
    pub version: Option<u64>,
}
