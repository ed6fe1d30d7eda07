//! [`DeliveryStore`] for [`PgState`]: a batch's ledger lookup is one statement, a commit one
//! transaction whose ledger rows go in one `INSERT … SELECT FROM unnest(…)`.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use dovetail_core::state::{
    Checkpoint, Commit, DeliveryStore, LedgerEntry, LedgerVersion, OutboxEntry, PausedStream, RunLock,
};
use dovetail_core::{ContentHash, Error, Key, now_rfc3339};
use serde_json::Value;

use crate::{PgState, json_err, limit, stored_name, text, to_i64};

fn hash_of(bytes: &[u8]) -> Result<ContentHash, Error> {
    let b: [u8; 16] = bytes
        .try_into()
        .map_err(|_| Error::internal(format!("state store: a stored hash has {} bytes, expected 16", bytes.len())))?;
    Ok(ContentHash(b))
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
    async fn ledger_rows(
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

    /// Apply one commit inside `tx`.
    async fn commit_in(&self, tx: &Transaction<'_>, c: &Commit) -> Result<i64, Error> {
        let pass = to_i64("pass", c.pass)?;
        let now = now_rfc3339();
        let sid: i64 = match self.cached_stream(&c.pipeline, &c.stream) {
            Some(id) => id,
            None => tx
                .query_one(
                    // A no-op update on conflict returns the existing id (and two processes
                    // registering one stream at once both get it).
                    "INSERT INTO streams (pipeline, stream) VALUES ($1, $2)
                     ON CONFLICT (pipeline, stream) DO UPDATE SET pipeline = excluded.pipeline RETURNING id",
                    &[&c.pipeline, &c.stream],
                )
                .await
                .map_err(|e| self.err("registering a stream", e))?
                .get(0),
        };
        let stories = match &c.explain {
            Some(x) => crate::explain::write(self, tx, sid, c, x).await?,
            None => Vec::new(),
        };
        if !c.ledger.is_empty() {
            self.write_ledger(tx, sid, pass, c, &stories).await?;
        }
        let ex = |sql: &'static str, what: &'static str| async move {
            tx.prepare_cached(sql).await.map_err(|e| self.err(what, e))
        };
        if !c.touched.is_empty() {
            let keys: Vec<&str> = c.touched.iter().map(Key::as_str).collect();
            let st = ex("UPDATE ledger SET pass = $3 WHERE stream_id = $1 AND key = ANY($2)", "touching ledger rows")
                .await?;
            tx.execute(&st, &[&sid, &keys, &pass]).await.map_err(|e| self.err("touching ledger rows", e))?;
        }
        if !c.forget.is_empty() {
            let keys: Vec<&str> = c.forget.iter().map(Key::as_str).collect();
            let st = ex("DELETE FROM ledger WHERE stream_id = $1 AND key = ANY($2)", "deleting ledger rows").await?;
            tx.execute(&st, &[&sid, &keys]).await.map_err(|e| self.err("deleting ledger rows", e))?;
        }
        if !c.outbox_done.is_empty() {
            // Only this stream's rows: an id of another stream is left alone.
            let st = ex("DELETE FROM outbox WHERE stream_id = $1 AND id = ANY($2)", "removing outbox entries").await?;
            tx.execute(&st, &[&sid, &c.outbox_done]).await.map_err(|e| self.err("removing outbox entries", e))?;
        }
        if !c.outbox_add.is_empty() {
            self.queue_outbox(tx, sid, c, &now).await?;
        }
        for d in &c.dead_letters {
            let created = if d.created_at.is_empty() { &now } else { &d.created_at };
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
        if let Some(mark) = &c.sink_mark {
            let st = ex(
                "INSERT INTO sink_marks (stream_id, mark) VALUES ($1, $2)
                 ON CONFLICT (stream_id) DO UPDATE SET mark = excluded.mark",
                "saving the sink mark",
            )
            .await?;
            tx.execute(&st, &[&sid, mark]).await.map_err(|e| self.err("saving the sink mark", e))?;
        }
        if let Some(cp) = &c.checkpoint {
            let cp = serde_json::to_string(cp).map_err(|e| json_err("the checkpoint", e))?;
            let st = ex(
                "INSERT INTO checkpoints (stream_id, checkpoint, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (stream_id) DO UPDATE SET checkpoint = excluded.checkpoint,
                     updated_at = excluded.updated_at",
                "saving the checkpoint",
            )
            .await?;
            tx.execute(&st, &[&sid, &cp, &now]).await.map_err(|e| self.err("saving the checkpoint", e))?;
        }
        Ok(sid)
    }

    /// The commit's ledger rows in one statement. A key twice in the commit keeps its last
    /// row and is marked repeated, as two upserts in one pass would mark it.
    async fn write_ledger(
        &self,
        tx: &Transaction<'_>,
        sid: i64,
        pass: i64,
        c: &Commit,
        stories: &[Option<crate::explain::StoryCols>],
    ) -> Result<(), Error> {
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(c.ledger.len());
        let mut twice: std::collections::HashSet<&str> = Default::default();
        for (i, e) in c.ledger.iter().enumerate() {
            if last.insert(e.key.as_str(), i).is_some() {
                twice.insert(e.key.as_str());
            }
        }
        let n = last.len();
        let (mut keys, mut hashes, mut dests, mut reps) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut runs, mut fetches, mut items, mut outcomes) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (i, e) in c.ledger.iter().enumerate() {
            if last.get(e.key.as_str()) != Some(&i) {
                continue;
            }
            let story = stories.get(i).copied().flatten();
            keys.push(e.key.as_str());
            hashes.push(&e.hash.0[..]);
            dests.push(e.dest_id.as_deref());
            reps.push(twice.contains(e.key.as_str()));
            runs.push(story.map(|s| s.0));
            fetches.push(story.map(|s| s.1));
            items.push(story.map(|s| s.2));
            outcomes.push(story.map(|s| s.3));
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO ledger (stream_id, key, hash, pass, dest_id, repeated, run_id, fetch_id, item, outcome)
                 SELECT $1, k, h, $2, d, r, ru, f, it, o
                 FROM unnest($3::text[], $4::bytea[], $5::text[], $6::bool[], $7::int8[], $8::int8[], $9::int8[],
                             $10::int8[]) AS t(k, h, d, r, ru, f, it, o)
                 ON CONFLICT (stream_id, key) DO UPDATE SET hash = excluded.hash, pass = excluded.pass,
                     dest_id = coalesce(excluded.dest_id, ledger.dest_id), run_id = excluded.run_id,
                     fetch_id = excluded.fetch_id, item = excluded.item, outcome = excluded.outcome,
                     repeated = ledger.repeated OR excluded.repeated OR ledger.pass = excluded.pass",
            )
            .await
            .map_err(|e| self.err("preparing the ledger upsert", e))?;
        tx.execute(&st, &[&sid, &pass, &keys, &hashes, &dests, &reps, &runs, &fetches, &items, &outcomes])
            .await
            .map_err(|e| self.err("writing ledger rows", e))?;
        Ok(())
    }

    async fn queue_outbox(&self, tx: &Transaction<'_>, sid: i64, c: &Commit, now: &str) -> Result<(), Error> {
        // `arbitrary_precision` keeps numbers as their exact text.
        let data = c
            .outbox_add
            .iter()
            .map(|e| serde_json::to_string(&e.data).map_err(|err| json_err("an outbox record", err)))
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<&str> = c.outbox_add.iter().map(|e| e.key.as_str()).collect();
        let hashes: Vec<&[u8]> = c.outbox_add.iter().map(|e| &e.hash.0[..]).collect();
        let locations: Vec<Option<String>> =
            c.outbox_add.iter().map(|e| e.location.as_deref().map(|l| text(l).into_owned())).collect();
        let st = tx
            .prepare_cached(
                // Ids follow queue order: rows are inserted in the order of the arrays.
                "INSERT INTO outbox (stream_id, key, hash, data, location, queued_at)
                 SELECT $1, k, h, d, l, $6 FROM unnest($2::text[], $3::bytea[], $4::text[], $5::text[])
                     WITH ORDINALITY AS t(k, h, d, l, n) ORDER BY n",
            )
            .await
            .map_err(|e| self.err("preparing the outbox insert", e))?;
        tx.execute(&st, &[&sid, &keys, &hashes, &data, &locations, &now])
            .await
            .map_err(|e| self.err("queueing outbox entries", e))?;
        Ok(())
    }

    /// Apply `commit` in one transaction stamped with `receipt`; with `fence` (the run
    /// lock's holder token) the transaction first checks this process still holds the lock.
    async fn commit_once(&self, commit: &Commit, receipt: &str, fence: Option<&str>) -> Result<(), Error> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(|e| self.err("starting a commit", e))?;
        if let Some(token) = fence {
            // FOR SHARE: a run taking the lock over waits for this commit, then sees its own token.
            let st = tx
                .prepare_cached("SELECT 1 FROM run_locks WHERE pipeline = $1 AND holder = $2 FOR SHARE")
                .await
                .map_err(|e| self.err("checking the run lock", e))?;
            let held = tx
                .query_opt(&st, &[&commit.pipeline, &token])
                .await
                .map_err(|e| self.err("checking the run lock", e))?;
            if held.is_none() {
                drop(tx);
                let key = crate::lock::key(self.target().schema(), &commit.pipeline);
                let holder = crate::lock::holder(&c, key).await;
                return Err(crate::lock::taken_over(self, &commit.pipeline, holder));
            }
        }
        let sid = self.commit_in(&tx, commit).await?;
        let st = tx
            .prepare_cached("UPDATE streams SET last_commit = $2 WHERE id = $1")
            .await
            .map_err(|e| self.err("stamping the commit", e))?;
        tx.execute(&st, &[&sid, &receipt]).await.map_err(|e| self.err("stamping the commit", e))?;
        tx.commit().await.map_err(|e| self.err("committing a batch", e))?;
        self.cache_stream(&commit.pipeline, &commit.stream, sid);
        Ok(())
    }

    /// Whether the commit stamped `receipt` landed (the stream's last commit is it).
    async fn committed(&self, pipeline: &str, stream: &str, receipt: &str) -> Result<bool, Error> {
        let c = self.conn().await?;
        let row = c
            .query_opt("SELECT last_commit FROM streams WHERE pipeline = $1 AND stream = $2", &[&pipeline, &stream])
            .await
            .map_err(|e| self.err("checking whether a dropped commit landed", e))?;
        Ok(row.and_then(|r| r.get::<_, Option<String>>(0)).as_deref() == Some(receipt))
    }

    /// Run `f` on the stream ids of one stream or every stream of a pipeline, in one
    /// transaction.
    async fn stream_ids_in(
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

#[async_trait]
impl DeliveryStore for PgState {
    /// A session advisory lock on a connection of its own (see [`crate::lock`]), then the
    /// pipeline's runs still `running` are marked abandoned.
    async fn lock(&self, pipeline: &str) -> Result<Box<dyn RunLock>, Error> {
        self.ready().await?;
        let guard = crate::lock::take(self, pipeline).await?;
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE runs SET outcome = $3 WHERE pipeline = $1 AND outcome = $2",
                &[&pipeline, &crate::history::RUNNING.as_str(), &crate::history::ABANDONED.as_str()],
            )
            .await
            .map_err(|e| self.err("marking abandoned runs", e))?;
        if n > 0 {
            tracing::warn!(pipeline, abandoned = n, "marked runs left `running` by a process that died as abandoned");
        }
        Ok(Box::new(guard))
    }

    async fn checkpoint(&self, pipeline: &str, stream: &str) -> Result<Option<Checkpoint>, Error> {
        let c = self.conn().await?;
        let Some(sid) = self.stream_id(&c, pipeline, stream).await? else {
            return Ok(None);
        };
        let row = c
            .query_opt("SELECT checkpoint FROM checkpoints WHERE stream_id = $1", &[&sid])
            .await
            .map_err(|e| self.err("reading a checkpoint", e))?;
        row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| json_err("the stored checkpoint", e)))
            .transpose()
    }

    async fn reset(&self, pipeline: &str, stream: Option<&str>) -> Result<u64, Error> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(|e| self.err("starting a reset", e))?;
        let n = tx
            .execute(
                "DELETE FROM checkpoints WHERE stream_id IN
                   (SELECT id FROM streams WHERE pipeline = $1 AND ($2::text IS NULL OR stream = $2))",
                &[&pipeline, &stream],
            )
            .await
            .map_err(|e| self.err("resetting checkpoints", e))?;
        tx.execute(
            "DELETE FROM paused_streams WHERE pipeline = $1 AND ($2::text IS NULL OR stream = $2)",
            &[&pipeline, &stream],
        )
        .await
        .map_err(|e| self.err("clearing pauses on reset", e))?;
        tx.commit().await.map_err(|e| self.err("committing a reset", e))?;
        Ok(n)
    }

    async fn ledger_lookup(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<ContentHash>>, Error> {
        Ok(self.ledger_versions(pipeline, stream, keys).await?.into_iter().map(|v| v.map(|v| v.hash)).collect())
    }

    async fn ledger_versions(
        &self,
        pipeline: &str,
        stream: &str,
        keys: &[Key],
    ) -> Result<Vec<Option<LedgerVersion>>, Error> {
        let rows = self.ledger_rows(pipeline, stream, keys).await?;
        keys.iter()
            .map(|k| match rows.get(k.as_str()) {
                Some((hash, repeated, _)) => Ok(Some(LedgerVersion { hash: hash_of(hash)?, repeated: *repeated })),
                None => Ok(None),
            })
            .collect()
    }

    async fn ledger_dest_ids(&self, pipeline: &str, stream: &str, keys: &[Key]) -> Result<Vec<Option<String>>, Error> {
        let rows = self.ledger_rows(pipeline, stream, keys).await?;
        Ok(keys.iter().map(|k| rows.get(k.as_str()).and_then(|r| r.2.clone())).collect())
    }

    async fn has_ledger(&self, pipeline: &str, stream: &str) -> Result<bool, Error> {
        let c = self.conn().await?;
        let Some(sid) = self.stream_id(&c, pipeline, stream).await? else {
            return Ok(false);
        };
        let row = c
            .query_one("SELECT EXISTS (SELECT 1 FROM ledger WHERE stream_id = $1)", &[&sid])
            .await
            .map_err(|e| self.err("checking for ledger rows", e))?;
        Ok(row.get(0))
    }

    async fn sink_mark(&self, pipeline: &str, stream: &str) -> Result<Option<String>, Error> {
        let c = self.conn().await?;
        let Some(sid) = self.stream_id(&c, pipeline, stream).await? else {
            return Ok(None);
        };
        let row = c
            .query_opt("SELECT mark FROM sink_marks WHERE stream_id = $1", &[&sid])
            .await
            .map_err(|e| self.err("reading a sink mark", e))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn forget_ledger(&self, pipeline: &str, stream: Option<&str>, keep_dest_ids: bool) -> Result<u64, Error> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(|e| self.err("starting to forget a ledger", e))?;
        let ids = Self::stream_ids_in(&tx, pipeline, stream).await.map_err(|e| self.err("finding streams", e))?;
        let gone = if keep_dest_ids {
            "DELETE FROM ledger WHERE stream_id = ANY($1) AND dest_id IS NULL"
        } else {
            "DELETE FROM ledger WHERE stream_id = ANY($1)"
        };
        let mut changed = tx.execute(gone, &[&ids]).await.map_err(|e| self.err("forgetting ledger rows", e))?;
        changed += tx
            .execute("UPDATE ledger SET hash = $2 WHERE stream_id = ANY($1)", &[&ids, &&ContentHash::VOID.0[..]])
            .await
            .map_err(|e| self.err("forgetting ledger hashes", e))?;
        for table in ["sink_marks", "checkpoints"] {
            tx.execute(&format!("DELETE FROM {table} WHERE stream_id = ANY($1)"), &[&ids])
                .await
                .map_err(|e| self.err("forgetting a stream's position", e))?;
        }
        tx.commit().await.map_err(|e| self.err("committing a forgotten ledger", e))?;
        Ok(changed)
    }

    async fn stale_keys(&self, pipeline: &str, stream: &str, pass: u64, n: usize) -> Result<Vec<Key>, Error> {
        let pass = to_i64("pass", pass)?;
        let c = self.conn().await?;
        let Some(sid) = self.stream_id(&c, pipeline, stream).await? else {
            return Ok(Vec::new());
        };
        let rows = c
            .query("SELECT key FROM ledger WHERE stream_id = $1 AND pass < $2 LIMIT $3", &[&sid, &pass, &limit(n)])
            .await
            .map_err(|e| self.err("listing stale ledger keys", e))?;
        Ok(rows.into_iter().map(|r| Key::from_canonical(r.get::<_, String>(0))).collect())
    }

    /// One transaction, tried again on a new connection when the connection drops (see
    /// [`PgState::commit_once`]); a retry first asks the stream's receipt whether the
    /// dropped attempt committed, so a batch is never applied twice.
    async fn commit(&self, commit: Commit) -> Result<(), Error> {
        let (pipeline, stream) = (&commit.pipeline, &commit.stream);
        let receipt = &crate::lock::new_token();
        let unsure = &std::sync::atomic::AtomicBool::new(false);
        let commit = &commit;
        let attempt = || async move {
            if unsure.load(std::sync::atomic::Ordering::Relaxed) && self.committed(pipeline, stream, receipt).await? {
                return Ok(());
            }
            let fence = self.ensure_lock(pipeline).await?;
            let done = self.commit_once(commit, receipt, fence.as_deref()).await;
            if done.as_ref().is_err_and(crate::error::is_lost) {
                unsure.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            done
        };
        self.reconnecting("committing a batch", attempt).await.map_err(|e| e.in_pipeline(pipeline).in_stream(stream))
    }

    async fn outbox(&self, pipeline: &str, stream: &str, n: usize) -> Result<Vec<OutboxEntry>, Error> {
        let c = self.conn().await?;
        let Some(sid) = self.stream_id(&c, pipeline, stream).await? else {
            return Ok(Vec::new());
        };
        let rows = c
            .query(
                "SELECT id, key, hash, data, location FROM outbox WHERE stream_id = $1 ORDER BY id LIMIT $2",
                &[&sid, &limit(n)],
            )
            .await
            .map_err(|e| self.err("reading the outbox", e))?;
        rows.into_iter()
            .map(|r| {
                let data: Value =
                    serde_json::from_str(r.get::<_, &str>(3)).map_err(|e| json_err("a stored outbox record", e))?;
                Ok(OutboxEntry {
                    id: r.get(0),
                    key: Key::from_canonical(r.get::<_, String>(1)),
                    hash: hash_of(r.get(2))?,
                    data,
                    location: r.get(4),
                })
            })
            .collect()
    }

    async fn outbox_len(&self, pipeline: &str, stream: &str) -> Result<u64, Error> {
        let c = self.conn().await?;
        let Some(sid) = self.stream_id(&c, pipeline, stream).await? else {
            return Ok(0);
        };
        let row = c
            .query_one("SELECT count(*) FROM outbox WHERE stream_id = $1", &[&sid])
            .await
            .map_err(|e| self.err("counting the outbox", e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn outbox_depths(&self, pipeline: Option<&str>) -> Result<Vec<(String, String, u64)>, Error> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT s.pipeline, s.stream, count(*) FROM outbox o JOIN streams s ON s.id = o.stream_id
                 WHERE $1::text IS NULL OR s.pipeline = $1 GROUP BY s.pipeline, s.stream
                 ORDER BY s.pipeline, s.stream",
                &[&pipeline],
            )
            .await
            .map_err(|e| self.err("summing the outbox", e))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64)).collect())
    }

    async fn pause(&self, p: &PausedStream) -> Result<(), Error> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO paused_streams (pipeline, stream, kind, reason, since, until, location)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (pipeline, stream) DO UPDATE SET kind = excluded.kind, reason = excluded.reason,
                 since = excluded.since, until = excluded.until, location = excluded.location",
            &[
                &p.pipeline,
                &p.stream,
                &p.kind.as_str(),
                &&*text(&p.reason),
                &p.since,
                &p.until,
                &p.location.as_deref().map(|l| text(l).into_owned()),
            ],
        )
        .await
        .map_err(|e| self.err("pausing a stream", e))?;
        Ok(())
    }

    async fn unpause(&self, pipeline: &str, stream: &str) -> Result<bool, Error> {
        let c = self.conn().await?;
        let n = c
            .execute("DELETE FROM paused_streams WHERE pipeline = $1 AND stream = $2", &[&pipeline, &stream])
            .await
            .map_err(|e| self.err("resuming a stream", e))?;
        Ok(n > 0)
    }

    async fn paused(&self, pipeline: Option<&str>) -> Result<Vec<PausedStream>, Error> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT pipeline, stream, kind, reason, since, until, location FROM paused_streams
                 WHERE $1::text IS NULL OR pipeline = $1 ORDER BY pipeline, stream",
                &[&pipeline],
            )
            .await
            .map_err(|e| self.err("listing paused streams", e))?;
        rows.into_iter()
            .map(|r| {
                Ok(PausedStream {
                    pipeline: r.get(0),
                    stream: r.get(1),
                    kind: stored_name("paused_streams", "kind", r.get(2))?,
                    reason: r.get(3),
                    since: r.get(4),
                    until: r.get(5),
                    location: r.get(6),
                })
            })
            .collect()
    }

    async fn baseline(&self, pipeline: &str, stream: &str) -> Result<Option<Value>, Error> {
        let c = self.conn().await?;
        let row = c
            .query_opt("SELECT schema FROM baselines WHERE pipeline = $1 AND stream = $2", &[&pipeline, &stream])
            .await
            .map_err(|e| self.err("reading a schema baseline", e))?;
        row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| json_err("a stored schema baseline", e)))
            .transpose()
    }

    async fn save_baseline(&self, pipeline: &str, stream: &str, schema: &Value) -> Result<(), Error> {
        let text = serde_json::to_string(schema).map_err(|e| json_err("the schema baseline", e))?;
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO baselines (pipeline, stream, schema, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (pipeline, stream) DO UPDATE SET schema = excluded.schema, updated_at = excluded.updated_at",
            &[&pipeline, &stream, &text, &now_rfc3339()],
        )
        .await
        .map_err(|e| self.err("saving a schema baseline", e))?;
        Ok(())
    }
}
