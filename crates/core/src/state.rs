//! The state-store contract and the types it stores. `dovetail-state` implements it.
//!
//! It is two traits, so a new backend can be brought up delivery-first:
//! - [`DeliveryStore`]: what a run of a stream needs to deliver exactly once — run lock,
//!   checkpoints, idempotency ledger, the atomic per-batch [`Commit`], outbox, pauses and
//!   the stream's schema baseline;
//! - [`HistoryStore`]: what is read after the fact — runs, dead letters, drift history,
//!   explain stories and retention.
//!
//! [`StateStore`] is both, and is what the engine and the runner hold. A method belongs to
//! delivery when a stream's run cannot deliver correctly without it (that is what a new
//! backend must get right first), to history when it only tells what happened. The state
//! conformance suite in `dovetail-testkit` checks every method of both on every backend.

use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;

use crate::error::Error;
pub use crate::names::{DriftClass, PauseKind, RunOutcome};
use crate::record::{ContentHash, Key};

/// Inclusive cursor bound plus the keys already delivered at exactly that value, so records
/// sharing one cursor value across a checkpoint boundary are neither lost nor repeated.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CursorState {
    /// Greatest cursor value delivered.
    pub value: Value,
    /// Canonical keys delivered with exactly `value`.
    pub keys: Vec<String>,
}

/// A stream's durable position. Advanced only after the sink acknowledged every record before it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Source position inside the current pass (`None`: the next read starts a pass).
    pub position: Option<Value>,
    /// Generation of the current pass; ledger rows touched in it carry this number.
    pub pass: u64,
    /// Cursor bound the current pass filters with (fixed for the whole pass).
    pub floor: Option<CursorState>,
    /// Greatest cursor seen so far in the current pass; becomes the floor when the pass completes.
    pub max: Option<CursorState>,
    /// Whether the last pass completed (the next read starts a new pass).
    pub pass_complete: bool,
}

/// One idempotency-ledger row: what was last written for a key.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    /// Canonical primary key.
    pub key: Key,
    /// Content hash of the mapped record written.
    pub hash: ContentHash,
    /// Destination id, for sinks that create records elsewhere.
    pub dest_id: Option<String>,
}

/// What the ledger knows of a key when a batch is sorted: the hash of what the sink holds,
/// and whether the key ever came more than once in one pass of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerVersion {
    /// Content hash of the mapped record last written.
    pub hash: ContentHash,
    /// Set for good once a row is written twice in one pass (two records of the key): a
    /// later run then holds back a record of the key that differs from `hash` until it
    /// knows whether a later record of the key follows in the pass.
    pub repeated: bool,
}

/// A create a sink sent (or is about to send) whose destination id is not known yet: written
/// durably before the request goes out, cleared once the id is in the ledger. A run that
/// finds one knows an object may exist at the destination without the ledger saying so, and
/// looks it up before creating again (an idempotency key outlives no vendor's window for ever:
/// Stripe's lives 24 hours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCreate {
    /// Canonical primary key of the record being created.
    pub key: Key,
    /// The `Idempotency-Key` the create was (or will be) sent with.
    pub idempotency_key: String,
    /// When it was recorded (RFC 3339): how old the key is at the destination.
    pub since: String,
}

/// A sink's narrow handle on its pipeline's pending creates ([`Cx::pending`](crate::Cx)): the
/// three [`DeliveryStore`] methods, bound to the pipeline. The commit that stores a key's
/// destination id clears its pending create in the same transaction ([`DeliveryStore::commit`]).
#[async_trait]
pub trait PendingCreates: Send + Sync {
    /// Record a create about to be sent, durably, before it goes out
    /// ([`DeliveryStore::record_pending_create`]).
    async fn record(&self, stream: &str, pending: &PendingCreate) -> Result<(), Error>;
    /// The pending creates of `keys`, in order ([`DeliveryStore::pending_creates`]).
    async fn get(&self, stream: &str, keys: &[Key]) -> Result<Vec<Option<PendingCreate>>, Error>;
    /// Forget a pending create whose outcome is known ([`DeliveryStore::clear_pending_create`]).
    async fn clear(&self, stream: &str, key: &Key) -> Result<bool, Error>;
    /// Note the request id of the write that delivered `key`
    /// ([`DeliveryStore::record_write_request`]); the default keeps none.
    async fn note_write(&self, stream: &str, key: &Key, request_id: &str) -> Result<(), Error> {
        let _ = (stream, key, request_id);
        Ok(())
    }
}

