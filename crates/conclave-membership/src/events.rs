//! From two member lists to what happened between them: a pure diff, so the watch stream
//! and the event handlers share one definition of "join", "dead" or "update", tested
//! without gossip.
//!
//! The agent diffs consecutive views as they are published (a change of state, health,
//! tags, addresses or advertised keys; not the last-seen times). Views are coalesced, so a
//! member that went suspect and dead between two of them is reported `dead` once.

use std::collections::BTreeMap;

use conclave_types::member_events::{MemberEvent, MemberEventKind};
use conclave_types::{GossipMember, MemberState};

/// What changed from `old` to `new`, in member id order: each member at most once.
pub fn diff(old: &[GossipMember], new: &[GossipMember]) -> Vec<(MemberEventKind, GossipMember)> {
    let before: BTreeMap<u64, &GossipMember> = old.iter().map(|m| (m.id, m)).collect();
    let after: BTreeMap<u64, &GossipMember> = new.iter().map(|m| (m.id, m)).collect();
    let mut out = Vec::new();
    for (id, now) in &after {
        let kind = match before.get(id) {
            // A member first seen dead, left or suspect was never seen alive here (gossip
            // shows a node it has just learnt of as dead until its heartbeats arrive, and an
            // agent that starts learns of long-dead members): nothing happened to it yet.
            None => (now.state == MemberState::Alive).then_some(MemberEventKind::Join),
            Some(was) => changed(was, now),
        };
        if let Some(kind) = kind {
            out.push((kind, (*now).clone()));
        }
    }
    for (id, was) in &before {
        if !after.contains_key(id) {
            out.push((MemberEventKind::Reaped, (*was).clone()));
        }
    }
    out.sort_by_key(|(_, m)| m.id);
    out
}

/// [`diff`] as the events this agent reports, each seen at `seen_at` (RFC 3339).
pub fn events(old: &[GossipMember], new: &[GossipMember], seen_at: &str) -> Vec<MemberEvent> {
    diff(old, new)
        .into_iter()
        .map(|(kind, member)| MemberEvent {
            kind,
            member,
            seen_at: seen_at.to_owned(),
        })
        .collect()
}

/// The event of a member now in `state`.
fn arrived(state: MemberState) -> MemberEventKind {
    match state {
        MemberState::Alive => MemberEventKind::Join,
        MemberState::Suspect => MemberEventKind::Suspect,
        MemberState::Dead => MemberEventKind::Dead,
        MemberState::Left => MemberEventKind::Left,
    }
}

fn changed(was: &GossipMember, now: &GossipMember) -> Option<MemberEventKind> {
    use MemberState::*;
    if now.generation != was.generation && now.state == Alive {
        return Some(MemberEventKind::Join);
    }
    match (was.state, now.state) {
        (Dead | Left, Alive) => Some(MemberEventKind::Join),
        (a, b) if a != b => Some(match arrived(b) {
            // Suspect → alive: the same member, no longer suspect.
            MemberEventKind::Join => MemberEventKind::Update,
            other => other,
        }),
        // What a dead or departed member still says is no news.
        (_, Dead | Left) => None,
        _ => {
            let mut was = was.clone();
            was.last_seen_ms = now.last_seen_ms;
            (was != *now).then_some(MemberEventKind::Update)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, state: MemberState) -> GossipMember {
        GossipMember {
            name: None,
            id,
            role: "client".into(),
            api_addr: String::new(),
            rpc_addr: format!("10.0.0.{id}:7401"),
            state,
            healthy: state == MemberState::Alive,
            failing_checks: vec![],
            tags: Default::default(),
            last_seen_ms: 0,
            raft_role: None,
            version: "0.1.0".into(),
            generation: 1,
            cluster_id: "c".into(),
            advertised: Default::default(),
        }
    }

    fn kinds(old: &[GossipMember], new: &[GossipMember]) -> Vec<(MemberEventKind, u64)> {
        diff(old, new).into_iter().map(|(k, m)| (k, m.id)).collect()
    }

    #[test]
    fn each_change_of_state_is_its_event() {
        use MemberEventKind as K;
        use MemberState::*;
        let old = vec![
            member(1, Alive),
            member(2, Alive),
            member(3, Suspect),
            member(4, Dead),
            member(5, Alive),
            member(6, Alive),
        ];
        let mut restarted = member(6, Alive);
        restarted.generation = 2;
        let new = vec![
            member(1, Alive),
            member(2, Suspect),
            member(3, Alive),
            member(4, Alive),
            restarted,
            member(7, Alive),
        ];
        assert_eq!(
            kinds(&old, &new),
            vec![
                (K::Suspect, 2),
                (K::Update, 3),
                (K::Join, 4),
                (K::Reaped, 5),
                (K::Join, 6),
                (K::Join, 7)
            ]
        );
        assert_eq!(
            kinds(&[member(1, Suspect)], &[member(1, Dead)]),
            vec![(K::Dead, 1)]
        );
        assert_eq!(
            kinds(&[member(1, Alive)], &[member(1, Left)]),
            vec![(K::Left, 1)]
        );
        // First seen dead (a node gossip has just learnt of): no event until it is alive.
        assert!(kinds(&[], &[member(8, Dead), member(9, Suspect)]).is_empty());
        let mut dead_with_keys = member(8, Dead);
        dead_with_keys.tags.insert("zone".into(), "a".into());
        assert!(kinds(&[member(8, Dead)], &[dead_with_keys]).is_empty());
        assert_eq!(
            kinds(&[member(8, Dead)], &[member(8, Alive)]),
            vec![(K::Join, 8)]
        );
    }

    #[test]
    fn an_update_is_a_change_of_what_it_advertises_not_of_when_it_was_seen() {
        let old = vec![member(1, MemberState::Alive)];
        let mut seen_later = member(1, MemberState::Alive);
        seen_later.last_seen_ms = 900;
        assert!(diff(&old, &[seen_later.clone()]).is_empty());
        let mut tagged = seen_later;
        tagged.tags.insert("zone".into(), "b".into());
        assert_eq!(kinds(&old, &[tagged]), vec![(MemberEventKind::Update, 1)]);
    }
}
