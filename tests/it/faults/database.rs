//! The database misbehaving: lost races, an outage behind a proxy,
//! terminated backends, a row it rejects; and refusing writes for a while,
//! turned read-only or failed over to a synchronous standby, where the
//! worker keeps the work, says why on `/readyz`, and answers every request
//! exactly once when it can write.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use procinst::store::StoreError;
use procinst::worker::disposition::OnStore;

use super::{assert_exactly_once, burst, contend_on};
use crate::helpers::{
    Client, Env, PG_ADMIN_URL, WAIT, connect, eventually_true, http_get, request,
};
use crate::support::pg_cluster::{self, Cluster};
use crate::support::proxy::Proxy;

#[tokio::test]
async fn a_batch_that_keeps_losing_races_goes_back_without_stalling_the_batches_behind_it() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    contend_on(&env, "hot-0").await;
    // One request per batch, and a limit high enough that the broker keeps
    // the contended request for the whole test.
    let w = env
        .start_worker(&[
            ("PROCINST_BATCH_SIZE", "1"),
            ("PROCINST_DELIVERY_LIMIT", "1000"),
        ])
        .await;
    let client = env.client().await;
    client.send(&request("hot", 1, 10, "hot", 1)).await;
    env.worker(w).wait_for_log("contended").await;
    for i in 0..5 {
        client
            .send(&request(&format!("behind-{i}"), 1, 10, &format!("b{i}"), 1))
            .await;
    }
    let behind = client.replies_by_id(&env.reply_queue, 5).await;
    assert!(
        (0..5).all(|i| behind[&format!("behind-{i}")].json["code"] == json!(0)),
        "the batches behind are written: {behind:?}"
    );

    env.db()
        .await
        .execute("DELETE FROM contend", &[])
        .await
        .expect("end the contention");
    let hot = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(hot.json["request_id"], json!("hot"), "nothing is lost");
    assert_eq!(hot.json["code"], json!(0));
    assert_eq!(env.count("SELECT count(*) FROM process").await, 6);
    let log = env.worker(w).log();
    assert!(
        !log.contains("database unavailable"),
        "a lost race reads as contention, not as an outage: {log}"
    );
}

#[tokio::test]
async fn a_database_outage_pauses_the_worker_which_then_goes_on() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = format!("postgres://postgres@{}/{}", proxy.addr, env.database);
    let w = env
        .start_worker(&[
            ("DATABASE_URL", &url),
            ("PROCINST_PREFETCH", "64"),
            ("PROCINST_BATCH_SIZE", "32"),
        ])
        .await;
    let client = env.client().await;
    burst(&client, "dbout", 400, 100, || proxy.outage()).await;
    let ready = format!("http://{}/readyz", env.worker(w).http);
    let (status, reason) = http_get(&ready).await.expect("readyz answers");
    assert_eq!(
        status, 503,
        "not ready while the database is down: {reason}"
    );
    assert!(
        client.depth(&env.request_queue).await > 0,
        "messages are kept, not answered with errors"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    assert_exactly_once(&env, &client, 400, 2).await;
    env.worker(w).wait_ready().await;
}

#[tokio::test]
async fn terminated_backends_mid_burst_are_retried() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let admin = crate::helpers::connect(crate::helpers::PG_ADMIN_URL).await;
    let database = env.database.clone();
    for i in 0..500 {
        let body = request(&format!("term-be-{i}"), 1, 10, &format!("tb{i}"), 2);
        client.send_on_both(i, &body).await;
        if i % 125 == 60 {
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'procinst'",
                    &[&database],
                )
                .await
                .expect("terminate backends");
        }
    }
    assert_exactly_once(&env, &client, 500, 2).await;
}

#[tokio::test]
async fn a_request_the_database_rejects_is_isolated_and_dead_lettered() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    // A rule the worker does not know, enforced by the database alone.
    env.db()
        .await
        .batch_execute(
            "CREATE FUNCTION reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.bk_process_name = 'poison-0' THEN \
               RAISE EXCEPTION 'poisoned row' USING ERRCODE = '22023'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER reject_poison BEFORE INSERT ON process \
               FOR EACH ROW EXECUTE FUNCTION reject_poison();",
        )
        .await
        .expect("create trigger");
    env.start_worker(&[("PROCINST_BATCH_LINGER_MS", "300")])
        .await;
    let client = env.client().await;
    for i in 0..12 {
        let prefix = if i == 5 {
            "poison".to_owned()
        } else {
            format!("ok{i}")
        };
        client
            .send(&request(&format!("poison-{i}"), 1, 10, &prefix, 1))
            .await;
    }
    let replies = client.replies_by_id(&env.reply_queue, 11).await;
    assert!(!replies.contains_key("poison-5"));
    assert!(
        replies.values().all(|r| r.json["code"] == json!(0)),
        "the neighbours are answered"
    );
    assert!(client.settles_at(&env.dead_queue, 1).await);
    let listed = env.procinst(&["dlq", "list", "--json"], None);
    let row: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("one json row");
    assert_eq!(row["request_id"], json!("poison-5"));
    assert_eq!(row["reason"], json!("store_rejected"));
    assert_eq!(env.count("SELECT count(*) FROM process").await, 11);
}

