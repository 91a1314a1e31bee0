//! The hub's side of a session.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::proto::{
    AckBody, ActiveWorkflow, AgentMsg, AgentTelemetry, Command, CommandBody, HubMsg, MAX_BATCH,
    Rejection, SignedAssignment, SignedBundle, Snapshot, SnapshotEntry,
};
use crate::record::{OutboxEntry, UnixMillis};
use crate::trust::{Director, SignedRoot};

use super::SyncError;

/// The desired state of one workflow on this agent, computed by the hub driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub workflow: String,
    /// 0 for a removal (as in the assignment).
    pub version: u64,
    pub epoch: u64,
    /// blake3 hex of the version's content (empty for a removal).
    pub content_hash: String,
    pub assignment: SignedAssignment,
    /// `None` when the agent holds the version already (or for a removal).
    pub bundle: Option<SignedBundle>,
}

/// The next assignment epoch for one (agent, workflow): above the last one this hub issued AND
/// above the highest the agent reports having accepted (`Hello.active`, deploy results). The
/// two differ only when the hub's store went back in time (restored from an older backup): the
/// agent would refuse an epoch at or below its own as a replay, so the hub continues above it
/// and never issues a number twice.
pub fn next_epoch(last_issued: u64, agent_accepted: u64) -> u64 {
    last_issued.max(agent_accepted).saturating_add(1)
}

/// Whether the last assignment issued for (agent, workflow) is behind what the agent accepted
/// (a restored hub store): it must not be sent again; a new one is minted with [`next_epoch`].
pub fn issued_is_stale(last_issued: u64, agent_accepted: u64) -> bool {
    last_issued < agent_accepted
}

/// The number of a workflow's next version: above the hub's latest AND above the highest any
/// agent reports having accepted (after a restore from an older backup the agents may hold
/// versions this hub no longer knows; reusing one of those numbers would be refused as stale or
/// collide with different content).
pub fn next_version(latest: u64, agents_highest: u64) -> u64 {
    latest.max(agents_highest).saturating_add(1)
}

/// The largest `Deploy` frame body a version's signed bundle can make: the bundle with the
/// largest assignment the hub issues around it (every optional field set, numbers at their
/// widest, a 64-byte agent id and rollout id), with room for `release_signatures` release
/// signatures beyond those the bundle carries. A version above [`crate::proto::MAX_FRAME`] can
/// never be delivered and is refused when applied.
pub fn deploy_frame_len(bundle: &SignedBundle, release_signatures: usize) -> usize {
    let mut bundle = bundle.clone();
    for _ in 0..release_signatures {
        bundle.release.push(crate::trust::Signature {
            key_id: "f".repeat(16),
            sig: vec![0; 64],
        });
    }
    let header: Option<crate::proto::BundleHeader> = minicbor::decode(&bundle.header_bytes).ok();
    let (workflow, content_hash) = header
        .map(|h| (h.workflow, h.content_hash))
        .unwrap_or_default();
    let body = crate::proto::Assignment {
        agent_id: "a".repeat(64),
        workflow,
        version: u64::MAX,
        content_hash,
        epoch: u64::MAX,
        issued_ms: i64::MAX,
        remove: false,
        previous_version: Some(u64::MAX),
        probation: Some(crate::proto::Probation {
            runs: u32::MAX,
            max_failures: u32::MAX,
        }),
        rollout_id: Some("r".repeat(64)),
    };
    let msg = HubMsg::Deploy {
        assignment: SignedAssignment {
            body_bytes: minicbor::to_vec(&body).unwrap_or_default(),
            signature: crate::trust::Signature {
                key_id: "f".repeat(16),
                sig: vec![0; 64],
            },
        },
        bundle: Some(bundle),
    };
    minicbor::to_vec(&msg)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

/// What the hub driver must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// The agent introduced itself. Check it (known, not revoked, matches its certificate) and
    /// call [`HubSession::accept`] or [`HubSession::refuse`].
    Hello {
        agent_id: String,
        software_version: String,
        labels: Vec<(String, String)>,
        active: Vec<ActiveWorkflow>,
        acked_seq: u64,
        last_seq: u64,
        /// The version of the root metadata the agent trusts (send it the newer ones).
        root_version: u64,
    },
    /// Commit these entries (new to this session, in order) in one transaction with the agent's
    /// committed seq = the last entry's seq, then call [`HubSession::committed`]. The driver still
    /// skips entries at or below the committed seq in its store: a commit from an earlier
    /// connection of the same agent may have landed after this session's Welcome.
    Ingest {
        entries: Vec<OutboxEntry>,
    },
    /// Entries between `expected` and `got` (exclusive) will never arrive: the agent deleted or
    /// never had them (e.g. an agent disk restored from an old backup, or a hub store restored
    /// after the agent deleted acknowledged entries). The batch is ingested anyway: the agent
    /// never deletes unacknowledged entries, so waiting would wait forever. Report it loudly.
    Gap {
        expected: u64,
        got: u64,
    },
    DeployResult {
        workflow: String,
        version: u64,
        epoch: u64,
        rejected: Option<Rejection>,
    },
    CommandResult {
        id: u64,
        ok: bool,
        message: String,
        run_id: Option<String>,
    },
    LogChunk {
        id: u64,
        data: Vec<u8>,
        eof: bool,
    },
    Reverted {
        workflow: String,
        from_version: u64,
        to_version: u64,
        reason: String,
        at_ms: UnixMillis,
    },
    /// The agent's clock minus the hub's (record it for `agent show`).
    ClockOffset {
        offset_ms: i64,
        at_ms: UnixMillis,
    },
    /// The agent's own figures (record them for `/metrics`).
    Telemetry(AgentTelemetry),
    /// The agent asks for a renewed certificate: sign the CSR (if the agent may still renew)
    /// and answer with [`HubSession::send_certificate`].
    RenewCert {
        csr_der: Vec<u8>,
    },
    /// The agent pins these root CAs now (SHA-256 hex): record it (`ca rotate` waits for the
    /// fleet before the hub switches to a new root).
    CaRootsPinned {
        pinned: Vec<String>,
    },
    /// A message too large for one frame ([`crate::proto::MAX_FRAME`]) was dropped instead of
    /// being sent (sending it would end the session, again on every reconnect). `what` names
    /// it (e.g. `deploy of etl v3`); `command` is the id of a dropped command (answer its
    /// waiter with a failure). Record it; the session goes on.
    Undeliverable {
        what: String,
        bytes: usize,
        command: Option<u64>,
    },
}

