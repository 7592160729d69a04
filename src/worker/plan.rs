//! Deciding a round of requests from what the database said, without I/O.
//!
//! The check order of contract section 4 lives here: (2) stored reply, then
//! the request's own checks (3, 4), then the service instance (5), then the
//! processes (6) and uniqueness (7). Requests are decided in delivery order,
//! so when two of them collide the earlier one wins.

use std::collections::HashMap;

use serde::Serialize;

use crate::domain::{self, Code, Decoded, Process, Rejection, Request, Taken, reply};
use crate::store::{Lookup, ServiceInstance};

/// What the worker will answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A stored reply, re-sent byte for byte.
    Stored(Vec<u8>),
    /// A final error reply; nothing is written.
    Rejected { code: Code, body: Vec<u8> },
    /// Rows to write; the reply is built once ids are allocated.
    Create,
}

/// One request of a round: its decoded message and its checked form.
pub struct Candidate<'a> {
    pub decoded: &'a Decoded,
    pub checked: &'a Result<Request, Rejection>,
}

/// Decides every request of a round, in order.
pub fn plan(candidates: &[Candidate<'_>], lookup: &Lookup) -> Vec<Answer> {
    let mut taken: HashMap<i64, Taken> = HashMap::new();
    for row in &lookup.existing {
        taken
            .entry(row.service_instance_id)
            .or_default()
            .insert_existing(
                row.name.clone(),
                row.func_name.clone(),
                row.start_param_regex.clone(),
            );
    }
    candidates
        .iter()
        .map(|c| decide_one(c, lookup, &mut taken))
        .collect()
}

fn decide_one(c: &Candidate<'_>, lookup: &Lookup, taken: &mut HashMap<i64, Taken>) -> Answer {
    let request_id = c.decoded.request_id.as_str();
    if let Some(stored) = lookup.stored.get(request_id) {
        return if stored.meaning == c.decoded.meaning {
            Answer::Stored(stored.reply.clone())
        } else {
            reject(request_id, domain::request_id_reused(request_id))
        };
    }
    let request = match c.checked {
        Ok(request) => request,
        Err(rejection) => return reject(request_id, rejection.clone()),
    };
    let checked = service_instance_check(request, lookup)
        .and_then(|_| request.processes.as_ref().map_err(Clone::clone))
        .and_then(|processes| {
            taken
                .entry(request.service_instance_id)
                .or_default()
                .claim(processes)
        });
    match checked {
        Ok(()) => Answer::Create,
        Err(rejection) => reject(request_id, rejection),
    }
}

/// Check (5): the service instance exists for this supplier account, belongs
/// to the business, and was not created from a template.
fn service_instance_check(request: &Request, lookup: &Lookup) -> Result<(), Rejection> {
    let id = request.service_instance_id;
    let si = lookup
        .service_instances
        .get(&id)
        .filter(|si| si.bk_supplier_account == request.bk_supplier_account)
        .ok_or_else(|| domain::service_instance_not_found(id, &request.bk_supplier_account))?;
    if si.bk_biz_id != request.bk_biz_id {
        return Err(domain::service_instance_other_business(
            id,
            request.bk_biz_id,
        ));
    }
    if si.service_template_id != 0 {
        return Err(domain::service_instance_from_template(
            id,
            si.service_template_id,
        ));
    }
    Ok(())
}

fn reject(request_id: &str, rejection: Rejection) -> Answer {
    Answer::Rejected {
        code: rejection.code,
        body: reply::failure(request_id, &rejection),
    }
}

/// What the audit log records for a request: the service instance updated
/// and the processes created under it, with their ids. Serialised once,
/// straight from the validated processes.
#[derive(Debug, Serialize)]
pub struct AuditDetail<'a> {
    pub service_instance_id: i64,
    pub bk_biz_id: i64,
    pub bk_supplier_account: &'a str,
    pub created_processes: Vec<CreatedProcess<'a>>,
}

/// A created process in the audit detail: its id and its fields.
#[derive(Debug, Serialize)]
pub struct CreatedProcess<'a> {
    pub bk_process_id: i64,
    #[serde(flatten)]
    pub process: &'a Process,
}

/// The audit detail of a request, as JSON text.
pub fn audit_detail(si: &ServiceInstance, processes: &[Process], ids: &[i64]) -> String {
    let detail = AuditDetail {
        service_instance_id: si.id,
        bk_biz_id: si.bk_biz_id,
        bk_supplier_account: &si.bk_supplier_account,
        created_processes: ids
            .iter()
            .zip(processes)
            .map(|(&bk_process_id, process)| CreatedProcess {
                bk_process_id,
                process,
            })
            .collect(),
    };
    // Serialising plain structs and a serde_json::Value cannot fail.
    serde_json::to_string(&detail).unwrap_or_default()
}
