//! `/v1/tokens`: create, list, revoke bootstrap tokens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};

use super::{Actor, ApiResult, ApiState, St, blocking};
use crate::hub::now_ms;
use crate::views::*;

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/tokens", post(create).get(list))
        .route("/v1/tokens/{id}/revoke", post(revoke))
}

async fn create(
    State(st): St,
    actor: Actor,
    body: Option<Json<TokenRequest>>,
) -> ApiResult<Json<TokenResponse>> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let hub = st.hub.clone();
    let t = blocking(move || {
        hub.create_token(
            actor.as_str(),
            req.labels.into_iter().collect(),
            req.ttl.as_deref(),
            req.uses,
        )
    })
    .await?;
    Ok(Json(TokenResponse {
        token: t.token,
        expires: rfc3339(t.expires_ms),
        id: t.id,
        uses: t.uses,
    }))
}

async fn list(State(st): St) -> ApiResult<Json<Vec<TokenView>>> {
    let hub = st.hub.clone();
    let tokens = blocking(move || hub.tokens()).await?;
    let now = now_ms();
    let mut out: Vec<TokenView> = tokens
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
}

async fn revoke(
    State(st): St,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenRevokeResponse>> {
    let hub = st.hub.clone();
    let i = id.clone();
    let revoked = blocking(move || hub.revoke_token(actor.as_str(), &i)).await?;
    Ok(Json(TokenRevokeResponse { id, revoked }))
}
