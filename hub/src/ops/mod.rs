//! The hub's operations: the only way to change the hub.
//!
//! One method on [`crate::hub::Hub`] per operation, in a file per resource ([`workflows`], [`agents`],
//! [`runs`], [`pools`], [`rollouts`], [`tokens`], [`audit`], [`operators`]; [`sessions`] for what the QUIC
//! side reports). Each takes the actor (the operator, or the agent or `hub` for what they
//! cause), commits to the store (which writes the audit record in the same transaction),
//! notifies the live sessions whose desired state may have changed, and emits one typed
//! [`Event`] on an in-process broadcast channel ([`crate::hub::Hub::subscribe`]) that later features
//! (alerts, metrics, live views) consume. The HTTP API ([`crate::api`]) only decodes a
//! request, calls one operation and encodes its result; `dev` goes through the API.
//!
//! Store operations are synchronous (call them on a blocking thread); the operations that also
//! send commands to connected agents (pause, resume, trigger, cancel, log fetch) are `async`
//! and do their store part on the blocking pool themselves.

pub mod agents;
pub mod alerts;
pub mod audit;
pub mod channels;
pub mod console;
pub mod lifecycle;
pub mod operators;
pub mod pools;
pub mod releases;
pub mod reruns;
pub mod rollouts;
pub mod runs;
pub mod sessions;
pub mod tokens;
pub mod workflows;

pub use crate::events::{AppliedVersion, EVENT_BUFFER, Event, EventKind, HUB_ACTOR};
use crate::gateway::GatewayError;
use crate::hub::HubError;
use crate::rollouts::RolloutError;
use crate::store::StoreError;

/// Why an operation failed. The API maps each kind to one status (see `api::error`).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A command to an agent failed.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// A rollout operation failed.
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The hub's state does not allow it now (e.g. the agent is not connected).
    #[error("{0}")]
    Conflict(String),
    /// Something internal failed.
    #[error("{0}")]
    Internal(String),
}

impl From<HubError> for OpError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::Store(s) => OpError::Store(s),
            other => OpError::Internal(other.to_string()),
        }
    }
}

/// Result of an operation.
pub type OpResult<T> = Result<T, OpError>;

/// Run a store step of an async operation on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> OpResult<T> + Send + 'static,
) -> OpResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpError::Internal(format!("internal task failed: {e}")))?
}

/// What one agent answered to a command (pause, resume, trigger, cancel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The agent.
    pub agent: String,
    /// Whether it carried the command out.
    pub ok: bool,
    /// The run it started or cancelled, if any.
    pub run_id: Option<String>,
    /// Its message, or why the command did not reach it.
    pub message: String,
}

impl From<CommandOutcome> for crate::views::TriggerResult {
    fn from(o: CommandOutcome) -> Self {
        crate::views::TriggerResult {
            agent: o.agent,
            ok: o.ok,
            run_id: o.run_id,
            message: o.message,
        }
    }
}
