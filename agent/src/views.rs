//! JSON-friendly views of runs and tasks: what `--output json` prints and what the control socket
//! carries. Times are RFC 3339 strings (UTC).

use outpost_common::record::{AttemptRecord, RunRecord, TaskInstanceRecord};
use serde::{Deserialize, Serialize};

pub use outpost_common::record::rfc3339;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub run_id: String,
    pub workflow: String,
    pub version: u64,
    pub kind: String,
    pub state: String,
    pub scheduled: String,
    pub created: String,
    pub started: Option<String>,
    pub ended: Option<String>,
    pub params: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    pub task: String,
    pub state: String,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub outcome: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub reason: Option<String>,
    pub limits: Option<String>,
    pub log: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<(String, String)>,
}

impl RunView {
    pub fn new(r: &RunRecord, tasks: &[TaskInstanceRecord]) -> RunView {
        RunView {
            run_id: r.run_id.clone(),
            workflow: r.workflow.clone(),
            version: r.version,
            kind: r.kind.as_str().into(),
            state: r.state.as_str().into(),
            scheduled: rfc3339(r.scheduled_ms),
            created: rfc3339(r.created_ms),
            started: r.started_ms.map(rfc3339),
            ended: r.ended_ms.map(rfc3339),
            params: r.params.clone(),
            tasks: tasks.iter().map(TaskView::new).collect(),
        }
    }
}

impl TaskView {
    pub fn new(t: &TaskInstanceRecord) -> TaskView {
        let first: Option<&AttemptRecord> = t.attempts.first();
        let last: Option<&AttemptRecord> = t.attempts.last();
        TaskView {
            task: t.task_id.clone(),
            // A dispatched attempt (committed ahead of a free slot) shows as `dispatched`.
            state: t.display_state().into(),
            attempts: t.attempts.len() as u32,
            exit_code: last.and_then(|a| a.outcome.as_ref()?.exit_code()),
            outcome: last.and_then(|a| a.outcome.as_ref().map(|o| o.to_string())),
            start: first.map(|a| rfc3339(a.started_ms)),
            end: last.and_then(|a| a.ended_ms.map(rfc3339)),
            reason: last.and_then(|a| a.reason.clone()),
            limits: last.and_then(|a| a.limits.label()).map(String::from),
            log: last.and_then(|a| a.log_path.clone()),
            outputs: t.outputs.clone(),
        }
    }
}

pub use outpost_common::text::table;
