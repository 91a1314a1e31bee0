//! The deploy gate: the only writer of the hub's workflows' anti-rollback and probation state
//! (`deploy/<workflow>` in `agent_meta`) and, after enrollment stored it, of the signing trust.
//!
//! Every deploy from the hub is checked here, and only here: the assignment's signature once,
//! then the rest of `check_deploy`, then the bundle is parsed. The gate decides, it does not
//! carry out: for a deploy it returns the batch to commit (the version and its state, one
//! transaction) and what to install once that is durable; for a key rotation, the batch that
//! stores the new trust; for a finished run of a version on probation, the batch that passes or
//! reverts it. The decisions themselves are `outpost_agent_core::deploy`'s; the driver commits
//! and installs, in that order.

use outpost_agent_core::deploy::{
    DeployState, DirectorView, FinishedRun, ProbationVerdict, VerifiedDeploy, evaluate_probation,
    trusted_now,
};
use outpost_common::model::Workflow;
use outpost_common::proto::{self, Rejection};
use outpost_common::record::{Reverted, RunState, StatusEvent, TaskState};

use super::HUB_ORIGIN;
use crate::store::{Batch, Store, WorkflowVersion};

const DEPLOY_PREFIX: &str = "deploy/";
/// The highest signed hub time seen (i64 ms, CBOR).
const TIME_FLOOR_KEY: &str = "trust/time_floor";
/// The last [`DirectorView`].
const DIRECTOR_VIEW_KEY: &str = "trust/director_view";

/// A verified deploy to activate (or remove).
struct Activation {
    workflow: String,
    version: u64,
    epoch: u64,
    remove: bool,
    /// The bundle's exact content and format, when the agent did not hold the version already.
    content: Option<(Vec<u8>, String)>,
    probation: Option<proto::Probation>,
    previous_version: Option<u64>,
    rollout_id: Option<String>,
}

/// The answer to a hub deploy: which (workflow, version, epoch) it was about, and whether it is
/// active now. The workflow is empty (and version and epoch 0) when the assignment's signature
/// did not verify.
#[derive(Debug)]
pub struct DeployVerdict {
    pub workflow: String,
    pub version: u64,
    pub epoch: u64,
    pub result: Result<(), DeployError>,
}

/// Why a deploy was not activated.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The deploy is refused, for the hub to hear.
    #[error("rejected: {0:?}")]
    Rejected(Rejection),
    /// This agent could not read or write its store: nothing was decided.
    #[error("local store fault: {0}")]
    Store(String),
}

impl From<Rejection> for DeployError {
    fn from(r: Rejection) -> Self {
        DeployError::Rejected(r)
    }
}

fn store_fault(e: impl std::fmt::Display) -> DeployError {
    DeployError::Store(format!("{e:#}"))
}

/// What to install once the decision's batch is durable.
pub(crate) enum Install {
    /// Stop scheduling the workflow.
    Remove,
    /// The workflow of the bundle.
    Parsed(Box<Workflow>),
    /// A version the agent holds (the driver loads it before committing).
    Held,
}

/// An accepted deploy: commit `batch`, then install.
pub(crate) struct Decision {
    pub workflow: String,
    pub version: u64,
    pub epoch: u64,
    pub batch: Batch,
    pub install: Install,
    pub paused: bool,
}

/// A probation decision: commit `batch`, then (on a revert) install `revert.to_version`.
pub(crate) enum ProbationStep {
    Passed {
        batch: Batch,
        version: u64,
        failed: u32,
    },
    Revert {
        batch: Batch,
        revert: Reverted,
    },
}

pub(crate) struct DeployGate {
    /// This agent's id (deploys name the agent they are for); `None`: not enrolled.
    agent_id: Option<String>,
    validate: outpost_common::workflow::ValidateOptions,
    /// This agent's secrets and run-as policy: a workflow naming a secret it lacks, or a user it
    /// may not use, is rejected here (see [`crate::run_as::check_workflow`]).
    local: (crate::secrets::SecretStore, crate::run_as::Policy),
}

impl DeployGate {
    pub fn new(
        agent_id: Option<String>,
        validate: outpost_common::workflow::ValidateOptions,
    ) -> DeployGate {
        DeployGate {
            agent_id,
            validate,
            local: Default::default(),
        }
    }

