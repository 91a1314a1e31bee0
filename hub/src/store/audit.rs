//! The append-only audit log: every change to the hub's state is recorded in the transaction
//! that makes it. The log is a hash chain: each entry holds the previous entry's hash and its
//! own, `blake3(prev_hash || canonical bytes)` ([`AuditEntry::chain_hash`]), so editing,
//! removing or reordering a stored entry breaks the chain at that entry, which
//! [`Store::verify_audit`] names.

use minicbor::bytes::ByteArray;
use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::error::{StoreError, decode, encode};
use super::file::Store;
use super::records::AuditEntry;
use super::schema::AUDIT;

/// The `prev_hash` of the first entry.
pub const AUDIT_GENESIS: [u8; 32] = [0; 32];

/// Domain separation of the canonical bytes (a version of the format).
const CANONICAL_TAG: &[u8] = b"outpost-audit-v1\0";

impl AuditEntry {
    /// The entry's canonical bytes: `outpost-audit-v1\0`, seq (u64 big-endian), at_ms (i64
    /// big-endian), then actor, action, target and detail, each as a u32 big-endian byte length
    /// and its UTF-8 bytes. Unambiguous (lengths, fixed order) and independent of the cbor
    /// encoding the store uses.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.detail.len());
        out.extend_from_slice(CANONICAL_TAG);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        for s in [&self.actor, &self.action, &self.target, &self.detail] {
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    /// `blake3(prev || canonical_bytes)`: the hash this entry must hold when `prev` is the
    /// previous entry's hash.
    pub fn chain_hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(prev);
        h.update(&self.canonical_bytes());
        *h.finalize().as_bytes()
    }

    /// Set `prev_hash` and `hash` for a predecessor with hash `prev`.
    pub(super) fn chain_to(&mut self, prev: [u8; 32]) {
        self.hash = Some(ByteArray::from(self.chain_hash(&prev)));
        self.prev_hash = Some(ByteArray::from(prev));
    }
}

/// Where the audit chain breaks: the first entry that does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBreak {
    /// The entry (its seq) where the chain breaks.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// The result of [`Store::verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerdict {
    /// Entries checked.
    pub entries: u64,
    /// The hash of the last entry (the head), to keep elsewhere: a later verify whose chain
    /// no longer passes through it shows the log was rewritten.
    pub head: [u8; 32],
    /// The first break, if any.
    pub broken: Option<AuditBreak>,
}

/// Check one entry against its predecessor (`expected_seq`, `prev`).
fn check_entry(e: &AuditEntry, expected_seq: u64, prev: &[u8; 32]) -> Result<(), String> {
    if e.seq != expected_seq {
        let last_missing = e.seq.saturating_sub(1);
        let missing = if last_missing == expected_seq {
            format!("entry {expected_seq} is missing")
        } else {
            format!("entries {expected_seq} to {last_missing} are missing")
        };
        return Err(format!(
            "entry {} does not link to its predecessor: {missing}",
            e.seq
        ));
    }
    let (Some(stored_prev), Some(stored)) = (&e.prev_hash, &e.hash) else {
        return Err(format!("entry {} carries no chain hash", e.seq));
    };
    if stored_prev.as_ref() != prev {
        return Err(format!(
            "entry {} does not link to entry {} (that entry was changed or replaced)",
            e.seq,
            e.seq.saturating_sub(1)
        ));
    }
    if e.chain_hash(prev) != **stored {
        return Err(format!(
            "entry {} was changed after it was written (its content does not match its hash)",
            e.seq
        ));
    }
    Ok(())
}

