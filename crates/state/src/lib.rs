//! dovetail-state: the embedded SQLite implementation of dovetail's
//! [`StateStore`](dovetail_core::state::StateStore) — both its delivery contract
//! ([`DeliveryStore`](dovetail_core::state::DeliveryStore)) and its history contract
//! ([`HistoryStore`](dovetail_core::state::HistoryStore)).
//!
//! One SQLite file holds everything a pipeline must remember between runs: stream
//! checkpoints, the idempotency ledger (a content hash per written key), dead letters, the
//! durable outbox (mapped records owed to a sink that is down), paused streams, run history
//! and schema baselines ([`SqliteState`]); beside it, the token store for rotated
//! refresh tokens ([`FileTokenStore`], a separate owner-only file, encrypted with a key) and
//! the bounded HTTP response cache ([`SqliteResponseCache`]).
//!
//! # Durability: why WAL with `synchronous=NORMAL`
//!
//! The database runs in write-ahead-log mode with `synchronous=NORMAL`. A commit appends to
//! the WAL with a single `write(2)` and does not `fsync`; the WAL is synced only when it is
//! checkpointed into the main file. The consequences are exactly the ones dovetail needs:
//!
//! * **A killed process (`kill -9`, panic, OOM kill) loses nothing.** Committed data is in
//!   the operating system's page cache the moment `commit` returns, and SQLite replays the
//!   WAL on the next open. Every commit is atomic: a crash leaves either all of one batch's
//!   ledger rows, outbox changes, checkpoint and dead letters, or none of them.
//! * **A power loss or kernel crash may roll back the last few commits**, but never
//!   corrupts the database and never splits a transaction. Because the checkpoint and the
//!   ledger roll back *together*, the next run re-reads those records and the sink's
//!   idempotent writes absorb them: still no loss and no duplicate.
//! * **It is fast.** Without an `fsync` per batch a 1000-row commit costs about a
//!   millisecond, which the engine's throughput target (hundreds of thousands of records
//!   per second) requires. `synchronous=FULL` would add a disk flush to every batch.
//!
//! WAL also lets readers (`dovetail status`, `dead-letters list`) run while a pipeline
//! writes.
//!
//! # Concurrency
//!
//! All database work runs on one connection behind a mutex, inside
//! [`tokio::task::spawn_blocking`], so the async runtime never blocks on disk. Several
//! processes may share a file: write transactions start `IMMEDIATE` and wait up to
//! [`BUSY_TIMEOUT`] for another writer; a timeout surfaces as a
//! [`Busy`](dovetail_core::ErrorKind::Busy) error (exit 11) saying to wait for the other process.
//!
//! # Run lock
//!
//! [`DeliveryStore::lock`](dovetail_core::state::DeliveryStore::lock) takes an OS advisory lock
//! (`flock`) on a file beside the database; [`SqliteState::lock_dir`] explains why a lock
//! file rather than a database row.
#![warn(missing_docs)]

mod cache;
mod error;
mod explain;
mod history;
mod lock;
mod migrations;
mod ops;
mod pending;
mod store;
mod tokens;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dovetail_core::{Error, ErrorKind};
use rusqlite::Connection;

pub use cache::{DEFAULT_CACHE_ENTRIES, SqliteResponseCache};
pub use explain::{Encoded as EncodedExplain, encode as encode_explain, latest_story};
pub use history::{ABANDONED, REASON_WITHOUT_LOCATION, RUNNING};
pub use lock::SqliteRunLock;
pub use migrations::SCHEMA_VERSION;
pub use tokens::{FileTokenStore, SECRET_KEY_ENV, SecretKey};

/// How long a write waits for another process's write transaction before giving up with a
/// transient error.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// dovetail's durable state in one SQLite file.
///
/// Cheap to clone: clones share the connection. See the [crate docs](crate) for the
/// durability guarantees.
#[derive(Clone)]
pub struct SqliteState {
    db: Arc<Mutex<Db>>,
    /// A second connection for the hot ledger reads: in WAL mode readers do not wait for
    /// the writer, so the engine's mapper can look up batch n+1 while batch n commits.
    /// (An in-memory database is private to its connection, so there it is `db` again.)
    reader: Arc<Mutex<Db>>,
    locks: LockPlace,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SqliteState");
        match &self.path {
            Some(p) => d.field("path", p),
            None => d.field("path", &":memory:"),
        };
        d.finish()
    }
}

/// The connection plus the cache of interned `(pipeline, stream)` ids, guarded together.
pub(crate) struct Db {
    pub(crate) conn: Connection,
    /// pipeline → stream → `streams.id`. Only ids of committed rows are cached.
    pub(crate) streams: HashMap<String, HashMap<String, i64>>,
}

/// Where run locks live.
#[derive(Clone)]
pub(crate) enum LockPlace {
    /// `<db file>.locks/` next to the database file.
    Dir(PathBuf),
    /// An in-memory database is private to this process, so its locks are too.
    Memory(Arc<Mutex<HashSet<String>>>),
}

