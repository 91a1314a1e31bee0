//! `audit`: the hub's audit log (who did what, when); `audit verify` (its hash chain) and
//! `audit export` (JSON lines for a SIEM).

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::{CliError, CliResult, EXIT_FAIL, Output, print_json, table};
use crate::client::Client;
use crate::views::{AuditExportLine, AuditVerifyView, AuditView};

/// `audit` flags.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// The newest N entries.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Verify or export instead of listing.
    #[command(subcommand)]
    pub cmd: Option<AuditCmd>,
}

/// `audit verify|export`
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCmd {
    /// Walk the whole hash chain: exit 0 when every entry verifies, else exit 1 naming the
    /// first entry that breaks it. Prints the head hash (keep it: a later verify that no
    /// longer passes through it shows a rewrite).
    Verify,
    /// Every entry as JSON lines (one object each with its hash and the previous entry's),
    /// oldest first, to stdout.
    Export {
        /// Start at this seq (for incremental exports).
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
}

/// Entries fetched per export request.
const EXPORT_PAGE: usize = 10_000;

/// `audit`
pub(super) fn handle(c: &Client, output: Output, a: &AuditArgs) -> CliResult {
    match &a.cmd {
        None => list(c, output, a.limit),
        Some(AuditCmd::Verify) => verify(c, output),
        Some(AuditCmd::Export { from }) => export(c, *from),
    }
}

fn list(c: &Client, output: Output, limit: usize) -> CliResult {
    let rows: Vec<AuditView> = c.get("/v1/audit", &[("limit", limit.to_string())])?;
    if output == Output::Json {
        print_json(&rows)?;
    } else {
        let t: Vec<Vec<String>> = rows
            .iter()
            .map(|e| {
                vec![
                    e.at.clone(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.target.clone(),
                    e.detail.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["AT", "ACTOR", "ACTION", "TARGET", "DETAIL"], &t)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(c: &Client, output: Output) -> CliResult {
    let v: AuditVerifyView = c.get("/v1/audit/verify", &[])?;
    if output == Output::Json {
        print_json(&v)?;
    } else if v.ok {
        println!("audit log verified: {} entries, head {}", v.entries, v.head);
    } else {
        println!(
            "audit log BROKEN at entry {}: {}",
            v.broken_seq.unwrap_or_default(),
            v.reason.as_deref().unwrap_or_default()
        );
        println!(
            "{} entries before it verify (up to head {})",
            v.entries, v.head
        );
    }
    Ok(if v.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAIL)
    })
}

fn export(c: &Client, from: u64) -> CliResult {
    let mut next = from;
    let mut out = std::io::stdout().lock();
    loop {
        let text = c.get_text(
            "/v1/audit/export",
            &[
                ("from", next.to_string()),
                ("limit", EXPORT_PAGE.to_string()),
            ],
        )?;
        let mut n = 0usize;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let e: AuditExportLine = serde_json::from_str(line)?;
            next = e.seq + 1;
            n += 1;
            writeln!(out, "{line}").map_err(|e| CliError::Fail(format!("stdout: {e}")))?;
        }
        if n < EXPORT_PAGE {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
