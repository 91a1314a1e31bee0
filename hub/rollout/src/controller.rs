//! The controller state machine (see the crate docs for the rules): its inputs and outputs,
//! the events it handles, persistence, and stepping (selecting a step's agents, advancing).
//! The gate's rules are in `controller/gate.rs`, the rollback in `controller/rollback.rs`, and
//! the `rollout status` snapshot in `controller/snapshot.rs`.

mod gate;
mod rollback;
mod snapshot;

use std::collections::VecDeque;

use minicbor::{Decode, Encode};

use crate::phase::{Outcome, Phase};
use crate::spec::{OfflinePolicy, RolloutSpec, SpecError};

/// Version of the persisted encoding ([`Controller::encode`]).
pub const FORMAT_VERSION: u32 = 1;

/// One member of the pool, as the hub sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The agent's id.
    pub agent_id: String,
    /// Whether its session is up.
    pub online: bool,
    /// The version of the workflow it currently runs (last reported), if any.
    pub version: Option<u64>,
}

/// An operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Freeze progress (no new step, no new assignment); failures still roll back.
    Pause,
    /// Undo `Pause`.
    Resume,
    /// Pass a manual gate, or cut a bake short (see the crate docs).
    Promote,
    /// Stop and roll back.
    Abort,
}

/// Why a [`Command`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefusedReason {
    /// The rollout is over.
    #[error("the rollout is finished")]
    Finished,
    /// The rollout is rolling back; it cannot be paused, promoted or aborted.
    #[error("the rollout is rolling back")]
    RollingBack,
    /// `Pause` while paused.
    #[error("the rollout is already paused")]
    AlreadyPaused,
    /// `Resume` while not paused.
    #[error("the rollout is not paused")]
    NotPaused,
    /// `Promote` while paused.
    #[error("the rollout is paused; resume it first")]
    Paused,
    /// `Promote` while the step's agents are still activating.
    #[error("the step's agents are still activating; nothing to promote yet")]
    NotAtGate,
}

