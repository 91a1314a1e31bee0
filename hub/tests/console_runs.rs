//! The console's run pages over HTTP: runs ingested through the hub as agents report them; the
//! list (filters, cursor paging), a run's page (summary, timeline, params, outputs, logs), cancel
//! with its confirmation, retry, and what a viewer may not do.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::console::{Browser, ConsoleHarness};
use outpost_common::proto::Command;
use outpost_common::record::{
    AttemptOutcome, AttemptRecord, LimitsMode, OutboxEntry, RunKind, RunRecord, RunState,
    StatusEvent, TaskInstanceRecord, TaskState,
};
use outpost_hub::events::EventKind;
use outpost_hub::gateway::SessionMsg;
use outpost_hub::store::Role;

fn run(id: &str, workflow: &str, created: i64, state: RunState) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        workflow: workflow.into(),
        version: 1,
        kind: RunKind::Manual,
        scheduled_ms: created,
        state,
        params: vec![],
        created_ms: created,
        started_ms: Some(created),
        ended_ms: state.is_terminal().then_some(created + 5_000),
        agent_id: None,
        skip_reason: None,
    }
}

fn attempt(n: u32, start: i64, end: Option<i64>, outcome: Option<AttemptOutcome>) -> AttemptRecord {
    AttemptRecord {
        attempt: n,
        started_ms: start,
        ended_ms: end,
        pid: None,
        outcome,
        limits: LimitsMode::None,
        reason: None,
        log_path: None,
        dispatched_ms: None,
    }
}

fn task(
    run_id: &str,
    id: &str,
    state: TaskState,
    attempts: Vec<AttemptRecord>,
) -> TaskInstanceRecord {
    TaskInstanceRecord {
        run_id: run_id.into(),
        task_id: id.into(),
        state,
        attempts,
        outputs: vec![],
        retry_at_ms: None,
        updated_ms: 0,
    }
}

/// An agent's status batch, numbered from `first`.
fn batch(first: u64, events: Vec<StatusEvent>) -> Vec<OutboxEntry> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| OutboxEntry {
            seq: first + i as u64,
            event,
        })
        .collect()
}

fn enroll(h: &ConsoleHarness, id: &str) {
    common::enroll(&h.store, id, vec![("site".into(), "a".into())]);
}

/// The `data-run` values of a page's rows, in order.
fn rows(body: &str) -> Vec<String> {
    body.split("data-run=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .collect()
}

/// The href of the "older" link, if the page has one.
fn older(body: &str) -> Option<String> {
    let at = body.find("id=\"older\"")?;
    let head = &body[..at];
    let start = head.rfind("href=\"")? + "href=\"".len();
    let href = &head[start..];
    Some(href[..href.find('"').unwrap()].replace("&amp;", "&"))
}

/// A connected agent that records the commands it gets and answers them (logs: `log of
/// <run>/<task>#<attempt>`).
fn fake_session(h: &ConsoleHarness, id: &str) -> Arc<Mutex<Vec<Command>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut s = h.conns.register(id, 1000);
    let conns = h.conns.clone();
    let (id, seen) = (id.to_string(), got.clone());
    h.rt.spawn(async move {
        while let Some(msg) = s.rx.recv().await {
            let SessionMsg::Command { id: cid, command } = msg else {
                return;
            };
            seen.lock().unwrap().push((*command).clone());
            match *command {
                Command::FetchLog {
                    run_id,
                    task,
                    attempt,
                } => {
                    let text = format!("log of {run_id}/{task}#{}", attempt.unwrap_or(0));
                    conns.on_log_chunk(&id, cid, text.as_bytes(), true);
                }
                _ => conns.on_command_result(&id, cid, true, "done".into(), None),
            }
        }
    });
    got
}

