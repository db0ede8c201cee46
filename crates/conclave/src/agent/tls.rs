//! The agent's HTTPS material: loaded (and checked) at start, followed afterwards. A change
//! to any of the files, or a reload of the agent (SIGHUP, `conclave reload`), reloads them; a reload that fails keeps the files that
//! were served and says why in the log, `/v1/status` (`tls.reload_error`) and
//! `conclave_tls_reloads_total{outcome="failed"}`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use conclave_tls::{Material, Reloadable};
use conclave_types::TlsStatus;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;

/// The agent's HTTPS, or its absence: what the server, the status page and the agent's own
/// client side (a client agent forwarding) need of it.
#[derive(Clone, Default)]
pub(crate) struct Https(Option<Arc<Reloadable>>);

impl Https {
    /// Load `config`'s TLS files (none: plain HTTP); an error names the file.
    pub(crate) fn load(config: &AgentConfig) -> anyhow::Result<Self> {
        load(config).map(Self)
    }

    /// Follow the files until `shutdown`.
    pub(crate) fn follow(
        &self,
        config: &AgentConfig,
        shutdown: &CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> anyhow::Result<()> {
        if let Some(tls) = &self.0 {
            tasks.spawn(follow(
                tls.clone(),
                config.tls.reload_interval,
                shutdown.clone(),
            )?);
        }
        Ok(())
    }

    /// Read the files again now (a reload of the agent); `None` without TLS, else what
    /// happened, for the reload's report.
    pub(crate) async fn reload_files(&self) -> Option<String> {
        let tls = self.0.clone()?;
        let result = tokio::task::spawn_blocking(move || tls.reload()).await;
        Some(match result {
            Ok(result) => {
                log_reload(&result);
                match result {
                    Ok(m) => format!(
                        "serving {} (sha256 {})",
                        m.info.subject,
                        &m.info.sha256[..m.info.sha256.len().min(16)]
                    ),
                    Err(e) => format!("failed, still serving the previous files: {e}"),
                }
            }
            Err(e) => format!("failed: {e}"),
        })
    }

    pub(crate) fn server(&self) -> Option<Arc<Reloadable>> {
        self.0.clone()
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.0.is_some() { "https" } else { "http" }
    }

    pub(crate) fn status_fn(&self) -> Option<conclave_api::TlsStatusFn> {
        let tls = self.0.clone()?;
        Some(Arc::new(move || status(&tls)))
    }

    /// How this agent reaches other agents' APIs: presenting its own certificate and
    /// trusting its CA, as they are at each connection.
    pub(crate) fn client_config(&self) -> anyhow::Result<Option<rustls::ClientConfig>> {
        self.0
            .as_ref()
            .map(|tls| tls.client_config())
            .transpose()
            .context("an agent reaches other agents over HTTPS")
    }

    /// The HTTP client for other agents' APIs (forwarding, cluster-wide keyring changes).
    pub(crate) fn peer_http(&self) -> anyhow::Result<conclave_api::gossip_keys::PeerHttp> {
        let mut builder =
            reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(2));
        if let Some(tls) = self.client_config()? {
            builder = builder.use_preconfigured_tls(tls);
        }
        Ok(conclave_api::gossip_keys::PeerHttp {
            http: builder.build().context("HTTP client")?,
            scheme: self.scheme(),
        })
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn record(material: &Material) {
    metrics::gauge!("conclave_tls_certificate_expiry_timestamp_seconds")
        .set(material.info.not_after as f64);
}

/// Load `config`'s TLS files, or `None` when it has none; an error names the file.
fn load(config: &AgentConfig) -> anyhow::Result<Option<Arc<Reloadable>>> {
    let Some(files) = config.tls.files()? else {
        return Ok(None);
    };
    let tls = Reloadable::load(files).context("cannot serve HTTPS")?;
    let material = tls.current();
    tracing::info!(
        subject = %material.info.subject,
        not_after = material.info.not_after,
        verify_incoming = tls.files().verify_incoming,
        "serving HTTPS"
    );
    Ok(Some(Arc::new(tls)))
}

/// The task that reloads `tls` whenever its files change (checked every `interval`), until
/// `stop`. A reload of the agent reads them at once ([`Https::reload_files`]).
fn follow(
    tls: Arc<Reloadable>,
    interval: Duration,
    stop: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    // The metrics recorder is installed after the files are first loaded.
    metrics::describe_gauge!(
        "conclave_tls_certificate_expiry_timestamp_seconds",
        "When the certificate the HTTP API serves expires (Unix seconds)."
    );
    metrics::describe_counter!(
        "conclave_tls_reloads_total",
        "TLS file reloads, by outcome (ok, failed: the previous files stay in use)."
    );
    metrics::describe_counter!(
        "conclave_tls_handshake_failures_total",
        "HTTPS connections whose TLS handshake failed or timed out."
    );
    record(&tls.current());
    Ok(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let tls = tls.clone();
                    match tokio::task::spawn_blocking(move || tls.reload_if_changed()).await {
                        Ok(Some(r)) => r,
                        _ => continue,
                    }
                }
            };
            log_reload(&result);
        }
    })
}

/// Log and count one reload's outcome.
fn log_reload(result: &Result<Arc<Material>, conclave_tls::TlsError>) {
    match result {
        Ok(material) => {
            record(material);
            metrics::counter!("conclave_tls_reloads_total", "outcome" => "ok").increment(1);
            tracing::info!(
                subject = %material.info.subject,
                not_after = material.info.not_after,
                sha256 = %material.info.sha256,
                "TLS files reloaded; new connections use them"
            );
        }
        Err(e) => {
            metrics::counter!("conclave_tls_reloads_total", "outcome" => "failed").increment(1);
            tracing::error!(
                error = %e,
                "reloading the TLS files failed; still serving the previous ones"
            );
        }
    }
}

/// What `/v1/status` shows of `tls`.
fn status(tls: &Reloadable) -> TlsStatus {
    let material = tls.current();
    let info = &material.info;
    TlsStatus {
        cert_file: tls.files().cert_file.display().to_string(),
        subject: info.subject.clone(),
        dns_names: info.dns_names.clone(),
        ip_addresses: info.ip_addresses.iter().map(|ip| ip.to_string()).collect(),
        not_before: info.not_before,
        not_after: info.not_after,
        expires_in_seconds: info.not_after - unix(SystemTime::now()),
        sha256: info.sha256.clone(),
        verify_incoming: tls.files().verify_incoming,
        loaded_at: unix(material.loaded_at),
        reload_error: tls.last_error(),
    }
}
