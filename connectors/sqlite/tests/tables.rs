//! Tables, upserts and value storage, against real SQLite files.

mod common;

use common::*;
use dovetail_core::{DeleteMode, ErrorKind, Sink};
use serde_json::json;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[tokio::test]
async fn creates_the_table_from_the_schema_with_keys_first_and_typed_columns() {
    let (_dir, path, sink) = sink();
    let schema = json!({"type": "object", "properties": {
        "name": {"type": ["string", "null"]}, "id": {"type": "integer"}, "amount": {"type": "number"},
        "active": {"type": "boolean"}, "tags": {"type": "array"}, "meta": {"type": "object"}
    }});
    let users = stream("users", &["id"], Some(schema), DeleteMode::Keep);
    sink.open(&users, &cx()).await.unwrap();

    assert!(path.exists(), "open creates the file and its folder");
    let cols = columns(&path, "users");
    let got: Vec<(&str, &str, i64)> = cols.iter().map(|(n, t, p)| (n.as_str(), t.as_str(), *p)).collect();
    assert_eq!(
        got,
        vec![
            ("id", "", 1),
            ("active", "", 0),
            ("amount", "", 0),
            ("meta", "TEXT", 0),
            ("name", "TEXT", 0),
            ("tags", "TEXT", 0),
            ("_synced_at", "TEXT", 0),
        ]
    );
    assert_eq!(count(&path, "users"), 0);
}

