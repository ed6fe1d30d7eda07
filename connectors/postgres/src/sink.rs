//! [`PostgresSink`]: the `Sink` and `SinkConnector` implementations over a small
//! deadpool-postgres pool (one connection per concurrently written stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use dovetail_core::Checkpoint;
use dovetail_core::{
    Batch, BuildCx, Cx, DeleteMode, Disposition, Error, ErrorKind, Key, Sink, SinkConnector, SinkRecall, SinkStream,
    SinkTarget, WriteReport,
};
use dovetail_pg::PgUrl;
use tokio::sync::{Mutex as AsyncMutex, OnceCell};

use crate::config::PostgresSinkConfig;
use crate::error::PgErr;
use crate::ident::short;
use crate::table::Table;
use crate::turn::{Gate, Mine, Turns};
use crate::write::{self, Target, Tx};

/// Connections the sink keeps at most (a stream writes on up to [`IN_FLIGHT`] at once).
const POOL_SIZE: usize = 4;
/// Batches of a stream written at once: batch n+1's rows go out while n's COMMIT flushes
/// (`crate::turn`).
const IN_FLIGHT: usize = 2;
/// A statement running longer than this is cancelled by the server (milliseconds).
const STATEMENT_TIMEOUT_MS: u32 = 300_000;
/// How long a batch is tried again on fresh connections while PostgreSQL is unreachable
/// (a restart, a terminated backend) before the engine counts the sink as down (outbox).
const RECONNECT_FOR: Duration = Duration::from_secs(30);
/// The first wait before trying a batch again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between tries of a batch.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Writes each stream to a table of one PostgreSQL schema, upserting by primary key.
///
/// See the [crate docs](crate) for the table layout and how values are stored.
#[derive(Clone)]
pub struct PostgresSink {
    config: Arc<PostgresSinkConfig>,
    place: String,
    /// `host:port/database`, for the runner's sink-at-state check.
    database: String,
    pool: Pool,
    /// The schema and notes table exist (made once per sink).
    setup: Arc<OnceCell<()>>,
    /// What the sink knows of each stream's table: a lock per stream, so streams write
    /// concurrently on connections of their own.
    tables: Arc<Mutex<HashMap<String, Tables>>>,
    /// Each stream's table marker, once its table has one.
    markers: Arc<Mutex<HashMap<String, String>>>,
    /// Each stream's offsets epoch (`crate::offsets`), part of its mark.
    epochs: Arc<Mutex<HashMap<String, i64>>>,
    /// Checkpoints committed past the state's, found by `recall`, for `committed_position`.
    ahead: Arc<Mutex<HashMap<String, Checkpoint>>>,
    /// The latest write of each stream, whose COMMIT the next one's waits for.
    turns: Arc<Turns>,
}

