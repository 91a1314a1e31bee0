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

/// `compact`: compact the running hub's store file.
pub(super) fn compact(c: &Client, output: Output) -> CliResult {
    let r: serde_json::Value = c.post("/v1/store/compact", &serde_json::json!({}))?;
    if output == Output::Json {
        print_json(&r)?;
    } else {
        println!(
            "compacted {}: {} -> {} bytes",
            r["file"].as_str().unwrap_or("the store"),
            r["bytes_before"],
            r["bytes_after"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `compact --offline --config hub.toml`: compact the store file of a stopped hub.
pub(super) fn compact_offline(conn: &super::conn::ConnOpts) -> CliResult {
    let path = conn
        .config
        .as_deref()
        .ok_or_else(|| CliError::Usage("compact --offline needs --config hub.toml".into()))?;
    let config =
        crate::config::HubConfig::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    let file = config.store_path();
    let store = crate::store::Store::open(&file).map_err(|e| {
        CliError::Fail(format!(
            "{e} (compaction needs the store to itself: stop the hub first)"
        ))
    })?;
    let (before, after) = store.compact().map_err(|e| CliError::Fail(e.to_string()))?;
    if conn.output == Output::Json {
        print_json(&serde_json::json!({
            "file": file, "bytes_before": before, "bytes_after": after
        }))?;
    } else {
        println!("compacted {}: {before} -> {after} bytes", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
