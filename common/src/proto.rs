//! The hub <-> agent wire protocol (ALPN `outpost/2`) and the signed statements it carries.
//!
//! **API Boundary**: everything here crosses the network between releases. Messages are minicbor
//! with explicit indices: an index is never reused or renumbered; a new field is an `Option` or
//! has `#[cbor(default)]`, so a neighbouring release decodes what it knows and skips the rest.
//! Golden byte fixtures in the tests pin the encoding.
//!
//! Connections are always dialled by the agent. Two kinds:
//! - **enrollment** (no client certificate; the agent pins the hub CA by the SHA-256 in its
//!   bootstrap token): one [`EnrollRequest`] and one [`EnrollResponse`], then close;
//! - **session** (mutual TLS with the certificate issued at enrollment): the agent opens one
//!   bidirectional stream and sends [`AgentMsg::Hello`]; the hub answers [`HubMsg::Welcome`];
//!   then both sides send messages on that stream until the connection closes.
//!
//! Framing: each message is a 4-byte big-endian length followed by that many bytes of CBOR.
//! A length above [`MAX_FRAME`] or undecodable bytes close the connection (never the process).

use minicbor::{Decode, Encode};

use crate::record::{OutboxEntry, UnixMillis};
use crate::trust::{Signature, SignedRoot};

/// QUIC ALPN of this protocol's major version.
pub const ALPN: &[u8] = b"outpost/2";
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Most outbox entries in one [`AgentMsg::Status`] batch.
pub const MAX_BATCH: usize = 256;
/// Largest log chunk in one [`AgentMsg::LogChunk`].
pub const LOG_CHUNK: usize = 64 * 1024;

/// Domain separation prefixes for signatures. Never reuse one for another message kind.
pub const DOMAIN_ROOT: &[u8] = b"outpost/root/v1\0";
pub const DOMAIN_RELEASE: &[u8] = b"outpost/release/v1\0";
pub const DOMAIN_ASSIGNMENT: &[u8] = b"outpost/assignment/v2\0";
pub const DOMAIN_SNAPSHOT: &[u8] = b"outpost/snapshot/v1\0";
pub const DOMAIN_COMMAND: &[u8] = b"outpost/command/v1\0";
pub const DOMAIN_ACK: &[u8] = b"outpost/ack/v1\0";

// ----- signed statements ---------------------------------------------------------------------

/// The signed header of one workflow version. Signed over `DOMAIN_BUNDLE || header_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct BundleHeader {
    #[n(0)]
    pub workflow: String,
    #[n(1)]
    pub version: u64,
    /// blake3 hex of `SignedBundle::content` (the workflow file's exact bytes).
    #[n(2)]
    pub content_hash: String,
    #[n(3)]
    pub created_ms: UnixMillis,
    /// The workflow's `target` label selector, sorted by key.
    #[n(4)]
    pub target: Vec<(String, String)>,
    /// "yaml" or "toml".
    #[n(5)]
    pub format: String,
}

/// A workflow version as the hub ships it: the exact header bytes, the content, and the release
/// signatures over `DOMAIN_RELEASE || header_bytes` (a threshold of the release role's keys makes
/// it deployable). The agent verifies them BEFORE decoding the header, then checks
/// blake3(`content`) against the header. Bundles are never re-encoded: the bytes signed are the
/// bytes stored and sent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SignedBundle {
    #[n(0)]
    #[cbor(with = "minicbor::bytes")]
    pub header_bytes: Vec<u8>,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub content: Vec<u8>,
    #[n(2)]
    pub release: Vec<Signature>,
}

/// Probation of a new version on an agent: more than `max_failures` failed runs among
/// the first `runs` runs of the version make the agent revert on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Probation {
    #[n(0)]
    pub runs: u32,
    #[n(1)]
    pub max_failures: u32,
}

/// "Agent A shall run version V of workflow W" (or: shall stop running W). Signed over
/// `DOMAIN_ASSIGNMENT || body_bytes`. The agent acts only on assignments naming itself, with an
/// `epoch` higher than any it accepted for that workflow (so a replayed assignment, or one for
/// another agent, is refused).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Assignment {
    #[n(0)]
    pub agent_id: String,
    #[n(1)]
    pub workflow: String,
    /// 0 with `remove`.
    #[n(2)]
    pub version: u64,
    #[n(3)]
    pub content_hash: String,
    /// Strictly increasing per (agent, workflow), across the hub's whole life.
    #[n(4)]
    pub epoch: u64,
    #[n(5)]
    pub issued_ms: UnixMillis,
    /// The workflow is no longer assigned to this agent.
    #[n(6)]
    pub remove: bool,
    /// The version to return to under probation, if any.
    #[n(7)]
    pub previous_version: Option<u64>,
    #[n(8)]
    pub probation: Option<Probation>,
    /// The rollout this assignment belongs to, for reporting.
    #[n(9)]
    pub rollout_id: Option<String>,
}

