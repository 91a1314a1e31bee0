//! `/v1/agents`: list, show, revoke, labels, rename, decommission. `{id}` is an agent's id or
//! its name.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{Actor, ApiResult, ApiState, St, blocking};
use crate::store::AgentRecord;
use crate::views::LabelRequest;
use crate::views::*;

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/agents", get(list))
        .route("/v1/agents/{id}", get(show))
        .route("/v1/agents/{id}/revoke", post(revoke))
        .route("/v1/agents/{id}/labels", post(label))
        .route("/v1/agents/{id}/rename", post(rename))
        .route("/v1/agents/{id}/decommission", post(decommission))
}

fn agent_view(a: &AgentRecord, connected: &[(String, i64)]) -> AgentView {
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
        name: a.name.clone(),
        decommissioned: a.decommissioned_ms.map(rfc3339),
    }
}

async fn list(State(st): St) -> ApiResult<Json<Vec<AgentView>>> {
    let hub = st.hub.clone();
    let (agents, connected) =
        blocking(move || Ok::<_, crate::ops::OpError>((hub.agents()?, hub.connected()))).await?;
    Ok(Json(
        agents.iter().map(|a| agent_view(a, &connected)).collect(),
    ))
}

async fn show(State(st): St, Path(id): Path<String>) -> ApiResult<Json<AgentDetail>> {
    let hub = st.hub.clone();
    let lead = st.hub.cert_policy().warning_lead;
    let (a, deploys, connected) = blocking(move || {
        let a = hub.agent(&id)?;
        let connected = hub.connected();
        let deploys = hub.deploy_results(&id)?;
        Ok::<_, crate::ops::OpError>((a, deploys, connected))
    })
    .await?;
    let deploys = deploys
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
        clock_offset_ms: a.clock_offset.map(|c| c.0),
        clock_measured: a.clock_offset.map(|c| rfc3339(c.1)),
        deploys,
        cert_expires: a.cert_not_after_ms.map(rfc3339),
        cert_warning: a
            .cert_not_after_ms
            .filter(|na| {
                a.revoked_ms.is_none() && crate::certs::expiring(*na, crate::hub::now_ms(), lead)
            })
            .map(|na| format!("certificate expires at {} and is not renewed", rfc3339(na))),
        pinned_roots: a.pinned_roots.clone().unwrap_or_default(),
    }))
}

async fn revoke(
    State(st): St,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<RevokeResponse>> {
    let hub = st.hub.clone();
    let (id, revoked) = blocking(move || {
        let id = hub.resolve_agent(&id)?;
        let revoked = hub.revoke_agent(actor.as_str(), &id)?;
        Ok::<_, crate::ops::OpError>((id, revoked))
    })
    .await?;
    Ok(Json(RevokeResponse { id, revoked }))
}

async fn label(
    State(st): St,
    actor: Actor,
    Path(id): Path<String>,
    Json(req): Json<LabelRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let hub = st.hub.clone();
    let set: Vec<(String, String)> = req.set.into_iter().collect();
    let (id, labels) = blocking(move || {
        let id = hub.resolve_agent(&id)?;
        let labels = hub.label_agent(actor.as_str(), &id, &set, &req.remove)?;
        Ok::<_, crate::ops::OpError>((id, labels))
    })
    .await?;
    Ok(Json(
        serde_json::json!({"id": id, "labels": label_map(&labels)}),
    ))
}

async fn rename(
    State(st): St,
    actor: Actor,
    Path(id): Path<String>,
    Json(req): Json<RenameRequest>,
) -> ApiResult<Json<RenameResponse>> {
    let hub = st.hub.clone();
    let name = req.name.clone();
    let (id, old_name) = blocking(move || hub.rename_agent(actor.as_str(), &id, &name)).await?;
    Ok(Json(RenameResponse {
        id,
        old_name,
        name: req.name,
    }))
}

async fn decommission(
    State(st): St,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<DecommissionResponse>> {
    let hub = st.hub.clone();
    let d = blocking(move || hub.decommission_agent(actor.as_str(), &id)).await?;
    Ok(Json(DecommissionResponse {
        id: d.id,
        decommissioned: d.changed,
        freed_name: d.freed_name,
        assignments_removed: d.assignments,
    }))
}
