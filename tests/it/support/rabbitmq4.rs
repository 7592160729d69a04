//! The RabbitMQ 4 nodes of `tests/infra/rabbitmq4.sh`: their names and
//! ports, rabbitmqctl against one of them, and a guard that starts again
//! whatever node a test stopped, however the test ends, so that the next
//! test finds the cluster whole.

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::helpers::WAIT;

/// Longest a single rabbitmqctl call may take (start_app of a node that
/// syncs with its cluster takes several seconds).
const CTL_TIMEOUT: Duration = Duration::from_secs(90);

/// A node of the three-node cluster.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    pub name: &'static str,
    pub port: u16,
}

pub const NODES: [Node; 3] = [
    Node {
        name: "procinst4a",
        port: 5682,
    },
    Node {
        name: "procinst4b",
        port: 5683,
    },
    Node {
        name: "procinst4c",
        port: 5684,
    },
];

impl Node {
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The node listening on `port`.
    pub fn by_port(port: u16) -> &'static Node {
        NODES
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }
}

/// `AMQP_URL` for all three nodes.
pub fn cluster_url() -> String {
    NODES.iter().map(Node::url).collect::<Vec<_>>().join(",")
}

pub fn script() -> String {
    format!("{}/tests/infra/rabbitmq4.sh", env!("CARGO_MANIFEST_DIR"))
}

/// `rabbitmqctl ARGS` against `node`; its standard output. Panics when it
/// fails or takes longer than [`CTL_TIMEOUT`].
pub async fn ctl(node: &Node, args: &[&str]) -> String {
    try_ctl(node, args)
        .await
        .unwrap_or_else(|e| panic!("rabbitmqctl {args:?} on {}: {e}", node.name))
}

