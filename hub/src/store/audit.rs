//! The append-only audit log: every change to the hub's state is recorded in the transaction
//! that makes it.

use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::error::{StoreError, decode, encode};
use super::file::Store;
use super::records::AuditEntry;
use super::schema::AUDIT;

/// Append an audit entry inside `txn` (the change's own transaction); returns its seq.
pub(super) fn audit_in(
    txn: &WriteTransaction,
    at_ms: UnixMillis,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<u64, StoreError> {
    let mut t = txn.open_table(AUDIT)?;
    let seq = t.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    let entry = AuditEntry {
        seq,
        at_ms,
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        detail: detail.into(),
    };
    t.insert(seq, encode(&entry)?.as_slice())?;
    Ok(seq)
}

impl Store {
    /// Append an audit entry.
    pub(crate) fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        now_ms: UnixMillis,
    ) -> Result<u64, StoreError> {
        let txn = self.begin_write()?;
        let seq = audit_in(&txn, now_ms, actor, action, target, detail)?;
        txn.commit()?;
        Ok(seq)
    }

    /// The newest `limit` audit entries, oldest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for e in t.iter()?.rev().take(limit) {
            let (k, v) = e?;
            out.push(decode(v.value(), "audit", k.value())?);
        }
        out.reverse();
        Ok(out)
    }
}
