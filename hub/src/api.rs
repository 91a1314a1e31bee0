//! The operator HTTP API (axum), JSON in and out, bearer-token auth
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
            StoreError::NoWorkflow(_)
            | StoreError::NoVersion { .. }
            | StoreError::NoAgent(_)
            | StoreError::NoToken(_) => StatusCode::NOT_FOUND,
            StoreError::BadToken => StatusCode::BAD_REQUEST,
            StoreError::NoPool(_) | StoreError::NoRollout(_) => StatusCode::NOT_FOUND,
            StoreError::Revoked(_) | StoreError::AgentExists(_) | StoreError::Conflict(_) => {
                StatusCode::CONFLICT
            }
            StoreError::Refused(_) => StatusCode::BAD_REQUEST,
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
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(show_run))
        .route("/v1/runs/{id}/logs/{task}", get(run_logs))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/pools", post(create_pool).get(list_pools))
        .route("/v1/pools/{name}", get(show_pool).delete(delete_pool))
        .route("/v1/agents/{id}/labels", post(label_agent))
        .route("/v1/workflows/{name}/deploy", post(deploy))
        .route("/v1/workflows/{name}/pin", post(pin))
        .route("/v1/workflows/{name}/unpin", post(unpin))
        .route("/v1/workflows/{name}/rollouts", get(rollout_history))
        .route(
            "/v1/workflows/{name}/pools/{pool}/rollout",
            get(rollout_status),
        )
        .route(
            "/v1/workflows/{name}/pools/{pool}/rollout/{command}",
            post(rollout_command),
        )
        .route("/v1/rollouts", post(start_rollout).get(list_rollouts))
        .route("/v1/audit", get(audit_log))
        .route("/v1/backup", post(backup))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/v1/health", get(health))
        .route("/openapi.yaml", get(openapi))
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

/// The API's OpenAPI 3 description (docs/openapi.yaml), served at `/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI).into_response()
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

/// The non-revoked agents the workflow is deployed to (their desired state includes it: pool
/// decisions and active rollouts).
fn targeted_agents(hub: &Hub, name: &str) -> ApiResult<Vec<String>> {
    hub.store.version(name, None)?;
    let mut out = Vec::new();
    for a in hub.store.agents()? {
        if a.revoked_ms.is_none()
            && hub
                .desired_versions_of(&a)?
                .iter()
                .any(|d| d.workflow == name)
        {
            out.push(a.id);
        }
    }
    Ok(out)
}

async fn pause(
    state: St,
    headers: axum::http::HeaderMap,
    name: Path<String>,
) -> ApiResult<Json<AgentsResponse>> {
    pause_resume(state, headers, name, true).await
}

async fn resume(
    state: St,
    headers: axum::http::HeaderMap,
    name: Path<String>,
) -> ApiResult<Json<AgentsResponse>> {
    pause_resume(state, headers, name, false).await
}