/// Where a [`HubSession`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubState {
    /// Waiting for the agent's Hello.
    AwaitHello,
    /// Hello received; waiting for the driver's accept/refuse.
    AwaitAccept,
    Open,
    /// The agent's certificate has expired (within the grace): the session only renews it;
    /// every other message is ignored (nothing is ingested or deployed).
    RenewOnly,
    /// Goodbye queued or sent: flush `poll_transmit`, then close the connection.
    Closed,
}

/// The hub's side of one session (one per connection).
///
/// Call order: after every input ([`handle_agent`](Self::handle_agent), [`accept`](Self::accept),
/// [`committed`](Self::committed), [`set_desired`](Self::set_desired), `send_*`) drain
/// [`poll_event`](Self::poll_event) and [`poll_transmit`](Self::poll_transmit) until `None`.
/// Commit `Ingest` batches in the order they come and call `committed` after each commit.
/// Keep one live session per agent: when a new session of an agent is accepted, close the old
/// connection (both would otherwise commit the same agent's entries concurrently).
#[derive(Debug)]
pub struct HubSession {
    state: HubState,
    agent_id: Option<String>,
    committed: u64,
    /// Highest seq handed to the driver to commit.
    ingested_upto: u64,
    /// What the agent runs: workflow -> (version, epoch).
    reported: BTreeMap<String, (u64, u64)>,
    /// Deploys sent in this session: workflow -> (version, epoch).
    sent: BTreeMap<String, (u64, u64)>,
    desired: Vec<Desired>,
    last_heard_ms: UnixMillis,
    /// A certificate renewal was asked for in this session (one per session).
    renew_asked: bool,
    out: VecDeque<HubMsg>,
    events: VecDeque<HubEvent>,
    director: Arc<Director>,
    /// The agent's session nonce (from Hello): every statement of this session carries it.
    nonce: Vec<u8>,
    /// Lifetime of a snapshot; a new one is signed at half of it.
    snapshot_ttl_ms: i64,
    /// The entries and signing time of the last snapshot sent.
    snapshot_sent: Option<(Vec<SnapshotEntry>, UnixMillis)>,
    now_ms: UnixMillis,
    /// The hub's replica addresses, sent in the Welcome (`None`: not configured).
    replicas: Option<Vec<String>>,
}

