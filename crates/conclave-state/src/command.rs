//! What is proposed and what applying it produced: the Raft log's payload ([`Batch`] of
//! [`Command`]s, whose encoding `conclave-storage`'s golden-bytes test pins) and the
//! [`Outcome`] of each, plus the [`Change`] a watcher sees.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Refusal;

/// A compare-and-swap precondition on a key's mod revision.
///
/// `0` means "the key must not exist", as in the HTTP API's `?cas=0`.
pub type ExpectedRevision = u64;

/// A state-changing request, as it is stored in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put {
        key: String,
        value: Vec<u8>,
        expected: Option<ExpectedRevision>,
    },
    Delete {
        key: String,
        expected: Option<ExpectedRevision>,
    },
    /// The leader's cluster clock, placed before every command that needs time.
    Clock {
        term: u64,
        now_ms: u64,
        wall_ms: u64,
    },
    /// Write a configuration document (validated before proposing).
    ConfigPut {
        kind: String,
        name: String,
        content: Vec<u8>,
        hash: String,
        author: Option<String>,
        expected: Option<ExpectedRevision>,
    },
    ConfigDelete {
        kind: String,
        name: String,
        expected: Option<ExpectedRevision>,
        author: Option<String>,
    },
    /// Become the holder of `election` if it is free (or its lease ended); a holder that
    /// campaigns again renews its lease.
    Campaign {
        election: String,
        candidate: String,
        ttl_ms: u64,
    },
    Keepalive {
        election: String,
        candidate: String,
        epoch: u64,
    },
    Resign {
        election: String,
        candidate: String,
        epoch: u64,
    },
    /// End every lease whose deadline the cluster clock has reached (proposed by the leader).
    ExpireLeases,
    /// Ask the holder of `from_epoch` to step down for `target`, reserving the election for
    /// `target` during `window_ms`.
    Handover {
        election: String,
        target: String,
        from_epoch: u64,
        window_ms: u64,
    },
    /// Change the cluster's tokens or policies. (Variants are only ever appended: their
    /// index is their encoding in the log.)
    Acl(crate::acl::AclCommand),
    /// `command`, applied as if alone, with an audit-log entry saying who asked
    /// ([`crate::audit`]). Never nested; never around a leader-only command.
    Audited {
        meta: crate::audit::AuditMeta,
        command: Box<Command>,
    },
    /// Record something that happened outside the state machine (membership, leadership)
    /// in the audit log; changes nothing else.
    Note {
        meta: crate::audit::AuditMeta,
        note: crate::audit::Note,
        ending: crate::audit::Ending,
    },
    /// Change networks or address allocations ([`crate::ipam`]).
    Ipam(crate::ipam::IpamCommand),
    /// Name a node ([`crate::node_names`]); `replaces` is the former holder of the name,
    /// no longer a member, that loses it.
    NameNode {
        node_id: u64,
        name: String,
        replaces: Option<u64>,
    },
    /// Free the name of a node that left the cluster.
    ForgetNode { node_id: u64 },
}

impl Command {
    /// Commands only the leader itself proposes (its clock stamps, lease expiry): never
    /// taken from a peer's forwarded proposal, where a forged one could end live leases.
    pub fn is_leader_only(&self) -> bool {
        match self {
            // Names: the leader checks membership before naming (`conclave-raft::naming`).
            Command::Clock { .. }
            | Command::ExpireLeases
            | Command::NameNode { .. }
            | Command::ForgetNode { .. } => true,
            // Only a leader says it leads.
            Command::Note {
                note: crate::audit::Note::LeaderElected { .. },
                ..
            } => true,
            Command::Audited { command, .. } => command.is_leader_only(),
            _ => false,
        }
    }

    /// Whether the command reads the cluster clock, so the leader must stamp one before it.
    pub fn needs_clock(&self) -> bool {
        !matches!(
            self,
            Command::Put { .. }
                | Command::Delete { .. }
                | Command::Clock { .. }
                | Command::NameNode { .. }
                | Command::ForgetNode { .. }
        )
    }
}