/// A director statement: the exact body bytes (an [`Assignment`], [`Snapshot`], [`CommandBody`]
/// or [`AckBody`]) and the director's signature over `DOMAIN_<kind> || body_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Statement {
    #[n(0)]
    #[cbor(with = "minicbor::bytes")]
    pub body_bytes: Vec<u8>,
    #[n(1)]
    pub signature: Signature,
}

/// A signed [`Assignment`].
pub type SignedAssignment = Statement;

/// One workflow in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotEntry {
    #[n(0)]
    pub workflow: String,
    #[n(1)]
    pub version: u64,
    #[n(2)]
    pub epoch: u64,
    #[n(3)]
    pub content_hash: String,
}

/// Everything the director assigns to one agent, signed for one session (Uptane's per-ECU
/// targets): the agent accepts an assignment only when the session's snapshot lists it, so
/// assignments from different moments cannot be mixed, and the snapshot's expiry tells the agent
/// how fresh its view of the director is (re-sent within its lifetime while the session lives).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Snapshot {
    #[n(0)]
    pub agent_id: String,
    /// The session nonce of the agent's `Hello`.
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub session: Vec<u8>,
    /// The hub's clock when signed (the agent's signed time).
    #[n(2)]
    pub issued_ms: UnixMillis,
    #[n(3)]
    pub expires_ms: UnixMillis,
    /// Sorted by workflow.
    #[n(4)]
    pub workflows: Vec<SnapshotEntry>,
}

/// A command for one agent in one session. `id` increases within the session; the agent runs a
/// command once, only before `expires_ms` by the hub's signed time.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct CommandBody {
    #[n(0)]
    pub agent_id: String,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub session: Vec<u8>,
    #[n(2)]
    pub id: u64,
    #[n(3)]
    pub issued_ms: UnixMillis,
    #[n(4)]
    pub expires_ms: UnixMillis,
    #[n(5)]
    pub command: Command,
}

/// "The hub committed this agent's outbox entries up to `seq`", for one session: the only thing
/// that lets an agent delete outbox entries.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AckBody {
    #[n(0)]
    pub agent_id: String,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub session: Vec<u8>,
    #[n(2)]
    pub seq: u64,
    /// The hub's clock when signed.
    #[n(3)]
    pub hub_time_ms: UnixMillis,
}

/// Length of a session nonce.
pub const SESSION_NONCE_LEN: usize = 16;

// ----- enrollment ----------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EnrollRequest {
    /// The bootstrap token's secret part (`token_id.secret`).
    #[n(0)]
    pub token: String,
    /// PKCS#10 certificate signing request (DER), made from a key pair generated on the agent.
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub csr_der: Vec<u8>,
    /// Labels the agent asks for (the token's labels take precedence).
    #[n(2)]
    pub labels: Vec<(String, String)>,
    #[n(3)]
    pub hostname: String,
    #[n(4)]
    pub software_version: String,
    /// The name the operator gave the agent (`enroll --name`): taken exactly or refused. `None`:
    /// the hub names it after `hostname` (with a suffix if that name is taken).
    #[n(5)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum EnrollResponse {
    #[n(0)]
    Ok {
        #[n(0)]
        agent_id: String,
        /// The agent's certificate (DER), signed by the hub CA.
        #[n(1)]
        #[cbor(with = "minicbor::bytes")]
        cert_der: Vec<u8>,
        #[n(2)]
        #[cbor(with = "minicbor::bytes")]
        ca_der: Vec<u8>,
        /// The name the hub's certificate is issued for (the agent verifies it).
        #[n(3)]
        hub_name: String,
        /// The fleet's root metadata (its newest version): the agent's trust anchor for every
        /// signed statement.
        #[n(4)]
        root: SignedRoot,
        #[n(5)]
        labels: Vec<(String, String)>,
        /// The name the hub gave the agent (`None`: a hub from before names).
        #[n(6)]
        name: Option<String>,
        /// Every QUIC address (`host:port`) of the hub's replicas the agent may connect to
        /// (hub.toml `replicas`). `None`: not configured, or a hub from before replicas; the
        /// agent keeps the address it enrolled at.
        #[n(7)]
        replicas: Option<Vec<String>>,
    },
    #[n(1)]
    Refused {
        #[n(0)]
        reason: String,
    },
}