impl SqliteState {
    /// Open (creating it and its parent directories if needed) the state database at `path`
    /// and bring its schema up to date.
    ///
    /// Fails with a [`Config`](dovetail_core::ErrorKind::Config) error when the file cannot be
    /// opened, is not a database, or was written by a newer dovetail (its schema version is
    /// higher than [`SCHEMA_VERSION`]).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteState, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::config(format!("cannot create the directory `{}` for the state database", parent.display()))
                    .with_source(e)
            })?;
        }
        let conn = Connection::open(&path).map_err(|e| error::open_err(&path, e))?;
        let conn = configure(conn, &path)?;
        // Both connections keep SQLite's default 2 MiB page cache. The bundled SQLite is
        // built with SQLITE_ENABLE_MEMORY_MANAGEMENT, so all connections in the process share
        // one pool of pages: a sink streaming new pages through it pushed the ledger's root
        // and interior pages out, and every ledger insert re-read them from the WAL (1M
        // records: 190k extra reads, an 8 MiB cache only postponed it). Sinks that append
        // therefore release their clean pages after each commit (dovetail-sqlite does), and
        // then 2 MiB is as fast as 8 MiB and keeps peak RSS flat as the ledger grows.
        let reader = Connection::open(&path).map_err(|e| error::open_err(&path, e))?;
        let reader = configure(reader, &path)?;
        let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "state".into());
        name.push(".locks");
        let locks = LockPlace::Dir(path.with_file_name(name));
        tracing::debug!(path = %path.display(), "opened state database");
        Ok(SqliteState { db: Db::shared(conn), reader: Db::shared(reader), locks, path: Some(path) })
    }

    /// A private in-memory state store, for tests and dry runs. Nothing survives the process,
    /// and its run locks only exclude other users of this same value (and its clones).
    pub fn open_in_memory() -> Result<SqliteState, Error> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| error::open_err(path, e))?;
        let conn = configure(conn, path)?;
        let locks = LockPlace::Memory(Arc::default());
        let db = Db::shared(conn);
        Ok(SqliteState { reader: Arc::clone(&db), db, locks, path: None })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The directory holding the run-lock files (`<db file>.locks`), or `None` for an
    /// in-memory store.
    ///
    /// Run locks are `flock(2)` locks on one file per pipeline rather than rows in the
    /// database because the kernel releases them the instant the holding process dies, even
    /// by `SIGKILL`: a crashed run never blocks the next one, and no lease or timeout has to
    /// be guessed. The file also records the holder's pid, host and start time so a refusal
    /// can say who holds it. Lock files are never deleted (deleting a locked file would let
    /// two processes lock two different inodes of the same name).
    pub fn lock_dir(&self) -> Option<&Path> {
        match &self.locks {
            LockPlace::Dir(d) => Some(d),
            LockPlace::Memory(_) => None,
        }
    }

    /// Run `f` with the connection on the blocking thread pool.
    pub(crate) async fn with_db<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, Error> + Send + 'static,
    {
        Self::on(Arc::clone(&self.db), f).await.map_err(|e| self.name_file(e))
    }

    /// Run a read-only `f` on the reader connection on the blocking thread pool.
    pub(crate) async fn with_reader<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, Error> + Send + 'static,
    {
        Self::on(Arc::clone(&self.reader), f).await.map_err(|e| self.name_file(e))
    }

    /// A failure the operator fixes at the file (busy, full, read-only) names the database
    /// file as its location.
    fn name_file(&self, e: Error) -> Error {
        let at_file = matches!(e.kind(), ErrorKind::Busy | ErrorKind::Unavailable | ErrorKind::Permanent);
        match &self.path {
            Some(path) if at_file => e.at(format!("state database {}", path.display())),
            _ => e,
        }
    }

    async fn on<T, F>(db: Arc<Mutex<Db>>, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, Error> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || f(&mut lock_db(&db)))
            .await
            .map_err(|e| Error::internal("state store task failed").with_source(e))?
    }
}

impl Db {
    fn shared(conn: Connection) -> Arc<Mutex<Db>> {
        Arc::new(Mutex::new(Db { conn, streams: HashMap::new() }))
    }
}

/// Lock the connection. A panic while it was held cannot leave a transaction open (the
/// `Transaction` guard rolls back on unwind), so a poisoned mutex is safe to reuse.
pub(crate) fn lock_db(db: &Mutex<Db>) -> MutexGuard<'_, Db> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Pragmas, statement cache and migrations for a freshly opened connection.
fn configure(mut conn: Connection, path: &Path) -> Result<Connection, Error> {
    let setup = |conn: &Connection| -> rusqlite::Result<String> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // `journal_mode` reports the mode actually in effect (`memory` for in-memory DBs).
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(mode)
    };
    // Switching a new file to WAL takes an exclusive lock, and SQLite does not wait for a
    // competing open doing the same (it would deadlock): two first runs on a fresh state
    // directory would see `database is busy` at once. Retry that for the busy timeout.
    let started = std::time::Instant::now();
    let mode = loop {
        match setup(&conn) {
            Ok(mode) => break mode,
            Err(e) if error::is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(error::open_err(path, e)),
        }
    };
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(error::read_only(path));
    }
    if mode != "wal" && path != Path::new(":memory:") {
        tracing::warn!(path = %path.display(), mode, "state database is not in WAL mode");
    }
    migrations::migrate(&mut conn, path)?;
    Ok(conn)
}
