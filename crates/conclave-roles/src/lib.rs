//! Leader-bound roles: "exactly one healthy, eligible node is the cloud gateway".
//!
//! Why a crate: the sync-database seed elected its gateway with a hand-rolled Bully
//! algorithm, and the database seed promoted a master by hand; both could end up with two
//! (or zero) leaders. Here a role is an election in the replicated store (`role:<name>`),
//! whose lease and fencing epoch come from Raft. Each agent that declares the role:
//! - campaigns only while it is **eligible** (its tags match, and, if asked, its health
//!   checks pass), and resigns when it stops being eligible;
//! - never preempts a healthy holder: a higher-priority node takes over only on a planned
//!   **handover** (`conclave roles handover NAME`);
//! - as holder, runs `on_acquire` and keeps the lease alive from a task of its own, and
//!   releases (runs `on_release`, and only then resigns) when it is told to stop, loses the
//!   lease, cannot renew it in time, or sees a newer epoch (the **split-brain** detector:
//!   [`detector`]): stop before start, so two nodes never run the role's service at once;
//! - as holder of a role with `oauth2`, fetches and refreshes OAuth2 client-credentials
//!   tokens for every peer of a `remote-peers` document, resolving secret references on
//!   this node only ([`oauth2`]); tokens and secrets never leave the process.
//!
//! The runner reaches the elections through its agent's `Coordinator` (in process on a Raft
//! member, forwarded to a verified member on a client agent), so clients and Raft members
//! run roles the same way. What each node believes is advertised over gossip
//! (`role:<name>` = `<state> <priority> <epoch>`, `role:<name>/peers` = token status).

pub mod detector;
pub mod oauth2;
mod runtime;
mod tokens;

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_hook::HookConfig;
use conclave_membership::view::keys::ROLE_PREFIX;
use conclave_types::{GossipMember, MemberState};
use serde::{Deserialize, Serialize};

pub use runtime::{RoleStatus, Roles};

/// Gossip key of this node's stance on a role.
pub fn claim_key(role: &str) -> String {
    format!("{ROLE_PREFIX}{role}")
}

/// What a node advertises about a role under [`claim_key`]: `<state> <priority> <epoch>`,
/// with state `ineligible`, `candidate` or `holder` (epoch 0 unless holding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stance {
    pub state: String,
    pub priority: i64,
    pub epoch: u64,
}

impl Stance {
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.state, self.priority, self.epoch)
    }

    pub fn parse(value: &str) -> Option<Stance> {
        let mut parts = value.split(' ');
        Some(Stance {
            state: parts.next()?.to_owned(),
            priority: parts.next()?.parse().ok()?,
            epoch: parts.next()?.parse().ok()?,
        })
    }

    /// A node that may hold the role (it holds it or campaigns for it).
    pub fn eligible(&self) -> bool {
        self.state == "candidate" || self.state == "holder"
    }
}

/// Every role `member` advertises a stance on, with that stance.
pub fn stances(member: &GossipMember) -> impl Iterator<Item = (&str, Stance)> {
    member.advertised.iter().filter_map(|(k, v)| {
        let role = k.strip_prefix(ROLE_PREFIX).filter(|r| !r.contains('/'))?;
        Some((role, Stance::parse(v)?))
    })
}

/// The live members that claim to hold `role`, with their epochs.
pub fn live_claims(members: &[GossipMember], role: &str) -> Vec<detector::Claim> {
    let key = claim_key(role);
    members
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .filter_map(|m| {
            let stance = Stance::parse(m.advertised.get(&key)?)?;
            (stance.state == "holder").then_some(detector::Claim {
                node_id: m.id,
                epoch: stance.epoch,
            })
        })
        .collect()
}

/// Gossip key of a role holder's OAuth2 peer status.
pub fn peers_key(role: &str) -> String {
    format!("{ROLE_PREFIX}{role}/peers")
}

/// The election that backs a role.
pub fn election_name(role: &str) -> String {
    format!("role:{role}")
}

/// How long a planned handover reserves a role's election for its target: if the target
/// does not take the role by then, any eligible candidate may.
pub const HANDOVER_WINDOW: std::time::Duration = std::time::Duration::from_secs(15);

/// One `[[roles]]` table of the agent config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Lowercase letters, digits and dashes.
    pub name: String,
    /// Who may hold it.
    #[serde(default)]
    pub eligible: Eligibility,
    /// On a planned handover, the eligible node with the highest priority takes over.
    #[serde(default)]
    pub priority: i64,
    /// Lease: the holder must renew within this time, and a dead holder is replaced after it.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    pub on_acquire: Option<HookConfig>,
    pub on_release: Option<HookConfig>,
    /// On a planned release (shutdown, handover, no longer eligible) the holder keeps its
    /// lease while `on_release` runs, for at most this long; then it resigns anyway.
    #[serde(default = "default_release_grace", with = "humantime_serde")]
    pub release_grace: Duration,
    /// A `remote-peers` document (`kind/name`, e.g. `remote-peers/default`): the holder
    /// fetches an OAuth2 token for each enabled peer with `oauth2` settings.
    pub oauth2: Option<String>,
    /// Hosts (`host` or `host:port`) the `remote-peers` document's `token_url`s may name.
    /// The document is cluster-wide and anyone allowed to write it chooses the URL; this
    /// list is the node's own, so a document cannot send a client secret somewhere new.
    #[serde(default)]
    pub token_hosts: Vec<String>,
}

fn default_ttl() -> Duration {
    Duration::from_secs(10)
}

fn default_release_grace() -> Duration {
    Duration::from_secs(10)
}

/// Which nodes may hold a role.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Eligibility {
    /// Every one of these tags must match this node's.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Only while this node's health checks pass.
    #[serde(default = "yes")]
    pub healthy: bool,
}

fn yes() -> bool {
    true
}

impl RoleConfig {
    pub fn validate(&self) -> Result<(), conclave_types::InvalidSetting> {
        let what = format!("role {:?}", self.name);
        let invalid = |problem| Err(conclave_types::InvalidSetting::new(what.clone(), problem));
        let ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return invalid("for the name, use lowercase letters, digits and dashes");
        }
        if self.ttl < Duration::from_secs(1) {
            return invalid("ttl must be at least 1s");
        }
        if let Some(doc) = &self.oauth2
            && !doc.starts_with("remote-peers/")
        {
            return invalid("oauth2 must name a remote-peers document, e.g. remote-peers/default");
        }
        Ok(())
    }

    /// Whether a node with `tags` and `healthy` may hold this role.
    pub fn eligible(&self, tags: &BTreeMap<String, String>, healthy: bool) -> bool {
        (healthy || !self.eligible.healthy)
            && self
                .eligible
                .tags
                .iter()
                .all(|(k, v)| tags.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stance_reads_back_what_was_advertised() {
        let s = Stance {
            state: "holder".into(),
            priority: -3,
            epoch: 42,
        };
        assert_eq!(Stance::parse(&s.encode()), Some(s.clone()));
        assert!(s.eligible());
        assert!(!Stance::parse("ineligible 0 0").unwrap().eligible());
        assert_eq!(Stance::parse("holder x 1"), None);
    }
}
