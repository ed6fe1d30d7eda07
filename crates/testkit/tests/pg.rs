//! The throwaway PostgreSQL: a database per test, cleanup when the test process dies however
//! it dies, and no PostgreSQL never passing silently.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dovetail_testkit::pg;

/// Runs one test of this file in a child process (the helpers below are `#[ignore]`d).
fn child(test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--ignored", "--nocapture", "--test-threads=1"]);
    for var in [pg::URL_ENV, pg::ALLOW_NO_PG_ENV, pg::SKIP_LOG_ENV, pg::BIN_ENV] {
        cmd.env_remove(var);
    }
    cmd
}

async fn query_one(url: &str, sql: &str) -> Result<i64, tokio_postgres::Error> {
    let url = format!("{url}?connect_timeout=3");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client.query_one(sql, &[]).await?.get(0))
}

#[tokio::test]
async fn each_test_gets_a_fresh_database_of_its_own() {
    let Some(a) = pg::database("fresh_a") else { return };
    let b = pg::database("fresh_b").unwrap();
    assert_ne!(a.name(), b.name());
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    let (client, conn) = tokio_postgres::connect(a.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    assert_eq!(query_one(a.url(), tables).await.unwrap(), 1);
    assert_eq!(query_one(b.url(), tables).await.unwrap(), 0, "another test's database is untouched");
    let wrong = query_one(&a.url_with_password("nope"), "SELECT 1::bigint").await.unwrap_err();
    let code = wrong.code().cloned();
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "password authentication is on: {wrong:?}"
    );
}

#[test]
#[ignore = "run by the_cluster_goes_when_its_test_process_is_killed"]
fn helper_start_a_cluster_and_hang() {
    let db = pg::database("helper").unwrap();
    println!("URL={}", db.url());
    std::thread::sleep(Duration::from_secs(600));
}

#[tokio::test]
async fn the_cluster_goes_when_its_test_process_is_killed() {
    if pg::database("killed").is_none() {
        return;
    }
    let mut proc = child("helper_start_a_cluster_and_hang").stdout(Stdio::piped()).spawn().unwrap();
    let out = BufReader::new(proc.stdout.take().unwrap());
    let url = out.lines().map_while(Result::ok).find_map(|l| l.split_once("URL=").map(|(_, u)| u.to_owned())).unwrap();
    eprintln!("child cluster at {url}");
    assert_eq!(query_one(&url, "SELECT 1::bigint").await.unwrap(), 1, "the child's cluster is up");
    proc.kill().unwrap(); // SIGKILL: no exit hook of the child runs.
    proc.wait().unwrap();
    eprintln!("child killed");
    let started = Instant::now();
    while query_one(&url, "SELECT 1::bigint").await.is_ok() {
        assert!(started.elapsed() < Duration::from_secs(20), "the killed process's cluster still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
#[ignore = "run by no_postgresql_fails_loudly_or_is_counted_as_skipped"]
fn helper_needs_postgresql() {
    if pg::database("helper_needs_postgresql").is_none() {
        println!("RETURNED");
    }
}

#[test]
fn no_postgresql_fails_loudly_or_is_counted_as_skipped() {
    let missing = child("helper_needs_postgresql").env(pg::BIN_ENV, "/nonexistent").output().unwrap();
    assert!(!missing.status.success(), "no PostgreSQL must not pass");
    let text = String::from_utf8_lossy(&missing.stdout).into_owned() + &String::from_utf8_lossy(&missing.stderr);
    assert!(text.contains("apt-get install -y postgresql") && text.contains(pg::ALLOW_NO_PG_ENV), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skipped");
    let allowed = child("helper_needs_postgresql")
        .env(pg::BIN_ENV, "/nonexistent")
        .env(pg::ALLOW_NO_PG_ENV, "1")
        .env(pg::SKIP_LOG_ENV, &log)
        .output()
        .unwrap();
    assert!(allowed.status.success());
    let stderr = String::from_utf8_lossy(&allowed.stderr);
    assert!(stderr.contains("SKIPPED PostgreSQL test `helper_needs_postgresql`"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "helper_needs_postgresql\n");
}