impl HubSession {
    /// A session for a fresh connection. `director` signs this session's statements;
    /// `snapshot_ttl_ms` is how long a snapshot stays fresh (the agent reports itself stale
    /// when its newest one has expired).
    pub fn new(now_ms: UnixMillis, director: Arc<Director>, snapshot_ttl_ms: i64) -> Self {
        HubSession {
            state: HubState::AwaitHello,
            agent_id: None,
            committed: 0,
            ingested_upto: 0,
            reported: BTreeMap::new(),
            sent: BTreeMap::new(),
            desired: Vec::new(),
            last_heard_ms: now_ms,
            renew_asked: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            director,
            nonce: Vec::new(),
            snapshot_ttl_ms: snapshot_ttl_ms.max(2),
            snapshot_sent: None,
            now_ms,
            replicas: None,
        }
    }

    /// The hub's replica addresses (`host:port`) to send in the Welcome; an empty list sends
    /// none (the agent keeps the addresses it has).
    pub fn set_replicas(&mut self, replicas: Vec<String>) {
        self.replicas = (!replicas.is_empty()).then_some(replicas);
    }

    fn clock(&mut self, now_ms: UnixMillis) -> UnixMillis {
        self.now_ms = self.now_ms.max(now_ms);
        self.now_ms
    }

    /// A signed acknowledgement of `seq` for this agent and session, at the session's time.
    fn ack(&self, seq: u64) -> crate::proto::Statement {
        self.director.sign_ack(&AckBody {
            agent_id: self.agent_id.clone().unwrap_or_default(),
            session: self.nonce.clone(),
            seq,
            hub_time_ms: self.now_ms,
        })
    }

    /// The snapshot of the desired state: every workflow assigned (not removed), sorted.
    fn snapshot_entries(&self) -> Vec<SnapshotEntry> {
        let mut v: Vec<SnapshotEntry> = self
            .desired
            .iter()
            .filter(|d| d.version != 0)
            .map(|d| SnapshotEntry {
                workflow: d.workflow.clone(),
                version: d.version,
                epoch: d.epoch,
                content_hash: d.content_hash.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.workflow.cmp(&b.workflow));
        v
    }

    fn sign_snapshot(&mut self, workflows: Vec<SnapshotEntry>) -> crate::proto::Statement {
        let st = self.director.sign_snapshot(&Snapshot {
            agent_id: self.agent_id.clone().unwrap_or_default(),
            session: self.nonce.clone(),
            issued_ms: self.now_ms,
            expires_ms: self.now_ms.saturating_add(self.snapshot_ttl_ms),
            workflows: workflows.clone(),
        });
        self.snapshot_sent = Some((workflows, self.now_ms));
        st
    }

    /// Time passes: re-sign the snapshot when half its lifetime has gone, so a connected agent
    /// never sees it expire.
    pub fn tick(&mut self, now_ms: UnixMillis) {
        let now = self.clock(now_ms);
        if self.state != HubState::Open {
            return;
        }
        let due = self
            .snapshot_sent
            .as_ref()
            .is_some_and(|(_, at)| now.saturating_sub(*at) >= self.snapshot_ttl_ms / 2);
        if due {
            let entries = self.snapshot_entries();
            let snapshot = self.sign_snapshot(entries);
            self.out.push_back(HubMsg::Snapshot { snapshot });
        }
    }

    pub fn state(&self) -> HubState {
        self.state
    }

    /// The agent id from its Hello.
    pub fn agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }

    /// Highest seq the driver reported committed.
    pub fn committed_seq(&self) -> u64 {
        self.committed
    }

    /// When the agent last sent a message (for `offline_after`).
    pub fn last_heard_ms(&self) -> UnixMillis {
        self.last_heard_ms
    }

    /// What the agent runs, as it reported (Hello, then deploy results).
    pub fn reported(&self) -> &BTreeMap<String, (u64, u64)> {
        &self.reported
    }

