//! `outpost-hubbench`: benchmarks of the hub and its agents, real processes.
//!
//! Starts a real `outpost-hub` (binaries from `OUTPOST_BIN_DIR`, e.g. `target/release`), plays
//! N agents with the load generator (`outpost_tests::loadgen`: real enrollment, real QUIC with
//! mutual TLS, the real `AgentSession`) and measures, in order:
//! 1. fan-out: `workflow apply` → every played agent activated the version (the loadgen's own
//!    activation times, and the hub's `agent list` showing it), the hub's VmRSS per connected
//!    agent (before/after connecting N agents);
//! 2. status ingest: every agent gets `--events` synthetic events at once; events per second
//!    until every agent's outbox is acknowledged (the hub acknowledges after the redb commit);
//! 3. one agent's backlog of `--drain-events` after a partition (a UDP relay blackholed until
//!    the connection died, then healed): time from heal and from Welcome to the last Ack;
//! 4. a real `outpost-agent serve`, enrolled, connected and idle, behind a relay: VmRSS after
//!    settling, and the UDP bytes through the relay over `--idle` (extrapolated to an hour);
//! 5. the hub killed (-9) and restarted on the same port: time from its API answering again to
//!    the first and to the last played agent welcomed again (the stateless reset at work).
//!
//! Between 1 and 2, `/metrics` with N agents connected (each sent one telemetry report): time
//! per scrape, size and samples, the hub's CPU per scrape.
//!
//! ```text
//! cargo build --release -p outpost-hub -p outpost-agent -p outpost-tests
//! OUTPOST_BIN_DIR=target/release target/release/outpost-hubbench --agents 1000
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use outpost_tests::loadgen::{self, Fleet, FleetConfig, Report, Tally, until};
use outpost_tests::relay::{Mode, Relay};
use outpost_tests::{Hub, Scratch, wait_for};
use serde_json::json;

