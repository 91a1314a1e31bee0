//! The run and task views both command lines print and send: the agent's (`outpost-agent runs`,
//! `show`, `run --output json`, its control socket) and the hub's (`GET /v1/runs`, `outpost-hub
//! run list|show`). One shape and one rendering from the durable records; the hub's adds the
//! agent's id, the agent's adds each task's log file. Times are RFC 3339 strings (UTC).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::record::{AttemptRecord, RunRecord, TaskInstanceRecord, rfc3339};

/// Whose runs a view shows: [`Local`] on the agent itself, the agent's id (`String`) at the hub.
pub trait RunOwner: Clone + Default + std::fmt::Debug + Serialize + DeserializeOwned {
    /// Task views carry the last attempt's log file path (only where that file is: the agent).
    const LOG_PATHS: bool;
    /// The owner is left out of the JSON (the agent's own runs).
    fn is_local(&self) -> bool;
}

/// The agent's own runs: no `agent` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Local;

impl RunOwner for Local {
    const LOG_PATHS: bool = true;
    fn is_local(&self) -> bool {
        true
    }
}

/// At the hub: the id of the agent that made the run.
impl RunOwner for String {
    const LOG_PATHS: bool = false;
    fn is_local(&self) -> bool {
        false
    }
}

/// A run as the CLIs and the API show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "", deserialize = ""))]
pub struct RunView<A: RunOwner> {
    /// Run id (unique per agent).
    pub run_id: String,
    /// The agent that made it (at the hub; absent on the agent itself).
    #[serde(default, skip_serializing_if = "RunOwner::is_local")]
    pub agent: A,
    /// Workflow.
    pub workflow: String,
    /// Version.
    pub version: u64,
    /// scheduled / manual / catchup.
    pub kind: String,
    /// State.
    pub state: String,
    /// Scheduled time.
    pub scheduled: String,
    /// Created.
    pub created: String,
    /// Started.
    pub started: Option<String>,
    /// Ended.
    pub ended: Option<String>,
    /// Parameters.
    pub params: Vec<(String, String)>,
    /// Why the run was skipped (`skipped` runs, from agents that say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// Task instances (a run's detail only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskView>,
}

/// A task instance as the CLIs and the API show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    /// Task id.
    pub task: String,
    /// State (`dispatched` for an attempt committed ahead of a free slot).
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Outcome of the last attempt.
    pub outcome: Option<String>,
    /// First attempt start.
    pub start: Option<String>,
    /// Last attempt end.
    pub end: Option<String>,
    /// Failure reason.
    pub reason: Option<String>,
    /// Limits mechanism.
    pub limits: Option<String>,
    /// The last attempt's log file: `Some` on the agent (`null` before the first attempt),
    /// `None` (absent) at the hub, which fetches logs from the agent instead.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub log: Option<Option<String>>,
    /// Outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<(String, String)>,
}

/// A field that is there, `null` or not, is `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl<A: RunOwner> RunView<A> {
    /// Render a run of `agent` and its tasks (in the order given).
    pub fn of(agent: A, r: &RunRecord, tasks: &[TaskInstanceRecord]) -> RunView<A> {
        RunView {
            run_id: r.run_id.clone(),
            agent,
            workflow: r.workflow.clone(),
            version: r.version,
            kind: r.kind.as_str().into(),
            state: r.state.as_str().into(),
            scheduled: rfc3339(r.scheduled_ms),
            created: rfc3339(r.created_ms),
            started: r.started_ms.map(rfc3339),
            ended: r.ended_ms.map(rfc3339),
            params: r.params.clone(),
            skip_reason: r.skip_reason.clone(),
            tasks: tasks
                .iter()
                .map(|t| TaskView::new(t, A::LOG_PATHS))
                .collect(),
        }
    }
}

impl RunView<Local> {
    /// Render one of the agent's own runs and its tasks.
    pub fn new(r: &RunRecord, tasks: &[TaskInstanceRecord]) -> RunView<Local> {
        RunView::of(Local, r, tasks)
    }
}

impl RunView<String> {
    /// Render a run that `agent` reported, and its tasks.
    pub fn new(agent: &str, r: &RunRecord, tasks: &[TaskInstanceRecord]) -> RunView<String> {
        RunView::of(agent.to_string(), r, tasks)
    }
}

