//! A load generator that plays many agents against a real `outpost-hub` from one process.
//!
//! Every played agent is a real agent as far as the hub can tell: it enrolled through the real
//! enrollment (a bootstrap token from the hub API, a key pair and CSR made here, the CA pinned by
//! the token's hash), and each session is a real QUIC connection with mutual TLS running
//! [`outpost_common::sync::AgentSession`] (the same sans-IO session the real agent drives).
//! What it does not do is run processes: a `Deploy` is verified with
//! [`outpost_common::sign::check_deploy`] (signatures, agent, epoch, hash, anti-rollback) and
//! "activated" in memory, and answered with a `DeployResult`. Status comes from synthetic
//! outboxes: backlogs of `RunRecord`/`TaskInstanceRecord` snapshots added on demand
//! ([`Fleet::add_backlog`]), and optionally synthetic runs of each active version at a steady
//! rate ([`FleetConfig::run_every`], for the rollout benchmark).
//!
//! Everything runs on one tokio runtime: per agent, one lightweight task for the session and
//! one reading frames (frames are read in their own task because reading a frame is not
//! cancel-safe). Agents share a configurable number of client UDP sockets (quinn endpoints).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use outpost_common::proto::{self, ActiveWorkflow, EnrollRequest, EnrollResponse, Rejection};
use outpost_common::record::{
    AttemptOutcome, AttemptRecord, LimitsMode, OutboxEntry, RunKind, RunRecord, RunState,
    StatusEvent, TaskInstanceRecord, TaskState,
};
use outpost_common::sync::{AgentEvent, AgentSession, AgentSessionConfig};
use outpost_common::trust::{SignedRoot, Trust, WorkflowTrustState};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

/// The software version played agents report.
pub const LOADGEN_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-loadgen");

/// The workflow name of backlog events when the agent has no active workflow.
pub const BACKLOG_WORKFLOW: &str = "loadgen-backlog";

/// A played agent's identity, as enrollment returned it (kept in memory or in a state file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    /// The agent id the hub chose.
    pub agent_id: String,
    /// The agent's private key (PKCS#8 DER, hex in the state file).
    #[serde(with = "hex_bytes")]
    pub key_pkcs8: Vec<u8>,
    /// The certificate the hub issued (DER).
    #[serde(with = "hex_bytes")]
    pub cert_der: Vec<u8>,
    /// The hub CA (DER).
    #[serde(with = "hex_bytes")]
    pub ca_der: Vec<u8>,
    /// The hub's TLS name.
    pub hub_name: String,
    /// The fleet's root metadata as enrollment returned it (CBOR of the signed root).
    #[serde(with = "hex_bytes")]
    pub root: Vec<u8>,
    /// Labels the hub recorded.
    pub labels: Vec<(String, String)>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// The loadgen's state file: identities of enrolled played agents, reusable across runs
/// against the same hub.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateFile {
    /// The hub's QUIC address the agents enrolled with.
    pub hub: String,
    /// The agents.
    pub agents: Vec<Identity>,
}

impl StateFile {
    /// Read a state file (absent: empty).
    pub fn load(path: &Path) -> anyhow::Result<StateFile> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is not a loadgen state file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Write it (mode 0600: it holds private keys), atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// Raise the soft limit of open files to the hard limit (1,000 connections need more than the
/// usual 1,024 when agents get their own sockets). Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Create `n` single-use bootstrap tokens through the hub's HTTP API (`POST /v1/tokens`).
/// Blocking (ureq): call it outside the runtime or in `spawn_blocking`.
pub fn create_tokens(
    http_url: &str,
    api_token: &str,
    n: usize,
    labels: &[(String, String)],
) -> anyhow::Result<Vec<String>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("{}/v1/tokens", http_url.trim_end_matches('/'));
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let body = serde_json::json!({ "labels": labels, "ttl": "1h" });
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut resp = agent
            .post(&url)
            .header("Authorization", &format!("Bearer {api_token}"))
            .send_json(&body)
            .with_context(|| format!("POST {url}"))?;
        let v: serde_json::Value = resp.body_mut().read_json()?;
        let t = v["token"]
            .as_str()
            .with_context(|| format!("POST {url}: no token in {v}"))?;
        out.push(t.to_string());
    }
    Ok(out)
}

