//! From gossip state to the member list: one entry per node id, with its liveness.
//!
//! Pure: the caller gathers what gossip knows (each node's advertised keys, SWIM's verdict on
//! it, how long ago it was last heard), so the rules below are testable without sockets or
//! clocks.
//!
//! Rules:
//! - a node id appears once: the newest generation wins (a restarted node is the same
//!   member, not a second one);
//! - `left` if it said goodbye; else SWIM's verdict: `dead` (declared down), `suspect`
//!   (a probe failed and it has not refuted it yet) or `alive`;
//! - reaped generations (by `remove-dead` anywhere in the cluster) are hidden;
//! - healthy = alive and its own checks pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_types::{GossipMember, MemberState};

/// Keys every agent advertises in its gossip state.
pub mod keys {
    pub const ROLE: &str = "role";
    /// The node's readable name (`--node-name`).
    pub const NAME: &str = "name";
    pub const API: &str = "api";
    pub const RPC: &str = "rpc";
    pub const VERSION: &str = "version";
    pub const CLUSTER: &str = "cluster";
    pub const RAFT_ROLE: &str = "raft_role";
    /// `pass` or `fail`.
    pub const HEALTH: &str = "health";
    /// Comma-separated names of failing checks.
    pub const FAILING: &str = "failing";
    pub const LEFT: &str = "left";
    /// `tag.<key>` = value.
    pub const TAG_PREFIX: &str = "tag.";
    /// `reaped.<node id>.<generation>` = `1`: hide that dead generation everywhere.
    pub const REAPED_PREFIX: &str = "reaped.";
    /// `cfg:<kind>/<name>` = the revision, hash and state of a document this node applied.
    pub const CONFIG_APPLIED_PREFIX: &str = "cfg:";
    /// The configuration sync's subscription patterns, comma-separated.
    pub const CONFIG_SUBSCRIBE: &str = "cfg-subscribe";
    /// `setting:<name>` = a node-local setting declared `must_match`.
    pub const SETTING_PREFIX: &str = "setting:";
    /// `role:<name>` = this node's claim on a role; `role:<name>/peers` = its token status.
    pub const ROLE_PREFIX: &str = "role:";
    /// `seed:<kind>/<name>` = the hash of the document in this node's `--config-seed` file.
    pub const SEED_PREFIX: &str = "seed:";
    /// Set once this node has advertised everything its seed file holds.
    pub const SEED_READY: &str = "seed-ready";
    /// Prefixes of keys shown as a member's `advertised` map (configuration and roles).
    pub const ADVERTISED_PREFIXES: &[&str] = &[
        CONFIG_APPLIED_PREFIX,
        CONFIG_SUBSCRIBE,
        SETTING_PREFIX,
        ROLE_PREFIX,
        SEED_PREFIX,
        SEED_READY,
    ];
}

/// SWIM's verdict on a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// A probe failed; the member has not refuted the suspicion yet.
    Suspect,
    /// Declared down (it did not refute in time, or it left).
    Down,
}

/// What gossip knows about one generation of one node.
#[derive(Debug, Clone)]
pub struct Observed {
    pub node_id: u64,
    pub generation: u64,
    pub keys: BTreeMap<String, String>,
    /// `Alive` for this node itself.
    pub liveness: Liveness,
    /// Time since a datagram from it was last opened here.
    pub silent_for: Duration,
}

/// The (node id, generation) pairs reaped anywhere, read from every node's keys.
pub fn reaped(observed: &[Observed]) -> BTreeSet<(u64, u64)> {
    observed
        .iter()
        .flat_map(|o| o.keys.keys())
        .filter_map(|k| {
            let rest = k.strip_prefix(keys::REAPED_PREFIX)?;
            let (id, generation) = rest.split_once('.')?;
            Some((id.parse().ok()?, generation.parse().ok()?))
        })
        .collect()
}

pub fn compute(observed: &[Observed]) -> Vec<GossipMember> {
    let reaped = reaped(observed);
    let mut newest: BTreeMap<u64, &Observed> = BTreeMap::new();
    for o in observed {
        // 0 is never a node's id (it stands for a seed known only by address).
        let id = o.node_id;
        if id == 0 {
            continue;
        }
        match newest.get(&id) {
            Some(prev) if prev.generation >= o.generation => {}
            _ => {
                newest.insert(id, o);
            }
        }
    }
    newest
        .into_iter()
        .filter(|(id, o)| !reaped.contains(&(*id, o.generation)))
        .map(|(id, o)| member(id, o))
        .collect()
}

