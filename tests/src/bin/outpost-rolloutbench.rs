//! `outpost-rolloutbench`: a gray-release rollout across N played agents, real hub.
//!
//! Starts a real `outpost-hub` (binaries from `OUTPOST_BIN_DIR`, e.g. `target/release`), enrolls
//! and connects N agents played by the load generator (`outpost_tests::loadgen`: real
//! enrollment, real QUIC with mutual TLS, the real `AgentSession`), each completing one
//! synthetic run of every active version every `--run-every` (all succeed). Then:
//! 1. `workflow apply` v1 and `workflow deploy --pool wf:<name> --version 1` (the workflow is
//!    managed from then on); waits until every played agent activated v1;
//! 2. `workflow apply` v2 (stored only), samples the hub's CPU over a `--baseline` window
//!    (the fleet's runs only, no rollout);
//! 3. `rollout start` v2 into the default pool with `--canary 1 --steps 1%,10%,50%,100%
//!    --bake 0s --min-runs 1` (overridable), polls `rollout status --output json` every
//!    `--poll` until it is no longer active, while sampling the hub's CPU seconds and VmRSS
//!    every 250 ms; records when each step was first seen and when the last played agent
//!    activated v2.
//!
//!
//! With `--ha --replicas 3 [--postgres] --kill-leader-at-step K`: three replicas on a
//! three-member etcd (and a PostgreSQL for the shared run history), the played agents spread
//! over them (each moves to the next replica when its session fails), the CLI on a replica
//! that does not lead; when the rollout is first seen at step K the leader is killed (-9) and
//! started again a second later, and the new leader finishes the rollout.
//!
//! ```text
//! cargo build --release -p outpost-hub -p outpost-agent -p outpost-tests
//! OUTPOST_BIN_DIR=target/release target/release/outpost-rolloutbench --agents 1000
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use outpost_tests::loadgen::{self, Fleet, FleetConfig, Report, Tally, until};
use outpost_tests::{Hub, Scratch};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "outpost-rolloutbench",
    about = "A rollout across N played agents with a zero bake time"
)]
struct Args {
    /// HA mode: start a three-member etcd cluster on loopback (Debian's `etcd-server`) and run
    /// the hub as the one replica of an election on it (`[ha]`; the hub must be built with the
    /// `ha` feature). The figures are then HA mode's, to compare with a run without.
    #[arg(long)]
    ha: bool,
    /// With `--ha`: this many hub replicas (copies of one initialised hub, each listing all in
    /// `replicas`); played agent `i` connects to replica `i mod n` and moves to the next when
    /// its session fails. The CLI talks to a replica that does not lead at the start.
    #[arg(long, default_value_t = 1, requires = "ha")]
    replicas: usize,
    /// With `--ha`: also start PostgreSQL on loopback and give the replicas their shared run
    /// history there (`[ha] postgres`).
    #[arg(long, requires = "ha")]
    postgres: bool,
    /// With `--replicas` above 1: kill -9 the leader when the rollout is first seen at this
    /// step, and start it again a second later.
    #[arg(long, requires = "ha")]
    kill_leader_at_step: Option<u64>,
    /// Played agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Client UDP sockets the played agents are spread over.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Each played agent completes one run of each active version this often.
    #[arg(long, value_parser = loadgen::parse_dur, default_value = "1s")]
    run_every: Duration,
    /// Extra `rollout start` flags (whitespace-separated), after the workflow, pool and version.
    #[arg(
        long,
        default_value = "--canary 1 --steps 1%,10%,50%,100% --bake 0s --min-runs 1"
    )]
    plan: String,
    /// Interval between `rollout status` polls.
    #[arg(long, value_parser = loadgen::parse_dur, default_value = "500ms")]
    poll: Duration,
    /// Window over which the hub's CPU is measured before the rollout (fleet runs only).
    #[arg(long, value_parser = loadgen::parse_dur, default_value = "10s")]
    baseline: Duration,
    /// Give up on the rollout after this long.
    #[arg(long, value_parser = loadgen::parse_dur, default_value = "900s")]
    timeout: Duration,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const NAME: &str = "rollbench";

