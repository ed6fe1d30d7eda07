//! One stream's run: the stages of the delivery guarantee, wired and joined here.
//!
//! [`Reader`] → [`Mapper`] → [`Writer`] → [`Committer`], joined by bounded channels: the
//! reader pulls pages, the mapper turns them into batches, the writer (on the stream's own
//! task) writes each batch to the sink — or the outbox — and only then queues its commit,
//! and the committer applies the commits (ledger, dead letters, stories and the batch's
//! checkpoint) one state transaction per batch, in order. So a checkpoint never runs ahead
//! of what the sink acknowledged. Cancellation stops the reader; what was read is still
//! written and committed.
//!
//! This file owns what comes before the stages (the pause gate, opening the sink, the
//! starting checkpoint, the outbox drained first, the baseline) and after them (drift
//! stored, deletes after a full refresh, stage times, the run's outcome).

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
use crate::record::FieldPath;
use crate::report::{RunOutcome, StreamReport};
use crate::state::{Checkpoint, Commit, CursorState, PauseKind};
use crate::stream::{DeleteMode, OnUnavailable, StreamSpec, SyncMode};

mod committer;
mod flight;
mod mapper;
mod reader;
mod versions;
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

/// What the stages of a run start from, read before any of them runs.
struct Setup {
    /// What a completed full refresh does with rows gone from the source, and how the sink
    /// deletes what the source says was deleted.
    delete_mode: DeleteMode,
    /// The cursor field, for an incremental stream that has one.
    cursor_field: Option<FieldPath>,
    /// The stream's output primary-key columns.
    key_columns: Vec<String>,
    /// What `dovetail explain` captures in this run.
    explain: Arc<Ctx>,
    /// The stream as the sink knows it (opened, unless a dry run).
    sink_stream: Arc<SinkStream>,
    /// Where the run starts, marked unfinished.
    checkpoint: Checkpoint,
    /// Why the sink is down, when draining the outbox found it so.
    sink_down: Option<(ErrorKind, String)>,
    /// Records the outbox can still take.
    outbox_room: u64,
    /// The stream's stored schema baseline (`None`: the first page becomes it).
    baseline: Option<Value>,
    /// Whether the ledger holds any key of the stream.
    ledger_known: bool,
    /// With a lookback: the low end of the re-read margin.
    lookback_floor: Option<Value>,
}

/// One stream's run in a pipeline run (or, for dead-letter replay, its settings).
pub(crate) struct StreamRun {
    pub shared: Arc<Shared>,
    pub spec: StreamSpec,
    pub opts: StreamOptions,
    pub dry_run: bool,
    pub from: Option<Value>,
    pub progress: Option<Arc<dyn super::Progress>>,
    /// Records to read before stopping short of the end of the pass (`run --limit`).
    pub limit: Option<u64>,
    /// The worker's lease check, run before each sink write (`None` outside a worker).
    pub fence: Option<Arc<dyn crate::lease::Fence>>,
    pub cx: Cx,
    pub run_id: i64,
    /// Why the source's discovery failed at the start of the run, if it did: the stream
    /// fails with it before reading, and its outage policy applies.
    pub discovery: Option<Arc<Error>>,
}

