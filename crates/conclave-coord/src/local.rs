//! The services of a Raft member, served from its own node: reads from the applied state
//! (after a read barrier unless stale), writes checked against the limits and validated,
//! then proposed.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use conclave_config::kinds::{self, SCHEMA_KIND};
use conclave_config::validate::{ValidateError, validate};
use conclave_raft::RaftNode;
use conclave_state::audit::AuditMeta;
use conclave_state::{Command, ConfigVersion, Election, Limits, Outcome};
use conclave_types::{
    CampaignRequest, ConfigDocument, ConfigHistory, ConfigListItem, ConfigVersionInfo,
    ConfigWriteResponse, ElectionStatus, HandoverStatus, LeaseRequest,
};
use serde_json::Value;

use crate::error::unexpected;
use crate::{CoordError, Read};

/// The longest a campaign may wait to be elected.
pub const MAX_CAMPAIGN_WAIT: Duration = Duration::from_millis(conclave_types::MAX_CAMPAIGN_WAIT_MS);

/// RFC 3339 of a leader wall-clock stamp.
///
/// A stamp beyond year 9999 (only a faulty leader clock makes one) shows as that year's
/// end rather than failing.
pub fn rfc3339(wall_ms: u64) -> String {
    /// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
    const MAX_RFC3339_MS: u64 = 253_402_300_799_999;
    let at = UNIX_EPOCH + Duration::from_millis(wall_ms.min(MAX_RFC3339_MS));
    humantime::format_rfc3339_millis(at).to_string()
}

/// The JSON Schema registered for `kind` (`schema/<kind>`), if any.
pub(crate) fn registered_schema(state: &conclave_state::State, kind: &str) -> Option<Value> {
    state
        .config_entry(SCHEMA_KIND, kind)
        .and_then(|e| e.live())
        .and_then(|v| serde_json::from_slice::<Value>(v.content.as_deref()?).ok())
}

/// `content` validated as `kind/name` against the built-in rules or `schema`.
pub(crate) fn validated(
    kind: &str,
    name: &str,
    content: &Value,
    schema: Option<&Value>,
) -> Result<conclave_config::validate::Validated, CoordError> {
    validate(kind, name, content, schema).map_err(|e| match e {
        ValidateError::UnknownKind(kind) => CoordError::UnknownKind { kind },
        ValidateError::BadName(m) => CoordError::BadName(m),
        ValidateError::Invalid(violations) => CoordError::Invalid {
            kind: kind.to_owned(),
            name: name.to_owned(),
            violations,
        },
    })
}

/// A Raft member's services. Cheap to clone.
#[derive(Clone)]
pub struct Local {
    node: RaftNode,
    limits: Limits,
    /// Who the writes are for ([`Local::acting`]): each is proposed wrapped in
    /// `Command::Audited`, and documents name it as their author.
    acting: Option<Arc<AuditMeta>>,
}

fn document(kind: &str, name: &str, v: &ConfigVersion) -> Result<ConfigDocument, CoordError> {
    let content: Value =
        serde_json::from_slice(v.content.as_deref().unwrap_or(b"null")).map_err(|e| {
            CoordError::Internal(format!("stored document {kind}/{name} is not JSON: {e}"))
        })?;
    Ok(ConfigDocument {
        kind: kind.to_owned(),
        name: name.to_owned(),
        revision: v.revision,
        hash: v.hash.clone(),
        author: v.author.clone(),
        updated_at: rfc3339(v.wall_ms),
        content,
    })
}

/// An election as of cluster time `now_ms`, at store revision `revision`.
pub fn election_status(name: &str, e: &Election, now_ms: u64, revision: u64) -> ElectionStatus {
    let handover = e.pending_handover(now_ms).map(|h| HandoverStatus {
        target: h.target.clone(),
        from_epoch: h.from_epoch,
        remaining_ms: h.until_ms.saturating_sub(now_ms),
    });
    let status = match e.live_holder(now_ms) {
        Some(h) => ElectionStatus {
            name: name.to_owned(),
            holder: Some(h.candidate.clone()),
            epoch: h.epoch,
            elected: None,
            ttl_ms: h.ttl_ms,
            lease_remaining_ms: h.expires_at_ms.saturating_sub(now_ms),
            since: Some(rfc3339(h.acquired_wall_ms)),
            revision,
            handover: None,
        },
        None => ElectionStatus {
            name: name.to_owned(),
            holder: None,
            epoch: e.last_epoch,
            elected: None,
            ttl_ms: 0,
            lease_remaining_ms: 0,
            since: None,
            revision,
            handover: None,
        },
    };
    ElectionStatus { handover, ..status }
}

