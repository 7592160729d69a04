//! What PostgreSQL spent, for `procinst loadtest`: WAL written and rows and
//! index entries inserted into procinst's tables, read before and after a
//! run. Cluster-wide WAL counts every database's writes, so measure on a
//! quiet server.

use serde::Serialize;

use super::{Client, StoreError};

/// A reading of the counters; subtract two with [`Snapshot::since`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    wal_bytes: i64,
    /// Per table of procinst's: rows inserted so far and its index count.
    tables: Vec<(String, i64, i64)>,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub wal_bytes: i64,
    pub rows: i64,
    pub index_entries: i64,
}

/// Reads the counters. The statistics of a commit reach the cumulative
/// views within about a second, so wait that long after a run.
pub async fn snapshot(client: &Client) -> Result<Snapshot, StoreError> {
    let wal_bytes: i64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8",
            &[],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            "SELECT t.relname::text, t.n_tup_ins, \
                    (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid) \
             FROM pg_stat_user_tables t \
             WHERE t.relname IN ('process', 'process_instance_relation', 'audit_log', 'request_log') \
             ORDER BY t.relname",
            &[],
        )
        .await?;
    Ok(Snapshot {
        wal_bytes,
        tables: rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    })
}

impl Snapshot {
    /// The cost from `earlier` to this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Cost {
        let mut rows = 0;
        let mut index_entries = 0;
        for (name, inserted, indexes) in &self.tables {
            let before = earlier
                .tables
                .iter()
                .find(|(n, ..)| n == name)
                .map_or(0, |t| t.1);
            rows += inserted - before;
            index_entries += (inserted - before) * indexes;
        }
        Cost {
            wal_bytes: self.wal_bytes - earlier.wal_bytes,
            rows,
            index_entries,
        }
    }
}
