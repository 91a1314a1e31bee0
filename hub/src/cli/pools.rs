//! `pool ...`: node pools (named label selectors): create, list, show, delete.

use std::process::ExitCode;

use clap::Subcommand;

use super::args::parse_kv_list;
use super::output::{CliError, CliResult, Output, fmt_labels, or_dash, print_json, table};
use crate::client::{Client, seg};
use crate::views::{DecisionView, PoolCreate, PoolDetail, PoolView};

/// `pool ...`
#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Create a pool.
    Create {
        /// Pool name (A-Z a-z 0-9 . _ : -; `wf:` is reserved).
        name: String,
        /// Label selector `k=v,k=v` (every label must match; empty: every agent).
        #[arg(long)]
        selector: Option<String>,
    },
    /// List pools.
    List,
    /// Show a pool: its members (online/offline, versions) and its workflow decisions.
    Show {
        /// Pool name.
        name: String,
    },
    /// Delete a pool (refused while a rollout is active in it).
    Delete {
        /// Pool name.
        name: String,
    },
}

fn decisions_text(ws: &[DecisionView]) -> String {
    ws.iter()
        .map(|d| {
            let mut s = format!("{}=v{}", d.workflow, d.version);
            if d.pinned {
                s.push_str("(pinned)");
            }
            if let Some(r) = &d.rollout {
                s.push_str(&format!("({r})"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `pool ...`
pub(super) fn handle(c: &Client, output: Output, cmd: PoolCmd) -> CliResult {
    match cmd {
        PoolCmd::Create { name, selector } => {
            let selector = parse_kv_list(selector.as_deref()).map_err(CliError::Usage)?;
            let p: PoolView = c.post(
                "/v1/pools",
                &PoolCreate {
                    name,
                    selector: selector.into_iter().collect(),
                },
            )?;
            if output == Output::Json {
                print_json(&p)?;
            } else {
                println!(
                    "pool {} created (selector {}; {} members, {} online)",
                    p.name,
                    or_dash(fmt_labels(&p.selector)),
                    p.members,
                    p.online
                );
            }
        }
        PoolCmd::List => {
            let rows: Vec<PoolView> = c.get("/v1/pools", &[])?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            or_dash(fmt_labels(&p.selector)),
                            p.members.to_string(),
                            p.online.to_string(),
                            or_dash(decisions_text(&p.workflows)),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["NAME", "SELECTOR", "MEMBERS", "ONLINE", "WORKFLOWS"], &t)
                );
            }
        }
        PoolCmd::Show { name } => {
            let p: PoolDetail = c.get(&format!("/v1/pools/{}", seg(&name)), &[])?;
            if output == Output::Json {
                print_json(&p)?;
            } else {
                println!("pool:      {}", p.pool.name);
                println!("selector:  {}", or_dash(fmt_labels(&p.pool.selector)));
                println!("members:   {} ({} online)", p.pool.members, p.pool.online);
                println!("workflows: {}", or_dash(decisions_text(&p.pool.workflows)));
                let t: Vec<Vec<String>> = p
                    .agents
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.clone(),
                            if a.online { "online" } else { "offline" }.into(),
                            or_dash(
                                a.versions
                                    .iter()
                                    .map(|(w, v)| format!("{w}=v{v}"))
                                    .collect::<Vec<_>>()
                                    .join(" "),
                            ),
                            or_dash(
                                a.desired
                                    .iter()
                                    .map(|(w, v)| format!("{w}=v{v}"))
                                    .collect::<Vec<_>>()
                                    .join(" "),
                            ),
                            or_dash(fmt_labels(&a.labels)),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["AGENT", "STATUS", "RUNS", "DESIRED", "LABELS"], &t)
                );
            }
        }
        PoolCmd::Delete { name } => {
            let v: serde_json::Value = c.delete(&format!("/v1/pools/{}", seg(&name)))?;
            if output == Output::Json {
                print_json(&v)?;
            } else {
                println!("pool {name} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
