//! Opening the store file: created with mode 0600, then the pending migrations applied.

use std::path::Path;

use outpost_common::store::{open_error, prepare_private_file};

use super::error::StoreError;
use super::file::Store;
use super::migrations::{MIGRATIONS, SCHEMA_VERSION};

/// redb's page cache for the hub store (redb's default is 1 GiB). The cache fills as pages are
/// read and written and stays filled: with the default, a hub's memory grew by up to a GiB under
/// ingest whatever its fleet. Pages beyond it are read again from the file (the kernel's page
/// cache keeps the hot ones).
pub(crate) const CACHE_BYTES: usize = 256 * 1024 * 1024;

impl Store {
    /// Open (or create, mode 0600) the store at `path` and apply pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        prepare_private_file(path)?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| open_error(e, path, "hub"))?;
        let store = Store {
            db: std::sync::RwLock::new(db),
            path: path.to_path_buf(),
            group: Default::default(),
            config: Default::default(),
            observations: Default::default(),
            publisher: Default::default(),
            history: Default::default(),
        };
        let txn = store.begin_txn()?;
        if MIGRATIONS.migrate(&txn, SCHEMA_VERSION)? < SCHEMA_VERSION {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(store)
    }
}
