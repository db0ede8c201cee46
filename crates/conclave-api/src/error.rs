//! The API's one error type: an HTTP status, a stable code, a message and a hint.

use axum::Json;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use conclave_raft::ConsensusError;
use conclave_state::LimitError;
use conclave_types::{ErrorBody, ErrorDetail, Violation, codes};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub hint: String,
    pub current_revision: Option<u64>,
    /// Rarely set details, boxed so the common error stays small.
    pub extra: Option<Box<ErrorExtra>>,
}

/// Details only some errors carry.
#[derive(Debug, Clone, Default)]
pub struct ErrorExtra {
    pub violations: Option<Vec<Violation>>,
    pub compacted_revision: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            hint: hint.into(),
            current_revision: None,
            extra: None,
        }
    }

    pub fn with_violations(mut self, violations: Vec<Violation>) -> Self {
        self.extra.get_or_insert_default().violations = Some(violations);
        self
    }

    pub fn with_compacted(mut self, revision: u64) -> Self {
        self.extra.get_or_insert_default().compacted_revision = Some(revision);
        self
    }

    pub fn bad_request(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message, hint)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let extra = self.extra.map(|e| *e).unwrap_or_default();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                hint: self.hint,
                current_revision: self.current_revision,
                violations: extra.violations,
                compacted_revision: extra.compacted_revision,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::EmptyKey => {
                ApiError::bad_request("the key is empty", "put the key in the path: /v1/kv/<key>")
            }
            LimitError::KeyTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::TOO_LARGE,
                e.to_string(),
                "use a shorter key; the limit is set by the agent's max_key_bytes",
            ),
            LimitError::ValueTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::TOO_LARGE,
                e.to_string(),
                "store large blobs elsewhere and keep a reference here; the limit is the agent's max_value_bytes",
            ),
            LimitError::Reserved => ApiError::bad_request(
                e.to_string(),
                "use /v1/config for configuration documents and /v1/elections for elections; /v1/watch?prefix=_conclave/ follows both",
            ),
            LimitError::EmptyName { .. } => {
                ApiError::bad_request(e.to_string(), "give a non-empty name in the path")
            }
            LimitError::NameTooLong { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::TOO_LARGE,
                e.to_string(),
                "use a shorter name",
            ),
            LimitError::TtlOutOfRange { .. } => ApiError::bad_request(
                e.to_string(),
                "pass ttl_ms between 500 and 3600000; it should exceed the Raft election timeout",
            ),
        }
    }
}

impl From<ConsensusError> for ApiError {
    fn from(e: ConsensusError) -> Self {
        match &e {
            ConsensusError::NotLeader { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::NO_LEADER,
                e.to_string(),
                "retry shortly; an election may be in progress",
            ),
            ConsensusError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                e.to_string(),
                "retry on another node or once this node is back",
            ),
            ConsensusError::Indeterminate(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::INDETERMINATE,
                e.to_string(),
                "read the key to see whether the write took effect, or retry with ?cas=",
            ),
            ConsensusError::Rejected {
                status,
                code,
                message,
                hint,
            } => ApiError::new(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::CONFLICT),
                known_code(code),
                message.clone(),
                hint.clone(),
            ),
        }
    }
}

/// Codes crossing a forwarding hop arrive as strings; map them back to the static set.
fn known_code(code: &str) -> &'static str {
    [
        codes::BAD_REQUEST,
        codes::MEMBER_NOT_FOUND,
        codes::UNSAFE,
        codes::CONFLICT,
        codes::REMOVED,
        codes::NOT_READY,
        codes::NOT_JOINED,
        codes::UNAVAILABLE,
        codes::NOT_HOLDER,
    ]
    .into_iter()
    .find(|c| *c == code)
    .unwrap_or(codes::CONFLICT)
}

pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
        "the API lives under /v1: /v1/kv/{key}, /v1/kv?prefix=, /v1/status, /v1/health, /v1/ready, /v1/cluster/status, /v1/cluster/members",
    )
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
        "keys take GET, PUT and DELETE; /v1/kv, /v1/status, /v1/health and /v1/ready take GET; membership changes take POST or DELETE (see the README)",
    )
}

/// A JSON request body as `T`; a 400 says what was expected (`what`) and how to send it.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    hint: impl Into<String>,
) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not a valid {what}: {e}"), hint))
}
