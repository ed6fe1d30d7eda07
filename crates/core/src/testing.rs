//! In-memory source, sink and state store: for examples, doc tests and engine tests.
//!
//! They implement the real traits fully (pagination, inclusive cursors, atomic commits, run
//! locks), but keep nothing across processes. Production uses `dovetail-state` and real connectors.

mod memory_state;

pub use memory_state::MemoryState;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::connector::{Batch, Cx, Next, Page, ReadRequest, Sink, SinkStream, Source, WriteReport};
use crate::error::{Error, ErrorKind};
use crate::record::{FieldPath, Key, Location, Provenance, Record, compare_cursors};
use crate::stream::{DeleteMode, StreamSpec};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone)]
struct MemStream {
    spec: StreamSpec,
    records: Vec<Value>,
    fail_at_page: Option<u64>,
}

/// A source serving records from memory, sorted by cursor when the stream has one, with
/// inclusive `since` filtering and offset positions — like a typical `?since=&sort=` API.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    streams: Arc<Mutex<BTreeMap<String, MemStream>>>,
    pages_served: Arc<Mutex<u64>>,
}

impl MemorySource {
    /// A source with one stream.
    pub fn new(stream: &str, primary_key: &[&str], records: Vec<Value>) -> Self {
        let s = MemorySource::default();
        s.add_stream(stream, primary_key, records);
        s
    }
    /// Add (or replace) a stream.
    pub fn add_stream(&self, stream: &str, primary_key: &[&str], records: Vec<Value>) {
        let spec = StreamSpec::new(stream, primary_key.iter().map(|k| FieldPath::new(*k)).collect());
        lock(&self.streams).insert(stream.into(), MemStream { spec, records, fail_at_page: None });
    }
    /// Give a stream a cursor field.
    pub fn with_cursor(self, stream: &str, field: &str) -> Self {
        if let Some(s) = lock(&self.streams).get_mut(stream) {
            s.spec.cursor_field = Some(FieldPath::new(field));
        }
        self
    }
    /// Give a stream a lookback window (re-read that far behind the last cursor).
    pub fn with_lookback(self, stream: &str, lookback: std::time::Duration) -> Self {
        if let Some(s) = lock(&self.streams).get_mut(stream) {
            s.spec.lookback = Some(lookback);
        }
        self
    }
    /// A row holding this field set to `true` is served as a tombstone ([`Record::tombstone`])
    /// of the row without it: the source reports it deleted.
    pub const DELETED: &'static str = "_source_deleted";

    /// Replace a stream's records.
    pub fn set_records(&self, stream: &str, records: Vec<Value>) {
        if let Some(s) = lock(&self.streams).get_mut(stream) {
            s.records = records;
        }
    }
    /// Make reads of page number `page` (0-based, within a pass) fail with a transient error; `None` heals.
    pub fn fail_at_page(&self, stream: &str, page: Option<u64>) {
        if let Some(s) = lock(&self.streams).get_mut(stream) {
            s.fail_at_page = page;
        }
    }
    /// Pages served so far.
    pub fn pages_served(&self) -> u64 {
        *lock(&self.pages_served)
    }
}

