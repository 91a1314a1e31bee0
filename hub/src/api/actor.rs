//! The actor of a request: the operator credential that authenticated it (never a header),
//! who the audit log and the domain events name, and what its role allows.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};

use super::ApiError;
use crate::store::{OperatorRecord, Role};

/// The operator of a request, put in the request's extensions by the auth middleware from the
/// credential it presented. Every handler that changes something takes one and passes its name
/// to its operation; a deployer limited to pools is checked with [`Actor::may_act_on_pool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The credential's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// For a deployer limited to pools: those pools (empty: every pool).
    pub pools: Vec<String>,
}

impl Actor {
    /// The actor of an authenticated operator record.
    pub(crate) fn of(rec: &OperatorRecord) -> Actor {
        Actor {
            name: rec.name.clone(),
            role: rec.role,
            pools: rec.pools.clone(),
        }
    }

    /// The actor's name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Refuse (403) an action on `pool` by a deployer limited to other pools.
    pub(crate) fn may_act_on_pool(&self, pool: &str) -> Result<(), ApiError> {
        if self.pools.is_empty() || self.pools.iter().any(|p| p == pool) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "operator {} may act only on pools {}, not on pool {pool}",
                self.name,
                self.pools.join(", ")
            ),
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .ok_or_else(|| ApiError::internal("request reached a handler unauthenticated"))
    }
}

/// The least role a route needs (`path` is the route's pattern, e.g. `/v1/runs/{id}/cancel`).
/// Reads need a viewer, except log fetches (operator) and the credential lists (admin);
/// commands to agents need an operator; changing what agents run needs a deployer; anything
/// not listed here (operators, tokens, agents, pools, backup, and any route added later)
/// needs an admin, so a new route is closed until it is placed (`hub/tests/openapi.rs` checks
/// that every route of the router is named in this file).
pub fn required_role(method: &Method, path: &str) -> Role {
    match (method.as_str(), path) {
        (
            "GET",
            "/v1/workflows"
            | "/v1/workflows/{name}"
            | "/v1/workflows/{name}/history"
            | "/v1/workflows/{name}/diff"
            | "/v1/workflows/{name}/rollouts"
            | "/v1/workflows/{name}/pools/{pool}/rollout"
            | "/v1/agents"
            | "/v1/agents/{id}"
            | "/v1/runs"
            | "/v1/runs/{id}"
            | "/v1/firings"
            | "/v1/pools"
            | "/v1/pools/{name}"
            | "/v1/rollouts"
            | "/v1/audit"
            | "/v1/audit/verify"
            | "/v1/audit/export"
            | "/v1/releases"
            | "/v1/releases/{name}"
            | "/v1/root"
            | "/v1/certificates"
            | "/v1/whoami"
            | "/v1/alerts/channels"
            | "/v1/alerts"
            | "/v1/alerts/silences"
            // Prometheus scrapes with a viewer's credential (docs/operations.md, Metrics).
            | "/metrics",
        ) => Role::Viewer,
        ("POST", "/v1/alerts/silences") | ("DELETE", "/v1/alerts/silences/{id}") => Role::Operator,
        ("GET", "/v1/runs/{id}/logs/{task}") => Role::Operator,
        (
            "POST",
            "/v1/workflows/{name}/pause"
            | "/v1/workflows/{name}/resume"
            | "/v1/workflows/{name}/trigger"
            | "/v1/runs/{id}/cancel"
            | "/v1/alerts/channels/{name}/test"
            | "/v1/runs/{id}/retry"
            | "/v1/workflows/{name}/backfill",
        ) => Role::Operator,
        (
            "POST",
            "/v1/workflows"
            | "/v1/workflows/{name}/rollback"
            | "/v1/workflows/{name}/deploy"
            | "/v1/workflows/{name}/pin"
            | "/v1/workflows/{name}/unpin"
            | "/v1/workflows/{name}/delete"
            | "/v1/rollouts"
            | "/v1/releases/{name}/signatures"
            | "/v1/workflows/{name}/pools/{pool}/rollout/{command}",
        ) => Role::Deployer,
        // Named so that the check of every route finds them: admin only.
        (
            "GET" | "POST",
            "/v1/tokens"
            | "/v1/tokens/{id}/revoke"
            | "/v1/operators"
            | "/v1/operators/{name}/revoke"
            | "/v1/agents/{id}/revoke"
            | "/v1/agents/{id}/labels"
            | "/v1/pools"
            | "/v1/root"
            | "/v1/backup"
            | "/v1/store/compact"
            | "/v1/agents/{id}/rename"
            | "/v1/agents/{id}/decommission",
        )
        | ("DELETE", "/v1/pools/{name}") => Role::Admin,
        _ => Role::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_of_routes() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(required_role(&get, "/v1/workflows"), Role::Viewer);
        assert_eq!(required_role(&get, "/v1/audit"), Role::Viewer);
        assert_eq!(required_role(&get, "/metrics"), Role::Viewer);
        assert_eq!(
            required_role(&get, "/v1/runs/{id}/logs/{task}"),
            Role::Operator
        );
        assert_eq!(required_role(&get, "/v1/operators"), Role::Admin);
        assert_eq!(required_role(&get, "/v1/tokens"), Role::Admin);
        assert_eq!(required_role(&get, "/v1/something-new"), Role::Admin);
        assert_eq!(
            required_role(&post, "/v1/workflows/{name}/trigger"),
            Role::Operator
        );
        assert_eq!(required_role(&post, "/v1/runs/{id}/cancel"), Role::Operator);
        assert_eq!(required_role(&get, "/v1/alerts/channels"), Role::Viewer);
        assert_eq!(
            required_role(&post, "/v1/alerts/channels/{name}/test"),
            Role::Operator
        );
        assert_eq!(required_role(&get, "/v1/alerts"), Role::Viewer);
        assert_eq!(required_role(&get, "/v1/alerts/silences"), Role::Viewer);
        assert_eq!(required_role(&post, "/v1/alerts/silences"), Role::Operator);
        assert_eq!(
            required_role(&Method::DELETE, "/v1/alerts/silences/{id}"),
            Role::Operator
        );
        assert_eq!(required_role(&post, "/v1/workflows"), Role::Deployer);
        assert_eq!(required_role(&post, "/v1/rollouts"), Role::Deployer);
        for admin in [
            "/v1/operators",
            "/v1/operators/{name}/revoke",
            "/v1/tokens",
            "/v1/agents/{id}/revoke",
            "/v1/backup",
            "/v1/store/compact",
            "/v1/pools",
            "/v1/something-new",
        ] {
            assert_eq!(required_role(&post, admin), Role::Admin, "{admin}");
        }
        assert_eq!(
            required_role(&Method::DELETE, "/v1/pools/{name}"),
            Role::Admin
        );
    }

    #[test]
    fn a_deployer_limited_to_pools_acts_on_those_only() {
        let a = Actor {
            name: "d".into(),
            role: Role::Deployer,
            pools: vec!["line-a".into(), "wf:etl".into()],
        };
        assert!(a.may_act_on_pool("line-a").is_ok());
        assert!(a.may_act_on_pool("line-b").is_err());
        assert!(a.may_act_on_pool("wf:etl").is_ok());
        let free = Actor { pools: vec![], ..a };
        assert!(free.may_act_on_pool("line-b").is_ok());
    }
}
