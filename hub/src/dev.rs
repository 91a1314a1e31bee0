//! `outpost-hub dev`: the whole system on one machine in one command, like `nomad agent -dev`.
//!
//! A hub and one agent run in this process, on loopback, with their stores in a directory
//! (temporary, or named with `--dir` so a second start picks up where the first stopped). The
//! agent enrolls over real QUIC with a real bootstrap token, the embedded example workflow
//! (`examples/hello.yaml`, firing every 10 s) is applied through the real API, and runs are
//! printed as they reach the hub. Nothing here is a shortcut around the production paths: it is
//! the same enrollment, the same signed deploys, the same status sync.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::client::Client;
use crate::config::HubConfig;
use crate::views::{ApplyFile, ApplyRequest, ApplyResponse, RunView, TokenRequest, TokenResponse};

/// The example workflow applied in dev mode.
pub const EXAMPLE: &str = include_str!("../../examples/hello.yaml");

fn port_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A UDP port for QUIC: `preferred` if it is free on loopback, else one the system hands out (the
/// probe socket is closed before the check, so the port is free when it is returned).
fn pick_udp_port(preferred: u16) -> anyhow::Result<u16> {
    if port_free(preferred) {
        return Ok(preferred);
    }
    for _ in 0..50 {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())?;
        if port_free(port) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free UDP port on 127.0.0.1 for the hub's QUIC endpoint")
}

/// How to run `name` (an Outpost binary) from the shell this process was started in: its bare
/// name when that is what the PATH finds, else the absolute path of the binary beside this one
/// (`target/debug/...` after `cargo run`), else `cargo run -p NAME --` when started by cargo.
pub fn command_for(name: &str) -> String {
    let exe = std::env::current_exe().ok();
    let beside = exe
        .as_ref()
        .and_then(|e| e.parent())
        .map(|d| d.join(name))
        .filter(|p| p.is_file());
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    match (beside, on_path) {
        (Some(b), Some(p)) if same(&b, &p) => name.to_string(),
        (Some(b), _) => shell_word(&b.display().to_string()),
        (None, Some(_)) => name.to_string(),
        (None, None) if std::env::var_os("CARGO").is_some() => format!("cargo run -p {name} --"),
        (None, None) => name.to_string(),
    }
}

/// `s` as one POSIX shell word.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("outpost-dev-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let hub_dir = dir.join("hub");
    // A 1-of-1 root and one release key, which the dev hub signs every applied version with
    // (`[keys] release_key`), so `workflow apply` deploys with no release step.
    let offline = crate::init::default_offline_dir(&hub_dir);
    if !crate::init::is_initialised(&hub_dir) {
        crate::init::init(
            &hub_dir,
            crate::config::DEFAULT_HUB_NAME,
            &[],
            &offline,
            crate::init::KeyPlan::default(),
        )?;
    }
    let quic: SocketAddr = format!("127.0.0.1:{}", pick_udp_port(7443)?).parse()?;
    // The API takes 7070 when it is free, else any port: the address printed is the one the
    // listener really has (reported once it is bound).
    let http_port = if TcpListener::bind(("127.0.0.1", 7070)).is_ok() {
        7070
    } else {
        0
    };
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
    let hub_toml = dir.join("hub.toml");
    std::fs::write(
        &hub_toml,
        format!(
            "data_dir = \"{}\"\nquic_listen = \"{quic}\"\nhttp_listen = \"{http}\"\n\n[keys]\nrelease_key = \"{}\"\n",
            hub_dir.display(),
            offline.join("release-1.key").display()
        ),
    )?;
    let config = HubConfig::load(&hub_toml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = config
        .read_api_token()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let agent_dir = dir.join("agent");
    let agent_toml = agent_dir.join("agent.toml");
    std::fs::create_dir_all(agent_dir.join("workflows"))?;
    std::fs::write(
        &agent_toml,
        format!(
            "state_dir = \"{}\"\n\n[shutdown]\ngrace = \"5s\"\n\n[hub]\naddress = \"{quic}\"\n",
            agent_dir.join("state").display()
        ),
    )?;

    let rt = crate::serve::runtime().context("starting the async runtime")?;
    rt.block_on(async move {
        // The hub.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let hub = tokio::spawn(crate::serve::run(
            config,
            async move {
                let mut rx = stop_rx;
                let _ = rx.changed().await;
            },
            move |s| {
                let _ = ready_tx.send(s.http_addr);
            },
        ));
        let http = match ready_rx.await {
            Ok(addr) => addr,
            Err(_) => {
                // The hub ended before listening: its error says why.
                return match hub.await {
                    Ok(Err(e)) => Err(e.context("the hub did not start")),
                    _ => Err(anyhow::anyhow!("the hub did not start")),
                };
            }
        };
        let base = format!("http://{http}");
        let client = Client::new(&base, &token, None);

        // The agent: enrolled once, then served.
        let cfg = outpost_agent::config::AgentConfig::load(&agent_toml)?;
        let store = Arc::new(outpost_agent::store::Store::open(&cfg.store_path())?);
        if outpost_agent::identity::load(&store)?.is_none() {
            let c = client.clone();
            let tok: TokenResponse = tokio::task::spawn_blocking(move || {
                c.post(
                    "/v1/tokens",
                    &TokenRequest {
                        labels: [("site".to_string(), "dev".to_string())].into(),
                        ttl: Some("10m".into()),
                        uses: None,
                    },
                )
            })
            .await??;
            let id = outpost_agent::hub_link::enroll(
                &store,
                &outpost_agent::hub_link::EnrollArgs {
                    hub: quic.to_string(),
                    hub_name: Some(crate::config::DEFAULT_HUB_NAME.into()),
                    token: tok.token.clone(),
                    labels: Vec::new(),
                    name: None,
                },
            )
            .await?
            .identity;
            println!("agent {} enrolled", id.agent_id);
        }
        let agent = tokio::spawn(outpost_agent::daemon::serve(cfg, store));

        // The example workflow, through the API.
        let c = client.clone();
        let applied: ApplyResponse = tokio::task::spawn_blocking(move || {
            c.post(
                "/v1/workflows",
                &ApplyRequest {
                    files: vec![ApplyFile {
                        path: "examples/hello.yaml".into(),
                        content: EXAMPLE.into(),
                    }],
                },
            )
        })
        .await??;
        for r in &applied.results {
            match (&r.name, r.version) {
                (Some(n), Some(v)) => {
                    println!("workflow {n} version {v} applied (fires every 10 s)")
                }
                _ => println!("{}: {}", r.path, r.diagnostics.join("; ")),
            }
        }
        print_banner(&dir, &base, &token, &hub_toml, &agent_toml);
        // A second version of the example, rolled out once the first has run: something to
        // watch on the console's rollout page within the first minute.
        tokio::spawn(demo_rollout(client.clone(), base.clone()));

        // Print runs as they reach the hub, until Ctrl-C.
        let mut seen: std::collections::HashMap<(String, String), String> = Default::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut signals = Box::pin(crate::serve::shutdown_signal());
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut signals => break,
            }
            let c = client.clone();
            let runs: Vec<RunView> = match tokio::task::spawn_blocking(move || {
                c.get("/v1/runs", &[("limit", "20".to_string())])
            })
            .await?
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("dev: listing runs: {e}");
                    continue;
                }
            };
            for r in runs.iter().rev() {
                let key = (r.agent.clone(), r.run_id.clone());
                if seen.get(&key) != Some(&r.state) {
                    println!(
                        "{}  {:<40} {}",
                        chrono::Local::now().format("%H:%M:%S"),
                        r.run_id,
                        r.state
                    );
                    seen.insert(key, r.state.clone());
                }
            }
        }
        println!("stopping (the agent finishes its running tasks first)");
        let _ = tokio::time::timeout(Duration::from_secs(15), agent).await;
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), hub).await;
        println!(
            "state kept in {} (run `{} dev --dir {}` to continue)",
            dir.display(),
            command_for("outpost-hub"),
            shell_word(&dir.display().to_string())
        );
        anyhow::Ok(())
    })
}

