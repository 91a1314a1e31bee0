//! `outpost-hub serve`: open the hub (failing closed on any missing file), serve the HTTP API
//! until SIGINT/SIGTERM, then shut down gracefully (in-flight requests finish; every
//! acknowledged write is already committed in redb).
//!
//! The HTTP API binds to loopback by default. TLS for the HTTP API is not built yet, so a
//! non-loopback `http_listen` is refused (fail closed): reach a remote hub's API through an SSH
//! tunnel or a TLS-terminating reverse proxy on the same host.
//!
//! The QUIC agent endpoint is started by the session driver (plugged in by the lead): it gets
//! [`Served::hub`] (desired state, enrollment, store, change notifications) and
//! [`Served::connections`] (to register sessions).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::HubConfig;
use crate::gateway::Connections;
use crate::hub::Hub;

/// How long a command to an agent waits for its answer.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running hub's shared parts.
#[derive(Debug, Clone)]
pub struct Served {
    /// The hub state.
    pub hub: Arc<Hub>,
    /// The live-session registry.
    pub connections: Arc<Connections>,
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
}

/// Refuse configurations the HTTP API cannot serve safely.
pub fn check_http_listen(config: &HubConfig) -> anyhow::Result<()> {
    if !config.http_listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to start: http_listen {} is not a loopback address and this build serves \
             the HTTP API without TLS; bind it to 127.0.0.1 and use an SSH tunnel or a TLS \
             reverse proxy",
            config.http_listen
        );
    }
    Ok(())
}

/// Serve until `shutdown` completes. `on_ready` is called once the API listens.
pub async fn run(
    config: HubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Served),
) -> anyhow::Result<()> {
    check_http_listen(&config)?;
    let token = config.read_api_token()?;
    let (hub, connections) = Hub::open(&config, COMMAND_TIMEOUT)?;
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    let served = Served {
        hub: hub.clone(),
        connections,
        http_addr,
    };
    on_ready(&served);
    axum::serve(listener, crate::api::router(hub, &token))
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP API failed")?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
