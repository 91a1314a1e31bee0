//! The rollout's vocabulary shared by the controller and its status: where a rollout is
//! ([`Phase`]) and how it ended ([`Outcome`]).

use minicbor::{Decode, Encode};

/// The rollout's phase.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Phase {
    /// Assignments sent for the step's agents; waiting for their activations.
    #[n(0)]
    Deploying {
        /// Step index (0 = canary).
        #[n(0)]
        step: usize,
    },
    /// All the step's agents are active; waiting for the bake time and the minimum runs.
    #[n(1)]
    Baking {
        /// Step index.
        #[n(0)]
        step: usize,
        /// End of the bake (wall milliseconds).
        #[n(1)]
        until_ms: i64,
    },
    /// The gate passed; waiting for `Promote` (manual rollouts).
    #[n(2)]
    AwaitingPromote {
        /// Step index.
        #[n(0)]
        step: usize,
    },
    /// Paused by command; `Resume` returns to `resume_to`.
    #[n(3)]
    Paused {
        /// The phase to return to.
        #[n(0)]
        resume_to: Box<Phase>,
    },
    /// Rollback assignments sent; waiting for the updated agents to activate the old version
    /// (or be offline).
    #[n(4)]
    RollingBack {
        /// Why.
        #[n(0)]
        reason: String,
    },
    /// Terminal: every member is to run the new version.
    #[n(5)]
    Succeeded,
    /// Terminal: a gate failed and the updated agents are back on the old version.
    #[n(6)]
    RolledBack {
        /// Why the gate failed.
        #[n(0)]
        reason: String,
    },
    /// Terminal: aborted by command (and rolled back).
    #[n(7)]
    Aborted,
}

impl Phase {
    /// Whether the phase is terminal.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::RolledBack { .. } | Phase::Aborted
        )
    }

    /// The step of a forward phase (looking through `Paused`).
    pub fn step(&self) -> Option<usize> {
        match self {
            Phase::Deploying { step }
            | Phase::Baking { step, .. }
            | Phase::AwaitingPromote { step } => Some(*step),
            Phase::Paused { resume_to } => resume_to.step(),
            _ => None,
        }
    }
}

/// How the rollout ended.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Outcome {
    /// Every step passed.
    #[n(0)]
    Succeeded,
    /// A gate failed; the updated agents were sent back to the old version.
    #[n(1)]
    RolledBack {
        /// Why the gate failed.
        #[n(0)]
        reason: String,
    },
    /// Aborted by command (and rolled back).
    #[n(2)]
    Aborted,
}
