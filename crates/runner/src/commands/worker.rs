//! `dovetail worker`: one process of a fleet coordinated through PostgreSQL state.
//!
//! The worker claims due stream leases (a unit is one stream, with its REST child streams)
//! up to `--concurrency`, runs each from its last committed checkpoint under a lease fence
//! instead of the pipeline's run lock, renews its leases every `[workers] heartbeat`, and
//! releases each on a clean end with the schedule tick it served. A lease found lost at a
//! heartbeat stops its streams (their commits are refused by the fence anyway). SIGTERM
//! stops claiming, lets the running streams finish their batch in flight and commit,
//! releases, and exits 0. Only pipelines with `schedule` or `every` are run.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dovetail_core::lease::{Fence, Lease, LeaseStore, WorkerInfo};
use dovetail_core::{Error, RunOptions, RunOutcome, StateStore};
use dovetail_state_pg::PgState;
use tokio_util::sync::CancellationToken;
use toml::de::DeTable;

use crate::cli::WorkerArgs;
use crate::config::{self, PipelineSpec, WorkersConfig};
use crate::diag::{Doc, offset_of};

/// `[workers]` lease and heartbeat, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// How often leases are renewed.
    pub heartbeat: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { lease: Duration::from_secs(30), heartbeat: Duration::from_secs(10) }
    }
}

impl Timing {
    /// From `[workers]`; an error names the key and its line.
    pub fn from_config(doc: &Doc, root: &DeTable<'_>, c: Option<&WorkersConfig>) -> Result<Timing, Error> {
        let mut t = Timing::default();
        let Some(c) = c else { return Ok(t) };
        let at = |key: &str| offset_of(root, &["workers", key]);
        let parse = |key: &str, raw: &str| -> Result<Duration, Error> {
            let d: jiff::SignedDuration = raw.trim().parse().map_err(|e| {
                doc.error(at(key), format!("`workers.{key}` `{raw}` is not a duration like `30s` or `500ms` ({e})"))
            })?;
            Duration::try_from(d).map_err(|_| doc.error(at(key), format!("`workers.{key}` `{raw}` is negative")))
        };
        if let Some(l) = &c.lease {
            t.lease = parse("lease", l)?;
        }
        if let Some(h) = &c.heartbeat {
            t.heartbeat = parse("heartbeat", h)?;
        }
        if t.lease < Duration::from_secs(1) {
            return Err(doc.error(at("lease"), "`workers.lease` must be at least 1s"));
        }
        if t.heartbeat < Duration::from_millis(100) || t.heartbeat * 2 >= t.lease {
            return Err(doc.error(
                at("heartbeat"),
                format!(
                    "`workers.heartbeat` must be at least 100ms and less than half of `workers.lease` ({}), so a live \
                     worker renews twice before its lease can expire",
                    jiff::SignedDuration::try_from(t.lease).map(|d| format!("{d:#}")).unwrap_or_default()
                ),
            ));
        }
        Ok(t)
    }
}

