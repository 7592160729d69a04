//! Reads and housekeeping of the idempotency log outside the request path.

use std::{collections::HashSet, time::Duration};

use super::{Client, StoreError};

/// Rows deleted per statement while pruning: small enough that no lock is
/// held for long, large enough that a week of traffic prunes in seconds.
pub const PRUNE_CHUNK: i64 = 5_000;

/// Which of `request_ids` have a stored reply within retention.
pub async fn stored_ids(
    client: &Client,
    request_ids: &[&str],
    retention: Duration,
) -> Result<HashSet<String>, StoreError> {
    let rows = client
        .query(
            "SELECT request_id FROM request_log \
             WHERE request_id = ANY($1::text[]) \
               AND created_at > now() - make_interval(secs => $2::float8)",
            &[&request_ids, &retention.as_secs_f64()],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Deletes up to [`PRUNE_CHUNK`] rows older than `retention`; returns how
/// many went. Call until it returns less than a chunk. No `ORDER BY`: any
/// expired rows will do, and without it the scan of the BRIN index on
/// `created_at` stops after a chunk instead of sorting every expired row.
pub async fn prune_chunk(client: &Client, retention: Duration) -> Result<u64, StoreError> {
    let deleted = client
        .execute(
            "DELETE FROM request_log WHERE request_id IN ( \
                 SELECT request_id FROM request_log \
                 WHERE created_at <= now() - make_interval(secs => $1::float8) \
                 LIMIT $2 \
                 FOR UPDATE SKIP LOCKED)",
            &[&retention.as_secs_f64(), &PRUNE_CHUNK],
        )
        .await?;
    Ok(deleted)
}

/// Prunes every expired row, chunk by chunk; returns the total deleted.
pub async fn prune(client: &Client, retention: Duration) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let deleted = prune_chunk(client, retention).await?;
        total += deleted;
        if deleted < PRUNE_CHUNK as u64 {
            return Ok(total);
        }
    }
}
