//! An entry as the API shows it: one flat [`AuditRecord`] for every kind of change.

use std::collections::BTreeMap;

use conclave_types::audit::{AuditAction, AuditOutcome, AuditRecord};

use super::{AclChange, AuditEntry, Ending, IpamAction, Note, Offline, What};
use crate::elections::Transition;

fn details<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl AuditEntry {
    /// The entry as the API shows it, its time written by `time` (from wall-clock ms: the
    /// edge formats it, this crate reads and formats no clock).
    pub fn record(&self, time: impl FnOnce(u64) -> String) -> AuditRecord {
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
            What::Ipam {
                action,
                subject,
                details,
            } => {
                let action = match action {
                    IpamAction::CreateNetwork => A::Create,
                    IpamAction::UpdateNetwork => A::Put,
                    IpamAction::DeleteNetwork => A::Delete,
                    IpamAction::Allocate => A::Allocate,
                    IpamAction::Release => A::Release,
                    IpamAction::Renew => A::Renew,
                    IpamAction::Expire => A::Expired,
                    IpamAction::Import => A::Import,
                };
                (action, subject.clone(), details.clone())
            }
        };
        let (outcome, reason) = match &self.ending {
            Ending::Applied => (AuditOutcome::Applied, None),
            Ending::Refused { reason } => (AuditOutcome::Refused, Some(reason.clone())),
        };
        AuditRecord {
            seq: self.seq,
            time: time(self.wall_ms),
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

fn note_record(note: &Note) -> (AuditAction, String, BTreeMap<String, String>) {
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
