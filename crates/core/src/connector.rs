//! The Source, Sink and Transform traits, and the values that cross them.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind};
use crate::record::{Key, Location, Record};
use crate::remote::{ResponseCache, TokenStore};
use crate::stream::{DeleteMode, StreamSpec};

/// Context handed to connectors on every call.
#[derive(Clone, Default)]
pub struct Cx {
    /// Pipeline name.
    pub pipeline: String,
    /// Cancelled when the run is asked to stop; long calls should return early.
    pub cancel: CancellationToken,
    /// The pipeline's pending creates in the state store, for a create-only sink whose
    /// idempotency keys expire (`None` outside a run or replay).
    pub pending: Option<Arc<dyn crate::state::PendingCreates>>,
}

impl std::fmt::Debug for Cx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx")
            .field("pipeline", &self.pipeline)
            .field("cancel", &self.cancel)
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

/// What the engine asks a source for.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// Stream to read.
    pub stream: String,
    /// Where to continue inside the current pass: what the source returned as `next` last
    /// time, or `None` to start a pass. The source must reject a position it cannot decode
    /// with a [`ErrorKind::Permanent`] error instead of guessing.
    pub position: Option<Value>,
    /// Inclusive lower bound of the cursor field for this pass, when the stream is
    /// incremental and has one. Sources may filter with it; the engine filters again.
    pub since: Option<Value>,
    /// Preferred number of records per page.
    pub batch_size: usize,
    /// The stream's policy is `use_cache`: when the remote is unavailable, answer from the
    /// last good responses (marking the records' provenance `stale`) instead of failing.
    pub use_cache: bool,
}

/// A record the source could not decode; it goes to dead letters.
#[derive(Debug, Clone)]
pub struct Reject {
    /// Where it was (`line 17`).
    pub location: Option<Location>,
    /// Why it was rejected.
    pub reason: String,
    /// Field path that was wrong, when known.
    pub path: Option<String>,
    /// The raw input, as text.
    pub raw: String,
    /// When the record was refused because its shape changed (a field of another type), that
    /// change: the engine counts it as drift as well as dead-lettering the record.
    pub drift: Option<Box<crate::drift::DriftEvent>>,
}

/// Where the next read continues.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// More to read in this pass from this position.
    More(Value),
    /// More to read in this pass from this position, but not in this run: the source's own
    /// page limit (a preview) ends the run here. The pass stays incomplete (no cursor move,
    /// no deletes) and the next run continues from the position.
    Later(Value),
    /// The pass is complete. `resume` is where the next run starts (`follow` mode for
    /// append-only files); `None` means the next run starts a fresh pass.
    Done {
        /// Position to start the next run from, if the source keeps one across passes.
        resume: Option<Value>,
    },
}

/// How far a stream's listing goes, as the API said on its last page: progress displays
/// show a total and an ETA from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The listing holds this many records (a `total` in the body).
    Records(u64),
    /// The page just read and the listing's last page (a `Link` header's `rel="last"`).
    Pages {
        /// The page just read, from 1.
        at: u64,
        /// The last page.
        last: u64,
    },
}

/// One page of a stream.
#[derive(Debug, Clone)]
pub struct Page {
    /// Decoded records.
    pub records: Vec<Record>,
    /// Records that failed decoding.
    pub rejects: Vec<Reject>,
    /// Where to continue.
    pub next: Next,
}

/// Reads named streams from somewhere.
#[async_trait]
pub trait Source: Send + Sync {
    /// Connector kind, e.g. `files`.
    fn kind(&self) -> &'static str;
    /// The streams this source exposes: without IO, whatever is known so far. Before
    /// [`Source::discover`] that is at least every stream's name (and its key and cursor as
    /// configured); after it, also what the remote declares (schema, catalog key).
    fn streams(&self) -> Vec<StreamSpec>;
    /// Read what the remote declares about the streams (a database's catalog, an API's
    /// properties), once per process; the engine calls it at the start of a run, a check or a
    /// preview, never while a config loads. Errors carry the connector's context and kind (an
    /// unreachable host is `Unavailable`). The default has nothing to discover.
    async fn discover(&self, cx: &Cx) -> Result<(), Error> {
        let _ = cx;
        Ok(())
    }
    /// Probe connectivity and permissions without reading data.
    async fn check(&self, cx: &Cx) -> Result<(), Error>;
    /// Read the next page of a stream.
    async fn read(&self, req: &ReadRequest, cx: &Cx) -> Result<Page, Error>;
    /// The source's HTTP figures so far (cumulative; the engine reports the difference
    /// over a run). `None` for sources that do not speak HTTP.
    fn http_report(&self) -> Option<crate::report::HttpReport> {
        None
    }
    /// How far `stream`'s listing goes, when the API said so on the last page read (default:
    /// unknown). Read between pages by progress displays, never by the engine.
    fn extent(&self, stream: &str) -> Option<Extent> {
        let _ = stream;
        None
    }
    /// Turn a dead letter's raw input back into a record for replay (default: parse it as JSON).
    fn decode_raw(&self, stream: &str, raw: &str) -> Result<Value, Reject> {
        let _ = stream;
        serde_json::from_str(raw).map_err(|e| Reject {
            location: None,
            reason: format!("invalid JSON: {e}"),
            path: None,
            raw: raw.to_owned(),
            drift: None,
        })
    }
}

