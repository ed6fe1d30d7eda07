//! A commit of [`PgState`]: one transaction of pipelined statements (`crate::tx`) whose
//! ledger rows go in one `INSERT … SELECT FROM unnest(…)`, stamped with a receipt and fenced
//! by the run lock or a worker's lease; and the ledger reads of a batch.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use deadpool_postgres::Transaction;
use dovetail_core::state::{Commit, LedgerEntry};
use dovetail_core::{Error, Key, now_rfc3339};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::delivery::hash_of;
use crate::tx::TxConn;
use crate::{PgState, json_err, text, to_i64};

/// The ledger insert of a commit's rows, from `unnest` of one array per column.
macro_rules! ledger_insert {
    () => {
        "INSERT INTO ledger (stream_id, key, hash, pass, dest_id, repeated, run_id, fetch_id, item, outcome)
     SELECT $1, k, h, $2, d, r, ru, f, it, o
     FROM unnest($3::text[], $4::bytea[], $5::text[], $6::bool[], $7::int8[], $8::int8[], $9::int8[],
                 $10::int8[]) AS t(k, h, d, r, ru, f, it, o)"
    };
}

/// A commit's ledger rows in one statement, when none of its keys has a row yet.
const LEDGER_INSERT: &str = ledger_insert!();

/// A commit's ledger rows in one statement. A later row for the same key wins, and the
/// key is marked repeated (see [`LedgerCols::of`]).
const LEDGER_UPSERT: &str = concat!(
    ledger_insert!(),
    "
     ON CONFLICT (stream_id, key) DO UPDATE SET hash = excluded.hash, pass = excluded.pass,
         dest_id = coalesce(excluded.dest_id, ledger.dest_id), run_id = excluded.run_id,
         fetch_id = excluded.fetch_id, item = excluded.item, outcome = excluded.outcome,
         repeated = ledger.repeated OR excluded.repeated OR ledger.pass = excluded.pass"
);

/// How [`PgState::commit_in`] ended.
enum Landed {
    /// Committed, for the stream with this id.
    Committed(i64),
    /// The fence found another holder of the run lock: nothing written, the caller rolls back.
    Fenced,
    /// The plain ledger INSERT found a row already there (stream id): the transaction is
    /// aborted, and the commit goes again with the upsert.
    Conflict(i64),
}

/// A commit's outbox entries in one statement; ids follow queue order (rows are inserted in
/// the order of the arrays). A key already waiting is superseded: its older row is deleted
/// (the CTE sees only rows from before the statement), so the outbox holds each key once.
const OUTBOX_INSERT: &str = "WITH gone AS (DELETE FROM outbox WHERE stream_id = $1 AND key = ANY($2::text[]))
     INSERT INTO outbox (stream_id, key, hash, data, location, queued_at)
     SELECT $1, k, h, d, l, $6 FROM unnest($2::text[], $3::bytea[], $4::text[], $5::text[])
         WITH ORDINALITY AS t(k, h, d, l, n) ORDER BY n";

/// The columns of [`LEDGER_UPSERT`].
#[derive(Default)]
struct LedgerCols<'a> {
    keys: Vec<&'a str>,
    hashes: Vec<&'a [u8]>,
    dests: Vec<Option<&'a str>>,
    reps: Vec<bool>,
    runs: Vec<Option<i64>>,
    fetches: Vec<Option<i64>>,
    items: Vec<Option<i64>>,
    outcomes: Vec<Option<i64>>,
}

impl<'a> LedgerCols<'a> {
    /// A key twice in the commit keeps its last row and is marked repeated, as two upserts
    /// in one pass would mark it.
    fn of(c: &'a Commit, stories: &[Option<crate::explain::StoryCols>]) -> Self {
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(c.ledger.len());
        let mut twice: std::collections::HashSet<&str> = Default::default();
        for (i, e) in c.ledger.iter().enumerate() {
            if last.insert(e.key.as_str(), i).is_some() {
                twice.insert(e.key.as_str());
            }
        }
        let mut cols = LedgerCols::default();
        for (i, e) in c.ledger.iter().enumerate() {
            if last.get(e.key.as_str()) != Some(&i) {
                continue;
            }
            let story = stories.get(i).copied().flatten();
            cols.keys.push(e.key.as_str());
            cols.hashes.push(&e.hash.0[..]);
            cols.dests.push(e.dest_id.as_deref());
            cols.reps.push(twice.contains(e.key.as_str()));
            cols.runs.push(story.map(|s| s.0));
            cols.fetches.push(story.map(|s| s.1));
            cols.items.push(story.map(|s| s.2));
            cols.outcomes.push(story.map(|s| s.3));
        }
        cols
    }

