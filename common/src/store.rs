//! The plumbing the two redb stores share (the agent's `outpost_agent::store` and the hub's
//! `outpost_hub::store`): their file-level errors, the minicbor encoding of stored records with
//! an error that names the table and key, the private (mode 0600) store file, and the
//! forward-only schema migrations recorded in the `meta` table.
//!
//! Only with the `store` feature (the two stores enable it): the rest of `common` knows nothing
//! of redb. What each store holds, and its own errors (a missing agent, a bad token, ...), stay
//! in that store; its error type wraps [`DbError`] and gets the conversions from redb's errors
//! with [`impl_from_db_error!`](crate::impl_from_db_error).

use std::fmt::Display;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use minicbor::{Decode, Encode};
pub use redb;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// `meta`: store bookkeeping, `&str -> u64`; both stores keep [`META_SCHEMA_VERSION`] in it.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Schema version of the file (the number of migrations applied).
pub const META_SCHEMA_VERSION: &str = "schema_version";

/// What can go wrong with a store file, whatever the store holds.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The store file could not be created or its permissions set.
    #[error("cannot prepare store file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Another process (or another store handle in this process) has the file open.
    #[error("store {path} is already open (is another {program} running?)")]
    AlreadyOpen {
        /// The file.
        path: PathBuf,
        /// The program that owns stores like it: `hub` or `agent`.
        program: &'static str,
    },
    /// The file was written by a newer program; this one will not guess at its layout.
    #[error(
        "store schema version {found} is newer than the {supported} this {program} supports; \
         upgrade the {program} (the store is left untouched)"
    )]
    SchemaTooNew {
        /// Version recorded in the file.
        found: u64,
        /// Highest version this build understands.
        supported: u64,
        /// The program that owns stores like it: `hub` or `agent`.
        program: &'static str,
    },
    /// A stored value could not be decoded.
    #[error("corrupt value in table {table} at key {key}: {source}")]
    Decode {
        /// The table holding it.
        table: &'static str,
        /// The key, rendered for humans.
        key: String,
        /// The decoder's error.
        source: minicbor::decode::Error,
    },
    /// A value could not be encoded.
    #[error("cannot encode value: {0}")]
    Encode(String),
    /// An index entry points at a record that is missing: a bug or a damaged file.
    #[error("store is inconsistent: {0}")]
    Inconsistent(String),
    /// redb failed (I/O, corruption, transaction).
    #[error("store database error: {0}")]
    Redb(#[from] redb::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

/// `From` conversions into a store's error type `$target`, whose variant `$variant` wraps
/// [`DbError`]: from [`DbError`] itself and from each of redb's errors, so that `?` works on
/// both inside the store.
#[macro_export]
macro_rules! impl_from_db_error {
    ($target:ty, $variant:ident) => {
        impl From<$crate::store::DbError> for $target {
            fn from(e: $crate::store::DbError) -> Self {
                Self::$variant(e)
            }
        }
        $crate::impl_from_db_error!(
            @redb $target, $variant,
            $crate::store::redb::Error,
            $crate::store::redb::StorageError,
            $crate::store::redb::TableError,
            $crate::store::redb::TransactionError,
            $crate::store::redb::CommitError,
            $crate::store::redb::DatabaseError
        );
    };
    (@redb $target:ty, $variant:ident, $($t:ty),*) => {$(
        impl From<$t> for $target {
            fn from(e: $t) -> Self {
                Self::$variant($crate::store::DbError::from(e))
            }
        }
    )*};
}

/// Decode a stored value, naming the table and key on failure.
pub fn decode<T>(bytes: &[u8], table: &'static str, key: impl Display) -> Result<T, DbError>
where
    T: for<'b> Decode<'b, ()>,
{
    minicbor::decode(bytes).map_err(|source| DbError::Decode {
        table,
        key: key.to_string(),
        source,
    })
}

/// Every value of `table` (named `name` in errors), decoded, in key order.
pub fn decode_all<K, T>(
    table: &impl ReadableTable<K, &'static [u8]>,
    name: &'static str,
) -> Result<Vec<T>, DbError>
where
    K: redb::Key + 'static,
    for<'a> K::SelfType<'a>: Display,
    T: for<'b> Decode<'b, ()>,
{
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        out.push(decode(v.value(), name, k.value())?);
    }
    Ok(out)
}

/// Encode a value to store.
pub fn encode<T: Encode<()>>(value: &T) -> Result<Vec<u8>, DbError> {
    minicbor::to_vec(value).map_err(|e| DbError::Encode(e.to_string()))
}

/// Create the store file if it is missing, with mode 0600, and set 0600 on an existing one
/// (records, tokens and keys are the owner's only). The file is closed again: redb opens it.
pub fn prepare_private_file(path: &Path) -> Result<(), DbError> {
    let file_err = |source| DbError::File {
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
    Ok(())
}

/// The error of opening `path` with redb: [`DbError::AlreadyOpen`] (naming `program`) when
/// the file is open elsewhere, else redb's own.
pub fn open_error(e: redb::DatabaseError, path: &Path, program: &'static str) -> DbError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => DbError::AlreadyOpen {
            path: path.to_path_buf(),
            program,
        },
        other => other.into(),
    }
}

