//! The hub store's error type. The file-level errors and the record encoding are the ones the
//! agent store uses too (`outpost_common::store`).

pub(super) use outpost_common::store::{DbError, decode, decode_all, encode};

/// Everything that can go wrong in the hub store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store file, its schema or a stored record (shared with the agent store).
    #[error(transparent)]
    Db(DbError),
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
    /// No operator has this name.
    #[error("no operator {0}")]
    NoOperator(String),
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
    /// HA mode: desired state cannot be changed now (etcd is unreachable from this replica,
    /// or this replica has not caught up with it yet).
    #[error("desired state is read-only at this replica: {0}")]
    Unavailable(String),
    /// HA mode: the shared run history (PostgreSQL) cannot be reached or refused the statement;
    /// nothing of the operation was committed there.
    #[error("the shared run history is unavailable: {0}")]
    History(String),
}

outpost_common::impl_from_db_error!(StoreError, Db);
