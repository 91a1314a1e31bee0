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
    /// Operator name recorded in the hub's audit log for changes made by this command
    /// [default: $USER, else "api"].
    #[arg(long, global = true, env = "OUTPOST_ACTOR")]
    pub actor: Option<String>,
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
    #[cfg(feature = "dev")]
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
    /// Node pools (named label selectors).
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Gray-release rollouts of a workflow version into a pool.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Write a consistent copy of the hub's store to a new FILE while the hub serves (restore:
    /// docs/operations.md, "Back up the hub").
    Backup {
        /// The file to create (refused if it exists).
        #[arg(long)]
        to: PathBuf,
    },
    /// The hub's audit log (who did what, when), oldest first.
    Audit {
        /// The newest N entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

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

/// `rollout ...`
#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// Start a rollout of a workflow version into a pool.
    Start(RolloutStartArgs),
    /// Show a rollout (the active one of the pool, else the latest).
    Status {
        /// Workflow name.
        name: String,
        /// Pool.
        #[arg(long)]
        pool: String,
        /// Follow it until it finishes (progress bars on a terminal, lines otherwise).
        #[arg(long)]
        watch: bool,
    },
    /// List rollouts (all workflows).
    List {
        /// Only active ones.
        #[arg(long)]
        active: bool,
    },
    /// Every rollout of a workflow.
    History {
        /// Workflow name.
        name: String,
    },
    /// Freeze progress (failures still roll back).
    Pause(RolloutTarget),
    /// Undo pause.
    Resume(RolloutTarget),
    /// Pass a manual gate, or cut the current bake short.
    Promote(RolloutTarget),
    /// Stop and roll the updated agents back to the previous version.
    Abort(RolloutTarget),
}

/// The rollout a command acts on.
#[derive(Debug, Clone, Args)]
pub struct RolloutTarget {
    /// Workflow name.
    pub name: String,
    /// Pool.
    #[arg(long)]
    pub pool: String,
}

/// `rollout start` flags.
#[derive(Debug, Clone, Args)]
pub struct RolloutStartArgs {
    /// Workflow name.
    pub name: String,
    /// Pool.
    #[arg(long)]
    pub pool: String,
    /// Version to roll out [default: latest].
    #[arg(long)]
    pub version: Option<u64>,
    /// Canary agents: a count (`2`) or a percentage (`10%`).
    #[arg(long, default_value = "1")]
    pub canary: String,
    /// Steps after the canary, cumulative targets (`1,10%,50%,100%`); the last is forced to 100%.
    #[arg(long, default_value = "100%")]
    pub steps: String,
    /// Bake time per step, from the moment all its agents are active (`30s`, `10m`).
    #[arg(long, default_value = "0s")]
    pub bake: String,
    /// Minimum finished runs of the new version (see --min-runs-scope).
    #[arg(long, default_value_t = 0)]
    pub min_runs: u32,
    /// `agent`: per updated agent since the rollout started; `step`: across the step.
    #[arg(long, default_value = "agent")]
    pub min_runs_scope: String,
    /// Highest acceptable failure rate of the new version's runs (0.0..=1.0).
    #[arg(long, default_value_t = 0.0)]
    pub max_failure_rate: f64,
    /// Wait for `rollout promote` at every step gate.
    #[arg(long)]
    pub manual: bool,
    /// Local probation: the first N runs of the new version on each agent...
    #[arg(long)]
    pub probation_runs: Option<u32>,
    /// ...of which more than K failing make the agent revert by itself [default: 0].
    #[arg(long, requires = "probation_runs")]
    pub probation_max_failures: Option<u32>,
    /// Offline agents in a step: `wait[:D]` (default wait:10m), `skip` or `fail`.
    #[arg(long, default_value = "wait")]
    pub offline: String,
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
    /// Change an agent's labels: `k=v` adds or replaces, `k-` removes (pool membership
    /// follows at once).
    Label {
        /// Agent id.
        id: String,
        /// `k=v` or `k-`, one or more.
        #[arg(required = true, num_args = 1.., value_name = "K=V|K-")]
        labels: Vec<String>,
    },
}

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
        /// Only this state (queued, running, succeeded, failed, cancelled, skipped), or
        /// `failed-tasks`: runs in which a task failed, whatever their state.
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
    /// Cancel a run on the agent that has it (the agent must be connected; not queued).
    Cancel {
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

/// Labels to set and keys to remove.
pub type LabelEdits = (Vec<(String, String)>, Vec<String>);

/// Parse `agent label` arguments: `k=v` (set) and `k-` (remove).
pub fn parse_label_edits(args: &[String]) -> Result<LabelEdits, String> {
    let mut set = Vec::new();
    let mut remove = Vec::new();
    for a in args {
        if let Some(k) = a.strip_suffix('-')
            && !a.contains('=')
        {
            if k.trim().is_empty() {
                return Err(format!("expected key=value or key-, got {a:?}"));
            }
            remove.push(k.trim().to_string());
        } else {
            set.push(parse_kv(a)?);
        }
    }
    Ok((set, remove))
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
    fn label_edits() {
        let (set, rm) = parse_label_edits(&["a=1".into(), "b-".into(), "c=x-".into()]).unwrap();
        assert_eq!(
            set,
            vec![("a".into(), "1".into()), ("c".into(), "x-".into())]
        );
        assert_eq!(rm, vec!["b".to_string()]);
        assert!(parse_label_edits(&["-".into()]).is_err());
        assert!(parse_label_edits(&["nope".into()]).is_err());
    }

    #[test]
    fn rollout_cli_parses() {
        let c = Cli::try_parse_from([
            "outpost-hub",
            "rollout",
            "start",
            "etl",
            "--pool",
            "line-3",
            "--version",
            "4",
            "--canary",
            "10%",
            "--steps",
            "1,10%,50%,100%",
            "--bake",
            "30s",
            "--min-runs",
            "2",
            "--min-runs-scope",
            "step",
            "--max-failure-rate",
            "0.1",
            "--manual",
            "--probation-runs",
            "3",
            "--probation-max-failures",
            "1",
            "--offline",
            "wait:5m",
        ])
        .unwrap();
        match c.command {
            Command::Rollout(RolloutCmd::Start(a)) => {
                assert_eq!(
                    (a.pool.as_str(), a.version, a.min_runs),
                    ("line-3", Some(4), 2)
                );
                assert!(a.manual);
                assert_eq!(a.probation_max_failures, Some(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["outpost-hub", "rollout", "abort", "etl", "--pool", "p"]).is_ok()
        );
        assert!(Cli::try_parse_from(["outpost-hub", "rollout", "abort", "etl"]).is_err());
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