/// `opt2.<id>.<secret>.<ca sha256 hex>.<hub name>` (or the older `opt1.` form without the hub
/// name) → (credential `id.secret`, CA hash).
pub fn parse_token(t: &str) -> anyhow::Result<(String, String)> {
    let parts: Vec<&str> = t.trim().splitn(5, '.').collect();
    match parts.as_slice() {
        ["opt1", id, secret, ca] | ["opt2", id, secret, ca, _] if ca.len() == 64 => {
            Ok((format!("{id}.{secret}"), ca.to_ascii_lowercase()))
        }
        _ => bail!("malformed bootstrap token (expected opt2.<id>.<secret>.<64 hex>.<hub name>)"),
    }
}

fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    }
}

/// Enroll one played agent over `endpoint`: key pair and CSR made here, CA pinned by the token.
pub async fn enroll_one(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    hub_name: &str,
    token: &str,
    labels: Vec<(String, String)>,
    hostname: &str,
) -> anyhow::Result<Identity> {
    let (credential, ca_sha) = parse_token(token)?;
    let (key_pkcs8, csr_der) = outpost_net::pki::generate_agent_key_and_csr()?;
    let (tls, _seen) = outpost_net::tls::client_enroll_config(&ca_sha)?;
    let qcfg = outpost_net::tls::quinn_client_config(tls, outpost_net::tls::Transport::default())?;
    let conn =
        outpost_net::endpoint::connect(endpoint, addr, hub_name, qcfg, Duration::from_secs(30))
            .await
            .with_context(|| format!("enrollment connection to {addr}"))?;
    let (mut send, mut recv) = outpost_net::stream::open_bi(&conn).await?;
    send.send(&EnrollRequest {
        token: credential,
        csr_der,
        labels,
        hostname: hostname.to_string(),
        software_version: LOADGEN_VERSION.to_string(),
        name: None,
    })
    .await?;
    let resp: EnrollResponse = recv
        .recv()
        .await?
        .context("the hub closed the enrollment stream without answering")?;
    conn.close(0u32.into(), b"enrolled");
    match resp {
        EnrollResponse::Refused { reason } => bail!("the hub refused enrollment: {reason}"),
        EnrollResponse::Ok {
            agent_id,
            cert_der,
            ca_der,
            hub_name,
            root,
            labels,
            ..
        } => {
            if outpost_net::pki::sha256_hex(&ca_der) != ca_sha {
                bail!("the hub returned a CA that is not the one pinned by the token");
            }
            Ok(Identity {
                agent_id,
                key_pkcs8,
                cert_der,
                ca_der,
                hub_name,
                root: minicbor::to_vec(&root)?,
                labels,
            })
        }
    }
}

/// Enroll one agent per token, `concurrency` at a time, over one shared client endpoint.
pub async fn enroll_many(
    addr: SocketAddr,
    hub_name: &str,
    tokens: Vec<String>,
    labels: Vec<(String, String)>,
    concurrency: usize,
) -> anyhow::Result<Vec<Identity>> {
    let endpoint = outpost_net::endpoint::client_endpoint(unspecified_for(addr))?;
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.into_iter().enumerate() {
        let (ep, sem, labels, name) = (
            endpoint.clone(),
            sem.clone(),
            labels.clone(),
            hub_name.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await?;
            enroll_one(&ep, addr, &name, &token, labels, &format!("loadgen-{i}")).await
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await??);
    }
    endpoint.wait_idle().await;
    Ok(out)
}

/// How the played fleet behaves.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The hub's QUIC address.
    pub addr: SocketAddr,
    /// Client UDP sockets (quinn endpoints) the agents are spread over (at least 1; one per
    /// agent is the most realistic and costs one file descriptor each).
    pub sockets: usize,
    /// Connections opened at once while starting (the rest wait their turn).
    pub connect_concurrency: usize,
    /// Synthetic runs: each agent completes one run of each active workflow version this often
    /// (`None`: no runs). Phases are spread at random.
    pub run_every: Option<Duration>,
    /// Fraction (0..=1) of synthetic runs that fail.
    pub fail_rate: f64,
    /// Task instances reported per synthetic run (each is one more status event).
    pub tasks_per_run: u32,
    /// Reconnect backoff cap (the real agent: 30 s).
    pub backoff_cap: Duration,
    /// QUIC keep-alive and idle timeout (as the real agent: `[hub] keep_alive`'s default, 15 s).
    pub transport: outpost_net::tls::Transport,
    /// Further replicas of the hub: agent `i` starts at the `i mod n`-th of `addr` and these,
    /// and moves to the next after a session ends in failure, as a real agent moves through
    /// the replicas its hub lists.
    pub replicas: Vec<SocketAddr>,
}