    /// Check deploys against these secrets and this run-as policy.
    pub fn with_local(
        mut self,
        secrets: crate::secrets::SecretStore,
        policy: crate::run_as::Policy,
    ) -> DeployGate {
        self.local = (secrets, policy);
        self
    }

    /// Check a deploy from the hub (`check_deploy`: the assignment's signature, verified once,
    /// then agent, epoch, bundle signature and hash, anti-rollback), parse its workflow, and
    /// decide. Returns what the deploy was about (see [`DeployVerdict`]) and the decision.
    /// `local_origin` tells the file that defines a workflow, if one does (a hub deploy never
    /// replaces it).
    pub fn deploy(
        &self,
        store: &Store,
        assignment: &proto::SignedAssignment,
        bundle: Option<&proto::SignedBundle>,
        snapshot: Option<&proto::Snapshot>,
        local_origin: impl Fn(&str) -> Option<String>,
        now_ms: i64,
    ) -> (String, u64, u64, Result<Decision, DeployError>) {
        let trust = match crate::identity::load_trust(store) {
            Ok(Some(t)) => t,
            Ok(None) => {
                let e = DeployError::Store("no signing trust stored: re-enroll this agent".into());
                return (String::new(), 0, 0, Err(e));
            }
            Err(e) => return (String::new(), 0, 0, Err(store_fault(e))),
        };
        let floor = match time_floor(store) {
            Ok(f) => f,
            Err(e) => return (String::new(), 0, 0, Err(store_fault(e))),
        };
        if let Err(e) = trust.check_fresh(trusted_now(now_ms, floor)) {
            return (String::new(), 0, 0, Err(e.into()));
        }
        let a: proto::Assignment =
            match trust.verify_statement(proto::DOMAIN_ASSIGNMENT, assignment) {
                Ok(a) => a,
                Err(r) => return (String::new(), 0, 0, Err(r.into())),
            };
        let key = (a.workflow.clone(), a.version, a.epoch);
        let decided = self.check(store, &trust, snapshot, a, bundle, &local_origin, now_ms);
        (key.0, key.1, key.2, decided)
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        store: &Store,
        trust: &outpost_common::trust::Trust,
        snapshot: Option<&proto::Snapshot>,
        a: proto::Assignment,
        bundle: Option<&proto::SignedBundle>,
        local_origin: &dyn Fn(&str) -> Option<String>,
        now_ms: i64,
    ) -> Result<Decision, DeployError> {
        let me = self.agent_id.as_deref().unwrap_or_default();
        let state = load_state(store, &a.workflow).map_err(store_fault)?;
        let versions = store.workflow_versions(&a.workflow).map_err(store_fault)?;
        let held: Vec<u64> = versions
            .iter()
            .filter(|v| v.origin == HUB_ORIGIN)
            .map(|v| v.version)
            .collect();
        let acc = outpost_common::trust::check_verified_deploy(
            me,
            trust,
            &state.trust_state(held.clone()),
            snapshot,
            a,
            bundle,
        )?;
        let content = match (acc.header.as_ref(), acc.content) {
            (Some(h), Some(c)) => Some((c, h.format.clone())),
            _ => None,
        };
        let a = acc.assignment;
        let act = Activation {
            workflow: a.workflow,
            version: a.version,
            epoch: a.epoch,
            remove: a.remove,
            content,
            probation: a.probation,
            previous_version: a.previous_version,
            rollout_id: a.rollout_id,
        };
        self.activate(state, &versions, &held, &act, local_origin, now_ms)
    }

    /// Decide a verified deploy.
    fn activate(
        &self,
        state: DeployState,
        versions: &[WorkflowVersion],
        held: &[u64],
        act: &Activation,
        local_origin: &dyn Fn(&str) -> Option<String>,
        now_ms: i64,
    ) -> Result<Decision, DeployError> {
        if let Some(origin) = local_origin(&act.workflow) {
            return Err(Rejection::Invalid(format!(
                "a local workflow file ({origin}) already defines `{}`",
                act.workflow
            ))
            .into());
        }
        let verified = VerifiedDeploy {
            version: act.version,
            epoch: act.epoch,
            remove: act.remove,
            held: held.contains(&act.version),
            probation: act.probation,
            previous_version: act.previous_version,
            rollout_id: act.rollout_id.clone(),
        };
        let mut batch = Batch::default();
        let install = if act.remove {
            Install::Remove
        } else if let Some((content, format)) = &act.content {
            let wf = self.parse(act, content, format)?;
            if !versions.iter().any(|v| v.version == act.version) {
                batch.workflow_puts.push(WorkflowVersion {
                    name: act.workflow.clone(),
                    version: act.version,
                    content_hash: wf.content_hash.clone(),
                    source: content.clone(),
                    format: format.clone(),
                    origin: HUB_ORIGIN.into(),
                    created_ms: now_ms,
                });
            }
            Install::Parsed(Box::new(wf))
        } else {
            Install::Held
        };
        let next = outpost_agent_core::deploy::accept(&state, &verified, now_ms)?;
        batch.meta_puts.push(state_put(&act.workflow, &next)?);
        Ok(Decision {
            workflow: act.workflow.clone(),
            version: act.version,
            epoch: act.epoch,
            batch,
            install,
            paused: next.paused,
        })
    }

