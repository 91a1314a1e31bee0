//! `outpost-consolebench`: the web console at fleet scale. A real hub store with `--agents`
//! enrolled agents (labels, ten sites), `--workflows` applied workflows (two versions of the
//! first, for a diff), a pool per site with decisions, a rollout of that second version moving
//! through the first site's pool, twenty silences, and `--runs` runs ingested through the
//! store's own ingest (the seeder of `outpost-storebench`); the hub's HTTP router (API and
//! console) serves it on 127.0.0.1 in-process. A signed-in client then fetches each main page
//! `--repeat` times and reports the median time to the first byte (the response head), the
//! median time to the last byte, and the page weight, each time also as a ratio to the same
//! run's baseline: the first byte of `GET /v1/health` (no store work).
//!
//! ```text
//! cargo build -p outpost-tests --bin outpost-consolebench
//! target/debug/outpost-consolebench --agents 1000 --runs 1000000 --json consolebench.json
//! ```
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use outpost_common::trust::{Director, SigningKey};
use outpost_hub::gateway::Connections;
use outpost_hub::hub::{Hub, now_ms};
use outpost_hub::ops::workflows::SourceFile;
use outpost_hub::store::{Role, Store};
use outpost_net::pki::Ca;
use outpost_tests::bench::RunSeeder;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "outpost-consolebench",
    about = "The web console at fleet scale: first byte and weight of each page"
)]
struct Args {
    /// Agents.
    #[arg(long, default_value_t = 1_000)]
    agents: usize,
    /// Runs stored.
    #[arg(long, default_value_t = 1_000_000)]
    runs: u64,
    /// Workflows.
    #[arg(long, default_value_t = 20)]
    workflows: usize,
    /// Fetches per page (the median is reported).
    #[arg(long, default_value_t = 11)]
    repeat: usize,
    /// Write the JSON report here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// A workflow of six tasks (a fan-out and a join) with a parameter.
fn workflow(name: &str, variant: u32) -> String {
    format!(
        "name: {name}\nschedule: \"*/5 * * * *\"\ntimezone: Europe/Berlin\n\
         params:\n  line: \"{variant}\"\n\
         tasks:\n\
         \x20 extract:\n    command: [\"true\"]\n\
         \x20 clean:\n    command: [\"true\"]\n    depends_on: [extract]\n\
         \x20 stats:\n    command: [\"true\"]\n    depends_on: [extract]\n\
         \x20 check:\n    command: [\"true\"]\n    depends_on: [extract]\n\
         \x20 report:\n    command: [\"true\"]\n    depends_on: [clean, stats, check]\n\
         \x20 notify:\n    command: [\"true\"]\n    depends_on: [report]\n    trigger_rule: all_done\n"
    )
}

/// The console's goals: every page's first byte within 200 ms, and under 300 KB.
const GOAL_FIRST_BYTE: Duration = Duration::from_millis(200);
const GOAL_BYTES: usize = 300 * 1000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// Fetch `path` `repeat` times: (status, bytes, median first byte, median last byte).
fn fetch(
    agent: &ureq::Agent,
    url: &str,
    cookie: &str,
    repeat: usize,
) -> anyhow::Result<(u16, usize, Duration, Duration)> {
    let (mut first, mut last) = (Vec::new(), Vec::new());
    let (mut status, mut bytes) = (0, 0);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let mut resp = agent.get(url).header("cookie", cookie).call()?;
        first.push(t.elapsed());
        let body = resp.body_mut().read_to_vec()?;
        last.push(t.elapsed());
        status = resp.status().as_u16();
        bytes = body.len();
    }
    Ok((status, bytes, median(first), median(last)))
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
    let hub = Hub::new(
        store.clone(),
        Arc::new(Director::new(SigningKey::from_pkcs8(&d)?)),
        Some(Arc::new(SigningKey::from_pkcs8(&r)?)),
        Arc::new(Ca::generate("bench CA")?),
        Connections::new(Duration::from_secs(5)),
        "hub",
    )?;
    let (_, admin) = hub.create_operator("bench", "bench", Role::Admin, vec![])?;

