//! conclave's coordination services, in process: configuration documents (validated, then
//! proposed), elections (with the campaign's wait), and change streams.
//!
//! Why this crate exists: the HTTP handlers, the roles runtime, the configuration sync and
//! the seed importer all need the same operations, with the same rules. Here they are
//! written once, between consensus (`conclave-raft`) and its users, with errors that say
//! what was refused and why ([`CoordError`]) and no HTTP in them. The handlers of
//! `conclave-api` parse a request, call [`Local`] and shape the answer; the background
//! loops call a [`Coordinator`] directly, never the agent's own HTTP API.
//!
//! A Raft member serves the calls from its own node ([`Local`]); a client agent, which
//! holds no log, forwards them to a member of the membership a member proved over node RPC
//! ([`Remote`], [`VerifiedMembers`]). A closed set, so an enum rather than a trait object.

pub mod changes;
mod error;
mod gate;
mod local;
mod remote;
mod verified;

use std::pin::Pin;

use conclave_types::{
    CampaignRequest, ConfigDocument, ConfigListItem, ConfigWriteResponse, ElectionStatus,
    LeaseRequest, WatchEvent,
};
use futures::{Stream, StreamExt};
use serde_json::Value;

pub use error::{CoordError, bounded, ipam_code, rejection_code};
pub use gate::ForwardedProposals;
pub use local::{Local, MAX_CAMPAIGN_WAIT, election_status, rfc3339};
pub use remote::{Remote, Targets};
pub use verified::{Candidate, VerifiedMembers, VerifyError, check_report, forwarding_targets};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Everything committed before the call is seen (a read barrier on the leader).
    Linearizable,
    /// This node's applied state as it is: no round trip, possibly behind.
    Stale,
}

/// Changes as key-value events, in revision order; an error ends the stream (a
/// [`CoordError::Compacted`] one means: list again, then watch from the listing's index).
pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, CoordError>> + Send>>;

/// The coordination services of this agent, whatever its role. Cheap to clone.
#[derive(Clone)]
pub enum Coordinator {
    Local(Local),
    Remote(Remote),
}

impl Coordinator {
    /// The live documents (of `kind`) and the store revision they were read at.
    pub async fn config_list(
        &self,
        kind: Option<&str>,
    ) -> Result<(Vec<ConfigListItem>, u64), CoordError> {
        match self {
            Coordinator::Local(l) => l.config_list(kind, Read::Linearizable).await,
            Coordinator::Remote(r) => {
                r.call(|c| async move { c.config_list_indexed(kind).await })
                    .await
            }
        }
    }

    /// The live document `kind/name`.
    pub async fn config_get(
        &self,
        kind: &str,
        name: &str,
        read: Read,
    ) -> Result<ConfigDocument, CoordError> {
        match self {
            Coordinator::Local(l) => Ok(l.config_get(kind, name, None, read).await?.0),
            Coordinator::Remote(r) => {
                r.call(|c| async move {
                    match read {
                        Read::Stale => c.config_get_stale(kind, name).await,
                        Read::Linearizable => c.config_get(kind, name, None).await,
                    }
                })
                .await
            }
        }
    }

    /// Validate and store `content` as `kind/name`; `cas` is the revision it must replace
    /// (`0`: it must not exist yet).
    pub async fn config_put(
        &self,
        kind: &str,
        name: &str,
        content: &Value,
        cas: Option<u64>,
    ) -> Result<ConfigWriteResponse, CoordError> {
        match self {
            Coordinator::Local(l) => l.config_put(kind, name, content, cas, false).await,
            Coordinator::Remote(r) => {
                r.call(|c| async move { c.config_put(kind, name, content, cas, false).await })
                    .await
            }
        }
    }

    /// Every change under `prefix` after revision `after`.
    pub async fn watch(&self, prefix: &str, after: u64) -> Result<ChangeStream, CoordError> {
        match self {
            Coordinator::Local(l) => {
                let stream = changes::after(
                    l.node().state().clone(),
                    after,
                    changes::Filter::Prefix(prefix.to_owned()),
                )?;
                Ok(Box::pin(
                    stream.map(|c| c.map(|change| changes::watch_event(&change))),
                ))
            }
            Coordinator::Remote(r) => r.watch(prefix, after).await,
        }
    }

    /// The Raft voters' node ids, as this node's membership (or a member's) records them.
    pub async fn voters(&self) -> Result<Vec<u64>, CoordError> {
        match self {
            Coordinator::Local(l) => Ok(l
                .node()
                .local_members()
                .into_iter()
                .filter(|m| m.role == conclave_raft::rpc::MemberRole::Voter)
                .map(|m| m.node_id)
                .collect()),
            Coordinator::Remote(r) => {
                let members = r.call(|c| async move { c.members_stale().await }).await?;
                Ok(members
                    .into_iter()
                    .filter(|m| m.role == "voter")
                    .map(|m| m.node_id)
                    .collect())
            }
        }
    }

    pub async fn election(&self, name: &str, read: Read) -> Result<ElectionStatus, CoordError> {
        match self {
            Coordinator::Local(l) => l.election(name, read).await,
            Coordinator::Remote(r) => {
                r.call(|c| async move { c.election(name, read == Read::Stale).await })
                    .await
            }
        }
    }

    /// Campaign for `name`, waiting up to the request's `wait_ms`.
    pub async fn campaign(
        &self,
        name: &str,
        req: &CampaignRequest,
    ) -> Result<ElectionStatus, CoordError> {
        match self {
            Coordinator::Local(l) => l.campaign(name, req).await,
            Coordinator::Remote(r) => r.call(|c| async move { c.campaign(name, req).await }).await,
        }
    }

    pub async fn keepalive(
        &self,
        name: &str,
        req: &LeaseRequest,
    ) -> Result<ElectionStatus, CoordError> {
        match self {
            Coordinator::Local(l) => l.keepalive(name, req).await,
            Coordinator::Remote(r) => {
                r.call(|c| async move { c.keepalive(name, req).await })
                    .await
            }
        }
    }

    /// Give up the lease of `req.epoch`.
    pub async fn resign(&self, name: &str, req: &LeaseRequest) -> Result<(), CoordError> {
        match self {
            Coordinator::Local(l) => l.resign(name, req).await.map(|_| ()),
            Coordinator::Remote(r) => r
                .call(|c| async move { c.resign(name, req).await })
                .await
                .map(|_| ()),
        }
    }
}