/// What the hub must do.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Action {
    /// Make `version` the desired version of the workflow for `agent_id` (the hub issues a
    /// signed assignment). `version == 0` means "remove the workflow" (a rollback of a rollout
    /// with no `from_version`).
    #[n(0)]
    Assign {
        /// The agent.
        #[n(0)]
        agent_id: String,
        /// The version, 0 = remove.
        #[n(1)]
        version: u64,
        /// The version to return to under probation (new-version assignments only).
        #[n(2)]
        previous_version: Option<u64>,
        /// Local probation `(runs, max_failures)` (new-version assignments only).
        #[n(3)]
        probation: Option<(u32, u32)>,
    },
    /// The phase changed to this one.
    #[n(1)]
    Phase(#[n(0)] Phase),
    /// A human-readable line for the audit log.
    #[n(2)]
    Audit(#[n(0)] String),
    /// The rollout is over (emitted once).
    #[n(3)]
    Finished(#[n(0)] Outcome),
}

/// Why [`Controller::decode`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid encoding.
    #[error("invalid rollout state encoding: {0}")]
    Cbor(String),
    /// Written by an unknown format version.
    #[error("unknown rollout state format version {0}")]
    Format(u32),
    /// The spec inside is invalid.
    #[error("invalid rollout spec in stored state: {0}")]
    Spec(#[from] SpecError),
    /// The state is inconsistent.
    #[error("inconsistent rollout state: {0}")]
    Inconsistent(String),
}

/// What the controller knows of one member.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Agent {
    #[n(0)]
    pub(crate) id: String,
    #[n(1)]
    pub(crate) online: bool,
    /// Last known active version (`None`: none / removed).
    #[n(2)]
    pub(crate) version: Option<u64>,
    #[n(3)]
    pub(crate) offline_since_ms: Option<i64>,
    /// The step at which it was selected for (assigned) the new version.
    #[n(4)]
    pub(crate) selected_at: Option<usize>,
    #[n(5)]
    pub(crate) selected_ms: Option<i64>,
    /// The step at which it was passed over because offline (Skip), while not selected.
    #[n(6)]
    pub(crate) skipped_at: Option<usize>,
    /// The last version this rollout assigned it (0 = remove).
    #[n(7)]
    pub(crate) assigned: Option<u64>,
    /// When it activated the new version.
    #[n(8)]
    pub(crate) activated_ms: Option<i64>,
    /// Finished runs of the new version.
    #[n(9)]
    pub(crate) runs: u32,
    /// Failed runs of the new version.
    #[n(10)]
    pub(crate) failures: u32,
    /// Why this agent failed the gate (rejection, probation revert, canary failure).
    #[n(11)]
    pub(crate) failure: Option<String>,
    /// It refused the rollback assignment (the rollback does not wait for it).
    #[n(12)]
    pub(crate) rollback_refused: bool,
}

impl Agent {
    fn new(m: &Member, now_ms: i64) -> Agent {
        Agent {
            id: m.agent_id.clone(),
            online: m.online,
            version: m.version,
            offline_since_ms: (!m.online).then_some(now_ms),
            selected_at: None,
            selected_ms: None,
            skipped_at: None,
            assigned: None,
            activated_ms: None,
            runs: 0,
            failures: 0,
            failure: None,
            rollback_refused: false,
        }
    }
}

/// The stable order key of an agent in a rollout: blake3(rollout id || agent id).
pub fn order_key(rollout_id: &str, agent_id: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(rollout_id.as_bytes());
    h.update(agent_id.as_bytes());
    *h.finalize().as_bytes()
}

/// Sort by (order key, id) after removing duplicate ids (deterministically, whatever the input
/// order: among duplicates the greatest `(online, version)` wins).
fn canonical_members(rollout_id: &str, mut members: Vec<Member>) -> Vec<Member> {
    members.sort_by(|a, b| {
        (&a.agent_id, a.online, a.version).cmp(&(&b.agent_id, b.online, b.version))
    });
    let mut dedup: Vec<Member> = Vec::with_capacity(members.len());
    for m in members {
        match dedup.last_mut() {
            Some(last) if last.agent_id == m.agent_id => *last = m,
            _ => dedup.push(m),
        }
    }
    dedup.sort_by_cached_key(|m| (order_key(rollout_id, &m.agent_id), m.agent_id.clone()));
    dedup
}

/// The rollout controller of one rollout (one workflow version into one pool). Sans-IO: feed it
/// events with `handle_*`, carry out what [`Controller::poll_action`] returns, call
/// [`Controller::handle_timeout`] at [`Controller::poll_timeout`].
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Controller {
    #[n(0)]
    spec: RolloutSpec,
    #[n(1)]
    phase: Phase,
    /// Current step index (kept through rollback for the status).
    #[n(2)]
    step: usize,
    /// The members in the stable order (initial members sorted by key, joiners appended).
    #[n(3)]
    agents: Vec<Agent>,
    #[n(4)]
    step_started_ms: i64,
    /// Runs of the new version finished since the current step started.
    #[n(5)]
    step_runs: u32,
    /// Runs of the new version finished since the rollout started (departed agents included).
    #[n(6)]
    total_runs: u32,
    #[n(7)]
    total_failures: u32,
    #[n(8)]
    aborting: bool,
    /// Latest `now_ms` seen.
    #[n(9)]
    last_now_ms: i64,
    /// A failure seen by a handler, consumed by the next evaluation.
    #[n(10)]
    trip: Option<String>,
    #[n(11)]
    actions: VecDeque<Action>,
    /// Where each agent is in `agents` (not persisted: rebuilt whenever `agents` changes).
    #[cbor(skip)]
    by_id: AgentIndex,
}

/// Agent id → position in [`Controller`]'s `agents`. It only mirrors `agents`, so it takes no
/// part in equality.
#[derive(Debug, Clone, Default)]
struct AgentIndex(std::collections::HashMap<String, usize>);

impl PartialEq for AgentIndex {
    fn eq(&self, _: &AgentIndex) -> bool {
        true
    }
}

impl Controller {
    /// Start a rollout over the pool's current members (at least one): emits the audit line,
    /// `Phase(Deploying{0})` and the canaries' assignments (and, if the canaries already run
    /// the new version, what follows).
    pub fn new(spec: RolloutSpec, members: Vec<Member>, now_ms: i64) -> Result<Self, SpecError> {
        spec.validate()?;
        if members.is_empty() {
            return Err(SpecError::EmptyPool);
        }
        let agents = canonical_members(&spec.id, members)
            .iter()
            .map(|m| Agent::new(m, now_ms))
            .collect();
        let mut c = Controller {
            phase: Phase::Deploying { step: 0 },
            step: 0,
            agents,
            step_started_ms: now_ms,
            step_runs: 0,
            total_runs: 0,
            total_failures: 0,
            aborting: false,
            last_now_ms: now_ms,
            trip: None,
            actions: VecDeque::new(),
            by_id: AgentIndex::default(),
            spec,
        };
        c.reindex();
        c.audit(format!(
            "rollout {} started: {} v{} -> v{} in pool {} ({} members, {} steps)",
            c.spec.id,
            c.spec.workflow,
            c.spec
                .from_version
                .map_or("-".to_string(), |v| v.to_string()),
            c.spec.to_version,
            c.spec.pool,
            c.agents.len(),
            c.spec.step_count()
        ));
        c.actions.push_back(Action::Phase(c.phase.clone()));
        c.audit_step_started();
        c.evaluate(now_ms);
        Ok(c)
    }

    /// The spec.
    pub fn spec(&self) -> &RolloutSpec {
        &self.spec
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Whether actions are waiting for [`Controller::poll_action`].
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next action for the hub, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the hub should call [`Controller::handle_timeout`] next: the end of the bake, or the
    /// earliest offline wait limit. Only instants after the latest `now_ms` seen are returned.
    pub fn poll_timeout(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut consider = |t: i64| {
            if t > self.last_now_ms {
                next = Some(next.map_or(t, |n: i64| n.min(t)));
            }
        };
        if let Phase::Baking { until_ms, .. } = self.phase {
            consider(until_ms);
        }
        if self.is_forward() {
            for a in &self.agents {
                if let Some(d) = self.wait_deadline(a) {
                    consider(d);
                }
            }
        }
        next
    }

    /// The version `agent_id` should run according to this rollout: `None` for a non-member;
    /// otherwise `Some(v)` with 0 meaning "remove". Forward phases: `to_version` for agents
    /// selected so far, else `from_version`; rolling back or rolled back/aborted:
    /// `from_version`; succeeded: `to_version`.
    pub fn desired_version(&self, agent_id: &str) -> Option<u64> {
        let a = self.agents.iter().find(|a| a.id == agent_id)?;
        Some(self.desired_for(a))
    }

    fn desired_for(&self, a: &Agent) -> u64 {
        let from = self.spec.from_version.unwrap_or(0);
        match self.phase {
            Phase::Succeeded => self.spec.to_version,
            Phase::RollingBack { .. } | Phase::RolledBack { .. } | Phase::Aborted => from,
            _ if a.selected_at.is_some() => self.spec.to_version,
            _ => from,
        }
    }

    /// A new membership snapshot of the pool. Departed agents are dropped; joiners are appended
    /// to the stable order (sorted by key among themselves) and are sent their desired version
    /// if they report another one (`from_version`, or removal, until their turn; `to_version`
    /// once the rollout succeeded); online flags and versions are updated (a reported version
    /// equal to the one assigned counts as its activation).
    pub fn handle_members(&mut self, members: Vec<Member>, now_ms: i64) {
        let members = canonical_members(&self.spec.id, members);
        let present: std::collections::HashSet<&str> =
            members.iter().map(|m| m.agent_id.as_str()).collect();
        let mut left = Vec::new();
        self.agents.retain(|a| {
            let keep = present.contains(a.id.as_str());
            if !keep {
                left.push(a.id.clone());
            }
            keep
        });
        if !left.is_empty() {
            self.reindex();
        }
        for id in left {
            self.audit(format!("agent {id} left the pool"));
        }
        let known = self.agents.len();
        for m in &members {
            if let Some(i) = self.index(&m.agent_id).filter(|&i| i < known) {
                self.set_online(i, m.online, now_ms);
                self.note_version(i, m.version.unwrap_or(0), now_ms);
            } else {
                let agent = Agent::new(m, now_ms);
                self.audit(format!(
                    "agent {} joined the pool ({})",
                    agent.id,
                    if agent.online { "online" } else { "offline" }
                ));
                let succeeded = self.phase == Phase::Succeeded;
                let want = if succeeded {
                    self.spec.to_version
                } else {
                    self.spec.from_version.unwrap_or(0)
                };
                let id = agent.id.clone();
                let differs = agent.version.unwrap_or(0) != want;
                self.by_id.0.insert(id.clone(), self.agents.len());
                self.agents.push(agent);
                if succeeded {
                    let step = self.step;
                    if let Some(a) = self.agents.last_mut() {
                        a.selected_at = Some(step);
                        a.selected_ms = Some(now_ms);
                        a.assigned = Some(want);
                    }
                    self.push_new_assign(id);
                } else if differs {
                    if let Some(a) = self.agents.last_mut() {
                        a.assigned = Some(want);
                    }
                    self.actions.push_back(Action::Assign {
                        agent_id: id,
                        version: want,
                        previous_version: None,
                        probation: None,
                    });
                }
            }
        }
        self.evaluate(now_ms);
    }

    /// `agent` reported that it activated `version` (0 = it removed the workflow).
    pub fn handle_activated(&mut self, agent: &str, version: u64, now_ms: i64) {
        if let Some(i) = self.index(agent) {
            self.note_version(i, version, now_ms);
        }
        self.evaluate(now_ms);
    }

    /// `agent` refused `version`: a failed gate when it is the new version of an updated agent;
    /// a refused rollback assignment is logged and no longer waited for.
    pub fn handle_rejected(&mut self, agent: &str, version: u64, reason: &str, now_ms: i64) {
        if let Some(i) = self.index(agent) {
            let a = &self.agents[i];
            if version == self.spec.to_version && a.selected_at.is_some() {
                let why = format!("agent {agent} rejected v{version}: {reason}");
                self.fail_agent(i, why);
            } else if matches!(self.phase, Phase::RollingBack { .. }) && a.assigned == Some(version)
            {
                self.agents[i].rollback_refused = true;
                self.audit(format!(
                    "agent {agent} refused the rollback to v{version}: {reason}"
                ));
            } else {
                self.audit(format!("agent {agent} rejected v{version}: {reason}"));
            }
        }
        self.evaluate(now_ms);
    }

    /// A run of `version` finished on `agent`. Runs of the new version on updated agents count
    /// for the gate; a failed one on a canary (step 0) agent fails the gate at once.
    pub fn handle_run(&mut self, agent: &str, version: u64, succeeded: bool, now_ms: i64) {
        if let Some(i) = self.index(agent)
            && version == self.spec.to_version
            && self.agents[i].selected_at.is_some()
        {
            let counting = self.is_forward();
            let a = &mut self.agents[i];
            a.runs = a.runs.saturating_add(1);
            if !succeeded {
                a.failures = a.failures.saturating_add(1);
            }
            let canary = a.selected_at == Some(0);
            if counting {
                self.total_runs = self.total_runs.saturating_add(1);
                self.step_runs = self.step_runs.saturating_add(1);
                if !succeeded {
                    self.total_failures = self.total_failures.saturating_add(1);
                }
            }
            // Under probation the agent reverts by itself once more than K of its first N runs
            // failed; its `Reverted` report comes after those runs (and may come much later:
            // after a partition), so the runs alone must fail the gate, or the same runs could
            // first meet `min_runs` and pass it.
            let (runs, failures) = (a.runs, a.failures);
            let probation_failed = self
                .spec
                .probation
                .is_some_and(|(n, k)| runs <= n && failures > k);
            if !succeeded && canary {
                let why = format!("canary agent {agent}: a run of v{version} failed");
                self.fail_agent(i, why);
            } else if !succeeded && probation_failed {
                let (n, k) = self.spec.probation.unwrap_or_default();
                let why = format!(
                    "agent {agent} failed its probation: {failures} of its first {runs} runs of \
                     v{version} failed (allowed: {k} of {n}); it reverts by itself"
                );
                self.fail_agent(i, why);
            }
        }
        self.evaluate(now_ms);
    }

    /// `agent` reverted from `from` to `to` by itself under probation: a failed gate when `from`
    /// is the new version.
    pub fn handle_reverted(&mut self, agent: &str, from: u64, to: u64, reason: &str, now_ms: i64) {
        if let Some(i) = self.index(agent) {
            self.agents[i].version = (to != 0).then_some(to);
            if from == self.spec.to_version && self.agents[i].selected_at.is_some() {
                let why =
                    format!("agent {agent} reverted v{from} -> v{to} under probation: {reason}");
                self.fail_agent(i, why);
            } else {
                self.audit(format!("agent {agent} reverted v{from} -> v{to}: {reason}"));
            }
        }
        self.evaluate(now_ms);
    }

    /// `agent`'s session went up or down.
    pub fn handle_online(&mut self, agent: &str, online: bool, now_ms: i64) {
        if let Some(i) = self.index(agent) {
            self.set_online(i, online, now_ms);
        }
        self.evaluate(now_ms);
    }

    /// An operator's command. See the crate docs for what each does and when it is refused.
    pub fn handle_command(&mut self, cmd: Command, now_ms: i64) -> Result<(), RefusedReason> {
        self.evaluate(now_ms);
        if self.phase.is_terminal() {
            return Err(RefusedReason::Finished);
        }
        if matches!(self.phase, Phase::RollingBack { .. }) {
            return Err(RefusedReason::RollingBack);
        }
        match cmd {
            Command::Pause => {
                if matches!(self.phase, Phase::Paused { .. }) {
                    return Err(RefusedReason::AlreadyPaused);
                }
                let resume_to = Box::new(self.phase.clone());
                self.audit(format!("paused by command at step {}", self.step));
                self.set_phase(Phase::Paused { resume_to });
            }
            Command::Resume => {
                let Phase::Paused { resume_to } = &self.phase else {
                    return Err(RefusedReason::NotPaused);
                };
                let p = (**resume_to).clone();
                self.audit(format!("resumed by command at step {}", self.step));
                self.set_phase(p);
            }
            Command::Promote => match self.phase {
                Phase::Paused { .. } => return Err(RefusedReason::Paused),
                Phase::Deploying { .. } => return Err(RefusedReason::NotAtGate),
                Phase::AwaitingPromote { step } => {
                    self.audit(format!("promoted by command at step {step}"));
                    self.advance(now_ms);
                }
                Phase::Baking { step, .. } => {
                    let figures = self.gate_figures(now_ms);
                    self.audit(format!(
                        "promoted by command at step {step}: bake and minimum runs waived ({figures})"
                    ));
                    self.advance(now_ms);
                }
                _ => return Err(RefusedReason::Finished),
            },
            Command::Abort => {
                self.start_rollback("aborted by command".to_string(), true);
            }
        }
        self.evaluate(now_ms);
        Ok(())
    }

    /// Time passed (call it at [`Controller::poll_timeout`]; calling it at any time is harmless).
    pub fn handle_timeout(&mut self, now_ms: i64) {
        self.evaluate(now_ms);
    }

    /// After [`Controller::decode`] at a hub restart: re-emit the assignments of the current
    /// phase (the new version to every selected agent in forward phases, the old one to every
    /// updated agent while rolling back; nothing when finished), so assignments lost in flight
    /// are sent again (the hub treats an unchanged desired version as a no-op), then evaluate at
    /// `now_ms` exactly as [`Controller::handle_timeout`] would.
    pub fn resume(&mut self, now_ms: i64) {
        let mut n = 0;
        if self.is_forward() {
            for i in 0..self.agents.len() {
                if self.agents[i].selected_at.is_some() {
                    let id = self.agents[i].id.clone();
                    self.push_new_assign(id);
                    n += 1;
                }
            }
        } else if matches!(self.phase, Phase::RollingBack { .. }) {
            for i in 0..self.agents.len() {
                if self.agents[i].selected_at.is_some() {
                    let id = self.agents[i].id.clone();
                    self.push_rollback_assign(id);
                    n += 1;
                }
            }
        }
        if !self.phase.is_terminal() {
            self.audit(format!(
                "resumed after a hub restart: re-sent {n} assignments"
            ));
        }
        self.evaluate(now_ms);
    }

    /// Encode the whole state (pending actions included) with minicbor: `[FORMAT_VERSION,
    /// state]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut e = minicbor::Encoder::new(&mut buf);
        // Encoding into a Vec cannot fail.
        let _ = e.array(2).and_then(|e| e.u32(FORMAT_VERSION));
        let _ = e.encode(self);
        buf
    }

    /// Decode a state written by [`Controller::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Controller, DecodeError> {
        let mut d = minicbor::Decoder::new(bytes);
        let len = d.array().map_err(|e| DecodeError::Cbor(e.to_string()))?;
        if len != Some(2) {
            return Err(DecodeError::Cbor("expected [format, state]".into()));
        }
        let format = d.u32().map_err(|e| DecodeError::Cbor(e.to_string()))?;
        if format != FORMAT_VERSION {
            return Err(DecodeError::Format(format));
        }
        let mut c: Controller = d.decode().map_err(|e| DecodeError::Cbor(e.to_string()))?;
        c.reindex();
        if d.position() != bytes.len() {
            return Err(DecodeError::Cbor("trailing bytes".into()));
        }
        c.spec.validate()?;
        if c.step >= c.spec.step_count() {
            return Err(DecodeError::Inconsistent(format!(
                "step {} of {}",
                c.step,
                c.spec.step_count()
            )));
        }
        if let Some(s) = c.phase.step()
            && s != c.step
        {
            return Err(DecodeError::Inconsistent(format!(
                "phase at step {s}, state at step {}",
                c.step
            )));
        }
        if c.agents
            .iter()
            .any(|a| a.selected_at.is_some_and(|s| s > c.step))
        {
            return Err(DecodeError::Inconsistent(
                "an agent selected at a later step".into(),
            ));
        }
        Ok(c)
    }

    // ----- internals -----

    fn member_count(&self) -> u32 {
        u32::try_from(self.agents.len()).unwrap_or(u32::MAX)
    }

    fn index(&self, agent: &str) -> Option<usize> {
        self.by_id
            .0
            .get(agent)
            .copied()
            .filter(|&i| self.agents.get(i).is_some_and(|a| a.id == agent))
    }

    fn reindex(&mut self) {
        self.by_id.0 = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
    }

    fn audit(&mut self, line: String) {
        self.actions.push_back(Action::Audit(line));
    }

    fn set_phase(&mut self, p: Phase) {
        if p != self.phase {
            self.phase = p.clone();
            self.actions.push_back(Action::Phase(p));
        }
    }

    /// Deploying, Baking, AwaitingPromote, or Paused.
    fn is_forward(&self) -> bool {
        self.phase.step().is_some()
    }

    fn target(&self) -> u32 {
        let t = self.spec.targets(self.member_count());
        t.get(self.step).copied().unwrap_or(0)
    }

    fn audit_step_started(&mut self) {
        let t = self.target();
        let size = self.spec.sizes().nth(self.step);
        let size = size.map_or(String::new(), |s| s.to_string());
        let label = if self.step == 0 { " (canary)" } else { "" };
        self.audit(format!(
            "step {}{label} started: size {size}, target {t} of {} agents",
            self.step,
            self.agents.len()
        ));
    }

    fn set_online(&mut self, i: usize, online: bool, now_ms: i64) {
        let a = &mut self.agents[i];
        if a.online == online {
            return;
        }
        a.online = online;
        a.offline_since_ms = (!online).then_some(now_ms);
        let id = a.id.clone();
        let watched = a.selected_at.is_some() && !self.phase.is_terminal();
        if watched {
            self.audit(format!(
                "agent {id} {}",
                if online {
                    "came back online"
                } else {
                    "went offline"
                }
            ));
        }
    }

    /// A reported active version (0 = none).
    fn note_version(&mut self, i: usize, version: u64, now_ms: i64) {
        let to = self.spec.to_version;
        let forward = self.is_forward() || self.phase == Phase::Succeeded;
        let a = &mut self.agents[i];
        a.version = (version != 0).then_some(version);
        if version == to && a.assigned == Some(to) && a.activated_ms.is_none() && forward {
            a.activated_ms = Some(now_ms);
        }
    }

    fn fail_agent(&mut self, i: usize, why: String) {
        if self.agents[i].failure.is_none() {
            self.agents[i].failure = Some(why.clone());
        }
        if self.is_forward() {
            if self.trip.is_none() {
                self.trip = Some(why);
            }
        } else {
            self.audit(why);
        }
    }

    fn push_new_assign(&mut self, id: String) {
        self.actions.push_back(Action::Assign {
            agent_id: id,
            version: self.spec.to_version,
            previous_version: self.spec.from_version,
            probation: self.spec.probation,
        });
    }

    fn push_rollback_assign(&mut self, id: String) {
        self.actions.push_back(Action::Assign {
            agent_id: id,
            version: self.spec.from_version.unwrap_or(0),
            previous_version: None,
            probation: None,
        });
    }

    /// Select agents for the current step up to its target, in the stable order. Returns how
    /// many were selected now.
    fn fill(&mut self, now_ms: i64) -> usize {
        let target = self.target() as usize;
        let mut have = self
            .agents
            .iter()
            .filter(|a| a.selected_at.is_some())
            .count();
        let skip = self.spec.offline == OfflinePolicy::Skip;
        let mut added = 0;
        for i in 0..self.agents.len() {
            if have >= target {
                break;
            }
            if self.agents[i].selected_at.is_some() {
                continue;
            }
            if skip && !self.agents[i].online {
                if self.agents[i].skipped_at != Some(self.step) {
                    self.agents[i].skipped_at = Some(self.step);
                    let id = self.agents[i].id.clone();
                    self.audit(format!(
                        "agent {id} is offline: skipped at step {}",
                        self.step
                    ));
                }
                continue;
            }
            let step = self.step;
            let to = self.spec.to_version;
            let a = &mut self.agents[i];
            a.selected_at = Some(step);
            a.selected_ms = Some(now_ms);
            a.skipped_at = None;
            a.assigned = Some(to);
            if a.version == Some(to) {
                a.activated_ms = Some(now_ms);
            }
            let id = a.id.clone();
            self.push_new_assign(id);
            have += 1;
            added += 1;
        }
        added
    }

    /// The current step's gate passed (or was promoted): next step, or success.
    fn advance(&mut self, now_ms: i64) {
        if self.step + 1 >= self.spec.step_count() {
            let mut late = 0;
            for i in 0..self.agents.len() {
                if self.agents[i].selected_at.is_none() {
                    let step = self.step;
                    let to = self.spec.to_version;
                    let a = &mut self.agents[i];
                    a.selected_at = Some(step);
                    a.selected_ms = Some(now_ms);
                    a.assigned = Some(to);
                    let id = a.id.clone();
                    self.push_new_assign(id);
                    late += 1;
                }
            }
            self.audit(format!(
                "rollout succeeded: {} agents on v{} ({late} offline agents get it when they return)",
                self.agents.len(),
                self.spec.to_version
            ));
            self.set_phase(Phase::Succeeded);
            self.actions.push_back(Action::Finished(Outcome::Succeeded));
        } else {
            self.step += 1;
            self.step_started_ms = now_ms;
            self.step_runs = 0;
            self.set_phase(Phase::Deploying { step: self.step });
            self.audit_step_started();
        }
    }
}
