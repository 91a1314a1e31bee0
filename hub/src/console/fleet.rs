//! The fleet: every agent with its state (online, offline, stale), last contact, labels, pools,
//! the versions it runs against what the hub wants (drift), its clock offset and outbox
//! backlog; filters by pool, label, state and name. An agent's page adds its deploy results and
//! telemetry, and label editing for admins.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, Nav, badge};
use super::{ConsoleState, Ctx, UiResult, ago, blocking, done, enc, time, url_form};
use crate::hub::now_ms;
use crate::ops::console::FleetAgent;

/// Disconnected this long or more (or never connected), an agent is `stale`, not `offline`.
pub const STALE_AFTER_MS: i64 = 3600 * 1000;
/// Agents per page.
const PAGE: usize = 100;

pub(super) fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/ui/fleet", get(fleet))
        .route("/ui/agents/{id}", get(agent))
}

pub(super) fn write_routes() -> Router<Arc<ConsoleState>> {
    Router::new().route("/ui/agents/{id}/labels", post(labels))
}

/// An agent's state for the fleet page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgentState {
    Online,
    Offline,
    Stale,
    Revoked,
    Decommissioned,
}

impl AgentState {
    pub(crate) fn of(a: &FleetAgent, now_ms: i64) -> AgentState {
        if a.agent.decommissioned_ms.is_some() {
            AgentState::Decommissioned
        } else if a.agent.revoked_ms.is_some() {
            AgentState::Revoked
        } else if a.connected_since.is_some() {
            AgentState::Online
        } else if a
            .agent
            .last_seen_ms
            .is_some_and(|t| now_ms - t < STALE_AFTER_MS)
        {
            AgentState::Offline
        } else {
            AgentState::Stale
        }
    }

    fn key(self) -> &'static str {
        match self {
            AgentState::Online => "online",
            AgentState::Offline => "offline",
            AgentState::Stale => "stale",
            AgentState::Revoked => "revoked",
            AgentState::Decommissioned => "decommissioned",
        }
    }

    fn label(self, ctx: &Ctx) -> &'static str {
        match self {
            AgentState::Online => ctx.tr("online", "在线"),
            AgentState::Offline => ctx.tr("offline", "离线"),
            AgentState::Stale => ctx.tr("stale", "失联"),
            AgentState::Revoked => ctx.tr("revoked", "已吊销"),
            AgentState::Decommissioned => ctx.tr("decommissioned", "已退役"),
        }
    }
}

#[derive(Deserialize, Default)]
struct FleetQuery {
    pool: Option<String>,
    label: Option<String>,
    state: Option<String>,
    q: Option<String>,
    page: Option<usize>,
}

fn matches(a: &FleetAgent, q: &FleetQuery, state: AgentState) -> bool {
    let pool_ok = match q.pool.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => a.pools.iter().any(|x| x == p),
        None => true,
    };
    let label_ok = match q.label.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        Some(l) => match l.split_once('=') {
            Some((k, v)) => a
                .agent
                .labels
                .iter()
                .any(|(lk, lv)| lk == k.trim() && lv == v.trim()),
            None => a.agent.labels.iter().any(|(lk, _)| lk == l),
        },
        None => true,
    };
    let state_ok = match q.state.as_deref().filter(|s| !s.is_empty()) {
        Some("drift") => !a.drift().is_empty(),
        Some(s) => state.key() == s,
        None => true,
    };
    let name_ok = match q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => {
            a.agent.id.contains(s)
                || a.agent.name.as_deref().is_some_and(|n| n.contains(s))
                || a.agent.hostname.contains(s)
        }
        None => true,
    };
    pool_ok && label_ok && state_ok && name_ok
}

fn display_name(a: &crate::store::AgentRecord) -> &str {
    a.name.as_deref().unwrap_or(&a.id)
}

