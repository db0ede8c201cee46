//! The API's one error type: an HTTP status, a stable code, a message and a hint.

use axum::Json;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use conclave_client::ClientError;
use conclave_coord::{CoordError, rejection_code};
use conclave_raft::{ConsensusError, RejectReason};
use conclave_state::LimitError;
use conclave_types::{ErrorBody, ErrorCode, ErrorDetail, Violation};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
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
    pub holder: Option<conclave_types::ipam::AddressHolder>,
    pub usage: Option<conclave_types::ipam::NetworkUsage>,
    pub conflicts: Option<Vec<conclave_types::ipam::ImportConflict>>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: ErrorCode,
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
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            message,
            hint,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let extra = self.extra.map(|e| *e).unwrap_or_default();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                hint: self.hint,
                current_revision: self.current_revision,
                violations: extra.violations,
                compacted_revision: extra.compacted_revision,
                holder: extra.holder,
                usage: extra.usage,
                conflicts: extra.conflicts,
                request_id: None,
            },
        };
        // The request-id middleware (`audit::request_id`) finds the body here and answers
        // it with the request's id.
        let mut response = (self.status, Json(body.clone())).into_response();
        response.extensions_mut().insert(body);
        response
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
                ErrorCode::TooLarge,
                e.to_string(),
                "use a shorter key; the limit is set by the agent's max_key_bytes",
            ),
            LimitError::ValueTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
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
            // A name is in the path or a small field, not a payload: a plain 400.
            LimitError::NameTooLong { .. } | LimitError::NameTooManyChars { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::TooLarge,
                e.to_string(),
                "use a shorter name",
            ),
            LimitError::TtlOutOfRange { .. } => ApiError::bad_request(
                e.to_string(),
                "pass ttl_ms between 500 and 3600000; it should exceed the Raft election timeout",
            ),
            LimitError::TooMany { .. } => ApiError::bad_request(
                e.to_string(),
                "split it: several policies, each with fewer rules, or fewer policies per token",
            ),
        }
    }
}

impl From<ConsensusError> for ApiError {
    fn from(e: ConsensusError) -> Self {
        match &e {
            ConsensusError::NotLeader { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NoLeader,
                e.to_string(),
                "retry shortly; an election may be in progress",
            ),
            ConsensusError::NoQuorum { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NoQuorum,
                e.to_string(),
                "nothing was done; retry on a node on the majority's side (`conclave status` on another node shows the leader), and check the network between the voters",
            ),
            ConsensusError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                e.to_string(),
                "retry on another node or once this node is back",
            ),
            ConsensusError::Indeterminate(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Indeterminate,
                e.to_string(),
                "read the key to see whether the write took effect, or retry with ?cas=",
            ),
            ConsensusError::Rejected(reason) => {
                let (status, hint) = rejection(reason);
                ApiError::new(status, rejection_code(reason), reason.to_string(), hint)
            }
        }
    }
}

/// The one table from a consensus refusal to HTTP: status and what to do (the stable code
/// is `conclave_coord::rejection_code`'s).
fn rejection(reason: &RejectReason) -> (StatusCode, &'static str) {
    match reason {
        RejectReason::NotAMember { .. } => (
            StatusCode::NOT_FOUND,
            "list the members with `conclave members list` (GET /v1/cluster/members)",
        ),
        RejectReason::LastVoter { .. } => (
            StatusCode::CONFLICT,
            "add and promote another voter first (conclave members add / promote)",
        ),
        RejectReason::UnsafeQuorum { .. } => (
            StatusCode::CONFLICT,
            "bring the unhealthy voters back first, or repeat with --force (?force=true) if they are gone for good",
        ),
        RejectReason::AlreadyMember { .. } => (
            StatusCode::CONFLICT,
            "a member's address is updated by the node itself when it restarts; remove it first to re-add it",
        ),
        RejectReason::NotInSync { .. } => (
            StatusCode::CONFLICT,
            "wait until it catches up (its lag is in `conclave members list`), and check that the leader can reach it",
        ),
        RejectReason::AddressInUse { .. } => (
            StatusCode::CONFLICT,
            "give the node's own RPC address; to replace a member at that address, remove it first",
        ),
        RejectReason::NameTaken { .. } => (
            StatusCode::CONFLICT,
            "names are unique among the members: give the node another --node-name, or remove the member holding it first",
        ),
        RejectReason::NotCaughtUp { .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            "check that it is running and reachable, then promote it with `conclave members promote`",
        ),
        RejectReason::NotAVoter { .. } => (
            StatusCode::CONFLICT,
            "leadership can only go to a voter; promote it first",
        ),
        RejectReason::Unhealthy { .. } => (
            StatusCode::CONFLICT,
            "pick a healthy voter, or leave the target out to let the leader choose",
        ),
        RejectReason::NoHealthyVoter => (StatusCode::CONFLICT, "add or repair a voter first"),
        RejectReason::MembershipChangeInProgress { .. } => (
            StatusCode::CONFLICT,
            "wait for the previous membership change to finish, then retry",
        ),
        RejectReason::Inadmissible { .. } => (
            StatusCode::BAD_REQUEST,
            "the node the request entered at should have refused it; check that every node runs the same release",
        ),
        RejectReason::Refused { .. } => (
            StatusCode::BAD_REQUEST,
            "fix the key or name; the entry point should have refused it, so check that every node runs the same release",
        ),
        RejectReason::Removed { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is no longer a member; send requests to another node",
        ),
    }
}

