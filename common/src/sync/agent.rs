//! The agent's side of a session.

use std::collections::VecDeque;

use crate::proto::{
    AckBody, ActiveWorkflow, AgentMsg, Command, CommandBody, DOMAIN_ACK, DOMAIN_COMMAND,
    DOMAIN_SNAPSHOT, HubMsg, MAX_BATCH, MAX_FRAME, Rejection, SignedAssignment, SignedBundle,
    Snapshot, Statement,
};
use crate::record::{OutboxEntry, UnixMillis};
use crate::trust::Trust;

use super::SyncError;

/// Room left in a frame for the message envelope around a batch's entries.
const ENVELOPE: usize = 64;

/// What the agent knows when it opens a session (from its store).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSessionConfig {
    pub agent_id: String,
    pub software_version: String,
    pub labels: Vec<(String, String)>,
    pub active: Vec<ActiveWorkflow>,
    /// Highest outbox seq acknowledged by the hub (entries up to here are deleted).
    pub acked_seq: u64,
    /// Highest outbox seq committed.
    pub last_seq: u64,
    /// The root metadata the agent trusts (the session verifies every statement of the hub
    /// with it, and follows root rotations the hub sends).
    pub trust: Trust,
    /// This session's random nonce ([`crate::proto::SESSION_NONCE_LEN`] bytes, drawn by the
    /// driver): statements signed for another session are refused.
    pub session: Vec<u8>,
    /// Most Status batches in flight (sent, not acknowledged). At least 1.
    pub window: usize,
    /// Most entries per batch (capped at [`MAX_BATCH`]). At least 1.
    pub batch: usize,
}

/// What the agent driver must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The hub committed every entry up to `seq`: delete them durably (`Store::ack_outbox`).
    Acked(u64),
    /// Check with [`crate::trust::check_deploy`] against the session's verified `snapshot`,
    /// activate, then answer with [`AgentSession::send_deploy_result`].
    Deploy {
        assignment: SignedAssignment,
        bundle: Option<SignedBundle>,
        snapshot: Option<Snapshot>,
    },
    /// A verified command (signed by the director for this agent and session, not replayed,
    /// not expired): run it and answer with [`AgentSession::send_command_result`] (or log
    /// chunks).
    Command { id: u64, command: Command },
    /// The session followed a root rotation: store `trust` (and, with `reset_counters`, set
    /// every workflow's epoch and highest version to 0 in the same commit) before acting on
    /// anything after this event.
    Roots { trust: Trust, reset_counters: bool },
    /// A verified snapshot arrived: the hub's signed time `hub_ms` was read at the agent's
    /// `local_ms`; the director's view is fresh until `expires_ms` (hub time). Raise the
    /// durable time floor, record the clock offset and the freshness.
    Fresh {
        hub_ms: UnixMillis,
        local_ms: UnixMillis,
        expires_ms: UnixMillis,
    },
    /// The workflows paused at the hub for this agent (the full set, on every Welcome).
    Paused(Vec<String>),
    /// The hub's committed seq disagrees with the agent's outbox: `hub_acked` is below what the
    /// agent already deleted (hub store restored from an old backup) or above the agent's last
    /// seq (agent store restored). Entries may be lost; log it loudly. In the second case the
    /// session treats everything up to `hub_acked` as acknowledged (an [`AgentEvent::Acked`]
    /// follows): the driver must move its next outbox seq past `hub_acked`, or the hub would
    /// ignore the new entries as duplicates.
    SeqMismatch {
        hub_acked: u64,
        agent_acked: u64,
        agent_last: u64,
    },
    /// The hub's store is behind what it acknowledged before (restored from an older backup):
    /// the entries in `hub_acked + 1 ..= agent_acked` were deleted here and are gone there. In
    /// ONE store transaction, append to the outbox a fresh snapshot of every record those
    /// entries may have carried that the agent still holds (runs and their task instances,
    /// missed firings committed under a seq in that range), then call
    /// [`AgentSession::handle_resent`] with the outbox's last seq. Snapshots are keyed upserts at
    /// the hub, so one it already holds changes nothing. The session sends no Status until
    /// then, so a crash before that commit is healed on the next Welcome (the hub is still
    /// behind), never by the hub moving past the lost range first.
    Resend { hub_acked: u64, agent_acked: u64 },
    /// The hub answered the Hello with RenewRequired: the certificate has expired and this
    /// session may only renew it. Make a fresh key and CSR and call
    /// [`AgentSession::send_renew`].
    RenewRequired(String),
    /// The renewed certificate for the key of the last [`AgentSession::send_renew`]: store it
    /// with that key durably, and use it from the next connection.
    Certificate(Vec<u8>),
    /// Root CAs to pin, each with its proof: pin those whose proof verifies against a pinned
    /// root (durably), then answer with [`AgentSession::send_ca_roots_pinned`].
    CaRoots(Vec<crate::proto::CaRoot>),
    /// The hub ends the session (revoked, unknown agent...). Close the connection.
    Goodbye(String),
    /// The Welcome listed the hub's replica addresses (`host:port`, non-empty): keep them
    /// durably if they differ from the agent's list, and dial them when this hub fails.
    Replicas(Vec<String>),
}

