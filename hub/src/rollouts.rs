//! The rollout driver: owns the `outpost-rollout` controllers of the active rollouts (one per
//! workflow and pool), feeds them membership (pool members by labels, online state from the
//! session registry), agent events (activations, rejections, terminal runs, probation reverts —
//! queued durably by the store in the same transaction that ingested them), timers and
//! operator commands; carries out their actions (assignments become per-agent desired state,
//! audit lines go to the audit log, the end of a rollout becomes the pool's decision); and
//! commits each controller's encoded state after every change, so a hub restart resumes
//! ([`Hub::resume_rollouts`]: `decode` + `resume`).
//!
//! Every operation runs under one lock (the driver is single-owner) and decodes the controller
//! from the store, so the store is the only copy of the state.

use outpost_rollout::{
    Action, Controller, DecodeError, Member, OfflinePolicy, Outcome, Phase, RefusedReason,
    RolloutSpec, Scope, Size, SpecError, Status,
};

use crate::events::{EventKind, HUB_ACTOR};
use crate::hub::{Hub, now_ms};
use crate::store::{
    PoolRecord, RolloutAssign, RolloutCommit, RolloutEvent, RolloutEventKind, RolloutRecord,
    StoreError, selector_matches,
};

/// Why a rollout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The store failed or refused (pinned pool, active rollout, unknown pool...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plan is invalid.
    #[error("invalid rollout: {0}")]
    Spec(#[from] SpecError),
    /// The controller refused a command.
    #[error("refused: {0}")]
    Refused(#[from] RefusedReason),
    /// Stored state is unreadable.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// No rollout for the workflow and pool.
    #[error("no rollout of {workflow} in pool {pool}")]
    NoRollout {
        /// Workflow.
        workflow: String,
        /// Pool.
        pool: String,
    },
    /// Bad input.
    #[error("{0}")]
    Bad(String),
}

/// What `rollout start` asks for (the spec without id, versions and time).
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    /// Workflow.
    pub workflow: String,
    /// Pool.
    pub pool: String,
    /// Version to roll out (`None`: the latest).
    pub version: Option<u64>,
    /// Canary size.
    pub canary: Size,
    /// Steps after the canary.
    pub steps: Vec<Size>,
    /// Bake time per step.
    pub bake_ms: i64,
    /// Minimum runs.
    pub min_runs: u32,
    /// What min runs counts.
    pub min_runs_scope: Scope,
    /// Maximum failure rate.
    pub max_failure_rate: f64,
    /// Wait for `promote` at every gate.
    pub manual: bool,
    /// Local probation.
    pub probation: Option<(u32, u32)>,
    /// Offline policy.
    pub offline: OfflinePolicy,
}

/// Parse a step size: `N` or `N%`.
pub fn parse_size(s: &str) -> Result<Size, String> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let p: u8 = p
            .trim()
            .parse()
            .map_err(|_| format!("bad percentage {s:?} (expected 1%..100%)"))?;
        Ok(Size::Percent(p))
    } else {
        s.parse::<u32>().map(Size::Count).map_err(|_| {
            format!("bad step size {s:?} (expected a count like 2 or a percentage like 10%)")
        })
    }
}

/// Parse `--steps 1,10%,50%,100%`.
pub fn parse_steps(s: &str) -> Result<Vec<Size>, String> {
    s.split(',').map(parse_size).collect()
}

/// Parse `--offline wait[:D]|skip|fail` (default wait limit: 10 minutes).
pub fn parse_offline(s: &str) -> Result<OfflinePolicy, String> {
    match s.trim() {
        "skip" => Ok(OfflinePolicy::Skip),
        "fail" => Ok(OfflinePolicy::Fail),
        "wait" => Ok(OfflinePolicy::Wait { max_ms: 600_000 }),
        other => match other.strip_prefix("wait:") {
            Some(d) => {
                let d = outpost_common::duration::parse_duration(d)
                    .map_err(|e| format!("offline wait {d:?}: {e}"))?;
                Ok(OfflinePolicy::Wait {
                    max_ms: i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                })
            }
            None => Err(format!(
                "bad offline policy {other:?} (expected wait, wait:DURATION, skip or fail)"
            )),
        },
    }
}

