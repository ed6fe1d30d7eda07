//! One stream's run: a reader task, a mapper task and a writer loop joined by bounded channels.
//!
//! The writer is the only place that commits: it writes a batch to the sink, then commits the
//! ledger, dead letters and the checkpoint computed for that batch in one state transaction.
//! So a checkpoint never runs ahead of what the sink acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::cursor::{admit, starting_checkpoint};
use super::explain::{Ctx, Trail};
use super::prepare::{Prepared, Preparer};
use super::{Shared, StreamOptions};
use crate::connector::{Cx, Next, ReadRequest, SinkStream};
use crate::error::{Error, ErrorKind};
use crate::failpoint;
use crate::record::Key;
use crate::report::{RunOutcome, StreamReport};
use crate::state::{Checkpoint, Commit, CursorState, DeadLetter, PauseKind};
use crate::stream::{DeleteMode, OnUnavailable, StreamSpec, SyncMode};

mod write;

/// A mapped batch on its way to the writer, with the checkpoint that becomes true once it is written.
struct MappedBatch {
    to_write: Vec<Prepared>,
    /// Keys to stamp with the current pass (read unchanged, or dead-lettered with a key).
    unchanged: Vec<Key>,
    skipped: u64,
    dead: Vec<DeadLetter>,
    checkpoint: Checkpoint,
    read: u64,
    filtered: u64,
    mapped: u64,
    done: bool,
    /// Pages that came from the last good responses (`use_cache`).
    stale: u64,
    trail: Trail,
}

impl MappedBatch {
    /// Records in the batch, whatever becomes of them.
    fn size(&self) -> usize {
        self.to_write.len() + self.unchanged.len() + self.dead.len() + self.filtered as usize
    }

    /// Append a later batch: its records, its counts, and its (later) checkpoint.
    fn absorb(&mut self, later: MappedBatch) {
        self.to_write.extend(later.to_write);
        self.unchanged.extend(later.unchanged);
        self.skipped += later.skipped;
        self.dead.extend(later.dead);
        self.checkpoint = later.checkpoint;
        self.read += later.read;
        self.filtered += later.filtered;
        self.mapped += later.mapped;
        self.done = later.done;
        self.stale += later.stale;
        self.trail.absorb(later.trail);
    }
}

/// Counters kept by the tasks, merged into the report at the end.
#[derive(Default)]
pub(super) struct Timings {
    pub(super) read: u128,
    pub(super) map: u128,
    pub(super) ledger: u128,
    pub(super) write: u128,
    pub(super) commit: u128,
}

pub(crate) struct StreamRun {
    pub shared: Arc<Shared>,
    pub spec: StreamSpec,
    pub opts: StreamOptions,
    pub dry_run: bool,
    pub from: Option<Value>,
    pub progress: Option<Arc<dyn super::Progress>>,
    pub cx: Cx,
    pub run_id: i64,
}

impl StreamRun {
    pub(crate) fn key_columns(&self) -> Result<Vec<String>, Error> {
        super::explain::key_columns(&self.spec, &self.opts)
    }

