//! `GET /ui/events`: server-sent events that name what changed (topics such as `fleet`,
//! `agent:<id>`, `runs`, `run:<id>`, `workflow:<name>`, `rollouts`, `alerts`, `audit`), from the
//! hub's domain events. They carry no data beyond the names: the page fetches itself again with
//! the operator's own session, so what it shows is what the operator may see.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::{ConsoleState, Ctx};
use crate::events::{Event, EventKind};

pub(super) fn routes() -> Router<Arc<ConsoleState>> {
    Router::new().route("/ui/events", get(events))
}

/// The topics an event changes (every event changes the audit log).
pub(crate) fn topics(e: &Event) -> Vec<String> {
    use EventKind as K;
    let mut t = vec!["audit".to_string()];
    let wf = |t: &mut Vec<String>, w: &str| {
        t.push("workflows".into());
        t.push(format!("workflow:{w}"));
    };
    match &e.kind {
        K::WorkflowApplied { versions } => {
            for v in versions {
                wf(&mut t, &v.workflow);
            }
            t.push("fleet".into());
        }
        K::WorkflowReleased { workflow, .. }
        | K::WorkflowPaused { workflow }
        | K::WorkflowResumed { workflow }
        | K::WorkflowDeployed { workflow, .. }
        | K::WorkflowPinned { workflow, .. }
        | K::WorkflowUnpinned { workflow, .. } => {
            wf(&mut t, workflow);
            t.push("fleet".into());
        }
        K::WorkflowRolledBack { version, .. } => {
            wf(&mut t, &version.workflow);
            t.push("fleet".into());
        }
        K::WorkflowTriggered { workflow, .. } => {
            wf(&mut t, workflow);
            t.push("runs".into());
        }
        K::RunFinished {
            agent,
            workflow,
            run_id,
            ..
        } => {
            t.push("runs".into());
            t.push(format!("run:{run_id}"));
            t.push(format!("agent:{agent}"));
            wf(&mut t, workflow);
            t.push("rollouts".into());
        }
        K::RunUpdated {
            workflow, run_id, ..
        } => {
            t.push("runs".into());
            t.push(format!("run:{run_id}"));
            t.push(format!("workflow:{workflow}"));
        }
        K::RunCancelled { run_id, .. } => {
            t.push("runs".into());
            t.push(format!("run:{run_id}"));
        }
        K::VersionReverted {
            agent, workflow, ..
        } => {
            wf(&mut t, workflow);
            t.push("fleet".into());
            t.push(format!("agent:{agent}"));
            t.push("rollouts".into());
        }
        K::AgentEnrolled { .. }
        | K::AgentConnected { .. }
        | K::AgentDisconnected { .. }
        | K::AgentRevoked { .. }
        | K::AgentLabelled { .. }
        | K::DeployReported { .. }
        | K::PoolCreated { .. }
        | K::PoolDeleted { .. } => {
            t.push("fleet".into());
            if let Some(a) = agent_of(&e.kind) {
                t.push(format!("agent:{a}"));
            }
            t.push("rollouts".into());
        }
        K::RolloutStarted { workflow, pool, .. }
        | K::RolloutCommanded { workflow, pool, .. }
        | K::RolloutStepPassed { workflow, pool, .. }
        | K::RolloutFinished { workflow, pool, .. } => {
            t.push("rollouts".into());
            t.push(format!("rollout:{workflow}/{pool}"));
            wf(&mut t, workflow);
            t.push("fleet".into());
        }
        K::SilenceCreated { .. } | K::SilenceRemoved { .. } | K::AlertDelivery { .. } => {
            t.push("alerts".into());
        }
        _ => {}
    }
    t
}

fn agent_of(k: &EventKind) -> Option<&str> {
    match k {
        EventKind::AgentEnrolled { agent, .. }
        | EventKind::AgentConnected { agent, .. }
        | EventKind::AgentDisconnected { agent, .. }
        | EventKind::AgentRevoked { agent, .. }
        | EventKind::AgentLabelled { agent, .. }
        | EventKind::DeployReported { agent, .. } => Some(agent),
        _ => None,
    }
}

/// The change stream of a signed-in operator. A subscriber that falls behind is told that
/// everything changed (`*`), never left showing stale pages silently.
async fn events(ctx: Ctx) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = ctx.hub.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = match rx.recv().await {
            Ok(e) => topics(&e).join(" "),
            Err(RecvError::Lagged(_)) => "*".to_string(),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(SseEvent::default().event("change").data(data)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
