//! One `Settings` struct, read from flags and environment once at start.
//!
//! Every setting of contract section 7 is a flag with an environment variable
//! behind it. URLs carry credentials, so `Settings` never prints them: its
//! `Debug` and [`Settings::summary`] go through [`redact_url`], entry by
//! entry for `AMQP_URL`'s list of nodes.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;
use secrecy::{ExposeSecret, SecretString};

use crate::broker::{Endpoints, redact_list};
use crate::redact::redact_url;
use crate::telemetry::LogFormat;

/// Names of the queues and exchange the worker declares and uses.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Queue the requests arrive on.
    #[arg(
        long,
        env = "PROCINST_REQUEST_QUEUE",
        default_value = "procinst.requests",
        global = true
    )]
    pub request_queue: String,
    /// Queue of the bulk lane, for backfills and replays; unset, the
    /// request queue's name with `.bulk` appended, so that a deployment
    /// that renames its request queue renames its bulk lane with it.
    #[arg(long, env = "PROCINST_BULK_QUEUE", global = true)]
    pub bulk_queue: Option<String>,
    /// Queues of the bulk lane that a business is given one of while it
    /// publishes, so that businesses share the lane fairly (0: none, every
    /// business in the bulk queue). Named after the bulk queue: `.0`, `.1`
    /// and so on.
    #[arg(
        long,
        env = "PROCINST_BULK_SHARDS",
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(0..=256),
        global = true
    )]
    pub bulk_shards: u16,
    /// Default queue for replies when a request has no `reply_to`.
    #[arg(
        long,
        env = "PROCINST_REPLY_QUEUE",
        default_value = "procinst.replies",
        global = true
    )]
    pub reply_queue: String,
    /// Queue that keeps unreadable and poisonous messages.
    #[arg(
        long,
        env = "PROCINST_DEAD_LETTER_QUEUE",
        default_value = "procinst.dead",
        global = true
    )]
    pub dead_letter_queue: String,
    /// Exchange the request queue dead-letters into.
    #[arg(
        long,
        env = "PROCINST_DEAD_LETTER_EXCHANGE",
        default_value = "procinst.dlx",
        global = true
    )]
    pub dead_letter_exchange: String,
    /// Deliveries of one message before the broker dead-letters it.
    #[arg(
        long,
        env = "PROCINST_DELIVERY_LIMIT",
        default_value_t = 10,
        global = true
    )]
    pub delivery_limit: u32,
    /// Nodes each quorum queue is replicated to when procinst declares it
    /// (`x-quorum-initial-group-size`); unset, the broker's default. A queue
    /// that already exists keeps its own: a different value is refused as a
    /// configuration error, like any other argument.
    #[arg(
        long,
        env = "PROCINST_QUORUM_INITIAL_GROUP_SIZE",
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub quorum_initial_group_size: Option<u32>,
}

/// An exchange and routing key to publish a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub exchange: String,
    pub routing_key: String,
}

impl Route {
    /// `queue` by name, through the default exchange.
    pub fn queue(queue: &str) -> Route {
        Route {
            exchange: String::new(),
            routing_key: queue.to_owned(),
        }
    }
}

/// Which of the two request queues a message travels: the interactive lane
/// for requests someone waits for, the bulk lane for backfills and replays.
/// A worker serves both, interactive first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Lane {
    Interactive,
    Bulk,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Interactive, Lane::Bulk];

    /// The `lane` label of the metrics and the word in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Interactive => "interactive",
            Lane::Bulk => "bulk",
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Topology {
    /// The bulk lane's exchange: a direct exchange, named like the bulk
    /// queue, that a backfill publishes to with its `bk_biz_id` as the
    /// routing key. A business with a shard is routed to it; every other
    /// message goes to the bulk queue, through [`Self::bulk_unrouted`].
    pub fn bulk_exchange(&self) -> String {
        self.queue(Lane::Bulk)
    }

    /// The bulk exchange's alternate exchange, a fanout bound to the bulk
    /// queue: what no shard takes is not lost.
    pub fn bulk_unrouted(&self) -> String {
        format!("{}.unrouted", self.queue(Lane::Bulk))
    }

    /// Shard `index` of the bulk lane.
    pub fn bulk_shard(&self, index: u16) -> String {
        format!("{}.{index}", self.queue(Lane::Bulk))
    }

    /// The queues a lane consumes: the interactive queue; the bulk queue
    /// and its shards, in shard order. The position in this list is a
    /// delivery's source.
    pub fn sources(&self, lane: Lane) -> Vec<String> {
        match lane {
            Lane::Interactive => vec![self.queue(lane)],
            Lane::Bulk => std::iter::once(self.queue(lane))
                .chain((0..self.bulk_shards).map(|i| self.bulk_shard(i)))
                .collect(),
        }
    }

    /// Where a publisher sends a request of business `bk_biz_id` on
    /// `lane`: the interactive queue through the default exchange; the
    /// bulk exchange with the business as the routing key (none: the bulk
    /// queue).
    pub fn route(&self, lane: Lane, bk_biz_id: Option<i64>) -> Route {
        match lane {
            Lane::Interactive => Route::queue(&self.queue(lane)),
            Lane::Bulk => Route {
                exchange: self.bulk_exchange(),
                routing_key: bk_biz_id.map(|b| b.to_string()).unwrap_or_default(),
            },
        }
    }

    /// The queue of `lane`.
    pub fn queue(&self, lane: Lane) -> String {
        match lane {
            Lane::Interactive => self.request_queue.clone(),
            Lane::Bulk => self
                .bulk_queue
                .clone()
                .unwrap_or_else(|| format!("{}.bulk", self.request_queue)),
        }
    }
}

