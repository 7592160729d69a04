//! A least-privilege deployment: the schema owner migrates, and the worker
//! and every other command run as a role that may only read and write
//! procinst's tables (`deploy/postgres/roles.sql`). The worker checks the
//! schema's version without writing.

use std::process::Command;

use crate::helpers::{Env, PG_ADMIN_URL, request, unique};

/// The two roles of `deploy/postgres/roles.sql`, under names of this
/// test's own, dropped when it ends (after its database).
struct Roles {
    owner: String,
    app: String,
}

impl Roles {
    fn new() -> Roles {
        let id = unique("role");
        Roles {
            owner: format!("{id}_owner"),
            app: format!("{id}_app"),
        }
    }

    /// Runs `deploy/postgres/roles.sql` in `database` as the superuser.
    fn grant(&self, database: &str) {
        psql(
            database,
            &[
                "-v",
                &format!("owner={}", self.owner),
                "-v",
                &format!("app={}", self.app),
                "-f",
                concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/postgres/roles.sql"),
            ],
        );
    }

    fn url(role: &str, database: &str) -> String {
        format!("postgres://{role}@127.0.0.1:5432/{database}")
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        for role in [&self.app, &self.owner] {
            let _ = Command::new("psql")
                .arg(PG_ADMIN_URL)
                .arg("-qc")
                .arg(format!("DROP ROLE IF EXISTS \"{role}\""))
                .output();
        }
    }
}

/// `psql ARGS` in `database` as the superuser, stopping at the first
/// error; it must succeed.
fn psql(database: &str, args: &[&str]) {
    let out = Command::new("psql")
        .arg(format!("postgres://postgres@127.0.0.1:5432/{database}"))
        .args(["-v", "ON_ERROR_STOP=1", "-q"])
        .args(args)
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_owner_migrates_and_every_command_runs_as_a_role_that_only_reads_and_writes() {
    // Dropped after the environment (and so after its database).
    let roles = Roles::new();
    let mut env = Env::new().await;
    let db = env.database.clone();
    // A database of the owner's: empty, then the roles, then its migration.
    psql(
        "postgres",
        &["-c", &format!("DROP DATABASE \"{db}\" WITH (FORCE)")],
    );
    psql("postgres", &["-c", &format!("CREATE DATABASE \"{db}\"")]);
    roles.grant(&db);
    let owner_url = Roles::url(&roles.owner, &db);
    let app_url = Roles::url(&roles.app, &db);
    let out = env
        .procinst_within(&["migrate"], &[("DATABASE_URL", &owner_url)])
        .await;
    assert!(
        out.status.success(),
        "migrate as the owner: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    roles.grant(&db);

    // The role cannot change the schema...
    let out = env
        .procinst_within(&["migrate"], &[("DATABASE_URL", &app_url)])
        .await;
    assert!(!out.status.success(), "the app role may not migrate");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ... and every command works with it: the worker, the import, a
    // request's history, pruning, a backfill, the dead letters.
    env.start_worker(&[("DATABASE_URL", &app_url)]).await;
    let import = "{\"id\": 1, \"bk_biz_id\": 10, \"bk_supplier_account\": \"0\", \"name\": \"si\", \"service_template_id\": 0, \"bk_host_id\": 1}\n";
    let out = env.procinst_with(
        &["service-instance", "import", "-"],
        Some(import),
        &[("DATABASE_URL", &app_url)],
    );
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = env.client().await;
    client.send(&request("least-1", 1, 10, "p", 2)).await;
    let replies = client.replies_by_id(&env.reply_queue, 1).await;
    assert_eq!(
        replies["least-1"].json["code"], 0,
        "{:?}",
        replies["least-1"].json
    );
    let line = format!("{}\n", request("least-2", 1, 10, "q", 1));
    let out = env.procinst_with(
        &["publish", "--wait", "-"],
        Some(&line),
        &[("DATABASE_URL", &app_url)],
    );
    assert!(
        out.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [
        &["request", "show", "least-1"][..],
        &["prune"],
        &["dlq", "list"],
    ] {
        let out = env
            .procinst_within(args, &[("DATABASE_URL", &app_url)])
            .await;
        assert!(
            out.status.success(),
            "procinst {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM process").await, 3);

    // A schema older than the binary: the worker says which versions and
    // who must migrate, and does not get ready.
    psql(
        &db,
        &[
            "-c",
            "DELETE FROM refinery_schema_history WHERE version = (SELECT max(version) FROM refinery_schema_history)",
        ],
    );
    let needed = env
        .count("SELECT (max(version) + 1)::int8 FROM refinery_schema_history")
        .await;
    let stale = crate::helpers::Worker::spawn(&env, &[("DATABASE_URL", &app_url)]);
    stale
        .wait_for_log(&format!(
            "schema at version {}, this procinst needs {needed}: run `procinst migrate` as the schema owner",
            needed - 1
        ))
        .await;
}

/// A broker user of this test's own, dropped when it ends.
struct BrokerUser(String);

impl BrokerUser {
    /// A user whose permissions cover only the names under `prefix.`, and
    /// the default exchange to publish replies and requests through: the
    /// three patterns the README gives.
    fn limited_to(prefix: &str) -> BrokerUser {
        let name = unique("user");
        let ctl = |args: &[&str]| {
            let out = crate::helpers::rabbitmqctl()
                .args(args)
                .output()
                .expect("rabbitmqctl");
            assert!(
                out.status.success(),
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ctl(&["add_user", &name, "limited-pw"]);
        let own = format!("^{}\\.", regex_escape(prefix));
        ctl(&[
            "set_permissions",
            "-p",
            "/",
            &name,
            &own,
            &format!("{own}|^amq\\.default$"),
            &own,
        ]);
        BrokerUser(name)
    }

    /// `amqp_url` with this user's credentials.
    fn url(&self, amqp_url: &str) -> String {
        let mut url = url::Url::parse(amqp_url).expect("AMQP URL");
        url.set_username(&self.0).expect("user");
        url.set_password(Some("limited-pw")).expect("password");
        url.to_string()
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = crate::helpers::rabbitmqctl()
            .args(["delete_user", &self.0])
            .output();
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[tokio::test]
async fn every_command_works_with_a_broker_user_limited_to_procinsts_own_names() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    // The test's names all start with its id: `<id>.requests`, ...
    let user = BrokerUser::limited_to(&env.id);
    let limited = user.url(&env.amqp);
    let amqp = [("AMQP_URL", limited.as_str())];
    env.start_worker(&amqp).await;

    // Through both lanes (the bulk lane's exchange and its alternate), a
    // dead letter, and `publish --wait` with its reply inbox.
    let client = env.client().await;
    client.send(&request("limited-1", 1, 10, "a", 1)).await;
    client.publish(b"not json", Default::default()).await;
    let line = format!("{}\n", request("limited-2", 1, 10, "b", 1));
    let out = env.procinst_with(&["publish", "--wait", "-"], Some(&line), &amqp);
    assert!(
        out.status.success(),
        "publish --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies = client.replies_by_id(&env.reply_queue, 1).await;
    assert_eq!(replies["limited-1"].json["code"], 0);
    for args in [
        &["dlq", "list"][..],
        &["dlq", "replay", "--dry-run"],
        &["migrate"],
        &["request", "show", "limited-2"],
    ] {
        let out = env.procinst_within(args, &amqp).await;
        assert!(
            out.status.success(),
            "procinst {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = env.procinst_within(&["dlq", "list"], &amqp).await;
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("not_json"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    assert_eq!(env.count("SELECT count(*) FROM process").await, 2);
}
