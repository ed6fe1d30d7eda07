//! PostgreSQL state faults mid-run, through the binary: every connection dropped while a run
//! is going (it reconnects, takes its run lock again and finishes with the sink exact), the
//! run lock taken over by another run meanwhile (exit 7), and a state user without the
//! privileges the schema needs (exit 8 naming the privilege and the GRANT).
//!
//! A run is held mid-way by the fake vendor switched down (503s retried up to 100 times): the
//! test waits for the vendor to count the failed requests, not for a time.

use std::time::Duration;

use dovetail_e2e::vendor::{RestPipeline, RestStream, count, output_async, sink_items};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, VendorConfig, VendorHandle};
use dovetail_testkit::pg;
use serde_json::Value;

const RECORDS: u64 = 1000;
const PASSWORD_ENV: &str = "DOVETAIL_E2E_PG_PASSWORD";

/// A REST → SQLite pipeline (`vendor`, stream `items`, 10 pages of 100, one commit per page)
/// with its state in `url`'s schema `dt_state`; 503s are retried for ~10 s.
fn setup(base_url: &str, url: &str) -> Scratch {
    let s = Scratch::new();
    let toml = RestPipeline::new(base_url)
        .http("{ retry = { base_delay_ms = 5, max_delay_ms = 100, max_elapsed_ms = 60000, max_attempts = 100 } }")
        .stream(RestStream::items_cursor(100))
        .pipeline_line("batch_size = 100")
        .toml();
    s.write("dovetail.toml", &format!("[state]\nurl = \"{url}\"\nschema = \"dt_state\"\n\n{toml}"));
    s
}

/// The database URL with its password taken from the environment.
fn url_from_env(db: &pg::TestDb) -> String {
    db.url().replace(&format!(":{}@", db.password()), &format!(":${{{PASSWORD_ENV}}}@"))
}

