//! Rollouts: every rollout (workflow, pool, from → to version, state, current step, started),
//! and one rollout's live progress: its steps, its agents per state, its gate and what the gate
//! waits for; promote, pause, resume and abort, each confirmed first and done through the same
//! operation as the API ([`crate::hub::Hub::rollout_command`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use outpost_rollout::{AgentState, Command, Phase, RolloutSpec, Scope, Status};
use serde::Deserialize;

use super::layout::{self, Nav, badge};
use super::{ConsoleError, ConsoleState, Ctx, UiResult, blocking, done, enc, time, url_form};
use crate::api::ApiError;
use crate::hub::now_ms;
use crate::rollouts::{offline_text, phase_text};
use crate::store::RolloutRecord;

/// Rollouts per page of the list.
const PAGE: usize = 100;
/// Agents listed on a rollout's page (the counts per state cover them all).
const AGENT_ROWS: usize = 200;
/// The console route of the rollout commands (its API twin is in [`super::WRITES`]).
pub(crate) const COMMAND_ROUTE: &str = "/ui/rollouts/{workflow}/{pool}/{command}";

pub(super) fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/ui/rollouts", get(list))
        .route("/ui/rollouts/{workflow}/{pool}", get(rollout))
}

pub(super) fn write_routes() -> Router<Arc<ConsoleState>> {
    Router::new().route(COMMAND_ROUTE, post(command))
}

/// A phase's key (`deploying`, `baking`, `awaiting-promote`, `paused`, `rolling-back`,
/// `succeeded`, `rolled-back`, `aborted`): the `data-state` of the page and its badge class.
pub(crate) fn phase_key(p: &Phase) -> &'static str {
    match p {
        Phase::Deploying { .. } => "deploying",
        Phase::Baking { .. } => "baking",
        Phase::AwaitingPromote { .. } => "awaiting-promote",
        Phase::Paused { .. } => "paused",
        Phase::RollingBack { .. } => "rolling-back",
        Phase::Succeeded => "succeeded",
        Phase::RolledBack { .. } => "rolled-back",
        Phase::Aborted => "aborted",
    }
}

/// The key of a stored phase text ([`phase_text`]; the list reads no controller state).
pub(crate) fn phase_text_key(text: &str) -> &'static str {
    const KEYS: [(&str, &str); 8] = [
        ("deploying", "deploying"),
        ("baking", "baking"),
        ("awaiting promote", "awaiting-promote"),
        ("paused", "paused"),
        ("rolling back", "rolling-back"),
        ("succeeded", "succeeded"),
        ("rolled back", "rolled-back"),
        ("aborted", "aborted"),
    ];
    KEYS.iter()
        .find(|(p, _)| text.starts_with(p))
        .map(|(_, k)| *k)
        .unwrap_or("unknown")
}

fn phase_label(ctx: &Ctx, key: &str) -> &'static str {
    match key {
        "deploying" => ctx.tr("deploying", "部署中"),
        "baking" => ctx.tr("baking", "观察中"),
        "awaiting-promote" => ctx.tr("awaiting promote", "等待推进"),
        "paused" => ctx.tr("paused", "已暂停"),
        "rolling-back" => ctx.tr("rolling back", "回滚中"),
        "succeeded" => ctx.tr("succeeded", "已完成"),
        "rolled-back" => ctx.tr("rolled back", "已回滚"),
        "aborted" => ctx.tr("aborted", "已中止"),
        _ => ctx.tr("unknown", "未知"),
    }
}

/// The badge class of a phase key (the stylesheet colours these).
fn phase_class(key: &str) -> &'static str {
    match key {
        "deploying" | "baking" => "running",
        "awaiting-promote" => "waiting",
        "paused" => "paused",
        "rolling-back" | "rolled-back" => "rolled-back",
        "succeeded" => "succeeded",
        "aborted" => "aborted",
        _ => "unknown",
    }
}

fn agent_key(s: AgentState) -> &'static str {
    crate::views::agent_state_key(s)
}