impl FleetConfig {
    /// Defaults for `addr`: one socket per 8 agents is decided by the caller; here 16 sockets,
    /// 64 handshakes at once, no runs, the real agent's transport.
    pub fn new(addr: SocketAddr) -> FleetConfig {
        FleetConfig {
            addr,
            sockets: 16,
            connect_concurrency: 64,
            run_every: None,
            fail_rate: 0.0,
            tasks_per_run: 1,
            backoff_cap: Duration::from_secs(30),
            transport: outpost_net::tls::Transport::default(),
            replicas: Vec::new(),
        }
    }

    /// The `k`-th hub address (`addr`, then `replicas`, round).
    fn hub_addr(&self, k: usize) -> SocketAddr {
        match k % (1 + self.replicas.len()) {
            0 => self.addr,
            r => self.replicas[r - 1],
        }
    }
}

/// What played agents report to the fleet's owner.
#[derive(Debug, Clone)]
pub enum Report {
    /// A session got its Welcome.
    Welcomed { agent: usize, at: Instant },
    /// A deploy passed `check_deploy` and was activated (`version` 0: removal).
    Activated {
        agent: usize,
        workflow: String,
        version: u64,
        at: Instant,
    },
    /// A deploy was rejected.
    Rejected {
        agent: usize,
        workflow: String,
        version: u64,
        reason: String,
    },
    /// The hub acknowledged everything in the agent's outbox (up to `seq`).
    Drained { agent: usize, seq: u64, at: Instant },
    /// A synthetic run was added to the outbox.
    Ran {
        agent: usize,
        workflow: String,
        version: u64,
        ok: bool,
    },
    /// A session ended (it reconnects unless the fleet stops).
    Disconnected { agent: usize, reason: String },
}

enum Ctl {
    /// Add this many synthetic status events to the outbox.
    Backlog(usize),
}

/// A running fleet of played agents.
pub struct Fleet {
    ctl: Vec<mpsc::UnboundedSender<Ctl>>,
    /// Reports from every agent, in arrival order.
    pub reports: mpsc::UnboundedReceiver<Report>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    endpoints: Vec<quinn::Endpoint>,
}

