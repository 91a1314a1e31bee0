//! JSON shapes of the rollout endpoints.

use serde::{Deserialize, Serialize};

use super::rfc3339;
use crate::rollouts::{offline_text, phase_text};
use crate::store::RolloutRecord;

/// `POST /v1/rollouts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutStart {
    /// Workflow.
    pub workflow: String,
    /// Pool.
    pub pool: String,
    /// Version (default: latest).
    #[serde(default)]
    pub version: Option<u64>,
    /// Canary size (`N` or `N%`), default `1`.
    #[serde(default)]
    pub canary: Option<String>,
    /// Steps, comma-separated, default `100%`.
    #[serde(default)]
    pub steps: Option<String>,
    /// Bake per step (duration), default `0s`.
    #[serde(default)]
    pub bake: Option<String>,
    /// Minimum runs, default 0.
    #[serde(default)]
    pub min_runs: Option<u32>,
    /// `agent` (default) or `step`.
    #[serde(default)]
    pub min_runs_scope: Option<String>,
    /// Maximum failure rate, default 0.
    #[serde(default)]
    pub max_failure_rate: Option<f64>,
    /// Manual gates.
    #[serde(default)]
    pub manual: bool,
    /// Probation runs.
    #[serde(default)]
    pub probation_runs: Option<u32>,
    /// Probation max failures (default 0 when probation runs are given).
    #[serde(default)]
    pub probation_max_failures: Option<u32>,
    /// `wait[:D]` (default `wait:10m`), `skip`, `fail`.
    #[serde(default)]
    pub offline: Option<String>,
}

/// `POST /v1/workflows/{name}/pools/{pool}/rollout/{command}` body (empty).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutSummary {
    /// Id.
    pub id: String,
    /// Workflow.
    pub workflow: String,
    /// Pool.
    pub pool: String,
    /// From version (0 = none).
    pub from_version: u64,
    /// To version.
    pub to_version: u64,
    /// Phase text.
    pub phase: String,
    /// Active.
    pub active: bool,
    /// Outcome once finished.
    pub outcome: Option<String>,
    /// Started.
    pub started: String,
    /// By.
    pub started_by: String,
    /// Finished.
    pub finished: Option<String>,
}

impl RolloutSummary {
    /// From a record.
    pub fn new(r: &RolloutRecord) -> RolloutSummary {
        RolloutSummary {
            id: r.id.clone(),
            workflow: r.workflow.clone(),
            pool: r.pool.clone(),
            from_version: r.from_version,
            to_version: r.to_version,
            phase: r.phase.clone(),
            active: r.active,
            outcome: r.outcome.clone(),
            started: rfc3339(r.started_ms),
            started_by: r.started_by.clone(),
            finished: r.finished_ms.map(rfc3339),
        }
    }
}

/// One step in `rollout status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepView {
    /// Index (0 = canary).
    pub index: usize,
    /// Size as given.
    pub size: String,
    /// Cumulative target now.
    pub target: u32,
    /// Members selected at this step or before.
    pub updated: u32,
    /// Of those, active on the new version.
    pub active: u32,
}

/// One agent in `rollout status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutAgentView {
    /// Agent id.
    pub id: String,
    /// `pending`, `skipped`, `assigned`, `active`, `failed`, `offline`, `rolling-back`,
    /// `rolled-back`.
    pub state: String,
    /// Online.
    pub online: bool,
    /// Step it was selected at.
    pub selected_at: Option<usize>,
    /// Last known version.
    pub version: Option<u64>,
    /// Version it should run.
    pub desired_version: u64,
    /// Runs of the new version.
    pub runs: u32,
    /// Failed runs of the new version.
    pub failures: u32,
    /// Why it failed the gate.
    pub failure: Option<String>,
}