#[test]
fn the_list_filters_and_pages_from_a_cursor() {
    let h = ConsoleHarness::new();
    enroll(&h, "agent-a");
    enroll(&h, "agent-b");
    // 120 runs of demo on agent-a (every tenth failed), 5 of other on agent-b, interleaved in
    // time; run r-7 succeeded past a failed task.
    let t0 = 1_700_000_000_000;
    let mut a = Vec::new();
    for i in 0..120 {
        let state = if i % 10 == 3 {
            RunState::Failed
        } else {
            RunState::Succeeded
        };
        a.push(StatusEvent::Run(run(
            &format!("r-{i}"),
            "demo",
            t0 + i * 1000,
            state,
        )));
    }
    a.push(StatusEvent::Task(task(
        "r-7",
        "flaky",
        TaskState::Failed,
        vec![],
    )));
    h.hub.ingest("agent-a", &batch(1, a)).unwrap();
    let b_runs = (0..5)
        .map(|i| {
            StatusEvent::Run(run(
                &format!("b-{i}"),
                "other",
                t0 + i * 20_000 + 500,
                RunState::Running,
            ))
        })
        .collect();
    h.hub.ingest("agent-b", &batch(1, b_runs)).unwrap();

    let b = h.browser(&h.admin);
    let first = b.get("/ui/runs");
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.body.contains("id=\"runs-table\""));
    assert!(first.body.contains("data-live=\"runs\""));
    let page1 = rows(&first.body);
    assert_eq!(page1.len(), 50);
    assert_eq!(page1[0], "r-119", "newest first");
    // Every row, page after page, once, newest first.
    let mut all = page1.clone();
    let mut next = older(&first.body);
    let mut pages = 1;
    while let Some(href) = next {
        assert!(href.contains("before="), "{href}");
        let p = b.get(&href);
        assert_eq!(p.status, 200, "{href}: {}", p.body);
        all.extend(rows(&p.body));
        next = older(&p.body);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 125);
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 125, "no row twice");
    assert_eq!(all.last().unwrap(), "r-0");

    // Filters.
    let failed = b.get("/ui/runs?state=failed");
    let ids = rows(&failed.body);
    assert_eq!(ids.len(), 12);
    assert!(!failed.body.contains("data-state=\"succeeded\""));
    let of_b = rows(&b.get("/ui/runs?agent=agent-b").body);
    assert_eq!(of_b, ["b-4", "b-3", "b-2", "b-1", "b-0"]);
    let other = rows(&b.get("/ui/runs?workflow=other&state=running").body);
    assert_eq!(other.len(), 5);
    let failed_tasks = rows(&b.get("/ui/runs?state=failed-tasks").body);
    assert_eq!(failed_tasks, ["r-7"]);
    let since = rows(
        &b.get("/ui/runs?since=2023-11-14T22:15:10Z&agent=agent-a")
            .body,
    );
    assert_eq!(since.len(), 10, "{since:?}");
    assert!(since.iter().all(|r| r.starts_with("r-")));
    let missed = b.get("/ui/runs?state=missed");
    assert_eq!(missed.status, 200);
    assert!(rows(&missed.body).is_empty());
    let bad = b.get("/ui/runs?state=weird");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("unknown run state"), "{}", bad.body);
    let bad = b.get("/ui/runs?since=yesterday");
    assert_eq!(bad.status, 400);
}