impl Fleet {
    /// Start one task per identity; each connects (at most `connect_concurrency` handshakes at
    /// once) and keeps a session up, reconnecting with backoff. Call inside a tokio runtime.
    pub fn start(cfg: FleetConfig, ids: Vec<Identity>) -> anyhow::Result<Fleet> {
        let cfg = Arc::new(cfg);
        let mut endpoints = Vec::new();
        for _ in 0..cfg.sockets.clamp(1, ids.len().max(1)) {
            endpoints.push(outpost_net::endpoint::client_endpoint(unspecified_for(
                cfg.addr,
            ))?);
        }
        let (report_tx, reports) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let gate = Arc::new(tokio::sync::Semaphore::new(cfg.connect_concurrency.max(1)));
        let mut ctl = Vec::with_capacity(ids.len());
        let mut tasks = Vec::with_capacity(ids.len());
        for (i, id) in ids.into_iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            ctl.push(tx);
            let root: SignedRoot = minicbor::decode(&id.root)
                .map_err(|e| anyhow::anyhow!("agent {}: root metadata: {e}", id.agent_id))?;
            let trust = Trust::new(root)
                .map_err(|e| anyhow::anyhow!("agent {}: root metadata: {e}", id.agent_id))?;
            let tls = outpost_net::tls::client_session_config(
                &id.ca_der,
                std::slice::from_ref(&id.cert_der),
                &id.key_pkcs8,
            )?;
            let qcfg = outpost_net::tls::quinn_client_config(tls, cfg.transport)?;
            let agent = Played {
                index: i,
                replica: i,
                id,
                trust,
                qcfg,
                endpoint: endpoints[i % endpoints.len()].clone(),
                workflows: HashMap::new(),
                outbox: VecDeque::new(),
                acked: 0,
                last_seq: 0,
                runs_made: 0,
                reports: report_tx.clone(),
            };
            tasks.push(tokio::spawn(agent.run(
                cfg.clone(),
                rx,
                stop_rx.clone(),
                gate.clone(),
            )));
        }
        Ok(Fleet {
            ctl,
            reports,
            stop,
            tasks,
            endpoints,
        })
    }

    /// Number of played agents.
    pub fn len(&self) -> usize {
        self.ctl.len()
    }

    /// Whether the fleet plays no agent.
    pub fn is_empty(&self) -> bool {
        self.ctl.is_empty()
    }

    /// Add `events` synthetic status events to agent `agent`'s outbox (runs of its active
    /// workflow, or of [`BACKLOG_WORKFLOW`]: one `Run` and `tasks_per_run` `Task` snapshots per
    /// run). They are sent whenever the agent is connected.
    pub fn add_backlog(&self, agent: usize, events: usize) {
        if let Some(c) = self.ctl.get(agent) {
            let _ = c.send(Ctl::Backlog(events));
        }
    }

    /// [`Fleet::add_backlog`] for every agent.
    pub fn add_backlog_all(&self, events: usize) {
        for c in &self.ctl {
            let _ = c.send(Ctl::Backlog(events));
        }
    }

    /// Close every session and wait for the tasks to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        for e in &self.endpoints {
            e.close(0u32.into(), b"loadgen stopping");
        }
        for e in &self.endpoints {
            let _ = tokio::time::timeout(Duration::from_secs(2), e.wait_idle()).await;
        }
    }
}

#[derive(Debug, Clone, Default)]
struct WfState {
    trust: WorkflowTrustState,
    active: u64,
    paused: bool,
}

struct Played {
    index: usize,
    /// The replica it connects to next ([`FleetConfig::hub_addr`]).
    replica: usize,
    id: Identity,
    trust: Trust,
    qcfg: quinn::ClientConfig,
    endpoint: quinn::Endpoint,
    workflows: HashMap<String, WfState>,
    /// Entries not yet acknowledged by the hub.
    outbox: VecDeque<OutboxEntry>,
    acked: u64,
    last_seq: u64,
    runs_made: u64,
    reports: mpsc::UnboundedSender<Report>,
}