/// [`PendingCreates`] of one pipeline in a [`DeliveryStore`].
pub struct StorePendingCreates {
    /// The store.
    pub state: Arc<dyn DeliveryStore>,
    /// The pipeline.
    pub pipeline: String,
}

#[async_trait]
impl PendingCreates for StorePendingCreates {
    async fn record(&self, stream: &str, pending: &PendingCreate) -> Result<(), Error> {
        self.state.record_pending_create(&self.pipeline, stream, pending).await
    }
    async fn get(&self, stream: &str, keys: &[Key]) -> Result<Vec<Option<PendingCreate>>, Error> {
        self.state.pending_creates(&self.pipeline, stream, keys).await
    }
    async fn clear(&self, stream: &str, key: &Key) -> Result<bool, Error> {
        self.state.clear_pending_create(&self.pipeline, stream, key).await
    }
    async fn note_write(&self, stream: &str, key: &Key, request_id: &str) -> Result<(), Error> {
        self.state.record_write_request(&self.pipeline, stream, key, request_id).await
    }
}

impl DeadLetter {
    /// The reason without the `LOCATION: ` it starts with, when it does (the location is
    /// kept apart, in [`DeadLetter::location`]).
    pub fn reason_alone(&self) -> &str {
        self.location
            .as_deref()
            .and_then(|l| self.reason.strip_prefix(l))
            .and_then(|r| r.strip_prefix(": "))
            .unwrap_or(&self.reason)
    }
}

/// What `dovetail dead-letters list --group-by` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterGroup {
    /// The reason text.
    Reason,
    /// The field path at fault (`None` when none was known).
    Path,
}

/// One group of dead letters and how many it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterCount {
    /// The reason or path the group shares (`None`: no path known, or the total).
    pub value: Option<String>,
    /// Dead letters in the group.
    pub count: u64,
}

/// A record that could not be delivered, with everything needed to explain and replay it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Row id (0 before it is stored).
    pub id: i64,
    /// Pipeline name.
    pub pipeline: String,
    /// Stream name.
    pub stream: String,
    /// Canonical key, when it could be extracted.
    pub key: Option<String>,
    /// Error kind name (`data`, `permanent`, ...).
    pub kind: String,
    /// Why, in words that name the file, line and field.
    pub reason: String,
    /// Field path at fault, when known.
    pub path: Option<String>,
    /// Where it came from (`orders.jsonl line 17`).
    pub location: Option<String>,
    /// The raw input, unchanged — or, when [`DeadLetter::raw_len`] is set, its first
    /// [`DEAD_LETTER_RAW_MAX`] bytes.
    pub raw: String,
    /// The full length in bytes of a raw input longer than [`DEAD_LETTER_RAW_MAX`], whose
    /// stored `raw` was cut to bound the state; such a record cannot be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_len: Option<u64>,
    /// When it was first stored (RFC 3339); the store fills it in when a commit leaves it empty.
    pub created_at: String,
    /// How many times this same raw input at this same place failed (re-reads of a file
    /// see it again; it is stored once).
    #[serde(default = "one")]
    pub seen_count: u64,
}

fn one() -> u64 {
    1
}

/// The most of a dead letter's raw input a store keeps: 1 MiB. A longer input (a 50 MB bad
/// line) is cut to this, with its full length in [`DeadLetter::raw_len`].
pub const DEAD_LETTER_RAW_MAX: usize = 1 << 20;

impl DeadLetter {
    /// What dead letters are deduplicated by, with pipeline, stream and location: xxh3-128 of
    /// the full raw input. Stores index this instead of the raw text, which would store a
    /// large input twice. Take it before [`DeadLetter::bound_raw`].
    pub fn raw_hash(&self) -> [u8; 16] {
        raw_hash(&self.raw)
    }

