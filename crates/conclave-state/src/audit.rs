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
//! follower of the log (`GET /v1/audit/watch`) resumes from. The log keeps the newest
//! [`MAX_AUDIT_ENTRIES`] and counts what it dropped.

use std::collections::VecDeque;
use std::fmt;

use conclave_types::audit::{AuditAction, AuditKind, AuditOutcome, AuditRecord};
use serde::{Deserialize, Serialize};

use crate::elections::Transition;

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

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// RFC 3339 of a wall-clock stamp; a stamp beyond year 9999 (only a faulty leader clock
/// makes one) shows as that year's end rather than failing.
pub fn rfc3339(wall_ms: u64) -> String {
    use std::time::{Duration, UNIX_EPOCH};
    let at = UNIX_EPOCH + Duration::from_millis(wall_ms.min(MAX_RFC3339_MS));
    humantime::format_rfc3339_millis(at).to_string()
}

fn details<const N: usize>(
    pairs: [(&str, String); N],
) -> std::collections::BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
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

    /// The entry as the API shows it.
    pub fn record(&self) -> AuditRecord {
        use AuditAction as A;
        let (action, subject, details) = match &self.what {
            What::Kv { key, deleted } => (
                if *deleted { A::Delete } else { A::Put },
                key.clone(),
                details([]),
            ),
            What::Config { kind, name, hash } => (
                if hash.is_some() { A::Put } else { A::Delete },
                format!("{kind}/{name}"),
                hash.iter()
                    .map(|h| ("hash".to_owned(), h.clone()))
                    .collect(),
            ),
            What::Acl(change) => match change {
                AclChange::Bootstrap { accessor_id } => {
                    (A::Bootstrap, format!("token {accessor_id}"), details([]))
                }
                AclChange::PutPolicy { name } => (A::Put, format!("policy {name}"), details([])),
                AclChange::DeletePolicy { name } => {
                    (A::Delete, format!("policy {name}"), details([]))
                }
                AclChange::CreateToken {
                    accessor_id,
                    policies,
                } => (
                    A::Create,
                    format!("token {accessor_id}"),
                    details([("policies", policies.join(","))]),
                ),
                AclChange::DeleteToken { accessor_id } => {
                    (A::Delete, format!("token {accessor_id}"), details([]))
                }
            },
            What::Election {
                election,
                transition,
                holder,
                epoch,
                target,
            } => {
                let action = match transition {
                    Transition::Elected => A::Elected,
                    Transition::Resigned => A::Resigned,
                    Transition::Expired => A::Expired,
                    Transition::HandoverRequested => A::HandoverRequested,
                };
                let mut d = details([("epoch", epoch.to_string())]);
                if let Some(h) = holder {
                    d.insert("holder".into(), h.clone());
                }
                if let Some(t) = target {
                    d.insert("target".into(), t.clone());
                }
                (action, election.clone(), d)
            }
            What::Note(note) => note_record(note),
            What::Leadership {
                term,
                from,
                to,
                transfer,
            } => {
                let mut d = details([
                    ("term", term.to_string()),
                    ("to", to.to_string()),
                    (
                        "reason",
                        if *transfer { "transfer" } else { "election" }.to_owned(),
                    ),
                ]);
                if let Some(from) = from {
                    d.insert("from".into(), from.to_string());
                }
                (A::Elected, format!("node {to}"), d)
            }
            What::Offline(Offline::Restore {
                node_id,
                cluster_id,
            }) => (
                A::Restore,
                format!("node {node_id}"),
                details([("cluster_id", cluster_id.clone())]),
            ),
            What::Offline(Offline::Recover {
                node_id,
                voters_before,
            }) => (
                A::Recover,
                format!("node {node_id}"),
                details([(
                    "voters_before",
                    voters_before
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                )]),
            ),
        };
        let (outcome, reason) = match &self.ending {
            Ending::Applied => (AuditOutcome::Applied, None),
            Ending::Refused { reason } => (AuditOutcome::Refused, Some(reason.clone())),
        };
        AuditRecord {
            seq: self.seq,
            time: rfc3339(self.wall_ms),
            time_ms: self.wall_ms,
            revision: self.revision,
            kind: self.kind(),
            action,
            subject,
            actor: self.meta.actor.to_string(),
            source: self.meta.source.clone(),
            request_id: self.meta.request_id.clone(),
            outcome,
            reason,
            details,
        }
    }
}

fn note_record(
    note: &Note,
) -> (
    AuditAction,
    String,
    std::collections::BTreeMap<String, String>,
) {
    use AuditAction as A;
    let node = |id: &u64| format!("node {id}");
    match note {
        Note::Join { node_id, rpc_addr } => (
            A::Join,
            node(node_id),
            details([("rpc_addr", rpc_addr.clone())]),
        ),
        Note::Add {
            node_id,
            rpc_addr,
            voter,
        } => (
            A::Add,
            node(node_id),
            details([("rpc_addr", rpc_addr.clone()), ("voter", voter.to_string())]),
        ),
        Note::Move { node_id, rpc_addr } => (
            A::Move,
            node(node_id),
            details([("rpc_addr", rpc_addr.clone())]),
        ),
        Note::Remove { node_id, force } => (
            A::Remove,
            node(node_id),
            details([("force", force.to_string())]),
        ),
        Note::Promote { node_id } => (A::Promote, node(node_id), details([])),
        Note::Demote { node_id, force } => (
            A::Demote,
            node(node_id),
            details([("force", force.to_string())]),
        ),
        Note::Reap { members } => (A::Reap, members.join(","), details([])),
        Note::TransferRequested { to } => (
            A::TransferRequested,
            to.map_or_else(|| "the best voter".to_owned(), |id| node(&id)),
            details([]),
        ),
        Note::LeaderElected { term, leader } => (
            A::Elected,
            node(leader),
            details([("term", term.to_string())]),
        ),
    }
}

