//! The workflow-signing key: `keys rotate` (works on the stopped hub's files, not over the API).

use std::process::ExitCode;

use clap::Subcommand;

use super::conn::ConnOpts;
use super::output::{CliError, CliResult, Output, print_json};
use crate::config::HubConfig;

/// `keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Make a new signing key endorsed by the current one (the hub must be stopped; needs
    /// --config hub.toml).
    Rotate,
}

/// `keys ...`
pub(super) fn handle(conn: &ConnOpts, cmd: KeysCmd) -> CliResult {
    match cmd {
        KeysCmd::Rotate => rotate(conn),
    }
}

fn rotate(conn: &ConnOpts) -> CliResult {
    let path = conn
        .config
        .as_deref()
        .ok_or_else(|| CliError::Usage("keys rotate needs --config hub.toml".into()))?;
    let config = HubConfig::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    let r =
        crate::init::rotate_signing_key(&config).map_err(|e| CliError::Fail(format!("{e:#}")))?;
    if conn.output == Output::Json {
        print_json(&serde_json::json!({"old_key_id": r.old_key_id, "new_key_id": r.new_key_id}))?;
    } else {
        println!("signing key rotated: {} -> {}", r.old_key_id, r.new_key_id);
        println!("agents follow the endorsement at their next connection");
    }
    Ok(ExitCode::SUCCESS)
}
