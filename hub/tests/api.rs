//! The HTTP API in-process: a real 127.0.0.1 listener, the real router and store, the blocking
#![allow(clippy::unwrap_used)]
//! CLI client, and a fake agent session registered in `Connections`.

use std::sync::Arc;

use outpost_common::proto::Command;
use outpost_common::record::{
    OutboxEntry, RunKind, RunRecord, RunState, StatusEvent, TaskInstanceRecord, TaskState,
};
use outpost_hub::client::{Client, ClientError};
use outpost_hub::gateway::{Connections, SessionMsg};
use outpost_hub::hub::Hub;
use outpost_hub::store::Store;
use outpost_hub::views::*;

mod common;

struct Harness {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    hub: Arc<Hub>,
    /// The hub's store, for seeding agents and reading (changes go through the hub).
    store: Arc<Store>,
    ca_sha256: String,
    conns: Arc<Connections>,
    url: String,
    /// The credential of the admin `root`.
    token: String,
}

impl Harness {
    fn new() -> Harness {
        // A 1-of-1 root; the hub releases what is applied with its release key (`[keys]
        // release_key`), so an apply is deployable at once.
        let h = common::console::ConsoleHarness::new();
        Harness {
            _dir: h.dir,
            rt: h.rt,
            hub: h.hub,
            store: h.store,
            ca_sha256: h.ca_sha256,
            conns: h.conns,
            url: h.url,
            token: h.admin,
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.url, &self.token, None)
    }

