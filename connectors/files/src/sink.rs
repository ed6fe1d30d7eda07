//! [`JsonlSink`]: each stream appended to `<dir>/<stream>.jsonl`, one JSON object per line.
//!
//! The file is an append-only log, not a table. Idempotency comes from the engine's ledger:
//! a record whose content did not change is not written again. The file's length after each
//! batch is the sink's [mark](Sink::mark), committed with the batch: `recall` cuts the file
//! back to it (a batch written before a crash but never committed is written again by the
//! next run, so it appears once), and a file missing or shorter than it is a lost sink the
//! engine refills. A record changed at the source appears again (consumers take the **last
//! line per key**). Deletes append a tombstone line `{"_deleted": true, <key columns>...}`.
//! Each batch is flushed and `sync_data`ed before `write` returns; a failed write truncates
//! the file back to where the batch began, and `open` cuts a partial last line left by a
//! crash (a torn tail). A file deleted during a run fails the next batch instead of being
//! recreated with only the rest of the run.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use dovetail_core::{
    Batch, BuildCx, Cx, Error, FieldPath, Key, Sink, SinkConnector, SinkRecall, SinkStream, SinkTarget,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::position::{READ_BUFFER, complete_lines_end};

/// Config of the `jsonl` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlSinkConfig {
    /// Folder the stream files go to (`<dir>/<stream>.jsonl`); created if missing. A relative
    /// path is resolved against the config file's folder.
    pub dir: PathBuf,
}

/// Appends each stream's records to `<dir>/<stream>.jsonl`.
#[derive(Debug)]
pub struct JsonlSink {
    dir: PathBuf,
    /// One lock per stream file, so concurrent batches of a stream never interleave.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Each opened stream file's length after its last batch: the mark committed with it.
    lengths: Arc<Mutex<HashMap<String, u64>>>,
    /// Committed lengths `recall` found exceeded, for `open` to cut the files back to.
    cuts: Arc<Mutex<HashMap<String, u64>>>,
}

impl JsonlSink {
    /// The folder the stream files are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a stream is written to; the stream name must be usable as a file name.
    pub fn stream_path(&self, stream: &str) -> Result<PathBuf, Error> {
        let usable = !stream.is_empty() && stream != "." && stream != ".." && !stream.contains(['/', '\\', '\0']);
        if !usable {
            return Err(Error::config(format!(
                "stream name `{stream}` cannot be used as a file name in `{}`",
                self.dir.display()
            )));
        }
        Ok(self.dir.join(format!("{stream}.jsonl")))
    }

    fn lock_for(&self, stream: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(stream.to_owned()).or_default().clone()
    }

