//! Measures how fast the files source reads a 200,000-line file: JSONL with flat records,
//! JSONL with a nested array, and CSV.
//!
//! `cargo run --release -p dovetail-files --example files_throughput` prints lines per
//! second of wall time and per second of CPU time (all threads; Linux only, from
//! `/proc/self/stat`). It asserts only that every line came through, never a timing.

use std::fmt::Write as _;
use std::time::Instant;

use dovetail_core::{BuildCx, Cx, Next, ReadRequest, Source, SourceConnector};
use dovetail_files::{FilesSource, FilesSourceConfig};
use serde_json::json;

const LINES: usize = 200_000;
const BATCH: usize = 1000;

/// CPU seconds used by the whole process so far, if the platform tells.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut flat, mut nested) = (String::new(), String::new());
    let mut csv = String::from("id,customer,email,total,updated_at\n");
    for i in 0..LINES {
        let (c, t, m) = (i % 9973, format!("{}.{:02}", i % 100_000, i % 100), i % 60);
        let _ = writeln!(
            flat,
            r#"{{"id":{i},"customer":"Customer {c}","email":"c{c}@example.com","total":{t},"updated_at":"2024-05-01T12:{m:02}:00Z"}}"#
        );
        let _ = writeln!(
            nested,
            r#"{{"id":{i},"customer":"Customer {c}","email":"c{c}@example.com","total":{t},"currency":"EUR","status":"paid","items":[{{"sku":"SKU-{c}","qty":2}}],"updated_at":"2024-05-01T12:{m:02}:00Z"}}"#
        );
        let _ = writeln!(csv, "{i},Customer {c},c{c}@example.com,{t},2024-05-01T12:{m:02}:00Z");
    }
    let files = [("flat", "flat.jsonl", flat), ("nested", "nested.jsonl", nested), ("csv", "orders.csv", csv)];
    let mut streams = Vec::new();
    for (name, file, text) in &files {
        std::fs::write(dir.path().join(file), text).expect("write file");
        streams.push(json!({ "name": name, "path": file, "primary_key": ["id"] }));
    }
    let config: FilesSourceConfig = serde_json::from_value(json!({ "streams": streams })).expect("config");
    let src = FilesSource::build(
        config,
        &BuildCx { base_dir: dir.path().to_path_buf(), pipeline: "bench".into(), ..Default::default() },
    )
    .expect("build");

    for (stream, _, text) in &files {
        let (started, cpu_started) = (Instant::now(), cpu_seconds());
        let (mut position, mut records) = (None, 0usize);
        loop {
            let req = ReadRequest {
                stream: (*stream).into(),
                position: position.take(),
                since: None,
                batch_size: BATCH,
                use_cache: false,
            };
            let page = src.read(&req, &Cx::default()).await.expect("read");
            assert!(page.rejects.is_empty());
            records += page.records.len();
            match page.next {
                Next::More(p) | Next::Later(p) => position = Some(p),
                Next::Done { .. } => break,
            }
        }
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(records, LINES);
        let cpu = match (cpu_started, cpu_seconds()) {
            (Some(a), Some(b)) if b > a => format!(", {:.0} lines per CPU second", records as f64 / (b - a)),
            _ => String::new(),
        };
        println!(
            "{stream:>6}: {records} lines of {} bytes in pages of {BATCH}: {wall:.3} s = {:.0} lines/s{cpu}",
            text.len() / LINES,
            records as f64 / wall
        );
    }
}
