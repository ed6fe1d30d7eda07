//! The durable stores connectors get through `BuildCx`, opened lazily: building a pipeline
//! does no IO, and a config without API connectors never touches them.
//!
//! - Rotated OAuth2 refresh tokens: `tokens.json` next to the state database (owner-only;
//!   sealed with XChaCha20-Poly1305 when `DOVETAIL_SECRET_KEY` or `[state] secret_key` is
//!   set), apart from run history.
//! - HTTP responses (ETags, last good bodies): a bounded table in the state database.
//!
//! One [`SqliteState`] per state file per process: the engine and the response cache share
//! its connections.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use dovetail_core::remote::{CachedResponse, ResponseCache, TokenStore};
use dovetail_core::{Error, Secret};
use dovetail_state::{FileTokenStore, SecretKey, SqliteResponseCache, SqliteState};

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

/// The token store next to the state database, opened on first use.
pub struct LazyTokenStore {
    path: PathBuf,
    key: Option<Secret>,
    store: OnceLock<Result<FileTokenStore, Error>>,
}

impl LazyTokenStore {
    /// `tokens.json` in `state_dir`; `key` from config wins over `DOVETAIL_SECRET_KEY`.
    pub fn new(state_dir: &Path, key: Option<Secret>) -> Self {
        LazyTokenStore { path: state_dir.join("tokens.json"), key, store: OnceLock::new() }
    }

    fn get(&self) -> Result<&FileTokenStore, Error> {
        self.store
            .get_or_init(|| {
                let key = match &self.key {
                    Some(k) => Some(SecretKey::parse(k.expose())?),
                    None => SecretKey::from_env()?,
                };
                FileTokenStore::open(&self.path, key)
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
    cache: OnceLock<Result<SqliteResponseCache, Error>>,
}

impl LazyResponseCache {
    /// A cache in the state database at `state_path`, bounded to `max_entries` responses.
    pub fn new(state_path: &Path, max_entries: usize) -> Self {
        LazyResponseCache { state_path: state_path.to_path_buf(), max_entries, cache: OnceLock::new() }
    }

    fn get(&self) -> Result<&SqliteResponseCache, Error> {
        self.cache
            .get_or_init(|| Ok(SqliteResponseCache::new(state_at(&self.state_path)?, self.max_entries)))
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

/// Both stores for one config file.
pub fn for_state(
    state_path: &Path,
    key: Option<Secret>,
    cache_entries: usize,
) -> (Arc<dyn TokenStore>, Arc<dyn ResponseCache>) {
    let dir = state_path.parent().map(Path::to_path_buf).unwrap_or_default();
    (Arc::new(LazyTokenStore::new(&dir, key)), Arc::new(LazyResponseCache::new(state_path, cache_entries)))
}
