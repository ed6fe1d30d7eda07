//! `[pipelines.X.source] kind = "postgres"` through the binary, on the testkit's throwaway
//! PostgreSQL: `examples/postgres-to-rest.toml` pushing a customers table into the fake
//! vendor (each change sent once, nothing unchanged sent again); values mapped back exactly;
//! keyset pages across equal cursor values; NULL cursors; full refresh turning missing keys
//! into deletes; and the faults (server down, wrong password, a missing table or column).

use dovetail_e2e::vendor::{count, output_async};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, VendorConfig};
use dovetail_testkit::pg;
use serde_json::Value;

const PASSWORD_ENV: &str = "DOVETAIL_E2E_PG_SOURCE_PASSWORD";

/// The database URL with its password taken from the environment.
fn url_from_env(db: &pg::TestDb) -> String {
    db.url().replace(&format!(":{}@", db.password()), &format!(":${{{PASSWORD_ENV}}}@"))
}

/// Run `sql` (several statements) in the test database.
async fn exec(db: &pg::TestDb, sql: &str) {
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
}

fn exec_sync(db: &pg::TestDb, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(exec(db, sql));
}

/// `dovetail ARGS` with the password in the environment; no output may hold it.
fn run_cmd(s: &Scratch, db: &pg::TestDb, args: &[&str]) -> std::process::Output {
    let out = s.cmd(args).env(PASSWORD_ENV, db.password()).output().unwrap();
    assert!(!show(&out).contains(db.password()), "no password in output: {}", show(&out));
    out
}

fn run_json(s: &Scratch, db: &pg::TestDb) -> (std::process::Output, Value) {
    let out = run_cmd(s, db, &["run", "--json"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)));
    (out, report)
}

/// A pipeline reading with `source_extra` into `out/<stream>.jsonl`.
fn jsonl_pipeline(db: &pg::TestDb, source_extra: &str, pipeline_extra: &str) -> Scratch {
    let s = Scratch::new();
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.wh]
{pipeline_extra}
[pipelines.wh.source]
kind = "postgres"
url = "{}"
{source_extra}

[pipelines.wh.sink]
kind = "jsonl"
dir = "out"
"#,
            url_from_env(db)
        ),
    );
    s
}

/// Every line of `out/<stream>.jsonl`, parsed.
fn lines(s: &Scratch, stream: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(s.path(&format!("out/{stream}.jsonl"))).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_sends_each_change_to_the_vendor_once() {
    let Some(db) = pg::database("pg_source_example") else { return };
    exec(
        &db,
        "CREATE TABLE customers (id bigint PRIMARY KEY, name text, email text, balance numeric, tags jsonb, \
           updated_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO customers (id, name, email, balance, tags, updated_at) \
           SELECT i, 'customer ' || i, 'c' || i || '@example.com', 123456789012345678901234567890.125 + i, \
                  jsonb_build_array('t' || i), '2026-01-01T00:00:00Z'::timestamptz + (i / 3) * interval '1 second' \
           FROM generate_series(1, 20) i;",
    )
    .await;
    let vendor = FakeVendor::start(VendorConfig::default()).await.unwrap();
    let s = Scratch::new();
    s.write("dovetail.toml", include_str!("../../examples/postgres-to-rest.toml"));
    let run = || {
        let mut cmd = s.cmd(&["run", "--json"]);
        cmd.env("PG_URL", db.url()).env("VENDOR_URL", vendor.base_url());
        let password = db.password().to_owned();
        async move {
            let out = output_async(cmd).await;
            assert!(out.status.success(), "{}", show(&out));
            assert!(!show(&out).contains(&password), "no password in output: {}", show(&out));
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)));
            report
        }
    };
    let puts = || vendor.stats().by_path.get("/v1/items/{id}").copied().unwrap_or(0);
    let posts = || vendor.stats().by_path.get("/v1/items").copied().unwrap_or(0);

    let report = run().await;
    assert_eq!(count(&report, "customers", "written"), 20, "{report:#}");
    assert_eq!((vendor.stats().creations, posts(), puts()), (20, 20, 0));
    let created = vendor.created();
    let c7 = created.iter().find(|o| o["external_id"] == "customer-7").unwrap();
    assert_eq!(c7["balance"].to_string(), "123456789012345678901234567897.125", "exact: {c7}");
    assert_eq!(c7["tags"], serde_json::json!(["t7"]), "{c7}");

    // Nothing changed: nothing is sent.
    let report = run().await;
    assert_eq!(count(&report, "customers", "written"), 0, "{report:#}");
    assert_eq!((posts(), puts()), (20, 0));

    // One edit, one new row, one delete: one update and one create, nothing else.
    exec(
        &db,
        "UPDATE customers SET name = 'renamed', updated_at = now() WHERE id = 4; \
         INSERT INTO customers (id, name, email, balance, tags) VALUES (21, 'new', 'n@example.com', 1.50, '{}'); \
         DELETE FROM customers WHERE id = 9;",
    )
    .await;
    let report = run().await;
    assert_eq!(count(&report, "customers", "written"), 2, "{report:#}");
    assert_eq!((vendor.stats().creations, posts(), puts()), (21, 21, 1));
    let created = vendor.created();
    let c4: Vec<&Value> = created.iter().filter(|o| o["external_id"] == "customer-4").collect();
    assert_eq!(c4.len(), 1, "{created:?}");
    assert_eq!(c4[0]["name"], "renamed");
    let c21 = created.iter().find(|o| o["external_id"] == "customer-21").unwrap();
    assert_eq!(c21["balance"].to_string(), "1.50", "{c21}");
    assert_eq!(vendor.stats().duplicate_creations, 0);

    let report = run().await;
    assert_eq!(count(&report, "customers", "written"), 0, "{report:#}");
    assert_eq!((posts(), puts()), (21, 1), "an unchanged rerun sends nothing");
}