    /// A message from the agent. `Err`: protocol violation; close the connection.
    pub fn handle_agent(&mut self, msg: AgentMsg, now_ms: UnixMillis) -> Result<(), SyncError> {
        self.clock(now_ms);
        self.last_heard_ms = self.last_heard_ms.max(now_ms);
        match (self.state, msg) {
            (HubState::Closed, _) => Ok(()),
            (
                HubState::AwaitAccept | HubState::RenewOnly | HubState::Open,
                AgentMsg::RenewCert { csr_der },
            ) => self.renew_cert(csr_der),
            (HubState::RenewOnly, AgentMsg::Hello { .. }) => {
                Err(SyncError::Protocol("second Hello".into()))
            }
            // Nothing but renewal: status is sent again in the next, renewed session.
            (HubState::RenewOnly, _) => Ok(()),
            (
                HubState::AwaitHello,
                AgentMsg::Hello {
                    agent_id,
                    software_version,
                    labels,
                    active,
                    acked_seq,
                    last_seq,
                    root_version,
                    session,
                },
            ) => {
                if session.len() != crate::proto::SESSION_NONCE_LEN {
                    return Err(SyncError::Protocol(format!(
                        "session nonce of {} bytes, {} expected",
                        session.len(),
                        crate::proto::SESSION_NONCE_LEN
                    )));
                }
                self.nonce = session;
                self.reported = active
                    .iter()
                    .map(|a| (a.workflow.clone(), (a.version, a.epoch)))
                    .collect();
                self.agent_id = Some(agent_id.clone());
                self.state = HubState::AwaitAccept;
                self.events.push_back(HubEvent::Hello {
                    agent_id,
                    software_version,
                    labels,
                    active,
                    acked_seq,
                    last_seq,
                    root_version,
                });
                Ok(())
            }
            (HubState::AwaitHello, _) => {
                Err(SyncError::Protocol("first message is not Hello".into()))
            }
            (_, AgentMsg::Hello { .. }) => Err(SyncError::Protocol("second Hello".into())),
            (HubState::AwaitAccept, _) => Err(SyncError::Protocol("message before Welcome".into())),
            (HubState::Open, msg) => self.handle_open(msg),
        }
    }

    fn handle_open(&mut self, msg: AgentMsg) -> Result<(), SyncError> {
        match msg {
            AgentMsg::Hello { .. } => Err(SyncError::Protocol("second Hello".into())),
            AgentMsg::Status { entries } => self.handle_status(entries),
            AgentMsg::RenewCert { csr_der } => self.renew_cert(csr_der),
            AgentMsg::CaRootsPinned { pinned } => {
                self.events.push_back(HubEvent::CaRootsPinned { pinned });
                Ok(())
            }
            AgentMsg::DeployResult {
                workflow,
                version,
                epoch,
                rejected,
            } => {
                if rejected.is_none() {
                    if version == 0 {
                        self.reported.remove(&workflow);
                    } else {
                        self.reported.insert(workflow.clone(), (version, epoch));
                    }
                }
                self.events.push_back(HubEvent::DeployResult {
                    workflow,
                    version,
                    epoch,
                    rejected,
                });
                Ok(())
            }
            AgentMsg::CommandResult {
                id,
                ok,
                message,
                run_id,
            } => {
                self.events.push_back(HubEvent::CommandResult {
                    id,
                    ok,
                    message,
                    run_id,
                });
                Ok(())
            }
            AgentMsg::LogChunk { id, data, eof } => {
                self.events.push_back(HubEvent::LogChunk { id, data, eof });
                Ok(())
            }
            AgentMsg::ClockOffset { offset_ms, at_ms } => {
                self.events
                    .push_back(HubEvent::ClockOffset { offset_ms, at_ms });
                Ok(())
            }
            AgentMsg::Telemetry(t) => {
                self.events.push_back(HubEvent::Telemetry(t));
                Ok(())
            }
            AgentMsg::Reverted {
                workflow,
                from_version,
                to_version,
                reason,
                at_ms,
            } => {
                if let Some(r) = self.reported.get_mut(&workflow) {
                    r.0 = to_version;
                }
                self.events.push_back(HubEvent::Reverted {
                    workflow,
                    from_version,
                    to_version,
                    reason,
                    at_ms,
                });
                Ok(())
            }
        }
    }

    /// One renewal per session: an agent asks once, and a second request would only make the
    /// hub sign and store again.
    fn renew_cert(&mut self, csr_der: Vec<u8>) -> Result<(), SyncError> {
        if self.renew_asked {
            return Err(SyncError::Protocol(
                "a second certificate renewal in one session".into(),
            ));
        }
        self.renew_asked = true;
        self.events.push_back(HubEvent::RenewCert { csr_der });
        Ok(())
    }