/// Append an audit entry inside `txn` (the change's own transaction), chained to the last
/// one; returns its seq.
pub(super) fn audit_in(
    txn: &WriteTransaction,
    at_ms: UnixMillis,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<u64, StoreError> {
    let mut t = txn.open_table(AUDIT)?;
    let (seq, prev) = match t.last()? {
        Some((k, v)) => {
            let last: AuditEntry = decode(v.value(), "audit", k.value())?;
            let prev = last.hash.map(|h| *h).unwrap_or(AUDIT_GENESIS);
            (k.value() + 1, prev)
        }
        None => (1, AUDIT_GENESIS),
    };
    let mut entry = AuditEntry {
        seq,
        at_ms,
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        detail: detail.into(),
        prev_hash: None,
        hash: None,
    };
    entry.chain_to(prev);
    t.insert(seq, encode(&entry)?.as_slice())?;
    Ok(seq)
}

/// Chain every entry of the audit table in order (the migration of a store from before the
/// chain: entries written then are chained as they stand at migration).
pub(super) fn chain_existing(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut t = txn.open_table(AUDIT)?;
    let mut entries: Vec<AuditEntry> = Vec::new();
    for e in t.iter()? {
        let (k, v) = e?;
        entries.push(decode(v.value(), "audit", k.value())?);
    }
    let mut prev = AUDIT_GENESIS;
    for e in &mut entries {
        e.chain_to(prev);
        prev = e.hash.map(|h| *h).unwrap_or(AUDIT_GENESIS);
        t.insert(e.seq, encode(&*e)?.as_slice())?;
    }
    Ok(entries.len() as u64)
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
        self.write(|txn| audit_in(txn, now_ms, actor, action, target, detail))
    }

    /// The newest `limit` audit entries, oldest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for e in t.iter()?.rev().take(limit) {
            let (k, v) = e?;
            out.push(decode(v.value(), "audit", k.value())?);
        }
        out.reverse();
        Ok(out)
    }

    /// The audit entries with seq ≥ `from`, oldest first, at most `limit` (for export).
    pub fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for e in t.range(from..)?.take(limit) {
            let (k, v) = e?;
            out.push(decode(v.value(), "audit", k.value())?);
        }
        Ok(out)
    }

    /// Walk the whole audit chain and report the first entry that breaks it (changed content,
    /// a broken link, a missing entry, an entry that does not decode).
    pub fn verify_audit(&self) -> Result<AuditVerdict, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(AUDIT)?;
        let mut prev = AUDIT_GENESIS;
        let mut expected = 1u64;
        let mut entries = 0u64;
        for e in t.iter()? {
            let (k, v) = e?;
            let seq = k.value();
            let broken = match decode::<AuditEntry>(v.value(), "audit", seq) {
                Err(err) => Some(format!("entry {seq} does not decode: {err}")),
                Ok(entry) if entry.seq != seq => Some(format!(
                    "entry {seq} is stored under seq {seq} but names seq {}",
                    entry.seq
                )),
                Ok(entry) => match check_entry(&entry, expected, &prev) {
                    Err(reason) => Some(reason),
                    Ok(()) => {
                        prev = entry.hash.map(|h| *h).unwrap_or(AUDIT_GENESIS);
                        None
                    }
                },
            };
            if let Some(reason) = broken {
                return Ok(AuditVerdict {
                    entries,
                    head: prev,
                    broken: Some(AuditBreak { seq, reason }),
                });
            }
            entries += 1;
            expected = seq + 1;
        }
        Ok(AuditVerdict {
            entries,
            head: prev,
            broken: None,
        })
    }

    /// Rewrite the stored audit entry `seq` as `f` changes it, without re-chaining: the
    /// tampering the chain exists to reveal (for tests of `audit verify`, which open the store
    /// of a stopped hub). Returns whether the entry existed.
    #[doc(hidden)]
    pub fn tamper_audit_entry(
        &self,
        seq: u64,
        f: impl FnOnce(&mut AuditEntry),
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let found = {
            let mut t = txn.open_table(AUDIT)?;
            let entry: Option<AuditEntry> = match t.get(seq)? {
                Some(v) => Some(decode(v.value(), "audit", seq)?),
                None => None,
            };
            match entry {
                Some(mut e) => {
                    f(&mut e);
                    t.insert(seq, encode(&e)?.as_slice())?;
                    true
                }
                None => false,
            }
        };
        txn.commit()?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use redb::Database;

    use super::*;
    use crate::store::migrations::MIGRATIONS;

    fn store_with(n: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("hub.redb")).unwrap();
        for i in 1..=n {
            s.audit("alice", "workflow.apply", &format!("wf{i}"), "v1", i as i64)
                .unwrap();
        }
        (dir, s)
    }

    #[test]
    fn each_entry_links_to_the_previous_and_verify_passes() {
        let (_d, s) = store_with(4);
        let log = s.audit_log(10).unwrap();
        assert_eq!(log.len(), 4);
        assert_eq!(log[0].prev_hash.map(|h| *h), Some(AUDIT_GENESIS));
        for w in log.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
            assert_ne!(w[1].hash, w[0].hash);
        }
        let v = s.verify_audit().unwrap();
        assert_eq!((v.entries, v.broken), (4, None));
        assert_eq!(Some(v.head), log[3].hash.map(|h| *h));
        assert_eq!(s.audit_range(3, 10).unwrap().len(), 2);
    }

    #[test]
    fn verify_names_the_changed_entry() {
        let (_d, s) = store_with(5);
        // The content changed, the hash left as it was.
        assert!(
            s.tamper_audit_entry(3, |e| e.actor = "mallory".into())
                .unwrap()
        );
        let v = s.verify_audit().unwrap();
        let b = v.broken.unwrap();
        assert_eq!(b.seq, 3, "{b:?}");
        assert!(b.reason.contains("changed"), "{b:?}");
        assert_eq!(v.entries, 2);
    }

    #[test]
    fn verify_names_an_entry_rehashed_to_hide_a_change() {
        let (_d, s) = store_with(5);
        // The editor recomputes entry 2's own hash: entry 3 no longer links to it.
        s.tamper_audit_entry(2, |e| {
            e.detail = "nothing to see".into();
            let prev = e.prev_hash.map(|h| *h).unwrap();
            e.chain_to(prev);
        })
        .unwrap();
        let b = s.verify_audit().unwrap().broken.unwrap();
        assert_eq!(b.seq, 3, "{b:?}");
        assert!(b.reason.contains("does not link"), "{b:?}");
    }

    #[test]
    fn verify_names_a_removed_entry() {
        let (_d, s) = store_with(4);
        let txn = s.begin_write().unwrap();
        txn.open_table(AUDIT).unwrap().remove(2).unwrap();
        txn.commit().unwrap();
        let b = s.verify_audit().unwrap().broken.unwrap();
        assert_eq!(b.seq, 3, "{b:?}");
        assert!(b.reason.contains("missing"), "{b:?}");
    }

    /// A store from before the chain: its entries (no hashes) are chained by the migration, and
    /// new entries continue the chain.
    #[test]
    fn migration_chains_existing_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.redb");
        {
            let db = Database::create(&path).unwrap();
            let mut txn = db.begin_write().unwrap();
            txn.set_two_phase_commit(true);
            MIGRATIONS.migrate(&txn, 2).unwrap();
            {
                let mut t = txn.open_table(AUDIT).unwrap();
                for seq in 1..=3u64 {
                    let e = AuditEntry {
                        seq,
                        at_ms: seq as i64,
                        actor: "api".into(),
                        action: "workflow.apply".into(),
                        target: format!("wf{seq}"),
                        detail: String::new(),
                        prev_hash: None,
                        hash: None,
                    };
                    t.insert(seq, encode(&e).unwrap().as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let s = Store::open(&path).unwrap();
        s.audit("alice", "workflow.pause", "wf1", "", 10).unwrap();
        let v = s.verify_audit().unwrap();
        assert_eq!((v.entries, v.broken), (4, None));
        let log = s.audit_log(10).unwrap();
        assert_eq!(log[0].target, "wf1");
        assert_eq!(log[3].prev_hash, log[2].hash);
    }
}
