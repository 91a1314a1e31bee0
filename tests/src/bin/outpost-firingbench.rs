//! `outpost-firingbench`: what judging expected firings costs the hub, against what ingesting
//! the same runs costs it, measured in the same run.
//!
//! Builds a real hub store (redb, in a temporary directory) with `--agents` enrolled agents that
//! each report `--workflows` workflows firing every minute, all connected. Then, for each of
//! `--minutes` minutes of (virtual) schedule: ingests every agent's runs of that minute through
//! `Hub::ingest` (one batch per agent, as the QUIC driver does; `--unreported` per mille of
//! firings left out), then runs one missed-firing evaluation (`FiringWatcher::evaluate`) once
//! the minute's firings are past the grace period. Both are timed by this thread's CPU clock.
//! The figure is the evaluation's CPU per minute of schedule and its ratio to the ingest's.
//!
//! ```text
//! cargo build --release -p outpost-tests --bin outpost-firingbench
//! target/release/outpost-firingbench --agents 1000 --workflows 20 --minutes 5
//! ```
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use outpost_common::proto::ActiveWorkflow;
use outpost_common::record::{OutboxEntry, RunKind, RunRecord, RunState, StatusEvent, run_id};
use outpost_common::trust::{Director, SigningKey, sign_release};
use outpost_hub::firings::FiringWatcher;
use outpost_hub::firings::watch::WatchConfig;
use outpost_hub::gateway::Connections;
use outpost_hub::hub::{Hub, now_ms};
use outpost_hub::store::{NewVersion, Store};
use outpost_net::pki::Ca;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "outpost-firingbench",
    about = "Missed-firing evaluation against ingest, per minute of schedule"
)]
struct Args {
    /// Agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Workflows per agent, each firing every minute.
    #[arg(long, default_value_t = 20)]
    workflows: usize,
    /// Minutes of schedule to play.
    #[arg(long, default_value_t = 5)]
    minutes: i64,
    /// Firings (per mille) whose run is not reported: the evaluation lists them as missed.
    #[arg(long, default_value_t = 10)]
    unreported: u64,
    /// Write the JSON report here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const MIN: i64 = 60_000;

/// This thread's CPU time.
fn cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn workflow(i: usize) -> String {
    format!("wf{i:02}")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(&dir.path().join("hub.redb"))?);
    let (director, d) = SigningKey::generate()?;
    let (release, r) = SigningKey::generate()?;
    outpost_hub::init::publish_first_root(
        &store,
        &[SigningKey::generate()?.0],
        &[release],
        &director,
        outpost_hub::init::KeyPlan::default(),
        now_ms(),
    )?;
    let release = SigningKey::from_pkcs8(&r)?;
    let conns = Connections::new(Duration::from_secs(5));
    let hub = Hub::new(
        store.clone(),
        Arc::new(Director::new(SigningKey::from_pkcs8(&d)?)),
        None,
        Arc::new(Ca::generate("bench CA")?),
        conns.clone(),
        "hub",
    )?;
    let setup = Instant::now();
    for i in 0..args.workflows {
        let name = workflow(i);
        let content = format!(
            "name: {name}\nschedule: \"* * * * *\"\ntasks:\n  a:\n    command: [\"true\"]\n"
        );
        store.apply_version(
            NewVersion {
                name: name.clone(),
                content: content.into_bytes(),
                format: "yaml".into(),
                target: vec![],
                origin: "bench".into(),
                applied_by: "bench".into(),
            },
            now_ms(),
        )?;
        let p = store.pending(&name)?.context("pending version")?;
        hub.release_sign(
            "bench",
            &name,
            p.version,
            vec![sign_release(&release, &p.header_bytes)],
        )?;
    }
    let t0 = (now_ms() / MIN) * MIN;
    let active: Vec<ActiveWorkflow> = (0..args.workflows)
        .map(|i| ActiveWorkflow {
            workflow: workflow(i),
            version: 1,
            epoch: 1,
            paused: false,
            highest_version: None,
        })
        .collect();
    let mut sessions = Vec::new();
    let agents = outpost_tests::bench::agent_ids(args.agents);
    for id in &agents {
        outpost_tests::bench::enroll_played_agent(&store, id)?;
        hub.agent_connected(id, "bench", active.clone(), 1)?;
        sessions.push(conns.register(id, t0 - 60 * MIN));
    }
    let setup_s = setup.elapsed().as_secs_f64();
    let cfg = WatchConfig::default();
    let mut watcher = FiringWatcher::new(cfg);
    // First sight: the watch starts at t0.
    watcher.evaluate(&hub, t0)?;

