//! The JSON shapes of the HTTP API (requests and responses), shared by the server and the CLI
//! client, and the helpers that render records into them. Times are RFC 3339 strings (UTC).
//! This file: workflows, agents, tokens, runs; [`pools`], [`rollouts`] and [`audit`] in their
//! own files (all re-exported here).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use outpost_common::record::rfc3339;

mod audit;
mod firings;
mod lifecycle;
mod operators;
mod pools;
mod rollouts;

pub use audit::*;
pub use firings::*;
pub use lifecycle::*;
pub use operators::*;
pub use pools::*;
pub use rollouts::*;

/// Label pairs as a map.
pub fn label_map(v: &[(String, String)]) -> BTreeMap<String, String> {
    v.iter().cloned().collect()
}

/// One file of `POST /v1/workflows`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyFile {
    /// The path (for diagnostics and the format: `.toml` is TOML, anything else YAML).
    pub path: String,
    /// The file's text.
    pub content: String,
}

/// `POST /v1/workflows` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The files.
    pub files: Vec<ApplyFile>,
}

/// The outcome for one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResult {
    /// The file's path as sent.
    pub path: String,
    /// The workflow name (valid files).
    pub name: Option<String>,
    /// The latest version after applying (valid files).
    pub version: Option<u64>,
    /// Whether a new version was made.
    pub changed: bool,
    /// `version` waits for release signatures: no agent runs it yet (`release status`).
    #[serde(default)]
    pub pending: bool,
    /// Validation problems (`file:line:column: ...`); non-empty means nothing was applied.
    pub diagnostics: Vec<String>,
    /// A dry run's plan for this file (valid files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanView>,
}

/// `POST /v1/workflows` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// One per file, in order.
    pub results: Vec<ApplyResult>,
}

/// A row of `GET /v1/workflows`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowSummary {
    /// Name.
    pub name: String,
    /// Latest version.
    pub version: u64,
    /// Number of versions.
    pub versions: u64,
    /// Paused at the hub.
    pub paused: bool,
    /// Target selector.
    pub target: BTreeMap<String, String>,
    /// When the latest version was made.
    pub updated: String,
    /// When `workflow delete` removed it (listed with `?all=true` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
}

/// `GET /v1/workflows/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowDetail {
    /// Name.
    pub name: String,
    /// This version.
    pub version: u64,
    /// The file's text.
    pub content: String,
    /// blake3 hex of the content.
    pub content_hash: String,
    /// When this version was made.
    pub created: String,
    /// Target selector.
    pub target: BTreeMap<String, String>,
    /// `yaml` or `toml`.
    pub format: String,
    /// Where it came from.
    pub origin: String,
}

/// A row of `GET /v1/workflows/{name}/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Version.
    pub version: u64,
    /// blake3 hex.
    pub content_hash: String,
    /// When.
    pub created: String,
    /// Where it came from.
    pub origin: String,
    /// Who applied it.
    pub applied_by: String,
}

/// `GET /v1/workflows/{name}/diff`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffResponse {
    /// Unified diff text.
    pub diff: String,
}

/// `POST /v1/workflows/{name}/rollback` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// The version whose content becomes the new version.
    pub to: u64,
}

/// `POST /v1/workflows/{name}/rollback` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionResponse {
    /// The latest version now.
    pub version: u64,
    /// Whether a new version was made.
    pub changed: bool,
    /// `version` waits for release signatures.
    #[serde(default)]
    pub pending: bool,
}

/// One agent's outcome of a command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentResult {
    /// Agent id.
    pub id: String,
    /// Whether it worked.
    pub ok: bool,
    /// Details.
    pub message: String,
}

/// `POST /v1/workflows/{name}/pause|resume` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentsResponse {
    /// Per targeted agent.
    pub agents: Vec<AgentResult>,
}

/// `POST /v1/workflows/{name}/trigger` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TriggerRequest {
    /// Only this agent (default: every agent the workflow targets).
    #[serde(default)]
    pub agent: Option<String>,
    /// Run parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// One agent's trigger outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerResult {
    /// Agent id.
    pub agent: String,
    /// Whether the run was started.
    pub ok: bool,
    /// The run id.
    pub run_id: Option<String>,
    /// Details.
    pub message: String,
}

/// `POST /v1/workflows/{name}/trigger` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerResponse {
    /// Per agent.
    pub results: Vec<TriggerResult>,
}

/// A workflow version active on an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActiveView {
    /// Workflow.
    pub workflow: String,
    /// Version.
    pub version: u64,
}

