//! Hub deploys and probation, as pure decisions over one workflow's [`DeployState`].
//!
//! The agent's deploy gate (`outpost_agent::driver::deploy_gate`) verifies a deploy
//! (`outpost_common::trust::check_deploy`: signatures, agent, epoch, hash, anti-rollback) and
//! parses its workflow, then asks [`accept`] for the new state; it commits that state together
//! with the version in one batch. When a run of a version on probation finishes, it asks
//! [`evaluate_probation`] with the finished runs it read from its store. Nothing here reads a
//! clock or a store: the time and the facts are arguments, the new state is the result.
//!
//! Invariants (property-tested in `tests/deploy_prop.rs`):
//! - the highest accepted version never drops, whatever happens (deploys, removals, reverts);
//! - the epochs of accepted deploys strictly rise;
//! - a version on probation is reverted exactly when more than `max_failures` of its first
//!   `runs` finished runs failed;
//! - the decisions depend only on the persisted state and the persisted runs, so a restart from
//!   any persisted point reaches the same state.

use minicbor::{Decode, Encode};
use outpost_common::proto::{Probation, Rejection};
use outpost_common::record::{Reverted, RunState};
use outpost_common::trust::WorkflowTrustState;

/// What the agent knows about one workflow it runs from the hub: the anti-rollback state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct DeployState {
    /// Highest version ever accepted (a lower one is refused unless held locally).
    #[n(0)]
    pub highest_version: u64,
    /// Highest assignment epoch accepted (replays are refused).
    #[n(1)]
    pub last_epoch: u64,
    /// The version active now (0: removed).
    #[n(2)]
    pub active_version: u64,
    /// Paused at the hub.
    #[n(3)]
    pub paused: bool,
    /// The active version is on probation.
    #[n(4)]
    pub probation: Option<ProbationState>,
    /// The last version this agent reverted by itself, if any.
    #[n(5)]
    pub reverted_from: Option<u64>,
}

/// Probation of the active version: more than `max_failures` failures among the first `runs`
/// runs of it (created at or after `since_ms`) make the agent revert to `previous_version`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ProbationState {
    #[n(0)]
    pub runs: u32,
    #[n(1)]
    pub max_failures: u32,
    #[n(2)]
    pub previous_version: u64,
    #[n(3)]
    pub since_ms: i64,
    #[n(4)]
    pub rollout_id: Option<String>,
}

impl DeployState {
    /// The anti-rollback input of `outpost_common::trust::check_deploy`.
    pub fn trust_state(&self, held_versions: Vec<u64>) -> WorkflowTrustState {
        WorkflowTrustState {
            highest_version: self.highest_version,
            last_epoch: self.last_epoch,
            held_versions,
        }
    }
}

/// A deploy that passed `check_deploy`, and whose workflow parsed (unless a removal): the facts
/// the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDeploy {
    pub version: u64,
    pub epoch: u64,
    pub remove: bool,
    /// The agent holds this exact version already (it may go back to it).
    pub held: bool,
    pub probation: Option<Probation>,
    /// The version to return to on probation (the active one when not said).
    pub previous_version: Option<u64>,
    pub rollout_id: Option<String>,
}

/// The state after accepting `d` at `now_ms`. A removal keeps the highest version and makes
/// nothing active; an activation makes `d.version` active, on probation if asked and there is
/// a different version to return to.
///
/// The anti-rollback rules are `check_deploy`'s, which refuses first with the same reasons;
/// they are kept here too so that no caller can break this state's invariants.
pub fn accept(
    state: &DeployState,
    d: &VerifiedDeploy,
    now_ms: i64,
) -> Result<DeployState, Rejection> {
    if d.epoch <= state.last_epoch {
        return Err(Rejection::StaleEpoch {
            offered: d.epoch,
            last: state.last_epoch,
        });
    }
    if !d.remove && d.version < state.highest_version && !d.held {
        return Err(Rejection::StaleVersion {
            offered: d.version,
            highest: state.highest_version,
        });
    }
    let mut next = state.clone();
    next.last_epoch = d.epoch;
    if d.remove {
        next.active_version = 0;
        return Ok(next);
    }
    let before = state.active_version;
    next.highest_version = state.highest_version.max(d.version);
    next.active_version = d.version;
    next.probation = d.probation.and_then(|p| {
        let previous = d.previous_version.filter(|v| *v > 0).unwrap_or(before);
        (previous > 0 && previous != d.version).then(|| ProbationState {
            runs: p.runs,
            max_failures: p.max_failures,
            previous_version: previous,
            since_ms: now_ms,
            rollout_id: d.rollout_id.clone(),
        })
    });
    Ok(next)
}

