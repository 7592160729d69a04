//! What every integration test stands on, by subject:
//!
//! - [`env`]: the test's own database and queue names, the broker and
//!   database under test, and their removal when the test ends;
//! - [`worker`]: the `procinst` binary as a child process, run to
//!   completion as a command or kept running as `procinst run`;
//! - [`client`]: the AMQP client that publishes requests and reads replies;
//! - [`fixtures`]: requests and service instances to send and to load;
//! - [`wait`]: polls of a condition, each under a limit.
//!
//! The other test files name everything through this module
//! (`crate::helpers::Env`), wherever it lives.

mod client;
mod env;
mod fixtures;
mod wait;
mod worker;

pub use client::{Client, connect_any, header_text};
pub use env::{
    Env, MAX_TEST_BULK_SHARDS, PG_ADMIN_URL, TEST_BULK_SHARDS, WAIT, amqp_addr, amqp_url,
    amqp_url_via, connect, rabbitmqctl, unique,
};
pub use fixtures::{request, seed_request};
pub use wait::eventually_true;
pub use worker::{Worker, http_get, metric, ready_within};
