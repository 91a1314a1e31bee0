//! The operator HTTP API (axum), as in the issue 3 design: JSON in and out, bearer-token auth
//! (constant-time comparison), JSON errors `{error}`, a body size limit. `GET /v1/health` is the
//! only unauthenticated path.
//!
//! Store calls run on the blocking pool; commands to agents go through the [`AgentGateway`]
//! seam and are refused at once for an agent that is not connected (never queued).
//!
//! [`AgentGateway`]: crate::gateway::AgentGateway

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use outpost_common::duration::parse_duration;
use outpost_common::proto::Command;
use outpost_common::workflow::{self, Format, ValidateOptions};
use serde::Deserialize;

use crate::gateway::GatewayError;
use crate::hub::{Hub, format_bootstrap_token, now_ms};
use crate::store::{NewVersion, RunQuery, StoreError, selector_matches};
use crate::views::*;

/// Largest request body accepted.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Actor recorded in the audit log for API calls.
const ACTOR: &str = "api";

/// An API error: a status and a message, rendered as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NoWorkflow(_) | StoreError::NoVersion { .. } | StoreError::NoAgent(_) => {
                StatusCode::NOT_FOUND
            }
            StoreError::BadToken => StatusCode::BAD_REQUEST,
            StoreError::Revoked(_) | StoreError::AgentExists(_) => StatusCode::CONFLICT,
            _ => {
                tracing::error!(error = %e, "store error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let status = match &e {
            GatewayError::NotConnected(_) | GatewayError::Closed(_) => StatusCode::CONFLICT,
            GatewayError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        };
        ApiError::new(status, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

struct ApiState {
    hub: Arc<Hub>,
    token_hash: blake3::Hash,
}

type St = State<Arc<ApiState>>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("internal task failed: {e}")))?
}

/// The API router for `hub`, accepting `api_token` as the bearer token.
pub fn router(hub: Arc<Hub>, api_token: &str) -> Router {
    let state = Arc::new(ApiState {
        hub,
        token_hash: blake3::hash(api_token.as_bytes()),
    });
    let authed = Router::new()
        .route("/v1/workflows", post(apply).get(list_workflows))
        .route("/v1/workflows/{name}", get(show_workflow))
        .route("/v1/workflows/{name}/history", get(history))
        .route("/v1/workflows/{name}/diff", get(diff))
        .route("/v1/workflows/{name}/rollback", post(rollback))
        .route("/v1/workflows/{name}/pause", post(pause))
        .route("/v1/workflows/{name}/resume", post(resume))
        .route("/v1/workflows/{name}/trigger", post(trigger))
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}", get(show_agent))
        .route("/v1/agents/{id}/revoke", post(revoke))
        .route("/v1/tokens", post(create_token))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(show_run))
        .route("/v1/runs/{id}/logs/{task}", get(run_logs))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/v1/health", get(health))
        .merge(authed)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn auth(State(st): St, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        // blake3::Hash equality is constant-time.
        .is_some_and(|t| blake3::hash(t.trim().as_bytes()) == st.token_hash);
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (Authorization: Bearer <token>)",
        )
        .into_response();
    }
    next.run(req).await
}

async fn health(State(st): St) -> Json<Health> {
    Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").into(),
        hub_name: st.hub.hub_name.clone(),
    })
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Yaml => "yaml",
        Format::Toml => "toml",
    }
}

async fn apply(State(st): St, Json(req): Json<ApplyRequest>) -> ApiResult<Json<ApplyResponse>> {
    let hub = st.hub.clone();
    blocking(move || {
        let mut results = Vec::with_capacity(req.files.len());
        let mut changed_any = false;
        for f in req.files {
            let format = Format::from_path(FsPath::new(&f.path));
            match workflow::parse(&f.path, &f.content, format, &ValidateOptions::default()) {
                Err(diags) => results.push(ApplyResult {
                    path: f.path,
                    name: None,
                    version: None,
                    changed: false,
                    diagnostics: diags.iter().map(ToString::to_string).collect(),
                }),
                Ok(wf) => {
                    let out = hub.store.apply_version(
                        NewVersion {
                            name: wf.name.clone(),
                            content: f.content.into_bytes(),
                            format: format_name(format).into(),
                            target: wf.target.into_iter().collect(),
                            origin: f.path.clone(),
                            applied_by: ACTOR.into(),
                        },
                        hub.signer.as_ref(),
                        now_ms(),
                    )?;
                    changed_any |= out.changed;
                    results.push(ApplyResult {
                        path: f.path,
                        name: Some(wf.name),
                        version: Some(out.version),
                        changed: out.changed,
                        diagnostics: vec![],
                    });
                }
            }
        }
        if changed_any {
            hub.notify_changed();
        }
        Ok(Json(ApplyResponse { results }))
    })
    .await
}

