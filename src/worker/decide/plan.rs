//! Deciding a round of requests from what the database said, without I/O:
//! what the round asks the database for ([`Query`]), then each request's
//! fate and the rows of what it creates ([`plan`]).
//!
//! The check order of contract section 4 lives here: (2) stored reply, then
//! the request's own checks (3, 4), then the service instance (5), then the
//! processes (6) and uniqueness (7). Requests are decided in delivery order,
//! so when two of them collide the earlier one wins.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::Lane;
use crate::domain::{self, Rejection, Request, Taken, reply};
use crate::store::{Lookup, NewProcess, NewRequest, ProcessKey, ServiceInstance};
use crate::worker::message::{Fate, Outcome, Parsed, Reply};

/// What a round asks the database for, the same at every attempt.
pub struct Query<'a> {
    pub request_ids: Vec<&'a str>,
    /// Every request past checks (3) and (4) needs its service instance
    /// checked (5), even when one of its processes is invalid (6).
    pub service_instance_ids: Vec<i64>,
    /// The keys of every process the round may create; the existing
    /// processes that collide with them are read unless the collision read
    /// is skipped.
    pub keys: Vec<ProcessKey<'a>>,
}

impl<'a> Query<'a> {
    pub fn of<K>(round: &[(K, &'a Parsed)]) -> Self {
        let request_ids = round
            .iter()
            .map(|(_, p)| p.decoded.request_id.as_str())
            .filter(|id| !id.contains('\0'))
            .collect();
        let checked = || round.iter().filter_map(|(_, p)| p.checked.as_ref().ok());
        let mut service_instance_ids: Vec<i64> = checked().map(|r| r.service_instance_id).collect();
        service_instance_ids.sort_unstable();
        service_instance_ids.dedup();
        Self {
            request_ids,
            service_instance_ids,
            keys: process_keys(checked()).collect(),
        }
    }
}

/// The uniqueness keys of the processes that `requests` may create: those
/// of every request whose processes passed checks (6) and (7a).
pub fn process_keys<'r>(
    requests: impl Iterator<Item = &'r Request>,
) -> impl Iterator<Item = ProcessKey<'r>> {
    requests.flat_map(|r| {
        r.processes.iter().flatten().map(|p| ProcessKey {
            service_instance_id: r.service_instance_id,
            name: &p.bk_process_name,
            func_name: &p.bk_func_name,
            start_param_regex: &p.bk_start_param_regex,
        })
    })
}

/// A round as planned: every request's fate, by its tag, as it will be
/// once `rows` are committed (nothing of it is published otherwise), and
/// the rows of the requests that create processes.
pub struct Planned<'a, K> {
    pub fates: Vec<(K, Fate)>,
    pub rows: Vec<NewRequest<'a>>,
}

/// Decides every request of a round, in order; what is created takes its
/// ids from `lookup.ids` in that order.
pub fn plan<'a, K: Copy>(
    round: &[(K, &'a Parsed)],
    lookup: &'a Lookup,
    lane: Lane,
) -> Planned<'a, K> {
    let mut taken: HashMap<i64, Taken<'a>> = HashMap::new();
    for row in &lookup.existing {
        taken
            .entry(row.service_instance_id)
            .or_default()
            .insert_existing(&row.name, &row.func_name, &row.start_param_regex);
    }
    let mut ids = lookup.ids.iter().copied();
    let mut planned = Planned {
        fates: Vec::with_capacity(round.len()),
        rows: Vec::new(),
    };
    for &(tag, parsed) in round {
        let fate = match decide_one(parsed, lookup, &mut taken) {
            Ok((request, service_instance, processes)) => {
                let accepted = (request, service_instance, processes);
                let row = creation(parsed, accepted, lookup, lane, &mut ids);
                let fate = Fate::Reply(Reply {
                    request_id: request.request_id.clone(),
                    body: row.reply.clone(),
                    outcome: Outcome::Created {
                        processes: row.processes.len(),
                    },
                });
                planned.rows.push(row);
                fate
            }
            Err(reply) => Fate::Reply(reply),
        };
        planned.fates.push((tag, fate));
    }
    planned
}

