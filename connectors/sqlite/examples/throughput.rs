//! Measure upserts per second into a fresh SQLite file (print only).
//!
//! `cargo run --release -p dovetail-sqlite --example throughput [rows] [batch]`

use std::sync::Arc;
use std::time::Instant;

use dovetail_core::{Batch, BuildCx, Cx, DeleteMode, Key, Provenance, Record, Sink, SinkConnector, SinkStream};
use dovetail_sqlite::{SqliteConfig, SqliteSink};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), dovetail_core::Error> {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let batch_size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("dovetail-sqlite-throughput-{}", std::process::id()));
    let sink = SqliteSink::build(SqliteConfig::new(dir.join("bench.db")), &BuildCx::default())?;
    let stream = Arc::new(SinkStream {
        name: "users".into(),
        key_columns: vec!["id".into()],
        schema: None,
        delete_mode: DeleteMode::Keep,
    });
    let cx = Cx::default();
    sink.open(&stream, &cx).await?;

    let prov = Arc::new(Provenance::default());
    let make = |round: u64| -> Vec<Batch> {
        (0..rows as u64)
            .map(|i| {
                let data = json!({"id": i, "name": format!("user {i}"), "score": i * round, "active": i % 2 == 0});
                let mut r = Record::new(data, prov.clone());
                r.key = Some(Key::from_parts(&[&json!(i)]));
                r
            })
            .collect::<Vec<_>>()
            .chunks(batch_size)
            .map(|c| Batch::new(stream.clone(), c.into()))
            .collect()
    };
    for (label, round) in [("insert", 1), ("update", 2)] {
        let batches = make(round);
        let start = Instant::now();
        let mut written = 0;
        for b in batches {
            written += sink.write(b, &cx).await?.written;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}: {written} rows in {secs:.3}s = {:.0} upserts/s (batches of {batch_size})",
            written as f64 / secs
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