/// Run a worker until SIGTERM / ctrl-c.
pub async fn run(config_path: &Path, args: &WorkerArgs) -> anyhow::Result<i32> {
    if let Some(addr) = &args.metrics_addr {
        crate::metrics::serve(addr).await?;
    }
    let project = config::load(config_path)?;
    let Some(pg) = crate::stores::postgres_at(&project.state_path) else {
        return Err(project
            .doc
            .error_nowhere(format!(
                "`dovetail worker` needs PostgreSQL state: workers share leases, fencing and schedule ticks through it, \
                 and this config keeps SQLite state at `{}`, which one process uses at a time",
                project.state_path.display()
            ))
            .with_hint("set `[state] url = \"postgres://…\"` for a fleet, or run one process with `dovetail run --every`")
            .into());
    };
    let timing = project.workers;
    let specs: Vec<Arc<PipelineSpec>> =
        project.pipelines.into_iter().filter(|p| p.schedule.is_some()).map(Arc::new).collect();
    if specs.is_empty() {
        return Err(project
            .doc
            .error_nowhere("no pipeline has `schedule` or `every`: a worker runs only scheduled pipelines")
            .into());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
    let id = args.id.clone().unwrap_or_else(|| format!("{host}-{}", std::process::id()));
    pg.register_worker(&WorkerInfo { id: id.clone(), host, pid: std::process::id() }).await?;
    let fleet = Fleet {
        state: Arc::new(pg.clone()),
        pg,
        id,
        timing,
        concurrency: usize::from(args.concurrency),
        specs,
        running: Vec::new(),
        noted: HashMap::new(),
    };
    Ok(fleet.run(super::cancel_on_signal()).await)
}

/// One unit this worker runs.
struct Running {
    lease: Lease,
    tick: i64,
    stop: CancellationToken,
    /// Ends with whether the run served its tick (an interrupted run did not: the unit
    /// stays due and the next claimer resumes it from its checkpoint).
    task: tokio::task::JoinHandle<bool>,
    lost: bool,
}

struct Fleet {
    pg: PgState,
    state: Arc<dyn StateStore>,
    id: String,
    timing: Timing,
    concurrency: usize,
    specs: Vec<Arc<PipelineSpec>>,
    running: Vec<Running>,
    /// The last tick noted per pipeline (each is recorded once per worker).
    noted: HashMap<String, i64>,
}

impl Fleet {
    async fn run(mut self, cancel: CancellationToken) -> i32 {
        // `/readyz`: the state answers, and this loop turned within two heartbeats (it wakes
        // at least once a heartbeat; one that hangs or has stopped makes the worker unready).
        super::run::register_state_check(&self.state);
        let alive =
            crate::health::readiness().heartbeat("lease_loop", self.timing.heartbeat * 2 + Duration::from_secs(1));
        tracing::info!(worker = %self.id, concurrency = self.concurrency, pipelines = self.specs.len(), "worker started");
        let mut beat = tokio::time::interval(self.timing.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(self.timing.heartbeat.min(Duration::from_secs(1)));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut draining = false;
        loop {
            alive.beat();
            self.reap().await;
            if cancel.is_cancelled() && !draining {
                draining = true;
                tracing::info!(worker = %self.id, running = self.running.len(), "stopping: finishing the batches in flight, committing and releasing");
                for r in &self.running {
                    r.stop.cancel();
                }
            }
            if draining && self.running.is_empty() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled(), if !draining => {}
                // A finished unit frees a slot: claim at once instead of idling to the next
                // poll tick (0.6 s a stream on average in bench-fleet).
                _ = done_rx.recv() => {
                    self.reap().await;
                    if !draining {
                        self.claim_due(&done_tx).await;
                    }
                }
                _ = beat.tick() => self.renew().await,
                _ = poll.tick(), if !draining => self.claim_due(&done_tx).await,
            }
        }
        if let Err(e) = self.pg.worker_stopped(&self.id).await {
            tracing::warn!(worker = %self.id, error = %e.report(), "could not mark the worker stopped");
        }
        crate::health::readiness().register(
            "lease_loop",
            Arc::new(|| Box::pin(async { Err("the worker's lease loop has stopped".to_owned()) })),
        );
        tracing::info!(worker = %self.id, "worker stopped");
        0
    }

    /// Release the units whose run ended (a lost lease is not released: it is another's).
    async fn reap(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if !self.running[i].task.is_finished() {
                i += 1;
                continue;
            }
            let r = self.running.swap_remove(i);
            let served = r.task.await.unwrap_or(true);
            let held = !r.lost && self.pg.still_held(&r.lease).await.unwrap_or(true);
            if !held {
                tracing::warn!(event = "lost", worker = %self.id, pipeline = %r.lease.pipeline, unit = %r.lease.unit, "the unit's lease was lost; another worker holds it");
                continue;
            }
            if let Err(e) = self.pg.release(&r.lease, served.then_some(r.tick)).await {
                tracing::warn!(worker = %self.id, pipeline = %r.lease.pipeline, unit = %r.lease.unit, error = %e.report(), "could not release a lease; it expires instead");
            }
            metrics::counter!("dovetail_worker_lease_events_total", "event" => "release").increment(1);
        }
        metrics::gauge!("dovetail_worker_leases_held").set(self.running.len() as f64);
    }

    async fn renew(&mut self) {
        let held: Vec<Lease> = self.running.iter().filter(|r| !r.lost).map(|r| r.lease.clone()).collect();
        match self.pg.renew(&self.id, &held, self.timing.lease).await {
            Ok(lost) => {
                for l in lost {
                    metrics::counter!("dovetail_worker_lease_events_total", "event" => "lost").increment(1);
                    for r in
                        self.running.iter_mut().filter(|r| r.lease.pipeline == l.pipeline && r.lease.unit == l.unit)
                    {
                        r.lost = true;
                        r.stop.cancel();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e.report(), "could not renew leases; retrying at the next heartbeat")
            }
        }
    }

    /// Claim due units, up to the concurrency, starting at a different pipeline each time so
    /// workers polling together spread over the fleet's work.
    async fn claim_due(&mut self, done: &tokio::sync::mpsc::UnboundedSender<()>) {
        let now = jiff::Timestamp::now();
        let n = self.specs.len();
        let start = usize::try_from(now.subsec_nanosecond()).unwrap_or(0) % n;
        for k in 0..n {
            if self.running.len() >= self.concurrency {
                return;
            }
            let spec = self.specs[(start + k) % n].clone();
            let Some(tick) = spec.schedule.as_ref().and_then(|s| s.latest_tick(now)) else { continue };
            if self.noted.get(&spec.name) != Some(&tick) {
                match self.pg.note_tick(&self.id, &spec.name, tick).await {
                    Ok(first) => {
                        if first {
                            tracing::info!(event = "tick", worker = %self.id, pipeline = %spec.name, tick, "schedule tick");
                        }
                        self.noted.insert(spec.name.clone(), tick);
                    }
                    Err(e) => {
                        tracing::warn!(worker = %self.id, error = %e.report(), "cannot reach the state; claiming later");
                        return;
                    }
                }
            }
            let mut units = units(&spec);
            units.retain(|(u, _)| !self.running.iter().any(|r| r.lease.pipeline == spec.name && &r.lease.unit == u));
            let names: Vec<String> = units.iter().map(|(u, _)| u.clone()).collect();
            let due = match self.pg.due(&spec.name, &names, tick).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(worker = %self.id, error = %e.report(), "cannot reach the state; claiming later");
                    return;
                }
            };
            for (unit, streams) in units.into_iter().filter(|(u, _)| due.contains(u)) {
                if self.running.len() >= self.concurrency {
                    return;
                }
                match self.pg.claim(&self.id, &spec.name, &unit, &streams, self.timing.lease, Some(tick)).await {
                    Ok(Some(lease)) => self.start(spec.clone(), lease, tick, done.clone()),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(worker = %self.id, pipeline = %spec.name, unit, error = %e.report(), "could not claim a lease")
                    }
                }
            }
        }
    }

    fn start(
        &mut self,
        spec: Arc<PipelineSpec>,
        lease: Lease,
        tick: i64,
        done: tokio::sync::mpsc::UnboundedSender<()>,
    ) {
        let event = if lease.took_over_from.is_some() { "takeover" } else { "claim" };
        metrics::counter!("dovetail_worker_lease_events_total", "event" => event).increment(1);
        let stop = CancellationToken::new();
        let fence: Arc<dyn Fence> = Arc::new(LeaseFence { pg: self.pg.clone(), lease: lease.clone() });
        let opts = RunOptions {
            streams: lease.streams.clone(),
            cancel: stop.clone(),
            fence: Some(fence),
            ..Default::default()
        };
        let (state, worker, unit) = (self.state.clone(), self.id.clone(), lease.unit.clone());
        let task = tokio::spawn(async move {
            crate::metrics::in_progress(&spec.name, true);
            let mut served = true;
            match spec.build(state) {
                Ok(p) => match p.run(opts).await {
                    Ok(report) => {
                        served = report.outcome != RunOutcome::Interrupted;
                        crate::metrics::run_finished(&report);
                        let level_ok = report.outcome == RunOutcome::Succeeded;
                        let read: u64 = report.total(|s| s.read);
                        let written: u64 = report.total(|s| s.written);
                        if level_ok {
                            tracing::info!(worker, pipeline = %spec.name, unit, read, written, outcome = %report.outcome, "unit run finished");
                        } else {
                            tracing::warn!(worker, pipeline = %spec.name, unit, read, written, outcome = %report.outcome, error = report.error.as_deref().unwrap_or(""), "unit run finished");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(worker, pipeline = %spec.name, unit, error = %e.report(), "unit run did not start")
                    }
                },
                Err(e) => {
                    tracing::error!(worker, pipeline = %spec.name, error = %e.report(), "cannot build the pipeline")
                }
            }
            crate::metrics::in_progress(&spec.name, false);
            let _ = done.send(());
            served
        });
        self.running.push(Running { lease, tick, stop, task, lost: false });
    }
}