/// The agent's side of one session (one per connection).
///
/// Call order: create it when the connection is up; drain [`poll_transmit`](Self::poll_transmit)
/// (the first message is Hello), then after every input (`handle_*`, `send_*`) drain
/// `poll_transmit`, [`poll_need`](Self::poll_need) and [`poll_event`](Self::poll_event) until
/// `None`. Answer a `poll_need` with [`handle_entries`](Self::handle_entries) (read from the
/// store). Drop the session with its connection.
#[derive(Debug)]
pub struct AgentSession {
    hello: Option<AgentMsg>,
    /// A renewal request: sent whether or not the session is welcomed.
    renew: Option<AgentMsg>,
    welcomed: bool,
    closed: bool,
    acked: u64,
    last_seq: u64,
    /// Highest seq read from the store in this session (buffered or sent).
    fetched_upto: u64,
    /// Highest seq sent in this session.
    sent_upto: u64,
    buffer: VecDeque<OutboxEntry>,
    /// Last seq of each batch sent and not yet acknowledged.
    in_flight: VecDeque<u64>,
    need_outstanding: bool,
    /// A [`AgentEvent::Resend`] is being carried out: no Status until it is committed.
    resend_pending: bool,
    window: usize,
    batch: usize,
    out: VecDeque<AgentMsg>,
    events: VecDeque<AgentEvent>,
    agent_id: String,
    trust: Trust,
    nonce: Vec<u8>,
    /// The last verified snapshot of this session.
    snapshot: Option<Snapshot>,
    /// The hub's last signed time and the local time it was read at.
    hub_time: Option<(UnixMillis, UnixMillis)>,
    /// Highest command id run in this session.
    last_command: u64,
    /// Telemetry period (0: none) and when the last report went out (local clock).
    telemetry_every_ms: UnixMillis,
    telemetry_last: Option<UnixMillis>,
}

impl AgentSession {
    /// A session for a fresh connection.
    pub fn new(cfg: AgentSessionConfig) -> Self {
        let hello = AgentMsg::Hello {
            agent_id: cfg.agent_id.clone(),
            software_version: cfg.software_version,
            labels: cfg.labels,
            active: cfg.active,
            acked_seq: cfg.acked_seq,
            last_seq: cfg.last_seq,
            root_version: cfg.trust.version(),
            session: cfg.session.clone(),
        };
        AgentSession {
            hello: Some(hello),
            renew: None,
            welcomed: false,
            closed: false,
            acked: cfg.acked_seq,
            last_seq: cfg.last_seq.max(cfg.acked_seq),
            fetched_upto: cfg.acked_seq,
            sent_upto: cfg.acked_seq,
            buffer: VecDeque::new(),
            in_flight: VecDeque::new(),
            need_outstanding: false,
            resend_pending: false,
            window: cfg.window.max(1),
            batch: cfg.batch.clamp(1, MAX_BATCH),
            out: VecDeque::new(),
            events: VecDeque::new(),
            agent_id: cfg.agent_id,
            trust: cfg.trust,
            nonce: cfg.session,
            snapshot: None,
            hub_time: None,
            last_command: 0,
            telemetry_every_ms: 0,
            telemetry_last: None,
        }
    }

    /// Report the agent's figures ([`crate::proto::AgentTelemetry`]) every `every_ms` while
    /// the session is open (0, the default: never). See [`AgentSession::telemetry_due`].
    pub fn set_telemetry_interval(&mut self, every_ms: UnixMillis) {
        self.telemetry_every_ms = every_ms.max(0);
    }

    /// When the next telemetry report is due (local clock): at once when the session is
    /// welcomed, then every interval after the last one sent. `None` while the session is not
    /// welcomed, once it is closed, or without an interval. When `local_ms` reaches it, gather
    /// the figures and call [`AgentSession::send_telemetry`].
    pub fn telemetry_due(&self, local_ms: UnixMillis) -> Option<UnixMillis> {
        if !self.welcomed || self.closed || self.telemetry_every_ms == 0 {
            return None;
        }
        Some(
            self.telemetry_last
                .map_or(local_ms, |l| l.saturating_add(self.telemetry_every_ms)),
        )
    }

