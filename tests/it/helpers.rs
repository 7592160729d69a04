//! Test environment: a database and queue names of the test's own, a real
//! `procinst run` process, and a client that publishes requests and reads
//! replies. Everything is removed when the environment is dropped.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeleteOptions,
    },
    types::FieldTable,
};
use serde_json::Value;
use tokio_postgres::NoTls;

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
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Runs `procinst ARGS` to completion with this test's settings.
    pub fn procinst(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        self.procinst_with(args, stdin, &[])
    }

    /// Like [`Env::procinst`], with more environment variables.
    pub fn procinst_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        extra: &[(&str, &str)],
    ) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_procinst"));
        cmd.args(args).envs(self.vars()).env("RUST_LOG", "warn");
        cmd.envs(extra.iter().copied());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn procinst");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("procinst output")
    }

    /// Like [`Env::procinst_with`], killed when it runs past [`WAIT`]: for
    /// commands that must fail fast rather than hang.
    pub async fn procinst_within(
        &self,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> std::process::Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_procinst"));
        cmd.args(args).envs(self.vars()).env("RUST_LOG", "warn");
        cmd.envs(extra.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn procinst");
        tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("procinst {args:?} did not finish within {WAIT:?}"))
            .expect("procinst output")
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
    pub async fn start_worker(&mut self, extra: &[(&str, &str)]) -> usize {
        let worker = Worker::spawn(self, extra);
        worker.wait_ready().await;
        self.workers.push(worker);
        self.workers.len() - 1
    }

    pub fn worker(&mut self, index: usize) -> &mut Worker {
        &mut self.workers[index]
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.database_url()).await
    }

    /// Loads service instances directly (the import command has its own test).
    pub async fn service_instance(
        &self,
        id: i64,
        biz: i64,
        supplier: &str,
        template: i64,
        host: i64,
    ) {
        self.db()
            .await
            .execute(
                "INSERT INTO service_instance (id, bk_biz_id, bk_supplier_account, name, service_template_id, bk_host_id) \
                 VALUES ($1, $2, $3, 'si', $4, $5)",
                &[&id, &biz, &supplier, &template, &host],
            )
            .await
            .expect("insert service instance");
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
        let queues = [
            self.request_queue.clone(),
            self.reply_queue.clone(),
            self.dead_queue.clone(),
        ];
        let dlx = self.dlx.clone();
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
                        let _ = ch
                            .exchange_delete(dlx.as_str().into(), Default::default())
                            .await;
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

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(conn);
    client
}

/// A `procinst run` child process with its stderr collected.
pub struct Worker {
    pub child: Child,
    pub http: String,
    pub log: Arc<Mutex<String>>,
}