/// The one table from a coordination refusal to HTTP: status, code, message and hint.
impl From<CoordError> for ApiError {
    fn from(e: CoordError) -> Self {
        let code = e.code();
        let message = e.to_string();
        let error =
            |status: StatusCode, hint: String| ApiError::new(status, code, message.clone(), hint);
        match e {
            CoordError::Consensus(c) => c.into(),
            CoordError::Limit(l) => l.into(),
            CoordError::BadName(_) => error(
                StatusCode::BAD_REQUEST,
                "document paths are /v1/config/<kind>/<name>".into(),
            ),
            CoordError::UnknownKind { kind } => error(
                StatusCode::NOT_FOUND,
                format!(
                    "built-in kinds are remote-peers and schema; register a JSON Schema with PUT /v1/config/schema/{kind} to make {kind} a kind"
                ),
            ),
            CoordError::Invalid {
                kind,
                name,
                violations,
            } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!(
                    "{kind}/{name} is not valid: {}",
                    violations
                        .iter()
                        .map(|v| format!(
                            "{}: {}",
                            if v.path.is_empty() { "/" } else { &v.path },
                            v.message
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                "fix each field listed in violations (JSON Pointer paths) and send the document again",
            )
            .with_violations(
                violations
                    .into_iter()
                    .map(|v| Violation {
                        path: v.path,
                        message: v.message,
                    })
                    .collect(),
            ),
            CoordError::DocumentNotFound {
                kind,
                name,
                revision: Some(r),
            } => ApiError::new(
                StatusCode::NOT_FOUND,
                code,
                format!("{kind}/{name} did not exist at revision {r}"),
                format!("see GET /v1/config/{kind}/{name}/history for its versions"),
            ),
            CoordError::DocumentNotFound { revision: None, .. } => error(
                StatusCode::NOT_FOUND,
                "list documents with GET /v1/config; write one with PUT".into(),
            ),
            // Not there yet, like a key that does not exist (the request itself is valid).
            CoordError::FutureRevision { .. } => error(
                StatusCode::NOT_FOUND,
                "ask for a revision at or before the X-Conclave-Index of a recent response".into(),
            ),
            CoordError::RevisionGone { .. } => error(
                StatusCode::GONE,
                format!(
                    "each document keeps its last {} versions",
                    conclave_state::registry::MAX_VERSIONS
                ),
            ),
            CoordError::CasConflict { current } => crate::kv::cas_conflict(current),
            CoordError::Acl(refusal) => {
                let status = if code == ErrorCode::NotFound {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::CONFLICT
                };
                error(
                    status,
                    format!(
                        "{}; list tokens with GET /v1/acl/tokens and policies with GET /v1/acl/policies",
                        match refusal {
                            conclave_state::acl::AclRefusal::AlreadyBootstrapped =>
                                "bootstrap happens once per cluster",
                            _ => "nothing was changed",
                        }
                    ),
                )
            }
            CoordError::ElectionNotFound { name } => error(
                StatusCode::NOT_FOUND,
                format!("campaign with POST /v1/elections/{name}/campaign"),
            ),
            CoordError::NotHolder { .. } => error(
                StatusCode::CONFLICT,
                "the lease ended or was never held: stop acting as the holder and campaign again"
                    .into(),
            ),
            CoordError::Compacted { compacted } => ApiError::new(
                StatusCode::GONE,
                code,
                format!("changes up to revision {compacted} are no longer available on this node"),
                format!(
                    "read the current state and watch from its revision, or from {compacted} or later"
                ),
            )
            .with_compacted(compacted),
            CoordError::Ipam(refusal) => crate::ipam::refusal_error(refusal),
            CoordError::Internal(_) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this is a bug in conclave; please report it".into(),
            ),
            CoordError::NoMember => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "wait until gossip finds the cluster (see /v1/members), or send the request to a member".into(),
            ),
            CoordError::Remote(ClientError::Api(a)) => ApiError::new(
                StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY),
                a.code,
                a.message,
                a.hint.unwrap_or_default(),
            ),
            CoordError::Remote(ClientError::TimedOut(_)) | CoordError::TimedOut(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Indeterminate,
                message,
                "it may or may not have been applied; read before retrying a write",
            ),
            CoordError::Remote(_) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the members gossip lists may be restarting; retry shortly".into(),
            ),
        }
    }
}

