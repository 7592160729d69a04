//! The faults of a chaos run and the world they strike: two workers, the
//! three-node RabbitMQ 4 cluster, a PostgreSQL primary with a synchronous
//! standby. A seeded schedule strikes one every 1.5-4 s; a fault that
//! lasts (a frozen worker, a read-only database, a stopped node, an alarm)
//! heals on its own timer, so faults overlap.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;

use crate::helpers::Worker;
use crate::support::pg_cluster::Cluster;
use crate::support::rabbitmq4::{
    Alarm, NODES, Outage, Partition, current_leader, try_ctl, worker_connection,
};

/// Workers running side by side on the queue.
pub const WORKERS: usize = 2;

/// A kind of fault the schedule strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill,
    Term,
    CloseConnection,
    TerminateBackends,
    ReadOnly,
    Freeze,
    RestartDatabase,
    RestartNode,
    StopLeader,
    Partition,
    DiskAlarm,
    MemoryAlarm,
    Failover,
}

/// The faults the schedule deals, each once per round in a seeded order;
/// [`Fault::Failover`] strikes once.
const DEALT: [Fault; 12] = [
    Fault::Kill,
    Fault::Term,
    Fault::CloseConnection,
    Fault::TerminateBackends,
    Fault::ReadOnly,
    Fault::Freeze,
    Fault::RestartDatabase,
    Fault::RestartNode,
    Fault::StopLeader,
    Fault::Partition,
    Fault::DiskAlarm,
    Fault::MemoryAlarm,
];

/// What the faults strike.
pub struct World {
    /// The run's seed, which names its log directory.
    seed: u64,
    /// Each worker's environment: the test's names, all three nodes, both
    /// database hosts.
    vars: Vec<(String, String)>,
    workers: Mutex<Vec<Worker>>,
    /// The logs of workers replaced, by process id.
    retired: Mutex<Vec<(u32, String)>>,
    databases: [Cluster; 2],
    /// Which of `databases` is the primary.
    primary: AtomicUsize,
    failed_over: AtomicBool,
    request_queue: String,
    outage: Outage,
    /// One lasting fault of each of these at a time: a second node down
    /// would cost the quorum, a second alarm or read-only switch would be
    /// healed by the first one's timer.
    node_down: AtomicBool,
    alarmed: AtomicBool,
    read_only: AtomicBool,
}

impl World {
    pub fn new(
        seed: u64,
        vars: Vec<(String, String)>,
        databases: [Cluster; 2],
        request_queue: String,
    ) -> Arc<World> {
        let workers = (0..WORKERS).map(|_| Worker::spawn_with(&vars)).collect();
        Arc::new(World {
            seed,
            vars,
            workers: Mutex::new(workers),
            retired: Mutex::new(Vec::new()),
            databases,
            primary: AtomicUsize::new(0),
            failed_over: AtomicBool::new(false),
            request_queue,
            outage: Outage::default(),
            node_down: AtomicBool::new(false),
            alarmed: AtomicBool::new(false),
            read_only: AtomicBool::new(false),
        })
    }

    pub fn primary(&self) -> &Cluster {
        &self.databases[self.primary.load(Ordering::SeqCst)]
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The workers' HTTP addresses, for readiness.
    pub fn http(&self) -> Vec<String> {
        self.workers().iter().map(|w| w.http.clone()).collect()
    }

    /// Every worker's log so far, replaced ones too, by process id.
    pub fn logs(&self) -> Vec<(u32, String)> {
        let mut logs = self
            .retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        logs.extend(self.workers().iter().map(|w| (w.child.id(), w.log())));
        logs
    }

    /// Writes every worker's log to `target/chaos-SEED/worker-PID.log`.
    pub fn keep_logs(&self) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!("chaos-{}", self.seed));
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        for (pid, log) in self.logs() {
            let _ = std::fs::write(dir.join(format!("worker-{pid}.log")), log);
        }
        eprintln!("the workers' logs are in {}", dir.display());
    }

    /// The live workers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers().iter().map(|w| w.child.id()).collect()
    }

    fn pid(&self, slot: usize) -> u32 {
        self.workers()[slot].child.id()
    }

    fn replace(&self, slot: usize) {
        let fresh = Worker::spawn_with(&self.vars);
        let old = std::mem::replace(&mut self.workers()[slot], fresh);
        let log = (old.child.id(), old.log());
        drop(old);
        self.retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(log);
    }

    /// Runs `statements` one by one on the primary's database, retrying
    /// them all for a while: the server may be restarting.
    async fn on_primary(&self, database: &str, statements: &[&str]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let url = self.primary().url(database);
            let attempt = async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                for sql in statements {
                    client.batch_execute(sql).await.ok()?;
                }
                Some(())
            };
            if tokio::time::timeout(Duration::from_secs(10), attempt)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    }
}

