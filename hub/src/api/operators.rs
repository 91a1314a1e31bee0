//! `/v1/operators` (create, list, revoke operator credentials) and `/v1/whoami`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{Actor, ApiError, ApiResult, ApiState, St, blocking};
use crate::store::{OperatorRecord, Role};
use crate::views::{
    OperatorCreate, OperatorCreated, OperatorRevoked, OperatorView, WhoAmI, rfc3339,
};

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/operators", post(create).get(list))
        .route("/v1/operators/{name}/revoke", post(revoke))
        .route("/v1/whoami", get(whoami))
}

fn view(r: &OperatorRecord) -> OperatorView {
    OperatorView {
        name: r.name.clone(),
        role: r.role.to_string(),
        pools: r.pools.clone(),
        id: r.id.clone(),
        created: rfc3339(r.created_ms),
        created_by: r.created_by.clone(),
        revoked: r.revoked_ms.map(rfc3339),
    }
}

async fn create(
    State(st): St,
    actor: Actor,
    Json(req): Json<OperatorCreate>,
) -> ApiResult<Json<OperatorCreated>> {
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad(format!(
            "unknown role {:?} (viewer, operator, deployer or admin)",
            req.role
        ))
    })?;
    let hub = st.hub.clone();
    let (rec, credential) =
        blocking(move || hub.create_operator(actor.as_str(), &req.name, role, req.pools)).await?;
    Ok(Json(OperatorCreated {
        operator: view(&rec),
        credential,
    }))
}

async fn list(State(st): St) -> ApiResult<Json<Vec<OperatorView>>> {
    let hub = st.hub.clone();
    let mut ops = blocking(move || hub.operators()).await?;
    ops.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
    Ok(Json(ops.iter().map(view).collect()))
}

async fn revoke(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Json<OperatorRevoked>> {
    let hub = st.hub.clone();
    let n = name.clone();
    let revoked = blocking(move || hub.revoke_operator(actor.as_str(), &n)).await?;
    Ok(Json(OperatorRevoked { name, revoked }))
}

async fn whoami(actor: Actor) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: actor.name,
        role: actor.role.to_string(),
        pools: actor.pools,
    })
}
