//! The stable error codes of the HTTP API.

use serde::{Deserialize, Serialize};

/// The stable error codes carried in [`crate::ErrorBody`]: one closed set, spelled once. The JSON
/// strings are the API contract (snake_case); a code this build does not know (from a newer
/// agent) reads as [`ErrorCode::Unknown`] instead of failing the whole answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    KeyNotFound,
    NotFound,
    MethodNotAllowed,
    CasConflict,
    TooLarge,
    NoLeader,
    NotReady,
    /// A leader that has not heard from a majority of voters for a leader lease.
    NoQuorum,
    Unavailable,
    Indeterminate,
    MemberNotFound,
    UnsafeMembershipChange,
    Conflict,
    Removed,
    NotJoined,
    InvalidDocument,
    UnknownKind,
    DocumentNotFound,
    RevisionGone,
    FutureRevision,
    ElectionNotFound,
    NotHolder,
    Compacted,
    /// Refused at the edge (a browser request from elsewhere, a host this agent does not
    /// answer to).
    Forbidden,
    /// No valid token (ACLs are on): none was sent, or it is unknown, revoked or expired.
    Unauthorized,
    /// IPAM: no network with that id.
    NetworkNotFound,
    /// IPAM: no such allocation.
    AllocationNotFound,
    /// IPAM: no free address left (the message gives the utilisation).
    NetworkFull,
    /// IPAM: the address is allocated (the message names its holder).
    AddressTaken,
    /// The agent's configuration, read again for a reload, is invalid: nothing changed.
    InvalidConfig,
    /// A code this build does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 32] = [
        ErrorCode::BadRequest,
        ErrorCode::KeyNotFound,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::CasConflict,
        ErrorCode::TooLarge,
        ErrorCode::NoLeader,
        ErrorCode::NotReady,
        ErrorCode::NoQuorum,
        ErrorCode::Unavailable,
        ErrorCode::Indeterminate,
        ErrorCode::MemberNotFound,
        ErrorCode::UnsafeMembershipChange,
        ErrorCode::Conflict,
        ErrorCode::Removed,
        ErrorCode::NotJoined,
        ErrorCode::InvalidDocument,
        ErrorCode::UnknownKind,
        ErrorCode::DocumentNotFound,
        ErrorCode::RevisionGone,
        ErrorCode::FutureRevision,
        ErrorCode::ElectionNotFound,
        ErrorCode::NotHolder,
        ErrorCode::Compacted,
        ErrorCode::Forbidden,
        ErrorCode::Unauthorized,
        ErrorCode::NetworkNotFound,
        ErrorCode::AllocationNotFound,
        ErrorCode::NetworkFull,
        ErrorCode::AddressTaken,
        ErrorCode::InvalidConfig,
        ErrorCode::Unknown,
    ];

    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::CasConflict => "cas_conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NoLeader => "no_leader",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::NoQuorum => "no_quorum",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Indeterminate => "indeterminate",
            ErrorCode::MemberNotFound => "member_not_found",
            ErrorCode::UnsafeMembershipChange => "unsafe_membership_change",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Removed => "removed",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::InvalidDocument => "invalid_document",
            ErrorCode::UnknownKind => "unknown_kind",
            ErrorCode::DocumentNotFound => "document_not_found",
            ErrorCode::RevisionGone => "revision_gone",
            ErrorCode::FutureRevision => "future_revision",
            ErrorCode::ElectionNotFound => "election_not_found",
            ErrorCode::NotHolder => "not_holder",
            ErrorCode::Compacted => "compacted",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NetworkNotFound => "network_not_found",
            ErrorCode::AllocationNotFound => "allocation_not_found",
            ErrorCode::NetworkFull => "network_full",
            ErrorCode::AddressTaken => "address_taken",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::Unknown => "unknown",
        }
    }
}
