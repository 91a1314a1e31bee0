//! `/v1/workflows`: apply, list, show, history, diff, rollback, pause, resume, trigger.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use outpost_common::workflow::{self, Format, ValidateOptions};

use super::{Actor, ApiResult, ApiState, St, blocking, check_pool};
use crate::ops::CommandOutcome;
use crate::ops::lifecycle::ApplyPlan;
use crate::ops::workflows::{FileOutcome, SourceFile};
use crate::views::*;

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/workflows", post(apply).get(list))
        .route("/v1/workflows/{name}", get(show))
        .route("/v1/workflows/{name}/history", get(history))
        .route("/v1/workflows/{name}/diff", get(diff))
        .route("/v1/workflows/{name}/rollback", post(rollback))
        .route("/v1/workflows/{name}/pause", post(pause))
        .route("/v1/workflows/{name}/resume", post(resume))
        .route("/v1/workflows/{name}/trigger", post(trigger))
        .route("/v1/workflows/{name}/delete", post(delete))
}

#[derive(Deserialize)]
struct ApplyQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn apply(
    State(st): St,
    actor: Actor,
    Query(q): Query<ApplyQuery>,
    Json(req): Json<ApplyRequest>,
) -> ApiResult<Json<ApplyResponse>> {
    if !actor.pools.is_empty() {
        // A new version moves the workflow's default pool: a deployer limited to pools needs
        // it among them. Files that do not parse change nothing (apply reports them).
        for f in &req.files {
            let format = Format::from_path(std::path::Path::new(&f.path));
            if let Ok(wf) =
                workflow::parse(&f.path, &f.content, format, &ValidateOptions::default())
            {
                check_pool(&st, &actor, &default_pool(&wf.name)).await?;
            }
        }
    }
    let hub = st.hub.clone();
    let files = req
        .files
        .into_iter()
        .map(|f| SourceFile {
            path: f.path,
            content: f.content,
        })
        .collect();
    let outcomes = blocking(move || hub.apply_files(actor.as_str(), files, q.dry_run)).await?;
    let results = outcomes
        .into_iter()
        .map(|o| match o {
            FileOutcome::Invalid { path, diagnostics } => ApplyResult {
                path,
                name: None,
                version: None,
                changed: false,
                pending: false,
                diagnostics,
                plan: None,
            },
            FileOutcome::Held { path, workflow } => ApplyResult {
                path,
                name: Some(workflow),
                version: None,
                changed: false,
                pending: false,
                diagnostics: vec![],
                plan: None,
            },
            FileOutcome::Planned { path, plan } => plan_result(path, *plan),
            FileOutcome::Applied { path, version } => ApplyResult {
                path,
                name: Some(version.workflow),
                version: Some(version.version),
                changed: version.changed,
                pending: version.pending,
                diagnostics: vec![],
                plan: None,
            },
        })
        .collect();
    Ok(Json(ApplyResponse { results }))
}

