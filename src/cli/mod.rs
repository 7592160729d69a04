//! The `procinst` command line: one module per subcommand, each with its
//! arguments and its `run`.

mod dlq;
mod health;
mod input;
mod loadtest;
mod migrate;
mod prune;
mod publish;
mod request;
mod run;
mod service_instance;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// BlueKing CMDB process-instance creation, as a RabbitMQ worker.
#[derive(Parser, Debug)]
#[command(name = "procinst", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the worker (applies pending migrations first).
    Run,
    /// Apply pending migrations and exit.
    Migrate,
    /// Delete request_log rows older than the retention.
    Prune,
    /// Service instances, which CMDB owns.
    #[command(subcommand)]
    ServiceInstance(service_instance::Command),
    /// Publish a JSON Lines file of requests (bulk backfill).
    Publish(publish::PublishArgs),
    /// Inspect and replay dead-lettered messages.
    #[command(subcommand)]
    Dlq(dlq::Command),
    /// Measure throughput and latency against a running worker.
    Loadtest(loadtest::LoadtestArgs),
    /// What happened to one request.
    #[command(subcommand)]
    Request(request::Command),
    /// Ask a running worker (at PROCINST_HTTP_ADDR) whether it is ready;
    /// exit 0 or 1, for container health checks.
    Health(health::HealthArgs),
}

/// Runs the chosen command; `Err` is printed with its causes by `main`.
pub async fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    cli.settings.read_secret_files()?;
    cli.settings.validate()?;
    match cli.command {
        Command::Run => run::run(cli.settings).await,
        Command::Migrate => migrate::run(&cli.settings).await,
        Command::Prune => prune::run(&cli.settings).await,
        Command::ServiceInstance(command) => service_instance::run(&cli.settings, command).await,
        Command::Publish(args) => publish::run(&cli.settings, args).await,
        Command::Dlq(command) => dlq::run(&cli.settings, command).await,
        Command::Loadtest(args) => loadtest::run(&cli.settings, args).await,
        Command::Request(command) => request::run(&cli.settings, command).await,
        Command::Health(args) => health::run(cli.settings.http_addr, args).await,
    }
}