/// A superuser connection to `db`, for the test's own statements.
async fn admin(db: &pg::TestDb) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Starts `dovetail run --json`, waits until it read 3 pages, then switches the vendor down
/// and waits until the run has been refused twice: it is now between commits, retrying.
async fn held_run(
    s: &Scratch,
    db: &pg::TestDb,
    vendor: &VendorHandle,
) -> tokio::task::JoinHandle<std::process::Output> {
    let run = tokio::spawn(output_async({
        let mut c = s.cmd(&["run", "--json"]);
        c.env(PASSWORD_ENV, db.password());
        c
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while vendor.stats().pages_served < 3 {
        assert!(!run.is_finished() && std::time::Instant::now() < deadline, "the run ended before page 3");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    vendor.set_down(true);
    while vendor.stats().server_errors < 2 {
        assert!(!run.is_finished() && std::time::Instant::now() < deadline, "the run ended before the outage");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    run
}

fn assert_sink_exact(s: &Scratch) {
    let ids: Vec<u64> = sink_items(s, "items").iter().map(|r| r.0).collect();
    assert_eq!(ids, (1..=RECORDS).collect::<Vec<_>>(), "every record exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_dropped_mid_run_the_run_reconnects_and_finishes_exact() {
    let Some(db) = pg::database("pg_faults_dropped") else { return };
    let vendor = FakeVendor::start(VendorConfig { records: RECORDS, ..VendorConfig::default() }).await.unwrap();
    let s = setup(&vendor.base_url(), &url_from_env(&db));
    let run = held_run(&s, &db, &vendor).await;
    // What a restart does to every session: the pool's and the run lock's.
    let killed = admin(&db)
        .await
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND application_name LIKE 'dovetail%'",
            &[],
        )
        .await
        .unwrap();
    assert!(killed >= 2, "the pool's and the lock's connections: {killed}");
    vendor.set_down(false);
    let out = run.await.unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), RECORDS, "{report:#}");
    let text = show(&out);
    assert!(text.contains("took the run lock again"), "the lock was taken again: {text}");
    assert!(!text.contains(db.password()), "no password in output");
    assert_sink_exact(&s);

    let (out, report) = {
        let out = output_async({
            let mut c = s.cmd(&["run", "--json"]);
            c.env(PASSWORD_ENV, db.password());
            c
        })
        .await;
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
        (out, report)
    };
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 0, "nothing was lost or applied twice: {report:#}");
    assert_sink_exact(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_mid_run_the_run_reconnects_and_finishes_exact() {
    // A cluster of this test's own: restarting the shared one would cut the other tests off.
    let Some(cluster) = pg::Cluster::start("pg_faults_restart", &pg::ClusterOptions::default()) else { return };
    let db = cluster.database("pg_faults_restart");
    let vendor = FakeVendor::start(VendorConfig { records: RECORDS, ..VendorConfig::default() }).await.unwrap();
    let s = setup(&vendor.base_url(), &url_from_env(&db));
    let run = held_run(&s, &db, &vendor).await;
    // Kept: dropping the cluster ends its watchdog, which stops and removes it.
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.restart();
        cluster
    })
    .await
    .unwrap();
    vendor.set_down(false);
    let out = run.await.unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), RECORDS, "{report:#}");
    assert!(show(&out).contains("took the run lock again"), "{}", show(&out));
    assert_sink_exact(&s);
    let out = output_async({
        let mut c = s.cmd(&["run", "--json"]);
        c.env(PASSWORD_ENV, db.password());
        c
    })
    .await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(count(&report, "items", "written"), 0, "nothing lost or applied twice: {report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_lock_taken_over_while_its_connection_was_down_stops_the_run_with_exit_7() {
    use dovetail_core::DeliveryStore;
    let Some(db) = pg::database("pg_faults_lock") else { return };
    let vendor = FakeVendor::start(VendorConfig { records: RECORDS, ..VendorConfig::default() }).await.unwrap();
    let s = setup(&vendor.base_url(), &url_from_env(&db));
    let run = held_run(&s, &db, &vendor).await;
    let killed = admin(&db)
        .await
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'dovetail pid %' \
             AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed, 1, "the run lock's own connection");
    // Another host's run takes the lock as soon as it is free.
    let other =
        dovetail_state_pg::PgState::new(dovetail_state_pg::PgTarget::parse(db.url(), Some("dt_state")).unwrap())
            .unwrap();
    let held = other.lock("vendor").await.expect("the dropped lock is free");
    vendor.set_down(false);
    let out = run.await.unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("lost the connection holding the run lock of `vendor`"), "{text}");
    assert!(text.contains("another run took the lock meanwhile"), "{text}");
    assert!(text.contains(&format!("dovetail pid {}", std::process::id())), "names the holder: {text}");
    let written_before = sink_items(&s, "items").len() as u64;
    assert!(written_before < RECORDS, "the run stopped before the end: {written_before}");

    // Released: the rerun (waiting up to its lock wait for the release) resumes.
    drop(held);
    let out = output_async({
        let mut c = s.cmd(&["run", "--json"]);
        c.env(PASSWORD_ENV, db.password());
        c
    })
    .await;
    assert!(out.status.success(), "{}", show(&out));
    assert_sink_exact(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_user_without_privileges_exits_8_naming_the_privilege_and_the_grant() {
    let Some(db) = pg::database("pg_faults_privileges") else { return };
    let vendor = FakeVendor::start(VendorConfig { records: RECORDS, ..VendorConfig::default() }).await.unwrap();
    let role = format!("limited_{}", std::process::id());
    let secret = "limited-Pw-73";
    let a = admin(&db).await;
    a.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{secret}'")).await.unwrap();
    let url = db.url().replacen(&format!("postgres:{}@", db.password()), &format!("{role}:${{{PASSWORD_ENV}}}@"), 1);
    let s = setup(&vendor.base_url(), &url);
    let run = || {
        let mut c = s.cmd(&["run"]);
        c.env(PASSWORD_ENV, secret);
        output_async(c)
    };

    // No schema yet, and no CREATE on the database to make one.
    let out = run().await;
    assert_eq!(out.status.code(), Some(8), "{}", show(&out));
    let text = show(&out);
    let name = db.name();
    assert!(text.contains(&format!("permission denied: dovetail needs CREATE on database \"{name}\"")), "{text}");
    assert!(text.contains(&format!("GRANT CREATE ON DATABASE \"{name}\" TO \"{role}\"")), "{text}");
    assert!(!text.contains(secret), "no password in output: {text}");

    // The schema exists but the user may only look at it.
    a.batch_execute(&format!("CREATE SCHEMA dt_state; GRANT USAGE ON SCHEMA dt_state TO {role}")).await.unwrap();
    let out = run().await;
    assert_eq!(out.status.code(), Some(8), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("permission denied: dovetail needs USAGE and CREATE on schema \"dt_state\""), "{text}");
    assert!(text.contains(&format!("GRANT USAGE, CREATE ON SCHEMA \"dt_state\" TO \"{role}\"")), "{text}");

    // The GRANT the message names is enough.
    a.batch_execute(&format!("GRANT USAGE, CREATE ON SCHEMA dt_state TO {role}")).await.unwrap();
    let out = run().await;
    assert!(out.status.success(), "{}", show(&out));
    assert_sink_exact(&s);
}