/// The server refusing the COPY of processes before it starts: here the
/// database turned read-only, as a primary does when it becomes a standby,
/// so the id allocation before the COPY fails and the COPY is refused in
/// the aborted transaction. That is the database's trouble: the batch is
/// kept and retried, the connection it happened on (which tokio-postgres
/// leaves expecting one reply too few, and which would stay read-only) is
/// closed rather than reused, and once the cause is gone every request is
/// answered once.
#[tokio::test]
async fn a_copy_the_server_refuses_to_start_is_retried_on_a_fresh_connection() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let db = env.db().await;
    let w = env.start_worker(&[]).await;
    // The worker's sessions begun from now on are read-only.
    set_read_only(&db, &env.database, true).await;
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'procinst'",
        &[&env.database],
    )
    .await
    .expect("end the worker's sessions");
    let client = env.client().await;
    for i in 0..20 {
        client
            .send(&request(
                &format!("refused-{i}"),
                1,
                10,
                &format!("rf{i}"),
                2,
            ))
            .await;
    }
    env.worker(w)
        .wait_for_log("cannot execute nextval() in a read-only transaction")
        .await;
    let ready = format!("http://{}/readyz", env.worker(w).http);
    let (status, reason) = http_get(&ready).await.expect("readyz answers");
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("SQLSTATE 25006"), "{reason}");
    assert_eq!(env.count("SELECT count(*) FROM process").await, 0);

    // Only sessions begun from now on are writable again.
    set_read_only(&db, &env.database, false).await;
    assert_exactly_once(&env, &client, 20, 2).await;
    let log = env.worker(w).log();
    assert!(
        !log.contains("unexpected message from server"),
        "no connection is reused after a refused COPY: {log}"
    );
}

/// Makes the sessions begun on `database` from now on read-only, or not.
async fn set_read_only(db: &tokio_postgres::Client, database: &str, on: bool) {
    let setting = if on {
        "SET default_transaction_read_only = on"
    } else {
        "RESET default_transaction_read_only"
    };
    db.batch_execute(&format!("ALTER DATABASE \"{database}\" {setting}"))
        .await
        .expect("ALTER DATABASE default_transaction_read_only");
}

/// How long the database stays read-only in the read-only test.
const READ_ONLY_FOR: Duration = Duration::from_secs(4);

#[tokio::test]
async fn a_database_turned_read_only_mid_burst_keeps_the_work_and_answers_it_once_writable() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env
        .start_worker(&[("PROCINST_PREFETCH", "64"), ("PROCINST_BATCH_SIZE", "32")])
        .await;
    let ready = format!("http://{}/readyz", env.worker(w).http);
    let client = env.client().await;
    let admin = connect(PG_ADMIN_URL).await;

    burst(&client, "ro-a", 150, usize::MAX, || {}).await;
    set_read_only(&admin, &env.database, true).await;
    end_worker_sessions(&admin, &env.database).await;
    let turned = Instant::now();
    burst(&client, "ro-b", 250, usize::MAX, || {}).await;

    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some((503, body)) = http_get(&ready).await
                && body.contains("SQLSTATE 25006")
            {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "/readyz names the read-only database; log:\n{}",
            env.worker(w).log()
        )
    });
    let reported_after = turned.elapsed();
    assert!(reason.starts_with("database: "), "{reason}");
    assert_eq!(reason.lines().count(), 1, "one line: {reason}");
    assert_eq!(
        env.count("SELECT count(*) FROM request_log WHERE request_id LIKE 'ro-b-%'")
            .await,
        0,
        "nothing is written while read-only"
    );
    assert!(
        client.depth(&env.request_queue).await > 0,
        "the requests are kept, not answered with errors"
    );

    tokio::time::sleep(READ_ONLY_FOR.saturating_sub(turned.elapsed())).await;
    set_read_only(&admin, &env.database, false).await;
    end_worker_sessions(&admin, &env.database).await;
    let writable = Instant::now();

    let ids = answered_exactly_once(&client, &env.reply_queue, 400).await;
    let answered_after = writable.elapsed();
    let db = env.db().await;
    assert_rows_exactly_once(&db, &ids, 400).await;
    assert_eq!(
        client.depth(&env.dead_queue).await,
        0,
        "nothing dead-lettered"
    );
    env.worker(w).wait_ready().await;
    eprintln!(
        "read-only: /readyz said so {reported_after:?} after the switch ({}); \
         all answered {answered_after:?} (incl. a 0.5 s settle) after it was writable again",
        reason.trim()
    );
}

