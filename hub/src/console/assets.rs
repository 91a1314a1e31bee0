//! The console's two static files, embedded in the binary: one stylesheet and one script of our
//! own (no framework, no CDN, no fonts). Their paths carry the hub's version, so a new hub is
//! never served a cached file of an old one.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::ConsoleState;

/// The stylesheet.
pub(crate) const CSS: &str = include_str!("assets/console.css");
/// The script: live updates from the server's change events, log following, confirmations.
pub(crate) const JS: &str = include_str!("assets/console.js");

/// Where the stylesheet is served.
pub(crate) const CSS_PATH: &str = concat!("/ui/static/", env!("CARGO_PKG_VERSION"), "/console.css");
/// Where the script is served.
pub(crate) const JS_PATH: &str = concat!("/ui/static/", env!("CARGO_PKG_VERSION"), "/console.js");

pub(super) fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route(
            CSS_PATH,
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=86400"),
                    ],
                    CSS,
                )
                    .into_response()
            }),
        )
        .route(
            JS_PATH,
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=86400"),
                    ],
                    JS,
                )
                    .into_response()
            }),
        )
}
