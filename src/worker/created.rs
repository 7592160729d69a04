//! The requests of a round that will create rows: their ids, replies and
//! audit details, then their fates once the write committed.

use super::decide::{Fate, Outcome};
use super::plan::{self, Answer, Candidate};
use crate::domain::{self, Code, Rejection, Request, reply};
use crate::store::{self, NewProcess, NewRequest};

/// The requests of a round that will create rows, with ids and replies.
pub(super) struct Created<'a> {
    requests: Vec<Creation<'a>>,
}

struct Creation<'a> {
    index: usize,
    request: &'a Request,
    processes: &'a [domain::Process],
    meaning: &'a [u8],
    service_instance: &'a store::ServiceInstance,
    ids: Vec<i64>,
    reply: Vec<u8>,
    audit: String,
}

impl<'a> Created<'a> {
    pub(super) fn build(
        candidates: &'a [Candidate<'a>],
        answers: &[Answer],
        lookup: &'a store::Lookup,
    ) -> Self {
        let mut next = lookup.ids.iter().copied();
        let mut requests = Vec::new();
        for (index, (c, answer)) in candidates.iter().zip(answers).enumerate() {
            if *answer != Answer::Create {
                continue;
            }
            let Ok(request) = c.checked else { continue };
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
                meaning: &c.decoded.meaning,
                service_instance: si,
                reply: reply::success(&request.request_id, &own),
                audit: plan::audit_detail(si, processes, &own),
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

    pub(super) fn into_fates(
        self,
        candidates: &[Candidate<'_>],
        answers: Vec<Answer>,
    ) -> Vec<Fate> {
        let mut created = self.requests.into_iter().peekable();
        candidates
            .iter()
            .zip(answers)
            .enumerate()
            .map(|(index, (c, answer))| {
                let request_id = c.decoded.request_id.clone();
                match answer {
                    Answer::Stored(body) => Fate::Reply {
                        request_id,
                        body,
                        outcome: Outcome::Stored,
                    },
                    Answer::Rejected { code, body } => Fate::Reply {
                        request_id,
                        body,
                        outcome: Outcome::Rejected(code),
                    },
                    Answer::Create => match created.next_if(|c| c.index == index) {
                        Some(c) => Fate::Reply {
                            request_id,
                            outcome: Outcome::Created {
                                processes: c.ids.len(),
                            },
                            body: c.reply,
                        },
                        None => unreachable_fate(request_id),
                    },
                }
            })
            .collect()
    }
}

/// A planned creation without a service instance cannot happen (the plan
/// checked it); answer it as not found rather than panic.
fn unreachable_fate(request_id: String) -> Fate {
    let rejection = Rejection::new(Code::ServiceInstanceNotFound, "service instance vanished");
    Fate::Reply {
        body: reply::failure(&request_id, &rejection),
        request_id,
        outcome: Outcome::Rejected(Code::ServiceInstanceNotFound),
    }
}
