//! `[state] url = "postgres://…"`: a files → SQLite pipeline runs unchanged with its state in
//! PostgreSQL (the testkit's throwaway cluster), survives a crash at a failpoint, and the
//! faults at start say what is wrong without showing the password.

use std::os::unix::process::ExitStatusExt;

use dovetail_e2e::{Scratch, show};
use dovetail_testkit::pg;
use serde_json::Value;

const RECORDS: u64 = 3000;
const PASSWORD_ENV: &str = "DOVETAIL_E2E_PG_PASSWORD";

/// A scratch with `RECORDS` events and a config whose state is at `url` (`${…}` allowed).
fn setup(url: &str) -> Scratch {
    let s = Scratch::new();
    let lines: String = (0..RECORDS).map(|i| format!("{{\"id\": {i}, \"value\": {}}}\n", i * 7)).collect();
    s.write("events.jsonl", &lines);
    s.write(
        "dovetail.toml",
        &format!(
            r#"
[state]
url = "{url}"
schema = "dt_state"

[pipelines.events]
batch_size = 200

[pipelines.events.source]
kind = "files"
[[pipelines.events.source.streams]]
name = "events"
path = "events.jsonl"
primary_key = ["id"]

[pipelines.events.sink]
kind = "sqlite"
path = "warehouse.db"
"#
        ),
    );
    s
}

/// The database URL with its password taken from the environment.
fn url_from_env(db: &pg::TestDb) -> String {
    db.url().replace(&format!(":{}@", db.password()), &format!(":${{{PASSWORD_ENV}}}@"))
}

fn written(report: &Value) -> u64 {
    report["streams"]["events"]["written"].as_u64().unwrap_or_else(|| panic!("no written count in {report}"))
}

fn assert_sink_exact(s: &Scratch) {
    let (count, distinct, sum): (u64, u64, u64) = s
        .db("warehouse.db")
        .query_row("SELECT count(*), count(DISTINCT id), sum(value) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((count, distinct, sum), (RECORDS, RECORDS, 7 * RECORDS * (RECORDS - 1) / 2), "every key exactly once");
}

#[test]
fn a_pipeline_runs_unchanged_with_its_state_in_postgresql() {
    let Some(db) = pg::database("pg_state_runs") else { return };
    let s = setup(&url_from_env(&db));
    let run = |s: &Scratch| {
        let out = s.cmd(&["run", "--json"]).env(PASSWORD_ENV, db.password()).output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)));
        assert!(out.status.success(), "{}", show(&out));
        report
    };
    assert_eq!(written(&run(&s)), RECORDS);
    assert_eq!(written(&run(&s)), 0, "an unchanged rerun writes nothing");
    assert_sink_exact(&s);
    assert!(!s.path(".dovetail/state.db").exists(), "no SQLite state beside the config");

    let check = s.cmd(&["check"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{}", show(&check));
    let at = format!("schema `dt_state`: at migration {}", dovetail_state_pg::migrations::SCHEMA_VERSION);
    assert!(text.contains(&at), "check says which migration: {text}");
    assert!(!text.contains(db.password()), "no password in output: {text}");
}

#[test]
fn a_run_killed_after_a_checkpoint_resumes_with_the_sink_exact() {
    let Some(db) = pg::database("pg_state_killed") else { return };
    let s = setup(&url_from_env(&db));
    let out = s
        .cmd(&["run"])
        .env(PASSWORD_ENV, db.password())
        .env("DOVETAIL_FAILPOINT", "after_checkpoint:4")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "the failpoint aborts the run\n{}", show(&out));
    let out = s.cmd(&["run", "--json"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(written(&report), RECORDS - 4 * 200, "the rerun resumes after the 4 committed batches");
    assert_sink_exact(&s);
}

#[test]
fn postgresql_down_at_start_exits_7_naming_host_and_port() {
    let Some(db) = pg::database("pg_state_down") else { return };
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = url_from_env(&db).replace(&format!(":{}/", db.port()), &format!(":{port}/"));
    let s = setup(&url);
    let out = s.cmd(&["run"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "names host and port: {text}");
    assert!(!text.contains(db.password()), "no password in output: {text}");
}

#[test]
fn a_wrong_password_exits_4_without_showing_it() {
    let Some(db) = pg::database("pg_state_password") else { return };
    let s = setup(&url_from_env(&db));
    let wrong = "not-the-Password-42";
    let out = s.cmd(&["run"]).env(PASSWORD_ENV, wrong).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("refused user `postgres`"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(db.password()), "no password in output: {text}");
}

#[test]
fn a_run_lock_held_elsewhere_refuses_the_run_naming_the_holder_until_released() {
    use dovetail_core::DeliveryStore;
    let Some(db) = pg::database("pg_state_lock") else { return };
    let s = setup(&url_from_env(&db));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Another host's run: the same schema's lock of the same pipeline, on its own connection.
    let other =
        dovetail_state_pg::PgState::new(dovetail_state_pg::PgTarget::parse(db.url(), Some("dt_state")).unwrap())
            .unwrap();
    let held = rt.block_on(other.lock("events")).unwrap();
    let out = s.cmd(&["run"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("pipeline `events` is already running"), "{text}");
    assert!(text.contains(&format!("dovetail pid {}", std::process::id())), "names the holder: {text}");
    rt.block_on(async move {
        drop(held);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    });
    let out = s.cmd(&["run"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert!(out.status.success(), "a released lock lets the run go\n{}", show(&out));
    assert_sink_exact(&s);
}

#[test]
fn state_on_a_tls_only_server_with_verify_full_and_the_test_ca() {
    let certs = pg::test_certs(&["localhost"]);
    let options = pg::ClusterOptions::tls(&certs.cert_pem, &certs.key_pem, true);
    let Some(cluster) = pg::Cluster::start("pg_state_tls", &options) else { return };
    let db = cluster.database("pg_state_tls");
    let probe = Scratch::new();
    probe.write("ca.pem", &certs.ca_pem);
    let ca = probe.path("ca.pem");
    let url = url_from_env(&db).replacen("@127.0.0.1:", "@localhost:", 1);
    let s = setup(&format!("{url}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}", ca.display()));
    let out = s.cmd(&["run"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_sink_exact(&s);

    // The same server, its certificate checked against the system's roots: refused.
    let s = setup(&format!("{url}?hostaddr=127.0.0.1&sslmode=verify-full"));
    let out = s.cmd(&["run"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("TLS certificate of PostgreSQL at localhost:"), "{text}");
    assert!(text.contains("sslrootcert"), "says what to set: {text}");
    assert!(!text.contains(db.password()), "no password in output: {text}");
}
