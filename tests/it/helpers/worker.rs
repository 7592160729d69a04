//! The `procinst` binary as a child process of a test: a command run to
//! completion, or `procinst run`, the worker, kept running with its log
//! collected and its HTTP endpoints probed.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::env::{Env, WAIT};

impl Env {
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
        let mut cmd = self.command(args, extra);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
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
        let mut cmd = tokio::process::Command::from(self.command(args, extra));
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        let child = cmd.spawn().expect("spawn procinst");
        tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("procinst {args:?} did not finish within {WAIT:?}"))
            .expect("procinst output")
    }

    /// `procinst migrate` against the database at `url`, which must succeed.
    pub async fn migrate_at(&self, url: &str) {
        let out = self
            .procinst_within(&["migrate"], &[("DATABASE_URL", url)])
            .await;
        assert!(
            out.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `procinst ARGS` with this test's settings and `extra` on top, logging
    /// warnings only, its output captured.
    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_procinst"));
        cmd.args(args).envs(self.vars()).env("RUST_LOG", "warn");
        cmd.envs(extra.iter().copied());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }
}

/// A `procinst run` child process with its stderr collected.
pub struct Worker {
    pub child: Child,
    pub http: String,
    pub log: Arc<Mutex<String>>,
}

impl Worker {
    pub fn spawn(env: &Env, extra: &[(&str, &str)]) -> Worker {
        let mut vars = env.vars();
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Worker::spawn_with(&vars)
    }

    /// A worker with these environment variables, on a free HTTP address
    /// unless they name one, not waited for.
    pub fn spawn_with(vars: &[(String, String)]) -> Worker {
        let http = vars
            .iter()
            .rev()
            .find(|(k, _)| k == "PROCINST_HTTP_ADDR")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                let port = TcpListener::bind("127.0.0.1:0")
                    .expect("free port")
                    .local_addr()
                    .expect("addr")
                    .port();
                format!("127.0.0.1:{port}")
            });
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_procinst"));
        cmd.arg("run")
            .env("RUST_LOG", "info")
            .env("PROCINST_SHUTDOWN_TIMEOUT_S", "20")
            .env("PROCINST_HTTP_ADDR", &http)
            .envs(vars.iter().map(|(k, v)| (k, v)));
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
        assert!(
            ready_within(&self.http, WAIT).await,
            "worker not ready; log:\n{}",
            self.log()
        );
    }

    /// The worker's `/metrics` page; empty when it does not answer.
    pub async fn metrics(&self) -> String {
        http_get(&format!("http://{}/metrics", self.http))
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Batches the worker has taken to the database so far.
    pub async fn batches(&self) -> f64 {
        metric(&self.metrics().await, "procinst_batch_size_count")
    }

    /// Waits, within [`WAIT`], until the worker has taken `n` batches.
    pub async fn wait_for_batches(&self, n: f64) {
        let deadline = Instant::now() + WAIT;
        while self.batches().await < n {
            assert!(Instant::now() < deadline, "fewer than {n} batches taken");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits, within [`WAIT`], until the log holds `text`.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether the worker at `http` answers `/readyz` with 200 within `limit`.
pub async fn ready_within(http: &str, limit: Duration) -> bool {
    let url = format!("http://{http}/readyz");
    let ready = async {
        while http_get(&url).await.is_none_or(|(status, _)| status != 200) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(limit, ready).await.is_ok()
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

/// The sum of every series of a counter or gauge in a `/metrics` page,
/// whatever its labels (both lanes, say); 0 when it is not there.
pub fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// A worker never outlives its handle, whatever the test did.
impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}
