//! The store handle: its redb database and write transactions (opening it is in `open.rs`).

use std::path::{Path, PathBuf};

use redb::{Database, WriteTransaction};

use super::error::StoreError;

/// The hub's durable store. See the [module docs](self). `Send + Sync`; methods block on disk
/// I/O, so async callers use `spawn_blocking`.
pub struct Store {
    pub(super) db: Database,
    pub(super) path: PathBuf,
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

    pub(super) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }
}
