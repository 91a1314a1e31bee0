//! Alerts: the notification history (rule, subject, firing or resolved, when, deliveries per
//! channel), the active silences, and for operators a form to create a silence and a button to
//! remove one (the same operations as the API: [`crate::hub::Hub::silence`],
//! [`crate::hub::Hub::unsilence`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use outpost_alerts::AlertStatus;
use outpost_common::duration::parse_duration;
use serde::Deserialize;

use super::layout::{self, Nav, badge};
use super::{ConsoleError, ConsoleState, Ctx, UiResult, blocking, done, enc, time, url_form};
use crate::ops::alerts::{AlertQuery, SilenceSpec, matchers_text};
use crate::store::AlertEntry;

/// Notifications shown (newest first).
const LIMIT: usize = 100;
/// The console route that creates a silence.
pub(crate) const SILENCE_ROUTE: &str = "/ui/alerts/silences";
/// The console route that removes one.
pub(crate) const UNSILENCE_ROUTE: &str = "/ui/alerts/silences/{id}/remove";

pub(super) fn routes() -> Router<Arc<ConsoleState>> {
    Router::new().route("/ui/alerts", get(alerts))
}

pub(super) fn write_routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route(SILENCE_ROUTE, post(silence))
        .route(UNSILENCE_ROUTE, post(unsilence))
}

#[derive(Deserialize, Default)]
struct AlertsQuery {
    /// `firing`, `resolved` or empty (both).
    state: Option<String>,
    rule: Option<String>,
}

