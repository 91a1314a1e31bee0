//! `outpost-hub serve`: open the hub (failing closed on any missing file), serve the HTTP API
//! until SIGINT/SIGTERM, then shut down gracefully (in-flight requests finish; every
//! acknowledged write is already committed in redb).
//!
//! The HTTP API binds to loopback by default and then speaks plain HTTP. On any other address
//! it speaks only HTTPS (rustls, ring) with the hub's server certificate (`tls.cert`/`tls.key`,
//! issued by the hub CA; `init --san` adds the names and addresses clients use); there is no
//! plaintext mode off loopback.
//!
//! The QUIC agent endpoint is started by the session driver (`quic.rs`): it gets
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

/// Threads of the runtime's blocking pool. Every store call of every agent session runs there;
/// with thousands of sessions the default cap (512) filled up whenever they waited on a commit,
/// and each thread's allocator heap added to the hub's memory (docs/BENCHMARKS.md, "10,000
/// agents per hub"). The store's group commit batches as well with 64 waiting writers.
pub const MAX_BLOCKING_THREADS: usize = 64;

/// The hub's async runtime (`serve` and `dev`).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
}

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
    /// Whether the API speaks HTTPS.
    pub tls: bool,
    /// The configuration (QUIC address, keep-alive, idle timeout, offline_after, TLS files).
    pub config: HubConfig,
}

/// The TLS acceptor for the HTTP API from the hub's certificate chain and key (PEM).
pub fn tls_acceptor(config: &HubConfig) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("hub certificate {}: {e}", config.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "hub certificate {} holds no certificate",
            config.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| anyhow::anyhow!("hub key {}: {e}", config.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("hub certificate and key do not match")?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
}

/// Serve until `shutdown` completes. `on_ready` is called once the API listens.
pub async fn run(
    config: HubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Served),
) -> anyhow::Result<()> {
    // Without the `ha` feature a hub.toml with `[ha]` is refused: a replica that silently ran
    // everything as if alone would be a second leader.
    if config.ha.is_some() && !cfg!(feature = "ha") {
        anyhow::bail!(
            "hub.toml has [ha], but this outpost-hub was built without HA: build it with \
             `cargo build --release -p outpost-hub --features ha` (needs protoc)"
        );
    }
    let (hub, connections) = Hub::open(&config, COMMAND_TIMEOUT)?;
    // HA mode with a shared run history: attached before any agent session can ingest.
    #[cfg(feature = "ha")]
    if let Some(pg) = config.ha.as_ref().and_then(|h| h.postgres.as_deref()) {
        attach_history(&hub, pg).await?;
    }
    // Alert rules name configured channels: checked before anything starts.
    let alert_setup = {
        let channels = hub.channels().clone();
        crate::alerts::config::check_rule_channels(&config.rules, &channels)
            .map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
        std::sync::Arc::new(crate::alerts::AlertSetup {
            rules: config.rules.clone(),
            channels,
            settings: outpost_alerts::Settings {
                delayed_after_ms: i64::try_from(config.alert_delayed_after.as_millis())
                    .unwrap_or(i64::MAX),
                ..Default::default()
            },
            started_ms: crate::hub::now_ms(),
        })
    };
    adopt_first_admin(&hub, &config)?;
    let tls = if config.http_listen.ip().is_loopback() {
        None
    } else {
        Some(tls_acceptor(&config)?)
    };
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    let served = Served {
        hub: hub.clone(),
        connections,
        http_addr,
        tls: tls.is_some(),
        config: config.clone(),
    };
    on_ready(&served);
    // The QUIC endpoint for agents runs beside the API and stops with it.
    let (quic_stop, quic_stop_rx) = tokio::sync::watch::channel(false);
    let _quic = {
        let (hub, conns, config) = (hub.clone(), served.connections.clone(), config.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::quic::serve(hub, conns, &config, quic_stop_rx).await {
                tracing::error!("QUIC endpoint: {e:#}");
            }
        })
    };
    // HA mode: take part in the election on etcd; what must run once runs only while leading
    // (docs/operations.md, "High availability").
    #[cfg(feature = "ha")]
    if let Some(ha) = &config.ha {
        start_election(&hub, ha, quic_stop.subscribe());
    }
    let _leader_tasks = {
        let (hub, config) = (hub.clone(), config.clone());
        let gate = hub.leader().clone();
        tokio::spawn(crate::ha::leader_tasks(
            gate,
            Box::new(move |term| leader_term(&hub, &config, &alert_setup, term)),
            quic_stop.subscribe(),
        ))
    };
    // Every replica writes its own sessions' observations.
    let _observations = tokio::spawn(flush_observations(
        hub.clone(),
        OBSERVATIONS_FLUSH_EVERY,
        quic_stop.subscribe(),
    ));
    let shutdown = async move {
        shutdown.await;
        let _ = quic_stop.send(true);
    };
    // The operators' API and the web console (docs/console.md) on one listener.
    let app =
        crate::api::router(hub.clone()).merge(crate::console::router(hub.clone(), tls.is_some()));
    match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP API failed")?,
        Some(acceptor) => serve_tls(listener, acceptor, app, shutdown).await,
    }
    // The last contacts of the sessions that ended with the QUIC endpoint.
    let h = hub.clone();
    match tokio::task::spawn_blocking(move || h.flush_observations()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("writing the agents' last contacts at shutdown: {e}"),
        Err(e) => tracing::warn!("writing the agents' last contacts at shutdown: {e}"),
    }
    tracing::info!("hub stopped");
    Ok(())
}

