//! What procinst stored of one request, for `procinst request show`:
//! read-only queries off the request path.

use std::time::Duration;

use serde::Serialize;

use super::{Client, StoreError};

/// The request_log row of a request.
#[derive(Debug, Clone, Serialize)]
pub struct StoredRequest {
    /// The reply exactly as published; not serialised (the command shows it
    /// decoded).
    #[serde(skip)]
    pub reply: Vec<u8>,
    /// When it was written, RFC 3339 UTC.
    pub written: String,
    /// When it leaves retention, RFC 3339 UTC.
    pub expires: String,
    /// True when retention is over and the row only waits for pruning: a
    /// repeat of the request would be processed anew.
    pub expired: bool,
    /// The lane it came through; `None` for a row written before lanes.
    pub lane: Option<String>,
}

/// A process row with its relation row.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedProcess {
    pub bk_process_id: i64,
    pub bk_process_name: String,
    pub bk_func_name: String,
    pub service_instance_id: i64,
    pub bk_biz_id: i64,
    pub bk_created_by: String,
    pub create_time: String,
    /// From `process_instance_relation`; `None` when the row is missing.
    pub bk_host_id: Option<i64>,
    pub process_template_id: Option<i64>,
}

/// An audit_log row of the request.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub action: String,
    pub resource_type: String,
    pub resource_id: i64,
    pub operator: String,
    pub operation_time: String,
}

/// The stored reply of `request_id`, whether or not still within retention.
pub async fn stored_request(
    client: &Client,
    request_id: &str,
    retention: Duration,
) -> Result<Option<StoredRequest>, StoreError> {
    let row = client
        .query_opt(
            include_str!("sql/request_history.sql"),
            &[&request_id, &retention.as_secs_f64()],
        )
        .await?;
    Ok(row.map(|row| StoredRequest {
        reply: row.get("reply"),
        written: row.get("written"),
        expires: row.get("expires"),
        expired: row.get("expired"),
        lane: row.get("lane"),
    }))
}

/// The processes with these ids, with their relation rows, by id.
pub async fn processes(client: &Client, ids: &[i64]) -> Result<Vec<CreatedProcess>, StoreError> {
    let rows = client
        .query(include_str!("sql/request_processes.sql"), &[&ids])
        .await?;
    Ok(rows
        .iter()
        .map(|row| CreatedProcess {
            bk_process_id: row.get("bk_process_id"),
            bk_process_name: row.get("bk_process_name"),
            bk_func_name: row.get("bk_func_name"),
            service_instance_id: row.get("service_instance_id"),
            bk_biz_id: row.get("bk_biz_id"),
            bk_created_by: row.get("bk_created_by"),
            create_time: row.get("created"),
            bk_host_id: row.get("bk_host_id"),
            process_template_id: row.get("process_template_id"),
        })
        .collect())
}

/// The audit rows `request_id` wrote on these service instances.
pub async fn audit(
    client: &Client,
    request_id: &str,
    service_instance_ids: &[i64],
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = client
        .query(
            include_str!("sql/request_audit.sql"),
            &[&request_id, &service_instance_ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| AuditEntry {
            id: row.get("id"),
            action: row.get("action"),
            resource_type: row.get("resource_type"),
            resource_id: row.get("resource_id"),
            operator: row.get("operator"),
            operation_time: row.get("at"),
        })
        .collect())
}
