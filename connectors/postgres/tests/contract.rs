//! The sink contract (dovetail-testkit) on the postgres sink, over the testkit's throwaway
//! PostgreSQL: each temp dir of the suite writes to a schema of its own. `cargo xtask
//! contract postgres` runs it and prints the table.

use std::path::Path;

use dovetail_core::{BuildCx, SinkConnector};
use dovetail_postgres::{PostgresSink, PostgresSinkConfig};
use dovetail_testkit::{SinkContract, pg};
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