    /// Cut `raw` to at most [`DEAD_LETTER_RAW_MAX`] bytes, recording its full length in
    /// `raw_len`; a no-op for a shorter input.
    pub fn bound_raw(&mut self) {
        let (kept, full) = bounded_raw(&self.raw);
        if let Some(full) = full {
            let end = kept.len();
            self.raw.truncate(end);
            self.raw_len = Some(full);
        }
    }
}

/// xxh3-128 of a raw input: see [`DeadLetter::raw_hash`].
pub fn raw_hash(raw: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(raw.as_bytes()).to_le_bytes()
}

/// A raw input as a store keeps it: at most [`DEAD_LETTER_RAW_MAX`] bytes (cut at a
/// character boundary), with its full length when it was cut.
pub fn bounded_raw(raw: &str) -> (&str, Option<u64>) {
    if raw.len() <= DEAD_LETTER_RAW_MAX {
        return (raw, None);
    }
    let mut end = DEAD_LETTER_RAW_MAX;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    (&raw[..end], Some(raw.len() as u64))
}

/// Everything one batch changes in the state store, committed in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// Pipeline name.
    pub pipeline: String,
    /// Stream name.
    pub stream: String,
    /// Pass number stamped on the `ledger` and `touched` rows.
    pub pass: u64,
    /// Ledger rows to insert or update.
    pub ledger: Vec<LedgerEntry>,
    /// Keys read unchanged in this pass; only their pass number is bumped (used for delete propagation).
    pub touched: Vec<Key>,
    /// Ledger rows to remove (their sink rows were deleted).
    pub forget: Vec<Key>,
    /// Dead letters to add.
    pub dead_letters: Vec<DeadLetter>,
    /// Dead letters that were replayed successfully and must be removed.
    pub resolved_dead_letters: Vec<i64>,
    /// New checkpoint, or `None` to leave it as it is.
    pub checkpoint: Option<Checkpoint>,
    /// Mapped records to queue in the outbox (their sink is down), in order.
    pub outbox_add: Vec<OutboxEntry>,
    /// Outbox entries delivered (or dead-lettered) and to remove, by id.
    pub outbox_done: Vec<i64>,
    /// What `dovetail explain` needs about this batch's records, committed with them.
    pub explain: Option<crate::explain::ExplainBatch>,
    /// The sink's mark after this batch's write ([`crate::Sink::mark`]), stored for the
    /// stream with the batch, or `None` to leave the stored one as it is.
    pub sink_mark: Option<String>,
}

/// A mapped record waiting in the durable outbox for its sink to come back.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Row id, increasing in queue order (0 before it is stored).
    pub id: i64,
    /// Canonical primary key.
    pub key: Key,
    /// Content hash of the mapped record (for the ledger once delivered).
    pub hash: ContentHash,
    /// The mapped record, as the sink will get it.
    pub data: Value,
    /// Where the record came from (`GET /v1/items item 3`), for messages and dead letters.
    pub location: Option<String>,
}

/// A stream that does not run until it is resumed (or, for an outage, until a probe succeeds).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PausedStream {
    /// Pipeline name.
    pub pipeline: String,
    /// Stream name.
    pub stream: String,
    /// Why: `unavailable` (probed again by the next run), `drift` (waits for `drift
    /// accept`) or `rate_limited` (skipped until `until`).
    pub kind: PauseKind,
    /// The cause, in words.
    pub reason: String,
    /// When it was paused (RFC 3339).
    pub since: String,
    /// When it lifts by itself (RFC 3339): the time a rate-limited API allows requests again.
    #[serde(default)]
    pub until: Option<String>,
    /// Where the cause happened (the request's URL without secrets, a file), kept apart from
    /// `reason` so a table can show the reason first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Stored outcome of one run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// Pipeline name.
    pub pipeline: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339), `None` while running or if the process died.
    pub finished_at: Option<String>,
    /// `running` until it ends, then `succeeded`, `failed`, `interrupted` or `paused` (the
    /// run's report's outcome), or `abandoned` when its process died before it ended.
    pub outcome: RunOutcome,
    /// The full [`crate::report::RunReport`] as JSON, once finished.
    pub report: Option<Value>,
}

/// Held while a pipeline runs; dropping it releases the lock.
pub trait RunLock: Send + Sync + std::fmt::Debug {}

