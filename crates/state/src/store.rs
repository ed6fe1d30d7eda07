//! [`DeliveryStore`] and [`HistoryStore`] (together core's `StateStore`) for [`SqliteState`]:
//! each method moves its arguments onto the blocking pool and runs one function of
//! [`crate::ops`], [`crate::history`] or [`crate::explain`] there.

use async_trait::async_trait;
use dovetail_core::explain::{KeyHistory, Pruned, Retention};
use dovetail_core::state::{
    Checkpoint, Commit, DeadLetter, DeadLetterCount, DeadLetterGroup, DeliveryStore, HistoryStore, LedgerEntry,
    LedgerVersion, OutboxEntry, PausedStream, PendingCreate, RunLock, RunRecord,
};
use dovetail_core::{ContentHash, Error, Key, RunOutcome};
use serde_json::Value;

use crate::{LockPlace, SqliteState, history, lock, ops, pending};

impl SqliteState {
    /// Full ledger rows (hash and destination id) for `keys`, in the same order, `None` where
    /// a key was never written. Sinks that create records elsewhere use the destination id to
    /// update instead of creating again.
    ///
    /// A commit whose ledger entry has no `dest_id` keeps the one already stored.
    pub async fn ledger_entries(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<LedgerEntry>>, Error> {
        let (p, s, keys) = (pipeline.to_owned(), stream.to_owned(), keys.to_vec());
        self.with_db(move |db| ops::ledger_entries(db, &p, &s, &keys)).await
    }
}

#[async_trait]
impl DeliveryStore for SqliteState {
    /// Takes the `flock` on `<db>.locks/<pipeline>.lock` (see [`SqliteState::lock_dir`]), then
    /// marks the pipeline's runs still `running` as [`ABANDONED`](crate::ABANDONED): whoever
    /// started them no longer holds the lock, so they can never finish.
    async fn lock(&self, pipeline: &str) -> Result<Box<dyn RunLock>, Error> {
        let guard = match &self.locks {
            LockPlace::Dir(dir) => {
                let (dir, p) = (dir.clone(), pipeline.to_owned());
                tokio::task::spawn_blocking(move || lock::lock_file(&dir, &p))
                    .await
                    .map_err(|e| Error::internal("state store task failed").with_source(e))??
            }
            LockPlace::Memory(set) => lock::lock_memory(set, pipeline)?,
        };
        let p = pipeline.to_owned();
        // On error the guard drops here and the lock is released.
        let abandoned = self.with_db(move |db| history::abandon_runs(db, &p)).await?;
        if abandoned > 0 {
            tracing::warn!(pipeline, abandoned, "marked runs left `running` by a process that died as abandoned");
        }
        Ok(Box::new(guard))
    }

    async fn checkpoint(&self, pipeline: &str, stream: &str) -> Result<Option<Checkpoint>, Error> {
        let (p, s) = (pipeline.to_owned(), stream.to_owned());
        self.with_db(move |db| ops::checkpoint(db, &p, &s)).await
    }

    /// Deletes the checkpoints (returning how many) and, in the same transaction, clears the
    /// pauses of the reset stream(s): a reset is an explicit request to run them again. The
    /// ledger stays, and so does the outbox: its entries are real writes still owed to the
    /// sink, drained when it is back, whatever position the source restarts from.
    async fn reset(&self, pipeline: &str, stream: Option<&str>) -> Result<u64, Error> {
        let (p, s) = (pipeline.to_owned(), stream.map(str::to_owned));
        self.with_db(move |db| ops::reset(db, &p, s.as_deref())).await
    }

