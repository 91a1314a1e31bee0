//! The records the hub store holds (each a minicbor value of one table, see `schema`), the
//! inputs and outputs of its operations, and the label-selector rules they share.

use minicbor::{Decode, Encode};
use outpost_common::proto::{ActiveWorkflow, SignedAssignment, SignedBundle};
use outpost_common::record::{RunRecord, RunState, UnixMillis};
use outpost_common::trust::Signature;

use super::error::{StoreError, decode};

/// Per-workflow state.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WorkflowMeta {
    /// Latest version number (≥ 1).
    #[n(0)]
    pub latest: u64,
    /// Paused at the hub.
    #[n(1)]
    pub paused: bool,
    /// When the latest version was made.
    #[n(2)]
    pub updated_ms: UnixMillis,
    /// When `workflow delete` removed it from every agent (history kept); a later released
    /// version revives it.
    #[n(3)]
    pub deleted_ms: Option<UnixMillis>,
}

/// One version of a workflow as applied.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoredVersion {
    /// Workflow name.
    #[n(0)]
    pub name: String,
    /// Version number.
    #[n(1)]
    pub version: u64,
    /// The workflow file's exact bytes.
    #[n(2)]
    #[cbor(with = "minicbor::bytes")]
    pub content: Vec<u8>,
    /// `"yaml"` or `"toml"`.
    #[n(3)]
    pub format: String,
    /// blake3 hex of `content`.
    #[n(4)]
    pub content_hash: String,
    /// When this version was made.
    #[n(5)]
    pub created_ms: UnixMillis,
    /// Where it came from: a file path, or `rollback of vN`.
    #[n(6)]
    pub origin: String,
    /// Who applied it.
    #[n(7)]
    pub applied_by: String,
    /// The target label selector, sorted by key.
    #[n(8)]
    pub target: Vec<(String, String)>,
    /// The [`SignedBundle`] cbor, exactly as signed.
    #[n(9)]
    #[cbor(with = "minicbor::bytes")]
    pub bundle: Vec<u8>,
}

impl StoredVersion {
    /// Decode the signed bundle (the signed `header_bytes` are carried through unchanged).
    pub fn signed_bundle(&self) -> Result<SignedBundle, StoreError> {
        Ok(decode(&self.bundle, "workflow_versions", &self.name)?)
    }
}

/// What to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    /// Workflow name (from the validated file).
    pub name: String,
    /// The file's exact bytes.
    pub content: Vec<u8>,
    /// `"yaml"` or `"toml"`.
    pub format: String,
    /// Target label selector (any order; stored sorted).
    pub target: Vec<(String, String)>,
    /// A file path or description.
    pub origin: String,
    /// Who applies it (audit).
    pub applied_by: String,
}

/// Result of [`Store::delete_workflow`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The pools that had a decision for the workflow (their agents get removals).
    pub pools: Vec<String>,
    /// Rollouts of it that were in progress and ended (`--force`).
    pub aborted_rollouts: Vec<String>,
    /// The version that was waiting for release signatures, dropped.
    pub dropped_pending: Option<u64>,
}

