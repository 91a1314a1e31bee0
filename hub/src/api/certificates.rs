//! `/v1/certificates`: the certificate lifecycle as the hub sees it.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::{ApiResult, ApiState, St, blocking};
use crate::views::CertificatesView;

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new().route("/v1/certificates", get(show))
}

async fn show(State(st): St) -> ApiResult<Json<CertificatesView>> {
    let hub = st.hub.clone();
    let view =
        blocking(move || crate::certs::certificates_view(&hub).map_err(crate::ops::OpError::from))
            .await?;
    Ok(Json(view))
}