impl StreamRun {
    /// The drift policy of this stream, for the writer and the end of the run.
    fn drift(&self) -> StreamDrift<'_> {
        StreamDrift { policy: self.shared.drift_policy, pipeline: &self.shared.name, stream: &self.spec.name }
    }

    /// Whether a completed pass deletes what it did not see (a full refresh with `delete`);
    /// deletes the source reports are applied under any mode but `keep`, incremental too.
    pub(super) fn propagates_deletes(&self) -> bool {
        self.opts.sync_mode == SyncMode::FullRefresh && self.opts.delete_mode != DeleteMode::Keep
    }

    /// The stream's output primary-key columns.
    fn key_columns(&self) -> Result<Vec<String>, Error> {
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
        match self.rate_limit_pause(held.as_ref()).await {
            Ok(super::rate_pause::Held::Skip(skip)) => {
                let (report, err) = *skip;
                return (report, Some(err));
            }
            Ok(super::rate_pause::Held::Run) => {}
            Err(e) => return (StreamReport { outcome: RunOutcome::Failed, ..report }, Some(e)),
        }
        let held = held.filter(|p| p.kind != PauseKind::RateLimited);
        if let Some(p) = held.as_ref().filter(|p| p.kind != PauseKind::Unavailable) {
            info!(stream = %self.spec.name, kind = %p.kind, since = %p.since, "stream is paused; `dovetail resume` lifts it");
            report.outcome = RunOutcome::Paused;
            report.paused = Some(format!("paused since {} ({}): {}", p.since, p.kind, p.reason));
            // Still paused is still not current: the run says so (outcome `paused`, the
            // cause's exit code) and what lifts it, every run until someone does.
            let (pipeline, stream) = (&self.shared.name, &self.spec.name);
            let (kind, hint) = match p.kind {
                PauseKind::Drift => (ErrorKind::Data, super::drift_check::DRIFT_PAUSE_HINT.to_owned()),
                _ => (ErrorKind::Permanent, "`dovetail resume {pipeline} {stream}` lifts the pause".to_owned()),
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
            err = match &err {
                Some(e) => match self.record_rate_limit(e, &mut report).await {
                    Ok(true) => err,
                    Ok(false) => self.apply_outage_policy(err, &mut report).await,
                    Err(store) => Some(store),
                },
                None => self.apply_outage_policy(err, &mut report).await,
            };
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

    /// Wire reader → mapper → writer → committer, join them, conclude.
    async fn run_inner(&self, report: &mut StreamReport) -> Result<(), Error> {
        if let Some(e) = &self.discovery {
            return Err(again(e));
        }
        let sh = &self.shared;
        let mut t = Timings::default();
        let Setup {
            delete_mode,
            cursor_field,
            key_columns,
            explain,
            sink_stream,
            checkpoint: cp,
            sink_down,
            outbox_room,
            baseline,
            ledger_known,
            lookback_floor,
        } = self.setup(report, &mut t).await?;

        // One page and one batch in flight between the stages, and commits at most two
        // batches behind the sink: the bounds are the backpressure on the source.
        let (page_tx, page_rx) = mpsc::channel(1);
        let (batch_tx, mut batch_rx) = mpsc::channel::<Result<MappedBatch, Error>>(1);
        let (commit_tx, commit_rx) = mpsc::channel::<Commit>(2);
        let request = self.first_request(&cp, cursor_field.is_some(), lookback_floor.as_ref());
        let reader =
            Reader { source: sh.source.clone(), cx: self.cx.clone(), request, pages: page_tx, limit: self.limit }
                .spawn();
        let mapper = Mapper {
            pages: page_rx,
            batches: batch_tx,
            preparer: Preparer {
                pipeline: sh.name.clone(),
                stream: self.spec.name.clone(),
                mapping: self.opts.mapping.clone().unwrap_or_else(|| Arc::new(crate::connector::Identity)),
                key_columns,
                identity: self.opts.mapping.is_none(),
            },
            state: sh.state.clone(),
            cursor_field,
            lookback_floor,
            checkpoint: cp.clone(),
            drift: DriftCheck::new(baseline, sh.drift_policy, &sh.name, &self.spec.name, sh.state.clone()),
            explain,
            ledger_known,
            track_touched: self.propagates_deletes(),
            apply_deletes: delete_mode != DeleteMode::Keep,
            batch_size: sh.batch_size,
            limit: self.limit,
        }
        .spawn();
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
        let later;
        (t.read, later) = reader.await.unwrap_or((0, false));
        let Mapped { map_ns, ledger_ns, drift, pause, limited } = mapper.await.unwrap_or_default();
        // A limited run stops inside its pass: no deletes, no moved floor, and no error.
        report.limited = limited && !completed;
        self.drift().store(sh.state.as_ref(), self.dry_run, drift, pause, report).await;
        t.map = map_ns;
        t.ledger = ledger_ns;

        if result.is_ok() && completed && self.propagates_deletes() && !self.dry_run {
            result = self.propagate_deletes(&sink_stream, cp.pass, report, &mut t).await;
        }
        self.conclude(result, completed, later, sink_down, report, &t).await
    }

    /// Everything before the stages start: the stream's settings checked, the sink opened,
    /// the starting checkpoint, the outbox drained (records queued while the sink was down
    /// go first, in order), the baseline and the ledger's state.
    async fn setup(&self, report: &mut StreamReport, t: &mut Timings) -> Result<Setup, Error> {
        let sh = &self.shared;
        let name = &self.spec.name;
        let incremental = self.opts.sync_mode == SyncMode::Incremental;
        let delete_mode = self.opts.delete_mode;
        let cursor_field = if incremental { self.spec.cursor_field.clone() } else { None };
        let key_columns = self.key_columns()?;
        let explain = Arc::new(Ctx::new(self.run_id, sh.explain, self.opts.mapping.as_ref(), &key_columns));
        // The sink types its tables from the schema of mapped records: the source's declared
        // schema describes them when no mapping reshapes the records. Not a baseline inferred
        // from data: it may be narrower than the values (`integer` for a 20-digit number).
        let schema = if self.opts.mapping.is_none() { self.spec.schema.clone() } else { None };
        let sink_stream =
            Arc::new(SinkStream { name: name.clone(), key_columns: key_columns.clone(), schema, delete_mode });
        if !self.dry_run {
            self.recall_and_open_sink(&sink_stream).await?;
        }
        let checkpoint = self.start_checkpoint(&sink_stream, incremental, cursor_field.as_ref(), report).await?;
        let sink_down =
            if self.dry_run { None } else { self.drain_outbox(&sink_stream, checkpoint.pass, report, t).await? };
        let outbox_room = sh.outbox_max.saturating_sub(sh.state.outbox_len(&sh.name, name).await?);
        let baseline = self.baseline().await?;
        // Initial load: with an empty ledger (and the run lock held) no key can be known, so
        // the per-batch lookups are skipped. A key repeated within this run is then written
        // twice — an idempotent upsert — instead of being counted unchanged the second time.
        let ledger_known = sh.state.has_ledger(&sh.name, name).await?;
        let lookback_floor = self.lookback_floor(cursor_field.is_some(), &checkpoint);
        Ok(Setup {
            delete_mode,
            cursor_field,
            key_columns,
            explain,
            sink_stream,
            checkpoint,
            sink_down,
            outbox_room,
            baseline,
            ledger_known,
            lookback_floor,
        })
    }

    /// Ask the sink whether what the ledger remembers is still there ([`Shared::recall_sink`]),
    /// open it, and store its mark when none is stored.
    async fn recall_and_open_sink(&self, sink_stream: &SinkStream) -> Result<(), Error> {
        let remembered = self.shared.recall_sink(sink_stream, &self.cx).await?;
        self.open_sink(sink_stream).await?;
        self.shared.adopt_mark(&self.spec.name, remembered).await
    }

    /// The checkpoint the run starts from, marked unfinished: where the last run left off,
    /// the next pass, or (a backfill's `--from`) a new pass from a cursor value.
    async fn start_checkpoint(
        &self,
        sink_stream: &SinkStream,
        incremental: bool,
        cursor_field: Option<&FieldPath>,
        report: &mut StreamReport,
    ) -> Result<Checkpoint, Error> {
        let (sh, name) = (&self.shared, &self.spec.name);
        let mut prev = sh.state.checkpoint(&sh.name, name).await?;
        // A sink that commits the checkpoint with its rows may be a batch or two ahead of the
        // state after a crash: resume there rather than write those batches again. Not when
        // the pass deletes at its end: the state never got those batches' ledger stamps.
        if !self.dry_run
            && !self.propagates_deletes()
            && let Some(ahead) = sh.sink.committed_position(sink_stream, &self.cx).await?
        {
            info!(stream = %name, sink = sh.sink.kind(), "the sink committed past the state's checkpoint; resuming from the sink's");
            prev = Some(ahead);
        }
        let mut start = starting_checkpoint(prev, incremental);
        if let (Some(from), Some(field)) = (&self.from, cursor_field) {
            info!(stream = %name, from = %from, cursor = %field, "backfilling from a cursor value");
            start = Checkpoint {
                position: None,
                pass: start.pass + u64::from(!start.pass_complete),
                floor: Some(CursorState { value: from.clone(), keys: vec![] }),
                max: start.max,
                pass_complete: true,
            };
        }
        if let (None, Some(_), Some(v)) = (&start.floor, cursor_field, &self.spec.start) {
            start.floor = Some(CursorState { value: v.clone(), keys: vec![] });
        }
        report.resumed = !start.pass_complete && start.position.is_some();
        if report.resumed {
            let position = start.position.as_ref().map(crate::record::canonical_json).unwrap_or_default();
            info!(stream = %name, pass = start.pass, %position, "resuming from checkpoint");
        }
        start.pass_complete = false;
        Ok(start)
    }

    /// The stored schema baseline. The schema a stream starts with (declared, else inferred
    /// from its first page by the mapper) becomes it; drift is measured against the stored one.
    async fn baseline(&self) -> Result<Option<Value>, Error> {
        let (sh, name) = (&self.shared, &self.spec.name);
        let baseline = sh.state.baseline(&sh.name, name).await?;
        if baseline.is_none()
            && let Some(declared) = &self.spec.schema
            && !self.dry_run
        {
            sh.state.save_baseline(&sh.name, name, declared).await?;
            return Ok(Some(declared.clone()));
        }
        Ok(baseline)
    }

    /// With a lookback, the source is asked for a margin before the floor and that margin
    /// passes the cursor filter: the ledger decides what is new. This is the margin's low end.
    fn lookback_floor(&self, has_cursor: bool, cp: &Checkpoint) -> Option<Value> {
        match (has_cursor, &cp.floor, self.spec.lookback) {
            (true, Some(floor), Some(d)) => {
                let low = crate::record::cursor_minus(&floor.value, d);
                if low.is_none() {
                    warn!(stream = %self.spec.name, cursor = %floor.value, "lookback needs an RFC 3339 or integer cursor; reading from the cursor itself");
                }
                low
            }
            _ => None,
        }
    }

    /// The reader's first request: the checkpoint's position, and for a stream with a
    /// cursor the lower bound (the lookback margin, else the floor).
    fn first_request(&self, cp: &Checkpoint, has_cursor: bool, lookback_floor: Option<&Value>) -> ReadRequest {
        let floor = || lookback_floor.cloned().or_else(|| cp.floor.as_ref().map(|f| f.value.clone()));
        ReadRequest {
            stream: self.spec.name.clone(),
            position: cp.position.clone(),
            since: if has_cursor { floor() } else { None },
            batch_size: self.shared.batch_size,
            use_cache: self.opts.on_unavailable == OnUnavailable::UseCache,
        }
    }

    /// The end of a run: per-stage times and the outbox's depth into the report, then the
    /// run's error — its own, a sink left down, or a pass that did not finish.
    async fn conclude(
        &self,
        result: Result<(), Error>,
        completed: bool,
        later: bool,
        sink_down: Option<(ErrorKind, String)>,
        report: &mut StreamReport,
        t: &Timings,
    ) -> Result<(), Error> {
        let sh = &self.shared;
        let ms = |ns: u128| (ns / 1_000_000) as u64;
        report.stage_ms = BTreeMap::from([
            ("read".to_owned(), ms(t.read)),
            ("map".to_owned(), ms(t.map)),
            ("ledger".to_owned(), ms(t.ledger)),
            ("write".to_owned(), ms(t.write)),
            ("commit".to_owned(), ms(t.commit)),
        ]);
        if !self.dry_run {
            report.outbox_pending =
                sh.state.outbox_len(&sh.name, &self.spec.name).await.unwrap_or(report.outbox_pending);
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
        if !completed && !report.limited {
            if later {
                info!(stream = %self.spec.name, "the source's page limit ended the run; the pass continues next run");
                return Ok(());
            }
            if self.cx.cancel.is_cancelled() {
                return Err(Error::new(ErrorKind::Interrupted, "stopped by signal; the checkpoint was committed"));
            }
            return Err(Error::internal("the source stopped before the end of the pass"));
        }
        Ok(())
    }
}

/// The run's discovery error once more, for one stream (errors are not `Clone`): its kind,
/// reason, hint, HTTP data, connector and location.
fn again(e: &Error) -> Error {
    let mut copy = Error::new(e.kind().clone(), e.reason());
    if let Some(h) = e.hint() {
        copy = copy.with_hint(h);
    }
    if let Some(http) = e.http() {
        copy = copy.with_http(http.clone());
    }
    if let Some(c) = &e.context().connector {
        copy = copy.in_connector(c);
    }
    if let Some(l) = &e.context().location {
        copy = copy.at(l.clone());
    }
    copy
}