impl TaskView {
    /// Render a task instance; with `log_path`, the last attempt's log file.
    pub fn new(t: &TaskInstanceRecord, log_path: bool) -> TaskView {
        let first: Option<&AttemptRecord> = t.attempts.first();
        let last: Option<&AttemptRecord> = t.attempts.last();
        TaskView {
            task: t.task_id.clone(),
            state: t.display_state().into(),
            attempts: t.attempts.len() as u32,
            exit_code: last.and_then(|a| a.outcome.as_ref()?.exit_code()),
            outcome: last.and_then(|a| a.outcome.as_ref().map(|o| o.to_string())),
            start: first.map(|a| rfc3339(a.started_ms)),
            end: last.and_then(|a| a.ended_ms.map(rfc3339)),
            reason: last.and_then(|a| a.reason.clone()),
            limits: last.and_then(|a| a.limits.label()).map(String::from),
            log: log_path.then(|| last.and_then(|a| a.log_path.clone())),
            outputs: t.outputs.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AttemptOutcome, LimitsMode, RunKind, RunState, TaskState};

    fn run() -> RunRecord {
        RunRecord {
            run_id: "r1".into(),
            workflow: "etl".into(),
            version: 2,
            kind: RunKind::Manual,
            scheduled_ms: 0,
            state: RunState::Succeeded,
            params: vec![("day".into(), "mon".into())],
            created_ms: 0,
            started_ms: Some(1_000),
            ended_ms: Some(2_500),
            agent_id: None,
            skip_reason: None,
        }
    }

    fn tasks() -> Vec<TaskInstanceRecord> {
        let done = TaskInstanceRecord {
            run_id: "r1".into(),
            task_id: "a".into(),
            state: TaskState::Succeeded,
            attempts: vec![AttemptRecord {
                attempt: 1,
                started_ms: 1_000,
                ended_ms: Some(2_000),
                pid: Some(7),
                outcome: Some(AttemptOutcome::Exited(0)),
                limits: LimitsMode::None,
                reason: None,
                log_path: Some("/logs/a.1.log".into()),
                dispatched_ms: None,
            }],
            outputs: vec![("rows".into(), "3".into())],
            retry_at_ms: None,
            updated_ms: 2_000,
        };
        let waiting = TaskInstanceRecord {
            task_id: "b".into(),
            state: TaskState::Pending,
            attempts: vec![],
            outputs: vec![],
            ..done.clone()
        };
        vec![done, waiting]
    }

    /// The agent's JSON: no `agent`; `log` on every task (`null` before an attempt), exactly as
    /// the agent printed it before its views moved here.
    #[test]
    fn the_agents_json_has_no_agent_and_a_log_on_every_task() {
        let v = RunView::<Local>::new(&run(), &tasks());
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(
            json,
            r#"{"run_id":"r1","workflow":"etl","version":2,"kind":"manual","state":"succeeded","scheduled":"1970-01-01T00:00:00.000Z","created":"1970-01-01T00:00:00.000Z","started":"1970-01-01T00:00:01.000Z","ended":"1970-01-01T00:00:02.500Z","params":[["day","mon"]],"tasks":[{"task":"a","state":"succeeded","attempts":1,"exit_code":0,"outcome":"exit 0","start":"1970-01-01T00:00:01.000Z","end":"1970-01-01T00:00:02.000Z","reason":null,"limits":null,"log":"/logs/a.1.log","outputs":[["rows","3"]]},{"task":"b","state":"pending","attempts":0,"exit_code":null,"outcome":null,"start":null,"end":null,"reason":null,"limits":null,"log":null}]}"#
        );
        // The CLI decodes what the control socket carries and prints it again: unchanged.
        let back: RunView<Local> = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    /// The hub's JSON: `agent` after `run_id`; no `log`.
    #[test]
    fn the_hubs_json_names_the_agent_and_has_no_log() {
        let v = RunView::<String>::new("agent-a", &run(), &tasks()[1..]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(
            json,
            r#"{"run_id":"r1","agent":"agent-a","workflow":"etl","version":2,"kind":"manual","state":"succeeded","scheduled":"1970-01-01T00:00:00.000Z","created":"1970-01-01T00:00:00.000Z","started":"1970-01-01T00:00:01.000Z","ended":"1970-01-01T00:00:02.500Z","params":[["day","mon"]],"tasks":[{"task":"b","state":"pending","attempts":0,"exit_code":null,"outcome":null,"start":null,"end":null,"reason":null,"limits":null}]}"#
        );
        let back: RunView<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.agent, "agent-a");
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        // A list row has no tasks.
        let row = RunView::<String>::new("agent-a", &run(), &[]);
        assert!(!serde_json::to_string(&row).unwrap().contains("tasks"));
    }
}
