//! JSON shape of the missed and unknown firings endpoint.

use serde::{Deserialize, Serialize};

/// An expected firing with no run reported (`GET /v1/firings`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FiringView {
    /// The agent.
    pub agent: String,
    /// Workflow.
    pub workflow: String,
    /// The version whose schedule expected it.
    pub version: u64,
    /// The firing's scheduled instant (RFC 3339, UTC).
    pub scheduled: String,
    /// `missed` or `unknown`.
    pub status: String,
    /// When the hub first listed it.
    pub since: String,
}