/// A pipeline's lease units: each stream without a parent, with the child streams under it
/// (at any depth), in the source's order.
pub fn units(spec: &PipelineSpec) -> Vec<(String, Vec<String>)> {
    let names = spec.stream_names();
    let root = |s: &String| {
        let mut s = s.clone();
        // Bounded: a parent cycle (refused by the REST source) cannot loop here.
        for _ in 0..names.len() {
            match spec.parents.get(&s) {
                Some(p) => s = p.clone(),
                None => break,
            }
        }
        s
    };
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for n in &names {
        let r = root(n);
        if !order.contains(&r) {
            order.push(r.clone());
        }
        out.entry(r).or_default().push(n.clone());
    }
    let mut by: HashMap<String, Vec<String>> = out.into_iter().collect();
    order.into_iter().filter_map(|r| by.remove(&r).map(|s| (r, s))).collect()
}

/// The check before each sink write of a leased unit (sinks that cannot fence in their own
/// transaction), and the epoch a sink may store with its rows.
struct LeaseFence {
    pg: PgState,
    lease: Lease,
}

#[async_trait]
impl Fence for LeaseFence {
    async fn check(&self, pipeline: &str, stream: &str) -> Result<(), Error> {
        if self.pg.still_held(&self.lease).await? {
            return Ok(());
        }
        let holder = self.pg.leased_by(pipeline, std::slice::from_ref(&stream.to_owned())).await.ok().flatten();
        Err(dovetail_core::lease::fenced(pipeline, stream, self.lease.epoch, holder.as_deref()))
    }

    fn epoch(&self, _stream: &str) -> Option<i64> {
        Some(self.lease.epoch)
    }
}
