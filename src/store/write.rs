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
    pub reply: &'a [u8],
    pub service_instance: &'a ServiceInstance,
    pub operator: &'a str,
    pub processes: Vec<NewProcess<'a>>,
    /// The audit detail as JSON text, serialised by the caller.
    pub audit_detail: &'a str,
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

pub(super) struct RequestLogColumns<'a> {
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

impl RequestLogColumns<'_> {
    /// The parameters in the order of `insert_request_log.sql`.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.ids, &self.meanings, &self.replies]
    }
}

pub(super) struct AuditColumns<'a> {
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
    /// The parameters in the order of `insert_audit_log.sql`.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 6] {
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
pub(super) struct RelationColumns<'a> {
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
    pub(super) fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    /// The parameters in the order of `insert_relations.sql`.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.id, &self.si, &self.host, &self.biz, &self.supplier]
    }
}
