//! The rows a round writes, as the statements of `round` take them.

use bytes::Bytes;
use tokio_postgres::types::ToSql;

use super::ServiceInstance;
use super::copy::BinaryRows;
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
    pub reply: Vec<u8>,
    /// The lane it came through (`interactive`, `bulk`).
    pub lane: &'a str,
    pub service_instance: &'a ServiceInstance,
    pub operator: &'a str,
    pub processes: Vec<NewProcess<'a>>,
    /// The audit detail as JSON text, serialised by the caller.
    pub audit_detail: String,
}

/// The batch's processes as a binary COPY stream, in the column order of
/// `copy_processes.sql`.
pub(super) fn process_rows(requests: &[NewRequest<'_>]) -> Bytes {
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

/// The batch's rows besides its processes, as the parallel arrays of
/// `insert_rows.sql`: one element per request for the request log and the
/// audit rows, one per process for the instance relations.
#[derive(Default)]
pub(super) struct RowColumns<'a> {
    request_ids: Vec<&'a str>,
    meanings: Vec<&'a [u8]>,
    replies: Vec<&'a [u8]>,
    process_ids: Vec<i64>,
    process_instances: Vec<i64>,
    process_hosts: Vec<i64>,
    process_businesses: Vec<i64>,
    process_suppliers: Vec<&'a str>,
    instances: Vec<i64>,
    businesses: Vec<i64>,
    suppliers: Vec<&'a str>,
    operators: Vec<&'a str>,
    details: Vec<&'a str>,
    lanes: Vec<&'a str>,
}

impl<'a> From<&'a [NewRequest<'a>]> for RowColumns<'a> {
    fn from(requests: &'a [NewRequest<'a>]) -> Self {
        let mut c = RowColumns::default();
        for r in requests {
            let si = r.service_instance;
            c.request_ids.push(r.request_id);
            c.meanings.push(r.meaning);
            c.replies.push(&r.reply);
            for p in &r.processes {
                c.process_ids.push(p.id);
                c.process_instances.push(si.id);
                c.process_hosts.push(si.bk_host_id);
                c.process_businesses.push(si.bk_biz_id);
                c.process_suppliers.push(&si.bk_supplier_account);
            }
            c.instances.push(si.id);
            c.businesses.push(si.bk_biz_id);
            c.suppliers.push(&si.bk_supplier_account);
            c.operators.push(r.operator);
            c.details.push(&r.audit_detail);
            c.lanes.push(r.lane);
        }
        c
    }
}

impl RowColumns<'_> {
    /// The parameters in the order of `insert_rows.sql`.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 14] {
        [
            &self.request_ids,
            &self.meanings,
            &self.replies,
            &self.process_ids,
            &self.process_instances,
            &self.process_hosts,
            &self.process_businesses,
            &self.process_suppliers,
            &self.instances,
            &self.businesses,
            &self.suppliers,
            &self.operators,
            &self.details,
            &self.lanes,
        ]
    }
}
