//! `workflow ...`: apply (all or nothing, `--dry-run`), list, show, history, diff, rollback,
//! delete, pause/resume, trigger, and the pool decisions deploy, pin, unpin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::args::parse_kv;
use super::output::{
    CliError, CliResult, EXIT_DATA, EXIT_FAIL, Output, fmt_labels, or_dash, print_json, table,
};
use crate::client::{Client, seg};
use crate::views::{
    AgentsResponse, ApplyFile, ApplyRequest, ApplyResponse, ApplyResult, BackfillRequest,
    BackfillResponse, DecisionView, DeleteRequest, DeleteResponse, DiffResponse, HistoryEntry,
    PoolVersionRequest, RollbackRequest, TriggerRequest, TriggerResponse, VersionResponse,
    WorkflowDetail, WorkflowSummary,
};

/// `workflow ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowCmd {
    /// Validate and apply workflow files, all or nothing (a changed file becomes a new version;
    /// one invalid file and nothing is applied).
    Apply {
        /// Workflow files, or directories: their *.yaml, *.yml and *.toml files.
        #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// With directories: their subdirectories too.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Change nothing: print, per file, the diff against the hub's latest version and the
        /// pools and agents a new version would reach.
        #[arg(long)]
        dry_run: bool,
    },
    /// List workflows.
    List {
        /// Deleted workflows too.
        #[arg(long)]
        all: bool,
    },
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
    /// Delete a workflow: every agent that runs it gets a removal; its versions and runs are
    /// kept (`workflow list --all` shows it); applying it again makes a new version.
    Delete {
        /// Workflow name.
        name: String,
        /// Delete even while a rollout of it is in progress (the rollout ends, aborted).
        #[arg(long)]
        force: bool,
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
        WorkflowCmd::Apply {
            files,
            recursive,
            dry_run,
        } => apply(c, output, &files, recursive, dry_run),
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
        WorkflowCmd::List { all } => {
            let q = [("all", if all { "true" } else { "" }.to_string())];
            let rows: Vec<WorkflowSummary> = c.get("/v1/workflows", &q)?;
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
                let mut head = vec!["NAME", "VERSION", "VERSIONS", "PAUSED", "TARGET", "UPDATED"];
                let t = if all {
                    head.push("DELETED");
                    t.into_iter()
                        .zip(&rows)
                        .map(|(mut r, w)| {
                            r.push(w.deleted.clone().unwrap_or_else(|| "-".into()));
                            r
                        })
                        .collect()
                } else {
                    t
                };
                print!("{}", table(&head, &t));
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
        WorkflowCmd::Delete { name, force } => delete(c, output, &name, force),
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

/// The workflow files named on the command line: files as given; for a directory, its *.yaml,
/// *.yml and *.toml files by name (with `recursive`, those of its subdirectories too).
fn collect_files(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, CliError> {
    fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| CliError::Usage(format!("{}: {e}", dir.display())))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|e| CliError::Usage(format!("{}: {e}", dir.display())))?;
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if recursive {
                    walk(&p, recursive, out)?;
                }
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "toml"))
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            walk(p, recursive, &mut out)?;
            if out.len() == before {
                return Err(CliError::Usage(format!(
                    "{}: no workflow files (*.yaml, *.yml, *.toml){}",
                    p.display(),
                    if recursive {
                        ""
                    } else {
                        " (-R: subdirectories too)"
                    }
                )));
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn apply(
    c: &Client,
    output: Output,
    paths: &[PathBuf],
    recursive: bool,
    dry_run: bool,
) -> CliResult {
    let mut files = Vec::new();
    let mut local_errors = Vec::new();
    for p in collect_files(paths, recursive)? {
        let name = p.display().to_string();
        match std::fs::read(&p) {
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
    // All or nothing: a file that cannot be read means nothing is sent.
    let resp: ApplyResponse = if !local_errors.is_empty() || files.is_empty() {
        ApplyResponse { results: vec![] }
    } else if dry_run {
        c.post("/v1/workflows?dry_run=true", &ApplyRequest { files })?
    } else {
        c.post("/v1/workflows", &ApplyRequest { files })?
    };
    let invalid =
        !local_errors.is_empty() || resp.results.iter().any(|r| !r.diagnostics.is_empty());
    if output == Output::Json {
        print_json(&serde_json::json!({
            "applied": !invalid && !dry_run,
            "dry_run": dry_run,
            "results": resp.results,
            "errors": local_errors,
        }))?;
    } else if invalid {
        for e in &local_errors {
            eprintln!("{e}");
        }
        for r in resp.results.iter().filter(|r| !r.diagnostics.is_empty()) {
            for d in &r.diagnostics {
                eprintln!("{d}");
            }
        }
        let bad = local_errors.len()
            + resp
                .results
                .iter()
                .filter(|r| !r.diagnostics.is_empty())
                .count();
        eprintln!(
            "nothing {}: {bad} invalid file(s) (apply is all or nothing)",
            if dry_run { "planned" } else { "applied" }
        );
    } else if dry_run {
        for r in &resp.results {
            print_plan(r);
        }
        println!("dry run: nothing changed");
    } else {
        for r in &resp.results {
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
        ExitCode::from(EXIT_DATA)
    } else {
        ExitCode::SUCCESS
    })
}

/// One file of `apply --dry-run`, as text.
fn print_plan(r: &ApplyResult) {
    let name = r.name.as_deref().unwrap_or("?");
    let Some(p) = &r.plan else {
        println!("# {}: {name}", r.path);
        return;
    };
    let latest = p.latest.unwrap_or(0);
    let what = match p.status.as_str() {
        "new" => "new workflow".to_string(),
        "unchanged" => format!("unchanged (version {latest})"),
        "waiting" => "unchanged (already waiting for release signatures)".to_string(),
        "revived" => format!("deleted workflow applied again (latest version {latest})"),
        _ => format!("changed (version {latest} -> a new version)"),
    };
    println!("# {}: {name}: {what}", r.path);
    if !p.diff.is_empty() {
        print!("{}", p.diff);
        if !p.diff.ends_with('\n') {
            println!();
        }
    }
    if !p.pools.is_empty() {
        let t: Vec<Vec<String>> = p
            .pools
            .iter()
            .map(|x| {
                vec![
                    x.pool.clone(),
                    if x.version == 0 {
                        "-".into()
                    } else {
                        x.version.to_string()
                    },
                    if x.gets_new { "yes" } else { "no" }.into(),
                    x.note.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["POOL", "VERSION", "GETS NEW VERSION", "WHY"], &t)
        );
    }
    if matches!(p.status.as_str(), "new" | "changed" | "revived") {
        if p.agents.is_empty() {
            println!("agents reached: none");
        } else {
            println!(
                "agents reached ({}): {}",
                p.agents.len(),
                p.agents.join(", ")
            );
        }
        if p.needs_release {
            println!(
                "the new version waits for release signatures before it reaches any agent \
                 (`outpost-hub release status {name}`)"
            );
        }
    }
}

/// `workflow delete`
fn delete(c: &Client, output: Output, name: &str, force: bool) -> CliResult {
    let r: DeleteResponse = c.post(
        &format!("/v1/workflows/{}/delete", seg(name)),
        &DeleteRequest { force },
    )?;
    if output == Output::Json {
        print_json(&r)?;
    } else {
        println!("{name}: deleted (versions and runs kept; `workflow list --all` shows it)");
        for ro in &r.aborted_rollouts {
            println!("rollout {ro}: aborted");
        }
        if let Some(v) = r.dropped_pending {
            println!("version {v} (waiting for release signatures): dropped");
        }
        if r.agents.is_empty() {
            println!("removals: no agent ran it");
        } else {
            println!(
                "removals sent to {} agent(s): {}",
                r.agents.len(),
                r.agents.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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
