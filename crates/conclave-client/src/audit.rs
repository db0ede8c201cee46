//! The audit log (`/v1/audit`).

use conclave_types::audit::{AuditRecord, HEADER_AUDIT_CURSOR};

use crate::{Client, ClientError, SseReader};

/// Which entries to read: every field optional, as `GET /v1/audit` takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// `membership`, `leadership`, `config`, `acl`, `election`, `kv`, `snapshot`, `recovery`.
    pub kind: Option<String>,
    /// `token:<accessor>`, `node:<id>`, `anonymous`, `agent`, `operator`, or a bare accessor
    /// or node id.
    pub actor: Option<String>,
    /// An RFC 3339 time or a duration back from now (`15m`).
    pub since: Option<String>,
}

impl AuditFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("kind", &self.kind),
            ("actor", &self.actor),
            ("since", &self.since),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.clone().map(|v| (name, v)))
        .collect()
    }
}

impl Client {
    /// One page of entries, newest first, older than `cursor` when given; the cursor of the
    /// next page when more match.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<(Vec<AuditRecord>, Option<u64>), ClientError> {
        let mut query = filter.query();
        query.push(("limit", limit.to_string()));
        if let Some(c) = cursor {
            query.push(("cursor", c.to_string()));
        }
        let resp = self
            .send(self.http.get(self.url("/v1/audit")).query(&query))
            .await?;
        let next = resp
            .headers()
            .get(HEADER_AUDIT_CURSOR)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok((self.json(resp).await?, next))
    }

    /// New entries as they apply (`entry` events whose data is an [`AuditRecord`]), after
    /// sequence number `after` when given (else only entries from now on). `since` is not
    /// taken here: a follower starts from a position, not a time.
    pub async fn audit_watch(
        &self,
        filter: &AuditFilter,
        after: Option<u64>,
    ) -> Result<SseReader, ClientError> {
        let mut query = filter.query();
        query.retain(|(name, _)| *name != "since");
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        self.events("/v1/audit/watch", &query, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_set_filters_are_sent() {
        assert!(AuditFilter::default().query().is_empty());
        let f = AuditFilter {
            kind: Some("acl".into()),
            since: Some("15m".into()),
            ..Default::default()
        };
        assert_eq!(
            f.query(),
            vec![("kind", "acl".to_string()), ("since", "15m".to_string())]
        );
    }
}
