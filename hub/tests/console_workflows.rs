//! The console's workflow pages over HTTP: the list, a workflow's page (versions, task graph,
//! firings, trigger form), the side-by-side diff, and the writes (trigger, pause, resume)
//! through the same operations as the API, refused for a viewer.
#![allow(clippy::unwrap_used)]

mod common;

use common::console::ConsoleHarness;
use outpost_common::record::{
    OutboxEntry, RunKind, RunRecord, RunState, StatusEvent, TaskInstanceRecord, TaskState,
};
use outpost_hub::store::Role;
use serde_json::{Value, json};

const V1: &str = r#"
name: press-line
description: "Press line <b>nightly</b>"
schedule: "0 3 * * *"
timezone: Europe/Berlin
params:
  note: "<script>alert(1)</script>"
  count: {type: integer, default: 3}
  mode: {type: enum, values: [full, delta], default: delta}
tasks:
  extract:
    command: [/bin/true]
    priority: 5
    retries: 2
  load:
    depends_on: [extract]
    trigger_rule: all_done
    resources: {plc: 1}
    command: [/bin/true]
"#;

fn apply(h: &ConsoleHarness, content: &str) -> Value {
    h.api()
        .post(
            "/v1/workflows",
            &json!({"files": [{"path": "press-line.yaml", "content": content}]}),
        )
        .unwrap()
}

fn audit_actions(h: &ConsoleHarness) -> Vec<String> {
    let audit: Vec<Value> = h.api().get("/v1/audit", &[]).unwrap();
    audit
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn workflow_pages_show_versions_graph_firings_and_diff() {
    let h = ConsoleHarness::new();
    let r = apply(&h, V1);
    assert_eq!(r["results"][0]["version"], 1, "{r}");
    // Monthly in Berlin: ten firings always cross a daylight-saving transition.
    let v2 = V1.replace("0 3 * * *", "30 4 1 * *");
    let r = apply(&h, &v2);
    assert_eq!(r["results"][0]["version"], 2, "{r}");
    let b = h.browser(&h.admin);

    let list = b.get("/ui/workflows");
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("data-workflow=\"press-line\""));
    assert!(list.body.contains("href=\"/ui/workflows/press-line\""));
    assert!(list.body.contains("data-live=\"workflows\""));
    assert!(list.body.contains("v2"));

    let page = b.get("/ui/workflows/press-line");
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("data-live=\"workflow:press-line\""));
    // Values are escaped: the description and the parameter's default.
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(!body.contains("<b>nightly"), "{body}");
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // The graph: one node per task, no run yet, the non-default trigger rule and the facts.
    assert!(body.contains("<svg id=\"dag\""), "{body}");
    assert!(body.contains("role=\"img\""));
    assert!(body.contains("data-task=\"extract\" data-state=\"none\""));
    assert!(body.contains("data-task=\"load\" data-state=\"none\""));
    assert!(body.contains("all_done"));
    assert!(body.contains("sem plc×1"));
    assert!(body.contains("prio 5"));
    assert!(body.contains("retries 2"));
    assert!(body.contains("data-from=\"extract\" data-to=\"load\""));
    // Versions newest first, with the diff of consecutive ones.
    assert!(body.contains("<table id=\"versions\""));
    let v2_at = body.find("data-version=\"2\"").unwrap();
    let v1_at = body.find("data-version=\"1\"").unwrap();
    assert!(v2_at < v1_at);
    assert!(body.contains("href=\"/ui/workflows/press-line/diff?from=1&amp;to=2\""));
    // Ten firings of the new schedule, in Berlin time.
    assert!(body.contains("<table id=\"firings\""));
    assert_eq!(body.matches(":30:00 UTC").count(), 10, "{body}");
    assert!(body.contains("Europe/Berlin"));
    assert!(body.contains("<tr class=\"dst\">"), "{body}");
    assert!(body.contains("<span class=\"dst\""));
    // The trigger form from the declarations; pause for an admin.
    assert!(body.contains("<form id=\"trigger\""));
    for p in ["note", "count", "mode"] {
        assert!(
            body.contains(&format!("id=\"param-{p}\" name=\"param.{p}\"")),
            "{p}"
        );
    }
    assert!(body.contains("id=\"trigger-run\""));
    assert!(body.contains("id=\"pause\""));
    assert!(!body.contains("id=\"resume\""));

    let diff = b.get("/ui/workflows/press-line/diff?from=1&to=2");
    assert_eq!(diff.status, 200, "{}", diff.body);
    assert!(diff.body.contains("<div id=\"diff\""));
    assert!(diff.body.contains("class=\"del\""));
    assert!(diff.body.contains("0 3 * * *"));
    assert!(diff.body.contains("30 4 1 * *"));
    // Defaults: the latest against the one before.
    let dflt = b.get("/ui/workflows/press-line/diff");
    assert_eq!(dflt.status, 200);
    assert!(dflt.body.contains("v1 → v2"), "{}", dflt.body);
    assert_eq!(
        b.get("/ui/workflows/press-line/diff?from=1&to=9").status,
        404
    );
    assert_eq!(
        b.get("/ui/workflows/press-line/diff?from=x&to=2").status,
        400
    );
    assert_eq!(b.get("/ui/workflows/no-such").status, 404);

    // In Chinese.
    let mut zh = h.browser(&h.admin);
    zh.cookies.push("outpost_lang=zh-CN".into());
    let page = zh.get("/ui/workflows/press-line");
    assert!(page.body.contains("任务图"), "{}", page.body);
    assert!(page.body.contains("下次触发"));
}

