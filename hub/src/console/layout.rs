//! The frame of every page: the header with the navigation, the operator and the language
//! switch; the main region; the live-update wiring (`data-live` on `<body>` names the topics
//! the page follows, [`super::live`]).

use maud::{DOCTYPE, Markup, html};

use super::i18n::Lang;
use super::{Ctx, assets};

/// The console's areas (the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Fleet,
    Workflows,
    Runs,
    Rollouts,
    Alerts,
    Audit,
}

impl Nav {
    const ALL: [Nav; 6] = [
        Nav::Fleet,
        Nav::Workflows,
        Nav::Runs,
        Nav::Rollouts,
        Nav::Alerts,
        Nav::Audit,
    ];

    fn href(self) -> &'static str {
        match self {
            Nav::Fleet => "/ui/fleet",
            Nav::Workflows => "/ui/workflows",
            Nav::Runs => "/ui/runs",
            Nav::Rollouts => "/ui/rollouts",
            Nav::Alerts => "/ui/alerts",
            Nav::Audit => "/ui/audit",
        }
    }

    fn label(self, lang: Lang) -> &'static str {
        match self {
            Nav::Fleet => lang.tr("Fleet", "设备群"),
            Nav::Workflows => lang.tr("Workflows", "工作流"),
            Nav::Runs => lang.tr("Runs", "运行"),
            Nav::Rollouts => lang.tr("Rollouts", "灰度发布"),
            Nav::Alerts => lang.tr("Alerts", "告警"),
            Nav::Audit => lang.tr("Audit log", "审计日志"),
        }
    }
}

/// The `<head>` of every page.
fn head(lang: Lang, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            link rel="stylesheet" href=(assets::CSS_PATH);
            link rel="icon" href="data:,";
            script src=(assets::JS_PATH) defer {}
            meta name="outpost-lang" content=(lang.code());
        }
    }
}

/// A page without the navigation (sign-in, errors).
pub(crate) fn bare(lang: Lang, title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, title))
            body {
                header class="top" {
                    span class="brand" { "Outpost" }
                }
                (main)
            }
        }
    }
}

/// A console page: `title` (also its `<h1>`), the area it belongs to, the live topics it
/// follows (space-separated; empty: none), and its content. Elements with `data-live-region`
/// and an `id` are swapped when a followed topic changes.
pub(crate) fn page(ctx: &Ctx, nav: Nav, title: &str, live: &str, content: Markup) -> Markup {
    let lang = ctx.lang;
    let done = notice_of(&ctx.here);
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, &format!("{title} · Outpost")))
            body data-live=(live) {
                a class="skip" href="#main" { (lang.tr("Skip to content", "跳到正文")) }
                header class="top" {
                    a class="brand" href="/ui/" { "Outpost" }
                    nav aria-label=(lang.tr("Console", "控制台")) {
                        ul {
                            @for n in Nav::ALL {
                                li {
                                    @if n == nav {
                                        a href=(n.href()) aria-current="page" { (n.label(lang)) }
                                    } @else {
                                        a href=(n.href()) { (n.label(lang)) }
                                    }
                                }
                            }
                        }
                    }
                    div class="who" {
                        span id="whoami" { (ctx.actor.name) " (" (ctx.actor.role) ")" }
                        (lang_switch(lang, &ctx.here))
                        form method="post" action="/ui/logout" class="inline" {
                            (ctx.csrf_field())
                            button type="submit" id="sign-out" class="link" {
                                (lang.tr("Sign out", "退出"))
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    @if let Some(d) = done {
                        p role="status" class="notice" id="notice" { (d) }
                    }
                    (content)
                }
                p id="live-status" class="live-status" aria-live="polite" {}
            }
        }
    }
}

/// The `done` notice of a redirect after a write (`?done=`), if any.
fn notice_of(here: &str) -> Option<String> {
    let (_, query) = here.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The language switch: a small form posting to `/ui/lang`, back to `back`.
pub(crate) fn lang_switch(lang: Lang, back: &str) -> Markup {
    // Without the one-off notice, or it would show again after switching.
    let back = back.split("done=").next().unwrap_or(back);
    html! {
        form method="post" action="/ui/lang" class="inline lang" {
            input type="hidden" name="back" value=(back);
            @if lang == Lang::Zh {
                button type="submit" name="lang" value="en" lang="en" id="lang-switch" class="link" { "English" }
            } @else {
                button type="submit" name="lang" value="zh-CN" lang="zh-CN" id="lang-switch" class="link" { "中文" }
            }
        }
    }
}

/// A status badge (`online`, `failed`, …): its class names the state for colour, its text
/// says it (colour is never the only signal).
pub(crate) fn badge(state: &str, text: &str) -> Markup {
    html! { span class={"badge s-" (state)} { (text) } }
}

/// A form that posts to `action` with one button (and the CSRF field). For an action that
/// needs a confirmation, its handler answers a POST without `confirm=yes` with [`confirm`].
#[allow(dead_code)]
pub(crate) fn action(ctx: &Ctx, action: &str, label: &str, id: &str) -> Markup {
    html! {
        form method="post" action=(action) class="inline" {
            (ctx.csrf_field())
            button type="submit" id=(id) { (label) }
        }
    }
}

/// A confirmation page for a write: what will happen, and the same POST with `confirm=yes`
/// (plus `fields`), or back.
#[allow(dead_code)]
pub(crate) fn confirm(
    ctx: &Ctx,
    nav: Nav,
    what: &str,
    action: &str,
    fields: &[(&str, &str)],
    back: &str,
) -> Markup {
    page(
        ctx,
        nav,
        ctx.tr("Please confirm", "请确认"),
        "",
        html! {
            p id="confirm-what" { (what) }
            form method="post" action=(action) class="inline" {
                (ctx.csrf_field())
                input type="hidden" name="confirm" value="yes";
                @for (k, v) in fields {
                    input type="hidden" name=(k) value=(v);
                }
                button type="submit" id="confirm" class="danger" { (ctx.tr("Confirm", "确认")) }
            }
            " "
            a href=(back) id="cancel-confirm" { (ctx.tr("Cancel", "取消")) }
        },
    )
}

/// Links to the previous and next of `pages` numbered pages (none when there is one page);
/// `link(n)` is the address of page `n`.
pub(crate) fn pager(
    ctx: &Ctx,
    page: usize,
    pages: usize,
    link: &dyn Fn(usize) -> String,
) -> Markup {
    html! {
        @if pages > 1 {
            nav class="pager" aria-label=(ctx.tr("Pages", "分页")) {
                @if page > 0 { a href=(link(page - 1)) rel="prev" { (ctx.tr("← Previous", "← 上一页")) } }
                @if page + 1 < pages { a href=(link(page + 1)) rel="next" { (ctx.tr("Next →", "下一页 →")) } }
            }
        }
    }
}