/// The schema version of an open transaction's file (0 when there is no `meta` table: a new,
/// empty file).
pub(crate) fn schema_version(txn: &WriteTransaction) -> Result<u64, DbError> {
    Ok(txn
        .open_table(META)?
        .get(META_SCHEMA_VERSION)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// One migration: run inside the open's write transaction.
pub type Migration<E> = fn(&WriteTransaction) -> Result<(), E>;

/// A store's forward-only migration list: `migrations[i]` takes a file from schema version `i`
/// to `i + 1`, inside the open's write transaction; the store's schema version is the list's
/// length. A released migration is never edited: a layout change is a new one appended.
pub struct Migrations<'a, E> {
    /// The migrations, in order.
    pub list: &'a [Migration<E>],
    /// The program that owns the store (`hub` or `agent`), for [`DbError::SchemaTooNew`].
    pub program: &'static str,
}

impl<E: From<DbError>> Migrations<'_, E> {
    /// The schema version this build reads and writes.
    pub const fn version(&self) -> u64 {
        self.list.len() as u64
    }

    /// Apply the migrations from the file's version up to `target` (at most
    /// [`version`](Self::version)), recording each in `meta`. Refuses a file written by a
    /// newer schema with [`DbError::SchemaTooNew`]. Returns the version found before
    /// migrating.
    pub fn migrate(&self, txn: &WriteTransaction, target: u64) -> Result<u64, E> {
        let found = schema_version(txn)?;
        if found > self.version() {
            return Err(DbError::SchemaTooNew {
                found,
                supported: self.version(),
                program: self.program,
            }
            .into());
        }
        for (index, migration) in self.list.iter().enumerate().take(target as usize) {
            let from = index as u64;
            if from < found {
                continue;
            }
            migration(txn)?;
            txn.open_table(META)
                .map_err(DbError::from)?
                .insert(META_SCHEMA_VERSION, from + 1)
                .map_err(DbError::from)?;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Db(DbError),
    }
    crate::impl_from_db_error!(TestError, Db);

    const A: TableDefinition<&str, u64> = TableDefinition::new("a");
    const B: TableDefinition<&str, u64> = TableDefinition::new("b");

    fn make_a(txn: &WriteTransaction) -> Result<(), TestError> {
        txn.open_table(A)?.insert("x", 1)?;
        Ok(())
    }
    fn make_b(txn: &WriteTransaction) -> Result<(), TestError> {
        txn.open_table(B)?;
        Ok(())
    }

    const MIGRATIONS: Migrations<'static, TestError> = Migrations {
        list: &[make_a, make_b],
        program: "test",
    };

    fn db() -> redb::Database {
        redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap()
    }

    #[test]
    fn migrations_run_once_each_up_to_the_target_and_record_the_version() {
        let db = db();
        let txn = db.begin_write().unwrap();
        assert_eq!(MIGRATIONS.migrate(&txn, 1).unwrap(), 0);
        assert_eq!(schema_version(&txn).unwrap(), 1);
        assert!(txn.open_table(B).is_ok());
        // From version 1: migration 0 is not run again (it would reset x to 1), migration 1 is.
        txn.open_table(A).unwrap().insert("x", 7).unwrap();
        assert_eq!(MIGRATIONS.migrate(&txn, MIGRATIONS.version()).unwrap(), 1);
        assert_eq!(schema_version(&txn).unwrap(), 2);
        assert_eq!(
            txn.open_table(A)
                .unwrap()
                .get("x")
                .unwrap()
                .unwrap()
                .value(),
            7
        );
    }

    #[test]
    fn a_newer_file_is_refused_and_named() {
        let db = db();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA_VERSION, 3)
            .unwrap();
        let err = MIGRATIONS.migrate(&txn, 2).unwrap_err();
        let TestError::Db(DbError::SchemaTooNew {
            found: 3,
            supported: 2,
            program: "test",
        }) = &err
        else {
            panic!("{err:?}");
        };
        assert!(err.to_string().contains("upgrade the test"), "{err}");
    }

    #[test]
    fn a_corrupt_record_names_its_table_and_key() {
        let err = decode::<String>(&[0xff], "runs", "r1").unwrap_err();
        assert!(
            matches!(err, DbError::Decode { table: "runs", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("table runs at key r1"), "{err}");
        let bytes = encode(&"v".to_string()).unwrap();
        assert_eq!(decode::<String>(&bytes, "runs", "r1").unwrap(), "v");
    }

    #[test]
    fn decode_all_reads_a_table_in_key_order_and_names_a_corrupt_row() {
        const T: TableDefinition<u64, &[u8]> = TableDefinition::new("things");
        let db = db();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            t.insert(2, encode(&"b".to_string()).unwrap().as_slice())
                .unwrap();
            t.insert(1, encode(&"a".to_string()).unwrap().as_slice())
                .unwrap();
        }
        let all: Vec<String> = decode_all(&txn.open_table(T).unwrap(), "things").unwrap();
        assert_eq!(all, ["a", "b"]);
        txn.open_table(T)
            .unwrap()
            .insert(3, [0xff].as_slice())
            .unwrap();
        let err = decode_all::<u64, String>(&txn.open_table(T).unwrap(), "things").unwrap_err();
        assert!(err.to_string().contains("table things at key 3"), "{err}");
    }
}