impl Local {
    pub fn new(node: RaftNode, limits: Limits) -> Self {
        Self {
            node,
            limits,
            acting: None,
        }
    }

    /// These services acting for `meta`: the audit log credits every write to it.
    pub fn acting(&self, meta: AuditMeta) -> Self {
        Self {
            acting: Some(Arc::new(meta)),
            ..self.clone()
        }
    }

    /// The author a document written by these services records.
    fn author(&self) -> Option<String> {
        self.acting.as_ref().map(|m| m.actor.to_string())
    }

    pub fn node(&self) -> &RaftNode {
        &self.node
    }

    async fn read_point(&self, read: Read) -> Result<(), CoordError> {
        if read == Read::Linearizable {
            self.node.read_barrier().await?;
        }
        Ok(())
    }

    async fn propose(&self, command: Command) -> Result<Outcome, CoordError> {
        let command = match &self.acting {
            Some(meta) => Command::Audited {
                meta: AuditMeta::clone(meta),
                command: Box::new(command),
            },
            None => command,
        };
        self.limits.check(&command)?;
        Ok(self.node.propose(command).await?)
    }

    /// Change the cluster's tokens or policies: applied, or why not.
    pub async fn acl(&self, change: conclave_state::acl::AclCommand) -> Result<u64, CoordError> {
        match self.propose(Command::Acl(change)).await? {
            Outcome::Acl {
                revision,
                refusal: None,
            } => Ok(revision),
            Outcome::Acl {
                refusal: Some(refusal),
                ..
            } => Err(refusal.into()),
            other => Err(unexpected(other)),
        }
    }

    /// Change networks or allocations: what the cluster decided, or why not. The shape
    /// rules are checked here first, so a malformed request never reaches the log.
    pub async fn ipam(
        &self,
        command: conclave_state::ipam::IpamCommand,
    ) -> Result<conclave_state::ipam::IpamAnswer, CoordError> {
        conclave_state::ipam::validate(&command)?;
        match self.propose(Command::Ipam(command)).await? {
            Outcome::Ipam { result, .. } => Ok((*result)?),
            other => Err(unexpected(other)),
        }
    }

    /// The applied IPAM state, after a read barrier unless stale.
    pub async fn ipam_read<T>(
        &self,
        read: Read,
        f: impl FnOnce(&conclave_state::ipam::Ipam) -> T,
    ) -> Result<T, CoordError> {
        self.read_point(read).await?;
        Ok(self.node.state().read(|a| f(a.state.ipam())))
    }

    /// The live documents (of `kind`) and the revision they were read at: where a watch
    /// must start to miss nothing after this listing.
    pub async fn config_list(
        &self,
        kind: Option<&str>,
        read: Read,
    ) -> Result<(Vec<ConfigListItem>, u64), CoordError> {
        if let Some(kind) = kind {
            kinds::check_kind_name(kind)?;
        }
        self.read_point(read).await?;
        Ok(self.node.state().read(|a| {
            let items = a
                .state
                .config_documents(kind)
                .map(|(k, n, v)| ConfigListItem {
                    kind: k.to_owned(),
                    name: n.to_owned(),
                    revision: v.revision,
                    hash: v.hash.clone(),
                })
                .collect();
            (items, a.state.revision())
        }))
    }

    /// A document (as of store revision `at` when given) and the revision it was read at.
    pub async fn config_get(
        &self,
        kind: &str,
        name: &str,
        at: Option<u64>,
        read: Read,
    ) -> Result<(ConfigDocument, u64), CoordError> {
        self.read_point(read).await?;
        let (found, index) = self.node.state().read(|a| {
            let entry = a.state.config_entry(kind, name);
            let found = match at {
                None => Ok(entry.and_then(|e| e.live()).cloned()),
                Some(r) => entry.map_or(Ok(None), |e| e.at(r).map(|v| v.cloned())),
            };
            (found, a.state.revision())
        });
        if let Some(requested) = at.filter(|r| *r > index) {
            return Err(CoordError::FutureRevision { requested, index });
        }
        match found {
            Ok(Some(v)) => Ok((document(kind, name, &v)?, index)),
            Ok(None) => Err(CoordError::DocumentNotFound {
                kind: kind.to_owned(),
                name: name.to_owned(),
                revision: at,
            }),
            Err(oldest) => Err(CoordError::RevisionGone {
                kind: kind.to_owned(),
                name: name.to_owned(),
                requested: at.unwrap_or_default(),
                oldest,
            }),
        }
    }

