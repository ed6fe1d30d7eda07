//! Stream leases for `dovetail worker` fleets ([`LeaseStore`]): `workers`, `leases`,
//! `lease_history` and `schedule_ticks` (migration 7).
//!
//! - **Claim**: one transaction takes the unit's row `FOR UPDATE SKIP LOCKED` (a row another
//!   worker is claiming, or a commit is fencing on, is skipped, never waited for), refuses a
//!   live lease, steps the epoch, sets `expires_at` from the server's clock, and writes a
//!   `claim` (or `takeover`, when an expired holder never released it) history row. It also
//!   takes the pipeline's run-lock key as a shared transaction lock: a `dovetail run` holding
//!   the pipeline makes the claim skip, and a run that takes the lock after it sees the lease.
//! - **Renew**: every heartbeat extends each held lease still at its epoch; one that is not
//!   (taken over after expiry) is reported lost and its streams stop.
//! - **Fencing**: the process remembers the epoch of every lease it holds, and every commit
//!   of a stream under one checks it in the commit's own transaction (crate::delivery);
//!   a refused commit writes a `fenced` history row.
//! - **Release** on a clean end records the schedule tick the run served (in `leases`
//!   and on the `release` history row).

use std::time::Duration;

use async_trait::async_trait;
use dovetail_core::Error;
use dovetail_core::lease::{FleetStatus, Lease, LeaseRow, LeaseStore, Takeover, WorkerInfo, WorkerRow};

use crate::PgState;

/// What the process holds: (pipeline, stream) → the lease covering the stream.
pub(crate) type Held = std::sync::Mutex<std::collections::HashMap<(String, String), Lease>>;

/// One history row's event.
const CLAIM: &str = "claim";
const TAKEOVER: &str = "takeover";
const RENEW: &str = "renew";
const RELEASE: &str = "release";
/// A commit refused by the fence.
pub(crate) const FENCED: &str = "fenced";

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl PgState {
    fn hold(&self, lease: &Lease) {
        let mut map = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        for s in &lease.streams {
            map.insert((lease.pipeline.clone(), s.clone()), lease.clone());
        }
    }

    fn drop_lease(&self, lease: &Lease) {
        let mut map = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, l| !(l.pipeline == lease.pipeline && l.unit == lease.unit));
    }

    /// The lease this process holds on `stream` of `pipeline`, which fences its commits.
    pub(crate) fn lease_of(&self, pipeline: &str, stream: &str) -> Option<Lease> {
        let map = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(pipeline.to_owned(), stream.to_owned())).cloned()
    }

    /// After a commit was refused by the fence: its history row and log event, and the error.
    pub(crate) async fn fenced(&self, lease: &Lease, stream: &str) -> Error {
        let mut holder = None;
        if let Ok(c) = self.conn().await {
            let _ = c
                .execute(
                    "INSERT INTO lease_history (pipeline, unit, event, holder, epoch) VALUES ($1, $2, $3, $4, $5)",
                    &[&lease.pipeline, &lease.unit, &FENCED, &lease.holder, &lease.epoch],
                )
                .await;
            holder = c
                .query_opt(
                    "SELECT holder FROM leases WHERE pipeline = $1 AND unit = $2",
                    &[&lease.pipeline, &lease.unit],
                )
                .await
                .ok()
                .flatten()
                .and_then(|r| r.get::<_, Option<String>>(0));
        }
        self.drop_lease(lease);
        tracing::warn!(
            event = FENCED,
            pipeline = %lease.pipeline,
            unit = %lease.unit,
            stream,
            worker = %lease.holder,
            epoch = lease.epoch,
            now_held_by = holder.as_deref().unwrap_or("nobody"),
            "fenced: a commit under a lost lease was refused"
        );
        dovetail_core::lease::fenced(&lease.pipeline, stream, lease.epoch, holder.as_deref())
    }

    /// A handle on the same store whose run lock of `pipeline` is refused only by a worker
    /// lease covering one of `streams` (empty: any stream), and fences out only those
    /// streams' expired leases: `reset`, `resume` and `dead-letters replay` of one stream
    /// work while workers run the pipeline's other streams.
    pub fn scoped_to_streams(&self, pipeline: &str, streams: &[String]) -> PgState {
        let mut scoped = self.clone();
        scoped.lock_scope =
            Some(std::sync::Arc::new(LockScope { pipeline: pipeline.to_owned(), streams: streams.to_vec() }));
        scoped
    }

    /// The streams whose leases refuse this handle's lock of `pipeline` (empty: all).
    pub(crate) fn lock_scope(&self, pipeline: &str) -> &[String] {
        match &self.lock_scope {
            Some(s) if s.pipeline == pipeline => &s.streams,
            _ => &[],
        }
    }

    /// For `dovetail run` (and the commands that change a stream's state) taking a
    /// pipeline's run lock: a live worker lease on one of `streams` (empty: any) refuses the
    /// lock (naming the worker); expired ones are fenced out (epoch stepped) so their stalled
    /// holders commit nothing after the lock is taken.
    pub(crate) async fn leases_before_run(&self, pipeline: &str, streams: &[String]) -> Result<(), Error> {
        let c = self.conn().await?;
        let streams = streams.to_vec();
        let live = c
            .query_opt(
                "SELECT holder, unit FROM leases WHERE pipeline = $1 AND holder IS NOT NULL
                   AND expires_at > clock_timestamp() AND (cardinality($2::text[]) = 0 OR streams && $2)
                 ORDER BY unit LIMIT 1",
                &[&pipeline, &streams],
            )
            .await
            .map_err(|e| self.err("reading the pipeline's worker leases", e))?;
        if let Some(row) = live {
            let (holder, unit): (String, String) = (row.get(0), row.get(1));
            return Err(Error::new(
                dovetail_core::ErrorKind::Busy,
                format!("pipeline `{pipeline}` is being run by workers: worker `{holder}` holds stream `{unit}`"),
            )
            .with_hint("stop the workers (SIGTERM) or let them finish; workers run pipelines with a schedule"));
        }
        c.execute(
            "WITH gone AS (
                UPDATE leases SET holder = NULL, expires_at = NULL, epoch = epoch + 1, previous_holder = holder
                WHERE pipeline = $1 AND holder IS NOT NULL AND expires_at <= clock_timestamp()
                  AND (cardinality($2::text[]) = 0 OR streams && $2)
                RETURNING unit, epoch, previous_holder)
             INSERT INTO lease_history (pipeline, unit, event, holder, epoch, previous_holder)
             SELECT $1, unit, 'takeover', 'dovetail run', epoch, previous_holder FROM gone",
            &[&pipeline, &streams],
        )
        .await
        .map_err(|e| self.err("fencing expired worker leases", e))?;
        Ok(())
    }
}

