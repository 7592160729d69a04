//! Which business holds which shard of the bulk lane (`bulk_shard`). The
//! worker's sharing ([`crate::worker`]) binds and unbinds the shards on
//! the broker; each binding change happens inside the transaction that
//! records it, so that two workers never give one shard to two businesses
//! or one business two shards.

use std::time::Duration;

use deadpool_postgres::Transaction;

use super::{Client, StoreError};

/// A shard held for the length of a transaction: bind or unbind on the
/// broker, then [`commit`](Self::commit), or drop to roll back.
pub struct Held<'a> {
    tx: Transaction<'a>,
    pub shard: u16,
    /// True when the shard was free and is given to the business now;
    /// false when the business held it already.
    pub new: bool,
}

impl Held<'_> {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// The shard `bk_biz_id` holds (its row locked and its `last_seen`
/// bumped), else the lowest free one of `shards`, recorded as its now.
/// `None` when every shard is held by another business.
pub async fn hold<'a>(
    client: &'a mut Client,
    exchange: &str,
    shards: u16,
    bk_biz_id: i64,
) -> Result<Option<Held<'a>>, StoreError> {
    let tx = client.transaction().await?;
    let held = tx
        .query_opt(
            "UPDATE bulk_shard SET last_seen = now() \
             WHERE bulk_exchange = $1 AND bk_biz_id = $2 AND shard < $3 RETURNING shard",
            &[&exchange, &bk_biz_id, &(shards as i16)],
        )
        .await?;
    if let Some(row) = held {
        let shard: i16 = row.get(0);
        return Ok(Some(Held {
            tx,
            shard: shard as u16,
            new: false,
        }));
    }
    // Another worker may take the same free shard at the same moment: the
    // keys make one of the two inserts do nothing, and that business waits
    // for its next sighting.
    let given = tx
        .query_opt(
            "INSERT INTO bulk_shard (bulk_exchange, shard, bk_biz_id) \
             SELECT $1, s::int2, $2 FROM generate_series(0, $3::int4 - 1) s \
             WHERE NOT EXISTS (SELECT 1 FROM bulk_shard b WHERE b.bulk_exchange = $1 AND b.shard = s) \
             ORDER BY s LIMIT 1 \
             ON CONFLICT DO NOTHING RETURNING shard",
            &[&exchange, &bk_biz_id, &i32::from(shards)],
        )
        .await?;
    Ok(given.map(|row| {
        let shard: i16 = row.get(0);
        Held {
            tx,
            shard: shard as u16,
            new: true,
        }
    }))
}

/// Bumps `last_seen` of the businesses whose deliveries came through their
/// shards.
pub async fn seen(client: &Client, exchange: &str, businesses: &[i64]) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            "UPDATE bulk_shard SET last_seen = now() WHERE bulk_exchange = $1 AND bk_biz_id = ANY($2)",
            &[&exchange, &businesses],
        )
        .await?)
}

/// A shard to take back, with the business that held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub shard: u16,
    pub bk_biz_id: i64,
}

/// Shards whose business has not been seen for `idle`, or that are beyond
/// `shards` (the count was lowered), locked for the transaction; other
/// workers skip them meanwhile. [`Idle::release`] each one found empty and
/// unbound, then [`Idle::commit`].
pub struct Idle<'a> {
    tx: Transaction<'a>,
    pub holders: Vec<Holder>,
}

pub async fn idle<'a>(
    client: &'a mut Client,
    exchange: &str,
    shards: u16,
    idle: Duration,
) -> Result<Idle<'a>, StoreError> {
    let tx = client.transaction().await?;
    let holders = tx
        .query(
            "SELECT shard, bk_biz_id FROM bulk_shard \
             WHERE bulk_exchange = $1 AND (last_seen < now() - make_interval(secs => $2) OR shard >= $3) \
             ORDER BY shard FOR UPDATE SKIP LOCKED",
            &[&exchange, &idle.as_secs_f64(), &(shards as i16)],
        )
        .await?
        .iter()
        .map(|row| Holder {
            shard: row.get::<_, i16>(0) as u16,
            bk_biz_id: row.get(1),
        })
        .collect();
    Ok(Idle { tx, holders })
}

impl Idle<'_> {
    /// Frees `holder`'s shard when the transaction commits.
    pub async fn release(&self, exchange: &str, holder: Holder) -> Result<(), StoreError> {
        self.tx
            .execute(
                "DELETE FROM bulk_shard WHERE bulk_exchange = $1 AND shard = $2",
                &[&exchange, &(holder.shard as i16)],
            )
            .await?;
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}