#[test]
fn values_come_back_exactly_as_json() {
    let Some(db) = pg::database("pg_source_values") else { return };
    exec_sync(
        &db,
        r#"CREATE TABLE vals (id bigint PRIMARY KEY, i integer, n numeric, d double precision, b boolean,
             s text, j jsonb, js json, ts timestamptz, dt date, u uuid, raw bytea, arr integer[], tarr text[],
             iv interval);
           INSERT INTO vals VALUES (1, -7, 123456789012345678901234567890.123456789, 0.1, true, 'héllo "q"',
             '{"a": [1, 2.50]}', '{"x": 1}', '2026-03-04 05:06:07.123456+02', '2026-03-04',
             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff10', '{1,2,3}', '{a,b}', '1 day 02:03:04');
           INSERT INTO vals (id) VALUES (2);
           INSERT INTO vals (id, d, ts) VALUES (3, 'NaN', 'infinity');"#,
    );
    let s = jsonl_pipeline(&db, "table = \"vals\"", "");
    let (out, report) = run_json(&s, &db);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "vals", "written"), 3, "{report:#}");
    let rows = lines(&s, "vals");
    let text = |v: &Value| v.to_string();
    let one = &rows[0];
    let expected = [
        ("id", "1"),
        ("i", "-7"),
        ("n", "123456789012345678901234567890.123456789"),
        ("d", "0.1"),
        ("b", "true"),
        ("s", r#""héllo \"q\"""#),
        ("j", r#"{"a":[1,2.50]}"#),
        ("js", r#"{"x":1}"#),
        ("ts", r#""2026-03-04T03:06:07.123456Z""#),
        ("dt", r#""2026-03-04""#),
        ("u", r#""a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11""#),
        ("raw", r#""AP8Q""#),
        ("arr", "[1,2,3]"),
        ("tarr", r#"["a","b"]"#),
        ("iv", r#""1 day 02:03:04""#),
    ];
    for (field, want) in expected {
        assert_eq!(text(&one[field]), want, "field `{field}` of {one}");
    }
    assert_eq!((rows[2]["d"].clone(), rows[2]["ts"].clone()), (Value::from("NaN"), Value::from("infinity")));
    for (field, _) in expected.iter().skip(1) {
        assert_eq!(rows[1][field], Value::Null, "NULL → null: `{field}` of {}", rows[1]);
    }
}

#[test]
fn keyset_pages_cross_equal_cursor_values_and_null_cursors_are_dead_lettered() {
    let Some(db) = pg::database("pg_source_keyset") else { return };
    exec_sync(
        &db,
        "CREATE TABLE ev (id integer PRIMARY KEY, updated_at timestamptz, v text); \
         INSERT INTO ev SELECT i, '2026-01-01T00:00:00Z', 'v' || i FROM generate_series(1, 10) i;",
    );
    let s = jsonl_pipeline(&db, "table = \"ev\"\ncursor = \"updated_at\"\npage_size = 3", "");
    let (out, report) = run_json(&s, &db);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "ev", "written"), 10, "{report:#}");
    let ids = |rows: &[Value]| rows.iter().map(|r| r["id"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(&lines(&s, "ev")), (1..=10).collect::<Vec<_>>());

    // New rows at the cursor value already reached, one row moved past it, one row with no
    // cursor at all: the first three and the moved one are read once; the NULL one is a
    // dead letter naming the column.
    exec_sync(
        &db,
        "INSERT INTO ev SELECT i, '2026-01-01T00:00:00Z', 'v' || i FROM generate_series(11, 13) i; \
         UPDATE ev SET updated_at = '2026-01-02T00:00:00Z', v = 'changed' WHERE id = 2; \
         INSERT INTO ev VALUES (14, NULL, 'no cursor');",
    );
    let (out, report) = run_json(&s, &db);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "ev", "written"), 4, "{report:#}");
    assert_eq!(count(&report, "ev", "dead_lettered"), 1, "{report:#}");
    let all = lines(&s, "ev");
    assert_eq!(ids(&all[10..]), vec![11, 12, 13, 2]);
    assert_eq!(all[13]["v"], "changed");
    let dl = run_cmd(&s, &db, &["dead-letters", "list"]);
    let text = show(&dl);
    assert!(text.contains("updated_at"), "{text}");

    // Nothing new: nothing written; the NULL row is still reported.
    let (out, report) = run_json(&s, &db);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "ev", "written"), 0, "{report:#}");
    assert_eq!(lines(&s, "ev").len(), 14);
}

#[test]
fn a_full_refresh_reads_by_key_and_missing_keys_become_deletes() {
    let Some(db) = pg::database("pg_source_full") else { return };
    exec_sync(
        &db,
        "CREATE TABLE items (sku text, n integer, name text, PRIMARY KEY (sku, n)); \
         INSERT INTO items SELECT 'k' || (i % 2), i, 'item ' || i FROM generate_series(1, 7) i;",
    );
    let s = Scratch::new();
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.wh.source]
kind = "postgres"
url = "{}"
table = "items"
page_size = 2

[pipelines.wh.sink]
kind = "sqlite"
path = "out.db"

[pipelines.wh.streams.items]
sync_mode = "full_refresh"
delete = "delete"
"#,
            url_from_env(&db)
        ),
    );
    let (out, report) = run_json(&s, &db);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 7, "{report:#}");
    exec_sync(&db, "DELETE FROM items WHERE n IN (2, 5); UPDATE items SET name = 'renamed' WHERE n = 3;");
    let (out, report) = run_json(&s, &db);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "deleted"), 2, "{report:#}");
    assert_eq!(count(&report, "items", "written"), 1, "{report:#}");
    let conn = s.db("out.db");
    let mut stmt = conn.prepare("SELECT n, name FROM items ORDER BY n").unwrap();
    let rows: Vec<(i64, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let ns: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ns, vec![1, 3, 4, 6, 7]);
    assert_eq!(rows[1].1, "renamed");
}