#[test]
fn a_run_page_shows_its_timeline_params_outputs_and_logs() {
    let h = ConsoleHarness::new();
    enroll(&h, "agent-a");
    let now = outpost_hub::hub::now_ms();
    let t0 = now - 60_000;
    let mut r = run("r1", "demo", t0, RunState::Running);
    r.params = vec![("who".into(), "<script>alert(1)</script>".into())];
    let mut extract = task(
        "r1",
        "extract",
        TaskState::Succeeded,
        vec![
            attempt(1, t0, Some(t0 + 10_000), Some(AttemptOutcome::Exited(2))),
            attempt(
                2,
                t0 + 12_000,
                Some(t0 + 20_000),
                Some(AttemptOutcome::Exited(0)),
            ),
        ],
    );
    extract.outputs = vec![("rows".into(), "<img src=x onerror=alert(2)>".into())];
    let load = task(
        "r1",
        "load",
        TaskState::Running,
        vec![attempt(1, t0 + 20_000, None, None)],
    );
    let mut events = h.hub.subscribe();
    h.hub
        .ingest(
            "agent-a",
            &batch(
                1,
                vec![
                    StatusEvent::Run(r),
                    StatusEvent::Task(extract),
                    StatusEvent::Task(load.clone()),
                ],
            ),
        )
        .unwrap();
    // One live notice for the run and its tasks.
    let updated: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| {
            matches!(&e.kind, EventKind::RunUpdated { run_id, workflow, agent }
            if run_id == "r1" && workflow == "demo" && agent == "agent-a")
        })
        .collect();
    assert_eq!(updated.len(), 1);
    // A batch of task records alone names the run's workflow from the store.
    h.hub
        .ingest("agent-a", &batch(4, vec![StatusEvent::Task(load)]))
        .unwrap();
    let e = events.try_recv().unwrap();
    assert!(
        matches!(&e.kind, EventKind::RunUpdated { workflow, .. } if workflow == "demo"),
        "{e:?}"
    );

    let op = h.operator("olga", Role::Operator, &[]);
    let b = h.browser(&op);
    let p = b.get("/ui/runs/r1");
    assert_eq!(p.status, 200, "{}", p.body);
    let body = &p.body;
    assert!(body.contains("id=\"run-summary\""), "{body}");
    assert!(body.contains("data-state=\"running\""));
    assert!(body.contains("data-live=\"run:r1 runs\""));
    assert!(body.contains("id=\"gantt\""));
    for (task, attempt, state) in [
        ("extract", 1, "failed"),
        ("extract", 2, "succeeded"),
        ("load", 1, "running"),
    ] {
        assert!(
            body.contains(&format!(
                "data-task=\"{task}\" data-attempt=\"{attempt}\" data-state=\"{state}\""
            )),
            "{task}#{attempt}: {body}"
        );
    }
    assert!(body.contains("id=\"params\"") && body.contains("id=\"outputs\""));
    assert!(
        !body.contains("<script>alert") && !body.contains("<img src=x"),
        "{body}"
    );
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(body.contains("&lt;img src=x onerror=alert(2)&gt;"));
    // Each attempt's log; the running one followed.
    assert!(body.contains(
        "id=\"log-load-1\" data-src=\"/ui/runs/r1/logs/load?attempt=1&amp;agent=agent-a\" data-follow=\"/ui/runs/r1/logs/load?attempt=1&amp;agent=agent-a\""
    ), "{body}");
    assert!(body.contains("id=\"log-extract-2\""));
    assert!(!body.contains("id=\"log-extract-2\" data-src=\"/ui/runs/r1/logs/extract?attempt=2&amp;agent=agent-a\" data-follow"));
    // An operator may cancel a running run; not retry it.
    assert!(body.contains("id=\"cancel-run\""));
    assert!(!body.contains("id=\"retry-run\""));
    assert!(!body.contains("style="));

    // The agent is not connected: the log route says so.
    let log = b.get("/ui/runs/r1/logs/load?attempt=1&agent=agent-a");
    assert_eq!(log.status, 503);
    assert_eq!(
        log.body,
        "agent agent-a is not connected: its log stays on the agent until it reconnects"
    );
    assert!(
        log.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    // Connected: the log, from the agent.
    let got = fake_session(&h, "agent-a");
    let log = b.get("/ui/runs/r1/logs/extract?attempt=2&agent=agent-a");
    assert_eq!(
        (log.status, log.body.as_str()),
        (200, "log of r1/extract#2")
    );
    let unknown = b.get("/ui/runs/nope/logs/extract?attempt=1");
    assert_eq!(unknown.status, 404);

    // Cancel: the confirmation first, nothing sent.
    let c = b.post_form("/ui/runs/r1/cancel", &[("agent", "agent-a")], true);
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(c.body.contains("id=\"confirm-what\"") && c.body.contains("id=\"confirm\""));
    assert!(c.body.contains("r1") && c.body.contains("agent-a"));
    assert!(c.body.contains("name=\"confirm\" value=\"yes\""));
    assert!(
        !got.lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c, Command::Cancel { .. }))
    );
    // Confirmed: sent, audited, back to the run with a notice.
    let c = b.post_form(
        "/ui/runs/r1/cancel",
        &[("agent", "agent-a"), ("confirm", "yes")],
        true,
    );
    assert_eq!(c.status, 303, "{}", c.body);
    let to = c.location.unwrap();
    assert!(to.starts_with("/ui/runs/r1?agent=agent-a&done="), "{to}");
    assert!(b.get(&to).body.contains("id=\"notice\""));
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c, Command::Cancel { run_id } if run_id == "r1"))
    );
    let audit: Vec<serde_json::Value> = h.api().get("/v1/audit", &[]).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "run.cancel" && e["actor"] == "olga"),
        "{audit:?}"
    );

    // The run fails; retry re-runs its failed tasks through the same operation as the API.
    let mut failed = run("r1", "demo", t0, RunState::Failed);
    failed.ended_ms = Some(now);
    h.hub
        .ingest("agent-a", &batch(5, vec![StatusEvent::Run(failed)]))
        .unwrap();
    let p = b.get("/ui/runs/r1");
    assert!(p.body.contains("data-state=\"failed\""));
    assert!(p.body.contains("id=\"retry-run\"") && !p.body.contains("id=\"cancel-run\""));
    assert!(
        !p.body.contains("data-follow"),
        "nothing to follow in a finished run"
    );
    let r = b.post_form("/ui/runs/r1/retry", &[("agent", "agent-a")], true);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(got.lock().unwrap().iter().any(|c| matches!(
        c,
        Command::Retry { run_id, task: None, downstream: false, if_ended_ms: Some(t) }
            if run_id == "r1" && *t == now
    )));
}

