//! The console's rollout, alert and audit pages over HTTP: a rollout's live page, its
//! confirmation and abort by a deployer, the refusal for a viewer and for a deployer limited to
//! another pool; silences created and removed; the audit log listing console actions, paged
//! newest first, and its chain verified on request.
#![allow(clippy::unwrap_used)]

mod common;

use common::console::ConsoleHarness;
use outpost_hub::gateway::SessionHandle;
use outpost_hub::hub::now_ms;
use outpost_hub::store::Role;
use outpost_hub::views::{ApplyFile, ApplyRequest, ApplyResponse, RolloutStart, RolloutSummary};

const WF_V1: &str = "name: etl\nschedule: \"*/10 * * * * *\"\ntarget:\n  line: \"3\"\ntasks:\n  hello:\n    command: [\"echo\", \"one\"]\n";
const WF_V2: &str = "name: etl\nschedule: \"*/10 * * * * *\"\ntarget:\n  line: \"3\"\ntasks:\n  hello:\n    command: [\"echo\", \"two\"]\n";

fn apply(h: &ConsoleHarness, content: &str) {
    let _: ApplyResponse = h
        .api()
        .post(
            "/v1/workflows",
            &ApplyRequest {
                files: vec![ApplyFile {
                    path: "etl.yaml".into(),
                    content: content.into(),
                }],
            },
        )
        .unwrap();
}

/// Three agents in pool `line` running etl v1, one in pool `other`; v2 applied; a rollout of
/// v2 into `line` started through the API (canary 1, then everything; manual gates). The
/// sessions are returned to keep the agents online.
fn rollout_setup(h: &ConsoleHarness) -> Vec<SessionHandle> {
    let mut sessions = Vec::new();
    for (id, line) in [("l0", "3"), ("l1", "3"), ("l2", "3"), ("o0", "4")] {
        common::enroll(&h.store, id, vec![("line".into(), line.into())]);
        sessions.push(h.conns.register(id, now_ms()));
    }
    apply(h, WF_V1);
    h.hub
        .create_pool("root", "line", vec![("line".into(), "3".into())])
        .unwrap();
    h.hub
        .create_pool("root", "other", vec![("line".into(), "4".into())])
        .unwrap();
    h.hub.deploy("root", "etl", "line", Some(1)).unwrap();
    for id in ["l0", "l1", "l2"] {
        for d in h.hub.desired_for(id).unwrap() {
            h.hub
                .deploy_result(id, &d.workflow, d.version, d.epoch, None)
                .unwrap();
        }
    }
    apply(h, WF_V2);
    let r: RolloutSummary = h
        .api()
        .post(
            "/v1/rollouts",
            &RolloutStart {
                workflow: "etl".into(),
                pool: "line".into(),
                version: Some(2),
                canary: Some("1".into()),
                steps: Some("100%".into()),
                bake: None,
                min_runs: Some(2),
                min_runs_scope: None,
                max_failure_rate: Some(0.25),
                manual: true,
                probation_runs: None,
                probation_max_failures: None,
                offline: None,
            },
        )
        .unwrap();
    assert!(r.active, "{r:?}");
    assert_eq!((r.from_version, r.to_version), (1, 2));
    sessions
}