/// What runs once per hub, on the leader, for one term (until `term` flips): the rollout
/// driver, missed-firing evaluation, alert evaluation and delivery, retention.
fn leader_term(
    hub: &Arc<Hub>,
    config: &HubConfig,
    alert_setup: &Arc<crate::alerts::AlertSetup>,
    term: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(crate::rollouts::drive(hub.clone(), term.clone())),
        tokio::spawn(crate::firings::drive(
            hub.clone(),
            crate::firings::watch::WatchConfig {
                grace_ms: i64::try_from(config.firing_grace.as_millis()).unwrap_or(i64::MAX),
                ..Default::default()
            },
            term.clone(),
        )),
        // The alert driver and its delivery task (docs/operations.md, "Alerts").
        tokio::spawn(crate::alerts::deliver(
            hub.clone(),
            alert_setup.clone(),
            term.clone(),
        )),
        tokio::spawn(crate::alerts::drive(
            hub.clone(),
            alert_setup.clone(),
            term.clone(),
        )),
        tokio::spawn(crate::retention::drive(
            hub.clone(),
            config.retention.clone(),
            term,
        )),
    ]
}

/// Attach the run history the replicas share (`[ha] postgres`; `ha/history.rs`). Its tables
/// are created if missing; while PostgreSQL is out of reach that is tried again every 2 s, and
/// ingest and history reads fail meanwhile (agents keep their status until it is
/// acknowledged).
#[cfg(feature = "ha")]
async fn attach_history(hub: &Arc<Hub>, conninfo: &str) -> anyhow::Result<()> {
    let history =
        Arc::new(crate::ha::history::PgHistory::new(conninfo).map_err(anyhow::Error::msg)?);
    hub.store().set_history(history.clone());
    if let Err(e) = history.migrate().await {
        tracing::warn!("shared run history (PostgreSQL): {e}; trying again every 2 s");
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                match history.migrate().await {
                    Ok(()) => {
                        tracing::info!("shared run history (PostgreSQL) reached");
                        return;
                    }
                    Err(e) => tracing::debug!("shared run history (PostgreSQL): {e}"),
                }
            }
        });
    } else {
        tracing::info!("shared run history: PostgreSQL");
    }
    Ok(())
}

/// Start this replica's part in the leader election on etcd (the `ha` feature).
#[cfg(feature = "ha")]
fn start_election(
    hub: &Arc<Hub>,
    ha: &crate::ha::HaConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    hub.leader().enable_ha();
    hub.leader().set_name(&ha.name);
    tracing::info!(name = %ha.name, etcd = ?ha.etcd, "HA mode: campaigning for leadership on etcd");
    tokio::spawn(crate::ha::etcd::run(
        ha.clone(),
        hub.leader().clone(),
        stop.clone(),
    ));
    // Desired state is etcd's: from here on a write that changes it is published there first
    // (refused while etcd is out of reach), and other replicas' writes arrive by watch.
    let (publisher, driver) = crate::ha::desired::publisher(hub.leader().clone());
    hub.store().set_publisher(publisher);
    let changed: Arc<dyn Fn() + Send + Sync> = {
        let hub = hub.clone();
        Arc::new(move || {
            hub.notify_changed();
            hub.rollout_wake.notify_one();
            hub.alert_wake.notify_one();
        })
    };
    tokio::spawn(crate::ha::desired::run(
        ha.clone(),
        hub.store_arc(),
        driver,
        changed,
        stop.clone(),
    ));
    tokio::spawn(share_agents(hub.clone(), ha.name.clone(), stop));
}

/// HA mode: how often a replica forwards its rollout events and writes its agents' presence.
#[cfg(feature = "ha")]
const SHARE_EVERY: Duration = Duration::from_millis(250);

