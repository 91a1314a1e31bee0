//! The hub's domain events: what happened, who caused it and when. The operations
//! ([`crate::ops`]), the QUIC session driver and the rollout driver emit them
//! ([`crate::hub::Hub::emit`]) on an in-process broadcast channel that later features (alerts,
//! metrics, live views) subscribe to ([`crate::hub::Hub::subscribe`]).

use outpost_common::record::UnixMillis;

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
    /// `version` waits for release signatures (no agent runs it yet).
    pub pending: bool,
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
    /// A threshold of release keys signed a version: it is deployable now.
    WorkflowReleased {
        workflow: String,
        version: u64,
        /// Ids of the release keys that signed.
        signed_by: Vec<String>,
    },
    /// New root metadata was published (keys, thresholds or expiry changed).
    RootPublished {
        version: u64,
        expires_ms: UnixMillis,
        reset_counters: bool,
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
    /// The hub judged an expected firing of an agent's schedule: `missed` (no run within the
    /// grace period while connected, or the agent recorded it missed), `unknown` (the agent is
    /// cut off), or `reported` (an unknown firing's run arrived).
    FiringJudged {
        /// The agent.
        agent: String,
        /// Workflow.
        workflow: String,
        /// The version whose schedule expected it.
        version: u64,
        /// The firing's scheduled instant.
        scheduled_ms: UnixMillis,
        /// `missed`, `unknown` or `reported`.
        status: String,
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
    /// An operator credential was created.
    OperatorCreated {
        /// The operator's name (never the secret).
        name: String,
        /// Its role.
        role: String,
        /// The pools a deployer is limited to (empty: all).
        pools: Vec<String>,
    },
    /// An operator credential was revoked.
    OperatorRevoked {
        /// The operator's name.
        name: String,
        /// Whether it was newly revoked.
        changed: bool,
    },
    /// An operator's request was refused for its role.
    AccessDenied {
        /// The request (`METHOD /route`).
        request: String,
    },
    /// A silence was created (`alert silence`).
    SilenceCreated {
        /// Silence id (`s-<n>`).
        id: String,
        /// Its matchers, for humans (`workflow=plc-*, agent=a1`).
        matchers: String,
        /// When it expires.
        expires_ms: UnixMillis,
    },
    /// A silence was removed (`alert unsilence`).
    SilenceRemoved {
        /// Silence id.
        id: String,
    },
    /// The alert delivery task tried to send a notification to a channel.
    AlertDelivery {
        /// The rule.
        rule: String,
        /// The notification's dedup key.
        dedup_key: String,
        /// The channel.
        channel: String,
        /// `delivered`, `retry` (a retryable failure) or `failed` (given up).
        outcome: String,
        /// Why it failed.
        error: Option<String>,
    },
    /// A run that has not finished changed: its own state, or a task's (reported by its
    /// agent, committed by the hub). Once per run per committed status batch; a run that
    /// finished in the batch gets `RunFinished` instead.
    RunUpdated {
        /// The agent.
        agent: String,
        /// Workflow.
        workflow: String,
        /// Run id.
        run_id: String,
    },
}
