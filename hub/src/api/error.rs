//! The API's one error type: a status and a message, rendered as `{"error": message}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::gateway::GatewayError;
use crate::ops::OpError;
use crate::rollouts::RolloutError;
use crate::store::StoreError;
use crate::views::ErrorBody;

/// An API error: a status and a message, rendered as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
    /// The message for the operator.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NoWorkflow(_)
            | StoreError::NoVersion { .. }
            | StoreError::NoAgent(_)
            | StoreError::NoToken(_)
            | StoreError::NoOperator(_) => StatusCode::NOT_FOUND,
            StoreError::BadToken => StatusCode::BAD_REQUEST,
            StoreError::NoPool(_) | StoreError::NoRollout(_) => StatusCode::NOT_FOUND,
            StoreError::Revoked(_) | StoreError::AgentExists(_) | StoreError::Conflict(_) => {
                StatusCode::CONFLICT
            }
            StoreError::Refused(_) => StatusCode::BAD_REQUEST,
            StoreError::Unavailable(_) | StoreError::History(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => {
                tracing::error!(error = %e, "store error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let status = match &e {
            GatewayError::NotConnected(_) | GatewayError::Closed(_) => StatusCode::CONFLICT,
            GatewayError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> Self {
        use RolloutError as E;
        match e {
            E::Store(s) => s.into(),
            E::Spec(s) => ApiError::bad(format!("invalid rollout: {s}")),
            E::Refused(r) => ApiError::new(StatusCode::CONFLICT, format!("refused: {r}")),
            E::NoRollout { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            E::Bad(m) => ApiError::bad(m),
            E::Decode(d) => ApiError::internal(d.to_string()),
        }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Store(s) => s.into(),
            OpError::Gateway(g) => g.into(),
            OpError::Rollout(r) => r.into(),
            OpError::Invalid(m) => ApiError::bad(m),
            OpError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            OpError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            OpError::Internal(m) => ApiError::internal(m),
        }
    }
}
