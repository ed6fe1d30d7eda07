//! [`PostgresSink`]: the `Sink` and `SinkConnector` implementations over a small
//! deadpool-postgres pool (one connection per concurrently written stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use dovetail_core::{
    Batch, BuildCx, Cx, DeleteMode, Error, ErrorKind, Key, Sink, SinkConnector, SinkRecall, SinkStream, WriteReport,
};
use dovetail_pg::PgUrl;
use tokio::sync::{Mutex as AsyncMutex, OnceCell};

use crate::config::PostgresSinkConfig;
use crate::error::PgErr;
use crate::ident::short;
use crate::table::Table;
use crate::write::{self, Target};

/// Connections the sink keeps at most.
const POOL_SIZE: usize = 4;
/// A statement running longer than this is cancelled by the server (milliseconds).
const STATEMENT_TIMEOUT_MS: u32 = 300_000;

/// Writes each stream to a table of one PostgreSQL schema, upserting by primary key.
///
/// See the [crate docs](crate) for the table layout and how values are stored.
#[derive(Clone)]
pub struct PostgresSink {
    config: Arc<PostgresSinkConfig>,
    place: String,
    pool: Pool,
    /// The schema and notes table exist (made once per sink).
    setup: Arc<OnceCell<()>>,
    /// What the sink knows of each stream's table, by stream.
    tables: Arc<AsyncMutex<HashMap<String, Table>>>,
    /// Each stream's table marker, once its table has one.
    markers: Arc<Mutex<HashMap<String, String>>>,
}

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
        pg.options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
        let manager = Manager::from_config(pg, url.tls()?, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(dovetail_pg::CONNECT_TIMEOUT * 3))
            .create_timeout(Some(dovetail_pg::CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::internal("cannot set up the PostgreSQL connection pool").with_source(e))?;
        Ok(PostgresSink {
            config: Arc::new(config),
            place: url.place,
            pool,
            setup: Arc::default(),
            tables: Arc::default(),
            markers: Arc::default(),
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

    fn target<'a>(&'a self, stream: &'a SinkStream) -> Target<'a> {
        Target {
            schema: &self.config.schema,
            table: self.table_name(&stream.name),
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

fn in_stream(e: Error, stream: &str) -> Error {
    e.in_stream(stream).in_connector(crate::KIND)
}

#[async_trait]
impl Sink for PostgresSink {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        let c = self.pool.get().await.map_err(|e| self.pool_err(e))?;
        crate::check::privileges(&**c, &self.config.schema).await.map_err(|e| e.in_connector(crate::KIND))
    }

    async fn open(&self, stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        let c = self.conn().await?;
        let mut tables = self.tables.lock().await;
        write::resolve(&**c, &mut tables, &self.target(stream), true)
            .await
            .map(|_| ())
            .map_err(|e| in_stream(e, &stream.name))
    }

    async fn recall(&self, stream: &SinkStream, remembered: Option<&str>, _cx: &Cx) -> Result<SinkRecall, Error> {
        let c = self.pool.get().await.map_err(|e| self.pool_err(e))?;
        let table = self.table_name(&stream.name);
        let found =
            crate::table::marker(&**c, &self.config.schema, &table).await.map_err(|e| in_stream(e, &stream.name))?;
        self.remember_marker(&stream.name, &found);
        let shown = format!("{}.{table}", self.config.schema);
        Ok(match (found, remembered) {
            (None, _) => SinkRecall::Lost(format!("the sink's table `{shown}` is gone")),
            (Some(_), None) => SinkRecall::Unknown,
            (Some(Some(m)), Some(r)) if m == r => SinkRecall::Intact,
            (Some(m), Some(r)) => SinkRecall::Lost(format!(
                "the sink's table `{shown}` was rebuilt (marker {}, the ledger remembers {r})",
                m.as_deref().unwrap_or("none")
            )),
        })
    }

    fn mark(&self, stream: &str) -> Option<String> {
        self.markers.lock().unwrap_or_else(PoisonError::into_inner).get(stream).cloned()
    }

    async fn write(&self, batch: Batch, _cx: &Cx) -> Result<WriteReport, Error> {
        let name = batch.stream.name.clone();
        let mut c = self.conn().await.map_err(|e| in_stream(e, &name))?;
        let t = self.target(&batch.stream);
        let what = format!("writing to table `{}.{}`", t.schema, t.table);
        let client: &mut tokio_postgres::Client = &mut c;
        let tx = client.transaction().await.map_err(|e| in_stream(PgErr::new(&what).err(e), &name))?;
        let report = {
            let mut tables = self.tables.lock().await;
            write::write_batch(&tx, &mut tables, &t, &batch).await.map_err(|e| in_stream(e, &name))?
        };
        // The table may be new: its marker goes with this batch's commit.
        let known = self.markers.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&name);
        let found = match known {
            true => None,
            false => Some(crate::table::marker(&tx, t.schema, &t.table).await.map_err(|e| in_stream(e, &name))?),
        };
        tx.commit().await.map_err(|e| in_stream(PgErr::new(&what).err(e), &name))?;
        if let Some(found) = found {
            self.remember_marker(&name, &found);
        }
        tracing::debug!(
            stream = name.as_str(),
            records = batch.records.len(),
            written = report.written,
            rejected = report.rejected.len(),
            "wrote batch"
        );
        Ok(report)
    }

    async fn delete(&self, stream: &SinkStream, keys: &[Key], _cx: &Cx) -> Result<u64, Error> {
        if stream.delete_mode == DeleteMode::Keep || keys.is_empty() {
            return Ok(0);
        }
        let c = self.conn().await.map_err(|e| in_stream(e, &stream.name))?;
        let mut tables = self.tables.lock().await;
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