/// One change as watchers see it: a put or delete of a key, at exactly one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub revision: u64,
    pub key: String,
    /// `None` for a deletion.
    pub value: Option<Bytes>,
}

/// The payload of one Raft log entry: the commands a proposal batcher grouped so that they
/// share one log append and one fsync. They apply in order, each seeing the previous ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub commands: Vec<Command>,
}

/// What applying one command produced. Every variant carries the store revision after apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A put succeeded; `revision` is the new store revision and the key's mod revision.
    Put {
        revision: u64,
    },
    /// A delete ran; `deleted` is false when the key did not exist (revision unchanged then).
    Deleted {
        revision: u64,
        deleted: bool,
    },
    /// The CAS precondition failed; nothing changed. `current` is the key's mod revision
    /// (0 when absent), so the caller can retry with it.
    CasFailed {
        revision: u64,
        current: u64,
    },
    /// Raft-internal entries (blank, membership) and clock stamps produce no change.
    Unchanged {
        revision: u64,
    },
    /// The candidate holds the election with this epoch until the cluster clock reaches
    /// `expires_at_ms` (`renewed`: it already held it and only its lease was extended).
    Elected {
        revision: u64,
        epoch: u64,
        expires_at_ms: u64,
        now_ms: u64,
        renewed: bool,
    },
    /// Someone else holds the election.
    Busy {
        revision: u64,
        holder: String,
        epoch: u64,
        expires_at_ms: u64,
        now_ms: u64,
    },
    /// A keepalive extended the lease.
    Renewed {
        revision: u64,
        expires_at_ms: u64,
        now_ms: u64,
    },
    /// The candidate does not hold that epoch of the election (any more).
    NotHolder {
        revision: u64,
        holder: Option<String>,
        epoch: u64,
    },
    Resigned {
        revision: u64,
    },
    /// `ExpireLeases` ended this many leases.
    Expired {
        revision: u64,
        ended: u32,
    },
    /// A planned handover stands until the cluster clock reaches `until_ms`.
    HandoverPlanned {
        revision: u64,
        until_ms: u64,
    },
    /// The election is free but reserved for a handover target until `until_ms`.
    Reserved {
        revision: u64,
        target: String,
        until_ms: u64,
        now_ms: u64,
    },
    /// An ACL change was applied, or refused (`refusal`) and changed no token or policy.
    /// `revision` is the store's before its audit entry (ACL changes are no key-value
    /// changes; only their audit entry is watched).
    Acl {
        revision: u64,
        refusal: Option<crate::acl::AclRefusal>,
    },
    /// The command breaks a naming rule and was not applied (see [`crate::names`]).
    Refused {
        revision: u64,
        refusal: Refusal,
    },
    /// A node was named, or why not (`refusal`). Names are no key-value changes:
    /// `revision` is unchanged.
    Named {
        revision: u64,
        refusal: Option<crate::node_names::NameRefusal>,
    },
    /// What an IPAM command did, or why it changed nothing.
    Ipam {
        revision: u64,
        /// Boxed: an answer carries whole objects, and every other outcome is small.
        result: Box<Result<crate::ipam::IpamAnswer, crate::ipam::IpamRefusal>>,
    },
}

impl Outcome {
    /// The store revision after this outcome.
    pub fn revision(&self) -> u64 {
        match *self {
            Outcome::Put { revision }
            | Outcome::Deleted { revision, .. }
            | Outcome::CasFailed { revision, .. }
            | Outcome::Unchanged { revision }
            | Outcome::Elected { revision, .. }
            | Outcome::Busy { revision, .. }
            | Outcome::Renewed { revision, .. }
            | Outcome::NotHolder { revision, .. }
            | Outcome::Resigned { revision }
            | Outcome::Expired { revision, .. }
            | Outcome::HandoverPlanned { revision, .. }
            | Outcome::Reserved { revision, .. }
            | Outcome::Acl { revision, .. }
            | Outcome::Refused { revision, .. }
            | Outcome::Ipam { revision, .. }
            | Outcome::Named { revision, .. } => revision,
        }
    }
}
