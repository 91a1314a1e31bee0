//! The rollout's plan ([`RolloutSpec`]), its validation and the step-size arithmetic.

use minicbor::{Decode, Encode};

/// The size of a step: a number of agents or a percentage of the pool's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Size {
    /// `n` agents (at most the pool's size).
    #[n(0)]
    Count(#[n(0)] u32),
    /// `p` percent of the pool's members, rounded up, at least one agent (`1..=100`).
    #[n(1)]
    Percent(#[n(0)] u8),
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Count(n) => write!(f, "{n}"),
            Size::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// What `min_runs` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum Scope {
    /// Every updated agent must have finished at least `min_runs` runs of the new version
    /// (counted since the rollout started).
    #[n(0)]
    PerAgent,
    /// The updated agents together must have finished at least `min_runs` runs of the new
    /// version since the current step started.
    #[n(1)]
    Step,
}

/// What to do with an updated agent that is offline while the step still needs something from
/// it (its activation, or its runs under [`Scope::PerAgent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum OfflinePolicy {
    /// Wait for it, at most `max_ms` from the moment it was selected or went offline
    /// (whichever is later); then the gate fails.
    #[n(0)]
    Wait {
        /// The longest wait, in milliseconds.
        #[n(0)]
        max_ms: i64,
    },
    /// Pass over offline agents when choosing a step's agents (the next online agents in the
    /// stable order take their place), and leave selected agents that went offline out of the
    /// gate. They get the version the rollout state says when they return.
    #[n(1)]
    Skip,
    /// An offline agent that the step needs fails the gate at once.
    #[n(2)]
    Fail,
}

/// The plan of one rollout of one workflow version into one node pool.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct RolloutSpec {
    /// The rollout's id; it also seeds the stable agent order.
    #[n(0)]
    pub id: String,
    /// The workflow's name.
    #[n(1)]
    pub workflow: String,
    /// The node pool's name.
    #[n(2)]
    pub pool: String,
    /// The pool's version before the rollout; `None`: the workflow is new to the pool (a rollback
    /// then removes it, see [`crate::Action::Assign`]).
    #[n(3)]
    pub from_version: Option<u64>,
    /// The version rolled out (at least 1).
    #[n(4)]
    pub to_version: u64,
    /// Step 0.
    #[n(5)]
    pub canary: Size,
    /// Steps 1.., cumulative targets; at least one. The last one is forced to 100%.
    #[n(6)]
    pub steps: Vec<Size>,
    /// Bake time of every step, counted from the moment all its agents are active.
    #[n(7)]
    pub bake_ms: i64,
    /// Minimum number of finished runs of the new version (see `min_runs_scope`).
    #[n(8)]
    pub min_runs: u32,
    /// What `min_runs` counts.
    #[n(9)]
    pub min_runs_scope: Scope,
    /// Highest acceptable failure rate of the new version's runs (`0.0..=1.0`).
    #[n(10)]
    pub max_failure_rate: f64,
    /// Wait for a `Promote` command at every step gate (including the last).
    #[n(11)]
    pub manual: bool,
    /// Local probation given to every agent with the new version: `(runs, max_failures)`.
    #[n(12)]
    pub probation: Option<(u32, u32)>,
    /// What to do with offline agents.
    #[n(13)]
    pub offline: OfflinePolicy,
    /// When the rollout was created (wall milliseconds).
    #[n(14)]
    pub created_ms: i64,
}

