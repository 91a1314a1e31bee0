//! `/v1/runs`: list, show, logs, cancel, retry; and `/v1/workflows/{name}/backfill`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use outpost_common::duration::parse_duration;
use serde::Deserialize;

use super::{Actor, ApiError, ApiResult, ApiState, St, blocking};
use crate::hub::now_ms;
use crate::store::RunQuery;
use crate::views::*;

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/runs", get(list))
        .route("/v1/runs/{id}", get(show))
        .route("/v1/runs/{id}/logs/{task}", get(logs))
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/v1/runs/{id}/retry", post(retry))
        .route("/v1/workflows/{name}/backfill", post(backfill))
        .route("/v1/firings", get(firings))
}

#[derive(Deserialize)]
struct RunsQuery {
    workflow: Option<String>,
    agent: Option<String>,
    state: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

/// Parse `since`: an RFC 3339 time, or a duration (`1h`) meaning that long ago.
pub fn parse_since(s: &str, now_ms: i64) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    let d = parse_duration(s).ok()?;
    Some(now_ms.saturating_sub(i64::try_from(d.as_millis()).ok()?))
}

/// The `run list --state` value for runs that had a failed task.
const FAILED_TASKS: &str = "failed-tasks";

async fn list(State(st): St, Query(q): Query<RunsQuery>) -> ApiResult<Json<Vec<RunView>>> {
    // `failed-tasks`: runs with a failed task, whatever their state (a run that succeeded past a
    // failed task through an `all_done` leaf included).
    let failed_tasks = q.state.as_deref() == Some(FAILED_TASKS);
    let state = match q.state.as_deref().filter(|s| !s.is_empty() && *s != FAILED_TASKS) {
        None => None,
        Some(s) => Some(outpost_common::record::RunState::parse(s).ok_or_else(|| {
            ApiError::bad(format!(
                "unknown run state {s:?} (queued, running, succeeded, failed, cancelled, skipped, failed-tasks)"
            ))
        })?),
    };
    let since_ms = match q.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_since(s, now_ms()).ok_or_else(|| {
            ApiError::bad(format!(
                "since {s:?}: not an RFC 3339 time or a duration like 1h"
            ))
        })?),
    };
    let query = RunQuery {
        workflow: q.workflow.filter(|s| !s.is_empty()),
        agent: q.agent.filter(|s| !s.is_empty()),
        state,
        since_ms,
        before: None,
        limit: q.limit.unwrap_or(1000).min(100_000),
    };
    let hub = st.hub.clone();
    let runs = blocking(move || hub.runs(&query, failed_tasks)).await?;
    Ok(Json(
        runs.iter()
            .map(|r| RunView::new(&r.agent_id, &r.record, &[]))
            .collect(),
    ))
}

#[derive(Deserialize)]
struct RunQueryParams {
    agent: Option<String>,
    attempt: Option<u32>,
}

async fn show(
    State(st): St,
    Path(id): Path<String>,
    Query(q): Query<RunQueryParams>,
) -> ApiResult<Json<RunView>> {
    let hub = st.hub.clone();
    let (agent, run, tasks) = blocking(move || hub.run(&id, q.agent)).await?;
    Ok(Json(RunView::new(&agent, &run, &tasks)))
}

async fn logs(
    State(st): St,
    actor: Actor,
    Path((id, task)): Path<(String, String)>,
    Query(q): Query<RunQueryParams>,
) -> ApiResult<Response> {
    let data = st
        .hub
        .fetch_log(actor.as_str(), &id, &task, q.agent, q.attempt)
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], data).into_response())
}

/// `POST /v1/runs/{id}/cancel`: cancel a run on the agent that has it (connected agents only;
/// commands are not queued).
async fn cancel(
    State(st): St,
    actor: Actor,
    Path(id): Path<String>,
    Query(q): Query<RunQueryParams>,
) -> ApiResult<Json<TriggerResult>> {
    let o = st.hub.cancel_run(actor.as_str(), &id, q.agent).await?;
    Ok(Json(o.into()))
}

#[derive(Deserialize)]
struct FiringParams {
    workflow: Option<String>,
    agent: Option<String>,
    status: Option<String>,
}

/// `GET /v1/firings`: expected firings with no run reported, missed or unknown.
async fn firings(State(st): St, Query(q): Query<FiringParams>) -> ApiResult<Json<Vec<FiringView>>> {
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = status
        .as_deref()
        .filter(|s| !matches!(*s, "missed" | "unknown"))
    {
        return Err(ApiError::bad(format!(
            "status {s:?}: expected missed or unknown"
        )));
    }
    let hub = st.hub.clone();
    let mut found = blocking(move || hub.firing_findings()).await?;
    found.retain(|f| {
        q.workflow
            .as_deref()
            .is_none_or(|w| w.is_empty() || f.workflow == w)
            && q.agent
                .as_deref()
                .is_none_or(|a| a.is_empty() || f.agent == a)
            && status.as_deref().is_none_or(|s| f.status.as_str() == s)
    });
    found.sort_by(|a, b| {
        (a.scheduled_ms, &a.agent)
            .cmp(&(b.scheduled_ms, &b.agent))
            .reverse()
    });
    Ok(Json(
        found
            .iter()
            .map(|f| FiringView {
                agent: f.agent.clone(),
                workflow: f.workflow.clone(),
                version: f.version,
                scheduled: rfc3339(f.scheduled_ms),
                status: f.status.as_str().to_string(),
                since: rfc3339(f.since_ms),
            })
            .collect(),
    ))
}

/// `POST /v1/runs/{id}/retry`: reopen a finished run on its agent and run its failed tasks
/// again (connected agents only; commands are not queued).
async fn retry(
    State(st): St,
    actor: Actor,
    Path(id): Path<String>,
    body: Option<Json<RetryRequest>>,
) -> ApiResult<Json<TriggerResult>> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let o = st
        .hub
        .retry_run(actor.as_str(), &id, req.agent, req.task, req.downstream)
        .await?;
    Ok(Json(TriggerResult {
        agent: o.agent,
        ok: o.ok,
        run_id: Some(id),
        message: o.message,
    }))
}

/// Parse an RFC 3339 time of a request field.
pub(super) fn parse_time(field: &str, s: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| ApiError::bad(format!("{field} {s:?}: not an RFC 3339 time ({e})")))
}

/// `POST /v1/workflows/{name}/backfill`: runs for the schedule's instants in `[from, to)` on
/// the target agents, with the ids live firings have.
async fn backfill(
    State(st): St,
    actor: Actor,
    Path(name): Path<String>,
    Json(req): Json<BackfillRequest>,
) -> ApiResult<Json<BackfillResponse>> {
    let plan = crate::ops::reruns::BackfillPlan {
        from: parse_time("from", &req.from)?,
        to: parse_time("to", &req.to)?,
        pool: req.pool.filter(|s| !s.is_empty()),
        agent: req.agent.filter(|s| !s.is_empty()),
        max_active: req.max_active.unwrap_or(1).max(1),
        dry_run: req.dry_run,
    };
    let o = st.hub.backfill(actor.as_str(), &name, plan).await?;
    Ok(Json(BackfillResponse {
        instants: o.instants.iter().map(|t| t.to_rfc3339()).collect(),
        agents: o.targets,
        results: o.results.into_iter().map(TriggerResult::from).collect(),
    }))
}
