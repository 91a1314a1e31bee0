//! `rollout ...`: gray-release rollouts of a workflow version into a pool (start, status with
//! `--watch`, list, history, pause, resume, promote, abort).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::{CliResult, Output, print_json, table};
use crate::client::{Client, seg};
use crate::views::{RolloutStart, RolloutStatusView, RolloutSummary};

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

fn start_body(a: &RolloutStartArgs) -> RolloutStart {
    RolloutStart {
        workflow: a.name.clone(),
        pool: a.pool.clone(),
        version: a.version,
        canary: Some(a.canary.clone()),
        steps: Some(a.steps.clone()),
        bake: Some(a.bake.clone()),
        min_runs: Some(a.min_runs),
        min_runs_scope: Some(a.min_runs_scope.clone()),
        max_failure_rate: Some(a.max_failure_rate),
        manual: a.manual,
        probation_runs: a.probation_runs,
        probation_max_failures: a.probation_max_failures,
        offline: Some(a.offline.clone()),
    }
}

fn summary_rows(rows: &[RolloutSummary]) -> String {
    let t: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.workflow.clone(),
                r.pool.clone(),
                format!(
                    "{} -> v{}",
                    if r.from_version == 0 {
                        "-".to_string()
                    } else {
                        format!("v{}", r.from_version)
                    },
                    r.to_version
                ),
                r.outcome.clone().unwrap_or_else(|| r.phase.clone()),
                r.started.clone(),
                r.started_by.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID", "WORKFLOW", "POOL", "VERSIONS", "STATE", "STARTED", "BY",
        ],
        &t,
    )
}

fn ms_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}.{}s", s, (ms.max(0) % 1000) / 100)
    }
}

/// The plain-text status (also the line printed per change with `--watch` off a terminal).
fn status_text(s: &RolloutStatusView) -> String {
    let r = &s.rollout;
    let mut out = String::new();
    out.push_str(&format!(
        "rollout {} of {} into pool {}: v{} -> v{}, started {} by {}\n",
        r.id,
        r.workflow,
        r.pool,
        if r.from_version == 0 {
            "-".to_string()
        } else {
            r.from_version.to_string()
        },
        r.to_version,
        r.started,
        r.started_by
    ));
    out.push_str(&format!(
        "state: {} (step {} of {}, {} members, offline policy {}{}{})\n",
        r.outcome.clone().unwrap_or_else(|| r.phase.clone()),
        s.step,
        s.step_count,
        s.members,
        s.offline,
        if s.manual { ", manual gates" } else { "" },
        s.probation
            .map(|(n, k)| format!(
                ", probation: revert if more than {k} of the first {n} runs fail"
            ))
            .unwrap_or_default()
    ));
    let g = &s.gate;
    out.push_str(&format!(
        "gate: runs {} failures {} failure rate {} (max {:.3}); min runs {} per {} (needed {}); \
         bake {}{}; awaiting activation {}\n",
        g.runs,
        g.failures,
        g.failure_rate
            .map(|f| format!("{f:.3}"))
            .unwrap_or_else(|| "-".into()),
        g.max_failure_rate,
        g.min_runs,
        g.min_runs_scope,
        g.runs_needed,
        ms_text(g.bake_ms),
        g.bake_left_ms
            .map(|l| format!(" ({} left)", ms_text(l)))
            .unwrap_or_default(),
        g.awaiting_activation
    ));
    let steps: Vec<Vec<String>> = s
        .steps
        .iter()
        .map(|t| {
            vec![
                if t.index == 0 {
                    "canary".to_string()
                } else {
                    t.index.to_string()
                },
                t.size.clone(),
                t.target.to_string(),
                t.updated.to_string(),
                t.active.to_string(),
                if t.index == s.step { "<" } else { "" }.into(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["STEP", "SIZE", "TARGET", "UPDATED", "ACTIVE", ""],
        &steps,
    ));
    let agents: Vec<Vec<String>> = s
        .agents
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.state.clone(),
                if a.online { "online" } else { "offline" }.into(),
                a.version
                    .map(|v| format!("v{v}"))
                    .unwrap_or_else(|| "-".into()),
                format!("v{}", a.desired_version),
                a.selected_at
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "-".into()),
                format!("{}/{}", a.failures, a.runs),
                a.failure.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "AGENT",
            "STATE",
            "STATUS",
            "VERSION",
            "DESIRED",
            "STEP",
            "FAILED/RUNS",
            "WHY",
        ],
        &agents,
    ));
    out
}