#[test]
fn trigger_pause_and_resume_through_forms_and_a_viewer_is_refused() {
    let h = ConsoleHarness::new();
    apply(&h, V1);
    let op = h.operator("shift", Role::Operator, &[]);
    let b = h.browser(&op);

    // A value the declaration refuses: the API's check, the API's audit.
    let r = b.post_form(
        "/ui/workflows/press-line/trigger",
        &[("param.count", "many"), ("param.mode", "delta")],
        true,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("must be integer"), "{}", r.body);
    assert!(audit_actions(&h).contains(&"workflow.trigger.refused".to_string()));

    // A valid trigger: to the workflow's runs with a notice (no agent runs it here).
    let r = b.post_form(
        "/ui/workflows/press-line/trigger",
        &[("param.count", "5"), ("param.note", ""), ("agent", "")],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location.unwrap();
    assert!(to.starts_with("/ui/runs?workflow=press-line&done="), "{to}");
    assert!(to.contains("Nothing%20started"), "{to}");
    assert!(audit_actions(&h).contains(&"workflow.trigger".to_string()));
    // An unknown agent is named.
    let r = b.post_form(
        "/ui/workflows/press-line/trigger",
        &[("agent", "nobody")],
        true,
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // Pause, then the page offers resume; resume.
    let r = b.post_form("/ui/workflows/press-line/pause", &[], true);
    assert_eq!(r.status, 303, "{}", r.body);
    let back = r.location.unwrap();
    assert!(
        back.starts_with("/ui/workflows/press-line?done=Paused"),
        "{back}"
    );
    let list: Vec<Value> = h.api().get("/v1/workflows", &[]).unwrap();
    assert_eq!(list[0]["paused"], true, "{list:?}");
    let page = b.get(&back);
    assert!(page.body.contains("id=\"notice\""));
    assert!(page.body.contains("id=\"resume\""));
    assert!(!page.body.contains("id=\"pause\""));
    let r = b.post_form("/ui/workflows/press-line/resume", &[], true);
    assert_eq!(r.status, 303, "{}", r.body);
    let list: Vec<Value> = h.api().get("/v1/workflows", &[]).unwrap();
    assert_eq!(list[0]["paused"], false);

    // A viewer sees no write form and is refused anyway (audited).
    let viewer = h.operator("watcher", Role::Viewer, &[]);
    let v = h.browser(&viewer);
    let page = v.get("/ui/workflows/press-line");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<svg id=\"dag\""));
    for hidden in [
        "id=\"trigger\"",
        "id=\"pause\"",
        "id=\"resume\"",
        "/trigger\"",
    ] {
        assert!(!page.body.contains(hidden), "{hidden}");
    }
    for action in page.body.split("method=\"post\" action=\"").skip(1) {
        let to = &action[..action.find('"').unwrap()];
        assert!(to == "/ui/logout" || to == "/ui/lang", "{to}");
    }
    for path in [
        "/ui/workflows/press-line/trigger",
        "/ui/workflows/press-line/pause",
        "/ui/workflows/press-line/resume",
    ] {
        let r = v.post_form(path, &[("param.count", "1")], true);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    let list: Vec<Value> = h.api().get("/v1/workflows", &[]).unwrap();
    assert_eq!(list[0]["paused"], false);
    assert!(audit_actions(&h).contains(&"access.denied".to_string()));
}

fn run(id: &str, created: i64, state: RunState) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        workflow: "press-line".into(),
        version: 1,
        kind: RunKind::Manual,
        scheduled_ms: created,
        state,
        params: vec![],
        created_ms: created,
        started_ms: Some(created),
        ended_ms: Some(created + 1),
        agent_id: None,
        skip_reason: None,
    }
}

fn task(run: &str, id: &str, state: TaskState) -> OutboxEntry {
    OutboxEntry {
        seq: 0,
        event: StatusEvent::Task(TaskInstanceRecord {
            run_id: run.into(),
            task_id: id.into(),
            state,
            attempts: vec![],
            outputs: vec![],
            retry_at_ms: None,
            updated_ms: 0,
        }),
    }
}

fn ingest(h: &ConsoleHarness, agent: &str, mut entries: Vec<OutboxEntry>) {
    for (i, e) in entries.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
    }
    h.hub.ingest(agent, &entries).unwrap();
}

#[test]
fn the_graph_takes_the_states_of_the_most_recent_run_across_agents() {
    let h = ConsoleHarness::new();
    apply(&h, V1);
    common::enroll(&h.store, "a1", vec![]);
    common::enroll(&h.store, "a2", vec![]);
    // a1 ran it last; a2 earlier, and all went well there.
    ingest(
        &h,
        "a2",
        vec![
            OutboxEntry {
                seq: 0,
                event: StatusEvent::Run(run("r-old", 1_000, RunState::Succeeded)),
            },
            task("r-old", "extract", TaskState::Succeeded),
            task("r-old", "load", TaskState::Succeeded),
        ],
    );
    ingest(
        &h,
        "a1",
        vec![
            OutboxEntry {
                seq: 0,
                event: StatusEvent::Run(run("r-new", 2_000, RunState::Failed)),
            },
            task("r-new", "extract", TaskState::Failed),
            task("r-new", "load", TaskState::UpstreamFailed),
        ],
    );
    let b = h.browser(&h.admin);
    let page = b.get("/ui/workflows/press-line");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("data-task=\"extract\" data-state=\"failed\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("data-task=\"load\" data-state=\"upstream_failed\"")
    );
    assert!(page.body.contains("href=\"/ui/runs/r-new?agent=a1\""));
    let list = b.get("/ui/workflows");
    assert!(
        list.body.contains("href=\"/ui/runs/r-new?agent=a1\""),
        "{}",
        list.body
    );
    assert!(list.body.contains("badge s-failed"));
}
