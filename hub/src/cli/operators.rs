//! `operator ...` (create, list, revoke operator credentials) and `whoami`.

use std::process::ExitCode;

use clap::Subcommand;

use super::output::{CliResult, Output, or_dash, print_json, table};
use crate::client::{Client, seg};
use crate::views::{OperatorCreate, OperatorCreated, OperatorRevoked, OperatorView, WhoAmI};

/// `operator ...`
#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Create an operator credential and print it (once: only its hash is kept).
    Create {
        /// The operator's name: the actor the audit log records for everything done with it.
        name: String,
        /// viewer (read only), operator (+ trigger, cancel, pause, resume, logs), deployer
        /// (+ apply, rollback, deploy, pin, rollouts), admin (+ operators, tokens, agents,
        /// pools, backup).
        #[arg(long)]
        role: String,
        /// For a deployer: the only pools it may act on, `a,b` (default: every pool). A
        /// workflow's default pool is `wf:<name>` (moved by apply and rollback).
        #[arg(long, value_delimiter = ',')]
        pools: Vec<String>,
    },
    /// List operator credentials (never their secrets).
    List,
    /// Revoke an operator's credential: refused from its next request on.
    Revoke {
        /// The operator's name.
        name: String,
    },
}

/// `operator ...`
pub(super) fn handle(c: &Client, output: Output, cmd: OperatorCmd) -> CliResult {
    match cmd {
        OperatorCmd::Create { name, role, pools } => {
            let r: OperatorCreated =
                c.post("/v1/operators", &OperatorCreate { name, role, pools })?;
            if output == Output::Json {
                print_json(&r)?;
            } else {
                println!("{}", r.credential);
                eprintln!(
                    "operator {} ({}{}) created; the credential above is shown only now",
                    r.operator.name,
                    r.operator.role,
                    pools_note(&r.operator.pools)
                );
            }
        }
        OperatorCmd::List => {
            let r: Vec<OperatorView> = c.get("/v1/operators", &[])?;
            if output == Output::Json {
                print_json(&r)?;
            } else {
                let rows: Vec<Vec<String>> = r
                    .iter()
                    .map(|o| {
                        vec![
                            o.name.clone(),
                            o.role.clone(),
                            or_dash(o.pools.join(",")),
                            if o.revoked.is_some() {
                                "revoked"
                            } else {
                                "active"
                            }
                            .into(),
                            o.created.clone(),
                            o.created_by.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["NAME", "ROLE", "POOLS", "STATE", "CREATED", "BY"], &rows)
                );
            }
        }
        OperatorCmd::Revoke { name } => {
            let r: OperatorRevoked = c.post(
                &format!("/v1/operators/{}/revoke", seg(&name)),
                &serde_json::json!({}),
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else if r.revoked {
                println!("operator {} revoked", r.name);
            } else {
                println!("operator {} was already revoked", r.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pools_note(pools: &[String]) -> String {
    if pools.is_empty() {
        String::new()
    } else {
        format!(", pools {}", pools.join(","))
    }
}

/// `whoami`: the credential this CLI presents, as the hub sees it.
pub(super) fn whoami(c: &Client, output: Output) -> CliResult {
    let w: WhoAmI = c.get("/v1/whoami", &[])?;
    if output == Output::Json {
        print_json(&w)?;
    } else {
        println!("{} ({}{})", w.name, w.role, pools_note(&w.pools));
    }
    Ok(ExitCode::SUCCESS)
}
