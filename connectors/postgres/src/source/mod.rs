//! [`PostgresSource`]: one table or query read as a stream, incrementally by a cursor column
//! with keyset pagination, or in full by key (a pass the engine turns into deletes).
//!
//! - **Keyset pages.** `WHERE (cursor, key) > ($1, $2) ORDER BY cursor, key LIMIT n`: the
//!   position is the last row's (cursor, key) as PostgreSQL prints them, cast back to the
//!   columns' types, so rows sharing a cursor value across a page boundary are neither lost
//!   nor read twice. A pass starts at the engine's inclusive cursor bound (`>=`), and the
//!   engine drops what it already delivered. Text cursors compare bytewise (`COLLATE "C"`),
//!   as the engine compares them.
//! - **NULL cursors.** Rows whose cursor is NULL cannot be placed in cursor order: each pass
//!   reads them first, by key, and the engine dead-letters them naming the column
//!   (`missing cursor field`) — nothing is skipped silently; a full refresh reads them as rows.
//! - **Values.** Converted on the server ([`sql`]): numeric exact, jsonb as JSON, timestamptz
//!   RFC 3339 in UTC with microseconds, bytea base64, other types as their text.
//! - **The catalog first.** Columns, their types (the stream's declared schema), the primary
//!   key and whether the cursor may be NULL are read when the engine starts a run or a check
//!   ([`Source::discover`] — again at every run, for processes that run on a schedule), or at
//!   the first read; never while a config loads ([`discover`]).

mod config;
mod discover;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use dovetail_core::{
    BuildCx, Cx, Error, ErrorKind, FieldPath, Location, Next, Page, Provenance, ReadRequest, Record, Source,
    SourceConnector, StreamSpec, position,
};
use dovetail_pg::PgUrl;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::ToSql;

pub use config::PostgresSourceConfig;
use discover::Shape;

use crate::error::PgErr;

/// A statement running longer than this is cancelled by the server (milliseconds).
const STATEMENT_TIMEOUT_MS: u32 = 300_000;

/// Reads one table or query of a PostgreSQL database as a stream.
///
/// See the [module docs](self) for how pages, positions and values work.
pub struct PostgresSource {
    config: Arc<PostgresSourceConfig>,
    url: PgUrl,
    pool: Pool,
    /// The catalog's answer, asked at the start of every run (or at the first read): the
    /// streams declare it once known.
    shape: std::sync::RwLock<Option<Arc<Shape>>>,
    /// One catalog read at a time.
    discovering: tokio::sync::Mutex<()>,
    /// Where `url` is written in the config, for the hint of a host not reached.
    url_at: Option<String>,
}

impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSource")
            .field("at", &self.url.place)
            .field("stream", &self.config.stream_name())
            .finish_non_exhaustive()
    }
}

/// Where a pass is, as the engine stores it between pages.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    /// Reading the rows whose cursor is NULL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    nulls: bool,
    /// The last row's cursor, as PostgreSQL prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    /// The last row's key columns, as PostgreSQL prints them (empty: from the start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    key: Vec<String>,
}

impl PostgresSource {
    /// A source from a config; no IO (the catalog is read by [`Source::discover`] or the first read).
    pub fn new(config: PostgresSourceConfig) -> Result<Self, Error> {
        config.validate().map_err(|m| Error::config(m).in_connector(crate::KIND))?;
        let url = PgUrl::parse(config.url.expose(), "source.url").map_err(|e| e.in_connector(crate::KIND))?;
        let mut pg = url.config.clone();
        // Values are printed by the server: fixed zone and styles make positions and dates
        // read back the same in every session; reads only.
        pg.options(format!(
            "-c statement_timeout={STATEMENT_TIMEOUT_MS} -c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 \
             -c default_transaction_read_only=on -c client_min_messages=warning"
        ));
        let recycling_method = RecyclingMethod::Verified;
        let manager = Manager::from_config(pg.clone(), url.tls()?, ManagerConfig { recycling_method });
        let pool = Pool::builder(manager)
            .max_size(2)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(dovetail_pg::CONNECT_TIMEOUT * 3))
            .create_timeout(Some(dovetail_pg::CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::internal("cannot set up the PostgreSQL connection pool").with_source(e))?;
        let url = PgUrl { config: pg, ..url };
        Ok(PostgresSource {
            config: Arc::new(config),
            url,
            pool,
            shape: Default::default(),
            discovering: Default::default(),
            url_at: None,
        })
    }