    fn handle_status(&mut self, entries: Vec<OutboxEntry>) -> Result<(), SyncError> {
        if entries.len() > MAX_BATCH {
            return Err(SyncError::Protocol(format!(
                "Status batch of {} entries exceeds {MAX_BATCH}",
                entries.len()
            )));
        }
        if entries.windows(2).any(|w| w[0].seq >= w[1].seq) {
            return Err(SyncError::Protocol(
                "Status entries not in increasing seq order".into(),
            ));
        }
        let floor = self.committed.max(self.ingested_upto);
        let fresh: Vec<OutboxEntry> = entries.into_iter().filter(|e| e.seq > floor).collect();
        let Some(last) = fresh.last().map(|e| e.seq) else {
            // Only duplicates. If nothing is pending commit, acknowledge again so the agent's
            // window moves; otherwise the pending commit's Ack covers them.
            if self.ingested_upto <= self.committed {
                let ack = self.ack(self.committed);
                self.out.push_back(HubMsg::Ack { ack });
            }
            return Ok(());
        };
        let mut expected = floor + 1;
        for e in &fresh {
            if e.seq != expected {
                self.events.push_back(HubEvent::Gap {
                    expected,
                    got: e.seq,
                });
            }
            expected = e.seq + 1;
        }
        self.ingested_upto = last;
        self.events.push_back(HubEvent::Ingest { entries: fresh });
        Ok(())
    }

    /// Answer the Hello: welcome the agent with a signed acknowledgement of the hub's committed
    /// seq for it, the root metadata after the version it trusts, the workflows paused for it
    /// and a signed snapshot of its desired state; then send the deploys needed.
    pub fn accept(
        &mut self,
        committed_seq: u64,
        roots: Vec<SignedRoot>,
        paused: Vec<String>,
        now_ms: UnixMillis,
    ) -> Result<(), SyncError> {
        if self.state != HubState::AwaitAccept {
            return Err(SyncError::NotOpen);
        }
        self.clock(now_ms);
        self.committed = committed_seq;
        self.ingested_upto = committed_seq;
        let ack = self.ack(committed_seq);
        let entries = self.snapshot_entries();
        let snapshot = self.sign_snapshot(entries);
        self.out.push_back(HubMsg::Welcome {
            ack,
            roots,
            paused,
            snapshot,
            replicas: self.replicas.clone(),
        });
        self.state = HubState::Open;
        self.reconcile();
        Ok(())
    }

    /// Answer the Hello of an agent whose certificate has expired (within the grace): the
    /// session may only renew it (queues RenewRequired; see [`HubState::RenewOnly`]).
    pub fn renew_only(&mut self, reason: String) -> Result<(), SyncError> {
        if self.state != HubState::AwaitAccept {
            return Err(SyncError::NotOpen);
        }
        self.out.push_back(HubMsg::RenewRequired { reason });
        self.state = HubState::RenewOnly;
        Ok(())
    }

    /// Send root CAs for the agent to pin (after `ca rotate`).
    pub fn send_ca_roots(&mut self, roots: Vec<crate::proto::CaRoot>) -> Result<(), SyncError> {
        if self.state != HubState::Open {
            return Err(SyncError::NotOpen);
        }
        self.out.push_back(HubMsg::CaRoots { roots });
        Ok(())
    }

    /// Send the agent its renewed certificate.
    pub fn send_certificate(&mut self, cert_der: Vec<u8>) -> Result<(), SyncError> {
        if !matches!(self.state, HubState::Open | HubState::RenewOnly) {
            return Err(SyncError::NotOpen);
        }
        self.out.push_back(HubMsg::Certificate { cert_der });
        Ok(())
    }

    /// Refuse or end the session (unknown or revoked agent, shutdown): queues Goodbye. Flush
    /// `poll_transmit`, then close the connection.
    pub fn refuse(&mut self, reason: String) {
        if self.state != HubState::Closed {
            self.out.push_back(HubMsg::Goodbye { reason });
            self.state = HubState::Closed;
        }
    }

    /// The driver committed every entry up to `seq` durably: acknowledge it.
    pub fn committed(&mut self, seq: u64, now_ms: UnixMillis) {
        self.clock(now_ms);
        if self.state == HubState::Open && seq > self.committed {
            self.committed = seq;
            let ack = self.ack(seq);
            self.out.push_back(HubMsg::Ack { ack });
        }
    }

