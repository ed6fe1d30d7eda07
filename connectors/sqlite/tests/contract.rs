//! The sink contract (dovetail-testkit) on the SQLite sink, over real database files in a
//! temp dir. `cargo xtask contract sqlite` runs it and prints the table.

use std::path::Path;

use dovetail_core::{BuildCx, SinkConnector};
use dovetail_sqlite::{SqliteConfig, SqliteSink};
use dovetail_testkit::SinkContract;
use rusqlite::types::ValueRef;
use serde_json::{Value, json};

/// Every row of the stream's table, as a reader of the database sees it: TEXT that holds a
/// JSON object or array (how the sink stores them) is parsed back.
fn read_rows(dir: &Path, stream: &str) -> Result<Vec<Value>, String> {
    let conn = rusqlite::Connection::open(dir.join("out.db")).map_err(|e| e.to_string())?;
    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{stream}\"")).map_err(|e| e.to_string())?;
    let names: Vec<String> = stmt.column_names().iter().map(ToString::to_string).collect();
    let rows = stmt
        .query_map([], |row| {
            let mut obj = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let v = match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => json!(n),
                    ValueRef::Real(f) => json!(f),
                    ValueRef::Text(t) => {
                        let t = String::from_utf8_lossy(t).into_owned();
                        match t.starts_with(['{', '[']).then(|| serde_json::from_str(&t).ok()).flatten() {
                            Some(v) => v,
                            None => Value::String(t),
                        }
                    }
                    ValueRef::Blob(b) => Value::String(format!("{b:?}")),
                };
                obj.insert(name.clone(), v);
            }
            Ok(Value::Object(obj))
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

#[tokio::test]
async fn sqlite_sink_honours_the_sink_contract() {
    SinkContract::new(
        "sqlite",
        |dir| SqliteSink::build(SqliteConfig::new(dir.join("out.db")), &BuildCx::default()),
        read_rows,
    )
    // SQLite column names ignore case: a field `NAME` next to `name` cannot be stored.
    .bad_record(json!({ "id": 99, "name": "x", "NAME": "clashes with `name`" }))
    .example_config::<SqliteConfig>(json!({ "path": "warehouse.db", "table_prefix": "crm_" }))
    .run()
    .await;
}