/// A request that passed every check, with what it creates.
type Accepted<'a> = (&'a Request, &'a ServiceInstance, &'a [domain::Process]);

/// The checks of one request in the contract's order: its stored reply
/// (2), its own checks (3, 4), its service instance (5), its processes (6)
/// and their uniqueness (7). `Err` is the reply it gets without writing:
/// a stored reply re-sent byte for byte, or a final error.
fn decide_one<'a>(
    parsed: &'a Parsed,
    lookup: &'a Lookup,
    taken: &mut HashMap<i64, Taken<'a>>,
) -> Result<Accepted<'a>, Reply> {
    let request_id = parsed.decoded.request_id.as_str();
    if let Some(stored) = lookup.stored.get(request_id) {
        return Err(if stored.meaning == parsed.decoded.meaning {
            Reply {
                request_id: request_id.to_owned(),
                body: stored.reply.clone(),
                outcome: Outcome::Stored,
            }
        } else {
            reject(request_id, domain::request_id_reused(request_id))
        });
    }
    let accepted = parsed
        .checked
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|request| {
            let service_instance = service_instance_check(request, lookup)?;
            let processes = request.processes.as_ref().map_err(Clone::clone)?;
            taken
                .entry(request.service_instance_id)
                .or_default()
                .claim(processes)?;
            Ok((request, service_instance, processes.as_slice()))
        });
    accepted.map_err(|rejection| reject(request_id, rejection))
}

/// The row of an accepted request: its process ids, taken from `ids`, its
/// reply and its audit detail.
fn creation<'a>(
    parsed: &'a Parsed,
    (request, service_instance, processes): Accepted<'a>,
    lookup: &Lookup,
    lane: Lane,
    ids: &mut impl Iterator<Item = i64>,
) -> NewRequest<'a> {
    let own: Vec<i64> = ids.take(processes.len()).collect();
    NewRequest {
        request_id: &request.request_id,
        replaces_expired: lookup.expired.contains(&request.request_id),
        meaning: &parsed.decoded.meaning,
        reply: reply::success(&request.request_id, &own),
        lane: lane.as_str(),
        service_instance,
        operator: &request.bk_username,
        audit_detail: audit_detail(service_instance, processes, &own),
        processes: own
            .iter()
            .zip(processes)
            .map(|(&id, process)| NewProcess { id, process })
            .collect(),
    }
}

/// Check (5): the service instance exists for this supplier account, belongs
/// to the business, and was not created from a template.
fn service_instance_check<'l>(
    request: &Request,
    lookup: &'l Lookup,
) -> Result<&'l ServiceInstance, Rejection> {
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
    Ok(si)
}

