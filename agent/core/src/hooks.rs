//! Hook decisions: which committed event makes which hook job.
//!
//! The driver calls [`decide`] on the records of every commit, *before* the commit, and writes
//! the jobs in the same transaction as the records that caused them. A job's key is derived from
//! its event alone ([`HookJob::key`]: run, task, attempt, event, deadline kind), and the store
//! inserts a job only when its key is absent, so committing a snapshot twice (commits carry full
//! snapshots) can never make a second job. The driver runs a job after its commit is durable and
//! marks it finished durably; after a crash it runs again the jobs never finished, never the
//! finished ones.
//!
//! | event (record committed)                          | hooks run (in this order)          |
//! |---------------------------------------------------|------------------------------------|
//! | task `Failed` (no retry left)                      | the task's `on_failure`            |
//! | task `UpForRetry` (a retry is scheduled)           | the task's `on_retry`, the workflow's `on_retry` |
//! | task `Succeeded`                                   | the task's `on_success`            |
//! | run `Failed` / `Succeeded` (its final state)       | the workflow's `on_failure` / `on_success` |
//! | `DeadlineMiss` of a task / of the run              | the task's / the workflow's `on_deadline_miss` |
//!
//! Nothing here does I/O: the job carries the argv, the timeout and the environment the driver
//! gives the hook (values as data, in `OUTPOST_*` variables, never in a command line).

use minicbor::{Decode, Encode};
use outpost_common::model::{Exec, HookEvent, Hooks, Workflow};
use outpost_common::record::{
    AttemptOutcome, DeadlineMiss, RunRecord, StatusEvent, TaskInstanceRecord, TaskState,
    UnixMillis, rfc3339,
};

/// One command of a job.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct HookCommand {
    /// Ready to execute (a `script` as `[shell, -c, script]`), without a shell otherwise.
    #[n(0)]
    pub argv: Vec<String>,
    #[n(1)]
    pub timeout_ms: u64,
}

/// A hook job: one event's hooks, durable from the commit of that event until it finished.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct HookJob {
    /// See [`HookJob::key`].
    #[n(0)]
    pub key: String,
    #[n(1)]
    pub run_id: String,
    /// `OUTPOST_*` variables, in order.
    #[n(2)]
    pub env: Vec<(String, String)>,
    /// Run one after the other.
    #[n(3)]
    pub commands: Vec<HookCommand>,
    /// When the job's commands all ended (`None`: to run, or to run again after a crash).
    #[n(4)]
    pub finished_ms: Option<UnixMillis>,
    /// The file the commands' output goes to: `hook.<task or run>.<attempt>.<event>.log` beside
    /// the run's logs.
    #[n(5)]
    pub log_name: String,
}

impl HookJob {
    /// The job's key: `run_id`, task (`-` for the run), attempt (0 for run events), event and,
    /// for a deadline miss, its kind, joined by `\u{1f}` (which no run id or task id contains).
    pub fn key(
        run_id: &str,
        task: Option<&str>,
        attempt: u32,
        event: HookEvent,
        kind: &str,
    ) -> String {
        format!(
            "{run_id}\u{1f}{}\u{1f}{attempt}\u{1f}{}\u{1f}{kind}",
            task.unwrap_or("-"),
            event.as_str()
        )
    }
}

/// The argv of a hook's command (a script runs as `[shell or /bin/sh, -c, script]`).
pub fn hook_argv(exec: &Exec) -> Vec<String> {
    match exec {
        Exec::Command(argv) => argv.clone(),
        Exec::Script { script, shell } => vec![
            shell.clone().unwrap_or_else(|| "/bin/sh".to_string()),
            "-c".to_string(),
            script.clone(),
        ],
    }
}

fn commands(list: &[(&Hooks, HookEvent)]) -> Vec<HookCommand> {
    list.iter()
        .filter_map(|(h, e)| h.get(*e))
        .map(|h| HookCommand {
            argv: hook_argv(&h.exec),
            timeout_ms: u64::try_from(h.timeout.as_millis()).unwrap_or(u64::MAX),
        })
        .collect()
}

/// What a hook is told about its event.
struct Context<'a> {
    event: HookEvent,
    run: &'a RunRecord,
    task: Option<&'a str>,
    state: &'a str,
    exit_code: Option<i32>,
    attempt: u32,
    started_ms: Option<UnixMillis>,
    ended_ms: Option<UnixMillis>,
    log_file: Option<&'a str>,
    deadline_kind: Option<&'a str>,
}