fn watch(c: &Client, output: Output, path: &str) -> CliResult {
    let tty = std::io::stdout().is_terminal() && output == Output::Text;
    let mut last_line = String::new();
    let mut bars: Option<(
        indicatif::MultiProgress,
        Vec<indicatif::ProgressBar>,
        indicatif::ProgressBar,
    )> = None;
    loop {
        let s: RolloutStatusView = c.get(path, &[])?;
        let done = !s.rollout.active;
        if output == Output::Json {
            println!("{}", serde_json::to_string(&s)?);
        } else if tty {
            let (mp, steps, gate) = bars.get_or_insert_with(|| {
                let mp = indicatif::MultiProgress::new();
                let style = indicatif::ProgressStyle::with_template(
                    "{prefix:>8} [{bar:30}] {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
                let steps = s
                    .steps
                    .iter()
                    .map(|t| {
                        let b = mp.add(indicatif::ProgressBar::new(u64::from(t.target)));
                        b.set_style(style.clone());
                        b.set_prefix(if t.index == 0 {
                            "canary".to_string()
                        } else {
                            format!("step {}", t.index)
                        });
                        b
                    })
                    .collect();
                let gate = mp.add(indicatif::ProgressBar::new_spinner());
                (mp, steps, gate)
            });
            let _ = mp;
            for (b, t) in steps.iter().zip(&s.steps) {
                b.set_length(u64::from(t.target.max(1)));
                b.set_position(u64::from(t.active));
                b.set_message(format!("{} updated, size {}", t.updated, t.size));
            }
            let g = &s.gate;
            gate.set_message(format!(
                "{} | runs {} failures {} rate {} | bake left {} | needed runs {}",
                s.rollout
                    .outcome
                    .clone()
                    .unwrap_or_else(|| s.rollout.phase.clone()),
                g.runs,
                g.failures,
                g.failure_rate
                    .map(|f| format!("{f:.3}"))
                    .unwrap_or_else(|| "-".into()),
                g.bake_left_ms.map(ms_text).unwrap_or_else(|| "-".into()),
                g.runs_needed
            ));
            gate.tick();
            if done {
                for b in steps.iter() {
                    b.finish();
                }
                gate.finish();
            }
        } else {
            let g = &s.gate;
            let line = format!(
                "{} step {}/{} updated {} active {} runs {} failures {} bake-left {}",
                s.rollout
                    .outcome
                    .clone()
                    .unwrap_or_else(|| s.rollout.phase.clone()),
                s.step,
                s.step_count,
                s.steps.get(s.step).map_or(0, |t| t.updated),
                s.steps.get(s.step).map_or(0, |t| t.active),
                g.runs,
                g.failures,
                g.bake_left_ms.map(ms_text).unwrap_or_else(|| "-".into()),
            );
            if line != last_line {
                println!("{} {line}", chrono::Utc::now().format("%H:%M:%S"));
                last_line = line;
            }
        }
        if done {
            if output == Output::Text {
                print!("{}", status_text(&s));
            }
            return Ok(if s.rollout.outcome.as_deref() == Some("succeeded") {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn command(c: &Client, output: Output, verb: &str, t: &RolloutTarget) -> CliResult {
    let r: RolloutSummary = c.post(
        &format!(
            "/v1/workflows/{}/pools/{}/rollout/{verb}",
            seg(&t.name),
            seg(&t.pool)
        ),
        &serde_json::json!({}),
    )?;
    if output == Output::Json {
        print_json(&r)?;
    } else {
        println!("{}: {verb}: {}", r.id, r.outcome.clone().unwrap_or(r.phase));
    }
    Ok(ExitCode::SUCCESS)
}

/// `rollout ...`
pub(super) fn handle(c: &Client, output: Output, cmd: RolloutCmd) -> CliResult {
    match cmd {
        RolloutCmd::Start(a) => {
            let r: RolloutSummary = c.post("/v1/rollouts", &start_body(&a))?;
            if output == Output::Json {
                print_json(&r)?;
            } else {
                println!(
                    "rollout {} started: {} v{} -> v{} in pool {} ({})",
                    r.id,
                    r.workflow,
                    r.from_version,
                    r.to_version,
                    r.pool,
                    r.outcome.clone().unwrap_or(r.phase)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RolloutCmd::Status {
            name,
            pool,
            watch: w,
        } => {
            let path = format!("/v1/workflows/{}/pools/{}/rollout", seg(&name), seg(&pool));
            if w {
                return watch(c, output, &path);
            }
            let s: RolloutStatusView = c.get(&path, &[])?;
            if output == Output::Json {
                print_json(&s)?;
            } else {
                print!("{}", status_text(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        RolloutCmd::List { active } => {
            let q = [(
                "active",
                if active {
                    "true".to_string()
                } else {
                    String::new()
                },
            )];
            let rows: Vec<RolloutSummary> = c.get("/v1/rollouts", &q)?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                print!("{}", summary_rows(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        RolloutCmd::History { name } => {
            let rows: Vec<RolloutSummary> =
                c.get(&format!("/v1/workflows/{}/rollouts", seg(&name)), &[])?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                print!("{}", summary_rows(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        RolloutCmd::Pause(t) => command(c, output, "pause", &t),
        RolloutCmd::Resume(t) => command(c, output, "resume", &t),
        RolloutCmd::Promote(t) => command(c, output, "promote", &t),
        RolloutCmd::Abort(t) => command(c, output, "abort", &t),
    }
}
