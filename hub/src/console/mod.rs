//! The web console: the fleet, the workflows, the runs, the rollouts, the alerts and the audit
//! log in a browser, served by the hub itself under `/ui/` (docs/console.md).
//!
//! Server-rendered HTML (maud: every value is escaped unless a constant says otherwise), plain
//! HTML forms for every action, one small script of our own for live updates (server-sent
//! events name what changed; the page refetches itself and swaps its live regions) and log
//! following, one stylesheet; all embedded in the binary (no CDN, no fonts, no second server).
//! A strict Content-Security-Policy allows only those files: no inline script or style.
//!
//! Sign-in takes an operator credential (`opo1.…`); the browser then holds a random session
//! secret in an HttpOnly, SameSite=Strict cookie (Secure when the hub speaks HTTPS) and the
//! store keeps only its hash ([`crate::store::console_sessions`]). Every request re-reads the
//! operator record, so a revoked credential ends its sessions at once. Every write is a POST
//! that carries the session's CSRF token and comes from our own origin ([`guard_write`]), and
//! is allowed by the role the matching API route needs ([`WRITES`], [`api::required_role`]):
//! the console and the API share one role table, one set of operations ([`crate::ops`]) and
//! one audit log.
//!
//! One file per area: [`fleet`] (agents), and the pages added beside it; [`layout`] draws the
//! frame of every page, [`i18n`] picks English or Simplified Chinese, [`live`] streams the
//! change notifications, [`session`] signs in and out.

mod alerts;
mod assets;
mod audit;
mod dag;
mod diff;
mod fleet;
mod gantt;
mod i18n;
mod layout;
mod live;
mod rollouts;
mod runs;
mod session;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{Markup, html};

pub use i18n::Lang;

use crate::api::{self, Actor, required_role};
use crate::hub::Hub;
use crate::store::Role;

/// The console's shared state.
pub(crate) struct ConsoleState {
    pub(crate) hub: Arc<Hub>,
    /// Whether the hub speaks HTTPS (the session cookie is then `Secure`).
    pub(crate) secure: bool,
}

type Cs = State<Arc<ConsoleState>>;

/// The console's routes, to be merged into the hub's HTTP router. `secure`: the hub serves
/// HTTPS.
pub fn router(hub: Arc<Hub>, secure: bool) -> Router {
    let state = Arc::new(ConsoleState { hub, secure });
    // Every POST but sign-in goes through the write guard (same origin, CSRF token, role).
    let writes = Router::new()
        .merge(session::write_routes())
        .merge(fleet::write_routes())
        .merge(runs::write_routes())
        .merge(workflows::write_routes())
        .merge(rollouts::write_routes())
        .merge(alerts::write_routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), guard_write));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/fleet") }))
        .merge(session::routes())
        .merge(assets::routes())
        .merge(live::routes())
        .merge(fleet::routes())
        .merge(runs::routes())
        .merge(workflows::routes())
        .merge(rollouts::routes())
        .merge(alerts::routes())
        .merge(audit::routes())
        .merge(writes)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// The console's write routes and the API route whose role each needs (`DELETE /v1/…`: an API
/// twin that is not a POST). A console POST route not listed here is refused (admin only would
/// be too lenient to guess).
pub(crate) const WRITES: &[(&str, &str)] = &[
    ("/ui/logout", ""),
    ("/ui/agents/{id}/labels", "/v1/agents/{id}/labels"),
    ("/ui/runs/{id}/cancel", "/v1/runs/{id}/cancel"),
    ("/ui/runs/{id}/retry", "/v1/runs/{id}/retry"),
    (
        "/ui/workflows/{name}/trigger",
        "/v1/workflows/{name}/trigger",
    ),
    ("/ui/workflows/{name}/pause", "/v1/workflows/{name}/pause"),
    ("/ui/workflows/{name}/resume", "/v1/workflows/{name}/resume"),
    (
        "/ui/rollouts/{workflow}/{pool}/{command}",
        "/v1/workflows/{name}/pools/{pool}/rollout/{command}",
    ),
    ("/ui/alerts/silences", "/v1/alerts/silences"),
    (
        "/ui/alerts/silences/{id}/remove",
        "DELETE /v1/alerts/silences/{id}",
    ),
];

