//! Command-line interface of `outpost-agent`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "outpost-agent",
    version,
    about = "Outpost edge agent: runs workflows on its own cron clock with a durable local store",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format of `serve` on stderr: text, or JSON lines (one object per event).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "OUTPOST_LOG_FORMAT")]
    pub log_format: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct ClientOpts {
    /// Agent config file (its socket is used).
    #[arg(long, short = 'c', env = "OUTPOST_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Control socket path (overrides --config).
    #[arg(long, env = "OUTPOST_AGENT_SOCKET")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files; prints every problem as file:line:column and exits 1 if any file is invalid.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Agent config whose declared resources the workflows may use.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Print the next firing times of a workflow's schedule (RFC 3339, one a line).
    Schedule {
        file: PathBuf,
        /// Start from this instant instead of now (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        #[arg(long, short = 'n', default_value_t = 10)]
        count: usize,
    },
    /// Run a workflow once, now, in the foreground, with its own embedded store.
    Run {
        file: PathBuf,
        /// Parameter override, k=v (repeatable).
        #[arg(long = "param", short = 'p', value_name = "K=V")]
        params: Vec<String>,
        /// Store and logs directory (default: $XDG_STATE_HOME/outpost/run or ~/.local/state/outpost/run).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Agent-wide limit on running tasks (default: number of CPUs).
        #[arg(long)]
        max_running: Option<usize>,
        /// Agent config for resources and limits.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Quiet: only the summary.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Enroll this agent with a hub (once): key pair made here, certificate from the hub. Works
    /// with the agent service running (it picks the identity up at once) and unattended: exit 0
    /// when enrolled or already enrolled with the same token, 1 when the hub cannot be reached,
    /// 2 on bad input, 3 when the hub refuses.
    Enroll {
        /// The hub's QUIC address, HOST:PORT.
        #[arg(long)]
        hub: String,
        /// A bootstrap token from `outpost-hub token create` (or $OUTPOST_ENROLL_TOKEN, or
        /// --token-file).
        #[arg(long, env = "OUTPOST_ENROLL_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A file holding the bootstrap token (for Ansible, cloud-init: not on the command line).
        /// It takes precedence over --token and $OUTPOST_ENROLL_TOKEN.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The agent's name at the hub (default: this host's name, with a suffix if taken). A
        /// name given here that another agent holds is refused.
        #[arg(long)]
        name: Option<String>,
        /// Labels to check, k=v,...: the token's labels are authoritative; a label the token
        /// does not carry is refused.
        #[arg(long, default_value = "")]
        labels: String,
        /// The name the hub's certificate is issued for (default: the name in the token, or
        /// `outpost-hub` for an `opt1.` token).
        #[arg(long)]
        hub_name: Option<String>,
        /// Agent config (its state_dir holds the identity).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// State directory (instead of --config).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Run the agent daemon.
    Serve {
        #[arg(long, short = 'c', env = "OUTPOST_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Daemon status: workflows, next firings, running tasks, outbox.
    Status {
        #[command(flatten)]
        client: ClientOpts,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Recent runs, newest first.
    Runs {
        #[command(flatten)]
        client: ClientOpts,
        #[arg(long, short = 'w')]
        workflow: Option<String>,
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// One run with its tasks.
    Show {
        #[command(flatten)]
        client: ClientOpts,
        run_id: String,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// A task attempt's log.
    Logs {
        #[command(flatten)]
        client: ClientOpts,
        run_id: String,
        task: String,
        #[arg(long)]
        attempt: Option<u32>,
        /// Keep printing as the task writes, until it ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Start a run of a workflow now.
    Trigger {
        #[command(flatten)]
        client: ClientOpts,
        workflow: String,
        #[arg(long = "param", short = 'p', value_name = "K=V")]
        params: Vec<String>,
        /// A past logical time for the run (RFC 3339): its `run.scheduled_time`.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Stop scheduling a workflow (firings while paused are recorded as missed).
    Pause {
        #[command(flatten)]
        client: ClientOpts,
        workflow: String,
    },
    /// Resume a paused workflow.
    Resume {
        #[command(flatten)]
        client: ClientOpts,
        workflow: String,
    },
    /// Cancel a run: its running tasks are terminated.
    Cancel {
        #[command(flatten)]
        client: ClientOpts,
        run_id: String,
    },
    /// Run the failed tasks of a finished run again, as new attempts of the same run.
    Retry {
        #[command(flatten)]
        client: ClientOpts,
        run_id: String,
        /// Only this task.
        #[arg(long, value_name = "TASK")]
        task: Option<String>,
        /// With --task: also its downstream tasks that did not succeed.
        #[arg(long, requires = "task")]
        downstream: bool,
    },
    /// Print the JSON Schema of workflow files (for editors; docs/workflow.schema.json).
    Schema,
    /// This agent's local secrets (values never leave the machine; tasks get them through
    /// `secret_env`).
    Secret {
        #[command(subcommand)]
        action: SecretAction,
        /// Agent config (its state_dir holds the secrets).
        #[arg(long, short = 'c', global = true, env = "OUTPOST_AGENT_CONFIG")]
        config: Option<PathBuf>,
        /// State directory (instead of --config).
        #[arg(long, global = true)]
        state_dir: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one per subcommand with --dir.
    Man {
        /// Write `outpost-agent.1`, `outpost-agent-status.1`, ... into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Set a secret: the value is read from stdin (never from the command line; one trailing
    /// newline is removed; input is hidden on a terminal).
    Set { name: String },
    /// The secrets available to tasks, with where each comes from (names only, never values).
    List {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Remove a secret from the agent's store.
    Rm { name: String },
}

/// `completion SHELL`: the script, generated from these clap definitions, on stdout.
pub fn print_completion(shell: clap_complete::Shell) {
    use clap::CommandFactory as _;
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "outpost-agent",
        &mut std::io::stdout(),
    );
}

/// `man [--dir D]`: the top page on stdout, or one page per command and subcommand in `dir`
/// (returns how many).
pub fn write_man(dir: Option<&std::path::Path>) -> std::io::Result<usize> {
    use clap::CommandFactory as _;
    let cmd = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
        return Ok(1);
    };
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)?;
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
        .count())
}

/// Parse `k=v,k2=v2` labels.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("label `{p}`: expected KEY=VALUE")),
        })
        .collect()
}

/// Parse `k=v` pairs.
pub fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>, String> {
    raw.iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!("--param `{p}`: expected KEY=VALUE")),
        })
        .collect()
}
