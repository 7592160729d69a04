//! What PostgreSQL spent, for `procinst loadtest`: WAL written and rows and
//! index entries inserted into procinst's tables, read before and after a
//! run. Cluster-wide WAL counts every database's writes, so measure on a
//! quiet server.

use serde::Serialize;

use super::{Client, StoreError};

/// The tables a request writes to.
const TABLES: [&str; 4] = [
    "process",
    "process_instance_relation",
    "audit_log",
    "request_log",
];

/// A reading of the counters; subtract two with [`Snapshot::since`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    wal_bytes: i64,
    /// Per table of procinst's: rows now and its index count. BRIN
    /// indexes are not counted: they summarise page ranges, not rows.
    tables: Vec<(String, i64, i64)>,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub wal_bytes: i64,
    pub rows: i64,
    pub index_entries: i64,
}

/// Reads the counters: WAL position, and rows counted in each table (a
/// sequential scan each: fine for a benchmark, not for a hot path).
pub async fn snapshot(client: &Client) -> Result<Snapshot, StoreError> {
    let wal_bytes: i64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8",
            &[],
        )
        .await?
        .get(0);
    let mut tables = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        // Exact counts: the statistics views lag other backends' commits by
        // up to their flush interval (10 s when idle).
        let row = client
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM {table}), \
                            (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                             JOIN pg_am a ON a.oid = c.relam \
                             WHERE i.indrelid = '{table}'::regclass AND a.amname <> 'brin')"
                ),
                &[],
            )
            .await?;
        tables.push((table.to_owned(), row.get(0), row.get(1)));
    }
    Ok(Snapshot { wal_bytes, tables })
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