impl Worker {
    pub fn spawn(env: &Env, extra: &[(&str, &str)]) -> Worker {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let http = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_procinst"));
        cmd.arg("run")
            .envs(env.vars())
            .env("PROCINST_HTTP_ADDR", &http)
            .env("RUST_LOG", "info")
            .env("PROCINST_SHUTDOWN_TIMEOUT_S", "20");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn worker");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        Worker { child, http, log }
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.http);
        tokio::time::timeout(WAIT, async {
            loop {
                if http_get(&url)
                    .await
                    .map(|(status, _)| status == 200)
                    .unwrap_or(false)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("worker not ready; log:\n{}", self.log()));
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "worker did not exit; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A minimal HTTP/1.0 GET: status code and body.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A text header of a message.
pub fn header_text(properties: &BasicProperties, key: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(key)? {
        lapin::types::AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        _ => None,
    }
}

/// A reply as received.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Vec<u8>,
    pub json: Value,
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` header, when the reply carries one.
    pub traceparent: Option<String>,
}

/// Publishes requests and reads replies from a queue.
pub struct Client {
    pub connection: Connection,
    pub channel: Channel,
    request_queue: String,
}

/// A connection to the first node of `list` (comma-separated URLs) that
/// answers within a few seconds.
pub async fn connect_any(list: &str) -> Option<Connection> {
    for url in list.split(',').map(str::trim) {
        let attempt = Connection::connect(url, ConnectionProperties::default());
        if let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            return Some(connection);
        }
    }
    None
}

impl Client {
    pub async fn new(env: &Env) -> Client {
        let connection = connect_any(&env.amqp)
            .await
            .unwrap_or_else(|| panic!("no broker node answers of {}", env.amqp));
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        Client {
            connection,
            channel,
            request_queue: env.request_queue.clone(),
        }
    }

    /// Publishes `body` persistently to the request queue, confirmed.
    pub async fn publish(&self, body: &[u8], properties: BasicProperties) {
        self.publish_to(&self.request_queue.clone(), body, properties)
            .await;
    }

    pub async fn publish_to(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        let acked = self
            .try_publish_to(queue, body, properties)
            .await
            .expect("publish");
        assert!(acked, "publish nacked");
    }

    /// Publishes persistently; whether the broker confirmed it, or the
    /// error of a connection that went away meanwhile.
    pub async fn try_publish_to(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<bool, lapin::Error> {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties.with_delivery_mode(2),
            )
            .await?;
        Ok(confirm.await?.is_ack())
    }

    pub async fn send(&self, body: &Value) {
        self.publish(
            &serde_json::to_vec(body).expect("json"),
            BasicProperties::default(),
        )
        .await;
    }

    /// Declares a durable queue of the test's own for replies.
    pub async fn reply_queue(&self, name: &str) {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
        self.channel
            .queue_declare(
                name.into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .expect("declare reply queue");
    }

    /// A channel of its own consuming `queue`, with manual acks.
    async fn consume(&self, queue: &str) -> (Channel, lapin::Consumer) {
        let channel = self.connection.create_channel().await.expect("channel");
        let consumer = channel
            .basic_consume(
                queue.into(),
                unique("c").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume replies");
        (channel, consumer)
    }

    /// Reads `n` replies from `queue` (acking them), within [`WAIT`].
    pub async fn replies(&self, queue: &str, n: usize) -> Vec<Reply> {
        let (channel, mut consumer) = self.consume(queue).await;
        let mut out = Vec::with_capacity(n);
        let collect = async {
            while out.len() < n {
                let delivery = consumer
                    .next()
                    .await
                    .expect("reply stream ended")
                    .expect("delivery");
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack");
                let json = serde_json::from_slice(&delivery.data).expect("reply is JSON");
                out.push(Reply {
                    traceparent: header_text(&delivery.properties, "traceparent"),
                    correlation_id: delivery
                        .properties
                        .correlation_id()
                        .as_ref()
                        .map(|c| c.as_str().to_owned()),
                    body: delivery.data,
                    json,
                });
            }
        };
        if tokio::time::timeout(WAIT, collect).await.is_err() {
            panic!(
                "timed out waiting for {n} replies on {queue}; got {}",
                out.len()
            );
        }
        let _ = channel.close(200, "bye".into()).await;
        out
    }

    /// Reads replies until `n` distinct request_ids have answered, then for a
    /// moment longer; every reply body per request_id, in arrival order.
    pub async fn replies_per_request(
        &self,
        queue: &str,
        n: usize,
    ) -> HashMap<String, Vec<Vec<u8>>> {
        let (channel, mut consumer) = self.consume(queue).await;
        let mut seen: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let mut settle = Duration::from_millis(0);
        loop {
            let limit = if seen.len() < n { WAIT } else { settle };
            let Ok(next) = tokio::time::timeout(limit, consumer.next()).await else {
                assert!(
                    seen.len() >= n,
                    "timed out: {} of {n} requests answered on {queue}",
                    seen.len()
                );
                break;
            };
            let delivery = next.expect("reply stream ended").expect("delivery");
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            let json: Value = serde_json::from_slice(&delivery.data).expect("reply is JSON");
            let id = json["request_id"].as_str().unwrap_or_default().to_owned();
            seen.entry(id).or_default().push(delivery.data);
            if seen.len() >= n {
                settle = Duration::from_millis(500);
            }
        }
        let _ = channel.close(200, "bye".into()).await;
        seen
    }

    /// Replies keyed by request_id (the last one wins).
    pub async fn replies_by_id(&self, queue: &str, n: usize) -> HashMap<String, Reply> {
        self.replies(queue, n)
            .await
            .into_iter()
            .map(|r| {
                (
                    r.json["request_id"].as_str().unwrap_or_default().to_owned(),
                    r,
                )
            })
            .collect()
    }

    /// Waits until `queue` holds `n` ready messages (quorum queues settle
    /// returns through Raft, a moment after the nack); false after 10 s.
    pub async fn settles_at(&self, queue: &str, n: u32) -> bool {
        for _ in 0..100 {
            if self.depth(queue).await == n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Messages currently in `queue`, via passive declare.
    pub async fn depth(&self, queue: &str) -> u32 {
        let ch = self.connection.create_channel().await.expect("channel");
        let q = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive declare");
        let _ = ch.close(200, "bye".into()).await;
        q.message_count()
    }
}

/// The seed's request example, verbatim, with a request_id.
pub fn seed_request(request_id: &str) -> Value {
    let mut v: Value = serde_json::from_str(include_str!("seed_request.json")).expect("seed json");
    v["request_id"] = Value::from(request_id);
    v
}

/// A small valid request with `n` processes named `{prefix}-{i}`.
pub fn request(request_id: &str, si: i64, biz: i64, prefix: &str, n: usize) -> Value {
    let processes: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({"process_info": {
                "bk_process_name": format!("{prefix}-{i}"),
                "bk_func_name": format!("{prefix}-func-{i}"),
                "proc_num": 1,
                "bind_info": [{"enable": true, "ip": "127.0.0.1", "port": "8080", "protocol": "1", "template_row_id": 1}]
            }})
        })
        .collect();
    serde_json::json!({
        "request_id": request_id, "bk_biz_id": biz, "service_instance_id": si,
        "bk_username": "admin", "processes": processes
    })
}
