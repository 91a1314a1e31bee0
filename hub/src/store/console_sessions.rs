//! Console sign-in sessions: `console_sessions` (`blake3 hex of the session secret -> cbor
//! ConsoleSession`). The browser holds the secret in an HttpOnly cookie; the store holds only
//! its hash, so a copy of the store signs nobody in. Each request re-reads the operator record
//! (a revoked credential ends its sessions at once).
//!
//! The table is created by the first sign-in and left out of backups (see `backup.rs`): a
//! restored hub asks its operators to sign in again.

use minicbor::{Decode, Encode};
use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::error::{StoreError, decode, encode};
use super::file::Store;
use super::replicated::Scope;

/// `console_sessions`: `blake3 hex of the secret -> cbor ConsoleSession`.
const CONSOLE_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new(TABLE_NAME);

/// The table's name (left out of backups).
pub(crate) const TABLE_NAME: &str = "console_sessions";

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ConsoleSession {
    /// The operator credential it signed in with (its id).
    #[n(0)]
    pub operator_id: String,
    /// When it signed in.
    #[n(1)]
    pub created_ms: UnixMillis,
    /// When it was last used (renewed at most once a minute).
    #[n(2)]
    pub seen_ms: UnixMillis,
    /// The token every form of this session carries (checked on every write).
    #[n(3)]
    pub csrf: String,
}

impl Store {
    /// Record a new session under `key` (the hash of its secret); sessions past `expired_before`
    /// are removed in the same transaction.
    pub(crate) fn create_console_session(
        &self,
        key: &str,
        session: &ConsoleSession,
        expired_before: UnixMillis,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write_in(Scope::Only(&[]))?;
        {
            let mut t = txn.open_table(CONSOLE_SESSIONS)?;
            let mut old = Vec::new();
            for e in t.iter()? {
                let (k, v) = e?;
                let s: ConsoleSession = decode(v.value(), TABLE_NAME, k.value())?;
                if s.seen_ms < expired_before {
                    old.push(k.value().to_string());
                }
            }
            for k in old {
                t.remove(k.as_str())?;
            }
            t.insert(key, encode(session)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The session under `key`, if any.
    pub(crate) fn console_session(&self, key: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = match txn.open_table(CONSOLE_SESSIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StoreError::from(e)),
        };
        match t.get(key)? {
            Some(v) => Ok(Some(decode(v.value(), TABLE_NAME, key)?)),
            None => Ok(None),
        }
    }

    /// Mark the session under `key` used at `now_ms` (nothing if it is gone).
    pub(crate) fn touch_console_session(
        &self,
        key: &str,
        now_ms: UnixMillis,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write_in(Scope::Only(&[]))?;
        {
            let mut t = txn.open_table(CONSOLE_SESSIONS)?;
            let current: Option<ConsoleSession> = match t.get(key)? {
                Some(v) => Some(decode(v.value(), TABLE_NAME, key)?),
                None => None,
            };
            if let Some(mut s) = current {
                s.seen_ms = now_ms;
                t.insert(key, encode(&s)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Remove the session under `key` (signing out).
    pub(crate) fn remove_console_session(&self, key: &str) -> Result<(), StoreError> {
        let txn = self.begin_write_in(Scope::Only(&[]))?;
        {
            let mut t = txn.open_table(CONSOLE_SESSIONS)?;
            t.remove(key)?;
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(op: &str, at: i64) -> ConsoleSession {
        ConsoleSession {
            operator_id: op.into(),
            created_ms: at,
            seen_ms: at,
            csrf: "c".into(),
        }
    }

    #[test]
    fn sessions_are_created_found_touched_expired_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hub.redb")).unwrap();
        assert_eq!(store.console_session("k1").unwrap(), None);
        store
            .create_console_session("k1", &session("op1", 1_000), 0)
            .unwrap();
        assert_eq!(
            store.console_session("k1").unwrap(),
            Some(session("op1", 1_000))
        );
        store.touch_console_session("k1", 5_000).unwrap();
        assert_eq!(store.console_session("k1").unwrap().unwrap().seen_ms, 5_000);
        // A new sign-in sweeps sessions unused since before the cut-off.
        store
            .create_console_session("k2", &session("op2", 9_000), 6_000)
            .unwrap();
        assert_eq!(store.console_session("k1").unwrap(), None);
        assert!(store.console_session("k2").unwrap().is_some());
        store.remove_console_session("k2").unwrap();
        assert_eq!(store.console_session("k2").unwrap(), None);
    }
}
