//! The node-RPC contract: every request and response variant survives postcard (which is
//! positional and cannot skip a field) with every optional field empty and full.

use std::collections::{BTreeMap, BTreeSet};

use conclave_raft::rpc::{
    ClusterReport, LeaderReply, LeaderRequest, MemberReport, MemberRole, NodeReport, Replication,
    RpcRequest, RpcResponse, Transferred,
};
use conclave_raft::transport::PROTOCOL_VERSION;
use conclave_raft::{ConsensusError, RejectReason, VoterExit};
use conclave_state::{Batch, Command, Outcome, Refusal};
use conclave_storage::{NodeInfo, SnapshotMeta, TypeConfig};
use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotSegmentId, StoredMembership,
    Vote,
};

/// Encode, decode, encode again: the value and its bytes come back unchanged.
fn round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let bytes = postcard::to_stdvec(value).expect("encode");
    let back: T =
        postcard::from_bytes(&bytes).unwrap_or_else(|e| panic!("decode of {value:?} failed: {e}"));
    assert_eq!(format!("{back:?}"), format!("{value:?}"));
    assert_eq!(postcard::to_stdvec(&back).expect("re-encode"), bytes);
}

fn info(learner_only: bool) -> NodeInfo {
    NodeInfo {
        rpc_addr: "127.0.0.1:7401".into(),
        api_addr: if learner_only {
            String::new()
        } else {
            "127.0.0.1:7400".into()
        },
        learner_only,
    }
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(3, 1), index)
}

fn members() -> Vec<MemberReport> {
    let full = Replication {
        match_index: Some(10),
        lag_entries: Some(2),
        lag_seconds: 0.5,
        last_contact_ms: Some(40),
    };
    let empty = Replication {
        match_index: None,
        lag_entries: None,
        lag_seconds: 0.0,
        last_contact_ms: None,
    };
    [Some(full), Some(empty), None]
        .into_iter()
        .enumerate()
        .map(|(i, replication)| MemberReport {
            node_id: i as u64 + 1,
            name: (i == 0).then(|| "db-1".to_owned()),
            role: if i == 0 {
                MemberRole::Voter
            } else {
                MemberRole::Learner
            },
            info: info(i == 2),
            is_leader: i == 0,
            replication,
            healthy: i == 0,
        })
        .collect()
}

fn reports() -> Vec<ClusterReport> {
    vec![
        ClusterReport {
            cluster_id: "c".into(),
            leader_id: Some(1),
            term: 4,
            commit_index: 10,
            last_log_index: 12,
            voters_wanted: 3,
            quorum_healthy: true,
            reported_by: 1,
            members: members(),
        },
        ClusterReport {
            cluster_id: String::new(),
            leader_id: None,
            term: 0,
            commit_index: 0,
            last_log_index: 0,
            voters_wanted: 0,
            quorum_healthy: false,
            reported_by: 2,
            members: vec![],
        },
    ]
}

fn reasons() -> Vec<RejectReason> {
    vec![
        RejectReason::NotAMember {
            node_id: 9,
            members: vec![1, 2],
        },
        RejectReason::LastVoter {
            action: VoterExit::Remove,
            node_id: 1,
        },
        RejectReason::UnsafeQuorum {
            action: VoterExit::Demote,
            node_id: 1,
            remaining: vec![2, 3],
            healthy: 1,
            needed: 2,
        },
        RejectReason::AlreadyMember {
            node_id: 2,
            rpc_addr: "a:1".into(),
        },
        RejectReason::NotCaughtUp {
            node_id: 4,
            waited_ms: 8000,
        },
        RejectReason::NotAVoter { node_id: 4 },
        RejectReason::Unhealthy { node_id: 3 },
        RejectReason::NoHealthyVoter,
        RejectReason::Inadmissible {
            reason: "kind \"\" is not a valid kind name".into(),
        },
        RejectReason::MembershipChangeInProgress {
            detail: "in progress".into(),
        },
        RejectReason::Removed { why: "gone".into() },
        RejectReason::NotInSync {
            node_id: 5,
            lag_entries: None,
            max_lag: 100,
        },
        RejectReason::NotInSync {
            node_id: 5,
            lag_entries: Some(300),
            max_lag: 100,
        },
        RejectReason::NameTaken {
            name: "db-1".into(),
            holder: 3,
            rpc_addr: "127.0.0.1:7401".into(),
        },
        RejectReason::AddressInUse {
            rpc_addr: "10.0.0.1:7401".into(),
            holder: 1,
        },
    ]
    .into_iter()
    .chain(refusals().map(|refusal| RejectReason::Refused { refusal }))
    .collect()
}