// ----- session messages ----------------------------------------------------------------------

/// Why the agent rejected a bundle or assignment. Nothing else changes on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Rejection {
    #[n(0)]
    BadSignature,
    #[n(1)]
    UnknownKey(#[n(0)] String),
    #[n(2)]
    HashMismatch,
    /// A version lower than the highest the agent accepted for that workflow.
    #[n(3)]
    StaleVersion {
        #[n(0)]
        offered: u64,
        #[n(1)]
        highest: u64,
    },
    /// An assignment epoch not above the last accepted one (a replay).
    #[n(4)]
    StaleEpoch {
        #[n(0)]
        offered: u64,
        #[n(1)]
        last: u64,
    },
    /// The assignment names another agent.
    #[n(5)]
    WrongAgent(#[n(0)] String),
    /// The bundle does not parse or validate on this agent.
    #[n(6)]
    Invalid(#[n(0)] String),
    /// Assignment and bundle disagree (name, version or hash).
    #[n(7)]
    Mismatch,
    #[n(8)]
    Malformed(#[n(0)] String),
    /// Fewer valid signatures of a role than its threshold.
    #[n(9)]
    Threshold {
        #[n(0)]
        role: String,
        #[n(1)]
        valid: u32,
        #[n(2)]
        needed: u32,
    },
    /// Signed metadata past its expiry.
    #[n(10)]
    Expired {
        #[n(0)]
        what: String,
        #[n(1)]
        at_ms: UnixMillis,
    },
    /// The session's snapshot does not list this assignment (or lists a removed workflow).
    #[n(11)]
    NotInSnapshot,
}

/// A workflow the agent runs from the hub, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ActiveWorkflow {
    #[n(0)]
    pub workflow: String,
    #[n(1)]
    pub version: u64,
    #[n(2)]
    pub epoch: u64,
    #[n(3)]
    pub paused: bool,
    /// Highest version of the workflow the agent ever accepted (above `version` after a revert
    /// under probation). `None` from an agent that does not say: read as `version`. A hub
    /// restored from an older backup numbers its next version above it.
    #[n(4)]
    pub highest_version: Option<u64>,
}

/// The agent's own figures, sent over the session every telemetry interval (agents sit behind NAT:
/// the hub's `/metrics` shows them). Each is a snapshot at `at_ms` (agent clock); applying one
/// twice changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct AgentTelemetry {
    #[n(0)]
    pub at_ms: UnixMillis,
    /// Outbox entries committed and not yet acknowledged by the hub.
    #[n(1)]
    pub outbox_pending: u64,
    /// Tasks ready to run and waiting for a slot (concurrency limits, priorities).
    #[n(2)]
    pub queue_depth: u64,
    /// Task attempts running now.
    #[n(3)]
    pub running: u64,
    /// Size of the agent's store file.
    #[n(4)]
    pub store_bytes: u64,
    /// Free and total bytes of the file system that holds the store.
    #[n(5)]
    pub disk_free_bytes: u64,
    #[n(6)]
    pub disk_total_bytes: u64,
    /// Largest start lateness (actual start minus scheduled instant) of the runs started since
    /// the previous report, and how many started.
    #[n(7)]
    pub max_lateness_ms: u64,
    #[n(8)]
    pub runs_started: u64,
}

/// A root CA the agent should pin besides the ones it pins (after `outpost-hub ca rotate`),
/// with the proof: the same root (subject and key) certified by a root the agent already pins.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct CaRoot {
    /// The new root CA certificate (self-signed), DER.
    #[n(0)]
    #[cbor(with = "minicbor::bytes")]
    pub cert_der: Vec<u8>,
    /// The new root's subject and key certified by an older root, DER.
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub cross_der: Vec<u8>,
}