fn reject(request_id: &str, rejection: Rejection) -> Reply {
    Reply {
        request_id: request_id.to_owned(),
        body: reply::failure(request_id, &rejection),
        outcome: Outcome::Rejected(rejection.code),
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{Code, Decoded};
    use crate::store::{Existing, ServiceInstance, StoredReply};

    fn decoded(request_id: &str, si: i64, biz: i64, names: &[&str]) -> Decoded {
        let processes: Vec<_> = names
            .iter()
            .map(|n| json!({"process_info": {"bk_process_name": n, "bk_func_name": n}}))
            .collect();
        let body = json!({"request_id": request_id, "bk_biz_id": biz, "service_instance_id": si, "processes": processes});
        domain::decode(&serde_json::to_vec(&body).unwrap(), None, 1 << 20).unwrap()
    }

    fn lookup() -> Lookup {
        let si = |id, biz, template| ServiceInstance {
            id,
            bk_biz_id: biz,
            bk_supplier_account: "0".to_owned(),
            service_template_id: template,
            bk_host_id: 1,
        };
        Lookup {
            service_instances: [(1, si(1, 10, 0)), (2, si(2, 10, 7))].into_iter().collect(),
            ..Lookup::default()
        }
    }

    /// The fates the plan gives `requests`, as if their rows committed.
    fn fates_of(requests: Vec<Decoded>, lookup: &Lookup) -> Vec<Fate> {
        let parsed: Vec<Parsed> = requests
            .into_iter()
            .map(|decoded| Parsed {
                checked: decoded.validate(),
                decoded,
            })
            .collect();
        let round: Vec<(usize, &Parsed)> = parsed.iter().enumerate().collect();
        let planned = plan(&round, lookup, Lane::Bulk);
        assert!(planned.rows.iter().all(|r| r.lane == "bulk"));
        let created = planned
            .fates
            .iter()
            .filter(|(_, f)| {
                matches!(
                    f,
                    Fate::Reply(Reply {
                        outcome: Outcome::Created { .. },
                        ..
                    })
                )
            })
            .count();
        assert_eq!(planned.rows.len(), created, "a row for each creation");
        for (k, (tag, _)) in planned.fates.iter().enumerate() {
            assert_eq!(*tag, k, "each fate keeps its request's tag");
        }
        planned.fates.into_iter().map(|(_, f)| f).collect()
    }

    fn code(fate: &Fate) -> Option<Code> {
        match fate {
            Fate::Reply(Reply {
                outcome: Outcome::Rejected(code),
                ..
            }) => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn a_stored_request_with_the_same_meaning_gets_its_reply_and_another_meaning_1300001() {
        let same = decoded("r", 1, 10, &["a"]);
        let other = decoded("r", 1, 10, &["b"]);
        let mut lookup = lookup();
        lookup.stored.insert(
            "r".to_owned(),
            StoredReply {
                meaning: same.meaning.to_vec(),
                reply: b"stored".to_vec(),
            },
        );
        assert_eq!(
            fates_of(vec![same], &lookup),
            vec![Fate::Reply(Reply {
                request_id: "r".to_owned(),
                body: b"stored".to_vec(),
                outcome: Outcome::Stored,
            })]
        );
        assert_eq!(
            code(&fates_of(vec![other], &lookup)[0]),
            Some(Code::RequestIdReused)
        );
    }

    #[test]
    fn the_service_instance_is_checked_before_the_processes() {
        let lookup = lookup();
        let unknown = decoded("a", 3, 10, &[""]);
        let other_business = decoded("b", 1, 11, &["x"]);
        let from_template = decoded("c", 2, 10, &["x"]);
        let bad_process = decoded("d", 1, 10, &[""]);
        let got: Vec<_> = fates_of(
            vec![unknown, other_business, from_template, bad_process],
            &lookup,
        )
        .iter()
        .map(code)
        .collect();
        assert_eq!(
            got,
            vec![
                Some(Code::ServiceInstanceNotFound),
                Some(Code::WrongBusiness),
                Some(Code::FromTemplate),
                Some(Code::InvalidValue),
            ]
        );
    }

    #[test]
    fn the_earlier_request_wins_and_existing_processes_count() {
        let mut lookup = lookup();
        lookup.existing.push(Existing {
            service_instance_id: 1,
            name: "old".to_owned(),
            func_name: "old-func".to_owned(),
            start_param_regex: String::new(),
        });
        let first = decoded("a", 1, 10, &["x"]);
        let second = decoded("b", 1, 10, &["x"]);
        let clash = decoded("c", 1, 10, &["old"]);
        let lookup = Lookup {
            ids: vec![41, 42, 43],
            ..lookup
        };
        let got = fates_of(vec![first, second, clash], &lookup);
        assert!(
            matches!(&got[0], Fate::Reply(Reply { outcome: Outcome::Created { processes: 1 }, body, .. })
                if body == &reply::success("a", &[41])),
            "{:?}",
            got[0]
        );
        assert_eq!(code(&got[1]), Some(Code::Duplicate));
        assert_eq!(code(&got[2]), Some(Code::Duplicate));
    }
}