/// What a sink is told about a stream before writing to it.
#[derive(Debug, Clone)]
pub struct SinkStream {
    /// Stream name (a table name for database sinks).
    pub name: String,
    /// Columns of the primary key, in order, as they appear in mapped records.
    pub key_columns: Vec<String>,
    /// JSON Schema of mapped records, when known (else the sink looks at the data).
    pub schema: Option<Value>,
    /// How a completed full refresh treats rows that disappeared.
    pub delete_mode: DeleteMode,
}

/// A batch of mapped records for one stream.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The stream the records belong to.
    pub stream: Arc<SinkStream>,
    /// Mapped records, each with its key set. Shared: the engine keeps the batch to build
    /// dead letters for records the sink rejects, so sinks only borrow it.
    pub records: Arc<[Record]>,
    /// For sinks in [`WriteMode::CreateWithIdempotencyKey`]: one hint per record, in order.
    /// Empty for upsert sinks.
    pub hints: Arc<[CreateHint]>,
    /// What to do with a record whose value no longer fits its destination column.
    pub column_drift: ColumnDrift,
    /// The checkpoint that passes this batch, for a sink that commits it with the rows and
    /// hands it back through [`Sink::committed_position`] (`None` outside the engine).
    pub checkpoint: Option<crate::state::Checkpoint>,
    /// The epoch of the worker's lease on the stream (`None` outside `dovetail worker`): a
    /// sink that stores it with its rows refuses a batch older than what it stored.
    pub lease_epoch: Option<i64>,
    /// Whether the engine started this write while the stream's previous one was still
    /// running ([`Sink::writes_in_flight`] above 1): the sink commits it only after that one
    /// committed, and fails it (uncommitted) when that one failed.
    pub overlaps: bool,
}

impl Batch {
    /// A batch without create hints (what upsert sinks get), writing drifting records.
    pub fn new(stream: Arc<SinkStream>, records: Arc<[Record]>) -> Self {
        Batch {
            stream,
            records,
            hints: Arc::from([]),
            column_drift: ColumnDrift::Write,
            checkpoint: None,
            lease_epoch: None,
            overlaps: false,
        }
    }

    /// The same batch carrying the checkpoint that passes it.
    pub fn with_checkpoint(mut self, checkpoint: crate::state::Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// The same batch with another [`ColumnDrift`].
    pub fn with_column_drift(mut self, column_drift: ColumnDrift) -> Self {
        self.column_drift = column_drift;
        self
    }
}

/// What a sink does with a record whose value no longer fits the destination column made
/// for its field (an object arriving in a column created for numbers): `column_type` drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColumnDrift {
    /// Write it as the destination allows and report the drift (the policy is `warn`).
    #[default]
    Write,
    /// Leave it out of the write and report the drift; the engine dead-letters it or pauses
    /// the stream, per the pipeline's drift policy.
    Refuse,
}

/// What a create-only sink needs to write one record exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateHint {
    /// Deterministic idempotency key derived from (pipeline, stream, primary key, content
    /// hash): a retry or a rerun of the same record sends the same key, so the destination
    /// creates it once; a changed record gets a new key.
    pub idempotency_key: String,
    /// The id the destination gave this record on an earlier run (from the ledger): update
    /// that record instead of creating another.
    pub dest_id: Option<String>,
}

/// What a sink did with a batch.
#[derive(Debug, Default)]
pub struct WriteReport {
    /// Records written (inserted or updated).
    pub written: u64,
    /// Records the sink refused, by index in the batch, with the reason; they go to dead letters.
    pub rejected: Vec<(usize, Error)>,
    /// Destination ids by index in the batch, for sinks that create records elsewhere.
    pub dest_ids: Vec<Option<String>>,
    /// Of `written`, creates the destination answered from its idempotency store (made by
    /// an earlier attempt), counted in the stream's `replayed`.
    pub replayed: u64,
    /// Records with a value that does not fit its destination column (class `column_type`:
    /// path = the field, expected = what the column was made for), by index in the batch:
    /// written anyway under [`ColumnDrift::Write`]; under [`ColumnDrift::Refuse`] not written,
    /// not counted in `written` and not in `rejected`. One entry per record (its first misfit).
    pub drift: Vec<(usize, crate::drift::DriftEvent)>,
}

