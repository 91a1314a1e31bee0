//! The operator HTTP API (axum), JSON in and out, bearer-token auth
//! (constant-time comparison), JSON errors `{error}`, a body size limit. `GET /v1/health` is the
//! only unauthenticated path.
//!
//! One file per resource (`workflows`, `agents`, `runs`, `pools`, `rollouts`, `tokens`,
//! `audit`), each declaring its routes (`routes()`), merged into one router ([`router`]), one error type ([`ApiError`]) and one actor
//! extractor ([`Actor`]) on every write. A handler decodes the request, calls one operation of
//! [`crate::ops`] and encodes its result: the operations commit, audit, notify sessions and
//! emit the domain events. Store work runs on the blocking pool; commands to agents are
//! refused at once for an agent that is not connected (never queued).

mod actor;
mod agents;
mod audit;
mod certificates;
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
use axum::routing::get;
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
        .merge(workflows::routes())
        .merge(agents::routes())
        .merge(runs::routes())
        .merge(pools::routes())
        .merge(rollouts::routes())
        .merge(tokens::routes())
        .merge(audit::routes())
        .merge(certificates::routes())
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
