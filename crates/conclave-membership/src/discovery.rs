//! Finding members from `--join` entries: `host:port` (IP, or a name resolved through the
//! system resolver — /etc/hosts, A and AAAA records), or `srv:NAME` (a DNS SRV lookup, each
//! target resolved to its addresses, with the port from the record), so a Kubernetes
//! headless service or a Compose service name is enough. Lookups are repeated by the callers
//! until members answer: a name may resolve to nothing while a cluster starts.

use std::net::SocketAddr;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

/// The prefix of a `--join` entry that names an SRV record.
pub const SRV_PREFIX: &str = "srv:";

/// DNS could not be set up; kept (as its message) so every later SRV lookup reports it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NoResolver(String);

/// Why a `--join` entry gave no addresses this time.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    NoResolver(#[from] NoResolver),
    #[error("SRV {name}: {reason}")]
    Srv { name: String, reason: String },
    #[error("{seed}: {source}")]
    Lookup {
        seed: String,
        source: std::io::Error,
    },
}

pub struct Discovery {
    /// Built on first SRV use (reading /etc/resolv.conf is only needed then).
    dns_server: Option<SocketAddr>,
    resolver: tokio::sync::OnceCell<Result<TokioResolver, NoResolver>>,
}

impl Discovery {
    /// `dns_server`: where SRV queries go; `None` uses /etc/resolv.conf.
    pub fn new(dns_server: Option<SocketAddr>) -> Self {
        Self {
            dns_server,
            resolver: tokio::sync::OnceCell::new(),
        }
    }

    pub fn is_srv(seed: &str) -> bool {
        seed.starts_with(SRV_PREFIX)
    }

    async fn resolver(&self) -> Result<&TokioResolver, NoResolver> {
        let built = self
            .resolver
            .get_or_init(|| async {
                match self.dns_server {
                    Some(addr) => {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = addr.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = addr.port();
                        let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                        Resolver::builder_with_config(
                            ResolverConfig::from_name_servers(vec![ns]),
                            TokioRuntimeProvider::default(),
                        )
                        .build()
                        .map_err(|e| NoResolver(format!("cannot set up DNS for {addr}: {e}")))
                    }
                    None => Resolver::builder_tokio()
                        .and_then(|b| b.build())
                        .map_err(|e| {
                            NoResolver(format!("cannot read the system DNS configuration: {e}"))
                        }),
                }
            })
            .await;
        built.as_ref().map_err(Clone::clone)
    }

    /// The addresses one `--join` entry stands for right now (possibly none).
    pub async fn expand(&self, seed: &str) -> Result<Vec<SocketAddr>, DiscoveryError> {
        if let Some(name) = seed.strip_prefix(SRV_PREFIX) {
            let resolver = self.resolver().await?;
            let lookup = resolver
                .srv_lookup(name)
                .await
                .map_err(|e| DiscoveryError::Srv {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })?;
            let mut out = Vec::new();
            for record in lookup.answers() {
                let RData::SRV(srv) = &record.data else {
                    continue;
                };
                let target = srv.target.to_utf8();
                match resolver.lookup_ip(target.as_str()).await {
                    Ok(ips) => out.extend(ips.iter().map(|ip| SocketAddr::new(ip, srv.port))),
                    Err(e) => tracing::debug!(%target, error = %e, "SRV target does not resolve"),
                }
            }
            out.sort();
            out.dedup();
            return Ok(out);
        }
        if let Ok(addr) = seed.parse::<SocketAddr>() {
            return Ok(vec![addr]);
        }
        tokio::net::lookup_host(seed)
            .await
            .map(Iterator::collect)
            .map_err(|source| DiscoveryError::Lookup {
                seed: seed.to_owned(),
                source,
            })
    }

    /// Every entry expanded, as `host:port` strings (entries that fail are skipped).
    pub async fn expand_all(&self, seeds: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for s in seeds {
            if let Ok(addrs) = self.expand(s).await {
                out.extend(addrs.iter().map(ToString::to_string));
            }
        }
        out
    }
}