/// How a sink makes writes idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Insert or update by primary key.
    Upsert,
    /// Create with a deterministic idempotency key; the ledger keeps the destination id.
    CreateWithIdempotencyKey,
}

/// A local place a sink writes to: the runner refuses a sink aimed at dovetail's own state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkTarget {
    /// A local file the sink creates or writes.
    File {
        /// The key of the sink's config table that names it (`path`), for messages.
        key: &'static str,
        /// The file as the connector resolved it ([`BuildCx::resolve`]), not canonicalized.
        path: PathBuf,
    },
    /// A schema of a database server the sink creates tables in.
    Schema {
        /// The key of the sink's config table that names the schema (`schema`), for messages.
        key: &'static str,
        /// The database as `host:port/database` (lower-case host), never with credentials.
        database: String,
        /// The schema's name.
        schema: String,
    },
}

/// What a sink found of a stream's destination at [`Sink::recall`], against the mark the
/// state stored with the stream's last commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkRecall {
    /// The sink cannot tell (the default; a REST API): the ledger is trusted.
    Unknown,
    /// What the last commit left is there (a longer JSONL file was cut back to it).
    Intact,
    /// The destination is gone or was rebuilt, in words that name it and say how: what the
    /// ledger remembers is no longer there.
    Lost(String),
}

/// Writes mapped records somewhere.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Connector kind, e.g. `sqlite`.
    fn kind(&self) -> &'static str;
    /// Where this sink would write these streams (the source's), without IO; default: nowhere local.
    fn targets(&self, streams: &[String]) -> Vec<SinkTarget> {
        let _ = streams;
        Vec::new()
    }
    /// How writes are made idempotent.
    fn write_mode(&self) -> WriteMode {
        WriteMode::Upsert
    }
    /// Probe connectivity and permissions without writing data.
    async fn check(&self, cx: &Cx) -> Result<(), Error>;
    /// Prepare a stream's destination (create a table, open a file).
    async fn open(&self, stream: &SinkStream, cx: &Cx) -> Result<(), Error>;
    /// Called before [`Sink::open`] with the mark stored with the stream's last commit
    /// (`None`: none stored): is what the ledger remembers still at the destination? A sink
    /// that can tell answers `Lost` for a missing (or rebuilt) destination — the engine then
    /// voids the stream's ledger and re-syncs it when the ledger has rows — and may cut back
    /// what was written after the last commit. The default cannot tell.
    async fn recall(&self, stream: &SinkStream, remembered: Option<&str>, cx: &Cx) -> Result<SinkRecall, Error> {
        let _ = (stream, remembered, cx);
        Ok(SinkRecall::Unknown)
    }
    /// The stream's mark after the last write or delete (a table's creation marker, a file's
    /// length), committed with the batch and handed back to [`Sink::recall`] by the next run.
    /// The default has none.
    fn mark(&self, stream: &str) -> Option<String> {
        let _ = stream;
        None
    }
    /// Write a batch durably; return only once it is committed.
    async fn write(&self, batch: Batch, cx: &Cx) -> Result<WriteReport, Error>;
    /// How many [`Sink::write`]s of one stream the engine may have running at once (default
    /// 1: each waits for the one before). Above 1 the engine polls each write before it starts
    /// the next and takes their answers in order, so the sink can order its commits by when
    /// its writes started; it must never commit a batch after an earlier one of the stream
    /// failed (that batch's checkpoint would pass the lost one): such a write fails instead,
    /// and the engine writes it again, alone, once the failure before it is dealt with.
    fn writes_in_flight(&self) -> usize {
        1
    }
    /// Called after [`Sink::recall`] and [`Sink::open`], before the stream reads: a checkpoint
    /// the sink committed in the same transaction as a batch's rows ([`Batch::checkpoint`])
    /// that the state store never got (a crash between the two commits), so the engine
    /// resumes after that batch instead of writing it again. `None` (the default) when the
    /// sink keeps none or is not ahead of the mark handed to `recall`.
    async fn committed_position(
        &self,
        stream: &SinkStream,
        cx: &Cx,
    ) -> Result<Option<crate::state::Checkpoint>, Error> {
        let _ = (stream, cx);
        Ok(None)
    }
    /// The sink's HTTP figures so far (cumulative), for sinks that speak HTTP.
    fn http_report(&self) -> Option<crate::report::HttpReport> {
        None
    }
    /// `dovetail drift accept` took these `column_type` drifts of the stream into its
    /// baseline: from now on the sink takes such values without reporting them (called after
    /// `open`, every run, with every accepted one; the default ignores them).
    async fn accept_drift(
        &self,
        stream: &SinkStream,
        accepted: &[crate::drift::DriftEvent],
        cx: &Cx,
    ) -> Result<(), Error> {
        let _ = (stream, accepted, cx);
        Ok(())
    }
    /// Delete (or soft-delete, per the stream's delete mode) rows by key; returns how many.
    async fn delete(&self, stream: &SinkStream, keys: &[Key], cx: &Cx) -> Result<u64, Error> {
        let _ = (keys, cx);
        Err(Error::new(
            ErrorKind::Config,
            format!("sink `{}` cannot delete rows (stream `{}`)", self.kind(), stream.name),
        ))
    }
}