/// A run that fails keeps its workers' logs too.
impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep_logs();
        }
    }
}

/// Sends a signal; a process gone meanwhile (killed by another fault) is
/// not an error.
fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// A lasting fault's length: 1.5 to 4 s (a frozen worker 1 to 4 s).
fn lasting(rng: &mut fastrand::Rng, from_ms: u64) -> Duration {
    Duration::from_millis(rng.u64(from_ms..=4000))
}

/// Heals a lasting fault with `heal` after `d`, then lets another of its
/// kind strike (`busy` is the flag that kept it from striking meanwhile).
fn heal_after(
    heals: &mut JoinSet<()>,
    world: &Arc<World>,
    busy: fn(&World) -> &AtomicBool,
    d: Duration,
    heal: impl Future<Output = ()> + Send + 'static,
) {
    let world = world.clone();
    heals.spawn(async move {
        tokio::time::sleep(d).await;
        heal.await;
        busy(&world).store(false, Ordering::SeqCst);
    });
}

/// Strikes `fault`; a lasting one's healing goes into `heals`. What was
/// done, in words; `None` when the fault could not strike now.
pub async fn strike(
    world: &Arc<World>,
    fault: Fault,
    rng: &mut fastrand::Rng,
    heals: &mut JoinSet<()>,
) -> Option<String> {
    let slot = rng.usize(..WORKERS);
    match fault {
        Fault::Kill => {
            let pid = world.pid(slot);
            world.replace(slot);
            Some(format!("kill -9 worker {pid}"))
        }
        Fault::Term => {
            let pid = world.pid(slot);
            signal(pid, "TERM");
            // Drained and gone within its shutdown timeout, or killed.
            let deadline = Instant::now() + Duration::from_secs(25);
            let mut exited = None;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = world.workers()[slot].child.try_wait() {
                    exited = status.code();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            world.replace(slot);
            Some(format!("SIGTERM worker {pid}: exit {exited:?}"))
        }
        Fault::CloseConnection => {
            let pid = world.pid(slot);
            let (connection, port) = worker_connection(pid).await?;
            let node = crate::support::rabbitmq4::Node::by_port(port);
            try_ctl(node, &["close_connection", &connection, "chaos"])
                .await
                .ok()?;
            Some(format!("close worker {pid}'s connection on {}", node.name))
        }
        Fault::TerminateBackends => {
            let done = world
                .on_primary(
                    "procinst",
                    &["SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                       WHERE datname = 'procinst' AND pid <> pg_backend_pid()"],
                )
                .await;
            done.then(|| "terminate the database's backends".to_owned())
        }
        Fault::ReadOnly => {
            if world.read_only.swap(true, Ordering::SeqCst) {
                return None;
            }
            let set = [
                "SET default_transaction_read_only = off",
                "ALTER SYSTEM SET default_transaction_read_only = on",
                "SELECT pg_reload_conf()",
            ];
            if !world.on_primary("postgres", &set).await {
                world.read_only.store(false, Ordering::SeqCst);
                return None;
            }
            let d = lasting(rng, 1500);
            let w = world.clone();
            heal_after(heals, world, |w| &w.read_only, d, async move {
                let reset = [
                    "SET default_transaction_read_only = off",
                    "ALTER SYSTEM RESET default_transaction_read_only",
                    "SELECT pg_reload_conf()",
                ];
                w.on_primary("postgres", &reset).await;
            });
            Some(format!("database read-only for {d:?}"))
        }
        Fault::Freeze => {
            let pid = world.pid(slot);
            let d = lasting(rng, 1000);
            signal(pid, "STOP");
            heals.spawn(async move {
                tokio::time::sleep(d).await;
                signal(pid, "CONT");
            });
            Some(format!("SIGSTOP worker {pid} for {d:?}"))
        }
        Fault::RestartDatabase => {
            let mode = if rng.bool() { "fast" } else { "immediate" };
            let name = world.primary().name.clone();
            let out = tokio::process::Command::new("pg_ctlcluster")
                .args(["15", &name, "restart", "-m", mode])
                .output()
                .await
                .ok()?;
            out.status
                .success()
                .then(|| format!("PostgreSQL restart ({mode})"))
        }
        Fault::RestartNode | Fault::StopLeader => {
            if world.node_down.swap(true, Ordering::SeqCst) {
                return None;
            }
            let node = if fault == Fault::StopLeader {
                let Some(leader) = current_leader(&world.request_queue).await else {
                    world.node_down.store(false, Ordering::SeqCst);
                    return None;
                };
                leader
            } else {
                &NODES[rng.usize(..NODES.len())]
            };
            world.outage.stop(node).await;
            let d = lasting(rng, 1500);
            let w = world.clone();
            heal_after(heals, world, |w| &w.node_down, d, async move {
                w.outage.start(node).await;
            });
            let what = if fault == Fault::StopLeader {
                "the request queue's leader "
            } else {
                ""
            };
            Some(format!("stop_app {what}{} for {d:?}", node.name))
        }
        Fault::Partition => {
            if world.node_down.swap(true, Ordering::SeqCst) {
                return None;
            }
            let node = &NODES[rng.usize(..NODES.len())];
            let cut = Partition::cut(node).await;
            // Long enough for the other nodes to notice (net_ticktime 15 s)
            // and the cut node to pause itself (pause_minority).
            let d = Duration::from_millis(rng.u64(18_000..=25_000));
            heal_after(heals, world, |w| &w.node_down, d, cut.heal());
            Some(format!(
                "partition {} from the cluster for {d:?}",
                node.name
            ))
        }
        Fault::DiskAlarm | Fault::MemoryAlarm => {
            if world.alarmed.swap(true, Ordering::SeqCst) {
                return None;
            }
            let kind = if fault == Fault::DiskAlarm {
                "disk"
            } else {
                "memory"
            };
            let node = &NODES[rng.usize(..NODES.len())];
            if world.node_down.load(Ordering::SeqCst) {
                // rabbitmqctl on a stopped node fails; try again later.
                world.alarmed.store(false, Ordering::SeqCst);
                return None;
            }
            let Ok(alarm) = Alarm::try_raise(node, kind).await else {
                world.alarmed.store(false, Ordering::SeqCst);
                return None;
            };
            let d = lasting(rng, 1500);
            heal_after(heals, world, |w| &w.alarmed, d, alarm.clear());
            Some(format!("{kind} alarm on {} for {d:?}", node.name))
        }
        Fault::Failover => {
            if world.failed_over.swap(true, Ordering::SeqCst) {
                return None;
            }
            let old = world.primary.load(Ordering::SeqCst);
            world.databases[old].stop("immediate");
            world.databases[1 - old].promote();
            world.primary.store(1 - old, Ordering::SeqCst);
            Some("PostgreSQL failover to the synchronous standby".to_owned())
        }
    }
}

/// Strikes faults for `window`, one every 1.5-4 s, dealt in seeded rounds
/// of every kind (so a run of a minute or two meets each), the failover
/// once at 60 % of it; then waits for every lasting fault to heal. Each fault
/// struck with its time from the start.
pub async fn schedule(
    world: &Arc<World>,
    seed: u64,
    window: Duration,
) -> Vec<(f64, Fault, String)> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_fa17);
    let mut heals = JoinSet::new();
    let mut struck = Vec::new();
    let mut deck: Vec<Fault> = Vec::new();
    let start = Instant::now();
    loop {
        tokio::time::sleep(lasting(&mut rng, 1500)).await;
        let at = start.elapsed();
        if at >= window {
            break;
        }
        if deck.is_empty() {
            deck = DEALT.to_vec();
            rng.shuffle(&mut deck);
        }
        let fault = if at >= window.mul_f64(0.6) && !world.failed_over.load(Ordering::SeqCst) {
            Fault::Failover
        } else {
            deck.pop().unwrap_or(Fault::Kill)
        };
        match strike(world, fault, &mut rng, &mut heals).await {
            Some(what) => {
                eprintln!("chaos {:7.2}s {what}", at.as_secs_f64());
                struck.push((at.as_secs_f64(), fault, what));
            }
            None => {
                // Another of its kind still lasts: dealt again later.
                eprintln!(
                    "chaos {:7.2}s {fault:?} cannot strike now",
                    at.as_secs_f64()
                );
                if fault != Fault::Failover {
                    deck.insert(0, fault);
                }
            }
        }
    }
    while let Some(healed) = heals.join_next().await {
        if let Err(e) = healed {
            panic!("a fault did not heal: {e}");
        }
    }
    struck
}

/// After the schedule: every worker thawed and alive.
pub async fn heal(world: &Arc<World>) {
    for slot in 0..WORKERS {
        signal(world.pid(slot), "CONT");
        let alive = world.workers()[slot]
            .child
            .try_wait()
            .is_ok_and(|s| s.is_none());
        if !alive {
            world.replace(slot);
        }
    }
}