/// Everything the commands need to know about their surroundings.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// RabbitMQ URL, or a cluster's nodes as a comma-separated list of URLs,
    /// each with its own credentials (which are never logged). The nodes
    /// are tried in shuffled order; a lost connection goes on to the next.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true
    )]
    pub amqp_url: SecretUrlList,
    /// A file holding `AMQP_URL` (a Docker or Kubernetes secret), read at
    /// start and used instead of it; a trailing newline is ignored.
    #[arg(long, env = "AMQP_URL_FILE", global = true)]
    pub amqp_url_file: Option<PathBuf>,
    /// PEM file of the CA that signed the brokers' certificates, trusted by
    /// `amqps://` connections besides the system roots.
    #[arg(long, env = "PROCINST_AMQP_CA_FILE", global = true)]
    pub amqp_ca_file: Option<PathBuf>,
    /// PEM file of the certificate (chain) `amqps://` connections present
    /// to the broker; with `PROCINST_AMQP_CLIENT_KEY_FILE`.
    #[arg(
        long,
        env = "PROCINST_AMQP_CLIENT_CERT_FILE",
        requires = "amqp_client_key_file",
        global = true
    )]
    pub amqp_client_cert_file: Option<PathBuf>,
    /// PEM file (PKCS#8) of the client certificate's private key.
    #[arg(
        long,
        env = "PROCINST_AMQP_CLIENT_KEY_FILE",
        requires = "amqp_client_cert_file",
        global = true
    )]
    pub amqp_client_key_file: Option<PathBuf>,
    /// PostgreSQL URL (credentials are never logged).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/procinst",
        global = true
    )]
    pub database_url: SecretUrl,
    /// A file holding `DATABASE_URL`, read at start and used instead of
    /// it; a trailing newline is ignored.
    #[arg(long, env = "DATABASE_URL_FILE", global = true)]
    pub database_url_file: Option<PathBuf>,
    #[command(flatten)]
    pub topology: Topology,
    /// Unacknowledged deliveries the broker may hand this worker on each
    /// lane: with the body limit, the bound on what one worker holds in
    /// memory. Eight batches' worth, so that while some wait for their
    /// replies' confirms the database and the batches being read always
    /// have work.
    #[arg(long, env = "PROCINST_PREFETCH", default_value_t = 2048, global = true)]
    pub prefetch: u16,
    /// Most requests written in one database transaction.
    #[arg(
        long,
        env = "PROCINST_BATCH_SIZE",
        default_value_t = 256,
        global = true
    )]
    pub batch_size: usize,
    /// Longest a batch waits for more deliveries after its first one while
    /// the database works on another; with none there, it leaves at once.
    #[arg(
        long,
        env = "PROCINST_BATCH_LINGER_MS",
        default_value_t = 5,
        global = true
    )]
    pub batch_linger_ms: u64,
    /// Database connections kept by the worker; half of them write batches
    /// of one lane at once, and the two lanes together one more. The
    /// default, 6 (3 batches at once), was best measured on a 2-core
    /// machine: see docs/performance.md.
    #[arg(
        long,
        env = "PROCINST_DB_POOL_SIZE",
        default_value_t = 6,
        global = true
    )]
    pub db_pool_size: usize,
    /// Largest request body read; larger ones are dead-lettered unparsed.
    #[arg(
        long,
        env = "PROCINST_MAX_BODY_BYTES",
        default_value_t = 1_048_576,
        global = true
    )]
    pub max_body_bytes: usize,
    /// How long a stored reply answers a repeated `request_id`.
    #[arg(
        long,
        env = "PROCINST_REQUEST_RETENTION_HOURS",
        default_value_t = 168,
        global = true
    )]
    pub request_retention_hours: u32,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "PROCINST_HTTP_ADDR",
        default_value = "127.0.0.1:9464",
        global = true
    )]
    pub http_addr: SocketAddr,
    /// Seconds allowed to drain in-flight work after SIGTERM or SIGINT.
    #[arg(
        long,
        env = "PROCINST_SHUTDOWN_TIMEOUT_S",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_timeout_s: u64,
    /// Seconds a business's shard of the bulk lane stays its after its
    /// last delivery; then, once the shard is empty, another business may
    /// be given it.
    #[arg(
        long,
        env = "PROCINST_BULK_SHARD_IDLE_S",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub bulk_shard_idle_s: u64,
    /// Log format; `RUST_LOG` filters.
    #[arg(
        long,
        env = "PROCINST_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// A setting that cannot work, found before anything connects.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error(
        "PROCINST_PREFETCH ({prefetch}) must be at least PROCINST_BATCH_SIZE ({batch_size}), or batches never fill"
    )]
    PrefetchBelowBatch { prefetch: u16, batch_size: usize },
    #[error(
        "PROCINST_DB_POOL_SIZE ({pool}) must exceed the {writers} batches written at once, \
         so that /readyz and pruning always find a connection"
    )]
    PoolTooSmall { pool: usize, writers: usize },
    #[error("{name} is not a valid URL: {reason}")]
    Url { name: &'static str, reason: String },
    #[error("{name} ({}): cannot read the file: {source}", path.display())]
    SecretFile {
        name: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} ({}): the file is empty", path.display())]
    EmptySecretFile { name: &'static str, path: PathBuf },
}

/// The contents of secret file `path` (setting `name`), without its
/// trailing newline.
fn read_secret_file(name: &'static str, path: &std::path::Path) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::SecretFile {
        name,
        path: path.to_owned(),
        source,
    })?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(SettingsError::EmptySecretFile {
            name,
            path: path.to_owned(),
        });
    }
    Ok(value.to_owned())
}

