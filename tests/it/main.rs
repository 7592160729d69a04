//! Integration tests against the real RabbitMQ and PostgreSQL on this
//! machine. Each test has its own database and queue names, runs real
//! `procinst` processes, and bounds every wait.
//!
//! [`helpers`] is what every test stands on (the environment, the worker
//! process, the AMQP client, fixtures, waits); [`support`] what some tests
//! run beside the worker (a proxy, an OTLP collector, a load sampler,
//! PostgreSQL clusters and RabbitMQ 4 nodes of their own); [`faults`] holds
//! the faults injected for real, one file per subject, and [`chaos`] all of
//! them at once; every other module is one feature.

mod helpers;
mod support;

mod alarms;
mod batching;
mod broker_tls;
mod chaos;
mod cluster;
mod codes;
mod commands;
mod dashboards;
mod dead_letters;
mod dlq_browse;
mod faults;
mod idempotency;
mod kubernetes;
mod lanes;
mod least_privilege;
mod loadtest_report;
mod request_show;
mod requests;
mod routing;
mod secrets;
mod sharing;
mod startup;
mod tls;
mod topology;
mod tracing;