/// A row of `GET /v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentView {
    /// Agent id.
    pub id: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Has a live session.
    pub online: bool,
    /// Online since (session start) or offline since (last seen).
    pub since: Option<String>,
    /// Software version it reported.
    pub software_version: String,
    /// Workflow versions active on it.
    pub active: Vec<ActiveView>,
    /// When it was revoked.
    #[serde(default)]
    pub revoked: Option<String>,
    /// Its name (unique; `agent rename` changes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was decommissioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decommissioned: Option<String>,
}

/// A certificate: its SHA-256 and expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertView {
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    /// Its `not_after`.
    pub expires: String,
}

/// A root CA the hub trusts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootCaView {
    /// The certificate.
    #[serde(flatten)]
    pub cert: CertView,
    /// Whether it signed the current intermediate (bootstrap tokens pin it).
    pub issuing: bool,
    /// Agents (not revoked) that said they pin it (after `ca rotate`).
    pub agents_pinning: usize,
}

/// `GET /v1/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificatesView {
    /// The hub's server certificate presented now.
    pub hub_certificate: Option<CertView>,
    /// The intermediate CA that issues.
    pub intermediate: CertView,
    /// The root CAs the hub trusts.
    pub roots: Vec<RootCaView>,
    /// Agents not revoked.
    pub agents: usize,
    /// Certificates that expire within `cert_warning_lead`.
    pub warnings: Vec<String>,
}

/// The last deploy result of a workflow on an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployView {
    /// Workflow.
    pub workflow: String,
    /// Version offered.
    pub version: u64,
    /// Epoch offered.
    pub epoch: u64,
    /// Whether it was activated.
    pub accepted: bool,
    /// The rejection reason.
    pub reason: Option<String>,
    /// When.
    pub at: String,
}

/// `GET /v1/agents/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentDetail {
    /// The summary.
    #[serde(flatten)]
    pub agent: AgentView,
    /// Host name at enrollment.
    pub hostname: String,
    /// When it enrolled.
    pub enrolled: String,
    /// Certificate serial (hex).
    pub cert_serial: String,
    /// Certificate SHA-256 (hex).
    pub cert_fingerprint: String,
    /// Highest status seq committed at the hub.
    pub committed_seq: u64,
    /// The agent's clock minus the hub's, milliseconds, as it last reported (measured against
    /// the hub's signed time; `None`: not reported yet).
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    /// When that was measured (hub time).
    #[serde(default)]
    pub clock_measured: Option<String>,
    /// Last deploy results.
    pub deploys: Vec<DeployView>,
    /// When its certificate expires.
    #[serde(default)]
    pub cert_expires: Option<String>,
    /// Set when the certificate expires within the warning lead time (`cert_warning_lead`)
    /// and the agent has not renewed it.
    #[serde(default)]
    pub cert_warning: Option<String>,
    /// SHA-256 of the root CAs the agent pins, as it last said (after `ca rotate`).
    #[serde(default)]
    pub pinned_roots: Vec<String>,
}

/// `POST /v1/agents/{id}/revoke` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// Agent id.
    pub id: String,
    /// Whether it was newly revoked (false: it already was).
    pub revoked: bool,
}

/// `POST /v1/tokens` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenRequest {
    /// Labels of the agent that enrolls with it.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Time to live (`30m`, `1h`, ...); default 1h, at most the hub's `max_token_ttl`.
    #[serde(default)]
    pub ttl: Option<String>,
    /// How many agents may enroll with it (one each); default 1.
    #[serde(default)]
    pub uses: Option<u32>,
}

/// `POST /v1/tokens` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// `opt2.<token_id>.<secret>.<ca_sha256_hex>.<hub_name>`.
    pub token: String,
    /// When it expires.
    pub expires: String,
    /// The token id (`token list`, `token revoke`).
    #[serde(default)]
    pub id: String,
    /// How many agents may enroll with it.
    #[serde(default)]
    pub uses: u32,
}

/// A bootstrap token as `GET /v1/tokens` shows it (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenView {
    /// Token id.
    pub id: String,
    /// Labels the agents enrolled with it get.
    pub labels: BTreeMap<String, String>,
    /// When it was made.
    pub created: String,
    /// When it expires.
    pub expires: String,
    /// Agents enrolled with it.
    pub used: u32,
    /// Agents it may enroll in all.
    pub uses: u32,
    /// The last agent it enrolled.
    pub last_agent: Option<String>,
    /// When it was revoked.
    pub revoked: Option<String>,
    /// `usable`, `spent`, `expired` or `revoked`.
    pub state: String,
}

