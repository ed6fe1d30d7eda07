//! `[pipelines.X.sink] kind = "postgres"` through the binary, on the testkit's throwaway
//! PostgreSQL: typed rows written exactly (30-digit decimals, 20-digit integers, JSON),
//! hostile and over-long field names, a key repeated in one batch, NUL characters, an
//! unchanged rerun, and the faults at start (server down, wrong password) without the
//! password in any output.

use dovetail_e2e::pg_proxy::{Cut, Hold, PgProxy};
use dovetail_e2e::{Scratch, show};
use dovetail_testkit::pg;
use serde_json::{Value, json};

const PASSWORD_ENV: &str = "DOVETAIL_E2E_PG_SINK_PASSWORD";
const HOSTILE: &str = r#"x"; DROP TABLE s; --"#;

/// The database URL with its password taken from the environment.
fn url_from_env(db: &pg::TestDb) -> String {
    db.url().replace(&format!(":{}@", db.password()), &format!(":${{{PASSWORD_ENV}}}@"))
}

/// A scratch whose pipeline reads `events.jsonl` (these records) into schema `wh`.
fn setup(url: &str, records: &[Value], sink_extra: &str) -> Scratch {
    let s = Scratch::new();
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    s.write("events.jsonl", &lines);
    s.write(
        "dovetail.toml",
        &format!(
            r#"
[pipelines.events]
batch_size = 100

[pipelines.events.source]
kind = "files"
[[pipelines.events.source.streams]]
name = "events"
path = "events.jsonl"
primary_key = ["id"]

[pipelines.events.sink]
kind = "postgres"
url = "{url}"
schema = "wh"
{sink_extra}
"#
        ),
    );
    s
}

/// Every row of `wh.<table>` as JSON, ordered by `id`, without `_synced_at`.
fn rows(db: &pg::TestDb, table: &str) -> Vec<Value> {
    query(db, &format!("SELECT row_to_json(t)::text FROM wh.\"{table}\" t ORDER BY id"))
        .into_iter()
        .map(|t| {
            let mut v: Value = serde_json::from_str(&t).unwrap();
            v.as_object_mut().unwrap().remove("_synced_at");
            v
        })
        .collect()
}

/// The first column of every row of `sql`, as text.
fn query(db: &pg::TestDb, sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.query(sql, &[]).await.unwrap().iter().map(|r| r.get::<_, String>(0)).collect()
    })
}

