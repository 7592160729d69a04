use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use tokio_postgres::Statement;

use super::{Client, StoreError};

/// A reply stored for a `request_id`, with the hash of what that request meant.
#[derive(Debug, Clone)]
pub struct StoredReply {
    pub meaning: Vec<u8>,
    pub reply: Vec<u8>,
}

/// The columns of a service instance that decide whether processes may be
/// created under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance {
    pub id: i64,
    pub bk_biz_id: i64,
    pub bk_supplier_account: String,
    pub service_template_id: i64,
    pub bk_host_id: i64,
}

/// The keys of a process a request wants to create: what must not collide
/// with a process already in its service instance (check 7).
#[derive(Debug, Clone, Copy)]
pub struct ProcessKey<'a> {
    pub service_instance_id: i64,
    pub name: &'a str,
    pub func_name: &'a str,
    pub start_param_regex: &'a str,
}

/// A process already in the database that shares a key with a new one.
#[derive(Debug, Clone)]
pub struct Existing {
    pub service_instance_id: i64,
    pub name: String,
    pub func_name: String,
    pub start_param_regex: String,
}

/// Everything a round needs to read before it decides, fetched in one
/// pipelined round trip.
#[derive(Debug, Default)]
pub struct Lookup {
    /// Replies within retention, by request_id.
    pub stored: HashMap<String, StoredReply>,
    /// request_ids whose stored reply is past retention: processed anew.
    pub expired: HashSet<String>,
    pub service_instances: HashMap<i64, ServiceInstance>,
    pub existing: Vec<Existing>,
    /// Process ids allocated for the round, ascending; ids left unused (by
    /// requests that fail) are gaps in the sequence, as after a rollback.
    pub ids: Vec<i64>,
}

/// What a round asks the database for before it decides.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub request_ids: &'a [&'a str],
    pub retention: Duration,
    pub service_instance_ids: &'a [i64],
    /// New processes whose colliding existing processes to read; empty
    /// when the round leaves collisions to the unique indexes.
    pub colliding_with: &'a [ProcessKey<'a>],
    /// Process ids to allocate.
    pub new_processes: usize,
}

/// The statements of the reads, prepared before any is sent.
pub(super) struct ReadStatements {
    stored_replies: Statement,
    service_instances: Statement,
    existing_processes: Statement,
    allocate_ids: Statement,
}

impl ReadStatements {
    /// Prepares the four (tokio-postgres caches them per connection).
    pub(super) async fn prepare(client: &Client) -> Result<Self, StoreError> {
        let (stored_replies, service_instances, existing_processes, allocate_ids) = tokio::try_join!(
            client.prepare_cached(include_str!("sql/stored_replies.sql")),
            client.prepare_cached(include_str!("sql/service_instances.sql")),
            client.prepare_cached(include_str!("sql/existing_processes.sql")),
            client.prepare_cached(include_str!("sql/allocate_ids.sql")),
        )?;
        Ok(Self {
            stored_replies,
            service_instances,
            existing_processes,
            allocate_ids,
        })
    }
}

/// Reads colliding processes, stored replies and service instances, and
/// allocates the process ids, pipelined: every query is sent on the first
/// poll, in this order.
///
/// The order of the first two is what keeps an answer from contradicting
/// a request's stored reply. Each statement sees the database as of its
/// own start (READ COMMITTED), and the statements of one pipeline may
/// start seconds apart when the worker stalls while sending them (a
/// paused VM, a frozen process) or one waits for a lock. A request's
/// processes and its `request_log` row are committed together, so the
/// processes read first can only include another writer's request whose
/// stored reply the later read sees too: a repeat of that request gets
/// the stored reply (check 2), never 1199014 against its own processes.
/// Read the other way round, a writer committing in between left the
/// processes visible and the reply not. `tests/it/idempotency.rs` holds
/// that gap open with a lock.
pub(super) async fn read(
    client: &Client,
    statements: &ReadStatements,
    wanted: &Wanted<'_>,
) -> Result<Lookup, StoreError> {
    let st = statements;
    let (existing, (stored, expired), instances, ids) = tokio::try_join!(
        existing_processes(client, &st.existing_processes, wanted.colliding_with),
        stored_replies(
            client,
            &st.stored_replies,
            wanted.request_ids,
            wanted.retention
        ),
        service_instances(client, &st.service_instances, wanted.service_instance_ids),
        allocate_ids(client, &st.allocate_ids, wanted.new_processes),
    )?;
    Ok(Lookup {
        stored,
        expired,
        service_instances: instances,
        existing,
        ids,
    })
}

/// Stored replies within retention, and the request_ids whose reply is past it.
async fn stored_replies(
    client: &Client,
    statement: &Statement,
    request_ids: &[&str],
    retention: Duration,
) -> Result<(HashMap<String, StoredReply>, HashSet<String>), StoreError> {
    let mut stored = HashMap::new();
    let mut expired = HashSet::new();
    if request_ids.is_empty() {
        return Ok((stored, expired));
    }
    let rows = client
        .query(statement, &[&request_ids, &retention.as_secs_f64()])
        .await?;
    for row in rows {
        let request_id: String = row.get(0);
        if row.get::<_, bool>(3) {
            expired.insert(request_id);
        } else {
            let reply = StoredReply {
                meaning: row.get(1),
                reply: row.get(2),
            };
            stored.insert(request_id, reply);
        }
    }
    Ok((stored, expired))
}

async fn service_instances(
    client: &Client,
    statement: &Statement,
    ids: &[i64],
) -> Result<HashMap<i64, ServiceInstance>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client.query(statement, &[&ids]).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let si = ServiceInstance {
                id: row.get(0),
                bk_biz_id: row.get(1),
                bk_supplier_account: row.get(2),
                service_template_id: row.get(3),
                bk_host_id: row.get(4),
            };
            (si.id, si)
        })
        .collect())
}

async fn existing_processes(
    client: &Client,
    statement: &Statement,
    keys: &[ProcessKey<'_>],
) -> Result<Vec<Existing>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = keys.iter().map(|k| k.service_instance_id).collect();
    let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
    let funcs: Vec<&str> = keys.iter().map(|k| k.func_name).collect();
    let regexes: Vec<&str> = keys.iter().map(|k| k.start_param_regex).collect();
    let rows = client
        .query(statement, &[&ids, &names, &funcs, &regexes])
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| Existing {
            service_instance_id: row.get(0),
            name: row.get(1),
            func_name: row.get(2),
            start_param_regex: row.get(3),
        })
        .collect())
}

/// Allocates `n` process ids from the database sequence, ascending.
async fn allocate_ids(
    client: &Client,
    statement: &Statement,
    n: usize,
) -> Result<Vec<i64>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let count = i64::try_from(n).unwrap_or(i64::MAX);
    let rows = client.query(statement, &[&count]).await?;
    let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    ids.sort_unstable();
    Ok(ids)
}
