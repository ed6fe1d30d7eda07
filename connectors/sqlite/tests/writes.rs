//! Deletes, soft deletes, atomic batches, rejected records, `check` and config, against
//! real SQLite files.

mod common;

use common::*;
use dovetail_core::{BuildCx, DeleteMode, ErrorKind, Key, Sink, SinkConnector, SinkTarget};
use dovetail_sqlite::{SqliteConfig, SqliteSink};
use serde_json::json;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn key(parts: &[serde_json::Value]) -> Key {
    Key::from_parts(&parts.iter().collect::<Vec<_>>())
}

/// A sink whose table `t` of `st` holds `seed` and has `trigger` installed by hand.
async fn seeded_with_trigger(
    st: &std::sync::Arc<dovetail_core::SinkStream>,
    seed: &str,
    trigger: &str,
) -> (tempfile::TempDir, std::path::PathBuf, SqliteSink) {
    let (dir, path, sink) = sink();
    sink.write(batch(st, &[seed]), &cx()).await.unwrap();
    read(&path).execute_batch(trigger).unwrap();
    (dir, path, sink)
}

/// Aborts the statement that inserts a row named `forbidden`.
const GUARD: &str = "CREATE TRIGGER guard BEFORE INSERT ON t WHEN NEW.name = 'forbidden' BEGIN SELECT RAISE(ABORT, 'forbidden name'); END;";
/// Rolls back the whole transaction that inserts a row whose `v` is `boom`, as a failing
/// disk or a DBA's guard would.
const BOOM: &str =
    "CREATE TRIGGER boom BEFORE INSERT ON t WHEN NEW.v = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'boom'); END;";

#[tokio::test]
async fn delete_removes_rows_by_key_and_counts_them() {
    let (_dir, path, sink) = sink();
    let st = stream("pairs", &["a", "b"], None, DeleteMode::Delete);
    sink.open(&st, &cx()).await.unwrap();
    let rows_in = [
        r#"{"a": 1, "b": "x", "v": 1}"#,
        r#"{"a": 1, "b": "y", "v": 2}"#,
        r#"{"a": 12345678901234567890, "b": "x", "v": 3}"#,
        r#"{"a": 2.5, "b": "z", "v": 4}"#,
    ];
    sink.write(batch(&st, &rows_in), &cx()).await.unwrap();
    let big: serde_json::Value = serde_json::from_str("12345678901234567890").unwrap();
    let keys = [
        key(&[json!(1), json!("y")]),
        key(&[big, json!("x")]),
        key(&[json!(2.5), json!("z")]),
        key(&[json!(9), json!("nope")]),
    ];
    assert_eq!(sink.delete(&st, &keys, &cx()).await.unwrap(), 3);
    assert_eq!(rows(&path, "SELECT a, b, v FROM pairs"), vec![s(&["1", "x", "1"])]);
    assert_eq!(sink.delete(&st, &keys, &cx()).await.unwrap(), 0, "deleting again finds nothing");

    // Keep mode leaves rows alone.
    let keep = stream("pairs", &["a", "b"], None, DeleteMode::Keep);
    assert_eq!(sink.delete(&keep, &[key(&[json!(1), json!("x")])], &cx()).await.unwrap(), 0);
    assert_eq!(count(&path, "pairs"), 1);
}