/// Why a [`RolloutSpec`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The rollout id is empty.
    #[error("the rollout id is empty")]
    EmptyId,
    /// `to_version` is 0 (0 means "remove").
    #[error("the target version must be at least 1")]
    ZeroVersion,
    /// `from_version == to_version`.
    #[error("the pool is already on version {0}")]
    SameVersion(u64),
    /// No step after the canary.
    #[error("a rollout needs at least one step after the canary (e.g. 100%)")]
    NoSteps,
    /// A step of size 0 (`step` 0 is the canary).
    #[error("step {step} has size 0")]
    ZeroSize {
        /// The step's index.
        step: usize,
    },
    /// A percentage above 100.
    #[error("step {step} is {percent}%, more than 100%")]
    PercentOver100 {
        /// The step's index.
        step: usize,
        /// The percentage given.
        percent: u8,
    },
    /// `max_failure_rate` outside `0.0..=1.0` (or not a number).
    #[error("the maximum failure rate must be within 0.0..=1.0")]
    BadFailureRate,
    /// A negative bake time.
    #[error("the bake time is negative")]
    NegativeBake,
    /// A negative offline wait.
    #[error("the offline wait limit is negative")]
    NegativeWait,
    /// The pool has no member when the rollout starts.
    #[error("the pool has no member")]
    EmptyPool,
    /// Probation with zero runs.
    #[error("probation needs at least one run")]
    BadProbation,
}

impl RolloutSpec {
    /// Check the spec; the controller refuses an invalid one.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.id.is_empty() {
            return Err(SpecError::EmptyId);
        }
        if self.to_version == 0 {
            return Err(SpecError::ZeroVersion);
        }
        if self.from_version == Some(self.to_version) {
            return Err(SpecError::SameVersion(self.to_version));
        }
        if self.steps.is_empty() {
            return Err(SpecError::NoSteps);
        }
        for (step, size) in self.sizes().enumerate() {
            match size {
                Size::Count(0) | Size::Percent(0) => return Err(SpecError::ZeroSize { step }),
                Size::Percent(percent) if percent > 100 => {
                    return Err(SpecError::PercentOver100 { step, percent });
                }
                _ => {}
            }
        }
        if !(0.0..=1.0).contains(&self.max_failure_rate) {
            return Err(SpecError::BadFailureRate);
        }
        if self.bake_ms < 0 {
            return Err(SpecError::NegativeBake);
        }
        if let OfflinePolicy::Wait { max_ms } = self.offline
            && max_ms < 0
        {
            return Err(SpecError::NegativeWait);
        }
        if let Some((0, _)) = self.probation {
            return Err(SpecError::BadProbation);
        }
        Ok(())
    }

    /// The sizes of all steps: the canary (step 0), then `steps`.
    pub(crate) fn sizes(&self) -> impl Iterator<Item = Size> + '_ {
        std::iter::once(self.canary).chain(self.steps.iter().copied())
    }

    /// The number of steps, the canary included.
    pub(crate) fn step_count(&self) -> usize {
        self.steps.len() + 1
    }

    /// The cumulative targets of every step for a pool of `members` agents; see
    /// [`step_targets`].
    pub(crate) fn targets(&self, members: u32) -> Vec<u32> {
        let sizes: Vec<Size> = self.sizes().collect();
        step_targets(&sizes, members)
    }
}

/// The raw size of one step in a pool of `members` agents: `Count(n)` → `min(n, N)`;
/// `Percent(p)` → `ceil(p·N/100)`, at least 1, at most N. 0 when the pool is empty.
pub fn step_size(size: Size, members: u32) -> u32 {
    if members == 0 {
        return 0;
    }
    match size {
        Size::Count(n) => n.min(members),
        Size::Percent(p) => {
            let raw = (u64::from(p) * u64::from(members)).div_ceil(100);
            u32::try_from(raw).unwrap_or(members).clamp(1, members)
        }
    }
}

/// The cumulative targets of the steps `sizes` (canary first) in a pool of `members` agents:
/// each step's raw [`step_size`]; the last is forced to `members` (100%); then, walking
/// backwards, each target is lowered to the next one's (`t[k] = min(size[k], t[k+1])`), so the
/// targets never decrease AND no step exceeds its own size.
pub fn step_targets(sizes: &[Size], members: u32) -> Vec<u32> {
    let mut targets: Vec<u32> = sizes.iter().map(|s| step_size(*s, members)).collect();
    if let Some(last) = targets.last_mut() {
        *last = members;
    }
    for k in (0..targets.len().saturating_sub(1)).rev() {
        targets[k] = targets[k].min(targets[k + 1]);
    }
    targets
}
