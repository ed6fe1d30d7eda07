//! A pipeline composed in Rust instead of a config file: a JSONL source, a declarative
//! mapping plus a mapping written as a closure, a SQLite sink and the SQLite state store —
//! the same builder the `dovetail` binary fills from TOML.
//!
//!     cargo run -p dovetail-runner --example pipeline_in_code
//!
//! It writes into a temporary directory, runs twice and prints both reports: the second run
//! writes nothing because every record is unchanged.

use std::sync::Arc;

use dovetail_core::mapping::{CastType, Mapping};
use dovetail_core::{
    BuildCx, Pipeline, RunOptions, SinkConnector, SourceConnector, StreamOptions, SyncMode, TransformError,
};
use dovetail_files::FilesSource;
use dovetail_sqlite::{SqliteConfig, SqliteSink};
use dovetail_state::SqliteState;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let lines: Vec<String> = (1..=5)
        .map(|i| json!({"id": i, "name": format!("Customer {i}"), "balance": format!("{i}00.50"), "email": format!("C{i}@Example.com")}).to_string())
        .collect();
    std::fs::write(dir.path().join("customers.jsonl"), lines.join("\n") + "\n")?;

    let cx = BuildCx { base_dir: dir.path().to_path_buf(), pipeline: "crm".into(), ..Default::default() };
    let source_config = serde_json::from_value(json!({
        "streams": [{ "name": "customers", "path": "customers.jsonl", "primary_key": ["id"] }]
    }))?;
    let source = FilesSource::build(source_config, &cx)?;
    let sink = SqliteSink::build(SqliteConfig::new("warehouse.db"), &cx)?;
    let state = SqliteState::open(dir.path().join("state.db"))?;

    // Declarative steps first, then a closure for what config cannot say.
    let declarative = Mapping::builder().rename("name", "full_name").cast("balance", CastType::Number).build();
    let mapping = move |data: Value| -> Result<Vec<Value>, TransformError> {
        let mut out = declarative.map(data)?;
        if let Some(Value::String(email)) = out.get_mut("email") {
            *email = email.to_lowercase();
        }
        Ok(vec![out])
    };
    let pipeline = Pipeline::builder("crm")
        .source(source)
        .sink(sink)
        .state(state)
        .stream(
            "customers",
            StreamOptions {
                mapping: Some(Arc::new(mapping)),
                sync_mode: SyncMode::Incremental,
                primary_key: Some(vec!["id".into()]),
                ..Default::default()
            },
        )
        .build()?;

    for attempt in ["first", "second"] {
        let report = pipeline.run(RunOptions::default()).await?;
        let s = &report.streams["customers"];
        println!("{attempt} run: read {}, written {}, unchanged {}", s.read, s.written, s.skipped_unchanged);
    }
    let db = rusqlite::Connection::open(dir.path().join("warehouse.db"))?;
    let email: String = db.query_row("SELECT email FROM customers WHERE id = 3", [], |r| r.get(0))?;
    println!("customer 3's email in the warehouse: {email}");
    Ok(())
}
