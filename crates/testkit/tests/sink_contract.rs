//! The sink contract's own checks: a sink that appends every record it is given (no key,
//! no upsert) and is read back as it is stored fails `sink_replay_is_idempotent`; the same
//! sink read back as "last row per key" passes it. Both write a real file in the temp dir.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use dovetail_core::{Batch, Cx, Error, ErrorKind, Sink, SinkStream, WriteReport};
use dovetail_testkit::{Outcome, SinkContract};
use serde_json::Value;

/// Appends each record as a JSON line to `<dir>/<stream>.jsonl`.
struct AppendSink {
    dir: PathBuf,
}

#[async_trait]
impl Sink for AppendSink {
    fn kind(&self) -> &'static str {
        "append"
    }
    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        Ok(())
    }
    async fn open(&self, _stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::new(ErrorKind::Permanent, e.to_string()))
    }
    async fn write(&self, batch: Batch, _cx: &Cx) -> Result<WriteReport, Error> {
        let io = |e: std::io::Error| Error::new(ErrorKind::Permanent, e.to_string());
        let path = self.dir.join(format!("{}.jsonl", batch.stream.name));
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        for r in batch.records.iter() {
            writeln!(f, "{}", r.data).map_err(io)?;
        }
        Ok(WriteReport { written: batch.records.len() as u64, ..WriteReport::default() })
    }
}

fn lines(dir: &Path, stream: &str) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(dir.join(format!("{stream}.jsonl"))).map_err(|e| e.to_string())?;
    text.lines().map(|l| serde_json::from_str(l).map_err(|e| e.to_string())).collect()
}

fn replay(results: &[dovetail_testkit::CheckResult]) -> &Outcome {
    &results.iter().find(|r| r.check == "sink_replay_is_idempotent").expect("the check ran").outcome
}

#[tokio::test]
async fn an_appending_sink_read_as_stored_is_not_idempotent() {
    let c = SinkContract::new("append", |dir| Ok::<_, Error>(AppendSink { dir: dir.to_path_buf() }), lines);
    let results = c.results().await;
    let o = replay(&results);
    assert_eq!(o.label(), "fail", "{o:?}");
    assert!(o.reason().contains("written twice stores 10 row(s)"), "{o:?}");
    // No record the sink refuses was given, nor a reason why there is none: not a pass.
    let bad = results.iter().find(|r| r.check == "sink_rejects_bad_record_keeps_rest").expect("the check ran");
    assert_eq!(bad.outcome.label(), "fail", "no bad record given: {bad:?}");
    assert!(bad.outcome.reason().contains(".refuses_nothing(why)"), "{bad:?}");
}

#[tokio::test]
async fn an_appending_sink_read_as_last_row_per_key_passes() {
    let last_per_key = |dir: &Path, stream: &str| {
        let mut by_key = std::collections::BTreeMap::new();
        for row in lines(dir, stream)? {
            by_key.insert(row["id"].to_string(), row);
        }
        Ok(by_key.into_values().collect())
    };
    let c = SinkContract::new("append", |dir| Ok::<_, Error>(AppendSink { dir: dir.to_path_buf() }), last_per_key);
    let results = c.results().await;
    assert_eq!(replay(&results).label(), "pass", "{:?}", replay(&results));
}
