//! IPAM shapes the API shows besides networks and allocations themselves: a network's
//! usage, what holds a contested address, and what an import did or why it did nothing.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// How a network's addresses are used (`usage` of a network; on 409 `network_full`).
/// Counts are JSON integers: a /64 holds 2^64 addresses, past a double's exact range, so a
/// client that needs exact large counts reads them as integers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkUsage {
    /// Addresses automatic allocation may use, before reservations.
    pub total: u128,
    pub allocated: u64,
    /// The gateway, reserved ranges and child networks' unallocated addresses.
    pub reserved: u128,
    pub free: u128,
    /// `allocated` of `total`, in percent, two decimals.
    pub utilisation_percent: f64,
}

/// The allocation holding a contested address or hostname (on 409 `address_taken` and
/// `conflict` for a hostname that holds another address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AddressHolder {
    pub allocation_id: String,
    #[schema(value_type = String, format = "ip")]
    pub address: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// Why one row of an import cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportConflict {
    /// 1-based: the row's position in the list sent (for CSV, not counting the header).
    pub row: u32,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<AddressHolder>,
}

/// `POST /api/v1/allocations/import` → 201 (or 200 when every row was there already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Rows that became allocations.
    pub created: u64,
    /// Rows already held exactly as given (a repeated import).
    pub existing: u64,
    /// Ids of the allocations made, in row order.
    pub allocation_ids: Vec<String>,
}
