//! `POST /api/v1/allocations/import`: take over an allocation list kept elsewhere, as JSON
//! or CSV. The state machine takes every row or none ([`IpamCommand::Import`]); this
//! handler only parses, so a malformed row is a 400 naming its row and field, and a row
//! that conflicts with the cluster's state is a 409 listing every conflicting row.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use conclave_state::ipam::{ImportRow, IpamAnswer, IpamCommand, MAX_IMPORT};
use conclave_types::ErrorCode;
use conclave_types::ipam::ImportReport;
use serde::Deserialize;

use super::{bad, parse_addr, propose, unexpected};
use crate::audit::Acting;
use crate::kv::read_body;
use crate::{ApiError, Ctx};

const CSV_HINT: &str = "send CSV with a header row naming network (or network_id), address (or ip) and optionally hostname and owner, e.g. \"network,address,hostname\\nlan,10.0.0.5,db-1\"";
const JSON_HINT: &str = r#"send JSON like {"allocations": [{"network_id": "lan", "address": "10.0.0.5", "hostname": "db-1"}]}"#;

/// The JSON body as the document shows it (a bare list of rows is taken too). Each row is
/// parsed on its own (`from_json`) so that an error names its row; this type describes them.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ImportBody {
    allocations: Vec<RowBody>,
}

/// One row as JSON.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RowBody {
    #[serde(alias = "network")]
    network_id: String,
    #[serde(alias = "ip", alias = "ip_address")]
    address: String,
    hostname: Option<String>,
    owner: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Row `row` (counted from 1) as the state machine takes it, whichever format it came in:
/// the address parsed (an error names the row), empty optional fields left out.
fn import_row(
    row: usize,
    network: String,
    address: &str,
    (hostname, owner): (Option<String>, Option<String>),
    labels: BTreeMap<String, String>,
) -> Result<ImportRow, ApiError> {
    let address = parse_addr("address", address).map_err(|e| ApiError {
        message: format!("row {row}: {}", e.message),
        ..e
    })?;
    Ok(ImportRow {
        network,
        address,
        hostname: hostname.filter(|h| !h.is_empty()),
        owner: owner.filter(|o| !o.is_empty()),
        labels,
    })
}

/// `{"allocations": [...]}`, or the list alone; each row parsed on its own so an error
/// names its row.
fn from_json(bytes: &[u8]) -> Result<Vec<ImportRow>, ApiError> {
    let body: serde_json::Value = crate::error::parse_json_value(bytes, "request", JSON_HINT)?;
    let rows = match body {
        serde_json::Value::Array(rows) => rows,
        serde_json::Value::Object(mut o) => match o.remove("allocations") {
            Some(serde_json::Value::Array(rows)) if o.is_empty() => rows,
            _ => {
                return Err(bad(
                    "request",
                    "the body is not {\"allocations\": [...]}".into(),
                    JSON_HINT,
                ));
            }
        },
        _ => {
            return Err(bad(
                "request",
                "the body is neither a list nor {\"allocations\": [...]}".into(),
                JSON_HINT,
            ));
        }
    };
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| {
            let r: RowBody = serde_json::from_value(row)
                .map_err(|e| bad(&format!("row {}", i + 1), e.to_string(), JSON_HINT))?;
            import_row(
                i + 1,
                r.network_id,
                &r.address,
                (r.hostname, r.owner),
                r.labels,
            )
        })
        .collect()
}

/// Which column holds what, from the header row.
struct Columns {
    network: usize,
    address: usize,
    hostname: Option<usize>,
    owner: Option<usize>,
}

/// The names each column may have in a header (the seed's and conclave's spellings).
const NETWORK_COLUMN: &[&str] = &["network", "network_id"];
const ADDRESS_COLUMN: &[&str] = &["address", "ip", "ip_address"];
const HOSTNAME_COLUMN: &[&str] = &["hostname"];
const OWNER_COLUMN: &[&str] = &["owner"];

