//! `workflow ...`: apply, list, show, history, diff, rollback, pause/resume, trigger, and the
//! pool decisions deploy, pin, unpin.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::args::parse_kv;
use super::output::{
    CliError, CliResult, EXIT_FAIL, Output, fmt_labels, or_dash, print_json, table,
};
use crate::client::{Client, seg};
use crate::views::{
    AgentsResponse, ApplyFile, ApplyRequest, ApplyResponse, BackfillRequest, BackfillResponse,
    DecisionView, DiffResponse, HistoryEntry, PoolVersionRequest, RollbackRequest, TriggerRequest,
    TriggerResponse, VersionResponse, WorkflowDetail, WorkflowSummary,
};

/// `workflow ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowCmd {
    /// Validate and apply workflow files (a changed file becomes a new version).
    Apply {
        /// Workflow files.
        #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
    /// List workflows.
    List,
    /// Show a workflow version's file.
    Show {
        /// Workflow name.
        name: String,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<u64>,
    },
    /// List a workflow's versions.
    History {
        /// Workflow name.
        name: String,
    },
    /// Unified diff between two versions.
    Diff {
        /// Workflow name.
        name: String,
        /// From version.
        v1: u64,
        /// To version.
        v2: u64,
    },
    /// Make a new version with an older version's content.
    Rollback {
        /// Workflow name.
        name: String,
        /// The version to return to.
        #[arg(long)]
        to: u64,
    },
    /// Pause a workflow on every agent.
    Pause {
        /// Workflow name.
        name: String,
    },
    /// Resume a workflow on every agent.
    Resume {
        /// Workflow name.
        name: String,
    },
    /// Make a version the desired version of the workflow in a pool.
    Deploy {
        /// Workflow name.
        name: String,
        /// Pool.
        #[arg(long)]
        pool: String,
        /// Version [default: latest].
        #[arg(long)]
        version: Option<u64>,
    },
    /// Hold a pool on a version: deploys and rollouts into it are refused until unpinned.
    Pin {
        /// Workflow name.
        name: String,
        /// Pool.
        #[arg(long)]
        pool: String,
        /// Version.
        #[arg(long)]
        version: u64,
    },
    /// Release a pin (the pool keeps its version).
    Unpin {
        /// Workflow name.
        name: String,
        /// Pool.
        #[arg(long)]
        pool: String,
    },
    /// Start a run now on connected agents.
    Trigger {
        /// Workflow name.
        name: String,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Run parameter `key=value` (repeatable; `-p` as in `outpost-agent trigger`).
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// A past logical time for the run (RFC 3339): its `run.scheduled_time`.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Runs for the schedule's instants in [--from, --to) on connected agents, with the run
    /// ids live firings have (an instant that already ran is not run again).
    Backfill {
        /// Workflow name.
        name: String,
        /// Window start, RFC 3339 (inclusive).
        #[arg(long)]
        from: String,
        /// Window end, RFC 3339 (exclusive).
        #[arg(long)]
        to: String,
        /// Only the members of this pool.
        #[arg(long, conflicts_with = "agent")]
        pool: Option<String>,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// At most this many backfill runs at once on each agent.
        #[arg(long, default_value_t = 1)]
        max_active: u32,
        /// Only list the instants and the agents.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `workflow ...`
pub(super) fn handle(c: &Client, output: Output, cmd: WorkflowCmd) -> CliResult {
    match cmd {
        WorkflowCmd::Apply { files } => apply(c, output, &files),
        WorkflowCmd::Deploy {
            name,
            pool,
            version,
        } => pool_version(c, output, "deploy", &name, &pool, version),
        WorkflowCmd::Pin {
            name,
            pool,
            version,
        } => pool_version(c, output, "pin", &name, &pool, Some(version)),
        WorkflowCmd::Unpin { name, pool } => pool_version(c, output, "unpin", &name, &pool, None),
        WorkflowCmd::List => {
            let rows: Vec<WorkflowSummary> = c.get("/v1/workflows", &[])?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|w| {
                        vec![
                            w.name.clone(),
                            w.version.to_string(),
                            w.versions.to_string(),
                            if w.paused { "yes" } else { "no" }.into(),
                            or_dash(fmt_labels(&w.target)),
                            w.updated.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["NAME", "VERSION", "VERSIONS", "PAUSED", "TARGET", "UPDATED"],
                        &t
                    )
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCmd::Show { name, version } => {
            let q = [(
                "version",
                version.map(|v| v.to_string()).unwrap_or_default(),
            )];
            let d: WorkflowDetail = c.get(&format!("/v1/workflows/{}", seg(&name)), &q)?;
            if output == Output::Json {
                print_json(&d)?;
            } else {
                println!(
                    "# {} version {} ({}, {}, created {}, hash {})",
                    d.name, d.version, d.format, d.origin, d.created, d.content_hash
                );
                print!("{}", d.content);
                if !d.content.ends_with('\n') {
                    println!();
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCmd::History { name } => {
            let rows: Vec<HistoryEntry> =
                c.get(&format!("/v1/workflows/{}/history", seg(&name)), &[])?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|h| {
                        vec![
                            h.version.to_string(),
                            h.content_hash.chars().take(12).collect(),
                            h.created.clone(),
                            h.origin.clone(),
                            h.applied_by.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["VERSION", "HASH", "CREATED", "ORIGIN", "BY"], &t)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCmd::Diff { name, v1, v2 } => {
            let d: DiffResponse = c.get(
                &format!("/v1/workflows/{}/diff", seg(&name)),
                &[("from", v1.to_string()), ("to", v2.to_string())],
            )?;
            if output == Output::Json {
                print_json(&d)?;
            } else {
                print!("{}", d.diff);
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCmd::Rollback { name, to } => {
            let r: VersionResponse = c.post(
                &format!("/v1/workflows/{}/rollback", seg(&name)),
                &RollbackRequest { to },
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else if r.changed {
                println!("{name}: version {} (content of version {to})", r.version);
            } else {
                println!(
                    "{name}: unchanged (version {} already has the content of version {to})",
                    r.version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCmd::Pause { name } => pause_resume(c, output, &name, "pause"),
        WorkflowCmd::Resume { name } => pause_resume(c, output, &name, "resume"),
        WorkflowCmd::Backfill {
            name,
            from,
            to,
            pool,
            agent,
            max_active,
            dry_run,
        } => backfill(
            c,
            output,
            &name,
            &BackfillRequest {
                from,
                to,
                pool,
                agent,
                max_active: Some(max_active),
                dry_run,
            },
        ),
        WorkflowCmd::Trigger {
            name,
            agent,
            params,
            at,
        } => {
            let params: BTreeMap<String, String> = params
                .iter()
                .map(|p| parse_kv(p))
                .collect::<Result<_, _>>()
                .map_err(CliError::Usage)?;
            let query = at.map(|t| format!("?at={}", seg(&t))).unwrap_or_default();
            let r: TriggerResponse = c.post(
                &format!("/v1/workflows/{}/trigger{query}", seg(&name)),
                &TriggerRequest { agent, params },
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else if r.results.is_empty() {
                eprintln!("no agent runs {name}");
            } else {
                let t: Vec<Vec<String>> = r
                    .results
                    .iter()
                    .map(|x| {
                        vec![
                            x.agent.clone(),
                            if x.ok { "ok" } else { "failed" }.into(),
                            x.run_id.clone().unwrap_or_else(|| "-".into()),
                            x.message.clone(),
                        ]
                    })
                    .collect();
                print!("{}", table(&["AGENT", "RESULT", "RUN", "MESSAGE"], &t));
            }
            if r.results.is_empty() || r.results.iter().any(|x| !x.ok) {
                return Ok(ExitCode::from(EXIT_FAIL));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `workflow backfill`: the instants first (only them with --dry-run), then each agent's answer.
fn backfill(c: &Client, output: Output, name: &str, req: &BackfillRequest) -> CliResult {
    let r: BackfillResponse = c.post(&format!("/v1/workflows/{}/backfill", seg(name)), req)?;
    if output == Output::Json {
        print_json(&r)?;
    } else {
        println!("{} instant(s) of {name}:", r.instants.len());
        for t in &r.instants {
            println!("  {t}");
        }
        if req.dry_run {
            println!("agents: {}", r.agents.join(", "));
        } else {
            let t: Vec<Vec<String>> = r
                .results
                .iter()
                .map(|x| {
                    vec![
                        x.agent.clone(),
                        if x.ok { "ok" } else { "failed" }.into(),
                        x.message.clone(),
                    ]
                })
                .collect();
            print!("{}", table(&["AGENT", "RESULT", "MESSAGE"], &t));
        }
    }
    if !req.dry_run && (r.agents.is_empty() || r.results.iter().any(|x| !x.ok)) {
        if r.agents.is_empty() {
            eprintln!("no agent runs {name}");
        }
        return Ok(ExitCode::from(EXIT_FAIL));
    }
    Ok(ExitCode::SUCCESS)
}

fn apply(c: &Client, output: Output, paths: &[PathBuf]) -> CliResult {
    let mut files = Vec::new();
    let mut local_errors = Vec::new();
    for p in paths {
        let name = p.display().to_string();
        match std::fs::read(p) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(content) => files.push(ApplyFile {
                    path: name,
                    content,
                }),
                Err(e) => local_errors.push(format!("{name}:1:1: file is not valid UTF-8: {e}")),
            },
            Err(e) => local_errors.push(format!("{name}:1:1: cannot read file: {e}")),
        }
    }
    let resp: ApplyResponse = if files.is_empty() {
        ApplyResponse { results: vec![] }
    } else {
        c.post("/v1/workflows", &ApplyRequest { files })?
    };
    let invalid =
        !local_errors.is_empty() || resp.results.iter().any(|r| !r.diagnostics.is_empty());
    if output == Output::Json {
        print_json(&serde_json::json!({
            "results": resp.results,
            "errors": local_errors,
        }))?;
    } else {
        for e in &local_errors {
            eprintln!("{e}");
        }
        for r in &resp.results {
            if !r.diagnostics.is_empty() {
                for d in &r.diagnostics {
                    eprintln!("{d}");
                }
                eprintln!("{}: not applied", r.path);
                continue;
            }
            let name = r.name.as_deref().unwrap_or("?");
            let v = r.version.unwrap_or(0);
            if r.changed && r.pending {
                println!(
                    "{name}: version {v} ({}), waiting for release signatures (`outpost-hub release status {name}`)",
                    r.path
                );
            } else if r.changed {
                println!("{name}: version {v} ({})", r.path);
            } else if r.pending {
                println!("{name}: unchanged (version {v}, waiting for release signatures)");
            } else {
                println!("{name}: unchanged (version {v})");
            }
        }
    }
    Ok(if invalid {
        ExitCode::from(EXIT_FAIL)
    } else {
        ExitCode::SUCCESS
    })
}

fn pause_resume(c: &Client, output: Output, name: &str, verb: &str) -> CliResult {
    let r: AgentsResponse = c.post(
        &format!("/v1/workflows/{}/{verb}", seg(name)),
        &serde_json::json!({}),
    )?;
    if output == Output::Json {
        print_json(&r)?;
    } else {
        println!("{name}: {verb}d at the hub");
        let t: Vec<Vec<String>> = r
            .agents
            .iter()
            .map(|a| {
                vec![
                    a.id.clone(),
                    if a.ok { "ok" } else { "not applied yet" }.into(),
                    a.message.clone(),
                ]
            })
            .collect();
        if !t.is_empty() {
            print!("{}", table(&["AGENT", "RESULT", "MESSAGE"], &t));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `workflow deploy|pin|unpin`
fn pool_version(
    c: &Client,
    output: Output,
    verb: &str,
    name: &str,
    pool: &str,
    version: Option<u64>,
) -> CliResult {
    let body = PoolVersionRequest {
        pool: pool.to_string(),
        version,
    };
    let path = format!("/v1/workflows/{}/{verb}", seg(name));
    if verb == "unpin" {
        let v: serde_json::Value = c.post(&path, &body)?;
        if output == Output::Json {
            print_json(&v)?;
        } else if v.get("unpinned").and_then(|b| b.as_bool()) == Some(true) {
            println!("{name}: pool {pool} unpinned");
        } else {
            println!("{name}: pool {pool} was not pinned");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let d: DecisionView = c.post(&path, &body)?;
    if output == Output::Json {
        print_json(&d)?;
    } else if verb == "pin" {
        println!("{name}: pool {pool} pinned to version {}", d.version);
    } else {
        println!(
            "{name}: version {} is the desired version in pool {pool}",
            d.version
        );
    }
    Ok(ExitCode::SUCCESS)
}