fn refusals() -> impl Iterator<Item = Refusal> {
    [
        Refusal::EmptyKey,
        Refusal::ReservedKey,
        Refusal::BadKind,
        Refusal::BadDocumentName,
        Refusal::EmptyElectionName,
        Refusal::StaleClock,
        Refusal::RevisionsExhausted,
        Refusal::NotAuditable,
    ]
    .into_iter()
}

fn errors() -> Vec<ConsensusError> {
    let mut out = vec![
        ConsensusError::NotLeader {
            leader_id: None,
            leader: None,
        },
        ConsensusError::NotLeader {
            leader_id: Some(2),
            leader: Some(info(false)),
        },
        ConsensusError::NoQuorum {
            leader_id: 3,
            silent_ms: None,
        },
        ConsensusError::NoQuorum {
            leader_id: 3,
            silent_ms: Some(1_250),
        },
        ConsensusError::Unavailable("x".into()),
        ConsensusError::Indeterminate("y".into()),
    ];
    out.extend(reasons().into_iter().map(ConsensusError::Rejected));
    out
}

fn outcomes() -> Vec<Outcome> {
    vec![
        Outcome::Put { revision: 1 },
        Outcome::Deleted {
            revision: 2,
            deleted: true,
        },
        Outcome::CasFailed {
            revision: 2,
            current: 1,
        },
        Outcome::Unchanged { revision: 2 },
        Outcome::Named {
            revision: 2,
            refusal: None,
        },
        Outcome::Named {
            revision: 2,
            refusal: Some(conclave_state::node_names::NameRefusal::Taken {
                name: "db-1".into(),
                holder: 3,
            }),
        },
        Outcome::Elected {
            revision: 3,
            epoch: 1,
            expires_at_ms: 10,
            now_ms: 5,
            renewed: false,
        },
        Outcome::Busy {
            revision: 3,
            holder: "h".into(),
            epoch: 1,
            expires_at_ms: 10,
            now_ms: 5,
        },
        Outcome::Renewed {
            revision: 3,
            expires_at_ms: 11,
            now_ms: 6,
        },
        Outcome::NotHolder {
            revision: 3,
            holder: None,
            epoch: 1,
        },
        Outcome::NotHolder {
            revision: 3,
            holder: Some("h".into()),
            epoch: 1,
        },
        Outcome::Resigned { revision: 4 },
        Outcome::Expired {
            revision: 5,
            ended: 2,
        },
        Outcome::HandoverPlanned {
            revision: 6,
            until_ms: 100,
        },
        Outcome::Reserved {
            revision: 6,
            target: "t".into(),
            until_ms: 100,
            now_ms: 50,
        },
        Outcome::Acl {
            revision: 8,
            refusal: None,
        },
        Outcome::Acl {
            revision: 8,
            refusal: Some(conclave_state::acl::AclRefusal::PolicyInUse {
                name: "p".into(),
                accessor_id: "a".into(),
            }),
        },
    ]
    .into_iter()
    .chain(refusals().map(|refusal| Outcome::Refused {
        revision: 7,
        refusal,
    }))
    .chain(
        conclave_state::ipam::samples::results()
            .into_iter()
            .map(|result| Outcome::Ipam {
                revision: 9,
                result: Box::new(result),
            }),
    )
    .collect()
}

