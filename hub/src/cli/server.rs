//! The hub process itself: `init` (a new data directory), `serve`, and `dev` (a hub and an agent
//! in one process; the `dev` feature).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::conn::ConnOpts;
use super::output::{CliError, CliResult, Output, print_json};
use crate::config::HubConfig;

/// `init` flags.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The data directory (created with mode 0700).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The hub's name (its certificate's DNS name; agents verify it).
    #[arg(long, default_value = crate::config::DEFAULT_HUB_NAME)]
    pub name: String,
    /// Another DNS name or IP address for the hub certificate (the HTTPS API is reached at
    /// it); repeatable. localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long = "san")]
    pub sans: Vec<String>,
    /// Where the root and release keys and the first root metadata go; `serve` never reads
    /// it: move it to an offline machine. Default: `<data-dir>.offline`.
    #[arg(long)]
    pub offline_dir: Option<PathBuf>,
    /// How many root keys to make, and how many must sign root metadata.
    #[arg(long, default_value_t = 1)]
    pub root_keys: u32,
    #[arg(long, default_value_t = 1)]
    pub root_threshold: u32,
    /// How many release keys to make, and how many must sign a version before any agent runs
    /// it. Each release key belongs to one operator: hand them out.
    #[arg(long, default_value_t = 1)]
    pub release_keys: u32,
    #[arg(long, default_value_t = 1)]
    pub release_threshold: u32,
}

/// `dev` flags.
#[cfg(feature = "dev")]
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `init`
pub(super) fn init(a: &InitArgs, output: Output) -> CliResult {
    let (dir, name) = (a.data_dir.as_path(), a.name.as_str());
    let offline = a
        .offline_dir
        .clone()
        .unwrap_or_else(|| crate::init::default_offline_dir(dir));
    let plan = crate::init::KeyPlan {
        root_keys: a.root_keys,
        root_threshold: a.root_threshold,
        release_keys: a.release_keys,
        release_threshold: a.release_threshold,
        root_days: crate::init::DEFAULT_ROOT_DAYS,
    };
    let r = crate::init::init(dir, name, &a.sans, &offline, plan)
        .map_err(|e| CliError::Fail(format!("{e:#}")))?;
    if output == Output::Json {
        print_json(&serde_json::json!({
            "data_dir": r.data_dir,
            "config": r.config,
            "ca_sha256": r.ca_sha256,
            "director_key_id": r.director_key_id,
            "director_key": r.director_key,
            "offline_dir": r.offline_dir,
            "root_key_ids": r.root_key_ids,
            "release_key_ids": r.release_key_ids,
            "api_token_file": r.api_token_file,
        }))?;
    } else {
        println!("initialised hub {name:?} in {}", r.data_dir.display());
        println!("  CA SHA-256:         {}", r.ca_sha256);
        println!(
            "  director key:       {} ({})",
            r.director_key_id,
            r.director_key.display()
        );
        println!(
            "  root keys:          {} ({}-of-{})",
            r.root_key_ids.join(", "),
            a.root_threshold,
            a.root_keys
        );
        println!(
            "  release keys:       {} ({}-of-{})",
            r.release_key_ids.join(", "),
            a.release_threshold,
            a.release_keys
        );
        println!("  API token file:     {}", r.api_token_file.display());
        println!("  config:             {}", r.config.display());
        println!(
            "move {} (the root CA key, root and release keys) off this machine: the hub never needs it",
            r.offline_dir.display()
        );
        println!(
            "start it with: outpost-hub serve --config {}",
            r.config.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Logging to stderr, filtered by `RUST_LOG` (default `info`): text, or JSON lines with
/// `--log-format json` (`timestamp`, `level`, `target`, `fields`, and the span).
fn init_tracing(format: Output) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        Output::Json => builder.json().try_init(),
        Output::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// `serve`
pub(super) fn serve(conn: &ConnOpts) -> CliResult {
    let path = conn
        .config
        .as_deref()
        .ok_or_else(|| CliError::Usage("serve needs --config hub.toml".into()))?;
    let config = HubConfig::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    init_tracing(conn.log_format);
    let rt = crate::serve::runtime().context("cannot start the async runtime")?;
    rt.block_on(crate::serve::run(
        config,
        crate::serve::shutdown_signal(),
        |s| {
            let scheme = if s.tls { "https" } else { "http" };
            tracing::info!(http = %s.http_addr, tls = s.tls, "hub API listening");
            eprintln!("outpost-hub: API listening on {scheme}://{}", s.http_addr);
        },
    ))
    .map_err(|e| CliError::Usage(format!("{e:#}")))?;
    Ok(ExitCode::SUCCESS)
}

/// `dev`
#[cfg(feature = "dev")]
pub(super) fn dev(a: DevArgs, log_format: Output) -> CliResult {
    init_tracing(log_format);
    crate::dev::run(a.dir).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    Ok(ExitCode::SUCCESS)
}