/// One stream's known table (keyed by stream, as `write::resolve` takes it).
type Tables = Arc<AsyncMutex<HashMap<String, Table>>>;

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("at", &self.place)
            .field("schema", &self.config.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresSink {
    /// A sink from a config; no IO (the first operation connects).
    pub fn new(config: PostgresSinkConfig) -> Result<Self, Error> {
        config.validate().map_err(|m| Error::config(m).in_connector(crate::KIND))?;
        let url = PgUrl::parse(config.url.expose(), "sink.url").map_err(|e| e.in_connector(crate::KIND))?;
        let mut pg = url.config.clone();
        // The server's notices (`schema … already exists, skipping`) are not worth a log line.
        pg.options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS} -c client_min_messages=warning"));
        // Fast: a pooled connection is handed out unless it is known closed, saving a round
        // trip per batch; one the server dropped unnoticed fails its batch, which is written
        // again on a fresh connection (`write`).
        let recycling_method = RecyclingMethod::Fast;
        let manager = Manager::from_config(pg, url.tls()?, ManagerConfig { recycling_method });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(dovetail_pg::CONNECT_TIMEOUT * 3))
            .create_timeout(Some(dovetail_pg::CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::internal("cannot set up the PostgreSQL connection pool").with_source(e))?;
        Ok(PostgresSink {
            config: Arc::new(config),
            database: url.database(),
            place: url.place,
            pool,
            setup: Arc::default(),
            tables: Arc::default(),
            markers: Arc::default(),
            epochs: Arc::default(),
            ahead: Arc::default(),
            turns: Arc::default(),
        })
    }

    /// The table a stream is written to (prefixed, shortened past 63 bytes).
    pub fn table_name(&self, stream: &str) -> String {
        short(&self.config.table_name(stream))
    }

    /// A pooled connection; the schema and notes table made on first use.
    async fn conn(&self) -> Result<deadpool_postgres::Object, Error> {
        let mut c = self.pool.get().await.map_err(|e| self.pool_err(e))?;
        self.setup.get_or_try_init(|| crate::table::setup(&mut c, &self.config.schema)).await?;
        Ok(c)
    }

    fn pool_err(&self, e: PoolError) -> Error {
        let at = &self.place;
        let e = match e {
            PoolError::Backend(e) => {
                let mut err = PgErr::new("connecting").err(e);
                if *err.kind() == ErrorKind::Unavailable {
                    err = Error::new(ErrorKind::Unavailable, format!("postgres sink: cannot reach PostgreSQL at {at}"))
                        .with_hint(format!(
                            "check that PostgreSQL is running and reachable at {at} (`sink.url`), then run again"
                        ));
                }
                err
            }
            PoolError::Timeout(_) => {
                Error::new(ErrorKind::Unavailable, format!("postgres sink: timed out connecting to PostgreSQL at {at}"))
                    .with_hint(format!("check that PostgreSQL is running and reachable at {at} (`sink.url`)"))
            }
            other => Error::internal(format!("postgres sink: no connection to PostgreSQL at {at}")).with_source(other),
        };
        e.in_connector(crate::KIND)
    }

    fn tables(&self, stream: &str) -> Tables {
        let mut all = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        all.entry(stream.to_owned()).or_default().clone()
    }

    fn target<'a>(&'a self, stream: &'a SinkStream) -> Target<'a> {
        Target {
            schema: &self.config.schema,
            table: self.table_name(&stream.name),
            full_name: self.config.table_name(&stream.name),
            stream,
            soft_col: &self.config.soft_delete_column,
            nul: self.config.nul,
        }
    }

    fn remember_marker(&self, stream: &str, found: &Option<Option<String>>) {
        let mut cached = self.markers.lock().unwrap_or_else(PoisonError::into_inner);
        match found {
            Some(Some(m)) => cached.insert(stream.to_owned(), m.clone()),
            _ => cached.remove(stream),
        };
    }
}

impl PostgresSink {
    /// One try at a batch: its rows and checkpoint in one transaction on a pooled connection,
    /// begun once the batch before has only its COMMIT left, committed once that one's is
    /// answered (`crate::turn`).
    async fn attempt(&self, batch: &Batch, mine: &Mine, gate: &mut Gate) -> Result<Committed, Failed> {
        let name = &batch.stream.name;
        gate.begin().await.map_err(Failed::before)?;
        let tx = Tx::new(self.conn().await.map_err(Failed::before)?);
        let t = self.target(&batch.stream);
        let what = format!("writing to table `{}.{}`", t.schema, t.table);
        // The table may be new: its marker goes with this batch's commit, looked up before it.
        let known = self.markers.lock().unwrap_or_else(PoisonError::into_inner).contains_key(name);
        let written = write::write_batch(&tx, &self.tables(name), &t, batch, known, (mine, gate)).await?;
        let found = match known {
            true => None,
            false => Some(crate::table::marker(tx.client(), t.schema, &t.table).await.map_err(Failed::before)?),
        };
        let sent = Committed { report: written.sent.report, epoch: written.sent.epoch, found };
        if written.committed {
            return Ok(sent);
        }
        gate.wait().await.map_err(Failed::before)?;
        match tx.commit().await {
            Ok(()) => Ok(sent),
            Err(e) => Err(Failed { err: PgErr::new(&what).err(e), unsure: Some(sent) }),
        }
    }

    /// Whether a batch whose COMMIT went unanswered landed: the offsets row it wrote holds
    /// its epoch. A batch without a checkpoint cannot tell, and is applied again (an upsert
    /// of the same rows, which changes nothing if it had landed).
    async fn landed(&self, stream: &SinkStream, sent: &Committed) -> Result<bool, Error> {
        let Some(epoch) = sent.epoch else { return Ok(false) };
        let c = self.pool.get().await.map_err(|e| self.pool_err(e))?;
        let stored = crate::offsets::load(&**c, &self.config.schema, &self.table_name(&stream.name)).await?;
        Ok(stored.is_some_and(|(_, e)| e >= epoch))
    }

