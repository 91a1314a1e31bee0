//! `/v1/audit` and `/v1/backup`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{Actor, ApiResult, ApiState, St, blocking};
use crate::views::AuditView;
use crate::views::rfc3339;

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/audit", get(log))
        .route("/v1/backup", post(backup))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn log(State(st): St, Query(q): Query<AuditQuery>) -> ApiResult<Json<Vec<AuditView>>> {
    let hub = st.hub.clone();
    let entries = blocking(move || hub.audit_log(q.limit.unwrap_or(100).min(100_000))).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AuditView {
                seq: e.seq,
                at: rfc3339(e.at_ms),
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect(),
    ))
}

/// `POST /v1/backup`: a consistent copy of the hub store (one read transaction copied into a
/// fresh redb file, see `store/backup.rs`), as the response body. Audited.
async fn backup(State(st): St, actor: Actor) -> ApiResult<Response> {
    let hub = st.hub.clone();
    let bytes = blocking(move || hub.backup(actor.as_str())).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
