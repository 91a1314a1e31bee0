//! The certificate authorities: `ca rotate-intermediate` (works on the hub's files and the
//! offline directory with the root CA key, not over the API).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::conn::ConnOpts;
use super::output::{CliError, CliResult, Output, print_json};
use crate::config::HubConfig;

/// `ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// The root CA signs a new intermediate CA, which replaces the hub's (needs --config
    /// hub.toml and the offline directory; the hub uses it from its next start). Agents pin
    /// the root and are unaffected.
    RotateIntermediate {
        /// The offline directory holding the root CA key (made by `init`).
        #[arg(long)]
        offline_dir: PathBuf,
    },
}

/// `ca ...`
pub(super) fn handle(conn: &ConnOpts, cmd: CaCmd) -> CliResult {
    match cmd {
        CaCmd::RotateIntermediate { offline_dir } => rotate_intermediate(conn, &offline_dir),
    }
}

fn rotate_intermediate(conn: &ConnOpts, offline_dir: &std::path::Path) -> CliResult {
    let path = conn
        .config
        .as_deref()
        .ok_or_else(|| CliError::Usage("ca rotate-intermediate needs --config hub.toml".into()))?;
    let config = HubConfig::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    let r = crate::init::rotate_intermediate(&config, offline_dir)
        .map_err(|e| CliError::Fail(format!("{e:#}")))?;
    if conn.output == Output::Json {
        print_json(&serde_json::json!({"old_sha256": r.old_sha256, "new_sha256": r.new_sha256}))?;
    } else {
        println!(
            "intermediate CA rotated: {} -> {}",
            r.old_sha256, r.new_sha256
        );
        println!("restart the hub to issue from it; agents pin the root and are unaffected");
    }
    Ok(ExitCode::SUCCESS)
}