    /// Run the stream to the end of its pass, an error, or cancellation.
    pub async fn run(self) -> (StreamReport, Option<Error>) {
        let mut report = StreamReport::default();
        // A pause for anything but an outage (drift) holds until an operator lifts it.
        let held = match self.shared.state.paused(Some(&self.shared.name)).await {
            Ok(p) => p.into_iter().find(|p| p.stream == self.spec.name),
            Err(e) => return (StreamReport { outcome: RunOutcome::Failed, ..report }, Some(e)),
        };
        if let Some(p) = held.as_ref().filter(|p| p.kind != PauseKind::Unavailable) {
            info!(stream = %self.spec.name, kind = %p.kind, since = %p.since, "stream is paused; `dovetail resume` lifts it");
            report.outcome = RunOutcome::Paused;
            report.paused = Some(format!("paused since {} ({}): {}", p.since, p.kind, p.reason));
            // Still paused is still not current: the run says so (outcome `paused`, the
            // cause's exit code) and what lifts it, every run until someone does.
            let (pipeline, stream) = (&self.shared.name, &self.spec.name);
            let (kind, hint) = match p.kind {
                PauseKind::Drift => (
                    ErrorKind::Data,
                    format!(
                        "review the drift with `dovetail drift --pipeline {pipeline}`, then `dovetail drift accept {pipeline} {stream}` (or fix the policy) and run again"
                    ),
                ),
                _ => (ErrorKind::Permanent, format!("`dovetail resume {pipeline} {stream}` lifts the pause")),
            };
            let err = Error::new(kind, format!("the stream is paused since {} ({}): {}", p.since, p.kind, p.reason))
                .with_hint(hint)
                .in_pipeline(pipeline)
                .in_stream(stream);
            return (report, Some(err));
        }
        if let Some(p) = &held {
            info!(stream = %self.spec.name, since = %p.since, "stream was paused by an outage; probing the remote");
        }
        if let Some(p) = &self.progress {
            p.started(&self.spec.name);
        }
        let mut err = self.run_inner(&mut report).await.err();
        if !self.dry_run {
            err = self.apply_outage_policy(err, &mut report).await;
        }
        report.outcome = match &err {
            _ if report.paused.is_some() => RunOutcome::Paused,
            Some(e) if *e.kind() == ErrorKind::Interrupted => RunOutcome::Interrupted,
            Some(_) => RunOutcome::Failed,
            None => RunOutcome::Succeeded,
        };
        report.error = err.as_ref().filter(|e| *e.kind() != ErrorKind::Interrupted).map(|e| e.report());
        if let Some(p) = &self.progress {
            p.finished(&self.spec.name, &report);
        }
        let err = err.map(|e| e.in_pipeline(&self.shared.name).in_stream(&self.spec.name));
        (report, err)
    }

