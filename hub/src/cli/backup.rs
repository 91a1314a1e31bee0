//! `backup`: a consistent copy of the hub's store, written while the hub serves.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::output::{CliError, CliResult, Output, print_json};
use crate::client::Client;

/// `backup` flags.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The file to create (refused if it exists).
    #[arg(long)]
    pub to: PathBuf,
}

/// `backup --to FILE`
pub(super) fn handle(c: &Client, output: Output, a: &BackupArgs) -> CliResult {
    let to = a.to.as_path();
    if to.exists() {
        return Err(CliError::Usage(format!(
            "{} exists: a backup is written to a new file",
            to.display()
        )));
    }
    let bytes = c.post_download("/v1/backup", to)?;
    if output == Output::Json {
        print_json(&serde_json::json!({ "file": to, "bytes": bytes }))?;
    } else {
        println!(
            "wrote a consistent copy of the hub store to {} ({bytes} bytes)",
            to.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
