//! Missed-firing detection's tables: the watch state per (agent, workflow), and what agents
//! reported for a span of scheduled instants.

use outpost_common::record::{MissedFirings, UnixMillis};
use redb::{ReadableDatabase, ReadableTable};

use super::error::{StoreError, decode, encode};
use super::file::Store;
use super::replicated::Scope;
use super::schema::{FIRING_WATCH, MISSED, RUNS_BY_INSTANT};
use crate::firings::watch::{Reported, WatchState};

/// A watch key: (agent, workflow).
pub type WatchKey = (String, String);

impl Store {
    /// Every stored watch.
    pub(crate) fn firing_watches(&self) -> Result<Vec<(WatchKey, WatchState)>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(FIRING_WATCH)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            let (agent, workflow) = k.value();
            out.push((
                (agent.to_string(), workflow.to_string()),
                decode(v.value(), "firing_watch", agent)?,
            ));
        }
        Ok(out)
    }

    /// What an agent reported for `workflow`'s instants in `[start, end]`: the runs it made
    /// (scheduled or catch-up) and the spans it recorded as missed.
    pub fn reported_firings(
        &self,
        agent: &str,
        workflow: &str,
        start: UnixMillis,
        end: UnixMillis,
    ) -> Result<Reported, StoreError> {
        if let Some(h) = self.shared_history() {
            return h.reported_firings(agent, workflow, start, end);
        }
        let txn = self.db().begin_read()?;
        let runs = txn.open_table(RUNS_BY_INSTANT)?;
        let mut out = Reported::default();
        for e in runs.range((agent, workflow, start)..=(agent, workflow, end))? {
            out.ran.push(e?.0.value().2);
        }
        let missed = txn.open_table(MISSED)?;
        for e in missed.range((agent, 0)..=(agent, u64::MAX))? {
            let (_, v) = e?;
            let m: MissedFirings = decode(v.value(), "missed_firings", agent)?;
            if m.workflow == workflow && m.last_ms >= start && m.first_ms <= end {
                out.missed.push((m.first_ms, m.last_ms));
            }
        }
        Ok(out)
    }

    /// Store the watches that changed (`None`: the watch ended), in one transaction.
    pub(crate) fn save_firing_watches(
        &self,
        changed: &[(WatchKey, Option<WatchState>)],
    ) -> Result<(), StoreError> {
        if changed.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write_in(Scope::Only(&[]))?;
        {
            let mut t = txn.open_table(FIRING_WATCH)?;
            for ((agent, workflow), state) in changed {
                match state {
                    Some(s) => {
                        t.insert((agent.as_str(), workflow.as_str()), encode(s)?.as_slice())?;
                    }
                    None => {
                        t.remove((agent.as_str(), workflow.as_str()))?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}
