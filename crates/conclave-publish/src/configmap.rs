//! The ConfigMap publisher (`[[publish]] kind = "configmap"`): the peer list as the
//! Kubernetes-operator seed published it — `peers.json` (with its `nodeType`/`peerString`
//! keys when the sink renames them), `peers.txt` (`ip:port` lines) and `peer_count` — in one
//! ConfigMap, written with kube-rs.
//!
//! - One writer at a time: the agent holding the sink's election (`ConfigMapLease`) writes;
//!   the others follow, so N agents never fight over the object.
//! - Optimistic concurrency: the object is read, our keys replaced (other keys kept) and
//!   written back with the `resourceVersion` that was read; a `409 Conflict` (someone wrote
//!   in between) reads again, up to [`MAX_CONFLICTS`] times.
//! - An unchanged list is not written; every call is bounded by [`CALL_TIMEOUT`].
//!
//! The rendering is pure ([`render_data`]); the guards (no shrink without confirmation, hold
//! while the cluster has no leader) are the file sinks' own (`sink.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use conclave_coord::Coordinator;
use conclave_types::{CampaignRequest, ErrorCode, LeaseRequest};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};

use crate::render::{Format, Peer, render};

/// Conflicting writes retried before one publication is given up (the next change retries).
pub const MAX_CONFLICTS: u32 = 5;
/// The longest one call to the API server may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A ConfigMap's `data`: key → text.
pub type ConfigMapData = BTreeMap<String, String>;

/// A key of the published ConfigMap.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigMapKey {
    /// The JSON peer list (the sink's `fields` rename its keys).
    #[serde(rename = "peers.json")]
    PeersJson,
    /// `ip:port` lines.
    #[serde(rename = "peers.txt")]
    PeersTxt,
    /// How many peers.
    #[serde(rename = "peer_count")]
    PeerCount,
}

impl ConfigMapKey {
    pub const ALL: [ConfigMapKey; 3] = [
        ConfigMapKey::PeersJson,
        ConfigMapKey::PeersTxt,
        ConfigMapKey::PeerCount,
    ];

    pub fn key(self) -> &'static str {
        match self {
            ConfigMapKey::PeersJson => "peers.json",
            ConfigMapKey::PeersTxt => "peers.txt",
            ConfigMapKey::PeerCount => "peer_count",
        }
    }
}

/// The ConfigMap's data for `peers`: each of `keys`, rendered as the file formats are.
pub fn render_data(
    peers: &[Peer],
    keys: &[ConfigMapKey],
    fields: &BTreeMap<String, String>,
) -> ConfigMapData {
    keys.iter()
        .map(|k| {
            let format = match k {
                ConfigMapKey::PeersJson => Format::Json,
                ConfigMapKey::PeersTxt => Format::Lines,
                ConfigMapKey::PeerCount => Format::Count,
            };
            let bytes = render(peers, format, fields, "");
            (
                k.key().to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect()
}

/// How many peers `data` (as published) holds, from whichever key it has.
pub fn published_count(data: &ConfigMapData) -> Option<usize> {
    if let Some(n) = data.get("peer_count").and_then(|c| c.trim().parse().ok()) {
        return Some(n);
    }
    if let Some(list) = data
        .get("peers.json")
        .and_then(|j| serde_json::from_str::<Vec<serde_json::Value>>(j).ok())
    {
        return Some(list.len());
    }
    data.get("peers.txt")
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
}

/// Why a ConfigMap could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    #[error("no Kubernetes API configuration: {0}")]
    Config(String),
    /// The API server answered with an error (401, 403, 404, 422, ...).
    #[error("the Kubernetes API answered {code}: {message}")]
    Refused { code: u16, message: String },
    #[error(
        "ConfigMap {0} changed under every one of {MAX_CONFLICTS} writes (409 Conflict each time)"
    )]
    Conflicts(String),
    #[error("the Kubernetes API did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the Kubernetes API: {0}")]
    Transport(String),
}