/// Result of [`Store::apply_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The workflow's latest version after the call.
    pub version: u64,
    /// Whether a new version was made.
    pub changed: bool,
    /// `version` waits for release signatures (not deployable yet).
    pub pending: bool,
}

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AgentRecord {
    /// `agent-` + 16 hex.
    #[n(0)]
    pub id: String,
    /// Labels (sorted by key).
    #[n(1)]
    pub labels: Vec<(String, String)>,
    /// When it enrolled.
    #[n(2)]
    pub enrolled_ms: UnixMillis,
    /// Certificate serial (hex).
    #[n(3)]
    pub cert_serial: String,
    /// SHA-256 of the certificate DER (hex).
    #[n(4)]
    pub cert_fingerprint: String,
    /// When it was revoked, if it was.
    #[n(5)]
    pub revoked_ms: Option<UnixMillis>,
    /// Last time it was heard from (session start or message).
    #[n(6)]
    pub last_seen_ms: Option<UnixMillis>,
    /// Software version it reported.
    #[n(7)]
    pub software_version: String,
    /// Workflows it reported active (at Hello, updated by deploy results).
    #[n(8)]
    pub active: Vec<ActiveWorkflow>,
    /// Highest outbox seq of this agent committed here.
    #[n(9)]
    pub committed_seq: u64,
    /// Host name it reported at enrollment.
    #[n(10)]
    pub hostname: String,
    /// When its current certificate expires (`None`: recorded before expiries were).
    #[n(11)]
    pub cert_not_after_ms: Option<UnixMillis>,
    /// SHA-256 of the certificate it held before its last renewal: still accepted, in case the
    /// renewed certificate never reached the agent.
    #[n(12)]
    pub previous_cert_fingerprint: Option<String>,
    /// SHA-256 of the root CAs the agent said it pins (after `ca rotate`; `None`: not asked).
    #[n(13)]
    pub pinned_roots: Option<Vec<String>>,
    /// Its clock minus the hub's, and the hub time it was measured at (from its last report).
    #[n(16)]
    pub clock_offset: Option<(i64, UnixMillis)>,
    /// Its last telemetry report, and the hub time it arrived.
    #[n(17)]
    pub telemetry: Option<(outpost_common::proto::AgentTelemetry, UnixMillis)>,
    /// Its name: a unique alias an operator may change (`agent rename`); the id never changes.
    /// `None`: unnamed (enrolled before names existed). A decommissioned agent keeps its last
    /// name here, but the name is free for another agent.
    #[n(18)]
    pub name: Option<String>,
    /// When it was decommissioned: revoked for good, its assignments removed, its name freed;
    /// its run history stays.
    #[n(19)]
    pub decommissioned_ms: Option<UnixMillis>,
}

/// A bootstrap token. Only the blake3 hash of the secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TokenRecord {
    /// Public id.
    #[n(0)]
    pub id: String,
    /// blake3 hex of the secret.
    #[n(1)]
    pub secret_hash: String,
    /// Labels an agent enrolled with this token gets (they take precedence).
    #[n(2)]
    pub labels: Vec<(String, String)>,
    /// When it was made.
    #[n(3)]
    pub created_ms: UnixMillis,
    /// When it stops working.
    #[n(4)]
    pub expires_ms: UnixMillis,
    /// When it was used.
    #[n(5)]
    pub used_ms: Option<UnixMillis>,
    /// The agent it enrolled (the last one, for a token of several uses).
    #[n(6)]
    pub used_by: Option<String>,
    /// How many agents may enroll with it (`None`: one, the tokens of older hubs).
    #[n(7)]
    pub max_uses: Option<u32>,
    /// How many agents enrolled with it (`None`: derived from `used_ms`, older records).
    #[n(8)]
    pub uses: Option<u32>,
    /// When an operator revoked it.
    #[n(9)]
    pub revoked_ms: Option<UnixMillis>,
}

impl TokenRecord {
    /// Agents enrolled with it so far.
    pub(crate) fn used(&self) -> u32 {
        self.uses.unwrap_or(u32::from(self.used_ms.is_some()))
    }

    /// Agents it may enroll in all.
    pub(crate) fn allowed(&self) -> u32 {
        self.max_uses.unwrap_or(1).max(1)
    }

    /// Whether it can enroll an agent at `now_ms`: not revoked, not spent, not expired.
    pub(crate) fn usable(&self, now_ms: UnixMillis) -> bool {
        self.revoked_ms.is_none() && self.used() < self.allowed() && now_ms < self.expires_ms
    }
}

/// The last assignment issued for (agent, workflow).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct IssuedAssignment {
    /// Workflow.
    #[n(0)]
    pub workflow: String,
    /// Epoch (strictly increasing per (agent, workflow)).
    #[n(1)]
    pub epoch: u64,
    /// Version assigned (0 with `remove`).
    #[n(2)]
    pub version: u64,
    /// Content hash of that version (empty with `remove`).
    #[n(3)]
    pub content_hash: String,
    /// A removal.
    #[n(4)]
    pub remove: bool,
    /// The [`SignedAssignment`] as issued.
    #[n(5)]
    pub signed: SignedAssignment,
    /// When.
    #[n(6)]
    pub issued_ms: UnixMillis,
}

