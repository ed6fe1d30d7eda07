//! The connector contract suite (dovetail-testkit) for the files connector: the source over
//! JSONL files the contract hands it records for (HTTP checks are n/a), and the JSONL sink.
//! `cargo xtask contract files` runs it and prints the table.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dovetail_core::{BuildCx, SinkConnector, SourceConnector};
use dovetail_files::{FilesSource, FilesSourceConfig, JsonlSink, JsonlSinkConfig};
use dovetail_testkit::{SinkContract, SourceContract};
use serde_json::{Value, json};

fn orders() -> Vec<Value> {
    (1..=4)
        .map(|i| json!({ "id": i, "customer": format!("c{}", i % 2), "total": format!("{i}9.95"), "qty": i, "updated_at": format!("2026-01-0{i}T00:00:00Z") }))
        .collect()
}

fn customers() -> Vec<Value> {
    vec![
        json!({ "id": "c0", "name": "Ada", "vip": true, "visits": 3 }),
        json!({ "id": "c1", "name": "Grace", "vip": false, "visits": 7 }),
        json!({ "id": "c2", "name": "Edsger", "vip": false, "visits": 1 }),
    ]
}

/// A source reading `records` from a fresh JSONL file in `dir` (each call its own file, so
/// a changed copy never overwrites what an earlier run reads).
fn source_over(dir: &Path, n: usize, stream: &str, records: &[Value]) -> Result<FilesSource, dovetail_core::Error> {
    let file = dir.join(format!("{stream}-{n}.jsonl"));
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&file, text).map_err(|e| dovetail_core::Error::config(e.to_string()))?;
    let cursor = (stream == "orders").then_some("updated_at");
    let config: FilesSourceConfig = serde_json::from_value(json!({ "streams": [
        { "name": stream, "path": file, "primary_key": ["id"], "cursor_field": cursor },
    ] }))
    .map_err(|e| dovetail_core::Error::config(e.to_string()))?;
    FilesSource::build(config, &BuildCx { base_dir: dir.to_path_buf(), ..Default::default() })
}

#[tokio::test]
async fn files_source_honours_the_connector_contract() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    SourceContract::local_records("files", move |stream, records| {
        source_over(dir.path(), calls.fetch_add(1, Ordering::Relaxed), stream, records)
    })
    .records("orders", orders())
    .records("customers", customers())
    .snapshots_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"))
    .skip("schemas_match_snapshots", "a files stream declares no schema: it is inferred from the first page read")
    .skip("no_fixture_secret_in_output", "the files source reads local files: it holds no credential")
    .example_config::<FilesSourceConfig>(json!({ "streams": [
        { "name": "orders", "path": "data/orders.jsonl", "primary_key": ["id"], "cursor_field": "updated_at" },
    ] }))
    .run()
    .await;
}

/// What the JSONL sink holds for a stream as its consumers read it: the last line per key
/// (the sink is an append-only log; ARCHITECTURE.md, "JSONL sink").
fn read_jsonl(dir: &Path, stream: &str) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(dir.join(format!("{stream}.jsonl"))).map_err(|e| e.to_string())?;
    let mut last = std::collections::BTreeMap::new();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
        last.insert(row.get("id").map(ToString::to_string).unwrap_or_default(), row);
    }
    Ok(last.into_values().collect())
}

#[tokio::test]
async fn jsonl_sink_honours_the_sink_contract() {
    SinkContract::new(
        "files",
        |dir| JsonlSink::build(JsonlSinkConfig { dir: dir.to_path_buf() }, &BuildCx::default()),
        read_jsonl,
    )
    .refuses_nothing("the JSONL sink appends any JSON record; it has no record it refuses")
    .example_config::<JsonlSinkConfig>(json!({ "dir": "out" }))
    .run()
    .await;
}
