//! What a coordination service refused, and why, with no HTTP in it: `conclave-api` maps
//! each case to a status, code and hint in one table, and background loops match on
//! [`CoordError::code`].

use conclave_client::ClientError;
use conclave_config::Violation;
use conclave_raft::{ConsensusError, RejectReason};
use conclave_state::LimitError;
use conclave_types::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// Consensus could not take the command (no leader, unavailable, indeterminate, refused).
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    /// The command is over a size limit or names something reserved.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A document kind or name breaks the naming rules.
    #[error(transparent)]
    BadName(#[from] conclave_config::kinds::BadName),
    #[error("kind {kind:?} is unknown: it is not built in and no schema is registered for it")]
    UnknownKind { kind: String },
    #[error("{kind}/{name} is not valid")]
    Invalid {
        kind: String,
        name: String,
        violations: Vec<Violation>,
    },
    /// No such document (at `revision`, when one was asked for).
    #[error("there is no document {kind}/{name}")]
    DocumentNotFound {
        kind: String,
        name: String,
        revision: Option<u64>,
    },
    #[error("revision {requested} is in the future: the store is at revision {index}")]
    FutureRevision { requested: u64, index: u64 },
    /// The document's retained history no longer reaches `requested`.
    #[error(
        "the history of {kind}/{name} no longer reaches revision {requested}; its oldest kept version is {oldest}"
    )]
    RevisionGone {
        kind: String,
        name: String,
        requested: u64,
        oldest: u64,
    },
    /// A compare-and-swap found another revision (`0`: the document does not exist).
    #[error("compare-and-swap failed: the current revision is {current}")]
    CasConflict { current: u64 },
    #[error("no one has campaigned in election {name:?} yet")]
    ElectionNotFound { name: String },
    #[error(
        "{candidate} does not hold epoch {epoch} of election {election:?} (holder: {}, epoch {holder_epoch})",
        holder.as_deref().unwrap_or("none")
    )]
    NotHolder {
        election: String,
        candidate: String,
        epoch: u64,
        holder: Option<String>,
        holder_epoch: u64,
    },
    /// Changes up to `compacted` are no longer kept: read the state again, then watch.
    #[error("changes up to revision {compacted} are no longer available")]
    Compacted { compacted: u64 },
    /// A stored document that is not JSON, or an outcome the command cannot produce: a bug.
    #[error(transparent)]
    Acl(#[from] conclave_state::acl::AclRefusal),
    /// An IPAM command was refused (or is malformed) and changed nothing.
    #[error(transparent)]
    Ipam(#[from] conclave_state::ipam::IpamRefusal),
    #[error("{0}")]
    Internal(String),
    /// The caller's time bound ran out first: a write may or may not have been applied.
    #[error("no answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// A client agent knows no live Raft member to send the call to (yet).
    #[error("this client agent knows no live Raft member yet")]
    NoMember,
    /// A forwarded call failed at the member, or did not reach one.
    #[error(transparent)]
    Remote(ClientError),
}

impl CoordError {
    /// The API's stable code for this error: the same whether it happened in this process
    /// or at the member a client agent forwarded to.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoordError::Consensus(e) => match e {
                ConsensusError::NotLeader { .. } => ErrorCode::NoLeader,
                ConsensusError::NoQuorum { .. } => ErrorCode::NoQuorum,
                ConsensusError::Unavailable(_) => ErrorCode::Unavailable,
                ConsensusError::Indeterminate(_) => ErrorCode::Indeterminate,
                ConsensusError::Rejected(reason) => rejection_code(reason),
            },
            CoordError::Limit(LimitError::KeyTooLarge { .. })
            | CoordError::Limit(LimitError::ValueTooLarge { .. })
            | CoordError::Limit(LimitError::NameTooLong { .. }) => ErrorCode::TooLarge,
            CoordError::Limit(_) | CoordError::BadName(_) => ErrorCode::BadRequest,
            CoordError::UnknownKind { .. } => ErrorCode::UnknownKind,
            CoordError::Invalid { .. } => ErrorCode::InvalidDocument,
            CoordError::DocumentNotFound { .. } => ErrorCode::DocumentNotFound,
            CoordError::FutureRevision { .. } => ErrorCode::FutureRevision,
            CoordError::RevisionGone { .. } => ErrorCode::RevisionGone,
            CoordError::CasConflict { .. } => ErrorCode::CasConflict,
            CoordError::ElectionNotFound { .. } => ErrorCode::ElectionNotFound,
            CoordError::NotHolder { .. } => ErrorCode::NotHolder,
            CoordError::Compacted { .. } => ErrorCode::Compacted,
            CoordError::Acl(refusal) => {
                use conclave_state::acl::AclRefusal as R;
                match refusal {
                    R::UnknownPolicy(_) | R::UnknownToken(_) => ErrorCode::NotFound,
                    R::AlreadyBootstrapped
                    | R::BuiltIn
                    | R::PolicyInUse { .. }
                    | R::DuplicateAccessor(_) => ErrorCode::Conflict,
                }
            }
            CoordError::Ipam(refusal) => ipam_code(refusal),
            CoordError::Internal(_) => ErrorCode::Unavailable,
            CoordError::NoMember => ErrorCode::NotJoined,
            CoordError::TimedOut(_) => ErrorCode::Indeterminate,
            CoordError::Remote(ClientError::Api(e)) => e.code,
            CoordError::Remote(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<ClientError> for CoordError {
    fn from(e: ClientError) -> Self {
        CoordError::Remote(e)
    }
}

/// The stable code of each consensus refusal (the API adds its status and hint).
pub fn rejection_code(reason: &RejectReason) -> ErrorCode {
    match reason {
        RejectReason::NotAMember { .. } => ErrorCode::MemberNotFound,
        RejectReason::LastVoter { .. }
        | RejectReason::UnsafeQuorum { .. }
        | RejectReason::Unhealthy { .. }
        | RejectReason::NoHealthyVoter
        | RejectReason::NotInSync { .. } => ErrorCode::UnsafeMembershipChange,
        RejectReason::AlreadyMember { .. }
        | RejectReason::MembershipChangeInProgress { .. }
        | RejectReason::AddressInUse { .. }
        | RejectReason::NameTaken { .. } => ErrorCode::Conflict,
        RejectReason::NotCaughtUp { .. } => ErrorCode::NotReady,
        RejectReason::NotAVoter { .. }
        | RejectReason::Inadmissible { .. }
        | RejectReason::Refused { .. } => ErrorCode::BadRequest,
        RejectReason::Removed { .. } => ErrorCode::Removed,
    }
}

/// `call`, or [`CoordError::TimedOut`] when it takes longer than `limit`: for background
/// loops that must not wait out a long election or a stalled member.
pub async fn bounded<T>(
    limit: std::time::Duration,
    call: impl Future<Output = Result<T, CoordError>>,
) -> Result<T, CoordError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(CoordError::TimedOut(limit)))
}

