//! The validated workflow model.
//!
//! A [`Workflow`] is what the parser and validator (`crate::workflow`) produce from a file once
//! every diagnostic is clear: defaults applied, durations parsed, the schedule compiled, task
//! dependencies resolved to indices in a topological order. Everything downstream (the agent's
//! engine, its store, later the hub) works on this type, never on raw YAML.
//!
//! **API Boundary**: the engine and the store depend on these field names and meanings.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::schedule::Schedule;

/// Index of a task inside [`Workflow::tasks`]. Tasks are stored in a topological order, so every
/// dependency of task `i` has an index `< i`.
pub type TaskIdx = usize;

/// A complete, validated workflow definition.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// `[a-z0-9][a-z0-9._-]*`
    pub name: String,
    pub description: Option<String>,
    /// `None`: the workflow runs only when triggered.
    pub schedule: Option<Schedule>,
    /// IANA zone the schedule is read in (default UTC).
    pub timezone: chrono_tz::Tz,
    pub catchup: Catchup,
    /// Missed firings older than this (relative to now) are not run (default 24h).
    pub catchup_window: Duration,
    pub overlap: Overlap,
    /// Upper bound on concurrently active runs of this workflow (default 1; bounds `allow`).
    pub max_active_runs: u32,
    /// Every declared parameter with its default (empty for one declared without a default),
    /// overridable per trigger.
    pub params: BTreeMap<String, String>,
    /// The rule of every declared parameter (the short form `name: default` is an optional
    /// string); triggers are checked against it with [`crate::params::check_params`].
    pub param_rules: BTreeMap<String, crate::params::ParamRule>,
    /// Environment for every task (task `env` overrides).
    pub env: BTreeMap<String, String>,
    /// Label selector for the hub; empty: all agents.
    pub target: BTreeMap<String, String>,
    /// Tasks in topological order (ties broken by the order in the file).
    pub tasks: Vec<Task>,
    /// The run must finish within this of its scheduled instant (`deadline`).
    pub deadline: Option<Duration>,
    /// The run must start within this of its scheduled instant (`max_start_delay`).
    pub max_start_delay: Option<Duration>,
    /// Workflow-level hooks: the run's final state, the run's deadlines, any task's retry.
    pub hooks: Hooks,
    /// blake3 of the source bytes the workflow was parsed from (hex). Identifies a version's content.
    pub content_hash: String,
}

impl Workflow {
    pub fn task_index(&self, id: &str) -> Option<TaskIdx> {
        self.tasks.iter().position(|t| t.id == id)
    }
}

/// One task of a workflow, with the workflow's `defaults` already applied.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub exec: Exec,
    /// Ids as written (for display) ...
    pub depends_on: Vec<String>,
    /// ... and the same dependencies as indices into [`Workflow::tasks`] (all `<` this task's index).
    pub upstream: Vec<TaskIdx>,
    pub trigger_rule: TriggerRule,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    /// Higher runs first.
    pub priority: i32,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    /// May it be re-run after the agent crashed while it ran?
    pub idempotent: bool,
    /// Named local semaphores held while the task runs (name -> units).
    pub resources: BTreeMap<String, u32>,
    pub limits: Limits,
    /// The task must finish within this of the run's scheduled instant (`deadline`).
    pub deadline: Option<Duration>,
    /// The task must start within this of the run's scheduled instant (`max_start_delay`).
    pub max_start_delay: Option<Duration>,
    /// Task-level hooks: this task's failure, retries, success and deadlines.
    pub hooks: Hooks,
    /// Environment variables set from the agent's local secrets: variable -> secret name. Names
    /// only; the values are read on the agent when the attempt starts (never in a bundle).
    pub secret_env: BTreeMap<String, String>,
    /// Run the task as this user (a name or a numeric uid); `None`: the agent's own user.
    pub user: Option<String>,
    /// ... and this group (a name or a numeric gid); `None`: the user's primary group.
    pub group: Option<String>,
}

/// Default time a hook may run before it is killed.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// A local command run when an event happens (see `hooks` in docs/workflows.md). It gets the
/// event's context in `OUTPOST_*` environment variables, never in its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub exec: Exec,
    /// Killed after this (default [`DEFAULT_HOOK_TIMEOUT`]).
    pub timeout: Duration,
}

/// The hooks of a workflow or a task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub on_failure: Option<Hook>,
    pub on_retry: Option<Hook>,
    pub on_success: Option<Hook>,
    pub on_deadline_miss: Option<Hook>,
}

/// What a hook fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookEvent {
    Failure,
    Retry,
    Success,
    DeadlineMiss,
}

impl HookEvent {
    /// The key in the file (`on_failure`, ...).
    pub fn key(self) -> &'static str {
        match self {
            HookEvent::Failure => "on_failure",
            HookEvent::Retry => "on_retry",
            HookEvent::Success => "on_success",
            HookEvent::DeadlineMiss => "on_deadline_miss",
        }
    }

    /// The value of `OUTPOST_EVENT` (`failure`, `retry`, `success`, `deadline_miss`).
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Failure => "failure",
            HookEvent::Retry => "retry",
            HookEvent::Success => "success",
            HookEvent::DeadlineMiss => "deadline_miss",
        }
    }

    pub fn parse(s: &str) -> Option<HookEvent> {
        [
            HookEvent::Failure,
            HookEvent::Retry,
            HookEvent::Success,
            HookEvent::DeadlineMiss,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

impl Hooks {
    pub fn get(&self, event: HookEvent) -> Option<&Hook> {
        match event {
            HookEvent::Failure => self.on_failure.as_ref(),
            HookEvent::Retry => self.on_retry.as_ref(),
            HookEvent::Success => self.on_success.as_ref(),
            HookEvent::DeadlineMiss => self.on_deadline_miss.as_ref(),
        }
    }

    fn slot(&mut self, event: HookEvent) -> &mut Option<Hook> {
        match event {
            HookEvent::Failure => &mut self.on_failure,
            HookEvent::Retry => &mut self.on_retry,
            HookEvent::Success => &mut self.on_success,
            HookEvent::DeadlineMiss => &mut self.on_deadline_miss,
        }
    }

    pub fn set(&mut self, event: HookEvent, hook: Hook) {
        *self.slot(event) = Some(hook);
    }

    pub fn is_empty(&self) -> bool {
        *self == Hooks::default()
    }
}

/// What a task executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exec {
    /// An argv list, executed without a shell. Never empty after validation.
    Command(Vec<String>),
    /// A script run by `shell` (default `/bin/sh`) with `-c`.
    Script {
        script: String,
        shell: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TriggerRule {
    #[default]
    AllSuccess,
    AllDone,
    AllFailed,
    OneSuccess,
    OneFailed,
    NoneFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Catchup {
    None,
    #[default]
    Latest,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    #[default]
    Skip,
    Queue,
    Allow,
    CancelRunning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backoff {
    #[default]
    Fixed,
    Exponential,
}

/// Retry policy of a task: `retries` extra attempts after the first.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub retries: u32,
    pub delay: Duration,
    pub backoff: Backoff,
    /// Cap for exponential backoff.
    pub max_delay: Option<Duration>,
    /// Jitter as a fraction of the delay, 0.0..=1.0 (0: none).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            delay: Duration::from_secs(10),
            backoff: Backoff::Fixed,
            max_delay: None,
            jitter: 0.0,
        }
    }
}

/// Resource limits for a task's process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<u64>,
    /// CPUs (e.g. 0.5 = half a core).
    pub cpu: Option<f64>,
}
