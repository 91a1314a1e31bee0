//! The hub <-> agent wire protocol (ALPN `outpost/1`) and the signed statements it carries.
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

/// QUIC ALPN of this protocol's major version.
pub const ALPN: &[u8] = b"outpost/1";
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Most outbox entries in one [`AgentMsg::Status`] batch.
pub const MAX_BATCH: usize = 256;
/// Largest log chunk in one [`AgentMsg::LogChunk`].
pub const LOG_CHUNK: usize = 64 * 1024;

/// Domain separation prefixes for signatures. Never reuse one for another message kind.
pub const DOMAIN_BUNDLE: &[u8] = b"outpost/bundle/v1\0";
pub const DOMAIN_ASSIGNMENT: &[u8] = b"outpost/assignment/v1\0";
pub const DOMAIN_KEY_ENDORSEMENT: &[u8] = b"outpost/key-endorsement/v1\0";

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

/// A workflow version as the hub ships it. The agent verifies `sig` over the exact
/// `header_bytes` BEFORE decoding them, then checks blake3(`content`) against the header.
/// Bundles are never re-encoded: the bytes signed are the bytes stored and sent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SignedBundle {
    #[n(0)]
    #[cbor(with = "minicbor::bytes")]
    pub header_bytes: Vec<u8>,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub content: Vec<u8>,
    /// Id of the signing key (see [`key_id`]).
    #[n(2)]
    pub key_id: String,
    #[n(3)]
    #[cbor(with = "minicbor::bytes")]
    pub sig: Vec<u8>,
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

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SignedAssignment {
    #[n(0)]
    #[cbor(with = "minicbor::bytes")]
    pub body_bytes: Vec<u8>,
    #[n(1)]
    pub key_id: String,
    #[n(2)]
    #[cbor(with = "minicbor::bytes")]
    pub sig: Vec<u8>,
}

/// "The key `new_public_key` succeeds key `old_key_id`", signed by the old key over
/// `DOMAIN_KEY_ENDORSEMENT || body_bytes`. Agents follow the chain from the key they trust and
/// then refuse the old key.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct KeyEndorsementBody {
    #[n(0)]
    pub old_key_id: String,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub new_public_key: Vec<u8>,
    #[n(2)]
    pub new_key_id: String,
    #[n(3)]
    pub issued_ms: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct KeyEndorsement {
    #[n(0)]
    #[cbor(with = "minicbor::bytes")]
    pub body_bytes: Vec<u8>,
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub sig: Vec<u8>,
}

/// Id of an ed25519 public key: the first 16 hex digits of its blake3 hash.
pub fn key_id(public_key: &[u8]) -> String {
    let h = blake3::hash(public_key).to_hex();
    h.as_str()[..16].to_string()
}

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
        /// The hub's current workflow-signing public key (ed25519, raw 32 bytes).
        #[n(4)]
        #[cbor(with = "minicbor::bytes")]
        signing_key: Vec<u8>,
        #[n(5)]
        labels: Vec<(String, String)>,
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
        /// Id of the signing key the agent trusts now.
        #[n(6)]
        trusted_key: String,
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
}

/// Hub to agent.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum HubMsg {
    /// Answer to `Hello`.
    #[n(0)]
    Welcome {
        /// Highest outbox seq of this agent the hub has committed. The agent may delete its
        /// entries up to here and resumes sending after it.
        #[n(0)]
        acked_seq: u64,
        /// Key endorsements from the key the agent trusts to the hub's current key, in order.
        #[n(1)]
        key_chain: Vec<KeyEndorsement>,
        /// Workflows paused at the hub for this agent.
        #[n(2)]
        paused: Vec<String>,
        #[n(3)]
        hub_time_ms: UnixMillis,
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
    /// Entries up to `seq` are committed at the hub.
    #[n(2)]
    Ack {
        #[n(0)]
        seq: u64,
    },
    #[n(3)]
    Command {
        #[n(0)]
        id: u64,
        #[n(1)]
        command: Command,
    },
    /// The hub refuses this session (revoked, unknown agent, protocol error).
    #[n(4)]
    Goodbye {
        #[n(0)]
        reason: String,
    },
    /// New key endorsements (after `keys rotate`), in order.
    #[n(5)]
    KeyChain {
        #[n(0)]
        endorsements: Vec<KeyEndorsement>,
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
