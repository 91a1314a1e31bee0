//! The operator HTTP API (axum), JSON in and out, JSON errors `{error}`, a body size limit.
//! `GET /v1/health` is the only unauthenticated path. Every other request presents an operator
//! credential (`Authorization: Bearer opo1.<id>.<secret>`, found by id, compared by hash in
//! constant time, refused once revoked); its role must reach the route's
//! ([`actor::required_role`], else 403, audited as `access.denied`).
//!
//! One file per resource (`workflows`, `agents`, `runs`, `pools`, `rollouts`, `tokens`,
//! `audit`, `operators`), each declaring its routes (`routes()`), merged into one router
//! ([`router`]), one error type ([`ApiError`]) and one actor extractor ([`Actor`], the
//! authenticated credential) on every write. A handler decodes the request, calls one operation of
//! [`crate::ops`] and encodes its result: the operations commit, audit, notify sessions and
//! emit the domain events. Store work runs on the blocking pool; commands to agents are
//! refused at once for an agent that is not connected (never queued).

mod actor;
mod agents;
pub mod alerts;
mod audit;
mod certificates;
mod channels;
mod error;
mod metrics;
mod operators;
mod pools;
mod releases;
mod rollouts;
mod runs;
mod tokens;
mod workflows;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub use actor::{Actor, required_role};
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

/// The API router for `hub`: operator credentials of its store authenticate requests.
pub fn router(hub: Arc<Hub>) -> Router {
    let state = Arc::new(ApiState { hub });
    let authed = Router::new()
        .merge(workflows::routes())
        .merge(agents::routes())
        .merge(runs::routes())
        .merge(pools::routes())
        .merge(rollouts::routes())
        .merge(tokens::routes())
        .merge(releases::routes())
        .merge(audit::routes())
        .merge(operators::routes())
        .merge(certificates::routes())
        .merge(channels::routes())
        .merge(alerts::routes())
        .merge(metrics::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/v1/health", get(health))
        .route("/openapi.yaml", get(openapi))
        .merge(authed)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn auth(State(st): St, mut req: Request, next: Next) -> Response {
    let credential = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let hub = st.hub.clone();
    let found = match credential {
        None => Ok(None),
        Some(c) => blocking(move || hub.authenticate_operator(&c)).await,
    };
    let rec = match found {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing, unknown or revoked operator credential (Authorization: Bearer \
                 opo1.<id>.<secret>)",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let needed = required_role(req.method(), &path);
    if rec.role < needed {
        // The request as made (e.g. which workflow), for the operator and the audit log.
        let what = format!("{} {}", req.method(), req.uri().path());
        let message = format!(
            "operator {} (role {}) may not {what}: it needs role {needed}",
            rec.name, rec.role
        );
        let hub = st.hub.clone();
        let (name, detail) = (
            rec.name.clone(),
            format!("role {}, needs {needed}", rec.role),
        );
        if let Err(e) = blocking(move || hub.audit_denied(&name, &what, &detail)).await {
            return e.into_response();
        }
        return ApiError::new(StatusCode::FORBIDDEN, message).into_response();
    }
    req.extensions_mut().insert(Actor::of(&rec));
    next.run(req).await
}

/// Refuse (403) an action on `pool` by a deployer limited to other pools; the refusal is
/// audited (`access.denied`) like a role's.
async fn check_pool(st: &ApiState, actor: &Actor, pool: &str) -> ApiResult<()> {
    let Err(e) = actor.may_act_on_pool(pool) else {
        return Ok(());
    };
    let hub = st.hub.clone();
    let (name, what) = (actor.name.clone(), format!("pool {pool}"));
    let detail = format!("limited to pools {}", actor.pools.join(","));
    blocking(move || hub.audit_denied(&name, &what, &detail)).await?;
    Err(e)
}

/// The API's OpenAPI 3 description (docs/openapi.yaml), served at `/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI).into_response()
}

async fn health(State(st): St) -> Json<Health> {
    let gate = st.hub.leader();
    let acting = gate.acting();
    Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").into(),
        hub_name: st.hub.hub_name().to_string(),
        role: match (gate.is_ha(), acting) {
            (false, _) => "embedded",
            (true, Some(_)) => "leader",
            (true, None) => "follower",
        }
        .into(),
        epoch: acting.filter(|_| gate.is_ha()),
    })
}
