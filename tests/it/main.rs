//! Integration tests against the real RabbitMQ and PostgreSQL on this
//! machine. Each test has its own database and queue names, runs real
//! `procinst` processes, and bounds every wait.

mod helpers;
mod pg_cluster;
mod proxy;

mod codes;
mod commands;
mod database;
mod dead_letters;
mod faults;
mod idempotency;
mod requests;
mod routing;
mod secrets;
mod tls;
mod topology;