fn run(s: &Scratch, db: &pg::TestDb) -> Value {
    let out = s.cmd(&["run", "--json"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert!(!show(&out).contains(db.password()), "no password in output: {}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)))
}

#[test]
fn jsonl_lands_in_typed_rows_exactly_and_an_unchanged_rerun_writes_nothing() {
    let Some(db) = pg::database("pg_sink_rows") else { return };
    let long_a = format!("{}_alpha", "l".repeat(64));
    let long_b = format!("{}_bravo", "l".repeat(64));
    let mut r1 = json!({"id": 1, "amount": 0, "big": 1, "tags": ["a"], "ok": true});
    // serde_json's arbitrary precision keeps the digits as written.
    r1["amount"] = serde_json::from_str("123456789012345678901.123456789").unwrap();
    r1["big"] = serde_json::from_str("12345678901234567890").unwrap();
    r1[HOSTILE] = json!("hostile");
    r1[&long_a] = json!("a");
    r1[&long_b] = json!("b");
    let first = json!({"id": 2, "amount": 1, "big": 2, "tags": [], "ok": false, "note": "first version"});
    let last: Value = serde_json::from_str(
        r#"{"id": 2, "amount": 2.50, "big": 3, "tags": {"k": "v"}, "ok": false, "note": "last version"}"#,
    )
    .unwrap();
    let s = setup(&url_from_env(&db), &[r1, first, last], "");
    let report = run(&s, &db);
    assert_eq!(report["streams"]["events"]["written"], json!(2), "{report}");

    let got = rows(&db, "events");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["amount"].to_string(), "123456789012345678901.123456789", "exact numeric");
    assert_eq!(got[0]["big"].to_string(), "12345678901234567890", "a 20-digit integer unchanged");
    assert_eq!(got[0][HOSTILE], json!("hostile"), "a hostile name is a column of that name");
    assert_eq!((got[0]["tags"].clone(), got[0]["ok"].clone()), (json!(["a"]), json!(true)));
    assert_eq!(got[1]["note"], json!("last version"), "the last record of a repeated key wins");
    assert_eq!((got[1]["amount"].to_string(), got[1]["tags"].clone()), ("2.50".to_owned(), json!({"k": "v"})));
    let longs: Vec<&String> = got[0].as_object().unwrap().keys().filter(|k| k.starts_with("llll")).collect();
    assert_eq!(longs.len(), 2, "two long names, two columns: {longs:?}");
    assert!(longs.iter().all(|k| k.len() == 63), "{longs:?}");
    let mut noted = query(&db, "SELECT field FROM wh._dovetail_columns WHERE column_name LIKE 'llll%' ORDER BY field");
    noted.sort();
    assert_eq!(noted, vec![long_a, long_b], "each shortened column maps back to its field");
    assert_eq!(
        query(&db, "SELECT count(*)::text FROM pg_tables WHERE schemaname = 'wh' AND tablename = 's'"),
        vec!["0"]
    );

    let report = run(&s, &db);
    assert_eq!(report["streams"]["events"]["written"], json!(0), "{report}");
    assert_eq!(rows(&db, "events"), got, "the rerun changed nothing");
}

#[test]
fn a_nul_character_dead_letters_its_record_naming_the_field_or_is_stripped() {
    let Some(db) = pg::database("pg_sink_nul") else { return };
    let records = [json!({"id": 1, "name": "ok"}), json!({"id": 2, "name": "bad\u{0}name", "doc": {"a": ["x\u{0}"]}})];
    let s = setup(&url_from_env(&db), &records, "");
    let report = run(&s, &db);
    assert_eq!(report["streams"]["events"]["written"], json!(1), "{report}");
    assert_eq!(report["streams"]["events"]["dead_lettered"], json!(1), "{report}");
    let out = s.cmd(&["dead-letters", "list", "--json", "--stream", "events"]).output().unwrap();
    assert!(show(&out).contains("field `doc/a/0` holds a NUL character"), "{}", show(&out));
    assert_eq!(rows(&db, "events").len(), 1);

    let Some(db) = pg::database("pg_sink_nul_strip") else { return };
    let s = setup(&url_from_env(&db), &records, "nul = \"strip\"");
    let report = run(&s, &db);
    assert_eq!(report["streams"]["events"]["written"], json!(2), "{report}");
    let got = rows(&db, "events");
    assert_eq!((got[1]["name"].clone(), got[1]["doc"].clone()), (json!("badname"), json!({"a": ["x"]})));
}

#[test]
fn postgresql_down_exits_7_and_a_wrong_password_exits_4_without_showing_it() {
    let Some(db) = pg::database("pg_sink_faults") else { return };
    let records = [json!({"id": 1})];
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = url_from_env(&db).replace(&format!(":{}/", db.port()), &format!(":{port}/"));
    let s = setup(&down, &records, "");
    let out = s.cmd(&["run"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    assert!(show(&out).contains(&format!("127.0.0.1:{port}")) && !show(&out).contains(db.password()), "{}", show(&out));
    // The stream's `on_unavailable` applies: `pause` marks it paused, still exiting 7.
    let mut config = std::fs::read_to_string(s.path("dovetail.toml")).unwrap();
    config.push_str("\n[pipelines.events.streams.events]\non_unavailable = \"pause\"\n");
    s.write("dovetail.toml", &config);
    let out = s.cmd(&["run", "--json"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)));
    assert_eq!(report["outcome"], json!("paused"), "{report}");

    let s = setup(&url_from_env(&db), &records, "");
    let wrong = "not-the-Password-42";
    let out = s.cmd(&["run"]).env(PASSWORD_ENV, wrong).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(!show(&out).contains(wrong) && !show(&out).contains(db.password()), "{}", show(&out));
}

/// Run `sql` (several statements) on the test database.
fn execute(db: &pg::TestDb, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    })
}

#[test]
fn an_existing_table_with_incompatible_types_gets_column_type_drift_and_keeps_the_good_rows() {
    let Some(db) = pg::database("pg_sink_types") else { return };
    execute(&db, "CREATE SCHEMA wh; CREATE TABLE wh.events (id bigint PRIMARY KEY, amount bigint, addr inet)");
    let records = [json!({"id": 1, "amount": 5}), json!({"id": 2, "amount": "five"}), json!({"id": 3, "amount": 7})];
    let s = setup(&url_from_env(&db), &records, "");
    let report = run(&s, &db);
    assert_eq!(report["streams"]["events"]["written"], json!(3), "{report}");
    let amounts: Vec<Value> = rows(&db, "events").iter().map(|r| r["amount"].clone()).collect();
    assert_eq!(amounts, vec![json!(5), Value::Null, json!(7)], "the misfit written as NULL, the rest as they came");
    let out = s.cmd(&["drift", "--json"]).output().unwrap();
    let events: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)));
    let text = events.to_string();
    assert!(text.contains("\"/amount\"") && text.contains("column_type"), "{text}");
    assert!(text.contains("integer (bigint)") && text.contains("wh.events"), "names what the column takes: {text}");
}

