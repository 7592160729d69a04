use std::time::Duration;

use serde_json::value::RawValue;
use tokio_postgres::types::{Json, ToSql};

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

/// Writes a batch as one transaction sent in a single round trip: BEGIN,
/// the statements and COMMIT are pipelined without waiting in between.
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
    let (expire_sql, log_sql, process_sql, audit_sql) = tokio::try_join!(
        client.prepare_cached(include_str!("sql/expire_request_log.sql")),
        client.prepare_cached(include_str!("sql/insert_request_log.sql")),
        client.prepare_cached(include_str!("sql/insert_processes.sql")),
        client.prepare_cached(include_str!("sql/insert_audit_log.sql")),
    )?;
    let log = RequestLogColumns::from(requests);
    let processes = ProcessColumns::from(requests);
    let audit = AuditColumns::from(requests);
    let retention_s = retention.as_secs_f64();
    let expire_params: [&(dyn ToSql + Sync); 2] = [&log.ids, &retention_s];
    let log_params: [&(dyn ToSql + Sync); 3] = [&log.ids, &log.meanings, &log.replies];
    let process_params = processes.params();
    let audit_params = audit.params();
    // All six are in flight at once; the server answers them in order. Once
    // one fails, the later ones fail with "current transaction is aborted"
    // (25P02), and `join!` may see those first, so the first error is taken
    // in statement order: a lost race must read as a unique violation.
    let (begin, expire, log, process, audit, commit) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.execute(&expire_sql, &expire_params),
        client.execute(&log_sql, &log_params),
        client.execute(&process_sql, &process_params),
        client.execute(&audit_sql, &audit_params),
        client.batch_execute("COMMIT"),
    );
    let written = begin
        .and(expire.map(drop))
        .and(log.map(drop))
        .and(process.map(drop))
        .and(audit.map(drop))
        .and(commit);
    if let Err(e) = written {
        // Normally the server already rolled back; this makes sure no
        // transaction stays open on a connection going back to the pool.
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(e.into());
    }
    Ok(())
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

/// The batch's processes as parallel arrays, one per column, for UNNEST.
#[derive(Default)]
struct ProcessColumns<'a> {
    id: Vec<i64>,
    biz: Vec<i64>,
    supplier: Vec<&'a str>,
    si: Vec<i64>,
    host: Vec<i64>,
    text: [Vec<&'a str>; 12],
    ints: [Vec<Option<i32>>; 4],
    auto_start: Vec<bool>,
    /// Sent as jsonb text, verbatim.
    bind_info: Vec<Option<Json<&'a RawValue>>>,
    created_by: Vec<&'a str>,
}

impl<'a> From<&'a [NewRequest<'a>]> for ProcessColumns<'a> {
    fn from(requests: &'a [NewRequest<'a>]) -> Self {
        let mut c = ProcessColumns::default();
        for request in requests {
            let si = request.service_instance;
            for NewProcess { id, process: p } in &request.processes {
                c.id.push(*id);
                c.biz.push(si.bk_biz_id);
                c.supplier.push(&si.bk_supplier_account);
                c.si.push(si.id);
                c.host.push(si.bk_host_id);
                let texts = [
                    &p.bk_process_name,
                    &p.bk_func_name,
                    &p.bk_start_param_regex,
                    &p.description,
                    &p.user,
                    &p.work_path,
                    &p.pid_file,
                    &p.start_cmd,
                    &p.stop_cmd,
                    &p.restart_cmd,
                    &p.reload_cmd,
                    &p.face_stop_cmd,
                ];
                for (column, value) in c.text.iter_mut().zip(texts) {
                    column.push(value.as_str());
                }
                let ints = [p.proc_num, p.priority, p.timeout, p.bk_start_check_secs];
                for (column, value) in c.ints.iter_mut().zip(ints) {
                    column.push(value);
                }
                c.auto_start.push(p.auto_start);
                c.bind_info
                    .push(p.bind_info.as_ref().map(|b| Json(b.as_json())));
                c.created_by.push(request.operator);
            }
        }
        c
    }
}

impl ProcessColumns<'_> {
    /// The parameters in the order of `insert_processes.sql`.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&self.id, &self.biz, &self.supplier, &self.si, &self.host];
        params.extend(self.text.iter().map(|c| c as &(dyn ToSql + Sync)));
        params.extend(self.ints.iter().map(|c| c as &(dyn ToSql + Sync)));
        params.extend([
            &self.auto_start as &(dyn ToSql + Sync),
            &self.bind_info,
            &self.created_by,
        ]);
        params
    }
}
