//! The pipeline engine: reads pages, maps, skips unchanged records through the ledger,
//! writes, and advances checkpoints only after the sink acknowledged.
//!
//! This file owns the composition ([`PipelineBuilder`], [`Pipeline`], the pieces every
//! stream shares) and a run of all selected streams, each on its own task, into one
//! [`RunReport`]. One stream's run is in `stream` and its stages under `stream/`.

mod cursor;
mod drift_check;
mod explain;
mod outage;
mod prepare;
mod rate_pause;
mod replay;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::connector::{Cx, Sink, SinkRecall, SinkStream, Source, Transform};
use crate::error::{Error, ErrorKind};
use crate::report::{RunOutcome, RunReport, StreamReport};
use crate::state::StateStore;
use crate::stream::{DeleteMode, OnUnavailable, SyncMode};

/// Default bound of a stream's outbox, in records.
pub const DEFAULT_OUTBOX_MAX: u64 = 100_000;

/// Records per page and per batch when the pipeline does not set `batch_size`.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// Records a stream must read before "every one was dead-lettered" fails it: fewer could be
/// a handful of bad test records rather than a source that changed under the config.
pub const ALL_DEAD_LETTERED_MIN: u64 = 10;

/// Per-stream settings of a pipeline.
#[derive(Clone, Default)]
pub struct StreamOptions {
    /// The mapping applied to every record (`None`: records pass unchanged).
    pub mapping: Option<Arc<dyn Transform>>,
    /// Incremental or full refresh.
    pub sync_mode: SyncMode,
    /// What a completed full refresh does with rows gone from the source, and what the sink
    /// does with records the source reports deleted (any sync mode; `Keep` ignores them).
    pub delete_mode: DeleteMode,
    /// Output primary-key columns, when the mapping cannot tell them (closures).
    pub primary_key: Option<Vec<String>>,
    /// What the stream does when its source or sink stays down past the retry budget.
    pub on_unavailable: OnUnavailable,
    /// Let the stream succeed when every one of at least [`ALL_DEAD_LETTERED_MIN`] records it
    /// read was dead-lettered (default `false`: that fails the stream with a Data error).
    pub allow_all_dead_lettered: bool,
}

impl std::fmt::Debug for StreamOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOptions")
            .field("mapping", &self.mapping.is_some())
            .field("sync_mode", &self.sync_mode)
            .field("delete_mode", &self.delete_mode)
            .field("primary_key", &self.primary_key)
            .field("on_unavailable", &self.on_unavailable)
            .field("allow_all_dead_lettered", &self.allow_all_dead_lettered)
            .finish()
    }
}

/// How one run behaves.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Streams to run (empty: all).
    pub streams: Vec<String>,
    /// Read and map, write nothing, commit nothing; report what would change.
    pub dry_run: bool,
    /// Cancel to stop reading, flush what is in flight, commit, and end as interrupted.
    pub cancel: CancellationToken,
    /// Backfill: incremental streams with a cursor start a new pass from this cursor value
    /// (inclusive) instead of their checkpoint; the ledger absorbs what was already written.
    pub from: Option<serde_json::Value>,
    /// Told about each stream's progress (progress bars, periodic lines).
    pub progress: Option<Arc<dyn Progress>>,
    /// Stop each stream after this many records read: what was read is delivered and
    /// committed, but the pass is not completed (the cursor floor stays, no deletes), so the
    /// next run carries on from there.
    pub limit: Option<u64>,
    /// Run under stream leases (`dovetail worker`) instead of the pipeline's run lock: the
    /// caller holds a lease on every selected stream, and each sink write is checked
    /// against it first (the state fences commits itself).
    pub fence: Option<Arc<dyn crate::lease::Fence>>,
}

/// Receives a stream's counts as batches complete (called from the stream's writer).
pub trait Progress: Send + Sync {
    /// A stream started.
    fn started(&self, stream: &str) {
        let _ = stream;
    }
    /// A batch was handled; `report` holds the stream's counts so far.
    fn batch(&self, stream: &str, report: &crate::report::StreamReport);
    /// A stream ended with `report`.
    fn finished(&self, stream: &str, report: &crate::report::StreamReport) {
        let _ = (stream, report);
    }
}

