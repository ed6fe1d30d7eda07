//! Stream leases for a fleet of workers (`dovetail worker`): what a state backend that can
//! coordinate several processes offers, named without any database.
//!
//! The unit of work is a lease on one stream of a pipeline (a REST child stream rides on its
//! parent's lease: the unit lists every stream it covers). Claiming a unit increments its
//! epoch; the backend fences every commit of a stream under a lease held by this process
//! with that epoch, in the commit's own transaction, so a worker that stalled past its
//! lease and was taken over commits nothing. SQLite state does not implement this.

use std::time::Duration;

use async_trait::async_trait;

use crate::Error;

/// A lease this process holds: its unit, the streams it covers and the epoch fencing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The pipeline.
    pub pipeline: String,
    /// The unit's name: its (root) stream.
    pub unit: String,
    /// The streams the lease covers (the unit's stream and its child streams).
    pub streams: Vec<String>,
    /// The worker holding it.
    pub holder: String,
    /// Incremented on every claim; commits under the lease carry it.
    pub epoch: i64,
    /// The worker that held the unit before, when this claim took an expired lease over.
    pub took_over_from: Option<String>,
}

/// A worker as it registers itself.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// The worker's id (`--id`, default host and pid).
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

/// What `dovetail status` shows of a fleet.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FleetStatus {
    /// Registered workers, newest heartbeat first.
    pub workers: Vec<WorkerRow>,
    /// Every unit's lease.
    pub leases: Vec<LeaseRow>,
    /// The last takeover of each unit that had one.
    pub takeovers: Vec<Takeover>,
}

/// A registered worker.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerRow {
    /// Id.
    pub id: String,
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// Last heartbeat (RFC 3339).
    pub heartbeat: String,
    /// When it stopped cleanly (`None`: running, or died).
    pub stopped: Option<String>,
}

/// One unit's lease.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaseRow {
    /// Pipeline.
    pub pipeline: String,
    /// Unit (its root stream).
    pub unit: String,
    /// Holder (`None`: free).
    pub holder: Option<String>,
    /// Epoch.
    pub epoch: i64,
    /// Since when the holder has it.
    pub since: Option<String>,
    /// Whether it expired without being released (its holder stalled or died).
    pub expired: bool,
}

/// A lease taken over after expiry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Takeover {
    /// Pipeline.
    pub pipeline: String,
    /// Unit.
    pub unit: String,
    /// The worker that took it.
    pub by: String,
    /// The worker whose lease expired.
    pub from: Option<String>,
    /// When.
    pub at: String,
}

/// Why a commit or a write under a lease was refused: another worker holds the unit now.
pub fn fenced(pipeline: &str, stream: &str, epoch: i64, holder: Option<&str>) -> Error {
    let who = holder.map(|h| format!(" (now held by worker `{h}`)")).unwrap_or_default();
    Error::new(
        crate::ErrorKind::Busy,
        format!("fenced: the lease on stream `{stream}` of pipeline `{pipeline}` (epoch {epoch}) was lost{who}"),
    )
    .with_hint("another worker took the stream over after this one stalled past its lease; nothing of this batch was committed")
}

/// Leases, heartbeats and schedule ticks in a shared state backend.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Register (or re-register) a worker and set its heartbeat.
    async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), Error>;
    /// A clean stop: the worker is marked stopped (its leases are released separately).
    async fn worker_stopped(&self, worker: &str) -> Result<(), Error>;
    /// Claim `unit` of `pipeline` for `worker` for `ttl` when it is free, expired, or its
    /// last finished tick is before `tick` (`None`: no tick check). `None` when another
    /// worker holds it, the unit already ran for `tick`, or a `dovetail run` holds the
    /// pipeline. Commits of the unit's streams are fenced with the new epoch from now on.
    async fn claim(
        &self,
        worker: &str,
        pipeline: &str,
        unit: &str,
        streams: &[String],
        ttl: Duration,
        tick: Option<i64>,
    ) -> Result<Option<Lease>, Error>;
    /// Of `units` of `pipeline`, those a claim for `tick` might get (free and not yet run
    /// for it, expired, or never claimed): one read, so a poll claims only where it can.
    async fn due(&self, pipeline: &str, units: &[String], tick: i64) -> Result<Vec<String>, Error>;
    /// Extend every lease `worker` holds by `ttl` and beat its heartbeat; returns the leases
    /// it no longer holds (taken over after expiry): their streams must stop.
    async fn renew(&self, worker: &str, held: &[Lease], ttl: Duration) -> Result<Vec<Lease>, Error>;
    /// Release a lease (a clean end of the unit's run); `ran_tick` records the schedule tick
    /// the run served, so the unit is not due again before the next one.
    async fn release(&self, lease: &Lease, ran_tick: Option<i64>) -> Result<(), Error>;
    /// Whether the lease is still this holder's at this epoch (checked before each write of a
    /// sink that cannot fence in its own transaction).
    async fn still_held(&self, lease: &Lease) -> Result<bool, Error>;
    /// Record that `worker` saw `tick` (unix seconds) of `pipeline`: `true` for the first
    /// worker across the fleet to see it.
    async fn note_tick(&self, worker: &str, pipeline: &str, tick: i64) -> Result<bool, Error>;
    /// The worker holding a live lease on one of `streams` of `pipeline` (all streams when
    /// empty), for refusing `reset`, `resume` and `dead-letters replay`.
    async fn leased_by(&self, pipeline: &str, streams: &[String]) -> Result<Option<String>, Error>;
    /// Workers, leases and takeovers, for `dovetail status`.
    async fn fleet(&self) -> Result<FleetStatus, Error>;
}

/// Checked before each sink write of a leased stream (see [`LeaseStore::still_held`]).
#[async_trait]
pub trait Fence: Send + Sync {
    /// `Err` (a [`fenced`] error) when the stream's lease is no longer this process's.
    async fn check(&self, pipeline: &str, stream: &str) -> Result<(), Error>;
    /// The lease epoch of a stream, for a sink that stores it with its rows.
    fn epoch(&self, stream: &str) -> Option<i64>;
}

impl std::fmt::Debug for dyn Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}
