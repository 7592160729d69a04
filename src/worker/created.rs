//! The requests of a round that will create rows: their ids, replies and
//! audit details, then their fates once the write committed.

use serde::Serialize;

use super::fate::{Fate, Outcome, Reply};
use super::plan::{Pending, Verdict};
use crate::domain::{self, Code, Rejection, Request, reply};
use crate::store::{self, NewProcess, NewRequest, ServiceInstance};

/// The requests of a round that will create rows, with ids and replies.
pub(super) struct Created<'a> {
    requests: Vec<Creation<'a>>,
}

struct Creation<'a> {
    index: usize,
    request: &'a Request,
    processes: &'a [domain::Process],
    meaning: &'a [u8],
    replaces_expired: bool,
    service_instance: &'a ServiceInstance,
    ids: Vec<i64>,
    reply: Vec<u8>,
    audit: String,
}

impl<'a> Created<'a> {
    pub(super) fn build(
        pending: &'a [Pending<'a>],
        verdicts: &[Verdict],
        lookup: &'a store::Lookup,
    ) -> Self {
        let mut next = lookup.ids.iter().copied();
        let mut requests = Vec::new();
        for (index, (p, verdict)) in pending.iter().zip(verdicts).enumerate() {
            if *verdict != Verdict::Create {
                continue;
            }
            let Ok(request) = p.checked else { continue };
            let Ok(processes) = request.processes.as_ref() else {
                continue;
            };
            let Some(si) = lookup.service_instances.get(&request.service_instance_id) else {
                continue;
            };
            let own: Vec<i64> = next.by_ref().take(processes.len()).collect();
            requests.push(Creation {
                index,
                request,
                processes,
                meaning: &p.decoded.meaning,
                replaces_expired: lookup.expired.contains(&request.request_id),
                service_instance: si,
                reply: reply::success(&request.request_id, &own),
                audit: audit_detail(si, processes, &own),
                ids: own,
            });
        }
        Self { requests }
    }

    pub(super) fn rows(&self) -> Vec<NewRequest<'_>> {
        self.requests
            .iter()
            .map(|c| NewRequest {
                request_id: &c.request.request_id,
                replaces_expired: c.replaces_expired,
                meaning: c.meaning,
                reply: &c.reply,
                service_instance: c.service_instance,
                operator: &c.request.bk_username,
                processes: c
                    .ids
                    .iter()
                    .zip(c.processes)
                    .map(|(&id, process)| NewProcess { id, process })
                    .collect(),
                audit_detail: &c.audit,
            })
            .collect()
    }

    /// The fates of the whole round, once its rows are committed.
    pub(super) fn into_fates(self, pending: &[Pending<'_>], verdicts: Vec<Verdict>) -> Vec<Fate> {
        let mut created = self.requests.into_iter().peekable();
        pending
            .iter()
            .zip(verdicts)
            .enumerate()
            .map(|(index, (p, verdict))| match verdict {
                Verdict::Reply(reply) => Fate::Reply(reply),
                Verdict::Create => {
                    let request_id = p.decoded.request_id.clone();
                    match created.next_if(|c| c.index == index) {
                        Some(c) => Fate::Reply(Reply {
                            request_id,
                            outcome: Outcome::Created {
                                processes: c.ids.len(),
                            },
                            body: c.reply,
                        }),
                        None => unreachable_fate(request_id),
                    }
                }
            })
            .collect()
    }
}

/// A planned creation without a service instance cannot happen (the plan
/// checked it); answer it as not found rather than panic.
fn unreachable_fate(request_id: String) -> Fate {
    let rejection = Rejection::new(Code::ServiceInstanceNotFound, "service instance vanished");
    Fate::Reply(Reply {
        body: reply::failure(&request_id, &rejection),
        request_id,
        outcome: Outcome::Rejected(Code::ServiceInstanceNotFound),
    })
}

/// What the audit log records for a request: the service instance updated
/// and the processes created under it, with their ids. Serialised once,
/// straight from the validated processes.
#[derive(Debug, Serialize)]
struct AuditDetail<'a> {
    service_instance_id: i64,
    bk_biz_id: i64,
    bk_supplier_account: &'a str,
    created_processes: Vec<CreatedProcess<'a>>,
}

/// A created process in the audit detail: its id and its fields.
#[derive(Debug, Serialize)]
struct CreatedProcess<'a> {
    bk_process_id: i64,
    #[serde(flatten)]
    process: &'a domain::Process,
}

/// The audit detail of a request, as JSON text.
fn audit_detail(si: &ServiceInstance, processes: &[domain::Process], ids: &[i64]) -> String {
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
