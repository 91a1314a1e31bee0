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