    /// Send a telemetry report gathered at `local_ms` (the next is due an interval later).
    pub fn send_telemetry(
        &mut self,
        telemetry: crate::proto::AgentTelemetry,
        local_ms: UnixMillis,
    ) {
        if self.closed {
            return;
        }
        self.telemetry_last = Some(local_ms);
        self.out.push_back(AgentMsg::Telemetry(telemetry));
    }

    /// The hub's time now by its last signed time and the local clock since (`None` before the
    /// first signed time of the session).
    pub fn hub_now(&self, local_ms: UnixMillis) -> Option<UnixMillis> {
        self.hub_time
            .map(|(hub, at)| hub.saturating_add(local_ms.saturating_sub(at).max(0)))
    }

    fn bad(what: &str, e: Rejection) -> SyncError {
        SyncError::Protocol(format!("{what}: {e}"))
    }

    /// Verify a signed acknowledgement for this agent and session; returns its seq.
    fn verify_ack(&mut self, st: &Statement, local_ms: UnixMillis) -> Result<u64, SyncError> {
        let a: AckBody = self
            .trust
            .verify_statement(DOMAIN_ACK, st)
            .map_err(|e| Self::bad("acknowledgement", e))?;
        if a.agent_id != self.agent_id || a.session != self.nonce {
            return Err(SyncError::Protocol(
                "acknowledgement signed for another agent or session".into(),
            ));
        }
        self.hub_time = Some((a.hub_time_ms, local_ms));
        Ok(a.seq)
    }

    /// Verify a snapshot for this agent and session and make it the session's.
    fn take_snapshot(&mut self, st: &Statement, local_ms: UnixMillis) -> Result<(), SyncError> {
        let s: Snapshot = self
            .trust
            .verify_statement(DOMAIN_SNAPSHOT, st)
            .map_err(|e| Self::bad("snapshot", e))?;
        if s.agent_id != self.agent_id || s.session != self.nonce {
            return Err(SyncError::Protocol(
                "snapshot signed for another agent or session".into(),
            ));
        }
        self.hub_time = Some((s.issued_ms, local_ms));
        // The hub learns the offset too (`agent show`). Queued behind the Welcome's handling,
        // so it goes out once the session is open.
        self.out.push_back(AgentMsg::ClockOffset {
            offset_ms: local_ms.saturating_sub(s.issued_ms),
            at_ms: s.issued_ms,
        });
        self.events.push_back(AgentEvent::Fresh {
            hub_ms: s.issued_ms,
            local_ms,
            expires_ms: s.expires_ms,
        });
        self.snapshot = Some(s);
        Ok(())
    }

    fn follow_roots(&mut self, roots: &[crate::trust::SignedRoot]) -> Result<(), SyncError> {
        if roots.is_empty() {
            return Ok(());
        }
        let u = self
            .trust
            .update(roots)
            .map_err(|e| Self::bad("root metadata", e))?;
        if u.changed {
            self.events.push_back(AgentEvent::Roots {
                trust: self.trust.clone(),
                reset_counters: u.reset_counters,
            });
        }
        Ok(())
    }

    /// Verify a command; `Ok(Err(reason))`: well signed for this session but refused (replayed
    /// or expired), answered without running it.
    fn verify_command(
        &mut self,
        id: u64,
        st: &Statement,
        local_ms: UnixMillis,
    ) -> Result<Result<Command, String>, SyncError> {
        let c: CommandBody = self
            .trust
            .verify_statement(DOMAIN_COMMAND, st)
            .map_err(|e| Self::bad("command", e))?;
        if c.agent_id != self.agent_id || c.session != self.nonce || c.id != id {
            return Err(SyncError::Protocol(
                "command signed for another agent, session or id".into(),
            ));
        }
        if c.id <= self.last_command {
            return Ok(Err(format!("refused: command {id} was already received")));
        }
        self.last_command = c.id;
        let now = self.hub_now(local_ms).unwrap_or(c.issued_ms);
        if now > c.expires_ms {
            return Ok(Err(format!(
                "refused: command {id} expired {} ms ago (hub time)",
                now - c.expires_ms
            )));
        }
        Ok(Ok(c.command))
    }

    /// Whether the hub's Welcome arrived.
    pub fn is_welcomed(&self) -> bool {
        self.welcomed
    }

    /// Whether the hub said Goodbye.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Highest seq known acknowledged.
    pub fn acked_seq(&self) -> u64 {
        self.acked
    }