/// The outcome a command cannot produce: a bug, reported as such.
pub(crate) fn unexpected(outcome: conclave_state::Outcome) -> CoordError {
    CoordError::Internal(format!("unexpected outcome {outcome:?}"))
}

/// The API's code for an IPAM refusal.
pub fn ipam_code(refusal: &conclave_state::ipam::IpamRefusal) -> ErrorCode {
    use conclave_state::ipam::IpamRefusal as R;
    match refusal {
        R::Invalid { .. } => ErrorCode::BadRequest,
        R::NetworkNotFound { .. } => ErrorCode::NetworkNotFound,
        R::AllocationNotFound { .. } => ErrorCode::AllocationNotFound,
        R::NetworkFull { .. } => ErrorCode::NetworkFull,
        R::AddressTaken { .. } => ErrorCode::AddressTaken,
        R::AddressOutside { .. } | R::AddressNotUsable { .. } => ErrorCode::BadRequest,
        R::NetworkExists { .. }
        | R::Overlaps { .. }
        | R::NotInsideParent { .. }
        | R::CoversAllocations { .. }
        | R::HasChildren { .. }
        | R::HasAllocations { .. }
        | R::AddressInChild { .. }
        | R::HostnameTaken { .. }
        | R::RequestIdReused { .. }
        | R::NoLease { .. }
        | R::RepeatedInImport { .. }
        | R::ImportConflicts { .. } => ErrorCode::Conflict,
    }
}