async fn list_workflows(State(st): St) -> ApiResult<Json<Vec<WorkflowSummary>>> {
    let hub = st.hub.clone();
    blocking(move || {
        let rows = hub
            .store
            .latest_versions()?
            .into_iter()
            .map(|(v, m)| WorkflowSummary {
                name: v.name,
                version: v.version,
                versions: m.latest,
                paused: m.paused,
                target: label_map(&v.target),
                updated: rfc3339(m.updated_ms),
            })
            .collect();
        Ok(Json(rows))
    })
    .await
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<u64>,
}

async fn show_workflow(
    State(st): St,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<WorkflowDetail>> {
    let hub = st.hub.clone();
    blocking(move || {
        let v = hub.store.version(&name, q.version)?;
        Ok(Json(WorkflowDetail {
            content: String::from_utf8_lossy(&v.content).into_owned(),
            name: v.name,
            version: v.version,
            content_hash: v.content_hash,
            created: rfc3339(v.created_ms),
            target: label_map(&v.target),
            format: v.format,
            origin: v.origin,
        }))
    })
    .await
}

async fn history(State(st): St, Path(name): Path<String>) -> ApiResult<Json<Vec<HistoryEntry>>> {
    let hub = st.hub.clone();
    blocking(move || {
        Ok(Json(
            hub.store
                .history(&name)?
                .into_iter()
                .map(|v| HistoryEntry {
                    version: v.version,
                    content_hash: v.content_hash,
                    created: rfc3339(v.created_ms),
                    origin: v.origin,
                    applied_by: v.applied_by,
                })
                .collect(),
        ))
    })
    .await
}

#[derive(Deserialize)]
struct DiffQuery {
    from: u64,
    to: u64,
}

/// Unified diff of two versions' contents.
pub fn unified_diff(name: &str, from: u64, a: &str, to: u64, b: &str) -> String {
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} v{from}"), &format!("{name} v{to}"))
        .to_string()
}

async fn diff(
    State(st): St,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<DiffResponse>> {
    let hub = st.hub.clone();
    blocking(move || {
        let a = hub.store.version(&name, Some(q.from))?;
        let b = hub.store.version(&name, Some(q.to))?;
        let diff = unified_diff(
            &name,
            q.from,
            &String::from_utf8_lossy(&a.content),
            q.to,
            &String::from_utf8_lossy(&b.content),
        );
        Ok(Json(DiffResponse { diff }))
    })
    .await
}

async fn rollback(
    State(st): St,
    Path(name): Path<String>,
    Json(req): Json<RollbackRequest>,
) -> ApiResult<Json<VersionResponse>> {
    let hub = st.hub.clone();
    blocking(move || {
        let out = hub
            .store
            .rollback(&name, req.to, ACTOR, hub.signer.as_ref(), now_ms())?;
        if out.changed {
            hub.notify_changed();
        }
        Ok(Json(VersionResponse {
            version: out.version,
            changed: out.changed,
        }))
    })
    .await
}

/// The non-revoked agents a workflow's latest version targets.
fn targeted_agents(hub: &Hub, name: &str) -> ApiResult<Vec<String>> {
    let v = hub.store.version(name, None)?;
    Ok(hub
        .store
        .agents()?
        .into_iter()
        .filter(|a| a.revoked_ms.is_none() && selector_matches(&v.target, &a.labels))
        .map(|a| a.id)
        .collect())
}

async fn pause(state: St, name: Path<String>) -> ApiResult<Json<AgentsResponse>> {
    pause_resume(state, name, true).await
}

async fn resume(state: St, name: Path<String>) -> ApiResult<Json<AgentsResponse>> {
    pause_resume(state, name, false).await
}

async fn pause_resume(
    State(st): St,
    Path(name): Path<String>,
    paused: bool,
) -> ApiResult<Json<AgentsResponse>> {
    let hub = st.hub.clone();
    let n = name.clone();
    let targets = blocking(move || {
        hub.store.set_paused(&n, paused, ACTOR, now_ms())?;
        hub.notify_changed();
        targeted_agents(&hub, &n)
    })
    .await?;
    let mut agents = Vec::new();
    for id in targets {
        let command = if paused {
            Command::Pause {
                workflow: name.clone(),
            }
        } else {
            Command::Resume {
                workflow: name.clone(),
            }
        };
        let r = if st.hub.gateway.is_connected(&id) {
            match st.hub.gateway.send_command(&id, command).await {
                Ok(r) => AgentResult {
                    id,
                    ok: r.ok,
                    message: r.message,
                },
                Err(e) => AgentResult {
                    id,
                    ok: false,
                    message: e.to_string(),
                },
            }
        } else {
            AgentResult {
                message: format!(
                    "agent {id} is not connected; the hub's {} state reaches it when it reconnects",
                    if paused { "paused" } else { "resumed" }
                ),
                id,
                ok: false,
            }
        };
        agents.push(r);
    }
    Ok(Json(AgentsResponse { agents }))
}

async fn trigger(
    State(st): St,
    Path(name): Path<String>,
    body: Option<Json<TriggerRequest>>,
) -> ApiResult<Json<TriggerResponse>> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let hub = st.hub.clone();
    let n = name.clone();
    let only = req.agent.clone();
    let targets = blocking(move || match only {
        Some(a) => {
            hub.store.version(&n, None)?;
            let rec = hub.store.agent(&a)?;
            if rec.revoked_ms.is_some() {
                return Err(StoreError::Revoked(a).into());
            }
            Ok(vec![a])
        }
        None => targeted_agents(&hub, &n),
    })
    .await?;
    let params: Vec<(String, String)> = req.params.into_iter().collect();
    let mut results = Vec::new();
    for agent in targets {
        let r = match st
            .hub
            .gateway
            .send_command(
                &agent,
                Command::Trigger {
                    workflow: name.clone(),
                    params: params.clone(),
                },
            )
            .await
        {
            Ok(r) => TriggerResult {
                agent,
                ok: r.ok,
                run_id: r.run_id,
                message: r.message,
            },
            Err(e) => TriggerResult {
                agent,
                ok: false,
                run_id: None,
                message: match e {
                    GatewayError::NotConnected(a) => {
                        format!(
                            "agent {a} is not connected; not triggered (commands are not queued)"
                        )
                    }
                    other => other.to_string(),
                },
            },
        };
        results.push(r);
    }
    Ok(Json(TriggerResponse { results }))
}