fn leader_requests() -> Vec<LeaderRequest> {
    vec![
        LeaderRequest::Propose(Command::Put {
            key: "k".into(),
            value: vec![1],
            expected: None,
        }),
        LeaderRequest::Propose(Command::ConfigPut {
            kind: "remote-peers".into(),
            name: "n".into(),
            content: vec![],
            hash: "h".into(),
            author: Some("a".into()),
            expected: Some(3),
        }),
        LeaderRequest::Propose(Command::Acl(conclave_state::acl::AclCommand::DeleteToken {
            accessor_id: "a".into(),
        })),
        LeaderRequest::Propose(Command::Audited {
            meta: conclave_state::audit::AuditMeta {
                actor: conclave_state::audit::Actor::Token {
                    accessor_id: "a".into(),
                },
                source: Some("10.0.0.1:1".into()),
                request_id: Some("r".into()),
            },
            command: Box::new(Command::Delete {
                key: "k".into(),
                expected: Some(1),
            }),
        }),
        LeaderRequest::Propose(Command::Note {
            meta: conclave_state::audit::AuditMeta::node(1),
            note: conclave_state::audit::Note::Remove {
                node_id: 2,
                force: false,
            },
            ending: conclave_state::audit::Ending::Refused {
                reason: "no".into(),
            },
        }),
        LeaderRequest::ReadIndex,
        LeaderRequest::Join {
            node_id: 5,
            info: info(true),
            name: "db-5".into(),
            name_given: true,
        },
        LeaderRequest::SetName {
            node_id: 5,
            name: "db-five".into(),
            name_given: false,
        },
        LeaderRequest::Propose(Command::NameNode {
            node_id: 5,
            name: "db-5".into(),
            replaces: None,
        }),
        LeaderRequest::Propose(Command::NameNode {
            node_id: 5,
            name: "db-5".into(),
            replaces: Some(4),
        }),
        LeaderRequest::Propose(Command::ForgetNode { node_id: 5 }),
        LeaderRequest::AddMember {
            node_id: 5,
            info: info(false),
            voter: true,
        },
        LeaderRequest::SetInfo {
            node_id: 5,
            info: info(false),
        },
        LeaderRequest::Remove {
            node_id: 5,
            force: true,
        },
        LeaderRequest::Promote { node_id: 5 },
        LeaderRequest::Demote {
            node_id: 5,
            force: false,
        },
        LeaderRequest::TransferLeader { to: None },
        LeaderRequest::TransferLeader { to: Some(2) },
        LeaderRequest::Status,
    ]
    .into_iter()
    .chain(
        conclave_state::ipam::samples::commands()
            .into_iter()
            .map(|c| LeaderRequest::Propose(Command::Ipam(c))),
    )
    .collect()
}

fn leader_replies() -> Vec<LeaderReply> {
    let mut out: Vec<LeaderReply> = outcomes().into_iter().map(LeaderReply::Outcome).collect();
    out.push(LeaderReply::ReadIndex(7));
    out.push(LeaderReply::Members(members()));
    out.push(LeaderReply::Members(vec![]));
    out.extend(
        reports()
            .into_iter()
            .map(|r| LeaderReply::Status(Box::new(r))),
    );
    out.push(LeaderReply::Transferred(Transferred {
        previous_leader: 1,
        leader_id: 2,
        term: 5,
    }));
    out
}

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Batch {
            commands: vec![Command::ExpireLeases],
        }),
    }
}

fn snapshot_meta(empty: bool) -> SnapshotMeta {
    let membership = Membership::new(
        vec![BTreeSet::from([1u64])],
        BTreeMap::from([(1u64, info(false))]),
    );
    SnapshotMeta {
        last_log_id: (!empty).then(|| log_id(9)),
        last_membership: StoredMembership::new((!empty).then(|| log_id(2)), membership),
        snapshot_id: "s".into(),
    }
}

fn requests() -> Vec<RpcRequest> {
    let vote = Vote::new(3, 1);
    vec![
        RpcRequest::AppendEntries(AppendEntriesRequest {
            vote,
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        }),
        RpcRequest::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(1)),
            entries: vec![entry(2), entry(3)],
            leader_commit: Some(log_id(1)),
        }),
        RpcRequest::Vote(VoteRequest::new(vote, None)),
        RpcRequest::Vote(VoteRequest::new(vote, Some(log_id(4)))),
        RpcRequest::InstallSnapshot(InstallSnapshotRequest {
            vote,
            meta: snapshot_meta(true),
            offset: 0,
            data: vec![],
            done: false,
        }),
        RpcRequest::InstallSnapshot(InstallSnapshotRequest {
            vote,
            meta: snapshot_meta(false),
            offset: 10,
            data: vec![1, 2, 3],
            done: true,
        }),
        RpcRequest::Info,
        RpcRequest::Removed { by: 1 },
        RpcRequest::TakeLeadership { term: 9 },
    ]
    .into_iter()
    .chain(
        leader_requests()
            .into_iter()
            .map(|req| RpcRequest::Leader { req, hops: 1 }),
    )
    .collect()
}