impl std::fmt::Debug for dyn Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// Composes a source, per-stream mappings, a sink and a state store into a [`Pipeline`].
pub struct PipelineBuilder {
    name: String,
    source: Option<Arc<dyn Source>>,
    sink: Option<Arc<dyn Sink>>,
    state: Option<Arc<dyn StateStore>>,
    streams: BTreeMap<String, StreamOptions>,
    batch_size: usize,
    max_dead_letters: Option<u64>,
    max_dead_letter_ratio: Option<f64>,
    outbox_max: u64,
    drift_policy: crate::drift::DriftPolicy,
    explain: crate::explain::ExplainCapture,
    retention: Option<crate::explain::Retention>,
}

/// What every stream task of a pipeline shares.
pub(crate) struct Shared {
    pub name: String,
    pub source: Arc<dyn Source>,
    pub sink: Arc<dyn Sink>,
    pub state: Arc<dyn StateStore>,
    pub streams: BTreeMap<String, StreamOptions>,
    pub batch_size: usize,
    pub max_dead_letters: Option<u64>,
    pub max_dead_letter_ratio: Option<f64>,
    pub outbox_max: u64,
    pub drift_policy: crate::drift::DriftPolicy,
    pub explain: crate::explain::ExplainCapture,
    pub retention: Option<crate::explain::Retention>,
}

impl Shared {
    /// The pipeline's pending creates in its state store, for the sink ([`Cx::pending`]).
    fn pending_creates(&self) -> Arc<dyn crate::state::PendingCreates> {
        let state: Arc<dyn crate::state::DeliveryStore> = self.state.clone();
        Arc::new(crate::state::StorePendingCreates { state, pipeline: self.name.clone() })
    }

    /// Before a stream's sink is opened: is what the ledger remembers still there? A
    /// destination gone or rebuilt voids the stream's ledger, mark and checkpoint (the outbox
    /// stays), with a warning: the stream re-syncs from its start, since the ledger is a
    /// memory of the sink, not a substitute. Returns whether a mark is (still) stored.
    pub(super) async fn recall_sink(&self, sink_stream: &SinkStream, cx: &Cx) -> Result<bool, Error> {
        let name = &sink_stream.name;
        let remembered = self.state.sink_mark(&self.name, name).await?;
        let recall = self.sink.recall(sink_stream, remembered.as_deref(), cx).await?;
        if let SinkRecall::Lost(why) = recall
            && (remembered.is_some() || self.state.has_ledger(&self.name, name).await?)
        {
            let rows = self.state.forget_ledger(&self.name, Some(name), false).await?;
            warn!(stream = %name, sink = self.sink.kind(), ledger_rows = rows, "{why}: the stream's ledger is void and it re-syncs from the start");
            return Ok(false);
        }
        Ok(remembered.is_some())
    }

    /// After the sink was opened: without a stored mark, store the opened sink's before any
    /// write, so a batch written and never committed is cut back (JSONL) even the first time.
    pub(super) async fn adopt_mark(&self, stream: &str, remembered: bool) -> Result<(), Error> {
        let Some(mark) = self.sink.mark(stream).filter(|_| !remembered) else { return Ok(()) };
        let commit = crate::state::Commit {
            pipeline: self.name.clone(),
            stream: stream.to_owned(),
            sink_mark: Some(mark),
            ..Default::default()
        };
        self.state.commit(commit).await
    }

    /// The batch for the sink: with create hints (idempotency keys and the destination ids
    /// the ledger knows) when the sink creates records instead of upserting them.
    pub(crate) async fn batch(
        &self,
        stream: &str,
        sink_stream: Arc<crate::connector::SinkStream>,
        records: Arc<[crate::record::Record]>,
        hashes: &[crate::record::ContentHash],
    ) -> Result<crate::connector::Batch, Error> {
        let mut batch = crate::connector::Batch::new(sink_stream, records);
        if self.sink.write_mode() != crate::connector::WriteMode::CreateWithIdempotencyKey {
            return Ok(batch);
        }
        let keys: Vec<crate::record::Key> = batch.records.iter().filter_map(|r| r.key.clone()).collect();
        if keys.len() != batch.records.len() {
            return Err(Error::internal("a record reached the sink without its key"));
        }
        let dest_ids = self.state.ledger_dest_ids(&self.name, stream, &keys).await?;
        batch.hints = keys
            .iter()
            .zip(hashes)
            .zip(dest_ids)
            .map(|((key, hash), dest_id)| crate::connector::CreateHint {
                idempotency_key: crate::record::idempotency_key(&self.name, stream, key, hash),
                dest_id,
            })
            .collect();
        Ok(batch)
    }
}