const AGENT_STATES: [AgentState; 8] = [
    AgentState::Pending,
    AgentState::Assigned,
    AgentState::Active,
    AgentState::Failed,
    AgentState::Offline,
    AgentState::Skipped,
    AgentState::RollingBack,
    AgentState::RolledBack,
];

fn agent_label(ctx: &Ctx, s: AgentState) -> &'static str {
    match s {
        AgentState::Pending => ctx.tr("pending (old version)", "待更新(旧版本)"),
        AgentState::Skipped => ctx.tr("skipped (offline)", "已跳过(离线)"),
        AgentState::Assigned => ctx.tr("assigned, not active yet", "已下发,未生效"),
        AgentState::Active => ctx.tr("running the new version", "运行新版本"),
        AgentState::Failed => ctx.tr("failed", "失败"),
        AgentState::Offline => ctx.tr("offline", "离线"),
        AgentState::RollingBack => ctx.tr("rolling back", "回滚中"),
        AgentState::RolledBack => ctx.tr("reverted", "已回退"),
    }
}

fn agent_class(s: AgentState) -> &'static str {
    match s {
        AgentState::Pending => "pending",
        AgentState::Skipped => "skipped",
        AgentState::Assigned => "queued",
        AgentState::Active => "succeeded",
        AgentState::Failed => "failed",
        AgentState::Offline => "offline",
        AgentState::RollingBack => "waiting",
        AgentState::RolledBack => "rolled-back",
    }
}

fn versions(from: u64, to: u64) -> String {
    if from == 0 {
        format!("– → v{to}")
    } else {
        format!("v{from} → v{to}")
    }
}

fn rollout_href(workflow: &str, pool: &str) -> String {
    format!("/ui/rollouts/{}/{}", enc(workflow), enc(pool))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    workflow: Option<String>,
    /// `active`, `finished` or empty.
    show: Option<String>,
    page: Option<usize>,
}

/// One row of the list: the record and, for an active rollout, its current step and count.
struct Row {
    rec: RolloutRecord,
    step: Option<(usize, usize)>,
}