    fn add_agent(&self, id: &str, labels: &[(&str, &str)]) {
        common::enroll(
            &self.store,
            id,
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }

    /// A fake connected agent answering triggers and log fetches; returns the Goodbye reason
    /// if it gets one.
    fn fake_session(&self, id: &str) -> tokio::task::JoinHandle<Option<String>> {
        let mut h = self.conns.register(id, 1000);
        let conns = self.conns.clone();
        let id = id.to_string();
        self.rt.spawn(async move {
            while let Some(msg) = h.rx.recv().await {
                match msg {
                    SessionMsg::Command { id: cid, command } => match *command {
                        Command::Trigger { workflow, params } => conns.on_command_result(
                            &id,
                            cid,
                            true,
                            format!("started with {params:?}"),
                            Some(format!("{workflow}@manual")),
                        ),
                        Command::FetchLog { run_id, task, .. } => {
                            conns.on_log_chunk(
                                &id,
                                cid,
                                format!("log of {run_id}/").as_bytes(),
                                false,
                            );
                            conns.on_log_chunk(&id, cid, task.as_bytes(), true);
                        }
                        _ => conns.on_command_result(&id, cid, true, "done".into(), None),
                    },
                    SessionMsg::Goodbye { reason } => return Some(reason),
                }
            }
            None
        })
    }
}

const WF_V1: &str = "name: demo\nschedule: \"*/10 * * * * *\"\ntarget:\n  site: a\ntasks:\n  hello:\n    command: [\"echo\", \"one\"]\n";
const WF_V2: &str = "name: demo\nschedule: \"*/10 * * * * *\"\ntarget:\n  site: a\ntasks:\n  hello:\n    command: [\"echo\", \"two\"]\n";

fn apply(c: &Client, path: &str, content: &str) -> ApplyResult {
    let r: ApplyResponse = c
        .post(
            "/v1/workflows",
            &ApplyRequest {
                files: vec![ApplyFile {
                    path: path.into(),
                    content: content.into(),
                }],
            },
        )
        .unwrap();
    r.results.into_iter().next().unwrap()
}

#[test]
fn auth_is_required_except_for_health() {
    let h = Harness::new();
    let health: Health = Client::new(&h.url, "", None)
        .get("/v1/health", &[])
        .unwrap();
    assert!(health.ok);
    let t = &h.token;
    for token in ["", "wrong", &t[..t.len() - 1], &t[..t.len() - 16]] {
        let r: Result<Vec<WorkflowSummary>, _> =
            Client::new(&h.url, token, None).get("/v1/workflows", &[]);
        assert!(
            matches!(r, Err(ClientError::Unauthorized(_))),
            "{token:?}: {r:?}"
        );
    }
    // No Authorization header at all.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(&format!("{}/v1/agents", h.url)).call().unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body = resp.body_mut().read_to_string().unwrap();
    assert!(body.contains("\"error\""), "{body}");
    let ok: Vec<WorkflowSummary> = h.client().get("/v1/workflows", &[]).unwrap();
    assert!(ok.is_empty());
    // Unknown endpoints are JSON 404s.
    let r: Result<Health, _> = h.client().get("/v1/nope", &[]);
    assert!(matches!(r, Err(ClientError::Api { status: 404, .. })));
}

#[test]
fn apply_list_show_history_diff_rollback() {
    let h = Harness::new();
    let c = h.client();
    let r = apply(&c, "demo.yaml", WF_V1);
    assert_eq!(
        (r.name.as_deref(), r.version, r.changed),
        (Some("demo"), Some(1), true)
    );
    let r = apply(&c, "demo.yaml", WF_V1);
    assert_eq!((r.version, r.changed), (Some(1), false));
    let r = apply(&c, "demo.yaml", WF_V2);
    assert_eq!((r.version, r.changed), (Some(2), true));
    // Invalid: diagnostics with file:line:column, nothing applied.
    let r = apply(
        &c,
        "bad.yaml",
        "name: demo\nschedule: \"nope\"\ntasks: {}\n",
    );
    assert!(!r.diagnostics.is_empty());
    assert!(
        r.diagnostics[0].starts_with("bad.yaml:"),
        "{:?}",
        r.diagnostics
    );
    assert_eq!(r.version, None);

    let list: Vec<WorkflowSummary> = c.get("/v1/workflows", &[]).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].version, list[0].versions), (2, 2));
    assert_eq!(list[0].target.get("site").map(String::as_str), Some("a"));

    let d: WorkflowDetail = c.get("/v1/workflows/demo", &[]).unwrap();
    assert_eq!((d.version, d.content.as_str()), (2, WF_V2));
    let d: WorkflowDetail = c
        .get("/v1/workflows/demo", &[("version", "1".into())])
        .unwrap();
    assert_eq!(d.content, WF_V1);
    assert_eq!(
        d.content_hash,
        blake3::hash(WF_V1.as_bytes()).to_hex().to_string()
    );
    let r: Result<WorkflowDetail, _> = c.get("/v1/workflows/demo", &[("version", "9".into())]);
    assert!(matches!(r, Err(ClientError::Api { status: 404, .. })));
    let r: Result<WorkflowDetail, _> = c.get("/v1/workflows/none", &[]);
    assert!(matches!(r, Err(ClientError::Api { status: 404, .. })));

    let diff: DiffResponse = c
        .get(
            "/v1/workflows/demo/diff",
            &[("from", "1".into()), ("to", "2".into())],
        )
        .unwrap();
    assert!(
        diff.diff.contains("-    command: [\"echo\", \"one\"]"),
        "{}",
        diff.diff
    );
    assert!(
        diff.diff.contains("+    command: [\"echo\", \"two\"]"),
        "{}",
        diff.diff
    );
    assert!(diff.diff.contains("demo v1") && diff.diff.contains("demo v2"));

    let rb: VersionResponse = c
        .post("/v1/workflows/demo/rollback", &RollbackRequest { to: 1 })
        .unwrap();
    assert_eq!((rb.version, rb.changed), (3, true));
    let d: WorkflowDetail = c.get("/v1/workflows/demo", &[]).unwrap();
    assert_eq!((d.version, d.content.as_str()), (3, WF_V1));
    let hist: Vec<HistoryEntry> = c.get("/v1/workflows/demo/history", &[]).unwrap();
    assert_eq!(
        hist.iter().map(|x| x.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(hist[2].origin, "rollback to v1");
    assert_eq!(hist[0].content_hash, hist[2].content_hash);
}

#[test]
fn token_create_makes_a_usable_single_use_token() {
    let h = Harness::new();
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("site".to_string(), "a".to_string());
    let r: TokenResponse = h
        .client()
        .post(
            "/v1/tokens",
            &TokenRequest {
                labels,
                ttl: Some("10m".into()),
                uses: None,
            },
        )
        .unwrap();
    // The token carries the CA hash and the hub name: enroll needs neither.
    let parts: Vec<&str> = r.token.split('.').collect();
    assert_eq!(parts.len(), 5, "{}", r.token);
    assert_eq!(parts[0], "opt2");
    assert_eq!(parts[3], h.ca_sha256);
    assert_eq!(parts[4], "hub");
    assert_eq!(parts[1], r.id);
    let rec = h
        .store
        .check_token(parts[1], parts[2], outpost_hub::hub::now_ms())
        .unwrap();
    assert_eq!(rec.labels, vec![("site".to_string(), "a".to_string())]);
    let bad: Result<TokenResponse, _> = h.client().post(
        "/v1/tokens",
        &TokenRequest {
            labels: Default::default(),
            ttl: Some("forever".into()),
            uses: None,
        },
    );
    assert!(matches!(bad, Err(ClientError::Api { status: 400, .. })));
}

fn enroll_request(token: &str) -> outpost_common::proto::EnrollRequest {
    let (_key, csr_der) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    outpost_common::proto::EnrollRequest {
        token: format!("{}.{}", parts[1], parts[2]),
        csr_der,
        labels: vec![],
        hostname: "box".into(),
        software_version: "0".into(),
        name: None,
    }
}

fn enrolls(h: &Harness, token: &str) -> bool {
    matches!(
        h.hub.enroll(&enroll_request(token)),
        outpost_common::proto::EnrollResponse::Ok { .. }
    )
}

#[test]
fn tokens_have_a_max_ttl_several_uses_a_list_and_revocation() {
    let h = Harness::new();
    let c = h.client();
    let create = |ttl: &str, uses: Option<u32>| -> Result<TokenResponse, ClientError> {
        c.post(
            "/v1/tokens",
            &TokenRequest {
                labels: Default::default(),
                ttl: Some(ttl.into()),
                uses,
            },
        )
    };
    // Longer than max_token_ttl (30 days by default): refused with a message.
    match create("31d", None) {
        Err(ClientError::Api {
            status: 400,
            message,
        }) => {
            assert!(message.contains("max_token_ttl"), "{message}")
        }
        other => panic!("a 31-day token was not refused: {other:?}"),
    }
    assert!(create("30d", None).is_ok());
    assert!(matches!(
        create("1h", Some(0)),
        Err(ClientError::Api { status: 400, .. })
    ));

    // A token of 3 uses enrolls 3 agents, each its own, then is spent.
    let batch = create("1h", Some(3)).unwrap();
    assert_eq!(batch.uses, 3);
    for _ in 0..3 {
        assert!(enrolls(&h, &batch.token));
    }
    assert!(
        !enrolls(&h, &batch.token),
        "a spent token enrolled a 4th agent"
    );
    let agents: Vec<AgentView> = c.get("/v1/agents", &[]).unwrap();
    assert_eq!(agents.len(), 3);

    // Revoked: it enrolls no more.
    let single = create("1h", None).unwrap();
    let r: TokenRevokeResponse = c
        .post(
            &format!("/v1/tokens/{}/revoke", single.id),
            &serde_json::json!({}),
        )
        .unwrap();
    assert!(r.revoked);
    assert!(
        !enrolls(&h, &single.token),
        "a revoked token enrolled an agent"
    );
    let again: TokenRevokeResponse = c
        .post(
            &format!("/v1/tokens/{}/revoke", single.id),
            &serde_json::json!({}),
        )
        .unwrap();
    assert!(!again.revoked);
    let none: Result<TokenRevokeResponse, _> =
        c.post("/v1/tokens/nosuch/revoke", &serde_json::json!({}));
    assert!(matches!(none, Err(ClientError::Api { status: 404, .. })));

    // The list shows each token's state and uses, never a secret.
    let list: Vec<TokenView> = c.get("/v1/tokens", &[]).unwrap();
    let of = |id: &str| list.iter().find(|t| t.id == id).unwrap();
    assert_eq!(
        (
            of(&batch.id).state.as_str(),
            of(&batch.id).used,
            of(&batch.id).uses
        ),
        ("spent", 3, 3)
    );
    assert_eq!(of(&single.id).state, "revoked");
    assert!(of(&single.id).revoked.is_some());
    let text = serde_json::to_string(&list).unwrap();
    let secret = single.token.split('.').nth(2).unwrap();
    assert!(!text.contains(secret));
    let audit = h.store.audit_log(100).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "token.revoke" && a.target == single.id)
    );
}

