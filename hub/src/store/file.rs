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
    /// What every agent's desired state is computed from, read once per change (`config.rs`).
    pub(super) config: super::config::ConfigCache,
    /// Agents' last contacts and clock offsets not written yet (`observations.rs`).
    pub(super) observations: super::observations::Observations,
    /// HA mode: the canonical store desired-state writes are published to (`replicated.rs`).
    pub(super) publisher: std::sync::OnceLock<std::sync::Arc<dyn super::replicated::Publisher>>,
    /// HA mode with `[ha] postgres`: the run history the replicas share (`history.rs`).
    pub(super) history: std::sync::OnceLock<std::sync::Arc<dyn super::history::SharedHistory>>,
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

    /// A write transaction of its own (not shared through the group commit). Every write of
    /// the configuration tables (workflows, versions, pools, decisions, pending versions, roots)
    /// goes through one of these: committing it makes the configuration cache read the store
    /// again (`config.rs`).
    pub(super) fn begin_write(&self) -> Result<DirectWrite<'_>, StoreError> {
        self.begin_write_in(super::replicated::Scope::All)
    }

    /// [`Self::begin_write`] for a write that changes at most the replicated tables of
    /// `scope` (`replicated.rs`): in HA mode its commit compares only those.
    pub(super) fn begin_write_in(
        &self,
        scope: super::replicated::Scope,
    ) -> Result<DirectWrite<'_>, StoreError> {
        let txn = self.begin_txn()?;
        // In HA mode, the state this write begins from (begun after the write transaction,
        // so it is exactly that transaction's starting point).
        let before = self.before_write(scope)?;
        Ok(DirectWrite {
            txn,
            store: self,
            before,
        })
    }

    /// A raw write transaction (two-phase commit): the group commit's, and [`Self::begin_write`]'s.
    pub(super) fn begin_txn(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db().begin_write()?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }
}

/// A write transaction outside the group commit (operators' commands, the drivers). It reads
/// as a [`WriteTransaction`]; [`DirectWrite::commit`] also bumps the store's configuration
/// generation once the commit is durable, so no cached configuration older than the commit is
/// used after it returns.
pub(crate) struct DirectWrite<'a> {
    txn: WriteTransaction,
    store: &'a Store,
    before: Option<super::replicated::Before>,
}

impl std::ops::Deref for DirectWrite<'_> {
    type Target = WriteTransaction;

    fn deref(&self) -> &WriteTransaction {
        &self.txn
    }
}

impl DirectWrite<'_> {
    /// Commit durably, then invalidate the configuration cache. In HA mode the changes of
    /// replicated tables are published first (`replicated.rs`); if that fails the transaction
    /// is dropped and nothing changed.
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        if let Some(before) = &self.before {
            self.store.publish_write(before, &self.txn)?;
        }
        self.txn.commit()?;
        self.store.config.invalidate();
        Ok(())
    }

    /// Drop the transaction's writes.
    pub(crate) fn abort(self) -> Result<(), redb::StorageError> {
        self.txn.abort()
    }
}