async fn pause_resume(
    State(st): St,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
    paused: bool,
) -> ApiResult<Json<AgentsResponse>> {
    let actor = actor_of(&headers)?;
    let hub = st.hub.clone();
    let n = name.clone();
    let targets = blocking(move || {
        hub.store.set_paused(&n, paused, &actor, now_ms())?;
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
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
    body: Option<Json<TriggerRequest>>,
) -> ApiResult<Json<TriggerResponse>> {
    let actor = actor_of(&headers)?;
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let hub = st.hub.clone();
    let n = name.clone();
    let only = req.agent.clone();
    let params: Vec<(String, String)> = req.params.into_iter().collect();
    let checked = params.clone();
    let targets = blocking(move || match only {
        _ if let Err(e) = check_trigger_params(&hub, &n, &checked) => Err(e),
        _ if let Err(e) = hub.store.audit(
            &actor,
            "workflow.trigger",
            &n,
            &trigger_detail(only.as_deref(), &checked),
            now_ms(),
        ) =>
        {
            Err(e.into())
        }
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

/// Refuse a trigger whose parameters break the declarations of the latest version the hub holds
/// (the agent checks again against the version it runs).
fn check_trigger_params(hub: &Hub, name: &str, params: &[(String, String)]) -> ApiResult<()> {
    let v = hub.store.version(name, None)?;
    let format = if v.format == "toml" {
        Format::Toml
    } else {
        Format::Yaml
    };
    let Ok(content) = std::str::from_utf8(&v.content) else {
        return Ok(());
    };
    match workflow::parse(name, content, format, &ValidateOptions::default()) {
        Ok(wf) => outpost_common::params::check_params(name, &wf.param_rules, params)
            .map_err(ApiError::bad),
        // A stored version that no longer validates: the agent decides.
        Err(_) => Ok(()),
    }
}

/// The audit detail of a trigger: the agent it was limited to and the parameters given.
fn trigger_detail(agent: Option<&str>, params: &[(String, String)]) -> String {
    let mut d = format!("agent={}", agent.unwrap_or("*"));
    for (k, v) in params {
        d.push_str(&format!(" {k}={v:?}"));
    }
    d
}

/// `POST /v1/runs/{id}/cancel`: cancel a run on the agent that has it (connected agents only;
/// commands are not queued).
async fn cancel_run(
    State(st): St,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RunQueryParams>,
) -> ApiResult<Json<TriggerResult>> {
    let actor = actor_of(&headers)?;
    let hub = st.hub.clone();
    let rid = id.clone();
    let agent = blocking(move || {
        let agent = resolve_run_agent(&hub, &rid, q.agent)?;
        let detail = format!("agent={agent}");
        hub.store
            .audit(&actor, "run.cancel", &rid, &detail, now_ms())?;
        Ok(agent)
    })
    .await?;
    if !st.hub.gateway.is_connected(&agent) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("agent {agent} is not connected; not cancelled (commands are not queued)"),
        ));
    }
    let r = st
        .hub
        .gateway
        .send_command(&agent, Command::Cancel { run_id: id.clone() })
        .await?;
    Ok(Json(TriggerResult {
        agent,
        ok: r.ok,
        run_id: Some(id),
        message: r.message,
    }))
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
    if ttl > st.hub.max_token_ttl {
        return Err(ApiError::bad(format!(
            "ttl {} is longer than the hub's max_token_ttl ({}s); use a shorter --ttl or \
             raise max_token_ttl in hub.toml",
            req.ttl.as_deref().unwrap_or_default(),
            st.hub.max_token_ttl.as_secs()
        )));
    }
    let uses = req.uses.unwrap_or(1);
    if !(1..=MAX_TOKEN_USES).contains(&uses) {
        return Err(ApiError::bad(format!(
            "uses must be between 1 and {MAX_TOKEN_USES}"
        )));
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
        let (id, secret) = hub.store.create_token_uses(
            req.labels.into_iter().collect(),
            expires,
            uses,
            ACTOR,
            now,
        )?;
        Ok(Json(TokenResponse {
            token: format_bootstrap_token(&id, &secret, &hub.ca.sha256_hex(), &hub.hub_name),
            expires: rfc3339(expires),
            id,
            uses,
        }))
    })
    .await
}

/// Most agents one bootstrap token may enroll.
const MAX_TOKEN_USES: u32 = 10_000;

async fn list_tokens(State(st): St) -> ApiResult<Json<Vec<TokenView>>> {
    let hub = st.hub.clone();
    blocking(move || {
        let now = now_ms();
        let mut out: Vec<TokenView> = hub
            .store
            .tokens()?
            .into_iter()
            .map(|t| TokenView {
                state: if t.revoked_ms.is_some() {
                    "revoked"
                } else if t.used() >= t.allowed() {
                    "spent"
                } else if now >= t.expires_ms {
                    "expired"
                } else {
                    "usable"
                }
                .into(),
                labels: t.labels.iter().cloned().collect(),
                created: rfc3339(t.created_ms),
                expires: rfc3339(t.expires_ms),
                used: t.used(),
                uses: t.allowed(),
                last_agent: t.used_by.clone(),
                revoked: t.revoked_ms.map(rfc3339),
                id: t.id,
            })
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(Json(out))
    })
    .await
}

async fn revoke_token(
    State(st): St,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenRevokeResponse>> {
    let hub = st.hub.clone();
    blocking(move || {
        let revoked = hub.store.revoke_token(&id, ACTOR, now_ms())?;
        Ok(Json(TokenRevokeResponse { id, revoked }))
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
    // `failed-tasks`: runs with a failed task, whatever their state (a run that succeeded past a
    // failed task through an `all_done` leaf included).
    let failed_tasks = q.state.as_deref() == Some(FAILED_TASKS);
    let state = match q.state.as_deref().filter(|s| !s.is_empty() && *s != FAILED_TASKS) {
        None => None,
        Some(s) => Some(outpost_common::record::RunState::parse(s).ok_or_else(|| {
            ApiError::bad(format!(
                "unknown run state {s:?} (queued, running, succeeded, failed, cancelled, skipped, failed-tasks)"
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
        let mut runs = hub.store.runs(&RunQuery {
            limit: if failed_tasks {
                usize::MAX
            } else {
                query.limit
            },
            ..query.clone()
        })?;
        if failed_tasks {
            let mut kept = Vec::new();
            for r in runs {
                if kept.len() >= query.limit {
                    break;
                }
                if hub
                    .store
                    .run_had_failed_task(&r.agent_id, &r.record.run_id)?
                {
                    kept.push(r);
                }
            }
            runs = kept;
        }
        Ok(Json(
            runs.iter()
                .map(|r| RunView::new(&r.agent_id, &r.record, &[]))
                .collect(),
        ))
    })
    .await
}

/// The `run list --state` value for runs that had a failed task.
const FAILED_TASKS: &str = "failed-tasks";

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
    headers: axum::http::HeaderMap,
    Path((id, task)): Path<(String, String)>,
    Query(q): Query<RunQueryParams>,
) -> ApiResult<Response> {
    let actor = actor_of(&headers)?;
    let hub = st.hub.clone();
    let rid = id.clone();
    let t = task.clone();
    let agent = blocking(move || {
        let agent = resolve_run_agent(&hub, &rid, q.agent)?;
        let detail = format!("task={t} agent={agent}");
        hub.store
            .audit(&actor, "run.logs", &rid, &detail, now_ms())?;
        Ok(agent)
    })
    .await?;
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

// ----- pools, deploy, pin, rollouts, audit ---------------------------------------------------

/// Header naming the operator for the audit log (`--actor` / `OUTPOST_ACTOR` in the CLI).
pub const ACTOR_HEADER: &str = "x-outpost-actor";

/// The operator of a request: the `X-Outpost-Actor` header (printable, at most 64 bytes), else
/// `api`.
fn actor_of(headers: &axum::http::HeaderMap) -> ApiResult<String> {
    match headers.get(ACTOR_HEADER) {
        None => Ok(ACTOR.into()),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::bad("the actor header is not printable text"))?
                .trim();
            if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_control()) {
                return Err(ApiError::bad(
                    "the actor must be 1 to 64 printable characters",
                ));
            }
            Ok(s.to_string())
        }
    }
}

impl From<crate::rollouts::RolloutError> for ApiError {
    fn from(e: crate::rollouts::RolloutError) -> Self {
        use crate::rollouts::RolloutError as E;
        match e {
            E::Store(s) => s.into(),
            E::Spec(s) => ApiError::bad(format!("invalid rollout: {s}")),
            E::Refused(r) => ApiError::new(StatusCode::CONFLICT, format!("refused: {r}")),
            E::NoRollout { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            E::Bad(m) => ApiError::bad(m),
            E::Decode(d) => ApiError::internal(d.to_string()),
        }
    }
}

fn pool_view(
    hub: &Hub,
    p: &crate::store::PoolRecord,
    agents: &[crate::store::AgentRecord],
    decisions: &[((String, String), crate::store::PoolDecision)],
) -> crate::views_pools::PoolView {
    let connected: std::collections::HashSet<String> = hub
        .gateway
        .connected()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let members: Vec<&crate::store::AgentRecord> = agents
        .iter()
        .filter(|a| a.revoked_ms.is_none() && selector_matches(&p.selector, &a.labels))
        .collect();
    crate::views_pools::PoolView {
        name: p.name.clone(),
        selector: label_map(&p.selector),
        members: members.len(),
        online: members.iter().filter(|a| connected.contains(&a.id)).count(),
        default: p.name.starts_with(crate::store::DEFAULT_POOL_PREFIX),
        workflows: decisions
            .iter()
            .filter(|((_, pool), _)| *pool == p.name)
            .map(|((w, _), d)| crate::views_pools::DecisionView::new(w, d))
            .collect(),
        created: rfc3339(p.created_ms),
        created_by: p.created_by.clone(),
    }
}

async fn create_pool(
    State(st): St,
    headers: axum::http::HeaderMap,
    Json(req): Json<crate::views_pools::PoolCreate>,
) -> ApiResult<Json<crate::views_pools::PoolView>> {
    let actor = actor_of(&headers)?;
    let hub = st.hub.clone();
    blocking(move || {
        let p = hub.store.create_pool(
            &req.name,
            req.selector.into_iter().collect(),
            &actor,
            now_ms(),
        )?;
        hub.notify_changed();
        Ok(Json(pool_view(&hub, &p, &hub.store.agents()?, &[])))
    })
    .await
}

async fn list_pools(State(st): St) -> ApiResult<Json<Vec<crate::views_pools::PoolView>>> {
    let hub = st.hub.clone();
    blocking(move || {
        let agents = hub.store.agents()?;
        let decisions = hub.store.decisions()?;
        Ok(Json(
            hub.store
                .pools()?
                .iter()
                .map(|p| pool_view(&hub, p, &agents, &decisions))
                .collect(),
        ))
    })
    .await
}

async fn show_pool(
    State(st): St,
    Path(name): Path<String>,
) -> ApiResult<Json<crate::views_pools::PoolDetail>> {
    let hub = st.hub.clone();
    blocking(move || {
        let p = hub.store.pool(&name)?;
        let agents = hub.store.agents()?;
        let decisions = hub.store.decisions()?;
        let connected: std::collections::HashSet<String> = hub
            .gateway
            .connected()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut members = Vec::new();
        for a in agents
            .iter()
            .filter(|a| a.revoked_ms.is_none() && selector_matches(&p.selector, &a.labels))
        {
            members.push(crate::views_pools::MemberView {
                id: a.id.clone(),
                online: connected.contains(&a.id),
                labels: label_map(&a.labels),
                versions: a
                    .active
                    .iter()
                    .map(|w| (w.workflow.clone(), w.version))
                    .collect(),
                desired: hub
                    .desired_versions_of(a)?
                    .into_iter()
                    .map(|d| (d.workflow, d.version))
                    .collect(),
            });
        }
        Ok(Json(crate::views_pools::PoolDetail {
            pool: pool_view(&hub, &p, &agents, &decisions),
            agents: members,
        }))
    })
    .await
}

async fn delete_pool(
    State(st): St,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let actor = actor_of(&headers)?;
    let hub = st.hub.clone();
    blocking(move || {
        hub.store.delete_pool(&name, &actor, now_ms())?;
        hub.notify_changed();
        Ok(Json(serde_json::json!({"deleted": name})))
    })
    .await
}

async fn label_agent(
    State(st): St,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<crate::views_pools::LabelRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let actor = actor_of(&headers)?;
    for (k, v) in &req.set {
        if k.is_empty() || k.contains([',', '=']) || v.contains(',') {
            return Err(ApiError::bad(format!("invalid label {k:?}={v:?}")));
        }
    }
    let hub = st.hub.clone();
    blocking(move || {
        let rec = hub.store.agent(&id)?;
        if rec.revoked_ms.is_some() {
            return Err(StoreError::Revoked(id).into());
        }
        let set: Vec<(String, String)> = req.set.into_iter().collect();
        let labels = hub
            .store
            .set_labels(&id, &set, &req.remove, &actor, now_ms())?;
        hub.notify_changed();
        hub.rollout_wake.notify_one();
        Ok(Json(
            serde_json::json!({"id": id, "labels": label_map(&labels)}),
        ))
    })
    .await
}

async fn deploy(
    State(st): St,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<crate::views_pools::PoolVersionRequest>,
) -> ApiResult<Json<crate::views_pools::DecisionView>> {
    let actor = actor_of(&headers)?;
    let hub = st.hub.clone();
    blocking(move || {
        let version = match req.version {
            Some(v) => v,
            None => hub.store.workflow(&name)?.latest,
        };
        let d = hub
            .store
            .deploy_to_pool(&name, &req.pool, version, &actor, now_ms())?;
        hub.notify_changed();
        Ok(Json(crate::views_pools::DecisionView::new(&name, &d)))
    })
    .await
}

async fn pin(
    State(st): St,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<crate::views_pools::PoolVersionRequest>,
) -> ApiResult<Json<crate::views_pools::DecisionView>> {
    let actor = actor_of(&headers)?;
    let version = req
        .version
        .ok_or_else(|| ApiError::bad("pin needs a version"))?;
    let hub = st.hub.clone();
    blocking(move || {
        let d = hub.store.pin(&name, &req.pool, version, &actor, now_ms())?;
        hub.notify_changed();
        Ok(Json(crate::views_pools::DecisionView::new(&name, &d)))
    })
    .await
}

async fn unpin(
    State(st): St,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<crate::views_pools::PoolVersionRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let actor = actor_of(&headers)?;
    let hub = st.hub.clone();
    blocking(move || {
        hub.store.pool(&req.pool)?;
        let changed = hub.store.unpin(&name, &req.pool, &actor, now_ms())?;
        Ok(Json(
            serde_json::json!({"workflow": name, "pool": req.pool, "unpinned": changed}),
        ))
    })
    .await
}

/// Build a rollout plan from the API request (defaults: canary 1, steps 100%, bake 0s, min runs
/// 0 per agent, max failure rate 0, offline wait:10m, no probation).
pub fn plan_of(
    req: &crate::views_pools::RolloutStart,
) -> Result<crate::rollouts::RolloutPlan, String> {
    use crate::rollouts::{parse_offline, parse_size, parse_steps};
    let bake_ms = match req.bake.as_deref() {
        None | Some("") => 0,
        Some(b) => {
            let d = parse_duration(b).map_err(|e| format!("bake {b:?}: {e}"))?;
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        }
    };
    let min_runs_scope = match req.min_runs_scope.as_deref() {
        None | Some("agent") => outpost_rollout::Scope::PerAgent,
        Some("step") => outpost_rollout::Scope::Step,
        Some(o) => return Err(format!("bad min-runs scope {o:?} (agent or step)")),
    };
    let probation = match (req.probation_runs, req.probation_max_failures) {
        (None, None) => None,
        (Some(n), k) => Some((n, k.unwrap_or(0))),
        (None, Some(_)) => {
            return Err("--probation-max-failures needs --probation-runs".into());
        }
    };
    Ok(crate::rollouts::RolloutPlan {
        workflow: req.workflow.clone(),
        pool: req.pool.clone(),
        version: req.version,
        canary: parse_size(req.canary.as_deref().unwrap_or("1"))?,
        steps: parse_steps(req.steps.as_deref().unwrap_or("100%"))?,
        bake_ms,
        min_runs: req.min_runs.unwrap_or(0),
        min_runs_scope,
        max_failure_rate: req.max_failure_rate.unwrap_or(0.0),
        manual: req.manual,
        probation,
        offline: parse_offline(req.offline.as_deref().unwrap_or("wait"))?,
    })
}

async fn start_rollout(
    State(st): St,
    headers: axum::http::HeaderMap,
    Json(req): Json<crate::views_pools::RolloutStart>,
) -> ApiResult<Json<crate::views_pools::RolloutSummary>> {
    let actor = actor_of(&headers)?;
    let plan = plan_of(&req).map_err(ApiError::bad)?;
    let hub = st.hub.clone();
    blocking(move || {
        let rec = hub.start_rollout(&plan, &actor)?;
        Ok(Json(crate::views_pools::RolloutSummary::new(&rec)))
    })
    .await
}

#[derive(Deserialize)]
struct RolloutListQuery {
    workflow: Option<String>,
    active: Option<bool>,
}

async fn list_rollouts(
    State(st): St,
    Query(q): Query<RolloutListQuery>,
) -> ApiResult<Json<Vec<crate::views_pools::RolloutSummary>>> {
    let hub = st.hub.clone();
    blocking(move || {
        Ok(Json(
            hub.store
                .rollouts()?
                .iter()
                .filter(|r| q.workflow.as_deref().is_none_or(|w| w == r.workflow))
                .filter(|r| q.active.is_none_or(|a| a == r.active))
                .map(crate::views_pools::RolloutSummary::new)
                .collect(),
        ))
    })
    .await
}

async fn rollout_history(
    State(st): St,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<crate::views_pools::RolloutSummary>>> {
    let hub = st.hub.clone();
    blocking(move || {
        hub.store.workflow(&name)?;
        Ok(Json(
            hub.store
                .rollouts()?
                .iter()
                .filter(|r| r.workflow == name)
                .map(crate::views_pools::RolloutSummary::new)
                .collect(),
        ))
    })
    .await
}

async fn rollout_status(
    State(st): St,
    Path((name, pool)): Path<(String, String)>,
) -> ApiResult<Json<crate::views_pools::RolloutStatusView>> {
    let hub = st.hub.clone();
    blocking(move || {
        let rec = hub.find_rollout(&name, &pool)?;
        let (status, spec) = hub.rollout_status(&rec)?;
        Ok(Json(crate::views_pools::RolloutStatusView::new(
            &rec, &status, &spec,
        )))
    })
    .await
}

async fn rollout_command(
    State(st): St,
    headers: axum::http::HeaderMap,
    Path((name, pool, command)): Path<(String, String, String)>,
) -> ApiResult<Json<crate::views_pools::RolloutSummary>> {
    let actor = actor_of(&headers)?;
    let cmd = match command.as_str() {
        "pause" => outpost_rollout::Command::Pause,
        "resume" => outpost_rollout::Command::Resume,
        "promote" => outpost_rollout::Command::Promote,
        "abort" => outpost_rollout::Command::Abort,
        other => {
            return Err(ApiError::bad(format!(
                "unknown rollout command {other:?} (pause, resume, promote, abort)"
            )));
        }
    };
    let hub = st.hub.clone();
    blocking(move || {
        let rec = hub.rollout_command(&name, &pool, cmd, &actor)?;
        hub.rollout_wake.notify_one();
        Ok(Json(crate::views_pools::RolloutSummary::new(&rec)))
    })
    .await
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit_log(
    State(st): St,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<crate::views_pools::AuditView>>> {
    let hub = st.hub.clone();
    blocking(move || {
        Ok(Json(
            hub.store
                .audit_log(q.limit.unwrap_or(100).min(100_000))?
                .into_iter()
                .map(|e| crate::views_pools::AuditView {
                    seq: e.seq,
                    at: rfc3339(e.at_ms),
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    detail: e.detail,
                })
                .collect(),
        ))
    })
    .await
}

/// `POST /v1/backup`: a consistent copy of the hub store (one read transaction copied into a
/// fresh redb file, see `store/backup.rs`), as the response body. Audited.
async fn backup(State(st): St, headers: axum::http::HeaderMap) -> ApiResult<Response> {
    let actor = actor_of(&headers)?;
    let hub = st.hub.clone();
    let bytes = blocking(move || {
        let dir = hub
            .store
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".backup-{}.redb",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let result = hub
            .store
            .backup_to(&tmp)
            .map_err(ApiError::from)
            .and_then(|_| {
                std::fs::read(&tmp)
                    .map_err(|e| ApiError::internal(format!("reading the backup copy: {e}")))
            });
        let _ = std::fs::remove_file(&tmp);
        let bytes = result?;
        hub.store.audit(
            &actor,
            "hub.backup",
            "hub.redb",
            &format!("{} bytes", bytes.len()),
            crate::hub::now_ms(),
        )?;
        Ok(bytes)
    })
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}
