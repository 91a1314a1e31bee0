//! How the ops CLI answers: the output format, exit codes and errors, and the text helpers every
//! resource's views share.
//!
//! Exit codes (the table in docs/operations.md, "Exit codes"): 0 success; 1 failure (an
//! operation the hub refused or that failed on an agent); 2 bad input, usage or setup (wrong
//! token, bad configuration); 3 not found; 4 conflict with the hub's state (pinned, rollout in
//! progress, exists); 5 hub unreachable (no connection, TLS failure); 65 invalid workflow files.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::ValueEnum;
use serde::Serialize;

use crate::client::ClientError;

pub(crate) use outpost_common::text::table;

/// Exit code of a failed or refused operation.
pub(crate) const EXIT_FAIL: u8 = 1;
/// Exit code of bad input, usage or setup.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code of a thing named that does not exist (HTTP 404).
pub(crate) const EXIT_NOT_FOUND: u8 = 3;
/// Exit code of an operation the hub's state does not allow now (HTTP 409).
pub(crate) const EXIT_CONFLICT: u8 = 4;
/// Exit code of a hub that cannot be reached (connection, TLS).
pub(crate) const EXIT_UNREACHABLE: u8 = 5;
/// Exit code of invalid workflow files (`EX_DATAERR`).
pub(crate) const EXIT_DATA: u8 = 65;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Aligned tables and plain text.
    #[default]
    Text,
    /// JSON.
    Json,
}

/// Failure categories mapped to exit codes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Exit 1.
    #[error("{0}")]
    Fail(String),
    /// Exit 2.
    #[error("{0}")]
    Usage(String),
    /// Another documented exit code (`EXIT_*`).
    #[error("{1}")]
    Code(u8, String),
}

impl CliError {
    /// The process exit code of this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Fail(_) => EXIT_FAIL,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Code(c, _) => *c,
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { status: 404, .. } => CliError::Code(EXIT_NOT_FOUND, e.to_string()),
            ClientError::Api { status: 409, .. } => CliError::Code(EXIT_CONFLICT, e.to_string()),
            ClientError::Api { .. } | ClientError::Decode(_) => CliError::Fail(e.to_string()),
            ClientError::Transport { .. } => CliError::Code(EXIT_UNREACHABLE, e.to_string()),
            ClientError::Unauthorized(_) => CliError::Usage(e.to_string()),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Usage(format!("{e:#}"))
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::Fail(e.to_string())
    }
}

/// What a command handler returns.
pub(crate) type CliResult = Result<ExitCode, CliError>;

/// Print a value as pretty JSON (`--output json`).
pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `-` for an empty cell.
pub(crate) fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}

/// `k=v,k=v` as a map (labels on the command line).
pub(crate) fn fmt_labels(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
