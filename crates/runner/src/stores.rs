//! The durable stores connectors get through `BuildCx`, opened lazily: building a pipeline
//! does no IO, and a config without API connectors never touches them.
//!
//! - Rotated OAuth2 refresh tokens: `tokens.json` next to the state database (owner-only;
//!   sealed with XChaCha20-Poly1305 when `DOVETAIL_SECRET_KEY` or `[state] secret_key` is
//!   set), apart from run history.
//! - HTTP responses (ETags, last good bodies): a bounded table in the state database.
//!
//! One [`SqliteState`] per state file per process: the engine and the response cache share
//! its connections. PostgreSQL state ([`PgState`]) is registered by config loading under a
//! label path (`postgres://user@host:port/db?schema=S`, no password) that stands where the
//! SQLite file's path would, so every verb opens it through the same `state_path`; its
//! connection pool is shared the same way, and tokens go to its `tokens` table, sealed (no
//! key, no token store).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use dovetail_core::remote::{CachedResponse, RefreshFn, ResponseCache, TokenStore};
use dovetail_core::{Error, Secret};
use dovetail_state::{FileTokenStore, SecretKey, SqliteResponseCache, SqliteState};
use dovetail_state_pg::{PgBudget, PgResponseCache, PgState, PgTarget, PgTokenStore};

use crate::diag::Doc;

fn pg_stores() -> std::sync::MutexGuard<'static, HashMap<PathBuf, PgState>> {
    static PG: OnceLock<Mutex<HashMap<PathBuf, PgState>>> = OnceLock::new();
    PG.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// Register PostgreSQL state (no IO) and return the label that stands for it as the state path.
pub fn register_postgres(target: PgTarget) -> Result<PathBuf, Error> {
    let user = target.user().unwrap_or_default().to_owned();
    let label = PathBuf::from(format!(
        "postgres://{user}@{}/{}?schema={}",
        target.place(),
        target.database().unwrap_or_default(),
        target.schema()
    ));
    let mut open = pg_stores();
    if !open.contains_key(&label) {
        open.insert(label.clone(), PgState::new(target)?);
    }
    Ok(label)
}

/// The PostgreSQL state registered under `path`, if it is such a label.
pub fn postgres_at(path: &Path) -> Option<PgState> {
    pg_stores().get(path).cloned()
}

/// With PostgreSQL state at `path`, configured rate budgets (`http.rate_limit`) are shared
/// with every process on that state (`rate_budgets`); SQLite state keeps them per process.
pub fn share_budgets(path: &Path) {
    if let Some(pg) = postgres_at(path) {
        dovetail_http::share_budgets(Arc::new(PgBudget::new(pg)));
    }
}

/// The local folder of a config's own files: the SQLite file's folder, or `.dovetail` next
/// to the config file for PostgreSQL state.
pub fn local_dir(doc: &Doc, state_path: &Path) -> PathBuf {
    match postgres_at(state_path) {
        Some(_) => doc.base_dir.join(".dovetail"),
        None => state_path.parent().map(Path::to_path_buf).unwrap_or_default(),
    }
}

/// The state store of `path`, opened once per process.
pub fn state_at(path: &Path) -> Result<SqliteState, Error> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, SqliteState>>> = OnceLock::new();
    let mut open = OPEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = open.get(path) {
        return Ok(s.clone());
    }
    let s = SqliteState::open(path)?;
    open.insert(path.to_path_buf(), s.clone());
    Ok(s)
}

/// The token store, opened on first use: `tokens.json` in the local folder, or for
/// PostgreSQL state the sealed `tokens` table (which refuses to work without a key).
pub struct LazyTokenStore {
    path: PathBuf,
    state_path: PathBuf,
    key: Option<Secret>,
    store: OnceLock<Result<Arc<dyn TokenStore>, Error>>,
}

