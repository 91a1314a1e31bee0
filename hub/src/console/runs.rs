//! Runs: the list across the fleet (filters like `run list`: workflow, agent, state including
//! `failed-tasks`, `missed` and `unknown`, since; newest first, a page at a time from a cursor),
//! and a run's page: its summary, the timeline of its tasks and attempts ([`super::gantt`]), its
//! parameters and outputs, each attempt's log (fetched from the agent, followed while the
//! attempt runs), and cancel / retry. Reads and writes go through the same operations as the
//! API (`hub.runs`, `hub.run`, `hub.fetch_log`, `hub.cancel_run`, `hub.retry_run`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use outpost_common::record::{RunRecord, RunState, TaskInstanceRecord, TaskState};
use serde::Deserialize;

use super::gantt;
use super::i18n::Lang;
use super::layout::{self, Nav, badge};
use super::{ConsoleError, ConsoleState, Ctx, UiResult, blocking, done, enc, time, url_form};
use crate::api::{parse_since, required_role};
use crate::firings::FiringFinding;
use crate::hub::now_ms;
use crate::ops::OpError;
use crate::store::{HubRun, RunCursor, RunQuery};

/// Runs per page.
pub(crate) const PAGE: usize = 50;
/// The API route whose role reading a log needs.
const LOG_ROUTE: &str = "/v1/runs/{id}/logs/{task}";

pub(super) fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/ui/runs", get(list))
        .route("/ui/runs/{id}", get(show))
        .route("/ui/runs/{id}/logs/{task}", get(log))
}

pub(super) fn write_routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/ui/runs/{id}/cancel", post(cancel))
        .route("/ui/runs/{id}/retry", post(retry))
}

/// A run or task state's name for people (the `data-state` keeps the API's name).
pub(crate) fn state_label(lang: Lang, s: &str) -> &str {
    match s {
        "queued" => lang.tr("queued", "排队中"),
        "running" => lang.tr("running", "运行中"),
        "succeeded" => lang.tr("succeeded", "成功"),
        "failed" => lang.tr("failed", "失败"),
        "cancelled" => lang.tr("cancelled", "已取消"),
        "skipped" => lang.tr("skipped", "已跳过"),
        "pending" => lang.tr("pending", "等待上游"),
        "ready" => lang.tr("ready", "就绪"),
        "dispatched" => lang.tr("dispatched", "已派发"),
        "up_for_retry" => lang.tr("up for retry", "等待重试"),
        "upstream_failed" => lang.tr("upstream failed", "上游失败"),
        "timed_out" => lang.tr("timed out", "超时"),
        "interrupted" => lang.tr("interrupted", "被中断"),
        "missed" => lang.tr("missed", "错过"),
        "unknown" => lang.tr("unknown", "未知"),
        other => other,
    }
}

fn state_badge(lang: Lang, s: &str) -> Markup {
    badge(s, state_label(lang, s))
}

/// A run's page (with its agent, which a run id needs when several agents have it).
pub(crate) fn run_url(run_id: &str, agent: &str) -> String {
    format!("/ui/runs/{}?agent={}", enc(run_id), enc(agent))
}

/// The URL of an attempt's log.
fn log_url(run_id: &str, task: &str, attempt: u32, agent: &str) -> String {
    format!(
        "/ui/runs/{}/logs/{}?attempt={attempt}&agent={}",
        enc(run_id),
        enc(task),
        enc(agent)
    )
}

// ---------------------------------------------------------------------------------------------
// The list

#[derive(Deserialize, Default)]
struct ListQuery {
    workflow: Option<String>,
    agent: Option<String>,
    state: Option<String>,
    since: Option<String>,
    /// The cursor: the last row's creation time, agent and run id.
    before: Option<i64>,
    before_agent: Option<String>,
    before_run: Option<String>,
    /// Firings listed (`missed`, `unknown`): how many to skip.
    skip: Option<usize>,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl ListQuery {
    /// The filters as a query string (no cursor), for links.
    fn filters(&self) -> String {
        let v = |s: &Option<String>| enc(s.as_deref().unwrap_or(""));
        format!(
            "workflow={}&agent={}&state={}&since={}",
            v(&self.workflow),
            v(&self.agent),
            v(&self.state),
            v(&self.since)
        )
    }
}

/// The `state` filter.
enum StateFilter {
    Any,
    Run(RunState),
    FailedTasks,
    /// Expected firings with no run: `missed` or `unknown`.
    Firings(&'static str),
}

fn state_filter(s: &str) -> Result<StateFilter, ConsoleError> {
    match s {
        "" => Ok(StateFilter::Any),
        "failed-tasks" => Ok(StateFilter::FailedTasks),
        "missed" => Ok(StateFilter::Firings("missed")),
        "unknown" => Ok(StateFilter::Firings("unknown")),
        s => RunState::parse(s).map(StateFilter::Run).ok_or_else(|| {
            ConsoleError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown run state {s:?} (queued, running, succeeded, failed, cancelled, \
                     skipped, failed-tasks, missed, unknown)"
                ),
            )
        }),
    }
}

