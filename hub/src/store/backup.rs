//! A consistent copy of the store while the hub serves (`outpost-hub backup`).
//!
//! One redb read transaction is a snapshot: every table is copied from it into a fresh redb
//! file, so the copy is the store as of one commit, whatever the hub writes meanwhile (writers
//! are not blocked). A table this code does not know fails the backup rather than being left
//! out silently.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, TableDefinition, TableHandle as _, Value,
    WriteTransaction,
};

use super::error::{DbError, StoreError};
use super::file::Store;
use super::schema::*;

/// Copy one table; `false` if the source has no such table (never created).
fn copy<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<bool, StoreError> {
    let table = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let mut out = dst.open_table(def)?;
    for e in redb::ReadableTable::iter(&table)? {
        let (k, v) = e?;
        out.insert(k.value(), v.value())?;
    }
    Ok(true)
}

impl Store {
    /// Write a consistent copy of the whole store to `dest`, a new file (mode 0600; refused if
    /// it exists). Returns the number of tables copied.
    pub(crate) fn backup_to(&self, dest: &Path) -> Result<usize, StoreError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|source| DbError::File {
                path: dest.to_path_buf(),
                source,
            })?;
        drop(file);
        let src = self.db().begin_read()?;
        let db = Database::create(dest)?;
        let mut dst = db.begin_write()?;
        dst.set_two_phase_commit(true);
        let mut copied: Vec<&str> = Vec::new();
        macro_rules! tables {
            ($($def:expr),* $(,)?) => {$(
                if copy(&src, &dst, $def)? {
                    copied.push($def.name());
                }
            )*};
        }
        tables!(
            META,
            WORKFLOWS,
            VERSIONS,
            AGENTS,
            TOKENS,
            ASSIGNMENTS,
            RUNS,
            RUNS_BY_ID,
            RUNS_BY_CREATED,
            TASKS,
            MISSED,
            DEPLOY_RESULTS,
            ROOTS,
            PENDING,
            AUDIT,
            POOLS,
            DECISIONS,
            ROLLOUTS,
            ROLLOUT_STATE,
            ROLLOUT_AGENTS,
            ROLLOUT_INBOX,
            AGENT_VERSIONS,
            super::operators::OPERATORS,
            ALERT_INBOX,
            ALERT_STATE,
            ALERT_HISTORY,
            ALERT_DELIVERIES,
            ALERT_DELIVERY_KEYS,
            ALERT_OUTBOX,
            SILENCES,
            RUNS_BY_INSTANT,
            FIRING_WATCH,
            AGENT_NAMES,
            RUNS_BY_WORKFLOW,
        );
        for t in src.list_tables()? {
            // Live-session records describe connections to the process that took the copy, not
            // state: a restored hub starts with none on record (as after any restart).
            // Console sign-ins likewise: a restored hub asks its operators to sign in again.
            if t.name() == super::sessions::TABLE_NAME
                || t.name() == super::console_sessions::TABLE_NAME
            {
                continue;
            }
            if !copied.contains(&t.name()) {
                return Err(DbError::Inconsistent(format!(
                    "table {} is not covered by the backup (a new table must be added to \
                     store/backup.rs)",
                    t.name()
                ))
                .into());
            }
        }
        if src.list_multimap_tables()?.next().is_some() {
            return Err(DbError::Inconsistent(
                "multimap tables are not covered by the backup".into(),
            )
            .into());
        }
        dst.commit()?;
        Ok(copied.len())
    }
}