async fn fleet(ctx: Ctx, Query(q): Query<FleetQuery>) -> UiResult<Markup> {
    let hub = ctx.hub.clone();
    let (agents, pools) = blocking(move || {
        let pools: Vec<String> = hub.pools()?.into_iter().map(|p| p.name).collect();
        Ok::<_, crate::ops::OpError>((hub.fleet()?, pools))
    })
    .await?;
    let now = now_ms();
    let states: Vec<AgentState> = agents.iter().map(|a| AgentState::of(a, now)).collect();
    let count = |s: AgentState| states.iter().filter(|x| **x == s).count();
    let drifting = agents.iter().filter(|a| !a.drift().is_empty()).count();
    let shown: Vec<(&FleetAgent, AgentState)> = agents
        .iter()
        .zip(states.iter().copied())
        .filter(|(a, s)| matches(a, &q, *s))
        .collect();
    let page = q.page.unwrap_or(0);
    let pages = shown.len().div_ceil(PAGE).max(1);
    let rows = shown.iter().skip(page * PAGE).take(PAGE);
    let link = |p: usize| {
        format!(
            "/ui/fleet?pool={}&label={}&state={}&q={}&page={p}",
            enc(q.pool.as_deref().unwrap_or("")),
            enc(q.label.as_deref().unwrap_or("")),
            enc(q.state.as_deref().unwrap_or("")),
            enc(q.q.as_deref().unwrap_or(""))
        )
    };
    let state_opts = [
        ("", ctx.tr("any", "全部")),
        ("online", ctx.tr("online", "在线")),
        ("offline", ctx.tr("offline", "离线")),
        ("stale", ctx.tr("stale", "失联")),
        ("drift", ctx.tr("version drift", "版本漂移")),
        ("revoked", ctx.tr("revoked", "已吊销")),
        ("decommissioned", ctx.tr("decommissioned", "已退役")),
    ];
    let body = html! {
        div class="cards" id="fleet-summary" data-live-region {
            div class="card" { div class="n" id="count-online" { (count(AgentState::Online)) } (ctx.tr("online", "在线")) }
            div class="card" { div class="n" id="count-offline" { (count(AgentState::Offline)) } (ctx.tr("offline", "离线")) }
            div class="card" { div class="n" id="count-stale" { (count(AgentState::Stale)) } (ctx.tr("stale (over 1 h)", "失联(超过 1 小时)")) }
            div class="card" { div class="n" id="count-drift" { (drifting) } (ctx.tr("with version drift", "版本漂移")) }
        }
        form method="get" action="/ui/fleet" class="filters" role="search" {
            label { (ctx.tr("Pool", "节点池"))
                select name="pool" {
                    option value="" { (ctx.tr("any", "全部")) }
                    @for p in &pools {
                        option value=(p) selected[q.pool.as_deref() == Some(p.as_str())] { (p) }
                    }
                }
            }
            label { (ctx.tr("Label (key=value)", "标签(键=值)"))
                input type="text" name="label" value=(q.label.as_deref().unwrap_or("")) size="16";
            }
            label { (ctx.tr("State", "状态"))
                select name="state" {
                    @for (v, l) in state_opts {
                        option value=(v) selected[q.state.as_deref().unwrap_or("") == v] { (l) }
                    }
                }
            }
            label { (ctx.tr("Name or id", "名称或 ID"))
                input type="search" name="q" value=(q.q.as_deref().unwrap_or("")) size="14";
            }
            button type="submit" { (ctx.tr("Filter", "筛选")) }
        }
        div id="fleet-table" data-live-region class="scroll" {
            p class="muted" {
                (shown.len()) " " (ctx.tr("agents", "个代理"))
                @if pages > 1 { " · " (ctx.tr("page", "页")) " " (page + 1) " / " (pages) }
            }
            table {
                thead { tr {
                    th scope="col" { (ctx.tr("Agent", "代理")) }
                    th scope="col" { (ctx.tr("State", "状态")) }
                    th scope="col" { (ctx.tr("Last contact", "最后联系")) }
                    th scope="col" { (ctx.tr("Labels", "标签")) }
                    th scope="col" { (ctx.tr("Pools", "节点池")) }
                    th scope="col" { (ctx.tr("Versions (running / wanted)", "版本(运行 / 期望)")) }
                    th scope="col" class="num" { (ctx.tr("Clock offset", "时钟偏差")) }
                    th scope="col" class="num" { (ctx.tr("Outbox", "待同步")) }
                } }
                tbody {
                    @for (a, s) in rows {
                        (agent_row(&ctx, a, *s, now))
                    }
                }
            }
            (layout::pager(&ctx, page, pages, &link))
        }
    };
    Ok(layout::page(
        &ctx,
        Nav::Fleet,
        ctx.tr("Fleet", "设备群"),
        "fleet",
        body,
    ))
}