impl Settings {
    /// Reads `AMQP_URL_FILE` and `DATABASE_URL_FILE` when set, in place of
    /// `AMQP_URL` and `DATABASE_URL`.
    pub fn read_secret_files(&mut self) -> Result<(), SettingsError> {
        if let Some(path) = &self.amqp_url_file {
            self.amqp_url = SecretUrlList(read_secret_file("AMQP_URL_FILE", path)?.into());
        }
        if let Some(path) = &self.database_url_file {
            self.database_url = SecretUrl(read_secret_file("DATABASE_URL_FILE", path)?.into());
        }
        Ok(())
    }

    /// Checks what clap cannot: cross-field rules and URL syntax.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (name, value) in [
            ("PROCINST_PREFETCH", usize::from(self.prefetch)),
            ("PROCINST_BATCH_SIZE", self.batch_size),
            ("PROCINST_DB_POOL_SIZE", self.db_pool_size),
            ("PROCINST_MAX_BODY_BYTES", self.max_body_bytes),
            (
                "PROCINST_DELIVERY_LIMIT",
                self.topology.delivery_limit as usize,
            ),
            (
                "PROCINST_REQUEST_RETENTION_HOURS",
                self.request_retention_hours as usize,
            ),
        ] {
            if value == 0 {
                return Err(SettingsError::Zero(name));
            }
        }
        if usize::from(self.prefetch) < self.batch_size {
            return Err(SettingsError::PrefetchBelowBatch {
                prefetch: self.prefetch,
                batch_size: self.batch_size,
            });
        }
        if self.db_pool_size <= self.concurrent_batches() {
            return Err(SettingsError::PoolTooSmall {
                pool: self.db_pool_size,
                writers: self.concurrent_batches(),
            });
        }
        Endpoints::parse(self.amqp_url.expose()).map_err(|e| SettingsError::Url {
            name: "AMQP_URL",
            reason: e.to_string(),
        })?;
        // Read as the store reads it: several hosts, all five sslmodes.
        crate::store::DatabaseUrl::parse(self.database_url.expose()).map_err(|e| {
            SettingsError::Url {
                name: "DATABASE_URL",
                reason: crate::telemetry::error_chain(&e),
            }
        })?;
        Ok(())
    }

    /// Batches of one lane written at once, each on its own connection:
    /// half the pool. The two lanes together write at most one more (a
    /// slot only interactive batches may take), so that a connection stays
    /// free for readiness probes and pruning whenever the pool has three
    /// or more.
    pub fn concurrent_batches(&self) -> usize {
        (self.db_pool_size / 2).max(1)
    }

    /// The most raw body bytes the worker can hold: the broker hands it up
    /// to the prefetch in unacked messages from each queue it consumes (the
    /// interactive queue, the bulk queue and each bulk shard), each up to
    /// the body limit (the larger ones are held too, until they are
    /// dead-lettered). Logged at start, so that an operator sees what the
    /// settings add up to.
    pub fn held_body_bytes_at_most(&self) -> u64 {
        let sources: usize = Lane::ALL
            .iter()
            .map(|&l| self.topology.sources(l).len())
            .sum();
        sources as u64 * u64::from(self.prefetch) * self.max_body_bytes as u64
    }

    pub fn batch_linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
    }

    /// The broker client certificate's files, when both are given.
    pub fn amqp_client_cert(&self) -> Option<crate::broker::ClientCertFiles<'_>> {
        Some(crate::broker::ClientCertFiles {
            cert: self.amqp_client_cert_file.as_deref()?,
            key: self.amqp_client_key_file.as_deref()?,
        })
    }

    pub fn bulk_shard_idle(&self) -> Duration {
        Duration::from_secs(self.bulk_shard_idle_s)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_s)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.request_retention_hours) * 3600)
    }

    /// One line with the effective settings, credentials redacted.
    pub fn summary(&self) -> String {
        format!("{self:?}")
    }
}

