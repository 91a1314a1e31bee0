//! `/v1/releases` (versions waiting for release signatures; adding signatures) and `/v1/root`
//! (the root metadata: read it, publish the next version).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use outpost_common::trust::{RootBody, Signature, SignedRoot};

use super::{Actor, ApiError, ApiResult, ApiState, St, blocking};
use crate::store::PendingVersion;
use crate::views::*;

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/releases", get(list))
        .route("/v1/releases/{name}", get(show))
        .route("/v1/releases/{name}/signatures", post(sign))
        .route("/v1/root", get(root).post(publish))
}

fn pending_view(p: PendingVersion, needed: u32, full: bool) -> PendingView {
    PendingView {
        workflow: p.name,
        version: p.version,
        content_hash: p.content_hash,
        applied: rfc3339(p.created_ms),
        applied_by: p.applied_by,
        origin: p.origin,
        signed_by: p.signatures.into_iter().map(|s| s.key_id).collect(),
        needed,
        header_hex: full.then(|| hex::encode(&p.header_bytes)),
        content: full.then(|| String::from_utf8_lossy(&p.content).into_owned()),
    }
}

fn threshold(root: Option<(SignedRoot, RootBody)>) -> u32 {
    root.map(|(_, b)| b.release.threshold).unwrap_or(0)
}

async fn list(State(st): St) -> ApiResult<Json<Vec<PendingView>>> {
    let hub = st.hub.clone();
    let (pending, root) = blocking(move || {
        Ok::<_, crate::ops::OpError>((hub.pending_versions()?, hub.current_root()?))
    })
    .await?;
    let needed = threshold(root);
    Ok(Json(
        pending
            .into_iter()
            .map(|p| pending_view(p, needed, false))
            .collect(),
    ))
}

async fn show(State(st): St, Path(name): Path<String>) -> ApiResult<Json<PendingView>> {
    let hub = st.hub.clone();
    let n = name.clone();
    let (pending, root) = blocking(move || {
        Ok::<_, crate::ops::OpError>((hub.pending_version(&n)?, hub.current_root()?))
    })
    .await?;
    let p = pending
        .ok_or_else(|| ApiError::not_found(format!("{name} has no version waiting for release")))?;
    Ok(Json(pending_view(p, threshold(root), true)))
}

async fn sign(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
    Json(req): Json<ReleaseSignRequest>,
) -> ApiResult<Json<ReleaseSignResponse>> {
    let mut sigs = Vec::with_capacity(req.signatures.len());
    for s in req.signatures {
        let sig = hex::decode(&s.sig)
            .map_err(|_| ApiError::bad(format!("signature by {} is not hex", s.key_id)))?;
        sigs.push(Signature {
            key_id: s.key_id,
            sig,
        });
    }
    let hub = st.hub.clone();
    let status =
        blocking(move || hub.release_sign(actor.as_str(), &name, req.version, sigs)).await?;
    Ok(Json(ReleaseSignResponse {
        workflow: status.workflow,
        version: status.version,
        signed_by: status.signed_by,
        needed: status.needed,
        released: status.released,
    }))
}

/// The JSON view of a root.
pub fn root_view(signed: &SignedRoot, b: &RootBody) -> RootView {
    let role = |r: &outpost_common::trust::RoleKeys| RoleView {
        key_ids: r.key_ids.clone(),
        threshold: r.threshold,
    };
    RootView {
        version: b.version,
        issued: rfc3339(b.issued_ms),
        expires: rfc3339(b.expires_ms),
        root: role(&b.root),
        release: role(&b.release),
        director: role(&b.director),
        reset_counters: b.reset_counters,
        signed_hex: hex::encode(minicbor::to_vec(signed).unwrap_or_default()),
    }
}

async fn root(State(st): St) -> ApiResult<Json<RootView>> {
    let hub = st.hub.clone();
    let r = blocking(move || hub.current_root()).await?;
    let (signed, body) = r.ok_or_else(|| ApiError::not_found("no root metadata published"))?;
    Ok(Json(root_view(&signed, &body)))
}

async fn publish(
    State(st): St,
    actor: Actor,
    Json(req): Json<RootPublishRequest>,
) -> ApiResult<Json<RootView>> {
    let bytes =
        hex::decode(req.signed_hex.trim()).map_err(|_| ApiError::bad("signed_hex is not hex"))?;
    let signed: SignedRoot = minicbor::decode(&bytes)
        .map_err(|e| ApiError::bad(format!("not signed root metadata: {e}")))?;
    let hub = st.hub.clone();
    let s2 = signed.clone();
    let body = blocking(move || hub.publish_root(actor.as_str(), &s2)).await?;
    Ok(Json(root_view(&signed, &body)))
}
