//! The hub's operations: the only way to change the hub.
//!
//! One method on [`Hub`] per operation, in a file per resource ([`workflows`], [`agents`],
//! [`runs`], [`pools`], [`rollouts`], [`tokens`], [`audit`]; [`sessions`] for what the QUIC
//! side reports). Each takes the actor (the operator, or the agent or `hub` for what they
//! cause), commits to the store (which writes the audit record in the same transaction),
//! notifies the live sessions whose desired state may have changed, and emits one typed
//! [`Event`] on an in-process broadcast channel ([`Hub::subscribe`]) that later features
//! (alerts, metrics, live views) consume. The HTTP API ([`crate::api`]) only decodes a
//! request, calls one operation and encodes its result; `dev` goes through the API.
//!
//! Store operations are synchronous (call them on a blocking thread); the operations that also
//! send commands to connected agents (pause, resume, trigger, cancel, log fetch) are `async`
//! and do their store part on the blocking pool themselves.

pub mod agents;
pub mod audit;
pub mod pools;
pub mod rollouts;
pub mod runs;
pub mod sessions;
pub mod tokens;
pub mod workflows;

use outpost_common::record::UnixMillis;

use crate::gateway::GatewayError;
use crate::hub::{Hub, HubError};
use crate::rollouts::RolloutError;
use crate::store::StoreError;

/// Events kept for a slow subscriber before it starts missing some (it then gets
/// `RecvError::Lagged` and goes on).
pub const EVENT_BUFFER: usize = 1024;

/// The actor of what the hub does by itself (rollout driver, session housekeeping).
pub const HUB_ACTOR: &str = "hub";

/// One domain event: what happened, who caused it and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The operator (or the agent, or `hub`) that caused it.
    pub actor: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: UnixMillis,
    /// What happened.
    pub kind: EventKind,
}

/// A workflow version an apply stored (or found unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedVersion {
    /// Workflow.
    pub workflow: String,
    /// Its latest version after the apply.
    pub version: u64,
    /// Whether the apply made a new version.
    pub changed: bool,
}