/// Agent to hub.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum AgentMsg {
    /// First message on a session stream.
    #[n(0)]
    Hello {
        #[n(0)]
        agent_id: String,
        #[n(1)]
        software_version: String,
        #[n(2)]
        labels: Vec<(String, String)>,
        #[n(3)]
        active: Vec<ActiveWorkflow>,
        /// Highest outbox seq the agent has seen acknowledged.
        #[n(4)]
        acked_seq: u64,
        /// Highest outbox seq the agent has committed.
        #[n(5)]
        last_seq: u64,
        /// Version of the root metadata the agent trusts now.
        #[n(6)]
        root_version: u64,
        /// A fresh random nonce ([`SESSION_NONCE_LEN`] bytes): every statement the hub signs
        /// for this session carries it.
        #[n(7)]
        #[cbor(with = "minicbor::bytes")]
        session: Vec<u8>,
    },
    /// A batch of outbox entries, in seq order, contiguous.
    #[n(1)]
    Status {
        #[n(0)]
        entries: Vec<OutboxEntry>,
    },
    /// The outcome of a [`HubMsg::Deploy`].
    #[n(2)]
    DeployResult {
        #[n(0)]
        workflow: String,
        #[n(1)]
        version: u64,
        #[n(2)]
        epoch: u64,
        /// `None`: activated.
        #[n(3)]
        rejected: Option<Rejection>,
    },
    #[n(3)]
    CommandResult {
        #[n(0)]
        id: u64,
        #[n(1)]
        ok: bool,
        #[n(2)]
        message: String,
        /// A trigger's run id.
        #[n(3)]
        run_id: Option<String>,
    },
    #[n(4)]
    LogChunk {
        #[n(0)]
        id: u64,
        #[n(1)]
        #[cbor(with = "minicbor::bytes")]
        data: Vec<u8>,
        #[n(2)]
        eof: bool,
    },
    /// The agent's clock minus the hub's, as measured when a signed snapshot of hub time
    /// `at_ms` arrived (transit time included).
    #[n(6)]
    ClockOffset {
        #[n(0)]
        offset_ms: i64,
        #[n(1)]
        at_ms: UnixMillis,
    },
    /// The agent's own figures ([`AgentTelemetry`]).
    #[n(7)]
    Telemetry(#[n(0)] AgentTelemetry),
    /// The agent reverted a version by itself under probation.
    #[n(5)]
    Reverted {
        #[n(0)]
        workflow: String,
        #[n(1)]
        from_version: u64,
        #[n(2)]
        to_version: u64,
        #[n(3)]
        reason: String,
        #[n(4)]
        at_ms: UnixMillis,
    },
    /// A request to renew the agent's certificate: a CSR for a fresh key made on the agent.
    /// Sent in an open session when the certificate is due (two thirds of its lifetime), or
    /// after [`HubMsg::RenewRequired`] (the certificate expired: the session may only renew).
    #[n(10)]
    RenewCert {
        #[n(0)]
        #[cbor(with = "minicbor::bytes")]
        csr_der: Vec<u8>,
    },
    /// Answer to [`HubMsg::CaRoots`]: the SHA-256 (hex) of every root CA the agent pins now
    /// (stored durably before this is sent).
    #[n(11)]
    CaRootsPinned {
        #[n(0)]
        pinned: Vec<String>,
    },
}

/// Commands an operator sends through the hub to one connected agent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Command {
    #[n(0)]
    Trigger {
        #[n(0)]
        workflow: String,
        #[n(1)]
        params: Vec<(String, String)>,
    },
    #[n(1)]
    Pause {
        #[n(0)]
        workflow: String,
    },
    #[n(2)]
    Resume {
        #[n(0)]
        workflow: String,
    },
    #[n(3)]
    Cancel {
        #[n(0)]
        run_id: String,
    },
    #[n(4)]
    FetchLog {
        #[n(0)]
        run_id: String,
        #[n(1)]
        task: String,
        #[n(2)]
        attempt: Option<u32>,
    },
    /// `run retry`: reopen a finished run and run its failed tasks again as new attempts (see
    /// docs/operations.md). `if_ended_ms`: only if the run's `ended_ms` is still this (the run
    /// as the hub saw it), so a repeated command never retries twice.
    #[n(5)]
    Retry {
        #[n(0)]
        run_id: String,
        /// Only this task; `None`: every failed task and what it blocked.
        #[n(1)]
        task: Option<String>,
        /// With `task`: its downstream tasks that did not succeed too.
        #[n(2)]
        downstream: bool,
        #[n(3)]
        if_ended_ms: Option<i64>,
    },
    /// `workflow backfill`: queue runs for these schedule instants (ms), with the run ids live
    /// firings have; at most `max_active` of them run at once on the agent.
    #[n(6)]
    Backfill {
        #[n(0)]
        workflow: String,
        #[n(1)]
        instants: Vec<i64>,
        #[n(2)]
        max_active: u32,
    },
    /// `workflow trigger --at`: one manual run whose logical (scheduled) time is `at_ms`.
    #[n(7)]
    TriggerAt {
        #[n(0)]
        workflow: String,
        #[n(1)]
        params: Vec<(String, String)>,
        #[n(2)]
        at_ms: i64,
    },
}