/// A runnable pipeline: source → per-stream mapping → sink, with durable state.
pub struct Pipeline {
    shared: Arc<Shared>,
}

impl Pipeline {
    /// Start building a pipeline named `name` (the name keys its state).
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            name: name.into(),
            source: None,
            sink: None,
            state: None,
            streams: BTreeMap::new(),
            batch_size: DEFAULT_BATCH_SIZE,
            max_dead_letters: None,
            max_dead_letter_ratio: None,
            outbox_max: DEFAULT_OUTBOX_MAX,
            drift_policy: Default::default(),
            explain: Default::default(),
            retention: None,
        }
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The state store this pipeline commits to.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.shared.state
    }

    /// The source, e.g. to show its HTTP figures while a run is going.
    pub fn source(&self) -> Arc<dyn Source> {
        self.shared.source.clone()
    }

    /// Names of the source's streams.
    pub fn stream_names(&self) -> Vec<String> {
        self.shared.source.streams().into_iter().map(|s| s.name).collect()
    }

    /// The output primary-key columns of a stream (what `dovetail explain` matches keys on).
    pub fn key_columns(&self, stream: &str) -> Result<Vec<String>, Error> {
        let sh = &self.shared;
        let spec = sh.source.streams().into_iter().find(|s| s.name == stream).ok_or_else(|| {
            Error::config(format!(
                "pipeline `{}` has no stream `{stream}` (streams: {})",
                sh.name,
                self.stream_names().join(", ")
            ))
        })?;
        explain::key_columns(&spec, &sh.streams.get(stream).cloned().unwrap_or_default())
    }

    /// The mapping config of a stream as JSON (`None`: identity, or a mapping in code).
    pub fn mapping_config(&self, stream: &str) -> Option<serde_json::Value> {
        self.shared.streams.get(stream)?.mapping.as_ref()?.describe()
    }

    /// Ask the source what the remote declares about its streams ([`Source::discover`]). A
    /// run, a check and a replay do it first; what reads no data never needs to.
    pub async fn discover(&self, cx: &Cx) -> Result<(), Error> {
        let sh = &self.shared;
        sh.source.discover(cx).await.map_err(|e| e.in_pipeline(&sh.name).in_connector(sh.source.kind()))
    }

    /// Probe the source (its discovery first) and the sink.
    pub async fn check(&self) -> Result<(), Error> {
        let cx = Cx { pipeline: self.shared.name.clone(), ..Default::default() };
        self.discover(&cx).await?;
        self.shared
            .source
            .check(&cx)
            .await
            .map_err(|e| e.in_pipeline(&self.shared.name).in_connector(self.shared.source.kind()))?;
        self.shared
            .sink
            .check(&cx)
            .await
            .map_err(|e| e.in_pipeline(&self.shared.name).in_connector(self.shared.sink.kind()))
    }

    /// What `dovetail check` says about each stream whose ledger has rows but whose sink
    /// no longer holds them (a table gone or rebuilt, a file gone or cut short): one line per
    /// stream. Changes nothing; the next run voids that ledger and refills the sink.
    pub async fn lost_sinks(&self) -> Result<Vec<String>, Error> {
        let sh = &self.shared;
        let cx = Cx { pipeline: sh.name.clone(), ..Default::default() };
        let mut lost = Vec::new();
        for spec in sh.source.streams() {
            let remembered = sh.state.sink_mark(&sh.name, &spec.name).await?;
            if remembered.is_none() && !sh.state.has_ledger(&sh.name, &spec.name).await? {
                continue;
            }
            // Sinks recall by the stream's name alone; the rest is not needed to look.
            let stream = SinkStream {
                name: spec.name.clone(),
                key_columns: vec![],
                schema: None,
                delete_mode: DeleteMode::Keep,
            };
            if let SinkRecall::Lost(why) = sh.sink.recall(&stream, remembered.as_deref(), &cx).await? {
                lost.push(format!(
                    "stream `{}`: {why}; the next run voids its ledger and writes it all again",
                    spec.name
                ));
            }
        }
        Ok(lost)
    }

    /// Run once: every selected stream concurrently, each to the end of its pass.
    ///
    /// `Err` only when the run could not start (lock held, unknown stream, state store down);
    /// stream failures are in the report, whose `exit_code` says how the process should end.
    pub async fn run(&self, opts: RunOptions) -> Result<RunReport, Error> {
        let sh = &self.shared;
        // Names are known before discovery: an unknown stream is refused before anything.
        self.selected(&opts)?;
        // Under leases, several workers run streams of one pipeline at once; the state
        // fences their commits by lease epoch instead of one pipeline-wide lock.
        let _lock = match opts.fence {
            Some(_) => None,
            None => Some(sh.state.lock(&sh.name).await?),
        };
        let started = Instant::now();
        let started_at = crate::now_rfc3339();
        let run_id = if opts.dry_run { 0 } else { sh.state.begin_run(&sh.name, &started_at).await? };
        let span = info_span!("run", pipeline = %sh.name, run_id);
        info!(parent: &span, dry_run = opts.dry_run, "run started");
        let cx = Cx { pipeline: sh.name.clone(), cancel: opts.cancel.clone(), pending: Some(sh.pending_creates()) };
        // Before the HTTP figures are taken: the run's report counts its reads only.
        let (specs, discovery) = self.discovered(&opts, &cx, &span).await?;
        let http_before = (sh.source.http_report(), sh.sink.http_report());
        let mut tasks = Vec::new();
        for spec in specs {
            let run = stream::StreamRun {
                shared: sh.clone(),
                opts: sh.streams.get(&spec.name).cloned().unwrap_or_default(),
                spec,
                dry_run: opts.dry_run,
                from: opts.from.clone(),
                progress: opts.progress.clone(),
                limit: opts.limit,
                fence: opts.fence.clone(),
                cx: cx.clone(),
                run_id,
                discovery: discovery.clone(),
            };
            let name = run.spec.name.clone();
            let stream_span = info_span!(parent: &span, "stream", stream = %name);
            tasks.push((name, tokio::spawn(run.run().instrument(stream_span))));
        }
        let mut report =
            RunReport { pipeline: sh.name.clone(), run_id, started_at, dry_run: opts.dry_run, ..Default::default() };
        let mut first_err: Option<Error> = None;
        let mut interrupted = false;
        let mut paused: Option<Error> = None;
        for (name, task) in tasks {
            let (sr, err) = match task.await {
                Ok(x) => x,
                Err(e) => (
                    StreamReport { outcome: RunOutcome::Failed, ..Default::default() },
                    Some(
                        Error::internal(format!("stream task ended abnormally: {e}"))
                            .in_pipeline(&sh.name)
                            .in_stream(&name),
                    ),
                ),
            };
            match err {
                Some(e) if *e.kind() == ErrorKind::Interrupted => interrupted = true,
                Some(e) if sr.outcome == RunOutcome::Paused => {
                    paused.get_or_insert(e);
                }
                // The report carries every stream's error and the caller prints it once; an
                // ERROR line too would say it twice.
                Some(e) => {
                    debug!(parent: &span, stream = %name, kind = %e.kind(), error = %e.report(), "stream failed");
                    first_err.get_or_insert(e);
                }
                None => {}
            }
            info!(parent: &span, stream = %name, read = sr.read, written = sr.written, unchanged = sr.skipped_unchanged, superseded = sr.superseded, deleted = sr.deleted, dead_lettered = sr.dead_lettered, outcome = %sr.outcome, "stream finished");
            report.streams.insert(name, sr);
        }
        report.finished_at = crate::now_rfc3339();
        report.duration_ms = started.elapsed().as_millis() as u64;
        for (role, before, now) in
            [("source", http_before.0, sh.source.http_report()), ("sink", http_before.1, sh.sink.http_report())]
        {
            if let Some(now) = now {
                report.http.insert(role.to_owned(), now.since(&before.unwrap_or_default()));
            }
        }
        settle(&mut report, first_err, paused, interrupted);
        if !opts.dry_run {
            let json = serde_json::to_value(&report).unwrap_or_default();
            sh.state.finish_run(run_id, &report.finished_at, report.outcome, &json).await?;
            self.prune(&span).await;
        }
        info!(parent: &span, outcome = %report.outcome, duration_ms = report.duration_ms, "run finished");
        Ok(report)
    }

    /// The source's discovery, once per run, and then the selected specs as discovered
    /// (declared schemas, catalog keys). A failed discovery is handed to every stream, which
    /// fails with it before it reads: its outage policy applies as to a failed read.
    async fn discovered(
        &self,
        opts: &RunOptions,
        cx: &Cx,
        span: &tracing::Span,
    ) -> Result<(Vec<crate::stream::StreamSpec>, Option<Arc<Error>>), Error> {
        let discovery = self.discover(cx).await.err().map(Arc::new);
        if let Some(e) = &discovery {
            debug!(parent: span, kind = %e.kind(), error = %e.report(), "source discovery failed");
        }
        Ok((self.selected(opts)?, discovery))
    }

    /// The streams a run selects (all when `opts.streams` is empty), in the source's order;
    /// `Err` for an unknown stream, or a backfill of a stream without a cursor.
    fn selected(&self, opts: &RunOptions) -> Result<Vec<crate::stream::StreamSpec>, Error> {
        let sh = &self.shared;
        let specs = sh.source.streams();
        for s in &opts.streams {
            if !specs.iter().any(|sp| &sp.name == s) {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::config(format!(
                    "pipeline `{}` has no stream `{s}` (streams: {})",
                    sh.name,
                    known.join(", ")
                )));
            }
        }
        if opts.from.is_some() {
            for spec in specs.iter().filter(|s| opts.streams.contains(&s.name)) {
                let incremental = sh.streams.get(&spec.name).is_none_or(|o| o.sync_mode == SyncMode::Incremental);
                if spec.cursor_field.is_none() || !incremental {
                    return Err(Error::config(format!(
                        "stream `{}` of pipeline `{}` has no cursor to backfill from (`--from` applies to incremental streams with a cursor field)",
                        spec.name, sh.name
                    )));
                }
            }
        }
        Ok(specs.into_iter().filter(|s| opts.streams.is_empty() || opts.streams.contains(&s.name)).collect())
    }

    /// Prune history past retention, after the run and in small transactions; a failure
    /// costs nothing but a warning.
    async fn prune(&self, span: &tracing::Span) {
        let sh = &self.shared;
        if let Some(r) = &sh.retention {
            match sh.state.prune(&sh.name, r).await {
                Ok(p) if !p.is_empty() => info!(parent: span, pruned = ?p, "pruned history past retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!(parent: span, error = %e.report(), "could not prune history"),
            }
        }
    }
}

