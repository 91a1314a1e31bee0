//! Opening the store file: created with mode 0600, then the pending migrations applied.

use std::path::Path;

use outpost_common::store::{open_error, prepare_private_file};
use redb::Database;

use super::error::StoreError;
use super::file::Store;
use super::migrations::{MIGRATIONS, SCHEMA_VERSION};

impl Store {
    /// Open (or create, mode 0600) the store at `path` and apply pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        prepare_private_file(path)?;
        let db = Database::create(path).map_err(|e| open_error(e, path, "hub"))?;
        let store = Store {
            db: std::sync::RwLock::new(db),
            path: path.to_path_buf(),
            group: Default::default(),
        };
        let txn = store.begin_write()?;
        if MIGRATIONS.migrate(&txn, SCHEMA_VERSION)? < SCHEMA_VERSION {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(store)
    }
}