    /// The desired state for this agent (the full set). Level-triggered: a Deploy goes out only
    /// for a workflow whose desired (version, epoch) differs from what the agent reported and
    /// from what this session already sent; a removal only if the agent runs the workflow.
    /// Workflows the agent runs that are absent from the set are left alone (the driver sends a
    /// signed removal to remove one).
    pub fn set_desired(&mut self, desired: Vec<Desired>, now_ms: UnixMillis) {
        self.clock(now_ms);
        self.desired = desired;
        if self.state == HubState::Open {
            self.reconcile();
        }
    }

    fn reconcile(&mut self) {
        // The agent accepts a deploy only if the session's snapshot lists it: a changed desired
        // state goes out as a new snapshot first.
        let entries = self.snapshot_entries();
        if self
            .snapshot_sent
            .as_ref()
            .is_none_or(|(sent, _)| *sent != entries)
        {
            let snapshot = self.sign_snapshot(entries);
            self.out.push_back(HubMsg::Snapshot { snapshot });
        }
        for d in &self.desired {
            let want = (d.version, d.epoch);
            if self.reported.get(&d.workflow) == Some(&want)
                || self.sent.get(&d.workflow) == Some(&want)
            {
                continue;
            }
            if d.version == 0 && !self.reported.contains_key(&d.workflow) {
                continue;
            }
            self.out.push_back(HubMsg::Deploy {
                assignment: d.assignment.clone(),
                bundle: d.bundle.clone(),
            });
            self.sent.insert(d.workflow.clone(), want);
        }
    }

    /// Send a command to the connected agent, signed for it and this session, valid for
    /// `ttl_ms`. `id` must increase within the session (the agent refuses a repeated one).
    pub fn send_command(
        &mut self,
        id: u64,
        command: Command,
        now_ms: UnixMillis,
        ttl_ms: i64,
    ) -> Result<(), SyncError> {
        let now = self.clock(now_ms);
        if self.state != HubState::Open {
            return Err(SyncError::NotOpen);
        }
        let command = self.director.sign_command(&CommandBody {
            agent_id: self.agent_id.clone().unwrap_or_default(),
            session: self.nonce.clone(),
            id,
            issued_ms: now,
            expires_ms: now.saturating_add(ttl_ms),
            command,
        });
        self.out.push_back(HubMsg::Command { id, command });
        Ok(())
    }

    /// Send new root metadata (after a root rotation) to the connected agent.
    pub fn send_roots(&mut self, roots: Vec<SignedRoot>) -> Result<(), SyncError> {
        if self.state != HubState::Open {
            return Err(SyncError::NotOpen);
        }
        self.out.push_back(HubMsg::Roots { roots });
        Ok(())
    }

    /// The next message to send. A message whose frame would exceed
    /// [`crate::proto::MAX_FRAME`] is never returned: it becomes [`HubEvent::Undeliverable`].
    pub fn poll_transmit(&mut self) -> Option<HubMsg> {
        while let Some(m) = self.out.pop_front() {
            let bytes = minicbor::to_vec(&m).map(|v| v.len()).unwrap_or(usize::MAX);
            if bytes <= crate::proto::MAX_FRAME {
                return Some(m);
            }
            let what = match &m {
                HubMsg::Deploy { assignment, .. } => {
                    match minicbor::decode::<crate::proto::Assignment>(&assignment.body_bytes) {
                        Ok(a) => format!(
                            "deploy of {} v{} (epoch {})",
                            a.workflow, a.version, a.epoch
                        ),
                        Err(_) => "deploy".to_string(),
                    }
                }
                HubMsg::Command { id, .. } => format!("command {id}"),
                HubMsg::Roots { .. } => "root metadata".to_string(),
                HubMsg::Snapshot { .. } => "snapshot".to_string(),
                HubMsg::Welcome { .. } => "welcome".to_string(),
                HubMsg::Ack { .. } => "ack".to_string(),
                HubMsg::Goodbye { .. } => "goodbye".to_string(),
                HubMsg::Certificate { .. } => "certificate".to_string(),
                HubMsg::RenewRequired { .. } => "renew required".to_string(),
                HubMsg::CaRoots { .. } => "root CAs".to_string(),
            };
            let command = match &m {
                HubMsg::Command { id, .. } => Some(*id),
                _ => None,
            };
            self.events.push_back(HubEvent::Undeliverable {
                what,
                bytes,
                command,
            });
        }
        None
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }
}
