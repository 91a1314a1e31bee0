//! Signing in and out, and the language switch.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use super::i18n::{LANG_COOKIE, Lang, cookie};
use super::{ConsoleError, ConsoleState, Cs, SignedIn, UiResult, blocking, enc, layout, url_form};
use crate::api::Actor;

/// The name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "outpost_session";

pub(super) fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/ui/login", get(sign_in_page).post(sign_in))
        .route("/ui/lang", post(set_lang))
}

pub(super) fn write_routes() -> Router<Arc<ConsoleState>> {
    Router::new().route("/ui/logout", post(sign_out))
}

/// The session of a request's cookie, if it is live.
pub(super) async fn signed_in(
    st: &ConsoleState,
    headers: &HeaderMap,
) -> UiResult<Option<SignedIn>> {
    let Some(secret) = cookie(headers, SESSION_COOKIE).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let hub = st.hub.clone();
    let found = blocking(move || hub.console_session(&secret)).await?;
    Ok(found.map(|s| SignedIn {
        actor: Actor::of(&s.operator),
        csrf: s.csrf,
    }))
}

/// The redirect to the sign-in page, coming back to `here` after it.
pub(super) fn to_sign_in(here: &str) -> Response {
    Redirect::to(&format!("/ui/login?next={}", enc(here))).into_response()
}

/// Only console paths are followed after sign-in (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui/fleet".into(),
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn sign_in_form(lang: Lang, next: &str, error: Option<&str>) -> maud::Markup {
    layout::bare(
        lang,
        lang.tr("Sign in · Outpost", "登录 · Outpost"),
        html! {
            main id="main" class="narrow" {
                h1 { (lang.tr("Sign in to Outpost", "登录 Outpost")) }
                @if let Some(e) = error {
                    p role="alert" class="error" id="sign-in-error" { (e) }
                }
                form method="post" action="/ui/login" class="stack" {
                    input type="hidden" name="next" value=(next);
                    label for="credential" {
                        (lang.tr("Operator credential", "操作员凭据"))
                    }
                    input type="password" id="credential" name="credential" required
                        autocomplete="off" spellcheck="false" placeholder="opo1.…";
                    p class="hint" {
                        (lang.tr(
                            "The credential from `outpost-hub operator create` (or the one `outpost-hub dev` prints).",
                            "由 `outpost-hub operator create` 创建的凭据(或 `outpost-hub dev` 打印的凭据)。"
                        ))
                    }
                    button type="submit" id="sign-in" { (lang.tr("Sign in", "登录")) }
                }
                (layout::lang_switch(lang, "/ui/login"))
            }
        },
    )
}

async fn sign_in_page(headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let lang = Lang::of(&headers);
    sign_in_form(lang, &safe_next(q.next.as_deref()), None).into_response()
}

async fn sign_in(State(st): Cs, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let lang = Lang::of(&headers);
    // Login CSRF (signing a victim in as someone else): only from our own pages.
    if !super::same_origin(&headers) {
        return ConsoleError::new(StatusCode::FORBIDDEN, "cross-site request refused")
            .into_response();
    }
    let form = url_form(&body);
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
    };
    let next = safe_next(field("next").as_deref());
    let credential = field("credential").unwrap_or_default();
    let hub = st.hub.clone();
    let result = match blocking(move || hub.console_sign_in(&credential)).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some((secret, _)) = result else {
        let msg = lang.tr("Unknown or revoked credential.", "凭据无效或已被吊销。");
        return (
            StatusCode::UNAUTHORIZED,
            sign_in_form(lang, &next, Some(msg)),
        )
            .into_response();
    };
    let mut resp = Redirect::to(&next).into_response();
    set_cookie(&mut resp, SESSION_COOKIE, &secret, st.secure, None);
    resp
}

async fn sign_out(State(st): Cs, headers: HeaderMap) -> UiResult<Response> {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        let hub = st.hub.clone();
        blocking(move || hub.console_sign_out(&secret)).await?;
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    set_cookie(&mut resp, SESSION_COOKIE, "", st.secure, Some(0));
    Ok(resp)
}

/// `POST /ui/lang` (`lang`, `back`): keep the chosen language in a cookie, back to the page.
/// Open before sign-in (the sign-in page has the switch too); same origin only.
async fn set_lang(State(st): Cs, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !super::same_origin(&headers) {
        return ConsoleError::new(StatusCode::FORBIDDEN, "cross-site request refused")
            .into_response();
    }
    let form = url_form(&body);
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let lang = field("lang")
        .and_then(|l| Lang::parse(&l))
        .unwrap_or(Lang::En);
    let back = safe_next(field("back").as_deref());
    let mut resp = Redirect::to(&back).into_response();
    set_cookie(
        &mut resp,
        LANG_COOKIE,
        lang.code(),
        st.secure,
        Some(365 * 86400),
    );
    resp
}

/// Set a cookie: HttpOnly, SameSite=Strict, path `/`, Secure over HTTPS; `max_age` in seconds
/// (`None`: for the browser's session).
fn set_cookie(resp: &mut Response, name: &str, value: &str, secure: bool, max_age: Option<u64>) {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    match HeaderValue::from_str(&c) {
        Ok(v) => {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        Err(e) => tracing::warn!("console cookie not set: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/ui/runs?x=1")), "/ui/runs?x=1");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/fleet");
        assert_eq!(safe_next(Some("//evil.example/ui/")), "/ui/fleet");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui/fleet");
        assert_eq!(safe_next(Some("/ui/\\evil")), "/ui/fleet");
        assert_eq!(safe_next(None), "/ui/fleet");
    }
}
