//! From a batch of message bodies to one [`Fate`] per message, reading and
//! writing PostgreSQL in a few set-based statements.

use std::{collections::HashSet, time::Duration};

use deadpool_postgres::Pool;

use super::created::Created;
use super::disposition::Disposition;
use super::existing::ExistingCheck;
use super::fate::{Fate, Outcome, Reply};
use super::plan::{self, Pending};
use super::turnstile::{Keys, Turn};
use crate::domain::{self, Rejection, Request, Unreadable, reply};
use crate::store::{self, StoreError};
use crate::telemetry::{error_chain, timed, timed_sync};

/// How often a round is decided again after losing a race to another
/// writer before the batch is handed back as a transient failure.
const RACE_RETRIES: usize = 8;

/// The message as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub body: &'a [u8],
    pub message_id: Option<&'a str>,
}

/// Settings the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub retention: Duration,
}

/// What every batch of a session is decided with.
#[derive(Debug)]
pub struct Context<'a> {
    pub pool: &'a Pool,
    pub limits: Limits,
    /// Whether rounds read the existing processes; learnt over the session.
    pub existing: ExistingCheck,
}

/// A batch's messages as read: check (1) and the request's own checks, done
/// once per batch (a retried batch is not read again) and without I/O, so
/// that a large batch can be read on another thread while the runtime's
/// thread talks to the broker and the database ([`read`]).
pub struct Read {
    /// The dead-letter fate of each unreadable message, by position.
    unreadable: Vec<Option<Fate>>,
    /// The readable messages with their positions, in delivery order.
    readable: Vec<(usize, domain::Decoded)>,
    /// Each readable message checked, in the order of `readable`.
    checked: Vec<Result<Request, Rejection>>,
}

/// Reads a batch: decodes each body (size, JSON, object, request_id) and
/// checks the readable ones (3, 4, 6 and 7a). Pure and deterministic.
pub fn read(inputs: &[Input<'_>], limits: Limits) -> Read {
    let mut unreadable: Vec<Option<Fate>> = vec![None; inputs.len()];
    let mut readable = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        match domain::decode(input.body, input.message_id, limits.max_body_bytes) {
            Ok(decoded) => readable.push((i, decoded)),
            Err(why) => unreadable[i] = Some(dead_letter(&why)),
        }
    }
    let checked = timed_sync("validate", || {
        readable.iter().map(|(_, d)| d.validate()).collect()
    });
    Read {
        unreadable,
        readable,
        checked,
    }
}

/// Decides a batch that was [`read`]. `Err` only for the whole batch's
/// trouble (see [`Disposition::of`]): the database's, or contention.
pub async fn decide(cx: &Context<'_>, turn: &Turn, read: &Read) -> Result<Vec<Fate>, StoreError> {
    let Read {
        unreadable,
        readable,
        checked,
    } = read;
    let mut fates = unreadable.clone();
    turn.claim(keys(readable.iter().map(|(_, d)| d), checked));

    // A request_id seen twice in one batch: the earlier delivery is decided
    // first, the later one in a following round that sees its result.
    let mut remaining: Vec<usize> = (0..readable.len()).collect();
    while !remaining.is_empty() {
        let mut seen = HashSet::new();
        let (round, later): (Vec<usize>, Vec<usize>) = remaining
            .iter()
            .partition(|&&k| seen.insert(readable[k].1.request_id.as_str()));
        let pending: Vec<Pending<'_>> = round
            .iter()
            .map(|&k| Pending {
                decoded: &readable[k].1,
                checked: &checked[k],
            })
            .collect();
        let decided = decide_round(cx, turn, &pending).await?;
        for (&k, fate) in round.iter().zip(decided) {
            fates[readable[k].0] = Some(fate);
        }
        remaining = later;
    }
    Ok(fates.into_iter().flatten().collect())
}

/// What the batch's answers depend on besides read-only service instances:
/// every request's stored reply, and the uniqueness keys of the processes it
/// may create.
fn keys<'a>(
    decoded: impl Iterator<Item = &'a domain::Decoded>,
    checked: &[Result<Request, Rejection>],
) -> Keys {
    let mut keys = Keys::default();
    for d in decoded {
        keys.request_id(&d.request_id);
    }
    for key in process_keys(checked.iter().filter_map(|c| c.as_ref().ok())) {
        keys.process(&key);
    }
    keys
}

fn dead_letter(unreadable: &Unreadable) -> Fate {
    let code = unreadable.code();
    let detail = unreadable.message();
    let reply = unreadable.request_id.as_ref().map(|id| Reply {
        request_id: id.clone(),
        body: reply::failure(id, &Rejection::new(code, detail.clone())),
        outcome: Outcome::Rejected(code),
    });
    Fate::DeadLetter {
        reason: unreadable.reason_label(),
        detail,
        reply,
    }
}