/// Which entries `GET /v1/audit` wants.
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

    pub(crate) fn transfer_requested(&mut self, to: Option<u64>) {
        self.transfer = Some(to);
    }

    /// Anything a decoded log has that no sequence of commands could have made.
    pub(crate) fn implausible(&self, revision: u64) -> Option<String> {
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
        _ => return None,
    };
    Some((what, ending))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, wall_ms: u64, actor: Actor, what: What) -> AuditEntry {
        AuditEntry {
            seq,
            wall_ms,
            revision: seq,
            meta: AuditMeta::by(actor),
            what,
            ending: Ending::Applied,
        }
    }

    fn doc(name: &str) -> What {
        What::Config {
            kind: "k".into(),
            name: name.into(),
            hash: Some("h".into()),
        }
    }

    fn log_of(entries: Vec<AuditEntry>) -> AuditLog {
        let mut log = AuditLog::default();
        for e in entries {
            log.push(|_| e);
        }
        log
    }

    #[test]
    fn a_query_pages_newest_first_and_filters() {
        let token = || Actor::Token {
            accessor_id: "abc".into(),
        };
        let log = log_of(vec![
            entry(1, 10, Actor::Anonymous, doc("a")),
            entry(2, 20, token(), doc("b")),
            entry(
                3,
                30,
                Actor::Node { node_id: 7 },
                What::Note(Note::Promote { node_id: 2 }),
            ),
            entry(4, 40, token(), doc("c")),
            entry(5, 50, token(), doc("d")),
        ]);
        let seqs = |(page, cursor): (Vec<&AuditEntry>, Option<u64>)| {
            (page.iter().map(|e| e.seq).collect::<Vec<_>>(), cursor)
        };
        let q = AuditQuery {
            limit: 2,
            ..Default::default()
        };
        assert_eq!(seqs(log.query(&q)), (vec![5, 4], Some(4)));
        let next = AuditQuery {
            before_seq: Some(4),
            ..q.clone()
        };
        assert_eq!(seqs(log.query(&next)), (vec![3, 2], Some(2)));
        let last = AuditQuery {
            before_seq: Some(2),
            ..q.clone()
        };
        assert_eq!(seqs(log.query(&last)), (vec![1], None));
        let by_token = AuditQuery {
            actor: Some("token:abc".into()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(seqs(log.query(&by_token)), (vec![5, 4, 2], None));
        let by_accessor = AuditQuery {
            actor: Some("abc".into()),
            ..by_token.clone()
        };
        assert_eq!(seqs(log.query(&by_accessor)).0, vec![5, 4, 2]);
        let by_node = AuditQuery {
            actor: Some("7".into()),
            kind: Some(AuditKind::Membership),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(seqs(log.query(&by_node)).0, vec![3]);
        let since = AuditQuery {
            since_ms: Some(30),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(seqs(log.query(&since)), (vec![5, 4, 3], None));
    }

    #[test]
    fn the_log_keeps_the_newest_entries_and_counts_the_dropped() {
        let mut log = AuditLog::default();
        for i in 0..MAX_AUDIT_ENTRIES as u64 + 5 {
            log.push(|seq| entry(seq, i, Actor::Agent, doc("x")));
        }
        assert_eq!(log.len(), MAX_AUDIT_ENTRIES);
        assert_eq!(log.dropped(), 5);
        assert_eq!(log.entries().next().map(|e| e.seq), Some(6));
        assert_eq!(log.implausible(u64::MAX), None);
    }

    #[test]
    fn a_new_leader_is_credited_to_a_transfer_only_when_one_asked_for_it() {
        let mut log = AuditLog::default();
        let first = log.leadership(1, 1);
        assert_eq!(
            first,
            Some(What::Leadership {
                term: 1,
                from: None,
                to: 1,
                transfer: false
            })
        );
        assert_eq!(log.leadership(1, 1), None, "a retried note adds nothing");
        log.transfer_requested(Some(3));
        let to_other = log.leadership(2, 2);
        assert!(matches!(
            to_other,
            Some(What::Leadership {
                from: Some(1),
                transfer: false,
                ..
            })
        ));
        log.transfer_requested(None);
        let to_best = log.leadership(3, 3);
        assert!(matches!(
            to_best,
            Some(What::Leadership {
                from: Some(2),
                transfer: true,
                ..
            })
        ));
        assert!(matches!(
            log.leadership(4, 1),
            Some(What::Leadership {
                transfer: false,
                ..
            })
        ));
    }

    #[test]
    fn records_name_no_secret_and_print_actors_as_filtered() {
        let e = entry(
            1,
            1_796_529_600_000,
            Actor::Token {
                accessor_id: "abc".into(),
            },
            What::Acl(AclChange::CreateToken {
                accessor_id: "def".into(),
                policies: vec!["ops".into(), "read".into()],
            }),
        );
        let r = e.record();
        assert_eq!(r.actor, "token:abc");
        assert_eq!(r.kind, AuditKind::Acl);
        assert_eq!(r.subject, "token def");
        assert_eq!(r.details["policies"], "ops,read");
        assert_eq!(r.time, "2026-12-06T04:00:00.000Z");
        for actor in [
            Actor::Anonymous,
            Actor::Agent,
            Actor::Operator,
            Actor::Node { node_id: 3 },
        ] {
            let e = entry(1, 0, actor.clone(), doc("a"));
            assert!(e.by(&actor.to_string()), "{actor}");
        }
    }
}