/// An optional JSON body that was left out: nothing, only whitespace, or `null`.
pub(crate) fn absent(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii();
    trimmed.is_empty() || trimmed == b"null"
}

pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no route for {method} {}", uri.path()),
        "the API lives under /v1: /v1/kv/{key}, /v1/kv?prefix=, /v1/status, /v1/health, /v1/ready, /v1/cluster/status, /v1/cluster/members",
    )
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
        "keys take GET, PUT and DELETE; /v1/kv, /v1/status, /v1/health and /v1/ready take GET; membership changes take POST or DELETE (see the README)",
    )
}

/// A JSON object request body as `T`; a 400 says what was expected (`what`) and how to
/// send it. Only an object: serde would also read a struct from an array of its fields
/// (`[["a"]]` for `{"references": ["a"]}`), which no request here is documented to take.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    hint: impl Into<String>,
) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::bad_request(
            format!("the body is not a valid {what}: it must be a JSON object"),
            hint,
        ));
    }
    parse_json_value(bytes, what, hint)
}

/// Any JSON request body as `T` (for a body that may be an array, like an import's rows).
pub(crate) fn parse_json_value<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    hint: impl Into<String>,
) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .or_else(|e| {
            // JSON has one number type: `465.0` is the integer 465 (as JSON Schema counts
            // it), which serde refuses for a `u64` field. Read such numbers as integers; the
            // first error (with its line and column) stands when that does not help.
            let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
                return Err(e);
            };
            integral_floats_as_integers(&mut value);
            serde_json::from_value(value).map_err(|_| e)
        })
        .map_err(|e| ApiError::bad_request(format!("the body is not a valid {what}: {e}"), hint))
}

fn integral_floats_as_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                // Only where a float holds every integer exactly (below 2^53): a larger
                // one may stand for several integers, and is refused as written.
                && (0.0..9_007_199_254_740_992.0).contains(&f)
            {
                *v = (f as u64).into();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        n: u64,
    }

    #[test]
    fn an_integer_written_as_a_float_is_an_integer_and_nothing_else_is() {
        let read = |s: &str| parse_json::<Body>(s.as_bytes(), "body", "hint");
        assert_eq!(read(r#"{"n": 465.0}"#).unwrap(), Body { n: 465 });
        assert_eq!(read(r#"{"n": 465}"#).unwrap(), Body { n: 465 });
        for bad in [
            r#"[465]"#,
            r#"[[]]"#,
            r#"{"n": 465.5}"#,
            r#"{"n": -1.0}"#,
            r#"{"n": 18446744073709551616}"#,
            r#"{"n": 1e300}"#,
        ] {
            let e = read(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn an_optional_body_left_out_is_empty_whitespace_or_null() {
        for body in ["", "  \n", "null", " null "] {
            assert!(absent(body.as_bytes()), "{body:?}");
        }
        for body in ["{}", "nul", "[]"] {
            assert!(!absent(body.as_bytes()), "{body:?}");
        }
    }
}
