use std::time::Duration;

use bytes::Bytes;
use tokio_postgres::types::ToSql;

use super::copy::{self, BinaryRows};
use super::{Client, ServiceInstance, StoreError};
use crate::domain::Process;

/// A process to insert, with the id allocated for it.
#[derive(Debug, Clone, Copy)]
pub struct NewProcess<'a> {
    pub id: i64,
    pub process: &'a Process,
}

/// A request whose rows are ready to be written, reply included.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    pub request_id: &'a str,
    /// A row past retention holds the request_id: delete it first.
    pub replaces_expired: bool,
    pub meaning: &'a [u8],
    pub reply: &'a [u8],
    pub service_instance: &'a ServiceInstance,
    pub operator: &'a str,
    pub processes: Vec<NewProcess<'a>>,
    /// The audit detail as JSON text, serialised by the caller.
    pub audit_detail: &'a str,
}

/// Allocates `n` process ids from the database sequence, ascending.
pub async fn allocate_ids(client: &Client, n: usize) -> Result<Vec<i64>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let statement = client
        .prepare_cached("SELECT nextval('process_id_seq') FROM generate_series(1, $1::int8)")
        .await?;
    let count = i64::try_from(n).unwrap_or(i64::MAX);
    let rows = client.query(&statement, &[&count]).await?;
    let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Writes a batch as one transaction in three round trips: BEGIN and the
/// small statements pipelined; the processes by binary COPY; COMMIT
/// pipelined behind the COPY's data.
///
/// Each request is all or nothing because the whole batch is: callers only
/// pass requests already checked against the database. When a concurrent
/// worker wins a race (a `request_id` stored meanwhile, or a process name
/// taken), a unique violation aborts the transaction, the server turns the
/// COMMIT into a rollback, and the caller decides the batch again with
/// fresh reads (see [`StoreError::is_unique_violation`]).
pub async fn write_batch(
    client: &Client,
    requests: &[NewRequest<'_>],
    retention: Duration,
) -> Result<(), StoreError> {
    if requests.is_empty() {
        return Ok(());
    }
    let (expire_sql, log_sql, relation_sql, audit_sql, copy_sql) = tokio::try_join!(
        client.prepare_cached(include_str!("sql/expire_request_log.sql")),
        client.prepare_cached(include_str!("sql/insert_request_log.sql")),
        client.prepare_cached(include_str!("sql/insert_relations.sql")),
        client.prepare_cached(include_str!("sql/insert_audit_log.sql")),
        client.prepare_cached(include_str!("sql/copy_processes.sql")),
    )?;
    let log = RequestLogColumns::from(requests);
    let relations = RelationColumns::from(requests);
    let audit = AuditColumns::from(requests);
    let processes = process_rows(requests);
    let retention_s = retention.as_secs_f64();
    let expired: Vec<&str> = requests
        .iter()
        .filter(|r| r.replaces_expired)
        .map(|r| r.request_id)
        .collect();
    let expire_params: [&(dyn ToSql + Sync); 2] = [&expired, &retention_s];
    let log_params: [&(dyn ToSql + Sync); 3] = [&log.ids, &log.meanings, &log.replies];
    let relation_params = relations.params();
    let audit_params = audit.params();
    let written = async {
        // All five are in flight at once (the delete only when a row past
        // retention is replaced); the server answers them in order.
        // Once one fails, the later ones fail with "current transaction is
        // aborted" (25P02), and `join!` may see those first, so the first
        // error is taken in statement order: a lost race must read as a
        // unique violation.
        let (begin, expire, log, relation, audit) = tokio::join!(
            client.batch_execute("BEGIN"),
            async {
                if expired.is_empty() {
                    return Ok(0);
                }
                client.execute(&expire_sql, &expire_params).await
            },
            client.execute(&log_sql, &log_params),
            client.execute(&relation_sql, &relation_params),
            client.execute(&audit_sql, &audit_params),
        );
        begin
            .and(expire.map(drop))
            .and(log.map(drop))
            .and(relation.map(drop))
            .and(audit.map(drop))
            .map_err(StoreError::from)?;
        // The COPY starts only in a transaction that has not failed (see
        // `copy_in`); COMMIT follows its data without waiting.
        let (copied, commit) = tokio::join!(
            copy::copy_in(client, &copy_sql, processes),
            client.batch_execute("COMMIT"),
        );
        copied?;
        commit.map_err(StoreError::from)
    };
    if let Err(e) = written.await {
        // Normally the server already rolled back; this makes sure no
        // transaction stays open on a connection going back to the pool
        // (one that a COPY could not start on is not put back: see
        // `StoreError::spoils_connection`).
        if !e.spoils_connection() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        return Err(e);
    }
    Ok(())
}

/// The batch's processes as a binary COPY stream, in the column order of
/// `copy_processes.sql`.
fn process_rows(requests: &[NewRequest<'_>]) -> Bytes {
    let (count, text): (usize, usize) = requests
        .iter()
        .flat_map(|r| &r.processes)
        .fold((0, 0), |(n, bytes), p| {
            (n + 1, bytes + p.process.text_len())
        });
    // 23 fields of 4 length bytes, 8-byte ints, and the text.
    let mut rows = BinaryRows::with_capacity(count * (2 + 23 * 4 + 4 * 8 + 4 * 4 + 1) + text);
    for request in requests {
        let si = request.service_instance;
        for NewProcess { id, process: p } in &request.processes {
            rows.row(23)
                .int8(*id)
                .int8(si.bk_biz_id)
                .text(&si.bk_supplier_account)
                .int8(si.id);
            for text in p.strings() {
                rows.text(text);
            }
            for int in [p.proc_num, p.priority, p.timeout, p.bk_start_check_secs] {
                rows.int4(int);
            }
            rows.bool(p.auto_start)
                .jsonb(p.bind_info.as_ref().map(|b| b.as_json().get()))
                .text(request.operator);
        }
    }
    rows.finish()
}

struct RequestLogColumns<'a> {
    ids: Vec<&'a str>,
    meanings: Vec<&'a [u8]>,
    replies: Vec<&'a [u8]>,
}

impl<'a> From<&'a [NewRequest<'a>]> for RequestLogColumns<'a> {
    fn from(requests: &'a [NewRequest<'a>]) -> Self {
        Self {
            ids: requests.iter().map(|r| r.request_id).collect(),
            meanings: requests.iter().map(|r| r.meaning).collect(),
            replies: requests.iter().map(|r| r.reply).collect(),
        }
    }
}

struct AuditColumns<'a> {
    request_ids: Vec<&'a str>,
    service_instances: Vec<i64>,
    businesses: Vec<i64>,
    suppliers: Vec<&'a str>,
    operators: Vec<&'a str>,
    details: Vec<&'a str>,
}

