//! The store handle: its redb database and write transactions (opening it is in `open.rs`).

use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use redb::{Database, WriteTransaction};

use super::error::StoreError;

/// The hub's durable store. See the [module docs](self). `Send + Sync`; methods block on disk
/// I/O, so async callers use `spawn_blocking`.
pub struct Store {
    /// Every transaction begins under the read lock; [`Store::compact`] takes the write lock (redb
    /// compacts through `&mut Database`), so the hub compacts its store while it serves.
    pub(super) db: RwLock<Database>,
    pub(super) path: PathBuf,
    /// Concurrent writers' shared transaction (`group.rs`).
    pub(super) group: super::group::GroupCommit,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// The store file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The database, to begin a transaction on.
    pub(super) fn db(&self) -> RwLockReadGuard<'_, Database> {
        // A panic while holding the lock leaves the database itself consistent (redb).
        self.db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The database to itself, for compaction.
    pub(super) fn db_mut(&self) -> std::sync::RwLockWriteGuard<'_, Database> {
        self.db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db().begin_write()?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }
}