    async fn ledger_lookup(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<ContentHash>>, Error> {
        let (p, s, keys) = (pipeline.to_owned(), stream.to_owned(), keys.to_vec());
        self.with_reader(move |db| ops::ledger_hashes(db, &p, &s, &keys)).await
    }

    async fn ledger_versions(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<LedgerVersion>>, Error> {
        let (p, s, keys) = (pipeline.to_owned(), stream.to_owned(), keys.to_vec());
        self.with_reader(move |db| ops::ledger_versions(db, &p, &s, &keys)).await
    }

    async fn record_pending_create(&self, pipeline: &str, stream: &str, pending: &PendingCreate) -> Result<(), Error> {
        let (p, s, pending) = (pipeline.to_owned(), stream.to_owned(), pending.clone());
        self.with_db(move |db| pending::record(db, &p, &s, &pending)).await
    }

    async fn pending_creates(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<PendingCreate>>, Error> {
        let (p, s, keys) = (pipeline.to_owned(), stream.to_owned(), keys.to_vec());
        self.with_db(move |db| pending::lookup(db, &p, &s, &keys)).await
    }

    async fn clear_pending_create(&self, pipeline: &str, stream: &str, key: &Key) -> Result<bool, Error> {
        let (p, s, k) = (pipeline.to_owned(), stream.to_owned(), key.clone());
        self.with_db(move |db| pending::clear(db, &p, &s, &k)).await
    }

    async fn record_write_request(
        &self,
        pipeline: &str,
        stream: &str,
        key: &Key,
        request_id: &str,
    ) -> Result<(), Error> {
        let (p, s, k, r) = (pipeline.to_owned(), stream.to_owned(), key.clone(), request_id.to_owned());
        self.with_db(move |db| pending::record_write(db, &p, &s, &k, &r)).await
    }

    /// Read on the reader connection, like ledger lookups, so draining never queues behind a
    /// commit; it sees every commit that has returned.
    async fn outbox(&self, pipeline: &str, stream: &str, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        let (p, s) = (pipeline.to_owned(), stream.to_owned());
        self.with_reader(move |db| ops::outbox(db, &p, &s, limit)).await
    }

    async fn outbox_len(&self, pipeline: &str, stream: &str) -> Result<u64, Error> {
        let (p, s) = (pipeline.to_owned(), stream.to_owned());
        self.with_reader(move |db| ops::outbox_len(db, &p, &s)).await
    }

    async fn outbox_depths(&self, pipeline: Option<&str>) -> Result<Vec<(String, String, u64)>, Error> {
        let p = pipeline.map(str::to_owned);
        self.with_reader(move |db| ops::outbox_depths(db, p.as_deref())).await
    }

    async fn pause(&self, pause: &PausedStream) -> Result<(), Error> {
        let pause = pause.clone();
        self.with_db(move |db| ops::pause(db, &pause)).await
    }

    async fn unpause(&self, pipeline: &str, stream: &str) -> Result<bool, Error> {
        let (p, s) = (pipeline.to_owned(), stream.to_owned());
        self.with_db(move |db| ops::unpause(db, &p, &s)).await
    }

    async fn paused(&self, pipeline: Option<&str>) -> Result<Vec<PausedStream>, Error> {
        let p = pipeline.map(str::to_owned);
        self.with_db(move |db| ops::paused(db, p.as_deref())).await
    }

    async fn ledger_dest_ids(&self, pipeline: &str, stream: &str, keys: &[Key]) -> Result<Vec<Option<String>>, Error> {
        let entries = self.ledger_entries(pipeline, stream, keys).await?;
        Ok(entries.into_iter().map(|e| e.and_then(|e| e.dest_id)).collect())
    }

    async fn has_ledger(&self, pipeline: &str, stream: &str) -> Result<bool, Error> {
        let (p, s) = (pipeline.to_owned(), stream.to_owned());
        self.with_reader(move |db| ops::has_ledger(db, &p, &s)).await
    }

    async fn sink_mark(&self, pipeline: &str, stream: &str) -> Result<Option<String>, Error> {
        let (p, s) = (pipeline.to_owned(), stream.to_owned());
        self.with_db(move |db| ops::sink_mark(db, &p, &s)).await
    }

    async fn forget_ledger(&self, pipeline: &str, stream: Option<&str>, keep_dest_ids: bool) -> Result<u64, Error> {
        let (p, s) = (pipeline.to_owned(), stream.map(str::to_owned));
        self.with_db(move |db| ops::forget_ledger(db, &p, s.as_deref(), keep_dest_ids)).await
    }

    async fn stale_keys(&self, pipeline: &str, stream: &str, pass: u64, limit: usize) -> Result<Vec<Key>, Error> {
        let (p, s) = (pipeline.to_owned(), stream.to_owned());
        self.with_db(move |db| ops::stale_keys(db, &p, &s, pass, limit)).await
    }

    async fn commit(&self, commit: Commit) -> Result<(), Error> {
        self.with_db(move |db| {
            ops::commit(db, &commit).map_err(|e| e.in_pipeline(&commit.pipeline).in_stream(&commit.stream))
        })
        .await
    }

    async fn baseline(&self, pipeline: &str, stream: &str) -> Result<Option<Value>, Error> {
        let (p, s) = (pipeline.to_owned(), stream.to_owned());
        self.with_db(move |db| history::baseline(db, &p, &s)).await
    }

    async fn save_baseline(&self, pipeline: &str, stream: &str, schema: &Value) -> Result<(), Error> {
        let (p, s, v) = (pipeline.to_owned(), stream.to_owned(), schema.clone());
        self.with_db(move |db| history::save_baseline(db, &p, &s, &v)).await
    }
}

#[async_trait]
impl HistoryStore for SqliteState {
    async fn begin_run(&self, pipeline: &str, started_at: &str) -> Result<i64, Error> {
        let (p, t) = (pipeline.to_owned(), started_at.to_owned());
        self.with_db(move |db| history::begin_run(db, &p, &t)).await
    }

    async fn finish_run(
        &self,
        run_id: i64,
        finished_at: &str,
        outcome: RunOutcome,
        report: &Value,
    ) -> Result<(), Error> {
        let (t, r) = (finished_at.to_owned(), report.clone());
        self.with_db(move |db| history::finish_run(db, run_id, &t, outcome, &r)).await
    }

    async fn runs(&self, pipeline: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, Error> {
        let p = pipeline.map(str::to_owned);
        self.with_db(move |db| history::runs(db, p.as_deref(), limit)).await
    }

    async fn run_pipelines(&self) -> Result<Vec<String>, Error> {
        self.with_db(history::run_pipelines).await
    }

    async fn dead_letters(
        &self,
        pipeline: Option<&str>,
        stream: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        let (p, s) = (pipeline.map(str::to_owned), stream.map(str::to_owned));
        self.with_db(move |db| ops::dead_letters(db, p.as_deref(), s.as_deref(), limit)).await
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, Error> {
        self.with_db(move |db| ops::dead_letter(db, id)).await
    }

    async fn dead_letter_counts(
        &self,
        pipeline: Option<&str>,
        stream: Option<&str>,
        by: Option<DeadLetterGroup>,
    ) -> Result<Vec<DeadLetterCount>, Error> {
        let (p, s) = (pipeline.map(str::to_owned), stream.map(str::to_owned));
        self.with_db(move |db| history::dead_letter_counts(db, p.as_deref(), s.as_deref(), by)).await
    }

    async fn record_drift(
        &self,
        pipeline: &str,
        stream: &str,
        events: &[dovetail_core::drift::DriftEvent],
    ) -> Result<(), Error> {
        let (p, s, e) = (pipeline.to_owned(), stream.to_owned(), events.to_vec());
        self.with_db(move |db| history::record_drift(db, &p, &s, &e)).await
    }

    async fn drift_events(&self, pipeline: Option<&str>) -> Result<Vec<dovetail_core::StoredDrift>, Error> {
        let p = pipeline.map(str::to_owned);
        self.with_db(move |db| history::drift_events(db, p.as_deref())).await
    }

    async fn accept_drift(&self, pipeline: &str, stream: &str, at: &str) -> Result<u64, Error> {
        let (p, s, at) = (pipeline.to_owned(), stream.to_owned(), at.to_owned());
        self.with_db(move |db| history::accept_drift(db, &p, &s, &at)).await
    }

    /// Read on the reader connection: explaining a key never waits for a run's commits.
    async fn key_history(&self, pipeline: &str, stream: &str, key: &Key) -> Result<KeyHistory, Error> {
        let (p, s, k) = (pipeline.to_owned(), stream.to_owned(), key.clone());
        self.with_reader(move |db| crate::explain::key_history(db, &p, &s, &k)).await
    }

    async fn write_request(&self, pipeline: &str, stream: &str, key: &Key) -> Result<Option<String>, Error> {
        let (p, s, k) = (pipeline.to_owned(), stream.to_owned(), key.clone());
        self.with_reader(move |db| pending::write_request(db, &p, &s, &k)).await
    }

    /// Batches of `retention.batch` rows, each its own short write transaction, with the
    /// writer's lock released between them (so a concurrent run's commits interleave).
    async fn prune(&self, pipeline: &str, retention: &Retention) -> Result<Pruned, Error> {
        let (st, p, r) = (self.clone(), pipeline.to_owned(), retention.clone());
        tokio::task::spawn_blocking(move || crate::explain::prune(&st, &p, &r))
            .await
            .map_err(|e| Error::internal("state store task failed").with_source(e))?
    }
}