/// The `action`s of every POST form on a page.
fn post_actions(body: &str) -> Vec<String> {
    body.match_indices("method=\"post\" action=\"")
        .map(|(at, m)| {
            let rest = &body[at + m.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// The `data-state` of the element with `id`.
fn state_of(body: &str, id: &str) -> String {
    let at = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {body}"));
    let tag_start = body[..at].rfind('<').unwrap();
    let tag = &body[tag_start..at + body[at..].find('>').unwrap()];
    let s = tag.find("data-state=\"").expect("a data-state") + "data-state=\"".len();
    tag[s..s + tag[s..].find('"').unwrap()].to_string()
}

fn audited(h: &ConsoleHarness, actor: &str, action: &str) -> bool {
    let log: Vec<serde_json::Value> = h
        .api()
        .get("/v1/audit", &[("limit", "1000".to_string())])
        .unwrap();
    log.iter()
        .any(|e| e["actor"] == actor && e["action"] == action)
}

#[test]
fn a_rollout_is_shown_live_confirmed_then_aborted_by_a_deployer_of_its_pool() {
    let h = ConsoleHarness::new();
    let _sessions = rollout_setup(&h);
    let dora = h.browser(&h.operator("dora", Role::Deployer, &[]));

    // The list: one row per rollout, with its state and versions.
    let list = dora.get("/ui/rollouts");
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains("data-rollout=\"etl/line\""),
        "{}",
        list.body
    );
    assert!(list.body.contains("v1 → v2"), "{}", list.body);
    assert!(
        list.body.contains("data-live=\"rollouts\""),
        "{}",
        list.body
    );
    assert!(
        !dora
            .get("/ui/rollouts?show=finished")
            .body
            .contains("data-rollout=\"etl/line\"")
    );

    // The page: state, steps, agents per state, the gate and what it waits for, the actions.
    let page = dora.get("/ui/rollouts/etl/line");
    assert_eq!(page.status, 200, "{}", page.body);
    let b = &page.body;
    assert_eq!(state_of(b, "rollout-state"), "deploying");
    assert!(b.contains("data-live=\"rollouts rollout:etl/line\""), "{b}");
    assert!(b.contains("data-live-region"), "{b}");
    assert!(
        b.contains("id=\"steps\"") && b.contains("data-step=\"1\""),
        "{b}"
    );
    for agent in ["l0", "l1", "l2"] {
        assert!(b.contains(&format!("data-agent=\"{agent}\"")), "{b}");
    }
    assert!(!b.contains("data-agent=\"o0\""), "not in the pool: {b}");
    assert!(b.contains("data-agent-state=\"pending\""), "{b}");
    assert!(b.contains("data-agent-state=\"assigned\""), "{b}");
    assert!(b.contains("to activate the new version"), "{b}");
    assert!(b.contains("max failure rate 0.25"), "{b}");
    for id in ["rollout-pause", "rollout-abort"] {
        assert!(b.contains(&format!("id=\"{id}\"")), "{id}: {b}");
    }
    assert!(!b.contains("id=\"rollout-resume\""), "not paused: {b}");
    // Only agents in one state.
    let pending = dora.get("/ui/rollouts/etl/line?agents=pending").body;
    assert_eq!(pending.matches("<tr data-agent=").count(), 2, "{pending}");

    // An unknown rollout or command.
    assert_eq!(dora.get("/ui/rollouts/etl/nowhere").status, 404);
    let r = dora.post_form("/ui/rollouts/etl/line/explode", &[("confirm", "yes")], true);
    assert_eq!(r.status, 400, "{}", r.body);

    // Abort: first the confirmation page, nothing done yet.
    let r = dora.post_form("/ui/rollouts/etl/line/abort", &[], true);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"confirm-what\""), "{}", r.body);
    assert!(
        r.body.contains("Abort the rollout of etl in pool line"),
        "{}",
        r.body
    );
    assert!(r.body.contains("id=\"confirm\""), "{}", r.body);
    assert!(
        r.body.contains("name=\"confirm\" value=\"yes\""),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("id=\"cancel-confirm\" href=\"/ui/rollouts/etl/line\"")
            || r.body
                .contains("href=\"/ui/rollouts/etl/line\" id=\"cancel-confirm\""),
        "{}",
        r.body
    );
    assert!(post_actions(&r.body).contains(&"/ui/rollouts/etl/line/abort".to_string()));
    assert!(h.hub.find_rollout("etl", "line").unwrap().active);
    assert!(!audited(&h, "dora", "rollout.abort"));

    // Confirmed: done through the rollout operation, back to the page with a notice.
    let r = dora.post_form("/ui/rollouts/etl/line/abort", &[("confirm", "yes")], true);
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location.unwrap();
    assert!(to.starts_with("/ui/rollouts/etl/line?done="), "{to}");
    let page = dora.get(&to);
    assert!(page.body.contains("id=\"notice\""), "{}", page.body);
    let state = state_of(&page.body, "rollout-state");
    assert!(
        state == "rolling-back" || state == "aborted",
        "{state}: {}",
        page.body
    );
    assert!(!page.body.contains("id=\"rollout-abort\""), "{}", page.body);
    let rec = h.hub.find_rollout("etl", "line").unwrap();
    assert!(
        rec.phase.starts_with("rolling back") || rec.phase == "aborted",
        "{rec:?}"
    );
    assert!(audited(&h, "dora", "rollout.abort"));
    // A second abort is refused by the controller (rolling back or finished): an error page.
    let r = dora.post_form("/ui/rollouts/etl/line/abort", &[("confirm", "yes")], true);
    assert!(r.status >= 400, "{}", r.body);
}

/// The canary activates the new version and runs it `runs` times, successfully.
fn canary_runs(h: &ConsoleHarness, runs: u64) -> String {
    use outpost_common::record::{OutboxEntry, RunKind, RunRecord, RunState, StatusEvent};
    let (_, status, _) = h.hub.rollout_status_of("etl", "line").unwrap();
    let canary = status
        .agents
        .iter()
        .find(|a| a.selected_at == Some(0))
        .unwrap()
        .agent_id
        .clone();
    for d in h.hub.desired_for(&canary).unwrap() {
        h.hub
            .deploy_result(&canary, &d.workflow, d.version, d.epoch, None)
            .unwrap();
    }
    let entries: Vec<OutboxEntry> = (1..=runs)
        .map(|seq| OutboxEntry {
            seq,
            event: StatusEvent::Run(RunRecord {
                run_id: format!("etl@v2@{seq}"),
                workflow: "etl".into(),
                version: 2,
                kind: RunKind::Scheduled,
                scheduled_ms: seq as i64,
                state: RunState::Succeeded,
                params: vec![],
                created_ms: seq as i64,
                started_ms: Some(1),
                ended_ms: Some(2),
                agent_id: None,
                skip_reason: None,
            }),
        })
        .collect();
    h.hub.ingest(&canary, &entries).unwrap();
    h.hub.rollout_tick(now_ms()).unwrap();
    canary
}

#[test]
fn a_rollout_at_its_manual_gate_waits_for_promote_and_moves_on_when_promoted() {
    let h = ConsoleHarness::new();
    let _sessions = rollout_setup(&h);
    let dora = h.browser(&h.operator("dora", Role::Deployer, &["line"]));

    // One run of the two needed: still waiting for runs.
    let canary = canary_runs(&h, 1);
    let page = dora.get("/ui/rollouts/etl/line");
    assert_eq!(
        state_of(&page.body, "rollout-state"),
        "baking",
        "{}",
        page.body
    );
    assert!(
        page.body.contains("1 more run(s) to succeed (per agent)"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&format!("data-agent=\"{canary}\" data-state=\"active\"")),
        "{}",
        page.body
    );

    // Both runs: the gate passed, a manual rollout waits for an operator.
    let _ = canary_runs(&h, 2);
    let page = dora.get("/ui/rollouts/etl/line");
    let b = &page.body;
    assert_eq!(state_of(b, "rollout-state"), "awaiting-promote", "{b}");
    assert!(b.contains("an operator to promote (manual gate)"), "{b}");
    assert!(b.contains("id=\"rollout-promote\""), "{b}");
    assert!(b.contains("data-step=\"0\" data-state=\"running\""), "{b}");
    let list = dora.get("/ui/rollouts").body;
    assert!(
        list.contains("data-rollout=\"etl/line\" data-state=\"awaiting-promote\""),
        "{list}"
    );

    let r = dora.post_form("/ui/rollouts/etl/line/promote", &[], true);
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("Promote the rollout of etl in pool line"),
        "{}",
        r.body
    );
    let r = dora.post_form("/ui/rollouts/etl/line/promote", &[("confirm", "yes")], true);
    assert_eq!(r.status, 303, "{}", r.body);
    let b = dora.get("/ui/rollouts/etl/line").body;
    assert_eq!(state_of(&b, "rollout-state"), "deploying", "{b}");
    assert!(b.contains("data-step=\"0\" data-state=\"passed\""), "{b}");
    assert!(b.contains("data-step=\"1\" data-state=\"running\""), "{b}");
    assert!(audited(&h, "dora", "rollout.promote"));
}