fn columns(header: &csv::StringRecord) -> Result<Columns, ApiError> {
    let named = |h: &str, names: &[&str]| names.contains(&h.trim().to_ascii_lowercase().as_str());
    let find = |names: &[&str]| header.iter().position(|h| named(h, names));
    if let Some(unknown) = header.iter().find(|h| {
        ![
            NETWORK_COLUMN,
            ADDRESS_COLUMN,
            HOSTNAME_COLUMN,
            OWNER_COLUMN,
        ]
        .iter()
        .any(|names| named(h, names))
    }) {
        return Err(bad(
            "header",
            format!("unknown column {unknown:?}"),
            CSV_HINT,
        ));
    }
    let need = |names: &[&str], what: &str| {
        find(names).ok_or_else(|| bad("header", format!("there is no {what} column"), CSV_HINT))
    };
    Ok(Columns {
        network: need(NETWORK_COLUMN, "network")?,
        address: need(ADDRESS_COLUMN, "address")?,
        hostname: find(HOSTNAME_COLUMN),
        owner: find(OWNER_COLUMN),
    })
}

fn from_csv(bytes: &[u8]) -> Result<Vec<ImportRow>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| bad("header", e.to_string(), CSV_HINT))?
        .clone();
    let cols = columns(&header)?;
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(&format!("row {}", i + 1), e.to_string(), CSV_HINT))?;
        let cell = |c: Option<usize>| {
            c.and_then(|c| record.get(c))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let network = cell(Some(cols.network)).ok_or_else(|| {
            bad(
                &format!("row {}", i + 1),
                "the network is empty".into(),
                CSV_HINT,
            )
        })?;
        rows.push(import_row(
            i + 1,
            network,
            record.get(cols.address).unwrap_or_default(),
            (cell(cols.hostname), cell(cols.owner)),
            BTreeMap::new(),
        )?);
    }
    Ok(rows)
}

/// Import allocations kept elsewhere, all or none: 201 with what was made, 200 when every
/// row was there already, 409 with `conflicts` (and nothing imported) when any row conflicts.
#[utoipa::path(post, path = "/v1/ipam/allocations/import", tag = "ipam",
    request_body(content(
        (ImportBody = "application/json"),
        (String = "text/csv")),
        description = "JSON rows, or CSV with a header row naming network, address and optionally hostname, owner"),
    responses(
        (status = 201, body = ImportReport, description = "imported"),
        (status = 200, body = ImportReport, description = "every row was there already"),
        (status = 409, body = conclave_types::ErrorBody, description = "rows conflict with the cluster's allocations (listed in `conflicts`); nothing was imported"),
        (status = 413, body = conclave_types::ErrorBody, description = "too many rows, or the body is above the value limit"),
    ))]
pub(crate) async fn import(
    State(ctx): State<Ctx>,
    acting: Acting,
    headers: HeaderMap,
    req: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&ctx, &headers, req).await?;
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("csv"));
    let rows = if is_csv {
        from_csv(&bytes)?
    } else {
        from_json(&bytes)?
    };
    if rows.is_empty() {
        return Err(bad("allocations", "the list is empty".into(), JSON_HINT));
    }
    if rows.len() > MAX_IMPORT {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!(
                "{} rows, above the limit of {MAX_IMPORT} per import",
                rows.len()
            ),
            "split the list into parts (`conclave ipam import` does); each part is taken whole or not at all, and a part imported twice changes nothing",
        ));
    }
    match propose(&ctx, acting, IpamCommand::Import { rows }).await? {
        IpamAnswer::Imported { created, existing } => {
            let status = if created.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let report = ImportReport {
                created: created.len() as u64,
                existing,
                allocation_ids: created.into_iter().map(|a| a.id).collect(),
            };
            Ok((status, Json(report)).into_response())
        }
        other => Err(unexpected(other)),
    }
}