async fn list(ctx: Ctx, Query(q): Query<ListQuery>) -> UiResult<Markup> {
    let hub = ctx.hub.clone();
    let workflow = q.workflow.clone().filter(|w| !w.is_empty());
    let show = q.show.clone().unwrap_or_default();
    let rows = blocking(move || {
        let mut rows = Vec::new();
        // Newest first.
        for rec in hub.rollouts()?.into_iter().rev() {
            if workflow.as_deref().is_some_and(|w| w != rec.workflow)
                || (show == "active" && !rec.active)
                || (show == "finished" && rec.active)
            {
                continue;
            }
            // Only active rollouts move: their step is read from the controller.
            let step = if rec.active {
                hub.rollout_status(&rec)
                    .ok()
                    .map(|(s, _)| (s.step, s.step_count))
            } else {
                None
            };
            rows.push(Row { rec, step });
        }
        Ok::<_, crate::ops::OpError>(rows)
    })
    .await?;
    let page = q.page.unwrap_or(0);
    let pages = rows.len().div_ceil(PAGE).max(1);
    let active = rows.iter().filter(|r| r.rec.active).count();
    let link = |p: usize| {
        format!(
            "/ui/rollouts?workflow={}&show={}&page={p}",
            enc(q.workflow.as_deref().unwrap_or("")),
            enc(q.show.as_deref().unwrap_or(""))
        )
    };
    let show_opts = [
        ("", ctx.tr("all", "全部")),
        ("active", ctx.tr("active", "进行中")),
        ("finished", ctx.tr("finished", "已结束")),
    ];
    let body = html! {
        form method="get" action="/ui/rollouts" class="filters" role="search" {
            label { (ctx.tr("Workflow", "工作流"))
                input type="text" name="workflow" value=(q.workflow.as_deref().unwrap_or("")) size="16";
            }
            label { (ctx.tr("Show", "显示"))
                select name="show" {
                    @for (v, l) in show_opts {
                        option value=(v) selected[q.show.as_deref().unwrap_or("") == v] { (l) }
                    }
                }
            }
            button type="submit" { (ctx.tr("Filter", "筛选")) }
        }
        div id="rollouts-table" data-live-region class="scroll" {
            p class="muted" {
                (rows.len()) " " (ctx.tr("rollouts", "次发布")) ", " (active) " " (ctx.tr("active", "进行中"))
                @if pages > 1 { " · " (ctx.tr("page", "页")) " " (page + 1) " / " (pages) }
            }
            table id="rollouts" {
                thead { tr {
                    th scope="col" { (ctx.tr("Workflow", "工作流")) }
                    th scope="col" { (ctx.tr("Pool", "节点池")) }
                    th scope="col" { (ctx.tr("Versions", "版本")) }
                    th scope="col" { (ctx.tr("State", "状态")) }
                    th scope="col" { (ctx.tr("Step", "步骤")) }
                    th scope="col" { (ctx.tr("Started", "开始时间")) }
                    th scope="col" { (ctx.tr("By", "发起人")) }
                } }
                tbody {
                    @for r in rows.iter().skip(page * PAGE).take(PAGE) {
                        @let key = phase_text_key(&r.rec.phase);
                        tr data-rollout={(r.rec.workflow) "/" (r.rec.pool)} data-state=(key) {
                            td { a href=(rollout_href(&r.rec.workflow, &r.rec.pool)) { (r.rec.workflow) } }
                            td { (r.rec.pool) }
                            td class="mono" { (versions(r.rec.from_version, r.rec.to_version)) }
                            td { (badge(phase_class(key), phase_label(&ctx, key)))
                                @if !r.rec.active { @if let Some(o) = &r.rec.outcome {
                                    @if o.contains(':') { " " span class="muted" { (o) } }
                                } }
                            }
                            td {
                                @match r.step {
                                    Some((0, n)) => { (ctx.tr("canary", "金丝雀")) " (1 / " (n) ")" },
                                    Some((s, n)) => { (ctx.tr("step", "步骤")) " " (s + 1) " / " (n) },
                                    None => { "-" },
                                }
                            }
                            td { (time(r.rec.started_ms)) }
                            td { (r.rec.started_by) }
                        }
                    }
                }
            }
            (layout::pager(&ctx, page, pages, &link))
        }
    };
    Ok(layout::page(
        &ctx,
        Nav::Rollouts,
        ctx.tr("Rollouts", "灰度发布"),
        "rollouts",
        body,
    ))
}

#[derive(Deserialize, Default)]
struct RolloutQuery {
    /// Only agents in this state (`pending`, `active`, ...).
    agents: Option<String>,
}

/// What each command does, for the confirmation page.
fn command_of(name: &str) -> Option<Command> {
    match name {
        "pause" => Some(Command::Pause),
        "resume" => Some(Command::Resume),
        "promote" => Some(Command::Promote),
        "abort" => Some(Command::Abort),
        _ => None,
    }
}

/// The commands the phase accepts (others are refused by the controller anyway).
fn commands_for(p: &Phase) -> Vec<&'static str> {
    match p {
        Phase::Deploying { .. } => vec!["pause", "abort"],
        Phase::Baking { .. } | Phase::AwaitingPromote { .. } => {
            vec!["promote", "pause", "abort"]
        }
        Phase::Paused { .. } => vec!["resume", "abort"],
        _ => vec![],
    }
}

fn command_label(ctx: &Ctx, c: &str) -> &'static str {
    match c {
        "promote" => ctx.tr("Promote", "推进"),
        "pause" => ctx.tr("Pause", "暂停"),
        "resume" => ctx.tr("Resume", "继续"),
        _ => ctx.tr("Abort", "中止"),
    }
}