    fn stream(&self) -> &str {
        self.config.stream_name()
    }

    fn fail(&self, e: Error) -> Error {
        e.in_stream(self.stream()).in_connector(crate::KIND)
    }

    /// The shape last read from the catalog.
    fn known(&self) -> Option<Arc<Shape>> {
        self.shape.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The shape last read; read now when it never was.
    async fn shape(&self) -> Result<Arc<Shape>, Error> {
        match self.known() {
            Some(shape) => Ok(shape),
            None => self.refresh().await,
        }
    }

    /// Reads the catalog again. The engine asks at the start of every run, so a process
    /// that runs on a schedule (`run --every`, a worker) reads a column added or dropped
    /// since its last run — a query naming a dropped column would fail every run until a
    /// restart — and reports the change as drift.
    async fn refresh(&self) -> Result<Arc<Shape>, Error> {
        let _one = self.discovering.lock().await;
        let c = self.conn().await?;
        let shape = Arc::new(discover::shape(&c, &self.config).await.map_err(|e: Error| self.fail(e))?);
        *self.shape.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(shape.clone());
        Ok(shape)
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(|e| self.fail(pool_err(&self.url.place, self.url_at.as_deref(), e)))
    }

    /// Decode a stored position, refusing one that does not fit this stream's shape.
    fn position(&self, shape: &Shape, v: &Value) -> Result<Position, Error> {
        let p: Position = position::decode(self.stream(), v)?;
        let has_cursor = shape.cursor.is_some();
        let fits = (p.key.is_empty() || p.key.len() == shape.key.len())
            && (has_cursor || (!p.nulls && p.cursor.is_none()))
            && !(p.nulls && p.cursor.is_some())
            && (p.cursor.is_none() || !p.key.is_empty())
            && (p.nulls || !has_cursor || p.key.is_empty() || p.cursor.is_some());
        match fits {
            true => Ok(p),
            false => Err(position::not_ours(self.stream(), Some(v), "it does not fit the table's cursor and key")),
        }
    }
}

/// The error for a failed connection, naming where (and the config line of `url`, when
/// known) and never the URL.
fn connect_err(place: &str, url_at: Option<&str>, e: tokio_postgres::Error) -> Error {
    let err = PgErr::source("connecting").err(e);
    if *err.kind() != ErrorKind::Unavailable {
        return err;
    }
    Error::new(ErrorKind::Unavailable, format!("postgres source: cannot reach PostgreSQL at {place}")).with_hint(
        format!("check that PostgreSQL is running and reachable at {place} ({}), then run again", setting(url_at)),
    )
}

/// `source.url`, with where it is written when known.
fn setting(url_at: Option<&str>) -> String {
    match url_at {
        Some(at) => format!("`source.url`, {at}"),
        None => "`source.url`".to_owned(),
    }
}

fn pool_err(place: &str, url_at: Option<&str>, e: PoolError) -> Error {
    match e {
        PoolError::Backend(e) => connect_err(place, url_at, e),
        PoolError::Timeout(_) => Error::new(
            ErrorKind::Unavailable,
            format!("postgres source: timed out connecting to PostgreSQL at {place}"),
        )
        .with_hint(format!("check that PostgreSQL is running and reachable at {place} ({})", setting(url_at))),
        other => Error::internal(format!("postgres source: no connection to PostgreSQL at {place}")).with_source(other),
    }
}

/// JSON text of a cursor bound, as PostgreSQL reads it back (`'2026-01-02T03:04:05Z'`).
fn bound_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait]
impl Source for PostgresSource {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn streams(&self) -> Vec<StreamSpec> {
        // Before discovery: the name, and the key and cursor as configured.
        let shape = self.known();
        let shape = shape.as_deref();
        let key: Vec<FieldPath> = match (shape, &self.config.key) {
            (Some(s), _) => s.key.iter().map(|&i| FieldPath::new(s.columns[i].name.clone())).collect(),
            (None, Some(k)) => k.iter().map(|k| FieldPath::new(k.clone())).collect(),
            (None, None) => Vec::new(),
        };
        let mut spec = StreamSpec::new(self.stream(), key);
        spec.cursor_field = self.config.cursor.clone().map(FieldPath::new);
        spec.schema = shape.map(Shape::schema);
        spec.lookback =
            (self.config.lookback_secs > 0).then(|| std::time::Duration::from_secs(self.config.lookback_secs));
        vec![spec]
    }

