//! Import: taking over an allocation list kept elsewhere (the IPAM seed's database, a
//! spreadsheet) in one command, so the cluster holds all of it or none of it.
//!
//! Every row is checked against the state and against the rows before it before anything
//! changes; one conflict refuses the whole import and lists what conflicts. A row already
//! held exactly as given (same network, address and hostname) counts as existing, so
//! running the same import again, or retrying one whose answer was lost, changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::apply::Answer;
use super::{
    AllocateRequest, ImportConflict, ImportRow, IpamAnswer, IpamRefusal, MAX_IMPORT_CONFLICTS,
    to_u128,
};
use crate::State;
use crate::audit::{IpamAction, What};

/// What a row is, once checked.
enum Checked {
    New,
    Existing,
}

impl State {
    pub(super) fn import(&mut self, rows: &[ImportRow]) -> Answer {
        let mut conflicts = Vec::new();
        let mut total = 0u64;
        let mut checked = Vec::with_capacity(rows.len());
        let mut addresses: BTreeMap<(&str, IpAddr), u32> = BTreeMap::new();
        let mut hostnames: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        for (i, row) in (0u32..).zip(rows) {
            let earlier = addresses
                .insert((&row.network, row.address), i)
                .map(|earlier_row| IpamRefusal::RepeatedInImport {
                    field: "address".into(),
                    value: format!("{} in {}", row.address, row.network),
                    earlier_row,
                })
                .or_else(|| {
                    let h = row.hostname.as_deref()?;
                    hostnames.insert((&row.network, h), i).map(|earlier_row| {
                        IpamRefusal::RepeatedInImport {
                            field: "hostname".into(),
                            value: format!("{h} in {}", row.network),
                            earlier_row,
                        }
                    })
                });
            match earlier.map_or_else(|| self.check_row(row), Err) {
                Ok(c) => checked.push(c),
                Err(refusal) => {
                    total += 1;
                    if conflicts.len() < MAX_IMPORT_CONFLICTS {
                        conflicts.push(ImportConflict { row: i, refusal });
                    }
                }
            }
        }
        if total > 0 {
            return Err(IpamRefusal::ImportConflicts { conflicts, total });
        }
        let mut created = Vec::new();
        let mut existing = 0;
        for (row, c) in rows.iter().zip(checked) {
            if matches!(c, Checked::Existing) {
                existing += 1;
                continue;
            }
            if let Some(entry) = self.ipam.networks.get_mut(&row.network)
                && entry.free.take(to_u128(row.address))
            {
                entry.free_count = entry.free_count.saturating_sub(1);
            }
            let req = AllocateRequest {
                network: row.network.clone(),
                address: Some(row.address),
                hostname: row.hostname.clone(),
                owner: row.owner.clone(),
                labels: row.labels.clone(),
                request_id: None,
                ttl_ms: None,
                count: 1,
            };
            created.push(self.add_allocation(&req, row.address));
        }
        Ok(IpamAnswer::Imported { created, existing })
    }

    /// Whether `row` can be taken as the state stands.
    fn check_row(&self, row: &ImportRow) -> Result<Checked, IpamRefusal> {
        let Some(entry) = self.ipam.networks.get(&row.network) else {
            return Err(IpamRefusal::NetworkNotFound {
                id: row.network.clone(),
            });
        };
        if let Some(a) = self.ipam.allocation_at(&row.network, row.address)
            && a.hostname == row.hostname
        {
            return Ok(Checked::Existing);
        }
        if let Some(h) = &row.hostname
            && let Some(a) = self.ipam.allocation_of(&row.network, h)
        {
            return Err(IpamRefusal::HostnameTaken {
                hostname: h.clone(),
                network: row.network.clone(),
                address: a.address,
                holder: a.id.clone(),
            });
        }
        self.check_given(&row.network, &entry.network.cidr, row.address)?;
        Ok(Checked::New)
    }
}

/// The audit entry of an import: how many rows, into which networks, and what it made.
pub(super) fn audit_what(rows: &[ImportRow], answer: Option<&IpamAnswer>) -> What {
    let networks: BTreeSet<&str> = rows.iter().map(|r| r.network.as_str()).collect();
    let mut details = BTreeMap::from([
        ("rows".to_owned(), rows.len().to_string()),
        (
            "networks".to_owned(),
            networks.into_iter().collect::<Vec<_>>().join(","),
        ),
    ]);
    if let Some(IpamAnswer::Imported { created, existing }) = answer {
        details.insert("created".into(), created.len().to_string());
        details.insert("existing".into(), existing.to_string());
    }
    What::Ipam {
        action: IpamAction::Import,
        subject: "allocations".into(),
        details,
    }
}
