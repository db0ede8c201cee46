//! What IPAM answers become beyond their JSON: refusals as API errors with their holder,
//! usage or conflicts as fields of their own, and the counters of `/metrics`.

use axum::http::StatusCode;
use conclave_state::ipam::{Allocation, IpamAnswer, IpamRefusal};
use conclave_types::ipam::{AddressHolder, ImportConflict};

use super::usage_view;
use crate::ApiError;

/// The API error of a refusal, with what holds a contested address, a full network's
/// usage, or an import's conflicts as fields of their own.
pub(crate) fn refusal_error(refusal: IpamRefusal) -> ApiError {
    use IpamRefusal as R;
    let code = conclave_coord::ipam_code(&refusal);
    let (status, hint) = match &refusal {
        R::Invalid { .. } | R::AddressOutside { .. } | R::AddressNotUsable { .. } => {
            (StatusCode::BAD_REQUEST, "fix the request and send it again")
        }
        R::NetworkNotFound { .. } => (
            StatusCode::NOT_FOUND,
            "list networks with GET /api/v1/networks",
        ),
        R::AllocationNotFound { .. } => (
            StatusCode::NOT_FOUND,
            "list allocations with GET /api/v1/allocations",
        ),
        R::NetworkFull { .. } => (
            StatusCode::CONFLICT,
            "release addresses, widen the pools, or allocate in another network",
        ),
        R::AddressTaken { .. } | R::HostnameTaken { .. } => (
            StatusCode::CONFLICT,
            "ask for another address, or release the holder first",
        ),
        R::ImportConflicts { .. } => (
            StatusCode::CONFLICT,
            "nothing was imported: fix or drop the rows listed in conflicts and import again (rows already imported count as existing)",
        ),
        _ => (
            StatusCode::CONFLICT,
            "the cluster's IPAM state does not allow it; the message says why",
        ),
    };
    let mut error = ApiError::new(status, code, refusal.to_string(), hint);
    let extra = error.extra.get_or_insert_default();
    extra.holder = holder(&refusal);
    match refusal {
        R::NetworkFull { usage, .. } => extra.usage = Some(usage_view(usage)),
        R::ImportConflicts { conflicts, .. } => {
            extra.conflicts = Some(
                conflicts
                    .into_iter()
                    .map(|c| ImportConflict {
                        row: c.row.saturating_add(1),
                        code: conclave_coord::ipam_code(&c.refusal),
                        holder: holder(&c.refusal),
                        message: c.refusal.to_string(),
                    })
                    .collect(),
            );
        }
        _ => {}
    }
    error
}

fn holder(refusal: &IpamRefusal) -> Option<AddressHolder> {
    match refusal {
        IpamRefusal::AddressTaken {
            address,
            holder,
            hostname,
        } => Some(AddressHolder {
            allocation_id: holder.clone(),
            address: *address,
            hostname: hostname.clone(),
        }),
        IpamRefusal::HostnameTaken {
            hostname,
            address,
            holder,
            ..
        } => Some(AddressHolder {
            allocation_id: holder.clone(),
            address: *address,
            hostname: Some(hostname.clone()),
        }),
        _ => None,
    }
}

/// The IPAM counters of `/metrics`: what requests served by this node did, by network
/// (sum over nodes for the cluster; lease expiries are not requests and not counted).
pub(super) fn count(result: &Result<IpamAnswer, conclave_coord::CoordError>) {
    let counter = |name: &'static str, network: &str, n: u64| {
        if n > 0 {
            metrics::counter!(name, "network" => network.to_owned()).increment(n);
        }
    };
    // One counter update per network, not per address: a bulk request or an import makes
    // many allocations, in runs of one network.
    let allocations = |made: &[Allocation]| {
        for run in made.chunk_by(|a, b| a.network == b.network) {
            counter(
                "conclave_ipam_allocations_total",
                &run[0].network,
                run.len() as u64,
            );
        }
    };
    match result {
        Ok(IpamAnswer::Allocated {
            allocations: made,
            existing: false,
        }) => allocations(made),
        Ok(IpamAnswer::Imported { created, .. }) => allocations(created),
        Ok(IpamAnswer::Released(a)) => counter("conclave_ipam_releases_total", &a.network, 1),
        Ok(IpamAnswer::NetworkDeleted { id, released }) => {
            counter("conclave_ipam_releases_total", id, *released)
        }
        Err(conclave_coord::CoordError::Ipam(IpamRefusal::NetworkFull { id, .. })) => {
            counter("conclave_ipam_exhausted_total", id, 1)
        }
        _ => {}
    }
}