/// Hub to agent.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum HubMsg {
    /// Answer to `Hello`.
    #[n(0)]
    Welcome {
        /// A signed [`AckBody`]: the highest outbox seq of this agent the hub has committed.
        /// The agent may delete its entries up to here and resumes sending after it.
        #[n(0)]
        ack: Statement,
        /// Root metadata from the version after the agent's to the newest, in order.
        #[n(1)]
        roots: Vec<SignedRoot>,
        /// Workflows paused at the hub for this agent.
        #[n(2)]
        paused: Vec<String>,
        /// A signed [`Snapshot`] of the agent's assignments for this session.
        #[n(3)]
        snapshot: Statement,
        /// The hub's replica addresses (`host:port`), as in [`EnrollResponse::Ok`]: a
        /// different non-empty list replaces the one the agent keeps. `None`: not configured,
        /// or a hub from before replicas.
        #[n(4)]
        replicas: Option<Vec<String>>,
    },
    /// Desired state for one workflow that differs from what the agent reported.
    #[n(1)]
    Deploy {
        #[n(0)]
        assignment: SignedAssignment,
        /// `None` when the agent already holds the version (a rollback to a kept version, or a
        /// removal).
        #[n(1)]
        bundle: Option<SignedBundle>,
    },
    /// A signed [`AckBody`]: entries up to its seq are committed at the hub.
    #[n(2)]
    Ack {
        #[n(0)]
        ack: Statement,
    },
    /// A signed [`CommandBody`]; `id` repeats the signed one, for routing the answer.
    #[n(3)]
    Command {
        #[n(0)]
        id: u64,
        #[n(1)]
        command: Statement,
    },
    /// The hub refuses this session (revoked, unknown agent, protocol error).
    #[n(4)]
    Goodbye {
        #[n(0)]
        reason: String,
    },
    /// New root metadata (after a root rotation), in order from the version after the agent's.
    #[n(5)]
    Roots {
        #[n(0)]
        roots: Vec<SignedRoot>,
    },
    /// A new signed [`Snapshot`] (the agent's assignments changed, or the last one is due to
    /// expire).
    #[n(6)]
    Snapshot {
        #[n(0)]
        snapshot: Statement,
    },
    /// The renewed certificate (DER, issued by the hub's intermediate CA) for the key of the
    /// agent's last [`AgentMsg::RenewCert`]. The agent stores it with that key and uses it from
    /// its next connection.
    #[n(10)]
    Certificate {
        #[n(0)]
        #[cbor(with = "minicbor::bytes")]
        cert_der: Vec<u8>,
    },
    /// Answer to Hello with an expired certificate (within the grace): this session does
    /// nothing but renew; send [`AgentMsg::RenewCert`].
    #[n(11)]
    RenewRequired {
        #[n(0)]
        reason: String,
    },
    /// Root CAs to pin besides the ones the agent pins, each with its proof (see [`CaRoot`]).
    /// The agent pins those whose proof verifies and answers [`AgentMsg::CaRootsPinned`].
    #[n(12)]
    CaRoots {
        #[n(0)]
        roots: Vec<CaRoot>,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::BadSignature => write!(f, "bad signature"),
            Rejection::UnknownKey(k) => write!(f, "unknown signing key {k}"),
            Rejection::HashMismatch => write!(f, "content hash mismatch"),
            Rejection::StaleVersion { offered, highest } => {
                write!(f, "stale version {offered} (highest accepted {highest})")
            }
            Rejection::StaleEpoch { offered, last } => {
                write!(f, "stale assignment epoch {offered} (last accepted {last})")
            }
            Rejection::WrongAgent(a) => write!(f, "assignment names another agent ({a})"),
            Rejection::Invalid(m) => write!(f, "invalid workflow: {m}"),
            Rejection::Mismatch => write!(f, "assignment and bundle disagree"),
            Rejection::Malformed(m) => write!(f, "malformed: {m}"),
            Rejection::Threshold {
                role,
                valid,
                needed,
            } => write!(
                f,
                "{valid} valid {role} signature(s), {needed} needed (not released)"
            ),
            Rejection::Expired { what, at_ms } => write!(f, "{what} expired at {at_ms} ms"),
            Rejection::NotInSnapshot => {
                write!(f, "the assignment is not in the director's snapshot")
            }
        }
    }
}