    /// After the commit: the marker and epoch the batch carried are the sink's now.
    fn finish(&self, name: &str, done: Committed, records: usize) -> WriteReport {
        if let Some(found) = done.found {
            self.remember_marker(name, &found);
        }
        if let Some(epoch) = done.epoch {
            self.epochs.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), epoch);
        }
        let report = done.report;
        tracing::debug!(
            stream = name,
            records,
            written = report.written,
            rejected = report.rejected.len(),
            "wrote batch"
        );
        report
    }
}

/// A batch's transaction, ready to commit or committed: what the sink reports and keeps.
struct Committed {
    report: WriteReport,
    /// The epoch its offsets row holds (none without a checkpoint).
    epoch: Option<i64>,
    /// The table's marker lookup, when the sink did not know it yet (`marker`'s answer).
    found: Option<Option<Option<String>>>,
}

/// A failed try at a batch; `unsure` when its COMMIT was sent and not answered.
struct Failed {
    err: Error,
    unsure: Option<Committed>,
}

impl Failed {
    /// A failure before the COMMIT: nothing of the batch landed.
    fn before(err: Error) -> Failed {
        Failed { err, unsure: None }
    }
}

impl From<write::Failed> for Failed {
    fn from(f: write::Failed) -> Failed {
        let unsure = f.unsure.map(|s| Committed { report: s.report, epoch: s.epoch, found: None });
        Failed { err: f.err, unsure }
    }
}

fn in_stream(e: Error, stream: &str) -> Error {
    e.in_stream(stream).in_connector(crate::KIND)
}

#[async_trait]
impl Sink for PostgresSink {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn targets(&self, _streams: &[String]) -> Vec<SinkTarget> {
        vec![SinkTarget::Schema { key: "schema", database: self.database.clone(), schema: self.config.schema.clone() }]
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        let c = self.pool.get().await.map_err(|e| self.pool_err(e))?;
        crate::check::privileges(&**c, &self.config.schema).await.map_err(|e| e.in_connector(crate::KIND))
    }

    async fn open(&self, stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        let c = self.conn().await?;
        let tables = self.tables(&stream.name);
        let mut tables = tables.lock().await;
        write::resolve(&**c, &mut tables, &self.target(stream), true)
            .await
            .map(|_| ())
            .map_err(|e| in_stream(e, &stream.name))
    }

    async fn recall(&self, stream: &SinkStream, remembered: Option<&str>, _cx: &Cx) -> Result<SinkRecall, Error> {
        let c = self.pool.get().await.map_err(|e| self.pool_err(e))?;
        let (schema, table) = (&self.config.schema, self.table_name(&stream.name));
        let in_s = |e| in_stream(e, &stream.name);
        let found = crate::table::marker(&**c, schema, &table).await.map_err(in_s)?;
        self.remember_marker(&stream.name, &found);
        let stored = crate::offsets::load(&**c, schema, &table).await.map_err(in_s)?;
        let sink_epoch = stored.as_ref().map_or(0, |s| s.1);
        self.epochs.lock().unwrap_or_else(PoisonError::into_inner).insert(stream.name.clone(), sink_epoch);
        let shown = format!("{schema}.{table}");
        let remembered = remembered.map(crate::offsets::parse_mark);
        let recall = match (&found, remembered) {
            (None, _) => SinkRecall::Lost(format!("the sink's table `{shown}` is gone")),
            (Some(_), None) => SinkRecall::Unknown,
            (Some(Some(m)), Some((r, _))) if m == r => SinkRecall::Intact,
            (Some(m), Some((r, _))) => SinkRecall::Lost(format!(
                "the sink's table `{shown}` was rebuilt (marker {}, the ledger remembers {r})",
                m.as_deref().unwrap_or("none")
            )),
        };
        let mut ahead = self.ahead.lock().unwrap_or_else(PoisonError::into_inner);
        ahead.remove(&stream.name);
        if let (SinkRecall::Intact, Some((_, state_epoch)), Some((cp, epoch))) = (&recall, remembered, stored)
            && epoch > state_epoch
        {
            tracing::info!(
                table = shown.as_str(),
                epoch,
                state_epoch,
                "the table holds batches the state never committed"
            );
            ahead.insert(stream.name.clone(), cp);
        }
        Ok(recall)
    }