fn job(ctx: Context<'_>, commands: Vec<HookCommand>) -> Option<HookJob> {
    if commands.is_empty() {
        return None;
    }
    let kind = ctx.deadline_kind.unwrap_or("");
    let mut env = vec![
        ("OUTPOST_EVENT", ctx.event.as_str().to_string()),
        ("OUTPOST_WORKFLOW", ctx.run.workflow.clone()),
        ("OUTPOST_VERSION", ctx.run.version.to_string()),
        ("OUTPOST_RUN_ID", ctx.run.run_id.clone()),
        ("OUTPOST_TASK", ctx.task.unwrap_or("").to_string()),
        ("OUTPOST_STATE", ctx.state.to_string()),
        (
            "OUTPOST_EXIT_CODE",
            ctx.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        ),
        ("OUTPOST_ATTEMPT", ctx.attempt.to_string()),
        ("OUTPOST_SCHEDULED_AT", rfc3339(ctx.run.scheduled_ms)),
        (
            "OUTPOST_STARTED_AT",
            ctx.started_ms.map(rfc3339).unwrap_or_default(),
        ),
        (
            "OUTPOST_ENDED_AT",
            ctx.ended_ms.map(rfc3339).unwrap_or_default(),
        ),
        ("OUTPOST_LOG_FILE", ctx.log_file.unwrap_or("").to_string()),
    ];
    if let Some(k) = ctx.deadline_kind {
        env.push(("OUTPOST_DEADLINE_KIND", k.to_string()));
    }
    let log_name = format!(
        "hook.{}.{}.{}{}.log",
        ctx.task.unwrap_or("run"),
        ctx.attempt,
        ctx.event.as_str(),
        if kind.is_empty() {
            String::new()
        } else {
            format!(".{kind}")
        }
    );
    Some(HookJob {
        key: HookJob::key(&ctx.run.run_id, ctx.task, ctx.attempt, ctx.event, kind),
        run_id: ctx.run.run_id.clone(),
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        commands,
        finished_ms: None,
        log_name,
    })
}

fn task_job(t: &TaskInstanceRecord, run: &RunRecord, wf: &Workflow) -> Option<HookJob> {
    let event = match t.state {
        TaskState::Failed => HookEvent::Failure,
        TaskState::UpForRetry => HookEvent::Retry,
        TaskState::Succeeded => HookEvent::Success,
        _ => return None,
    };
    let task = wf.tasks.get(wf.task_index(&t.task_id)?)?;
    let cmds = if event == HookEvent::Retry {
        commands(&[(&task.hooks, event), (&wf.hooks, event)])
    } else {
        commands(&[(&task.hooks, event)])
    };
    let last = t.attempts.last();
    job(
        Context {
            event,
            run,
            task: Some(&t.task_id),
            state: t.state.as_str(),
            exit_code: last
                .and_then(|a| a.outcome.as_ref())
                .and_then(AttemptOutcome::exit_code),
            attempt: last.map_or(0, |a| a.attempt),
            started_ms: last.map(|a| a.started_ms),
            ended_ms: last.and_then(|a| a.ended_ms),
            log_file: last.and_then(|a| a.log_path.as_deref()),
            deadline_kind: None,
        },
        cmds,
    )
}

fn run_job(run: &RunRecord, wf: &Workflow) -> Option<HookJob> {
    let event = match run.state {
        outpost_common::record::RunState::Failed => HookEvent::Failure,
        outpost_common::record::RunState::Succeeded => HookEvent::Success,
        _ => return None,
    };
    job(
        Context {
            event,
            run,
            task: None,
            state: run.state.as_str(),
            exit_code: None,
            attempt: 0,
            started_ms: run.started_ms,
            ended_ms: run.ended_ms,
            log_file: None,
            deadline_kind: None,
        },
        commands(&[(&wf.hooks, event)]),
    )
}

fn deadline_job(d: &DeadlineMiss, run: &RunRecord, wf: &Workflow) -> Option<HookJob> {
    let event = HookEvent::DeadlineMiss;
    let hooks = match &d.task {
        Some(t) => &wf.tasks.get(wf.task_index(t)?)?.hooks,
        None => &wf.hooks,
    };
    job(
        Context {
            event,
            run,
            task: d.task.as_deref(),
            state: "deadline_missed",
            exit_code: None,
            attempt: 0,
            started_ms: run.started_ms,
            ended_ms: None,
            log_file: None,
            deadline_kind: Some(d.kind.as_str()),
        },
        commands(&[(hooks, event)]),
    )
}

