//! The audit log and store backups.

use super::{EventKind, OpError, OpResult};
use crate::hub::{Hub, now_ms};
use crate::store::{AuditEntry, AuditVerdict};

impl Hub {
    /// `audit verify`: walk the whole hash chain; the first entry that breaks it, if any.
    pub fn verify_audit(&self) -> OpResult<AuditVerdict> {
        Ok(self.store().verify_audit()?)
    }

    /// `audit export`: entries with seq ≥ `from`, oldest first, at most `limit`.
    pub fn audit_range(&self, from: u64, limit: usize) -> OpResult<Vec<AuditEntry>> {
        Ok(self.store().audit_range(from, limit)?)
    }

    /// The latest `limit` audit entries, oldest first.
    pub fn audit_log(&self, limit: usize) -> OpResult<Vec<AuditEntry>> {
        Ok(self.store().audit_log(limit)?)
    }

    /// `hub backup`: a consistent copy of the store (one read transaction copied into a fresh
    /// redb file beside it, read back and removed), audited.
    pub fn backup(&self, actor: &str) -> OpResult<Vec<u8>> {
        let dir = self
            .store()
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".backup-{}.redb",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let result = self
            .store()
            .backup_to(&tmp)
            .map_err(OpError::from)
            .and_then(|_| {
                std::fs::read(&tmp)
                    .map_err(|e| OpError::Internal(format!("reading the backup copy: {e}")))
            });
        let _ = std::fs::remove_file(&tmp);
        let bytes = result?;
        self.store().audit(
            actor,
            "hub.backup",
            "hub.redb",
            &format!("{} bytes", bytes.len()),
            now_ms(),
        )?;
        self.emit(actor, EventKind::HubBackedUp { bytes: bytes.len() });
        Ok(bytes)
    }

    /// `compact`: give the store's free pages back to the file system while the hub serves
    /// (transactions wait while it runs; see [`crate::store::Store::compact`]). Audited; returns
    /// the file size before and after.
    pub fn compact_store(&self, actor: &str) -> OpResult<(u64, u64)> {
        let (before, after) = self.store().compact()?;
        self.store().audit(
            actor,
            "hub.compact",
            "hub.redb",
            &format!("{before} -> {after} bytes"),
            now_ms(),
        )?;
        Ok((before, after))
    }
}