#[test]
fn a_viewer_and_a_deployer_of_another_pool_cannot_command_a_rollout() {
    let h = ConsoleHarness::new();
    let _sessions = rollout_setup(&h);

    // A viewer sees the page and no write control; the server refuses the POST anyway.
    let vera = h.browser(&h.operator("vera", Role::Viewer, &[]));
    let page = vera.get("/ui/rollouts/etl/line");
    assert_eq!(page.status, 200);
    for action in post_actions(&page.body) {
        assert!(action == "/ui/logout" || action == "/ui/lang", "{action}");
    }
    assert!(!page.body.contains("id=\"rollout-abort\""), "{}", page.body);
    for confirm in [&[][..], &[("confirm", "yes")][..]] {
        let r = vera.post_form("/ui/rollouts/etl/line/abort", confirm, true);
        assert_eq!(r.status, 403, "{}", r.body);
    }
    assert!(audited(&h, "vera", "access.denied"));

    // A deployer limited to pool `other`: no control on `line`, and refused (audited).
    let lena = h.browser(&h.operator("lena", Role::Deployer, &["other"]));
    let page = lena.get("/ui/rollouts/etl/line");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"rollout-abort\""), "{}", page.body);
    assert!(
        page.body.contains("You may not act on this pool."),
        "{}",
        page.body
    );
    for confirm in [&[][..], &[("confirm", "yes")][..]] {
        let r = lena.post_form("/ui/rollouts/etl/line/abort", confirm, true);
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("may act only on pools other"), "{}", r.body);
    }
    assert!(audited(&h, "lena", "access.denied"));

    let rec = h.hub.find_rollout("etl", "line").unwrap();
    assert!(rec.active && rec.phase.starts_with("deploying"), "{rec:?}");
    assert!(!audited(&h, "vera", "rollout.abort") && !audited(&h, "lena", "rollout.abort"));

    // Pause then resume, confirmed, by a deployer of the pool.
    let dora = h.browser(&h.operator("dora", Role::Deployer, &["line"]));
    let r = dora.post_form("/ui/rollouts/etl/line/pause", &[("confirm", "yes")], true);
    assert_eq!(r.status, 303, "{}", r.body);
    let page = dora.get("/ui/rollouts/etl/line");
    assert_eq!(state_of(&page.body, "rollout-state"), "paused");
    assert!(page.body.contains("id=\"rollout-resume\""), "{}", page.body);
    assert!(page.body.contains("an operator to resume"), "{}", page.body);
    let r = dora.post_form("/ui/rollouts/etl/line/resume", &[("confirm", "yes")], true);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        state_of(&dora.get("/ui/rollouts/etl/line").body, "rollout-state"),
        "deploying"
    );
}

