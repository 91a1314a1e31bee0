//! `/v1/alerts`: the notification history and silences.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use outpost_alerts::{AlertStatus, Notification, Silence};
use outpost_common::duration::parse_duration;
use serde::{Deserialize, Serialize};

use super::{Actor, ApiError, ApiResult, ApiState, St, blocking};
use crate::ops::alerts::{AlertQuery, SilenceSpec, matchers_text};
use crate::store::{AlertEntry, DeliveryRecord};
use crate::views::rfc3339;

/// The routes of this resource (merged into the one router, [`super::router`]).
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/alerts", get(list))
        .route("/v1/alerts/silences", get(silences).post(silence))
        .route("/v1/alerts/silences/{id}", delete(unsilence))
}

/// One delivery of a notification, as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryView {
    pub channel: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub finished: Option<String>,
}

/// One notification of the history, as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertView {
    pub seq: u64,
    pub created: String,
    pub notification: serde_json::Value,
    pub deliveries: Vec<DeliveryView>,
}

/// A silence, as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SilenceView {
    pub id: String,
    pub matchers: String,
    pub rule: Option<String>,
    pub workflow: Option<String>,
    pub pool: Option<String>,
    pub agent: Option<String>,
    pub created: String,
    pub expires: String,
    pub created_by: String,
    pub comment: String,
}

/// `POST /v1/alerts/silences`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct SilenceRequest {
    pub rule: Option<String>,
    pub workflow: Option<String>,
    pub pool: Option<String>,
    pub agent: Option<String>,
    /// A duration (`2h`).
    #[serde(rename = "for")]
    pub for_: String,
    #[serde(default)]
    pub comment: String,
}

fn delivery_view(d: &DeliveryRecord) -> DeliveryView {
    DeliveryView {
        channel: d.channel.clone(),
        state: d.state.as_str().into(),
        attempts: d.attempts,
        last_error: d.last_error.clone(),
        finished: d.finished_ms.map(rfc3339),
    }
}

fn notification_json(n: &Notification) -> serde_json::Value {
    serde_json::to_value(n).unwrap_or(serde_json::Value::Null)
}

fn alert_view(e: &AlertEntry) -> AlertView {
    AlertView {
        seq: e.seq,
        created: rfc3339(e.notification.created_ms),
        notification: notification_json(&e.notification),
        deliveries: e.deliveries.iter().map(delivery_view).collect(),
    }
}

/// A silence as the API shows it.
pub fn silence_view(s: &Silence) -> SilenceView {
    SilenceView {
        id: s.id.clone(),
        matchers: matchers_text(s),
        rule: s.rule.clone(),
        workflow: s.workflow.clone(),
        pool: s.pool.clone(),
        agent: s.agent.clone(),
        created: rfc3339(s.created_ms),
        expires: rfc3339(s.expires_ms),
        created_by: s.created_by.clone(),
        comment: s.comment.clone(),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    rule: Option<String>,
    limit: Option<usize>,
}

async fn list(State(st): St, Query(q): Query<ListQuery>) -> ApiResult<Json<Vec<AlertView>>> {
    let status = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None | Some("all") => None,
        Some("firing") => Some(AlertStatus::Firing),
        Some("resolved") => Some(AlertStatus::Resolved),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "unknown alert state {other:?} (firing, resolved, all)"
            )));
        }
    };
    let query = AlertQuery {
        status,
        rule: q.rule.filter(|r| !r.is_empty()),
        limit: q.limit.unwrap_or(100).min(10_000),
    };
    let hub = st.hub.clone();
    let entries = blocking(move || hub.alert_history(&query)).await?;
    Ok(Json(entries.iter().map(alert_view).collect()))
}

async fn silences(State(st): St) -> ApiResult<Json<Vec<SilenceView>>> {
    let hub = st.hub.clone();
    let all = blocking(move || hub.active_silences()).await?;
    Ok(Json(all.iter().map(silence_view).collect()))
}

async fn silence(
    State(st): St,
    actor: Actor,
    Json(req): Json<SilenceRequest>,
) -> ApiResult<Json<SilenceView>> {
    let d = parse_duration(&req.for_)
        .map_err(|e| ApiError::bad(format!("for = {:?}: {e}", req.for_)))?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let spec = SilenceSpec {
        rule: nonempty(req.rule),
        workflow: nonempty(req.workflow),
        pool: nonempty(req.pool),
        agent: nonempty(req.agent),
        for_ms: i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        comment: req.comment,
    };
    let hub = st.hub.clone();
    let s = blocking(move || hub.silence(actor.as_str(), spec)).await?;
    Ok(Json(silence_view(&s)))
}

async fn unsilence(
    State(st): St,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<SilenceView>> {
    let hub = st.hub.clone();
    let s = blocking(move || hub.unsilence(actor.as_str(), &id)).await?;
    Ok(Json(silence_view(&s)))
}