impl<'a> From<&'a [NewRequest<'a>]> for AuditColumns<'a> {
    fn from(requests: &'a [NewRequest<'a>]) -> Self {
        Self {
            request_ids: requests.iter().map(|r| r.request_id).collect(),
            service_instances: requests.iter().map(|r| r.service_instance.id).collect(),
            businesses: requests
                .iter()
                .map(|r| r.service_instance.bk_biz_id)
                .collect(),
            suppliers: requests
                .iter()
                .map(|r| r.service_instance.bk_supplier_account.as_str())
                .collect(),
            operators: requests.iter().map(|r| r.operator).collect(),
            details: requests.iter().map(|r| r.audit_detail).collect(),
        }
    }
}

impl AuditColumns<'_> {
    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.request_ids,
            &self.service_instances,
            &self.businesses,
            &self.suppliers,
            &self.operators,
            &self.details,
        ]
    }
}

/// The batch's instance relations as parallel arrays, one element per
/// process, for UNNEST.
#[derive(Default)]
struct RelationColumns<'a> {
    id: Vec<i64>,
    si: Vec<i64>,
    host: Vec<i64>,
    biz: Vec<i64>,
    supplier: Vec<&'a str>,
}

impl<'a> From<&'a [NewRequest<'a>]> for RelationColumns<'a> {
    fn from(requests: &'a [NewRequest<'a>]) -> Self {
        let mut c = RelationColumns::default();
        for request in requests {
            let si = request.service_instance;
            for p in &request.processes {
                c.id.push(p.id);
                c.si.push(si.id);
                c.host.push(si.bk_host_id);
                c.biz.push(si.bk_biz_id);
                c.supplier.push(&si.bk_supplier_account);
            }
        }
        c
    }
}

impl RelationColumns<'_> {
    /// The parameters in the order of `insert_relations.sql`.
    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.id, &self.si, &self.host, &self.biz, &self.supplier]
    }
}
