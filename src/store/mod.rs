//! All SQL: the pool, migrations, the batch write, the idempotency log and
//! the service-instance queries. Functions take a client or transaction so
//! that the caller owns the transaction boundary; nothing here knows AMQP.
//!
//! Every connection, pooled or not, is made from one parsed `DATABASE_URL`
//! ([`DatabaseUrl`]: several hosts, `target_session_attrs`, libpq's five
//! `sslmode`s and `sslrootcert`) and one rustls connector (`tls`).

mod copy;
mod database_url;
mod error;
pub mod history;
mod lookup;
mod migrate;
mod pool;
pub mod request_log;
mod round;
pub mod service_instance;
pub mod shards;
pub mod stats;
mod tls;
mod write;

pub use database_url::{DatabaseUrl, Roots, SslMode, UrlError, Verification};
pub use error::StoreError;
pub use lookup::{Existing, Lookup, ProcessKey, ServiceInstance, StoredReply, Wanted};
pub use migrate::{migrate, required_version, schema_version};
pub use pool::{connect_pool, connect_worker_pool, ensure_database, writable};
pub use round::Round;
pub use tls::TlsError;
pub use write::{NewProcess, NewRequest};

/// A pooled connection.
pub type Client = deadpool_postgres::Object;