impl ConfigMapError {
    fn from_kube(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => ConfigMapError::Refused {
                code: status.code,
                message: status.message.clone(),
            },
            other => ConfigMapError::Transport(other.to_string()),
        }
    }

    fn is_conflict(&self) -> bool {
        matches!(self, ConfigMapError::Refused { code: 409, .. })
    }
}

/// What one write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Our keys already held this.
    Unchanged,
    /// Written; the object's new `resourceVersion`.
    Written { resource_version: String },
}

/// One ConfigMap, reached through kube-rs.
#[derive(Clone)]
pub struct ConfigMapWriter {
    api: kube::Api<ConfigMap>,
    namespace: String,
    name: String,
}

async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, ConfigMapError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| ConfigMapError::Timeout(CALL_TIMEOUT))?
        .map_err(ConfigMapError::from_kube)
}

impl ConfigMapWriter {
    /// A client from `kubeconfig`, or else the pod's service account (in a cluster), or else
    /// the usual kubeconfig (`KUBECONFIG`, `~/.kube/config`).
    pub async fn connect(
        namespace: &str,
        name: &str,
        kubeconfig: Option<&PathBuf>,
    ) -> Result<Self, ConfigMapError> {
        let mut config = match kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    ConfigMapError::Config(format!("kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(file, &Default::default())
                    .await
                    .map_err(|e| {
                        ConfigMapError::Config(format!("kubeconfig {}: {e}", path.display()))
                    })?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| ConfigMapError::Config(e.to_string()))?,
        };
        config.read_timeout = Some(CALL_TIMEOUT);
        let client =
            kube::Client::try_from(config).map_err(|e| ConfigMapError::Config(e.to_string()))?;
        Ok(Self {
            api: kube::Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `namespace/name`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The ConfigMap's data now (`None`: no such ConfigMap).
    pub async fn current(&self) -> Result<Option<ConfigMapData>, ConfigMapError> {
        Ok(bounded(self.api.get_opt(&self.name))
            .await?
            .map(|cm| cm.data.unwrap_or_default()))
    }

    /// Make our keys hold `data` (other keys are kept): read, compare, write with the
    /// `resourceVersion` read; on a conflict read again.
    pub async fn write(&self, data: &ConfigMapData) -> Result<WriteOutcome, ConfigMapError> {
        for attempt in 0..MAX_CONFLICTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 << attempt.min(4))).await;
            }
            let result = match bounded(self.api.get_opt(&self.name)).await? {
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            namespace: Some(self.namespace.clone()),
                            ..ObjectMeta::default()
                        },
                        data: Some(data.clone()),
                        ..ConfigMap::default()
                    };
                    bounded(self.api.create(&PostParams::default(), &cm)).await
                }
                Some(mut cm) => {
                    let mut merged = cm.data.clone().unwrap_or_default();
                    if data.iter().all(|(k, v)| merged.get(k) == Some(v)) {
                        return Ok(WriteOutcome::Unchanged);
                    }
                    merged.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
                    cm.data = Some(merged);
                    // The resourceVersion read stays in the metadata: the server refuses the
                    // write (409) if the object changed since.
                    bounded(self.api.replace(&self.name, &PostParams::default(), &cm)).await
                }
            };
            match result {
                Ok(cm) => {
                    return Ok(WriteOutcome::Written {
                        resource_version: cm.metadata.resource_version.unwrap_or_default(),
                    });
                }
                Err(e) if e.is_conflict() => {
                    tracing::info!(configmap = %self.target(), attempt, "conflicting write; reading again");
                }
                Err(e) => return Err(e),
            }
        }
        Err(ConfigMapError::Conflicts(self.target()))
    }
}

/// The election that makes one agent the writer of a ConfigMap: campaign, keep the lease
/// alive while writing, resign at the end.
pub struct ConfigMapLease {
    coord: Coordinator,
    election: String,
    candidate: String,
    ttl: Duration,
    held: Option<(u64, Instant)>,
    last_try: Option<Instant>,
    /// Who holds it when this agent does not (for the sink's status).
    pub holder: Option<String>,
}

