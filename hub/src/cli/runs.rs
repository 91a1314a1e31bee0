//! `run ...`: runs reported by agents (list, show, cancel, logs), and the firings no run was
//! reported for (missed, unknown).

use std::process::ExitCode;

use clap::Subcommand;

use super::output::{CliResult, Output, print_json, table};
use crate::client::{Client, seg};
use crate::views::{FiringView, RetryRequest, RunView, TriggerResult};

/// `run ...`
#[derive(Debug, Subcommand)]
pub enum RunCmd {
    /// List runs, newest first.
    List {
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only this state (queued, running, succeeded, failed, cancelled, skipped), or
        /// `failed-tasks`: runs in which a task failed, whatever their state.
        #[arg(long)]
        state: Option<String>,
        /// Only runs created since (RFC 3339 time or a duration like 1h).
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a run with its tasks.
    Show {
        /// Run id.
        run_id: String,
        /// The agent (when several agents have this run id).
        #[arg(long)]
        agent: Option<String>,
    },
    /// Cancel a run on the agent that has it (the agent must be connected; not queued).
    Cancel {
        /// Run id.
        run_id: String,
        /// The agent (when several agents have this run id).
        #[arg(long)]
        agent: Option<String>,
    },
    /// Print a task's log (fetched from the agent while it is connected).
    Logs {
        /// Run id.
        run_id: String,
        /// Task id.
        task: String,
        /// The agent (when several agents have this run id).
        #[arg(long)]
        agent: Option<String>,
        /// Attempt number (default: the last).
        #[arg(long)]
        attempt: Option<u32>,
    },
    /// Expected firings of the agents' schedules with no run reported, newest first: missed
    /// (the agent was connected and ran nothing, or recorded the firing missed) or unknown (the
    /// agent is cut off; it reports when it is back).
    Missed {
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only `missed` or only `unknown`.
        #[arg(long)]
        status: Option<String>,
    },
    /// Run the failed tasks of a finished run again on its agent, as new attempts of the same
    /// run (the agent must be connected; not queued).
    Retry {
        /// Run id.
        run_id: String,
        /// Only this task (default: every failed task and what it blocked).
        #[arg(long)]
        task: Option<String>,
        /// With --task: also its downstream tasks that did not succeed.
        #[arg(long, requires = "task")]
        downstream: bool,
        /// The agent (when several agents have this run id).
        #[arg(long)]
        agent: Option<String>,
    },
}

/// `run ...`
pub(super) fn handle(c: &Client, output: Output, cmd: RunCmd) -> CliResult {
    match cmd {
        RunCmd::List {
            workflow,
            agent,
            state,
            since,
            limit,
        } => {
            let q = [
                ("workflow", workflow.unwrap_or_default()),
                ("agent", agent.unwrap_or_default()),
                ("state", state.unwrap_or_default()),
                ("since", since.unwrap_or_default()),
                ("limit", limit.to_string()),
            ];
            let rows: Vec<RunView> = c.get("/v1/runs", &q)?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.run_id.clone(),
                            r.agent.clone(),
                            r.workflow.clone(),
                            r.version.to_string(),
                            r.kind.clone(),
                            r.state.clone(),
                            r.created.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "RUN", "AGENT", "WORKFLOW", "VERSION", "KIND", "STATE", "CREATED"
                        ],
                        &t
                    )
                );
            }
        }
        RunCmd::Show { run_id, agent } => {
            let r: RunView = c.get(
                &format!("/v1/runs/{}", seg(&run_id)),
                &[("agent", agent.unwrap_or_default())],
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else {
                println!("run:       {}", r.run_id);
                println!("agent:     {}", r.agent);
                println!("workflow:  {} v{}", r.workflow, r.version);
                println!("kind:      {}", r.kind);
                println!("state:     {}", r.state);
                println!("scheduled: {}", r.scheduled);
                println!("started:   {}", r.started.as_deref().unwrap_or("-"));
                println!("ended:     {}", r.ended.as_deref().unwrap_or("-"));
                let t: Vec<Vec<String>> = r
                    .tasks
                    .iter()
                    .map(|t| {
                        vec![
                            t.task.clone(),
                            t.state.clone(),
                            t.attempts.to_string(),
                            t.outcome.clone().unwrap_or_else(|| "-".into()),
                            t.reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                if !t.is_empty() {
                    print!(
                        "{}",
                        table(&["TASK", "STATE", "ATTEMPTS", "OUTCOME", "REASON"], &t)
                    );
                }
            }
        }
        RunCmd::Cancel { run_id, agent } => {
            let query = agent
                .map(|a| format!("?agent={}", seg(&a)))
                .unwrap_or_default();
            let r: TriggerResult = c.post(
                &format!("/v1/runs/{}/cancel{query}", seg(&run_id)),
                &serde_json::json!({}),
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else {
                println!(
                    "{}: {}",
                    r.agent,
                    if r.message.is_empty() {
                        "cancelled"
                    } else {
                        &r.message
                    }
                );
            }
            if !r.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        RunCmd::Logs {
            run_id,
            task,
            agent,
            attempt,
        } => {
            let text = c.get_text(
                &format!("/v1/runs/{}/logs/{}", seg(&run_id), seg(&task)),
                &[
                    ("agent", agent.unwrap_or_default()),
                    (
                        "attempt",
                        attempt.map(|a| a.to_string()).unwrap_or_default(),
                    ),
                ],
            )?;
            if output == Output::Json {
                print_json(&serde_json::json!({ "run_id": run_id, "task": task, "log": text }))?;
            } else {
                print!("{text}");
            }
        }
        RunCmd::Retry {
            run_id,
            task,
            downstream,
            agent,
        } => {
            let r: TriggerResult = c.post(
                &format!("/v1/runs/{}/retry", seg(&run_id)),
                &RetryRequest {
                    agent,
                    task,
                    downstream,
                },
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else {
                println!("{}: {}", r.agent, r.message);
            }
            if !r.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        RunCmd::Missed {
            workflow,
            agent,
            status,
        } => {
            let q = [
                ("workflow", workflow.unwrap_or_default()),
                ("agent", agent.unwrap_or_default()),
                ("status", status.unwrap_or_default()),
            ];
            let rows: Vec<FiringView> = c.get("/v1/firings", &q)?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|f| {
                        vec![
                            f.scheduled.clone(),
                            f.agent.clone(),
                            f.workflow.clone(),
                            f.version.to_string(),
                            f.status.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["SCHEDULED", "AGENT", "WORKFLOW", "VERSION", "STATUS"], &t)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