/// Text of an offline policy (the inverse of [`parse_offline`]).
pub fn offline_text(p: &OfflinePolicy) -> String {
    match p {
        OfflinePolicy::Wait { max_ms } => format!("wait:{}s", max_ms / 1000),
        OfflinePolicy::Skip => "skip".into(),
        OfflinePolicy::Fail => "fail".into(),
    }
}

/// A phase for humans.
pub fn phase_text(p: &Phase) -> String {
    match p {
        Phase::Deploying { step } => format!("deploying step {step}"),
        Phase::Baking { step, .. } => format!("baking step {step}"),
        Phase::AwaitingPromote { step } => format!("awaiting promote at step {step}"),
        Phase::Paused { resume_to } => format!("paused ({})", phase_text(resume_to)),
        Phase::RollingBack { reason } => format!("rolling back: {reason}"),
        Phase::Succeeded => "succeeded".into(),
        Phase::RolledBack { reason } => format!("rolled back: {reason}"),
        Phase::Aborted => "aborted".into(),
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Succeeded => "succeeded".into(),
        Outcome::RolledBack { reason } => format!("rolled back: {reason}"),
        Outcome::Aborted => "aborted".into(),
    }
}

/// Drain a controller's actions into a commit (the caller adds `consumed`). Returns whether
/// desired state changed (an assignment or the end of the rollout), and the domain events of
/// the drained actions (steps passed, the end) to emit once the commit is durable. `before` is
/// the controller's phase before the input that produced the actions.
pub(crate) fn drain(
    c: &mut Controller,
    seq: u64,
    actor: &str,
    before: &Phase,
) -> (RolloutCommit, bool, Vec<EventKind>) {
    let spec = c.spec().clone();
    let id = spec.id.clone();
    let mut commit = RolloutCommit {
        seq,
        ..RolloutCommit::default()
    };
    let mut changed = false;
    let mut events = Vec::new();
    let mut prev = before.clone();
    let ev = |step: usize| EventKind::RolloutStepPassed {
        rollout: spec.id.clone(),
        workflow: spec.workflow.clone(),
        pool: spec.pool.clone(),
        step,
    };
    while let Some(a) = c.poll_action() {
        match a {
            Action::Assign {
                agent_id,
                version,
                previous_version,
                probation,
            } => {
                changed = true;
                commit.assigns.push((
                    agent_id,
                    RolloutAssign {
                        version,
                        previous_version,
                        probation,
                        rollout_id: id.clone(),
                    },
                ));
            }
            Action::Phase(p) => {
                if let Some(step) = step_passed(&prev, &p) {
                    events.push(ev(step));
                }
                commit.phase = Some(phase_text(&p));
                prev = p;
            }
            Action::Audit(line) => {
                commit
                    .audit
                    .push((actor.to_string(), "rollout".into(), format!("{id}: {line}")));
            }
            Action::Finished(o) => {
                changed = true;
                let version = match o {
                    Outcome::Succeeded => spec.to_version,
                    _ => spec.from_version.unwrap_or(0),
                };
                events.push(EventKind::RolloutFinished {
                    rollout: spec.id.clone(),
                    workflow: spec.workflow.clone(),
                    pool: spec.pool.clone(),
                    outcome: outcome_text(&o),
                });
                commit.finished = Some((version, outcome_text(&o)));
            }
        }
    }
    commit.state = c.encode();
    (commit, changed, events)
}

/// The step whose gate a phase change passes: leaving `Baking` (bake and runs done, or
/// promoted) for the promote wait, the next step or success; or promoted from the wait.
fn step_passed(prev: &Phase, next: &Phase) -> Option<usize> {
    match (prev, next) {
        (Phase::Baking { step, .. }, Phase::AwaitingPromote { step: s }) if s == step => {
            Some(*step)
        }
        (Phase::Baking { step, .. }, Phase::Deploying { step: s }) if *s == step + 1 => Some(*step),
        (Phase::Baking { step, .. }, Phase::Succeeded) => Some(*step),
        _ => None,
    }
}

