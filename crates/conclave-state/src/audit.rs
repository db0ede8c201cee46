//! The audit log: who changed what, when, from where, and how it ended: replicated, so
//! every node can answer for the whole cluster and an entry outlives the node that took
//! the request.
//!
//! Why in the state machine: an entry is written by the same `apply()` that makes the
//! change, in the same log entry, so the log cannot say a change happened that did not (or
//! miss one that did), and it needs no second write path that could fail on its own. What
//! is recorded is decided here, purely, from the command and its outcome:
//! - configuration documents and ACL changes, always (also when refused: a failed CAS, an
//!   unknown policy);
//! - every change of an election's holder (elected, resigned, expired, handover asked);
//! - key-value writes only when the proposer wrapped them in [`crate::Command::Audited`]
//!   (the edge does so for the prefixes its `[audit] kv_prefixes` names);
//! - [`Note`]s: what happens outside the state machine (membership, leadership, transfers),
//!   proposed by the node that saw it;
//! - what an offline command did to a data directory ([`Offline`]: restore, recovery).
//!
//! Who asked travels with the command ([`AuditMeta`] inside `Audited` or a `Note`), so a
//! request forwarded to the leader keeps its caller. An entry is no key-value change (the
//! store revision does not move for it); it is numbered by its own sequence, which a
//! follower of the log (the API's audit stream) resumes from. The log keeps the newest
//! [`MAX_AUDIT_ENTRIES`] and counts what it dropped.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use conclave_types::audit::AuditKind;
use serde::{Deserialize, Serialize};

use crate::elections::Transition;

mod record;

/// No log reaches this sequence number; a decoded one beyond it is refused.
const MAX_AUDIT_SEQ: u64 = 1 << 63;

/// The newest entries kept; older ones drop (counted in [`AuditLog::dropped`]).
pub const MAX_AUDIT_ENTRIES: usize = 10_000;

/// Who asked for a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// An HTTP caller without a token (ACLs off).
    Anonymous,
    /// An HTTP caller with this token.
    Token { accessor_id: String },
    /// A node, for itself (a join, an address change, a new term).
    Node { node_id: u64 },
    /// An agent's own timers and defaults (lease expiry, the initial management token).
    Agent,
    /// An offline command run on a data directory.
    Operator,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Anonymous => f.write_str("anonymous"),
            Actor::Token { accessor_id } => write!(f, "token:{accessor_id}"),
            Actor::Node { node_id } => write!(f, "node:{node_id}"),
            Actor::Agent => f.write_str("agent"),
            Actor::Operator => f.write_str("operator"),
        }
    }
}

/// Who asked, from where, in which request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditMeta {
    pub actor: Actor,
    /// The caller's address (`IP:port`), for a change that came over HTTP.
    pub source: Option<String>,
    pub request_id: Option<String>,
}

impl AuditMeta {
    /// A change an agent makes by itself.
    pub fn agent() -> Self {
        Self::by(Actor::Agent)
    }

    pub fn node(node_id: u64) -> Self {
        Self::by(Actor::Node { node_id })
    }

    pub fn by(actor: Actor) -> Self {
        Self {
            actor,
            source: None,
            request_id: None,
        }
    }
}

/// How a change ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    Applied,
    Refused { reason: String },
}

impl Ending {
    pub fn refused(reason: impl fmt::Display) -> Self {
        Ending::Refused {
            reason: reason.to_string(),
        }
    }
}

/// Something that happened outside the state machine, noted by the node that saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Note {
    /// A new node joined as a learner.
    Join {
        node_id: u64,
        rpc_addr: String,
    },
    /// An operator added a node.
    Add {
        node_id: u64,
        rpc_addr: String,
        voter: bool,
    },
    /// A member announced new addresses.
    Move {
        node_id: u64,
        rpc_addr: String,
    },
    Remove {
        node_id: u64,
        force: bool,
    },
    Promote {
        node_id: u64,
    },
    Demote {
        node_id: u64,
        force: bool,
    },
    /// Dead gossip members (by name) removed from every agent's view.
    Reap {
        members: Vec<String>,
    },
    /// A leadership transfer to `to` (or the best voter) was asked for.
    TransferRequested {
        to: Option<u64>,
    },
    /// `leader` leads `term` (proposed by that leader once per term; who it took over from
    /// and why is worked out here, from the entries before).
    LeaderElected {
        term: u64,
        leader: u64,
    },
}

/// What an offline command did to a data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Offline {
    /// The state was restored from a snapshot file into a new cluster.
    Restore { node_id: u64, cluster_id: String },
    /// The node was made the only voter; `voters_before` were dropped.
    Recover {
        node_id: u64,
        voters_before: Vec<u64>,
    },
}

/// A change to tokens or policies, without anything secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclChange {
    Bootstrap {
        accessor_id: String,
    },
    PutPolicy {
        name: String,
    },
    DeletePolicy {
        name: String,
    },
    CreateToken {
        accessor_id: String,
        policies: Vec<String>,
    },
    DeleteToken {
        accessor_id: String,
    },
}

