//! End to end through the binary: a record the SQLite sink cannot hold (too many columns,
//! a name clash) is dead-lettered naming why, the rest of the batch is written, and the
//! refused record leaves no column behind.

use std::path::Path;

mod common;

use common::{dovetail, text};

use serde_json::{Map, Value, json};

const CONFIG: &str = r#"[pipelines.p.source]
kind = "files"
[[pipelines.p.source.streams]]
name = "orders"
path = "orders.jsonl"
primary_key = ["id"]

[pipelines.p.sink]
kind = "sqlite"
path = "out/warehouse.db"
"#;

fn project(lines: &[Value]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dovetail.toml"), CONFIG).unwrap();
    write_lines(dir.path(), lines);
    dir
}

fn write_lines(dir: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("orders.jsonl"), text).unwrap();
}

/// `dovetail run --json`: the exit code and the stream's report.
fn run(dir: &Path) -> (i32, Value) {
    let out = dovetail(dir, &["-q", "run", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap(), report["streams"]["orders"].clone())
}

/// The reasons of the dead letters, in the order listed.
fn reasons(dir: &Path) -> Vec<String> {
    let out = dovetail(dir, &["-q", "dead-letters", "list", "--json"]);
    let letters: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    letters.iter().map(|d| d["reason"].as_str().unwrap_or_default().to_owned()).collect()
}

fn columns(dir: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(dir.join("out/warehouse.db")).unwrap();
    let mut stmt = db.prepare("SELECT name FROM pragma_table_info('orders')").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

/// `{"id": id, "<prefix>1": 1, ...}`: `fields` fields, `id` included.
fn wide(id: u64, prefix: &str, fields: usize) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), json!(id));
    for i in 1..fields {
        obj.insert(format!("{prefix}{i}"), json!(i));
    }
    Value::Object(obj)
}

fn counts(stream: &Value) -> (Option<u64>, Option<u64>) {
    (stream["written"].as_u64(), stream["dead_lettered"].as_u64())
}

#[test]
fn a_record_with_more_fields_than_a_table_holds_is_dead_lettered_and_the_rest_written() {
    let dir = project(&[json!({"id": 1, "a": "x"}), wide(2, "f", 2_100), json!({"id": 3, "a": "z"})]);
    let (code, stream) = run(dir.path());
    assert_eq!(code, 0, "{stream}");
    assert_eq!(counts(&stream), (Some(2), Some(1)), "{stream}");
    let reasons = reasons(dir.path());
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("record has 2,100 fields; a SQLite table holds at most 2,000 columns"), "{reasons:?}");
    assert_eq!(columns(dir.path()), ["id", "a", "_synced_at"]);

    // Columns added past the limit: the record that needs them is dead-lettered, others go on.
    write_lines(dir.path(), &[wide(4, "g", 1_999), json!({"id": 5, "b": 1}), wide(6, "h", 1_990)]);
    let (code, stream) = run(dir.path());
    assert_eq!(code, 0, "{stream}");
    assert_eq!(counts(&stream), (Some(2), Some(1)), "{stream}");
    let reasons = self::reasons(dir.path());
    let past = "record brings 1,998 new fields but table `orders` already has 3 of at most 2,000 columns";
    assert!(reasons.iter().any(|r| r.contains(past)), "{reasons:?}");
    let columns = columns(dir.path());
    assert_eq!((columns.len(), &columns[..4]), (1_993, &["id", "a", "_synced_at", "b"].map(String::from)[..]));
}

#[test]
fn a_record_refused_for_a_name_clash_leaves_no_column_and_later_records_are_written() {
    let dir = project(&[json!({"id": 1, "Name": "A", "name": "a"}), json!({"id": 2, "name": "b"})]);
    let (code, stream) = run(dir.path());
    assert_eq!(code, 0, "{stream}");
    assert_eq!(counts(&stream), (Some(1), Some(1)), "{stream}");
    let reasons = reasons(dir.path());
    assert!(reasons[0].contains("fields `Name` and `name` would be one column"), "{reasons:?}");
    assert_eq!(columns(dir.path()), ["id", "name", "_synced_at"]);

    write_lines(dir.path(), &[json!({"id": 3, "name": "c"})]);
    let (code, stream) = run(dir.path());
    assert_eq!((code, counts(&stream)), (0, (Some(1), Some(0))), "{stream}");
}
