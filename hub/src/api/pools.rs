//! `/v1/pools` and the per-pool decisions of a workflow (deploy, pin, unpin).

use std::collections::HashSet;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{Actor, ApiError, ApiResult, ApiState, St, blocking, check_pool};
use crate::ops::OpError;
use crate::store::{AgentRecord, DEFAULT_POOL_PREFIX, PoolDecision, PoolRecord, selector_matches};
use crate::views::{
    DecisionView, MemberView, PoolCreate, PoolDetail, PoolVersionRequest, PoolView,
};
use crate::views::{label_map, rfc3339};

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/pools", post(create).get(list))
        .route("/v1/pools/{name}", get(show).delete(remove))
        .route("/v1/workflows/{name}/deploy", post(deploy))
        .route("/v1/workflows/{name}/pin", post(pin))
        .route("/v1/workflows/{name}/unpin", post(unpin))
}

fn pool_view(
    p: &PoolRecord,
    agents: &[AgentRecord],
    decisions: &[((String, String), PoolDecision)],
    connected: &HashSet<String>,
) -> PoolView {
    let members: Vec<&AgentRecord> = agents
        .iter()
        .filter(|a| a.revoked_ms.is_none() && selector_matches(&p.selector, &a.labels))
        .collect();
    PoolView {
        name: p.name.clone(),
        selector: label_map(&p.selector),
        members: members.len(),
        online: members.iter().filter(|a| connected.contains(&a.id)).count(),
        default: p.name.starts_with(DEFAULT_POOL_PREFIX),
        workflows: decisions
            .iter()
            .filter(|((_, pool), _)| *pool == p.name)
            .map(|((w, _), d)| DecisionView::new(w, d))
            .collect(),
        created: rfc3339(p.created_ms),
        created_by: p.created_by.clone(),
    }
}

fn connected_ids(hub: &crate::hub::Hub) -> HashSet<String> {
    hub.connected().into_iter().map(|(id, _)| id).collect()
}

async fn create(
    State(st): St,
    actor: Actor,
    Json(req): Json<PoolCreate>,
) -> ApiResult<Json<PoolView>> {
    let hub = st.hub.clone();
    let view = blocking(move || {
        let p = hub.create_pool(
            actor.as_str(),
            &req.name,
            req.selector.into_iter().collect(),
        )?;
        Ok::<_, OpError>(pool_view(&p, &hub.agents()?, &[], &connected_ids(&hub)))
    })
    .await?;
    Ok(Json(view))
}

async fn list(State(st): St) -> ApiResult<Json<Vec<PoolView>>> {
    let hub = st.hub.clone();
    let views = blocking(move || {
        let agents = hub.agents()?;
        let decisions = hub.decisions()?;
        let connected = connected_ids(&hub);
        Ok::<_, OpError>(
            hub.pools()?
                .iter()
                .map(|p| pool_view(p, &agents, &decisions, &connected))
                .collect(),
        )
    })
    .await?;
    Ok(Json(views))
}

async fn show(State(st): St, Path(name): Path<String>) -> ApiResult<Json<PoolDetail>> {
    let hub = st.hub.clone();
    let detail = blocking(move || {
        let p = hub.pool(&name)?;
        let agents = hub.agents()?;
        let decisions = hub.decisions()?;
        let connected = connected_ids(&hub);
        let mut members = Vec::new();
        for a in agents
            .iter()
            .filter(|a| a.revoked_ms.is_none() && selector_matches(&p.selector, &a.labels))
        {
            members.push(MemberView {
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
        Ok::<_, OpError>(PoolDetail {
            pool: pool_view(&p, &agents, &decisions, &connected),
            agents: members,
        })
    })
    .await?;
    Ok(Json(detail))
}

async fn remove(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let hub = st.hub.clone();
    let n = name.clone();
    blocking(move || hub.delete_pool(actor.as_str(), &n)).await?;
    Ok(Json(serde_json::json!({"deleted": name})))
}

async fn deploy(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
    Json(req): Json<PoolVersionRequest>,
) -> ApiResult<Json<DecisionView>> {
    check_pool(&st, &actor, &req.pool).await?;
    let hub = st.hub.clone();
    let n = name.clone();
    let d = blocking(move || hub.deploy(actor.as_str(), &n, &req.pool, req.version)).await?;
    Ok(Json(DecisionView::new(&name, &d)))
}

async fn pin(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
    Json(req): Json<PoolVersionRequest>,
) -> ApiResult<Json<DecisionView>> {
    let version = req
        .version
        .ok_or_else(|| ApiError::bad("pin needs a version"))?;
    check_pool(&st, &actor, &req.pool).await?;
    let hub = st.hub.clone();
    let n = name.clone();
    let d = blocking(move || hub.pin(actor.as_str(), &n, &req.pool, version)).await?;
    Ok(Json(DecisionView::new(&name, &d)))
}

async fn unpin(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
    Json(req): Json<PoolVersionRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    check_pool(&st, &actor, &req.pool).await?;
    let hub = st.hub.clone();
    let (n, pool) = (name.clone(), req.pool.clone());
    let changed = blocking(move || hub.unpin(actor.as_str(), &n, &pool)).await?;
    Ok(Json(
        serde_json::json!({"workflow": name, "pool": req.pool, "unpinned": changed}),
    ))
}
