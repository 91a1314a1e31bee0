//! `outpost-agent serve`: the daemon around the [`Driver`].
//!
//! Start-up order: store open (done by the caller) → workflows loaded → interrupted runs
//! recovered → control socket → signals → the driver loop. Shutdown (SIGTERM/SIGINT): no new
//! task starts, running ones get `shutdown.grace` to finish, then they are terminated; every
//! state change is committed before the process exits.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use anyhow::Context as _;
use outpost_common::clock::SystemClock;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::config::AgentConfig;
use crate::control::{MAX_REQUEST_BYTES, Request, Response};
use crate::driver::{Driver, DriverConfig, Event};
use crate::store::{Retention, Store};

pub async fn serve(cfg: AgentConfig, store: Arc<Store>) -> anyhow::Result<()> {
    let exec = cfg.exec_config()?;
    exec.secrets
        .check()
        .context("the agent's secret directory is not private")?;
    let validate = outpost_common::workflow::ValidateOptions {
        known_resources: Some(cfg.resources.keys().cloned().collect()),
    };
    let mut identity = crate::identity::load(&store).context("reading the agent's identity")?;
    // Configured for a hub but not enrolled: wait on the control socket for `outpost-agent
    // enroll` (the daemon enrolls with its own store), then start as an enrolled agent.
    let early_listener = match (&cfg.hub_address, &identity) {
        (Some(addr), None) => {
            let listener = bind_socket(&cfg)?;
            tracing::info!(
                hub = %addr,
                socket = %cfg.socket.display(),
                "not enrolled: waiting for `outpost-agent enroll --config <this config> --hub {addr} --token-file <file>`"
            );
            match wait_for_enrollment(&listener, &store).await {
                Some(id) => identity = Some(id),
                None => {
                    let _ = std::fs::remove_file(&cfg.socket);
                    tracing::info!("outpost-agent stopped before enrollment");
                    return Ok(());
                }
            }
            Some(listener)
        }
        _ => None,
    };
    if let Some(id) = &identity {
        for (what, empty) in [
            ("private key", id.key_pkcs8.is_empty()),
            ("certificate", id.cert_der.is_empty()),
            ("hub CA", id.ca_der.is_empty()),
        ] {
            if empty {
                anyhow::bail!("the agent's stored identity has no {what}: re-enroll it");
            }
        }
    }
    let disk_guard = crate::disk::DiskGuard::new(&cfg.state_dir, cfg.min_free_disk);
    let mut exec = exec;
    exec.disk_low = disk_guard.low.clone();
    let mut driver = Driver::new(
        DriverConfig {
            max_running: cfg.max_running,
            dispatch_ahead: cfg.dispatch_ahead(),
            resources: cfg.resources.clone(),
            exec,
            shutdown_grace: cfg.shutdown_grace,
            agent_id: identity.as_ref().map(|i| i.agent_id.clone()),
            workflows_dir: cfg.workflows_dir.clone(),
            validate,
            retention: Some(Retention {
                max_age: cfg.retention_max_age,
                max_runs_per_workflow: cfg.retention_max_runs,
            }),
            start_journal_dir: Some(cfg.state_dir.clone()),
            precommit_lead: cfg.precommit_lead,
            disk_guard: Some(disk_guard),
        },
        Arc::new(SystemClock::default()),
        store,
    );
    // Hub-deployed workflows first, then files; then the runs that were active at the stop.
    let from_hub = driver.load_hub_workflows()?;
    driver.rescan()?;
    let recovered = driver.recover()?;
    if recovered > 0 {
        tracing::info!(
            runs = recovered,
            "recovered runs that were active when the agent stopped"
        );
    }
    let tx = driver.sender();
    let listener = match early_listener {
        Some(l) => l,
        None => bind_socket(&cfg)?,
    };
    if let Some(addr) = cfg.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("[metrics] listen: binding {addr}"))?;
        tracing::info!(%addr, "serving GET /metrics");
        tokio::spawn(crate::metrics::serve(metrics, tx.clone()));
    }
    let (link_stop, link_stop_rx) = tokio::sync::watch::channel(false);
    let link = match identity {
        Some(id) => {
            let hub = cfg
                .hub_address
                .clone()
                .unwrap_or_else(|| id.hub_address.clone());
            tracing::info!(agent = %id.agent_id, %hub, workflows = from_hub, "hub mode");
            let outbox = driver.outbox_watch();
            let link_state = crate::hub_link::link_state(&hub);
            driver.set_hub_link(link_state.clone());
            Some(tokio::spawn(crate::hub_link::run(
                id,
                cfg.hub_address.clone(),
                crate::hub_link::LinkTimes {
                    keep_alive: cfg.hub_keep_alive,
                    report_every: cfg.metrics_report_interval,
                },
                driver.store.clone(),
                tx.clone(),
                outbox,
                link_stop_rx,
                link_state,
            )))
        }
        None => None,
    };
    tracing::info!(
        socket = %cfg.socket.display(),
        state_dir = %cfg.state_dir.display(),
        workflows = driver.workflow_names().len(),
        "outpost-agent serving"
    );
    tokio::spawn(accept_loop(listener, tx.clone(), driver.store.clone()));
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested: no new tasks start; waiting for running ones");
            let _ = tx.send(Event::Shutdown);
        });
    }
    if cfg.workflows_dir.is_some() {
        let tx = tx.clone();
        let every = cfg.rescan_interval;
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                if tx.send(Event::Rescan).is_err() {
                    break;
                }
            }
        });
    }
    {
        let tx = tx.clone();
        let every = cfg.retention_interval;
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                if tx.send(Event::Prune).is_err() {
                    break;
                }
            }
        });
    }
    driver.run_loop(|_| false).await?;
    if link.is_some() {
        // Best effort: let the hub acknowledge the last state changes (the outbox keeps them
        // anyway, and the next session sends them), so that the hub sees the final state now.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            match (driver.store.acked_seq(), driver.store.last_seq()) {
                (Ok(a), Ok(l)) if a < l => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                _ => break,
            }
        }
    }
    let _ = link_stop.send(true);
    if let Some(l) = link {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), l).await;
    }
    let _ = std::fs::remove_file(&cfg.socket);
    tracing::info!("outpost-agent stopped; state committed");
    Ok(())
}

