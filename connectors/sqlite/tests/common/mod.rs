//! Helpers shared by the sqlite sink tests: streams, batches and reading the file back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dovetail_core::{Batch, BuildCx, Cx, DeleteMode, Key, Provenance, Record, SinkConnector, SinkStream};
use dovetail_sqlite::{SqliteConfig, SqliteSink};
use rusqlite::Connection;
use serde_json::Value;

pub fn cx() -> Cx {
    Cx::default()
}

pub fn sink_at(path: &Path) -> SqliteSink {
    SqliteSink::build(SqliteConfig::new(path), &BuildCx::default()).unwrap()
}

/// A sink writing to `db/test.db` inside a fresh temp dir (the folder does not exist yet).
pub fn sink() -> (tempfile::TempDir, PathBuf, SqliteSink) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db").join("test.db");
    let sink = sink_at(&path);
    (dir, path, sink)
}

pub fn stream(name: &str, keys: &[&str], schema: Option<Value>, delete_mode: DeleteMode) -> Arc<SinkStream> {
    Arc::new(SinkStream {
        name: name.into(),
        key_columns: keys.iter().map(|k| k.to_string()).collect(),
        schema,
        delete_mode,
    })
}

/// Records parsed from JSON text (so numbers keep their exact digits), keyed by `keys`.
pub fn records(keys: &[&str], rows: &[&str]) -> Vec<Record> {
    let prov = Arc::new(Provenance::default());
    rows.iter()
        .map(|r| {
            let data: Value = serde_json::from_str(r).unwrap();
            let mut rec = Record::new(data, prov.clone());
            let parts: Option<Vec<&Value>> = keys.iter().map(|k| rec.data.get(*k)).collect();
            rec.key = parts.map(|p| Key::from_parts(&p));
            rec
        })
        .collect()
}

pub fn batch(stream: &Arc<SinkStream>, rows: &[&str]) -> Batch {
    let keys: Vec<&str> = stream.key_columns.iter().map(String::as_str).collect();
    Batch::new(stream.clone(), records(&keys, rows).into())
}

/// A second connection, as a reader of the database would open it.
pub fn read(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

/// Each row of `sql` as strings (`NULL` for null), via `CAST(.. AS TEXT)`-free reading.
pub fn rows(path: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = read(path);
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                    rusqlite::types::ValueRef::Real(f) => format!("{f:?}"),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(b) => format!("blob:{}", b.len()),
                })
            })
            .collect()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

pub fn count(path: &Path, table: &str) -> i64 {
    read(path).query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0)).unwrap()
}

/// `(name, declared type, pk position)` of each column, in table order.
pub fn columns(path: &Path, table: &str) -> Vec<(String, String, i64)> {
    let conn = read(path);
    let mut stmt = conn.prepare("SELECT name, type, pk FROM pragma_table_info(?1)").unwrap();
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

pub fn column_names(path: &Path, table: &str) -> Vec<String> {
    columns(path, table).into_iter().map(|c| c.0).collect()
}