    let t = Instant::now();
    let agents = outpost_tests::bench::agent_ids(args.agents);
    for (i, id) in agents.iter().enumerate() {
        outpost_tests::bench::enroll_played_agent(&store, id)?;
        hub.label_agent(
            "bench",
            id,
            &[
                ("site".into(), format!("site{}", i % 10)),
                ("line".into(), format!("{}", i % 7)),
            ],
            &[],
        )?;
    }
    let files: Vec<SourceFile> = (0..args.workflows.max(1))
        .map(|i| SourceFile {
            path: format!("wf{i:02}.yaml"),
            content: workflow(&format!("wf{i:02}"), 1),
        })
        .collect();
    for outcome in hub.apply("bench", files)? {
        if let outpost_hub::ops::workflows::FileOutcome::Invalid { .. }
        | outpost_hub::ops::workflows::FileOutcome::Held { .. } = outcome
        {
            anyhow::bail!("the bench's workflow does not apply: {outcome:?}");
        }
    }
    hub.apply(
        "bench",
        vec![SourceFile {
            path: "wf00.yaml".into(),
            content: workflow("wf00", 2),
        }],
    )?;
    for s in 0..10 {
        let pool = format!("site{s}");
        hub.create_pool("bench", &pool, vec![("site".into(), pool.clone())])?;
        for w in 0..args.workflows.max(1) {
            hub.deploy("bench", &format!("wf{w:02}"), &pool, Some(1))?;
        }
    }
    // A rollout of wf00 v2 moving through site0 (100 agents at the default size: the rollout
    // page lists each with its state), and silences for the alerts page.
    let plan = outpost_hub::api::plan_of(&outpost_hub::views::RolloutStart {
        workflow: "wf00".into(),
        pool: "site0".into(),
        version: Some(2),
        canary: Some("10%".into()),
        steps: Some("50%,100%".into()),
        bake: Some("10m".into()),
        min_runs: Some(5),
        min_runs_scope: None,
        max_failure_rate: Some(0.1),
        manual: false,
        probation_runs: None,
        probation_max_failures: None,
        offline: Some("wait:1h".into()),
    })
    .map_err(|e| anyhow::anyhow!("the bench's rollout plan: {e}"))?;
    hub.start_rollout("bench", &plan)?;
    for i in 0..20 {
        hub.silence(
            "bench",
            outpost_hub::ops::alerts::SilenceSpec {
                workflow: Some(format!("wf{i:02}")),
                pool: Some(format!("site{}", i % 10)),
                for_ms: 3_600_000,
                comment: "bench".into(),
                ..Default::default()
            },
        )?;
    }
    let setup = t.elapsed();
    let t = Instant::now();
    let mut seeder = RunSeeder::new(agents.clone(), args.workflows);
    seeder.seed(&store, args.runs, 100)?;
    let seeded = t.elapsed();

    let rt = outpost_tests::bench_runtime();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = outpost_hub::api::router(hub.clone())
        .merge(outpost_hub::console::router(hub.clone(), false));
    rt.spawn(async move { axum::serve(listener, app).await });

    let client: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let login = client
        .post(&format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("credential", &admin)
                .finish()
                .as_str(),
        )?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("sign-in set no cookie"))?
        .to_string();

    let (_, _, health, _) = fetch(&client, &format!("{base}/v1/health"), "", args.repeat)?;
    let run = hub
        .runs(
            &outpost_hub::store::RunQuery {
                workflow: Some("wf03".into()),
                limit: 1,
                ..Default::default()
            },
            false,
        )?
        .into_iter()
        .next()
        .map(|r| r.record.run_id)
        .unwrap_or_default();
    let mid = &agents[agents.len() / 2];
    let audit_entries = hub.audit_log(1)?.first().map(|e| e.seq).unwrap_or(0);
    let audit_mid = (audit_entries / 2).max(1);
    let pages: Vec<(&str, String)> = vec![
        ("fleet", "/ui/fleet".into()),
        (
            "fleet_filtered",
            "/ui/fleet?label=site%3Dsite3&state=stale".into(),
        ),
        ("fleet_none", "/ui/fleet?q=zzz".into()),
        ("agent", format!("/ui/agents/{mid}")),
        ("workflows", "/ui/workflows".into()),
        ("workflow", "/ui/workflows/wf03".into()),
        (
            "workflow_diff",
            "/ui/workflows/wf00/diff?from=1&to=2".into(),
        ),
        ("runs", "/ui/runs".into()),
        ("runs_workflow", "/ui/runs?workflow=wf07".into()),
        ("runs_agent", format!("/ui/runs?agent={mid}")),
        ("runs_failed", "/ui/runs?state=failed".into()),
        ("run", format!("/ui/runs/{run}")),
        ("rollouts", "/ui/rollouts".into()),
        ("alerts", "/ui/alerts".into()),
        ("rollout", "/ui/rollouts/wf00/site0".into()),
        ("audit", "/ui/audit".into()),
        ("audit_older", format!("/ui/audit?before={audit_mid}")),
        ("audit_verify", "/ui/audit?verify=1".into()),
    ];
    let mut out = serde_json::Map::new();
    for (name, path) in pages {
        let (status, bytes, first, last) =
            fetch(&client, &format!("{base}{path}"), &cookie, args.repeat)?;
        eprintln!(
            "{name:16} {status} {:>8.2} ms first byte ({:>6.1}x health) {:>8.2} ms last, {:>7} B",
            ms(first),
            first.as_secs_f64() / health.as_secs_f64().max(1e-9),
            ms(last),
            bytes
        );
        out.insert(
            name.into(),
            json!({
                "path": path,
                "status": status,
                "bytes": bytes,
                "first_byte_ms": ms(first),
                "last_byte_ms": ms(last),
                "within_goals": status == 200 && first < GOAL_FIRST_BYTE && bytes < GOAL_BYTES,
                "first_byte_over_health": (first.as_secs_f64()
                    / health.as_secs_f64().max(1e-9) * 10.0).round() / 10.0,
            }),
        );
    }
    let report = json!({
        "bench": "consolebench",
        "machine": outpost_tests::machine(),
        "args": {"agents": args.agents, "runs": args.runs, "workflows": args.workflows,
                 "repeat": args.repeat},
        "setup_s": setup.as_secs_f64(),
        "seed_s": seeded.as_secs_f64(),
        "baseline_health_first_byte_ms": ms(health),
        "audit_entries": audit_entries,
        "goals": {"first_byte_ms": ms(GOAL_FIRST_BYTE), "bytes": GOAL_BYTES},
        "pages": out,
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(p) = args.json {
        std::fs::write(p, text)?;
    }
    Ok(())
}