#[test]
fn faults_at_start_exit_with_their_codes_and_name_what_is_wrong() {
    let Some(db) = pg::database("pg_source_faults") else { return };
    exec_sync(
        &db,
        "CREATE TABLE t (id integer PRIMARY KEY, doc json, at timestamptz); INSERT INTO t VALUES (1, '{}', now());",
    );
    let tables = || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let row = client
                .query_one("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        })
    };
    let before = tables();
    // `check` connects and verifies, changing nothing.
    let s = jsonl_pipeline(&db, "table = \"t\"\ncursor = \"at\"", "");
    let out = run_cmd(&s, &db, &["check"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(tables(), before, "check changed nothing");

    for (extra, code, needle) in [
        ("table = \"nope\"", 3, "table `public.nope` does not exist"),
        ("table = \"t\"\ncursor = \"missing\"", 3, "column `missing` (`source.cursor`) is not a column of `public.t`"),
        ("table = \"t\"\nkey = [\"gone\"]", 3, "column `gone` (`source.key`)"),
        (
            "table = \"t\"\ncursor = \"doc\"",
            3,
            "column `doc` (`source.cursor`) of `public.t` has type json, which cannot be ordered",
        ),
        ("query = \"SELECT * FROM nope\"\nstream = \"q\"\nkey = [\"id\"]", 3, "relation \"nope\" does not exist"),
    ] {
        let s = jsonl_pipeline(&db, extra, "");
        for args in [&["check"][..], &["run"][..]] {
            let out = run_cmd(&s, &db, args);
            assert_eq!(out.status.code(), Some(code), "{extra} {args:?}: {}", show(&out));
            assert!(show(&out).contains(needle), "{extra} {args:?}: {}", show(&out));
        }
    }

    // A user without SELECT on the table: `check` says which grant is missing (exit 8).
    let role = format!("r_{}", db.name());
    exec_sync(&db, &format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'reader-pw-1'"));
    let s = Scratch::new();
    s.write(
        "dovetail.toml",
        &format!(
            "[pipelines.wh.source]\nkind = \"postgres\"\nurl = \"postgres://{role}:${{READER_PW}}@{}:{}/{}\"\n\
             table = \"t\"\n\n[pipelines.wh.sink]\nkind = \"jsonl\"\ndir = \"out\"\n",
            db.host(),
            db.port(),
            db.name()
        ),
    );
    let out = s.cmd(&["check"]).env("READER_PW", "reader-pw-1").output().unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", show(&out));
    assert!(
        show(&out).contains("permission denied for table t") && show(&out).contains("GRANT SELECT"),
        "{}",
        show(&out)
    );
    assert!(!show(&out).contains("reader-pw-1"), "{}", show(&out));

    // Wrong password: exit 4, neither password in any output.
    let s = Scratch::new();
    let wrong = db.url_with_password("not-the-Password-42");
    s.write(
        "dovetail.toml",
        "[pipelines.wh.source]\nkind = \"postgres\"\nurl = \"${WRONG_URL}\"\ntable = \"t\"\n\n[pipelines.wh.sink]\nkind = \"jsonl\"\ndir = \"out\"\n",
    );
    for args in [&["check"][..], &["run"][..]] {
        let out = s.cmd(args).env("WRONG_URL", &wrong).output().unwrap();
        assert_eq!(out.status.code(), Some(4), "{}", show(&out));
        assert!(!show(&out).contains("not-the-Password-42") && !show(&out).contains(db.password()), "{}", show(&out));
    }

    // PostgreSQL down: exit 7; with `on_unavailable = "pause"` the stream is paused.
    let down = format!("postgres://postgres:{}@127.0.0.1:1/nothing", db.password());
    for (settings, outcome) in [("", "failed"), ("[pipelines.wh.streams.t]\non_unavailable = \"pause\"\n", "paused")] {
        let s = Scratch::new();
        s.write(
            "dovetail.toml",
            &format!("[pipelines.wh.source]\nkind = \"postgres\"\nurl = \"${{DOWN_URL}}\"\ntable = \"t\"\n\n[pipelines.wh.sink]\nkind = \"jsonl\"\ndir = \"out\"\n\n{settings}"),
        );
        let out = s.cmd(&["run", "--json"]).env("DOWN_URL", &down).output().unwrap();
        assert_eq!(out.status.code(), Some(7), "{}", show(&out));
        assert!(!show(&out).contains(db.password()), "{}", show(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)));
        assert_eq!(report["streams"]["t"]["outcome"], outcome, "{report:#}");
    }
}

#[test]
fn lookback_picks_up_a_row_committed_late_with_an_older_cursor() {
    let Some(db) = pg::database("pg_source_lookback") else { return };
    exec_sync(
        &db,
        "CREATE TABLE ev (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, v text); \
         INSERT INTO ev VALUES (1, '2026-01-01T00:00:10Z', 'a'), (2, '2026-01-01T00:00:20Z', 'b');",
    );
    let s = jsonl_pipeline(&db, "table = \"ev\"\ncursor = \"updated_at\"\nlookback_secs = 60", "");
    let (out, report) = run_json(&s, &db);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "ev", "written"), 2, "{report:#}");
    // A transaction that started before row 2 was written commits only now.
    exec_sync(&db, "INSERT INTO ev VALUES (3, '2026-01-01T00:00:15Z', 'late');");
    let (out, report) = run_json(&s, &db);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "ev", "written"), 1, "{report:#}");
    let all = lines(&s, "ev");
    assert_eq!(all.len(), 3);
    assert_eq!(all[2]["v"], "late");
}

