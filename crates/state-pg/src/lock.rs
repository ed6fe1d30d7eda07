//! The run lock across machines: a session advisory lock held on a connection of its own.
//!
//! PostgreSQL releases a session lock when its connection ends, so a run killed by
//! `SIGKILL` (its socket closed by the kernel) or on a host that vanished (the server's TCP
//! keepalive ends the session) never blocks the next run, and no lease has to be guessed.
//! The lock's connection carries `application_name` = `dovetail pid N on HOST`, so a
//! refusal names the holder (from `pg_stat_activity`). Taking it waits up to
//! [`LOCK_WAIT`] on the server (a just-dropped holder's connection may still be closing),
//! then refuses with a Busy error. The same process refuses a second holder at once.
//!
//! **Losing it**: when the lock's connection ends mid-run (PostgreSQL restarted, the backend
//! terminated, the network cut), the next commit first takes the lock again on a new
//! connection, waiting up to [`crate::RECONNECT_FOR`] for the server, and checks in
//! `run_locks` that no other run took it meanwhile (each taking writes a fresh holder token
//! there). Only then does it commit; every commit of a holder also checks the token inside
//! its transaction. Another holder, or no server within the window, stops the run
//! (Unavailable, exit 7): the lock may be another host's by then.

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

/// A taken lock: its connection and the holder token written to `run_locks`.
#[derive(Clone)]
pub(crate) struct LockConn {
    client: Arc<tokio_postgres::Client>,
    pub(crate) token: String, // tidy: not-secret (a holder id, not a credential)
}

/// The run locks a store holds: pipeline → the lock's connection (`None` while taking it).
pub(crate) type Held = Arc<Mutex<HashMap<String, Option<LockConn>>>>;

/// `pipeline`'s lock as this process holds it: `None` when it does not hold it, else the
/// holder token and whether the lock's connection has ended since.
pub(crate) fn state(held: &Held, pipeline: &str) -> Option<(String, bool)> {
    let map = held.lock().unwrap_or_else(|p| p.into_inner());
    map.get(pipeline).and_then(Option::as_ref).map(|l| (l.token.clone(), l.client.is_closed()))
}

/// A held run lock (dropping it ends the session and releases the lock).
pub struct PgRunLock {
    pipeline: String,
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
        state(&self.held, &self.pipeline).is_some_and(|(_, closed)| !closed)
    }
}

impl Drop for PgRunLock {
    fn drop(&mut self) {
        let taken = self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.pipeline).flatten();
        if let Some(LockConn { client, .. }) = taken {
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
    let token = new_token();
    match acquire(st, pipeline, &token, None).await {
        Ok(client) => {
            let taken = LockConn { client, token };
            inner.held.lock().unwrap_or_else(|p| p.into_inner()).insert(pipeline.to_owned(), Some(taken));
            Ok(PgRunLock { pipeline: pipeline.to_owned(), held: Arc::clone(&inner.held) })
        }
        Err(e) => {
            inner.held.lock().unwrap_or_else(|p| p.into_inner()).remove(pipeline);
            Err(e)
        }
    }
}

/// After the lock's connection of `pipeline` ended: take the lock again and check no other
/// run held it meanwhile (see the module docs). `Ok` when this process holds it again.
pub(crate) async fn retake(st: &PgState, pipeline: &str, token: &str) -> Result<(), Error> {
    let client = acquire(st, pipeline, token, Some(token)).await?;
    let mut map = st.inner.held.lock().unwrap_or_else(|p| p.into_inner());
    // The guard may have been dropped meanwhile: then the new connection just goes.
    if let Some(slot @ Some(_)) = map.get_mut(pipeline) {
        *slot = Some(LockConn { client, token: token.to_owned() });
    }
    Ok(())
}

/// A new connection holding `pipeline`'s advisory lock, with `token` written as the holder.
/// `was`: the token this process held before losing the connection; the lock is refused
/// when `run_locks` names another holder (another run took it meanwhile).
async fn acquire(
    st: &PgState,
    pipeline: &str,
    token: &str,
    was: Option<&str>,
) -> Result<Arc<tokio_postgres::Client>, Error> {
    let target = &st.inner.target;
    let mut config = target.config.clone();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    config.application_name(format!("dovetail pid {} on {}", std::process::id(), host.trim()));
    let (client, conn) =
        config.connect(st.inner.tls.clone()).await.map_err(|e| pg_err(target, "taking the run lock", e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let key = key(target.schema(), pipeline);
    let wait = format!("SET lock_timeout = '{}ms'", LOCK_WAIT.as_millis());
    client.batch_execute(&wait).await.map_err(|e| pg_err(target, "taking the run lock", e))?;
    if let Err(e) = client.execute("SELECT pg_advisory_lock($1)", &[&key]).await {
        if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
            let holder = holder(&client, key).await;
            return Err(match was {
                Some(_) => taken_over(st, pipeline, holder),
                None => busy(pipeline, holder),
            });
        }
        return Err(pg_err(target, "taking the run lock", e));
    }
    if let Some(was) = was {
        let row = client
            .query_opt("SELECT holder FROM run_locks WHERE pipeline = $1", &[&pipeline])
            .await
            .map_err(|e| pg_err(target, "checking the run lock's holder", e))?;
        if row.map(|r| r.get::<_, String>(0)).as_deref() != Some(was) {
            return Err(taken_over(st, pipeline, Some("another run, since finished".into())));
        }
    }
    client
        .execute(
            "INSERT INTO run_locks (pipeline, holder, taken_at) VALUES ($1, $2, $3)
             ON CONFLICT (pipeline) DO UPDATE SET holder = excluded.holder, taken_at = excluded.taken_at",
            &[&pipeline, &token, &dovetail_core::now_rfc3339()],
        )
        .await
        .map_err(|e| pg_err(target, "recording the run lock's holder", e))?;
    Ok(Arc::new(client))
}

/// The lock of a running pipeline was lost and is, or was meanwhile, another run's.
pub(crate) fn taken_over(st: &PgState, pipeline: &str, holder: Option<String>) -> Error {
    let who = holder.map(|h| format!(" (held by {h})")).unwrap_or_default();
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "state store: lost the connection holding the run lock of `{pipeline}` to PostgreSQL at {}, and another \
             run took the lock meanwhile{who}; stopped committing",
            st.inner.target.place()
        ),
    )
    .with_hint(
        "nothing after the last checkpoint was committed; run again once the other run is done, it resumes from there",
    )
}

/// A holder token: unique per taking (pid, host, time, a counter).
pub(crate) fn new_token() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{}@{}:{t:x}:{n}", std::process::id(), host.trim())
}

/// Who holds advisory lock `key` in this database (advisory locks are per database; the
/// same pipeline in another database is another lock): `application_name` and address.
pub(crate) async fn holder(client: &tokio_postgres::Client, key: i64) -> Option<String> {
    let (hi, lo) = (((key as u64) >> 32) as i64, ((key as u64) & 0xffff_ffff) as i64);
    let row = client
        .query_opt(
            "SELECT a.application_name, coalesce(host(a.client_addr), 'local socket'), a.backend_start::text
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 AND l.objid::bigint = $2
               AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&hi, &lo],
        )
        .await
        .ok()??;
    let (app, addr, since): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    Some(format!("{app} from {addr}, since {since}"))
}