/// What an agent should run: one workflow at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredVersion {
    /// Workflow.
    pub workflow: String,
    /// Version.
    pub version: u64,
    /// Its content hash.
    pub content_hash: String,
    /// Version to return to under probation (rollouts).
    pub previous_version: Option<u64>,
    /// Local probation `(runs, max_failures)` (rollouts).
    pub probation: Option<(u32, u32)>,
    /// The rollout this assignment belongs to.
    pub rollout_id: Option<String>,
}

/// The last deploy result of (agent, workflow).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct DeployResultRecord {
    /// Workflow.
    #[n(0)]
    pub workflow: String,
    /// Version offered.
    #[n(1)]
    pub version: u64,
    /// Epoch offered.
    #[n(2)]
    pub epoch: u64,
    /// `None`: activated; otherwise why it was rejected.
    #[n(3)]
    pub rejected: Option<String>,
    /// When the hub recorded it.
    #[n(4)]
    pub at_ms: UnixMillis,
}

/// A workflow version waiting for release signatures: the header bytes are fixed (the version
/// number included), so every release key signs the same bytes. Promoted to
/// `workflow_versions` once a threshold of the release role signed.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PendingVersion {
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub version: u64,
    #[n(2)]
    #[cbor(with = "minicbor::bytes")]
    pub content: Vec<u8>,
    #[n(3)]
    pub format: String,
    #[n(4)]
    pub content_hash: String,
    #[n(5)]
    pub created_ms: UnixMillis,
    #[n(6)]
    pub origin: String,
    #[n(7)]
    pub applied_by: String,
    /// Sorted by key.
    #[n(8)]
    pub target: Vec<(String, String)>,
    /// The `BundleHeader` CBOR the release keys sign.
    #[n(9)]
    #[cbor(with = "minicbor::bytes")]
    pub header_bytes: Vec<u8>,
    /// Valid release signatures so far (one per key).
    #[n(10)]
    pub signatures: Vec<Signature>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AuditEntry {
    /// Sequence number (assigned by the store).
    #[n(0)]
    pub seq: u64,
    /// When.
    #[n(1)]
    pub at_ms: UnixMillis,
    /// Who (operator token name, agent id, `hub`).
    #[n(2)]
    pub actor: String,
    /// What (`workflow.apply`, `agent.revoke`, ...).
    #[n(3)]
    pub action: String,
    /// On what (workflow name, agent id, ...).
    #[n(4)]
    pub target: String,
    /// Details for humans.
    #[n(5)]
    pub detail: String,
    /// The previous entry's [`AuditEntry::hash`] (32 zero bytes for the first entry). `None`
    /// only in a store from before the chain, until its migration chains it.
    #[n(6)]
    pub prev_hash: Option<minicbor::bytes::ByteArray<32>>,
    /// blake3 over `prev_hash` and this entry's canonical bytes (see `store/audit.rs`,
    /// [`AuditEntry::chain_hash`]).
    #[n(7)]
    pub hash: Option<minicbor::bytes::ByteArray<32>>,
}

/// Filter of [`Store::runs`]. Runs are listed newest first (by creation time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunQuery {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this state.
    pub state: Option<RunState>,
    /// Only runs created at or after this time.
    pub since_ms: Option<UnixMillis>,
    /// Only runs listed after this one (older; the cursor of the next page): strictly before
    /// it in the listing's order, creation time then agent then run id, newest first.
    pub before: Option<RunCursor>,
    /// At most this many.
    pub limit: usize,
}

/// A position in the run listing ([`RunQuery::before`]): a run's creation time, agent and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunCursor {
    /// The run's creation time.
    pub created_ms: UnixMillis,
    /// Its agent.
    pub agent: String,
    /// Its id.
    pub run_id: String,
}

impl Default for RunQuery {
    fn default() -> Self {
        RunQuery {
            workflow: None,
            agent: None,
            state: None,
            since_ms: None,
            before: None,
            limit: 1000,
        }
    }
}

/// A run as the hub holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct HubRun {
    /// The agent that made it.
    pub agent_id: String,
    /// Latest snapshot.
    pub record: RunRecord,
}

/// The label selector `target` matches `labels` when every (k, v) of it is in `labels`.
pub(crate) fn selector_matches(target: &[(String, String)], labels: &[(String, String)]) -> bool {
    target
        .iter()
        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
}

pub(super) fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v.dedup();
    v
}
