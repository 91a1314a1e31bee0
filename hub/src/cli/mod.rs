//! The command line of `outpost-hub`: the hub process (`init`, `serve`, `dev`) and the ops CLI
//! that talks to a hub's HTTP API, one file per resource. Each resource's file holds its clap
//! arguments, its command handler and its text/JSON output:
//!
//! - [`workflows`] (`workflow ...`, with deploy/pin/unpin), [`agents`], [`runs`], [`tokens`],
//!   [`pools`], [`rollouts`], [`audit`], [`backup`], [`operators`] (and `whoami`), [`releases`]
//!   (`release ...`), [`root`] (`root ...`, `key ...`);
//! - [`server`]: `init`, `serve` and `dev`;
//! - [`contexts`] (`config ...`: named hubs), [`docgen`] (`completion`, `man`);
//! - shared: [`conn`] (global connection flags and the one API client), [`output`] (format,
//!   exit codes, errors, table helpers), [`args`] (`k=v` parsing).
//!
//! This file is only the router: the top-level [`Cli`] and [`Command`] and [`main`]. Files
//! below it import `output`, `conn` and `args`, never this file or each other.

mod agents;
mod alerts;
mod args;
mod audit;
mod backup;
mod ca;
mod conn;
mod contexts;
mod docgen;
mod operators;
mod output;
mod pools;
mod releases;
mod rollouts;
mod root;
mod runs;
mod server;
mod tokens;
mod workflows;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use agents::AgentCmd;
pub use alerts::AlertCmd;
pub use audit::{AuditArgs, AuditCmd};
pub use backup::BackupArgs;
pub use ca::CaCmd;
pub use conn::ConnOpts;
pub use contexts::ConfigCmd;
pub use docgen::{CompletionArgs, ManArgs};
pub use operators::OperatorCmd;
pub use output::Output;
pub use pools::PoolCmd;
pub use releases::ReleaseCmd;
pub use rollouts::{RolloutCmd, RolloutStartArgs, RolloutTarget};
pub use root::{KeyCmd, RootCmd};
pub use runs::RunCmd;
#[cfg(feature = "dev")]
pub use server::DevArgs;
pub use server::InitArgs;
pub use tokens::TokenCmd;
pub use workflows::WorkflowCmd;

use conn::client;
use output::{CliResult, EXIT_USAGE};

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

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new hub: store, CA, server certificate, director key, API token, hub.toml, and
    /// offline: the root and release keys and the first root metadata.
    Init(InitArgs),
    /// Run the hub (needs --config hub.toml).
    Serve,
    /// The whole system on this machine: a hub and an enrolled agent on loopback, the example
    /// workflow applied and firing every 10 s. State in --dir (default: a new temporary dir).
    #[cfg(feature = "dev")]
    Dev(DevArgs),
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
    /// Release signatures: a version runs nowhere until a threshold of release keys signed it.
    #[command(subcommand)]
    Release(ReleaseCmd),
    /// The root metadata: which keys hold the root, release and director roles.
    #[command(subcommand)]
    Root(RootCmd),
    /// Make keys (root, release, director).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Certificate authorities: rotate the intermediate CA.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Node pools (named label selectors).
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Gray-release rollouts of a workflow version into a pool.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Write a consistent copy of the hub's store to a new FILE while the hub serves (restore:
    /// docs/operations.md, "Back up the hub").
    Backup(BackupArgs),
    /// The hub's audit log (who did what, when), oldest first; `verify` checks its hash
    /// chain, `export` writes it as JSON lines.
    Audit(AuditArgs),
    /// Operator credentials (named, with a role): create, list, revoke.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// The operator credential this CLI presents: its name and role.
    Whoami,
    /// Alerts: the notification history, silences, the channels of hub.toml and a test
    /// notification (`test CHANNEL`).
    #[command(subcommand)]
    Alert(AlertCmd),
    /// Compact the store file of the running hub (requests wait while it runs), or with
    /// --offline that of a stopped hub (needs --config hub.toml); prints its size before and
    /// after (docs/operations.md, "Run history retention and store size").
    Compact {
        /// Open the store file directly: the hub must be stopped.
        #[arg(long)]
        offline: bool,
    },
    /// The CLI's contexts (named hubs in ~/.config/outpost/config.toml or $OUTPOST_CONFIG).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion(CompletionArgs),
    /// Print the man page, or write one per subcommand with --dir.
    Man(ManArgs),
}

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
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn dispatch(cli: Cli) -> CliResult {
    let conn = cli.conn;
    match cli.command {
        Command::Init(a) => server::init(&a, conn.output),
        Command::Serve => server::serve(&conn),
        #[cfg(feature = "dev")]
        Command::Dev(a) => server::dev(a, conn.log_format),
        Command::Workflow(c) => workflows::handle(&client(&conn)?, conn.output, c),
        Command::Agent(c) => agents::handle(&client(&conn)?, conn.output, c),
        Command::Token(c) => tokens::handle(&client(&conn)?, conn.output, c),
        Command::Run(c) => runs::handle(&client(&conn)?, conn.output, c),
        Command::Release(c) => releases::handle(&conn, c),
        Command::Root(c) => root::root(&conn, c),
        Command::Key(c) => root::key(&conn, c),
        Command::Ca(c) => ca::handle(&conn, c),
        Command::Pool(c) => pools::handle(&client(&conn)?, conn.output, c),
        Command::Rollout(c) => rollouts::handle(&client(&conn)?, conn.output, c),
        Command::Audit(a) => audit::handle(&client(&conn)?, conn.output, &a),
        Command::Backup(a) => backup::handle(&client(&conn)?, conn.output, &a),
        Command::Operator(c) => operators::handle(&client(&conn)?, conn.output, c),
        Command::Whoami => operators::whoami(&client(&conn)?, conn.output),
        Command::Alert(c) => alerts::handle(&client(&conn)?, conn.output, c),
        Command::Compact { offline: true } => backup::compact_offline(&conn),
        Command::Compact { offline: false } => backup::compact(&client(&conn)?, conn.output),
        Command::Config(c) => contexts::handle(conn.output, c),
        Command::Completion(a) => docgen::completion(&a),
        Command::Man(a) => docgen::man(&a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Command::Workflow(WorkflowCmd::Apply { ref files, .. }) if files.len() == 2
        ));
    }

    #[test]
    fn lifecycle_cli_parses() {
        let c = Cli::try_parse_from([
            "outpost-hub",
            "workflow",
            "apply",
            "-f",
            "workflows/",
            "-R",
            "--dry-run",
            "-o",
            "json",
            "--context",
            "plant-a",
        ])
        .unwrap();
        assert_eq!(c.conn.output, Output::Json);
        assert_eq!(c.conn.context.as_deref(), Some("plant-a"));
        assert!(matches!(
            c.command,
            Command::Workflow(WorkflowCmd::Apply {
                recursive: true,
                dry_run: true,
                ..
            })
        ));
        for args in [
            &["outpost-hub", "workflow", "delete", "etl", "--force"][..],
            &["outpost-hub", "workflow", "list", "--all"],
            &["outpost-hub", "config", "use-context", "a"],
            &["outpost-hub", "config", "get-contexts", "-o", "json"],
            &[
                "outpost-hub",
                "config",
                "set-context",
                "a",
                "--server",
                "http://127.0.0.1:7070",
                "--token-file",
                "a.token",
                "--ca-file",
                "ca.pem",
            ],
            &["outpost-hub", "completion", "bash"],
            &["outpost-hub", "man", "--dir", "man1"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["outpost-hub", "completion", "tcsh"]).is_err());
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
}