/// What the list shows.
enum Listed {
    Runs {
        runs: Vec<HubRun>,
        /// The cursor of the next (older) page, if there is one.
        next: Option<RunCursor>,
    },
    Firings {
        firings: Vec<FiringFinding>,
        total: usize,
    },
}

async fn list(ctx: Ctx, Query(q): Query<ListQuery>) -> UiResult<Markup> {
    let now = now_ms();
    let filter = state_filter(q.state.as_deref().unwrap_or("").trim())?;
    let since_ms = match non_empty(&q.since) {
        None => None,
        Some(s) => Some(parse_since(&s, now).ok_or_else(|| {
            ConsoleError::new(
                StatusCode::BAD_REQUEST,
                format!("since {s:?}: not an RFC 3339 time or a duration like 1h"),
            )
        })?),
    };
    let before = match (q.before, &q.before_agent, &q.before_run) {
        (Some(t), Some(a), Some(r)) => Some(RunCursor {
            created_ms: t,
            agent: a.clone(),
            run_id: r.clone(),
        }),
        _ => None,
    };
    let (workflow, agent) = (non_empty(&q.workflow), non_empty(&q.agent));
    let skip = q.skip.unwrap_or(0);
    let hub = ctx.hub.clone();
    let (listed, workflows) = blocking(move || {
        let workflows: Vec<String> = hub.workflows()?.into_iter().map(|(v, _)| v.name).collect();
        let listed = match filter {
            StateFilter::Firings(status) => {
                let agent = agent.map(|a| hub.resolve_agent(&a).unwrap_or(a));
                let mut found: Vec<FiringFinding> = hub
                    .firing_findings()?
                    .into_iter()
                    .filter(|f| {
                        f.status.as_str() == status
                            && workflow.as_deref().is_none_or(|w| f.workflow == w)
                            && agent.as_deref().is_none_or(|a| f.agent == a)
                            && since_ms.is_none_or(|s| f.scheduled_ms >= s)
                    })
                    .collect();
                found.sort_by(|a, b| {
                    (b.scheduled_ms, &b.agent, &b.workflow).cmp(&(
                        a.scheduled_ms,
                        &a.agent,
                        &a.workflow,
                    ))
                });
                let total = found.len();
                Listed::Firings {
                    firings: found.into_iter().skip(skip).take(PAGE).collect(),
                    total,
                }
            }
            f => {
                let query = RunQuery {
                    workflow,
                    agent,
                    state: match f {
                        StateFilter::Run(s) => Some(s),
                        _ => None,
                    },
                    since_ms,
                    before,
                    limit: PAGE + 1,
                };
                let mut runs = hub.runs(&query, matches!(f, StateFilter::FailedTasks))?;
                let more = runs.len() > PAGE;
                runs.truncate(PAGE);
                let next = runs.last().filter(|_| more).map(|r| RunCursor {
                    created_ms: r.record.created_ms,
                    agent: r.agent_id.clone(),
                    run_id: r.record.run_id.clone(),
                });
                Listed::Runs { runs, next }
            }
        };
        Ok::<_, OpError>((listed, workflows))
    })
    .await?;
    let body = html! {
        (filter_form(&ctx, &q, &workflows))
        div id="runs-table" data-live-region class="scroll" {
            @match &listed {
                Listed::Runs { runs, next } => {
                    (runs_table(&ctx, runs, now))
                    nav class="pager" aria-label=(ctx.tr("Pages", "分页")) {
                        @if q.before.is_some() {
                            a href={"/ui/runs?" (q.filters())} rel="first" { (ctx.tr("← Newest", "← 最新")) }
                        }
                        @if let Some(c) = next {
                            a href={"/ui/runs?" (q.filters()) "&before=" (c.created_ms) "&before_agent=" (enc(&c.agent)) "&before_run=" (enc(&c.run_id))}
                                rel="next" id="older" { (ctx.tr("Older →", "更早 →")) }
                        }
                    }
                },
                Listed::Firings { firings, total } => {
                    (firings_table(&ctx, firings, *total, skip))
                    nav class="pager" aria-label=(ctx.tr("Pages", "分页")) {
                        @if skip > 0 {
                            a href={"/ui/runs?" (q.filters()) "&skip=" (skip.saturating_sub(PAGE))} rel="prev" { (ctx.tr("← Newer", "← 较新")) }
                        }
                        @if skip + PAGE < *total {
                            a href={"/ui/runs?" (q.filters()) "&skip=" (skip + PAGE)} rel="next" id="older" { (ctx.tr("Older →", "更早 →")) }
                        }
                    }
                },
            }
        }
    };
    Ok(layout::page(
        &ctx,
        Nav::Runs,
        ctx.tr("Runs", "运行"),
        "runs",
        body,
    ))
}