/// A URL that may carry credentials. Its text is reached only through
/// [`SecretUrl::expose`]; `Debug` and `Display` show it redacted, so a
/// `Settings` can be logged as it is.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

/// Like [`SecretUrl`], for a comma-separated list of URLs (`AMQP_URL`):
/// every entry's password is redacted.
#[derive(Clone)]
pub struct SecretUrlList(SecretString);

impl SecretUrl {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl SecretUrlList {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(SecretString::from(s)))
    }
}

impl std::str::FromStr for SecretUrlList {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(SecretString::from(s)))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.expose()))
    }
}

impl fmt::Display for SecretUrlList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_list(self.expose()))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl fmt::Debug for SecretUrlList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: Settings,
    }

    /// The README's configuration table gives every setting's variable
    /// with the default the code has (or `unset` when it has none).
    #[test]
    fn the_readme_gives_every_setting_with_its_default() {
        use clap::CommandFactory;
        let readme = include_str!("../README.md");
        let rows: std::collections::HashMap<&str, &str> = readme
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| `")?.split(" | ");
                let variable = cells.next()?.split('`').next()?;
                Some((variable, cells.next()?))
            })
            .collect();
        for arg in Flags::command().get_arguments() {
            let Some(variable) = arg.get_env().and_then(|v| v.to_str()) else {
                continue;
            };
            let row = rows
                .get(variable)
                .unwrap_or_else(|| panic!("the README's table has no row for {variable}"));
            match arg.get_default_values() {
                [] => assert!(row.starts_with("unset"), "{variable}: {row}"),
                [default] => {
                    let default = default.to_str().expect("text");
                    assert_eq!(row.trim_matches('`'), default, "{variable}");
                }
                more => panic!("{variable}: several defaults {more:?}"),
            }
        }
    }

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec!["procinst"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("flags parse").settings
    }

    #[test]
    fn a_secret_file_replaces_its_setting_without_its_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("procinst-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (amqp, database) = (dir.join("amqp"), dir.join("database"));
        std::fs::write(&amqp, "amqp://u:from-file@rabbit:5672/%2f\n").expect("write");
        std::fs::write(&database, "postgres://u:pw@db/procinst\r\n").expect("write");
        let mut s = settings(&[
            "--amqp-url-file",
            amqp.to_str().expect("utf-8"),
            "--database-url-file",
            database.to_str().expect("utf-8"),
        ]);
        s.read_secret_files().expect("readable files");
        assert_eq!(s.amqp_url.expose(), "amqp://u:from-file@rabbit:5672/%2f");
        assert_eq!(s.database_url.expose(), "postgres://u:pw@db/procinst");
        assert!(!s.summary().contains("from-file"), "{}", s.summary());

        std::fs::write(&database, "\n").expect("write");
        let err = s
            .read_secret_files()
            .expect_err("an empty file")
            .to_string();
        assert!(err.starts_with("DATABASE_URL_FILE ("), "{err}");
        let mut missing = settings(&["--amqp-url-file", "/nonexistent/amqp-url"]);
        let err = missing
            .read_secret_files()
            .expect_err("no such file")
            .to_string();
        assert!(
            err.starts_with("AMQP_URL_FILE (/nonexistent/amqp-url): cannot read the file"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_bulk_lane_follows_the_request_queue_unless_named() {
        let renamed = settings(&["--request-queue", "team-a.requests"]);
        assert_eq!(renamed.topology.queue(Lane::Interactive), "team-a.requests");
        assert_eq!(renamed.topology.queue(Lane::Bulk), "team-a.requests.bulk");
        let named = settings(&["--bulk-queue", "backfills"]);
        assert_eq!(named.topology.queue(Lane::Bulk), "backfills");
        assert_eq!(
            settings(&[]).topology.queue(Lane::Bulk),
            "procinst.requests.bulk"
        );
    }

    #[test]
    fn the_defaults_are_valid() {
        settings(&[]).validate().expect("defaults work");
    }

    #[test]
    fn every_queue_consumed_holds_a_prefetch_of_bodies_at_the_limit() {
        // The interactive queue, the bulk queue and its 8 shards.
        assert_eq!(settings(&[]).held_body_bytes_at_most(), 20 << 30);
        let lower = settings(&["--prefetch", "512", "--max-body-bytes", "65536"]);
        assert_eq!(lower.held_body_bytes_at_most(), 320 << 20);
        let unsharded = settings(&[
            "--prefetch",
            "512",
            "--max-body-bytes",
            "65536",
            "--bulk-shards",
            "0",
        ]);
        assert_eq!(unsharded.held_body_bytes_at_most(), 64 << 20);
    }

    #[test]
    fn a_pool_with_no_connection_beside_the_writers_is_refused() {
        let error = settings(&["--db-pool-size", "1"])
            .validate()
            .expect_err("one connection, one writer");
        assert!(matches!(
            error,
            SettingsError::PoolTooSmall {
                pool: 1,
                writers: 1
            }
        ));
        assert!(
            error.to_string().contains("PROCINST_DB_POOL_SIZE (1)"),
            "{error}"
        );
        settings(&["--db-pool-size", "2"])
            .validate()
            .expect("one writer and one spare connection");
    }

    #[test]
    fn a_prefetch_below_the_batch_size_is_refused() {
        let error = settings(&["--prefetch", "10", "--batch-size", "11"])
            .validate()
            .expect_err("batches could never fill");
        assert!(
            error.to_string().contains("PROCINST_PREFETCH (10)"),
            "{error}"
        );
    }

    #[test]
    fn a_list_of_broker_urls_is_valid_and_every_password_is_hidden() {
        let s = settings(&[
            "--amqp-url",
            "amqp://a:first@n1:5682/%2f,amqp://b:second@n2:5683/%2f",
        ]);
        s.validate().expect("a list of nodes is valid");
        let summary = s.summary();
        assert!(summary.contains("amqp://a:***@n1:5682/%2f,amqp://b:***@n2:5683/%2f"));
        assert!(
            !summary.contains("first") && !summary.contains("second"),
            "{summary}"
        );
    }

    #[test]
    fn settings_print_their_urls_redacted_by_type() {
        let s = settings(&[
            "--amqp-url",
            "amqp://a:pw-one@n1/%2f,amqp://b:pw-two@n2/%2f",
            "--database-url",
            "postgres://app:pw-three@db1,db2/procinst?password=pw-four",
        ]);
        let shown = format!("{s:?} {} {}", s.amqp_url, s.database_url);
        for secret in ["pw-one", "pw-two", "pw-three", "pw-four"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(s.database_url.expose().contains("pw-three"));
    }

    #[test]
    fn a_bad_broker_url_in_the_list_is_named_redacted() {
        let s = settings(&["--amqp-url", "amqp://a:p@n1/%2f,https://b:hunter2@n2/"]);
        let err = s.validate().expect_err("https is not a broker").to_string();
        assert!(
            err.contains("AMQP_URL") && err.contains("https://b:***@n2/"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    fn settings_with_database_url(url: &str) -> Settings {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        Cli::parse_from(["procinst", "--database-url", url]).settings
    }

    #[test]
    fn a_database_url_with_several_hosts_and_verify_full_is_valid() {
        let settings = settings_with_database_url(
            "postgres://app@db1:5432,db2:5433/procinst?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/etc/ca.pem",
        );
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn a_key_value_database_url_is_refused_with_the_form_to_use() {
        let settings = settings_with_database_url("host=db1 dbname=procinst password=s3cret");
        let e = settings.validate().expect_err("refused");
        let text = e.to_string();
        assert!(text.starts_with("DATABASE_URL"), "{text}");
        assert!(text.contains("postgres://"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
