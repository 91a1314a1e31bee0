//! The operator HTTP API (axum), JSON in and out, bearer-token auth
//! (constant-time comparison), JSON errors `{error}`, a body size limit. `GET /v1/health` is the
//! only unauthenticated path.
//!
//! One file per resource (`workflows`, `agents`, `runs`, `pools`, `rollouts`, `tokens`,
//! `audit`), one router ([`router`]), one error type ([`ApiError`]) and one actor
//! extractor ([`Actor`]) on every write. A handler decodes the request, calls one operation of
//! [`crate::ops`] and encodes its result: the operations commit, audit, notify sessions and
//! emit the domain events. Store work runs on the blocking pool; commands to agents are
//! refused at once for an agent that is not connected (never queued).

mod actor;
mod agents;
mod audit;
mod error;
mod pools;
mod rollouts;
mod runs;
mod tokens;
mod workflows;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use actor::{ACTOR_HEADER, Actor};
pub use error::ApiError;
pub use rollouts::plan_of;
pub use runs::parse_since;

use crate::hub::Hub;
use crate::views::Health;

/// Largest request body accepted.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

type ApiResult<T> = Result<T, ApiError>;

struct ApiState {
    hub: Arc<Hub>,
    token_hash: blake3::Hash,
}

type St = State<Arc<ApiState>>;

/// Run a synchronous operation on the blocking pool.
async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("internal task failed: {e}")))?
        .map_err(Into::into)
}

/// The API router for `hub`, accepting `api_token` as the bearer token.
pub fn router(hub: Arc<Hub>, api_token: &str) -> Router {
    let state = Arc::new(ApiState {
        hub,
        token_hash: blake3::hash(api_token.as_bytes()),
    });
    let authed = Router::new()
        .route("/v1/workflows", post(workflows::apply).get(workflows::list))
        .route("/v1/workflows/{name}", get(workflows::show))
        .route("/v1/workflows/{name}/history", get(workflows::history))
        .route("/v1/workflows/{name}/diff", get(workflows::diff))
        .route("/v1/workflows/{name}/rollback", post(workflows::rollback))
        .route("/v1/workflows/{name}/pause", post(workflows::pause))
        .route("/v1/workflows/{name}/resume", post(workflows::resume))
        .route("/v1/workflows/{name}/trigger", post(workflows::trigger))
        .route("/v1/agents", get(agents::list))
        .route("/v1/agents/{id}", get(agents::show))
        .route("/v1/agents/{id}/revoke", post(agents::revoke))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{id}/revoke", post(tokens::revoke))
        .route("/v1/runs", get(runs::list))
        .route("/v1/runs/{id}", get(runs::show))
        .route("/v1/runs/{id}/logs/{task}", get(runs::logs))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/pools", post(pools::create).get(pools::list))
        .route("/v1/pools/{name}", get(pools::show).delete(pools::delete))
        .route("/v1/agents/{id}/labels", post(agents::label))
        .route("/v1/workflows/{name}/deploy", post(pools::deploy))
        .route("/v1/workflows/{name}/pin", post(pools::pin))
        .route("/v1/workflows/{name}/unpin", post(pools::unpin))
        .route("/v1/workflows/{name}/rollouts", get(rollouts::history))
        .route(
            "/v1/workflows/{name}/pools/{pool}/rollout",
            get(rollouts::status),
        )
        .route(
            "/v1/workflows/{name}/pools/{pool}/rollout/{command}",
            post(rollouts::command),
        )
        .route("/v1/rollouts", post(rollouts::start).get(rollouts::list))
        .route("/v1/audit", get(audit::log))
        .route("/v1/backup", post(audit::backup))
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
pub const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI).into_response()
}

async fn health(State(st): St) -> Json<Health> {
    Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").into(),
        hub_name: st.hub.hub_name().to_string(),
    })
}
