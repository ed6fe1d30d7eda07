//! The run lock across machines: a session advisory lock held on a connection of its own.
//!
//! PostgreSQL releases a session lock when its connection ends, so a run killed by
//! `SIGKILL` (its socket closed by the kernel) or on a host that vanished (the server's TCP
//! keepalive ends the session) never blocks the next run, and no lease has to be guessed.
//! The lock's connection carries `application_name` = `dovetail pid N on HOST`, so a
//! refusal names the holder (from `pg_stat_activity`). Taking it waits up to
//! [`LOCK_WAIT`] on the server (a just-dropped holder's connection may still be closing),
//! then refuses with a Busy error. The same process refuses a second holder at once. A
//! commit for a pipeline whose lock connection has ended is refused (Unavailable): the lock
//! may be another host's by then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dovetail_core::state::RunLock;
use dovetail_core::{Error, ErrorKind};
use tokio_postgres::error::SqlState;

use crate::{PgState, pg_err};

/// How long taking a lock waits for its holder before refusing.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The advisory-lock key of a pipeline's run lock in `schema`.
pub(crate) fn key(schema: &str, pipeline: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(format!("dovetail run\0{schema}\0{pipeline}").as_bytes()) as i64
}

/// The run locks a store holds: pipeline → the lock's connection (`None` while taking it).
pub(crate) type Held = Arc<Mutex<HashMap<String, Option<Arc<tokio_postgres::Client>>>>>;

/// Whether this process took `pipeline`'s lock and its connection has ended since.
pub(crate) fn lost(held: &Held, pipeline: &str) -> bool {
    let map = held.lock().unwrap_or_else(|p| p.into_inner());
    matches!(map.get(pipeline), Some(Some(c)) if c.is_closed())
}

/// A held run lock: its connection (dropping it ends the session and releases the lock).
pub struct PgRunLock {
    pipeline: String,
    client: Option<Arc<tokio_postgres::Client>>,
    held: Held,
}

impl std::fmt::Debug for PgRunLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRunLock").field("pipeline", &self.pipeline).finish()
    }
}

impl RunLock for PgRunLock {}

impl PgRunLock {
    /// Whether the lock's connection is still open (when it is not, the lock is gone).
    pub fn is_held(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }
}

impl Drop for PgRunLock {
    fn drop(&mut self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.pipeline);
        if let Some(client) = self.client.take() {
            // Unlock explicitly when a runtime is at hand (the next taker need not wait for
            // the session to close); dropping the client closes it either way.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = client.batch_execute("SELECT pg_advisory_unlock_all()").await;
                });
            }
        }
    }
}

fn busy(pipeline: &str, holder: Option<String>) -> Error {
    let who = holder.map(|h| format!(" (held by {h})")).unwrap_or_default();
    Error::new(ErrorKind::Busy, format!("pipeline `{pipeline}` is already running{who}"))
        .with_hint(format!("wait for the other run of `{pipeline}` to finish, or stop it, then run again"))
}

/// Take the run lock of `pipeline`.
pub(crate) async fn take(st: &PgState, pipeline: &str) -> Result<PgRunLock, Error> {
    let inner = &st.inner;
    let fresh = {
        let mut map = inner.held.lock().unwrap_or_else(|p| p.into_inner());
        !map.contains_key(pipeline) && map.insert(pipeline.to_owned(), None).is_none()
    };
    if !fresh {
        return Err(busy(pipeline, Some(format!("this process, pid {}", std::process::id()))));
    }
    let release = |e: Error| {
        inner.held.lock().unwrap_or_else(|p| p.into_inner()).remove(pipeline);
        e
    };
    let target = &inner.target;
    let mut config = target.config.clone();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    config.application_name(format!("dovetail pid {} on {}", std::process::id(), host.trim()));
    let (client, conn) =
        config.connect(inner.tls.clone()).await.map_err(|e| release(pg_err(target, "taking the run lock", e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let key = key(target.schema(), pipeline);
    let wait = format!("SET lock_timeout = '{}ms'", LOCK_WAIT.as_millis());
    client.batch_execute(&wait).await.map_err(|e| release(pg_err(target, "taking the run lock", e)))?;
    if let Err(e) = client.execute("SELECT pg_advisory_lock($1)", &[&key]).await {
        if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
            let holder = holder(&client, key).await;
            return Err(release(busy(pipeline, holder)));
        }
        return Err(release(pg_err(target, "taking the run lock", e)));
    }
    let client = Arc::new(client);
    inner.held.lock().unwrap_or_else(|p| p.into_inner()).insert(pipeline.to_owned(), Some(Arc::clone(&client)));
    Ok(PgRunLock { pipeline: pipeline.to_owned(), client: Some(client), held: Arc::clone(&inner.held) })
}

/// Who holds advisory lock `key`: the holder's `application_name` and address.
async fn holder(client: &tokio_postgres::Client, key: i64) -> Option<String> {
    let (hi, lo) = (((key as u64) >> 32) as i64, ((key as u64) & 0xffff_ffff) as i64);
    let row = client
        .query_opt(
            "SELECT a.application_name, coalesce(host(a.client_addr), 'local socket'), a.backend_start::text
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 AND l.objid::bigint = $2
               AND l.objsubid = 1",
            &[&hi, &lo],
        )
        .await
        .ok()??;
    let (app, addr, since): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    Some(format!("{app} from {addr}, since {since}"))
}
