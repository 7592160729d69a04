//! The environment of one test: a database and queue names of its own on
//! the broker and the database under test, removed when it is dropped
//! together with the workers it started.

use std::{
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lapin::options::QueueDeleteOptions;
use tokio_postgres::NoTls;

use super::client::{Client, connect_any};
use super::worker::Worker;

/// The broker the tests use: RabbitMQ on this machine unless
/// `PROCINST_TEST_AMQP_URL` points them at another (CI runs the suite a
/// second time against a RabbitMQ 4 node, see `tests/infra/rabbitmq4.sh`).
pub fn amqp_url() -> String {
    std::env::var("PROCINST_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// `rabbitmqctl` for the test broker: the machine's own unless
/// `PROCINST_TEST_RABBITMQCTL` gives another command line (for the RabbitMQ 4
/// node: `tests/infra/rabbitmq4.sh ctl procinst4a`).
pub fn rabbitmqctl() -> Command {
    let line = std::env::var("PROCINST_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into());
    let mut words = line.split_whitespace();
    let mut cmd = Command::new(words.next().expect("a rabbitmqctl command"));
    cmd.args(words);
    cmd
}

/// `host:port` of the test broker, for proxies in front of it.
pub fn amqp_addr() -> String {
    let url = url::Url::parse(&amqp_url()).expect("PROCINST_TEST_AMQP_URL is a URL");
    format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5672)
    )
}

/// An AMQP URL for the test broker's vhost and credentials at `addr`.
pub fn amqp_url_via(addr: impl std::fmt::Display) -> String {
    let mut url = url::Url::parse(&amqp_url()).expect("PROCINST_TEST_AMQP_URL is a URL");
    let addr = addr.to_string();
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    url.set_host(Some(host)).expect("host");
    url.set_port(Some(port.parse().expect("port")))
        .expect("port");
    url.to_string()
}

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Upper bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A client of the PostgreSQL database at `url`.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(conn);
    client
}

/// Shards of the bulk lane a test's workers declare unless it says
/// otherwise.
pub const TEST_BULK_SHARDS: u16 = 2;
/// The most shards a test may ask for: its environment removes that many.
pub const MAX_TEST_BULK_SHARDS: u16 = 8;

/// One test's database and queue names.
pub struct Env {
    pub id: String,
    pub database: String,
    pub request_queue: String,
    pub reply_queue: String,
    pub dead_queue: String,
    pub dlx: String,
    /// The broker's nodes, comma-separated: one unless a test says otherwise.
    pub amqp: String,
    workers: Vec<Worker>,
}

impl Env {
    pub async fn new() -> Env {
        Env::on_broker(&amqp_url()).await
    }

    /// An environment whose worker and client use `amqp`, a list of nodes.
    pub async fn on_broker(amqp: &str) -> Env {
        let id = unique("it");
        let env = Env {
            database: format!("procinst_{id}"),
            request_queue: format!("{id}.requests"),
            reply_queue: format!("{id}.replies"),
            dead_queue: format!("{id}.dead"),
            dlx: format!("{id}.dlx"),
            amqp: amqp.to_owned(),
            id,
            workers: Vec::new(),
        };
        env.migrate();
        env
    }

    /// The bulk lane's queue: the request queue's name with `.bulk`; also
    /// the name of the bulk lane's exchange.
    pub fn bulk_queue(&self) -> String {
        format!("{}.bulk", self.request_queue)
    }

    /// Shard `index` of the bulk lane.
    pub fn bulk_shard(&self, index: u16) -> String {
        format!("{}.{index}", self.bulk_queue())
    }

    pub fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.database)
    }

    /// Environment variables a `procinst` process of this test needs.
    pub fn vars(&self) -> Vec<(String, String)> {
        [
            ("AMQP_URL", self.amqp.clone()),
            ("DATABASE_URL", self.database_url()),
            ("PROCINST_REQUEST_QUEUE", self.request_queue.clone()),
            ("PROCINST_REPLY_QUEUE", self.reply_queue.clone()),
            ("PROCINST_DEAD_LETTER_QUEUE", self.dead_queue.clone()),
            ("PROCINST_DEAD_LETTER_EXCHANGE", self.dlx.clone()),
            // Fewer quorum queues to declare per test than the default 8;
            // the sharing tests set their own.
            ("PROCINST_BULK_SHARDS", TEST_BULK_SHARDS.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn migrate(&self) {
        let out = self.procinst(&["migrate"], None);
        assert!(
            out.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `procinst run` and waits until it is ready.
    /// Starts a worker and waits until it is ready. It is the env's before
    /// the wait, so that one that never gets ready is killed with the env
    /// too, not left running after a failed test.
    pub async fn start_worker(&mut self, extra: &[(&str, &str)]) -> usize {
        let worker = Worker::spawn(self, extra);
        self.workers.push(worker);
        let index = self.workers.len() - 1;
        self.workers[index].wait_ready().await;
        index
    }

    pub fn worker(&mut self, index: usize) -> &mut Worker {
        &mut self.workers[index]
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.database_url()).await
    }

    /// Holds back every write to `process` until the returned connection
    /// commits: a batch that reaches its insert waits there, so the
    /// database stays busy with it for as long as the test likes.
    pub async fn hold_process_writes(&self) -> tokio_postgres::Client {
        let db = self.db().await;
        db.batch_execute("BEGIN; LOCK TABLE process IN EXCLUSIVE MODE")
            .await
            .expect("lock process");
        db
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db().await.query_one(sql, &[]).await.expect(sql).get(0)
    }

    pub async fn client(&self) -> Client {
        Client::new(self).await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            worker.kill();
            if std::thread::panicking() {
                eprintln!(
                    "--- log of worker {} ---\n{}",
                    worker.child.id(),
                    worker.log()
                );
            }
        }
        let database = self.database.clone();
        let mut queues = vec![
            self.request_queue.clone(),
            self.bulk_queue(),
            self.reply_queue.clone(),
            self.dead_queue.clone(),
        ];
        queues.extend((0..MAX_TEST_BULK_SHARDS).map(|i| self.bulk_shard(i)));
        let exchanges = [
            self.dlx.clone(),
            self.bulk_queue(),
            format!("{}.unrouted", self.bulk_queue()),
        ];
        let amqp = self.amqp.clone();
        // Drop cannot await; clean up on a runtime of our own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Some(conn) = connect_any(&amqp).await {
                    if let Ok(ch) = conn.create_channel().await {
                        for q in &queues {
                            let _ = ch
                                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                                .await;
                        }
                        for x in &exchanges {
                            let _ = ch
                                .exchange_delete(x.as_str().into(), Default::default())
                                .await;
                        }
                    }
                    let _ = conn.close(200, "bye".into()).await;
                }
                let admin = connect(PG_ADMIN_URL).await;
                let _ = admin
                    .execute(
                        &format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"),
                        &[],
                    )
                    .await;
            });
        })
        .join();
    }
}