impl LazyTokenStore {
    /// `tokens.json` in `local`, or the state's table; `key` from config wins over
    /// `DOVETAIL_SECRET_KEY`.
    pub fn new(local: &Path, state_path: &Path, key: Option<Secret>) -> Self {
        LazyTokenStore {
            path: local.join("tokens.json"),
            state_path: state_path.to_path_buf(),
            key,
            store: OnceLock::new(),
        }
    }

    fn get(&self) -> Result<&Arc<dyn TokenStore>, Error> {
        self.store
            .get_or_init(|| {
                let key = match &self.key {
                    Some(k) => Some(SecretKey::parse(k.expose())?),
                    None => SecretKey::from_env()?,
                };
                match (postgres_at(&self.state_path), key) {
                    (Some(pg), Some(key)) => Ok(Arc::new(PgTokenStore::new(pg, key)) as Arc<dyn TokenStore>),
                    (Some(pg), None) => Err(Error::config(format!(
                        "PostgreSQL state ({}) keeps rotated OAuth2 tokens in the shared database, always sealed: set \
                         {} or `[state] secret_key` (32 bytes as 64 hex digits or base64)",
                        pg.target().place(),
                        dovetail_state::SECRET_KEY_ENV
                    ))),
                    (None, key) => Ok(Arc::new(FileTokenStore::open(&self.path, key)?) as Arc<dyn TokenStore>),
                }
            })
            .as_ref()
            .map_err(|e| Error::new(e.kind().clone(), e.report()))
    }
}

#[async_trait]
impl TokenStore for LazyTokenStore {
    async fn load(&self, key: &str) -> Result<Option<Secret>, Error> {
        self.get()?.load(key).await
    }
    async fn save(&self, key: &str, token: &Secret) -> Result<(), Error> {
        self.get()?.save(key, token).await
    }
    async fn refresh_exclusive(&self, key: &str, refresh: RefreshFn<'_>) -> Result<(), Error> {
        self.get()?.refresh_exclusive(key, refresh).await
    }
}

/// Whether this process keeps its hands off the state database (`dovetail preview`).
static WRITE_NOTHING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on the response cache neither opens the state database nor stores anything:
/// every lookup misses and every store is dropped.
pub fn write_nothing() {
    WRITE_NOTHING.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn writes_nothing() -> bool {
    WRITE_NOTHING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The response cache in the state database, opened on first use.
pub struct LazyResponseCache {
    state_path: PathBuf,
    max_entries: usize,
    cache: OnceLock<Result<Arc<dyn ResponseCache>, Error>>,
}

impl LazyResponseCache {
    /// A cache in the state database at `state_path`, bounded to `max_entries` responses.
    pub fn new(state_path: &Path, max_entries: usize) -> Self {
        LazyResponseCache { state_path: state_path.to_path_buf(), max_entries, cache: OnceLock::new() }
    }

    fn get(&self) -> Result<&Arc<dyn ResponseCache>, Error> {
        self.cache
            .get_or_init(|| match postgres_at(&self.state_path) {
                Some(pg) => Ok(Arc::new(PgResponseCache::new(pg, self.max_entries)) as Arc<dyn ResponseCache>),
                None => Ok(Arc::new(SqliteResponseCache::new(state_at(&self.state_path)?, self.max_entries))),
            })
            .as_ref()
            .map_err(|e| Error::new(e.kind().clone(), e.report()))
    }
}

#[async_trait]
impl ResponseCache for LazyResponseCache {
    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        if writes_nothing() {
            return Ok(None);
        }
        self.get()?.get(key).await
    }
    async fn put(&self, key: &str, response: &CachedResponse) -> Result<(), Error> {
        if writes_nothing() {
            return Ok(());
        }
        self.get()?.put(key, response).await
    }
}

/// Both stores for one config file: tokens in `local` ([`local_dir`]), responses in the state.
pub fn for_state(
    state_path: &Path,
    local: &Path,
    key: Option<Secret>,
    cache_entries: usize,
) -> (Arc<dyn TokenStore>, Arc<dyn ResponseCache>) {
    (Arc::new(LazyTokenStore::new(local, state_path, key)), Arc::new(LazyResponseCache::new(state_path, cache_entries)))
}