impl Played {
    async fn run(
        mut self,
        cfg: Arc<FleetConfig>,
        mut ctl: mpsc::UnboundedReceiver<Ctl>,
        mut stop: watch::Receiver<bool>,
        gate: Arc<tokio::sync::Semaphore>,
    ) {
        let backoff = outpost_net::backoff::Backoff {
            base: Duration::from_millis(200),
            cap: cfg.backoff_cap,
        };
        let mut failures: u32 = 0;
        loop {
            if *stop.borrow() {
                return;
            }
            let started = Instant::now();
            match self
                .session(&cfg, &mut ctl, &mut stop, &gate, &mut failures)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    let _ = self.reports.send(Report::Disconnected {
                        agent: self.index,
                        reason: format!("{e:#}"),
                    });
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                failures = 0;
            }
            self.replica += 1;
            failures = failures.saturating_add(1);
            let delay = backoff.delay(failures, rand::random::<f64>());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn push_event(&mut self, event: StatusEvent) {
        self.last_seq += 1;
        self.outbox.push_back(OutboxEntry {
            seq: self.last_seq,
            event,
        });
    }

    /// One synthetic run of `workflow`@`version`: its task snapshots, then the terminal run.
    /// Returns the number of events added.
    fn synth_run(&mut self, workflow: &str, version: u64, ok: bool, tasks: u32) -> usize {
        self.runs_made += 1;
        let now = chrono::Utc::now().timestamp_millis();
        // Distinct, stable run ids: the scheduled instant is a per-agent counter of seconds
        // after a fixed epoch (2026-01-01), so a rerun of the loadgen does not collide either.
        let scheduled = 1_767_225_600_000 + (self.runs_made as i64) * 1000 + (now % 1000);
        let run_id =
            outpost_common::record::run_id(workflow, version, scheduled, RunKind::Scheduled);
        let state = if ok {
            RunState::Succeeded
        } else {
            RunState::Failed
        };
        for t in 0..tasks {
            self.push_event(StatusEvent::Task(TaskInstanceRecord {
                run_id: run_id.clone(),
                task_id: format!("task{t}"),
                state: if ok {
                    TaskState::Succeeded
                } else {
                    TaskState::Failed
                },
                attempts: vec![AttemptRecord {
                    attempt: 1,
                    started_ms: now - 50,
                    ended_ms: Some(now),
                    pid: Some(4242),
                    outcome: Some(AttemptOutcome::Exited(if ok { 0 } else { 1 })),
                    limits: LimitsMode::None,
                    reason: None,
                    log_path: None,
                    dispatched_ms: None,
                }],
                outputs: vec![],
                retry_at_ms: None,
                updated_ms: now,
            }));
        }
        self.push_event(StatusEvent::Run(RunRecord {
            run_id,
            workflow: workflow.to_string(),
            version,
            kind: RunKind::Scheduled,
            scheduled_ms: scheduled,
            state,
            params: vec![],
            created_ms: now - 60,
            started_ms: Some(now - 55),
            ended_ms: Some(now),
            agent_id: Some(self.id.agent_id.clone()),
            skip_reason: None,
        }));
        tasks as usize + 1
    }

    fn add_backlog(&mut self, events: usize) {
        let (wf, v) = self
            .workflows
            .iter()
            .filter(|(_, s)| s.active > 0)
            .map(|(w, s)| (w.clone(), s.active))
            .next()
            .unwrap_or_else(|| (BACKLOG_WORKFLOW.to_string(), 1));
        let mut added = 0;
        while added < events {
            // One Run and one Task per backlog run (the last run may be a bare Run).
            let tasks = if events - added >= 2 { 1 } else { 0 };
            added += self.synth_run(&wf, v, true, tasks);
        }
    }

    fn active(&self) -> Vec<ActiveWorkflow> {
        let mut v: Vec<ActiveWorkflow> = self
            .workflows
            .iter()
            .filter(|(_, s)| s.active > 0)
            .map(|(w, s)| ActiveWorkflow {
                workflow: w.clone(),
                version: s.active,
                epoch: s.trust.last_epoch,
                paused: s.paused,
                highest_version: None,
            })
            .collect();
        v.sort_by(|a, b| a.workflow.cmp(&b.workflow));
        v
    }

    /// One connection's life: `Ok(())` only when the fleet stops.
    async fn session(
        &mut self,
        cfg: &FleetConfig,
        ctl: &mut mpsc::UnboundedReceiver<Ctl>,
        stop: &mut watch::Receiver<bool>,
        gate: &tokio::sync::Semaphore,
        failures: &mut u32,
    ) -> anyhow::Result<()> {
        let conn = {
            let _permit = gate.acquire().await?;
            let addr = cfg.hub_addr(self.replica);
            outpost_net::endpoint::connect(
                &self.endpoint,
                addr,
                &self.id.hub_name,
                self.qcfg.clone(),
                Duration::from_secs(30),
            )
            .await
            .with_context(|| format!("connecting to {addr}"))?
        };
        let (mut send, recv) = outpost_net::stream::open_bi(&conn).await?;
        // Frames are read in their own task: reading one is not cancel-safe.
        let (frames_tx, mut frames) = mpsc::channel::<anyhow::Result<Vec<u8>>>(16);
        let reader = tokio::spawn(async move {
            let mut recv = recv;
            loop {
                let r = match recv.recv_frame().await {
                    Ok(Some(b)) => Ok(b),
                    Ok(None) => Err(anyhow::anyhow!("the hub closed the session stream")),
                    Err(e) => Err(anyhow::Error::from(e)),
                };
                let end = r.is_err();
                if frames_tx.send(r).await.is_err() || end {
                    return;
                }
            }
        });
        let mut sess = AgentSession::new(AgentSessionConfig {
            agent_id: self.id.agent_id.clone(),
            software_version: LOADGEN_VERSION.to_string(),
            labels: self.id.labels.clone(),
            active: self.active(),
            acked_seq: self.acked,
            last_seq: self.last_seq,
            trust: self.trust.clone(),
            session: rand::random::<[u8; proto::SESSION_NONCE_LEN]>().to_vec(),
            window: 4,
            batch: proto::MAX_BATCH,
        });
        // One telemetry report after the Welcome (the hub's /metrics shows every agent's).
        sess.set_telemetry_interval(3_600_000);
        let mut runs = cfg.run_every.map(|every| {
            let phase = every.mul_f64(rand::random::<f64>());
            tokio::time::interval_at(tokio::time::Instant::now() + phase, every)
        });
        let mut drained_reported = false;
        let result: anyhow::Result<()> = async {
            loop {
                while let Some(m) = sess.poll_transmit() {
                    send.send(&m).await?;
                }
                if let Some((after, limit)) = sess.poll_need() {
                    // The outbox holds contiguous seqs from the first unacknowledged one.
                    let skip = self.outbox.front().map_or(0, |f| {
                        usize::try_from(after.saturating_add(1).saturating_sub(f.seq))
                            .unwrap_or(usize::MAX)
                    });
                    let entries: Vec<OutboxEntry> = self
                        .outbox
                        .iter()
                        .skip(skip)
                        .take(limit)
                        .cloned()
                        .collect();
                    sess.handle_entries(entries);
                    continue;
                }
                let mut progressed = false;
                while let Some(ev) = sess.poll_event() {
                    progressed = true;
                    self.handle_event(ev, &mut sess, failures)?;
                }
                if progressed {
                    continue;
                }
                let now = now_ms();
                if sess.telemetry_due(now).is_some_and(|due| due <= now) {
                    sess.send_telemetry(
                        proto::AgentTelemetry {
                            at_ms: now,
                            outbox_pending: self.last_seq.saturating_sub(self.acked),
                            store_bytes: 1 << 20,
                            disk_free_bytes: 1 << 30,
                            disk_total_bytes: 1 << 32,
                            ..Default::default()
                        },
                        now,
                    );
                    continue;
                }
                if sess.is_welcomed() && self.acked >= self.last_seq {
                    if !drained_reported && self.last_seq > 0 {
                        drained_reported = true;
                        let _ = self.reports.send(Report::Drained {
                            agent: self.index,
                            seq: self.acked,
                            at: Instant::now(),
                        });
                    }
                } else {
                    drained_reported = false;
                }
                tokio::select! {
                    f = frames.recv() => {
                        let bytes = f.unwrap_or_else(|| Err(anyhow::anyhow!("reader ended")))?;
                        match outpost_common::frame::decode_hub_msg(&bytes) {
                            Ok(Some(msg)) => sess
                                .handle_hub(msg, now_ms())
                                .map_err(|e| anyhow::anyhow!("protocol error from the hub: {e:?}"))?,
                            Ok(None) => {}
                            Err(e) => bail!("malformed message from the hub: {e}"),
                        }
                    }
                    c = ctl.recv() => match c {
                        Some(Ctl::Backlog(n)) => {
                            self.add_backlog(n);
                            sess.handle_outbox_grew(self.last_seq);
                        }
                        None => return Ok(()),
                    },
                    _ = async {
                        match runs.as_mut() {
                            Some(r) => { r.tick().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => {
                        if sess.is_welcomed() {
                            self.make_runs(cfg);
                            sess.handle_outbox_grew(self.last_seq);
                        }
                    }
                    _ = stop.changed() => {
                        conn.close(0u32.into(), b"agent shutting down");
                        return Ok(());
                    }
                }
            }
        }
        .await;
        reader.abort();
        if result.is_err() {
            conn.close(0u32.into(), b"agent session error");
        }
        result
    }

    fn make_runs(&mut self, cfg: &FleetConfig) {
        let active: Vec<(String, u64)> = self
            .workflows
            .iter()
            .filter(|(_, s)| s.active > 0 && !s.paused)
            .map(|(w, s)| (w.clone(), s.active))
            .collect();
        for (w, v) in active {
            let ok = rand::random::<f64>() >= cfg.fail_rate;
            self.synth_run(&w, v, ok, cfg.tasks_per_run);
            let _ = self.reports.send(Report::Ran {
                agent: self.index,
                workflow: w,
                version: v,
                ok,
            });
        }
    }

    fn handle_event(
        &mut self,
        ev: AgentEvent,
        sess: &mut AgentSession,
        failures: &mut u32,
    ) -> anyhow::Result<()> {
        match ev {
            AgentEvent::Acked(seq) => {
                while self.outbox.front().is_some_and(|e| e.seq <= seq) {
                    self.outbox.pop_front();
                }
                self.acked = self.acked.max(seq);
            }
            AgentEvent::Deploy {
                assignment,
                bundle,
                snapshot,
            } => {
                let (workflow, version, epoch, rejected) =
                    self.deploy(&assignment, bundle.as_ref(), snapshot.as_ref());
                match &rejected {
                    None => {
                        let _ = self.reports.send(Report::Activated {
                            agent: self.index,
                            workflow: workflow.clone(),
                            version,
                            at: Instant::now(),
                        });
                    }
                    Some(r) => {
                        let _ = self.reports.send(Report::Rejected {
                            agent: self.index,
                            workflow: workflow.clone(),
                            version,
                            reason: format!("{r:?}"),
                        });
                    }
                }
                sess.send_deploy_result(workflow, version, epoch, rejected);
            }
            AgentEvent::Command { id, command } => {
                // Played agents run nothing; a trigger or log fetch is answered honestly.
                let message = format!("the load generator does not run commands ({command:?})");
                sess.send_command_result(id, false, message, None);
            }
            AgentEvent::Roots {
                trust,
                reset_counters,
            } => {
                self.trust = trust;
                if reset_counters {
                    for s in self.workflows.values_mut() {
                        s.trust.last_epoch = 0;
                        s.trust.highest_version = 0;
                    }
                }
            }
            AgentEvent::Fresh { .. } => {}
            AgentEvent::Paused(list) => {
                *failures = 0;
                for (w, s) in self.workflows.iter_mut() {
                    s.paused = list.contains(w);
                }
                let _ = self.reports.send(Report::Welcomed {
                    agent: self.index,
                    at: Instant::now(),
                });
            }
            AgentEvent::Goodbye(reason) => bail!("the hub ended the session: {reason}"),
            // Played agents live shorter than their certificates (hub.toml's lifetime).
            AgentEvent::RenewRequired(reason) => {
                bail!("the load generator does not renew certificates: {reason}")
            }
            AgentEvent::Certificate(_) => bail!("a certificate this played agent did not ask for"),
            // Played agents keep the root they were enrolled with, and the hub they play against.
            AgentEvent::CaRoots(_) | AgentEvent::Replicas(_) => {}
            AgentEvent::SeqMismatch { hub_acked, .. } => {
                // The hub holds more than this process knows (a state file reused against a
                // hub that already ingested earlier runs): continue after what it holds.
                self.last_seq = self.last_seq.max(hub_acked);
            }
            AgentEvent::Resend { .. } => {
                // Played agents keep no records to send again.
                sess.handle_resent(self.last_seq);
            }
        }
        Ok(())
    }

    /// Verify and "activate" a deploy: `(workflow, version, epoch, rejection)`.
    fn deploy(
        &mut self,
        assignment: &proto::SignedAssignment,
        bundle: Option<&proto::SignedBundle>,
        snapshot: Option<&proto::Snapshot>,
    ) -> (String, u64, u64, Option<Rejection>) {
        let a: proto::Assignment = match self
            .trust
            .verify_statement(proto::DOMAIN_ASSIGNMENT, assignment)
        {
            Ok(a) => a,
            Err(r) => return (String::new(), 0, 0, Some(r)),
        };
        let state = self.workflows.entry(a.workflow.clone()).or_default();
        match outpost_common::trust::check_deploy(
            &self.id.agent_id,
            &self.trust,
            &state.trust,
            snapshot,
            assignment,
            bundle,
            now_ms(),
        ) {
            Err(r) => (a.workflow, a.version, a.epoch, Some(r)),
            Ok(acc) => {
                let x = acc.assignment;
                state.trust.last_epoch = x.epoch;
                if x.remove {
                    state.active = 0;
                } else {
                    state.trust.highest_version = state.trust.highest_version.max(x.version);
                    if !state.trust.held_versions.contains(&x.version) {
                        state.trust.held_versions.push(x.version);
                    }
                    state.active = x.version;
                }
                (x.workflow, x.version, x.epoch, None)
            }
        }
    }
}

/// Resident memory (VmRSS) of a process in KiB, from `/proc/PID/status`.
pub fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    proc_status(pid, "VmRSS")
}

/// A number from `/proc/PID/status` (`VmRSS`, `VmHWM`: the peak resident set since the process
/// started, in KiB; `Threads`).
pub fn proc_status(pid: u32, field: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} line in /proc/{pid}/status"))
}

/// CPU time (user + system) of a process in seconds, from `/proc/PID/stat` (clock ticks of
/// 100 Hz, the Linux default).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok((ticks(11) + ticks(12)) as f64 / 100.0)
}

/// Parse `k=v,k2=v2` labels.
pub fn parse_labels(s: &str) -> anyhow::Result<Vec<(String, String)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().into(), v.trim().into())),
            _ => bail!("label `{p}`: expected KEY=VALUE"),
        })
        .collect()
}