/// A record-to-record transformation: synchronous and pure.
pub trait Transform: Send + Sync {
    /// Map one record's data to zero or more output records.
    fn apply(&self, data: Value) -> Result<Vec<Value>, TransformError>;
    /// Output column of an input field path, if this transform keeps it (used to carry the
    /// primary key through renames). The default keeps paths unchanged.
    fn output_path(&self, input: &str) -> Option<String> {
        Some(input.to_owned())
    }
    /// The transform's config as JSON, stored with each run's records so `dovetail explain`
    /// can show and re-apply it (`None`: a transform in code, not describable).
    fn describe(&self) -> Option<Value> {
        None
    }
}

/// A transform failed on one record.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason} (field `{path}`)")]
pub struct TransformError {
    /// Field path that failed.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl<F> Transform for F
where
    F: Fn(Value) -> Result<Vec<Value>, TransformError> + Send + Sync,
{
    fn apply(&self, data: Value) -> Result<Vec<Value>, TransformError> {
        self(data)
    }
}

/// The identity transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Transform for Identity {
    fn apply(&self, data: Value) -> Result<Vec<Value>, TransformError> {
        Ok(vec![data])
    }
}

/// What a connector's `build` may know: no IO happens there.
#[derive(Clone, Default)]
pub struct BuildCx {
    /// Directory relative paths in the config are resolved against (the config file's folder).
    pub base_dir: PathBuf,
    /// Pipeline the connector is built for.
    pub pipeline: String,
    /// Where API connectors keep rotated OAuth2 refresh tokens (the runner's token store).
    pub token_store: Option<Arc<dyn TokenStore>>,
    /// Where API connectors keep responses for conditional requests and stale serving.
    pub response_cache: Option<Arc<dyn ResponseCache>>,
    /// Where each key of the connector's config table is written (`url` →
    /// `dovetail.toml:7`), so a failure at run time can point at the setting.
    pub places: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for BuildCx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildCx")
            .field("base_dir", &self.base_dir)
            .field("pipeline", &self.pipeline)
            .field("token_store", &self.token_store.is_some())
            .field("response_cache", &self.response_cache.is_some())
            .field("places", &self.places)
            .finish()
    }
}

impl BuildCx {
    /// Resolve a config path against the config file's folder.
    pub fn resolve(&self, p: &std::path::Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }

    /// Where config key `key` of the connector is written (`dovetail.toml:7`), when known.
    pub fn place(&self, key: &str) -> Option<&str> {
        self.places.get(key).map(String::as_str)
    }
}

/// A source the runner can build from config: one registry line per connector.
pub trait SourceConnector: Source + Sized + 'static {
    /// The `kind` that selects this connector in config.
    const KIND: &'static str;
    /// Typed config (`deny_unknown_fields`, documented fields).
    type Config: serde::de::DeserializeOwned + schemars::JsonSchema;
    /// Build from config, without IO.
    fn build(config: Self::Config, cx: &BuildCx) -> Result<Self, Error>;
}

/// A sink the runner can build from config: one registry line per connector.
pub trait SinkConnector: Sink + Sized + 'static {
    /// The `kind` that selects this connector in config.
    const KIND: &'static str;
    /// Typed config (`deny_unknown_fields`, documented fields).
    type Config: serde::de::DeserializeOwned + schemars::JsonSchema;
    /// Build from config, without IO.
    fn build(config: Self::Config, cx: &BuildCx) -> Result<Self, Error>;
}
