//! `/v1/rollouts` and a workflow's rollouts per pool: start, list, status, commands.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use outpost_common::duration::parse_duration;
use serde::Deserialize;

use super::{Actor, ApiError, ApiResult, ApiState, St, blocking, check_pool};
use crate::rollouts::{RolloutPlan, parse_offline, parse_size, parse_steps};
use crate::views::{RolloutStart, RolloutStatusView, RolloutSummary};

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/rollouts", post(start).get(list))
        .route("/v1/workflows/{name}/rollouts", get(history))
        .route("/v1/workflows/{name}/pools/{pool}/rollout", get(status))
        .route(
            "/v1/workflows/{name}/pools/{pool}/rollout/{command}",
            post(command),
        )
}

/// Build a rollout plan from the API request (defaults: canary 1, steps 100%, bake 0s, min runs
/// 0 per agent, max failure rate 0, offline wait:10m, no probation).
pub fn plan_of(req: &RolloutStart) -> Result<RolloutPlan, String> {
    let bake_ms = match req.bake.as_deref() {
        None | Some("") => 0,
        Some(b) => {
            let d = parse_duration(b).map_err(|e| format!("bake {b:?}: {e}"))?;
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        }
    };
    let min_runs_scope = match req.min_runs_scope.as_deref() {
        None | Some("agent") => outpost_rollout::Scope::PerAgent,
        Some("step") => outpost_rollout::Scope::Step,
        Some(o) => return Err(format!("bad min-runs scope {o:?} (agent or step)")),
    };
    let probation = match (req.probation_runs, req.probation_max_failures) {
        (None, None) => None,
        (Some(n), k) => Some((n, k.unwrap_or(0))),
        (None, Some(_)) => {
            return Err("--probation-max-failures needs --probation-runs".into());
        }
    };
    Ok(RolloutPlan {
        workflow: req.workflow.clone(),
        pool: req.pool.clone(),
        version: req.version,
        canary: parse_size(req.canary.as_deref().unwrap_or("1"))?,
        steps: parse_steps(req.steps.as_deref().unwrap_or("100%"))?,
        bake_ms,
        min_runs: req.min_runs.unwrap_or(0),
        min_runs_scope,
        max_failure_rate: req.max_failure_rate.unwrap_or(0.0),
        manual: req.manual,
        probation,
        offline: parse_offline(req.offline.as_deref().unwrap_or("wait"))?,
    })
}

async fn start(
    State(st): St,
    actor: Actor,
    Json(req): Json<RolloutStart>,
) -> ApiResult<Json<RolloutSummary>> {
    let plan = plan_of(&req).map_err(ApiError::bad)?;
    check_pool(&st, &actor, &plan.pool).await?;
    let hub = st.hub.clone();
    let rec = blocking(move || hub.start_rollout(actor.as_str(), &plan)).await?;
    Ok(Json(RolloutSummary::new(&rec)))
}

#[derive(Deserialize)]
struct RolloutListQuery {
    workflow: Option<String>,
    active: Option<bool>,
}

async fn list(
    State(st): St,
    Query(q): Query<RolloutListQuery>,
) -> ApiResult<Json<Vec<RolloutSummary>>> {
    let hub = st.hub.clone();
    let all = blocking(move || hub.rollouts()).await?;
    Ok(Json(
        all.iter()
            .filter(|r| q.workflow.as_deref().is_none_or(|w| w == r.workflow))
            .filter(|r| q.active.is_none_or(|a| a == r.active))
            .map(RolloutSummary::new)
            .collect(),
    ))
}

async fn history(State(st): St, Path(name): Path<String>) -> ApiResult<Json<Vec<RolloutSummary>>> {
    let hub = st.hub.clone();
    let n = name.clone();
    let all = blocking(move || {
        hub.workflow_meta(&n)?;
        hub.rollouts()
    })
    .await?;
    Ok(Json(
        all.iter()
            .filter(|r| r.workflow == name)
            .map(RolloutSummary::new)
            .collect(),
    ))
}

async fn status(
    State(st): St,
    Path((name, pool)): Path<(String, String)>,
) -> ApiResult<Json<RolloutStatusView>> {
    let hub = st.hub.clone();
    let (rec, status, spec) = blocking(move || hub.rollout_status_of(&name, &pool)).await?;
    Ok(Json(RolloutStatusView::new(&rec, &status, &spec)))
}

async fn command(
    State(st): St,
    actor: Actor,
    Path((name, pool, command)): Path<(String, String, String)>,
) -> ApiResult<Json<RolloutSummary>> {
    let cmd = match command.as_str() {
        "pause" => outpost_rollout::Command::Pause,
        "resume" => outpost_rollout::Command::Resume,
        "promote" => outpost_rollout::Command::Promote,
        "abort" => outpost_rollout::Command::Abort,
        other => {
            return Err(ApiError::bad(format!(
                "unknown rollout command {other:?} (pause, resume, promote, abort)"
            )));
        }
    };
    check_pool(&st, &actor, &pool).await?;
    let hub = st.hub.clone();
    let rec = blocking(move || hub.rollout_command(actor.as_str(), &name, &pool, cmd)).await?;
    Ok(Json(RolloutSummary::new(&rec)))
}