#[tokio::test]
async fn a_failover_to_a_synchronous_standby_mid_burst_loses_and_duplicates_nothing() {
    let mut env = Env::new().await;
    let (primary, standby, url) = pg_cluster::replicated("it", "procinst").await;
    env.migrate_at(&url).await;
    connect(&primary.url("procinst"))
        .await
        .execute(
            "INSERT INTO service_instance (id, bk_biz_id, bk_supplier_account, name, service_template_id, bk_host_id) \
             VALUES (1, 10, '0', 'si', 0, 1)",
            &[],
        )
        .await
        .expect("service instance");
    // A backlog first, so that the primary stops under a worker busy
    // writing it, with batches in flight. A first worker declares the
    // queues and stops.
    let first = env.start_worker(&[("DATABASE_URL", &url)]).await;
    env.worker(first).signal("TERM");
    assert_eq!(
        env.worker(first).wait_exit(Duration::from_secs(25)).await,
        Some(0)
    );
    let client = env.client().await;
    let n = 2500;
    burst(&client, "fo", n, usize::MAX, || {}).await;
    let w = env.start_worker(&[("DATABASE_URL", &url)]).await;
    let watcher = connect(&primary.url("procinst")).await;
    let busy = eventually_true(&watcher, WAIT, "SELECT count(*) >= 200 FROM request_log").await;
    assert!(busy, "the worker writes the backlog");
    // Times are taken when the stop command is given: a crash that needs
    // no help from the server.
    let stopped_at = SystemTime::now();
    primary.stop("immediate");
    let stop_took = stopped_at.elapsed().unwrap_or_default();
    // What the old primary committed, read off the standby before it is
    // promoted: every commit waited for the standby, so once it has
    // replayed all it received, it holds exactly that. The rest was left
    // for the new primary; none of it may be written yet.
    let (kept, last_kept) = replayed_request_log(&standby).await;
    assert!(
        kept < i64::try_from(n).expect("n fits"),
        "work was left for the new primary: the failover happened mid-burst ({kept} of {n} written before it)"
    );
    standby.promote();
    let promoted_after = stopped_at.elapsed().unwrap_or_default();

    let ids = answered_exactly_once(&client, &env.reply_queue, n).await;
    let new_primary = connect(&standby.url("procinst")).await;
    assert_rows_exactly_once(&new_primary, &ids, n).await;
    assert_eq!(
        client.depth(&env.dead_queue).await,
        0,
        "nothing dead-lettered"
    );

    let stop = stopped_at
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    // The outage as the writes saw it: the longest pause between two
    // consecutive transactions, and the first one the new primary took.
    let row = new_primary
        .query_one(
            "SELECT extract(epoch FROM max(gap))::float8, \
                    extract(epoch FROM min(created_at) FILTER (WHERE created_at > $1))::float8 \
             FROM (SELECT created_at, created_at - lag(created_at) OVER (ORDER BY created_at) AS gap \
                   FROM request_log) g",
            &[&last_kept],
        )
        .await
        .expect("timeline");
    let (longest_pause, first_after): (Option<f64>, Option<f64>) = (row.get(0), row.get(1));
    let metrics = env.worker(w).metrics().await;
    eprintln!(
        "failover: stopped in {stop_took:?}, promoted {promoted_after:?} after the stop began; \
         writes paused {:.2} s at most; the new primary's first write begun {:.2} s after the stop began; \
         {kept} of {n} written before; {}; {}",
        longest_pause.unwrap_or(f64::NAN),
        first_after.map_or(f64::NAN, |t| t - stop),
        metric(&metrics, "procinst_redeliveries_total"),
        metric(&metrics, "procinst_db_retries_total"),
    );
}

/// Ends the worker's sessions on `database`, so that new ones take its
/// settings.
async fn end_worker_sessions(admin: &tokio_postgres::Client, database: &str) {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'procinst'",
            &[&database],
        )
        .await
        .expect("terminate the worker's sessions");
}

