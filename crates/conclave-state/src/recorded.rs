//! The audit log's side of applying: notes, entries, election transitions and offline
//! changes recorded by `apply` (what is recorded is `audit::what_for`'s and these).

use bytes::Bytes;

use crate::elections::ElectionEvent;
use crate::{State, audit, election_watch_key};

fn event_json(event: &ElectionEvent) -> Bytes {
    // A struct of strings and integers always serializes.
    Bytes::from(serde_json::to_vec(event).unwrap_or_default())
}

impl State {
    /// Record `note` (a `LeaderElected` for a term already noted adds nothing).
    pub(crate) fn note(&mut self, note: &audit::Note, ending: &audit::Ending) {
        use audit::Note;
        let what = match note {
            Note::LeaderElected { term, leader } => match self.audit.leadership(*term, *leader) {
                Some(what) => what,
                None => return,
            },
            Note::TransferRequested { to } => {
                // A failed transfer elects nobody: the next leader is an election's.
                let pending = (*ending == audit::Ending::Applied).then_some(*to);
                self.audit.transfer_requested(pending);
                audit::What::Note(note.clone())
            }
            other => audit::What::Note(other.clone()),
        };
        self.audit(what, ending.clone());
    }

    /// Append an entry by whoever is acting (else the agent itself) at the cluster clock.
    /// An entry is no key-value change: the revision does not move for it.
    pub(crate) fn audit(&mut self, what: audit::What, ending: audit::Ending) {
        let meta = self.acting.clone().unwrap_or_else(audit::AuditMeta::agent);
        let wall_ms = self.clock.wall_ms;
        self.audit_at(wall_ms, meta, what, ending);
    }

    fn audit_at(
        &mut self,
        wall_ms: u64,
        meta: audit::AuditMeta,
        what: audit::What,
        ending: audit::Ending,
    ) {
        let revision = self.revision;
        self.audit.push(|seq| audit::AuditEntry {
            seq,
            wall_ms,
            revision,
            meta,
            what,
            ending,
        });
    }

    /// Record what an offline command did to this state (restore, recovery), at `wall_ms`
    /// (the operator's clock: no leader stamps one offline).
    pub fn record_offline(&mut self, what: audit::Offline, wall_ms: u64) {
        let wall_ms = wall_ms.max(self.clock.wall_ms);
        self.audit_at(
            wall_ms,
            audit::AuditMeta::by(audit::Actor::Operator),
            audit::What::Offline(what),
            audit::Ending::Applied,
        );
    }

    /// The audit log.
    pub fn audit_log(&self) -> &audit::AuditLog {
        &self.audit
    }

    /// Record an election's transition for its watchers and in the audit log; returns the
    /// revision of the transition's change.
    /// `ended`: the holder whose lease a resignation or expiry ended (the event itself
    /// shows none).
    pub(crate) fn record_election(&mut self, event: ElectionEvent, ended: Option<String>) -> u64 {
        let revision = self.record(
            election_watch_key(&event.election),
            Some(event_json(&event)),
        );
        let ElectionEvent {
            election,
            transition,
            holder,
            epoch,
            target,
            ..
        } = event;
        let holder = holder.or(ended);
        self.audit(
            audit::What::Election {
                election,
                transition,
                holder,
                epoch,
                target,
            },
            audit::Ending::Applied,
        );
        revision
    }
}
