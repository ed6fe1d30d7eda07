//! The jsonl sink over a real folder: appends, tombstones, torn-tail repair, check.

use std::fs;
use std::sync::Arc;

use dovetail_core::{
    Batch, BuildCx, Cx, DeleteMode, ErrorKind, Key, Provenance, Record, Sink, SinkConnector, SinkStream, SinkTarget,
};
use dovetail_files::{JsonlSink, JsonlSinkConfig};
use serde_json::{Value, json};

fn sink(dir: &std::path::Path) -> JsonlSink {
    JsonlSink::build(
        JsonlSinkConfig { dir: "out".into() },
        &BuildCx { base_dir: dir.to_path_buf(), pipeline: "p".into(), ..Default::default() },
    )
    .unwrap()
}

fn stream(name: &str, keys: &[&str]) -> Arc<SinkStream> {
    Arc::new(SinkStream {
        name: name.into(),
        key_columns: keys.iter().map(|k| k.to_string()).collect(),
        schema: None,
        delete_mode: DeleteMode::Delete,
    })
}

fn batch(s: &Arc<SinkStream>, rows: Vec<Value>) -> Batch {
    let prov = Arc::new(Provenance::default());
    Batch::new(s.clone(), rows.into_iter().map(|v| Record::new(v, prov.clone())).collect())
}

fn lines(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn writes_appends_and_tombstones_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(dir.path());
    let cx = Cx::default();
    let orders = stream("orders", &["id"]);
    sink.check(&cx).await.unwrap();
    sink.open(&orders, &cx).await.unwrap();
    let path = dir.path().join("out/orders.jsonl");
    assert_eq!(fs::read(&path).unwrap(), b"", "open creates the folder and an empty file");

    let big: Value = serde_json::from_str("{\"id\":1,\"total\":12345678901234567890.000000000000000001}").unwrap();
    let report = sink.write(batch(&orders, vec![big, json!({"id": 2, "name": "Bo"})]), &cx).await.unwrap();
    assert_eq!(report.written, 2);
    assert!(report.rejected.is_empty());
    let report = sink.write(batch(&orders, vec![json!({"id": 1, "total": 3})]), &cx).await.unwrap();
    assert_eq!(report.written, 1);

    let deleted =
        sink.delete(&orders, &[Key::from_parts(&[&json!(2)]), Key::from_parts(&[&json!("x\"y")])], &cx).await.unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(
        lines(&path),
        [
            "{\"id\":1,\"total\":12345678901234567890.000000000000000001}",
            "{\"id\":2,\"name\":\"Bo\"}",
            "{\"id\":1,\"total\":3}",
            "{\"_deleted\":true,\"id\":2}",
            "{\"_deleted\":true,\"id\":\"x\\\"y\"}",
        ]
    );

    // Composite (and nested) keys put every key column in the tombstone.
    let lines_stream = stream("order_lines", &["order_id", "item.sku"]);
    sink.open(&lines_stream, &cx).await.unwrap();
    sink.delete(&lines_stream, &[Key::from_parts(&[&json!(7), &json!("A-1")])], &cx).await.unwrap();
    assert_eq!(
        lines(&dir.path().join("out/order_lines.jsonl")),
        ["{\"_deleted\":true,\"item\":{\"sku\":\"A-1\"},\"order_id\":7}"]
    );
}

#[tokio::test]
async fn open_repairs_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("out")).unwrap();
    let path = dir.path().join("out/orders.jsonl");
    fs::write(&path, "{\"id\":1}\n{\"id\":2}\n{\"id\":3,\"na").unwrap();
    let sink = sink(dir.path());
    let cx = Cx::default();
    let orders = stream("orders", &["id"]);
    sink.open(&orders, &cx).await.unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "{\"id\":1}\n{\"id\":2}\n");
    sink.write(batch(&orders, vec![json!({"id": 3})]), &cx).await.unwrap();
    assert_eq!(lines(&path), ["{\"id\":1}", "{\"id\":2}", "{\"id\":3}"]);

    // A file that is nothing but a partial line is emptied; an intact file is left alone.
    fs::write(&path, "{\"id\":1").unwrap();
    sink.open(&orders, &cx).await.unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"");
    fs::write(&path, "{\"id\":1}\n").unwrap();
    sink.open(&orders, &cx).await.unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "{\"id\":1}\n");
}

#[tokio::test]
async fn check_fails_when_the_dir_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("out"), "a file, not a folder").unwrap();
    let sink = sink(dir.path());
    let e = sink.check(&Cx::default()).await.unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::Config);
    assert!(e.message().contains("is not a folder") && e.message().contains("out"), "{}", e.message());
    // A folder not there yet is fine when its parent is writable, and check creates nothing.
    let ok = JsonlSink::build(JsonlSinkConfig { dir: dir.path().join("fine/deeper") }, &BuildCx::default()).unwrap();
    ok.check(&Cx::default()).await.unwrap();
    assert!(!dir.path().join("fine").exists(), "check created the sink's folder");
}

#[tokio::test]
async fn stream_names_that_are_not_file_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(dir.path());
    let e = sink.write(batch(&stream("../escape", &["id"]), vec![json!({"id": 1})]), &Cx::default()).await.unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::Config);
    assert!(!dir.path().join("escape.jsonl").exists());
}

#[test]
fn targets_are_the_stream_files_named_by_dir() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(dir.path());
    let streams = ["orders".to_owned(), "../escape".to_owned(), "runs".to_owned()];
    let file = |name: &str| SinkTarget::File { key: "dir", path: dir.path().join("out").join(name) };
    // A stream name that cannot be a file name is never written, so it has no target.
    assert_eq!(sink.targets(&streams), [file("orders.jsonl"), file("runs.jsonl")]);
    assert!(!dir.path().join("out").exists(), "targets does no IO");
}
