//! The hub store's error type, and the minicbor encoding of its records.

use std::fmt::Display;
use std::io;
use std::path::PathBuf;

use minicbor::{Decode, Encode};

/// Everything that can go wrong in the hub store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store file could not be created or its permissions set.
    #[error("cannot prepare store file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Another process has the file open.
    #[error("store {path} is already open (is another hub running?)")]
    AlreadyOpen {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer hub.
    #[error(
        "store schema version {found} is newer than the {supported} this hub supports; upgrade \
         the hub (the store is left untouched)"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: u64,
        /// Highest version this build reads.
        supported: u64,
    },
    /// A stored value could not be decoded.
    #[error("corrupt value in table {table} at key {key}: {source}")]
    Decode {
        /// The table.
        table: &'static str,
        /// The key, for humans.
        key: String,
        /// The decoder's error.
        source: minicbor::decode::Error,
    },
    /// A value could not be encoded.
    #[error("cannot encode value: {0}")]
    Encode(String),
    /// No such workflow (or version).
    #[error("workflow {0} not found")]
    NoWorkflow(String),
    /// No such version of a workflow.
    #[error("workflow {name} has no version {version}")]
    NoVersion {
        /// Workflow.
        name: String,
        /// Version asked for.
        version: u64,
    },
    /// No such agent.
    #[error("agent {0} not found")]
    NoAgent(String),
    /// The agent is revoked.
    #[error("agent {0} is revoked")]
    Revoked(String),
    /// The agent id is taken.
    #[error("agent {0} already exists")]
    AgentExists(String),
    /// The bootstrap token is unknown, wrong, used or expired (one message for all: no oracle).
    #[error("bootstrap token is invalid, already used or expired")]
    BadToken,
    /// No bootstrap token has this id.
    #[error("no bootstrap token {0}")]
    NoToken(String),
    /// No such pool.
    #[error("pool {0} not found")]
    NoPool(String),
    /// No such rollout.
    #[error("rollout {0} not found")]
    NoRollout(String),
    /// The operation conflicts with the current state (pinned pool, active rollout, ...).
    #[error("{0}")]
    Conflict(String),
    /// Bad input.
    #[error("{0}")]
    Refused(String),
    /// An index entry points at a missing record.
    #[error("store is inconsistent: {0}")]
    Inconsistent(String),
    /// redb failed.
    #[error("store database error: {0}")]
    Db(#[from] redb::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
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

pub(super) fn decode<T>(
    bytes: &[u8],
    table: &'static str,
    key: impl Display,
) -> Result<T, StoreError>
where
    T: for<'b> Decode<'b, ()>,
{
    minicbor::decode(bytes).map_err(|source| StoreError::Decode {
        table,
        key: key.to_string(),
        source,
    })
}

pub(super) fn encode<T: Encode<()>>(value: &T) -> Result<Vec<u8>, StoreError> {
    minicbor::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))
}
