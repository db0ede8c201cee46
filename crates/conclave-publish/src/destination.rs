//! Where a sink's publication goes: a file on this node, or a ConfigMap written by the
//! holder of the sink's election. The sink's loop (`sink.rs`: follow the view, guard,
//! write on change, hook) is the same for both.

use std::path::PathBuf;
use std::time::Duration;

use conclave_coord::Coordinator;

use crate::configmap::{
    ConfigMapData, ConfigMapLease, ConfigMapWriter, WriteOutcome, published_count,
};
use crate::file::{existing, write_atomically};
use crate::render::{Peer, render};
use crate::sink::{SinkConfig, SinkKind};

/// How long the ConfigMap writer's lease runs without a renewal.
const LEASE_TTL: Duration = Duration::from_secs(10);

/// Why nothing is written right now (shown as the sink's `held`: for a person to read).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NotNow(pub(crate) String);

impl From<String> for NotNow {
    fn from(s: String) -> Self {
        NotNow(s)
    }
}

impl From<crate::configmap::ConfigMapError> for NotNow {
    fn from(e: crate::configmap::ConfigMapError) -> Self {
        NotNow(e.to_string())
    }
}

pub(crate) enum Destination {
    File(PathBuf, crate::render::Format),
    ConfigMap(Box<ConfigMapDestination>),
}

pub(crate) struct ConfigMapDestination {
    cfg: SinkConfig,
    writer: Option<ConfigMapWriter>,
    lease: Option<ConfigMapLease>,
    /// When a non-writer last read the ConfigMap to see whether it holds its list.
    last_look: Option<std::time::Instant>,
}

/// How often an agent that does not write reads the ConfigMap to see the writer's update.
const LOOK_EVERY: Duration = Duration::from_secs(1);

impl Destination {
    /// `coord` and `candidate`: how a ConfigMap sink campaigns for its election.
    pub(crate) fn new(cfg: &SinkConfig, coord: Option<Coordinator>, candidate: String) -> Self {
        match cfg.kind {
            SinkKind::File => Destination::File(cfg.path.clone(), cfg.format),
            SinkKind::ConfigMap => {
                let election = format!("publish.{}.{}", cfg.namespace, cfg.configmap);
                Destination::ConfigMap(Box::new(ConfigMapDestination {
                    cfg: cfg.clone(),
                    writer: None,
                    lease: coord.map(|c| ConfigMapLease::new(c, election, candidate, LEASE_TTL)),
                    last_look: None,
                }))
            }
        }
    }

    /// What `peers` publish as; the guard compares these bytes.
    pub(crate) fn render(&self, peers: &[Peer], cfg: &SinkConfig) -> Vec<u8> {
        match self {
            Destination::File(_, format) => render(peers, *format, &cfg.fields, &cfg.env_var),
            Destination::ConfigMap(c) => {
                let data = crate::configmap::render_data(peers, &c.cfg.keys, &c.cfg.fields);
                serde_json::to_vec(&data).unwrap_or_default()
            }
        }
    }

    /// What was published before this sink started (so an identical list is not written
    /// again, and the guard knows what a shrink is measured against).
    pub(crate) async fn published(&mut self) -> Result<Option<(Vec<u8>, usize)>, NotNow> {
        match self {
            Destination::File(path, format) => Ok(existing(path, *format)),
            Destination::ConfigMap(c) => {
                let writer = c.writer().await?;
                let data = writer.current().await?;
                Ok(data.map(|all| {
                    let ours: ConfigMapData = all
                        .into_iter()
                        .filter(|(k, _)| c.cfg.keys.iter().any(|key| key.key() == k))
                        .collect();
                    let count = published_count(&ours).unwrap_or(0);
                    (serde_json::to_vec(&ours).unwrap_or_default(), count)
                }))
            }
        }
    }

    /// Whether this agent writes now; `Err` says why not.
    pub(crate) async fn may_write(&mut self) -> Result<(), NotNow> {
        let Destination::ConfigMap(c) = self else {
            return Ok(());
        };
        let Some(lease) = c.lease.as_mut() else {
            return Err(NotNow(
                "no way to reach the cluster for the writer's election".into(),
            ));
        };
        if lease.holding().await {
            Ok(())
        } else {
            Err(NotNow(format!(
                "another agent writes this ConfigMap (election {}, holder {})",
                lease.election(),
                lease.holder.as_deref().unwrap_or("unknown")
            )))
        }
    }

    /// Publish `content` (as rendered by [`Destination::render`]).
    pub(crate) async fn write(&mut self, content: &[u8]) -> Result<String, NotNow> {
        match self {
            Destination::File(path, _) => write_atomically(path, content)
                .map(|()| format!("wrote {}", path.display()))
                .map_err(|e| NotNow(format!("cannot write {}: {e}", path.display()))),
            Destination::ConfigMap(c) => {
                let data: ConfigMapData = serde_json::from_slice(content)
                    .map_err(|e| NotNow(format!("the rendered data does not decode: {e}")))?;
                let writer = c.writer().await?;
                match writer.write(&data).await {
                    Ok(WriteOutcome::Unchanged) => {
                        Ok(format!("ConfigMap {} already held it", writer.target()))
                    }
                    Ok(WriteOutcome::Written { resource_version }) => Ok(format!(
                        "wrote ConfigMap {} (resourceVersion {resource_version})",
                        writer.target()
                    )),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// For an agent that does not write: whether the destination holds `content` now (the
    /// writer published the same list), so this agent's hook runs too. Looks at most every
    /// [`LOOK_EVERY`].
    pub(crate) async fn holds(&mut self, content: &[u8]) -> bool {
        let Destination::ConfigMap(c) = self else {
            return false;
        };
        let now = std::time::Instant::now();
        if c.last_look
            .is_some_and(|t| now.duration_since(t) < LOOK_EVERY)
        {
            return false;
        }
        c.last_look = Some(now);
        let Ok(wanted) = serde_json::from_slice::<ConfigMapData>(content) else {
            return false;
        };
        let Ok(writer) = c.writer().await else {
            return false;
        };
        match writer.current().await {
            Ok(Some(data)) => wanted.iter().all(|(k, v)| data.get(k) == Some(v)),
            _ => false,
        }
    }

    /// The sink stops: a ConfigMap writer hands its election over.
    pub(crate) async fn finish(&mut self) {
        if let Destination::ConfigMap(c) = self
            && let Some(lease) = c.lease.as_mut()
        {
            lease.release().await;
        }
    }
}

impl ConfigMapDestination {
    async fn writer(&mut self) -> Result<&ConfigMapWriter, NotNow> {
        if self.writer.is_none() {
            let w = ConfigMapWriter::connect(
                &self.cfg.namespace,
                &self.cfg.configmap,
                self.cfg.kubeconfig.as_ref(),
            )
            .await?;
            self.writer = Some(w);
        }
        self.writer
            .as_ref()
            .ok_or_else(|| NotNow("no Kubernetes client".into()))
    }
}
