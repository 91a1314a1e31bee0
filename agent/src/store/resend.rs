//! Sending again what a restored hub lost (`AgentEvent::Resend`, docs/protocol.md, "Ordering and
//! acknowledgements").

use outpost_common::record::{MissedFirings, RunRecord, StatusEvent, TaskInstanceRecord};
use redb::ReadableTable;

use super::schema::{META, META_LAST_SEQ, MISSED, OUTBOX, OUTBOX_RUN_REFS, RUNS, TASKS};
use super::{CommitInfo, DbError, Store, StoreError, decode, encode};

/// `meta` keys: the lost range (`after`, `upto`) last requeued.
const META_REQUEUED_AFTER: &str = "requeued_after";
const META_REQUEUED_UPTO: &str = "requeued_upto";

impl Store {
    /// The hub lost the entries `lost_after + 1 ..= lost_upto` (its store was restored from an
    /// older backup after it had acknowledged them). In ONE transaction, append to the outbox a
    /// fresh snapshot of every run and task instance this store holds, and every missed-firings
    /// record committed under a seq in that range, and return the outbox's new last seq.
    /// Records are not changed: only outbox entries are added (the hub upserts run and task
    /// snapshots by key, so one it already holds is not counted twice). Reading and appending in
    /// one transaction means no engine commit can slip an older snapshot after a newer one.
    ///
    /// Asked again for the same lost range (the hub has not committed anything since, e.g. it
    /// keeps failing), it appends nothing: the snapshots already queued are still unacknowledged,
    /// so the outbox does not grow on every reconnect.
    pub fn requeue_held(&self, lost_after: u64, lost_upto: u64) -> Result<CommitInfo, StoreError> {
        let txn = self.begin_write()?;
        let last_seq = {
            let mut meta = txn.open_table(META)?;
            let mut seq = meta.get(META_LAST_SEQ)?.map(|g| g.value()).unwrap_or(0);
            let done_after = meta.get(META_REQUEUED_AFTER)?.map(|g| g.value());
            let done_upto = meta.get(META_REQUEUED_UPTO)?.map(|g| g.value());
            if done_after == Some(lost_after) && done_upto == Some(lost_upto) {
                drop(meta);
                txn.abort()?;
                return Ok(CommitInfo { last_seq: seq });
            }
            meta.insert(META_REQUEUED_AFTER, lost_after)?;
            meta.insert(META_REQUEUED_UPTO, lost_upto)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut refs = txn.open_table(OUTBOX_RUN_REFS)?;
            let mut events: Vec<(String, StatusEvent)> = Vec::new();
            for e in txn.open_table(RUNS)?.iter()? {
                let (k, v) = e?;
                let run: RunRecord = decode(v.value(), "runs", k.value())?;
                events.push((run.run_id.clone(), StatusEvent::Run(run)));
            }
            for e in txn.open_table(TASKS)?.iter()? {
                let (k, v) = e?;
                let (run_id, task_id) = k.value();
                let t: TaskInstanceRecord =
                    decode(v.value(), "task_instances", format!("{run_id}/{task_id}"))?;
                events.push((run_id.to_string(), StatusEvent::Task(t)));
            }
            for e in txn.open_table(MISSED)?.iter()? {
                let (k, v) = e?;
                let (workflow, at) = k.value();
                if at > lost_after && at <= lost_upto {
                    let m: MissedFirings =
                        decode(v.value(), "missed_firings", format!("{workflow}#{at}"))?;
                    events.push((String::new(), StatusEvent::Missed(m)));
                }
            }
            for (run_ref, event) in &events {
                seq = seq
                    .checked_add(1)
                    .ok_or_else(|| DbError::Inconsistent("outbox seq overflow".into()))?;
                outbox.insert(seq, (run_ref.as_str(), encode(event)?.as_slice()))?;
                if !run_ref.is_empty() {
                    refs.insert((run_ref.as_str(), seq), ())?;
                }
            }
            meta.insert(META_LAST_SEQ, seq)?;
            seq
        };
        txn.commit()?;
        Ok(CommitInfo { last_seq })
    }
}