/// `POST /v1/tokens/{id}/revoke` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRevokeResponse {
    /// Token id.
    pub id: String,
    /// Whether this call revoked it (false: it already was).
    pub revoked: bool,
}

pub use outpost_common::views::TaskView;

/// A run as the API shows it: the shape both command lines share, with the agent's id.
pub type RunView = outpost_common::views::RunView<String>;

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// Always true when it answers.
    pub ok: bool,
    /// Hub software version.
    pub version: String,
    /// The hub's name.
    pub hub_name: String,
    /// `embedded` (one hub, always leading), or in HA mode `leader` or `follower` at the
    /// moment of the request (docs/operations.md, "High availability"). A load balancer can
    /// send operators to the leader with it.
    #[serde(default)]
    pub role: String,
    /// The leader's epoch, on the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// JSON error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// A release signature in JSON (`sig` hex).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignatureView {
    pub key_id: String,
    pub sig: String,
}

/// A version waiting for release signatures (`GET /v1/releases/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingView {
    pub workflow: String,
    pub version: u64,
    pub content_hash: String,
    /// When it was applied, RFC 3339.
    pub applied: String,
    pub applied_by: String,
    pub origin: String,
    /// Ids of the release keys that signed.
    pub signed_by: Vec<String>,
    /// The release threshold of the current root.
    pub needed: u32,
    /// The exact header bytes the release keys sign, hex (`release export` writes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_hex: Option<String>,
    /// The workflow file (`release export`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `POST /v1/releases/{name}/signatures`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseSignRequest {
    pub version: u64,
    pub signatures: Vec<SignatureView>,
}

/// The answer: where the version stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseSignResponse {
    pub workflow: String,
    pub version: u64,
    pub signed_by: Vec<String>,
    pub needed: u32,
    /// The threshold is reached: the version is deployable.
    pub released: bool,
}

/// One role of the root metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleView {
    pub key_ids: Vec<String>,
    pub threshold: u32,
}

/// `GET /v1/root`: the newest root metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootView {
    pub version: u64,
    pub issued: String,
    pub expires: String,
    pub root: RoleView,
    pub release: RoleView,
    pub director: RoleView,
    pub reset_counters: bool,
    /// The signed root metadata (CBOR), hex: what `root next --current` starts from.
    pub signed_hex: String,
}

/// `POST /v1/root`: the next root metadata, signed (CBOR, hex).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootPublishRequest {
    pub signed_hex: String,
}

/// `POST /v1/agents/{id}/rename` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenameRequest {
    /// The new name.
    pub name: String,
}

/// `POST /v1/agents/{id}/rename` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenameResponse {
    /// Agent id (never changes).
    pub id: String,
    /// The name it had.
    pub old_name: Option<String>,
    /// The name it has now.
    pub name: String,
}

/// `POST /v1/agents/{id}/decommission` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecommissionResponse {
    /// Agent id.
    pub id: String,
    /// False: it was decommissioned before.
    pub decommissioned: bool,
    /// The name it freed.
    pub freed_name: Option<String>,
    /// Assignments removed.
    pub assignments_removed: usize,
}

/// `POST /v1/runs/{id}/retry` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetryRequest {
    /// The agent (when several agents have this run id).
    #[serde(default)]
    pub agent: Option<String>,
    /// Only this task (default: every failed task and what it blocked).
    #[serde(default)]
    pub task: Option<String>,
    /// With `task`: its downstream tasks that did not succeed too.
    #[serde(default)]
    pub downstream: bool,
}

/// `POST /v1/workflows/{name}/backfill` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackfillRequest {
    /// Window start (RFC 3339), inclusive.
    pub from: String,
    /// Window end (RFC 3339), exclusive.
    pub to: String,
    /// Only the members of this pool that hold the workflow.
    #[serde(default)]
    pub pool: Option<String>,
    /// Only this agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// At most this many backfill runs at once on each agent (default 1).
    #[serde(default)]
    pub max_active: Option<u32>,
    /// Only list the instants and the agents.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/workflows/{name}/backfill` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillResponse {
    /// The schedule's instants in the window, RFC 3339, in order.
    pub instants: Vec<String>,
    /// The agents it is (or, with `dry_run`, would be) sent to.
    pub agents: Vec<String>,
    /// Per agent (empty with `dry_run`).
    pub results: Vec<TriggerResult>,
}
