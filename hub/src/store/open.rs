//! Opening the store file: created with mode 0600, then the pending migrations applied.

use std::fs;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use redb::Database;

use super::error::StoreError;
use super::file::Store;
use super::migrations;

impl Store {
    /// Open (or create, mode 0600) the store at `path` and apply pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let file_err = |source| StoreError::File {
            path: path.to_path_buf(),
            source,
        };
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(file_err)?;
        if file.metadata().map_err(file_err)?.permissions().mode() & 0o777 != 0o600 {
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(file_err)?;
        }
        drop(file);
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                path: path.to_path_buf(),
            },
            other => other.into(),
        })?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        let txn = store.begin_write()?;
        if migrations::migrate(&txn)? < migrations::SCHEMA_VERSION {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(store)
    }
}