/// What the gate still waits for, for people.
fn waits_for(ctx: &Ctx, s: &Status, spec: &RolloutSpec) -> Vec<String> {
    let g = &s.gate;
    let mut out = Vec::new();
    match &s.phase {
        Phase::Deploying { .. } if g.awaiting_activation > 0 => out.push(format!(
            "{} {}",
            g.awaiting_activation,
            ctx.tr(
                "selected agent(s) to activate the new version",
                "个已选代理启用新版本"
            )
        )),
        Phase::AwaitingPromote { .. } => out.push(
            ctx.tr(
                "an operator to promote (manual gate)",
                "操作员推进(人工关卡)",
            )
            .to_string(),
        ),
        Phase::Paused { .. } => out.push(ctx.tr("an operator to resume", "操作员继续").to_string()),
        _ => {}
    }
    if !s.phase.is_terminal() && !matches!(s.phase, Phase::RollingBack { .. }) {
        if let Some(left) = g.bake_left_ms.filter(|l| *l > 0) {
            out.push(format!(
                "{} {}",
                ctx.tr("bake time left:", "剩余观察时间:"),
                duration(left)
            ));
        }
        if g.runs_needed > 0 {
            out.push(format!(
                "{} {} ({})",
                g.runs_needed,
                ctx.tr("more run(s) to succeed", "次运行成功"),
                match spec.min_runs_scope {
                    Scope::PerAgent => ctx.tr("per agent", "每个代理"),
                    Scope::Step => ctx.tr("in this step", "本步骤内"),
                }
            ));
        }
    }
    out
}

/// `90 s`, `12 min 5 s`, `2 h 3 min`.
fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// How many failures the gate still tolerates: the largest number of further failed runs
/// (with as many runs) that keeps the rate at or under the maximum.
fn failure_budget(runs: u32, failures: u32, max_rate: f64) -> u32 {
    if max_rate <= 0.0 {
        return 0;
    }
    if max_rate >= 1.0 {
        return u32::MAX;
    }
    // failures + k <= max * (runs + k)  <=>  k <= (max*runs - failures) / (1 - max)
    let k = (max_rate * f64::from(runs) - f64::from(failures)) / (1.0 - max_rate);
    if k <= 0.0 { 0 } else { k.floor() as u32 }
}