    /// Batches sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether every entry up to the last known seq is acknowledged.
    pub fn is_drained(&self) -> bool {
        self.acked >= self.last_seq
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<AgentMsg> {
        if let Some(h) = self.hello.take() {
            return Some(h);
        }
        if !self.closed
            && let Some(r) = self.renew.take()
        {
            return Some(r);
        }
        // Nothing but Hello before the Welcome: the hub would take it as a protocol violation.
        if self.closed || !self.welcomed {
            return None;
        }
        if let Some(m) = self.out.pop_front() {
            return Some(m);
        }
        if self.resend_pending || self.in_flight.len() >= self.window {
            return None;
        }
        self.next_batch()
    }

    fn next_batch(&mut self) -> Option<AgentMsg> {
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        while entries.len() < self.batch {
            let Some(e) = self.buffer.front() else { break };
            let size = minicbor::to_vec(e).map(|v| v.len()).unwrap_or(0);
            // An entry too large for any frame still goes alone (encoding it will then fail
            // loudly at the driver) rather than wedging the queue silently.
            if !entries.is_empty() && bytes + size > MAX_FRAME - ENVELOPE {
                break;
            }
            bytes += size;
            if let Some(e) = self.buffer.pop_front() {
                entries.push(e);
            }
        }
        let last = entries.last()?.seq;
        self.sent_upto = last;
        self.in_flight.push_back(last);
        Some(AgentMsg::Status { entries })
    }

    /// Outbox entries the session wants: `(after_seq, limit)`: read up to `limit` entries with
    /// seq > `after_seq` in order and pass them to [`handle_entries`](Self::handle_entries).
    /// Asked once until answered.
    pub fn poll_need(&mut self) -> Option<(u64, usize)> {
        if self.closed
            || !self.welcomed
            || self.need_outstanding
            || self.resend_pending
            || self.in_flight.len() >= self.window
            || self.buffer.len() >= self.batch
            || self.fetched_upto >= self.last_seq
        {
            return None;
        }
        self.need_outstanding = true;
        Some((self.fetched_upto, self.batch))
    }

    /// The entries read for the last [`poll_need`](Self::poll_need), in seq order. An empty
    /// answer means the store holds nothing more (the session then stops asking until
    /// [`handle_outbox_grew`](Self::handle_outbox_grew)).
    pub fn handle_entries(&mut self, entries: Vec<OutboxEntry>) {
        self.need_outstanding = false;
        if entries.is_empty() {
            self.last_seq = self.fetched_upto;
            return;
        }
        for e in entries {
            if e.seq <= self.fetched_upto {
                continue;
            }
            self.fetched_upto = e.seq;
            self.last_seq = self.last_seq.max(e.seq);
            self.buffer.push_back(e);
        }
    }

    /// The [`AgentEvent::Resend`] snapshots are committed; the outbox now ends at `last_seq`.
    pub fn handle_resent(&mut self, last_seq: u64) {
        self.resend_pending = false;
        self.last_seq = self.last_seq.max(last_seq);
    }

    /// Whether the session waits for [`handle_resent`](Self::handle_resent).
    pub fn is_resend_pending(&self) -> bool {
        self.resend_pending
    }

    /// The outbox now holds entries up to `last_seq`.
    pub fn handle_outbox_grew(&mut self, last_seq: u64) {
        self.last_seq = self.last_seq.max(last_seq);
    }

    /// A message from the hub, received at the agent's `local_ms`. `Err`: the hub broke the
    /// protocol or sent a statement that does not verify; close the connection.
    pub fn handle_hub(&mut self, msg: HubMsg, local_ms: UnixMillis) -> Result<(), SyncError> {
        if self.closed {
            return Ok(());
        }
        match msg {
            HubMsg::Welcome {
                ack,
                roots,
                paused,
                snapshot,
                replicas,
            } => {
                if self.welcomed {
                    return Err(SyncError::Protocol("second Welcome".into()));
                }
                // Roots first: the statements after them may be signed by a new director key.
                self.follow_roots(&roots)?;
                let acked_seq = self.verify_ack(&ack, local_ms)?;
                self.take_snapshot(&snapshot, local_ms)?;
                self.welcomed = true;
                if acked_seq < self.acked || acked_seq > self.last_seq {
                    self.events.push_back(AgentEvent::SeqMismatch {
                        hub_acked: acked_seq,
                        agent_acked: self.acked,
                        agent_last: self.last_seq,
                    });
                }
                if acked_seq < self.acked {
                    // The hub lost what it had acknowledged: have the driver re-enqueue what
                    // the agent still holds before anything else is sent.
                    self.resend_pending = true;
                    self.events.push_back(AgentEvent::Resend {
                        hub_acked: acked_seq,
                        agent_acked: self.acked,
                    });
                }
                if acked_seq > self.acked {
                    self.acked = acked_seq;
                    self.events.push_back(AgentEvent::Acked(acked_seq));
                }
                // Resume after what the hub holds (entries below were deleted if it is behind).
                self.last_seq = self.last_seq.max(self.acked);
                self.fetched_upto = self.acked;
                self.sent_upto = self.acked;
                self.buffer.clear();
                self.events.push_back(AgentEvent::Paused(paused));
                if let Some(list) = replicas.filter(|l| !l.is_empty()) {
                    self.events.push_back(AgentEvent::Replicas(list));
                }
                return Ok(());
            }
            HubMsg::Goodbye { reason } => {
                self.closed = true;
                self.events.push_back(AgentEvent::Goodbye(reason));
                return Ok(());
            }
            HubMsg::RenewRequired { reason } => {
                self.events.push_back(AgentEvent::RenewRequired(reason));
                return Ok(());
            }
            HubMsg::Certificate { cert_der } => {
                self.events.push_back(AgentEvent::Certificate(cert_der));
                return Ok(());
            }
            _ if !self.welcomed => {
                return Err(SyncError::Protocol("message before Welcome".into()));
            }
            HubMsg::Ack { ack } => {
                let seq = self.verify_ack(&ack, local_ms)?;
                if seq > self.sent_upto {
                    return Err(SyncError::Protocol(format!(
                        "Ack of seq {seq} beyond the last sent {}",
                        self.sent_upto
                    )));
                }
                while self.in_flight.front().is_some_and(|&s| s <= seq) {
                    self.in_flight.pop_front();
                }
                if seq > self.acked {
                    self.acked = seq;
                    self.events.push_back(AgentEvent::Acked(seq));
                }
            }
            HubMsg::Deploy { assignment, bundle } => {
                self.events.push_back(AgentEvent::Deploy {
                    assignment,
                    bundle,
                    snapshot: self.snapshot.clone(),
                });
            }
            HubMsg::Command { id, command } => match self.verify_command(id, &command, local_ms)? {
                Ok(command) => self.events.push_back(AgentEvent::Command { id, command }),
                Err(reason) => self.send_command_result(id, false, reason, None),
            },
            HubMsg::Roots { roots } => self.follow_roots(&roots)?,
            HubMsg::Snapshot { snapshot } => self.take_snapshot(&snapshot, local_ms)?,
            HubMsg::CaRoots { roots } => {
                self.events.push_back(AgentEvent::CaRoots(roots));
            }
        }
        Ok(())
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    /// Tell the hub which root CAs this agent pins now (SHA-256 hex).
    pub fn send_ca_roots_pinned(&mut self, pinned: Vec<String>) {
        self.out.push_back(AgentMsg::CaRootsPinned { pinned });
    }

    /// Ask the hub to renew the certificate: `csr_der` for a fresh key the driver keeps until
    /// the [`AgentEvent::Certificate`] answer. Sent at once, welcomed or not.
    pub fn send_renew(&mut self, csr_der: Vec<u8>) {
        self.renew = Some(AgentMsg::RenewCert { csr_der });
    }

    /// Report the outcome of a deploy (`rejected: None`: activated).
    pub fn send_deploy_result(
        &mut self,
        workflow: String,
        version: u64,
        epoch: u64,
        rejected: Option<Rejection>,
    ) {
        self.out.push_back(AgentMsg::DeployResult {
            workflow,
            version,
            epoch,
            rejected,
        });
    }

    /// Answer a command.
    pub fn send_command_result(
        &mut self,
        id: u64,
        ok: bool,
        message: String,
        run_id: Option<String>,
    ) {
        self.out.push_back(AgentMsg::CommandResult {
            id,
            ok,
            message,
            run_id,
        });
    }

    /// A piece of a log answering a `FetchLog` command (at most [`crate::proto::LOG_CHUNK`]).
    pub fn send_log_chunk(&mut self, id: u64, data: Vec<u8>, eof: bool) {
        self.out.push_back(AgentMsg::LogChunk { id, data, eof });
    }

    /// Report a revert under probation.
    pub fn send_reverted(
        &mut self,
        workflow: String,
        from_version: u64,
        to_version: u64,
        reason: String,
        at_ms: UnixMillis,
    ) {
        self.out.push_back(AgentMsg::Reverted {
            workflow,
            from_version,
            to_version,
            reason,
            at_ms,
        });
    }
}