    /// Append `lines` (JSON values) to a stream's file as one durable unit.
    async fn append(&self, stream: &str, lines: Vec<Value>) -> Result<u64, Error> {
        let path = self.stream_path(stream)?;
        if lines.is_empty() {
            return Ok(0);
        }
        let lock = self.lock_for(stream);
        let dir = self.dir.clone();
        let what = path.display().to_string();
        let (lengths, name) = (self.lengths.clone(), stream.to_owned());
        tokio::task::spawn_blocking(move || {
            let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let known = lengths.lock().unwrap_or_else(PoisonError::into_inner).get(&name).copied();
            // An opened file is never created again: one deleted during the run would
            // otherwise hold only the rest of the run while the ledger remembers it all.
            let open = || OpenOptions::new().create(known.is_none()).append(true).open(&path);
            let file = match open() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && known.is_some() => {
                    return Err(Error::permanent(format!(
                        "`{what}` was deleted during the run; the next run finds it gone and writes the stream again"
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&dir).and_then(|_| open())
                }
                other => other,
            }
            .map_err(|e| Error::io(e, format!("cannot open `{what}` for writing"), &path))?;
            let before = file.metadata().map_err(|e| Error::io(e, format!("cannot read `{what}`"), &path))?.len();
            if let Err(e) = append_lines(&file, &lines) {
                // Leave no partial batch behind: cut back to where it began.
                let _ = file.set_len(before);
                return Err(Error::io(e, format!("cannot write to `{what}`"), &path));
            }
            let after = file.metadata().map_err(|e| Error::io(e, format!("cannot read `{what}`"), &path))?.len();
            lengths.lock().unwrap_or_else(PoisonError::into_inner).insert(name, after);
            Ok(lines.len() as u64)
        })
        .await
        .map_err(|e| Error::internal(format!("writing `{stream}` ended abnormally: {e}")))?
    }
}

fn append_lines(file: &File, lines: &[Value]) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(READ_BUFFER, file);
    for v in lines {
        serde_json::to_writer(&mut w, v)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    drop(w);
    file.sync_data()
}

/// Cut a trailing partial line (no `\n`) left by a crash; returns the bytes removed.
fn repair_torn_tail(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let keep = complete_lines_end(file, 0, len)?;
    if keep < len {
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(len - keep)
}

/// A tombstone line for `key`: `{"_deleted": true, <key column>: <value>, ...}`.
fn tombstone(key_columns: &[String], key: &Key) -> Value {
    let mut obj = Value::Object(Map::new());
    obj["_deleted"] = Value::Bool(true);
    for (col, part) in key_columns.iter().zip(key.parts(key_columns.len())) {
        FieldPath::new(col.as_str()).set(&mut obj, part);
    }
    obj
}

#[async_trait]
impl Sink for JsonlSink {
    fn kind(&self) -> &'static str {
        crate::SINK_KIND
    }

    fn targets(&self, streams: &[String]) -> Vec<SinkTarget> {
        // A name `stream_path` refuses is never written, so it has no target.
        let files = streams.iter().filter_map(|s| self.stream_path(s).ok());
        files.map(|path| SinkTarget::File { key: "dir", path }).collect()
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        // Creates nothing: the folder, or the nearest one on its way that exists, must be a
        // folder this user may write into (the first run creates the rest).
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let at = nearest_existing(&dir)
                .map_err(|(e, at)| Error::io(e, format!("jsonl sink: cannot read `{}`", at.display()), &at))?;
            if !at.is_dir() {
                return Err(Error::config(format!(
                    "jsonl sink: `{}` is not a folder (on the way to `{}`)",
                    at.display(),
                    dir.display()
                )));
            }
            rustix::fs::access(&at, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK).map_err(|e| {
                let e = std::io::Error::from(e);
                Error::io(e, format!("jsonl sink: cannot write to `{}`", dir.display()), &at)
            })
        })
        .await
        .map_err(|e| Error::internal(format!("checking the jsonl sink ended abnormally: {e}")))?
    }

    async fn recall(&self, stream: &SinkStream, remembered: Option<&str>, _cx: &Cx) -> Result<SinkRecall, Error> {
        let path = self.stream_path(&stream.name)?;
        let lock = self.lock_for(&stream.name);
        let committed = remembered.and_then(|m| m.parse::<u64>().ok());
        let (cuts, name) = (self.cuts.clone(), stream.name.clone());
        tokio::task::spawn_blocking(move || {
            let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let what = path.display().to_string();
            let file = match File::open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(SinkRecall::Lost(format!("the sink's file `{what}` is gone")));
                }
                other => other.map_err(|e| Error::io(e, format!("cannot open `{what}`"), &path))?,
            };
            let Some(committed) = committed else { return Ok(SinkRecall::Unknown) };
            let len = file.metadata().map_err(|e| Error::io(e, format!("cannot read `{what}`"), &path))?.len();
            if len < committed {
                return Ok(SinkRecall::Lost(format!(
                    "the sink's file `{what}` is shorter ({len} bytes) than its committed length ({committed} bytes)"
                )));
            }
            if len > committed {
                // Written after the last commit (a crash in between): the run writes those
                // records again, so `open` cuts them to have them once. Not cut here: `check`
                // asks too, and must change nothing.
                cuts.lock().unwrap_or_else(PoisonError::into_inner).insert(name, committed);
            }
            Ok(SinkRecall::Intact)
        })
        .await
        .map_err(|e| Error::internal(format!("checking `{}` ended abnormally: {e}", stream.name)))?
    }

    fn mark(&self, stream: &str) -> Option<String> {
        self.lengths.lock().unwrap_or_else(PoisonError::into_inner).get(stream).map(u64::to_string)
    }

    async fn open(&self, stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        let path = self.stream_path(&stream.name)?;
        let lock = self.lock_for(&stream.name);
        let dir = self.dir.clone();
        let (lengths, name) = (self.lengths.clone(), stream.name.clone());
        let cut_to = self.cuts.lock().unwrap_or_else(PoisonError::into_inner).remove(&stream.name);
        tokio::task::spawn_blocking(move || {
            let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let what = path.display().to_string();
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(e, format!("cannot create `{}`", dir.display()), &dir))?;
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(e, format!("cannot open `{what}`"), &path))?;
            if let Some(committed) = cut_to {
                let len = file.metadata().map_err(|e| Error::io(e, format!("cannot read `{what}`"), &path))?.len();
                file.set_len(committed).and_then(|()| file.sync_data()).map_err(|e| {
                    Error::io(e, format!("cannot cut `{what}` back to its committed length"), &path)
                })?;
                tracing::warn!(file = %what, bytes = len.saturating_sub(committed), "cut lines written after the last commit; the run writes them again");
            }
            let cut =
                repair_torn_tail(&mut file).map_err(|e| Error::io(e, format!("cannot repair `{what}`"), &path))?;
            if cut > 0 {
                tracing::warn!(file = %what, bytes = cut, "cut a partial last line left by an interrupted write");
            }
            let len = file.metadata().map_err(|e| Error::io(e, format!("cannot read `{what}`"), &path))?.len();
            lengths.lock().unwrap_or_else(PoisonError::into_inner).insert(name, len);
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(format!("opening `{}` ended abnormally: {e}", stream.name)))?
    }

    async fn write(&self, batch: Batch, _cx: &Cx) -> Result<dovetail_core::WriteReport, Error> {
        let lines: Vec<Value> = batch.records.iter().map(|r| r.data.clone()).collect();
        let written = self.append(&batch.stream.name, lines).await?;
        Ok(dovetail_core::WriteReport { written, ..Default::default() })
    }

    async fn delete(&self, stream: &SinkStream, keys: &[Key], _cx: &Cx) -> Result<u64, Error> {
        let lines = keys.iter().map(|k| tombstone(&stream.key_columns, k)).collect();
        self.append(&stream.name, lines).await
    }
}

impl SinkConnector for JsonlSink {
    const KIND: &'static str = crate::SINK_KIND;
    type Config = JsonlSinkConfig;

    fn build(config: JsonlSinkConfig, cx: &BuildCx) -> Result<Self, Error> {
        if config.dir.as_os_str().is_empty() {
            return Err(Error::config("jsonl sink: `dir` is empty"));
        }
        Ok(JsonlSink {
            dir: cx.resolve(&config.dir),
            locks: Mutex::new(HashMap::new()),
            lengths: Arc::default(),
            cuts: Arc::default(),
        })
    }
}

/// `path` itself when it exists, else its nearest ancestor that does (`.` for a relative
/// path none of whose folders exist yet).
fn nearest_existing(path: &Path) -> Result<PathBuf, (std::io::Error, PathBuf)> {
    let mut at = path;
    loop {
        match std::fs::symlink_metadata(at) {
            Ok(_) => return Ok(at.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => return Ok(PathBuf::from(".")),
            },
            Err(e) => return Err((e, at.to_path_buf())),
        }
    }
}