    fn params<'p>(&'p self, sid: &'p i64, pass: &'p i64) -> Vec<&'p (dyn ToSql + Sync)> {
        vec![
            sid,
            pass,
            &self.keys,
            &self.hashes,
            &self.dests,
            &self.reps,
            &self.runs,
            &self.fetches,
            &self.items,
            &self.outcomes,
        ]
    }
}

/// The columns of [`OUTBOX_INSERT`].
struct OutboxCols<'a> {
    keys: Vec<&'a str>,
    hashes: Vec<&'a [u8]>,
    data: Vec<String>,
    locations: Vec<Option<String>>,
}

impl<'a> OutboxCols<'a> {
    /// A key twice in the commit keeps its last entry, as two commits would.
    fn of(c: &'a Commit) -> Result<Self, Error> {
        let last: HashMap<&str, usize> = c.outbox_add.iter().enumerate().map(|(i, e)| (e.key.as_str(), i)).collect();
        let kept: Vec<_> = c
            .outbox_add
            .iter()
            .enumerate()
            .filter(|(i, e)| last.get(e.key.as_str()) == Some(i))
            .map(|(_, e)| e)
            .collect();
        // `arbitrary_precision` keeps numbers as their exact text.
        let data = kept
            .iter()
            .map(|e| serde_json::to_string(&e.data).map_err(|err| json_err("an outbox record", err)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboxCols {
            keys: kept.iter().map(|e| e.key.as_str()).collect(),
            hashes: kept.iter().map(|e| &e.hash.0[..]).collect(),
            data,
            locations: kept.iter().map(|e| e.location.as_deref().map(|l| text(l).into_owned())).collect(),
        })
    }

    fn params<'p>(&'p self, sid: &'p i64, now: &'p String) -> Vec<&'p (dyn ToSql + Sync)> {
        vec![sid, &self.keys, &self.hashes, &self.data, &self.locations, now]
    }
}