fn agent_view(a: &crate::store::AgentRecord, connected: &[(String, i64)]) -> AgentView {
    let online = connected.iter().find(|(id, _)| *id == a.id);
    AgentView {
        id: a.id.clone(),
        labels: label_map(&a.labels),
        online: online.is_some(),
        since: online
            .map(|(_, since)| *since)
            .or(a.last_seen_ms)
            .map(rfc3339),
        software_version: a.software_version.clone(),
        active: a
            .active
            .iter()
            .map(|w| ActiveView {
                workflow: w.workflow.clone(),
                version: w.version,
            })
            .collect(),
        revoked: a.revoked_ms.map(rfc3339),
    }
}

async fn list_agents(State(st): St) -> ApiResult<Json<Vec<AgentView>>> {
    let hub = st.hub.clone();
    blocking(move || {
        let connected = hub.gateway.connected();
        Ok(Json(
            hub.store
                .agents()?
                .iter()
                .map(|a| agent_view(a, &connected))
                .collect(),
        ))
    })
    .await
}

async fn show_agent(State(st): St, Path(id): Path<String>) -> ApiResult<Json<AgentDetail>> {
    let hub = st.hub.clone();
    blocking(move || {
        let a = hub.store.agent(&id)?;
        let connected = hub.gateway.connected();
        let deploys = hub
            .store
            .deploy_results(&id)?
            .into_iter()
            .map(|d| DeployView {
                workflow: d.workflow,
                version: d.version,
                epoch: d.epoch,
                accepted: d.rejected.is_none(),
                reason: d.rejected,
                at: rfc3339(d.at_ms),
            })
            .collect();
        Ok(Json(AgentDetail {
            agent: agent_view(&a, &connected),
            hostname: a.hostname,
            enrolled: rfc3339(a.enrolled_ms),
            cert_serial: a.cert_serial,
            cert_fingerprint: a.cert_fingerprint,
            committed_seq: a.committed_seq,
            deploys,
        }))
    })
    .await
}

async fn revoke(State(st): St, Path(id): Path<String>) -> ApiResult<Json<RevokeResponse>> {
    let hub = st.hub.clone();
    blocking(move || {
        let revoked = hub.revoke(&id, ACTOR).map_err(|e| match e {
            crate::hub::HubError::Store(s) => ApiError::from(s),
            other => ApiError::internal(other.to_string()),
        })?;
        Ok(Json(RevokeResponse { id, revoked }))
    })
    .await
}