    fn parse(&self, act: &Activation, content: &[u8], format: &str) -> Result<Workflow, Rejection> {
        let fmt = if format == "toml" {
            outpost_common::workflow::Format::Toml
        } else {
            outpost_common::workflow::Format::Yaml
        };
        let text = std::str::from_utf8(content)
            .map_err(|_| Rejection::Invalid("the workflow file is not UTF-8".into()))?;
        let origin = format!("{}@v{}", act.workflow, act.version);
        let wf =
            outpost_common::workflow::parse(&origin, text, fmt, &self.validate).map_err(|d| {
                Rejection::Invalid(
                    d.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        if wf.name != act.workflow {
            return Err(Rejection::Mismatch);
        }
        let problems = crate::run_as::check_workflow(&wf, &self.local.0, &self.local.1);
        if !problems.is_empty() {
            return Err(Rejection::Invalid(format!(
                "{origin}: on this agent: {}",
                problems.join("; ")
            )));
        }
        Ok(wf)
    }

    /// The session followed a root rotation: the batch that stores the new root and, when it
    /// resets counters (recovery from a fast-forward), every hub workflow's epoch and highest
    /// version set to 0, in the same commit.
    pub fn roots(
        &self,
        store: &Store,
        trust: &outpost_common::trust::Trust,
        reset_counters: bool,
    ) -> Result<Batch, DeployError> {
        let mut batch = Batch::default();
        batch
            .meta_puts
            .push(crate::identity::trust_put(trust).map_err(store_fault)?);
        if reset_counters {
            for (name, mut st) in stored_states(store).map_err(store_fault)? {
                st.last_epoch = 0;
                st.highest_version = 0;
                batch
                    .meta_puts
                    .push(state_put(&name, &st).map_err(store_fault)?);
            }
        }
        Ok(batch)
    }

    /// A verified snapshot arrived: the batch that raises the time floor to the hub's signed
    /// time and records the director view (freshness, clock offset).
    pub fn fresh(&self, store: &Store, view: DirectorView) -> Result<Batch, DeployError> {
        let floor = time_floor(store).map_err(store_fault)?.max(view.hub_ms);
        let enc = |what: &str, r: Result<Vec<u8>, _>| {
            r.map_err(|e: minicbor::encode::Error<_>| {
                DeployError::Store(format!("encoding {what}: {e}"))
            })
        };
        let mut batch = Batch::default();
        batch.meta_puts.push((
            TIME_FLOOR_KEY.into(),
            enc("time floor", minicbor::to_vec(floor))?,
        ));
        batch.meta_puts.push((
            DIRECTOR_VIEW_KEY.into(),
            enc("director view", minicbor::to_vec(view))?,
        ));
        Ok(batch)
    }

    /// Local probation of `name`'s active version, from the runs in the store (so a crash loses
    /// no count): once more than `max_failures` of its first `runs` runs failed, switch back to
    /// the previous version (held locally) at once, hub or no hub, and record why in the outbox.
    pub fn probation(
        &self,
        store: &Store,
        name: &str,
        now_ms: i64,
    ) -> anyhow::Result<Option<ProbationStep>> {
        let state = load_state(store, name)?;
        let Some(since_ms) = state.probation.as_ref().map(|p| p.since_ms) else {
            return Ok(None);
        };
        let runs: Vec<FinishedRun> = store
            .runs(crate::store::RunFilter {
                workflow: Some(name.to_string()),
                limit: usize::MAX,
                states: None,
            })?
            .into_iter()
            .map(|r| {
                // Only a succeeded run of the version on probation, since it began, can hide a
                // failed task that matters (`all_done`); the others need no task lookup.
                let failed_task = r.state == RunState::Succeeded
                    && r.version == state.active_version
                    && r.created_ms >= since_ms
                    && store
                        .tasks(&r.run_id)?
                        .iter()
                        .any(|t| t.state == TaskState::Failed);
                Ok(FinishedRun {
                    run_id: r.run_id,
                    version: r.version,
                    created_ms: r.created_ms,
                    state: r.state,
                    failed_task,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let mut batch = Batch::default();
        Ok(match evaluate_probation(name, &state, &runs, now_ms) {
            ProbationVerdict::Continue => None,
            ProbationVerdict::Passed { state, failed } => {
                batch.meta_puts.push(state_put(name, &state)?);
                Some(ProbationStep::Passed {
                    batch,
                    version: state.active_version,
                    failed,
                })
            }
            ProbationVerdict::Revert { state, revert } => {
                batch.meta_puts.push(state_put(name, &state)?);
                batch.events.push(StatusEvent::Reverted(revert.clone()));
                Some(ProbationStep::Revert { batch, revert })
            }
        })
    }
}

/// A deploy state could not be encoded: nothing is written.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the deploy state of `{workflow}`: {message}")]
pub struct EncodeError {
    workflow: String,
    message: String,
}

impl From<EncodeError> for DeployError {
    fn from(e: EncodeError) -> Self {
        store_fault(e)
    }
}

fn state_put(workflow: &str, state: &DeployState) -> Result<(String, Vec<u8>), EncodeError> {
    let bytes = minicbor::to_vec(state).map_err(|e| EncodeError {
        workflow: workflow.to_string(),
        message: e.to_string(),
    })?;
    Ok((format!("{DEPLOY_PREFIX}{workflow}"), bytes))
}

/// A stored deploy state does not decode.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("stored deploy state of `{workflow}` does not decode: {message}")]
    Decode { workflow: String, message: String },
}

fn decode(workflow: &str, bytes: &[u8]) -> Result<DeployState, StateError> {
    minicbor::decode(bytes).map_err(|e| StateError::Decode {
        workflow: workflow.to_string(),
        message: e.to_string(),
    })
}

/// The deploy state of one workflow (the default: never deployed here).
pub fn load_state(store: &Store, workflow: &str) -> Result<DeployState, StateError> {
    match store.get_meta(&format!("{DEPLOY_PREFIX}{workflow}"))? {
        Some(b) => decode(workflow, &b),
        None => Ok(DeployState::default()),
    }
}

/// The highest signed hub time this agent has seen (0: none yet).
pub fn time_floor(store: &Store) -> Result<i64, StateError> {
    match store.get_meta(TIME_FLOOR_KEY)? {
        Some(b) => minicbor::decode(&b).map_err(|e| StateError::Decode {
            workflow: TIME_FLOOR_KEY.into(),
            message: e.to_string(),
        }),
        None => Ok(0),
    }
}

/// The last director view (`None`: never connected since enrollment).
pub fn director_view(store: &Store) -> Result<Option<DirectorView>, StateError> {
    match store.get_meta(DIRECTOR_VIEW_KEY)? {
        Some(b) => minicbor::decode(&b)
            .map(Some)
            .map_err(|e| StateError::Decode {
                workflow: DIRECTOR_VIEW_KEY.into(),
                message: e.to_string(),
            }),
        None => Ok(None),
    }
}

/// Every workflow the hub has deployed here, with its state.
pub fn stored_states(store: &Store) -> Result<Vec<(String, DeployState)>, StateError> {
    let mut out = Vec::new();
    for (k, v) in store.meta_with_prefix(DEPLOY_PREFIX)? {
        let name = k.trim_start_matches(DEPLOY_PREFIX).to_string();
        let state = decode(&name, &v)?;
        out.push((name, state));
    }
    Ok(out)
}

/// The hub's workflows active here, as the session's `Hello` reports them.
pub fn active_workflows(store: &Store) -> Result<Vec<proto::ActiveWorkflow>, StateError> {
    Ok(stored_states(store)?
        .into_iter()
        .filter(|(_, s)| s.active_version > 0)
        .map(|(w, s)| proto::ActiveWorkflow {
            workflow: w,
            version: s.active_version,
            epoch: s.last_epoch,
            paused: s.paused,
            highest_version: Some(s.highest_version.max(s.active_version)),
        })
        .collect())
}