#[test]
fn operators_create_and_remove_silences_and_viewers_only_look() {
    let h = ConsoleHarness::new();
    let vera = h.browser(&h.operator("vera", Role::Viewer, &[]));
    let page = vera.get("/ui/alerts");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"alerts\""), "{}", page.body);
    assert!(page.body.contains("id=\"silences\""), "{}", page.body);
    assert!(page.body.contains("data-live=\"alerts\""), "{}", page.body);
    for action in post_actions(&page.body) {
        assert!(action == "/ui/logout" || action == "/ui/lang", "{action}");
    }
    let form = [("workflow", "plc-*"), ("for", "2h"), ("comment", "x")];
    assert_eq!(
        vera.post_form("/ui/alerts/silences", &form, true).status,
        403
    );
    assert!(h.hub.active_silences().unwrap().is_empty());

    let otto = h.browser(&h.operator("otto", Role::Operator, &[]));
    assert!(otto.get("/ui/alerts").body.contains("id=\"silence-form\""));
    // Refused: no matcher, a bad duration.
    let r = otto.post_form("/ui/alerts/silences", &[("for", "2h")], true);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = otto.post_form(
        "/ui/alerts/silences",
        &[("rule", "r"), ("for", "soon")],
        true,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(h.hub.active_silences().unwrap().is_empty());

    let r = otto.post_form(
        "/ui/alerts/silences",
        &[
            ("workflow", "plc-*"),
            ("pool", ""),
            ("for", "2h"),
            ("comment", "line 3 <b>maintenance</b>"),
        ],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location.unwrap();
    assert!(to.starts_with("/ui/alerts?done="), "{to}");
    let s = h.hub.active_silences().unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].workflow.as_deref(), Some("plc-*"));
    assert_eq!(s[0].pool, None);
    assert_eq!(s[0].created_by, "otto");
    let expires_in = s[0].expires_ms - now_ms();
    assert!(
        (7_100_000..=7_200_000).contains(&expires_in),
        "{expires_in}"
    );
    let page = otto.get(&to);
    assert!(page.body.contains("id=\"notice\""), "{}", page.body);
    assert!(
        page.body.contains(&format!("data-silence=\"{}\"", s[0].id)),
        "{}",
        page.body
    );
    assert!(page.body.contains("workflow=plc-*"), "{}", page.body);
    assert!(
        page.body.contains("line 3 &lt;b&gt;maintenance&lt;/b&gt;"),
        "escaped: {}",
        page.body
    );
    // The viewer sees it, and no remove button.
    let seen = vera.get("/ui/alerts").body;
    assert!(seen.contains(&format!("data-silence=\"{}\"", s[0].id)));
    assert!(!seen.contains("unsilence-"), "{seen}");
    let remove = format!("/ui/alerts/silences/{}/remove", s[0].id);
    assert_eq!(vera.post_form(&remove, &[], true).status, 403);
    assert_eq!(h.hub.active_silences().unwrap().len(), 1);

    let r = otto.post_form(&remove, &[], true);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(h.hub.active_silences().unwrap().is_empty());
    assert!(
        !otto
            .get("/ui/alerts")
            .body
            .contains(&format!("data-silence=\"{}\"", s[0].id))
    );
    assert_eq!(otto.post_form(&remove, &[], true).status, 404);
    assert!(audited(&h, "otto", "alert.silence"));
    assert!(audited(&h, "otto", "alert.unsilence"));
}