/// What the rollout driver keeps between its turns, under the rollouts lock: each active
/// rollout's controller as the driver last left it, with the state bytes committed last, so a
/// turn decodes the stored state only when another operation (a command, a restart's resume)
/// committed a different one; and when it last fed the pool's membership.
#[derive(Default)]
pub(crate) struct RolloutDriver {
    controllers: std::collections::HashMap<u64, DriverEntry>,
}

struct DriverEntry {
    /// The state bytes last committed (by the driver) or read from the store.
    committed: Vec<u8>,
    /// `decode(committed)` fed with the inputs since that produced no action.
    controller: Controller,
    /// When the membership was fed last.
    members_ms: Option<i64>,
}

impl RolloutDriver {
    /// The controller of rollout `seq` whose stored state is `stored`.
    fn controller(&mut self, seq: u64, stored: Vec<u8>) -> Result<&mut DriverEntry, DecodeError> {
        use std::collections::hash_map::Entry;
        match self.controllers.entry(seq) {
            Entry::Occupied(e) if e.get().committed == stored => Ok(e.into_mut()),
            Entry::Occupied(mut e) => {
                e.insert(DriverEntry::decode(stored)?);
                Ok(e.into_mut())
            }
            Entry::Vacant(e) => Ok(e.insert(DriverEntry::decode(stored)?)),
        }
    }

    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.controllers.retain(|seq, _| keep(*seq));
    }

    fn forget(&mut self, seq: u64) {
        self.controllers.remove(&seq);
    }

    fn clear(&mut self) {
        self.controllers.clear();
    }
}

impl DriverEntry {
    fn decode(stored: Vec<u8>) -> Result<DriverEntry, DecodeError> {
        Ok(DriverEntry {
            controller: Controller::decode(&stored)?,
            committed: stored,
            members_ms: None,
        })
    }
}

impl Hub {
    /// The members of `pool` for `workflow`: non-revoked agents whose labels match, with their
    /// session state and last reported version.
    pub fn pool_members(
        &self,
        pool: &PoolRecord,
        workflow: &str,
    ) -> Result<Vec<Member>, StoreError> {
        let connected: std::collections::HashSet<String> = self
            .gateway()
            .connected()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        // HA mode: an agent whose session another live replica holds is online, on the
        // version it reported there (`agent_presence`).
        let elsewhere = self.held_elsewhere()?;
        Ok(self
            .store()
            .agents()?
            .into_iter()
            .filter(|a| a.revoked_ms.is_none() && selector_matches(&pool.selector, &a.labels))
            .map(|a| {
                let here = connected.contains(&a.id);
                let elsewhere = elsewhere.get(&a.id).filter(|_| !here);
                let active = elsewhere.map_or(&a.active, |p| &p.active);
                Member {
                    online: here || elsewhere.is_some(),
                    version: active
                        .iter()
                        .find(|w| w.workflow == workflow)
                        .map(|w| w.version),
                    agent_id: a.id,
                }
            })
            .collect())
    }