fn filter_form(ctx: &Ctx, q: &ListQuery, workflows: &[String]) -> Markup {
    let state = q.state.as_deref().unwrap_or("");
    let wf = q.workflow.as_deref().unwrap_or("");
    let states = [
        ("", ctx.tr("any", "全部")),
        ("queued", ctx.tr("queued", "排队中")),
        ("running", ctx.tr("running", "运行中")),
        ("succeeded", ctx.tr("succeeded", "成功")),
        ("failed", ctx.tr("failed", "失败")),
        ("cancelled", ctx.tr("cancelled", "已取消")),
        ("skipped", ctx.tr("skipped", "已跳过")),
        ("failed-tasks", ctx.tr("with a failed task", "含失败任务")),
        (
            "missed",
            ctx.tr("missed firings (no run)", "错过的触发(无运行)"),
        ),
        (
            "unknown",
            ctx.tr("unknown firings (agent cut off)", "未知的触发(代理失联)"),
        ),
    ];
    html! {
        form method="get" action="/ui/runs" class="filters" role="search" {
            label { (ctx.tr("Workflow", "工作流"))
                select name="workflow" id="filter-workflow" {
                    option value="" { (ctx.tr("any", "全部")) }
                    @if !wf.is_empty() && !workflows.iter().any(|w| w == wf) {
                        option value=(wf) selected { (wf) }
                    }
                    @for w in workflows {
                        option value=(w) selected[w == wf] { (w) }
                    }
                }
            }
            label { (ctx.tr("Agent (id or name)", "代理(ID 或名称)"))
                input type="text" name="agent" id="filter-agent" value=(q.agent.as_deref().unwrap_or("")) size="16";
            }
            label { (ctx.tr("State", "状态"))
                select name="state" id="filter-state" {
                    @for (v, l) in states {
                        option value=(v) selected[state == v] { (l) }
                    }
                }
            }
            label { (ctx.tr("Since (1h, 2d or a time)", "起始(1h、2d 或时间)"))
                input type="text" name="since" id="filter-since" value=(q.since.as_deref().unwrap_or("")) size="14";
            }
            button type="submit" id="filter" { (ctx.tr("Filter", "筛选")) }
        }
    }
}

fn runs_table(ctx: &Ctx, runs: &[HubRun], now: i64) -> Markup {
    html! {
        table {
            caption class="muted" {
                (runs.len()) " " (ctx.tr("runs, newest first", "次运行,最新在前"))
            }
            thead { tr {
                th scope="col" { (ctx.tr("Run", "运行")) }
                th scope="col" { (ctx.tr("Workflow", "工作流")) }
                th scope="col" { (ctx.tr("Agent", "代理")) }
                th scope="col" { (ctx.tr("Kind", "类型")) }
                th scope="col" { (ctx.tr("State", "状态")) }
                th scope="col" { (ctx.tr("Created", "创建时间")) }
                th scope="col" class="num" { (ctx.tr("Duration", "耗时")) }
            } }
            tbody {
                @for r in runs {
                    @let rec = &r.record;
                    tr data-run=(rec.run_id) data-agent=(r.agent_id) data-state=(rec.state.as_str()) {
                        td { a href=(run_url(&rec.run_id, &r.agent_id)) class="mono" { (rec.run_id) } }
                        td { a href={"/ui/workflows/" (enc(&rec.workflow))} { (rec.workflow) } " v" (rec.version) }
                        td { a href={"/ui/agents/" (enc(&r.agent_id))} class="mono" { (r.agent_id) } }
                        td { (rec.kind.as_str()) }
                        td { (state_badge(ctx.lang, rec.state.as_str())) }
                        td { (time(rec.created_ms)) }
                        td class="num" {
                            @match (rec.started_ms, rec.ended_ms) {
                                (Some(s), Some(e)) => { (gantt::duration(e - s)) },
                                (Some(s), None) if !rec.state.is_terminal() => { (gantt::duration(now - s)) "…" },
                                _ => { "-" },
                            }
                        }
                    }
                }
            }
        }
        @if runs.is_empty() {
            p class="muted" id="no-runs" { (ctx.tr("No run matches.", "没有符合条件的运行。")) }
        }
    }
}