/// A dry run's answer for one file.
fn plan_result(path: String, plan: ApplyPlan) -> ApplyResult {
    ApplyResult {
        path,
        name: Some(plan.workflow),
        version: plan.latest,
        changed: false,
        pending: false,
        diagnostics: vec![],
        plan: Some(PlanView {
            status: plan.status.to_string(),
            latest: plan.latest,
            diff: plan.diff,
            needs_release: plan.needs_release,
            pools: plan
                .pools
                .into_iter()
                .map(|p| PoolPlanView {
                    pool: p.pool,
                    version: p.version,
                    gets_new: p.gets_new,
                    note: p.note,
                })
                .collect(),
            agents: plan.agents,
        }),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    /// Deleted workflows too.
    #[serde(default)]
    all: bool,
}

async fn list(State(st): St, Query(q): Query<ListQuery>) -> ApiResult<Json<Vec<WorkflowSummary>>> {
    let hub = st.hub.clone();
    let rows = blocking(move || hub.workflows()).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|(_, m)| q.all || m.deleted_ms.is_none())
            .map(|(v, m)| WorkflowSummary {
                name: v.name,
                version: v.version,
                versions: m.latest,
                paused: m.paused,
                target: label_map(&v.target),
                updated: rfc3339(m.updated_ms),
                deleted: m.deleted_ms.map(rfc3339),
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<u64>,
}

async fn show(
    State(st): St,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<WorkflowDetail>> {
    let hub = st.hub.clone();
    let v = blocking(move || hub.workflow_version(&name, q.version)).await?;
    Ok(Json(WorkflowDetail {
        content: String::from_utf8_lossy(&v.content).into_owned(),
        name: v.name,
        version: v.version,
        content_hash: v.content_hash,
        created: rfc3339(v.created_ms),
        target: label_map(&v.target),
        format: v.format,
        origin: v.origin,
    }))
}

async fn history(State(st): St, Path(name): Path<String>) -> ApiResult<Json<Vec<HistoryEntry>>> {
    let hub = st.hub.clone();
    let versions = blocking(move || hub.workflow_history(&name)).await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|v| HistoryEntry {
                version: v.version,
                content_hash: v.content_hash,
                created: rfc3339(v.created_ms),
                origin: v.origin,
                applied_by: v.applied_by,
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct DiffQuery {
    from: u64,
    to: u64,
}

async fn diff(
    State(st): St,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<DiffResponse>> {
    let hub = st.hub.clone();
    let diff = blocking(move || hub.workflow_diff(&name, q.from, q.to)).await?;
    Ok(Json(DiffResponse { diff }))
}

async fn rollback(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
    Json(req): Json<RollbackRequest>,
) -> ApiResult<Json<VersionResponse>> {
    check_pool(&st, &actor, &default_pool(&name)).await?;
    let hub = st.hub.clone();
    let out = blocking(move || hub.rollback(actor.as_str(), &name, req.to)).await?;
    Ok(Json(VersionResponse {
        version: out.version,
        changed: out.changed,
        pending: out.pending,
    }))
}

fn agent_results(outcomes: Vec<CommandOutcome>) -> AgentsResponse {
    AgentsResponse {
        agents: outcomes
            .into_iter()
            .map(|o| AgentResult {
                id: o.agent,
                ok: o.ok,
                message: o.message,
            })
            .collect(),
    }
}

async fn pause(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Json<AgentsResponse>> {
    let outcomes = st.hub.pause(actor.as_str(), &name).await?;
    Ok(Json(agent_results(outcomes)))
}

async fn resume(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Json<AgentsResponse>> {
    let outcomes = st.hub.resume(actor.as_str(), &name).await?;
    Ok(Json(agent_results(outcomes)))
}

/// `?at=`: a past logical time for the run (`trigger --at`).
#[derive(Deserialize)]
struct TriggerAt {
    at: Option<String>,
}

async fn trigger(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
    Query(q): Query<TriggerAt>,
    body: Option<Json<TriggerRequest>>,
) -> ApiResult<Json<TriggerResponse>> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let params = req.params.into_iter().collect();
    let outcomes = match q.at.as_deref().filter(|s| !s.is_empty()) {
        Some(at) => {
            let at = super::runs::parse_time("at", at)?;
            st.hub
                .trigger_at(actor.as_str(), &name, req.agent, params, at)
                .await?
        }
        None => {
            st.hub
                .trigger(actor.as_str(), &name, req.agent, params)
                .await?
        }
    };
    Ok(Json(TriggerResponse {
        results: outcomes.into_iter().map(TriggerResult::from).collect(),
    }))
}

async fn delete(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
    body: Option<Json<DeleteRequest>>,
) -> ApiResult<Json<DeleteResponse>> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    // Delete takes the workflow out of every pool that holds it: a deployer limited to pools
    // needs each of them.
    check_pool(&st, &actor, &default_pool(&name)).await?;
    if !actor.pools.is_empty() {
        let hub = st.hub.clone();
        let decisions = blocking(move || hub.decisions()).await?;
        for ((w, pool), _) in decisions {
            if w == name {
                check_pool(&st, &actor, &pool).await?;
            }
        }
    }
    let hub = st.hub.clone();
    let n = name.clone();
    let (out, agents) =
        blocking(move || hub.delete_workflow(actor.as_str(), &n, req.force)).await?;
    Ok(Json(DeleteResponse {
        name,
        pools: out.pools,
        agents,
        aborted_rollouts: out.aborted_rollouts,
        dropped_pending: out.dropped_pending,
    }))
}

/// The default pool of workflow `name` (`wf:<name>`), which `apply` and `rollback` move.
fn default_pool(name: &str) -> String {
    format!("{}{name}", crate::store::DEFAULT_POOL_PREFIX)
}
