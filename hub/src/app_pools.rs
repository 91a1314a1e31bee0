//! The CLI commands for pools, labels, deploy, pin, rollouts, audit.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use super::or_dash;
use super::{CliError, CliResult, print_json};
use crate::cli::{
    Output, PoolCmd, RolloutCmd, RolloutStartArgs, RolloutTarget, parse_kv_list, parse_label_edits,
};
use crate::client::{Client, seg};
use crate::views::{fmt_labels, table};
use crate::views_pools::*;

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
pub(super) fn pool(c: &Client, output: Output, cmd: PoolCmd) -> CliResult {
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

/// `agent label ID k=v k- ...`
pub(super) fn label(c: &Client, output: Output, id: &str, args: &[String]) -> CliResult {
    let (set, remove) = parse_label_edits(args).map_err(CliError::Usage)?;
    let v: serde_json::Value = c.post(
        &format!("/v1/agents/{}/labels", seg(id)),
        &LabelRequest {
            set: set.into_iter().collect(),
            remove,
        },
    )?;
    if output == Output::Json {
        print_json(&v)?;
    } else {
        let labels = v
            .get("labels")
            .and_then(|l| l.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        println!("{id}: labels {}", or_dash(labels));
    }
    Ok(ExitCode::SUCCESS)
}

/// `workflow deploy|pin|unpin`
pub(super) fn pool_version(
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
pub fn status_text(s: &RolloutStatusView) -> String {
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
pub(super) fn rollout(c: &Client, output: Output, cmd: RolloutCmd) -> CliResult {
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

/// `audit`
pub(super) fn audit(c: &Client, output: Output, limit: usize) -> CliResult {
    let rows: Vec<AuditView> = c.get("/v1/audit", &[("limit", limit.to_string())])?;
    if output == Output::Json {
        print_json(&rows)?;
    } else {
        let t: Vec<Vec<String>> = rows
            .iter()
            .map(|e| {
                vec![
                    e.at.clone(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.target.clone(),
                    e.detail.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["AT", "ACTOR", "ACTION", "TARGET", "DETAIL"], &t)
        );
    }
    Ok(ExitCode::SUCCESS)
}