/// Which streams' leases refuse a run lock ([`PgState::scoped_to_streams`]).
#[derive(Debug)]
pub(crate) struct LockScope {
    pipeline: String,
    streams: Vec<String>,
}

#[async_trait]
impl LeaseStore for PgState {
    async fn register_worker(&self, w: &WorkerInfo) -> Result<(), Error> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO workers (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp())
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
               heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
            &[&w.id, &w.host, &i64::from(w.pid)],
        )
        .await
        .map_err(|e| self.err("registering the worker", e))?;
        Ok(())
    }

    async fn worker_stopped(&self, worker: &str) -> Result<(), Error> {
        let c = self.conn().await?;
        c.execute("UPDATE workers SET stopped_at = clock_timestamp() WHERE id = $1", &[&worker])
            .await
            .map_err(|e| self.err("marking the worker stopped", e))?;
        Ok(())
    }

    async fn claim(
        &self,
        worker: &str,
        pipeline: &str,
        unit: &str,
        streams: &[String],
        ttl: Duration,
        tick: Option<i64>,
    ) -> Result<Option<Lease>, Error> {
        let mut c = self.conn().await?;
        let err = |e| self.err("claiming a lease", e);
        c.execute(
            "INSERT INTO leases (pipeline, unit, streams) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&pipeline, &unit, &streams],
        )
        .await
        .map_err(err)?;
        let tx = c.transaction().await.map_err(err)?;
        let key = crate::lock::key(self.target().schema(), pipeline);
        let free: bool =
            tx.query_one("SELECT pg_try_advisory_xact_lock_shared($1)", &[&key]).await.map_err(err)?.get(0);
        if !free {
            return Ok(None);
        }
        let Some(row) = tx
            .query_opt(
                "SELECT holder, expires_at > clock_timestamp(), done_tick FROM leases
                 WHERE pipeline = $1 AND unit = $2 FOR UPDATE SKIP LOCKED",
                &[&pipeline, &unit],
            )
            .await
            .map_err(err)?
        else {
            return Ok(None);
        };
        let (was, live, done): (Option<String>, Option<bool>, Option<i64>) = (row.get(0), row.get(1), row.get(2));
        if was.is_some() && live == Some(true) {
            return Ok(None);
        }
        if let (Some(tick), Some(done)) = (tick, done)
            && done >= tick
            && was.is_none()
        {
            return Ok(None);
        }
        let epoch: i64 = tx
            .query_one(
                "UPDATE leases SET holder = $3, epoch = epoch + 1, streams = $4, acquired_at = clock_timestamp(),
                   expires_at = clock_timestamp() + $5::float8 * interval '1 millisecond', previous_holder = holder
                 WHERE pipeline = $1 AND unit = $2 RETURNING epoch",
                &[&pipeline, &unit, &worker, &streams, &millis(ttl)],
            )
            .await
            .map_err(err)?
            .get(0);
        let event = if was.is_some() { TAKEOVER } else { CLAIM };
        tx.execute(
            "INSERT INTO lease_history (pipeline, unit, event, holder, epoch, previous_holder) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&pipeline, &unit, &event, &worker, &epoch, &was],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        let lease = Lease {
            pipeline: pipeline.to_owned(),
            unit: unit.to_owned(),
            streams: streams.to_vec(),
            holder: worker.to_owned(),
            epoch,
            took_over_from: was.clone(),
        };
        self.hold(&lease);
        match &was {
            Some(from) => {
                tracing::warn!(event, pipeline, unit, worker, epoch, from = %from, "took over an expired lease")
            }
            None => tracing::info!(event, pipeline, unit, worker, epoch, "claimed a lease"),
        }
        Ok(Some(lease))
    }

    async fn due(&self, pipeline: &str, units: &[String], tick: i64) -> Result<Vec<String>, Error> {
        self.reconnecting("reading which units are due", || async {
            let c = self.conn().await?;
            let rows = c
                .query(
                    "SELECT u FROM unnest($2::text[]) AS u WHERE NOT EXISTS (
                       SELECT 1 FROM leases l WHERE l.pipeline = $1 AND l.unit = u
                         AND ((l.holder IS NOT NULL AND l.expires_at > clock_timestamp())
                              OR (l.holder IS NULL AND l.done_tick >= $3)))",
                    &[&pipeline, &units, &tick],
                )
                .await
                .map_err(|e| self.err("reading which units are due", e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
        .await
    }

    async fn renew(&self, worker: &str, held: &[Lease], ttl: Duration) -> Result<Vec<Lease>, Error> {
        let c = self.conn().await?;
        let err = |e| self.err("renewing leases", e);
        c.execute("UPDATE workers SET heartbeat_at = clock_timestamp() WHERE id = $1", &[&worker])
            .await
            .map_err(err)?;
        let mut lost = Vec::new();
        for l in held {
            let n = c
                .execute(
                    "WITH r AS (UPDATE leases SET expires_at = clock_timestamp() + $5::float8 * interval '1 millisecond'
                       WHERE pipeline = $1 AND unit = $2 AND holder = $3 AND epoch = $4 RETURNING 1)
                     INSERT INTO lease_history (pipeline, unit, event, holder, epoch) SELECT $1, $2, $6, $3, $4 FROM r",
                    &[&l.pipeline, &l.unit, &l.holder, &l.epoch, &millis(ttl), &RENEW],
                )
                .await
                .map_err(err)?;
            if n == 0 {
                tracing::warn!(event = "lost", pipeline = %l.pipeline, unit = %l.unit, worker, epoch = l.epoch, "lost a lease: another worker took it over");
                self.drop_lease(l);
                lost.push(l.clone());
            } else {
                tracing::debug!(event = RENEW, pipeline = %l.pipeline, unit = %l.unit, worker, epoch = l.epoch, "renewed a lease");
            }
        }
        Ok(lost)
    }

    async fn release(&self, l: &Lease, ran_tick: Option<i64>) -> Result<(), Error> {
        self.drop_lease(l);
        // Repeatable: a second try after a lost connection matches no row if the first landed.
        let n = self
            .reconnecting("releasing a lease", || async {
                let c = self.conn().await?;
                c.execute(
                    "WITH r AS (UPDATE leases SET holder = NULL, expires_at = NULL, done_tick = coalesce($5, done_tick)
                       WHERE pipeline = $1 AND unit = $2 AND holder = $3 AND epoch = $4 RETURNING 1)
                     INSERT INTO lease_history (pipeline, unit, event, holder, epoch, tick) SELECT $1, $2, $6, $3, $4, $5 FROM r",
                    &[&l.pipeline, &l.unit, &l.holder, &l.epoch, &ran_tick, &RELEASE],
                )
                .await
                .map_err(|e| self.err("releasing a lease", e))
            })
            .await?;
        if n > 0 {
            tracing::info!(event = RELEASE, pipeline = %l.pipeline, unit = %l.unit, worker = %l.holder, epoch = l.epoch, "released a lease");
        }
        Ok(())
    }

    async fn still_held(&self, l: &Lease) -> Result<bool, Error> {
        // A read: asked again on a new connection when the server went away meanwhile.
        self.reconnecting("checking a lease", || async {
            let c = self.conn().await?;
            let row = c
                .query_opt(
                    "SELECT 1 FROM leases WHERE pipeline = $1 AND unit = $2 AND holder = $3 AND epoch = $4",
                    &[&l.pipeline, &l.unit, &l.holder, &l.epoch],
                )
                .await
                .map_err(|e| self.err("checking a lease", e))?;
            Ok(row.is_some())
        })
        .await
    }

    async fn note_tick(&self, worker: &str, pipeline: &str, tick: i64) -> Result<bool, Error> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "INSERT INTO schedule_ticks (pipeline, tick, seen_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&pipeline, &tick, &worker],
            )
            .await
            .map_err(|e| self.err("recording a schedule tick", e))?;
        Ok(n == 1)
    }

    async fn leased_by(&self, pipeline: &str, streams: &[String]) -> Result<Option<String>, Error> {
        self.reconnecting("reading worker leases", || async {
            let c = self.conn().await?;
            let row = c
                .query_opt(
                    "SELECT holder FROM leases WHERE pipeline = $1 AND holder IS NOT NULL AND expires_at > clock_timestamp()
                       AND (cardinality($2::text[]) = 0 OR streams && $2) ORDER BY unit LIMIT 1",
                    &[&pipeline, &streams],
                )
                .await
                .map_err(|e| self.err("reading worker leases", e))?;
            Ok(row.map(|r| r.get(0)))
        })
        .await
    }

    async fn fleet(&self) -> Result<FleetStatus, Error> {
        let c = self.conn().await?;
        let err = |e| self.err("reading the fleet", e);
        let t = |col: &str| format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')");
        let workers = c
            .query(
                &format!(
                    "SELECT id, host, pid, {}, {} FROM workers ORDER BY heartbeat_at DESC",
                    t("heartbeat_at"),
                    t("stopped_at")
                ),
                &[],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| WorkerRow { id: r.get(0), host: r.get(1), pid: r.get(2), heartbeat: r.get(3), stopped: r.get(4) })
            .collect();
        let leases = c
            .query(
                &format!(
                    "SELECT pipeline, unit, holder, epoch, {}, holder IS NOT NULL AND expires_at <= clock_timestamp()
                     FROM leases ORDER BY pipeline, unit",
                    t("acquired_at")
                ),
                &[],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| LeaseRow {
                pipeline: r.get(0),
                unit: r.get(1),
                holder: r.get(2),
                epoch: r.get(3),
                since: r.get::<_, Option<String>>(2).and(r.get(4)),
                expired: r.get(5),
            })
            .collect();
        let takeovers = c
            .query(
                &format!(
                    "SELECT DISTINCT ON (pipeline, unit) pipeline, unit, holder, previous_holder, {}
                     FROM lease_history WHERE event = 'takeover' ORDER BY pipeline, unit, id DESC",
                    t("at")
                ),
                &[],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| Takeover { pipeline: r.get(0), unit: r.get(1), by: r.get(2), from: r.get(3), at: r.get(4) })
            .collect();
        Ok(FleetStatus { workers, leases, takeovers })
    }
}