/// The run's outcome, exit code, error and next step from its streams' ends. A paused stream
/// did what its policy says, but its data is not current: the run is `paused` and exits with
/// the cause's code (Unavailable), unless something failed.
fn settle(report: &mut RunReport, first_err: Option<Error>, paused: Option<Error>, interrupted: bool) {
    (report.outcome, report.exit_code) = match (&first_err, &paused, interrupted) {
        (Some(e), _, _) => (RunOutcome::Failed, e.kind().exit_code()),
        (None, _, true) => (RunOutcome::Interrupted, ErrorKind::Interrupted.exit_code()),
        (None, Some(e), false) => (RunOutcome::Paused, e.kind().exit_code()),
        (None, None, false) => (RunOutcome::Succeeded, 0),
    };
    report.error = first_err.as_ref().or(paused.as_ref()).map(|e| e.report());
    report.next_step = first_err.as_ref().or(paused.as_ref()).map(|e| e.next_step());
    report.error_reason = first_err.as_ref().or(paused.as_ref()).map(|e| e.reason());
    report.error_at = first_err.as_ref().or(paused.as_ref()).and_then(|e| e.context().location.clone());
}

impl PipelineBuilder {
    /// The source.
    pub fn source(mut self, s: impl Source + 'static) -> Self {
        self.source = Some(Arc::new(s));
        self
    }
    /// The source, already shared.
    pub fn source_arc(mut self, s: Arc<dyn Source>) -> Self {
        self.source = Some(s);
        self
    }
    /// The sink.
    pub fn sink(mut self, s: impl Sink + 'static) -> Self {
        self.sink = Some(Arc::new(s));
        self
    }
    /// The sink, already shared.
    pub fn sink_arc(mut self, s: Arc<dyn Sink>) -> Self {
        self.sink = Some(s);
        self
    }
    /// The state store.
    pub fn state(mut self, s: impl StateStore + 'static) -> Self {
        self.state = Some(Arc::new(s));
        self
    }
    /// The state store, already shared.
    pub fn state_arc(mut self, s: Arc<dyn StateStore>) -> Self {
        self.state = Some(s);
        self
    }
    /// Settings for one stream (streams not named run with defaults).
    pub fn stream(mut self, name: impl Into<String>, opts: StreamOptions) -> Self {
        self.streams.insert(name.into(), opts);
        self
    }
    /// Shorthand: a stream with a mapping and default settings otherwise.
    pub fn stream_mapping(self, name: impl Into<String>, mapping: impl Transform + 'static) -> Self {
        self.stream(name, StreamOptions { mapping: Some(Arc::new(mapping)), ..Default::default() })
    }
    /// Records per page and per sink transaction (default 1000).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Fail a stream once more than `n` of its records were dead-lettered in a run.
    pub fn max_dead_letters(mut self, n: Option<u64>) -> Self {
        self.max_dead_letters = n;
        self
    }
    /// Fail a stream once dead letters exceed this share (0.0–1.0) of its records read (from 100 records on).
    pub fn max_dead_letter_ratio(mut self, r: Option<f64>) -> Self {
        self.max_dead_letter_ratio = r;
        self
    }
    /// Records a stream may queue in the outbox while its sink is down (default 100,000);
    /// past it the stream stops at its checkpoint until the sink is back.
    pub fn outbox_max(mut self, n: u64) -> Self {
        self.outbox_max = n;
        self
    }
    /// What records that drift from their stream's baseline get, per change class (default:
    /// `warn` for every class).
    pub fn drift_policy(mut self, policy: crate::drift::DriftPolicy) -> Self {
        self.drift_policy = policy;
        self
    }
    /// How much of each record's story to keep for `dovetail explain` (default `metadata`).
    pub fn explain(mut self, capture: crate::explain::ExplainCapture) -> Self {
        self.explain = capture;
        self
    }
    /// Prune history past `retention` after each run (default: never).
    pub fn retention(mut self, retention: crate::explain::Retention) -> Self {
        self.retention = Some(retention);
        self
    }
    /// Check the composition and build the pipeline.
    pub fn build(self) -> Result<Pipeline, Error> {
        let name = self.name;
        let source = self.source.ok_or_else(|| Error::config(format!("pipeline `{name}` has no source")))?;
        let sink = self.sink.ok_or_else(|| Error::config(format!("pipeline `{name}` has no sink")))?;
        let state = self.state.ok_or_else(|| Error::config(format!("pipeline `{name}` has no state store")))?;
        let specs = source.streams();
        for s in self.streams.keys() {
            if !specs.iter().any(|sp| &sp.name == s) {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::config(format!(
                    "pipeline `{name}` configures stream `{s}`, which its source does not have (streams: {})",
                    known.join(", ")
                )));
            }
        }
        if let Some(r) = self.max_dead_letter_ratio
            && !(0.0..=1.0).contains(&r)
        {
            return Err(Error::config(format!(
                "pipeline `{name}`: max_dead_letter_ratio must be between 0 and 1, got {r}"
            )));
        }
        Ok(Pipeline {
            shared: Arc::new(Shared {
                name,
                source,
                sink,
                state,
                streams: self.streams,
                batch_size: self.batch_size,
                max_dead_letters: self.max_dead_letters,
                max_dead_letter_ratio: self.max_dead_letter_ratio,
                outbox_max: self.outbox_max,
                drift_policy: self.drift_policy,
                explain: self.explain,
                retention: self.retention,
            }),
        })
    }
}