impl ConfigMapLease {
    pub fn new(coord: Coordinator, election: String, candidate: String, ttl: Duration) -> Self {
        Self {
            coord,
            election,
            candidate,
            ttl,
            held: None,
            last_try: None,
            holder: None,
        }
    }

    pub fn election(&self) -> &str {
        &self.election
    }

    /// Whether this agent is the writer now: renews a held lease every TTL/3, campaigns
    /// (at most every TTL/3) when not held. An answer that leaves it unsure counts as not
    /// held: a write then waits for the next round.
    pub async fn holding(&mut self) -> bool {
        let now = Instant::now();
        let every = self.ttl / 3;
        if let Some((epoch, renewed)) = self.held {
            if now.duration_since(renewed) < every {
                return true;
            }
            let req = LeaseRequest {
                candidate: self.candidate.clone(),
                epoch,
            };
            match self.coord.keepalive(&self.election, &req).await {
                Ok(_) => {
                    self.held = Some((epoch, now));
                    return true;
                }
                Err(e) => {
                    // The lease may still be ours until its TTL runs out, but a writer that
                    // cannot renew stops writing at once.
                    tracing::warn!(election = %self.election, error = %e, "could not renew the ConfigMap writer's lease; not writing");
                    if e.code() == ErrorCode::NotHolder {
                        self.held = None;
                    } else {
                        return false;
                    }
                }
            }
        }
        if self.last_try.is_some_and(|t| now.duration_since(t) < every) {
            return false;
        }
        self.last_try = Some(now);
        let req = CampaignRequest {
            candidate: self.candidate.clone(),
            ttl_ms: self.ttl.as_millis() as u64,
            wait_ms: 0,
        };
        match self.coord.campaign(&self.election, &req).await {
            Ok(status) if status.holder.as_deref() == Some(self.candidate.as_str()) => {
                self.held = Some((status.epoch, now));
                self.holder = None;
                true
            }
            Ok(status) => {
                self.holder = status.holder;
                false
            }
            Err(e) => {
                tracing::debug!(election = %self.election, error = %e, "campaign failed");
                false
            }
        }
    }

    /// Give the lease up (at the sink's end), so another agent takes over at once.
    pub async fn release(&mut self) {
        if let Some((epoch, _)) = self.held.take() {
            let req = LeaseRequest {
                candidate: self.candidate.clone(),
                epoch,
            };
            let _ = self.coord.resign(&self.election, &req).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, ip: &str) -> Peer {
        Peer {
            id,
            name: format!("node-{id}"),
            role: "voter".into(),
            ip: ip.into(),
            port: 7400,
            tags: BTreeMap::new(),
            healthy: true,
        }
    }

    #[test]
    fn the_data_has_the_seed_keys_in_the_seed_shape() {
        let fields: BTreeMap<String, String> =
            [("role", "nodeType"), ("peer_string", "peerString")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let peers = [peer(1, "10.0.0.1"), peer(2, "10.0.0.2")];
        let data = render_data(&peers, &ConfigMapKey::ALL, &fields);
        assert_eq!(data["peer_count"].trim(), "2");
        assert_eq!(data["peers.txt"], "10.0.0.1:7400\n10.0.0.2:7400\n");
        let json: Vec<serde_json::Value> = serde_json::from_str(&data["peers.json"]).unwrap();
        assert_eq!(json[0]["nodeType"], "voter");
        assert_eq!(json[1]["peerString"], "10.0.0.2:7400");
        assert_eq!(published_count(&data), Some(2));
        let only_txt = render_data(&peers, &[ConfigMapKey::PeersTxt], &fields);
        assert_eq!(only_txt.len(), 1);
        assert_eq!(published_count(&only_txt), Some(2));
        assert_eq!(published_count(&BTreeMap::new()), None);
        // The key names are the wire names.
        let keys: Vec<ConfigMapKey> =
            serde_json::from_str(r#"["peers.json","peers.txt","peer_count"]"#).unwrap();
        assert_eq!(keys, ConfigMapKey::ALL);
    }
}