#[test]
fn the_alert_history_shows_rule_subject_state_and_deliveries() {
    use outpost_alerts::{EventKind as AlertKind, Rule, Settings};
    use outpost_common::record::{OutboxEntry, RunKind, RunRecord, RunState, StatusEvent};

    let h = ConsoleHarness::new();
    h.hub
        .create_pool("root", "line-a", vec![("site".into(), "sz".into())])
        .unwrap();
    let now = now_ms();
    for (i, a) in ["a1", "a2"].iter().enumerate() {
        common::enroll(&h.store, a, vec![("site".into(), "sz".into())]);
        let run = RunRecord {
            run_id: format!("<i>r{i}</i>"),
            workflow: "plc-read".into(),
            version: 1,
            kind: RunKind::Scheduled,
            scheduled_ms: now - 6_000,
            state: RunState::Failed,
            params: vec![],
            created_ms: now - 6_000,
            started_ms: Some(now - 5_900),
            ended_ms: Some(now - 5_000),
            agent_id: None,
            skip_reason: None,
        };
        h.hub
            .ingest(
                a,
                &[OutboxEntry {
                    seq: 1,
                    event: StatusEvent::Run(run),
                }],
            )
            .unwrap();
    }
    let mut rule = Rule::new("line-a-failures", AlertKind::RunFailed);
    rule.pools = vec!["line-a".into()];
    rule.channels = vec!["hook".into()];
    rule.group_wait_ms = 0;
    let setup = std::sync::Arc::new(outpost_hub::alerts::AlertSetup {
        rules: vec![rule],
        channels: std::sync::Arc::new(outpost_hub::channels::Channels::default()),
        settings: Settings::default(),
        started_ms: 0,
    });
    h.hub.alert_tick(&setup, now_ms()).unwrap();
    // Delivered to no configured channel: a failed delivery, recorded.
    assert_eq!(h.rt.block_on(h.hub.deliver_due(&setup, now_ms())), 1);

    let vera = h.browser(&h.operator("vera", Role::Viewer, &[]));
    let page = vera.get("/ui/alerts");
    let b = &page.body;
    assert!(!b.contains("id=\"alerts-none\""), "{b}");
    assert_eq!(b.matches("data-state=\"firing\"").count(), 1, "{b}");
    assert!(b.contains("line-a-failures"), "{b}");
    assert!(b.contains("run_failed"), "{b}");
    assert!(b.contains("hook"), "the channel: {b}");
    assert!(
        b.contains("badge s-failed\">failed"),
        "the delivery's state: {b}"
    );
    assert!(b.contains("no channel named"), "its error: {b}");
    assert!(!b.contains("<i>r0</i>"), "escaped: {b}");
    // Filtered by state and rule.
    let resolved = vera.get("/ui/alerts?state=resolved").body;
    assert!(resolved.contains("id=\"alerts-none\""), "{resolved}");
    let other = vera.get("/ui/alerts?rule=other").body;
    assert!(other.contains("id=\"alerts-none\""), "{other}");
    let firing = vera
        .get("/ui/alerts?state=firing&rule=line-a-failures")
        .body;
    assert_eq!(
        firing.matches("data-state=\"firing\"").count(),
        1,
        "{firing}"
    );
}