/// The delivery contract: everything one run of a stream reads and writes to deliver
/// records exactly once — the run lock, checkpoints, the idempotency ledger, the one
/// transaction per batch ([`DeliveryStore::commit`]), the durable outbox, pauses, and the
/// stream's schema baseline (read and saved as the stream starts).
///
/// A new backend implements this first: with it (and a [`HistoryStore`] that may still be
/// thin) pipelines run with their full delivery guarantee. Implementations must make
/// [`DeliveryStore::commit`] atomic: a commit that fails at any point leaves nothing of
/// itself behind. `dovetail-testkit`'s state conformance suite checks every method.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Take the run lock of a pipeline. A lock held by a live process is refused with a
    /// [`crate::ErrorKind::Config`] error naming that process; a dead process never holds it.
    async fn lock(&self, pipeline: &str) -> Result<Box<dyn RunLock>, Error>;
    /// The checkpoint of a stream, if any.
    async fn checkpoint(&self, pipeline: &str, stream: &str) -> Result<Option<Checkpoint>, Error>;
    /// Forget a stream's checkpoint (or every stream's, with `stream = None`) and lift its pause;
    /// the ledger and the outbox stay (the outbox holds writes still owed to the sink).
    /// Returns how many checkpoints were forgotten. Here rather than in history because it
    /// changes where the next run starts.
    async fn reset(&self, pipeline: &str, stream: Option<&str>) -> Result<u64, Error>;
    /// Ledger hashes for keys, in the same order (`None` where the key was never written).
    async fn ledger_lookup(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<ContentHash>>, Error>;
    /// Ledger hashes for keys with whether each key repeated in a pass (see
    /// [`LedgerVersion`]), in the same order. A store that implements only
    /// [`ledger_lookup`](Self::ledger_lookup) answers `repeated: false`: a source that repeats
    /// a key across batches then writes its versions again on every run, never skips wrongly.
    async fn ledger_versions(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<LedgerVersion>>, Error> {
        let hashes = self.ledger_lookup(pipeline, stream, keys).await?;
        Ok(hashes.into_iter().map(|h| h.map(|hash| LedgerVersion { hash, repeated: false })).collect())
    }
    /// Destination ids stored with ledger rows (create-only sinks), in the order of `keys`.
    async fn ledger_dest_ids(&self, pipeline: &str, stream: &str, keys: &[Key]) -> Result<Vec<Option<String>>, Error>;
    /// Durably record a create about to be sent (see [`PendingCreate`]), replacing an earlier
    /// pending create of its key (a create sent again under a new idempotency key restarts its
    /// window). Neither [`reset`](Self::reset) nor [`forget_ledger`](Self::forget_ledger)
    /// drops it: the object may exist whatever the source does next. The default refuses, so
    /// a sink that needs it cannot run on a store without it.
    async fn record_pending_create(&self, pipeline: &str, stream: &str, pending: &PendingCreate) -> Result<(), Error> {
        let _ = (pipeline, stream, pending);
        Err(Error::config("this state store does not keep pending creates, which this sink needs"))
    }
    /// The pending creates of `keys` (see [`PendingCreate`]), in the same order (`None`
    /// where none is pending).
    async fn pending_creates(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<PendingCreate>>, Error> {
        let _ = (pipeline, stream);
        Ok(vec![None; keys.len()])
    }
    /// Clear the pending create of `key` once its outcome is known (its destination id is
    /// committed to the ledger, or the record was dead-lettered); returns whether one was
    /// pending.
    async fn clear_pending_create(&self, pipeline: &str, stream: &str, key: &Key) -> Result<bool, Error> {
        let _ = (pipeline, stream, key);
        Ok(false)
    }
    /// Note the destination's request id (Stripe's `Request-Id`) of the write that delivered
    /// `key`, replacing the one noted before, for `dovetail explain`
    /// ([`HistoryStore::write_request`]). The default keeps none.
    async fn record_write_request(
        &self,
        pipeline: &str,
        stream: &str,
        key: &Key,
        request_id: &str,
    ) -> Result<(), Error> {
        let _ = (pipeline, stream, key, request_id);
        Ok(())
    }
    /// Whether the ledger holds any row for a stream. The default (`true`) is always safe;
    /// `false` lets an initial load skip every lookup, so it must never be answered for a
    /// stream that has rows.
    async fn has_ledger(&self, pipeline: &str, stream: &str) -> Result<bool, Error> {
        let _ = (pipeline, stream);
        Ok(true)
    }
    /// The sink's mark stored with the stream's last commit that carried one
    /// ([`Commit::sink_mark`]); `None` when none was ever stored or it was forgotten.
    async fn sink_mark(&self, pipeline: &str, stream: &str) -> Result<Option<String>, Error>;
    /// Forget what the ledger remembers of the sink for one stream (or every stream of the
    /// pipeline): its content hashes, its stored sink mark, its checkpoint and the request ids
    /// of its writes ([`record_write_request`](Self::record_write_request)), so the next
    /// run re-reads the stream from its start and writes every record again. With
    /// `keep_dest_ids` the rows that hold a destination id keep it (with a hash that matches
    /// no record), so a create-only sink updates them instead of creating them again; else
    /// the rows go. The outbox and pauses stay. Returns how many ledger rows were changed.
    async fn forget_ledger(&self, pipeline: &str, stream: Option<&str>, keep_dest_ids: bool) -> Result<u64, Error>;
    /// Up to `limit` keys whose ledger pass is older than `pass` (gone from the source in a
    /// full refresh), in no particular order.
    async fn stale_keys(&self, pipeline: &str, stream: &str, pass: u64, limit: usize) -> Result<Vec<Key>, Error>;
    /// Apply one batch's state changes in a single transaction: all of [`Commit`]'s parts or
    /// none. Its dead letters and explain stories are written here, with the batch, and read
    /// back through [`HistoryStore`]; a store that keeps no stories may ignore
    /// [`Commit::explain`]. A ledger row written again in the pass that last wrote or
    /// touched it is marked [`LedgerVersion::repeated`], for good. A ledger row that stores a
    /// destination id clears its key's pending create (a store that keeps them), in the same
    /// transaction: a crash never leaves a pending create beside a committed id.
    async fn commit(&self, commit: Commit) -> Result<(), Error>;
    /// The oldest `limit` entries of a stream's outbox, in queue order.
    async fn outbox(&self, pipeline: &str, stream: &str, limit: usize) -> Result<Vec<OutboxEntry>, Error>;
    /// How many entries wait in a stream's outbox.
    async fn outbox_len(&self, pipeline: &str, stream: &str) -> Result<u64, Error>;
    /// Streams with records waiting in their outbox: (pipeline, stream, records), ordered.
    async fn outbox_depths(&self, pipeline: Option<&str>) -> Result<Vec<(String, String, u64)>, Error>;
    /// Mark a stream paused, replacing an earlier pause of it.
    async fn pause(&self, pause: &PausedStream) -> Result<(), Error>;
    /// Clear a stream's pause; returns whether it was paused.
    async fn unpause(&self, pipeline: &str, stream: &str) -> Result<bool, Error>;
    /// Paused streams, of one pipeline or all, ordered by pipeline and stream.
    async fn paused(&self, pipeline: Option<&str>) -> Result<Vec<PausedStream>, Error>;
    /// The stored schema baseline of a stream.
    async fn baseline(&self, pipeline: &str, stream: &str) -> Result<Option<Value>, Error>;
    /// Store a stream's schema baseline (replacing any previous one).
    async fn save_baseline(&self, pipeline: &str, stream: &str, schema: &Value) -> Result<(), Error>;
}

/// The history contract: what operators and reports read after the fact — run records,
/// dead letters (written by [`DeliveryStore::commit`], listed and fetched here), drift
/// history, each key's story for `dovetail explain`, and retention.
///
/// No stream needs any of it to deliver a record (a run records its start and end, but its
/// delivery does not depend on them), which is why it is apart from [`DeliveryStore`]: a
/// backend can bring delivery up first. One trait rather than one per table because every
/// method answers the same question ("what happened?") and retention prunes them together.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// Record the start of a run and return its id (ids increase).
    async fn begin_run(&self, pipeline: &str, started_at: &str) -> Result<i64, Error>;
    /// Record the end of a run with its outcome and report; an unknown id is an error.
    async fn finish_run(
        &self,
        run_id: i64,
        finished_at: &str,
        outcome: RunOutcome,
        report: &Value,
    ) -> Result<(), Error>;
    /// The latest runs, newest first, optionally of one pipeline.
    async fn runs(&self, pipeline: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, Error>;
    /// Every pipeline with a run in the history, by name. The default reads the runs; a
    /// store should answer from an index instead of loading every report.
    async fn run_pipelines(&self) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = self.runs(None, usize::MAX).await?.into_iter().map(|r| r.pipeline).collect();
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }
    /// Dead letters, oldest first, optionally filtered by pipeline and stream.
    async fn dead_letters(
        &self,
        pipeline: Option<&str>,
        stream: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, Error>;
    /// One dead letter by id.
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, Error>;
    /// How many dead letters there are (filtered like [`HistoryStore::dead_letters`]), grouped
    /// by reason or field path — most first, then by value — or, with `by` `None`, one group
    /// holding the total.
    async fn dead_letter_counts(
        &self,
        pipeline: Option<&str>,
        stream: Option<&str>,
        by: Option<DeadLetterGroup>,
    ) -> Result<Vec<DeadLetterCount>, Error>;
    /// Add a run's drift events to the stream's drift history: one row per (path, change,
    /// observed shape), its count growing and its last-seen time moving with each run.
    async fn record_drift(
        &self,
        pipeline: &str,
        stream: &str,
        events: &[crate::drift::DriftEvent],
    ) -> Result<(), Error>;
    /// Drift history, newest first (all pipelines when `None`), accepted rows included.
    async fn drift_events(&self, pipeline: Option<&str>) -> Result<Vec<StoredDrift>, Error>;
    /// Mark a stream's open drift events accepted (`at`, RFC 3339); returns how many.
    async fn accept_drift(&self, pipeline: &str, stream: &str, at: &str) -> Result<u64, Error>;
    /// What is known about one key of a stream, for `dovetail explain`. The default knows
    /// nothing (stores that keep no stories).
    async fn key_history(&self, pipeline: &str, stream: &str, key: &Key) -> Result<crate::explain::KeyHistory, Error> {
        let _ = (pipeline, stream, key);
        Ok(crate::explain::KeyHistory::default())
    }
    /// The request id of the last write that delivered `key`
    /// ([`DeliveryStore::record_write_request`]); the default knows none.
    async fn write_request(&self, pipeline: &str, stream: &str, key: &Key) -> Result<Option<String>, Error> {
        let _ = (pipeline, stream, key);
        Ok(None)
    }
    /// Remove run history, stories, accepted drift and (if configured) old dead letters of
    /// a pipeline past `retention`, in small transactions. The default prunes nothing.
    async fn prune(
        &self,
        pipeline: &str,
        retention: &crate::explain::Retention,
    ) -> Result<crate::explain::Pruned, Error> {
        let _ = (pipeline, retention);
        Ok(crate::explain::Pruned::default())
    }
}

/// Durable state of dovetail: both contracts, which is what the engine and the runner hold
/// (`Arc<dyn StateStore>`). Implemented for every type that implements [`DeliveryStore`]
/// and [`HistoryStore`]; `dovetail-state` does, and so does
/// [`MemoryState`](crate::testing::MemoryState).
pub trait StateStore: DeliveryStore + HistoryStore {}

impl<T: DeliveryStore + HistoryStore + ?Sized> StateStore for T {}

/// One drift in a stream's history: a [`DriftEvent`](crate::drift::DriftEvent) kept across
/// runs, deduplicated by (path, change, observed shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredDrift {
    /// Pipeline name.
    pub pipeline: String,
    /// Stream name.
    pub stream: String,
    /// JSON pointer of the field.
    pub path: String,
    /// The change class, as in [`DriftEvent::change`](crate::drift::DriftEvent::change).
    pub change: DriftClass,
    /// What the baseline allowed.
    pub expected: String,
    /// What arrived.
    pub observed: String,
    /// Records that showed it, over every run.
    pub count: u64,
    /// When it was first seen (RFC 3339).
    pub first_seen: String,
    /// When it was last seen (RFC 3339).
    pub last_seen: String,
    /// Where it was first seen (request and item).
    pub first_at: String,
    /// When an operator accepted it into the baseline (`dovetail drift accept`).
    pub accepted_at: Option<String>,
}