async fn create_token(
    State(st): St,
    body: Option<Json<TokenRequest>>,
) -> ApiResult<Json<TokenResponse>> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let ttl = match &req.ttl {
        None => Duration::from_secs(3600),
        Some(s) => parse_duration(s).map_err(|e| ApiError::bad(format!("ttl {s:?}: {e}")))?,
    };
    if ttl.is_zero() {
        return Err(ApiError::bad("ttl must be positive"));
    }
    for (k, v) in &req.labels {
        if k.is_empty() || k.contains([',', '=']) || v.contains(',') {
            return Err(ApiError::bad(format!("invalid label {k:?}={v:?}")));
        }
    }
    let hub = st.hub.clone();
    blocking(move || {
        let now = now_ms();
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let (id, secret) =
            hub.store
                .create_token(req.labels.into_iter().collect(), expires, ACTOR, now)?;
        Ok(Json(TokenResponse {
            token: format_bootstrap_token(&id, &secret, &hub.ca.sha256_hex()),
            expires: rfc3339(expires),
        }))
    })
    .await
}

#[derive(Deserialize)]
struct RunsQuery {
    workflow: Option<String>,
    agent: Option<String>,
    state: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

/// Parse `since`: an RFC 3339 time, or a duration (`1h`) meaning that long ago.
pub fn parse_since(s: &str, now_ms: i64) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    let d = parse_duration(s).ok()?;
    Some(now_ms.saturating_sub(i64::try_from(d.as_millis()).ok()?))
}

async fn list_runs(State(st): St, Query(q): Query<RunsQuery>) -> ApiResult<Json<Vec<RunView>>> {
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_run_state(s).ok_or_else(|| {
            ApiError::bad(format!(
                "unknown run state {s:?} (queued, running, succeeded, failed, cancelled, skipped)"
            ))
        })?),
    };
    let since_ms = match q.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_since(s, now_ms()).ok_or_else(|| {
            ApiError::bad(format!(
                "since {s:?}: not an RFC 3339 time or a duration like 1h"
            ))
        })?),
    };
    let query = RunQuery {
        workflow: q.workflow.filter(|s| !s.is_empty()),
        agent: q.agent.filter(|s| !s.is_empty()),
        state,
        since_ms,
        limit: q.limit.unwrap_or(1000).min(100_000),
    };
    let hub = st.hub.clone();
    blocking(move || {
        Ok(Json(
            hub.store
                .runs(&query)?
                .iter()
                .map(|r| RunView::new(&r.agent_id, &r.record, &[]))
                .collect(),
        ))
    })
    .await
}

#[derive(Deserialize)]
struct RunQueryParams {
    agent: Option<String>,
    attempt: Option<u32>,
}

/// Which agent's run `run_id` means: the given one, or the only agent that has it.
fn resolve_run_agent(hub: &Hub, run_id: &str, agent: Option<String>) -> ApiResult<String> {
    let agents = hub.store.run_agents(run_id)?;
    match agent {
        Some(a) if agents.contains(&a) => Ok(a),
        Some(a) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("run {run_id} not found on agent {a}"),
        )),
        None => match agents.as_slice() {
            [] => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("run {run_id} not found"),
            )),
            [one] => Ok(one.clone()),
            many => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "run id {run_id} exists on several agents ({}); pass --agent",
                    many.join(", ")
                ),
            )),
        },
    }
}

async fn show_run(
    State(st): St,
    Path(id): Path<String>,
    Query(q): Query<RunQueryParams>,
) -> ApiResult<Json<RunView>> {
    let hub = st.hub.clone();
    blocking(move || {
        let agent = resolve_run_agent(&hub, &id, q.agent)?;
        let (run, tasks) = hub
            .store
            .run(&agent, &id)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("run {id} not found")))?;
        Ok(Json(RunView::new(&agent, &run, &tasks)))
    })
    .await
}

async fn run_logs(
    State(st): St,
    Path((id, task)): Path<(String, String)>,
    Query(q): Query<RunQueryParams>,
) -> ApiResult<Response> {
    let hub = st.hub.clone();
    let rid = id.clone();
    let agent = blocking(move || resolve_run_agent(&hub, &rid, q.agent)).await?;
    if !st.hub.gateway.is_connected(&agent) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "agent {agent} is not connected; logs are fetched from the agent on demand, try \
                 again when it is online"
            ),
        ));
    }
    let reply = st
        .hub
        .gateway
        .send_command(
            &agent,
            Command::FetchLog {
                run_id: id,
                task,
                attempt: q.attempt,
            },
        )
        .await?;
    if !reply.ok {
        return Err(ApiError::new(StatusCode::NOT_FOUND, reply.message));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        reply.data,
    )
        .into_response())
}