/// After the first version's first successful run (or 30 s), apply a second version of the
/// example (its description changed) and roll it out to the example's pool: a canary step that
/// needs two successful runs and bakes 20 s. Skipped when the dev state already has one (a
/// continued `dev`).
async fn demo_rollout(client: Client, base: String) {
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let c = client.clone();
        let ok = tokio::task::spawn_blocking(move || {
            c.get::<Vec<RunView>>(
                "/v1/runs",
                &[
                    ("workflow", "hello".to_string()),
                    ("state", "succeeded".to_string()),
                    ("limit", "1".to_string()),
                ],
            )
        })
        .await
        .ok()
        .and_then(Result::ok)
        .is_some_and(|r| !r.is_empty());
        if ok || started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let v2 = EXAMPLE.replacen(
        "description: Count lines and words of a generated file, every 10 seconds.",
        "description: Count lines and words of a generated file, every 10 seconds (version 2, rolled out by dev).",
        1,
    );
    let c = client.clone();
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<u64>> {
        // Keep the pool on the running version (a deployed pool does not follow apply), so
        // the new version reaches it through the rollout.
        let _: crate::views::DecisionView = c.post(
            "/v1/workflows/hello/deploy",
            &crate::views::PoolVersionRequest {
                pool: "wf:hello".into(),
                version: None,
            },
        )?;
        let applied: ApplyResponse = c.post(
            "/v1/workflows",
            &ApplyRequest {
                files: vec![ApplyFile {
                    path: "examples/hello-v2.yaml".into(),
                    content: v2,
                }],
            },
        )?;
        let Some(r) = applied.results.first().filter(|r| r.changed) else {
            return Ok(None);
        };
        let version = r.version;
        let _: crate::views::RolloutSummary = c.post(
            "/v1/rollouts",
            &crate::views::RolloutStart {
                workflow: "hello".into(),
                pool: "wf:hello".into(),
                version,
                canary: Some("1".into()),
                steps: None,
                bake: Some("20s".into()),
                min_runs: Some(2),
                min_runs_scope: None,
                max_failure_rate: None,
                manual: false,
                probation_runs: None,
                probation_max_failures: None,
                offline: None,
            },
        )?;
        Ok(version)
    })
    .await;
    match result {
        Ok(Ok(Some(v))) => println!(
            "rollout of hello version {v} started: watch it at {base}/ui/rollouts/hello/wf:hello"
        ),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => eprintln!("dev: the demo rollout did not start: {e:#}"),
        Err(e) => eprintln!("dev: the demo rollout did not start: {e}"),
    }
}

fn print_banner(dir: &Path, base: &str, token: &str, hub_toml: &Path, agent_toml: &Path) {
    println!();
    println!(
        "Outpost dev: a hub and an enrolled agent on loopback; state in {}",
        dir.display()
    );
    println!("Open the web console in a browser and sign in with the credential below:");
    println!("  {base}/ui/");
    println!("  credential: {token}");
    println!("Watch it from another shell:");
    println!("  export OUTPOST_HUB_URL={base} OUTPOST_HUB_TOKEN={token}");
    let hub = command_for("outpost-hub");
    let agent = command_for("outpost-agent");
    println!("  {hub} run list            # runs as the hub sees them");
    println!("  {hub} agent list          # the agent, online, and its versions");
    println!(
        "  {agent} status --config {}",
        shell_word(&agent_toml.display().to_string())
    );
    println!("  (hub config: {})", hub_toml.display());
    println!("Ctrl-C stops both.");
    println!();
}
