//! The certificate authorities: `ca rotate-intermediate`, `ca rotate`, `ca retire` (work on the
//! hub's files and the offline directory with the root CA key, not over the API).

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
    /// A new root CA (its key replaces the old root's in the offline directory; needs --config
    /// hub.toml). From its next start the hub sends it, certified by the old root, to every
    /// agent; `agent show` lists the roots each agent pins. Then `ca rotate-intermediate`
    /// switches the hub to the new root.
    Rotate {
        /// The offline directory holding the current root CA key.
        #[arg(long)]
        offline_dir: PathBuf,
    },
    /// The hub's certificates, root CAs (how many agents pin each) and expiry warnings (over
    /// the API).
    Status,
    /// Remove a root CA from the hub's trust anchors (after every agent renewed from an
    /// intermediate of the new root; needs --config hub.toml; effective at the next start).
    Retire {
        /// SHA-256 (hex) of the root CA certificate to remove.
        #[arg(long)]
        sha256: String,
    },
}

/// `ca ...`
pub(super) fn handle(conn: &ConnOpts, cmd: CaCmd) -> CliResult {
    match cmd {
        CaCmd::RotateIntermediate { offline_dir } => rotate_intermediate(conn, &offline_dir),
        CaCmd::Rotate { offline_dir } => rotate_root(conn, &offline_dir),
        CaCmd::Retire { sha256 } => retire(conn, &sha256),
        CaCmd::Status => status(conn),
    }
}

fn status(conn: &ConnOpts) -> CliResult {
    let c = super::conn::client(conn)?;
    let v: crate::views::CertificatesView = c.get("/v1/certificates", &[])?;
    if conn.output == Output::Json {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(h) = &v.hub_certificate {
        println!(
            "hub certificate:  expires {}  sha256 {}",
            h.expires, h.sha256
        );
    }
    println!(
        "intermediate CA:  expires {}  sha256 {}",
        v.intermediate.expires, v.intermediate.sha256
    );
    for r in &v.roots {
        println!(
            "root CA:          expires {}  sha256 {}  pinned by {}/{} agents{}",
            r.cert.expires,
            r.cert.sha256,
            r.agents_pinning,
            v.agents,
            if r.issuing { "  (issuing)" } else { "" }
        );
    }
    for w in &v.warnings {
        println!("WARNING: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

fn config(conn: &ConnOpts, what: &str) -> Result<HubConfig, CliError> {
    let path = conn
        .config
        .as_deref()
        .ok_or_else(|| CliError::Usage(format!("{what} needs --config hub.toml")))?;
    HubConfig::load(path).map_err(|e| CliError::Usage(e.to_string()))
}

fn rotate_root(conn: &ConnOpts, offline_dir: &std::path::Path) -> CliResult {
    let config = config(conn, "ca rotate")?;
    let r = crate::init::rotate_root(&config, offline_dir)
        .map_err(|e| CliError::Fail(format!("{e:#}")))?;
    if conn.output == Output::Json {
        print_json(&serde_json::json!({"old_sha256": r.old_sha256, "new_sha256": r.new_sha256}))?;
    } else {
        println!("new root CA {} (old {})", r.new_sha256, r.old_sha256);
        println!(
            "restart the hub: it sends the new root to every agent; when `agent show` lists it for              all, run `ca rotate-intermediate`"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn retire(conn: &ConnOpts, sha256: &str) -> CliResult {
    let config = config(conn, "ca retire")?;
    crate::init::retire_root(&config, sha256).map_err(|e| CliError::Fail(format!("{e:#}")))?;
    if conn.output == Output::Json {
        print_json(&serde_json::json!({"retired": sha256}))?;
    } else {
        println!("root CA {sha256} retired; restart the hub");
    }
    Ok(ExitCode::SUCCESS)
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
