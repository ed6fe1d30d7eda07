//! The sink contract (dovetail-testkit) on the postgres sink, over the testkit's throwaway
//! PostgreSQL: each temp dir of the suite writes to a schema of its own. `cargo xtask
//! contract postgres` runs it and prints the table.

use std::path::Path;

use dovetail_core::{BuildCx, SinkConnector, SourceConnector};
use dovetail_postgres::{PostgresSink, PostgresSinkConfig, PostgresSource, PostgresSourceConfig};
use dovetail_testkit::{SinkContract, SourceContract, pg};
use serde_json::{Value, json};

/// The schema a temp dir's sink writes to.
fn schema(dir: &Path) -> String {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    format!("c_{}", name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
}

/// Every row of the stream's table as JSON, without `_synced_at`.
fn read_rows(url: &str, dir: &Path, stream: &str) -> Result<Vec<Value>, String> {
    let (url, sql) = (url.to_owned(), format!("SELECT row_to_json(t)::text FROM \"{}\".\"{stream}\" t", schema(dir)));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (client, conn) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let rows = match client.query(&sql, &[]).await {
                Ok(rows) => rows,
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => return Ok(vec![]),
                Err(e) => return Err(e.to_string()),
            };
            rows.iter()
                .map(|r| {
                    let mut v: Value = serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| e.to_string())?;
                    if let Some(o) = v.as_object_mut() {
                        o.remove("_synced_at");
                    }
                    Ok(v)
                })
                .collect()
        })
    })
    .join()
    .map_err(|_| "the reading thread panicked".to_owned())?
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_sink_honours_the_sink_contract() {
    let Some(db) = pg::database("pg_sink_contract") else { return };
    let url = db.url().to_owned();
    SinkContract::new(
        "postgres",
        move |dir| {
            let mut config = PostgresSinkConfig::new(db.url());
            config.schema = schema(dir);
            PostgresSink::build(config, &BuildCx::default())
        },
        move |dir, stream| read_rows(&url, dir, stream),
    )
    // PostgreSQL refuses a NUL character in text: the record is dead-lettered naming the field.
    .bad_record(json!({ "id": 99, "name": "nul \u{0} inside" }))
    .example_config::<PostgresSinkConfig>(json!({
        "url": "postgres://loader:${PG_PASSWORD}@db.internal:5432/warehouse?sslmode=verify-full",
        "schema": "crm",
        "table_prefix": "hubspot_",
        "nul": "strip"
    }))
    .run()
    .await;
}

fn orders() -> Vec<Value> {
    (1..=5)
        .map(|i| {
            json!({ "id": i, "customer": format!("c{}", i % 2), "total": format!("{i}9.95"), "qty": i,
                    "updated_at": format!("2026-01-0{}T00:00:00Z", i.min(3)) })
        })
        .collect()
}

fn customers() -> Vec<Value> {
    vec![
        json!({ "id": "c0", "name": "Ada", "vip": true, "visits": 3, "tags": ["a"] }),
        json!({ "id": "c1", "name": "Grace", "vip": false, "visits": 7, "tags": [] }),
        json!({ "id": "c2", "name": "Edsger", "vip": false, "visits": 1, "tags": ["b", "c"] }),
    ]
}

/// The column type for a field holding these values: what the records hold, kept as is.
fn column_type(values: &[&Value]) -> &'static str {
    let all = |f: fn(&Value) -> bool| values.iter().all(|v| v.is_null() || f(v));
    if all(|v| v.is_i64()) {
        "bigint"
    } else if all(Value::is_number) {
        "numeric"
    } else if all(Value::is_boolean) {
        "boolean"
    } else if all(Value::is_string) {
        "text"
    } else {
        "jsonb"
    }
}

/// A fresh table `<stream>_<n>` holding `records` (typed from their values, key `id`).
fn table_over(url: &str, table: &str, records: &[Value]) -> Result<(), String> {
    let mut fields: Vec<String> = Vec::new();
    for r in records {
        for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
            if !fields.contains(k) {
                fields.push(k.clone());
            }
        }
    }
    let cols: Vec<String> = fields
        .iter()
        .map(|f| {
            let values: Vec<&Value> = records.iter().filter_map(|r| r.get(f)).collect();
            format!("\"{f}\" {}", column_type(&values))
        })
        .collect();
    let create = format!("CREATE TABLE \"{table}\" ({}, PRIMARY KEY (id))", cols.join(", "));
    let insert =
        format!("INSERT INTO \"{table}\" SELECT * FROM jsonb_populate_recordset(NULL::\"{table}\", $1::text::jsonb)");
    let (url, data) = (url.to_owned(), Value::Array(records.to_vec()).to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (client, conn) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            client.batch_execute(&create).await.map_err(|e| format!("{create}: {e}"))?;
            client.execute(&insert, &[&data]).await.map_err(|e| format!("{insert}: {e}"))?;
            Ok(())
        })
    })
    .join()
    .map_err(|_| "the writing thread panicked".to_owned())?
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_source_honours_the_connector_contract() {
    let Some(db) = pg::database("pg_source_contract") else { return };
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = db.url().to_owned();
    SourceContract::local_records("postgres", move |stream, records| {
        let table = format!("{stream}_{}", calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        table_over(&url, &table, records).map_err(dovetail_core::Error::config)?;
        let mut config = PostgresSourceConfig::table(url.clone(), table);
        config.stream = Some(stream.to_owned());
        config.page_size = 2;
        if stream == "orders" {
            config.cursor = Some("updated_at".into());
        }
        PostgresSource::build(config, &BuildCx::default())
    })
    .records("orders", orders())
    .records("customers", customers())
    .snapshots_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"))
    .skip(
        "bad_record_dead_lettered_rest_continue",
        "a table row always decodes: every column type has a JSON value (a NULL cursor is the engine's dead letter, \
         tests/tests/pg_source.rs)",
    )
    .skip("no_fixture_secret_in_output", "the records live in a local test database: there is no fixture credential")
    .example_config::<PostgresSourceConfig>(json!({
        "url": "postgres://reader:${PG_PASSWORD}@db.internal:5432/warehouse?sslmode=verify-full",
        "table": "customers",
        "cursor": "updated_at",
        "page_size": 500
    }))
    .run()
    .await;
}
