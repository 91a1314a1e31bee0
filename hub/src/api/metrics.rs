//! `/metrics`: the hub's Prometheus metrics (OpenMetrics text, see [`crate::metrics`]). Like
//! every route but `/v1/health`, it needs an operator credential: a viewer's, which Prometheus
//! sends as a bearer token (`authorization: {credentials_file: ...}` in its scrape config).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{ApiResult, ApiState, St, blocking};

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new().route("/metrics", get(scrape))
}

/// OpenMetrics to a scraper that asks for it (Prometheus does), else the classic text format.
async fn scrape(State(st): St, headers: HeaderMap) -> ApiResult<Response> {
    let hub = st.hub.clone();
    let text = blocking(move || hub.metrics_text()).await?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if crate::metrics::wants_openmetrics(accept) {
        return Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response());
    }
    let classic = crate::metrics::classic_text(&text);
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CLASSIC_CONTENT_TYPE)],
        classic,
    )
        .into_response())
}
