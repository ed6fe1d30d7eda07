//! Config of the files source and the jsonl sink: parsing, validation, schema.

mod common;

use common::{read, try_source};
use dovetail_core::{BuildCx, ErrorKind, FieldPath, SinkConnector, Source, StreamSpec};
use dovetail_files::{FilesSourceConfig, JsonlSink, JsonlSinkConfig};
use serde_json::{Value, json};

fn build_error(streams: Value) -> String {
    let e = try_source(std::path::Path::new("/tmp"), streams).unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::Config, "{e}");
    e.message().to_owned()
}

#[test]
fn unknown_keys_are_rejected() {
    let e = serde_json::from_value::<FilesSourceConfig>(json!({
        "streams": [{ "name": "orders", "path": "o.jsonl", "primary_key": ["id"], "primary_keys": ["id"] }]
    }))
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `primary_keys`"), "{e}");
    let e = serde_json::from_value::<FilesSourceConfig>(json!({ "streams": [], "folder": "x" })).unwrap_err();
    assert!(e.to_string().contains("unknown field `folder`"), "{e}");
    let e = serde_json::from_value::<JsonlSinkConfig>(json!({ "dir": "out", "mode": "upsert" })).unwrap_err();
    assert!(e.to_string().contains("unknown field `mode`"), "{e}");
}

#[test]
fn the_primary_key_is_required_and_not_empty() {
    let e =
        serde_json::from_value::<FilesSourceConfig>(json!({ "streams": [{ "name": "orders", "path": "o.jsonl" }] }))
            .unwrap_err();
    assert!(e.to_string().contains("missing field `primary_key`"), "{e}");
    let m = build_error(json!([{ "name": "orders", "path": "o.jsonl", "primary_key": [] }]));
    assert_eq!(m, "stream `orders`: `primary_key` must list at least one field");
}

#[test]
fn validation_names_the_stream() {
    let m = build_error(json!([
        { "name": "orders", "path": "o.jsonl", "primary_key": ["id"] },
        { "name": "orders", "path": "p.jsonl", "primary_key": ["id"] }
    ]));
    assert!(m.contains("stream `orders` is configured twice"), "{m}");

    let m = build_error(json!([{ "name": "orders", "path": "orders.txt", "primary_key": ["id"] }]));
    assert!(m.starts_with("stream `orders`: cannot tell the format of `orders.txt`"), "{m}");

    let m = build_error(
        json!([{ "name": "orders", "path": "o.jsonl", "primary_key": ["id"], "delimiter": ";", "empty_as_null": false }]),
    );
    assert_eq!(m, "stream `orders`: `delimiter` and `empty_as_null` only apply to csv files, and this stream is jsonl");

    let m = build_error(json!([{ "name": "orders", "path": "o.csv", "primary_key": ["id"], "delimiter": "é" }]));
    assert!(m.starts_with("stream `orders`: `delimiter` must be one ASCII character"), "{m}");

    let e = serde_json::from_value::<FilesSourceConfig>(
        json!({ "streams": [{ "name": "o", "path": "o.csv", "primary_key": ["id"], "delimiter": ";;" }] }),
    )
    .unwrap_err();
    assert!(e.to_string().contains("expected a character"), "{e}");

    assert!(build_error(json!([])).contains("at least one entry in `streams`"));
}

#[tokio::test]
async fn paths_resolve_against_the_config_folder_and_format_can_be_explicit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/orders.txt"), "{\"id\":1,\"updated_at\":\"2024-01-01T00:00:00Z\"}\n").unwrap();
    std::fs::write(dir.path().join("data/people.NDJSON"), "{\"id\":2}\n").unwrap();
    let src = try_source(
        dir.path(),
        json!([
            { "name": "orders", "path": "data/orders.txt", "format": "jsonl", "primary_key": ["id"], "cursor_field": "updated_at" },
            { "name": "people", "path": "data/people.NDJSON", "primary_key": ["id", "org.id"] }
        ]),
    )
    .unwrap();
    assert_eq!(
        src.streams(),
        [
            StreamSpec::new("orders", vec![FieldPath::new("id")]).with_cursor("updated_at"),
            StreamSpec::new("people", vec![FieldPath::new("id"), FieldPath::new("org.id")]),
        ]
    );
    src.check(&Default::default()).await.unwrap();
    let p = read(&src, "orders", None, 10).await.unwrap();
    assert_eq!(p.records[0].provenance.endpoint, "data/orders.txt", "provenance shows the path as configured");
    assert_eq!(read(&src, "people", None, 10).await.unwrap().records[0].data, json!({"id": 2}));
}

#[test]
fn the_sink_resolves_its_dir() {
    let cx = BuildCx { base_dir: "/etc/dovetail".into(), pipeline: "p".into(), ..Default::default() };
    let sink = JsonlSink::build(JsonlSinkConfig { dir: "out".into() }, &cx).unwrap();
    assert_eq!(sink.dir(), std::path::Path::new("/etc/dovetail/out"));
    assert_eq!(sink.stream_path("orders").unwrap(), std::path::Path::new("/etc/dovetail/out/orders.jsonl"));
    assert_eq!(*sink.stream_path("../etc").unwrap_err().kind(), ErrorKind::Config);
}

#[test]
fn config_schemas() {
    // Through serde_json, so numbers print as numbers (`arbitrary_precision` is on).
    let text = |s: schemars::Schema| serde_json::to_string_pretty(&s).unwrap();
    insta::assert_snapshot!("files_source_config", text(schemars::schema_for!(FilesSourceConfig)));
    insta::assert_snapshot!("jsonl_sink_config", text(schemars::schema_for!(JsonlSinkConfig)));
}
