//! `/v1/alerts/channels`: the configured alert channels (no secrets), and a test notification
//! sent now to one of them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{Actor, ApiResult, ApiState, St, blocking};
use crate::channels::ChannelInfo;
use crate::ops::channels::ChannelTestView;

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/alerts/channels", get(list))
        .route("/v1/alerts/channels/{name}/test", post(test))
}

async fn list(State(st): St) -> ApiResult<Json<Vec<ChannelInfo>>> {
    Ok(Json(st.hub.alert_channels()))
}

/// `POST /v1/alerts/channels/{name}/test`: 200 with the outcome (delivered or not); 404 for
/// a channel that is not configured.
async fn test(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Json<ChannelTestView>> {
    let hub = st.hub.clone();
    let view = blocking(move || hub.test_alert_channel(actor.as_str(), &name)).await?;
    Ok(Json(view))
}