#[test]
fn a_full_refresh_deletes_the_rows_gone_from_the_source_hard_or_soft() {
    for (mode, name) in [("delete", "pg_sink_delete"), ("soft_delete", "pg_sink_soft")] {
        let Some(db) = pg::database(name) else { return };
        let all = [json!({"id": 1, "v": "a"}), json!({"id": 2, "v": "b"}), json!({"id": 3, "v": "c"})];
        let s = setup(&url_from_env(&db), &all, "");
        let mut config = std::fs::read_to_string(s.path("dovetail.toml")).unwrap();
        config.push_str(&format!(
            "\n[pipelines.events.streams.events]\nsync_mode = \"full_refresh\"\ndelete = \"{mode}\"\n"
        ));
        s.write("dovetail.toml", &config);
        run(&s, &db);
        s.write("events.jsonl", &format!("{}\n{}\n", all[0], all[2]));
        let report = run(&s, &db);
        assert_eq!(report["streams"]["events"]["written"], json!(0), "{report}");
        let got = rows(&db, "events");
        match mode {
            "delete" => assert_eq!(got.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(), vec![json!(1), json!(3)]),
            _ => {
                let deleted: Vec<bool> = got.iter().map(|r| !r["_deleted_at"].is_null()).collect();
                assert_eq!(deleted, vec![false, true, false], "{got:?}");
            }
        }
    }
}

#[test]
fn check_verifies_privileges_and_creates_nothing() {
    let Some(db) = pg::database("pg_sink_check") else { return };
    let s = setup(&url_from_env(&db), &[json!({"id": 1})], "");
    let out = s.cmd(&["check"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(query(&db, "SELECT count(*)::text FROM pg_namespace WHERE nspname = 'wh'"), vec!["0"], "no schema made");

    let role = format!("weak_{}", db.name());
    execute(&db, &format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'weak-pw'"));
    let weak = format!("postgres://{role}:weak-pw@{}:{}/{}", db.host(), db.port(), db.name());
    let s = setup(&weak, &[json!({"id": 1})], "");
    let out = s.cmd(&["check"]).output().unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains(&format!("user `{role}` may not create it")) && !text.contains("weak-pw"), "{text}");

    execute(&db, &format!("CREATE SCHEMA wh; GRANT USAGE ON SCHEMA wh TO \"{role}\""));
    let out = s.cmd(&["check"]).output().unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("may not create tables in schema `wh` (CREATE), and it holds none"), "{}", show(&out));
    execute(
        &db,
        &format!(
            "CREATE TABLE wh.events (id numeric PRIMARY KEY); \
             GRANT SELECT, INSERT, UPDATE, DELETE ON wh.events TO \"{role}\""
        ),
    );
    let out = s.cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "the existing table is writable: {}", show(&out));
    assert_eq!(
        query(&db, "SELECT count(*)::text FROM pg_tables WHERE schemaname = 'wh'"),
        vec!["1"],
        "check made nothing"
    );
}

