//! The workflows: every workflow with its latest version, state, pools and last run; a
//! workflow's page with its versions, its task graph coloured by the most recent run
//! ([`super::dag`]), the next firings of its schedule in its time zone (daylight-saving
//! transitions marked), the trigger form built from its declared parameters, pause and resume;
//! two versions side by side ([`super::diff`]). Writes go through the same operations as the
//! API's (`hub.trigger`, `hub.pause`, `hub.resume`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Offset, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};
use serde::Deserialize;

use outpost_common::model::{Overlap, TriggerRule, Workflow};
use outpost_common::params::ParamType;
use outpost_common::record::TaskInstanceRecord;
use outpost_common::schedule::Schedule;
use outpost_common::workflow::{self, Format, ValidateOptions};

use super::dag::{self, DagNode};
use super::diff;
use super::layout::{self, Nav, badge};
use super::{ConsoleError, ConsoleState, Ctx, Lang, UiResult, blocking, done, enc, time, url_form};
use crate::ops::CommandOutcome;
use crate::store::{HubRun, PendingVersion, PoolDecision, RunQuery, StoredVersion, WorkflowMeta};

/// The list page finds each workflow's last run among this many most recent runs (one bounded
/// scan, not one per workflow).
const RECENT_RUNS: usize = 2000;
/// Firings listed on a workflow's page.
const FIRINGS: usize = 10;
/// Versions listed on a workflow's page (newest first).
const VERSIONS_SHOWN: usize = 100;
/// Above this many tasks the graph is not drawn (the page would outgrow its weight budget).
const DAG_MAX: usize = 300;

pub(super) fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/ui/workflows", get(list))
        .route("/ui/workflows/{name}", get(show))
        .route("/ui/workflows/{name}/diff", get(diff_page))
}

pub(super) fn write_routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/ui/workflows/{name}/trigger", post(trigger))
        .route("/ui/workflows/{name}/pause", post(pause))
        .route("/ui/workflows/{name}/resume", post(resume))
}

fn wf_path(name: &str) -> String {
    format!("/ui/workflows/{}", enc(name))
}

fn run_link(r: &HubRun) -> String {
    format!(
        "/ui/runs/{}?agent={}",
        enc(&r.record.run_id),
        enc(&r.agent_id)
    )
}

/// A stored version parsed (`None`: it no longer validates, e.g. after a rule changed).
fn parse(name: &str, content: &[u8], format: &str) -> Option<Workflow> {
    let text = std::str::from_utf8(content).ok()?;
    let format = if format == "toml" {
        Format::Toml
    } else {
        Format::Yaml
    };
    workflow::parse(name, text, format, &ValidateOptions::default()).ok()
}

fn rule_name(r: TriggerRule) -> Option<&'static str> {
    match r {
        TriggerRule::AllSuccess => None,
        TriggerRule::AllDone => Some("all_done"),
        TriggerRule::AllFailed => Some("all_failed"),
        TriggerRule::OneSuccess => Some("one_success"),
        TriggerRule::OneFailed => Some("one_failed"),
        TriggerRule::NoneFailed => Some("none_failed"),
    }
}

fn overlap_name(o: Overlap) -> &'static str {
    match o {
        Overlap::Skip => "skip",
        Overlap::Queue => "queue",
        Overlap::Allow => "allow",
        Overlap::CancelRunning => "cancel_running",
    }
}

/// One firing of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Firing {
    /// The instant.
    pub(crate) utc: DateTime<Utc>,
    /// The same instant in the workflow's zone.
    pub(crate) local: DateTime<Tz>,
    /// Its UTC offset differs from the previous firing's (or, for the first, from the offset
    /// at `after`): a daylight-saving transition lies between them.
    pub(crate) dst: bool,
}

/// The next `n` firings of `schedule` strictly after `after`, in zone `tz`.
pub(crate) fn firings(schedule: &Schedule, tz: Tz, after: DateTime<Utc>, n: usize) -> Vec<Firing> {
    let offset = |t: DateTime<Utc>| t.with_timezone(&tz).offset().fix().local_minus_utc();
    let mut prev = offset(after);
    schedule
        .iter_after(after, tz)
        .take(n)
        .map(|utc| {
            let off = offset(utc);
            let dst = off != prev;
            prev = off;
            Firing {
                utc,
                local: utc.with_timezone(&tz),
                dst,
            }
        })
        .collect()
}

