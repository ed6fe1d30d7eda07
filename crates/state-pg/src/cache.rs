//! The bounded HTTP response cache in the state schema.

use async_trait::async_trait;
use dovetail_core::Error;
use dovetail_core::remote::{CachedResponse, ResponseCache};

use crate::{PgState, json_err, limit, text};

/// A [`ResponseCache`] in the PostgreSQL state schema, holding at most `max_entries` responses.
#[derive(Debug, Clone)]
pub struct PgResponseCache {
    state: PgState,
    max_entries: usize,
}

impl PgResponseCache {
    /// A cache in `state`'s schema keeping at most `max_entries` (at least 1) responses.
    pub fn new(state: PgState, max_entries: usize) -> Self {
        PgResponseCache { state, max_entries: max_entries.max(1) }
    }
}

#[async_trait]
impl ResponseCache for PgResponseCache {
    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        let st = &self.state;
        let c = st.conn().await?;
        let row = c
            .query_opt(
                "SELECT status, etag, last_modified, headers, body, stored_at FROM http_cache WHERE key = $1",
                &[&&*text(key)],
            )
            .await
            .map_err(|e| st.err("reading a cached response", e))?;
        let Some(r) = row else { return Ok(None) };
        let headers = serde_json::from_str(r.get::<_, &str>(3)).map_err(|e| json_err("cached response headers", e))?;
        Ok(Some(CachedResponse {
            status: u16::try_from(r.get::<_, i32>(0)).unwrap_or(200),
            etag: r.get(1),
            last_modified: r.get(2),
            headers,
            body: r.get(4),
            stored_at: r.get(5),
        }))
    }

    async fn put(&self, key: &str, r: &CachedResponse) -> Result<(), Error> {
        let st = &self.state;
        let headers = serde_json::to_string(&r.headers).map_err(|e| json_err("cached response headers", e))?;
        let mut c = st.conn().await?;
        let tx = c.transaction().await.map_err(|e| st.err("starting a cache write", e))?;
        tx.execute(
            "INSERT INTO http_cache (key, status, etag, last_modified, headers, body, stored_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (key) DO UPDATE SET status = excluded.status, etag = excluded.etag,
                 last_modified = excluded.last_modified, headers = excluded.headers,
                 body = excluded.body, stored_at = excluded.stored_at, seq = nextval(pg_get_serial_sequence('http_cache', 'seq'))",
            &[&&*text(key), &i32::from(r.status), &r.etag, &r.last_modified, &&*text(&headers), &r.body, &r.stored_at],
        )
        .await
        .map_err(|e| st.err("storing a response", e))?;
        tx.execute(
            "DELETE FROM http_cache WHERE seq <= (SELECT seq FROM http_cache ORDER BY seq DESC LIMIT 1 OFFSET $1)",
            &[&limit(self.max_entries)],
        )
        .await
        .map_err(|e| st.err("evicting old cached responses", e))?;
        tx.commit().await.map_err(|e| st.err("committing a cache write", e))
    }
}
