//! [`SqliteSink`]: the `Sink` and `SinkConnector` implementations.
//!
//! One `rusqlite::Connection`, opened on first use, lives behind an `Arc<Mutex<_>>`; every
//! call runs on tokio's blocking pool. The database is in WAL mode with
//! `synchronous = NORMAL`: a committed batch survives a process crash (kill -9), and the
//! last batches before a power loss may roll back, which at-least-once delivery replays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use dovetail_core::drift::{DriftClass, DriftEvent};
use dovetail_core::{
    Batch, BuildCx, Cx, DeleteMode, Error, Key, Sink, SinkConnector, SinkRecall, SinkStream, SinkTarget, WriteReport,
};
use rusqlite::Connection;

use crate::config::SqliteConfig;
use crate::error;
use crate::table::Table;
use crate::write::{self, Target};

/// Writes each stream to a table of one SQLite database, upserting by primary key.
///
/// See the [crate docs](crate) for the table layout and how values are stored.
#[derive(Debug, Clone)]
pub struct SqliteSink {
    config: Arc<SqliteConfig>,
    inner: Arc<Mutex<Inner>>,
    /// Each stream's table marker, once its table has one ([`crate::marker`]).
    markers: Arc<Mutex<HashMap<String, String>>>,
}

/// The connection and what the sink knows about its tables, keyed by stream name.
#[derive(Debug, Default)]
struct Inner {
    conn: Option<Connection>,
    tables: HashMap<String, Table>,
}

impl Inner {
    /// The connection, opened (and the file created) on first use.
    fn connection(&mut self, path: &Path) -> Result<(&mut Connection, &mut HashMap<String, Table>), Error> {
        let conn = match &mut self.conn {
            Some(c) => c,
            none => none.insert(connect(path)?),
        };
        Ok((conn, &mut self.tables))
    }
}

fn connect(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::io(e, format!("cannot create the folder of sqlite database {}", path.display()), dir)
        })?;
    }
    let conn = Connection::open(path)
        .map_err(|e| error::file_error(e, format!("cannot open sqlite database {}", path.display()), path))?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -2_048)?;
        Ok(())
    };
    setup().map_err(|e| error::file_error(e, format!("cannot set up sqlite database {}", path.display()), path))?;
    // SQLite opens a file it may not write read-only without a word; say so now, naming
    // it, rather than at the first insert.
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        let e = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY), None);
        return Err(error::file_error(e, format!("cannot write to sqlite database {}", path.display()), path));
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteSink {
    /// A sink from a config whose `path` is already resolved.
    pub fn new(config: SqliteConfig) -> Result<Self, Error> {
        config.validate().map_err(|m| Error::config(m).in_connector(crate::KIND))?;
        Ok(SqliteSink { config: Arc::new(config), inner: Arc::default(), markers: Arc::default() })
    }

    /// The database file this sink writes to.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// The table a stream is written to.
    pub fn table_name(&self, stream: &str) -> String {
        self.config.table_name(stream)
    }

    /// Run `f` with the connection state on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inner, &SqliteConfig) -> Result<T, Error> + Send + 'static,
    {
        let (inner, config) = (self.inner.clone(), self.config.clone());
        let task = tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(|poisoned| {
                // A panic mid-call left the state behind; forget the cached tables
                // (the transaction, if any, was rolled back when it was dropped).
                inner.clear_poison();
                let mut g = poisoned.into_inner();
                g.tables.clear();
                g
            });
            f(&mut guard, &config)
        });
        task.await.map_err(|e| Error::internal("sqlite worker task failed").with_source(e))?
    }
}

fn target<'a>(config: &'a SqliteConfig, stream: &'a SinkStream) -> Target<'a> {
    Target { table: config.table_name(&stream.name), stream, soft_col: &config.soft_delete_column }
}

fn in_stream(e: Error, stream: &str) -> Error {
    e.in_stream(stream).in_connector(crate::KIND)
}

#[async_trait]
impl Sink for SqliteSink {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn targets(&self, _streams: &[String]) -> Vec<SinkTarget> {
        vec![SinkTarget::File { key: "path", path: self.config.path.clone() }]
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        // Creates nothing and changes nothing (no file, folder, journal mode or WAL file):
        // an existing database is recognised by its header and must be writable with its
        // folder; a new one needs a writable folder on its way.
        let path = self.config.path.clone();
        tokio::task::spawn_blocking(move || crate::probe::check(&path))
            .await
            .map_err(|e| Error::internal("sqlite check task failed").with_source(e))?
            .map_err(|e| e.in_connector(crate::KIND))
    }

    async fn open(&self, stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        let stream = stream.clone();
        let name = stream.name.clone();
        self.blocking(move |inner, config| {
            let (conn, tables) = inner.connection(&config.path)?;
            write::resolve(conn, tables, &target(config, &stream), true).map(|_| ())
        })
        .await
        .map_err(|e| in_stream(e, &name))
    }

