//! The actor of a request: who the audit log and the domain events name.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;

/// Header naming the operator for the audit log (`--actor` / `OUTPOST_ACTOR` in the CLI).
pub const ACTOR_HEADER: &str = "x-outpost-actor";

/// Actor recorded when a request names none.
const DEFAULT_ACTOR: &str = "api";

/// The operator of a request: the `X-Outpost-Actor` header (1 to 64 printable characters),
/// else `api`. Every write handler takes one and passes it to its operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// The actor named by a header value (`None`: no header).
    pub fn from_header(value: Option<&axum::http::HeaderValue>) -> Result<Actor, ApiError> {
        let Some(v) = value else {
            return Ok(Actor(DEFAULT_ACTOR.into()));
        };
        let s = v
            .to_str()
            .map_err(|_| ApiError::bad("the actor header is not printable text"))?
            .trim();
        if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_control()) {
            return Err(ApiError::bad(
                "the actor must be 1 to 64 printable characters",
            ));
        }
        Ok(Actor(s.to_string()))
    }

    /// The actor's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Actor::from_header(parts.headers.get(ACTOR_HEADER))
    }
}