/// Decides requests with distinct request_ids. A write that fails because
/// of the data (not the database) is split in halves until the one request
/// that causes it is found and dead-lettered; its neighbours go on.
async fn decide_round(
    cx: &Context<'_>,
    turn: &Turn,
    pending: &[Pending<'_>],
) -> Result<Vec<Fate>, StoreError> {
    let e = match attempt_round(cx, turn, pending).await {
        Ok(fates) => return Ok(fates),
        Err(e) => e,
    };
    match Disposition::of(&e) {
        Disposition::DeadLetter { reason } if pending.len() == 1 => {
            tracing::error!(
                request_id = %pending[0].decoded.request_id,
                error = %error_chain(&e),
                "the database rejects this request's data; dead-lettering it"
            );
            Ok(vec![Fate::DeadLetter {
                reason,
                detail: error_chain(&e),
                reply: None,
            }])
        }
        Disposition::DeadLetter { .. } => {
            tracing::warn!(error = %error_chain(&e), size = pending.len(), "batch write failed; splitting it");
            let (left, right) = pending.split_at(pending.len() / 2);
            let mut fates = Box::pin(decide_round(cx, turn, left)).await?;
            fates.extend(Box::pin(decide_round(cx, turn, right)).await?);
            Ok(fates)
        }
        // The whole batch's trouble: the decider carries it out.
        _ => Err(e),
    }
}

/// Reads, plans and writes a round, deciding it again when another worker
/// wins a race (a unique violation or a request_id stored meanwhile), or
/// when a round that skipped reading the existing processes (see
/// [`ExistingCheck`]) meets one at the write. Each attempt is two round
/// trips on one pooled connection (see [`store::Round`]).
async fn attempt_round(
    cx: &Context<'_>,
    turn: &Turn,
    pending: &[Pending<'_>],
) -> Result<Vec<Fate>, StoreError> {
    let (limits, existing) = (cx.limits, &cx.existing);
    // What the round asks the database for does not change between retries.
    let request_ids: Vec<&str> = pending
        .iter()
        .map(|p| p.decoded.request_id.as_str())
        .filter(|id| !id.contains('\0'))
        .collect();
    // Every request past checks (3) and (4) needs its service instance
    // checked (5), even when one of its processes is invalid (6).
    let mut si_ids: Vec<i64> = pending
        .iter()
        .filter_map(|p| p.checked.as_ref().ok())
        .map(|r| r.service_instance_id)
        .collect();
    si_ids.sort_unstable();
    si_ids.dedup();
    let keys: Vec<store::ProcessKey<'_>> =
        process_keys(pending.iter().filter_map(|p| p.checked.as_ref().ok())).collect();
    let mut read = existing.read();
    for _ in 0..RACE_RETRIES {
        let wanted = store::Wanted {
            request_ids: &request_ids,
            retention: limits.retention,
            service_instance_ids: &si_ids,
            colliding_with: if read { &keys } else { &[] },
            new_processes: keys.len(),
        };
        let client = cx.pool.get().await?;
        let (round, lookup) = timed("lookup", store::Round::begin(client, &wanted)).await?;
        if read {
            existing.read_found(!lookup.existing.is_empty());
        }
        let verdicts = plan::plan(pending, &lookup);
        let created = Created::build(pending, &verdicts, &lookup);
        let rows = created.rows();
        // Earlier batches that share a key commit first; see the turnstile.
        timed("turn", turn.wait()).await;
        match timed("write", round.commit(&rows, limits.retention)).await {
            Ok(()) => return Ok(created.into_fates(pending, verdicts)),
            Err(e) if Disposition::of(&e) == Disposition::DecideAgain => {
                if read {
                    metrics::counter!("procinst_races_total").increment(1);
                    tracing::debug!(error = %error_chain(&e), "lost a race to another writer; deciding again");
                } else {
                    existing.skipped_and_collided();
                    metrics::counter!("procinst_unread_collisions_total").increment(1);
                    tracing::debug!(error = %error_chain(&e), "a round that skipped reading existing processes met one; deciding again with the read");
                }
                read = true;
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contended)
}

/// The uniqueness keys of the processes that `requests` may create: those
/// of every request whose processes passed checks (6) and (7a).
fn process_keys<'r>(
    requests: impl Iterator<Item = &'r Request>,
) -> impl Iterator<Item = store::ProcessKey<'r>> {
    requests.flat_map(|r| {
        r.processes.iter().flatten().map(|p| store::ProcessKey {
            service_instance_id: r.service_instance_id,
            name: &p.bk_process_name,
            func_name: &p.bk_func_name,
            start_param_regex: &p.bk_start_param_regex,
        })
    })
}
