//! What `rollout status` shows: plain structs (no serde here; the hub maps them to JSON).

use crate::phase::{Outcome, Phase};
use crate::spec::{Scope, Size};

/// A snapshot of a rollout, from [`crate::Controller::status`].
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Rollout id.
    pub id: String,
    /// Workflow name.
    pub workflow: String,
    /// Pool name.
    pub pool: String,
    /// The pool's version before the rollout.
    pub from_version: Option<u64>,
    /// The version rolled out.
    pub to_version: u64,
    /// Current phase.
    pub phase: Phase,
    /// Current (or last reached) step index, 0 = canary.
    pub step: usize,
    /// Number of steps, canary included.
    pub step_count: usize,
    /// Current number of pool members.
    pub members: u32,
    /// Every step with its target and actual counts.
    pub steps: Vec<StepStatus>,
    /// Every member, in the stable order.
    pub agents: Vec<AgentStatus>,
    /// The gate's figures.
    pub gate: GateStatus,
    /// Set once finished.
    pub outcome: Option<Outcome>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepStatus {
    /// Index, 0 = canary.
    pub index: usize,
    /// Size as given.
    pub size: Size,
    /// Cumulative target with the current membership (see [`crate::step_targets`]).
    pub target: u32,
    /// Current members selected for the new version at this step or before.
    pub updated: u32,
    /// Of those, how many activated it.
    pub active: u32,
}

/// The state of one member in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// Not selected yet; stays on the old version.
    Pending,
    /// Passed over because offline (Skip policy); not selected.
    Skipped,
    /// Sent the new version, not active yet (after success: to get it when it returns).
    Assigned,
    /// Runs the new version.
    Active,
    /// Failed the gate (rejection, probation revert, failed canary run).
    Failed,
    /// Offline while the rollout expects something of it.
    Offline,
    /// Sent the old version back, not active yet.
    RollingBack,
    /// Back on the old version.
    RolledBack,
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    /// Agent id.
    pub agent_id: String,
    /// The step at which it was selected for the new version.
    pub selected_at: Option<usize>,
    /// Its state.
    pub state: AgentState,
    /// Whether its session is up.
    pub online: bool,
    /// Its last known active version.
    pub version: Option<u64>,
    /// What it should run ([`crate::Controller::desired_version`]; 0 = nothing).
    pub desired_version: u64,
    /// Finished runs of the new version.
    pub runs: u32,
    /// Failed runs of the new version.
    pub failures: u32,
    /// Why it failed the gate, if it did.
    pub failure: Option<String>,
}

/// The gate's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct GateStatus {
    /// Runs of the new version finished on updated agents since the rollout started.
    pub runs: u32,
    /// Of those, failed.
    pub failures: u32,
    /// `failures / runs`, once a run finished.
    pub failure_rate: Option<f64>,
    /// The spec's maximum.
    pub max_failure_rate: f64,
    /// The spec's bake time.
    pub bake_ms: i64,
    /// End of the current bake, while baking (or paused while baking).
    pub bake_until_ms: Option<i64>,
    /// Bake time left at the status' `now_ms` (0 once elapsed).
    pub bake_left_ms: Option<i64>,
    /// The spec's minimum runs.
    pub min_runs: u32,
    /// What `min_runs` counts.
    pub min_runs_scope: Scope,
    /// Runs of the new version since the current step started.
    pub step_runs: u32,
    /// Runs still missing to satisfy `min_runs` (summed over agents under `PerAgent`).
    pub runs_needed: u32,
    /// Selected agents the gate still waits to see active.
    pub awaiting_activation: u32,
}
