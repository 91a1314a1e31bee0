//! `token ...`: bootstrap tokens (create, list, revoke).

use std::process::ExitCode;

use clap::Subcommand;

use super::args::parse_kv_list;
use super::output::{CliError, CliResult, Output, fmt_labels, or_dash, print_json, table};
use crate::client::{Client, seg};
use crate::views::{TokenRequest, TokenResponse, TokenRevokeResponse, TokenView};

/// `token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a bootstrap token (single use unless --uses).
    Create {
        /// Labels of the agents that enroll with it: `k=v,k=v` (authoritative: an agent
        /// cannot add others).
        #[arg(long)]
        labels: Option<String>,
        /// Time to live (e.g. 30m, 1h, 1d), at most the hub's `max_token_ttl` (default 30d).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// How many agents may enroll with it (a batch of sites; one agent each use).
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// List bootstrap tokens (never their secrets): uses, expiry, state.
    List,
    /// Revoke a bootstrap token: it enrolls no more agents (enrolled ones stay).
    Revoke {
        /// Token id (from `token list`; the part after `opt2.`).
        id: String,
    },
}

/// `token ...`
pub(super) fn handle(c: &Client, output: Output, cmd: TokenCmd) -> CliResult {
    match cmd {
        TokenCmd::Create { labels, ttl, uses } => create(c, output, labels.as_deref(), ttl, uses),
        TokenCmd::List => list(c, output),
        TokenCmd::Revoke { id } => revoke(c, output, &id),
    }
}

fn create(c: &Client, output: Output, labels: Option<&str>, ttl: String, uses: u32) -> CliResult {
    let labels = parse_kv_list(labels).map_err(CliError::Usage)?;
    let r: TokenResponse = c.post(
        "/v1/tokens",
        &TokenRequest {
            labels: labels.into_iter().collect(),
            ttl: Some(ttl),
            uses: Some(uses),
        },
    )?;
    if output == Output::Json {
        print_json(&r)?;
    } else {
        println!("{}", r.token);
        let uses = match r.uses {
            0 | 1 => "single use".to_string(),
            n => format!("{n} uses"),
        };
        eprintln!("token {}: {uses}; expires {}", r.id, r.expires);
    }
    Ok(ExitCode::SUCCESS)
}

fn list(c: &Client, output: Output) -> CliResult {
    let r: Vec<TokenView> = c.get("/v1/tokens", &[])?;
    if output == Output::Json {
        print_json(&r)?;
    } else {
        let rows: Vec<Vec<String>> = r
            .iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    t.state.clone(),
                    format!("{}/{}", t.used, t.uses),
                    t.expires.clone(),
                    or_dash(fmt_labels(&t.labels)),
                    t.last_agent.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["ID", "STATE", "USED", "EXPIRES", "LABELS", "LAST AGENT"],
                &rows
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(c: &Client, output: Output, id: &str) -> CliResult {
    let r: TokenRevokeResponse = c.post(
        &format!("/v1/tokens/{}/revoke", seg(id)),
        &serde_json::json!({}),
    )?;
    if output == Output::Json {
        print_json(&r)?;
    } else if r.revoked {
        println!("token {} revoked", r.id);
    } else {
        println!("token {} was already revoked", r.id);
    }
    Ok(ExitCode::SUCCESS)
}