/// HA mode, on every replica until `stop` flips: move the rollout events and alert inputs of
/// this replica's agents to the replicated queues the leader consumes, and keep the presence
/// records of the agents connected here (`store/presence.rs`). A write refused (another replica wrote first,
/// or etcd is out of reach) is tried again at the next period.
#[cfg(feature = "ha")]
async fn share_agents(hub: Arc<Hub>, name: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let (h, name) = (hub.clone(), name.clone());
        let r = tokio::task::spawn_blocking(move || {
            let moved = h.store().forward_rollout_events(10_000)?;
            let alerts = h.store().forward_alert_inputs(10_000)?;
            if alerts > 0 {
                h.alert_wake.notify_one();
            }
            let mut connected = std::collections::HashMap::new();
            for (id, since) in h.gateway().connected() {
                if let Ok(a) = h.store().agent(&id) {
                    connected.insert(id, (since, a.active));
                }
            }
            let present = h.store().sync_presence(&name, &connected)?;
            if moved > 0 || present > 0 {
                h.rollout_wake.notify_one();
            }
            Ok::<_, crate::store::StoreError>((moved + alerts, present))
        })
        .await;
        match r {
            Ok(Ok((moved, present))) if moved + present > 0 => {
                tracing::debug!(moved, present, "shared rollout events and presence");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "sharing rollout events and presence: next period")
            }
            Err(e) => tracing::warn!(error = %e, "sharing rollout events and presence"),
        }
    }
}

/// How often the agents' last contacts and clock offsets are written (`store/observations.rs`):
/// what a crash of the hub may lose of them.
const OBSERVATIONS_FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Every `every`, and once when `stop` flips: write the agents' pending observations (last
/// contact, clock offset) in one batch.
async fn flush_observations(
    hub: Arc<Hub>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let h = hub.clone();
        match tokio::task::spawn_blocking(move || h.flush_observations()).await {
            Ok(Ok(n)) => tracing::debug!(records = n, "wrote the agents' observations"),
            Ok(Err(e)) => {
                tracing::warn!("writing the agents' last contacts and clock offsets: {e}")
            }
            Err(e) => tracing::warn!("writing the agents' last contacts and clock offsets: {e}"),
        }
        if last {
            return;
        }
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` over TLS (HTTP/1.1) until `shutdown`, then let in-flight requests finish.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                let mut stop = stop_rx.clone();
                tasks.spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
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

/// A store with no operator (one from before operator credentials) gets its first admin, whose
/// credential replaces the shared API token in `api_token_file`, where the CLI reads it: the
/// old shared token is no longer accepted.
fn adopt_first_admin(hub: &Hub, config: &HubConfig) -> anyhow::Result<()> {
    if let Some(credential) = hub.bootstrap_admin(crate::init::FIRST_ADMIN)? {
        crate::init::write_credential(&config.api_token_file, &credential)?;
        tracing::warn!(
            file = %config.api_token_file.display(),
            "no operator credential in the store: made the first admin {:?}, whose credential \
             replaces the shared API token in the token file",
            crate::init::FIRST_ADMIN
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{Role, Store};

    /// A store from before operator credentials (none in it) and its shared API token: serving
    /// it makes the first admin and puts its credential where the token was; the old token no
    /// longer authenticates; a second start changes nothing.
    #[test]
    fn an_older_hub_gets_its_first_admin_in_the_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = HubConfig::defaults(dir.path());
        let legacy = "0123456789abcdef".repeat(4);
        std::fs::write(&config.api_token_file, format!("{legacy}\n")).unwrap();
        let store = Arc::new(Store::open(&config.store_path()).unwrap());
        let key = || outpost_common::trust::SigningKey::generate().unwrap().0;
        let director = key();
        crate::init::publish_first_root(
            &store,
            &[key()],
            &[key()],
            &director,
            crate::init::KeyPlan::default(),
            crate::clock::now_ms(),
        )
        .unwrap();
        let hub = Hub::new(
            store.clone(),
            Arc::new(outpost_common::trust::Director::new(director)),
            None,
            Arc::new(outpost_net::pki::Ca::generate("hub CA").unwrap()),
            Connections::new(Duration::from_secs(1)),
            "hub",
        )
        .unwrap();
        adopt_first_admin(&hub, &config).unwrap();
        let credential = config.read_api_token().unwrap();
        let admin = store.authenticate_operator(&credential).unwrap().unwrap();
        assert_eq!((admin.name.as_str(), admin.role), ("admin", Role::Admin));
        assert_eq!(store.authenticate_operator(&legacy).unwrap(), None);
        adopt_first_admin(&hub, &config).unwrap();
        assert_eq!(config.read_api_token().unwrap(), credential);
        assert_eq!(store.operators().unwrap().len(), 1);
    }
}