#[test]
fn a_viewer_sees_no_write_and_reads_no_log() {
    let h = ConsoleHarness::new();
    enroll(&h, "agent-a");
    enroll(&h, "agent-b");
    let t0 = outpost_hub::hub::now_ms() - 10_000;
    let r1 = run("r1", "demo", t0, RunState::Running);
    let busy = task(
        "r1",
        "work",
        TaskState::Running,
        vec![attempt(1, t0, None, None)],
    );
    h.hub
        .ingest(
            "agent-a",
            &batch(
                1,
                vec![StatusEvent::Run(r1.clone()), StatusEvent::Task(busy)],
            ),
        )
        .unwrap();
    // The same run id on another agent: the page asks which.
    h.hub
        .ingest("agent-b", &batch(1, vec![StatusEvent::Run(r1)]))
        .unwrap();
    let _session = fake_session(&h, "agent-a");
    let viewer = h.operator("vera", Role::Viewer, &[]);
    let b = h.browser(&viewer);
    let choose = b.get("/ui/runs/r1");
    assert_eq!(choose.status, 200);
    assert!(
        choose.body.contains("id=\"choose-agent\""),
        "{}",
        choose.body
    );
    assert!(choose.body.contains("/ui/runs/r1?agent=agent-b"));
    let p = b.get("/ui/runs/r1?agent=agent-a");
    assert_eq!(p.status, 200);
    // No form but signing out and the language switch.
    let forms: Vec<&str> = p
        .body
        .split("<form method=\"post\" action=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(forms, ["/ui/lang", "/ui/logout"], "{}", p.body);
    assert!(p.body.contains("id=\"logs-need-operator\""));
    assert!(!p.body.contains("data-follow"));
    let log = b.get("/ui/runs/r1/logs/work?attempt=1&agent=agent-a");
    assert_eq!(log.status, 403);
    assert!(log.body.contains("needs role operator"), "{}", log.body);
    // The server refuses the writes anyway, and audits it.
    for path in ["/ui/runs/r1/cancel", "/ui/runs/r1/retry"] {
        let r = b.post_form(path, &[("agent", "agent-a"), ("confirm", "yes")], true);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    let audit: Vec<serde_json::Value> = h.api().get("/v1/audit", &[]).unwrap();
    let denied = audit
        .iter()
        .filter(|e| e["action"] == "access.denied" && e["actor"] == "vera")
        .count();
    assert_eq!(denied, 3, "{audit:?}");
    // An operator of another browser session cannot post with this session's page either.
    let anon = Browser::new(&h.url);
    let r = anon.post_form("/ui/runs/r1/cancel", &[("confirm", "yes")], false);
    assert_eq!(r.status, 401);
}
