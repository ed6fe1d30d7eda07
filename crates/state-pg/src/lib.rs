//! dovetail-state-pg: dovetail's [`StateStore`](dovetail_core::StateStore) in PostgreSQL, for
//! state shared by several hosts or backed up with the rest of a team's data.
//!
//! Everything the SQLite store keeps lives in one schema (`[state] schema`, default
//! `dovetail`): checkpoints, the ledger, dead letters, the outbox, pauses, baselines, runs,
//! drift, explain stories and the HTTP response cache, brought up by versioned migrations
//! ([`migrations`]). tokio-postgres over a deadpool pool, TLS by rustls ([`tls`]).
//!
//! - **Batches, not rows**: a ledger lookup of a whole batch is one statement
//!   (`key = ANY($2)`), and a commit is one transaction whose ledger rows go in one
//!   `INSERT … SELECT FROM unnest(…)`.
//! - **Run lock across machines**: a session advisory lock held on a connection of its own
//!   ([`lock`]); PostgreSQL releases it when that connection ends, so a killed run never
//!   blocks the next one.
//! - **Worker leases**: stream leases, heartbeats, takeover and schedule ticks for
//!   `dovetail worker` fleets ([`lease`]), whose epochs fence every commit.
//! - **Lazy**: [`PgState::new`] does no IO; the first operation connects and migrates, so
//!   building a pipeline or a config check without state never touches the server.
#![warn(missing_docs)]

mod budget;
mod cache;
mod commit;
mod delivery;
mod error;
mod explain;
mod history;
mod lease;
mod lock;
pub mod migrations;
mod pending;
/// TLS to PostgreSQL (moved to dovetail-pg, shared with the postgres connector).
pub use dovetail_pg::tls;
mod tokens;
mod tx;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use dovetail_core::Error;
use tokio::sync::OnceCell;

pub use budget::PgBudget;
pub use cache::PgResponseCache;
pub use error::pg_err;
pub use lock::PgRunLock;
pub use tls::SslMode;
pub use tokens::PgTokenStore;

/// The schema used when `[state] schema` is not given.
pub const DEFAULT_SCHEMA: &str = "dovetail";

/// Connections a process keeps to the server at most.
const POOL_SIZE: usize = 8;
/// How long connecting (and waiting for a pooled connection) may take.
const CONNECT_TIMEOUT: Duration = dovetail_pg::CONNECT_TIMEOUT;
/// How long a store that had connected waits for PostgreSQL to come back (a restart, a
/// failover) before an operation fails as Unavailable.
pub const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// Where the state lives: parsed from `[state] url` and `[state] schema`.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    schema: String,
    sslmode: SslMode,
    rootcert: Option<std::path::PathBuf>,
    /// `host:port`, for messages (never the password).
    place: String,
    /// `host:port/database` ([`dovetail_pg::PgUrl::database`]).
    database_id: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget").field("at", &self.place).field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl PgTarget {
    /// Parse a `postgres://user[:password]@host[:port]/db[?sslmode=…&sslrootcert=…]` URL and a
    /// schema name. Errors never repeat the URL (it may hold the password).
    pub fn parse(url: &str, schema: Option<&str>) -> Result<PgTarget, Error> {
        let parsed = dovetail_pg::PgUrl::parse(url, "state.url")?;
        let database_id = parsed.database();
        let dovetail_pg::PgUrl { mut config, sslmode, rootcert, place } = parsed;
        let schema = schema.unwrap_or(DEFAULT_SCHEMA).to_owned();
        if schema.is_empty()
            || schema.len() > 63
            || !schema.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(Error::config(format!(
                "`state.schema` `{schema}` is not a plain PostgreSQL name: use lower-case letters, digits and `_`, \
                 starting with a letter"
            )));
        }
        config.options(format!("-c search_path={schema}"));
        Ok(PgTarget { config, schema, sslmode, rootcert, place, database_id })
    }

    /// `host:port` of the server (for messages).
    pub fn place(&self) -> &str {
        &self.place
    }

    /// The schema holding dovetail's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The user name.
    pub fn user(&self) -> Option<&str> {
        self.config.get_user()
    }

    /// `host:port/database`: what a sink reaching the same database names too.
    pub fn database_id(&self) -> &str {
        &self.database_id
    }

    /// The database name.
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }
}

/// dovetail's durable state in a PostgreSQL schema. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgState {
    inner: Arc<Inner>,
    /// The streams whose worker leases refuse this handle's run lock (`None`: every stream).
    lock_scope: Option<Arc<lease::LockScope>>,
}