#[derive(Parser)]
#[command(name = "outpost-hubbench", about = "Benchmarks of the hub and agents")]
struct Args {
    /// HA mode: start a three-member etcd cluster on loopback (Debian's `etcd-server`) and run
    /// the hub as the one replica of an election on it (`[ha]`; the hub must be built with the
    /// `ha` feature). The figures are then HA mode's, to compare with a run without.
    #[arg(long)]
    ha: bool,
    /// With `--ha`: also start a PostgreSQL server on loopback (Debian's `postgresql`, set up
    /// with deploy/ha/postgres.sql) and give the hub its shared run history there
    /// (`[ha] postgres`): status is then committed in PostgreSQL before it is acknowledged.
    #[arg(long, requires = "ha")]
    postgres: bool,
    /// Played agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Client UDP sockets the played agents are spread over.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Status events per agent in the ingest phase.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Backlog of the single agent drained after a partition.
    #[arg(long, default_value_t = 10_000)]
    drain_events: usize,
    /// Window over which the idle real agent's traffic is counted.
    #[arg(long, value_parser = loadgen::parse_dur, default_value = "60s")]
    idle: Duration,
    /// Apply this many new versions of the workflow (100 ms apart) while the ingest runs: every
    /// apply wakes every hub session (desired state changed) in the middle of frame reads.
    #[arg(long, default_value_t = 0)]
    churn_during_ingest: u32,
    /// Skip phases: any of fanout, metrics, ingest, drain, agent, restart (comma-separated).
    #[arg(long, default_value = "")]
    skip: String,
    /// The hub's `[metrics] per_agent_limit` (agents with their own /metrics series).
    #[arg(long, default_value_t = 500)]
    per_agent_limit: usize,
    /// The played agents' QUIC keep-alive (the real agent's `[hub] keep_alive`, 700 ms by
    /// default). Every played agent pings this often: 10,000 of them at 700 ms are 14,000
    /// pings a second, each acknowledged, on the 2 cores the hub and the loadgen share.
    #[arg(long, value_parser = loadgen::parse_dur, default_value = "700ms")]
    keep_alive: Duration,
    /// Handshakes the loadgen has in flight while connecting the fleet.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const WORKFLOW: &str = "name: bench\n\
description: Fan-out benchmark workflow (fires once a year; agents stay idle).\n\
schedule: \"0 0 0 1 1 *\"\n\
timezone: UTC\n\
tasks:\n  hello:\n    command: [echo, hello]\n";

fn main() {
    outpost_tests::bench_main(bench(Args::parse()));
}

/// Apply `count` new versions of `bench`, 100 ms apart, through the CLI; how many applied.
fn churn(
    _cfg: &std::path::Path,
    url: &str,
    token: &str,
    dir: &std::path::Path,
    count: u32,
) -> anyhow::Result<u32> {
    for i in 0..count {
        let p = dir.join(format!("churn-{i}.yaml"));
        std::fs::write(
            &p,
            WORKFLOW.replace("(fires", &format!("(churn {i}; fires")),
        )?;
        let o = std::process::Command::new(outpost_tests::hub_bin())
            .args(["workflow", "apply", "-f"])
            .arg(&p)
            .env("OUTPOST_HUB_URL", url)
            .env("OUTPOST_HUB_TOKEN", token)
            .output()?;
        if !o.status.success() {
            bail!("churn apply failed: {}", outpost_tests::stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(count)
}

/// Lines of a file containing `needle`.
fn count_in(path: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

/// The hub's group-commit counters (`outpost_store_group_commits_total`, `..._writes_total`)
/// from `/metrics`; `None` from a hub without them.
fn store_groups(url: &str, token: &str) -> Option<(f64, f64)> {
    let body = ureq::get(&format!("{}/metrics", url.trim_end_matches('/')))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .ok()?
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_string()
        .ok()?;
    let value = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some((
        value("outpost_store_group_commits_total ")?,
        value("outpost_store_group_writes_total ")?,
    ))
}

/// The commits and writes between two [`store_groups`] readings, as JSON.
fn groups_between(a: Option<(f64, f64)>, b: Option<(f64, f64)>) -> serde_json::Value {
    match (a, b) {
        (Some((c0, w0)), Some((c1, w1))) => json!({
            "commits": c1 - c0,
            "writes": w1 - w0,
            "writes_per_commit": if c1 > c0 { (w1 - w0) / (c1 - c0) } else { 0.0 },
        }),
        _ => serde_json::Value::Null,
    }
}

/// `count` scrapes of the hub's `/metrics` (OpenMetrics, as Prometheus asks): time per scrape
/// (p50, max), size and samples of the last.
fn scrape_metrics(url: &str, token: &str, count: usize) -> anyhow::Result<serde_json::Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("{}/metrics", url.trim_end_matches('/'));
    let mut times = Vec::with_capacity(count);
    let mut body = String::new();
    for _ in 0..count {
        let t = Instant::now();
        body = agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Accept", "application/openmetrics-text;version=1.0.0")
            .call()
            .with_context(|| format!("GET {url}"))?
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    Ok(json!({
        "scrapes": count,
        "p50_ms": pct(&times, 0.5),
        "max_ms": times.last().copied().unwrap_or(0.0),
        "bytes": body.len(),
        "samples": samples,
        "per_agent_series": body.lines().filter(|l| l.starts_with("outpost_agent_store_bytes{")).count(),
    }))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn bench(args: Args) -> anyhow::Result<serde_json::Value> {
    let fd = loadgen::raise_fd_limit();
    let skip: Vec<&str> = args.skip.split(',').map(str::trim).collect();
    let n = args.agents;
    let mut out = json!({
        "machine": outpost_tests::machine(),
        "bin_dir": outpost_tests::bin_dir().display().to_string(),
        "agents": n,
        "sockets": args.sockets.min(n),
        "fd_limit": fd,
        "loadavg_start": outpost_tests::loadavg(),
    });
    let scratch = Scratch::new("hubbench")?;
    // Kept to the end: dropping it stops the cluster.
    let (_etcd, ha) = outpost_tests::etcd::bench_ha(args.ha, scratch.path())?;
    // Kept to the end too.
    let (_pg, ha) = outpost_tests::postgres::bench_postgres(args.postgres, scratch.path(), ha)?;
    let mut hub = Hub::start(
        scratch.path(),
        &format!(
            "{ha}[metrics]\nper_agent_limit = {}\n",
            args.per_agent_limit
        ),
    )?;
    out["mode"] = json!(match (args.ha, args.postgres) {
        (true, true) => "ha+postgres",
        (true, false) => "ha",
        _ => "embedded",
    });
    if args.ha {
        let took = outpost_tests::etcd::wait_leading(&hub.http_url, Duration::from_secs(30))?;
        eprintln!("HA mode: the hub leads (after {took:.1?})");
    }
    let pid = hub.child.as_ref().map(|c| c.id()).context("hub pid")?;
    eprintln!("hub pid {pid} on {} ({})", hub.quic_addr, hub.http_url);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = loadgen::vm_rss_kib(pid)?;

    // Enrollment (not a benchmark of its own, but timed).
    let t = Instant::now();
    let (url, tok) = (hub.http_url.clone(), hub.api_token.clone());
    let tokens =
        tokio::task::spawn_blocking(move || loadgen::create_tokens(&url, &tok, n, &[])).await??;
    let t_tokens = t.elapsed();
    let ids = loadgen::enroll_many(hub.quic_addr, "outpost-hub", tokens, vec![], 32).await?;
    out["enroll"] = json!({
        "tokens_s": t_tokens.as_secs_f64(),
        "total_s": t.elapsed().as_secs_f64(),
    });
    eprintln!("enrolled {n} agents in {:.1?}", t.elapsed());

    // Connect everyone; hub memory per connected agent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = loadgen::vm_rss_kib(pid)?;
    let mut cfg = FleetConfig::new(hub.quic_addr);
    cfg.sockets = args.sockets;
    cfg.connect_concurrency = args.connect_concurrency;
    cfg.transport.keep_alive = args.keep_alive;
    let t = Instant::now();
    let mut fleet = Fleet::start(cfg, ids)?;
    let mut tally = Tally::new(n);
    until(
        &mut fleet,
        &mut tally,
        Duration::from_secs(600),
        "every agent connected",
        |_| {},
        |t| t.connected == n,
    )
    .await?;
    let t_connect = t.elapsed();
    eprintln!("{n} sessions up in {t_connect:.1?}; settling");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_after = loadgen::vm_rss_kib(pid)?;
    out["connect"] = json!({
        "all_connected_s": t_connect.as_secs_f64(),
        "hub_rss_kib_fresh": rss_idle,
        "hub_rss_kib_before": rss_before,
        "hub_rss_kib_after": rss_after,
        "hub_kib_per_agent": (rss_after as f64 - rss_before as f64) / n as f64,
        "hub_hwm_kib": loadgen::proc_status(pid, "VmHWM")?,
        "hub_threads": loadgen::proc_status(pid, "Threads")?,
        "sessions_opened": count_in(&hub.stderr_path, "agent session open"),
        "disconnects": tally.disconnects,
        "keep_alive_ms": args.keep_alive.as_millis() as u64,
        "loadavg": outpost_tests::loadavg(),
    });
    eprintln!(
        "hub VmRSS {rss_before} KiB -> {rss_after} KiB with {n} sessions: {:.1} KiB/agent",
        (rss_after as f64 - rss_before as f64) / n as f64
    );

    if !skip.contains(&"fanout") {
        let wf = scratch.write("bench.yaml", WORKFLOW)?;
        let groups0 = tokio::task::block_in_place(|| store_groups(&hub.http_url, &hub.api_token));
        let cpu0 = loadgen::cpu_seconds(pid)?;
        let t0 = Instant::now();
        let o = hub.cli(&["workflow", "apply", "-f", &wf.display().to_string()])?;
        let t_apply = t0.elapsed();
        if !o.status.success() {
            bail!(
                "workflow apply failed: {}{}",
                outpost_tests::stdout(&o),
                outpost_tests::stderr(&o)
            );
        }
        let mut times = Vec::with_capacity(n);
        until(
            &mut fleet,
            &mut tally,
            Duration::from_secs(600),
            "every agent activating bench@v1",
            |r| {
                if let Report::Activated { workflow, at, .. } = r
                    && workflow == "bench"
                {
                    times.push(at.duration_since(t0).as_secs_f64());
                }
            },
            |t| t.activated.get("bench@v1").copied().unwrap_or(0) >= n as u64,
        )
        .await?;
        let t_all = t0.elapsed();
        let load_fanout = outpost_tests::loadavg();
        // The hub's own view: every agent shows bench v1 active (deploy results committed).
        let t_hub = tokio::task::block_in_place(|| {
            wait_for(
                Duration::from_secs(300),
                "agent list showing bench v1",
                || {
                    let v = hub.json(&["agent", "list"]).ok()?;
                    let rows = v.as_array()?;
                    let on = rows
                        .iter()
                        .filter(|a| {
                            a["active"].as_array().is_some_and(|act| {
                                act.iter()
                                    .any(|x| x["workflow"] == "bench" && x["version"] == 1)
                            })
                        })
                        .count();
                    (on >= n).then(|| t0.elapsed())
                },
            )
        })?;
        let cpu1 = loadgen::cpu_seconds(pid)?;
        let groups = groups_between(
            groups0,
            tokio::task::block_in_place(|| store_groups(&hub.http_url, &hub.api_token)),
        );
        times.sort_by(f64::total_cmp);
        out["fanout"] = json!({
            "apply_cli_s": t_apply.as_secs_f64(),
            "all_activated_s": t_all.as_secs_f64(),
            "activation_p50_s": pct(&times, 0.5),
            "activation_p99_s": pct(&times, 0.99),
            "first_activation_s": times.first(),
            "hub_agent_list_all_active_s": t_hub.as_secs_f64(),
            "hub_cpu_s": cpu1 - cpu0,
            "hub_rss_kib": loadgen::vm_rss_kib(pid)?,
            "store_group_commits": groups,
            "hub_hwm_kib": loadgen::proc_status(pid, "VmHWM")?,
            "hub_threads": loadgen::proc_status(pid, "Threads")?,
            "loadavg": load_fanout,
        });
        eprintln!(
            "fan-out: all {n} activated {t_all:.2?} after apply (p50 {:.2}s, p99 {:.2}s); hub agent list agrees at {t_hub:.2?}",
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
    }

    if !skip.contains(&"metrics") {
        // Every played agent sent one telemetry report after its Welcome: the scrape carries
        // the per-agent series of all of them (up to `[metrics] per_agent_limit`).
        let cpu0 = loadgen::cpu_seconds(pid)?;
        let (url, token) = (hub.http_url.clone(), hub.api_token.clone());
        let m = tokio::task::spawn_blocking(move || scrape_metrics(&url, &token, 10)).await??;
        let cpu1 = loadgen::cpu_seconds(pid)?;
        eprintln!(
            "/metrics at {n} agents: p50 {:.1} ms, max {:.1} ms, {} bytes, {} samples",
            m["p50_ms"], m["max_ms"], m["bytes"], m["samples"]
        );
        let mut m = m;
        m["hub_cpu_s_per_scrape"] = json!((cpu1 - cpu0) / 10.0);
        m["loadavg"] = json!(outpost_tests::loadavg());
        out["metrics"] = m;
    }

    if !skip.contains(&"ingest") {
        let e = args.events;
        let groups0 = tokio::task::block_in_place(|| store_groups(&hub.http_url, &hub.api_token));
        let cpu0 = loadgen::cpu_seconds(pid)?;
        let drained0 = tally.drained;
        let disc0 = tally.disconnects;
        let t0 = Instant::now();
        fleet.add_backlog_all(e);
        let churn = (args.churn_during_ingest > 0).then(|| {
            let (cfg, url, tok) = (
                hub.config.clone(),
                hub.http_url.clone(),
                hub.api_token.clone(),
            );
            let (count, dir) = (args.churn_during_ingest, scratch.path().to_path_buf());
            std::thread::spawn(move || churn(&cfg, &url, &tok, &dir, count))
        });
        let mut last = Duration::ZERO;
        until(
            &mut fleet,
            &mut tally,
            Duration::from_secs(1800),
            "every agent's backlog acknowledged",
            |r| {
                if let Report::Drained { at, .. } = r {
                    last = at.duration_since(t0);
                }
            },
            |t| t.drained >= drained0 + n as u64,
        )
        .await?;
        let cpu1 = loadgen::cpu_seconds(pid)?;
        let groups = groups_between(
            groups0,
            tokio::task::block_in_place(|| store_groups(&hub.http_url, &hub.api_token)),
        );
        let churned = match churn {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("churn thread panicked"))??,
            None => 0,
        };
        let total = (n * e) as f64;
        out["ingest"] = json!({
            "events_per_agent": e,
            "events": total,
            "all_acked_s": last.as_secs_f64(),
            "events_per_s": total / last.as_secs_f64(),
            "hub_cpu_s": cpu1 - cpu0,
            "hub_rss_kib": loadgen::vm_rss_kib(pid)?,
            "hub_hwm_kib": loadgen::proc_status(pid, "VmHWM")?,
            "hub_threads": loadgen::proc_status(pid, "Threads")?,
            "versions_applied_during": churned,
            "store_group_commits": groups,
            "disconnects_during": tally.disconnects - disc0,
            "last_disconnect": tally.last_disconnect,
            // Torn or undecodable frames (not mere connection losses, which the hub logs
            // under the same "bad frame from agent" context).
            "hub_log_torn_frames": count_in(&hub.stderr_path, "exceeds the limit")
                + count_in(&hub.stderr_path, "inside a frame")
                + count_in(&hub.stderr_path, "malformed message"),
            "loadavg": outpost_tests::loadavg(),
        });
        eprintln!(
            "ingest: {total} events from {n} agents acknowledged in {last:.2?}: {:.0} events/s",
            total / last.as_secs_f64()
        );
    }

    if !skip.contains(&"drain") {
        let (url, tok) = (hub.http_url.clone(), hub.api_token.clone());
        let tokens =
            tokio::task::spawn_blocking(move || loadgen::create_tokens(&url, &tok, 1, &[]))
                .await??;
        let relay = Relay::start("127.0.0.1:0".parse()?, hub.quic_addr)?;
        let ids = loadgen::enroll_many(relay.addr(), "outpost-hub", tokens, vec![], 1).await?;
        let mut cfg = FleetConfig::new(relay.addr());
        cfg.sockets = 1;
        cfg.backoff_cap = Duration::from_secs(1);
        let mut one = Fleet::start(cfg, ids)?;
        let mut t1 = Tally::new(1);
        until(
            &mut one,
            &mut t1,
            Duration::from_secs(60),
            "the drain agent connected",
            |_| {},
            |t| t.connected == 1,
        )
        .await?;
        relay.set_mode(Mode::Blackhole);
        one.add_backlog(0, args.drain_events);
        until(
            &mut one,
            &mut t1,
            Duration::from_secs(120),
            "the partitioned connection to time out",
            |_| {},
            |t| t.disconnects >= 1,
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu0 = loadgen::cpu_seconds(pid)?;
        let healed = Instant::now();
        relay.set_mode(Mode::Pass);
        let (mut welcomed, mut drained) = (None, None);
        until(
            &mut one,
            &mut t1,
            Duration::from_secs(600),
            "the backlog acknowledged",
            |r| match r {
                Report::Welcomed { at, .. } => welcomed = Some(*at),
                Report::Drained { at, .. } => drained = Some(*at),
                _ => {}
            },
            |t| t.drained >= 1,
        )
        .await?;
        let cpu1 = loadgen::cpu_seconds(pid)?;
        let (w, d) = (
            welcomed.context("no welcome")?,
            drained.context("no drain")?,
        );
        let drain = d.duration_since(w).as_secs_f64();
        out["drain"] = json!({
            "events": args.drain_events,
            "heal_to_acked_s": d.duration_since(healed).as_secs_f64(),
            "welcome_to_acked_s": drain,
            "events_per_s": args.drain_events as f64 / drain,
            "hub_cpu_s": cpu1 - cpu0,
            "other_agents_connected": n,
            "loadavg": outpost_tests::loadavg(),
        });
        eprintln!(
            "drain: {} events acknowledged {:.2?} after the heal ({drain:.2}s after Welcome)",
            args.drain_events,
            d.duration_since(healed)
        );
        one.stop().await;
    }

    if !skip.contains(&"agent") {
        let relay = Relay::start("127.0.0.1:0".parse()?, hub.quic_addr)?;
        let dir = scratch.join("real-agent");
        let agent = tokio::task::block_in_place(|| {
            outpost_tests::enrolled_agent(&dir, &hub, relay.addr(), "", "")
        })?;
        let apid = agent.pid().context("agent pid")?;
        // Settle: connected, deploy of `bench` activated (it fires once a year: idle).
        tokio::time::sleep(Duration::from_secs(15)).await;
        let rss = loadgen::vm_rss_kib(apid)?;
        let (b0, d0) = (relay.forwarded_bytes(), relay.forwarded());
        let cpu0 = loadgen::cpu_seconds(apid)?;
        tokio::time::sleep(args.idle).await;
        let (b1, d1) = (relay.forwarded_bytes(), relay.forwarded());
        let cpu1 = loadgen::cpu_seconds(apid)?;
        let rss_end = loadgen::vm_rss_kib(apid)?;
        let secs = args.idle.as_secs_f64();
        let per_h = (b1 - b0) as f64 / secs * 3600.0;
        // On the wire: + 20 (IPv4) + 8 (UDP) bytes per datagram (link layer not counted).
        let wire_h = ((b1 - b0) + 28 * (d1 - d0)) as f64 / secs * 3600.0;
        out["agent"] = json!({
            "rss_kib_settled": rss,
            "rss_kib_end": rss_end,
            "idle_window_s": secs,
            "udp_payload_bytes": b1 - b0,
            "datagrams": d1 - d0,
            "udp_payload_bytes_per_hour": per_h,
            "ip_bytes_per_hour": wire_h,
            "cpu_s": cpu1 - cpu0,
            "loadavg": outpost_tests::loadavg(),
        });
        eprintln!(
            "real agent idle: VmRSS {rss} KiB; {} bytes in {} datagrams over {secs}s = {:.0} KiB/h payload ({:.0} KiB/h with IP/UDP headers)",
            b1 - b0,
            d1 - d0,
            per_h / 1024.0,
            wire_h / 1024.0
        );
        drop(agent);
    }

    if !skip.contains(&"restart") {
        // Settle, then kill the hub and bring it back on the same ports and store.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let w0 = tally.welcomes;
        tokio::task::block_in_place(|| hub.kill9())?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::block_in_place(|| hub.restart())?;
        let back = Instant::now();
        let mut first: Option<Duration> = None;
        until(
            &mut fleet,
            &mut tally,
            Duration::from_secs(120),
            "every agent welcomed again after the hub restart",
            |r| {
                if first.is_none() && matches!(r, loadgen::Report::Welcomed { .. }) {
                    first = Some(back.elapsed());
                }
            },
            |t| t.welcomes >= w0 + n as u64,
        )
        .await?;
        let all = back.elapsed();
        let first = first.unwrap_or(all);
        out["restart"] = json!({
            "first_reconnect_s": first.as_secs_f64(),
            "all_reconnected_s": all.as_secs_f64(),
            "quic_idle_timeout_s": 15,
        });
        eprintln!(
            "hub restart (kill -9): first agent back {first:.2?}, all {n} back {all:.2?} after the API answered (idle timeout 15 s)"
        );
    }

    out["disconnects"] = json!(tally.disconnects);
    out["last_disconnect"] = json!(tally.last_disconnect);
    out["loadavg_end"] = json!(outpost_tests::loadavg());
    fleet.stop().await;
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_vec_pretty(&out)?)?;
    }
    Ok(out)
}