async fn rollout(
    ctx: Ctx,
    Path((workflow, pool)): Path<(String, String)>,
    Query(q): Query<RolloutQuery>,
) -> UiResult<Markup> {
    let hub = ctx.hub.clone();
    let (w, p) = (workflow.clone(), pool.clone());
    let (rec, s, spec) =
        blocking(move || hub.rollout_status_of(&w, &p).map_err(ApiError::from)).await?;
    let key = phase_key(&s.phase);
    let here = rollout_href(&workflow, &pool);
    let may_pool = ctx.actor.may_act_on_pool(&pool).is_ok();
    let commands = if rec.active && may_pool && ctx.may(COMMAND_ROUTE) {
        commands_for(&s.phase)
    } else {
        vec![]
    };
    let counts: Vec<(AgentState, usize)> = AGENT_STATES
        .iter()
        .map(|st| (*st, s.agents.iter().filter(|a| a.state == *st).count()))
        .filter(|(_, n)| *n > 0)
        .collect();
    let only = q.agents.as_deref().filter(|a| !a.is_empty());
    let agents: Vec<_> = s
        .agents
        .iter()
        .filter(|a| only.is_none_or(|o| agent_key(a.state) == o))
        .collect();
    let g = &s.gate;
    let waits = waits_for(&ctx, &s, &spec);
    let now = now_ms();
    let budget = failure_budget(g.runs, g.failures, g.max_failure_rate);
    let body = html! {
        div id="rollout-state" data-state=(key) data-live-region {
            dl class="kv" {
                dt { (ctx.tr("Rollout", "发布")) } dd class="mono" { (rec.id) }
                dt { (ctx.tr("Workflow", "工作流")) } dd { a href={"/ui/workflows/" (enc(&rec.workflow))} { (rec.workflow) } }
                dt { (ctx.tr("Pool", "节点池")) } dd { (rec.pool) }
                dt { (ctx.tr("Versions", "版本")) } dd class="mono" { (versions(rec.from_version, rec.to_version)) }
                dt { (ctx.tr("State", "状态")) } dd {
                    (badge(phase_class(key), phase_label(&ctx, key))) " "
                    span class="muted" { (phase_text(&s.phase)) }
                }
                dt { (ctx.tr("Started", "开始时间")) } dd { (time(rec.started_ms)) " · " (rec.started_by) }
                @if let Some(f) = rec.finished_ms {
                    dt { (ctx.tr("Finished", "结束时间")) } dd { (time(f)) @if let Some(o) = &rec.outcome { " · " (o) } }
                }
                dt { (ctx.tr("Members", "成员")) } dd { (s.members) " " (ctx.tr("agents", "个代理")) }
                dt { (ctx.tr("Plan", "计划")) } dd class="mono" {
                    "canary " (spec.canary) ", steps "
                    (spec.steps.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
                    ", bake " (duration(spec.bake_ms)) ", min runs " (spec.min_runs)
                    ", max failure rate " (spec.max_failure_rate)
                    ", offline " (offline_text(&spec.offline))
                    @if let Some((n, k)) = spec.probation { ", probation " (n) "/" (k) }
                    @if spec.manual { ", manual" }
                }
            }
            @if !commands.is_empty() {
                div class="actions" id="rollout-actions" {
                    @for c in &commands {
                        form method="post" action={(here) "/" (c)} class="inline" {
                            (ctx.csrf_field())
                            button type="submit" id={"rollout-" (c)} class=[(*c == "abort").then_some("danger")] {
                                (command_label(&ctx, c))
                            }
                        }
                        " "
                    }
                }
            } @else if rec.active && !may_pool && ctx.may(COMMAND_ROUTE) {
                p class="muted" { (ctx.tr("You may not act on this pool.", "您无权操作此节点池。")) }
            }
            h2 { (ctx.tr("Steps", "步骤")) }
            table id="steps" {
                thead { tr {
                    th scope="col" { (ctx.tr("Step", "步骤")) }
                    th scope="col" { (ctx.tr("Size", "规模")) }
                    th scope="col" class="num" { (ctx.tr("Target", "目标")) }
                    th scope="col" class="num" { (ctx.tr("Selected", "已选")) }
                    th scope="col" class="num" { (ctx.tr("Active", "已生效")) }
                    th scope="col" { (ctx.tr("State", "状态")) }
                } }
                tbody {
                    @for t in &s.steps {
                        @let st = if t.index < s.step || key == "succeeded" { "passed" }
                            else if t.index == s.step && !s.phase.is_terminal() { "running" }
                            else if t.index == s.step { phase_class(key) }
                            else { "pending" };
                        tr data-step=(t.index) data-state=(st) {
                            td { @if t.index == 0 { (ctx.tr("canary", "金丝雀")) } @else { (ctx.tr("step", "步骤")) " " (t.index) } }
                            td class="mono" { (t.size) }
                            td class="num" { (t.target) }
                            td class="num" { (t.updated) }
                            td class="num" { (t.active) " " progress value=(t.active) max=(t.target.max(1)) aria-label={(t.active) " / " (t.target)} { (t.active) "/" (t.target) } }
                            td { (badge(st, match st {
                                "passed" => ctx.tr("passed", "已通过"),
                                "running" => ctx.tr("current", "进行中"),
                                "pending" => ctx.tr("to come", "待进行"),
                                _ => phase_label(&ctx, key),
                            })) }
                        }
                    }
                }
            }
            h2 { (ctx.tr("Gate", "关卡")) }
            dl class="kv" id="gate" {
                dt { (ctx.tr("Waits for", "等待")) } dd {
                    @if waits.is_empty() { (ctx.tr("nothing", "无")) }
                    @else { ul { @for w in &waits { li { (w) } } } }
                }
                dt { (ctx.tr("Runs of the new version", "新版本运行次数")) } dd { (g.runs) " (" (g.step_runs) " " (ctx.tr("in this step", "本步骤")) ")" }
                dt { (ctx.tr("Minimum runs", "最少运行次数")) } dd {
                    (g.min_runs) " " @match g.min_runs_scope { Scope::PerAgent => { (ctx.tr("per agent", "每个代理")) }, Scope::Step => { (ctx.tr("per step", "每步骤")) } }
                    @if g.runs_needed > 0 { ", " (g.runs_needed) " " (ctx.tr("still needed", "仍需")) }
                }
                dt { (ctx.tr("Failures", "失败")) } dd {
                    (g.failures)
                    @if let Some(r) = g.failure_rate { " (" (format!("{:.1}", r * 100.0)) " %)" }
                    " · " (ctx.tr("maximum rate", "最大失败率")) " " (format!("{:.1}", g.max_failure_rate * 100.0)) " %"
                    " · " (ctx.tr("budget left", "剩余容错")) " "
                    @if budget == u32::MAX { "∞" } @else { (budget) }
                }
                dt { (ctx.tr("Bake", "观察期")) } dd {
                    (duration(g.bake_ms)) " " (ctx.tr("per step", "每步骤"))
                    @if let Some(left) = g.bake_left_ms { ", " (duration(left)) " " (ctx.tr("left", "剩余")) }
                }
                @if g.awaiting_activation > 0 {
                    dt { (ctx.tr("Awaiting activation", "等待生效")) } dd { (g.awaiting_activation) }
                }
            }
            h2 { (ctx.tr("Agents", "代理")) }
            p id="agent-counts" {
                a href=(here) { (ctx.tr("all", "全部")) " " (s.agents.len()) }
                @for (st, n) in &counts {
                    " · " a href={(here) "?agents=" (agent_key(*st))} data-agent-state=(agent_key(*st)) {
                        (badge(agent_class(*st), agent_label(&ctx, *st))) " " (n)
                    }
                }
            }
            div class="scroll" {
                table id="rollout-agents" {
                    thead { tr {
                        th scope="col" { (ctx.tr("Agent", "代理")) }
                        th scope="col" { (ctx.tr("State", "状态")) }
                        th scope="col" { (ctx.tr("Online", "在线")) }
                        th scope="col" { (ctx.tr("Selected at", "选中于")) }
                        th scope="col" { (ctx.tr("Version (running / wanted)", "版本(运行 / 期望)")) }
                        th scope="col" class="num" { (ctx.tr("Runs", "运行")) }
                        th scope="col" class="num" { (ctx.tr("Failed", "失败")) }
                        th scope="col" { (ctx.tr("Why", "原因")) }
                    } }
                    tbody {
                        @for a in agents.iter().take(AGENT_ROWS) {
                            tr data-agent=(a.agent_id) data-state=(agent_key(a.state)) {
                                td { a href={"/ui/agents/" (enc(&a.agent_id))} class="mono" { (a.agent_id) } }
                                td { (badge(agent_class(a.state), agent_label(&ctx, a.state))) }
                                td { @if a.online { (ctx.tr("yes", "是")) } @else { (ctx.tr("no", "否")) } }
                                td { @match a.selected_at { Some(0) => { (ctx.tr("canary", "金丝雀")) }, Some(i) => { (ctx.tr("step", "步骤")) " " (i) }, None => { "-" } } }
                                td class="mono" {
                                    @match a.version { Some(v) => { "v" (v) }, None => { "-" } }
                                    " / " @if a.desired_version == 0 { "-" } @else { "v" (a.desired_version) }
                                }
                                td class="num" { (a.runs) }
                                td class="num" { (a.failures) }
                                td { @if let Some(f) = &a.failure { (f) } }
                            }
                        }
                    }
                }
            }
            @if agents.len() > AGENT_ROWS {
                p class="muted" { (agents.len() - AGENT_ROWS) " " (ctx.tr("more agents not listed; filter by state above.", "个代理未列出;请按上方状态筛选。")) }
            }
            p class="muted" { (ctx.tr("As of", "截至")) " " (time(now)) }
        }
    };
    let title = format!(
        "{} {} / {}",
        ctx.tr("Rollout", "发布"),
        rec.workflow,
        rec.pool
    );
    Ok(layout::page(
        &ctx,
        Nav::Rollouts,
        &title,
        &format!("rollouts rollout:{}/{}", rec.workflow, rec.pool),
        body,
    ))
}

/// `POST /ui/rollouts/{workflow}/{pool}/{command}`: without `confirm=yes`, the confirmation
/// page; with it, the command (a deployer limited to other pools is refused and audited, as
/// by the API).
async fn command(
    ctx: Ctx,
    Path((workflow, pool, name)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> UiResult<Response> {
    let Some(cmd) = command_of(&name) else {
        return Err(ConsoleError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown rollout command {name:?} (pause, resume, promote, abort)"),
        ));
    };
    if let Err(e) = ctx.actor.may_act_on_pool(&pool) {
        let hub = ctx.hub.clone();
        let (actor, what) = (ctx.actor.name.clone(), format!("pool {pool}"));
        let detail = format!("limited to pools {}", ctx.actor.pools.join(","));
        blocking(move || hub.audit_denied(&actor, &what, &detail)).await?;
        return Err(e.into());
    }
    let here = rollout_href(&workflow, &pool);
    let confirmed = url_form(&body)
        .iter()
        .any(|(k, v)| k == "confirm" && v == "yes");
    if !confirmed {
        let what = match cmd {
            Command::Promote => ctx.tr(
                "Promote the rollout of {w} in pool {p} to its next step now (waiving what the gate still waits for)?",
                "立即将 {w} 在节点池 {p} 的发布推进到下一步(跳过关卡仍在等待的条件)?",
            ),
            Command::Pause => ctx.tr(
                "Pause the rollout of {w} in pool {p}? No agent is moved until it is resumed.",
                "暂停 {w} 在节点池 {p} 的发布?恢复之前不会再更新任何代理。",
            ),
            Command::Resume => ctx.tr(
                "Resume the rollout of {w} in pool {p}?",
                "继续 {w} 在节点池 {p} 的发布?",
            ),
            Command::Abort => ctx.tr(
                "Abort the rollout of {w} in pool {p}? Every updated agent goes back to the previous version.",
                "中止 {w} 在节点池 {p} 的发布?所有已更新的代理将回到之前的版本。",
            ),
        }
        .replace("{w}", &workflow)
        .replace("{p}", &pool);
        let action = format!("{here}/{}", enc(&name));
        return Ok(
            layout::confirm(&ctx, Nav::Rollouts, &what, &action, &[], &here).into_response(),
        );
    }
    let hub = ctx.hub.clone();
    let actor = ctx.actor.name.clone();
    let (w, p) = (workflow.clone(), pool.clone());
    let rec = blocking(move || {
        hub.rollout_command(&actor, &w, &p, cmd)
            .map_err(ApiError::from)
    })
    .await?;
    let notice = format!("{} {} ({}).", ctx.tr("Done:", "已执行:"), name, rec.phase);
    Ok(done(&here, &notice))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_keys_agree_between_phase_and_stored_text() {
        let phases = [
            Phase::Deploying { step: 1 },
            Phase::Baking {
                step: 0,
                until_ms: 5,
            },
            Phase::AwaitingPromote { step: 2 },
            Phase::Paused {
                resume_to: Box::new(Phase::Deploying { step: 0 }),
            },
            Phase::RollingBack { reason: "x".into() },
            Phase::Succeeded,
            Phase::RolledBack { reason: "y".into() },
            Phase::Aborted,
        ];
        for p in &phases {
            assert_eq!(phase_text_key(&phase_text(p)), phase_key(p), "{p:?}");
        }
        assert_eq!(phase_text_key("something else"), "unknown");
    }

    #[test]
    fn failure_budget_keeps_the_rate_under_the_maximum() {
        assert_eq!(failure_budget(10, 0, 0.0), 0);
        // 10 runs, 0 failed, max 20%: k failures more with k runs: k <= 2/0.8 = 2.5.
        assert_eq!(failure_budget(10, 0, 0.2), 2);
        assert_eq!(failure_budget(10, 3, 0.2), 0);
        assert_eq!(failure_budget(0, 0, 1.0), u32::MAX);
        assert_eq!(duration(61_000), "1 min 1 s");
        assert_eq!(duration(7_260_000), "2 h 1 min");
    }
}
