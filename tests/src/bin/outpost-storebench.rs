//! `outpost-storebench`: the hub store at many runs: size on disk and `run list` latency with
//! each filter, at a baseline size and at the full size, measured in the same run (the figures
//! that matter are the ratios full / baseline).
//!
//! Runs are seeded directly into a real hub store (redb, in a temporary directory) through the
//! store's own ingest (`Store::ingest_at`, the path the QUIC driver takes), one batch per agent
//! at a time: `--agents` agents, `--workflows` workflows, one task instance per run, one run in
//! a hundred failed. `run list` is `Hub::runs`, what `GET /v1/runs` calls, timed as the median
//! of `--repeat` calls.
//!
//! ```text
//! cargo build --release -p outpost-tests --bin outpost-storebench
//! target/release/outpost-storebench --runs 1000000 --baseline 10000 --json storebench.json
//! ```
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use outpost_common::record::RunState;
use outpost_common::trust::{Director, SigningKey};
use outpost_hub::gateway::Connections;
use outpost_hub::hub::{Hub, now_ms};
use outpost_hub::store::{RunQuery, Store};
use outpost_net::pki::Ca;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "outpost-storebench",
    about = "The hub store at many runs: size and run-list latency"
)]
struct Args {
    /// Runs in all.
    #[arg(long, default_value_t = 1_000_000)]
    runs: u64,
    /// Runs at the baseline measurement.
    #[arg(long, default_value_t = 10_000)]
    baseline: u64,
    /// Agents.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Workflows (each agent runs all of them in turn).
    #[arg(long, default_value_t = 20)]
    workflows: usize,
    /// Runs per ingest batch (agents take turns, one batch each).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Calls per query (the median is reported).
    #[arg(long, default_value_t = 21)]
    repeat: usize,
    /// Write the JSON report here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

use outpost_tests::bench::{RunSeeder, STEP_MS, T0};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The queries: (name, query).
fn queries(agents: &[String], made: u64) -> Vec<(&'static str, RunQuery)> {
    let newest = T0 + made as i64 * STEP_MS;
    let q = |f: &dyn Fn(&mut RunQuery)| {
        let mut q = RunQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    vec![
        ("all", q(&|_| {})),
        ("workflow", q(&|q| q.workflow = Some("wf07".into()))),
        (
            "agent",
            q(&|q| q.agent = Some(agents[agents.len() / 2].clone())),
        ),
        ("state_failed", q(&|q| q.state = Some(RunState::Failed))),
        (
            "since_last_1000_runs",
            q(&|q| q.since_ms = Some(newest - 1_000 * STEP_MS)),
        ),
        (
            "agent_and_workflow",
            q(&|q| {
                q.agent = Some(agents[0].clone());
                q.workflow = Some("wf03".into());
            }),
        ),
        ("limit_1000", q(&|q| q.limit = 1_000)),
        (
            // The console's "older →" deep in the listing: the page before the middle run.
            "page_before_middle",
            q(&|q| {
                q.before = Some(outpost_hub::store::RunCursor {
                    created_ms: T0 + (made / 2) as i64 * STEP_MS,
                    agent: String::new(),
                    run_id: String::new(),
                })
            }),
        ),
    ]
}

/// Size on disk and the median latency of each query.
fn measure(
    hub: &Hub,
    path: &std::path::Path,
    agents: &[String],
    made: u64,
    repeat: usize,
) -> anyhow::Result<serde_json::Value> {
    let size = std::fs::metadata(path)?.len();
    let mut lat = serde_json::Map::new();
    for (name, q) in queries(agents, made) {
        let mut times = Vec::with_capacity(repeat);
        let mut rows = 0;
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            rows = hub.runs(&q, false)?.len();
            times.push(t.elapsed());
        }
        let m = median(times);
        lat.insert(
            name.into(),
            json!({"median_us": m.as_micros() as u64, "rows": rows}),
        );
    }
    Ok(json!({
        "runs": made,
        "bytes": size,
        "bytes_per_run": size as f64 / made.max(1) as f64,
        "latency": lat,
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.baseline > 0 && args.baseline <= args.runs,
        "--baseline must be between 1 and --runs"
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("hub.redb");
    let store = Arc::new(Store::open(&path)?);
    let (director, d) = SigningKey::generate()?;
    let (release, _) = SigningKey::generate()?;
    outpost_hub::init::publish_first_root(
        &store,
        &[SigningKey::generate()?.0],
        &[release],
        &director,
        outpost_hub::init::KeyPlan::default(),
        now_ms(),
    )?;
    let hub = Hub::new(
        store.clone(),
        Arc::new(Director::new(SigningKey::from_pkcs8(&d)?)),
        None,
        Arc::new(Ca::generate("bench CA")?),
        Connections::new(Duration::from_secs(5)),
        "hub",
    )?;
    let agents = outpost_tests::bench::agent_ids(args.agents);
    for id in &agents {
        outpost_tests::bench::enroll_played_agent(&store, id)?;
    }
    let mut seeder = RunSeeder::new(agents.clone(), args.workflows);
    let t = Instant::now();
    seeder.seed(&store, args.baseline, args.batch.max(1))?;
    let base_seed = t.elapsed();
    let base = measure(&hub, &path, &agents, seeder.made, args.repeat)?;
    let t = Instant::now();
    seeder.seed(&store, args.runs, args.batch.max(1))?;
    let full_seed = t.elapsed();
    let full = measure(&hub, &path, &agents, seeder.made, args.repeat)?;
    let mut ratios = serde_json::Map::new();
    if let (Some(b), Some(f)) = (base["latency"].as_object(), full["latency"].as_object()) {
        for (k, v) in f {
            let fb = b[k]["median_us"].as_f64().unwrap_or(0.0).max(1.0);
            let ff = v["median_us"].as_f64().unwrap_or(0.0);
            ratios.insert(k.clone(), json!((ff / fb * 100.0).round() / 100.0));
        }
    }
    let report = json!({
        "bench": "storebench",
        "machine": outpost_tests::machine(),
        "args": {"runs": args.runs, "baseline": args.baseline, "agents": args.agents,
                 "workflows": args.workflows, "batch": args.batch, "repeat": args.repeat},
        "seed_runs_per_s": {
            "baseline": args.baseline as f64 / base_seed.as_secs_f64().max(1e-9),
            "rest": (args.runs - args.baseline) as f64 / full_seed.as_secs_f64().max(1e-9),
        },
        "baseline": base,
        "full": full,
        "latency_ratio_full_over_baseline": ratios,
        "size_ratio_full_over_baseline": full["bytes"].as_f64().unwrap_or(0.0)
            / base["bytes"].as_f64().unwrap_or(1.0).max(1.0),
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(p) = args.json {
        std::fs::write(p, text)?;
    }
    Ok(())
}
