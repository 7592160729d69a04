use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use std::time::Duration;
use tokio_postgres::config::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{DatabaseUrl, StoreError, tls};

/// How long a caller waits for a free connection before the pool reports
/// trouble; short, so that a dead database shows up as not-ready quickly.
const POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection of procinst is made with, pooled or not: the
/// parsed `DATABASE_URL` (all its hosts, `target_session_attrs`) and the TLS
/// connector its `sslmode` and `sslrootcert` ask for. One place, so that the
/// pool, migrations and database creation cannot disagree.
pub(super) fn connection(database_url: &str) -> Result<(Config, MakeRustlsConnect), StoreError> {
    let url = DatabaseUrl::parse(database_url)?;
    let tls = tls::connector(&url)?;
    let mut config = url.config;
    // Per host: a silent host must not hold up trying the next one.
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("procinst");
    Ok((config, tls))
}

/// A pool of `size` connections; connections are made lazily.
pub fn connect_pool(database_url: &str, size: usize) -> Result<Pool, StoreError> {
    let (config, tls) = connection(database_url)?;
    pool(config, tls, size)
}

/// The worker's pool: like [`connect_pool`], with sequential scans costed
/// out of its sessions' plans.
///
/// Every statement of the batch path probes a primary key or a unique
/// index, and each is prepared once per connection and kept for the
/// connection's life, with the generic plan PostgreSQL settles on after a
/// few executions. On a fresh database that plan is made while
/// `request_log` and `process` are nearly empty, where a sequential scan is
/// the cheaper plan; the tables then grow under the cached plan (until an
/// ANALYZE replaces it), and each lookup of a batch scans every row
/// instead of probing the index: measured at a fixed 2,300 requests/s,
/// 2 ms of PostgreSQL CPU per batch. With `enable_seqscan` off the plan is
/// the index probe whatever the table's size when it was made.
pub fn connect_worker_pool(database_url: &str, size: usize) -> Result<Pool, StoreError> {
    let (mut config, tls) = connection(database_url)?;
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} -c enable_seqscan=off"),
        _ => "-c enable_seqscan=off".to_owned(),
    };
    config.options(&options);
    pool(config, tls, size)
}

fn pool(config: Config, tls: MakeRustlsConnect, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(POOL_WAIT),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        })
        .build()?;
    Ok(pool)
}

/// Creates the database named in `database_url` when it is missing and the
/// role may create it, so that the defaults work on a fresh server.
pub async fn ensure_database(database_url: &str) -> Result<(), StoreError> {
    let (config, tls) = connection(database_url)?;
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    if let Ok((client, conn)) = config.connect(tls.clone()).await {
        drop(client);
        drop(conn);
        return Ok(());
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, conn) = admin.connect(tls).await?;
    let task = tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = name.replace('"', "\"\"");
        match client
            .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another worker created it between our check and our CREATE.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

/// Whether a pooled session could write now: `Some(false)` on a standby or
/// a database turned read-only (which still answer queries), `None` when no
/// connection answers.
pub async fn writable(pool: &Pool) -> Option<bool> {
    let client = pool.get().await.ok()?;
    let rows = client
        .simple_query("SHOW transaction_read_only")
        .await
        .ok()?;
    rows.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "off"),
        _ => None,
    })
}