fn agent_row(ctx: &Ctx, a: &FleetAgent, s: AgentState, now: i64) -> Markup {
    let r = &a.agent;
    let drift = a.drift();
    html! {
        tr data-agent=(r.id) {
            td { a href={"/ui/agents/" (enc(&r.id))} { (display_name(r)) }
                @if r.name.is_some() { br; span class="muted mono" { (r.id) } } }
            td { (badge(s.key(), s.label(ctx))) }
            td {
                @if let Some(since) = a.connected_since {
                    (ctx.tr("connected ", "已连接 ")) (ago(now, since))
                } @else if let Some(t) = r.last_seen_ms {
                    (ago(now, t)) (ctx.tr(" ago", "前"))
                } @else { (ctx.tr("never", "从未")) }
            }
            td { @for (k, v) in &r.labels { code { (k) "=" (v) } " " } }
            td { (a.pools.join(", ")) }
            td {
                // The list shows the drift; the agent's page shows every version.
                @if drift.is_empty() {
                    @if a.wanted.is_empty() {
                        span class="muted" { (ctx.tr("none wanted", "无")) }
                    } @else {
                        (badge("ok", &format!("{} {}", a.wanted.len(), ctx.tr("as wanted", "与期望一致"))))
                    }
                } @else {
                    @for (w, running, want) in drift.iter().take(3) {
                        span class="mono" { (w) " " }
                        @match running { Some(v) => { "v" (v) }, None => { "-" } }
                        " → "
                        @match want { Some(v) => { "v" (v) }, None => { (ctx.tr("removed", "已移除")) } }
                        br;
                    }
                    (badge("drift", &format!("{} {}", drift.len(), ctx.tr("drifting", "个漂移"))))
                }
                @for w in r.active.iter().filter(|w| w.paused) {
                    br; span class="mono" { (w.workflow) } " " (badge("paused", ctx.tr("paused", "已暂停")))
                }
            }
            td class="num" {
                @match r.clock_offset { Some((off, _)) => { (off) " ms" }, None => { "-" } }
            }
            td class="num" {
                @match &r.telemetry { Some((t, _)) => { (t.outbox_pending) }, None => { "-" } }
            }
        }
    }
}