    async fn discover(&self, _cx: &Cx) -> Result<(), Error> {
        self.refresh().await.map(|_| ())
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        let c = self.conn().await?;
        let shape = self.shape().await?;
        // Executed, not only planned: PostgreSQL checks SELECT privilege when a statement runs.
        c.query(&format!("SELECT 1 FROM {} t LIMIT 0", shape.from), &[])
            .await
            .map_err(|e| self.fail(PgErr::source(&format!("reading `{}`", shape.shown)).err(e)))?;
        Ok(())
    }

    async fn read(&self, req: &ReadRequest, _cx: &Cx) -> Result<Page, Error> {
        let shape = self.shape().await?;
        let pos = req.position.as_ref().map(|v| self.position(&shape, v)).transpose()?;
        let since = req.since.as_ref().map(bound_text);
        let at_start = pos.is_none();
        let pos =
            pos.unwrap_or(Position { nulls: shape.cursor.is_some() && !shape.cursor_not_null, ..Position::default() });
        let from = match (&pos, &since) {
            (p, _) if p.nulls => sql::From::Nulls((!p.key.is_empty()).then_some(p.key.as_slice())),
            (p, s) if p.key.is_empty() => sql::From::Since(s.as_deref()),
            (p, _) => sql::From::After(p.cursor.as_deref(), &p.key),
        };
        let limit = self.config.page_size;
        let (stmt, params) = sql::page(&shape, &from, limit);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let c = self.conn().await?;
        let rows = c
            .query(&stmt, &refs)
            .await
            .map_err(|e| self.fail(PgErr::source(&format!("reading `{}`", shape.shown)).err(e)))?;
        let provenance = Arc::new(Provenance {
            connector: crate::KIND.to_owned(),
            endpoint: shape.shown.clone(),
            fetched_at: dovetail_core::now_rfc3339(),
            ..Provenance::default()
        });
        let mut records = Vec::with_capacity(rows.len());
        let mut last = None;
        for (i, row) in rows.iter().enumerate() {
            let text: &str = row.get(0);
            let data: Value = serde_json::from_str(text).map_err(|e| {
                self.fail(
                    Error::internal(format!("PostgreSQL sent a row of `{}` that is not JSON", shape.shown))
                        .with_source(e),
                )
            })?;
            records.push(Record::new(data, provenance.clone()).at(Location::Item(i as u64)));
            last = Some(row);
        }
        let has_cursor = shape.cursor.is_some();
        let printed = |row: &tokio_postgres::Row| -> Vec<String> {
            (1..row.len()).map(|i| row.get::<_, Option<String>>(i).unwrap_or_default()).collect()
        };
        let next = match last {
            Some(row) if rows.len() >= limit => {
                let mut parts = printed(row);
                let cursor = if has_cursor { Some(parts.remove(0)) } else { None };
                let cursor = if pos.nulls { None } else { cursor };
                position::encode(&Position { nulls: pos.nulls, cursor, key: parts })?
            }
            // The NULL rows are done: the rows with a cursor follow in the same pass.
            _ if pos.nulls => position::encode(&Position::default())?,
            _ => Next::Done { resume: None },
        };
        tracing::debug!(stream = self.stream(), rows = records.len(), at_start, "read page");
        Ok(Page { records, rejects: Vec::new(), next })
    }
}

impl SourceConnector for PostgresSource {
    const KIND: &'static str = crate::KIND;
    type Config = PostgresSourceConfig;

    fn build(config: PostgresSourceConfig, cx: &BuildCx) -> Result<Self, Error> {
        let source = PostgresSource::new(config)?;
        Ok(PostgresSource { url_at: cx.place("url").map(str::to_owned), ..source })
    }
}