#[async_trait]
impl Source for MemorySource {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn streams(&self) -> Vec<StreamSpec> {
        lock(&self.streams).values().map(|s| s.spec.clone()).collect()
    }
    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        Ok(())
    }
    async fn read(&self, req: &ReadRequest, _cx: &Cx) -> Result<Page, Error> {
        let s = lock(&self.streams)
            .get(&req.stream)
            .cloned()
            .ok_or_else(|| Error::config(format!("no stream `{}`", req.stream)))?;
        let offset = match &req.position {
            None => 0,
            Some(p) => p
                .get("offset")
                .and_then(Value::as_u64)
                .ok_or_else(|| Error::permanent(format!("corrupt checkpoint position {p}")))?,
        };
        if s.fail_at_page == Some(offset / req.batch_size as u64) {
            return Err(Error::transient(format!("injected failure at offset {offset}")));
        }
        let mut rows: Vec<Value> = s.records.clone();
        if let Some(cf) = &s.spec.cursor_field {
            if let Some(since) = &req.since {
                rows.retain(|r| cf.get(r).and_then(|c| compare_cursors(c, since)).is_some_and(|o| o.is_ge()));
            }
            rows.sort_by(|a, b| match (cf.get(a), cf.get(b)) {
                (Some(x), Some(y)) => compare_cursors(x, y).unwrap_or(std::cmp::Ordering::Equal),
                _ => std::cmp::Ordering::Equal,
            });
        }
        let start = (offset as usize).min(rows.len());
        let end = (start + req.batch_size).min(rows.len());
        let prov = Arc::new(Provenance {
            connector: "memory".into(),
            endpoint: format!("memory:{}", req.stream),
            fetched_at: crate::now_rfc3339(),
            ..Default::default()
        });
        let records = rows[start..end]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = Location::Item((start + i) as u64);
                match v.get(Self::DELETED) {
                    Some(Value::Bool(true)) => {
                        let mut data = v.clone();
                        if let Some(o) = data.as_object_mut() {
                            o.remove(Self::DELETED);
                        }
                        Record::tombstone(data, prov.clone()).at(at)
                    }
                    _ => Record::new(v.clone(), prov.clone()).at(at),
                }
            })
            .collect();
        *lock(&self.pages_served) += 1;
        let next = if end < rows.len() { Next::More(json!({ "offset": end })) } else { Next::Done { resume: None } };
        Ok(Page { records, rejects: vec![], next })
    }
}

#[derive(Debug, Default)]
struct SinkInner {
    rows: BTreeMap<String, BTreeMap<String, Value>>,
    writes: BTreeMap<String, u64>,
    fail_writes: bool,
}

/// A sink keeping rows in memory by primary key, counting every record write.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<SinkInner>>,
}

impl MemorySink {
    /// Current rows of a stream, ordered by key.
    pub fn rows(&self, stream: &str) -> Vec<Value> {
        lock(&self.inner).rows.get(stream).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
    /// Records written to a stream so far (every upsert counts).
    pub fn writes(&self, stream: &str) -> u64 {
        lock(&self.inner).writes.get(stream).copied().unwrap_or(0)
    }
    /// Make every write fail with an unavailable error until healed.
    pub fn fail_writes(&self, fail: bool) {
        lock(&self.inner).fail_writes = fail;
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        Ok(())
    }
    async fn open(&self, stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        lock(&self.inner).rows.entry(stream.name.clone()).or_default();
        Ok(())
    }
    async fn write(&self, batch: Batch, _cx: &Cx) -> Result<WriteReport, Error> {
        let mut g = lock(&self.inner);
        if g.fail_writes {
            return Err(Error::new(ErrorKind::Unavailable, "memory sink is down"));
        }
        let n = batch.records.len() as u64;
        *g.writes.entry(batch.stream.name.clone()).or_default() += n;
        let table = g.rows.entry(batch.stream.name.clone()).or_default();
        for r in batch.records.iter() {
            let key = r.key.as_ref().map(|k| k.as_str().to_owned()).unwrap_or_default();
            table.insert(key, r.data.clone());
        }
        Ok(WriteReport { written: n, ..Default::default() })
    }
    async fn delete(&self, stream: &SinkStream, keys: &[Key], _cx: &Cx) -> Result<u64, Error> {
        let mut g = lock(&self.inner);
        let table = g.rows.entry(stream.name.clone()).or_default();
        let mut n = 0;
        for k in keys {
            if stream.delete_mode == DeleteMode::SoftDelete {
                if let Some(Value::Object(row)) = table.get_mut(k.as_str()) {
                    row.insert("_deleted".into(), Value::Bool(true));
                    n += 1;
                }
            } else if table.remove(k.as_str()).is_some() {
                n += 1;
            }
        }
        Ok(n)
    }
}