fn run(id: &str, created: i64, state: RunState) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        workflow: "demo".into(),
        version: 1,
        kind: RunKind::Scheduled,
        scheduled_ms: created,
        state,
        params: vec![],
        created_ms: created,
        started_ms: Some(created),
        ended_ms: None,
        agent_id: None,
        skip_reason: None,
    }
}

#[test]
fn runs_listing_after_ingest() {
    let h = Harness::new();
    h.add_agent("agent-a", &[("site", "a")]);
    h.add_agent("agent-b", &[("site", "b")]);
    let task = TaskInstanceRecord {
        run_id: "r1".into(),
        task_id: "hello".into(),
        state: TaskState::Succeeded,
        attempts: vec![],
        outputs: vec![],
        retry_at_ms: None,
        updated_ms: 0,
    };
    h.hub
        .ingest(
            "agent-a",
            &[
                OutboxEntry {
                    seq: 1,
                    event: StatusEvent::Run(run("r1", 1_000, RunState::Succeeded)),
                },
                OutboxEntry {
                    seq: 2,
                    event: StatusEvent::Task(task),
                },
                OutboxEntry {
                    seq: 3,
                    event: StatusEvent::Run(run("r2", 2_000, RunState::Failed)),
                },
            ],
        )
        .unwrap();
    h.hub
        .ingest(
            "agent-b",
            &[OutboxEntry {
                seq: 1,
                event: StatusEvent::Run(run("r1", 1_500, RunState::Running)),
            }],
        )
        .unwrap();
    let c = h.client();
    let all: Vec<RunView> = c.get("/v1/runs", &[]).unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.agent.as_str(), r.run_id.as_str()))
            .collect::<Vec<_>>(),
        vec![("agent-a", "r2"), ("agent-b", "r1"), ("agent-a", "r1")]
    );
    let failed: Vec<RunView> = c.get("/v1/runs", &[("state", "failed".into())]).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].run_id, "r2");
    let of_b: Vec<RunView> = c.get("/v1/runs", &[("agent", "agent-b".into())]).unwrap();
    assert_eq!(of_b.len(), 1);
    let since: Vec<RunView> = c
        .get("/v1/runs", &[("since", "1970-01-01T00:00:01.200Z".into())])
        .unwrap();
    assert_eq!(since.len(), 2);
    let bad: Result<Vec<RunView>, _> = c.get("/v1/runs", &[("state", "weird".into())]);
    assert!(matches!(bad, Err(ClientError::Api { status: 400, .. })));

    // r1 exists on two agents: ambiguous without --agent.
    let amb: Result<RunView, _> = c.get("/v1/runs/r1", &[]);
    assert!(
        matches!(amb, Err(ClientError::Api { status: 409, .. })),
        "{amb:?}"
    );
    let r1: RunView = c
        .get("/v1/runs/r1", &[("agent", "agent-a".into())])
        .unwrap();
    assert_eq!(r1.state, "succeeded");
    assert_eq!(r1.tasks.len(), 1);
    assert_eq!(r1.tasks[0].state, "succeeded");
    let r2: RunView = c.get("/v1/runs/r2", &[]).unwrap();
    assert_eq!(r2.agent, "agent-a");

    // Logs: refused while the agent is offline, fetched while connected.
    let off = c.get_text("/v1/runs/r2/logs/hello", &[]);
    match off {
        Err(ClientError::Api {
            status: 409,
            message,
        }) => {
            assert!(message.contains("not connected"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let _session = h.fake_session("agent-a");
    let log = c.get_text("/v1/runs/r2/logs/hello", &[]).unwrap();
    assert_eq!(log, "log of r2/hello");
}

#[test]
fn trigger_pause_agents_and_revoke() {
    let h = Harness::new();
    let c = h.client();
    apply(
        &c,
        "demo.yaml",
        &WF_V1.replace(
            "tasks:",
            "params:\n  k: {type: string, pattern: '[a-z]+'}\ntasks:",
        ),
    );
    h.add_agent("agent-a", &[("site", "a")]);
    h.add_agent("agent-a2", &[("site", "a"), ("x", "y")]);
    h.add_agent("agent-b", &[("site", "b")]);
    let session = h.fake_session("agent-a");

    // Parameters are checked against the declarations before anything is sent.
    for (k, v, says) in [
        (
            "nope",
            "v",
            "workflow `demo` has no parameter `nope` (declared: k)",
        ),
        (
            "k",
            "V 1",
            "parameter `k` of workflow `demo` must be string matching",
        ),
    ] {
        let mut params = std::collections::BTreeMap::new();
        params.insert(k.to_string(), v.to_string());
        let e = c
            .post::<_, TriggerResponse>(
                "/v1/workflows/demo/trigger",
                &TriggerRequest {
                    agent: None,
                    params,
                },
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
    }
    // Both refused attempts are in the audit log, with the values tried and the reason.
    let audit: Vec<serde_json::Value> = c.get("/v1/audit", &[("limit", "100".into())]).unwrap();
    let refused: Vec<&str> = audit
        .iter()
        .filter(|e| e["action"] == "workflow.trigger.refused" && e["target"] == "demo")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(refused.len(), 2, "{audit:?}");
    assert!(
        refused
            .iter()
            .any(|d| d.contains("nope=\"v\"") && d.contains("no parameter `nope`")),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|d| d.contains("k=\"V 1\"") && d.contains("must be string matching")),
        "{refused:?}"
    );
    let mut params = std::collections::BTreeMap::new();
    params.insert("k".to_string(), "v".to_string());
    let r: TriggerResponse = c
        .post(
            "/v1/workflows/demo/trigger",
            &TriggerRequest {
                agent: None,
                params,
            },
        )
        .unwrap();
    // agent-b is not targeted; agent-a2 is targeted but offline: refused, not queued.
    assert_eq!(r.results.len(), 2);
    let a = r.results.iter().find(|x| x.agent == "agent-a").unwrap();
    assert!(a.ok);
    assert_eq!(a.run_id.as_deref(), Some("demo@manual"));
    assert!(a.message.contains("\"k\""));
    let a2 = r.results.iter().find(|x| x.agent == "agent-a2").unwrap();
    assert!(
        !a2.ok && a2.message.contains("not connected"),
        "{}",
        a2.message
    );

    let p: AgentsResponse = c
        .post("/v1/workflows/demo/pause", &serde_json::json!({}))
        .unwrap();
    assert_eq!(p.agents.len(), 2);
    let list: Vec<WorkflowSummary> = c.get("/v1/workflows", &[]).unwrap();
    assert!(list[0].paused);
    let _: AgentsResponse = c
        .post("/v1/workflows/demo/resume", &serde_json::json!({}))
        .unwrap();
    let list: Vec<WorkflowSummary> = c.get("/v1/workflows", &[]).unwrap();
    assert!(!list[0].paused);

    let agents: Vec<AgentView> = c.get("/v1/agents", &[]).unwrap();
    assert_eq!(agents.len(), 3);
    let a = agents.iter().find(|x| x.id == "agent-a").unwrap();
    assert!(a.online);
    assert!(!agents.iter().find(|x| x.id == "agent-b").unwrap().online);

    let r: RevokeResponse = c
        .post("/v1/agents/agent-a/revoke", &serde_json::json!({}))
        .unwrap();
    assert!(r.revoked);
    let goodbye = h.rt.block_on(session).unwrap();
    assert_eq!(goodbye.as_deref(), Some("agent revoked"));
    let d: AgentDetail = c.get("/v1/agents/agent-a", &[]).unwrap();
    assert!(d.agent.revoked.is_some());
    assert!(!d.agent.online);
    let r: Result<AgentDetail, _> = c.get("/v1/agents/agent-zzz", &[]);
    assert!(matches!(r, Err(ClientError::Api { status: 404, .. })));
}

/// Every write records the operator credential that made it, whatever an `X-Outpost-Actor`
/// header claims (the header has no authority).
#[test]
fn writes_record_the_credential_never_a_header() {
    let h = Harness::new();
    // Seeded by the harness (its token is created as `t`): only what follows counts.
    h.add_agent("agent-a", &[("site", "a")]);
    let seeded = h.store.audit_log(100).unwrap().len();
    let c = h.client();
    // A raw request claiming to be alice.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(&format!("{}/v1/workflows", h.url))
        .header("Authorization", &format!("Bearer {}", h.token))
        .header("X-Outpost-Actor", "alice")
        .send_json(&ApplyRequest {
            files: vec![ApplyFile {
                path: "demo.yaml".into(),
                content: WF_V1.into(),
            }],
        })
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    apply(&c, "demo.yaml", WF_V2);
    let _: VersionResponse = c
        .post("/v1/workflows/demo/rollback", &RollbackRequest { to: 1 })
        .unwrap();
    let _: AgentsResponse = c
        .post("/v1/workflows/demo/pause", &serde_json::json!({}))
        .unwrap();
    let _: AgentsResponse = c
        .post("/v1/workflows/demo/resume", &serde_json::json!({}))
        .unwrap();
    let _: RevokeResponse = c
        .post("/v1/agents/agent-a/revoke", &serde_json::json!({}))
        .unwrap();
    let t: TokenResponse = c.post("/v1/tokens", &TokenRequest::default()).unwrap();
    let _: TokenRevokeResponse = c
        .post(
            &format!("/v1/tokens/{}/revoke", t.id),
            &serde_json::json!({}),
        )
        .unwrap();
    let audit: Vec<serde_json::Value> = c.get("/v1/audit", &[("limit", "100".into())]).unwrap();
    let audit = &audit[seeded..];
    for action in [
        "workflow.apply",
        "workflow.pause",
        "workflow.resume",
        "agent.revoke",
        "token.create",
        "token.revoke",
    ] {
        let actors: Vec<&str> = audit
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| e["actor"].as_str().unwrap_or_default())
            .collect();
        assert!(
            !actors.is_empty(),
            "no {action} in the audit log: {audit:?}"
        );
        assert!(
            actors.iter().all(|a| *a == "root"),
            "{action} recorded by {actors:?}, not root (the credential)"
        );
    }
}

/// A request's status, and the error message.
fn status_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Ok(v) => panic!("allowed: {v:?}"),
        Err(ClientError::Api { status, message }) => (status, message),
        Err(ClientError::Unauthorized(m)) => (401, m),
        Err(e) => panic!("{e}"),
    }
}