/// What happened in the hub. Non-exhaustive: subscribers ignore kinds they do not know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// `workflow apply` stored the valid files (invalid ones are not listed).
    WorkflowApplied {
        /// One entry per valid file.
        versions: Vec<AppliedVersion>,
    },
    /// `workflow rollback`: a new version with an older version's content.
    WorkflowRolledBack {
        /// The workflow and its resulting latest version.
        version: AppliedVersion,
        /// The version whose content it took.
        to: u64,
    },
    /// The workflow was paused at the hub (and the command sent to its connected agents).
    WorkflowPaused {
        /// Workflow.
        workflow: String,
    },
    /// The workflow was resumed.
    WorkflowResumed {
        /// Workflow.
        workflow: String,
    },
    /// A manual run was asked of the workflow's agents.
    WorkflowTriggered {
        /// Workflow.
        workflow: String,
        /// The agents that started a run, with its id.
        started: Vec<(String, String)>,
    },
    /// A pool's version of a workflow was set (`workflow deploy`).
    WorkflowDeployed {
        /// Workflow.
        workflow: String,
        /// Pool.
        pool: String,
        /// Version.
        version: u64,
    },
    /// A pool was pinned to a version.
    WorkflowPinned {
        /// Workflow.
        workflow: String,
        /// Pool.
        pool: String,
        /// Version.
        version: u64,
    },
    /// A pool's pin was lifted.
    WorkflowUnpinned {
        /// Workflow.
        workflow: String,
        /// Pool.
        pool: String,
        /// Whether there was a pin.
        changed: bool,
    },
    /// A run reached a terminal state (reported by its agent, committed by the hub).
    RunFinished {
        /// The agent.
        agent: String,
        /// Workflow.
        workflow: String,
        /// Version the run used.
        version: u64,
        /// Run id.
        run_id: String,
        /// Terminal state (`succeeded`, `failed`, `cancelled`, `skipped`).
        state: String,
    },
    /// An agent gave up a version by itself under probation and went back to the one it kept
    /// (reported through its outbox, committed by the hub).
    VersionReverted {
        /// The agent.
        agent: String,
        /// Workflow.
        workflow: String,
        /// The version it gave up.
        from_version: u64,
        /// The version it runs again.
        to_version: u64,
        /// Why.
        reason: String,
    },
    /// A cancel was sent to the agent of a run.
    RunCancelled {
        /// The agent.
        agent: String,
        /// Run id.
        run_id: String,
        /// Whether the agent cancelled it.
        ok: bool,
    },
    /// A task's log was fetched from its agent.
    RunLogFetched {
        /// The agent.
        agent: String,
        /// Run id.
        run_id: String,
        /// Task.
        task: String,
    },
    /// An agent enrolled with a bootstrap token.
    AgentEnrolled {
        /// The new agent.
        agent: String,
        /// Its labels.
        labels: Vec<(String, String)>,
    },
    /// An agent's session was accepted.
    AgentConnected {
        /// The agent.
        agent: String,
        /// Its software version.
        software_version: String,
    },
    /// An accepted agent session ended.
    AgentDisconnected {
        /// The agent.
        agent: String,
    },
    /// An agent reported a deploy: activated, or rejected with a reason.
    DeployReported {
        /// The agent.
        agent: String,
        /// Workflow.
        workflow: String,
        /// Version.
        version: u64,
        /// Why it was rejected (`None`: activated).
        rejected: Option<String>,
    },
    /// An agent was revoked.
    AgentRevoked {
        /// The agent.
        agent: String,
        /// Whether it was newly revoked.
        changed: bool,
    },
    /// An agent's labels were changed.
    AgentLabelled {
        /// The agent.
        agent: String,
        /// Its labels now.
        labels: Vec<(String, String)>,
    },
    /// A pool was created.
    PoolCreated {
        /// Pool.
        pool: String,
    },
    /// A pool was deleted.
    PoolDeleted {
        /// Pool.
        pool: String,
    },
    /// A rollout started.
    RolloutStarted {
        /// Rollout id.
        rollout: String,
        /// Workflow.
        workflow: String,
        /// Pool.
        pool: String,
        /// Version rolled out.
        version: u64,
    },
    /// An operator command was applied to a rollout (`pause`, `resume`, `promote`, `abort`).
    RolloutCommanded {
        /// Rollout id.
        rollout: String,
        /// Workflow.
        workflow: String,
        /// Pool.
        pool: String,
        /// The command.
        command: String,
    },
    /// A rollout step's gate passed (or was promoted past).
    RolloutStepPassed {
        /// Rollout id.
        rollout: String,
        /// Workflow.
        workflow: String,
        /// Pool.
        pool: String,
        /// The step (0: the canary).
        step: usize,
    },
    /// A rollout ended.
    RolloutFinished {
        /// Rollout id.
        rollout: String,
        /// Workflow.
        workflow: String,
        /// Pool.
        pool: String,
        /// `succeeded`, `rolled back: ...` or `aborted`.
        outcome: String,
    },
    /// A bootstrap token was created.
    TokenCreated {
        /// Token id (never the secret).
        token: String,
        /// Labels of the agents it enrolls.
        labels: Vec<(String, String)>,
        /// Agents it may enroll.
        uses: u32,
        /// Expiry, milliseconds since the Unix epoch.
        expires_ms: UnixMillis,
    },
    /// A bootstrap token was revoked.
    TokenRevoked {
        /// Token id.
        token: String,
        /// Whether it was newly revoked.
        changed: bool,
    },
    /// A backup copy of the store was made.
    HubBackedUp {
        /// Its size.
        bytes: usize,
    },
}

/// Why an operation failed. The API maps each kind to one status (see `api::error`).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A command to an agent failed.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// A rollout operation failed.
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The hub's state does not allow it now (e.g. the agent is not connected).
    #[error("{0}")]
    Conflict(String),
    /// Something internal failed.
    #[error("{0}")]
    Internal(String),
}

impl From<HubError> for OpError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::Store(s) => OpError::Store(s),
            other => OpError::Internal(other.to_string()),
        }
    }
}

/// Result of an operation.
pub type OpResult<T> = Result<T, OpError>;

/// Run a store step of an async operation on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> OpResult<T> + Send + 'static,
) -> OpResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpError::Internal(format!("internal task failed: {e}")))?
}

/// What one agent answered to a command (pause, resume, trigger, cancel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The agent.
    pub agent: String,
    /// Whether it carried the command out.
    pub ok: bool,
    /// The run it started or cancelled, if any.
    pub run_id: Option<String>,
    /// Its message, or why the command did not reach it.
    pub message: String,
}

impl Hub {
    /// A receiver of every domain event from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events().subscribe()
    }

    /// Emit one event (nobody listening is fine).
    pub(crate) fn emit(&self, actor: &str, kind: EventKind) {
        let _ = self.events().send(Event {
            actor: actor.to_string(),
            at_ms: crate::hub::now_ms(),
            kind,
        });
    }
}