#[test]
fn a_kill_after_the_sink_commit_never_writes_that_batch_again() {
    use std::os::unix::process::ExitStatusExt;
    let Some(db) = pg::database("pg_sink_killed") else { return };
    let records: Vec<Value> = (0..1000).map(|i| json!({"id": i, "v": i * 3})).collect();
    let s = setup(&url_from_env(&db), &records, "");
    let out = s
        .cmd(&["run"])
        .env(PASSWORD_ENV, db.password())
        .env("DOVETAIL_FAILPOINT", "after_sink_commit:4")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "the failpoint aborts the run\n{}", show(&out));
    assert_eq!(query(&db, "SELECT count(*)::text FROM wh.events"), vec!["400"], "4 batches in the table");
    let report = run(&s, &db);
    assert_eq!(
        report["streams"]["events"]["written"],
        json!(600),
        "the rerun starts after the 4 batches the sink committed, whatever the state got: {report}"
    );
    let exact = query(&db, "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(v) FROM wh.events");
    assert_eq!(exact, vec![format!("1000 1000 {}", 3 * 999 * 1000 / 2)]);
}

#[test]
fn a_dropped_table_is_written_again_on_the_next_run() {
    let Some(db) = pg::database("pg_sink_lost") else { return };
    let records: Vec<Value> = (0..5).map(|i| json!({"id": i})).collect();
    let s = setup(&url_from_env(&db), &records, "");
    assert_eq!(run(&s, &db)["streams"]["events"]["written"], json!(5));
    execute(&db, "DROP TABLE wh.events");
    let out = s.cmd(&["run", "--json"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)));
    assert_eq!(report["streams"]["events"]["written"], json!(5), "{report}");
    assert!(show(&out).contains("the sink's table `wh.events` is gone"), "{}", show(&out));
    assert_eq!(rows(&db, "events").len(), 5);
}