/// What a notification is about: its labels but `rule` and `event` (`workflow=etl, agent=a1`).
fn subject(e: &AlertEntry) -> String {
    e.notification
        .labels
        .iter()
        .filter(|(k, _)| k != "rule" && k != "event")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn alerts(ctx: Ctx, Query(q): Query<AlertsQuery>) -> UiResult<Markup> {
    let status = match q.state.as_deref().unwrap_or("") {
        "firing" => Some(AlertStatus::Firing),
        "resolved" => Some(AlertStatus::Resolved),
        _ => None,
    };
    let query = AlertQuery {
        status,
        rule: q.rule.clone().filter(|r| !r.trim().is_empty()),
        limit: LIMIT,
    };
    let hub = ctx.hub.clone();
    let (entries, silences) = blocking(move || {
        Ok::<_, crate::ops::OpError>((hub.alert_history(&query)?, hub.active_silences()?))
    })
    .await?;
    let may_silence = ctx.may(SILENCE_ROUTE);
    let may_unsilence = ctx.may(UNSILENCE_ROUTE);
    let state_opts = [
        ("", ctx.tr("any", "全部")),
        ("firing", ctx.tr("firing", "告警中")),
        ("resolved", ctx.tr("resolved", "已恢复")),
    ];
    let body = html! {
        form method="get" action="/ui/alerts" class="filters" role="search" {
            label { (ctx.tr("State", "状态"))
                select name="state" {
                    @for (v, l) in state_opts {
                        option value=(v) selected[q.state.as_deref().unwrap_or("") == v] { (l) }
                    }
                }
            }
            label { (ctx.tr("Rule", "规则"))
                input type="text" name="rule" value=(q.rule.as_deref().unwrap_or("")) size="16";
            }
            button type="submit" { (ctx.tr("Filter", "筛选")) }
        }
        div id="alerts-history" data-live-region class="scroll" {
            h2 { (ctx.tr("Notifications", "通知")) }
            p class="muted" {
                (entries.len()) " " (ctx.tr("notifications, newest first", "条通知,最新在前"))
                @if entries.len() == LIMIT { " (" (ctx.tr("the latest", "最近")) " " (LIMIT) ")" }
            }
            @if entries.is_empty() {
                p class="muted" id="alerts-none" { (ctx.tr("No notification.", "没有通知。")) }
            }
            table id="alerts" {
                thead { tr {
                    th scope="col" { (ctx.tr("Rule", "规则")) }
                    th scope="col" { (ctx.tr("Subject", "对象")) }
                    th scope="col" { (ctx.tr("State", "状态")) }
                    th scope="col" { (ctx.tr("When", "时间")) }
                    th scope="col" { (ctx.tr("Summary", "摘要")) }
                    th scope="col" { (ctx.tr("Deliveries", "投递")) }
                } }
                tbody {
                    @for e in &entries {
                        @let n = &e.notification;
                        tr data-seq=(e.seq) data-state=(n.status.as_str()) {
                            td { (n.rule) br; span class="muted mono" { (n.event) } }
                            td { (subject(e)) }
                            td { (badge(n.status.as_str(), match n.status {
                                AlertStatus::Firing => ctx.tr("firing", "告警中"),
                                AlertStatus::Resolved => ctx.tr("resolved", "已恢复"),
                            })) }
                            td {
                                (time(n.created_ms))
                                @if n.starts_ms != n.created_ms {
                                    br; span class="muted" { (ctx.tr("since ", "始于 ")) (time(n.starts_ms)) }
                                }
                                @if let Some(end) = n.ends_ms {
                                    br; span class="muted" { (ctx.tr("ended ", "结束于 ")) (time(end)) }
                                }
                            }
                            td {
                                (n.summary)
                                @if n.items.len() > 1 || n.suppressed > 0 {
                                    br; span class="muted" {
                                        (n.items.len() as u64 + n.suppressed) " " (ctx.tr("events", "个事件"))
                                    }
                                }
                            }
                            td {
                                @if e.deliveries.is_empty() { span class="muted" { (ctx.tr("none", "无")) } }
                                @for d in &e.deliveries {
                                    span class="mono" { (d.channel) } " "
                                    (badge(match d.state.as_str() { "delivered" => "ok", "failed" => "failed", _ => "pending" }, d.state.as_str()))
                                    @if d.attempts > 1 { " ×" (d.attempts) }
                                    @if let Some(err) = &d.last_error { br; span class="muted" { (err) } }
                                    br;
                                }
                            }
                        }
                    }
                }
            }
        }
        div id="alerts-silences" data-live-region {
            h2 { (ctx.tr("Active silences", "生效中的静默")) }
            @if silences.is_empty() {
                p class="muted" { (ctx.tr("No active silence.", "没有生效中的静默。")) }
            }
            table id="silences" {
                thead { tr {
                    th scope="col" { (ctx.tr("Id", "ID")) }
                    th scope="col" { (ctx.tr("Matchers", "匹配条件")) }
                    th scope="col" { (ctx.tr("Expires", "到期")) }
                    th scope="col" { (ctx.tr("By", "创建人")) }
                    th scope="col" { (ctx.tr("Comment", "备注")) }
                    @if may_unsilence { th scope="col" { (ctx.tr("Action", "操作")) } }
                } }
                tbody {
                    @for s in &silences {
                        tr data-silence=(s.id) {
                            td class="mono" { (s.id) }
                            td class="mono" { (matchers_text(s)) }
                            td { (time(s.expires_ms)) }
                            td { (s.created_by) }
                            td { (s.comment) }
                            @if may_unsilence {
                                td {
                                    form method="post" action={"/ui/alerts/silences/" (enc(&s.id)) "/remove"} class="inline" {
                                        (ctx.csrf_field())
                                        button type="submit" class="secondary" id={"unsilence-" (s.id)} { (ctx.tr("Remove", "移除")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_silence {
            h2 { (ctx.tr("New silence", "新建静默")) }
            p class="hint" { (ctx.tr(
                "Notifications that match every field given are held back until the silence expires. Give at least one of rule, workflow (a glob such as plc-*), pool, agent.",
                "与所填全部条件匹配的通知在静默到期前不会发送。规则、工作流(可用通配符,如 plc-*)、节点池、代理至少填一项。"
            )) }
            form method="post" action=(SILENCE_ROUTE) class="filters" id="silence-form" {
                (ctx.csrf_field())
                label { (ctx.tr("Rule", "规则"))
                    input type="text" id="silence-rule" name="rule" size="14"; }
                label { (ctx.tr("Workflow", "工作流"))
                    input type="text" id="silence-workflow" name="workflow" size="14"; }
                label { (ctx.tr("Pool", "节点池"))
                    input type="text" id="silence-pool" name="pool" size="10"; }
                label { (ctx.tr("Agent", "代理"))
                    input type="text" id="silence-agent" name="agent" size="14"; }
                label { (ctx.tr("For (30m, 2h, 1d)", "时长(30m、2h、1d)"))
                    input type="text" id="silence-for" name="for" value="2h" size="6" required; }
                label { (ctx.tr("Comment", "备注"))
                    input type="text" id="silence-comment" name="comment" size="24"; }
                button type="submit" id="silence-create" { (ctx.tr("Silence", "静默")) }
            }
        }
    };
    Ok(layout::page(
        &ctx,
        Nav::Alerts,
        ctx.tr("Alerts", "告警"),
        "alerts",
        body,
    ))
}

/// `POST /ui/alerts/silences` (`rule`, `workflow`, `pool`, `agent`, `for`, `comment`).
async fn silence(ctx: Ctx, body: axum::body::Bytes) -> UiResult<Response> {
    let form = url_form(&body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let for_text = field("for").unwrap_or_default();
    let d = parse_duration(&for_text).map_err(|e| {
        ConsoleError::new(
            StatusCode::BAD_REQUEST,
            format!("duration {for_text:?}: {e}"),
        )
    })?;
    let spec = SilenceSpec {
        rule: field("rule"),
        workflow: field("workflow"),
        pool: field("pool"),
        agent: field("agent"),
        for_ms: i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        comment: field("comment").unwrap_or_default(),
    };
    let hub = ctx.hub.clone();
    let actor = ctx.actor.name.clone();
    let s = blocking(move || hub.silence(&actor, spec)).await?;
    Ok(done(
        "/ui/alerts",
        &format!("{} {}.", ctx.tr("Silence created:", "已创建静默:"), s.id),
    ))
}

/// `POST /ui/alerts/silences/{id}/remove`.
async fn unsilence(ctx: Ctx, Path(id): Path<String>) -> UiResult<Response> {
    let hub = ctx.hub.clone();
    let actor = ctx.actor.name.clone();
    let id2 = id.clone();
    blocking(move || hub.unsilence(&actor, &id2)).await?;
    Ok(done(
        "/ui/alerts",
        &format!("{} {id}.", ctx.tr("Silence removed:", "已移除静默:")),
    ))
}