    async fn committed_position(&self, stream: &SinkStream, _cx: &Cx) -> Result<Option<Checkpoint>, Error> {
        Ok(self.ahead.lock().unwrap_or_else(PoisonError::into_inner).remove(&stream.name))
    }

    fn mark(&self, stream: &str) -> Option<String> {
        let marker = self.markers.lock().unwrap_or_else(PoisonError::into_inner).get(stream).cloned()?;
        let epoch = self.epochs.lock().unwrap_or_else(PoisonError::into_inner).get(stream).copied().unwrap_or(0);
        Some(crate::offsets::mark(&marker, epoch))
    }

    fn writes_in_flight(&self) -> usize {
        IN_FLIGHT
    }

    async fn write(&self, batch: Batch, cx: &Cx) -> Result<WriteReport, Error> {
        let name = &batch.stream.name;
        let (mut mine, mut gate) = self.turns.take(name, batch.overlaps);
        let started = Instant::now();
        let mut delay = RETRY_FIRST;
        let mut retries = 0u32;
        // A batch whose COMMIT got no answer: it may have landed, so it is looked up before
        // it is applied again.
        let mut unsure: Option<Committed> = None;
        loop {
            let result = match unsure.take() {
                Some(sent) => match self.landed(&batch.stream, &sent).await {
                    Ok(true) => Ok(sent),
                    Ok(false) => self.attempt(&batch, &mine, &mut gate).await,
                    Err(err) => Err(Failed { err, unsure: Some(sent) }),
                },
                None => self.attempt(&batch, &mine, &mut gate).await,
            };
            let failed = match result {
                Ok(done) => {
                    if retries > 0 {
                        tracing::info!(
                            stream = name.as_str(),
                            at = self.place.as_str(),
                            retries,
                            "postgres sink: reconnected; the batch is written once"
                        );
                    }
                    let report = self.finish(name, done, batch.records.len());
                    mine.committed();
                    return Ok(report);
                }
                Err(failed) => failed,
            };
            // What the failed transaction did to the table (added columns) was rolled back.
            self.tables(name).lock().await.remove(name);
            mine.broken();
            if gate.broken() {
                // The batch before failed a try, so this one rolled back (or failed on what
                // that one left undone): it is tried again once that one is written.
                tracing::debug!(
                    stream = name.as_str(),
                    "postgres sink: waiting for the batch before to be written: {}",
                    failed.err
                );
                gate.settle().await.map_err(|e| in_stream(e, name))?;
                unsure = failed.unsure;
                continue;
            }
            let lost = failed.err.kind().disposition() == Disposition::Outage;
            if !lost || started.elapsed() + delay >= RECONNECT_FOR || cx.cancel.is_cancelled() {
                return Err(in_stream(failed.err, name));
            }
            if retries == 0 {
                tracing::warn!(
                    stream = name.as_str(),
                    at = self.place.as_str(),
                    "postgres sink: lost the connection mid-batch; reconnecting: {}",
                    failed.err
                );
            }
            retries += 1;
            unsure = failed.unsure;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cx.cancel.cancelled() => return Err(in_stream(failed.err, name)),
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    async fn delete(&self, stream: &SinkStream, keys: &[Key], _cx: &Cx) -> Result<u64, Error> {
        if stream.delete_mode == DeleteMode::Keep || keys.is_empty() {
            return Ok(0);
        }
        let c = self.conn().await.map_err(|e| in_stream(e, &stream.name))?;
        let tables = self.tables(&stream.name);
        let mut tables = tables.lock().await;
        match write::resolve(&**c, &mut tables, &self.target(stream), false)
            .await
            .map_err(|e| in_stream(e, &stream.name))?
        {
            Some(table) => write::delete_keys(&**c, table, keys).await.map_err(|e| in_stream(e, &stream.name)),
            None => Ok(0),
        }
    }
}

impl SinkConnector for PostgresSink {
    const KIND: &'static str = crate::KIND;
    type Config = PostgresSinkConfig;

    fn build(config: PostgresSinkConfig, _cx: &BuildCx) -> Result<Self, Error> {
        PostgresSink::new(config)
    }
}