/// `data-seq` of every audit row, in page order.
fn seqs(body: &str) -> Vec<u64> {
    body.match_indices("<tr data-seq=\"")
        .map(|(at, m)| {
            let rest = &body[at + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

#[test]
fn the_audit_page_lists_console_actions_newest_first_by_pages_and_verifies_the_chain() {
    let h = ConsoleHarness::new();
    let otto = h.browser(&h.operator("otto", Role::Operator, &[]));
    let r = otto.post_form(
        "/ui/alerts/silences",
        &[("agent", "a1"), ("for", "1h"), ("comment", "c")],
        true,
    );
    assert_eq!(r.status, 303);
    let vera = h.browser(&h.operator("vera", Role::Viewer, &[]));
    let page = vera.get("/ui/audit");
    assert_eq!(page.status, 200);
    let b = &page.body;
    assert!(b.contains("id=\"audit\""), "{b}");
    assert!(b.contains("data-live=\"audit\""), "{b}");
    assert!(b.contains("data-action=\"alert.silence\""), "{b}");
    assert!(b.contains("data-action=\"console.signin\""), "{b}");
    let first = seqs(b);
    assert!(
        first.windows(2).all(|w| w[0] > w[1]),
        "newest first: {first:?}"
    );
    // The verdict only on request.
    assert!(b.contains("id=\"audit-verify\""), "{b}");
    assert!(!b.contains("id=\"audit-verdict\""), "{b}");

    // Over a page: 100 rows, then the older ones, none twice, none missing.
    for i in 0..150 {
        h.hub
            .audit_denied("t", "test.entry", &format!("e{i}"))
            .unwrap();
    }
    let page = vera.get("/ui/audit");
    let p1 = seqs(&page.body);
    assert_eq!(p1.len(), 100);
    let newest = p1[0];
    let at = page.body.find("href=\"/ui/audit?before=").unwrap();
    let rest = &page.body[at + "href=\"".len()..];
    let next = &rest[..rest.find('"').unwrap()];
    assert_eq!(next, format!("/ui/audit?before={}", p1[99]));
    let page2 = vera.get(next);
    assert!(
        page2.body.contains("data-live=\"\""),
        "older pages stay put"
    );
    let p2 = seqs(&page2.body);
    let mut all: Vec<u64> = p1.iter().chain(p2.iter()).copied().collect();
    let total = all.len() as u64;
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, total, "no entry twice");
    assert_eq!(all, (1..=newest).collect::<Vec<_>>(), "every entry once");
    assert!(!page2.body.contains("id=\"audit-older\""), "the last page");

    let v = vera.get("/ui/audit?verify=1");
    assert!(
        v.body.contains("id=\"audit-verdict\" data-ok=\"true\""),
        "{}",
        v.body
    );
    assert!(
        v.body.contains(&format!("{newest} entries verified")),
        "{}",
        v.body
    );
}

#[test]
fn pages_speak_chinese_when_asked() {
    let h = ConsoleHarness::new();
    let _sessions = rollout_setup(&h);
    let mut b = h.browser(&h.admin);
    b.cookies.push("outpost_lang=zh-CN".into());
    assert!(b.get("/ui/rollouts").body.contains("灰度发布"));
    assert!(b.get("/ui/rollouts/etl/line").body.contains("关卡"));
    assert!(b.get("/ui/alerts").body.contains("生效中的静默"));
    assert!(b.get("/ui/audit").body.contains("校验哈希链"));
}