struct Inner {
    target: PgTarget,
    pool: Pool,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    ready: OnceCell<i64>,
    /// pipeline → stream → `streams.id`, of committed rows only.
    streams: Mutex<HashMap<String, HashMap<String, i64>>>,
    /// Streams (by id) whose ledger rows go in by the upsert: a plain INSERT of one of their
    /// commits found a row already there.
    upserting: Mutex<HashSet<i64>>,
    /// Pipelines whose run lock this process holds (with the lock's connection once taken):
    /// a second holder here is refused at once, and a commit checks the connection is alive.
    held: lock::Held,
    /// Worker leases this process holds, per (pipeline, stream): their epochs fence commits.
    leases: lease::Held,
}

impl std::fmt::Debug for PgState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgState").field("target", &self.inner.target).finish()
    }
}

/// A pooled connection.
pub(crate) type Conn = deadpool_postgres::Object;

impl PgState {
    /// A store on `target`. No IO: the first operation connects and brings the schema up to
    /// date ([`PgState::ready`]).
    pub fn new(target: PgTarget) -> Result<PgState, Error> {
        let tls = tls::connector(target.sslmode, target.rootcert.as_deref())?;
        let manager = Manager::from_config(
            target.config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT * 3))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::internal("cannot set up the PostgreSQL connection pool").with_source(e))?;
        Ok(PgState {
            inner: Arc::new(Inner {
                target,
                pool,
                tls,
                ready: OnceCell::new(),
                streams: Mutex::default(),
                upserting: Mutex::default(),
                held: Arc::default(),
                leases: Default::default(),
            }),
            lock_scope: None,
        })
    }

    /// Connect and migrate (once per value); returns the schema version the store is at.
    pub async fn ready(&self) -> Result<i64, Error> {
        self.inner
            .ready
            .get_or_try_init(|| async {
                let mut conn = self.raw_conn().await?;
                migrations::migrate(&mut conn, &self.inner.target).await
            })
            .await
            .copied()
    }

    /// The migration the schema is at, without migrating: `None` when the schema (or its
    /// version table) does not exist yet. Connects, so a server that is down fails here.
    pub async fn migration(&self) -> Result<Option<i64>, Error> {
        let c = self.raw_conn().await?;
        let exists: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'schema_version')",
                &[&self.inner.target.schema],
            )
            .await
            .map_err(|e| self.err("reading the schema version", e))?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = c
            .query_one("SELECT max(version) FROM schema_version", &[])
            .await
            .map_err(|e| self.err("reading the schema version", e))?;
        Ok(row.get(0))
    }

    /// Where the state lives, for messages.
    pub fn target(&self) -> &PgTarget {
        &self.inner.target
    }

    /// A pooled connection without the migration check (used by it).
    async fn raw_conn(&self) -> Result<Conn, Error> {
        self.inner.pool.get().await.map_err(|e| error::pool_err(&self.inner.target, e))
    }

    /// A pooled connection to a migrated schema; waits for a server that went away after the
    /// store had connected ([`PgState::reconnecting`]).
    pub(crate) async fn conn(&self) -> Result<Conn, Error> {
        self.ready().await?;
        self.reconnecting("connecting", || self.raw_conn()).await
    }

    /// The cached id of a committed stream.
    pub(crate) fn cached_stream(&self, pipeline: &str, stream: &str) -> Option<i64> {
        let map = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
        map.get(pipeline).and_then(|m| m.get(stream)).copied()
    }

    pub(crate) fn cache_stream(&self, pipeline: &str, stream: &str, id: i64) {
        let mut map = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(pipeline.to_owned()).or_default().insert(stream.to_owned(), id);
    }

    /// Whether the stream's ledger rows go in by the upsert (see `upserting`).
    pub(crate) fn upserts(&self, stream_id: i64) -> bool {
        self.inner.upserting.lock().unwrap_or_else(|p| p.into_inner()).contains(&stream_id)
    }

    pub(crate) fn upsert_from_now(&self, stream_id: i64) {
        self.inner.upserting.lock().unwrap_or_else(|p| p.into_inner()).insert(stream_id);
    }

    /// Before a commit for `pipeline`: the holder token to fence it with when this process
    /// holds the pipeline's run lock (`None` when it does not). A lock whose connection ended
    /// is taken again first ([`lock::retake`]); when that fails, the run stops committing.
    pub(crate) async fn ensure_lock(&self, pipeline: &str) -> Result<Option<String>, Error> {
        let Some((token, closed)) = lock::state(&self.inner.held, pipeline) else { return Ok(None) };
        if !closed {
            return Ok(Some(token));
        }
        tracing::warn!(
            pipeline,
            at = self.inner.target.place(),
            "lost the run lock's connection; taking the lock again"
        );
        let token = &token;
        let retake = self.reconnecting("taking the run lock again", || lock::retake(self, pipeline, token));
        retake.await.map_err(|e| {
            if !error::is_lost(&e) {
                // Another holder, or refused outright: said as it is.
                return e;
            }
            Error::new(
                dovetail_core::ErrorKind::Unavailable,
                format!(
                    "state store: lost the connection holding the run lock of `{pipeline}` to PostgreSQL at {} and \
                     could not take the lock again; stopped committing: {}",
                    self.inner.target.place(),
                    e.message()
                ),
            )
            .with_hint("check PostgreSQL and the network, then run again; the run resumes from its last checkpoint")
        })?;
        tracing::info!(pipeline, "took the run lock again; no other run held it meanwhile");
        Ok(Some(token.clone()))
    }

    /// Run `op` again while it fails for a lost connection ([`error::is_lost`]) — PostgreSQL
    /// restarting, a backend terminated — with a backoff, for up to [`RECONNECT_FOR`]; only
    /// once the store has connected (down at start fails at once). `op` must be safe to
    /// repeat after a failure: a read, or a transaction that did not commit.
    pub(crate) async fn reconnecting<T, F>(&self, what: &str, op: impl Fn() -> F) -> Result<T, Error>
    where
        F: std::future::Future<Output = Result<T, Error>>,
    {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(50);
        let mut warned = false;
        loop {
            match op().await {
                Err(e)
                    if error::is_lost(&e)
                        && self.inner.ready.initialized()
                        && started.elapsed() + delay < RECONNECT_FOR =>
                {
                    if !warned {
                        tracing::warn!(
                            at = self.inner.target.place(),
                            "state store: {what}: connection lost; reconnecting: {e}"
                        );
                        warned = true;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
                Ok(v) => {
                    if warned {
                        tracing::info!(at = self.inner.target.place(), "state store: {what}: reconnected");
                    }
                    return Ok(v);
                }
            }
        }
    }

    /// The id of a stream already registered, from the cache or the database.
    pub(crate) async fn stream_id(&self, c: &Conn, pipeline: &str, stream: &str) -> Result<Option<i64>, Error> {
        if let Some(id) = self.cached_stream(pipeline, stream) {
            return Ok(Some(id));
        }
        let st = c
            .prepare_cached("SELECT id FROM streams WHERE pipeline = $1 AND stream = $2")
            .await
            .map_err(|e| self.err("looking up a stream", e))?;
        let row = c.query_opt(&st, &[&pipeline, &stream]).await.map_err(|e| self.err("looking up a stream", e))?;
        let id = row.map(|r| r.get::<_, i64>(0));
        if let Some(id) = id {
            self.cache_stream(pipeline, stream, id);
        }
        Ok(id)
    }

    /// A failed statement, as a dovetail error naming the operation and the server.
    pub(crate) fn err(&self, op: &str, e: tokio_postgres::Error) -> Error {
        pg_err(&self.inner.target, op, e)
    }
}

/// A `u64` as PostgreSQL's `bigint`.
pub(crate) fn to_i64(what: &str, v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::internal(format!("state store: {what} {v} is too large")))
}

/// A `LIMIT` value.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Text PostgreSQL can store: a NUL character (which `text` refuses) becomes U+FFFD.
pub(crate) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}")) } else { std::borrow::Cow::Borrowed(s) }
}

/// JSON that cannot be written or read back.
pub(crate) fn json_err(what: &str, e: serde_json::Error) -> Error {
    Error::internal(format!("state store: {what} is not valid JSON")).with_source(e)
}

/// A name read back from `table`.`column`; an unknown one is an internal error naming it.
pub(crate) fn stored_name<T>(table: &str, column: &str, value: &str) -> Result<T, Error>
where
    T: std::str::FromStr<Err = dovetail_core::UnknownName>,
{
    value.parse().map_err(|e| {
        Error::internal(format!(
            "state store: table `{table}`, column `{column}`: {e}; was the database written by a newer dovetail?"
        ))
    })
}
