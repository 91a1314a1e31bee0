//! What the evaluator hands to delivery: one notification, rendered by each channel.
//!
//! **API Boundary**: notifications are stored in the hub's delivery outbox (minicbor with
//! explicit field indices: an index never changes and is never reused) and sent to channels as
//! JSON (serde): a field's JSON name is part of the webhook contract.

use minicbor::{Decode, Encode};
use serde::Serialize;

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// Whether a notification tells of a condition that holds, or that cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize)]
#[cbor(index_only)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    #[n(0)]
    Firing,
    #[n(1)]
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One thing that happened, of the several a grouped notification may carry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct AlertItem {
    #[n(0)]
    pub agent: Option<String>,
    #[n(1)]
    pub workflow: Option<String>,
    #[n(2)]
    pub run_id: Option<String>,
    #[n(3)]
    pub task: Option<String>,
    /// One line: what happened (e.g. `run failed: task extract exited 2`).
    #[n(4)]
    pub detail: String,
    /// When it happened (the agent's time for what an agent reports).
    #[n(5)]
    pub at_ms: UnixMillis,
    /// How late it reached the hub, when it happened while the agent was cut off (`None`:
    /// in time). A delayed item says so in every channel.
    #[n(6)]
    pub delayed_ms: Option<u64>,
}

/// One notification for one rule and one group: sent to each channel of the rule.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Notification {
    /// Stable for one firing of one group (the same after a hub restart): channels that can
    /// deduplicate (Alertmanager, webhook receivers) use it, and the outbox never holds two
    /// deliveries of one key to one channel.
    #[n(0)]
    pub dedup_key: String,
    /// The rule's name.
    #[n(1)]
    pub rule: String,
    #[n(2)]
    pub status: AlertStatus,
    /// The event kind the rule matches (`run_failed`, `firing_missed`, `agent_offline`, ...).
    #[n(3)]
    pub event: String,
    /// One line for a subject or a chat message.
    #[n(4)]
    pub summary: String,
    #[n(5)]
    pub items: Vec<AlertItem>,
    /// Sorted `(name, value)` pairs: `rule`, `event`, and what the group is by (`workflow`,
    /// `pool`, `agent`, ...). Alertmanager gets them as its labels.
    #[n(6)]
    pub labels: Vec<(String, String)>,
    /// When the condition began.
    #[n(7)]
    pub starts_ms: UnixMillis,
    /// When it cleared (resolved notices).
    #[n(8)]
    pub ends_ms: Option<UnixMillis>,
    /// When the evaluator made this notification.
    #[n(9)]
    pub created_ms: UnixMillis,
    /// Events folded into this notification by grouping and throttling beyond `items` (a
    /// notification lists at most a bounded number of items and counts the rest).
    #[n(10)]
    pub suppressed: u64,
}