/// A run of the workflow, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRun {
    pub run_id: String,
    pub version: u64,
    pub created_ms: i64,
    pub state: RunState,
    /// A task of the run ended `failed`. A run that still ended `succeeded` (through an
    /// `all_done` task after the failure) counts as failed, as in the hub's gates.
    pub failed_task: bool,
}

/// What probation decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbationVerdict {
    /// Nothing to do: no probation, or too few runs yet.
    Continue,
    /// The version passed: the new state has no probation.
    Passed { state: DeployState, failed: u32 },
    /// Too many runs failed: the new state is back on `revert.to_version`; `revert` is the
    /// outbox record, committed with the state.
    Revert {
        state: DeployState,
        revert: Reverted,
    },
}

/// Probation of the active version of `workflow`, given every run of it the store holds (in
/// any order; runs of other versions, unfinished or skipped ones, and those created before the
/// probation began, do not count). Once more than `max_failures` of the first `runs` counted
/// runs (by creation, then run id) failed (a failed run, or one with a failed task), revert at
/// once; once `runs` of them finished with no more failures, the version passed.
pub fn evaluate_probation(
    workflow: &str,
    state: &DeployState,
    runs: &[FinishedRun],
    now_ms: i64,
) -> ProbationVerdict {
    let Some(p) = &state.probation else {
        return ProbationVerdict::Continue;
    };
    let v = state.active_version;
    let mut counted: Vec<&FinishedRun> = runs
        .iter()
        .filter(|r| {
            r.version == v
                && r.created_ms >= p.since_ms
                && r.state.is_terminal()
                && r.state != RunState::Skipped
        })
        .collect();
    counted.sort_by(|a, b| (a.created_ms, &a.run_id).cmp(&(b.created_ms, &b.run_id)));
    counted.truncate(usize::try_from(p.runs).unwrap_or(usize::MAX));
    let failed = counted
        .iter()
        .filter(|r| {
            r.state == RunState::Failed || (r.state == RunState::Succeeded && r.failed_task)
        })
        .count();
    let failed = u32::try_from(failed).unwrap_or(u32::MAX);
    if failed > p.max_failures {
        let reason = format!(
            "{failed} of the first {} runs of version {v} failed; probation allows {} of {}",
            counted.len(),
            p.max_failures,
            p.runs
        );
        let mut next = state.clone();
        next.active_version = p.previous_version;
        next.probation = None;
        next.reverted_from = Some(v);
        return ProbationVerdict::Revert {
            state: next,
            revert: Reverted {
                workflow: workflow.to_string(),
                from_version: v,
                to_version: p.previous_version,
                reason,
                at_ms: now_ms,
                rollout_id: p.rollout_id.clone(),
            },
        };
    }
    if counted.len() >= usize::try_from(p.runs).unwrap_or(usize::MAX) {
        let mut next = state.clone();
        next.probation = None;
        return ProbationVerdict::Passed {
            state: next,
            failed,
        };
    }
    ProbationVerdict::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(version: u64, epoch: u64) -> VerifiedDeploy {
        VerifiedDeploy {
            version,
            epoch,
            remove: false,
            held: false,
            probation: None,
            previous_version: None,
            rollout_id: None,
        }
    }

    fn probation_of(runs: u32, max_failures: u32) -> DeployState {
        let s1 = accept(&DeployState::default(), &deploy(1, 1), 0).unwrap();
        let mut d = deploy(2, 2);
        d.probation = Some(Probation { runs, max_failures });
        d.previous_version = Some(1);
        accept(&s1, &d, 100).unwrap()
    }

    fn run(id: &str, state: RunState, failed_task: bool) -> FinishedRun {
        FinishedRun {
            run_id: id.into(),
            version: 2,
            created_ms: 200,
            state,
            failed_task,
        }
    }

    #[test]
    fn a_succeeded_run_with_a_failed_task_counts_as_a_failure() {
        let s = probation_of(2, 0);
        // Ended `succeeded` through an `all_done` task after a failure: a failure, as at the hub.
        let v = evaluate_probation("wf", &s, &[run("a", RunState::Succeeded, true)], 300);
        assert!(matches!(v, ProbationVerdict::Revert { .. }), "{v:?}");
        // Without the failed task it is a success.
        let v = evaluate_probation(
            "wf",
            &s,
            &[
                run("a", RunState::Succeeded, false),
                run("b", RunState::Succeeded, false),
            ],
            300,
        );
        assert!(
            matches!(v, ProbationVerdict::Passed { failed: 0, .. }),
            "{v:?}"
        );
    }

    #[test]
    fn probation_returns_to_the_active_version_unless_told() {
        let s = accept(&DeployState::default(), &deploy(1, 1), 10).unwrap();
        let mut d = deploy(2, 2);
        d.probation = Some(Probation {
            runs: 3,
            max_failures: 0,
        });
        let s2 = accept(&s, &d, 20).unwrap();
        let p = s2.probation.clone().unwrap();
        assert_eq!((p.previous_version, p.since_ms), (1, 20));
        d.previous_version = Some(7);
        d.epoch = 3;
        assert_eq!(
            accept(&s2, &d, 30)
                .unwrap()
                .probation
                .unwrap()
                .previous_version,
            7
        );
        // Nothing to return to: no probation.
        let first = accept(&DeployState::default(), &d, 0);
        assert_eq!(
            first.unwrap().probation.map(|p| p.previous_version),
            Some(7)
        );
        d.previous_version = None;
        assert_eq!(
            accept(&DeployState::default(), &d, 0).unwrap().probation,
            None
        );
    }

    #[test]
    fn replays_and_rollbacks_are_refused() {
        let s = accept(&DeployState::default(), &deploy(5, 3), 0).unwrap();
        assert_eq!(
            accept(&s, &deploy(6, 3), 0),
            Err(Rejection::StaleEpoch {
                offered: 3,
                last: 3
            })
        );
        assert_eq!(
            accept(&s, &deploy(4, 4), 0),
            Err(Rejection::StaleVersion {
                offered: 4,
                highest: 5
            })
        );
        let mut held = deploy(4, 4);
        held.held = true;
        let back = accept(&s, &held, 0).unwrap();
        assert_eq!((back.active_version, back.highest_version), (4, 5));
    }
}

