//! Command-line interface of `outpost-hub` (clap): `init`, `serve`, and the ops CLI groups
//! `workflow`, `agent`, `token`, `run` that talk to a hub's HTTP API.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The Outpost hub and its ops CLI.
#[derive(Debug, Parser)]
#[command(name = "outpost-hub", version, about)]
pub struct Cli {
    /// Connection to the hub API (ops commands).
    #[command(flatten)]
    pub conn: ConnOpts,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Aligned tables and plain text.
    #[default]
    Text,
    /// JSON.
    Json,
}

/// Where the hub API is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct ConnOpts {
    /// Hub API URL [default: http://127.0.0.1:7070, or from --config].
    #[arg(long, global = true, env = "OUTPOST_HUB_URL")]
    pub hub: Option<String>,
    /// API token.
    #[arg(long, global = true, env = "OUTPOST_HUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// hub.toml to take the API address, token file and CA from (and, for `serve`, the config).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// CA certificate (PEM) to verify an https:// hub URL with [default: the config's CA].
    #[arg(long, global = true, env = "OUTPOST_HUB_CA")]
    pub ca: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new hub: store, CA, server certificate, signing key, API token, hub.toml.
    Init {
        /// The data directory (created with mode 0700).
        #[arg(long)]
        data_dir: PathBuf,
        /// The hub's name (its certificate's DNS name; agents verify it).
        #[arg(long, default_value = crate::config::DEFAULT_HUB_NAME)]
        name: String,
        /// Another DNS name or IP address for the hub certificate (the HTTPS API is reached at
        /// it); repeatable. localhost, 127.0.0.1 and ::1 are always included.
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// Run the hub (needs --config hub.toml).
    Serve,
    /// The whole system on this machine: a hub and an enrolled agent on loopback, the example
    /// workflow applied and firing every 10 s. State in --dir (default: a new temporary dir).
    Dev {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Workflows.
    #[command(subcommand)]
    Workflow(WorkflowCmd),
    /// Agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Bootstrap tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Runs reported by agents.
    #[command(subcommand)]
    Run(RunCmd),
    /// The workflow-signing key.
    #[command(subcommand)]
    Keys(KeysCmd),
}

/// `keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Make a new signing key endorsed by the current one (the hub must be stopped; needs
    /// --config hub.toml).
    Rotate,
}

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
    /// Start a run now on connected agents.
    Trigger {
        /// Workflow name.
        name: String,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Run parameter `key=value` (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
}

/// `agent ...`
#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// List agents.
    List,
    /// Show one agent.
    Show {
        /// Agent id.
        id: String,
    },
    /// Revoke an agent: its session is closed and it is refused from then on.
    Revoke {
        /// Agent id.
        id: String,
    },
}

/// `token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a single-use bootstrap token.
    Create {
        /// Labels of the agent that enrolls with it: `k=v,k=v`.
        #[arg(long)]
        labels: Option<String>,
        /// Time to live (e.g. 30m, 1h, 1d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

/// `run ...`
#[derive(Debug, Subcommand)]
pub enum RunCmd {
    /// List runs, newest first.
    List {
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only this state (queued, running, succeeded, failed, cancelled, skipped).
        #[arg(long)]
        state: Option<String>,
        /// Only runs created since (RFC 3339 time or a duration like 1h).
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a run with its tasks.
    Show {
        /// Run id.
        run_id: String,
        /// The agent (when several agents have this run id).
        #[arg(long)]
        agent: Option<String>,
    },
    /// Print a task's log (fetched from the agent while it is connected).
    Logs {
        /// Run id.
        run_id: String,
        /// Task id.
        task: String,
        /// The agent (when several agents have this run id).
        #[arg(long)]
        agent: Option<String>,
        /// Attempt number (default: the last).
        #[arg(long)]
        attempt: Option<u32>,
    },
}

/// Parse `k=v` pairs separated by commas (`None`/empty: no pairs).
pub fn parse_kv_list(s: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
        return Ok(vec![]);
    };
    s.split(',').map(parse_kv).collect()
}

/// Parse one `k=v`.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_parsing() {
        assert_eq!(
            parse_kv_list(Some("site=a, role=edge")).unwrap(),
            vec![("site".into(), "a".into()), ("role".into(), "edge".into())]
        );
        assert!(parse_kv_list(Some("nope")).is_err());
        assert!(parse_kv_list(Some("=x")).is_err());
        assert!(parse_kv_list(None).unwrap().is_empty());
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "outpost-hub",
            "workflow",
            "apply",
            "-f",
            "a.yaml",
            "b.toml",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(c.conn.output, Output::Json);
        assert!(matches!(
            c.command,
            Command::Workflow(WorkflowCmd::Apply { ref files }) if files.len() == 2
        ));
    }
}
