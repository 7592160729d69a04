//! PostgreSQL 15 clusters of a test's own, made with Debian's
//! `pg_createcluster` on free ports and trusting local connections, for
//! what the machine's shared server cannot show: TLS, a standby, a
//! failover. A cluster is dropped (stopped and deleted) when its guard is,
//! also when the test fails.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

use crate::helpers::{WAIT, connect, eventually_true, unique};

const VERSION: &str = "15";
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// How `pg_hba.conf` lets TCP clients from this machine in.
#[derive(Clone, Copy)]
pub enum Tcp {
    /// With or without TLS.
    Any,
    /// Only over TLS (`hostssl`): a plain connection is refused.
    TlsOnly,
    /// Only over TLS with a client certificate whose common name is the
    /// user (`cert` authentication: `clientcert=verify-full`).
    ClientCert,
}

pub struct Cluster {
    pub name: String,
    pub port: u16,
    /// Files the server reads (certificates), owned by `postgres`.
    pub files: PathBuf,
}

impl Cluster {
    /// Creates a stopped cluster with `settings` in its configuration.
    pub fn create(prefix: &str, tcp: Tcp, settings: &[(&str, &str)]) -> Cluster {
        let name = unique(prefix);
        let port = free_port();
        let files = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&files).expect("cluster file dir");
        let cluster = Cluster { name, port, files };
        cluster.give_to_postgres(&cluster.files, 0o755);
        let mut create = Command::new("pg_createcluster");
        create.args([VERSION, &cluster.name, "-p", &port.to_string()]);
        for (key, value) in settings {
            create.args(["-o", &format!("{key}={value}")]);
        }
        run(&mut create);
        cluster.write_hba(tcp);
        cluster
    }

    /// A synchronous-capable standby of `primary`, streaming and started:
    /// a fresh cluster whose data directory is replaced by a base backup
    /// taken with `-R` (standby.signal and primary_conninfo).
    pub fn standby_of(primary: &Cluster, prefix: &str) -> Cluster {
        let standby = Cluster::create(prefix, Tcp::Any, &[]);
        let data = standby.data_dir();
        std::fs::remove_dir_all(&data).expect("remove the standby's fresh data");
        std::fs::create_dir(&data).expect("an empty data directory");
        standby.give_to_postgres(&data, 0o700);
        run(Command::new("runuser").args([
            "-u",
            "postgres",
            "--",
            &format!("{BIN}/pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-D",
            &data.to_string_lossy(),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        ]));
        standby.start();
        standby
    }

    pub fn data_dir(&self) -> PathBuf {
        Path::new("/var/lib/postgresql")
            .join(VERSION)
            .join(&self.name)
    }

    /// Starts and waits until it accepts connections.
    pub fn start(&self) {
        run(Command::new("pg_ctlcluster").args([VERSION, &self.name, "start"]));
    }

    /// Stops it; `immediate` is a crash as far as clients can tell.
    pub fn stop(&self, mode: &str) {
        run(Command::new("pg_ctlcluster").args([VERSION, &self.name, "stop", "-m", mode]));
    }

    /// Ends recovery: the standby becomes a primary that takes writes.
    pub fn promote(&self) {
        run(Command::new("pg_ctlcluster").args([VERSION, &self.name, "promote"]));
    }

    /// A URL for `database` over TCP on 127.0.0.1.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A key=value string for `database` over the Unix socket, which the
    /// test's own NoTls client may use even on a TLS-only cluster.
    pub fn socket(&self, database: &str) -> String {
        format!(
            "host=/var/run/postgresql port={} user=postgres dbname={database}",
            self.port
        )
    }

    /// Turns on synchronous replication to the one standby and waits until it
    /// is the synchronous one, so that a commit the worker saw is on both.
    pub async fn make_synchronous(&self) {
        let admin = connect(&self.url("postgres")).await;
        for statement in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "SELECT pg_reload_conf()",
        ] {
            admin.batch_execute(statement).await.expect(statement);
        }
        let synchronous = eventually_true(
            &admin,
            WAIT,
            "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync')",
        )
        .await;
        assert!(synchronous, "the standby became synchronous");
    }

    /// Writes `contents` into the cluster's file directory, owned by
    /// `postgres` with `mode` (a server key must be 0600).
    pub fn file(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.files.join(name);
        std::fs::write(&path, contents).expect("write cluster file");
        self.give_to_postgres(&path, mode);
        path
    }

    fn give_to_postgres(&self, path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn write_hba(&self, tcp: Tcp) {
        let (host, method) = match tcp {
            Tcp::Any => ("host", "trust"),
            Tcp::TlsOnly => ("hostssl", "trust"),
            Tcp::ClientCert => ("hostssl", "cert"),
        };
        let hba = format!(
            "local all all trust\n\
             local replication all trust\n\
             {host} all all 127.0.0.1/32 {method}\n\
             {host} all all ::1/128 {method}\n\
             {host} replication all 127.0.0.1/32 {method}\n"
        );
        let path = Path::new("/etc/postgresql")
            .join(VERSION)
            .join(&self.name)
            .join("pg_hba.conf");
        std::fs::write(path, hba).expect("write pg_hba.conf");
    }
}

/// A primary with a synchronous standby, both started, and a URL of
/// `database` that names both hosts with `target_session_attrs=read-write`,
/// as a worker is given them.
pub async fn replicated(prefix: &str, database: &str) -> (Cluster, Cluster, String) {
    let primary = Cluster::create(&format!("{prefix}_primary"), Tcp::Any, &[]);
    primary.start();
    let standby = Cluster::standby_of(&primary, &format!("{prefix}_standby"));
    primary.make_synchronous().await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs=read-write",
        primary.port, standby.port
    );
    (primary, standby, url)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster")
            .args(["--stop", VERSION, &self.name])
            .status();
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

/// Runs a setup command; its output in the panic message when it fails.
fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn cluster command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}
