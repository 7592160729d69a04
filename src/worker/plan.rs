//! Deciding a round of requests from what the database said, without I/O.
//!
//! The check order of contract section 4 lives here: (2) stored reply, then
//! the request's own checks (3, 4), then the service instance (5), then the
//! processes (6) and uniqueness (7). Requests are decided in delivery order,
//! so when two of them collide the earlier one wins.

use std::collections::HashMap;

use super::fate::{Outcome, Reply};
use crate::domain::{self, Decoded, Rejection, Request, Taken, reply};
use crate::store::Lookup;

/// What the plan decides for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer without writing: a stored reply re-sent byte for byte
    /// ([`Outcome::Stored`]) or a final error reply ([`Outcome::Rejected`]).
    Reply(Reply),
    /// Rows to write; the reply is built once ids are allocated.
    Create,
}

/// A request of a round waiting for its verdict: its decoded message and
/// its checked form.
pub struct Pending<'a> {
    pub decoded: &'a Decoded,
    pub checked: &'a Result<Request, Rejection>,
}

/// Decides every request of a round, in order.
pub fn plan<'a>(pending: &[Pending<'a>], lookup: &'a Lookup) -> Vec<Verdict> {
    let mut taken: HashMap<i64, Taken<'a>> = HashMap::new();
    for row in &lookup.existing {
        taken
            .entry(row.service_instance_id)
            .or_default()
            .insert_existing(&row.name, &row.func_name, &row.start_param_regex);
    }
    pending
        .iter()
        .map(|p| decide_one(p, lookup, &mut taken))
        .collect()
}

fn decide_one<'a>(
    p: &Pending<'a>,
    lookup: &Lookup,
    taken: &mut HashMap<i64, Taken<'a>>,
) -> Verdict {
    let request_id = p.decoded.request_id.as_str();
    if let Some(stored) = lookup.stored.get(request_id) {
        return if stored.meaning == p.decoded.meaning {
            Verdict::Reply(Reply {
                request_id: request_id.to_owned(),
                body: stored.reply.clone(),
                outcome: Outcome::Stored,
            })
        } else {
            reject(request_id, domain::request_id_reused(request_id))
        };
    }
    let request = match p.checked {
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
        Ok(()) => Verdict::Create,
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

fn reject(request_id: &str, rejection: Rejection) -> Verdict {
    Verdict::Reply(Reply {
        request_id: request_id.to_owned(),
        body: reply::failure(request_id, &rejection),
        outcome: Outcome::Rejected(rejection.code),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::Code;
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

    fn verdicts(requests: &[Decoded], lookup: &Lookup) -> Vec<Verdict> {
        let checked: Vec<_> = requests.iter().map(Decoded::validate).collect();
        let pending: Vec<_> = requests
            .iter()
            .zip(&checked)
            .map(|(decoded, checked)| Pending { decoded, checked })
            .collect();
        plan(&pending, lookup)
    }

    fn code(verdict: &Verdict) -> Option<Code> {
        match verdict {
            Verdict::Reply(Reply {
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
            verdicts(&[same], &lookup),
            vec![Verdict::Reply(Reply {
                request_id: "r".to_owned(),
                body: b"stored".to_vec(),
                outcome: Outcome::Stored,
            })]
        );
        assert_eq!(
            code(&verdicts(&[other], &lookup)[0]),
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
        let got: Vec<_> = verdicts(
            &[unknown, other_business, from_template, bad_process],
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
        let got = verdicts(&[first, second, clash], &lookup);
        assert_eq!(got[0], Verdict::Create);
        assert_eq!(code(&got[1]), Some(Code::Duplicate));
        assert_eq!(code(&got[2]), Some(Code::Duplicate));
    }
}