#[test]
fn hostile_table_and_column_names_are_quoted() {
    let Some(db) = pg::database("pg_source_hostile") else { return };
    exec_sync(
        &db,
        r#"CREATE SCHEMA "s""x"; CREATE TABLE "s""x"."t; DROP TABLE t; --" ("id""" integer PRIMARY KEY, "x"") OR 1=1 --" timestamptz NOT NULL);
           INSERT INTO "s""x"."t; DROP TABLE t; --" SELECT i, '2026-01-01T00:00:00Z' FROM generate_series(1, 5) i;"#,
    );
    let source = r#"schema = 's"x'
table = 't; DROP TABLE t; --'
stream = "hostile"
cursor = 'x") OR 1=1 --'
page_size = 2"#;
    let s = jsonl_pipeline(&db, source, "");
    let (out, report) = run_json(&s, &db);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "hostile", "written"), 5, "{report:#}");
    let ids: Vec<u64> = lines(&s, "hostile").iter().map(|r| r["id\""].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
}

/// One pipeline run again and again, as `dovetail run --every` and a worker do: a column
/// added between two runs is read by the next one (drift, and its values arrive), and a
/// dropped column does not make every later run fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_pipeline_reads_the_catalog_again_each_run() {
    use dovetail_core::{BuildCx, Pipeline, RunOptions, SinkConnector, SourceConnector};
    let Some(db) = pg::database("pg_source_long_lived") else { return };
    exec(
        &db,
        "CREATE TABLE t (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, v text); \
         INSERT INTO t VALUES (1, '2026-01-01T00:00:10Z', 'a'), (2, '2026-01-01T00:00:20Z', 'b');",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cx = BuildCx { base_dir: dir.path().to_path_buf(), pipeline: "wh".into(), ..Default::default() };
    let config =
        serde_json::from_value(serde_json::json!({ "url": db.url(), "table": "t", "cursor": "updated_at" })).unwrap();
    let pipeline = Pipeline::builder("wh")
        .source(dovetail_postgres::PostgresSource::build(config, &cx).unwrap())
        .sink(dovetail_sqlite::SqliteSink::build(dovetail_sqlite::SqliteConfig::new("out.db"), &cx).unwrap())
        .state(dovetail_state::SqliteState::open(dir.path().join("state.db")).unwrap())
        .build()
        .unwrap();
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["t"].written, 2, "{report:?}");
    exec(
        &db,
        "ALTER TABLE t ADD COLUMN extra text; \
         UPDATE t SET extra = 'x', updated_at = '2026-01-01T00:00:30Z' WHERE id = 1;",
    )
    .await;
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["t"].written, 1, "{report:?}");
    let drift: Vec<String> = report.streams["t"].drift.iter().map(|d| format!("{d:?}")).collect();
    assert!(drift.iter().any(|d| d.contains("extra")), "the added column is drift: {drift:#?}");
    let db_out = rusqlite::Connection::open(dir.path().join("out.db")).unwrap();
    let extra: Option<String> = db_out.query_row("SELECT extra FROM t WHERE id = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(extra.as_deref(), Some("x"), "the added column's value arrives");
    exec(&db, "ALTER TABLE t DROP COLUMN v; UPDATE t SET updated_at = '2026-01-01T00:00:40Z' WHERE id = 2;").await;
    let report = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(report.streams["t"].outcome.to_string(), "succeeded", "{report:?}");
    assert_eq!(report.streams["t"].written, 1, "{report:?}");
}
