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