fn firings_table(ctx: &Ctx, firings: &[FiringFinding], total: usize, skip: usize) -> Markup {
    html! {
        p class="hint" {
            (ctx.tr(
                "Expected firings of the agents' schedules with no run reported: missed (the agent was connected and ran nothing, or recorded the firing missed) or unknown (the agent is cut off).",
                "按代理的调度应当触发却没有运行记录的时刻:错过(代理在线却没有运行,或记录为错过)或未知(代理失联)。"
            ))
        }
        table {
            caption class="muted" { (total) " " (ctx.tr("firings", "次触发"))
                @if total > PAGE { " · " (skip + 1) "–" ((skip + PAGE).min(total)) } }
            thead { tr {
                th scope="col" { (ctx.tr("Scheduled", "计划时间")) }
                th scope="col" { (ctx.tr("Workflow", "工作流")) }
                th scope="col" { (ctx.tr("Agent", "代理")) }
                th scope="col" { (ctx.tr("State", "状态")) }
                th scope="col" { (ctx.tr("Listed since", "记录于")) }
            } }
            tbody {
                @for f in firings {
                    tr data-firing=(f.scheduled_ms) data-agent=(f.agent) data-state=(f.status.as_str()) {
                        td { (time(f.scheduled_ms)) }
                        td { a href={"/ui/workflows/" (enc(&f.workflow))} { (f.workflow) } " v" (f.version) }
                        td { a href={"/ui/agents/" (enc(&f.agent))} class="mono" { (f.agent) } }
                        td { (state_badge(ctx.lang, f.status.as_str())) }
                        td { (time(f.since_ms)) }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One run

#[derive(Deserialize, Default)]
struct RunParams {
    agent: Option<String>,
}

enum Found {
    /// The run id names runs of several agents: which one?
    Several(Vec<String>),
    One {
        agent: String,
        run: Box<RunRecord>,
        tasks: Vec<TaskInstanceRecord>,
        connected: bool,
    },
}

async fn show(ctx: Ctx, Path(id): Path<String>, Query(p): Query<RunParams>) -> UiResult<Markup> {
    let hub = ctx.hub.clone();
    let agent = non_empty(&p.agent);
    let rid = id.clone();
    let found = blocking(move || {
        if agent.is_none() {
            let agents = hub.store().run_agents(&rid)?;
            if agents.len() > 1 {
                return Ok(Found::Several(agents));
            }
        }
        let (agent, run, tasks) = hub.run(&rid, agent)?;
        let connected = hub.gateway().is_connected(&agent);
        Ok::<_, OpError>(Found::One {
            agent,
            run: Box::new(run),
            tasks,
            connected,
        })
    })
    .await?;
    let title = format!("{} {id}", ctx.tr("Run", "运行"));
    let (agent, run, tasks, connected) = match found {
        Found::Several(agents) => {
            let body = html! {
                p id="choose-agent" { (ctx.tr("This run id exists on several agents; choose one:", "多个代理上都有这个运行 ID,请选择:")) }
                ul {
                    @for a in &agents {
                        li { a href=(run_url(&id, a)) class="mono" { (a) } }
                    }
                }
            };
            return Ok(layout::page(&ctx, Nav::Runs, &title, "runs", body));
        }
        Found::One {
            agent,
            run,
            tasks,
            connected,
        } => (agent, run, tasks, connected),
    };
    let now = now_ms();
    let g = gantt::layout(&run, &tasks, now);
    let body = html! {
        (summary(&ctx, &agent, &run, &tasks, connected, now))
        div id="run-timeline" data-live-region {
            h2 { (ctx.tr("Timeline", "时间线")) }
            @if tasks.is_empty() {
                p class="muted" { (ctx.tr("No task has been reported yet.", "尚未上报任何任务。")) }
            }
            p class="muted" { (ctx.tr("From ", "起点 ")) (time(g.t0)) }
            div class="scroll" { (gantt::svg(&g, ctx.lang)) }
        }
        h2 { (ctx.tr("Parameters", "参数")) }
        (params_table(ctx.lang, &run.params))
        div id="run-outputs" data-live-region {
            h2 { (ctx.tr("Outputs", "输出")) }
            (outputs_table(ctx.lang, &tasks))
        }
        (tasks_and_logs(&ctx, &agent, &run, &tasks, connected))
    };
    Ok(layout::page(
        &ctx,
        Nav::Runs,
        &title,
        &format!("run:{id} runs"),
        body,
    ))
}

/// Whether a retry has something to do: a finished run that started, with a task that did not
/// succeed.
fn retryable(run: &RunRecord, tasks: &[TaskInstanceRecord]) -> bool {
    run.state.is_terminal()
        && run.state != RunState::Skipped
        && (run.state != RunState::Succeeded
            || tasks.iter().any(|t| {
                matches!(
                    t.state,
                    TaskState::Failed | TaskState::UpstreamFailed | TaskState::Cancelled
                )
            }))
}

fn summary(
    ctx: &Ctx,
    agent: &str,
    run: &RunRecord,
    tasks: &[TaskInstanceRecord],
    connected: bool,
    now: i64,
) -> Markup {
    let state = run.state.as_str();
    let cancel = format!("/ui/runs/{}/cancel", enc(&run.run_id));
    let retry = format!("/ui/runs/{}/retry", enc(&run.run_id));
    html! {
        div id="run-summary" data-live-region data-state=(state) {
            dl class="kv" {
                dt { (ctx.tr("Workflow", "工作流")) }
                dd { a href={"/ui/workflows/" (enc(&run.workflow))} { (run.workflow) } }
                dt { (ctx.tr("Version", "版本")) } dd { "v" (run.version) }
                dt { (ctx.tr("Agent", "代理")) }
                dd {
                    a href={"/ui/agents/" (enc(agent))} class="mono" { (agent) } " "
                    @if connected { (badge("online", ctx.tr("connected", "已连接"))) }
                    @else { (badge("offline", ctx.tr("not connected", "未连接"))) }
                }
                dt { (ctx.tr("Kind", "类型")) } dd { (run.kind.as_str()) }
                dt { (ctx.tr("State", "状态")) } dd id="run-state" { (state_badge(ctx.lang, state)) }
                dt { (ctx.tr("Scheduled for", "计划时间")) } dd { (time(run.scheduled_ms)) }
                dt { (ctx.tr("Created", "创建时间")) } dd { (time(run.created_ms)) }
                dt { (ctx.tr("Started", "开始")) } dd { @match run.started_ms { Some(t) => { (time(t)) }, None => { "-" } } }
                dt { (ctx.tr("Finished", "结束")) } dd { @match run.ended_ms { Some(t) => { (time(t)) }, None => { "-" } } }
                dt { (ctx.tr("Duration", "耗时")) }
                dd {
                    @match (run.started_ms, run.ended_ms) {
                        (Some(s), Some(e)) => { (gantt::duration(e - s)) },
                        (Some(s), None) => { (gantt::duration(now - s)) " " (ctx.tr("so far", "(进行中)")) },
                        _ => { "-" },
                    }
                }
                @if let Some(why) = &run.skip_reason {
                    dt { (ctx.tr("Skipped because", "跳过原因")) } dd id="skip-reason" { (why) }
                }
            }
            @let can_cancel = !run.state.is_terminal() && ctx.may("/ui/runs/{id}/cancel");
            @let can_retry = retryable(run, tasks) && ctx.may("/ui/runs/{id}/retry");
            @if can_cancel || can_retry {
                p class="actions" {
                    @if can_cancel {
                        form method="post" action=(cancel) class="inline" {
                            (ctx.csrf_field())
                            input type="hidden" name="agent" value=(agent);
                            button type="submit" id="cancel-run" class="danger" { (ctx.tr("Cancel run…", "取消运行…")) }
                        }
                        " "
                    }
                    @if can_retry {
                        form method="post" action=(retry) class="inline" {
                            (ctx.csrf_field())
                            input type="hidden" name="agent" value=(agent);
                            button type="submit" id="retry-run" { (ctx.tr("Retry failed tasks", "重试失败的任务")) }
                        }
                    }
                    @if !connected {
                        br;
                        span class="hint" { (ctx.tr("The agent is not connected: commands are not queued, so they fail until it reconnects.", "代理未连接:命令不会排队,在其重新连接前会失败。")) }
                    }
                }
            }
        }
    }
}

/// The run's parameters (`table#params`).
pub(crate) fn params_table(lang: Lang, params: &[(String, String)]) -> Markup {
    html! {
        table id="params" {
            thead { tr { th scope="col" { (lang.tr("Name", "名称")) } th scope="col" { (lang.tr("Value", "值")) } } }
            tbody {
                @for (k, v) in params {
                    tr data-param=(k) { td class="mono" { (k) } td class="mono" { (v) } }
                }
                @if params.is_empty() {
                    tr { td colspan="2" class="muted" { (lang.tr("No parameters.", "无参数。")) } }
                }
            }
        }
    }
}

/// The tasks' outputs (`table#outputs`).
pub(crate) fn outputs_table(lang: Lang, tasks: &[TaskInstanceRecord]) -> Markup {
    let empty = tasks.iter().all(|t| t.outputs.is_empty());
    html! {
        table id="outputs" {
            thead { tr {
                th scope="col" { (lang.tr("Task", "任务")) }
                th scope="col" { (lang.tr("Name", "名称")) }
                th scope="col" { (lang.tr("Value", "值")) }
            } }
            tbody {
                @for t in tasks {
                    @for (k, v) in &t.outputs {
                        tr data-task=(t.task_id) data-output=(k) {
                            td class="mono" { (t.task_id) } td class="mono" { (k) } td class="mono" { (v) }
                        }
                    }
                }
                @if empty {
                    tr { td colspan="3" class="muted" { (lang.tr("No outputs.", "无输出。")) } }
                }
            }
        }
    }
}

fn tasks_and_logs(
    ctx: &Ctx,
    agent: &str,
    run: &RunRecord,
    tasks: &[TaskInstanceRecord],
    connected: bool,
) -> Markup {
    let can_logs = ctx.can(required_role(&Method::GET, LOG_ROUTE));
    let mut ordered: Vec<&TaskInstanceRecord> = tasks.iter().collect();
    ordered.sort_by_key(|t| {
        (
            t.attempts
                .iter()
                .map(|a| a.started_ms)
                .min()
                .unwrap_or(i64::MAX),
            t.task_id.clone(),
        )
    });
    html! {
        div id="run-logs" data-live-region {
            h2 { (ctx.tr("Tasks and logs", "任务与日志")) }
            table id="tasks" {
                thead { tr {
                    th scope="col" { (ctx.tr("Task", "任务")) }
                    th scope="col" { (ctx.tr("State", "状态")) }
                    th scope="col" class="num" { (ctx.tr("Attempts", "尝试次数")) }
                    th scope="col" { (ctx.tr("Last outcome", "最近结果")) }
                } }
                tbody {
                    @for t in &ordered {
                        tr data-task=(t.task_id) data-state=(t.display_state()) {
                            td class="mono" { (t.task_id) }
                            td { (state_badge(ctx.lang, t.display_state())) }
                            td class="num" { (t.attempts.len()) }
                            td {
                                @if let Some(a) = t.attempts.iter().max_by_key(|a| a.attempt) {
                                    (gantt::outcome_text(a))
                                    @if let Some(r) = &a.reason { " · " (r) }
                                }
                            }
                        }
                    }
                }
            }
            @if !can_logs {
                p class="hint" id="logs-need-operator" {
                    (ctx.tr("Logs are fetched from the agent for operators and admins; your role may not read them.", "日志按需从代理获取,仅操作员和管理员可查看;你的角色无权查看。"))
                }
            } @else {
                @if !connected {
                    p class="hint" id="logs-unreachable" {
                        (ctx.tr("The agent is not connected: its logs stay on the agent until it reconnects.", "代理未连接:日志保存在代理上,待其重新连接后才能查看。"))
                    }
                }
                @for t in &ordered {
                    @for a in &t.attempts {
                        @let url = log_url(&run.run_id, &t.task_id, a.attempt, agent);
                        @let open = a.outcome.is_none() && a.ended_ms.is_none() && !run.state.is_terminal();
                        section class="log" {
                            h3 {
                                span class="mono" { (t.task_id) } " · " (ctx.tr("attempt", "尝试")) " " (a.attempt) " "
                                (state_badge(ctx.lang, gantt::attempt_state(a)))
                                " " a href=(url) class="hint" { (ctx.tr("as text", "纯文本")) }
                            }
                            @if open {
                                pre id={"log-" (t.task_id) "-" (a.attempt)} data-src=(url) data-follow=(url) aria-live="off" {
                                    (ctx.tr("Loading…", "加载中…"))
                                }
                            } @else {
                                pre id={"log-" (t.task_id) "-" (a.attempt)} data-src=(url) {
                                    (ctx.tr("Loading…", "加载中…"))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Logs

#[derive(Deserialize, Default)]
struct LogParams {
    agent: Option<String>,
    attempt: Option<u32>,
}

fn text(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// `GET /ui/runs/{id}/logs/{task}?attempt=N&agent=A`: an attempt's log as plain text, fetched
/// from the agent (operators and admins, as the API's log route). An agent that is not
/// connected is answered 503 with why, which the page shows in place of the log.
async fn log(
    ctx: Ctx,
    Path((id, task)): Path<(String, String)>,
    Query(p): Query<LogParams>,
) -> Response {
    let need = required_role(&Method::GET, LOG_ROUTE);
    if !ctx.can(need) {
        let hub = ctx.hub.clone();
        let name = ctx.actor.name.clone();
        let what = format!("GET /ui/runs/{id}/logs/{task}");
        let detail = format!("role {}, needs {need}", ctx.actor.role);
        let audited =
            tokio::task::spawn_blocking(move || hub.audit_denied(&name, &what, &detail)).await;
        if let Ok(Err(e)) = audited {
            tracing::warn!("auditing a refused log read: {e}");
        }
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "operator {} (role {}) may not read logs: it needs role {need}",
                ctx.actor.name, ctx.actor.role
            ),
        );
    }
    let hub = ctx.hub.clone();
    let rid = id.clone();
    let agent = match blocking(move || hub.run_agent(&rid, non_empty(&p.agent))).await {
        Ok(a) => a,
        Err(e) => return text(e.status, e.message),
    };
    if !ctx.hub.gateway().is_connected(&agent) {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "agent {agent} is not connected: its log stays on the agent until it reconnects"
            ),
        );
    }
    let audit = audit_due(&ctx.actor.name, &agent, &id, &task, p.attempt, now_ms());
    match ctx
        .hub
        .fetch_log_audited(
            &ctx.actor.name,
            &id,
            &task,
            Some(agent.clone()),
            p.attempt,
            audit,
        )
        .await
    {
        Ok(data) => text(StatusCode::OK, data),
        Err(OpError::Gateway(e)) => text(
            StatusCode::BAD_GATEWAY,
            format!("agent {agent} did not send the log: {e}"),
        ),
        Err(OpError::Conflict(m)) => text(StatusCode::SERVICE_UNAVAILABLE, m),
        Err(e) => {
            let e = ConsoleError::from(e);
            text(e.status, e.message)
        }
    }
}

/// A log read is audited at most this often per operator and attempt (a followed log is
/// fetched every second).
pub(crate) const LOG_AUDIT_EVERY_MS: i64 = 5 * 60 * 1000;

type LogKey = (String, String, String, String, Option<u32>);

/// When each (operator, agent, run, task, attempt) log read was last audited (this process).
static LOG_AUDITED: std::sync::Mutex<Vec<(LogKey, i64)>> = std::sync::Mutex::new(Vec::new());

/// Whether this log read is to be audited: the first, then one per [`LOG_AUDIT_EVERY_MS`].
/// Remembers a bounded number of reads (older ones are forgotten, so audited again).
pub(crate) fn audit_due(
    actor: &str,
    agent: &str,
    run_id: &str,
    task: &str,
    attempt: Option<u32>,
    now: i64,
) -> bool {
    const KEEP: usize = 1024;
    let key: LogKey = (
        actor.into(),
        agent.into(),
        run_id.into(),
        task.into(),
        attempt,
    );
    let Ok(mut seen) = LOG_AUDITED.lock() else {
        return true;
    };
    seen.retain(|(_, at)| now - at < LOG_AUDIT_EVERY_MS);
    if seen.iter().any(|(k, _)| *k == key) {
        return false;
    }
    if seen.len() >= KEEP {
        seen.remove(0);
    }
    seen.push((key, now));
    true
}

// ---------------------------------------------------------------------------------------------
// Writes

fn field(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `POST /ui/runs/{id}/cancel` (`agent`): first the confirmation page, then (`confirm=yes`) the
/// cancel, sent to the agent (connected agents only: commands are not queued).
async fn cancel(ctx: Ctx, Path(id): Path<String>, body: axum::body::Bytes) -> UiResult<Response> {
    let form = url_form(&body);
    let agent = field(&form, "agent");
    if field(&form, "confirm").as_deref() != Some("yes") {
        let hub = ctx.hub.clone();
        let rid = id.clone();
        let (agent, run, _) = blocking(move || hub.run(&rid, agent)).await?;
        let what = format!(
            "{} {id} ({} v{}, {} {agent}, {} {})?",
            ctx.tr("Cancel run", "取消运行"),
            run.workflow,
            run.version,
            ctx.tr("agent", "代理"),
            ctx.tr("now", "当前"),
            state_label(ctx.lang, run.state.as_str()),
        );
        let back = run_url(&id, &agent);
        return Ok(layout::confirm(
            &ctx,
            Nav::Runs,
            &what,
            &format!("/ui/runs/{}/cancel", enc(&id)),
            &[("agent", agent.as_str())],
            &back,
        )
        .into_response());
    }
    let o = ctx.hub.cancel_run(&ctx.actor.name, &id, agent).await?;
    let notice = if o.ok {
        ctx.tr(
            "Cancel sent: the agent is cancelling the run.",
            "已发送取消:代理正在取消该运行。",
        )
        .to_string()
    } else {
        format!("agent {} did not cancel the run: {}", o.agent, o.message)
    };
    Ok(done(&run_url(&id, &o.agent), &notice))
}

/// `POST /ui/runs/{id}/retry` (`agent`): run the failed tasks of a finished run again (the
/// agent reopens it; connected agents only).
async fn retry(ctx: Ctx, Path(id): Path<String>, body: axum::body::Bytes) -> UiResult<Response> {
    let form = url_form(&body);
    let agent = field(&form, "agent");
    let o = ctx
        .hub
        .retry_run(&ctx.actor.name, &id, agent, None, false)
        .await?;
    let notice = if o.ok {
        ctx.tr(
            "Retry sent: the agent runs the failed tasks again.",
            "已发送重试:代理将重新运行失败的任务。",
        )
        .to_string()
    } else {
        format!("agent {} did not retry the run: {}", o.agent, o.message)
    };
    Ok(done(&run_url(&id, &o.agent), &notice))
}

#[cfg(test)]
mod tests {
    use outpost_common::record::TaskState;

    use super::*;

    #[test]
    fn params_and_outputs_are_escaped() {
        let params = vec![(
            "<script>p</script>".to_string(),
            "\"><script>alert(1)</script>".to_string(),
        )];
        let html = params_table(Lang::En, &params).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains(r#"data-param="&lt;script&gt;p&lt;/script&gt;""#),
            "{html}"
        );
        let tasks = vec![TaskInstanceRecord {
            run_id: "r".into(),
            task_id: "t<b>".into(),
            state: TaskState::Succeeded,
            attempts: vec![],
            outputs: vec![("k".into(), "<script>x()</script>".into())],
            retry_at_ms: None,
            updated_ms: 0,
        }];
        let html = outputs_table(Lang::Zh, &tasks).into_string();
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;x()&lt;/script&gt;"), "{html}");
        assert!(html.contains("名称"));
    }

    #[test]
    fn state_filters_are_those_of_run_list() {
        assert!(matches!(state_filter(""), Ok(StateFilter::Any)));
        assert!(matches!(
            state_filter("failed"),
            Ok(StateFilter::Run(RunState::Failed))
        ));
        assert!(matches!(
            state_filter("failed-tasks"),
            Ok(StateFilter::FailedTasks)
        ));
        assert!(matches!(
            state_filter("missed"),
            Ok(StateFilter::Firings("missed"))
        ));
        assert!(state_filter("weird").is_err());
    }

    #[test]
    fn run_updates_change_the_run_pages() {
        let e = crate::events::Event {
            actor: "agent-a".into(),
            at_ms: 1,
            kind: crate::events::EventKind::RunUpdated {
                agent: "agent-a".into(),
                workflow: "demo".into(),
                run_id: "r1".into(),
            },
        };
        let t = super::super::live::topics(&e);
        for want in ["runs", "run:r1", "workflow:demo"] {
            assert!(t.iter().any(|x| x == want), "{want}: {t:?}");
        }
    }

    #[test]
    fn a_followed_log_is_audited_once_per_period() {
        let t = 1_000_000;
        assert!(audit_due("ann", "a", "r-audit", "t", Some(1), t));
        assert!(!audit_due("ann", "a", "r-audit", "t", Some(1), t + 1_000));
        assert!(audit_due("bob", "a", "r-audit", "t", Some(1), t + 1_000));
        assert!(audit_due("ann", "a", "r-audit", "t", Some(2), t + 1_000));
        assert!(audit_due(
            "ann",
            "a",
            "r-audit",
            "t",
            Some(1),
            t + LOG_AUDIT_EVERY_MS
        ));
    }

    #[test]
    fn urls_encode_their_parts() {
        assert_eq!(
            run_url("w@v1@m1", "a b"),
            "/ui/runs/w%40v1%40m1?agent=a%20b"
        );
        assert_eq!(
            log_url("r/1", "t&x", 2, "a"),
            "/ui/runs/r%2F1/logs/t%26x?attempt=2&agent=a"
        );
    }
}
