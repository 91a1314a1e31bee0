//! `outpost-loadgen`: play many agents against a real hub over real QUIC connections.
//!
//! ```text
//! outpost-loadgen enroll --hub 127.0.0.1:7443 --api http://127.0.0.1:7070 --count 1000 --state fleet.json
//! outpost-loadgen run --state fleet.json --run-every 10s --fail-rate 0.05 --duration 10m
//! ```
//! `enroll` takes bootstrap tokens from the hub API (token from `--api-token` or
//! `OUTPOST_HUB_TOKEN`) and enrolls each played agent through the real enrollment; identities
//! (private keys included, file mode 0600) go to the state file, so later runs reuse them.
//! `run` connects every agent in the state file and keeps their sessions up: deploys are
//! verified with `check_deploy` and activated in memory; `--backlog N` gives each agent N
//! synthetic status events to sync; `--run-every D` makes each agent report a run of each active
//! workflow version every D (`--fail-rate` of them failed), which is what a rollout's health gate
//! counts. Progress goes to stderr every few seconds; a JSON summary to stdout at the end.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use outpost_tests::loadgen::{self, Fleet, FleetConfig, Report, StateFile, Tally};

#[derive(Parser)]
#[command(
    name = "outpost-loadgen",
    version,
    about = "Play many Outpost agents against a hub"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll played agents (tokens from the hub API) and add them to the state file.
    Enroll {
        /// The hub's QUIC address (HOST:PORT).
        #[arg(long)]
        hub: SocketAddr,
        /// The hub's HTTP API.
        #[arg(long, env = "OUTPOST_HUB_URL")]
        api: String,
        /// The API token.
        #[arg(long, env = "OUTPOST_HUB_TOKEN", hide_env_values = true)]
        api_token: String,
        /// Agents to enroll.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// State file (identities are appended).
        #[arg(long)]
        state: PathBuf,
        /// Labels of the tokens, k=v,...
        #[arg(long, default_value = "")]
        labels: String,
        /// The hub's TLS name.
        #[arg(long, default_value = "outpost-hub")]
        hub_name: String,
        /// Enrollments in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Connect the agents of the state file and keep their sessions up.
    Run {
        /// State file written by `enroll`.
        #[arg(long)]
        state: PathBuf,
        /// Dial this address instead of the one in the state file (e.g. a relay).
        #[arg(long)]
        hub: Option<SocketAddr>,
        /// Play only the first N agents of the state file.
        #[arg(long)]
        count: Option<usize>,
        /// Client UDP sockets the agents are spread over (1 per agent at most).
        #[arg(long, default_value_t = 16)]
        sockets: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 64)]
        connect_concurrency: usize,
        /// Synthetic status events each agent has to sync at start.
        #[arg(long, default_value_t = 0)]
        backlog: usize,
        /// Each agent reports one run of each active workflow version this often.
        #[arg(long, value_parser = loadgen::parse_dur)]
        run_every: Option<Duration>,
        /// Fraction of synthetic runs that fail (0..=1).
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        /// Task instances per synthetic run.
        #[arg(long, default_value_t = 1)]
        tasks_per_run: u32,
        /// Stop after this long (default: run until Ctrl-C).
        #[arg(long, value_parser = loadgen::parse_dur)]
        duration: Option<Duration>,
        /// Print every activation, rejection and disconnection as a JSON line on stdout.
        #[arg(long)]
        events: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = outpost_tests::bench_runtime().block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let limit = loadgen::raise_fd_limit();
    match cli.cmd {
        Cmd::Enroll {
            hub,
            api,
            api_token,
            count,
            state,
            labels,
            hub_name,
            concurrency,
        } => {
            let labels = loadgen::parse_labels(&labels)?;
            let mut file = StateFile::load(&state)?;
            if !file.hub.is_empty() && file.hub != hub.to_string() {
                bail!(
                    "{} holds agents of the hub at {}, not {hub}",
                    state.display(),
                    file.hub
                );
            }
            let start = Instant::now();
            let l2 = labels.clone();
            let tokens = tokio::task::spawn_blocking(move || {
                loadgen::create_tokens(&api, &api_token, count, &l2)
            })
            .await??;
            let t_tokens = start.elapsed();
            let ids = loadgen::enroll_many(hub, &hub_name, tokens, labels, concurrency).await?;
            let n = ids.len();
            file.hub = hub.to_string();
            file.agents.extend(ids);
            file.save(&state)?;
            eprintln!(
                "enrolled {n} agents in {:.1?} (tokens {:.1?}); {} in {}",
                start.elapsed(),
                t_tokens,
                file.agents.len(),
                state.display()
            );
            Ok(())
        }
        Cmd::Run {
            state,
            hub,
            count,
            sockets,
            connect_concurrency,
            backlog,
            run_every,
            fail_rate,
            tasks_per_run,
            duration,
            events,
        } => {
            let file = StateFile::load(&state)?;
            let addr: SocketAddr = match hub {
                Some(a) => a,
                None => file
                    .hub
                    .parse()
                    .with_context(|| format!("{}: no usable hub address", state.display()))?,
            };
            let mut ids = file.agents;
            if let Some(n) = count {
                ids.truncate(n);
            }
            if ids.is_empty() {
                bail!("no agents in {} (run `enroll` first)", state.display());
            }
            if !(0.0..=1.0).contains(&fail_rate) {
                bail!("--fail-rate must be within 0..=1");
            }
            if sockets > ids.len() {
                eprintln!(
                    "note: {sockets} sockets for {} agents: one per agent",
                    ids.len()
                );
            }
            if sockets as u64 + 64 > limit {
                bail!("{sockets} sockets exceed the open-file limit {limit}");
            }
            let n = ids.len();
            let mut cfg = FleetConfig::new(addr);
            cfg.sockets = sockets;
            cfg.connect_concurrency = connect_concurrency;
            cfg.run_every = run_every;
            cfg.fail_rate = fail_rate;
            cfg.tasks_per_run = tasks_per_run;
            let start = Instant::now();
            let mut fleet = Fleet::start(cfg, ids)?;
            if backlog > 0 {
                fleet.add_backlog_all(backlog);
            }
            let mut tally = Tally::new(n);
            let mut all_up_at: Option<Duration> = None;
            let mut progress = tokio::time::interval(Duration::from_secs(5));
            let end = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            tokio::pin!(end);
            loop {
                tokio::select! {
                    r = fleet.reports.recv() => {
                        let Some(r) = r else { break };
                        tally.add(&r);
                        if tally.connected == n && all_up_at.is_none() {
                            all_up_at = Some(start.elapsed());
                            eprintln!("all {n} agents connected after {:.2?}", start.elapsed());
                        }
                        if events {
                            print_event(&r, start);
                        }
                    }
                    _ = progress.tick() => {
                        eprintln!(
                            "[{:>6.1}s] connected {}/{n} activated {:?} rejected {:?} runs ok {} failed {} drained {} disconnects {}",
                            start.elapsed().as_secs_f64(), tally.connected, tally.activated, tally.rejected,
                            tally.runs_ok, tally.runs_failed, tally.drained, tally.disconnects,
                        );
                    }
                    _ = &mut end => break,
                }
            }
            fleet.stop().await;
            let summary = serde_json::json!({
                "agents": n,
                "all_connected_after_s": all_up_at.map(|d| d.as_secs_f64()),
                "elapsed_s": start.elapsed().as_secs_f64(),
                "tally": tally,
            });
            println!("{summary}");
            Ok(())
        }
    }
}

fn print_event(r: &Report, start: Instant) {
    let ms = |at: &Instant| at.duration_since(start).as_secs_f64() * 1000.0;
    let v = match r {
        Report::Activated {
            agent,
            workflow,
            version,
            at,
        } => {
            serde_json::json!({"event": "activated", "agent": agent, "workflow": workflow, "version": version, "t_ms": ms(at)})
        }
        Report::Rejected {
            agent,
            workflow,
            version,
            reason,
        } => {
            serde_json::json!({"event": "rejected", "agent": agent, "workflow": workflow, "version": version, "reason": reason})
        }
        Report::Disconnected { agent, reason } => {
            serde_json::json!({"event": "disconnected", "agent": agent, "reason": reason})
        }
        Report::Drained { agent, seq, at } => {
            serde_json::json!({"event": "drained", "agent": agent, "seq": seq, "t_ms": ms(at)})
        }
        Report::Welcomed { .. } | Report::Ran { .. } => return,
    };
    println!("{v}");
}