/// Each pool's decision for one workflow, for people: `pool v3 (pinned, rollout)`.
fn pools_cell(ctx: &Ctx, pools: &[(&str, &PoolDecision)]) -> Markup {
    html! {
        @for (pool, d) in pools {
            span class="mono" { (pool) } " "
            @if d.version == 0 { span class="muted" { (ctx.tr("not deployed", "未部署")) } }
            @else { "v" (d.version) }
            @if d.pinned { " " (badge("paused", ctx.tr("pinned", "已固定"))) }
            @if d.rollout.is_some() { " " (badge("active", ctx.tr("rollout", "灰度中"))) }
            br;
        }
    }
}

fn run_state_cell(ctx: &Ctx, run: Option<&HubRun>) -> Markup {
    html! {
        @match run {
            Some(r) => {
                (badge(r.record.state.as_str(), r.record.state.as_str())) " "
                a href=(run_link(r)) class="mono" { (r.record.run_id) }
                br; span class="muted" { (time(r.record.created_ms)) }
            }
            None => { span class="muted" { (ctx.tr("no run yet", "尚无运行")) } }
        }
    }
}

fn state_badges(ctx: &Ctx, meta: &WorkflowMeta) -> Markup {
    html! {
        @if meta.deleted_ms.is_some() {
            (badge("none", ctx.tr("deleted", "已删除")))
        } @else if meta.paused {
            (badge("paused", ctx.tr("paused", "已暂停")))
        } @else {
            (badge("active", ctx.tr("active", "启用")))
        }
    }
}

type ListData = (
    Vec<(StoredVersion, WorkflowMeta)>,
    Vec<((String, String), PoolDecision)>,
    Vec<PendingVersion>,
    Vec<HubRun>,
);

async fn list(ctx: Ctx) -> UiResult<Markup> {
    let hub = ctx.hub.clone();
    let (wfs, decisions, pending, recent): ListData = blocking(move || {
        let recent = hub.runs(
            &RunQuery {
                limit: RECENT_RUNS,
                ..RunQuery::default()
            },
            false,
        )?;
        Ok::<_, crate::ops::OpError>((
            hub.workflows()?,
            hub.decisions()?,
            hub.pending_versions()?,
            recent,
        ))
    })
    .await?;
    let waiting: Vec<&PendingVersion> = pending
        .iter()
        .filter(|p| !wfs.iter().any(|(v, _)| v.name == p.name))
        .collect();
    let body = html! {
        div id="workflows-table" data-live-region class="scroll" {
            p class="muted" { (wfs.len()) " " (ctx.tr("workflows", "个工作流")) }
            table {
                thead { tr {
                    th scope="col" { (ctx.tr("Workflow", "工作流")) }
                    th scope="col" { (ctx.tr("Latest version", "最新版本")) }
                    th scope="col" { (ctx.tr("State", "状态")) }
                    th scope="col" { (ctx.tr("Pools (version)", "节点池(版本)")) }
                    th scope="col" { (ctx.tr("Last run", "最近运行")) }
                } }
                tbody {
                    @for (v, m) in &wfs {
                        @let pools: Vec<(&str, &PoolDecision)> = decisions.iter()
                            .filter(|((w, _), _)| *w == v.name)
                            .map(|((_, p), d)| (p.as_str(), d)).collect();
                        @let last = recent.iter().find(|r| r.record.workflow == v.name);
                        @let pend = pending.iter().find(|p| p.name == v.name);
                        tr data-workflow=(v.name) {
                            td { a href=(wf_path(&v.name)) { (v.name) } }
                            td {
                                "v" (v.version) br;
                                span class="muted" { (time(v.created_ms)) }
                                @if let Some(p) = pend {
                                    br; (badge("waiting", &format!("v{} {}", p.version, ctx.tr("waiting for release", "待发布签名"))))
                                }
                            }
                            td { (state_badges(&ctx, m)) }
                            td { (pools_cell(&ctx, &pools)) }
                            td { (run_state_cell(&ctx, last)) }
                        }
                    }
                    @for p in &waiting {
                        tr data-workflow=(p.name) {
                            td { (p.name) }
                            td { (badge("waiting", &format!("v{} {}", p.version, ctx.tr("waiting for release", "待发布签名")))) }
                            td { (badge("none", ctx.tr("not released", "未发布"))) }
                            td {}
                            td {}
                        }
                    }
                }
            }
            p class="hint" {
                (ctx.tr("Last run: the most recent among the hub's latest runs.", "最近运行:在中心最近的运行记录中查找。"))
            }
        }
    };
    Ok(layout::page(
        &ctx,
        Nav::Workflows,
        ctx.tr("Workflows", "工作流"),
        "workflows",
        body,
    ))
}