    /// The retained versions of a document, newest first.
    pub async fn config_history(
        &self,
        kind: &str,
        name: &str,
        read: Read,
    ) -> Result<ConfigHistory, CoordError> {
        self.read_point(read).await?;
        let versions = self.node.state().read(|a| {
            a.state.config_entry(kind, name).map(|e| {
                e.versions
                    .iter()
                    .rev()
                    .map(|v| ConfigVersionInfo {
                        revision: v.revision,
                        hash: v.hash.clone(),
                        author: v.author.clone(),
                        updated_at: rfc3339(v.wall_ms),
                        deleted: v.content.is_none(),
                    })
                    .collect::<Vec<_>>()
            })
        });
        let versions = versions.ok_or_else(|| CoordError::DocumentNotFound {
            kind: kind.to_owned(),
            name: name.to_owned(),
            revision: None,
        })?;
        Ok(ConfigHistory {
            kind: kind.to_owned(),
            name: name.to_owned(),
            versions,
        })
    }

    /// Validate `content` as `kind/name` (built-in rules, or the registered schema) and
    /// propose it, unless `dry_run`; `cas` is the revision it must replace (`0`: none).
    pub async fn config_put(
        &self,
        kind: &str,
        name: &str,
        content: &Value,
        cas: Option<u64>,
        dry_run: bool,
    ) -> Result<ConfigWriteResponse, CoordError> {
        kinds::check_kind_name(kind)?;
        kinds::check_doc_name(name)?;
        // Validation reads the registered schema and the current hash: see the newest state.
        self.node.read_barrier().await?;
        let (schema, current_hash, revision) = self.node.state().read(|a| {
            let current = a
                .state
                .config_entry(kind, name)
                .and_then(|e| e.live())
                .map(|v| v.hash.clone());
            (
                registered_schema(&a.state, kind),
                current,
                a.state.revision(),
            )
        });
        let validated = validated(kind, name, content, schema.as_ref())?;
        let changed = current_hash.as_deref() != Some(validated.hash.as_str());
        if dry_run {
            return Ok(ConfigWriteResponse {
                revision,
                hash: validated.hash,
                dry_run: true,
                changed,
            });
        }
        let command = Command::ConfigPut {
            kind: kind.to_owned(),
            name: name.to_owned(),
            content: validated.canonical,
            hash: validated.hash.clone(),
            author: self.author(),
            expected: cas,
        };
        match self.propose(command).await? {
            Outcome::Put { revision } => Ok(ConfigWriteResponse {
                revision,
                hash: validated.hash,
                dry_run: false,
                changed,
            }),
            Outcome::CasFailed { current, .. } => Err(CoordError::CasConflict { current }),
            other => Err(unexpected(other)),
        }
    }

    pub async fn config_delete(
        &self,
        kind: &str,
        name: &str,
        cas: Option<u64>,
    ) -> Result<ConfigWriteResponse, CoordError> {
        let command = Command::ConfigDelete {
            kind: kind.to_owned(),
            name: name.to_owned(),
            expected: cas,
            author: self.author(),
        };
        match self.propose(command).await? {
            Outcome::Deleted { revision, deleted } => Ok(ConfigWriteResponse {
                revision,
                hash: String::new(),
                dry_run: false,
                changed: deleted,
            }),
            Outcome::CasFailed { current, .. } => Err(CoordError::CasConflict { current }),
            other => Err(unexpected(other)),
        }
    }

    /// The election as this node has applied it, with no read barrier; `None` if no one
    /// ever campaigned in it. Lease times are this node's estimate of the cluster clock,
    /// which lags the leader's: a remaining time shown is never shorter than the real one
    /// by more than the replication delay.
    pub fn election_applied(&self, name: &str) -> Option<ElectionStatus> {
        let state = self.node.state();
        let now = state.cluster_clock_estimate();
        state.read(|a| {
            a.state
                .election(name)
                .map(|e| election_status(name, e, now, a.state.revision()))
        })
    }

    pub async fn election(&self, name: &str, read: Read) -> Result<ElectionStatus, CoordError> {
        self.read_point(read).await?;
        self.election_applied(name)
            .ok_or_else(|| CoordError::ElectionNotFound {
                name: name.to_owned(),
            })
    }