/// What the agent last heard from the director: the hub's signed time `hub_ms` (read at the
/// agent's `local_ms`) and until when (hub time) that view is fresh. Durable, so `status` tells
/// a stale agent after a restart too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct DirectorView {
    #[n(0)]
    pub hub_ms: i64,
    #[n(1)]
    pub local_ms: i64,
    #[n(2)]
    pub expires_ms: i64,
}

impl DirectorView {
    /// The agent's clock minus the hub's, as measured when the view arrived (positive: the agent
    /// is ahead). Transit time is included: a few milliseconds on a healthy link.
    pub fn offset_ms(&self) -> i64 {
        self.local_ms.saturating_sub(self.hub_ms)
    }

    /// The hub's time at the agent's `local_now`, by the signed time and the local clock since.
    pub fn hub_now(&self, local_now: i64) -> i64 {
        self.hub_ms
            .saturating_add(local_now.saturating_sub(self.local_ms).max(0))
    }

    /// Whether the view has expired at `local_now` (the director has not been heard within its
    /// metadata lifetime: the hub is gone, or someone is holding its messages back). Only new
    /// things wait; schedules run on.
    pub fn is_stale(&self, local_now: i64) -> bool {
        self.hub_now(local_now) >= self.expires_ms
    }
}

/// The time the agent uses for expiry decisions: its clock, but never below the highest signed
/// hub time it has seen (`floor`), so a clock set back (no real-time clock after a power loss, a
/// bad NTP step) cannot make expired metadata look valid again.
pub fn trusted_now(local_now: i64, floor: i64) -> i64 {
    local_now.max(floor)
}