#[tokio::test]
async fn soft_delete_marks_rows_and_a_later_write_revives_them() {
    let (_dir, path, sink) = sink();
    let st = stream("users", &["id"], None, DeleteMode::SoftDelete);
    sink.open(&st, &cx()).await.unwrap();
    sink.write(batch(&st, &[r#"{"id": 1, "name": "Ada"}"#, r#"{"id": 2, "name": "Alan"}"#]), &cx()).await.unwrap();
    assert_eq!(column_names(&path, "users"), ["id", "name", "_synced_at", "_deleted_at"]);

    assert_eq!(sink.delete(&st, &[key(&[json!(2)])], &cx()).await.unwrap(), 1);
    assert_eq!(count(&path, "users"), 2, "soft delete keeps the row");
    let got = rows(&path, "SELECT id, _deleted_at IS NOT NULL, _deleted_at = _synced_at FROM users ORDER BY id");
    assert_eq!(got, vec![s(&["1", "0", "NULL"]), s(&["2", "1", "1"])]);
    let first = rows(&path, "SELECT _deleted_at FROM users WHERE id = 2");
    assert_eq!(sink.delete(&st, &[key(&[json!(2)])], &cx()).await.unwrap(), 0, "already deleted: unchanged");
    assert_eq!(rows(&path, "SELECT _deleted_at FROM users WHERE id = 2"), first);

    sink.write(batch(&st, &[r#"{"id": 2, "name": "Alan Turing"}"#]), &cx()).await.unwrap();
    assert_eq!(rows(&path, "SELECT name, _deleted_at FROM users WHERE id = 2"), vec![s(&["Alan Turing", "NULL"])]);
}

#[tokio::test]
async fn multi_row_upserts_revive_soft_deleted_rows_with_the_right_values_in_each_slot() {
    // 25 rows: two 10-row statements (whose soft-delete column is a literal NULL, not a
    // parameter) and 5 single rows; each row's values must land in its own row.
    let (_dir, path, sink) = sink();
    let st = stream("users", &["id"], None, DeleteMode::SoftDelete);
    let lines: Vec<String> = (1..=25).map(|i| format!(r#"{{"id": {i}, "name": "u{i}"}}"#)).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(sink.write(batch(&st, &refs), &cx()).await.unwrap().written, 25);
    let deleted: Vec<Key> = (1..=25).map(|i| key(&[json!(i)])).collect();
    assert_eq!(sink.delete(&st, &deleted, &cx()).await.unwrap(), 25);

    let lines: Vec<String> = (1..=25).map(|i| format!(r#"{{"id": {i}, "name": "again {i}"}}"#)).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(sink.write(batch(&st, &refs), &cx()).await.unwrap().written, 25);
    let want: Vec<Vec<String>> = (1..=25).map(|i| vec![i.to_string(), format!("again {i}"), "NULL".into()]).collect();
    assert_eq!(rows(&path, "SELECT id, name, _deleted_at FROM users ORDER BY id"), want);
}

#[tokio::test]
async fn soft_delete_uses_the_configured_column_and_adds_it_to_existing_tables() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: SqliteConfig =
        serde_json::from_value(json!({"path": "x.db", "soft_delete_column": "removed on"})).unwrap();
    let sink = SqliteSink::build(cfg, &BuildCx { base_dir: dir.path().to_path_buf(), ..Default::default() }).unwrap();
    let path = dir.path().join("x.db");
    let plain = stream("t", &["id"], None, DeleteMode::Delete);
    sink.write(batch(&plain, &[r#"{"id": 1}"#]), &cx()).await.unwrap();
    assert_eq!(column_names(&path, "t"), ["id", "_synced_at"]);

    let soft = stream("t", &["id"], None, DeleteMode::SoftDelete);
    sink.open(&soft, &cx()).await.unwrap();
    assert_eq!(column_names(&path, "t"), ["id", "_synced_at", "removed on"]);
    assert_eq!(sink.delete(&soft, &[key(&[json!(1)])], &cx()).await.unwrap(), 1);
    assert_eq!(rows(&path, r#"SELECT count(*) FROM t WHERE "removed on" IS NOT NULL"#), vec![s(&["1"])]);
}

#[tokio::test]
async fn a_failing_batch_writes_nothing_and_the_next_one_works() {
    let st = stream("t", &["id"], None, DeleteMode::Keep);
    let (_dir, path, sink) = seeded_with_trigger(&st, r#"{"id": 0, "v": "seed"}"#, BOOM).await;
    let b = batch(
        &st,
        &[
            r#"{"id": 1, "v": "a"}"#,
            r#"{"id": 2, "v": "b", "added": 1}"#,
            r#"{"id": 3, "v": "boom"}"#,
            r#"{"id": 4, "v": "d"}"#,
        ],
    );
    let err = sink.write(b, &cx()).await.unwrap_err();
    assert!(err.report().contains("boom"), "{}", err.report());
    assert_eq!(rows(&path, "SELECT id, v FROM t"), vec![s(&["0", "seed"])], "no record of the batch is kept");
    assert_eq!(column_names(&path, "t"), ["id", "v", "_synced_at"], "the added column was rolled back too");

    let b = batch(&st, &[r#"{"id": 1, "v": "a"}"#, r#"{"id": 2, "v": "b", "added": 1}"#]);
    assert_eq!(sink.write(b, &cx()).await.unwrap().written, 2);
    assert_eq!(
        rows(&path, "SELECT id, added FROM t ORDER BY id"),
        vec![s(&["0", "NULL"]), s(&["1", "NULL"]), s(&["2", "1"])]
    );
}

#[tokio::test]
async fn bad_records_are_rejected_and_the_rest_is_written() {
    let st = stream("t", &["id"], None, DeleteMode::SoftDelete);
    let (_dir, path, sink) = seeded_with_trigger(&st, r#"{"id": 0, "name": "seed"}"#, GUARD).await;
    let b = batch(
        &st,
        &[
            r#"{"id": 1, "name": "ok"}"#,
            r#"[1, 2]"#,
            r#"{"name": "no key"}"#,
            r#"{"id": null, "name": "null key"}"#,
            r#"{"id": 5, "NAME": "case clash"}"#,
            r#"{"id": 6, "_synced_at": "mine"}"#,
            r#"{"id": 7, "_deleted_at": "mine"}"#,
            r#"{"id": 8, "name": "forbidden"}"#,
            r#"{"id": 9, "name": "ok too"}"#,
        ],
    );
    let report = sink.write(b, &cx()).await.unwrap();
    assert_eq!(report.written, 2);
    let rejected: Vec<(usize, String)> = report.rejected.iter().map(|(i, e)| (*i, e.report())).collect();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
    assert!(rejected[0].1.contains("not a JSON object"), "{rejected:?}");
    assert!(rejected[1].1.contains("key column `id` is missing or null"), "{rejected:?}");
    assert!(rejected[3].1.contains("field `NAME` clashes with column `name`"), "{rejected:?}");
    assert!(rejected[4].1.contains("the sink sets that column itself"), "{rejected:?}");
    assert!(rejected[5].1.contains("`_deleted_at`"), "{rejected:?}");
    assert!(rejected[6].1.contains("forbidden name"), "{rejected:?}");
    assert!(report.rejected.iter().all(|(_, e)| e.kind() == &ErrorKind::Data));
    assert_eq!(rows(&path, "SELECT id FROM t ORDER BY id"), vec![s(&["0"]), s(&["1"]), s(&["9"])]);
    assert_eq!(column_names(&path, "t"), ["id", "name", "_synced_at", "_deleted_at"]);
}

#[tokio::test]
async fn check_creates_nothing_or_names_the_path_it_cannot_use() {
    let (_dir, path, sink) = sink();
    sink.check(&cx()).await.unwrap();
    assert!(!path.exists(), "check created the database");
    // An existing database keeps its journal mode: check opens nothing for writing.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    sink.check(&cx()).await.unwrap();
    let mode: String = read(&path).query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete");

    let dir = tempfile::tempdir().unwrap();
    let bad = sink_at(dir.path()); // a directory, not a database file
    let err = bad.check(&cx()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    assert_eq!(err.context().connector.as_deref(), Some("sqlite"));

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database, just some text long enough to have a header......").unwrap();
    let err = sink_at(&junk).check(&cx()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.to_string().contains("junk.db"), "{err}");
}

#[test]
fn config_defaults_unknown_fields_and_relative_paths() {
    let cfg: SqliteConfig = serde_json::from_value(json!({"path": "out/w.db"})).unwrap();
    assert_eq!(cfg, SqliteConfig::new("out/w.db"));
    assert_eq!(cfg.soft_delete_column, "_deleted_at");
    assert_eq!(cfg.table_name("users"), "users");
    let err = serde_json::from_value::<SqliteConfig>(json!({"path": "w.db", "tabel_prefix": "x"})).unwrap_err();
    assert!(err.to_string().contains("unknown field `tabel_prefix`"), "{err}");
    let back: SqliteConfig = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);

    let sink = SqliteSink::build(cfg, &BuildCx { base_dir: "/etc/dovetail".into(), ..Default::default() }).unwrap();
    assert_eq!(sink.path(), std::path::Path::new("/etc/dovetail/out/w.db"));
    assert!(!sink.path().exists(), "build does no IO");
    assert_eq!(<SqliteSink as SinkConnector>::KIND, "sqlite");
    // Every stream goes to the one file, named by `path`, so the runner can keep it apart
    // from dovetail's own state database.
    let want = vec![SinkTarget::File { key: "path", path: "/etc/dovetail/out/w.db".into() }];
    assert_eq!(sink.targets(&s(&["users", "runs"])), want);
    assert_eq!(sink.targets(&[]), want);

    let bad = SqliteConfig { soft_delete_column: "_SYNCED_AT".into(), ..SqliteConfig::new("w.db") };
    assert_eq!(SqliteSink::new(bad).unwrap_err().kind(), &ErrorKind::Config);

    let schema = serde_json::to_value(schemars::schema_for!(SqliteConfig)).unwrap();
    assert_eq!(schema["additionalProperties"], json!(false));
    assert!(schema["properties"]["path"]["description"].as_str().unwrap().contains("database file"));
}

#[tokio::test]
async fn large_batches_go_many_rows_per_statement_and_still_refuse_only_the_bad_rows() {
    // 173 records, so the multi-row upsert (10 rows per statement) carries most of them:
    // records refused while binding (no key), a row the database refuses inside a full
    // statement (the statement is undone and its rows go one at a time), a new field
    // half-way (rows bound so far are written, the column added, the run goes on), and the
    // tail after the last full statement.
    let st = stream("t", &["id"], None, DeleteMode::Keep);
    let (_dir, path, sink) = seeded_with_trigger(&st, r#"{"id": 0, "name": "seed"}"#, GUARD).await;
    let lines: Vec<String> = (1..=173)
        .map(|i| match i {
            7 | 31 => format!(r#"{{"name": "no key {i}"}}"#),
            77 => format!(r#"{{"id": {i}, "name": "forbidden"}}"#),
            120 => format!(r#"{{"id": {i}, "name": "n{i}", "extra": {i}}}"#),
            _ => format!(r#"{{"id": {i}, "name": "n{i}"}}"#),
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let report = sink.write(batch(&st, &refs), &cx()).await.unwrap();
    let rejected: Vec<usize> = report.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, [6, 30, 76], "record indexes in the batch");
    assert!(report.rejected[2].1.report().contains("forbidden name"));
    assert_eq!(report.written, 170);
    let want: Vec<Vec<String>> = std::iter::once(s(&["0", "seed", "NULL"]))
        .chain((1..=173).filter(|i| ![7, 31, 77].contains(i)).map(|i| {
            let extra = if i == 120 { "120".to_owned() } else { "NULL".to_owned() };
            vec![i.to_string(), format!("n{i}"), extra]
        }))
        .collect();
    assert_eq!(rows(&path, "SELECT id, name, extra FROM t ORDER BY id"), want);

    // Rewriting the same batch changes nothing but the refusals stay the same.
    let report = sink.write(batch(&st, &refs), &cx()).await.unwrap();
    assert_eq!((report.written, report.rejected.len()), (170, 3));
    assert_eq!(rows(&path, "SELECT id, name, extra FROM t ORDER BY id"), want);
}

#[tokio::test]
async fn a_rollback_inside_a_multi_row_statement_fails_the_whole_batch() {
    let st = stream("t", &["id"], None, DeleteMode::Keep);
    let (_dir, path, sink) = seeded_with_trigger(&st, r#"{"id": 0, "v": "seed"}"#, BOOM).await;
    let lines: Vec<String> =
        (1..=120).map(|i| format!(r#"{{"id": {i}, "v": "{}"}}"#, if i == 90 { "boom" } else { "x" })).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let err = sink.write(batch(&st, &refs), &cx()).await.unwrap_err();
    assert!(err.report().contains("boom"), "{}", err.report());
    assert_eq!(rows(&path, "SELECT id, v FROM t"), vec![s(&["0", "seed"])], "no record of the batch is kept");
}
