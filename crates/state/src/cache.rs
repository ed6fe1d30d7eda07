//! [`SqliteResponseCache`]: the HTTP response cache as a bounded table in the state database.
//!
//! Entries live in `http_cache` (migration 2). Each `put` stamps the entry with the next
//! sequence number and then deletes everything beyond the newest `max_entries`, so the
//! table never holds more than its bound and the oldest-stored entries go first. A `get`
//! does not reorder entries (it stays a read).

use async_trait::async_trait;
use dovetail_core::Error;
use dovetail_core::remote::{CachedResponse, ResponseCache};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::SqliteState;
use crate::error::{DbResultExt, json_err};
use crate::ops::limit;

/// Default bound of [`SqliteResponseCache`].
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;

/// A [`ResponseCache`] in the state database, holding at most `max_entries` responses.
#[derive(Debug, Clone)]
pub struct SqliteResponseCache {
    state: SqliteState,
    max_entries: usize,
}

impl SqliteResponseCache {
    /// A cache in `state`'s database keeping at most `max_entries` (at least 1) responses.
    pub fn new(state: SqliteState, max_entries: usize) -> Self {
        SqliteResponseCache { state, max_entries: max_entries.max(1) }
    }

    /// The number of cached responses.
    pub async fn len(&self) -> Result<usize, Error> {
        self.state
            .with_db(|db| {
                db.conn
                    .query_row("SELECT count(*) FROM http_cache", [], |r| r.get::<_, i64>(0))
                    .op("counting cached responses")
                    .map(|n| usize::try_from(n).unwrap_or(0))
            })
            .await
    }

    /// Whether the cache is empty.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }
}

#[async_trait]
impl ResponseCache for SqliteResponseCache {
    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        let key = key.to_owned();
        self.state
            .with_db(move |db| {
                let row = db
                    .conn
                    .prepare_cached(
                        "SELECT status, etag, last_modified, headers, body, stored_at FROM http_cache WHERE key = ?1",
                    )
                    .and_then(|mut st| {
                        st.query_row([&key], |r| {
                            Ok((
                                r.get::<_, u16>(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get::<_, String>(3)?,
                                r.get(4)?,
                                r.get(5)?,
                            ))
                        })
                        .optional()
                    })
                    .op("reading a cached response")?;
                let Some((status, etag, last_modified, headers, body, stored_at)) = row else {
                    return Ok(None);
                };
                let headers = serde_json::from_str(&headers).map_err(|e| json_err("cached response headers", e))?;
                Ok(Some(CachedResponse { status, etag, last_modified, headers, body, stored_at }))
            })
            .await
    }

    async fn put(&self, key: &str, response: &CachedResponse) -> Result<(), Error> {
        let (key, r, max) = (key.to_owned(), response.clone(), limit(self.max_entries));
        self.state
            .with_db(move |db| {
                let headers = serde_json::to_string(&r.headers).map_err(|e| json_err("cached response headers", e))?;
                let tx = db.conn.transaction_with_behavior(TransactionBehavior::Immediate).op("starting a cache write")?;
                tx.prepare_cached(
                    "INSERT INTO http_cache (key, status, etag, last_modified, headers, body, stored_at, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT coalesce(max(seq), 0) + 1 FROM http_cache))
                     ON CONFLICT (key) DO UPDATE SET status = excluded.status, etag = excluded.etag,
                         last_modified = excluded.last_modified, headers = excluded.headers,
                         body = excluded.body, stored_at = excluded.stored_at, seq = excluded.seq",
                )
                .and_then(|mut st| {
                    st.execute(params![key, r.status, r.etag, r.last_modified, headers, r.body, r.stored_at])
                })
                .op("storing a response")?;
                tx.prepare_cached(
                    "DELETE FROM http_cache WHERE seq <= (SELECT seq FROM http_cache ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                )
                .and_then(|mut st| st.execute([max]))
                .op("evicting old cached responses")?;
                tx.commit().op("committing a cache write")
            })
            .await
    }
}