impl From<&crate::acl::AclCommand> for AclChange {
    fn from(c: &crate::acl::AclCommand) -> Self {
        use crate::acl::AclCommand;
        match c {
            AclCommand::Bootstrap(t) => AclChange::Bootstrap {
                accessor_id: t.accessor_id.clone(),
            },
            AclCommand::PutPolicy(p) => AclChange::PutPolicy {
                name: p.name.clone(),
            },
            AclCommand::DeletePolicy { name } => AclChange::DeletePolicy { name: name.clone() },
            AclCommand::CreateToken(t) => AclChange::CreateToken {
                accessor_id: t.accessor_id.clone(),
                policies: t.policies.clone(),
            },
            AclCommand::DeleteToken { accessor_id } => AclChange::DeleteToken {
                accessor_id: accessor_id.clone(),
            },
        }
    }
}

/// What an entry is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum What {
    Kv {
        key: String,
        deleted: bool,
    },
    /// `hash`: the new content's, `None` for a deletion.
    Config {
        kind: String,
        name: String,
        hash: Option<String>,
    },
    Acl(AclChange),
    Election {
        election: String,
        transition: Transition,
        holder: Option<String>,
        epoch: u64,
        target: Option<String>,
    },
    /// A membership change or a transfer request.
    Note(Note),
    /// A new leader: whom it took over from (when known) and whether a transfer asked it to.
    Leadership {
        term: u64,
        from: Option<u64>,
        to: u64,
        transfer: bool,
    },
    Offline(Offline),
    /// A network or an address allocation changed (`details`: cidr, address, hostname...).
    Ipam {
        action: IpamAction,
        subject: String,
        details: BTreeMap<String, String>,
    },
}

/// What was done to a network or an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpamAction {
    CreateNetwork,
    UpdateNetwork,
    DeleteNetwork,
    Allocate,
    Release,
    Renew,
    /// A lease ran out on the cluster clock.
    Expire,
    /// An existing allocation list was taken over.
    Import,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// The cluster clock's wall time when it applied (ms since the Unix epoch).
    pub wall_ms: u64,
    /// The store revision after the change it records.
    pub revision: u64,
    pub meta: AuditMeta,
    pub what: What,
    pub ending: Ending,
}

impl AuditEntry {
    pub fn kind(&self) -> AuditKind {
        match &self.what {
            What::Kv { .. } => AuditKind::Kv,
            What::Config { .. } => AuditKind::Config,
            What::Acl(_) => AuditKind::Acl,
            What::Election { .. } => AuditKind::Election,
            What::Note(Note::TransferRequested { .. } | Note::LeaderElected { .. })
            | What::Leadership { .. } => AuditKind::Leadership,
            What::Note(_) => AuditKind::Membership,
            What::Offline(Offline::Restore { .. }) => AuditKind::Snapshot,
            What::Offline(Offline::Recover { .. }) => AuditKind::Recovery,
            What::Ipam { .. } => AuditKind::Ipam,
        }
    }

    /// Whether `actor` (as printed, or just the accessor or node id) asked for it.
    pub fn by(&self, actor: &str) -> bool {
        match &self.meta.actor {
            Actor::Token { accessor_id } if accessor_id == actor => true,
            Actor::Node { node_id } if node_id.to_string() == actor => true,
            a => a.to_string() == actor,
        }
    }
}

/// Which entries a reader of the log wants (the API's filters and paging).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub kind: Option<AuditKind>,
    pub actor: Option<String>,
    /// Entries applied at or after this wall time (ms).
    pub since_ms: Option<u64>,
    /// Entries older than this sequence number (the previous page's cursor).
    pub before_seq: Option<u64>,
    /// Entries newer than this sequence number (a follower's resume point).
    pub after_seq: Option<u64>,
    pub limit: usize,
}

/// The retained entries and what the log knows about leadership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    entries: VecDeque<AuditEntry>,
    /// The sequence number of the next entry (entries start at 1).
    last_seq: u64,
    dropped: u64,
    /// The last leader noted, and its term.
    leader: Option<(u64, u64)>,
    /// A transfer asked for and not yet followed by a new leader (`Some(None)`: to the best).
    transfer: Option<Option<u64>>,
}

impl AuditLog {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries dropped to stay within [`MAX_AUDIT_ENTRIES`], ever.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &AuditEntry> {
        self.entries.iter()
    }

    /// The entries `q` asks for, newest first, and the cursor of the next page when more
    /// entries match.
    pub fn query(&self, q: &AuditQuery) -> (Vec<&AuditEntry>, Option<u64>) {
        let mut matching = self
            .entries
            .iter()
            .rev()
            .filter(|e| q.before_seq.is_none_or(|s| e.seq < s))
            .take_while(|e| q.after_seq.is_none_or(|s| e.seq > s))
            .take_while(|e| q.since_ms.is_none_or(|s| e.wall_ms >= s))
            .filter(|e| q.kind.is_none_or(|k| e.kind() == k))
            .filter(|e| q.actor.as_deref().is_none_or(|a| e.by(a)));
        let page: Vec<&AuditEntry> = matching.by_ref().take(q.limit).collect();
        let more = matching.next().is_some();
        let cursor = page.last().filter(|_| more).map(|e| e.seq);
        (page, cursor)
    }