#[test]
fn a_new_field_becomes_a_new_column_logged() {
    let Some(db) = pg::database("pg_sink_new_field") else { return };
    let s = setup(&url_from_env(&db), &[json!({"id": 1, "a": "x"})], "");
    run(&s, &db);
    s.write("events.jsonl", &format!("{}\n{}\n", json!({"id": 1, "a": "x"}), json!({"id": 2, "a": "y", "b": 2.5})));
    let out = s.cmd(&["run", "--json"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("added column table=\"wh.events\" column=\"b\""), "{}", show(&out));
    let got = rows(&db, "events");
    assert_eq!(got, vec![json!({"id": 1, "a": "x", "b": null}), json!({"id": 2, "a": "y", "b": 2.5})]);
    let ty = query(
        &db,
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'b'",
    );
    assert_eq!(ty, vec!["numeric"]);
}

/// A sink aimed at the state's own schema is refused when the config is read (no server
/// needed); another schema of the same database is the sink's to use.
#[test]
fn a_sink_in_the_state_schema_is_refused_and_another_schema_of_that_database_is_not() {
    let state = "\n[state]\nurl = \"postgres://dt@DB.example:6543/warehouse\"\nschema = \"wh\"\n";
    // The same database written differently (host case, another user, a password): still the state's.
    let s = setup("postgres://loader:pw@db.example:6543/warehouse", &[json!({"id": 1})], state);
    let out = s.run(&["check", "--offline"]);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("`pipelines.events.sink.schema` (`wh` in db.example:6543/warehouse) is the state's schema"),
        "{text}"
    );
    assert!(!text.contains("pw@"), "{text}");

    let s = setup("postgres://loader:pw@db.example:6543/warehouse", &[json!({"id": 1})], state);
    let config = std::fs::read_to_string(s.path("dovetail.toml")).unwrap();
    s.write("dovetail.toml", &config.replacen("schema = \"wh\"", "schema = \"public\"", 1));
    let out = s.run(&["check", "--offline"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// Holds the 3rd merge into `wh.events` (a statement trigger) and the COMMIT of the batch
/// holding the 650th inserted row (a deferred trigger) in `pg_sleep`, for the test to restart
/// the server under them. Sequences, not rows: they count across rolled-back tries.
const HOLDS: &str = r#"CREATE SCHEMA wh;
CREATE TABLE wh.events (id numeric PRIMARY KEY, v numeric);
CREATE SEQUENCE wh.merges; CREATE SEQUENCE wh.inserted;
CREATE FUNCTION wh.hold_merge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF nextval('wh.merges') = 3 THEN PERFORM pg_sleep(120); END IF; RETURN NULL; END $$;
CREATE TRIGGER hold_merge AFTER INSERT ON wh.events FOR EACH STATEMENT EXECUTE FUNCTION wh.hold_merge();
CREATE FUNCTION wh.hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF nextval('wh.inserted') = 650 THEN PERFORM pg_sleep(120); END IF; RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON wh.events DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION wh.hold_commit();"#;

#[test]
fn postgresql_restarted_mid_batch_the_sink_reconnects_and_writes_every_record_once() {
    use std::process::Stdio;
    // A cluster of this test's own: restarting the shared one would cut the other tests off.
    let Some(cluster) = pg::Cluster::start("pg_sink_restart", &pg::ClusterOptions::default()) else { return };
    let db = cluster.database("pg_sink_restart");
    execute(&db, HOLDS);
    let records: Vec<Value> = (0..1000).map(|i| json!({"id": i, "v": i * 3})).collect();
    let s = setup(&url_from_env(&db), &records, "");
    let mut cmd = s.cmd(&["run", "--json"]);
    let mut child = cmd.env(PASSWORD_ENV, db.password()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Mid-merge of batch 3, then at the COMMIT of batch 7 (whose outcome the sink must look up).
    for hold in ["the 3rd merge", "the 7th batch's COMMIT"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while query(&db, "SELECT count(*)::text FROM pg_stat_activity WHERE wait_event = 'PgSleep'") != ["1"] {
            if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
                let out = child.wait_with_output().unwrap();
                panic!("the run never reached {hold}: {}", show(&out));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        cluster.restart();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("lost the connection mid-batch; reconnecting"), "{text}");
    assert!(text.contains("reconnected; the batch is written once"), "{text}");
    assert!(!text.contains(db.password()), "no password in output");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(report["streams"]["events"]["written"], json!(1000), "{report}");
    assert_eq!(report["streams"]["events"]["outbox_queued"], json!(0), "nothing queued: {report}");
    let exact = query(&db, "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(v) FROM wh.events");
    assert_eq!(exact, vec![format!("1000 1000 {}", 3 * 999 * 1000 / 2)], "every record once");
    let report = run(&s, &db);
    assert_eq!(report["streams"]["events"]["written"], json!(0), "nothing left to write: {report}");
}

#[test]
fn a_declared_schema_types_the_columns_before_any_record_arrives() {
    use dovetail_e2e::vendor::{RestPipeline, RestStream};
    use dovetail_fake_vendor::{FakeVendor, VendorConfig};
    let Some(db) = pg::database("pg_sink_schema") else { return };
    // The vendor serves from this runtime's workers while the test runs the binary.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vendor = rt.block_on(FakeVendor::start(VendorConfig { records: 5, ..VendorConfig::default() })).unwrap();
    let schema = r#"schema = { type = "object", properties = { id = { type = "integer" }, updated_at = { type = "string", format = "date-time" }, price = { type = "number", format = "double" }, quantity = { type = "integer" } } }"#;
    let toml = RestPipeline::new(&vendor.base_url()).stream(RestStream::items_cursor(100).line(schema)).toml();
    let sink = format!("kind = \"postgres\"\nurl = \"{}\"\nschema = \"wh\"\n", url_from_env(&db));
    let s = Scratch::new();
    s.write("dovetail.toml", &toml.replace("kind = \"sqlite\"\npath = \"out.db\"\n", &sink));
    let report = run(&s, &db);
    assert_eq!(report["streams"]["items"]["written"], json!(5), "{report}");
    let types = query(
        &db,
        "SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_schema = 'wh' \
         AND table_name = 'items' AND column_name IN ('id', 'updated_at', 'price', 'quantity', 'name') ORDER BY 1",
    );
    assert_eq!(
        types,
        ["id bigint", "name text", "price double precision", "quantity bigint", "updated_at timestamp with time zone"],
        "types from the schema, not from the values"
    );
    drop(vendor);
}

#[test]
fn over_long_table_names_are_shortened_apart_and_noted() {
    let Some(db) = pg::database("pg_sink_long_tables") else { return };
    // 4 + 60 + 6 bytes: over 63, the first 63 the same.
    let long = "s".repeat(60);
    let (a, b) = (format!("{long}_alpha"), format!("{long}_bravo"));
    let s = Scratch::new();
    s.write("a.jsonl", "{\"id\": 1}\n");
    s.write("b.jsonl", "{\"id\": 2}\n{\"id\": 3}\n");
    s.write(
        "dovetail.toml",
        &format!(
            r#"
[pipelines.events.source]
kind = "files"
[[pipelines.events.source.streams]]
name = "{a}"
path = "a.jsonl"
primary_key = ["id"]
[[pipelines.events.source.streams]]
name = "{b}"
path = "b.jsonl"
primary_key = ["id"]

[pipelines.events.sink]
kind = "postgres"
url = "{}"
schema = "wh"
table_prefix = "crm_"
"#,
            url_from_env(&db)
        ),
    );
    let report = run(&s, &db);
    assert_eq!(
        (report["streams"][&a]["written"].clone(), report["streams"][&b]["written"].clone()),
        (json!(1), json!(2))
    );
    let noted = query(
        &db,
        "SELECT stream || ' ' || full_name || ' ' || length(table_name) || ' ' || \
         (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM wh.%I', table_name), false, true, '')))[1]::text \
         FROM wh._dovetail_tables ORDER BY stream",
    );
    assert_eq!(noted, [format!("{a} crm_{a} 63 1"), format!("{b} crm_{b} 63 2")], "two tables, each noted");
    let tables = query(&db, "SELECT count(*)::text FROM pg_tables WHERE schemaname = 'wh' AND tablename LIKE 'crm_%'");
    assert_eq!(tables, ["2"]);
}

#[test]
fn a_batch_takes_two_round_trips_and_its_stage_is_emptied_without_truncate() {
    use std::time::Duration;
    // pg_stat_statements counts the statements that ran; it must be preloaded, so a cluster of
    // this test's own.
    let options = pg::ClusterOptions {
        settings: vec!["shared_preload_libraries=pg_stat_statements".into(), "pg_stat_statements.track=all".into()],
        ..pg::ClusterOptions::default()
    };
    let Some(cluster) = pg::Cluster::start("pg_sink_round_trips", &options) else { return };
    let db = cluster.database("pg_sink_round_trips");
    execute(&db, "CREATE EXTENSION pg_stat_statements");
    const DELAY: Duration = Duration::from_millis(40);
    let proxy = PgProxy::start((db.host().to_owned(), db.port()), Hold::Answers(DELAY));
    let url = url_from_env(&db).replacen(&format!(":{}/", db.port()), &format!(":{}/", proxy.port), 1);
    // Batches of 100: a run of one batch makes the table, then runs of 10 and 30 new batches.
    // What the two later runs do besides their batches (connecting, the table's marker and
    // checkpoint) is the same, so their difference is the round trips of 20 batches.
    let records: Vec<Value> = (0..4100).map(|i| json!({"id": i, "v": i * 3})).collect();
    let s = setup(&url, &records[..100], "");
    let mut round_trips = Vec::new();
    for (upto, calls) in [(100, 1), (1100, 10), (4100, 30)] {
        execute(&db, "SELECT pg_stat_statements_reset()");
        let lines: String = records[..upto].iter().map(|r| format!("{r}\n")).collect();
        s.write("events.jsonl", &lines);
        let started = proxy.bursts(DELAY / 2);
        let report = run(&s, &db);
        round_trips.push(proxy.bursts(DELAY / 2) - started);
        assert_eq!(report["streams"]["events"]["written"], json!(calls * 100), "{report}");
        let count = |pattern: &str| {
            let sql =
                format!("SELECT coalesce(sum(calls), 0)::text FROM pg_stat_statements WHERE query ILIKE '{pattern}'");
            query(&db, &sql).concat().parse::<u64>().unwrap()
        };
        assert_eq!(count("TRUNCATE%"), 0, "the stage is emptied by its ON COMMIT DELETE ROWS");
        assert_eq!(count("CREATE TEMP TABLE%ON COMMIT DELETE ROWS"), calls);
        assert_eq!(count("BEGIN"), calls, "one transaction per batch");
    }
    // Two per batch (BEGIN, the stage and the COPY's start; the rows, the COPY's end, the
    // merge, the offsets row and COMMIT); six before they were pipelined.
    let per_batch = (round_trips[2] as f64 - round_trips[1] as f64) / 20.0;
    assert!(per_batch <= 2.5, "{per_batch} round trips per batch ({round_trips:?} in the three runs)");
}

/// A proxy that holds each COMMIT 60 ms on its way to the server (a slow disk) sees each
/// batch's transaction begin on a second connection while the one before still waits for its
/// COMMIT's answer;
/// one after the other, a batch began only once the one before had committed. The first
/// batch creates the table: the second waits for that COMMIT (the table does not exist for
/// it until then).
#[test]
fn the_next_batch_is_written_while_the_one_before_commits() {
    let Some(db) = pg::database("pg_sink_overlap") else { return };
    let proxy = PgProxy::start((db.host().to_owned(), db.port()), Hold::Commits(std::time::Duration::from_millis(60)));
    let url = url_from_env(&db).replacen(&format!(":{}/", db.port()), &format!(":{}/", proxy.port), 1);
    let records: Vec<Value> = (0..3000).map(|i| json!({"id": i, "v": i * 3})).collect();
    let s = setup(&url, &records, "");
    let report = run(&s, &db);
    assert_eq!(report["streams"]["events"]["written"], json!(3000), "{report}");
    assert_eq!(query(&db, "SELECT count(DISTINCT id)::text FROM wh.events"), ["3000"]);
    // 30 batches, 29 of them after another.
    let overlaps = proxy.overlaps();
    assert!(overlaps >= 20, "{overlaps} of 30 batches began while the one before committed");
}

/// Batch n's connection cut at its COMMIT (before the server got it, and after, its answer
/// lost) while batch n+1 is in flight on another: n+1 does not commit past n; the sink writes
/// n again on a fresh connection (or finds it landed), then n+1, and the run ends exact.
#[test]
fn a_connection_cut_at_commit_with_the_next_batch_in_flight_loses_and_repeats_nothing() {
    use std::time::Duration;
    let Some(db) = pg::database("pg_sink_overlap_cut") else { return };
    let proxy = PgProxy::start((db.host().to_owned(), db.port()), Hold::Commits(Duration::from_millis(20)));
    let url = url_from_env(&db).replacen(&format!(":{}/", db.port()), &format!(":{}/", proxy.port), 1);
    let records: Vec<Value> = (0..6000).map(|i| json!({"id": i, "v": i * 3})).collect();
    let s = setup(&url, &records[..100], "");
    run(&s, &db);
    for (upto, how) in [(3000, Cut::BeforeCommit), (6000, Cut::AfterCommit)] {
        let lines: String = records[..upto].iter().map(|r| format!("{r}\n")).collect();
        s.write("events.jsonl", &lines);
        proxy.cut_at_commit(8, how);
        let report = run(&s, &db);
        assert_eq!(report["outcome"], json!("succeeded"), "{how:?}: {report}");
        let written = report["streams"]["events"]["written"].as_u64().unwrap();
        // Cut after its COMMIT, the batch landed: found by its offsets row, or (that row's
        // answer lost with the COMMIT's) written again, changing nothing and counted 0.
        let new = upto as u64 - if how == Cut::BeforeCommit { 100 } else { 3000 };
        let expected = if how == Cut::BeforeCommit { new..=new } else { new - 100..=new };
        assert!(expected.contains(&written), "{how:?}: {written} written: {report}");
        assert_eq!(proxy.cuts().last(), Some(&true), "{how:?}: the next batch was in flight at the cut");
        let counted = query(
            &db,
            "SELECT count(*)::text || ' ' || count(DISTINCT id)::text || ' ' || sum(v)::text FROM wh.events",
        );
        let sum: i64 = (0..upto as i64).map(|i| i * 3).sum();
        assert_eq!(counted, [format!("{upto} {upto} {sum}")], "{how:?}: every record once");
        let rerun = run(&s, &db);
        assert_eq!(rerun["streams"]["events"]["written"], json!(0), "{how:?}: the state has every batch: {rerun}");
    }
    assert_eq!(proxy.cuts(), [true, true]);
}