/// The number of `request_log` rows a stopped primary's synchronous
/// standby holds once it has replayed everything it received, and the
/// latest `created_at` among them.
async fn replayed_request_log(standby: &Cluster) -> (i64, Option<SystemTime>) {
    let reader = connect(&standby.url("procinst")).await;
    // Replayed all it received: the replay position reaches the receive
    // position, or stops moving. The receive position can rest beyond the
    // last record (the walreceiver reports a restart from a segment's
    // start after the primary is gone), where replay never gets to.
    let deadline = std::time::Instant::now() + WAIT;
    let mut last: Option<String> = None;
    loop {
        let row = reader
            .query_one(
                "SELECT pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn(), pg_last_wal_replay_lsn()::text",
                &[],
            )
            .await
            .expect("replay position");
        let (caught_up, replay): (Option<bool>, Option<String>) = (row.get(0), row.get(1));
        if caught_up == Some(true) || (replay.is_some() && replay == last) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the standby replayed what it received"
        );
        last = replay;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let row = reader
        .query_one("SELECT count(*), max(created_at) FROM request_log", &[])
        .await
        .expect("count on the standby");
    (row.get(0), row.get(1))
}

/// Every request answered exactly once, with code 0; the process ids of all
/// replies.
async fn answered_exactly_once(client: &Client, queue: &str, n: usize) -> Vec<i64> {
    let replies = client.replies_per_request(queue, n).await;
    assert_eq!(replies.len(), n, "every request answered");
    let mut ids = Vec::new();
    for (id, bodies) in &replies {
        assert_eq!(bodies.len(), 1, "{id} answered {} times", bodies.len());
        let json: Value = serde_json::from_slice(&bodies[0]).expect("json");
        assert_eq!(json["code"], json!(0), "{id}: {json}");
        let data = json["data"].as_array().expect("process ids");
        ids.extend(data.iter().map(|v| v.as_i64().expect("an id")));
    }
    ids
}

/// Every replied process id is a row, no row is extra, one request_log row
/// per request.
async fn assert_rows_exactly_once(db: &tokio_postgres::Client, ids: &[i64], requests: usize) {
    let count = |sql: &'static str| async move {
        db.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0)
    };
    let found: i64 = db
        .query_one(
            "SELECT count(*) FROM process WHERE bk_process_id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("replied ids")
        .get(0);
    assert_eq!(found, ids.len() as i64, "every replied process id exists");
    assert_eq!(
        count("SELECT count(*) FROM process").await,
        ids.len() as i64
    );
    assert_eq!(
        count("SELECT count(*) FROM process_instance_relation").await,
        ids.len() as i64
    );
    assert_eq!(
        count("SELECT count(*) FROM request_log").await,
        requests as i64
    );
}

/// `name value` from a Prometheus text page, or `name ?`.
fn metric(page: &str, name: &str) -> String {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or(&format!("{name} 0 (never incremented)"))
        .to_owned()
}

/// Each SQLSTATE class takes its rung of the failure ladder; a SQLSTATE
/// only comes from a server, so each one is raised there for real.
#[tokio::test]
async fn each_sqlstate_class_has_its_rung_of_the_failure_ladder() {
    let (client, connection) = tokio_postgres::connect(PG_ADMIN_URL, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL");
    let connection = tokio::spawn(connection);
    let expected = [
        ("25006", OnStore::RetryLater, "read-only after a failover"),
        ("42501", OnStore::RetryLater, "a missing privilege"),
        ("42P01", OnStore::RetryLater, "a missing table"),
        ("57P01", OnStore::RetryLater, "an administrator shutdown"),
        ("53100", OnStore::RetryLater, "a full disk"),
        ("40P01", OnStore::RetryLater, "a deadlock"),
        ("XX000", OnStore::RetryLater, "an internal error"),
        ("23505", OnStore::DecideAgain, "a lost race"),
        ("22021", OnStore::Split, "a bad character"),
        ("22003", OnStore::Split, "a number out of range"),
        ("23502", OnStore::Split, "a null in a not-null column"),
        ("23514", OnStore::Split, "a failed check"),
        ("54000", OnStore::Split, "a program limit"),
    ];
    for (sqlstate, rung, what) in expected {
        let raise =
            format!("DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{sqlstate}'; END $$");
        let e = StoreError::from(client.batch_execute(&raise).await.expect_err("raised"));
        assert_eq!(e.sqlstate(), Some(sqlstate));
        assert_eq!(OnStore::of(&e), rung, "{sqlstate}: {what}");
    }

    connection.abort();
    let _ = connection.await;
    let closed = client.simple_query("SELECT 1").await.expect_err("closed");
    assert_eq!(
        OnStore::of(&StoreError::from(closed)),
        OnStore::RetryLater,
        "a lost connection"
    );
}