/// The role a console write route needs: the role of the API route it mirrors (`None`: any
/// signed-in operator; unknown routes need more than any role has).
pub(crate) fn write_role(path: &str) -> Option<Option<Role>> {
    WRITES.iter().find(|(ui, _)| *ui == path).map(|(_, api)| {
        if api.is_empty() {
            None
        } else if let Some(path) = api.strip_prefix("DELETE ") {
            // An API twin that is not a POST names its method.
            Some(required_role(&Method::DELETE, path))
        } else {
            Some(required_role(&Method::POST, api))
        }
    })
}

/// A signed-in request: the operator, the language, the session's CSRF token.
pub(crate) struct Ctx {
    /// The operator (name, role, pools).
    pub(crate) actor: Actor,
    /// The page language.
    pub(crate) lang: Lang,
    /// The token every form carries.
    pub(crate) csrf: String,
    /// The hub.
    pub(crate) hub: Arc<Hub>,
    /// The request path with its query (for redirects back here).
    pub(crate) here: String,
}

impl Ctx {
    /// `en` or `zh`, by the page language.
    pub(crate) fn tr(&self, en: &'static str, zh: &'static str) -> &'static str {
        self.lang.tr(en, zh)
    }

    /// Whether the operator's role reaches `role` (pages hide controls it may not use; the
    /// server refuses them anyway).
    pub(crate) fn can(&self, role: Role) -> bool {
        self.actor.role >= role
    }

    /// Whether the operator may use the console write route `path` (see [`WRITES`]).
    pub(crate) fn may(&self, path: &str) -> bool {
        match write_role(path) {
            Some(None) => true,
            Some(Some(r)) => self.can(r),
            None => false,
        }
    }

    /// The hidden CSRF field of every form.
    pub(crate) fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

