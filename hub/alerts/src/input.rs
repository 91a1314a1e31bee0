//! What the evaluator is fed: events (each once: a run finished, a deadline missed, firings the
//! agent reported missed, a probation revert) and level conditions (a full snapshot each turn:
//! what holds now; what was held before and is absent now has cleared).

use minicbor::{Decode, Encode};

use crate::notification::UnixMillis;
use crate::rule::{EventKind, Subject};

/// One event, as queued durably by the hub's ingest.
///
/// **API Boundary**: stored in the hub's alert inbox (minicbor, explicit indices).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Input {
    /// Agent and workflow; the driver fills pools and labels from the agent when it feeds it.
    #[n(0)]
    pub subject: Subject,
    #[n(1)]
    pub event: InputEvent,
    /// When it happened (the agent's time).
    #[n(2)]
    pub at_ms: UnixMillis,
    /// When the hub ingested it: `received_ms - at_ms` above the evaluator's threshold marks the
    /// item delayed (the agent was cut off).
    #[n(3)]
    pub received_ms: UnixMillis,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum InputEvent {
    /// A run reached `succeeded` or `failed`.
    #[n(0)]
    RunFinished {
        #[n(0)]
        run_id: String,
        #[n(1)]
        version: u64,
        #[n(2)]
        succeeded: bool,
        /// One line (`run failed`, the failed task...).
        #[n(3)]
        detail: String,
    },
    /// A run or task missed `deadline` or `max_start_delay`.
    #[n(1)]
    DeadlineMissed {
        #[n(0)]
        run_id: String,
        #[n(1)]
        task: Option<String>,
        #[n(2)]
        detail: String,
    },
    /// The agent reported firings it did not run.
    #[n(2)]
    FiringsMissed {
        #[n(0)]
        count: u64,
        #[n(1)]
        detail: String,
    },
    /// The agent reverted a version under probation.
    #[n(3)]
    ProbationRevert {
        #[n(0)]
        detail: String,
    },
}

/// What a level condition measures; the rule's threshold decides whether it is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Active while present (rollout rolled back or waiting, duplicate identity, a missed or
    /// unknown firing found by the hub).
    Present,
    /// Offline since: active once offline for the rule's `for`.
    OfflineSince(UnixMillis),
    /// Clock offset: active above the rule's `above` (either sign).
    OffsetMs(i64),
    /// Store disk: active below the rule's `below` percent free.
    DiskFree { free: u64, total: u64 },
    /// Certificate expiry: active within the rule's `before`.
    CertNotAfter(UnixMillis),
}

/// One level condition as it stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub event: EventKind,
    /// Unique per condition (e.g. `agent_offline/a1`): what clears when it is absent.
    pub key: String,
    pub subject: Subject,
    pub measure: Measure,
    /// One line for the notification.
    pub detail: String,
    /// Since when it holds (as far as the hub knows).
    pub since_ms: UnixMillis,
}

impl Measure {
    /// Whether it is active under `threshold` (see [`crate::Rule::threshold`]) at `now`.
    pub fn active(self, threshold: i64, now: UnixMillis) -> bool {
        match self {
            Measure::Present => true,
            Measure::OfflineSince(t) => now.saturating_sub(t) >= threshold,
            Measure::OffsetMs(o) => o.unsigned_abs() > threshold.unsigned_abs(),
            Measure::DiskFree { free, total } => {
                total > 0
                    && u128::from(free) * 100
                        < u128::from(threshold.unsigned_abs()) * u128::from(total)
            }
            Measure::CertNotAfter(t) => t.saturating_sub(now) <= threshold,
        }
    }
}