    let mut seqs = vec![0u64; agents.len()];
    let (mut ingest_cpu, mut eval_cpu, mut idle_cpu) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut runs, mut missed, mut left_out) = (0u64, 0usize, 0u64);
    let mut per_minute = Vec::new();
    for m in 1..=args.minutes {
        let at = t0 + m * MIN;
        let c = cpu();
        for (a, id) in agents.iter().enumerate() {
            let mut entries = Vec::with_capacity(args.workflows);
            for w in 0..args.workflows {
                // A deterministic spread of left-out firings.
                let h = (a as u64 * 7919 + w as u64 * 104_729 + m as u64 * 15_485_863) % 1000;
                if h < args.unreported {
                    left_out += 1;
                    continue;
                }
                let name = workflow(w);
                seqs[a] += 1;
                entries.push(OutboxEntry {
                    seq: seqs[a],
                    event: StatusEvent::Run(RunRecord {
                        run_id: run_id(&name, 1, at, RunKind::Scheduled),
                        workflow: name,
                        version: 1,
                        kind: RunKind::Scheduled,
                        scheduled_ms: at,
                        state: RunState::Succeeded,
                        params: vec![],
                        created_ms: at,
                        started_ms: Some(at),
                        ended_ms: Some(at + 1_000),
                        agent_id: None,
                        skip_reason: None,
                    }),
                });
            }
            runs += entries.len() as u64;
            hub.ingest(id, &entries)?;
        }
        let ingest = cpu() - c;
        let c = cpu();
        let done = watcher.evaluate(&hub, at + cfg.grace_ms + 1_000)?;
        let eval = cpu() - c;
        // The driver evaluates every 15 s at the default grace: three more evaluations a minute
        // find nothing new.
        let c = cpu();
        let again = watcher.evaluate(&hub, at + cfg.grace_ms + 16_000)?;
        let idle = cpu() - c;
        anyhow::ensure!(again.missed == 0, "an evaluation judged a firing twice");
        idle_cpu += idle;
        missed += done.missed;
        ingest_cpu += ingest;
        eval_cpu += eval;
        per_minute.push(json!({
            "minute": m,
            "ingest_cpu_ms": ingest.as_secs_f64() * 1e3,
            "evaluate_cpu_ms": eval.as_secs_f64() * 1e3,
            "evaluate_again_cpu_ms": idle.as_secs_f64() * 1e3,
            "missed": done.missed,
        }));
    }
    anyhow::ensure!(
        missed as u64 == left_out,
        "the evaluation listed {missed} missed firings, {left_out} were left out"
    );
    let minutes = args.minutes as f64;
    let report = json!({
        "bench": "firings",
        "agents": args.agents,
        "workflows_per_agent": args.workflows,
        "minutes": args.minutes,
        "runs_ingested": runs,
        "firings_left_out": left_out,
        "missed_listed": missed,
        "setup_s": setup_s,
        "evaluate_cpu_ms_per_schedule_minute": eval_cpu.as_secs_f64() * 1e3 / minutes,
        "ingest_cpu_ms_per_schedule_minute": ingest_cpu.as_secs_f64() * 1e3 / minutes,
        "evaluate_to_ingest": eval_cpu.as_secs_f64() / ingest_cpu.as_secs_f64().max(1e-9),
        "evaluate_again_cpu_ms": idle_cpu.as_secs_f64() * 1e3 / minutes,
        // One evaluation with the minute's firings and three finding nothing new (every 15 s).
        "driver_cpu_ms_per_minute": (eval_cpu + 3 * idle_cpu).as_secs_f64() * 1e3 / minutes,
        "per_minute": per_minute,
        "loadavg": outpost_tests::loadavg(),
        "machine": outpost_tests::machine(),
    });
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &args.json {
        std::fs::write(p, &text)?;
    }
    println!("{text}");
    drop(sessions);
    Ok(())
}