fn member(id: u64, o: &Observed) -> GossipMember {
    let get = |k: &str| o.keys.get(k).cloned().unwrap_or_default();
    let state = if o.keys.get(keys::LEFT).is_some_and(|v| v == "1") {
        MemberState::Left
    } else {
        match o.liveness {
            Liveness::Down => MemberState::Dead,
            Liveness::Suspect => MemberState::Suspect,
            Liveness::Alive => MemberState::Alive,
        }
    };
    let failing_checks: Vec<String> = o
        .keys
        .get(keys::FAILING)
        .map(|f| {
            f.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let checks_pass = o.keys.get(keys::HEALTH).is_none_or(|h| h == "pass");
    let tags = o
        .keys
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(keys::TAG_PREFIX)?.to_string(), v.clone())))
        .collect();
    GossipMember {
        id,
        name: o.keys.get(keys::NAME).cloned().filter(|n| !n.is_empty()),
        role: get(keys::ROLE),
        api_addr: get(keys::API),
        rpc_addr: get(keys::RPC),
        state,
        healthy: state == MemberState::Alive && checks_pass,
        failing_checks,
        tags,
        last_seen_ms: o.silent_for.as_millis() as u64,
        raft_role: o
            .keys
            .get(keys::RAFT_ROLE)
            .cloned()
            .filter(|r| !r.is_empty()),
        version: get(keys::VERSION),
        generation: o.generation,
        cluster_id: get(keys::CLUSTER),
        advertised: o
            .keys
            .iter()
            .filter(|(k, _)| keys::ADVERTISED_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The cluster this node's view belongs to: its own (`own`, the Raft cluster id it holds or
/// was configured with), else, for a client agent that has not been told, the one most Raft
/// members advertise (ties: the smallest id). `None` while no one advertises any.
pub fn cluster_of_view(own: Option<&str>, members: &[GossipMember]) -> Option<String> {
    if let Some(own) = own.filter(|c| !c.is_empty()) {
        return Some(own.to_owned());
    }
    let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
    for m in members
        .iter()
        .filter(|m| m.raft_role.is_some() && !m.cluster_id.is_empty())
    {
        *votes.entry(m.cluster_id.as_str()).or_default() += 1;
    }
    let most = votes.values().copied().max()?;
    votes
        .into_iter()
        .find(|(_, n)| *n == most)
        .map(|(c, _)| c.to_owned())
}

/// Split `members` into those of `cluster` (or that advertise none yet: client agents, nodes
/// still joining) and the number of foreign ones, which gossip met (two clusters reached
/// one another, e.g. through a shared seed) but which must not count here.
pub fn keep_cluster(
    members: Vec<GossipMember>,
    cluster: Option<&str>,
) -> (Vec<GossipMember>, usize) {
    let Some(cluster) = cluster else {
        return (members, 0);
    };
    let before = members.len();
    let kept: Vec<GossipMember> = members
        .into_iter()
        .filter(|m| m.cluster_id.is_empty() || m.cluster_id == cluster)
        .collect();
    let foreign = before - kept.len();
    (kept, foreign)
}

/// A filter over the member list, as in `GET /v1/members?role=&healthy=&tag=k=v&state=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct MemberFilter {
    /// Any of these roles (empty: all).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Only healthy members (`Some(true)`), only unhealthy ones (`Some(false)`), or both.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Every one of these tags must match.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Any of these states (empty: all).
    #[serde(default)]
    pub states: Vec<MemberState>,
    /// Leave out this node id.
    #[serde(default)]
    pub exclude_id: Option<u64>,
}

impl MemberFilter {
    pub fn matches(&self, m: &GossipMember) -> bool {
        (self.roles.is_empty() || self.roles.contains(&m.role))
            && self.healthy.is_none_or(|h| m.healthy == h)
            && self.tags.iter().all(|(k, v)| m.tags.get(k) == Some(v))
            && (self.states.is_empty() || self.states.contains(&m.state))
            && self.exclude_id != Some(m.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(
        id: u64,
        generation: u64,
        liveness: Liveness,
        silent_ms: u64,
        kv: &[(&str, &str)],
    ) -> Observed {
        Observed {
            node_id: id,
            generation,
            keys: kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            liveness,
            silent_for: Duration::from_millis(silent_ms),
        }
    }

    use Liveness::{Alive, Down, Suspect};

    #[test]
    fn states_follow_left_then_swims_verdict() {
        let v = compute(&[
            obs(1, 1, Alive, 10, &[("role", "voter")]),
            obs(2, 1, Suspect, 5000, &[]),
            obs(3, 1, Down, 9000, &[]),
            obs(4, 1, Down, 9000, &[("left", "1")]),
        ]);
        let states: Vec<_> = v.iter().map(|m| m.state).collect();
        assert_eq!(
            states,
            [
                MemberState::Alive,
                MemberState::Suspect,
                MemberState::Dead,
                MemberState::Left
            ]
        );
        assert!(v[0].healthy);
        assert!(!v[1].healthy, "a suspect member is not healthy");
        assert_eq!(v[0].role, "voter");
    }

    #[test]
    fn the_newest_generation_is_the_member() {
        let v = compute(&[
            obs(7, 100, Down, 9000, &[("api", "old:1")]),
            obs(7, 200, Alive, 0, &[("api", "new:1")]),
        ]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].api_addr, "new:1");
        assert_eq!(v[0].state, MemberState::Alive);
    }

    #[test]
    fn reaped_generations_are_hidden_everywhere_but_a_new_one_returns() {
        let reaper = obs(1, 1, Alive, 0, &[("reaped.2.5", "1")]);
        let v = compute(&[reaper.clone(), obs(2, 5, Down, 9000, &[])]);
        assert_eq!(v.iter().map(|m| m.id).collect::<Vec<_>>(), [1]);
        let v = compute(&[reaper, obs(2, 6, Alive, 0, &[])]);
        assert_eq!(v.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn failing_checks_make_a_live_member_unhealthy_and_tags_are_read() {
        let v = compute(&[obs(
            1,
            1,
            Alive,
            0,
            &[
                ("health", "fail"),
                ("failing", "db,disk"),
                ("tag.zone", "a"),
            ],
        )]);
        assert!(!v[0].healthy);
        assert_eq!(v[0].failing_checks, ["db", "disk"]);
        assert_eq!(v[0].tags.get("zone").map(String::as_str), Some("a"));
        let f = MemberFilter {
            tags: [("zone".to_string(), "a".to_string())].into(),
            ..Default::default()
        };
        assert!(f.matches(&v[0]));
        let f = MemberFilter {
            healthy: Some(true),
            ..Default::default()
        };
        assert!(!f.matches(&v[0]));
        let f = MemberFilter {
            healthy: Some(false),
            ..Default::default()
        };
        assert!(f.matches(&v[0]), "healthy=false selects the unhealthy");
    }

    #[test]
    fn the_seed_stand_in_is_never_a_member() {
        assert!(compute(&[obs(0, 0, Alive, 0, &[])]).is_empty());
    }

    fn of(id: u64, cluster: &str, raft: bool) -> GossipMember {
        let mut m = compute(&[obs(id, 1, Alive, 0, &[])]).remove(0);
        m.cluster_id = cluster.into();
        m.raft_role = raft.then(|| "follower".to_string());
        m
    }

    #[test]
    fn members_of_another_cluster_are_left_out_and_counted() {
        let members = vec![
            of(1, "a", true),
            of(2, "a", true),
            of(3, "b", true),
            of(4, "", false), // a client agent, or a node still joining
        ];
        let (kept, foreign) = keep_cluster(members.clone(), Some("a"));
        assert_eq!(kept.iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(foreign, 1);
        assert_eq!(keep_cluster(members, None).1, 0);
    }

    #[test]
    fn a_node_keeps_its_own_cluster_and_a_client_follows_the_raft_majority() {
        let members = vec![
            of(1, "a", true),
            of(3, "b", true),
            of(5, "b", true),
            of(9, "c", false),
        ];
        assert_eq!(cluster_of_view(Some("a"), &members).as_deref(), Some("a"));
        // Clients do not vote: "c" is advertised by a non-Raft member only.
        assert_eq!(cluster_of_view(None, &members).as_deref(), Some("b"));
        assert_eq!(
            cluster_of_view(Some(""), &[of(1, "a", true), of(2, "b", true)]).as_deref(),
            Some("a")
        );
        assert_eq!(cluster_of_view(None, &[of(4, "", false)]), None);
    }
}