/// Wait for SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {},
                _ = i.recv() => {},
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

fn bind_socket(cfg: &AgentConfig) -> anyhow::Result<UnixListener> {
    if let Some(dir) = cfg.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A stale socket from a previous (killed) agent: replace it, unless an agent answers on it.
    if cfg.socket.exists() {
        if std::os::unix::net::UnixStream::connect(&cfg.socket).is_ok() {
            anyhow::bail!(
                "another agent is already serving on {}",
                cfg.socket.display()
            );
        }
        std::fs::remove_file(&cfg.socket)
            .with_context(|| format!("removing stale socket {}", cfg.socket.display()))?;
    }
    let l = UnixListener::bind(&cfg.socket)
        .with_context(|| format!("binding control socket {}", cfg.socket.display()))?;
    std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", cfg.socket.display()))?;
    Ok(l)
}

/// Answer control requests until one enrolls this agent (`None`: SIGTERM/SIGINT came first).
/// One connection at a time: nothing else runs yet.
async fn wait_for_enrollment(
    listener: &UnixListener,
    store: &Arc<Store>,
) -> Option<crate::identity::Identity> {
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        let stream = tokio::select! {
            () = &mut signal => return None,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (r, mut w) = stream.into_split();
        let mut reader = BufReader::new(r);
        let mut line = String::new();
        let n = match (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(n) => n,
            Err(_) => continue,
        };
        if n == 0 || n > MAX_REQUEST_BYTES {
            continue;
        }
        let (resp, enrolled) = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(req) => crate::enroll::answer(store, req).await,
            Err(e) => (
                Response::Error {
                    message: format!("bad request: {e}"),
                },
                None,
            ),
        };
        let _ = write_resp(&mut w, &resp).await;
        if let Some(id) = enrolled {
            tracing::info!(agent = %id.agent_id, "enrolled through the control socket");
            return Some(id);
        }
    }
}

async fn accept_loop(listener: UnixListener, tx: mpsc::UnboundedSender<Event>, store: Arc<Store>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle_conn(stream, tx.clone(), store.clone()));
            }
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection: request lines in, response lines out. A bad line gets an error response; an
/// oversized one drops the connection. Never the process.
async fn handle_conn(stream: UnixStream, tx: mpsc::UnboundedSender<Event>, store: Arc<Store>) {
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        if n > MAX_REQUEST_BYTES {
            let _ = write_resp(
                &mut w,
                &Response::Error {
                    message: "request too large".into(),
                },
            )
            .await;
            return;
        }
        let resp = match serde_json::from_str::<Request>(line.trim_end()) {
            // Enrolled already (or not configured for a hub): the daemon answers itself.
            Ok(req @ Request::Enroll { .. }) => crate::enroll::answer_enrolled(&store, &req),
            Ok(req) => {
                let (otx, orx) = oneshot::channel();
                if tx.send(Event::Control(req, otx)).is_err() {
                    Response::Error {
                        message: "the agent is shutting down".into(),
                    }
                } else {
                    orx.await.unwrap_or(Response::Error {
                        message: "the agent is shutting down".into(),
                    })
                }
            }
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        };
        if write_resp(&mut w, &resp).await.is_err() {
            return;
        }
    }
}

async fn write_resp(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut s = serde_json::to_string(r).map_err(std::io::Error::other)?;
    s.push('\n');
    w.write_all(s.as_bytes()).await
}

use tokio::io::AsyncReadExt as _;