impl<S> FromRequestParts<S> for Ctx
where
    Arc<ConsoleState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let st = Arc::<ConsoleState>::from_ref(state);
        if let Some(ctx) = parts.extensions.get::<SignedIn>() {
            return Ok(ctx.to_ctx(&st, &parts.headers, &parts.uri));
        }
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/ui/".into());
        match session::signed_in(&st, &parts.headers).await {
            Ok(Some(s)) => {
                let ctx = s.to_ctx(&st, &parts.headers, &parts.uri);
                parts.extensions.insert(s);
                Ok(ctx)
            }
            Ok(None) => Err(session::to_sign_in(&here)),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// The session behind a request (put in its extensions once found).
#[derive(Clone)]
pub(crate) struct SignedIn {
    actor: Actor,
    csrf: String,
}

impl SignedIn {
    fn to_ctx(&self, st: &ConsoleState, headers: &HeaderMap, uri: &axum::http::Uri) -> Ctx {
        Ctx {
            actor: self.actor.clone(),
            lang: Lang::of(headers),
            csrf: self.csrf.clone(),
            hub: st.hub.clone(),
            here: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/ui/".into()),
        }
    }
}

/// Guard every console write: signed in, from our own origin (`Origin`, or `Sec-Fetch-Site`
/// where a browser sends no origin), carrying the session's CSRF token (form field `csrf` or
/// header `X-CSRF-Token`), and with the role of the route's API twin. A refusal by role is
/// audited as `access.denied`, like the API's.
async fn guard_write(State(st): Cs, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Ok(Some(s)) = session::signed_in(&st, &parts.headers).await else {
        return ConsoleError::new(StatusCode::UNAUTHORIZED, "not signed in").into_response();
    };
    if !same_origin(&parts.headers) {
        return ConsoleError::new(StatusCode::FORBIDDEN, "cross-site request refused")
            .into_response();
    }
    // Forms are small; the body is read here to check its token and handed on unchanged.
    let bytes = match axum::body::to_bytes(body, api::MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ConsoleError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                .into_response();
        }
    };
    let token = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            url_form(&bytes)
                .into_iter()
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v)
        });
    let token_ok = token.is_some_and(|t| {
        blake3::hash(t.as_bytes()) == blake3::hash(s.csrf.as_bytes()) && !s.csrf.is_empty()
    });
    if !token_ok {
        return ConsoleError::new(
            StatusCode::FORBIDDEN,
            "the form's security token does not match this session (reload the page)",
        )
        .into_response();
    }
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let allowed = match write_role(&path) {
        Some(None) => true,
        Some(Some(r)) => s.actor.role >= r,
        None => false,
    };
    if !allowed {
        let what = format!("POST {}", parts.uri.path());
        let needed = write_role(&path)
            .flatten()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "a listed console route".into());
        let detail = format!("role {}, needs {needed}", s.actor.role);
        let hub = st.hub.clone();
        let name = s.actor.name.clone();
        let audited =
            tokio::task::spawn_blocking(move || hub.audit_denied(&name, &what, &detail)).await;
        if let Ok(Err(e)) = audited {
            tracing::warn!("auditing a refused console write: {e}");
        }
        return ConsoleError::new(
            StatusCode::FORBIDDEN,
            format!(
                "operator {} (role {}) may not do this: it needs role {needed}",
                s.actor.name, s.actor.role
            ),
        )
        .into_response();
    }
    parts.extensions.insert(s);
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Whether a request comes from a page of this console: its `Origin` is this host, or the
/// browser says `Sec-Fetch-Site: same-origin`; a request with neither (not a browser) passes
/// on its CSRF token alone.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .is_some_and(|h| h == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Decode an `application/x-www-form-urlencoded` body (pairs in order).
pub(crate) fn url_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Headers on every console response: a strict CSP (only our own files; no inline script or
/// style), no framing, no sniffing, no referrer beyond this origin, no caching of pages.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/ui/static/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

/// A console error: a page with the message (English; operator-facing details from the ops
/// layer) and the status.
pub(crate) struct ConsoleError {
    status: StatusCode,
    message: String,
}

impl ConsoleError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ConsoleError {
        ConsoleError {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::ops::OpError> for ConsoleError {
    fn from(e: crate::ops::OpError) -> ConsoleError {
        let api: api::ApiError = e.into();
        ConsoleError {
            status: api.status(),
            message: api.message().to_string(),
        }
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> ConsoleError {
        api::ApiError::from(e).into()
    }
}

impl From<api::ApiError> for ConsoleError {
    fn from(api: api::ApiError) -> ConsoleError {
        ConsoleError {
            status: api.status(),
            message: api.message().to_string(),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let page = layout::bare(
            Lang::En,
            "Outpost",
            html! {
                main id="main" class="narrow" {
                    h1 { "Error " (self.status.as_u16()) }
                    p role="alert" class="error" { (self.message) }
                    p { a href="/ui/" { "Back to the console" } " · " a href="javascript:history.back()" { "Back" } }
                }
            },
        );
        (self.status, page).into_response()
    }
}

/// Results of console handlers.
pub(crate) type UiResult<T> = Result<T, ConsoleError>;

/// Run a synchronous store operation on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static, E: Into<ConsoleError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> UiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ConsoleError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal task failed: {e}"),
            )
        })?
        .map_err(Into::into)
}

/// After a write: back to `to` (a console path) with a notice shown once (`?done=`).
pub(crate) fn done(to: &str, notice: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    let url = format!("{to}{sep}done={}", enc(notice));
    Redirect::to(&url).into_response()
}

/// Percent-encode `s` for a URL path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A time for people: `2026-12-07 14:03:05 UTC` (the `datetime` attribute keeps RFC 3339).
pub(crate) fn time(ms: i64) -> Markup {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => html! {
            time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
                (t.format("%Y-%m-%d %H:%M:%S UTC"))
            }
        },
        None => html! { "-" },
    }
}

/// How long ago `ms` was, for people (`42 s`, `5 min`, `3 h`, `2 d`).
pub(crate) fn ago(now_ms: i64, ms: i64) -> String {
    let s = (now_ms - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

#[cfg(test)]
mod tests;