/// Gate figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateView {
    /// Runs of the new version on updated agents.
    pub runs: u32,
    /// Failed.
    pub failures: u32,
    /// failures / runs.
    pub failure_rate: Option<f64>,
    /// Maximum.
    pub max_failure_rate: f64,
    /// Bake per step (ms).
    pub bake_ms: i64,
    /// Bake time left (ms) while baking.
    pub bake_left_ms: Option<i64>,
    /// Minimum runs.
    pub min_runs: u32,
    /// `agent` or `step`.
    pub min_runs_scope: String,
    /// Runs in the current step.
    pub step_runs: u32,
    /// Runs still needed.
    pub runs_needed: u32,
    /// Selected agents not active yet.
    pub awaiting_activation: u32,
}

/// `rollout status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutStatusView {
    /// The rollout.
    #[serde(flatten)]
    pub rollout: RolloutSummary,
    /// Current step (0 = canary).
    pub step: usize,
    /// Number of steps (canary included).
    pub step_count: usize,
    /// Members now.
    pub members: u32,
    /// Steps.
    pub steps: Vec<StepView>,
    /// Agents in the stable order.
    pub agents: Vec<RolloutAgentView>,
    /// Gate.
    pub gate: GateView,
    /// Offline policy.
    pub offline: String,
    /// Probation `(runs, max_failures)`.
    pub probation: Option<(u32, u32)>,
    /// Manual gates.
    pub manual: bool,
}

impl RolloutStatusView {
    /// From a record and the controller's status.
    pub fn new(
        r: &RolloutRecord,
        s: &outpost_rollout::Status,
        spec: &outpost_rollout::RolloutSpec,
    ) -> RolloutStatusView {
        use outpost_rollout::Scope;
        let mut rollout = RolloutSummary::new(r);
        rollout.phase = phase_text(&s.phase);
        RolloutStatusView {
            rollout,
            step: s.step,
            step_count: s.step_count,
            members: s.members,
            steps: s
                .steps
                .iter()
                .map(|t| StepView {
                    index: t.index,
                    size: t.size.to_string(),
                    target: t.target,
                    updated: t.updated,
                    active: t.active,
                })
                .collect(),
            agents: s
                .agents
                .iter()
                .map(|a| RolloutAgentView {
                    id: a.agent_id.clone(),
                    state: agent_state_key(a.state).into(),
                    online: a.online,
                    selected_at: a.selected_at,
                    version: a.version,
                    desired_version: a.desired_version,
                    runs: a.runs,
                    failures: a.failures,
                    failure: a.failure.clone(),
                })
                .collect(),
            gate: GateView {
                runs: s.gate.runs,
                failures: s.gate.failures,
                failure_rate: s.gate.failure_rate,
                max_failure_rate: s.gate.max_failure_rate,
                bake_ms: s.gate.bake_ms,
                bake_left_ms: s.gate.bake_left_ms,
                min_runs: s.gate.min_runs,
                min_runs_scope: match s.gate.min_runs_scope {
                    Scope::PerAgent => "agent",
                    Scope::Step => "step",
                }
                .into(),
                step_runs: s.gate.step_runs,
                runs_needed: s.gate.runs_needed,
                awaiting_activation: s.gate.awaiting_activation,
            },
            offline: offline_text(&spec.offline),
            probation: spec.probation,
            manual: spec.manual,
        }
    }
}

/// The name of a rollout agent state, as the API, the CLI and the console show it.
pub fn agent_state_key(s: outpost_rollout::AgentState) -> &'static str {
    match s {
        outpost_rollout::AgentState::Pending => "pending",
        outpost_rollout::AgentState::Skipped => "skipped",
        outpost_rollout::AgentState::Assigned => "assigned",
        outpost_rollout::AgentState::Active => "active",
        outpost_rollout::AgentState::Failed => "failed",
        outpost_rollout::AgentState::Offline => "offline",
        outpost_rollout::AgentState::RollingBack => "rolling-back",
        outpost_rollout::AgentState::RolledBack => "rolled-back",
    }
}