fn workflow(v: &str) -> String {
    format!(
        "name: {NAME}\n\
description: Rollout benchmark workflow, {v} (fires once a year; the load generator makes the runs).\n\
schedule: \"0 0 0 1 1 *\"\n\
timezone: UTC\n\
tasks:\n  hello:\n    command: [echo, {v}]\n"
    )
}

fn main() {
    outpost_tests::bench_main(bench(Args::parse()));
}

/// Keep counting reports for `d` (the fleet's channel must not pile up).
async fn drain_for(fleet: &mut Fleet, tally: &mut Tally, d: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(deadline, fleet.reports.recv()).await {
            Ok(Some(r)) => tally.add(&r),
            Ok(None) => bail!("the fleet stopped"),
            Err(_) => return Ok(()),
        }
    }
}

/// Run the hub CLI; fail with its output unless it succeeds.
fn cli_ok(hub: &Hub, args: &[&str]) -> anyhow::Result<String> {
    let o = hub.cli(args)?;
    if !o.status.success() {
        bail!(
            "outpost-hub {args:?} failed: {}{}",
            outpost_tests::stdout(&o),
            outpost_tests::stderr(&o)
        );
    }
    Ok(outpost_tests::stdout(&o))
}

/// One sample of the hub process.
#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    cpu_s: f64,
    rss_kib: u64,
}

/// The replicas' CPU seconds summed, and the largest RSS among them (a replica that is not
/// running is left out: the CPU time of a killed one is lost).
fn sample(pids: &[u32], t0: Instant) -> anyhow::Result<Sample> {
    let (mut cpu_s, mut rss_kib, mut seen) = (0.0, 0, 0);
    for &pid in pids {
        if let (Ok(c), Ok(r)) = (loadgen::cpu_seconds(pid), loadgen::vm_rss_kib(pid)) {
            cpu_s += c;
            rss_kib = rss_kib.max(r);
            seen += 1;
        }
    }
    if seen == 0 {
        bail!("no hub replica is running");
    }
    Ok(Sample {
        t: t0.elapsed().as_secs_f64(),
        cpu_s,
        rss_kib,
    })
}

fn pid_of(hub: &Hub) -> anyhow::Result<u32> {
    hub.child.as_ref().map(|c| c.id()).context("hub pid")
}

/// The replica that leads, by `GET /v1/health` (waits up to `within`).
fn leader_of(hubs: &[Hub], within: Duration) -> anyhow::Result<usize> {
    outpost_tests::wait_for(within, "a leader among the replicas", || {
        hubs.iter().position(|h| {
            ureq::get(format!("{}/v1/health", h.http_url))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["role"] == "leader")
        })
    })
}