    pub(crate) fn lock_rollouts(&self) -> std::sync::MutexGuard<'_, RolloutDriver> {
        self.rollout_lock.lock().unwrap_or_else(|poisoned| {
            // A turn stopped half-way: what it fed in memory may not be durable.
            self.rollout_lock.clear_poison();
            let mut g = poisoned.into_inner();
            g.clear();
            g
        })
    }

    /// The version the pool is on before a rollout: its own decision, or, when it has none,
    /// the most common version its members are given now (ties: the higher).
    pub(crate) fn pool_version(
        &self,
        workflow: &str,
        pool: &PoolRecord,
    ) -> Result<u64, StoreError> {
        if let Some(d) = self.store().decision(workflow, &pool.name)? {
            return Ok(d.version);
        }
        let mut counts: std::collections::BTreeMap<u64, u32> = Default::default();
        for a in self.store().agents()? {
            if a.revoked_ms.is_some() || !selector_matches(&pool.selector, &a.labels) {
                continue;
            }
            let v = self
                .desired_versions_of(&a)?
                .into_iter()
                .find(|d| d.workflow == workflow)
                .map_or(0, |d| d.version);
            *counts.entry(v).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .max_by_key(|(v, n)| (*n, *v))
            .map_or(0, |(v, _)| v))
    }

    /// The active rollout of (workflow, pool), else the latest one.
    pub fn find_rollout(&self, workflow: &str, pool: &str) -> Result<RolloutRecord, RolloutError> {
        self.store()
            .rollouts()?
            .into_iter()
            .rev()
            .filter(|r| r.workflow == workflow && r.pool == pool)
            .max_by_key(|r| (r.active, r.seq))
            .ok_or_else(|| RolloutError::NoRollout {
                workflow: workflow.into(),
                pool: pool.into(),
            })
    }

    /// The status of a rollout (from its stored controller state) and its spec.
    pub fn rollout_status(
        &self,
        rec: &RolloutRecord,
    ) -> Result<(Status, RolloutSpec), RolloutError> {
        let c = Controller::decode(&self.store().rollout_state(rec.seq)?)?;
        let mut status = c.status(now_ms());
        if !rec.active {
            self.live_online(&mut status);
        }
        Ok((status, c.spec().clone()))
    }

    /// The ids of the agents with a live session now (at any live replica, in HA mode).
    fn connected_ids(&self) -> std::collections::HashSet<String> {
        self.connected().into_iter().map(|(id, _)| id).collect()
    }

    /// A finished rollout is no longer fed membership: the online flags it holds are those of
    /// when it finished (or of before a hub restart). Show each member's session as it is now,
    /// as `agent list` does; a member held "offline" that is connected again is shown in the
    /// state it would be in online.
    fn live_online(&self, status: &mut outpost_rollout::Status) {
        let connected = self.connected_ids();
        let rolling_back = matches!(
            status.phase,
            outpost_rollout::Phase::RolledBack { .. } | outpost_rollout::Phase::Aborted
        );
        for a in &mut status.agents {
            a.online = connected.contains(&a.agent_id);
            if a.online && a.state == outpost_rollout::AgentState::Offline {
                a.state = if rolling_back {
                    outpost_rollout::AgentState::RollingBack
                } else {
                    outpost_rollout::AgentState::Assigned
                };
            }
        }
    }

    /// After a restart: `decode` + `resume` every active rollout (re-sends its assignments,
    /// re-evaluates the gate) and commit.
    pub fn resume_rollouts(&self) -> Result<usize, RolloutError> {
        let _g = self.lock_rollouts();
        let now = now_ms();
        let mut n = 0;
        for rec in self.store().rollouts()?.into_iter().filter(|r| r.active) {
            let mut c = Controller::decode(&self.store().rollout_state(rec.seq)?)?;
            let before = c.phase().clone();
            c.resume(now);
            let (commit, _, events) = drain(&mut c, rec.seq, HUB_ACTOR, &before);
            self.store().commit_rollout(commit, now)?;
            for e in events {
                self.emit(HUB_ACTOR, e);
            }
            n += 1;
        }
        if n > 0 {
            self.notify_changed();
        }
        Ok(n)
    }

    /// One turn of the driver at `now`: feed queued agent events, the current membership and
    /// time to every active rollout; commit all of it in one transaction; returns the earliest
    /// controller timeout.
    pub fn rollout_tick(&self, now: i64) -> Result<Option<i64>, RolloutError> {
        self.rollout_turn(now, 0)
    }

    /// [`Hub::rollout_tick`], feeding a rollout its pool's membership only when the last feed
    /// is at least `members_every_ms` old (agent events are fed at every turn). Reading the
    /// membership decodes every agent record; agent events, which the driver is woken for,
    /// are what advance a step, so the driver refreshes membership on a period instead.
    pub(crate) fn rollout_turn(
        &self,
        now: i64,
        members_every_ms: i64,
    ) -> Result<Option<i64>, RolloutError> {
        let mut driver = self.lock_rollouts();
        // Only the leader drives rollouts; asked under the lock, at the moment of acting.
        let Some(epoch) = self.leader().acting() else {
            return Ok(None);
        };
        // In HA mode its writes are fenced on the epoch: refused once another replica leads.
        let r = crate::store::fenced(epoch, || {
            self.turn_locked(&mut driver, now, members_every_ms)
        });
        if r.is_err() {
            // What was fed in memory may not be durable: start again from the store.
            driver.clear();
        }
        r
    }

    fn turn_locked(
        &self,
        driver: &mut RolloutDriver,
        now: i64,
        members_every_ms: i64,
    ) -> Result<Option<i64>, RolloutError> {
        let t0 = std::time::Instant::now();
        let events = self.store().pending_events(10_000)?;
        let active: Vec<RolloutRecord> = self
            .store()
            .rollouts()?
            .into_iter()
            .filter(|r| r.active)
            .collect();
        driver.retain(|seq| active.iter().any(|r| r.seq == seq));
        // Events of workflows without an active rollout are consumed with the turn's commit.
        let unused: Vec<u64> = events
            .iter()
            .filter(|(_, e)| !active.iter().any(|r| r.workflow == e.workflow))
            .map(|(s, _)| *s)
            .collect();
        let t_read = t0.elapsed();
        let (mut t_members, mut t_ctrl) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        let mut state_bytes = 0usize;
        let mut next: Option<i64> = None;
        let mut changed = false;
        let mut commits = Vec::with_capacity(active.len());
        let mut emitted = Vec::new();
        for (i, rec) in active.iter().enumerate() {
            let tf = std::time::Instant::now();
            let stored = self.store().rollout_state(rec.seq)?;
            let entry = driver.controller(rec.seq, stored)?;
            let c = &mut entry.controller;
            let before = c.phase().clone();
            let mine: Vec<&(u64, RolloutEvent)> = events
                .iter()
                .filter(|(_, e)| e.workflow == rec.workflow)
                .collect();
            for (_, e) in &mine {
                feed(c, e, now);
            }
            t_ctrl += tf.elapsed();
            let members_due = entry
                .members_ms
                .is_none_or(|t| now.saturating_sub(t) >= members_every_ms);
            if members_due {
                let pool = match self.store().pool(&rec.pool) {
                    Ok(p) => p,
                    Err(StoreError::NoPool(_)) => {
                        // Fed from the stored state again once the pool is back.
                        driver.forget(rec.seq);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let tm = std::time::Instant::now();
                let members = self.pool_members(&pool, &rec.workflow)?;
                t_members += tm.elapsed();
                c.handle_members(members, now);
                entry.members_ms = Some(now);
            }
            let tc = std::time::Instant::now();
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
            if let Some(t) = c.poll_timeout() {
                next = Some(next.map_or(t, |n: i64| n.min(t)));
            }
            // The last active rollout of a workflow consumes its events.
            let consumes = !active[i + 1..].iter().any(|r| r.workflow == rec.workflow);
            let consumed: Vec<u64> = if consumes {
                mine.iter().map(|(s, _)| *s).collect()
            } else {
                Vec::new()
            };
            if mine.is_empty() && !c.has_actions() {
                // No event fed and nothing to act on: the state committed last still decides
                // everything done so far (what changed in memory, online flags and time, is
                // fed again after a restart), so there is nothing to commit.
                t_ctrl += tc.elapsed();
                continue;
            }
            let (mut commit, ch, ev) = drain(c, rec.seq, HUB_ACTOR, &before);
            commit.consumed = consumed;
            entry.committed.clone_from(&commit.state);
            t_ctrl += tc.elapsed();
            state_bytes += commit.state.len();
            if let Some(p) = &commit.phase {
                tracing::debug!(rollout = %rec.id, phase = %p, assigns = commit.assigns.len(), "rollout phase");
            }
            changed |= ch;
            emitted.extend(ev);
            commits.push(commit);
        }
        let tc = std::time::Instant::now();
        let committed = commits.len();
        self.store().commit_rollouts(commits, &unused, now)?;
        tracing::debug!(
            events = events.len(),
            rollouts = active.len(),
            committed,
            state_bytes,
            read_ms = t_read.as_secs_f64() * 1e3,
            members_ms = t_members.as_secs_f64() * 1e3,
            controller_ms = t_ctrl.as_secs_f64() * 1e3,
            commit_ms = tc.elapsed().as_secs_f64() * 1e3,
            total_ms = t0.elapsed().as_secs_f64() * 1e3,
            changed,
            "rollout tick"
        );
        if changed {
            self.notify_changed();
        }
        for e in emitted {
            self.emit(HUB_ACTOR, e);
        }
        Ok(next)
    }

    /// Whether any rollout is active.
    pub fn has_active_rollouts(&self) -> Result<bool, StoreError> {
        Ok(self.store().rollouts()?.iter().any(|r| r.active))
    }
}

fn feed(c: &mut Controller, e: &RolloutEvent, now: i64) {
    match &e.kind {
        RolloutEventKind::Run { version, succeeded } => {
            c.handle_run(&e.agent, *version, *succeeded, now)
        }
        RolloutEventKind::Activated { version } => c.handle_activated(&e.agent, *version, now),
        RolloutEventKind::Rejected { version, reason } => {
            c.handle_rejected(&e.agent, *version, reason, now)
        }
        RolloutEventKind::Reverted { from, to, reason } => {
            c.handle_reverted(&e.agent, *from, *to, reason, now)
        }
    }
}

/// How often the driver feeds each active rollout its pool's membership (online state,
/// joiners, departures); agent events are fed as they come.
const MEMBERS_EVERY_MS: i64 = 500;

/// Run the driver until `shutdown` flips: resume stored rollouts, then tick on every wake-up
/// (agent events, commands), at the controllers' timeouts, and at least every 500 ms while a
/// rollout is active (membership and online state).
pub async fn drive(hub: std::sync::Arc<Hub>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    {
        let h = hub.clone();
        match tokio::task::spawn_blocking(move || h.resume_rollouts()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(rollouts = n, "resumed active rollouts"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("resuming rollouts: {e}"),
            Err(e) => tracing::error!("resuming rollouts: {e}"),
        }
    }
    loop {
        let h = hub.clone();
        let r = tokio::task::spawn_blocking(move || {
            let active = h.has_active_rollouts()?;
            let next = if active {
                h.rollout_turn(now_ms(), MEMBERS_EVERY_MS)?
            } else {
                // Drop events queued for rollouts that ended.
                let ev: Vec<u64> = h
                    .store()
                    .pending_events(10_000)?
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
                h.store().drop_events(&ev)?;
                None
            };
            Ok::<_, RolloutError>((active, next))
        })
        .await;
        let wait = match r {
            Ok(Ok((true, next))) => {
                let base = 500i64;
                let until = next.map_or(base, |t| (t - now_ms()).clamp(1, base));
                std::time::Duration::from_millis(u64::try_from(until).unwrap_or(500))
            }
            Ok(Ok((false, _))) => std::time::Duration::from_secs(5),
            // HA mode: another replica wrote desired state first (a replica forwarding its
            // events, an operator); the copy catches up within milliseconds. Not a failure.
            Ok(Err(RolloutError::Store(StoreError::Conflict(m)))) => {
                tracing::debug!("rollout driver: {m}; again");
                std::time::Duration::from_millis(20)
            }
            Ok(Err(e)) => {
                tracing::error!("rollout driver: {e}");
                std::time::Duration::from_secs(1)
            }
            Err(e) => {
                tracing::error!("rollout driver task: {e}");
                std::time::Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = hub.rollout_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