    pub async fn elections(&self, read: Read) -> Result<Vec<ElectionStatus>, CoordError> {
        self.read_point(read).await?;
        let state = self.node.state();
        let now = state.cluster_clock_estimate();
        Ok(state.read(|a| {
            a.state
                .elections()
                .map(|(n, e)| election_status(n, e, now, a.state.revision()))
                .collect()
        }))
    }

    /// Become the holder of `name`, waiting up to `wait_ms` (at most
    /// [`MAX_CAMPAIGN_WAIT`]): the campaign is proposed again whenever the holder changes
    /// (resignation, expiry, a handover window closing) until it wins or the wait is over.
    /// Not elected in time: the election's status with `elected: false`.
    pub async fn campaign(
        &self,
        name: &str,
        req: &CampaignRequest,
    ) -> Result<ElectionStatus, CoordError> {
        let command = Command::Campaign {
            election: name.to_owned(),
            candidate: req.candidate.clone(),
            ttl_ms: req.ttl_ms,
        };
        let deadline = Instant::now() + Duration::from_millis(req.wait_ms).min(MAX_CAMPAIGN_WAIT);
        let mut feed = self.node.state().feed_revision();
        loop {
            feed.borrow_and_update();
            let busy_epoch = match self.propose(command.clone()).await? {
                Outcome::Elected {
                    revision,
                    epoch,
                    expires_at_ms,
                    now_ms,
                    ..
                } => {
                    return Ok(ElectionStatus {
                        name: name.to_owned(),
                        holder: Some(req.candidate.clone()),
                        epoch,
                        elected: Some(true),
                        ttl_ms: req.ttl_ms,
                        lease_remaining_ms: expires_at_ms.saturating_sub(now_ms),
                        since: None,
                        revision,
                        handover: None,
                    });
                }
                Outcome::Busy { epoch, .. } => epoch,
                // Reserved for a handover target: wait like for a holder.
                Outcome::Reserved { .. } => 0,
                other => return Err(unexpected(other)),
            };
            if Instant::now() >= deadline {
                let mut status =
                    self.election_applied(name)
                        .ok_or_else(|| CoordError::ElectionNotFound {
                            name: name.to_owned(),
                        })?;
                status.elected = Some(false);
                return Ok(status);
            }
            // Wait until the holder changes (resigned, expired, replaced) or the wait is
            // over; look again every second in case an expiry is due but not yet proposed.
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let _ =
                    tokio::time::timeout(left.min(Duration::from_secs(1)), feed.changed()).await;
                let still_busy = self.election_applied(name).is_some_and(|s| {
                    let reserved = s.handover.is_some_and(|h| h.target != req.candidate);
                    reserved || (s.holder.is_some() && s.epoch == busy_epoch)
                });
                if !still_busy {
                    break;
                }
            }
        }
    }

    fn not_holder(name: &str, req: &LeaseRequest, outcome: Outcome) -> CoordError {
        match outcome {
            Outcome::NotHolder { holder, epoch, .. } => CoordError::NotHolder {
                election: name.to_owned(),
                candidate: req.candidate.clone(),
                epoch: req.epoch,
                holder,
                holder_epoch: epoch,
            },
            other => unexpected(other),
        }
    }

    /// Extend the lease of the holder's epoch by its TTL.
    pub async fn keepalive(
        &self,
        name: &str,
        req: &LeaseRequest,
    ) -> Result<ElectionStatus, CoordError> {
        let command = Command::Keepalive {
            election: name.to_owned(),
            candidate: req.candidate.clone(),
            epoch: req.epoch,
        };
        match self.propose(command).await? {
            Outcome::Renewed {
                revision,
                expires_at_ms,
                now_ms,
            } => {
                let ttl_ms = expires_at_ms.saturating_sub(now_ms);
                Ok(ElectionStatus {
                    name: name.to_owned(),
                    holder: Some(req.candidate.clone()),
                    epoch: req.epoch,
                    elected: Some(true),
                    ttl_ms,
                    lease_remaining_ms: ttl_ms,
                    since: None,
                    revision,
                    handover: None,
                })
            }
            other => Err(Self::not_holder(name, req, other)),
        }
    }

    /// Give up the lease of the holder's epoch: the revision of the resignation.
    pub async fn resign(&self, name: &str, req: &LeaseRequest) -> Result<u64, CoordError> {
        let command = Command::Resign {
            election: name.to_owned(),
            candidate: req.candidate.clone(),
            epoch: req.epoch,
        };
        match self.propose(command).await? {
            Outcome::Resigned { revision } => Ok(revision),
            other => Err(Self::not_holder(name, req, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wall_clock_stamp_beyond_rfc_3339_shows_as_its_last_moment() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