    async fn run_inner(&self, report: &mut StreamReport) -> Result<(), Error> {
        let sh = &self.shared;
        let name = self.spec.name.clone();
        let incremental = self.opts.sync_mode == SyncMode::Incremental;
        let delete_mode = if incremental { DeleteMode::Keep } else { self.opts.delete_mode };
        if incremental && self.opts.delete_mode != DeleteMode::Keep {
            return Err(Error::config(format!("stream `{name}`: `delete` needs `sync_mode = \"full_refresh\"`")));
        }
        let cursor_field = if incremental { self.spec.cursor_field.clone() } else { None };
        let key_columns = self.key_columns()?;
        let xcx = Arc::new(Ctx::new(self.run_id, sh.explain, self.opts.mapping.as_ref(), &key_columns));
        let sink_stream =
            Arc::new(SinkStream { name: name.clone(), key_columns: key_columns.clone(), schema: None, delete_mode });
        if !self.dry_run {
            self.open_sink(&sink_stream).await?;
        }
        let prev = sh.state.checkpoint(&sh.name, &name).await?;
        let mut start = starting_checkpoint(prev, incremental);
        if let (Some(from), Some(field)) = (&self.from, &cursor_field) {
            info!(stream = %name, from = %from, cursor = %field, "backfilling from a cursor value");
            start = Checkpoint {
                position: None,
                pass: start.pass + u64::from(!start.pass_complete),
                floor: Some(CursorState { value: from.clone(), keys: vec![] }),
                max: start.max,
                pass_complete: true,
            };
        }
        report.resumed = !start.pass_complete && start.position.is_some();
        if report.resumed {
            let position = start.position.as_ref().map(crate::record::canonical_json).unwrap_or_default();
            info!(stream = %name, pass = start.pass, %position, "resuming from checkpoint");
        }
        let mut cp = start.clone();
        cp.pass_complete = false;
        let mut t = Timings::default();
        // Records queued while the sink was down go first, in order.
        let mut sink_down =
            if self.dry_run { None } else { self.drain_outbox(&sink_stream, cp.pass, report, &mut t).await? };
        let mut outbox_room = sh.outbox_max.saturating_sub(sh.state.outbox_len(&sh.name, &name).await?);
        // The schema a stream starts with (declared, else inferred from its first page)
        // becomes its stored baseline; drift is measured against the stored one.
        let mut baseline = sh.state.baseline(&sh.name, &name).await?;
        if baseline.is_none()
            && let Some(declared) = &self.spec.schema
            && !self.dry_run
        {
            sh.state.save_baseline(&sh.name, &name, declared).await?;
            baseline = Some(declared.clone());
        }
        // Initial load: with an empty ledger (and the run lock held) no key can be known, so
        // the per-batch lookups are skipped. A key repeated within this run is then written
        // twice — an idempotent upsert — instead of being counted unchanged the second time.
        let ledger_known = sh.state.has_ledger(&sh.name, &name).await?;

        // With a lookback, the source is asked for a margin before the floor and that margin
        // passes the cursor filter: the ledger decides what is new.
        let lookback_floor = match (&cursor_field, &cp.floor, self.spec.lookback) {
            (Some(_), Some(floor), Some(d)) => {
                let low = crate::record::cursor_minus(&floor.value, d);
                if low.is_none() {
                    warn!(stream = %name, cursor = %floor.value, "lookback needs an RFC 3339 or integer cursor; reading from the cursor itself");
                }
                low
            }
            _ => None,
        };
        let (page_tx, mut page_rx) = mpsc::channel(1);
        let (batch_tx, mut batch_rx) = mpsc::channel::<Result<MappedBatch, Error>>(1);

        // Reader: pages in order until the pass is done, an error, or cancellation.
        let reader = {
            let source = sh.source.clone();
            let cx = self.cx.clone();
            let mut req = ReadRequest {
                stream: name.clone(),
                position: cp.position.clone(),
                since: cursor_field
                    .as_ref()
                    .and_then(|_| lookback_floor.clone().or_else(|| cp.floor.as_ref().map(|f| f.value.clone()))),
                batch_size: sh.batch_size,
                use_cache: self.opts.on_unavailable == OnUnavailable::UseCache,
            };
            tokio::spawn(async move {
                let mut read_ns = 0u128;
                loop {
                    if cx.cancel.is_cancelled() {
                        break;
                    }
                    let t = Instant::now();
                    let page = source.read(&req, &cx).await;
                    read_ns += t.elapsed().as_nanos();
                    let stop = match &page {
                        Ok(p) => match &p.next {
                            Next::More(pos) => {
                                req.position = Some(pos.clone());
                                false
                            }
                            Next::Done { .. } => true,
                        },
                        Err(_) => true,
                    };
                    if page_tx.send(page).await.is_err() || stop {
                        break;
                    }
                }
                read_ns
            })
        };

        // Mapper: map, key, filter by cursor, hash, look up the ledger; compute each batch's checkpoint.
        let mapper = {
            let preparer = Preparer {
                pipeline: sh.name.clone(),
                stream: name.clone(),
                mapping: self.opts.mapping.clone().unwrap_or_else(|| Arc::new(crate::connector::Identity)),
                key_columns,
                identity: self.opts.mapping.is_none(),
            };
            let state = sh.state.clone();
            let pipeline = sh.name.clone();
            let stream = name.clone();
            let track_touched = delete_mode != DeleteMode::Keep;
            let batch_size = sh.batch_size;
            let mut cp = cp.clone();
            let mut drift =
                super::drift_check::DriftCheck::new(baseline, sh.drift_policy, &pipeline, &stream, state.clone());
            let xcx = xcx.clone();
            tokio::spawn(async move {
                let (mut map_ns, mut ledger_ns) = (0u128, 0u128);
                // Pages smaller than the batch size (an API's page of 100) are merged into one
                // sink batch, so a sink transaction and a state commit carry `batch_size`
                // records, not one page's worth.
                let mut pending: Option<MappedBatch> = None;
                while let Some(page) = page_rx.recv().await {
                    let mut page = match page {
                        Ok(p) => p,
                        Err(e) => {
                            // What was read before the failure is still delivered and committed.
                            if let Some(p) = pending.take() {
                                let _ = batch_tx.send(Ok(p)).await;
                            }
                            let _ = batch_tx.send(Err(e)).await;
                            break;
                        }
                    };
                    let t = Instant::now();
                    let endpoint = page.records.first().map(|r| r.provenance.endpoint.clone()).unwrap_or_default();
                    let mut b = MappedBatch {
                        to_write: Vec::with_capacity(page.records.len()),
                        unchanged: vec![],
                        skipped: 0,
                        dead: vec![],
                        checkpoint: Checkpoint::default(),
                        read: (page.records.len() + page.rejects.len()) as u64,
                        filtered: 0,
                        mapped: 0,
                        done: false,
                        stale: u64::from(page.records.first().is_some_and(|r| r.provenance.stale)),
                        trail: xcx.trail(),
                    };
                    b.trail.page(&page.records);
                    if let Err(e) = drift.page(&mut page, &preparer, &endpoint, &mut b.dead).await {
                        // The policy pauses: what came before this page is still delivered.
                        if let Some(p) = pending.take() {
                            let _ = batch_tx.send(Ok(p)).await;
                        }
                        let _ = batch_tx.send(Err(e)).await;
                        break;
                    }
                    let mut candidates = Vec::with_capacity(page.records.len());
                    for rec in page.records {
                        // No per-record copies: the provenance is shared and the cursor is
                        // read from the raw input each prepared record still holds.
                        let (prov, loc) = (rec.provenance.clone(), rec.location);
                        let ep = &prov.endpoint;
                        match preparer.prepare(rec) {
                            Err(dl) => b.dead.push(*dl),
                            Ok(items) => {
                                for p in items {
                                    b.mapped += 1;
                                    match &cursor_field {
                                        None => candidates.push(p),
                                        Some(field) => match admit(
                                            &mut cp,
                                            field.get(p.raw.as_ref().unwrap_or(&p.record.data)),
                                            &p.key,
                                            field.as_str(),
                                            lookback_floor.as_ref(),
                                        ) {
                                            Ok(true) => candidates.push(p),
                                            Ok(false) => b.filtered += 1,
                                            Err(reason) => {
                                                let msg = format!("{}: {reason}", super::prepare::where_of(ep, &loc));
                                                let raw = crate::record::canonical_json(
                                                    p.raw.as_ref().unwrap_or(&p.record.data),
                                                );
                                                b.dead.push(preparer.dead_letter(
                                                    Some(&p.key),
                                                    "data",
                                                    msg,
                                                    Some(field.to_string()),
                                                    ep,
                                                    &loc,
                                                    raw,
                                                ));
                                            }
                                        },
                                    }
                                }
                            }
                        }
                    }
                    map_ns += t.elapsed().as_nanos();
                    let t = Instant::now();
                    let keys: Vec<Key> =
                        if ledger_known { candidates.iter().map(|p| p.key.clone()).collect() } else { Vec::new() };
                    let lookup = if ledger_known {
                        state.ledger_lookup(&pipeline, &stream, &keys).await
                    } else {
                        Ok(vec![None; candidates.len()])
                    };
                    match lookup {
                        Ok(known) => {
                            for (p, old) in candidates.into_iter().zip(known) {
                                if old == Some(p.hash) {
                                    b.trail.unchanged(&p);
                                    b.unchanged.push(p.key);
                                } else {
                                    b.to_write.push(Prepared { known: old.is_some(), ..p });
                                }
                            }
                        }
                        Err(e) => {
                            let _ = batch_tx.send(Err(e)).await;
                            break;
                        }
                    }
                    b.skipped = b.unchanged.len() as u64;
                    if track_touched {
                        // Dead-lettered records still exist at the source: keep their rows.
                        b.unchanged.extend(b.dead.iter().filter_map(|d| d.key.clone().map(Key::from_canonical)));
                    }
                    ledger_ns += t.elapsed().as_nanos();
                    match page.next {
                        Next::More(pos) => cp.position = Some(pos),
                        Next::Done { resume } => {
                            cp.position = resume;
                            cp.pass_complete = true;
                            if cp.max.is_some() {
                                cp.floor = cp.max.clone();
                            }
                            b.done = true;
                        }
                    }
                    b.checkpoint = cp.clone();
                    let b = match pending.take() {
                        Some(mut p) => {
                            p.absorb(b);
                            p
                        }
                        None => b,
                    };
                    if !b.done && b.size() < batch_size {
                        pending = Some(b);
                        continue;
                    }
                    if batch_tx.send(Ok(b)).await.is_err() {
                        break;
                    }
                }
                // The reader stopped without finishing the pass (cancellation): deliver what was read.
                if let Some(p) = pending.take() {
                    let _ = batch_tx.send(Ok(p)).await;
                }
                (map_ns, ledger_ns, drift.finish())
            })
        };

        // Writer: sink first, then one state transaction; the checkpoint follows the sink.
        // Commits run in order on their own task, up to two batches behind the sink, so the
        // sink never waits for the state store; each commit is queued only after its own
        // batch was acknowledged, so a crash leaves the checkpoint at or behind what the sink
        // holds — never ahead.
        let mut result: Result<(), Error> = Ok(());
        let mut completed = false;
        let (commit_tx, mut commit_rx) = mpsc::channel::<Commit>(2);
        let committer = {
            let state = sh.state.clone();
            tokio::spawn(async move {
                let mut ns = 0u128;
                while let Some(commit) = commit_rx.recv().await {
                    let started = Instant::now();
                    state.commit(commit).await?;
                    failpoint::hit("after_checkpoint");
                    ns += started.elapsed().as_nanos();
                }
                Ok::<u128, Error>(ns)
            })
        };
        while let Some(batch) = batch_rx.recv().await {
            let b = match batch {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            report.batches += 1;
            report.read += b.read;
            report.filtered += b.filtered;
            report.mapped += b.mapped;
            report.skipped_unchanged += b.skipped;
            report.stale_pages += b.stale;
            completed = b.done;
            let commit = match self.write_batch(b, &sink_stream, report, &mut t, &mut sink_down, &mut outbox_room).await
            {
                Ok(c) => c,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if let Some(commit) = commit {
                failpoint::hit("after_sink_commit");
                if commit_tx.send(commit).await.is_err() {
                    break; // the committer failed; its error is collected below
                }
            }
            if let Some(p) = &self.progress {
                p.batch(&self.spec.name, report);
            }
            if let Err(e) = self.check_threshold(report) {
                result = Err(e);
                break;
            }
        }
        drop(commit_tx);
        match committer.await {
            Ok(Ok(ns)) => t.commit = ns,
            Ok(Err(e)) => result = result.and(Err(e)),
            Err(e) => result = result.and(Err(Error::internal(format!("state commit task ended abnormally: {e}")))),
        }
        drop(batch_rx);
        let read_ns = reader.await.unwrap_or(0);
        let (map_ns, ledger_ns, (drift, pause)) = mapper.await.unwrap_or_default();
        self.store_drift(drift, pause, report).await;
        t.read = read_ns;
        t.map = map_ns;
        t.ledger = ledger_ns;

        if result.is_ok() && completed && delete_mode != DeleteMode::Keep && !self.dry_run {
            result = self.propagate_deletes(&sink_stream, cp.pass, report, &mut t).await;
        }
        let ms = |ns: u128| (ns / 1_000_000) as u64;
        report.stage_ms = BTreeMap::from([
            ("read".to_owned(), ms(t.read)),
            ("map".to_owned(), ms(t.map)),
            ("ledger".to_owned(), ms(t.ledger)),
            ("write".to_owned(), ms(t.write)),
            ("commit".to_owned(), ms(t.commit)),
        ]);
        if !self.dry_run {
            report.outbox_pending = sh.state.outbox_len(&sh.name, &name).await.unwrap_or(report.outbox_pending);
        }
        result?;
        if let Some((kind, cause)) = sink_down {
            // The cause's kind, so a down sink exits like a down source would.
            return Err(Error::new(
                kind,
                format!(
                    "the sink `{}` is down ({cause}): {} records wait in the outbox and are delivered first by the next run",
                    sh.sink.kind(),
                    report.outbox_pending
                ),
            ));
        }
        if !completed {
            if self.cx.cancel.is_cancelled() {
                return Err(Error::new(ErrorKind::Interrupted, "stopped by signal; the checkpoint was committed"));
            }
            return Err(Error::internal("the source stopped before the end of the pass"));
        }
        Ok(())
    }
}
