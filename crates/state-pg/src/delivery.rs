//! [`DeliveryStore`] for [`PgState`]: a batch's ledger lookup is one statement, a commit one
//! transaction whose ledger rows go in one `INSERT … SELECT FROM unnest(…)`.

use async_trait::async_trait;
use dovetail_core::state::{
    Checkpoint, Commit, DeliveryStore, LedgerVersion, OutboxEntry, PausedStream, PendingCreate, RunLock,
};
use dovetail_core::{ContentHash, Error, Key, now_rfc3339};
use serde_json::Value;

use crate::pending::Pendings;
use crate::{PgState, json_err, limit, stored_name, text, to_i64};

pub(crate) fn hash_of(bytes: &[u8]) -> Result<ContentHash, Error> {
    let b: [u8; 16] = bytes
        .try_into()
        .map_err(|_| Error::internal(format!("state store: a stored hash has {} bytes, expected 16", bytes.len())))?;
    Ok(ContentHash(b))
}

#[async_trait]
impl DeliveryStore for PgState {
    /// A session advisory lock on a connection of its own (see [`crate::lock`]), then the
    /// pipeline's runs still `running` are marked abandoned.
    async fn lock(&self, pipeline: &str) -> Result<Box<dyn RunLock>, Error> {
        self.ready().await?;
        let guard = crate::lock::take(self, pipeline).await?;
        // Workers claim under the same key (shared), so their leases are visible by now.
        self.leases_before_run(pipeline, self.lock_scope(pipeline)).await?;
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

    async fn record_pending_create(&self, pipeline: &str, stream: &str, p: &PendingCreate) -> Result<(), Error> {
        self.pending_record(pipeline, stream, p).await
    }
    async fn pending_creates(&self, pipeline: &str, stream: &str, keys: &[Key]) -> Result<Pendings, Error> {
        self.pending_lookup(pipeline, stream, keys).await
    }
    async fn clear_pending_create(&self, pipeline: &str, stream: &str, key: &Key) -> Result<bool, Error> {
        self.pending_clear(pipeline, stream, key).await
    }
    async fn record_write_request(
        &self,
        pipeline: &str,
        stream: &str,
        key: &Key,
        request_id: &str,
    ) -> Result<(), Error> {
        self.write_record(pipeline, stream, key, request_id).await
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
        // A request id describes a delivery the ledger no longer vouches for.
        tx.execute(
            "DELETE FROM write_requests WHERE pipeline = $1 AND ($2::text IS NULL OR stream = $2)",
            &[&pipeline, &stream],
        )
        .await
        .map_err(|e| self.err("forgetting write request ids", e))?;
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