    async fn recall(&self, stream: &SinkStream, remembered: Option<&str>, _cx: &Cx) -> Result<SinkRecall, Error> {
        let (stream, remembered) = (stream.clone(), remembered.map(str::to_owned));
        let markers = self.markers.clone();
        self.blocking(move |inner, config| {
            let table = config.table_name(&stream.name);
            // A database file that is gone holds no table; opening it would create it (and
            // `dovetail check` asks this too).
            let gone = inner.conn.is_none() && crate::probe::is_file_path(&config.path) && !config.path.exists();
            let found = if gone { None } else { crate::marker::read(inner.connection(&config.path)?.0, &table)? };
            // Replaced or forgotten every run: a table dropped between two scheduled runs
            // (`--every`) gets a new marker when it is created again.
            let mut cached = markers.lock().unwrap_or_else(PoisonError::into_inner);
            match &found {
                Some(Some(m)) => cached.insert(stream.name.clone(), m.clone()),
                _ => cached.remove(&stream.name),
            };
            drop(cached);
            Ok(crate::marker::recall(found, &table, remembered.as_deref()))
        })
        .await
        .map_err(|e| e.in_connector(crate::KIND))
    }

    fn mark(&self, stream: &str) -> Option<String> {
        self.markers.lock().unwrap_or_else(PoisonError::into_inner).get(stream).cloned()
    }

    async fn write(&self, batch: Batch, _cx: &Cx) -> Result<WriteReport, Error> {
        let name = batch.stream.name.clone();
        let count = batch.records.len();
        let markers = self.markers.clone();
        let report = self
            .blocking(move |inner, config| {
                // A database deleted under an open connection still takes writes (into the
                // unlinked file): say so instead of reporting them written. The next run
                // finds its tables gone and writes the streams again.
                if inner.conn.is_some() && !config.path.exists() {
                    inner.conn = None;
                    inner.tables.clear();
                    return Err(Error::permanent(format!(
                        "the sqlite database {} was deleted during the run; the next run writes the stream again",
                        config.path.display()
                    )));
                }
                let (conn, tables) = inner.connection(&config.path)?;
                let t = target(config, &batch.stream);
                let report = write::write_batch(conn, tables, &t, &batch)?;
                // The table may be new: its marker goes with this batch's commit.
                let mut markers = markers.lock().unwrap_or_else(PoisonError::into_inner);
                if !markers.contains_key(&batch.stream.name)
                    && let Some(Some(m)) = crate::marker::read(conn, &t.table)?
                {
                    markers.insert(batch.stream.name.clone(), m);
                }
                Ok(report)
            })
            .await
            .map_err(|e| in_stream(e, &name))?;
        tracing::debug!(
            stream = name.as_str(),
            records = count,
            written = report.written,
            rejected = report.rejected.len(),
            "wrote batch"
        );
        Ok(report)
    }

    async fn accept_drift(&self, stream: &SinkStream, accepted: &[DriftEvent], _cx: &Cx) -> Result<(), Error> {
        let (stream, accepted) = (stream.clone(), accepted.to_vec());
        let name = stream.name.clone();
        self.blocking(move |inner, config| {
            let (conn, tables) = inner.connection(&config.path)?;
            let Some(table) = write::resolve(conn, tables, &target(config, &stream), false)? else { return Ok(()) };
            for e in accepted.iter().filter(|e| e.change == DriftClass::ColumnType) {
                let Some(column) = e.path.strip_prefix('/') else { continue };
                let column = column.replace("~1", "/").replace("~0", "~");
                if table.widen(conn, &column, &e.observed)? {
                    tracing::info!(
                        table = table.name.as_str(),
                        column = column.as_str(),
                        observed = e.observed.as_str(),
                        "column takes the accepted type from now on"
                    );
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| in_stream(e, &name))
    }

    async fn delete(&self, stream: &SinkStream, keys: &[Key], _cx: &Cx) -> Result<u64, Error> {
        if stream.delete_mode == DeleteMode::Keep || keys.is_empty() {
            return Ok(0);
        }
        let (stream, keys) = (stream.clone(), keys.to_vec());
        let name = stream.name.clone();
        self.blocking(move |inner, config| {
            let (conn, tables) = inner.connection(&config.path)?;
            match write::resolve(conn, tables, &target(config, &stream), false)? {
                Some(table) => write::delete_keys(conn, table, &keys),
                None => Ok(0),
            }
        })
        .await
        .map_err(|e| in_stream(e, &name))
    }
}

impl SinkConnector for SqliteSink {
    const KIND: &'static str = crate::KIND;
    type Config = SqliteConfig;

    fn build(config: SqliteConfig, cx: &BuildCx) -> Result<Self, Error> {
        let path: PathBuf = cx.resolve(&config.path);
        SqliteSink::new(SqliteConfig { path, ..config })
    }
}