#[tokio::test]
async fn creates_the_table_lazily_from_the_first_batch() {
    let (_dir, path, sink) = sink();
    let events = stream("events", &["id"], None, DeleteMode::Keep);
    sink.open(&events, &cx()).await.unwrap();
    let exists: i64 =
        read(&path).query_row("SELECT count(*) FROM sqlite_master WHERE name = 'events'", [], |r| r.get(0)).unwrap();
    assert_eq!(exists, 0, "no schema: the table waits for data");

    let b = batch(
        &events,
        &[r#"{"id": "e1", "kind": "click", "n": 3}"#, r#"{"id": "e2", "kind": null, "extra": {"a": 1}}"#],
    );
    let report = sink.write(b, &cx()).await.unwrap();
    assert_eq!(report.written, 2);
    assert!(report.rejected.is_empty());
    let cols = columns(&path, "events");
    assert_eq!(cols.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["id", "extra", "kind", "n", "_synced_at"]);
    assert_eq!(cols.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(), ["TEXT", "TEXT", "TEXT", "", "TEXT"]);
    assert_eq!(
        rows(&path, "SELECT id, kind, n, extra FROM events ORDER BY id"),
        vec![s(&["e1", "click", "3", "NULL"]), s(&["e2", "NULL", "NULL", r#"{"a":1}"#])]
    );
}

#[tokio::test]
async fn composite_primary_keys_upsert_per_key_pair() {
    let (_dir, path, sink) = sink();
    let members = stream("members", &["org", "user"], None, DeleteMode::Keep);
    sink.open(&members, &cx()).await.unwrap();
    let rows_v1 = [r#"{"org": "a", "user": 1, "role": "admin"}"#, r#"{"org": "b", "user": 1, "role": "viewer"}"#];
    sink.write(batch(&members, &rows_v1), &cx()).await.unwrap();
    let pk: Vec<(String, i64)> =
        columns(&path, "members").into_iter().filter(|c| c.2 > 0).map(|c| (c.0, c.2)).collect();
    assert_eq!(pk, vec![("org".to_owned(), 1), ("user".to_owned(), 2)]);

    sink.write(batch(&members, &[r#"{"org": "b", "user": 1, "role": "editor"}"#]), &cx()).await.unwrap();
    assert_eq!(
        rows(&path, "SELECT org, user, role FROM members ORDER BY org"),
        vec![s(&["a", "1", "admin"]), s(&["b", "1", "editor"])]
    );
}

#[tokio::test]
async fn replaying_a_batch_updates_instead_of_duplicating() {
    let (_dir, path, sink) = sink();
    let users = stream("users", &["id"], None, DeleteMode::Keep);
    sink.open(&users, &cx()).await.unwrap();
    let v1 = [r#"{"id": 1, "name": "Ada", "city": "London"}"#, r#"{"id": 2, "name": "Alan", "city": "Wilmslow"}"#];
    assert_eq!(sink.write(batch(&users, &v1), &cx()).await.unwrap().written, 2);
    assert_eq!(sink.write(batch(&users, &v1), &cx()).await.unwrap().written, 2);
    assert_eq!(count(&path, "users"), 2, "same batch twice: same rows");

    // Changed values win; a field missing from the record is set NULL (the record is the row).
    let v2 = [r#"{"id": 1, "name": "Ada Lovelace", "city": "London"}"#, r#"{"id": 2, "name": "Alan Turing"}"#];
    sink.write(batch(&users, &v2), &cx()).await.unwrap();
    assert_eq!(count(&path, "users"), 2);
    assert_eq!(
        rows(&path, "SELECT id, name, city FROM users ORDER BY id"),
        vec![s(&["1", "Ada Lovelace", "London"]), s(&["2", "Alan Turing", "NULL"])]
    );
    let synced = rows(&path, "SELECT _synced_at FROM users");
    assert!(synced.iter().all(|r| r[0].parse::<jiff_like::Ts>().is_ok()), "{synced:?}");

    // A new sink on the same file (next run) keeps upserting into the same table.
    let again = sink_at(&path);
    again.open(&users, &cx()).await.unwrap();
    again.write(batch(&users, &v2), &cx()).await.unwrap();
    assert_eq!(count(&path, "users"), 2);
}

/// Minimal RFC 3339 shape check (`2024-01-02T03:04:05.678Z`), without another dependency.
mod jiff_like {
    pub struct Ts;
    impl std::str::FromStr for Ts {
        type Err = ();
        fn from_str(s: &str) -> Result<Ts, ()> {
            let b = s.as_bytes();
            let ok =
                b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && s.ends_with('Z');
            if ok { Ok(Ts) } else { Err(()) }
        }
    }
}

#[tokio::test]
async fn a_new_field_adds_a_column_and_older_rows_read_null() {
    let (_dir, path, sink) = sink();
    let users = stream("users", &["id"], None, DeleteMode::Keep);
    sink.open(&users, &cx()).await.unwrap();
    sink.write(batch(&users, &[r#"{"id": 1, "name": "Ada"}"#]), &cx()).await.unwrap();
    // The new field appears mid-batch, after a record written with the old shape.
    let b = batch(
        &users,
        &[r#"{"id": 2, "name": "Alan"}"#, r#"{"id": 3, "name": "Grace", "email": "g@navy.mil"}"#, r#"{"id": 4}"#],
    );
    let report = sink.write(b, &cx()).await.unwrap();
    assert_eq!(report.written, 3);
    assert_eq!(column_names(&path, "users"), ["id", "name", "_synced_at", "email"]);
    assert_eq!(
        rows(&path, "SELECT id, name, email FROM users ORDER BY id"),
        vec![
            s(&["1", "Ada", "NULL"]),
            s(&["2", "Alan", "NULL"]),
            s(&["3", "Grace", "g@navy.mil"]),
            s(&["4", "NULL", "NULL"])
        ]
    );
}

#[tokio::test]
async fn numbers_are_stored_exactly_and_values_by_kind() {
    let (_dir, path, sink) = sink();
    let t = stream("t", &["id"], None, DeleteMode::Keep);
    sink.open(&t, &cx()).await.unwrap();
    let row = r#"{"id": 1, "big": 12345678901234567890, "dec": 0.123456789012345678901234567891,
        "small": 42, "neg": -7, "half": 1.5, "padded": 1.50, "huge": 1e300, "yes": true, "no": false,
        "nested": {"b": [1, 2.50, null], "a": "x"}, "list": ["x", 1], "nothing": null, "code": "007"}"#;
    assert_eq!(sink.write(batch(&t, &[row]), &cx()).await.unwrap().written, 1);

    let cols =
        ["big", "dec", "small", "neg", "half", "padded", "huge", "yes", "no", "nested", "list", "nothing", "code"];
    let sql = cols.iter().map(|c| format!("typeof(\"{c}\"), CAST(\"{c}\" AS TEXT)")).collect::<Vec<_>>().join(", ");
    let got = rows(&path, &format!("SELECT {sql} FROM t"));
    let pairs: Vec<(&str, &str)> = got[0].chunks(2).map(|p| (p[0].as_str(), p[1].as_str())).collect();
    assert_eq!(
        pairs,
        vec![
            ("text", "12345678901234567890"),
            ("text", "0.123456789012345678901234567891"),
            ("integer", "42"),
            ("integer", "-7"),
            ("real", "1.5"),
            ("text", "1.50"),
            ("real", "1.0e+300"),
            ("integer", "1"),
            ("integer", "0"),
            ("text", r#"{"a":"x","b":[1,2.50,null]}"#),
            ("text", r#"["x",1]"#),
            ("null", "NULL"),
            ("text", "007"),
        ]
    );
    // The REAL read back as a float is exactly the value written.
    let huge: f64 = read(&path).query_row("SELECT huge FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(huge, 1e300);

    // Writing the same row again, with the big number as the key of another stream, still matches.
    let k = stream("k", &["id"], None, DeleteMode::Keep);
    sink.write(batch(&k, &[r#"{"id": 12345678901234567890, "v": 1}"#]), &cx()).await.unwrap();
    sink.write(batch(&k, &[r#"{"id": 12345678901234567890, "v": 2}"#]), &cx()).await.unwrap();
    assert_eq!(rows(&path, "SELECT typeof(id), id, v FROM k"), vec![s(&["text", "12345678901234567890", "2"])]);
}

#[tokio::test]
async fn numbers_in_a_text_column_keep_their_digits() {
    let (_dir, path, sink) = sink();
    let schema = json!({"properties": {"id": {"type": "integer"}, "label": {"type": "string"}}});
    let t = stream("t", &["id"], Some(schema), DeleteMode::Keep);
    sink.open(&t, &cx()).await.unwrap();
    // Drift: the string column receives numbers.
    let b = batch(
        &t,
        &[r#"{"id": 1, "label": 0.1000000000000000000000001}"#, r#"{"id": 2, "label": 0.30000000000000004}"#],
    );
    sink.write(b, &cx()).await.unwrap();
    assert_eq!(
        rows(&path, "SELECT typeof(label), label FROM t ORDER BY id"),
        vec![s(&["text", "0.1000000000000000000000001"]), s(&["text", "0.30000000000000004"])]
    );
}

#[tokio::test]
async fn weird_table_and_column_names_are_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let config = dovetail_sqlite::SqliteConfig {
        table_prefix: Some("my \"raw\" ".into()),
        ..dovetail_sqlite::SqliteConfig::new(&path)
    };
    let sink = dovetail_sqlite::SqliteSink::new(config).unwrap();
    let st = stream("order items; DROP TABLE x", &["key with space"], None, DeleteMode::SoftDelete);
    sink.open(&st, &cx()).await.unwrap();
    let row = r#"{"key with space": "k1", "we\"ird": 1, "select": "s", "\"": "q", "": "empty", "ünï €": true}"#;
    let report = sink.write(batch(&st, &[row]), &cx()).await.unwrap();
    assert_eq!((report.written, report.rejected.len()), (1, 0));
    sink.write(batch(&st, &[row]), &cx()).await.unwrap();

    let table = "my \"raw\" order items; DROP TABLE x";
    assert_eq!(sink.table_name(&st.name), table);
    assert_eq!(
        column_names(&path, table),
        ["key with space", "", "\"", "select", "we\"ird", "ünï €", "_synced_at", "_deleted_at"]
    );
    let got = rows(
        &path,
        r#"SELECT "key with space", "we""ird", "select", """", "", "ünï €" FROM "my ""raw"" order items; DROP TABLE x""#,
    );
    assert_eq!(got, vec![s(&["k1", "1", "s", "q", "empty", "1"])]);
}

#[tokio::test]
async fn an_existing_table_with_another_primary_key_is_a_config_error() {
    let (_dir, path, sink) = sink();
    let users = stream("users", &["id"], None, DeleteMode::Keep);
    sink.write(batch(&users, &[r#"{"id": 1, "email": "a@b"}"#]), &cx()).await.unwrap();
    let other = stream("users", &["email"], None, DeleteMode::Keep);
    let err = sink.open(&other, &cx()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.to_string().contains("primary key (id)"), "{err}");
    assert_eq!(err.context().stream.as_deref(), Some("users"));
    assert_eq!(count(&path, "users"), 1);

    let keyless = stream("nokey", &[], None, DeleteMode::Keep);
    assert_eq!(sink.open(&keyless, &cx()).await.unwrap_err().kind(), &ErrorKind::Config);
}

/// The table's marker comes with each write (`mark`) and is what `recall` compares: a table
/// gone or created again (a new marker, the same sink object, as `--every` keeps it) is lost;
/// the one committed is intact; without a committed one the sink cannot tell.
#[tokio::test]
async fn recall_tells_a_table_gone_or_rebuilt_from_the_one_remembered() {
    use dovetail_core::SinkRecall;
    let (_dir, path, sink) = sink();
    let items = stream("items", &["id"], None, DeleteMode::Keep);
    assert!(
        matches!(sink.recall(&items, None, &cx()).await.unwrap(), SinkRecall::Lost(w) if w.contains("`items` is gone"))
    );
    sink.open(&items, &cx()).await.unwrap();
    assert_eq!(sink.mark("items"), None, "no table yet");
    sink.write(batch(&items, &[r#"{"id": 1}"#]), &cx()).await.unwrap();
    let first = sink.mark("items").expect("a created table has a marker");
    assert_eq!(sink.recall(&items, Some(&first), &cx()).await.unwrap(), SinkRecall::Intact);
    assert_eq!(sink.recall(&items, None, &cx()).await.unwrap(), SinkRecall::Unknown);

    read(&path).execute_batch("DROP TABLE items").unwrap();
    assert!(
        matches!(sink.recall(&items, Some(&first), &cx()).await.unwrap(), SinkRecall::Lost(w) if w.contains("is gone"))
    );
    sink.open(&items, &cx()).await.unwrap();
    sink.write(batch(&items, &[r#"{"id": 1}"#]), &cx()).await.unwrap();
    let second = sink.mark("items").expect("the new table's marker");
    assert_ne!(first, second, "a table created again has a new marker");
    let rebuilt = sink.recall(&items, Some(&first), &cx()).await.unwrap();
    assert!(matches!(&rebuilt, SinkRecall::Lost(w) if w.contains("was rebuilt")), "{rebuilt:?}");
    assert_eq!(sink.recall(&items, Some(&second), &cx()).await.unwrap(), SinkRecall::Intact);

    // Columns added later keep the marker (SQLite edits the statement around the comment).
    sink.write(batch(&items, &[r#"{"id": 2, "extra": "x"}"#]), &cx()).await.unwrap();
    assert_eq!(sink.recall(&items, Some(&second), &cx()).await.unwrap(), SinkRecall::Intact);
}