/// Does the workflow or one of its tasks have a hook? (O(tasks): once per run, not per event.)
pub fn has_hooks(wf: &Workflow) -> bool {
    !wf.hooks.is_empty() || wf.tasks.iter().any(|t| !t.hooks.is_empty())
}

/// The hook jobs `events` make. `run_of` gives the run record (its latest known state; only its
/// workflow, version, times and id are read for task events) and the run's workflow, by run id;
/// events of an unknown run make no job.
pub fn decide<'w>(
    events: &[StatusEvent],
    mut run_of: impl FnMut(&str) -> Option<(&'w RunRecord, &'w Workflow)>,
) -> Vec<HookJob> {
    let mut out = Vec::new();
    for ev in events {
        let made = match ev {
            StatusEvent::Task(t) => {
                if !matches!(
                    t.state,
                    TaskState::Failed | TaskState::UpForRetry | TaskState::Succeeded
                ) {
                    continue;
                }
                run_of(&t.run_id).and_then(|(run, wf)| task_job(t, run, wf))
            }
            StatusEvent::Run(r) => {
                if !r.state.is_terminal() {
                    continue;
                }
                run_of(&r.run_id).and_then(|(_, wf)| run_job(r, wf))
            }
            StatusEvent::Deadline(d) => {
                run_of(&d.run_id).and_then(|(run, wf)| deadline_job(d, run, wf))
            }
            StatusEvent::Missed(_) | StatusEvent::Reverted(_) => None,
        };
        out.extend(made);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{run_record, workflow};
    use outpost_common::record::{AttemptRecord, DeadlineKind, LimitsMode, RunKind, RunState};

    const T0: UnixMillis = 1_767_225_600_000;

    fn task(run: &RunRecord, id: &str, state: TaskState, attempt: u32, code: i32) -> StatusEvent {
        StatusEvent::Task(TaskInstanceRecord {
            run_id: run.run_id.clone(),
            task_id: id.into(),
            state,
            attempts: vec![AttemptRecord {
                attempt,
                started_ms: T0 + 1_000,
                ended_ms: Some(T0 + 2_000),
                pid: Some(7),
                outcome: Some(AttemptOutcome::Exited(code)),
                limits: LimitsMode::None,
                reason: None,
                log_path: Some(format!("/logs/{}/{id}.{attempt}.log", run.run_id)),
                dispatched_ms: None,
            }],
            outputs: vec![],
            retry_at_ms: None,
            updated_ms: T0 + 2_000,
        })
    }

    fn env<'a>(j: &'a HookJob, k: &str) -> &'a str {
        j.env
            .iter()
            .find(|(n, _)| n == k)
            .map_or("<unset>", |(_, v)| v.as_str())
    }

    fn wf() -> std::sync::Arc<Workflow> {
        workflow("plc")
            .task("read", &[])
            .task_hook(HookEvent::Failure, &["page", "read"])
            .task_hook(HookEvent::Retry, &["note", "read"])
            .task("write", &["read"])
            .hook(HookEvent::Failure, &["page", "run"])
            .hook(HookEvent::Retry, &["note", "run"])
            .hook(HookEvent::DeadlineMiss, &["late"])
            .build()
    }

    #[test]
    fn a_task_failed_for_good_makes_one_job_with_its_context() {
        let wf = wf();
        let run = run_record(&wf, T0, RunKind::Scheduled);
        let ev = [task(&run, "read", TaskState::Failed, 3, 2)];
        let jobs = decide(&ev, |_| Some((&run, &*wf)));
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!(j.commands.len(), 1);
        assert_eq!(j.commands[0].argv, vec!["page", "read"]);
        assert_eq!(j.commands[0].timeout_ms, 60_000);
        assert_eq!(env(j, "OUTPOST_EVENT"), "failure");
        assert_eq!(env(j, "OUTPOST_WORKFLOW"), "plc");
        assert_eq!(env(j, "OUTPOST_VERSION"), "1");
        assert_eq!(env(j, "OUTPOST_RUN_ID"), run.run_id);
        assert_eq!(env(j, "OUTPOST_TASK"), "read");
        assert_eq!(env(j, "OUTPOST_STATE"), "failed");
        assert_eq!(env(j, "OUTPOST_EXIT_CODE"), "2");
        assert_eq!(env(j, "OUTPOST_ATTEMPT"), "3");
        assert_eq!(env(j, "OUTPOST_SCHEDULED_AT"), "2026-01-01T00:00:00.000Z");
        assert_eq!(env(j, "OUTPOST_STARTED_AT"), "2026-01-01T00:00:01.000Z");
        assert_eq!(env(j, "OUTPOST_ENDED_AT"), "2026-01-01T00:00:02.000Z");
        assert_eq!(
            env(j, "OUTPOST_LOG_FILE"),
            format!("/logs/{}/read.3.log", run.run_id)
        );
        assert_eq!(env(j, "OUTPOST_DEADLINE_KIND"), "<unset>");
        assert_eq!(j.log_name, "hook.read.3.failure.log");
        assert_eq!(j.finished_ms, None);
        // The same snapshot committed again makes the same key: the store keeps one job.
        let again = decide(&ev, |_| Some((&run, &*wf)));
        assert_eq!(again[0].key, j.key);
        assert_eq!(
            j.key,
            HookJob::key(&run.run_id, Some("read"), 3, HookEvent::Failure, "")
        );
    }

    #[test]
    fn a_retry_runs_the_task_hook_then_the_workflow_hook_per_attempt() {
        let wf = wf();
        let run = run_record(&wf, T0, RunKind::Scheduled);
        let one = decide(&[task(&run, "read", TaskState::UpForRetry, 1, 1)], |_| {
            Some((&run, &*wf))
        });
        let two = decide(&[task(&run, "read", TaskState::UpForRetry, 2, 1)], |_| {
            Some((&run, &*wf))
        });
        assert_eq!(one.len(), 1);
        let argv: Vec<_> = one[0].commands.iter().map(|c| c.argv.clone()).collect();
        assert_eq!(argv, vec![vec!["note", "read"], vec!["note", "run"]]);
        assert_eq!(env(&one[0], "OUTPOST_EVENT"), "retry");
        assert_ne!(one[0].key, two[0].key, "one job per attempt");
    }

    #[test]
    fn events_without_a_hook_make_no_job() {
        let wf = wf();
        let run = run_record(&wf, T0, RunKind::Scheduled);
        let ev = [
            task(&run, "read", TaskState::Succeeded, 1, 0),
            task(&run, "read", TaskState::Running, 1, 0),
            task(&run, "write", TaskState::Failed, 1, 1),
        ];
        assert!(decide(&ev, |_| Some((&run, &*wf))).is_empty());
        // An unknown run makes nothing.
        let ev = [task(&run, "read", TaskState::Failed, 1, 1)];
        assert!(decide(&ev, |_| None).is_empty());
    }

    #[test]
    fn the_runs_final_state_fires_the_workflow_hook_not_a_cancel() {
        let wf = wf();
        let mut run = run_record(&wf, T0, RunKind::Scheduled);
        run.state = RunState::Running;
        assert!(decide(&[StatusEvent::Run(run.clone())], |_| Some((&run, &*wf))).is_empty());
        run.state = RunState::Failed;
        run.ended_ms = Some(T0 + 9_000);
        let jobs = decide(&[StatusEvent::Run(run.clone())], |_| Some((&run, &*wf)));
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].commands[0].argv, vec!["page", "run"]);
        assert_eq!(env(&jobs[0], "OUTPOST_TASK"), "");
        assert_eq!(env(&jobs[0], "OUTPOST_STATE"), "failed");
        assert_eq!(
            env(&jobs[0], "OUTPOST_ENDED_AT"),
            "2026-01-01T00:00:09.000Z"
        );
        run.state = RunState::Cancelled;
        assert!(decide(&[StatusEvent::Run(run.clone())], |_| Some((&run, &*wf))).is_empty());
    }

    #[test]
    fn a_deadline_miss_fires_on_deadline_miss_with_its_kind() {
        let wf = wf();
        let run = run_record(&wf, T0, RunKind::Scheduled);
        let miss = |kind| {
            StatusEvent::Deadline(DeadlineMiss {
                workflow: "plc".into(),
                version: 1,
                run_id: run.run_id.clone(),
                task: None,
                kind,
                scheduled_ms: T0,
                due_ms: T0 + 1,
                detected_ms: T0 + 2,
            })
        };
        let jobs = decide(
            &[miss(DeadlineKind::Start), miss(DeadlineKind::Finish)],
            |_| Some((&run, &*wf)),
        );
        assert_eq!(jobs.len(), 2);
        assert_eq!(env(&jobs[0], "OUTPOST_EVENT"), "deadline_miss");
        assert_eq!(env(&jobs[0], "OUTPOST_DEADLINE_KIND"), "max_start_delay");
        assert_eq!(env(&jobs[1], "OUTPOST_DEADLINE_KIND"), "deadline");
        assert_ne!(jobs[0].key, jobs[1].key);
        assert_eq!(jobs[1].commands[0].argv, vec!["late"]);
    }
}
