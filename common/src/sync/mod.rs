//! Sans-IO session state machines for one hub <-> agent connection (quinn-proto style).
//!
//! - [`AgentSession`]: the agent's side. It says Hello, drains the outbox in bounded batches with
//!   a window of batches in flight, turns hub messages into [`AgentEvent`]s, and queues results.
//! - [`HubSession`]: the hub's side. It turns agent messages into [`HubEvent`]s (hello, batches
//!   to commit, deploy results...), acknowledges what the driver committed, and sends the deploys
//!   needed to reach the desired state (level-triggered).
//!
//! Neither does I/O: the driver feeds inputs (`handle_*`, result/commit calls), then drains
//! outputs (`poll_transmit`, `poll_event`, and for the agent `poll_need`) until they return `None`,
//! after every input. A session lives exactly as long as its connection; what must survive a
//! reconnect (the outbox, acked seq, committed seq, desired state) belongs to the driver's store.

mod agent;
mod hub;

pub use agent::{AgentEvent, AgentSession, AgentSessionConfig};
pub use hub::{
    Desired, HubEvent, HubSession, HubState, deploy_frame_len, issued_is_stale, next_epoch,
    next_version,
};

/// A peer broke the protocol. The driver closes the connection (logging the error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("session is not open")]
    NotOpen,
}
