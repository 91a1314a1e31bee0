//! JSON shapes of the operator endpoints (`/v1/operators`, `/v1/whoami`).

use serde::{Deserialize, Serialize};

/// `POST /v1/operators`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorCreate {
    /// The operator's name.
    pub name: String,
    /// `viewer`, `operator`, `deployer` or `admin`.
    pub role: String,
    /// For a deployer: the only pools it may act on (none: every pool).
    #[serde(default)]
    pub pools: Vec<String>,
}

/// An operator credential (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorView {
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Pools a deployer is limited to (empty: all).
    pub pools: Vec<String>,
    /// Credential id.
    pub id: String,
    /// When it was made.
    pub created: String,
    /// Who made it.
    pub created_by: String,
    /// When it was revoked.
    pub revoked: Option<String>,
}

/// `POST /v1/operators` answer: the credential, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorCreated {
    /// The operator.
    pub operator: OperatorView,
    /// The credential (`opo1.<id>.<secret>`): only its hash is kept.
    pub credential: String,
}

/// `POST /v1/operators/{name}/revoke` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorRevoked {
    /// The operator.
    pub name: String,
    /// Whether it was newly revoked.
    pub revoked: bool,
}

/// `GET /v1/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The credential's name (the actor of everything done with it).
    pub name: String,
    /// Its role.
    pub role: String,
    /// Pools a deployer is limited to (empty: all).
    pub pools: Vec<String>,
}
