//! Gray-release rollout controller: one rollout of one workflow version into one node pool, as
//! a sans-IO state machine (no I/O, no clock, no randomness; time is the `now_ms` argument, wall
//! milliseconds).
//!
//! The hub drives it: it creates a [`Controller`] with [`Controller::new`], feeds it events
//! (`handle_members`, `handle_activated`, `handle_rejected`, `handle_run`, `handle_reverted`,
//! `handle_online`, `handle_command`, `handle_timeout`), drains [`Controller::poll_action`]
//! (assignments to sign and send, phase changes, audit lines, the outcome), calls
//! `handle_timeout` at [`Controller::poll_timeout`], and commits [`Controller::encode`] in redb
//! after every change (after draining the actions). After a restart it calls
//! [`Controller::decode`] then [`Controller::resume`], which re-emits the current phase's
//! assignments (idempotent at the hub) and re-evaluates the gate.
//!
//! # Public surface
//!
//! The re-exports below are the whole of it (the modules are private and what they do not
//! re-export is `pub(crate)`): the [`Controller`] with its inputs ([`Member`], [`Command`]) and
//! outputs ([`Action`], [`Phase`], [`Outcome`], [`RefusedReason`], [`Status`] and its parts),
//! its persisted form ([`FORMAT_VERSION`], [`DecodeError`]), the [`RolloutSpec`] the hub
//! validates and stores, and the pure helpers the hub and the tests share ([`order_key`],
//! [`step_size`], [`step_targets`]).
//!
//! # Phases
//!
//! ```text
//!            new()
//!              |
//!              v
//!   +---> Deploying{k} --all step agents active--> Baking{k, until} --bake over & min runs--+
//!   |          ^                                       |   (promote: skip the bake)         |
//!   |          +--- the target rose (a join): select more, ---+                             |
//!   |               or an agent left out (Skip) is back, inactive                           |
//!   |                                          manual? --yes--> AwaitingPromote{k} --promote-+
//!   |                                                                                        |
//!   +------------------------- k+1 (not last) <------------------------------------------+
//!                                                              k was last --> Succeeded
//!
//!   any of Deploying/Baking/AwaitingPromote --pause--> Paused{resume_to} --resume--> resume_to
//!   any forward phase (Paused included) --gate fails--> RollingBack{reason} --> RolledBack
//!   any forward phase (Paused included) --abort-->      RollingBack{"aborted by command"} --> Aborted
//! ```
//!
//! `RollingBack` is done when every agent ever assigned the new version has activated the old
//! one, is offline (the hub's desired state gives it the old version when it returns), or
//! refused the rollback assignment (logged). With `from_version == None` the rollback assigns
//! "remove", represented as [`Action::Assign`] with `version: 0`.
//!
//! # Step sizes
//!
//! The steps are the canary (step 0) followed by `steps`; each is a CUMULATIVE target: the
//! number of pool members on the new version once the step is done. With `N` current members:
//! `Count(n)` → `min(n, N)`; `Percent(p)` → `ceil(p·N/100)`, at least 1. The LAST step is forced
//! to `N` (100%), whatever its size. Then, walking backwards, each target is lowered to the next
//! one's (`t[k] = min(size[k], t[k+1])`): targets never decrease and no step exceeds its own size
//! (the forced last step excepted). Example, 10 agents, canary 1, steps `1, 10%, 50%, 100%`:
//! targets `1, 1, 1, 5, 10`. Targets follow the current membership (a join can raise the current
//! step's target; the step then selects more agents).
//!
//! # Stable order
//!
//! Members are sorted by `blake3(rollout id || agent id)` (ties by id) when the rollout starts;
//! agents that join later are appended (sorted by the same key among one snapshot's joiners);
//! departed agents are dropped. A step selects, in that order, the first agents not selected yet
//! until the step's target is reached. The same rollout therefore picks the same canaries every
//! time, whatever the order of the membership input. Under [`OfflinePolicy::Skip`] offline agents
//! are passed over (state "skipped"; they may be selected at a later step once online).
//!
//! # Gate rules
//!
//! Evaluated after every event, in forward phases (Paused and AwaitingPromote included: pausing
//! stops progress, not safety). The gate FAILS at once (→ RollingBack) when:
//! - a run of the new version fails on an agent selected at step 0 (a canary), at any step;
//! - an updated agent rejects the new version;
//! - an updated agent reverts from the new version under probation, or its runs show it will:
//!   more than K of its first N runs of the new version failed (probation `(N, K)`; the runs
//!   arrive before the agent's report of the revert, and must not pass the gate meanwhile);
//! - the failure rate of the new version's runs on updated agents, counted since the rollout
//!   started (runs of agents that left included), exceeds `max_failure_rate` (once ≥ 1 run);
//! - an updated agent the step still needs (not active yet, or short of its runs under
//!   [`Scope::PerAgent`]) is offline under [`OfflinePolicy::Fail`], or has been offline for
//!   `max_ms` (from the later of its selection and its going offline) under
//!   [`OfflinePolicy::Wait`].
//!
//! A step PASSES when every selected agent has activated the new version (under Skip, offline
//! ones are left out), the bake time has elapsed — it counts from the moment the last of them
//! activated (the transition to Baking) — and the runs requirement holds: `PerAgent`: each
//! selected agent (offline ones left out under Skip) has ≥ `min_runs` finished runs of the new
//! version since the rollout started; `Step`: ≥ `min_runs` runs of the new version finished on
//! updated agents since the step started. Then: `manual` → AwaitingPromote; else the next step,
//! or Succeeded after the last (success also assigns the new version to members never selected,
//! i.e. offline ones skipped under Skip: they get it when they return).
//!
//! # Commands
//!
//! - `Pause`: from Deploying, Baking or AwaitingPromote → `Paused{resume_to}`: no step advances
//!   and no new assignment is made; failures still roll back; activations and runs are still
//!   recorded. Refused when already paused.
//! - `Resume`: `Paused` → `resume_to`, re-evaluated at once (a bake that ended meanwhile passes).
//!   Refused when not paused.
//! - `Promote`: in AwaitingPromote → the next step (or success); in Baking → the bake time AND
//!   the minimum runs are waived and the rollout advances at once (the failure rules have been
//!   checked up to now). Refused in Deploying (`NotAtGate`) and while paused (`Paused`).
//! - `Abort`: from any forward phase → rollback like a failed gate, ending in `Aborted`.
//!
//! All commands are refused once finished (`Finished`) and while rolling back (`RollingBack`).
//!
//! # Invariants
//!
//! - An agent is assigned the new version only when selected, and the number of current members
//!   selected never exceeds the current step's target at the moment an agent is first assigned
//!   it. (A departure can lower a percentage target below the number already updated; those
//!   agents keep the new version. [`Controller::resume`] re-sends assignments already made.)
//! - Once the rollout rolls back (failed gate or abort) no new-version assignment is ever made;
//!   every agent ever assigned the new version is assigned `from_version` (or removal).
//! - Actions and state depend only on the sequence of events (and their `now_ms`), not on the
//!   order of members inside a snapshot; `decode(encode(c)) == c`.
//! - [`Controller::desired_version`] is the level-triggered truth the hub gives to an agent that
//!   returns online.

mod controller;
mod phase;
mod spec;
mod status;

pub use controller::{
    Action, Command, Controller, DecodeError, FORMAT_VERSION, Member, RefusedReason, order_key,
};
pub use phase::{Outcome, Phase};
pub use spec::{OfflinePolicy, RolloutSpec, Scope, Size, SpecError, step_size, step_targets};
pub use status::{AgentState, AgentStatus, GateStatus, Status, StepStatus};
