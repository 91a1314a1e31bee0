//! Observations of agents: the last contact and the clock offset. Kept in memory and written
//! in one batch ([`Store::flush_observations`], every few seconds and at shutdown) instead of
//! one rewrite of the agent's record per session event.
//!
//! These are observations, not state the hub acknowledged to anyone: no agent or operator is
//! told "recorded" and nothing is decided from them that must survive a crash. So they are
//! exempt from the durable-first rule (a call that returns `Ok` is durable): a crash loses at
//! most the last interval's observations, and the next session event observes again. Every
//! reader of agent records ([`Store::agent`], [`Store::agents`]: the API's agent list, the
//! console's fleet, metrics, alerts' offline and `clock_offset/...` rules) sees the
//! observations merged over the stored record, so what is shown does not depend on whether
//! they were flushed yet.
//!
//! Merging keeps the newer of the two: the later last contact, the clock offset measured
//! later. The records the store writes itself (Hello, deploy results) set the last contact
//! too; the merge takes the later one either way.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use outpost_common::record::UnixMillis;
use redb::ReadableTable;

use super::error::{StoreError, decode, encode};
use super::file::Store;
use super::records::AgentRecord;
use super::schema::AGENTS;

/// What was observed of one agent since the last flush.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Observed {
    last_seen_ms: Option<UnixMillis>,
    /// (offset, measured at).
    clock_offset: Option<(i64, UnixMillis)>,
}

impl Observed {
    /// Merge into `rec` (the later value of each wins). Returns whether `rec` changed.
    fn merge_into(&self, rec: &mut AgentRecord) -> bool {
        let mut changed = false;
        if let Some(t) = self.last_seen_ms
            && rec.last_seen_ms.is_none_or(|s| s < t)
        {
            rec.last_seen_ms = Some(t);
            changed = true;
        }
        if let Some((offset, at)) = self.clock_offset
            && rec
                .clock_offset
                .is_none_or(|(o, a)| a < at || (a == at && o != offset))
        {
            rec.clock_offset = Some((offset, at));
            changed = true;
        }
        changed
    }
}

/// The observations of one [`Store`] not written yet, by agent id.
#[derive(Default)]
pub(super) struct Observations {
    pending: Mutex<HashMap<String, Observed>>,
}

impl Observations {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Observed>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Merge the pending observations of `rec`'s agent into it.
    pub(super) fn overlay(&self, rec: &mut AgentRecord) {
        if let Some(o) = self.lock().get(&rec.id) {
            o.merge_into(rec);
        }
    }

    /// Merge the pending observations into every record of `recs`.
    pub(super) fn overlay_all(&self, recs: &mut [AgentRecord]) {
        let pending = self.lock();
        if pending.is_empty() {
            return;
        }
        for rec in recs {
            if let Some(o) = pending.get(&rec.id) {
                o.merge_into(rec);
            }
        }
    }
}

impl Store {
    /// Record that an agent was heard from at `now_ms` (in memory until the next flush).
    pub(crate) fn touch_agent(&self, id: &str, now_ms: UnixMillis) {
        let mut pending = self.observations.lock();
        let o = pending.entry(id.to_string()).or_default();
        if o.last_seen_ms.is_none_or(|s| s < now_ms) {
            o.last_seen_ms = Some(now_ms);
        }
    }

    /// Record an agent's clock offset (its clock minus the hub's) measured at hub time `at_ms`
    /// (in memory until the next flush).
    pub(crate) fn record_clock_offset(&self, id: &str, offset_ms: i64, at_ms: UnixMillis) {
        let mut pending = self.observations.lock();
        let o = pending.entry(id.to_string()).or_default();
        if o.clock_offset.is_none_or(|(_, a)| a <= at_ms) {
            o.clock_offset = Some((offset_ms, at_ms));
        }
    }

    /// Write every pending observation into its agent's record, in one transaction (shared
    /// through the group commit). An observation of an agent that is gone (decommissioned) is
    /// dropped. Returns the number of records rewritten. An observation made while the flush
    /// runs stays pending for the next one.
    pub(crate) fn flush_observations(&self) -> Result<usize, StoreError> {
        let batch: Vec<(String, Observed)> = self
            .observations
            .lock()
            .iter()
            .map(|(id, o)| (id.clone(), *o))
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let written = self.write(|txn| {
            let mut t = txn.open_table(AGENTS)?;
            let mut written = 0;
            for (id, o) in &batch {
                let mut rec: AgentRecord = match t.get(id.as_str())? {
                    Some(v) => decode(v.value(), "agents", id)?,
                    None => continue,
                };
                if o.merge_into(&mut rec) {
                    t.insert(id.as_str(), encode(&rec)?.as_slice())?;
                    written += 1;
                }
            }
            Ok(written)
        })?;
        // Durable now: forget what was written, unless observed again meanwhile.
        let mut pending = self.observations.lock();
        for (id, o) in batch {
            if pending.get(&id) == Some(&o) {
                pending.remove(&id);
            }
        }
        Ok(written)
    }

    /// The number of agents with observations not written yet.
    #[cfg(test)]
    pub(crate) fn pending_observations(&self) -> usize {
        self.observations.lock().len()
    }
}
