//! JSON shape of the audit log endpoint.

use serde::{Deserialize, Serialize};

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditView {
    /// Seq.
    pub seq: u64,
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Details.
    pub detail: String,
}

/// `GET /v1/audit/verify`: the result of walking the audit hash chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditVerifyView {
    /// Whether the whole chain verifies.
    pub ok: bool,
    /// Entries that verified (all of them when `ok`).
    pub entries: u64,
    /// Hash (hex) of the last entry that verified: keep it to check later that the log was
    /// not rewritten from there on.
    pub head: String,
    /// The first entry that breaks the chain.
    pub broken_seq: Option<u64>,
    /// Why it breaks.
    pub reason: Option<String>,
}

/// One line of `GET /v1/audit/export` (JSON lines, one entry each, oldest first).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditExportLine {
    /// Seq.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// When (milliseconds since the Unix epoch: the value hashed).
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Details.
    pub detail: String,
    /// The previous entry's hash (hex).
    pub prev_hash: String,
    /// This entry's hash (hex): blake3(prev_hash || canonical bytes), see docs/security.md.
    pub hash: String,
}