    /// Whether entries after sequence `seq` were dropped: a reader resuming there would
    /// miss some.
    pub fn dropped_after(&self, seq: u64) -> bool {
        let oldest = self.entries.front().map_or(self.last_seq + 1, |e| e.seq);
        self.last_seq > seq && oldest > seq + 1
    }

    /// Append an entry made by the caller (who gives it its revision and time); returns
    /// its sequence number.
    pub(crate) fn push(&mut self, make: impl FnOnce(u64) -> AuditEntry) -> u64 {
        self.last_seq += 1;
        self.entries.push_back(make(self.last_seq));
        while self.entries.len() > MAX_AUDIT_ENTRIES {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.last_seq
    }

    /// `LeaderElected` turned into what the entry shows, or `None` for a term already
    /// noted (a retried note).
    pub(crate) fn leadership(&mut self, term: u64, leader: u64) -> Option<What> {
        if self.leader.is_some_and(|(t, _)| t >= term) {
            return None;
        }
        let from = self.leader.map(|(_, n)| n);
        let transfer = self
            .transfer
            .take()
            .is_some_and(|to| to.is_none_or(|to| to == leader));
        self.leader = Some((term, leader));
        Some(What::Leadership {
            term,
            from,
            to: leader,
            transfer,
        })
    }

    /// A transfer to `Some(to)` stands (or, `None`, no longer does).
    pub(crate) fn transfer_requested(&mut self, pending: Option<Option<u64>>) {
        self.transfer = pending;
    }

    /// An empty log at sequence `last_seq` having dropped `dropped`, as a decoder could
    /// meet one.
    #[cfg(test)]
    pub(crate) fn at(last_seq: u64, dropped: u64) -> Self {
        AuditLog {
            last_seq,
            dropped,
            ..AuditLog::default()
        }
    }

    /// Anything a decoded log has that no sequence of commands could have made.
    pub(crate) fn implausible(&self, revision: u64) -> Option<String> {
        // Several entries can share a revision (one command expiring many leases), so the
        // sequence is not bounded by the revision; 2^63 entries is still out of reach (three
        // hundred thousand years at a million a second) and leaves room to count on.
        if self.last_seq > MAX_AUDIT_SEQ || self.dropped > self.last_seq {
            return Some(format!(
                "the audit log's sequence {} (dropped {}) is beyond any reachable one",
                self.last_seq, self.dropped
            ));
        }
        if self.entries.len() > MAX_AUDIT_ENTRIES {
            return Some(format!(
                "the audit log holds {} entries, above its bound",
                self.entries.len()
            ));
        }
        let mut previous = 0;
        for e in &self.entries {
            if e.seq <= previous || e.seq > self.last_seq || e.revision > revision {
                return Some(format!(
                    "audit entry {} is out of order or beyond the store's revision {revision}",
                    e.seq
                ));
            }
            previous = e.seq;
        }
        None
    }
}

/// What `command`'s `outcome` adds to the log, for the changes recorded whatever proposed
/// them (documents, ACLs) or because the proposer asked (`audited`: key-value writes).
/// Election transitions and notes are recorded where they happen.
pub(crate) fn what_for(
    command: &crate::Command,
    outcome: &crate::Outcome,
    audited: bool,
) -> Option<(What, Ending)> {
    use crate::{Command, Outcome};
    let ending = match outcome {
        Outcome::CasFailed { current, .. } => Ending::refused(format!(
            "the compare-and-swap failed: the current revision is {current}"
        )),
        Outcome::Acl {
            refusal: Some(r), ..
        } => Ending::refused(r),
        Outcome::Ipam { result, .. } if let Err(r) = result.as_ref() => Ending::refused(r),
        // A naming refusal changes nothing, not even the log: every entry point checks
        // the same rules before proposing, so only a faulty proposer meets it.
        Outcome::Refused { .. } => return None,
        _ => Ending::Applied,
    };
    let what = match command {
        Command::Put { key, .. } if audited => What::Kv {
            key: key.clone(),
            deleted: false,
        },
        Command::Delete { key, .. } if audited => What::Kv {
            key: key.clone(),
            deleted: true,
        },
        Command::ConfigPut {
            kind, name, hash, ..
        } => What::Config {
            kind: kind.clone(),
            name: name.clone(),
            hash: Some(hash.clone()),
        },
        Command::ConfigDelete { kind, name, .. } => What::Config {
            kind: kind.clone(),
            name: name.clone(),
            hash: None,
        },
        Command::Acl(change) => What::Acl(change.into()),
        Command::Ipam(change) => crate::ipam::audit_what(change, outcome),
        _ => return None,
    };
    Some((what, ending))
}