/// Roles are enforced by the server on every route: a viewer reads and nothing more (403 with
/// the role it lacks, audited as `access.denied`, never as done); an operator triggers but does
/// not apply; a deployer limited to a pool acts there only; a revoked credential is refused at
/// once; the actor is always the credential's name.
#[test]
fn roles_are_enforced_and_refusals_audited() {
    let h = Harness::new();
    let admin = h.client();
    apply(&admin, "demo.yaml", WF_V1);
    let make = |name: &str, role: &str, pools: &[&str]| -> Client {
        let r: OperatorCreated = admin
            .post(
                "/v1/operators",
                &OperatorCreate {
                    name: name.into(),
                    role: role.into(),
                    pools: pools.iter().map(|p| p.to_string()).collect(),
                },
            )
            .unwrap();
        assert!(r.credential.starts_with("opo1."));
        Client::new(&h.url, &r.credential, None)
    };
    let viewer = make("vera", "viewer", &[]);
    let operator = make("otto", "operator", &[]);
    let deployer = make("dana", "deployer", &["line-a"]);

    let w: WhoAmI = viewer.get("/v1/whoami", &[]).unwrap();
    assert_eq!((w.name.as_str(), w.role.as_str()), ("vera", "viewer"));
    let _: Vec<WorkflowSummary> = viewer.get("/v1/workflows", &[]).unwrap();
    let (st, msg) = status_of(viewer.post::<_, ApplyResponse>(
        "/v1/workflows",
        &ApplyRequest {
            files: vec![ApplyFile {
                path: "demo.yaml".into(),
                content: WF_V2.into(),
            }],
        },
    ));
    assert_eq!(st, 403);
    assert!(
        msg.contains("vera") && msg.contains("needs role deployer"),
        "{msg}"
    );
    let (st, _) = status_of(
        viewer.post::<_, serde_json::Value>("/v1/workflows/demo/trigger", &serde_json::json!({})),
    );
    assert_eq!(st, 403);
    let (st, _) = status_of(viewer.get::<Vec<OperatorView>>("/v1/operators", &[]));
    assert_eq!(st, 403);
    // An operator may trigger (no agent is connected: refused by the hub, not by role) but not
    // apply or make credentials.
    let r: Result<serde_json::Value, _> =
        operator.post("/v1/workflows/demo/trigger", &serde_json::json!({}));
    assert!(
        !matches!(r, Err(ClientError::Api { status: 403, .. })),
        "{r:?}"
    );
    let (st, _) = status_of(
        operator
            .post::<_, VersionResponse>("/v1/workflows/demo/rollback", &RollbackRequest { to: 1 }),
    );
    assert_eq!(st, 403);
    let (st, _) = status_of(operator.post::<_, OperatorCreated>(
        "/v1/operators",
        &OperatorCreate {
            name: "x".into(),
            role: "admin".into(),
            pools: vec![],
        },
    ));
    assert_eq!(st, 403);
    // The pool-limited deployer: its pool yes, another pool and the default pool no.
    let _: PoolView = admin
        .post(
            "/v1/pools",
            &PoolCreate {
                name: "line-a".into(),
                selector: [("line".to_string(), "a".to_string())].into(),
            },
        )
        .unwrap();
    let _: PoolView = admin
        .post(
            "/v1/pools",
            &PoolCreate {
                name: "line-b".into(),
                selector: [("line".to_string(), "b".to_string())].into(),
            },
        )
        .unwrap();
    let pv = |pool: &str| PoolVersionRequest {
        pool: pool.into(),
        version: Some(1),
    };
    let _: DecisionView = deployer
        .post("/v1/workflows/demo/deploy", &pv("line-a"))
        .unwrap();
    let (st, msg) =
        status_of(deployer.post::<_, DecisionView>("/v1/workflows/demo/deploy", &pv("line-b")));
    assert_eq!(st, 403);
    assert!(msg.contains("line-b"), "{msg}");
    let (st, _) = status_of(deployer.post::<_, ApplyResponse>(
        "/v1/workflows",
        &ApplyRequest {
            files: vec![ApplyFile {
                path: "demo.yaml".into(),
                content: WF_V2.into(),
            }],
        },
    ));
    assert_eq!(st, 403, "apply moves wf:demo, not among dana's pools");

    // Revoked: refused at once.
    let _: OperatorRevoked = admin
        .post("/v1/operators/otto/revoke", &serde_json::json!({}))
        .unwrap();
    let (st, _) = status_of(operator.get::<Vec<WorkflowSummary>>("/v1/workflows", &[]));
    assert_eq!(st, 401);

    let audit = h.store.audit_log(1000).unwrap();
    let done =
        |actor: &str, action: &str| audit.iter().any(|e| e.actor == actor && e.action == action);
    assert!(done("vera", "access.denied"));
    assert!(done("dana", "access.denied"));
    assert!(done("dana", "workflow.deploy"));
    assert!(!done("vera", "workflow.apply") && !done("vera", "workflow.trigger"));
    assert!(!done("dana", "workflow.apply"));
    assert!(done("root", "operator.revoke"));
    let ops: Vec<OperatorView> = admin.get("/v1/operators", &[]).unwrap();
    assert!(ops.iter().any(|o| o.name == "otto" && o.revoked.is_some()));
    assert_eq!(h.store.verify_audit().unwrap().broken, None);
}
