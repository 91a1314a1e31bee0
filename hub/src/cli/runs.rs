//! `run ...`: runs reported by agents (list, show, cancel, logs), and the firings no run was
//! reported for (missed, unknown).

use std::process::ExitCode;

use clap::Subcommand;

use super::output::{
    CliError, CliResult, Output, exit_zero_on_interrupt, out, print_json, print_json_rows, table,
    watch as watch_loop, watch_interval,
};
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
        /// `failed-tasks`: runs in which a task failed, whatever their state; or `missed` /
        /// `unknown`: only the expected firings with no run reported (without `--state`, they
        /// are listed among the runs).
        #[arg(long)]
        state: Option<String>,
        /// Only runs created since (RFC 3339 time or a duration like 1h).
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Redraw every SECS seconds (default 2) until Ctrl-C; with `--output json`, one JSON
        /// document a line per refresh.
        #[arg(short = 'w', long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<f64>,
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
        /// Follow: keep printing the log as it grows until the attempt ends (Ctrl-C: exit 0).
        #[arg(short = 'f', long)]
        follow: bool,
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
            watch,
        } => {
            let f = ListFilter {
                workflow: workflow.unwrap_or_default(),
                agent: agent.unwrap_or_default(),
                state: state.unwrap_or_default(),
                since: since.unwrap_or_default(),
                limit,
            };
            match watch {
                Some(secs) => {
                    return watch_loop(watch_interval(secs)?, || list(c, output, &f, true), output);
                }
                None => list(c, output, &f, false)?,
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
                if let Some(why) = &r.skip_reason {
                    println!("skipped:   {why}");
                }
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
            follow,
        } => {
            let agent = agent.unwrap_or_default();
            if follow {
                return follow_log(c, &run_id, &task, &agent, attempt);
            }
            let text = fetch_log(c, &run_id, &task, &agent, attempt)?;
            if output == Output::Json {
                print_json(&serde_json::json!({
                    "run_id": run_id,
                    "task": task,
                    "log": text,
                }))?;
            } else {
                out(&text)?;
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

/// `run list` filters.
struct ListFilter {
    workflow: String,
    agent: String,
    state: String,
    since: String,
    limit: usize,
}

/// The `run list` states that are firings with no run, not runs.
const FIRING_STATES: [&str; 2] = ["missed", "unknown"];

/// `run list`: the runs, and among them (newest first, by creation or scheduled time) the
/// expected firings with no run reported, as rows of state `missed` / `unknown` with the run id
/// the firing would have had.
fn list(c: &Client, output: Output, f: &ListFilter, watching: bool) -> Result<(), CliError> {
    let firings_only = FIRING_STATES.contains(&f.state.as_str());
    let mut rows: Vec<RunView> = if firings_only {
        Vec::new()
    } else {
        c.get(
            "/v1/runs",
            &[
                ("workflow", f.workflow.clone()),
                ("agent", f.agent.clone()),
                ("state", f.state.clone()),
                ("since", f.since.clone()),
                ("limit", f.limit.to_string()),
            ],
        )?
    };
    if f.state.is_empty() || firings_only {
        let since_ms = match f.since.as_str() {
            "" => None,
            s => Some(
                parse_since(s, chrono::Utc::now().timestamp_millis()).ok_or_else(|| {
                    CliError::Usage(format!(
                        "--since {s:?}: not an RFC 3339 time or a duration like 1h"
                    ))
                })?,
            ),
        };
        let firings: Vec<FiringView> = c.get(
            "/v1/firings",
            &[
                ("workflow", f.workflow.clone()),
                ("agent", f.agent.clone()),
                (
                    "status",
                    if firings_only {
                        f.state.clone()
                    } else {
                        String::new()
                    },
                ),
            ],
        )?;
        rows = merge_firings(rows, &firings, since_ms, f.limit);
    }
    if output == Output::Json {
        return print_json_rows(&rows, watching);
    }
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
    out(&table(
        &[
            "RUN", "AGENT", "WORKFLOW", "VERSION", "KIND", "STATE", "CREATED",
        ],
        &t,
    ))
}

/// Parse `--since`: an RFC 3339 time, or a duration (`1h`) meaning that long ago.
fn parse_since(s: &str, now_ms: i64) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    let d = outpost_common::duration::parse_duration(s).ok()?;
    Some(now_ms.saturating_sub(i64::try_from(d.as_millis()).ok()?))
}

/// Runs (newest first) and firings with no run as one list, newest first (a firing's time is
/// its scheduled instant; its `created` shows that instant too), at most `limit` rows.
fn merge_firings(
    runs: Vec<RunView>,
    firings: &[FiringView],
    since_ms: Option<i64>,
    limit: usize,
) -> Vec<RunView> {
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis())
            .unwrap_or_default()
    };
    let mut rows: Vec<(i64, RunView)> = runs.into_iter().map(|r| (ms(&r.created), r)).collect();
    for f in firings {
        let at = ms(&f.scheduled);
        if since_ms.is_some_and(|s| at < s) {
            continue;
        }
        rows.push((at, firing_row(f, at)));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    rows.into_iter().take(limit).map(|(_, r)| r).collect()
}

/// A firing with no run as a `run list` row: the run id a live firing would have had, state
/// `missed` or `unknown`.
fn firing_row(f: &FiringView, at_ms: i64) -> RunView {
    use outpost_common::record::{RunKind, run_id};
    RunView {
        run_id: run_id(&f.workflow, f.version, at_ms, RunKind::Scheduled),
        agent: f.agent.clone(),
        workflow: f.workflow.clone(),
        version: f.version,
        kind: RunKind::Scheduled.as_str().into(),
        state: f.status.clone(),
        scheduled: f.scheduled.clone(),
        created: f.scheduled.clone(),
        started: None,
        ended: None,
        params: Vec::new(),
        skip_reason: None,
        tasks: Vec::new(),
    }
}

/// One fetch of a task's log (the agent must be connected).
fn fetch_log(
    c: &Client,
    run_id: &str,
    task: &str,
    agent: &str,
    attempt: Option<u32>,
) -> Result<String, CliError> {
    Ok(c.get_text(
        &format!("/v1/runs/{}/logs/{}", seg(run_id), seg(task)),
        &[
            ("agent", agent.to_string()),
            (
                "attempt",
                attempt.map(|a| a.to_string()).unwrap_or_default(),
            ),
        ],
    )?)
}

/// Where the followed attempt is.
#[derive(Debug, PartialEq, Eq)]
enum Follow {
    /// Not started yet (the task waits, or the hub has not heard of the attempt yet).
    Waiting,
    /// Running: keep following.
    Running(u32),
    /// Ended (or will never run): print what is left and stop.
    Ended(u32),
}

/// Where attempt `want` (default: the latest) of `task` is, from the hub's view of the run.
fn follow_state(run: &RunView, task: &str, want: Option<u32>) -> Follow {
    let run_over = !matches!(run.state.as_str(), "queued" | "running");
    let Some(t) = run.tasks.iter().find(|t| t.task == task) else {
        return if run_over {
            Follow::Ended(want.unwrap_or(0))
        } else {
            Follow::Waiting
        };
    };
    let n = want.unwrap_or(t.attempts);
    let live = matches!(t.state.as_str(), "running" | "dispatched");
    if n == 0 || t.attempts < n {
        return if run_over {
            Follow::Ended(n)
        } else {
            Follow::Waiting
        };
    }
    if t.attempts == n && live {
        Follow::Running(n)
    } else {
        Follow::Ended(n)
    }
}

/// The part of `text` not printed yet (`printed` bytes were). A log that shrank (rotated, or
/// cut to its last part) is printed again from its start.
fn unseen(text: &str, printed: usize) -> &str {
    text.get(printed..).unwrap_or(text)
}

/// How often `run logs -f` polls the hub.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `run logs -f`: print the log as it grows (polling the hub, which fetches it from the
/// agent) until the attempt ends; then print the rest and exit 0. Ctrl-C: exit 0.
fn follow_log(
    c: &Client,
    run_id: &str,
    task: &str,
    agent: &str,
    attempt: Option<u32>,
) -> CliResult {
    exit_zero_on_interrupt();
    let mut printed = 0usize;
    let mut followed = attempt;
    let mut warned = false;
    loop {
        let run: RunView = c.get(
            &format!("/v1/runs/{}", seg(run_id)),
            &[("agent", agent.to_string())],
        )?;
        let state = follow_state(&run, task, followed);
        let n = match state {
            Follow::Waiting => {
                std::thread::sleep(FOLLOW_EVERY);
                continue;
            }
            Follow::Running(n) | Follow::Ended(n) => n,
        };
        if followed.is_none() && n > 0 {
            followed = Some(n);
        }
        if n > 0 {
            match fetch_log(c, run_id, task, agent, Some(n)) {
                Ok(text) => {
                    let new = unseen(&text, printed);
                    if text.len() < printed {
                        printed = 0;
                    }
                    out(new)?;
                    printed += new.len();
                    warned = false;
                }
                Err(e) if matches!(state, Follow::Ended(_)) => return Err(e),
                Err(e) => {
                    if !warned {
                        eprintln!("warning: {e} (still following)");
                        warned = true;
                    }
                }
            }
        }
        if matches!(state, Follow::Ended(_)) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}

#[cfg(test)]
mod view_tests {
    use super::*;
    use outpost_common::views::TaskView;

    fn run(state: &str, tasks: Vec<(&str, &str, u32)>) -> RunView {
        RunView {
            run_id: "r".into(),
            agent: "a".into(),
            workflow: "w".into(),
            version: 1,
            kind: "manual".into(),
            state: state.into(),
            scheduled: "2026-01-01T00:00:00.000Z".into(),
            created: "2026-01-01T00:00:00.000Z".into(),
            started: None,
            ended: None,
            params: vec![],
            skip_reason: None,
            tasks: tasks
                .into_iter()
                .map(|(task, state, attempts)| TaskView {
                    task: task.into(),
                    state: state.into(),
                    attempts,
                    exit_code: None,
                    outcome: None,
                    start: None,
                    end: None,
                    reason: None,
                    limits: None,
                    log: None,
                    outputs: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn following_ends_with_the_attempt() {
        let r = run("running", vec![("t", "pending", 0)]);
        assert_eq!(follow_state(&r, "t", None), Follow::Waiting);
        let r = run("running", vec![("t", "running", 1)]);
        assert_eq!(follow_state(&r, "t", None), Follow::Running(1));
        let r = run("running", vec![("t", "dispatched", 1)]);
        assert_eq!(follow_state(&r, "t", Some(1)), Follow::Running(1));
        // Attempt 1 failed and attempt 2 runs: following 1 is over.
        let r = run("running", vec![("t", "running", 2)]);
        assert_eq!(follow_state(&r, "t", Some(1)), Follow::Ended(1));
        // Up for retry: attempt 1 is over.
        let r = run("running", vec![("t", "up_for_retry", 1)]);
        assert_eq!(follow_state(&r, "t", Some(1)), Follow::Ended(1));
        // Waiting for attempt 2 of a task that retries.
        assert_eq!(follow_state(&r, "t", Some(2)), Follow::Waiting);
        let r = run("succeeded", vec![("t", "succeeded", 1)]);
        assert_eq!(follow_state(&r, "t", None), Follow::Ended(1));
        // A task that never ran in a finished run.
        let r = run("failed", vec![("t", "upstream_failed", 0)]);
        assert_eq!(follow_state(&r, "t", None), Follow::Ended(0));
        assert_eq!(follow_state(&r, "nope", None), Follow::Ended(0));
        let r = run("running", vec![]);
        assert_eq!(follow_state(&r, "t", None), Follow::Waiting);
    }

    #[test]
    fn unseen_is_the_new_tail() {
        assert_eq!(unseen("abc", 0), "abc");
        assert_eq!(unseen("abcdef", 3), "def");
        assert_eq!(unseen("abc", 3), "");
        // Shrunk: from the start again.
        assert_eq!(unseen("ab", 3), "ab");
    }

    #[test]
    fn firings_are_merged_newest_first() {
        let mut a = run("succeeded", vec![]);
        a.created = "2026-01-01T00:00:10.000Z".into();
        let mut b = run("failed", vec![]);
        b.created = "2026-01-01T00:00:00.000Z".into();
        let f = |at: &str, status: &str| FiringView {
            agent: "a".into(),
            workflow: "w".into(),
            version: 1,
            scheduled: at.into(),
            status: status.into(),
            since: at.into(),
        };
        let rows = merge_firings(
            vec![a, b],
            &[
                f("2026-01-01T00:00:05.000Z", "missed"),
                f("2026-01-01T00:00:20.000Z", "unknown"),
            ],
            None,
            10,
        );
        let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
        assert_eq!(states, ["unknown", "succeeded", "missed", "failed"]);
        assert_eq!(rows[2].run_id, "w@v1@20260101T000005.000Z");
        assert_eq!(rows[2].kind, "scheduled");
        // `since` and `limit`.
        let since = parse_since("2026-01-01T00:00:06Z", 0);
        let rows = merge_firings(
            vec![],
            &[
                f("2026-01-01T00:00:05.000Z", "missed"),
                f("2026-01-01T00:00:20.000Z", "missed"),
                f("2026-01-01T00:00:30.000Z", "missed"),
            ],
            since,
            1,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].scheduled, "2026-01-01T00:00:30.000Z");
        assert_eq!(parse_since("1h", 7_200_000), Some(3_600_000));
        assert_eq!(parse_since("nope", 0), None);
    }
}