fn node_reports() -> Vec<NodeReport> {
    vec![
        NodeReport {
            node_id: 1,
            cluster_id: None,
            cluster_name: None,
            initialized: false,
            bootstrap_expect: None,
            info: info(false),
            leader_id: None,
            term: 0,
            last_log_index: 0,
            members: vec![],
        },
        NodeReport {
            node_id: 1,
            cluster_id: Some("c".into()),
            cluster_name: Some("prod".into()),
            initialized: true,
            bootstrap_expect: Some(3),
            info: info(true),
            leader_id: Some(2),
            term: 4,
            last_log_index: 9,
            members: vec![(1, info(false), true), (2, info(true), false)],
        },
    ]
}

fn responses() -> Vec<RpcResponse> {
    let vote = Vote::new(3, 1);
    let segment = |offset| SnapshotSegmentId {
        id: "s".into(),
        offset,
    };
    let mut out = vec![
        RpcResponse::AppendEntries(Ok(AppendEntriesResponse::Success)),
        RpcResponse::AppendEntries(Ok(AppendEntriesResponse::PartialSuccess(None))),
        RpcResponse::AppendEntries(Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(2))))),
        RpcResponse::AppendEntries(Ok(AppendEntriesResponse::Conflict)),
        RpcResponse::AppendEntries(Ok(AppendEntriesResponse::HigherVote(vote))),
        RpcResponse::AppendEntries(Err(RaftError::Fatal(Fatal::Stopped))),
        RpcResponse::Vote(Ok(VoteResponse::new(vote, None, true))),
        RpcResponse::Vote(Ok(VoteResponse::new(vote, Some(log_id(3)), false))),
        RpcResponse::Vote(Err(RaftError::Fatal(Fatal::Panicked))),
        RpcResponse::InstallSnapshot(Ok(InstallSnapshotResponse { vote })),
        RpcResponse::InstallSnapshot(Err(RaftError::APIError(
            InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: segment(0),
                got: segment(10),
            }),
        ))),
        RpcResponse::Ack,
        RpcResponse::NotAllowed("no".into()),
    ];
    out.extend(
        node_reports()
            .into_iter()
            .map(|r| RpcResponse::Info(Box::new(r))),
    );
    out.extend(
        leader_replies()
            .into_iter()
            .map(|r| RpcResponse::Leader(Ok(r))),
    );
    out.extend(errors().into_iter().map(|e| RpcResponse::Leader(Err(e))));
    out
}

#[test]
fn every_request_round_trips() {
    let all = requests();
    assert!(all.len() >= 20);
    for r in &all {
        round_trip(r);
    }
}

#[test]
fn every_response_round_trips() {
    let all = responses();
    assert!(all.len() >= 40);
    for r in &all {
        round_trip(r);
    }
}

/// The bug this contract fixes: a member whose replication fields are partly unknown (a
/// newly added or down node) made the whole reply undecodable on the forwarding node.
#[test]
fn a_status_with_an_unknown_member_decodes_on_a_follower() {
    let reply = RpcResponse::Leader(Ok(LeaderReply::Status(Box::new(reports().remove(0)))));
    let bytes = postcard::to_stdvec(&reply).unwrap();
    match postcard::from_bytes::<RpcResponse>(&bytes).unwrap() {
        RpcResponse::Leader(Ok(LeaderReply::Status(s))) => {
            assert_eq!(s.members[1].replication.as_ref().unwrap().match_index, None);
            assert_eq!(s.members[2].replication, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_protocol_version_names_this_message_set() {
    // Bump it with any change to the messages above; nodes of another version refuse
    // each other at the handshake instead of misreading frames.
    assert_eq!(PROTOCOL_VERSION, 13);
}