async fn agent(ctx: Ctx, Path(id): Path<String>) -> UiResult<Markup> {
    let hub = ctx.hub.clone();
    let (a, deploys) = blocking(move || {
        let a = hub.fleet_agent(&id)?;
        let deploys = hub.deploy_results(&a.agent.id)?;
        Ok::<_, crate::ops::OpError>((a, deploys))
    })
    .await?;
    let now = now_ms();
    let s = AgentState::of(&a, now);
    let r = &a.agent;
    let labels = r
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let body = html! {
        div id="agent-detail" data-live-region {
            dl class="kv" {
                dt { (ctx.tr("Id", "ID")) } dd class="mono" { (r.id) }
                dt { (ctx.tr("State", "状态")) } dd { (badge(s.key(), s.label(&ctx))) }
                dt { (ctx.tr("Host name", "主机名")) } dd { (r.hostname) }
                dt { (ctx.tr("Software", "软件版本")) } dd { (r.software_version) }
                dt { (ctx.tr("Enrolled", "注册时间")) } dd { (time(r.enrolled_ms)) }
                dt { (ctx.tr("Last contact", "最后联系")) } dd {
                    @match (a.connected_since, r.last_seen_ms) {
                        (Some(since), _) => { (ctx.tr("connected since ", "连接自 ")) (time(since)) },
                        (None, Some(t)) => { (time(t)) },
                        (None, None) => { (ctx.tr("never", "从未")) },
                    }
                }
                dt { (ctx.tr("Pools", "节点池")) } dd { (a.pools.join(", ")) }
                dt { (ctx.tr("Clock offset", "时钟偏差")) } dd {
                    @match r.clock_offset { Some((off, at)) => { (off) " ms (" (time(at)) ")" }, None => { "-" } }
                }
                @if let Some((t, at)) = &r.telemetry {
                    dt { (ctx.tr("Outbox backlog", "待同步事件")) } dd { (t.outbox_pending) }
                    dt { (ctx.tr("Queued / running", "排队 / 运行中")) } dd { (t.queue_depth) " / " (t.running) }
                    dt { (ctx.tr("Disk free", "磁盘剩余")) } dd { (t.disk_free_bytes / (1024 * 1024)) " MiB / " (t.disk_total_bytes / (1024 * 1024)) " MiB" }
                    dt { (ctx.tr("Reported", "上报时间")) } dd { (time(*at)) }
                }
            }
            h2 { (ctx.tr("Versions", "版本")) }
            table {
                thead { tr { th { (ctx.tr("Workflow", "工作流")) } th { (ctx.tr("Running", "运行中")) } th { (ctx.tr("Wanted", "期望")) } } }
                tbody {
                    @for (w, v) in &a.wanted {
                        @let run = r.active.iter().find(|x| x.workflow == *w).map(|x| x.version);
                        tr {
                            td { a href={"/ui/workflows/" (enc(w))} { (w) } }
                            td { @match run { Some(x) => { "v" (x) }, None => { "-" } } }
                            td { "v" (v) @if run != Some(*v) { " " (badge("drift", ctx.tr("drift", "漂移"))) } }
                        }
                    }
                }
            }
            h2 { (ctx.tr("Deploy results", "部署结果")) }
            table {
                thead { tr { th { (ctx.tr("Workflow", "工作流")) } th { (ctx.tr("Version", "版本")) } th { (ctx.tr("Result", "结果")) } th { (ctx.tr("When", "时间")) } } }
                tbody {
                    @for d in deploys.iter().rev().take(50) {
                        tr {
                            td { (d.workflow) } td { "v" (d.version) }
                            td { @match &d.rejected {
                                None => { (badge("ok", ctx.tr("accepted", "已接受"))) },
                                Some(why) => { (badge("rejected", ctx.tr("rejected", "已拒绝"))) " " (why) },
                            } }
                            td { (time(d.at_ms)) }
                        }
                    }
                }
            }
        }
        p { a href={"/ui/runs?agent=" (enc(&r.id))} { (ctx.tr("Runs of this agent →", "该代理的运行 →")) } }
        @if ctx.may("/ui/agents/{id}/labels") && r.revoked_ms.is_none() {
            h2 { (ctx.tr("Labels", "标签")) }
            form method="post" action={"/ui/agents/" (enc(&r.id)) "/labels"} class="stack" {
                (ctx.csrf_field())
                label for="labels" { (ctx.tr("Labels (key=value, comma-separated; the agent's pools follow)", "标签(键=值,逗号分隔;节点池随之变化)")) }
                input type="text" id="labels" name="labels" value=(labels);
                button type="submit" id="save-labels" { (ctx.tr("Save labels", "保存标签")) }
            }
        }
    };
    let title = format!("{} {}", ctx.tr("Agent", "代理"), display_name(r));
    Ok(layout::page(
        &ctx,
        Nav::Fleet,
        &title,
        &format!("fleet agent:{}", r.id),
        body,
    ))
}

/// `POST /ui/agents/{id}/labels` (`labels=k=v,k=v`): set the agent's labels to exactly these.
async fn labels(ctx: Ctx, Path(id): Path<String>, body: axum::body::Bytes) -> UiResult<Response> {
    let form = url_form(&body);
    let text = form
        .iter()
        .find(|(k, _)| k == "labels")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut set = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(super::ConsoleError::new(
                axum::http::StatusCode::BAD_REQUEST,
                format!("label {item:?}: expected key=value"),
            ));
        };
        set.push((k.trim().to_string(), v.trim().to_string()));
    }
    let hub = ctx.hub.clone();
    let actor = ctx.actor.name.clone();
    let id2 = id.clone();
    blocking(move || {
        let rec = hub.agent(&hub.resolve_agent(&id2)?)?;
        let remove: Vec<String> = rec
            .labels
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !set.iter().any(|(s, _)| s == k))
            .collect();
        hub.label_agent(&actor, &rec.id, &set, &remove)
    })
    .await?;
    Ok(done(
        &format!("/ui/agents/{}", enc(&id)),
        ctx.tr("Labels saved.", "标签已保存。"),
    ))
}
