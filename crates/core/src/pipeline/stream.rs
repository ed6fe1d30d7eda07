//! One stream's run: a reader task, a mapper task and a writer loop joined by bounded channels.
//!
//! The writer is the only place that commits: it writes a batch to the sink, then commits the
//! ledger, dead letters and the checkpoint computed for that batch in one state transaction.
//! So a checkpoint never runs ahead of what the sink acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::cursor::starting_checkpoint;
use super::drift_check::{DriftCheck, StreamDrift};
use super::explain::Ctx;
use super::prepare::Preparer;
use super::{Shared, StreamOptions};
use crate::connector::{Cx, ReadRequest, SinkStream};
use crate::error::{Error, ErrorKind};
use crate::report::StreamReport;
use crate::state::{Checkpoint, Commit, CursorState};
use crate::stream::{DeleteMode, OnUnavailable, StreamSpec, SyncMode};

mod committer;
mod mapper;
mod reader;
mod writer;

use committer::Committer;
use mapper::{Mapped, MappedBatch, Mapper};
use reader::Reader;
use writer::{Writer, Written};

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
    /// The drift policy of this stream, for the writer and the end of the run.
    fn drift(&self) -> StreamDrift<'_> {
        StreamDrift { policy: self.shared.drift_policy, pipeline: &self.shared.name, stream: &self.spec.name }
    }

    pub(crate) fn key_columns(&self) -> Result<Vec<String>, Error> {
        super::explain::key_columns(&self.spec, &self.opts)
    }

    /// Run the stream to the end of its pass, an error, or cancellation.
    pub async fn run(self) -> (StreamReport, Option<Error>) {
        let mut report = StreamReport::default();
        // A pause for anything but an outage (drift) holds until an operator lifts it.
        let held = match self.shared.state.paused(Some(&self.shared.name)).await {
            Ok(p) => p.into_iter().find(|p| p.stream == self.spec.name),
            Err(e) => return (report, Some(e)),
        };
        if let Some(p) = held.as_ref().filter(|p| p.kind != "unavailable") {
            info!(stream = %self.spec.name, kind = %p.kind, since = %p.since, "stream is paused; `dovetail resume` lifts it");
            report.outcome = "paused".into();
            report.paused = Some(format!("paused since {} ({}): {}", p.since, p.kind, p.reason));
            // Still paused is still not current: the run says so (outcome `paused`, the
            // cause's exit code) and what lifts it, every run until someone does.
            let (pipeline, stream) = (&self.shared.name, &self.spec.name);
            let (kind, hint) = match p.kind.as_str() {
                "drift" => (
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
            _ if report.paused.is_some() => "paused".into(),
            Some(e) if *e.kind() == ErrorKind::Interrupted => "interrupted".into(),
            Some(_) => "failed".into(),
            None => "succeeded".into(),
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
        let sink_down =
            if self.dry_run { None } else { self.drain_outbox(&sink_stream, cp.pass, report, &mut t).await? };
        let outbox_room = sh.outbox_max.saturating_sub(sh.state.outbox_len(&sh.name, &name).await?);
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
        let (page_tx, page_rx) = mpsc::channel(1);
        let (batch_tx, mut batch_rx) = mpsc::channel::<Result<MappedBatch, Error>>(1);

        let request = ReadRequest {
            stream: name.clone(),
            position: cp.position.clone(),
            since: cursor_field
                .as_ref()
                .and_then(|_| lookback_floor.clone().or_else(|| cp.floor.as_ref().map(|f| f.value.clone()))),
            batch_size: sh.batch_size,
            use_cache: self.opts.on_unavailable == OnUnavailable::UseCache,
        };
        let reader = Reader { source: sh.source.clone(), cx: self.cx.clone(), request, pages: page_tx }.spawn();

        let mapper = Mapper {
            pages: page_rx,
            batches: batch_tx,
            preparer: Preparer {
                pipeline: sh.name.clone(),
                stream: name.clone(),
                mapping: self.opts.mapping.clone().unwrap_or_else(|| Arc::new(crate::connector::Identity)),
                key_columns,
                identity: self.opts.mapping.is_none(),
            },
            state: sh.state.clone(),
            cursor_field,
            lookback_floor,
            checkpoint: cp.clone(),
            drift: DriftCheck::new(baseline, sh.drift_policy, &sh.name, &name, sh.state.clone()),
            explain: xcx,
            ledger_known,
            track_touched: delete_mode != DeleteMode::Keep,
            batch_size: sh.batch_size,
        }
        .spawn();

        let (commit_tx, commit_rx) = mpsc::channel::<Commit>(2);
        let committer = Committer { state: sh.state.clone(), commits: commit_rx }.spawn();
        let writer = Writer {
            run: self,
            sink_stream: &sink_stream,
            batches: &mut batch_rx,
            commits: commit_tx,
            sink_down,
            outbox_room,
        };
        let Written { mut result, completed, sink_down } = writer.run(report, &mut t).await;
        match committer.await {
            Ok(Ok(ns)) => t.commit = ns,
            Ok(Err(e)) => result = result.and(Err(e)),
            Err(e) => result = result.and(Err(Error::internal(format!("state commit task ended abnormally: {e}")))),
        }
        drop(batch_rx);
        let read_ns = reader.await.unwrap_or(0);
        let Mapped { map_ns, ledger_ns, drift, pause } = mapper.await.unwrap_or_default();
        self.drift().store(sh.state.as_ref(), self.dry_run, drift, pause, report).await;
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
