//! The command implementations behind `outpost-hub`'s CLI.
//!
//! Exit codes: 0 success; 1 failure (an invalid workflow file, an operation the hub refused or
//! that failed on an agent); 2 bad input, usage or setup (unreachable hub, wrong token, bad
//! configuration).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use serde::Serialize;

use crate::cli::{
    AgentCmd, Cli, Command, ConnOpts, KeysCmd, Output, RunCmd, TokenCmd, WorkflowCmd, parse_kv,
    parse_kv_list,
};
use crate::client::{Client, ClientError, seg};
use crate::config::HubConfig;
use crate::views::*;

#[path = "app_pools.rs"]
mod pools;

const EXIT_FAIL: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Failure categories mapped to exit codes.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// Exit 1.
    #[error("{0}")]
    Fail(String),
    /// Exit 2.
    #[error("{0}")]
    Usage(String),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { .. } | ClientError::Decode(_) => CliError::Fail(e.to_string()),
            ClientError::Transport { .. } | ClientError::Unauthorized(_) => {
                CliError::Usage(e.to_string())
            }
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Usage(format!("{e:#}"))
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::Fail(e.to_string())
    }
}

type CliResult = Result<ExitCode, CliError>;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(CliError::Fail(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(EXIT_FAIL)
        }
        Err(CliError::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn dispatch(cli: Cli) -> CliResult {
    let conn = cli.conn;
    match cli.command {
        Command::Init {
            data_dir,
            name,
            sans,
        } => init(&data_dir, &name, &sans, conn.output),
        Command::Serve => serve(&conn),
        #[cfg(feature = "dev")]
        Command::Dev { dir } => {
            init_tracing();
            crate::dev::run(dir).map_err(|e| CliError::Usage(format!("{e:#}")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Workflow(c) => workflow(&client(&conn)?, conn.output, c),
        Command::Agent(c) => agent(&client(&conn)?, conn.output, c),
        Command::Token(c) => token(&client(&conn)?, conn.output, c),
        Command::Run(c) => run(&client(&conn)?, conn.output, c),
        Command::Keys(KeysCmd::Rotate) => rotate(&conn),
        Command::Pool(c) => pools::pool(&client(&conn)?, conn.output, c),
        Command::Rollout(c) => pools::rollout(&client(&conn)?, conn.output, c),
        Command::Audit { limit } => pools::audit(&client(&conn)?, conn.output, limit),
        Command::Backup { to } => backup(&client(&conn)?, conn.output, &to),
    }
}

fn backup(c: &Client, output: Output, to: &Path) -> CliResult {
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

fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn init(dir: &Path, name: &str, sans: &[String], output: Output) -> CliResult {
    let r = crate::init::init(dir, name, sans).map_err(|e| CliError::Fail(format!("{e:#}")))?;
    if output == Output::Json {
        print_json(&serde_json::json!({
            "data_dir": r.data_dir,
            "config": r.config,
            "ca_sha256": r.ca_sha256,
            "signing_key_id": r.signing_key_id,
            "api_token_file": r.api_token_file,
        }))?;
    } else {
        println!("initialised hub {name:?} in {}", r.data_dir.display());
        println!("  CA SHA-256:         {}", r.ca_sha256);
        println!("  signing key id:     {}", r.signing_key_id);
        println!("  API token file:     {}", r.api_token_file.display());
        println!("  config:             {}", r.config.display());
        println!(
            "start it with: outpost-hub serve --config {}",
            r.config.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn serve(conn: &ConnOpts) -> CliResult {
    let path = conn
        .config
        .as_deref()
        .ok_or_else(|| CliError::Usage("serve needs --config hub.toml".into()))?;
    let config = HubConfig::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
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

fn rotate(conn: &ConnOpts) -> CliResult {
    let path = conn
        .config
        .as_deref()
        .ok_or_else(|| CliError::Usage("keys rotate needs --config hub.toml".into()))?;
    let config = HubConfig::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    let r =
        crate::init::rotate_signing_key(&config).map_err(|e| CliError::Fail(format!("{e:#}")))?;
    if conn.output == Output::Json {
        print_json(&serde_json::json!({"old_key_id": r.old_key_id, "new_key_id": r.new_key_id}))?;
    } else {
        println!("signing key rotated: {} -> {}", r.old_key_id, r.new_key_id);
        println!("agents follow the endorsement at their next connection");
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolve the hub URL, token and CA: flags/env first, then `--config hub.toml`, then
/// defaults. A config whose API is not on loopback means HTTPS (to 127.0.0.1 when it listens on
/// all addresses).
fn client(conn: &ConnOpts) -> Result<Client, CliError> {
    let config = match &conn.config {
        Some(p) => Some(HubConfig::load(p).map_err(|e| CliError::Usage(e.to_string()))?),
        None => None,
    };
    let url = match (&conn.hub, &config) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => config_url(c.http_listen),
        (None, None) => "http://127.0.0.1:7070".to_string(),
    };
    let token = match (&conn.token, &config) {
        (Some(t), _) => t.clone(),
        (None, Some(c)) => c
            .read_api_token()
            .map_err(|e| CliError::Usage(e.to_string()))?,
        (None, None) => {
            return Err(CliError::Usage(
                "no API token: pass --token, set OUTPOST_HUB_TOKEN, or pass --config hub.toml"
                    .into(),
            ));
        }
    };
    let ca_path = conn
        .ca
        .clone()
        .or_else(|| config.as_ref().map(|c| c.ca_cert.clone()));
    let ca = match ca_path {
        Some(p) if url.starts_with("https://") => {
            let pem = std::fs::read_to_string(&p)
                .map_err(|e| CliError::Usage(format!("CA certificate {}: {e}", p.display())))?;
            let mut certs = outpost_net::pki::certs_from_pem(&pem).map_err(|_| {
                CliError::Usage(format!(
                    "CA certificate {} holds no certificate",
                    p.display()
                ))
            })?;
            Some(certs.swap_remove(0))
        }
        _ => None,
    };
    let actor = conn
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.trim().is_empty());
    Ok(Client::new(&url, &token, ca).with_actor(actor))
}

/// The API URL of a configuration's `http_listen`.
pub fn config_url(listen: std::net::SocketAddr) -> String {
    if listen.ip().is_loopback() {
        return format!("http://{listen}");
    }
    let port = listen.port();
    match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => format!("https://127.0.0.1:{port}"),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => format!("https://[::1]:{port}"),
        _ => format!("https://{listen}"),
    }
}

fn workflow(c: &Client, output: Output, cmd: WorkflowCmd) -> CliResult {
    match cmd {
        WorkflowCmd::Apply { files } => apply(c, output, &files),
        WorkflowCmd::Deploy {
            name,
            pool,
            version,
        } => pools::pool_version(c, output, "deploy", &name, &pool, version),
        WorkflowCmd::Pin {
            name,
            pool,
            version,
        } => pools::pool_version(c, output, "pin", &name, &pool, Some(version)),
        WorkflowCmd::Unpin { name, pool } => {
            pools::pool_version(c, output, "unpin", &name, &pool, None)
        }
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
        WorkflowCmd::Trigger {
            name,
            agent,
            params,
        } => {
            let params: BTreeMap<String, String> = params
                .iter()
                .map(|p| parse_kv(p))
                .collect::<Result<_, _>>()
                .map_err(CliError::Usage)?;
            let r: TriggerResponse = c.post(
                &format!("/v1/workflows/{}/trigger", seg(&name)),
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

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}

fn apply(c: &Client, output: Output, paths: &[std::path::PathBuf]) -> CliResult {
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
            if r.changed {
                println!("{name}: version {v} ({})", r.path);
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

fn agent(c: &Client, output: Output, cmd: AgentCmd) -> CliResult {
    match cmd {
        AgentCmd::List => {
            let rows: Vec<AgentView> = c.get("/v1/agents", &[])?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows.iter().map(agent_row).collect();
                print!(
                    "{}",
                    table(
                        &["ID", "LABELS", "STATUS", "SINCE", "VERSION", "ACTIVE"],
                        &t
                    )
                );
            }
        }
        AgentCmd::Show { id } => {
            let a: AgentDetail = c.get(&format!("/v1/agents/{}", seg(&id)), &[])?;
            if output == Output::Json {
                print_json(&a)?;
            } else {
                let row = agent_row(&a.agent);
                println!("agent:        {}", a.agent.id);
                println!("labels:       {}", row[1]);
                println!("status:       {} since {}", row[2], row[3]);
                println!("software:     {}", row[4]);
                println!("hostname:     {}", a.hostname);
                println!("enrolled:     {}", a.enrolled);
                println!(
                    "certificate:  serial {} sha256 {}",
                    a.cert_serial, a.cert_fingerprint
                );
                println!("status seq:   {}", a.committed_seq);
                println!("active:       {}", row[5]);
                if !a.deploys.is_empty() {
                    let t: Vec<Vec<String>> = a
                        .deploys
                        .iter()
                        .map(|d| {
                            vec![
                                d.workflow.clone(),
                                d.version.to_string(),
                                d.epoch.to_string(),
                                if d.accepted {
                                    "accepted".into()
                                } else {
                                    format!("rejected: {}", d.reason.clone().unwrap_or_default())
                                },
                                d.at.clone(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(&["WORKFLOW", "VERSION", "EPOCH", "DEPLOY", "AT"], &t)
                    );
                }
            }
        }
        AgentCmd::Label { id, labels } => return pools::label(c, output, &id, &labels),
        AgentCmd::Revoke { id } => {
            let r: RevokeResponse = c.post(
                &format!("/v1/agents/{}/revoke", seg(&id)),
                &serde_json::json!({}),
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else if r.revoked {
                println!("{id}: revoked");
            } else {
                println!("{id}: already revoked");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn agent_row(a: &AgentView) -> Vec<String> {
    let status = if a.revoked.is_some() {
        "revoked"
    } else if a.online {
        "online"
    } else {
        "offline"
    };
    vec![
        a.id.clone(),
        or_dash(fmt_labels(&a.labels)),
        status.into(),
        a.since.clone().unwrap_or_else(|| "never".into()),
        or_dash(a.software_version.clone()),
        or_dash(
            a.active
                .iter()
                .map(|w| format!("{}@v{}", w.workflow, w.version))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
}

fn token(c: &Client, output: Output, cmd: TokenCmd) -> CliResult {
    let (labels, ttl, uses) = match cmd {
        TokenCmd::Create { labels, ttl, uses } => (labels, ttl, uses),
        TokenCmd::List => {
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
                            or_dash(
                                t.labels
                                    .iter()
                                    .map(|(k, v)| format!("{k}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(","),
                            ),
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
            return Ok(ExitCode::SUCCESS);
        }
        TokenCmd::Revoke { id } => {
            let r: TokenRevokeResponse = c.post(
                &format!("/v1/tokens/{}/revoke", seg(&id)),
                &serde_json::json!({}),
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else if r.revoked {
                println!("token {} revoked", r.id);
            } else {
                println!("token {} was already revoked", r.id);
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let labels = parse_kv_list(labels.as_deref()).map_err(CliError::Usage)?;
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

fn run(c: &Client, output: Output, cmd: RunCmd) -> CliResult {
    match cmd {
        RunCmd::List {
            workflow,
            agent,
            state,
            since,
            limit,
        } => {
            let q = [
                ("workflow", workflow.unwrap_or_default()),
                ("agent", agent.unwrap_or_default()),
                ("state", state.unwrap_or_default()),
                ("since", since.unwrap_or_default()),
                ("limit", limit.to_string()),
            ];
            let rows: Vec<RunView> = c.get("/v1/runs", &q)?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.run_id.clone(),
                            r.agent.clone(),
                            r.workflow.clone(),
                            r.version.to_string(),
                            r.kind.clone(),
                            r.state.clone(),
                            r.created.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "RUN", "AGENT", "WORKFLOW", "VERSION", "KIND", "STATE", "CREATED"
                        ],
                        &t
                    )
                );
            }
        }
        RunCmd::Show { run_id, agent } => {
            let r: RunView = c.get(
                &format!("/v1/runs/{}", seg(&run_id)),
                &[("agent", agent.unwrap_or_default())],
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else {
                println!("run:       {}", r.run_id);
                println!("agent:     {}", r.agent);
                println!("workflow:  {} v{}", r.workflow, r.version);
                println!("kind:      {}", r.kind);
                println!("state:     {}", r.state);
                println!("scheduled: {}", r.scheduled);
                println!("started:   {}", r.started.as_deref().unwrap_or("-"));
                println!("ended:     {}", r.ended.as_deref().unwrap_or("-"));
                let t: Vec<Vec<String>> = r
                    .tasks
                    .iter()
                    .map(|t| {
                        vec![
                            t.task.clone(),
                            t.state.clone(),
                            t.attempts.to_string(),
                            t.outcome.clone().unwrap_or_else(|| "-".into()),
                            t.reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                if !t.is_empty() {
                    print!(
                        "{}",
                        table(&["TASK", "STATE", "ATTEMPTS", "OUTCOME", "REASON"], &t)
                    );
                }
            }
        }
        RunCmd::Cancel { run_id, agent } => {
            let query = agent
                .map(|a| format!("?agent={}", seg(&a)))
                .unwrap_or_default();
            let r: TriggerResult = c.post(
                &format!("/v1/runs/{}/cancel{query}", seg(&run_id)),
                &serde_json::json!({}),
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else {
                println!(
                    "{}: {}",
                    r.agent,
                    if r.message.is_empty() {
                        "cancelled"
                    } else {
                        &r.message
                    }
                );
            }
            if !r.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        RunCmd::Logs {
            run_id,
            task,
            agent,
            attempt,
        } => {
            let text = c.get_text(
                &format!("/v1/runs/{}/logs/{}", seg(&run_id), seg(&task)),
                &[
                    ("agent", agent.unwrap_or_default()),
                    (
                        "attempt",
                        attempt.map(|a| a.to_string()).unwrap_or_default(),
                    ),
                ],
            )?;
            if output == Output::Json {
                print_json(&serde_json::json!({ "run_id": run_id, "task": task, "log": text }))?;
            } else {
                print!("{text}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
