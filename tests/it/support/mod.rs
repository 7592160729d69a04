//! What some tests run beside the worker, each in a module of its own:
//!
//! - [`proxy`]: a TCP proxy that cuts connections or refuses them for a while;
//! - [`otlp`]: an OTLP/HTTP collector that keeps the spans it receives;
//! - [`load`]: a sampler of a worker's `/metrics` under load, and its stalls;
//! - [`pg_cluster`]: PostgreSQL clusters of a test's own (TLS, a standby);
//! - [`rabbitmq4`]: the RabbitMQ 4 cluster's nodes, their faults and alarms.

pub mod load;
pub mod otlp;
pub mod pg_cluster;
pub mod proxy;
pub mod rabbitmq4;
