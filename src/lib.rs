//! procinst: BlueKing CMDB's `create_process_instance` as a RabbitMQ worker
//! writing to PostgreSQL.
//!
//! # Layout
//!
//! Data flows one way: broker -> worker -> domain -> store -> worker -> broker.
//!
//! - [`config`]: one `Settings` struct from flags and environment.
//! - [`domain`]: the request as types: decoding, validation, codes, replies. No I/O.
//! - [`store`]: all SQL: connections (hosts, TLS), pool, migrations, lookups,
//!   the batch write, request_log.
//! - [`broker`]: all lapin: connection, topology, publishing with confirms.
//! - [`worker`]: deliveries -> batches -> decisions -> replies -> acks, reconnects.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`cli`]: one module per subcommand.
//! - [`telemetry`]: the tracing subscriber and the log format.
//! - [`redact`]: URLs with their passwords hidden, for logs and errors.

pub mod broker;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod redact;
pub mod store;
pub mod telemetry;
pub mod worker;
