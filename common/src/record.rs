//! Durable records: what the agent commits to its store and what its outbox carries to the hub.
//!
//! **API Boundary**: these types cross a process boundary (the agent's redb file, the wire to the
//! hub). They are encoded with minicbor using explicit field indices: a field's index never
//! changes and is never reused; new fields are optional (`Option` or with a default) so that
//! neighbouring releases read each other. Times are milliseconds since the Unix epoch, UTC.

use minicbor::{Decode, Encode};

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// A run id: derived from (workflow, version, scheduled time, kind), so one firing can only ever
/// make one run. See [`run_id`].
pub type RunId = String;

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum RunKind {
    #[n(0)]
    Scheduled,
    #[n(1)]
    Manual,
    #[n(2)]
    Catchup,
}

impl RunKind {
    /// The name shown by CLIs and APIs (`scheduled`, `manual`, `catchup`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Scheduled => "scheduled",
            RunKind::Manual => "manual",
            RunKind::Catchup => "catchup",
        }
    }
}

/// Derive the run id of a firing. Scheduled and catch-up firings of the same instant share an id
/// on purpose: one instant, one run.
pub fn run_id(workflow: &str, version: u64, scheduled_ms: UnixMillis, kind: RunKind) -> RunId {
    let ts = chrono::DateTime::from_timestamp_millis(scheduled_ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S%.3fZ");
    match kind {
        RunKind::Scheduled | RunKind::Catchup => format!("{workflow}@v{version}@{ts}"),
        RunKind::Manual => format!("{workflow}@v{version}@m{ts}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum RunState {
    /// Committed, waiting for admission (overlap `queue`, `max_active_runs`).
    #[n(0)]
    Queued,
    #[n(1)]
    Running,
    #[n(2)]
    Succeeded,
    #[n(3)]
    Failed,
    #[n(4)]
    Cancelled,
    /// Not run: overlap `skip` found another run active.
    #[n(5)]
    Skipped,
}

impl RunState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }

    /// The name shown by CLIs and APIs (`queued`, `running`, `succeeded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Skipped => "skipped",
        }
    }

    /// The state named `s` (as [`RunState::as_str`] writes it).
    pub fn parse(s: &str) -> Option<RunState> {
        [
            RunState::Queued,
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Cancelled,
            RunState::Skipped,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum TaskState {
    /// Waiting for its upstream tasks.
    #[n(0)]
    Pending,
    /// Upstream satisfied; waiting for a slot, its resources and its turn by priority.
    #[n(1)]
    Ready,
    #[n(2)]
    Running,
    /// Failed an attempt; waiting out the retry delay.
    #[n(3)]
    UpForRetry,
    #[n(4)]
    Succeeded,
    #[n(5)]
    Failed,
    /// Its trigger rule can no longer be met because an upstream task failed.
    #[n(6)]
    UpstreamFailed,
    /// Its trigger rule can no longer be met (no upstream failed).
    #[n(7)]
    Skipped,
    #[n(8)]
    Cancelled,
}

impl TaskState {
    /// The name shown by CLIs and APIs (`pending`, `up_for_retry`, `upstream_failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Ready => "ready",
            TaskState::Running => "running",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded
                | TaskState::Failed
                | TaskState::UpstreamFailed
                | TaskState::Skipped
                | TaskState::Cancelled
        )
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum AttemptOutcome {
    #[n(0)]
    Exited(#[n(0)] i32),
    #[n(1)]
    Signaled(#[n(0)] i32),
    #[n(2)]
    TimedOut,
    #[n(3)]
    Cancelled,
    /// The agent stopped (crash, power loss, kill -9) while the attempt ran.
    #[n(4)]
    Interrupted,
    /// The process could not be started.
    #[n(5)]
    SpawnFailed(#[n(0)] String),
}

impl AttemptOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptOutcome::Exited(0))
    }

    /// The exit code, when the process exited by itself.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            AttemptOutcome::Exited(c) => Some(*c),
            _ => None,
        }
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptOutcome::Exited(c) => write!(f, "exit {c}"),
            AttemptOutcome::Signaled(s) => write!(f, "signal {s}"),
            AttemptOutcome::TimedOut => f.write_str("timed out"),
            AttemptOutcome::Cancelled => f.write_str("cancelled"),
            AttemptOutcome::Interrupted => f.write_str("interrupted"),
            AttemptOutcome::SpawnFailed(m) => write!(f, "spawn failed: {m}"),
        }
    }
}

