//! `audit`: the hub's audit log (who did what, when).

use std::process::ExitCode;

use clap::Args;

use super::output::{CliResult, Output, print_json, table};
use crate::client::Client;
use crate::views::AuditView;

/// `audit` flags.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// The newest N entries.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `audit`
pub(super) fn handle(c: &Client, output: Output, a: &AuditArgs) -> CliResult {
    let rows: Vec<AuditView> = c.get("/v1/audit", &[("limit", a.limit.to_string())])?;
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