/// The most recent run of `workflow`: the newest of each agent's latest run of it (one short
/// look-up per agent in the per-agent, per-workflow index; a scan of every run would take
/// seconds at a million runs when the workflow has not run lately).
fn last_run(hub: &crate::hub::Hub, workflow: &str) -> Result<Option<HubRun>, crate::ops::OpError> {
    let mut best: Option<HubRun> = None;
    for a in hub.agents()? {
        let q = RunQuery {
            agent: Some(a.id),
            workflow: Some(workflow.to_string()),
            limit: 1,
            ..RunQuery::default()
        };
        if let Some(r) = hub.runs(&q, false)?.into_iter().next()
            && best
                .as_ref()
                .is_none_or(|b| r.record.created_ms > b.record.created_ms)
        {
            best = Some(r);
        }
    }
    Ok(best)
}

/// What a workflow's page shows.
struct Detail {
    meta: WorkflowMeta,
    history: Vec<StoredVersion>,
    pending: Option<PendingVersion>,
    pools: Vec<(String, PoolDecision)>,
    last: Option<HubRun>,
    tasks: Vec<TaskInstanceRecord>,
}

async fn show(ctx: Ctx, Path(name): Path<String>) -> UiResult<Markup> {
    let hub = ctx.hub.clone();
    let n = name.clone();
    let d = blocking(move || {
        let meta = hub.workflow_meta(&n)?;
        let history = hub.workflow_history(&n)?;
        let pending = hub.pending_version(&n)?;
        let pools = hub
            .decisions()?
            .into_iter()
            .filter(|((w, _), _)| *w == n)
            .map(|((_, p), d)| (p, d))
            .collect();
        let last = last_run(&hub, &n)?;
        let tasks = match &last {
            Some(r) => hub
                .run(&r.record.run_id, Some(r.agent_id.clone()))
                .map(|(_, _, t)| t)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok::<_, crate::ops::OpError>(Detail {
            meta,
            history,
            pending,
            pools,
            last,
            tasks,
        })
    })
    .await?;
    let Some(latest) = d.history.last() else {
        return Err(ConsoleError::new(StatusCode::NOT_FOUND, "no such workflow"));
    };
    let wf = parse(&name, &latest.content, &latest.format);
    let body = html! {
        (summary(&ctx, &name, &d, latest, wf.as_ref()))
        h2 { (ctx.tr("Task graph", "任务图")) }
        (graph(&ctx, &name, &d, wf.as_ref()))
        h2 { (ctx.tr("Next firings", "下次触发")) }
        (firings_table(&ctx, &d, wf.as_ref()))
        h2 { (ctx.tr("Versions", "版本")) }
        (versions_table(&ctx, &name, &d))
        @if ctx.may("/ui/workflows/{name}/trigger") && d.meta.deleted_ms.is_none() {
            h2 { (ctx.tr("Trigger a run", "手动触发运行")) }
            (trigger_form(&ctx, &name, wf.as_ref()))
        }
    };
    let title = format!("{} {name}", ctx.tr("Workflow", "工作流"));
    Ok(layout::page(
        &ctx,
        Nav::Workflows,
        &title,
        &format!("workflow:{name}"),
        body,
    ))
}

fn summary(
    ctx: &Ctx,
    name: &str,
    d: &Detail,
    latest: &StoredVersion,
    wf: Option<&Workflow>,
) -> Markup {
    let pools: Vec<(&str, &PoolDecision)> = d.pools.iter().map(|(p, x)| (p.as_str(), x)).collect();
    html! {
        div id="workflow-summary" data-live-region {
            dl class="kv" {
                dt { (ctx.tr("State", "状态")) } dd id="workflow-state" { (state_badges(ctx, &d.meta)) }
                dt { (ctx.tr("Latest version", "最新版本")) } dd { "v" (latest.version) " · " (time(latest.created_ms)) }
                @if let Some(wf) = wf {
                    @if let Some(desc) = &wf.description { dt { (ctx.tr("Description", "描述")) } dd { (desc) } }
                    dt { (ctx.tr("Schedule", "调度")) } dd {
                        @match &wf.schedule {
                            Some(s) => { code { (s.expr()) } " (" (wf.timezone.name()) ")" },
                            None => { (ctx.tr("none: runs only when triggered", "无:仅手动触发")) },
                        }
                    }
                    dt { (ctx.tr("Concurrency", "并发")) } dd {
                        (ctx.tr("at most ", "最多 ")) (wf.max_active_runs) (ctx.tr(" active runs; overlap ", " 个活动运行;重叠策略 "))
                        code { (overlap_name(wf.overlap)) }
                    }
                    dt { (ctx.tr("Target", "目标")) } dd {
                        @if wf.target.is_empty() { (ctx.tr("every agent", "所有代理")) }
                        @for (k, v) in &wf.target { code { (k) "=" (v) } " " }
                    }
                }
                dt { (ctx.tr("Pools", "节点池")) } dd { (pools_cell(ctx, &pools)) }
                dt { (ctx.tr("Last run", "最近运行")) } dd { (run_state_cell(ctx, d.last.as_ref())) }
            }
            p {
                a href={"/ui/runs?workflow=" (enc(name))} { (ctx.tr("Runs of this workflow →", "该工作流的运行 →")) }
            }
            @if d.meta.deleted_ms.is_none() {
                @if !d.meta.paused && ctx.may("/ui/workflows/{name}/pause") {
                    (layout::action(ctx, &format!("{}/pause", wf_path(name)), ctx.tr("Pause", "暂停"), "pause"))
                }
                @if d.meta.paused && ctx.may("/ui/workflows/{name}/resume") {
                    (layout::action(ctx, &format!("{}/resume", wf_path(name)), ctx.tr("Resume", "恢复"), "resume"))
                }
            }
        }
    }
}

/// Short facts drawn on a task's box, and longer ones for its title.
fn task_facts(ctx: &Ctx, t: &outpost_common::model::Task) -> (Vec<String>, Vec<String>) {
    let mut facts = Vec::new();
    if !t.resources.is_empty() {
        let sems: Vec<String> = t
            .resources
            .iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect();
        facts.push(format!("{} {}", ctx.tr("sem", "信号量"), sems.join(",")));
    }
    if t.priority != 0 {
        facts.push(format!("{} {}", ctx.tr("prio", "优先级"), t.priority));
    }
    if t.retry.retries > 0 {
        facts.push(format!("{} {}", ctx.tr("retries", "重试"), t.retry.retries));
    }
    let mut more = Vec::new();
    if let Some(to) = t.timeout {
        more.push(format!("{} {}s", ctx.tr("timeout", "超时"), to.as_secs()));
    }
    if !t.depends_on.is_empty() {
        more.push(format!(
            "{} {}",
            ctx.tr("depends on", "依赖"),
            t.depends_on.join(", ")
        ));
    }
    (facts, more)
}

fn graph(ctx: &Ctx, name: &str, d: &Detail, wf: Option<&Workflow>) -> Markup {
    let Some(wf) = wf else {
        return html! { p class="muted" { (ctx.tr("The latest version no longer validates: the graph cannot be drawn.", "最新版本已无法通过校验,无法绘制任务图。")) } };
    };
    if wf.tasks.len() > DAG_MAX {
        return html! { p class="muted" { (wf.tasks.len()) (ctx.tr(" tasks: too many to draw.", " 个任务:太多,无法绘制。")) } };
    }
    let nodes: Vec<DagNode> = wf
        .tasks
        .iter()
        .map(|t| {
            let (facts, more) = task_facts(ctx, t);
            DagNode {
                id: t.id.clone(),
                upstream: t.upstream.clone(),
                state: d
                    .tasks
                    .iter()
                    .find(|x| x.task_id == t.id)
                    .map(|x| x.display_state().to_string()),
                rule: rule_name(t.trigger_rule),
                facts,
                more,
            }
        })
        .collect();
    let label = format!(
        "{} {name}: {} {}",
        ctx.tr("Task graph of", "任务图:"),
        wf.tasks.len(),
        ctx.tr("tasks", "个任务")
    );
    html! {
        div id="dag-region" data-live-region {
            @match &d.last {
                Some(r) => { p class="muted" {
                    (ctx.tr("Colours: task states in the most recent run ", "颜色:最近一次运行中的任务状态 "))
                    a href=(run_link(r)) class="mono" { (r.record.run_id) }
                    " (v" (r.record.version) ", " (r.record.state.as_str()) ")."
                } },
                None => { p class="muted" { (ctx.tr("No run yet: every task is drawn as none.", "尚无运行:所有任务显示为无状态。")) } },
            }
            div class="scroll" { (dag::render(&nodes, &label, ctx.tr("none", "无"))) }
        }
    }
}

fn firings_table(ctx: &Ctx, d: &Detail, wf: Option<&Workflow>) -> Markup {
    let Some((schedule, tz)) = wf.and_then(|w| w.schedule.as_ref().map(|s| (s, w.timezone))) else {
        return html! { p class="muted" { (ctx.tr("No schedule: the workflow runs only when triggered.", "无调度:该工作流仅手动触发。")) } };
    };
    let list = firings(schedule, tz, Utc::now(), FIRINGS);
    html! {
        @if d.meta.paused {
            p class="muted" { (ctx.tr("Paused: these firings do not run until it is resumed.", "已暂停:恢复之前这些触发不会运行。")) }
        }
        table id="firings" {
            caption class="muted" { (ctx.tr("Time zone: ", "时区:")) (tz.name()) }
            thead { tr {
                th scope="col" { (ctx.tr("Local time", "本地时间")) }
                th scope="col" { (ctx.tr("UTC", "UTC")) }
                th scope="col" { (ctx.tr("Note", "备注")) }
            } }
            tbody {
                @for f in &list {
                    tr class=[f.dst.then_some("dst")] {
                        td class="mono" { (f.local.format("%Y-%m-%d %H:%M:%S %:z (%Z)").to_string()) }
                        td class="mono" { (f.utc.format("%Y-%m-%d %H:%M:%S UTC").to_string()) }
                        td { @if f.dst { span class="dst" title=(ctx.tr("The UTC offset changed: a daylight-saving transition", "UTC 偏移已变化:夏令时切换")) { "DST" } } }
                    }
                }
            }
        }
    }
}

fn versions_table(ctx: &Ctx, name: &str, d: &Detail) -> Markup {
    let diff_link = |from: u64, to: u64| format!("{}/diff?from={from}&to={to}", wf_path(name));
    let latest = d.history.last().map(|v| v.version);
    html! {
        table id="versions" {
            thead { tr {
                th scope="col" { (ctx.tr("Version", "版本")) }
                th scope="col" { (ctx.tr("When", "时间")) }
                th scope="col" { (ctx.tr("By", "操作人")) }
                th scope="col" { (ctx.tr("Origin", "来源")) }
                th scope="col" { (ctx.tr("Content hash", "内容哈希")) }
                th scope="col" { (ctx.tr("Release", "发布")) }
                th scope="col" { (ctx.tr("Changes", "变更")) }
            } }
            tbody {
                @if let Some(p) = &d.pending {
                    tr data-version=(p.version) class="pending" {
                        td { "v" (p.version) }
                        td { (time(p.created_ms)) }
                        td { (p.applied_by) }
                        td class="mono" { (p.origin) }
                        td class="mono" title=(p.content_hash) { (short(&p.content_hash)) }
                        td { (badge("waiting", &format!("{} ({} {})", ctx.tr("waiting for release", "待发布签名"), p.signatures.len(), ctx.tr("signatures", "个签名")))) }
                        td { @if let Some(l) = latest { a href=(diff_link(l, p.version)) { "v" (l) " → v" (p.version) } } }
                    }
                }
                @for (i, v) in d.history.iter().enumerate().rev().take(VERSIONS_SHOWN) {
                    tr data-version=(v.version) {
                        td { "v" (v.version) }
                        td { (time(v.created_ms)) }
                        td { (v.applied_by) }
                        td class="mono" { (v.origin) }
                        td class="mono" title=(v.content_hash) { (short(&v.content_hash)) }
                        td { (badge("ok", ctx.tr("released", "已发布"))) }
                        td {
                            @if i > 0 {
                                @let prev = d.history[i - 1].version;
                                a href=(diff_link(prev, v.version)) { "v" (prev) " → v" (v.version) }
                            }
                        }
                    }
                }
            }
        }
        @if d.history.len() > VERSIONS_SHOWN {
            p class="muted" { (ctx.tr("Older versions are not listed; compare them through the diff page.", "更早的版本未列出;可在对比页面中比较。")) }
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn trigger_form(ctx: &Ctx, name: &str, wf: Option<&Workflow>) -> Markup {
    html! {
        form id="trigger" method="post" action={(wf_path(name)) "/trigger"} class="stack" {
            (ctx.csrf_field())
            @match wf {
                Some(wf) => { (param_fields(ctx.lang, wf)) },
                None => { p class="muted" { (ctx.tr("The latest version no longer validates; the agent checks the parameters.", "最新版本已无法通过校验;由代理检查参数。")) } },
            }
            label for="trigger-agent" { (ctx.tr("Agent (optional; empty: every agent the workflow is deployed to)", "代理(可选;留空:部署了该工作流的所有代理)")) }
            input type="text" id="trigger-agent" name="agent" value="";
            div { button type="submit" id="trigger-run" { (ctx.tr("Trigger run", "触发运行")) } }
        }
    }
}

/// One field per declared parameter (`param.<name>`, id `param-<name>`): its rule, whether it
/// is required, its default (prefilled); the choices of an enum or a boolean as a list.
pub(crate) fn param_fields(lang: Lang, wf: &Workflow) -> Markup {
    html! {
        @if wf.param_rules.is_empty() {
            p class="muted" { (lang.tr("This workflow declares no parameters.", "该工作流未声明参数。")) }
        }
        @for (p, rule) in &wf.param_rules {
            @let id = format!("param-{p}");
            @let default = wf.params.get(p).map(String::as_str).unwrap_or("");
            @let choices: Vec<&str> = match &rule.ty {
                ParamType::Enum(v) => v.iter().map(String::as_str).collect(),
                ParamType::Boolean => vec!["true", "false"],
                _ => vec![],
            };
            @let mode = match rule.ty {
                ParamType::Integer => Some("numeric"),
                ParamType::Number => Some("decimal"),
                _ => None,
            };
            label for=(id) {
                code { (p) } " · " (rule.to_string())
                @if rule.required { " · " strong { (lang.tr("required", "必填")) } }
                @if !default.is_empty() { " · " (lang.tr("default ", "默认值 ")) code { (default) } }
            }
            @if choices.is_empty() {
                input type="text" id=(id) name={"param." (p)} value=(default) required[rule.required] inputmode=[mode];
            } @else {
                @let list = format!("{id}-choices");
                input type="text" id=(id) name={"param." (p)} value=(default) required[rule.required] list=(list);
                datalist id=(list) { @for c in &choices { option value=(c) {} } }
            }
        }
    }
}

/// The parameters and the agent of a trigger form: `param.<name>` fields with a value (an
/// empty field leaves the declared default), `agent` if given.
pub(crate) fn trigger_input(body: &[u8]) -> (Vec<(String, String)>, Option<String>) {
    let form = url_form(body);
    let params = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("param.")?.to_string(), v.clone())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let agent = form
        .iter()
        .find(|(k, _)| k == "agent")
        .map(|(_, v)| v.trim().to_string())
        .filter(|a| !a.is_empty());
    (params, agent)
}

/// What a command did on each agent, for the notice after a write.
fn outcome_notice(ctx: &Ctx, done_word: &str, outcomes: &[CommandOutcome]) -> String {
    let ok = outcomes.iter().filter(|o| o.ok).count();
    let mut s = format!(
        "{done_word} {ok}/{} {}",
        outcomes.len(),
        ctx.tr("agents.", "个代理。")
    );
    for o in outcomes {
        match (&o.run_id, o.ok) {
            (Some(run), true) => s.push_str(&format!(" {}: {run}.", o.agent)),
            (_, true) => {}
            (_, false) => s.push_str(&format!(" {}: {}.", o.agent, o.message)),
        }
    }
    s
}

/// `POST /ui/workflows/{name}/trigger`: the same operation as the API's trigger (parameters
/// checked against the declarations, audited, sent to the agents); then the workflow's runs.
async fn trigger(
    ctx: Ctx,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> UiResult<Response> {
    let (params, agent) = trigger_input(&body);
    let agent = match agent {
        Some(a) => {
            let hub = ctx.hub.clone();
            Some(blocking(move || hub.resolve_agent(&a)).await?)
        }
        None => None,
    };
    let outcomes = ctx
        .hub
        .trigger(&ctx.actor.name, &name, agent, params)
        .await?;
    let notice = if outcomes.is_empty() {
        ctx.tr(
            "Nothing started: the workflow is deployed to no agent.",
            "未启动:该工作流未部署到任何代理。",
        )
        .to_string()
    } else {
        outcome_notice(&ctx, ctx.tr("Triggered on", "已触发:"), &outcomes)
    };
    Ok(done(&format!("/ui/runs?workflow={}", enc(&name)), &notice))
}

async fn pause(ctx: Ctx, Path(name): Path<String>) -> UiResult<Response> {
    let outcomes = ctx.hub.pause(&ctx.actor.name, &name).await?;
    let notice = format!(
        "{} {}",
        ctx.tr("Paused at the hub.", "已在中心暂停。"),
        outcome_notice(&ctx, ctx.tr("Told", "已通知"), &outcomes)
    );
    Ok(done(&wf_path(&name), &notice))
}

async fn resume(ctx: Ctx, Path(name): Path<String>) -> UiResult<Response> {
    let outcomes = ctx.hub.resume(&ctx.actor.name, &name).await?;
    let notice = format!(
        "{} {}",
        ctx.tr("Resumed at the hub.", "已在中心恢复。"),
        outcome_notice(&ctx, ctx.tr("Told", "已通知"), &outcomes)
    );
    Ok(done(&wf_path(&name), &notice))
}

#[derive(Deserialize, Default)]
struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `/ui/workflows/{name}/diff?from=A&to=B`: two versions side by side (the one waiting for
/// release too). Without `to`: the latest; without `from`: the version before `to`.
async fn diff_page(
    ctx: Ctx,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> UiResult<Markup> {
    let num = |s: &Option<String>, what: &str| -> UiResult<Option<u64>> {
        match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(v) => v.trim_start_matches('v').parse().map(Some).map_err(|_| {
                ConsoleError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{what}: not a version number: {v:?}"),
                )
            }),
        }
    };
    let (from, to) = (num(&q.from, "from")?, num(&q.to, "to")?);
    let hub = ctx.hub.clone();
    let n = name.clone();
    let (history, pending) = blocking(move || {
        Ok::<_, crate::ops::OpError>((hub.workflow_history(&n)?, hub.pending_version(&n)?))
    })
    .await?;
    // Every version with its text: released ones, then the one waiting.
    let mut all: Vec<(u64, &[u8])> = history
        .iter()
        .map(|v| (v.version, v.content.as_slice()))
        .collect();
    if let Some(p) = &pending {
        all.push((p.version, p.content.as_slice()));
    }
    let Some(&(last, _)) = all.last() else {
        return Err(ConsoleError::new(StatusCode::NOT_FOUND, "no such workflow"));
    };
    let to = to.unwrap_or(last);
    let from = match from {
        Some(f) => f,
        None => all
            .iter()
            .rev()
            .map(|(v, _)| *v)
            .find(|v| *v < to)
            .unwrap_or(to),
    };
    let text = |v: u64| -> UiResult<String> {
        all.iter()
            .find(|(x, _)| *x == v)
            .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
            .ok_or_else(|| {
                ConsoleError::new(StatusCode::NOT_FOUND, format!("{name} has no version {v}"))
            })
    };
    let rows = diff::rows(&text(from)?, &text(to)?);
    let title = format!("{} {name}: v{from} → v{to}", ctx.tr("Changes of", "变更:"));
    let body = html! {
        form method="get" action={(wf_path(&name)) "/diff"} class="filters" {
            label { (ctx.tr("From", "从"))
                select name="from" { @for (v, _) in &all { option value=(v) selected[*v == from] { "v" (v) } } }
            }
            label { (ctx.tr("To", "到"))
                select name="to" { @for (v, _) in &all { option value=(v) selected[*v == to] { "v" (v) } } }
            }
            button type="submit" { (ctx.tr("Compare", "比较")) }
        }
        p { a href=(wf_path(&name)) { (ctx.tr("← Back to the workflow", "← 返回工作流")) } }
        (diff::render(&rows, &format!("v{from}"), &format!("v{to}"), &title, ctx.tr("The two versions have the same text.", "两个版本内容相同。")))
    };
    Ok(layout::page(&ctx, Nav::Workflows, &title, "", body))
}

#[cfg(test)]
#[path = "workflows_tests.rs"]
mod tests;