/// RFC 3339 (UTC, milliseconds) of a record time; empty for an unrepresentable one.
pub fn rfc3339(ms: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Which mechanism enforced a task's `limits` on an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum LimitsMode {
    #[n(0)]
    None,
    #[n(1)]
    CgroupV2,
    #[n(2)]
    Rlimit,
}

impl LimitsMode {
    /// What an attempt record shows (`cgroup-v2`, `rlimit`); `None` when no limit applied.
    pub fn label(self) -> Option<&'static str> {
        match self {
            LimitsMode::None => None,
            LimitsMode::CgroupV2 => Some("cgroup-v2"),
            LimitsMode::Rlimit => Some("rlimit"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct AttemptRecord {
    /// 1-based.
    #[n(0)]
    pub attempt: u32,
    #[n(1)]
    pub started_ms: UnixMillis,
    #[n(2)]
    pub ended_ms: Option<UnixMillis>,
    #[n(3)]
    pub pid: Option<u32>,
    #[n(4)]
    pub outcome: Option<AttemptOutcome>,
    #[n(5)]
    pub limits: LimitsMode,
    /// Human-readable cause for a failure (e.g. "killed by SIGKILL: memory limit 64 MiB (rlimit)").
    #[n(6)]
    pub reason: Option<String>,
    /// Path of the attempt's log file.
    #[n(7)]
    pub log_path: Option<String>,
    /// Set while the attempt is committed but its process has not been started: it was
    /// *dispatched* ahead of a free slot, or pre-committed ahead of its cron instant (the time
    /// it was committed). Cleared, with `started_ms` set to the real start, when the process
    /// starts. An attempt recovered after a crash with this set may or may not have started.
    #[n(8)]
    pub dispatched_ms: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct TaskInstanceRecord {
    #[n(0)]
    pub run_id: RunId,
    #[n(1)]
    pub task_id: String,
    #[n(2)]
    pub state: TaskState,
    #[n(3)]
    pub attempts: Vec<AttemptRecord>,
    /// `key=value` outputs the task wrote to `$OUTPOST_OUTPUT`.
    #[n(4)]
    pub outputs: Vec<(String, String)>,
    /// When an `UpForRetry` task may start its next attempt.
    #[n(5)]
    pub retry_at_ms: Option<UnixMillis>,
    #[n(6)]
    pub updated_ms: UnixMillis,
}

impl TaskInstanceRecord {
    /// The state as CLIs and APIs show it: `dispatched` for a `Running` task whose current
    /// attempt was committed ahead of a free slot and has not started, else [`TaskState::as_str`].
    pub fn display_state(&self) -> &'static str {
        if self.state == TaskState::Running
            && self
                .attempts
                .last()
                .is_some_and(|a| a.dispatched_ms.is_some() && a.outcome.is_none())
        {
            "dispatched"
        } else {
            self.state.as_str()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct RunRecord {
    #[n(0)]
    pub run_id: RunId,
    #[n(1)]
    pub workflow: String,
    #[n(2)]
    pub version: u64,
    #[n(3)]
    pub kind: RunKind,
    #[n(4)]
    pub scheduled_ms: UnixMillis,
    #[n(5)]
    pub state: RunState,
    #[n(6)]
    pub params: Vec<(String, String)>,
    #[n(7)]
    pub created_ms: UnixMillis,
    #[n(8)]
    pub started_ms: Option<UnixMillis>,
    #[n(9)]
    pub ended_ms: Option<UnixMillis>,
    /// Agent that made the run (filled when the agent is enrolled).
    #[n(10)]
    pub agent_id: Option<String>,
    /// Why a `Skipped` run did not run (e.g. "overlap=skip: run R was active"); `None` for
    /// any other run, and from agents before this field.
    #[n(11)]
    pub skip_reason: Option<String>,
}

/// Firings that were not run (agent stopped, clock jumped, catch-up policy): one event with the
/// count and the span, not one record per firing.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct MissedFirings {
    #[n(0)]
    pub workflow: String,
    #[n(1)]
    pub count: u64,
    #[n(2)]
    pub first_ms: UnixMillis,
    #[n(3)]
    pub last_ms: UnixMillis,
    /// e.g. "catchup=latest", "outside catchup_window", "overlap=skip".
    #[n(4)]
    pub reason: String,
    #[n(5)]
    pub recorded_ms: UnixMillis,
}

/// What the outbox carries. Each is a full snapshot, so applying one twice changes nothing.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum StatusEvent {
    #[n(0)]
    Run(#[n(0)] RunRecord),
    #[n(1)]
    Task(#[n(0)] TaskInstanceRecord),
    #[n(2)]
    Missed(#[n(0)] MissedFirings),
    /// The agent reverted a hub-deployed version by itself under probation.
    #[n(3)]
    Reverted(#[n(0)] Reverted),
    /// A run or task missed its deadline (`deadline`, `max_start_delay`), detected on the agent.
    #[n(4)]
    Deadline(#[n(0)] DeadlineMiss),
}

/// Which deadline was missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum DeadlineKind {
    /// `deadline`: it did not finish within D of the run's scheduled instant.
    #[n(0)]
    Finish,
    /// `max_start_delay`: it did not start within D of the run's scheduled instant.
    #[n(1)]
    Start,
}

impl DeadlineKind {
    /// The name shown by CLIs, APIs and hook environments (`deadline`, `max_start_delay`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Finish => "deadline",
            DeadlineKind::Start => "max_start_delay",
        }
    }
}

/// A deadline the agent saw pass: one event per (run, task, kind), committed when the agent
/// noticed (with the hub reachable or not) and carried to the hub by the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct DeadlineMiss {
    #[n(0)]
    pub workflow: String,
    #[n(1)]
    pub version: u64,
    #[n(2)]
    pub run_id: RunId,
    /// `None`: the workflow's own deadline.
    #[n(3)]
    pub task: Option<String>,
    #[n(4)]
    pub kind: DeadlineKind,
    /// The run's scheduled (logical) instant.
    #[n(5)]
    pub scheduled_ms: UnixMillis,
    /// The instant it should have started or finished by.
    #[n(6)]
    pub due_ms: UnixMillis,
    /// When the agent noticed (its clock).
    #[n(7)]
    pub detected_ms: UnixMillis,
}

/// A version the agent gave up on by itself: more than `max_failures` of its first `runs` runs
/// failed while on probation. The agent switched back to `to_version` (kept locally) at once,
/// whether or not the hub was reachable.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Reverted {
    #[n(0)]
    pub workflow: String,
    #[n(1)]
    pub from_version: u64,
    #[n(2)]
    pub to_version: u64,
    #[n(3)]
    pub reason: String,
    #[n(4)]
    pub at_ms: UnixMillis,
    /// The rollout the reverted version came with, if any.
    #[n(5)]
    pub rollout_id: Option<String>,
}

/// An outbox entry: a status event with the agent-wide sequence number it was committed under.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct OutboxEntry {
    #[n(0)]
    pub seq: u64,
    #[n(1)]
    pub event: StatusEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(
        state: TaskState,
        dispatched: Option<UnixMillis>,
        outcome: Option<AttemptOutcome>,
    ) -> TaskInstanceRecord {
        TaskInstanceRecord {
            run_id: "r".into(),
            task_id: "t".into(),
            state,
            attempts: vec![AttemptRecord {
                attempt: 1,
                started_ms: 5,
                ended_ms: None,
                pid: None,
                outcome,
                limits: LimitsMode::None,
                reason: None,
                log_path: None,
                dispatched_ms: dispatched,
            }],
            outputs: Vec::new(),
            retry_at_ms: None,
            updated_ms: 5,
        }
    }

    #[test]
    fn a_dispatched_attempt_displays_as_dispatched_only_while_it_waits() {
        assert_eq!(
            task(TaskState::Running, Some(5), None).display_state(),
            "dispatched"
        );
        assert_eq!(
            task(TaskState::Running, None, None).display_state(),
            "running"
        );
        assert_eq!(
            task(
                TaskState::Cancelled,
                Some(5),
                Some(AttemptOutcome::Cancelled)
            )
            .display_state(),
            "cancelled"
        );
    }
}
