//! `/v1/audit` (the log, its chain's verification, its export as JSON lines) and `/v1/backup`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{Actor, ApiResult, ApiState, St, blocking};
use crate::views::rfc3339;
use crate::views::{AuditExportLine, AuditVerifyView, AuditView};

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/audit", get(log))
        .route("/v1/audit/verify", get(verify))
        .route("/v1/audit/export", get(export))
        .route("/v1/backup", post(backup))
        .route("/v1/store/compact", post(compact))
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

/// `GET /v1/audit/verify`: walk the whole hash chain.
async fn verify(State(st): St) -> ApiResult<Json<AuditVerifyView>> {
    let hub = st.hub.clone();
    let v = blocking(move || hub.verify_audit()).await?;
    Ok(Json(AuditVerifyView {
        ok: v.broken.is_none(),
        entries: v.entries,
        head: hex::encode(v.head),
        broken_seq: v.broken.as_ref().map(|b| b.seq),
        reason: v.broken.map(|b| b.reason),
    }))
}

#[derive(Deserialize)]
struct ExportQuery {
    /// First seq (default 1).
    from: Option<u64>,
    /// Most entries (default and cap 100,000; page on with `from`).
    limit: Option<usize>,
}

/// `GET /v1/audit/export`: entries as JSON lines (`application/x-ndjson`), one object each with
/// its hash and the previous entry's, oldest first.
async fn export(State(st): St, Query(q): Query<ExportQuery>) -> ApiResult<Response> {
    let hub = st.hub.clone();
    let (from, limit) = (q.from.unwrap_or(1), q.limit.unwrap_or(100_000).min(100_000));
    let entries = blocking(move || hub.audit_range(from, limit)).await?;
    let mut body = String::new();
    for e in entries {
        let line = AuditExportLine {
            seq: e.seq,
            at: rfc3339(e.at_ms),
            at_ms: e.at_ms,
            prev_hash: e.prev_hash.map(|h| hex::encode(*h)).unwrap_or_default(),
            hash: e.hash.map(|h| hex::encode(*h)).unwrap_or_default(),
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
        };
        let json = serde_json::to_string(&line)
            .map_err(|e| super::ApiError::internal(format!("encoding an audit entry: {e}")))?;
        body.push_str(&json);
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `POST /v1/backup`: a consistent copy of the hub store (one read transaction copied into a
/// fresh redb file, see `store/backup.rs`), as the response body. Audited.
async fn backup(State(st): St, actor: Actor) -> ApiResult<Response> {
    let hub = st.hub.clone();
    let bytes = blocking(move || hub.backup(actor.as_str())).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `POST /v1/store/compact`: compact the store file while the hub serves; answers its size
/// before and after (`{"file", "bytes_before", "bytes_after"}`). Audited.
async fn compact(State(st): St, actor: Actor) -> ApiResult<Json<serde_json::Value>> {
    let hub = st.hub.clone();
    let (file, (before, after)) = blocking(move || {
        let file = hub.store().path().display().to_string();
        hub.compact_store(actor.as_str()).map(|r| (file, r))
    })
    .await?;
    Ok(Json(serde_json::json!({
        "file": file, "bytes_before": before, "bytes_after": after,
    })))
}