/// Like [`ctl`], with its failure as an error.
pub async fn try_ctl(node: &Node, args: &[&str]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(script());
    cmd.arg("ctl").arg(node.name).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(CTL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| "hangs".to_owned())?
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Nodes a test stopped and has not started again.
#[derive(Default)]
pub struct Outage {
    stopped: Arc<Mutex<Vec<&'static Node>>>,
}

impl Outage {
    /// Stops the RabbitMQ application on `node` (the Erlang node stays up,
    /// as in a rolling upgrade).
    pub async fn stop(&self, node: &'static Node) {
        if let Ok(mut stopped) = self.stopped.lock() {
            stopped.push(node);
        }
        ctl(node, &["stop_app"]).await;
    }

    /// Starts `node` again and waits until it serves.
    pub async fn start(&self, node: &'static Node) {
        ctl(node, &["start_app"]).await;
        ctl(node, &["await_startup", "--timeout", "60"]).await;
        if let Ok(mut stopped) = self.stopped.lock() {
            stopped.retain(|n| *n != node);
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        let stopped = match self.stopped.lock() {
            Ok(mut stopped) => std::mem::take(&mut *stopped),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for node in stopped {
            eprintln!("starting {} again after the test", node.name);
            for args in [&["start_app"][..], &["await_startup", "--timeout", "60"]] {
                let _ = Command::new(script())
                    .arg("ctl")
                    .arg(node.name)
                    .args(args)
                    .status();
            }
        }
    }
}

/// The node the worker's connection is on, from `list_connections`.
pub async fn worker_node(pid: u32) -> &'static Node {
    let polled = async {
        loop {
            if let Some(node) = worker_node_now(pid).await {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::time::timeout(WAIT, polled)
        .await
        .expect("the worker's connection is listed")
}

pub async fn worker_node_now(pid: u32) -> Option<&'static Node> {
    worker_connection(pid)
        .await
        .map(|(_, port)| Node::by_port(port))
}

/// The worker's connection (its Erlang pid and the port it is on), found
/// by its name on any node that answers.
pub async fn worker_connection(pid: u32) -> Option<(String, u16)> {
    let marker = format!("procinst worker {pid} @ ");
    let listed = any_node(&["list_connections", "pid", "port", "client_properties"]).await;
    listed.lines().find(|l| l.contains(&marker)).and_then(|l| {
        let mut columns = l.split('\t');
        let connection = columns.next()?.to_owned();
        let port = columns.next()?.trim().parse().ok()?;
        Some((connection, port))
    })
}

pub async fn close_worker_connection(pid: u32) {
    let (connection, port) = worker_connection(pid).await.expect("listed");
    ctl(
        Node::by_port(port),
        &["close_connection", &connection, "test moves the worker"],
    )
    .await;
}

/// The node that leads `queue`.
pub async fn queue_leader(queue: &str) -> &'static Node {
    current_leader(queue)
        .await
        .unwrap_or_else(|| panic!("{queue} is listed with a leader"))
}

/// The node that leads `queue` now; `None` while it has none (an election).
pub async fn current_leader(queue: &str) -> Option<&'static Node> {
    let listed = any_node(&["list_queues", "name", "leader"]).await;
    let leader = listed
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{queue}\t")))?
        .trim();
    NODES
        .iter()
        .find(|n| leader.split('@').next() == Some(n.name))
}

/// rabbitmqctl on the first node whose application runs.
pub async fn any_node(args: &[&str]) -> String {
    for node in &NODES {
        let mut cmd = tokio::process::Command::new(script());
        cmd.arg("ctl").arg(node.name).args(args).kill_on_drop(true);
        if let Ok(Ok(out)) = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await
            && out.status.success()
        {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
    }
    panic!("no cluster node answers rabbitmqctl {args:?}");
}

/// A resource alarm raised on one node (alarms are cluster-wide), cleared
/// again when dropped, however the test ends.
pub struct Alarm {
    node: &'static Node,
    raise: &'static [&'static str],
    clear: &'static [&'static str],
}

impl Alarm {
    pub async fn raise(node: &'static Node, kind: &str) -> Alarm {
        Alarm::try_raise(node, kind)
            .await
            .unwrap_or_else(|e| panic!("a {kind} alarm on {}: {e}", node.name))
    }

    /// Like [`Alarm::raise`], with the failure as an error (a node whose
    /// application is not running cannot raise one).
    pub async fn try_raise(node: &'static Node, kind: &str) -> Result<Alarm, String> {
        let (raise, clear): (&[&str], &[&str]) = match kind {
            // More free disk than any machine has, then RabbitMQ's default.
            "disk" => (
                &["set_disk_free_limit", "100000GB"],
                &["set_disk_free_limit", "50MB"],
            ),
            // No memory at all, then RabbitMQ 4's default share.
            "memory" => (
                &["set_vm_memory_high_watermark", "0.0000001"],
                &["set_vm_memory_high_watermark", "0.6"],
            ),
            other => panic!("no {other} alarm"),
        };
        try_ctl(node, raise).await?;
        Ok(Alarm { node, raise, clear })
    }

    /// Clears it, waiting for the node when its application is stopped
    /// meanwhile (another fault may stop it); panics after [`WAIT`].
    pub async fn clear(self) {
        let deadline = std::time::Instant::now() + WAIT;
        while let Err(e) = try_ctl(self.node, self.clear).await {
            assert!(
                std::time::Instant::now() < deadline,
                "clearing the alarm on {}: {e}",
                self.node.name
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::mem::forget(self);
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        eprintln!(
            "clearing the alarm of {:?} on {} after the test",
            self.raise, self.node.name
        );
        let _ = std::process::Command::new(script())
            .arg("ctl")
            .arg(self.node.name)
            .args(self.clear)
            .status();
    }
}

/// One node cut off from the others (`rabbitmq4.sh partition`), let back
/// when healed or dropped, however the test ends.
pub struct Partition {
    node: &'static Node,
}

impl Partition {
    pub async fn cut(node: &'static Node) -> Partition {
        let out = tokio::process::Command::new(script())
            .args(["partition", node.name])
            .output()
            .await
            .expect("run rabbitmq4.sh partition");
        assert!(
            out.status.success(),
            "partition {}: {}",
            node.name,
            String::from_utf8_lossy(&out.stderr)
        );
        Partition { node }
    }

    /// Lets the node back and waits until it serves again (under
    /// `pause_minority` it paused itself while cut off).
    pub async fn heal(self) {
        let _ = tokio::process::Command::new(script())
            .args(["heal", self.node.name])
            .status()
            .await;
        let _ = try_ctl(self.node, &["await_startup", "--timeout", "60"]).await;
        std::mem::forget(self);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["heal", self.node.name])
            .status();
    }
}