async fn bench(args: Args) -> anyhow::Result<serde_json::Value> {
    let fd = loadgen::raise_fd_limit();
    let n = args.agents;
    let mut out = json!({
        "machine": outpost_tests::machine(),
        "bin_dir": outpost_tests::bin_dir().display().to_string(),
        "agents": n,
        "sockets": args.sockets.min(n),
        "run_every_s": args.run_every.as_secs_f64(),
        "plan": args.plan,
        "poll_s": args.poll.as_secs_f64(),
        "fd_limit": fd,
        "loadavg_start": outpost_tests::loadavg(),
    });
    let scratch = Scratch::new("rolloutbench")?;
    // Kept to the end: dropping it stops the cluster.
    let (_etcd, ha) = outpost_tests::etcd::bench_ha(args.ha, scratch.path())?;
    let (_pg, ha) = outpost_tests::postgres::bench_postgres(args.postgres, scratch.path(), ha)?;
    let multi = args.replicas > 1;
    let r0 = scratch.join("r0");
    std::fs::create_dir_all(&r0)?;
    // Several replicas: the first is started alone to enroll the fleet, then copied.
    let mut hubs = vec![Hub::start(&r0, if multi { "" } else { &ha })?];
    out["mode"] = json!(match (args.ha, args.postgres) {
        (true, true) => "ha+postgres",
        (true, false) => "ha",
        _ => "embedded",
    });
    out["replicas"] = json!(args.replicas);
    if args.ha && !multi {
        let took = outpost_tests::etcd::wait_leading(&hubs[0].http_url, Duration::from_secs(30))?;
        eprintln!("HA mode: the hub leads (after {took:.1?})");
    }
    let hub = &hubs[0];

    let t = Instant::now();
    let (url, tok) = (hub.http_url.clone(), hub.api_token.clone());
    let tokens =
        tokio::task::spawn_blocking(move || loadgen::create_tokens(&url, &tok, n, &[])).await??;
    let ids = loadgen::enroll_many(hub.quic_addr, "outpost-hub", tokens, vec![], 32).await?;
    eprintln!("enrolled {n} agents in {:.1?}", t.elapsed());
    let mut leader = 0;
    let mut cli = 0;
    if multi {
        hubs[0].kill9()?;
        for k in 1..args.replicas {
            let h = hubs[0].replica(&scratch.join(&format!("r{k}")))?;
            hubs.push(h);
        }
        let addrs: Vec<String> = hubs
            .iter()
            .map(|h| format!("\"{}\"", h.quic_addr))
            .collect();
        for (k, h) in hubs.iter().enumerate() {
            let text = std::fs::read_to_string(&h.config)?;
            let mine = ha.replace("name = \"bench\"", &format!("name = \"r{k}\""));
            std::fs::write(
                &h.config,
                format!("replicas = [{}]\n{text}\n{mine}", addrs.join(", ")),
            )?;
        }
        for h in &mut hubs {
            h.restart()?;
        }
        leader = leader_of(&hubs, Duration::from_secs(30))?;
        cli = (leader + 1) % hubs.len();
        eprintln!(
            "{} replicas up; r{leader} leads; the CLI talks to r{cli}",
            hubs.len()
        );
    }
    let mut pids: Vec<u32> = hubs.iter().map(pid_of).collect::<anyhow::Result<_>>()?;
    for (k, h) in hubs.iter().enumerate() {
        eprintln!(
            "hub r{k} pid {} on {} ({})",
            pids[k], h.quic_addr, h.http_url
        );
    }
    let hub = &hubs[cli];

    let mut cfg = FleetConfig::new(hubs[0].quic_addr);
    cfg.replicas = hubs[1..].iter().map(|h| h.quic_addr).collect();
    cfg.sockets = args.sockets;
    cfg.run_every = Some(args.run_every);
    cfg.fail_rate = 0.0;
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
    eprintln!("{n} sessions up in {:.1?}", t.elapsed());

    // v1 everywhere, deployed explicitly (the workflow is managed from then on).
    let pool = format!("wf:{NAME}");
    let v1 = scratch.write("v1.yaml", &workflow("v1"))?;
    let v2 = scratch.write("v2.yaml", &workflow("v2"))?;
    let t = Instant::now();
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        cli_ok(hub, &["workflow", "apply", "-f", &v1.display().to_string()])?;
        cli_ok(
            hub,
            &[
                "workflow",
                "deploy",
                NAME,
                "--pool",
                &pool,
                "--version",
                "1",
            ],
        )?;
        Ok(())
    })?;
    let key1 = format!("{NAME}@v1");
    until(
        &mut fleet,
        &mut tally,
        Duration::from_secs(600),
        "every agent activating v1",
        |_| {},
        |t| t.activated.get(&key1).copied().unwrap_or(0) >= n as u64,
    )
    .await?;
    eprintln!("all {n} on v1 after {:.1?}", t.elapsed());
    tokio::task::block_in_place(|| {
        cli_ok(hub, &["workflow", "apply", "-f", &v2.display().to_string()])
    })?;

    // Baseline: the fleet's runs of v1 only.
    drain_for(&mut fleet, &mut tally, Duration::from_secs(3)).await?;
    let b0 = sample(&pids, Instant::now())?;
    let tb = Instant::now();
    let runs0 = tally.runs_ok + tally.runs_failed;
    drain_for(&mut fleet, &mut tally, args.baseline).await?;
    let b1 = sample(&pids, Instant::now())?;
    let bw = tb.elapsed().as_secs_f64();
    out["baseline"] = json!({
        "window_s": bw,
        "hub_cpu_s": b1.cpu_s - b0.cpu_s,
        "hub_cpu_util": (b1.cpu_s - b0.cpu_s) / bw,
        "runs_per_s": (tally.runs_ok + tally.runs_failed - runs0) as f64 / bw,
        "hub_rss_kib": b1.rss_kib,
        "loadavg": outpost_tests::loadavg(),
    });
    eprintln!(
        "baseline: hub CPU {:.0}% of a core, {} KiB, {:.0} runs/s",
        (b1.cpu_s - b0.cpu_s) / bw * 100.0,
        b1.rss_kib,
        (tally.runs_ok + tally.runs_failed - runs0) as f64 / bw
    );

    // The rollout.
    let mut start = vec!["rollout", "start", NAME, "--pool", &pool, "--version", "2"];
    start.extend(args.plan.split_whitespace());
    let t0 = Instant::now();
    let s0 = sample(&pids, t0)?;
    let started =
        tokio::task::block_in_place(|| hub.json(&start)).context("rollout start failed")?;
    let t_start_cli = t0.elapsed();
    eprintln!("rollout started ({t_start_cli:.2?}): {}", started["id"]);

    // A blocking poller thread sends each status (with the time it was taken).
    let (stx, mut srx) = tokio::sync::mpsc::unbounded_channel::<(f64, serde_json::Value)>();
    let (url, tok, poll, p) = (
        hub.http_url.clone(),
        hub.api_token.clone(),
        args.poll,
        pool.clone(),
    );
    let poller = std::thread::spawn(move || {
        loop {
            let o = std::process::Command::new(outpost_tests::hub_bin())
                .args(["rollout", "status", NAME, "--pool", &p, "--output", "json"])
                .env("OUTPOST_HUB_URL", &url)
                .env("OUTPOST_HUB_TOKEN", &tok)
                .stdin(std::process::Stdio::null())
                .output();
            let at = t0.elapsed().as_secs_f64();
            let v = match o {
                Ok(o) if o.status.success() => {
                    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
                }
                _ => serde_json::Value::Null,
            };
            let ended = v["active"] == false;
            if stx.send((at, v)).is_err() || ended {
                return;
            }
            std::thread::sleep(poll);
        }
    });

    let key2 = format!("{NAME}@v2");
    let mut samples = vec![s0];
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut steps_seen: Vec<(u64, f64)> = Vec::new();
    let mut last_v2 = None;
    let mut polls = 0u32;
    let deadline = tokio::time::Instant::now() + args.timeout;
    let runs_at_start = tally.runs_ok + tally.runs_failed;
    let mut killed: Option<serde_json::Value> = None;
    let end = loop {
        tokio::select! {
            r = fleet.reports.recv() => {
                let r = r.context("the fleet stopped during the rollout")?;
                if let Report::Activated { workflow, version: 2, at, .. } = &r
                    && workflow == NAME
                {
                    last_v2 = Some(at.duration_since(t0).as_secs_f64());
                }
                tally.add(&r);
            }
            _ = tick.tick() => samples.push(sample(&pids, t0)?),
            s = srx.recv() => {
                let (at, st) = s.context("the status poller stopped")?;
                polls += 1;
                if st.is_null() {
                    continue;
                }
                if let Some(step) = st["step"].as_u64()
                    && steps_seen.last().map(|s| s.0) != Some(step)
                {
                    eprintln!("{at:7.2}s step {step} ({})", st["phase"]);
                    steps_seen.push((step, at));
                    if multi && args.kill_leader_at_step == Some(step) && killed.is_none() {
                        let old = leader;
                        tokio::task::block_in_place(|| -> anyhow::Result<()> {
                            hubs[old].kill9()?;
                            let at_kill = t0.elapsed().as_secs_f64();
                            eprintln!("{at_kill:7.2}s killed the leader r{old} (-9)");
                            std::thread::sleep(Duration::from_secs(1));
                            hubs[old].restart()?;
                            pids[old] = pid_of(&hubs[old])?;
                            let at_restart = t0.elapsed().as_secs_f64();
                            leader = leader_of(&hubs, Duration::from_secs(30))?;
                            let at_leader = t0.elapsed().as_secs_f64();
                            eprintln!(
                                "{at_restart:7.2}s r{old} restarted; {at_leader:7.2}s r{leader} leads"
                            );
                            killed = Some(json!({
                                "step": step,
                                "killed": format!("r{old}"),
                                "killed_at_s": at_kill,
                                "restarted_at_s": at_restart,
                                "new_leader": format!("r{leader}"),
                                "new_leader_seen_at_s": at_leader,
                            }));
                            Ok(())
                        })?;
                    }
                }
                if st["active"] == false {
                    break (at, st);
                }
            }
            _ = tokio::time::sleep_until(deadline) => bail!(
                "the rollout did not end within {:?} (tally: {})",
                args.timeout,
                serde_json::to_string(&tally).unwrap_or_default()
            ),
        }
    };
    let s_end = sample(&pids, t0)?;
    samples.push(s_end);
    let _ = poller.join();
    let (t_end, st) = end;
    if st["outcome"] != "succeeded" {
        bail!("the rollout did not succeed: {st:#}");
    }
    let on_v2 = tally.activated.get(&key2).copied().unwrap_or(0);
    // Peak CPU over any 1 s window of the samples.
    let mut peak_util: f64 = 0.0;
    for (i, a) in samples.iter().enumerate() {
        if let Some(b) = samples[i..].iter().find(|b| b.t - a.t >= 1.0) {
            peak_util = peak_util.max((b.cpu_s - a.cpu_s) / (b.t - a.t));
        }
    }
    let rss_peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let cpu = s_end.cpu_s - s0.cpu_s;
    out["leader_killed"] = json!(killed);
    out["rollout"] = json!({
        "id": started["id"],
        "start_cli_s": t_start_cli.as_secs_f64(),
        "start_to_done_s": t_end,
        "last_agent_activated_v2_s": last_v2,
        "agents_activated_v2": on_v2,
        "steps_first_seen_s": steps_seen.iter().map(|(s, t)| json!({"step": s, "at_s": t})).collect::<Vec<_>>(),
        "step_targets": st["steps"].as_array().map(|a| a.iter().map(|s| s["target"].clone()).collect::<Vec<_>>()),
        "outcome": st["outcome"],
        "members": st["members"],
        "status_polls": polls,
        "runs_during": tally.runs_ok + tally.runs_failed - runs_at_start,
        "hub_cpu_s": cpu,
        "hub_cpu_util_mean": cpu / t_end,
        "hub_cpu_util_peak_1s": peak_util,
        "hub_rss_kib_before": s0.rss_kib,
        "hub_rss_kib_peak": rss_peak,
        "hub_rss_kib_after": s_end.rss_kib,
        "loadavg": outpost_tests::loadavg(),
    });
    eprintln!(
        "rollout of {n} agents done in {t_end:.2}s (last v2 activation at {:.2}s); hub CPU {cpu:.2}s ({:.0}% mean, {:.0}% peak 1 s), VmRSS {} -> peak {} KiB",
        last_v2.unwrap_or(0.0),
        cpu / t_end * 100.0,
        peak_util * 100.0,
        s0.rss_kib,
        rss_peak
    );
    // After: settle, then memory again.
    drain_for(&mut fleet, &mut tally, Duration::from_secs(5)).await?;
    out["after"] = json!({
        "hub_rss_kib_5s_after": sample(&pids, Instant::now())?.rss_kib,
        "disconnects": tally.disconnects,
        "last_disconnect": tally.last_disconnect,
        "rejected": tally.rejected,
        "loadavg_end": outpost_tests::loadavg(),
    });
    fleet.stop().await;
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_vec_pretty(&out)?)?;
    }
    Ok(out)
}