impl PgState {
    /// Full ledger rows for `keys`, in order (one statement).
    pub async fn ledger_entries(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<LedgerEntry>>, Error> {
        let rows = self.ledger_rows(pipeline, stream, keys).await?;
        keys.iter()
            .map(|k| match rows.get(k.as_str()) {
                Some((hash, _, dest)) => {
                    Ok(Some(LedgerEntry { key: k.clone(), hash: hash_of(hash)?, dest_id: dest.clone() }))
                }
                None => Ok(None),
            })
            .collect()
    }

    /// key → (hash, repeated, dest_id) for the keys that have a row: one round trip.
    pub(crate) async fn ledger_rows(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<HashMap<String, (Vec<u8>, bool, Option<String>)>, Error> {
        let names: Vec<&str> = keys.iter().map(Key::as_str).collect();
        let names = &names;
        let lookup = || async move {
            let c = self.conn().await?;
            let Some(sid) = self.stream_id(&c, pipeline, stream).await? else {
                return Ok(HashMap::new());
            };
            let st = c
                .prepare_cached(
                    "SELECT key, hash, repeated, dest_id FROM ledger WHERE stream_id = $1 AND key = ANY($2)",
                )
                .await
                .map_err(|e| self.err("preparing the ledger lookup", e))?;
            let rows = c.query(&st, &[&sid, &names]).await.map_err(|e| self.err("looking up ledger rows", e))?;
            Ok(rows.into_iter().map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2), r.get(3)))).collect())
        };
        self.reconnecting("looking up ledger rows", lookup).await
    }

    /// Apply one commit on `tx`, a connection this opens a transaction on, stamped with
    /// `receipt` and fenced with `fence`; see [`Landed`] for how it ends.
    ///
    /// What a commit waits on is round trips (docs/performance.md), so its statements go out
    /// pipelined: polled together on one connection, sent in order, executed in the order
    /// sent, BEGIN with the first round and COMMIT with the second. Two rounds: the ledger
    /// rows need the fetch ids the first round returns, and nothing is written before the
    /// fence said this process still holds the run lock.
    async fn commit_in(&self, tx: &TxConn, c: &Commit, receipt: &str, fence: Option<&str>) -> Result<Landed, Error> {
        let pass = to_i64("pass", c.pass)?;
        let now = now_rfc3339();
        let begin = || async { tx.batch_execute("BEGIN").await.map_err(|e| self.err("starting a commit", e)) };
        let (sid, begun) = match self.cached_stream(&c.pipeline, &c.stream) {
            Some(id) => (id, false),
            None => {
                begin().await?;
                let row = tx
                    .query_one(
                        // A no-op update on conflict returns the existing id (and two processes
                        // registering one stream at once both get it).
                        "INSERT INTO streams (pipeline, stream) VALUES ($1, $2)
                         ON CONFLICT (pipeline, stream) DO UPDATE SET pipeline = excluded.pipeline RETURNING id",
                        &[&c.pipeline, &c.stream],
                    )
                    .await
                    .map_err(|e| self.err("registering a stream", e))?;
                (row.get(0), true)
            }
        };
        let ex = |sql: &'static str, what: &'static str| async move {
            tx.prepare_cached(sql).await.map_err(|e| self.err(what, e))
        };
        // The receipt and the fence in one statement. FOR SHARE: a run taking the lock over
        // waits for this commit, then sees its own token.
        let stamp = async {
            // A worker's lease: its epoch must still be the unit's (crate::lease).
            let lease = self.lease_of(&c.pipeline, &c.stream);
            let (unit, holder, epoch) = match &lease {
                Some(l) => (Some(l.unit.as_str()), Some(l.holder.as_str()), Some(l.epoch)),
                None => (None, None, None),
            };
            let st = ex(
                "UPDATE streams SET last_commit = $2 WHERE id = $1
                   AND ($3::text IS NULL
                        OR EXISTS (SELECT 1 FROM run_locks WHERE pipeline = $4 AND holder = $3 FOR SHARE))
                   AND ($5::bigint IS NULL
                        OR EXISTS (SELECT 1 FROM leases WHERE pipeline = $4 AND unit = $6 AND holder = $7
                                     AND epoch = $5 FOR SHARE))",
                "stamping the commit",
            )
            .await?;
            tx.execute(&st, &[&sid, &receipt, &fence, &c.pipeline, &epoch, &unit, &holder])
                .await
                .map_err(|e| self.err("stamping the commit", e))
        };
        let explain = async {
            match &c.explain {
                Some(x) => crate::explain::write(self, tx, sid, c, x).await,
                None => Ok(Vec::new()),
            }
        };
        // BEGIN is polled first, so it is sent before anything else of the commit.
        let begin = async { if begun { Ok(()) } else { begin().await } };
        let ((), stamped, stories) = tokio::try_join!(biased; begin, stamp, explain)?;
        if stamped == 0 {
            return Ok(Landed::Fenced);
        }
        // A stream's new rows go in by a plain INSERT (cheaper than ON CONFLICT: no
        // speculative insertion) until one of its commits finds a row already there.
        let plain = !self.upserts(sid);
        // Every statement of the second round is prepared before any is sent, so that a
        // first-time prepare cannot reorder them.
        let prep = |on: bool, sql: &'static str, what: &'static str| async move {
            if on { ex(sql, what).await.map(Some) } else { Ok(None) }
        };
        let ledger_sql = if plain { LEDGER_INSERT } else { LEDGER_UPSERT };
        let st_ledger = prep(!c.ledger.is_empty(), ledger_sql, "preparing the ledger upsert").await?;
        let st_touch = prep(
            !c.touched.is_empty(),
            "UPDATE ledger SET pass = $3 WHERE stream_id = $1 AND key = ANY($2)",
            "touching ledger rows",
        )
        .await?;
        let st_forget = prep(
            !c.forget.is_empty(),
            "DELETE FROM ledger WHERE stream_id = $1 AND key = ANY($2)",
            "deleting ledger rows",
        )
        .await?;
        let st_done = prep(
            // Only this stream's rows: an id of another stream is left alone.
            !c.outbox_done.is_empty(),
            "DELETE FROM outbox WHERE stream_id = $1 AND id = ANY($2)",
            "removing outbox entries",
        )
        .await?;
        let st_queue = prep(!c.outbox_add.is_empty(), OUTBOX_INSERT, "preparing the outbox insert").await?;
        let st_mark = prep(
            c.sink_mark.is_some(),
            "INSERT INTO sink_marks (stream_id, mark) VALUES ($1, $2)
             ON CONFLICT (stream_id) DO UPDATE SET mark = excluded.mark",
            "saving the sink mark",
        )
        .await?;
        // A key whose destination id this commit stores is created: its pending create (if
        // any) goes in the same transaction, so a crash never leaves one beside the id.
        let created: Vec<&str> = c.ledger.iter().filter(|e| e.dest_id.is_some()).map(|e| e.key.as_str()).collect();
        let st_pending = prep(
            !created.is_empty(),
            "DELETE FROM pending_creates WHERE pipeline = $1 AND stream = $2 AND key = ANY($3)",
            "clearing pending creates",
        )
        .await?;
        let st_cp = prep(
            c.checkpoint.is_some(),
            "INSERT INTO checkpoints (stream_id, checkpoint, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (stream_id) DO UPDATE SET checkpoint = excluded.checkpoint,
                 updated_at = excluded.updated_at",
            "saving the checkpoint",
        )
        .await?;
        let rows = LedgerCols::of(c, &stories);
        let touched: Vec<&str> = c.touched.iter().map(Key::as_str).collect();
        let forget: Vec<&str> = c.forget.iter().map(Key::as_str).collect();
        let queued = OutboxCols::of(c)?;
        let cp =
            c.checkpoint.as_ref().map(serde_json::to_string).transpose().map_err(|e| json_err("the checkpoint", e))?;
        // COMMIT goes out with the rest unless dead letters follow, and only when every
        // statement before it was sent: one refused before sending (its parameters) must not
        // leave the others to commit without it. A statement the server refuses after COMMIT
        // was sent aborts the transaction, and COMMIT then rolls it back.
        let commit_now = c.dead_letters.is_empty() && c.resolved_dead_letters.is_empty();
        let (failed, conflict) = (&AtomicBool::new(false), &AtomicBool::new(false));
        let run = |st, params, what, ledger: bool| async move {
            let done = Self::run_prepared(tx, st, params).await;
            match done {
                Err(e) if ledger && plain && e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    conflict.store(true, Relaxed);
                    Ok(())
                }
                Err(e) => {
                    failed.store(true, Relaxed);
                    Err(self.err(what, e))
                }
                Ok(()) => Ok(()),
            }
        };
        let commit = async {
            if !commit_now || failed.load(Relaxed) {
                return Ok(false);
            }
            tx.commit().await.map(|()| true).map_err(|e| self.err("committing a batch", e))
        };
        let (ledger, pending, touch, forget, done, queue, mark, cp, committed) = tokio::join!(
            biased;
            run(st_ledger, rows.params(&sid, &pass), "writing ledger rows", true),
            run(st_pending, vec![&c.pipeline, &c.stream, &created], "clearing pending creates", false),
            run(st_touch, vec![&sid, &touched, &pass], "touching ledger rows", false),
            run(st_forget, vec![&sid, &forget], "deleting ledger rows", false),
            run(st_done, vec![&sid, &c.outbox_done], "removing outbox entries", false),
            run(st_queue, queued.params(&sid, &now), "queueing outbox entries", false),
            run(st_mark, vec![&sid, &c.sink_mark], "saving the sink mark", false),
            run(st_cp, vec![&sid, &cp, &now], "saving the checkpoint", false),
            commit,
        );
        if conflict.load(Relaxed) {
            // The transaction is aborted (rolled back by COMMIT when that was sent); what
            // failed after the conflict failed for it.
            return Ok(Landed::Conflict(sid));
        }
        for r in [ledger, pending, touch, forget, done, queue, mark, cp] {
            r?;
        }
        if !committed? {
            // Rare (rejected or replayed records): one at a time, in order, after the rest.
            self.dead_letters_in(tx, sid, c, &now).await?;
            tx.commit().await.map_err(|e| self.err("committing a batch", e))?;
        }
        Ok(Landed::Committed(sid))
    }

    /// `st` with `params` when the commit has it.
    async fn run_prepared(
        tx: &TxConn,
        st: Option<tokio_postgres::Statement>,
        params: Vec<&(dyn ToSql + Sync)>,
    ) -> Result<(), tokio_postgres::Error> {
        if let Some(st) = st {
            tx.execute(&st, &params).await?;
        }
        Ok(())
    }

    /// The commit's dead letters and resolved dead letters.
    async fn dead_letters_in(&self, tx: &TxConn, sid: i64, c: &Commit, now: &str) -> Result<(), Error> {
        let ex = |sql: &'static str, what: &'static str| async move {
            tx.prepare_cached(sql).await.map_err(|e| self.err(what, e))
        };
        for d in &c.dead_letters {
            let created = if d.created_at.is_empty() { now } else { &d.created_at };
            let hash = d.raw_hash();
            let (raw, cut) = dovetail_core::state::bounded_raw(&d.raw);
            let raw_len = cut.or(d.raw_len).map(|n| n as i64);
            let st = ex(
                // The same raw input at the same place is one dead letter seen again.
                "INSERT INTO dead_letters
                   (pipeline, stream, key, kind, reason, path, location, raw, created_at, last_seen_at, raw_len,
                    raw_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)
                 ON CONFLICT (pipeline, stream, location, raw_hash) DO UPDATE SET
                   key = excluded.key, kind = excluded.kind, reason = excluded.reason, path = excluded.path,
                   last_seen_at = excluded.last_seen_at, seen_count = dead_letters.seen_count + 1",
                "storing a dead letter",
            )
            .await?;
            let (key, reason) = (d.key.as_deref().map(text), text(&d.reason));
            let (path, location) = (d.path.as_deref().map(text), text(d.location.as_deref().unwrap_or("")));
            tx.execute(
                &st,
                &[
                    &d.pipeline,
                    &d.stream,
                    &key.as_deref(),
                    &d.kind,
                    &&*reason,
                    &path.as_deref(),
                    &&*location,
                    &raw.as_bytes(),
                    &created,
                    &raw_len,
                    &&hash[..],
                ],
            )
            .await
            .map_err(|e| self.err("storing a dead letter", e))?;
        }
        if !c.resolved_dead_letters.is_empty() {
            // A replayed record's dead-letter story goes with it.
            let st = ex(
                "DELETE FROM explain_stories WHERE stream_id = $1
                   AND key IN (SELECT key FROM dead_letters WHERE id = ANY($2) AND key IS NOT NULL)",
                "removing replayed records' stories",
            )
            .await?;
            tx.execute(&st, &[&sid, &c.resolved_dead_letters]).await.map_err(|e| self.err("removing stories", e))?;
            let st = ex("DELETE FROM dead_letters WHERE id = ANY($1)", "removing resolved dead letters").await?;
            tx.execute(&st, &[&c.resolved_dead_letters]).await.map_err(|e| self.err("removing dead letters", e))?;
        }
        Ok(())
    }

    /// Apply `commit` in one transaction stamped with `receipt`; with `fence` (the run
    /// lock's holder token) the transaction also checks this process still holds the lock.
    pub(crate) async fn commit_once(&self, commit: &Commit, receipt: &str, fence: Option<&str>) -> Result<(), Error> {
        loop {
            let tx = TxConn::new(self.conn().await?);
            let landed = self.commit_in(&tx, commit, receipt, fence).await;
            if tx.is_open() && !landed.as_ref().is_err_and(crate::error::is_lost) {
                tx.rollback().await;
            }
            match landed? {
                Landed::Committed(sid) => {
                    self.cache_stream(&commit.pipeline, &commit.stream, sid);
                    return Ok(());
                }
                Landed::Fenced => {
                    if let Some(lease) = self.lease_of(&commit.pipeline, &commit.stream) {
                        return Err(self.fenced(&lease, &commit.stream).await);
                    }
                    let key = crate::lock::key(self.target().schema(), &commit.pipeline);
                    let holder = crate::lock::holder(&tx, key).await;
                    return Err(crate::lock::taken_over(self, &commit.pipeline, holder));
                }
                // Nothing landed: again, with the upsert from now on.
                Landed::Conflict(sid) => self.upsert_from_now(sid),
            }
        }
    }

    /// Whether the commit stamped `receipt` landed (the stream's last commit is it).
    pub(crate) async fn committed(&self, pipeline: &str, stream: &str, receipt: &str) -> Result<bool, Error> {
        let c = self.conn().await?;
        let row = c
            .query_opt("SELECT last_commit FROM streams WHERE pipeline = $1 AND stream = $2", &[&pipeline, &stream])
            .await
            .map_err(|e| self.err("checking whether a dropped commit landed", e))?;
        Ok(row.and_then(|r| r.get::<_, Option<String>>(0)).as_deref() == Some(receipt))
    }

    /// Run `f` on the stream ids of one stream or every stream of a pipeline, in one
    /// transaction.
    pub(crate) async fn stream_ids_in(
        tx: &Transaction<'_>,
        pipeline: &str,
        stream: Option<&str>,
    ) -> Result<Vec<i64>, tokio_postgres::Error> {
        let rows = tx
            .query(
                "SELECT id FROM streams WHERE pipeline = $1 AND ($2::text IS NULL OR stream = $2)",
                &[&pipeline, &stream],
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}