/// Parse a duration such as `500ms`, `10s`, `2m` (clap value parser).
pub fn parse_dur(s: &str) -> Result<Duration, String> {
    outpost_common::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Tallies of the reports of a fleet, for progress lines and summaries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Agents whose session is (or was last) welcomed and not since disconnected.
    pub connected: usize,
    /// Welcomes received (reconnects included).
    pub welcomes: u64,
    /// Disconnections.
    pub disconnects: u64,
    /// Activations by `workflow@vN`.
    pub activated: std::collections::BTreeMap<String, u64>,
    /// Rejections by reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Synthetic runs made (succeeded, failed).
    pub runs_ok: u64,
    /// Synthetic runs that failed.
    pub runs_failed: u64,
    /// Drained reports.
    pub drained: u64,
    /// The last disconnection reason seen.
    pub last_disconnect: Option<String>,
    #[serde(skip)]
    up: Vec<bool>,
}

impl Tally {
    /// A tally for `n` agents.
    pub fn new(n: usize) -> Tally {
        Tally {
            up: vec![false; n],
            ..Tally::default()
        }
    }

    /// Count one report.
    pub fn add(&mut self, r: &Report) {
        let mut set_up = |agent: usize, v: bool| {
            if let Some(u) = self.up.get_mut(agent)
                && *u != v
            {
                *u = v;
                if v {
                    self.connected += 1;
                } else {
                    self.connected -= 1;
                }
            }
        };
        match r {
            Report::Welcomed { agent, .. } => {
                set_up(*agent, true);
                self.welcomes += 1;
            }
            Report::Disconnected { agent, reason } => {
                set_up(*agent, false);
                self.disconnects += 1;
                self.last_disconnect = Some(reason.clone());
            }
            Report::Activated {
                workflow, version, ..
            } => {
                *self
                    .activated
                    .entry(format!("{workflow}@v{version}"))
                    .or_default() += 1
            }
            Report::Rejected { reason, .. } => {
                *self.rejected.entry(reason.clone()).or_default() += 1
            }
            Report::Ran { ok: true, .. } => self.runs_ok += 1,
            Report::Ran { ok: false, .. } => self.runs_failed += 1,
            Report::Drained { .. } => self.drained += 1,
        }
    }
}

/// Wait for the fleet's reports (each shown to `on`, then counted) until `done(tally)` holds, or
/// fail after `timeout` naming `what` (the benchmark binaries' common wait).
pub async fn until(
    fleet: &mut Fleet,
    tally: &mut Tally,
    timeout: Duration,
    what: &str,
    mut on: impl FnMut(&Report),
    done: impl Fn(&Tally) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(tally) {
        match tokio::time::timeout_at(deadline, fleet.reports.recv()).await {
            Ok(Some(r)) => {
                on(&r);
                tally.add(&r);
            }
            Ok(None) => bail!("the fleet stopped while waiting for {what}"),
            Err(_) => bail!(
                "timed out after {timeout:?} waiting for {what} (tally: {})",
                serde_json::to_string(tally).unwrap_or_default()
            ),
        }
    }
    Ok(())
}

/// Wall-clock milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
