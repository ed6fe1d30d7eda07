//! Synchronous database operations, run on the blocking pool by [`crate::store`].
//!
//! Every statement goes through `prepare_cached`, so a batch of 1000 ledger rows compiles
//! its SQL once per connection, not once per row.

use dovetail_core::state::{Checkpoint, Commit, DeadLetter, LedgerEntry, LedgerVersion, OutboxEntry, PausedStream};
use dovetail_core::{ContentHash, Error, Key, now_rfc3339};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::Db;
use crate::error::{DbResultExt, json_err, stored_name};

/// A `u64` as SQLite's signed 64-bit integer.
pub(crate) fn to_i64(what: &str, v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::internal(format!("state store: {what} {v} is too large")))
}

/// A `LIMIT` value (SQLite limits are signed; anything huge means "no limit").
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The id of an already interned stream, from the cache or the database.
pub(crate) fn stream_id(db: &mut Db, pipeline: &str, stream: &str) -> Result<Option<i64>, Error> {
    if let Some(id) = db.streams.get(pipeline).and_then(|m| m.get(stream)) {
        return Ok(Some(*id));
    }
    let id = find_stream(&db.conn, pipeline, stream)?;
    if let Some(id) = id {
        cache_stream(db, pipeline, stream, id);
    }
    Ok(id)
}

fn find_stream(conn: &Connection, pipeline: &str, stream: &str) -> Result<Option<i64>, Error> {
    conn.prepare_cached("SELECT id FROM streams WHERE pipeline = ?1 AND stream = ?2")
        .and_then(|mut st| st.query_row((pipeline, stream), |r| r.get(0)).optional())
        .op("looking up a stream")
}

fn cache_stream(db: &mut Db, pipeline: &str, stream: &str, id: i64) {
    db.streams.entry(pipeline.to_owned()).or_default().insert(stream.to_owned(), id);
}

/// Apply one batch in a single `IMMEDIATE` transaction (see [`Commit`] for the parts): ledger
/// rows, outbox removals and additions, dead letters and the checkpoint commit together or
/// not at all, so a batch moved to the outbox and the checkpoint that passes it are never
/// split.
pub(crate) fn commit(db: &mut Db, c: &Commit) -> Result<(), Error> {
    let pass = to_i64("pass", c.pass)?;
    let checkpoint = match &c.checkpoint {
        Some(cp) => Some(serde_json::to_string(cp).map_err(|e| json_err("the checkpoint", e))?),
        None => None,
    };
    // Serialized before the write lock is taken. `arbitrary_precision` keeps numbers as their
    // exact text, so a 20-digit integer or a 30-digit decimal comes back unchanged.
    let outbox_data = c
        .outbox_add
        .iter()
        .map(|e| serde_json::to_string(&e.data).map_err(|err| json_err("an outbox record", err)))
        .collect::<Result<Vec<_>, _>>()?;
    let now = now_rfc3339();
    let explain = c.explain.as_ref().map(|x| (x, crate::explain::encode(c, x)));
    let cached = db.streams.get(&c.pipeline).and_then(|m| m.get(&c.stream)).copied();
    let tx = db.conn.transaction_with_behavior(TransactionBehavior::Immediate).op("starting a commit")?;
    let sid = match cached {
        Some(id) => id,
        None => match find_stream(&tx, &c.pipeline, &c.stream)? {
            Some(id) => id,
            None => tx
                .prepare_cached("INSERT INTO streams (pipeline, stream) VALUES (?1, ?2)")
                .and_then(|mut st| st.insert((&c.pipeline, &c.stream)))
                .op("registering a stream")?,
        },
    };
    // Pages first: each ledger row names its page's id (the record's story, see `explain`).
    let stories = match explain {
        Some((x, enc)) => crate::explain::write(&tx, sid, x, enc)?,
        None => Vec::new(),
    };
    if !c.ledger.is_empty() {
        write_ledger(&tx, sid, pass, c, &stories)?;
        // A key whose destination id this commit stores is created: its pending create (if
        // any) goes in the same transaction, so a crash never leaves one beside the id.
        let mut created = c.ledger.iter().filter(|e| e.dest_id.is_some()).peekable();
        if created.peek().is_some() {
            let mut st = tx
                .prepare_cached("DELETE FROM pending_creates WHERE pipeline = ?1 AND stream = ?2 AND key = ?3")
                .op("preparing the pending-create clear")?;
            for e in created {
                st.execute(params![c.pipeline, c.stream, e.key.as_str()]).op("clearing a pending create")?;
            }
        }
    }
    if !c.touched.is_empty() {
        let mut st = tx
            .prepare_cached("UPDATE ledger SET pass = ?3 WHERE stream_id = ?1 AND key = ?2")
            .op("preparing the ledger touch")?;
        for k in &c.touched {
            st.execute(params![sid, k.as_str(), pass]).op("touching a ledger row")?;
        }
    }
    if !c.forget.is_empty() {
        let mut st = tx
            .prepare_cached("DELETE FROM ledger WHERE stream_id = ?1 AND key = ?2")
            .op("preparing the ledger delete")?;
        for k in &c.forget {
            st.execute(params![sid, k.as_str()]).op("deleting a ledger row")?;
        }
    }
    if !c.outbox_done.is_empty() {
        // Only this stream's rows: an id of another stream is left alone.
        let mut st = tx
            .prepare_cached("DELETE FROM outbox WHERE id = ?1 AND stream_id = ?2")
            .op("preparing the outbox delete")?;
        for id in &c.outbox_done {
            st.execute(params![id, sid]).op("removing a delivered outbox entry")?;
        }
    }
    if !c.outbox_add.is_empty() {
        // A key queued again (a later pass re-read it while the sink is still down) replaces
        // its waiting entry: the outbox holds each key once, its newest version.
        let mut gone = tx
            .prepare_cached("DELETE FROM outbox WHERE stream_id = ?1 AND key = ?2")
            .op("preparing the outbox supersede")?;
        let mut st = tx
            .prepare_cached(
                "INSERT INTO outbox (stream_id, key, hash, data, location, queued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .op("preparing the outbox insert")?;
        for (e, data) in c.outbox_add.iter().zip(&outbox_data) {
            gone.execute(params![sid, e.key.as_str()]).op("superseding a queued outbox entry")?;
            st.execute(params![sid, e.key.as_str(), &e.hash.0[..], data, e.location, now])
                .op("queueing an outbox entry")?;
        }
    }
    if !c.dead_letters.is_empty() {
        let mut st = tx
            .prepare_cached(
                // The same raw input at the same place is one dead letter seen again, not a new one:
                // sources that re-read a file on every run would otherwise pile up copies.
                // By the hash of the raw input, which is stored once and bounded (`bound_raw`).
                "INSERT INTO dead_letters
                   (pipeline, stream, key, kind, reason, path, location, raw, created_at, last_seen_at,
                    raw_len, raw_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11)
                 ON CONFLICT (pipeline, stream, location, raw_hash) DO UPDATE SET
                   key = excluded.key, kind = excluded.kind, reason = excluded.reason, path = excluded.path,
                   last_seen_at = excluded.last_seen_at, seen_count = seen_count + 1",
            )
            .op("preparing the dead-letter insert")?;
        for d in &c.dead_letters {
            let created = if d.created_at.is_empty() { &now } else { &d.created_at };
            let hash = d.raw_hash();
            let (raw, cut) = dovetail_core::state::bounded_raw(&d.raw);
            let raw_len = cut.or(d.raw_len);
            st.execute(params![
                d.pipeline,
                d.stream,
                d.key,
                d.kind,
                d.reason,
                d.path,
                d.location.as_deref().unwrap_or(""),
                raw,
                created,
                raw_len.map(|n| n as i64),
                &hash[..]
            ])
            .op("storing a dead letter")?;
        }
    }
    if !c.resolved_dead_letters.is_empty() {
        // A replayed record's dead-letter story goes with it: explain then tells the ledger's
        // write, not a failure that was fixed.
        let mut story = tx
            .prepare_cached(
                "DELETE FROM explain_stories WHERE stream_id = ?2
                   AND key = (SELECT key FROM dead_letters WHERE id = ?1)",
            )
            .op("preparing the story delete")?;
        let mut st =
            tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1").op("preparing the dead-letter delete")?;
        for id in &c.resolved_dead_letters {
            story.execute(params![id, sid]).op("removing a replayed record's story")?;
            st.execute([id]).op("removing a resolved dead letter")?;
        }
    }
    if let Some(mark) = &c.sink_mark {
        tx.prepare_cached(
            "INSERT INTO sink_marks (stream_id, mark) VALUES (?1, ?2)
             ON CONFLICT (stream_id) DO UPDATE SET mark = excluded.mark WHERE mark <> excluded.mark",
        )
        .and_then(|mut st| st.execute(params![sid, mark]))
        .op("saving the sink mark")?;
    }
    if let Some(cp) = &checkpoint {
        tx.prepare_cached(
            "INSERT INTO checkpoints (stream_id, checkpoint, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream_id) DO UPDATE SET checkpoint = excluded.checkpoint,
                 updated_at = excluded.updated_at",
        )
        .and_then(|mut st| st.execute(params![sid, cp, now]))
        .op("saving the checkpoint")?;
    }
    tx.commit().op("committing a batch")?;
    if cached.is_none() {
        cache_stream(db, &c.pipeline, &c.stream, sid);
    }
    Ok(())
}

/// Decode a stored 16-byte hash.
fn hash_of(row: &Row<'_>, col: usize) -> rusqlite::Result<ContentHash> {
    let blob = row.get_ref(col)?.as_blob()?;
    let bytes: [u8; 16] = blob.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Blob,
            format!("stored hash has {} bytes, expected 16", blob.len()).into(),
        )
    })?;
    Ok(ContentHash(bytes))
}

/// Ledger rows for `keys`, in order, read in one snapshot.
pub(crate) fn ledger_entries(
    db: &mut Db,
    pipeline: &str,
    stream: &str,
    keys: &[Key],
) -> Result<Vec<Option<LedgerEntry>>, Error> {
    let Some(sid) = stream_id(db, pipeline, stream)? else {
        return Ok(vec![None; keys.len()]);
    };
    let tx = db.conn.transaction().op("starting a ledger read")?;
    let mut out = Vec::with_capacity(keys.len());
    {
        let mut st = tx
            .prepare_cached("SELECT hash, dest_id FROM ledger WHERE stream_id = ?1 AND key = ?2")
            .op("preparing the ledger lookup")?;
        for k in keys {
            let entry = st
                .query_row(params![sid, k.as_str()], |r| {
                    Ok(LedgerEntry { key: k.clone(), hash: hash_of(r, 0)?, dest_id: r.get(1)? })
                })
                .optional()
                .op("looking up a ledger row")?;
            out.push(entry);
        }
    }
    tx.finish().op("ending a ledger read")?;
    Ok(out)
}

/// Ledger hashes for `keys`, in order, read in one snapshot.
pub(crate) fn ledger_hashes(
    db: &mut Db,
    pipeline: &str,
    stream: &str,
    keys: &[Key],
) -> Result<Vec<Option<ContentHash>>, Error> {
    Ok(ledger_versions(db, pipeline, stream, keys)?.into_iter().map(|v| v.map(|v| v.hash)).collect())
}

/// Ledger hashes and repeat marks for `keys`, in order, read in one snapshot.
pub(crate) fn ledger_versions(
    db: &mut Db,
    pipeline: &str,
    stream: &str,
    keys: &[Key],
) -> Result<Vec<Option<LedgerVersion>>, Error> {
    let Some(sid) = stream_id(db, pipeline, stream)? else {
        return Ok(vec![None; keys.len()]);
    };
    let tx = db.conn.transaction().op("starting a ledger read")?;
    let mut out = Vec::with_capacity(keys.len());
    {
        let mut st = tx
            .prepare_cached("SELECT hash, repeated FROM ledger WHERE stream_id = ?1 AND key = ?2")
            .op("preparing the ledger lookup")?;
        for k in keys {
            let v = st
                .query_row(params![sid, k.as_str()], |r| {
                    Ok(LedgerVersion { hash: hash_of(r, 0)?, repeated: r.get(1)? })
                })
                .optional()
                .op("looking up a ledger hash")?;
            out.push(v);
        }
    }
    tx.finish().op("ending a ledger read")?;
    Ok(out)
}

/// Whether the stream has any ledger row.
pub(crate) fn has_ledger(db: &mut Db, pipeline: &str, stream: &str) -> Result<bool, Error> {
    let Some(sid) = stream_id(db, pipeline, stream)? else {
        return Ok(false);
    };
    db.conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM ledger WHERE stream_id = ?1)")
        .and_then(|mut st| st.query_row([sid], |r| r.get::<_, bool>(0)))
        .op("checking for ledger rows")
}

/// Keys of a stream whose ledger pass is older than `pass`.
pub(crate) fn stale_keys(db: &mut Db, pipeline: &str, stream: &str, pass: u64, n: usize) -> Result<Vec<Key>, Error> {
    let pass = to_i64("pass", pass)?;
    let Some(sid) = stream_id(db, pipeline, stream)? else {
        return Ok(Vec::new());
    };
    let mut st = db
        .conn
        .prepare_cached("SELECT key FROM ledger WHERE stream_id = ?1 AND pass < ?2 LIMIT ?3")
        .op("preparing the stale-key query")?;
    st.query_map(params![sid, pass, limit(n)], |r| r.get::<_, String>(0).map(Key::from_canonical))
        .and_then(|rows| rows.collect())
        .op("listing stale ledger keys")
}

/// The sink mark stored with a stream's last commit that carried one.
pub(crate) fn sink_mark(db: &mut Db, pipeline: &str, stream: &str) -> Result<Option<String>, Error> {
    let Some(sid) = stream_id(db, pipeline, stream)? else {
        return Ok(None);
    };
    db.conn
        .prepare_cached("SELECT mark FROM sink_marks WHERE stream_id = ?1")
        .and_then(|mut st| st.query_row([sid], |r| r.get(0)).optional())
        .op("reading a sink mark")
}

/// Forget the ledger hashes (rows with a destination id keep it when `keep_dest_ids`, with a
/// hash no record has), the sink marks, the checkpoints and the write request ids of one
/// stream or of every stream of a pipeline, in one transaction; returns how many ledger rows
/// changed. Outbox, pauses and pending creates stay.
pub(crate) fn forget_ledger(
    db: &mut Db,
    pipeline: &str,
    stream: Option<&str>,
    keep_dest_ids: bool,
) -> Result<u64, Error> {
    let tx = db.conn.transaction_with_behavior(TransactionBehavior::Immediate).op("starting to forget a ledger")?;
    let ids: Vec<i64> = tx
        .prepare_cached("SELECT id FROM streams WHERE pipeline = ?1 AND (?2 IS NULL OR stream = ?2)")
        .and_then(|mut st| st.query_map(params![pipeline, stream], |r| r.get(0))?.collect())
        .op("finding the streams to forget")?;
    let mut changed = 0;
    for sid in ids {
        let gone = if keep_dest_ids {
            "DELETE FROM ledger WHERE stream_id = ?1 AND dest_id IS NULL"
        } else {
            "DELETE FROM ledger WHERE stream_id = ?1"
        };
        changed += tx.prepare_cached(gone).and_then(|mut st| st.execute([sid])).op("forgetting ledger rows")?;
        changed += tx
            .prepare_cached("UPDATE ledger SET hash = ?2 WHERE stream_id = ?1")
            .and_then(|mut st| st.execute(params![sid, &ContentHash::VOID.0[..]]))
            .op("forgetting ledger hashes")?;
        for table in ["sink_marks", "checkpoints"] {
            tx.execute(&format!("DELETE FROM {table} WHERE stream_id = ?1"), [sid])
                .op("forgetting a stream's position")?;
        }
    }
    // A request id describes a delivery the ledger no longer vouches for; the next run's
    // writes note new ones.
    tx.prepare_cached("DELETE FROM write_requests WHERE pipeline = ?1 AND (?2 IS NULL OR stream = ?2)")
        .and_then(|mut st| st.execute(params![pipeline, stream]))
        .op("forgetting write request ids")?;
    tx.commit().op("committing a forgotten ledger")?;
    Ok(changed as u64)
}

/// The stored checkpoint of a stream.
pub(crate) fn checkpoint(db: &mut Db, pipeline: &str, stream: &str) -> Result<Option<Checkpoint>, Error> {
    let Some(sid) = stream_id(db, pipeline, stream)? else {
        return Ok(None);
    };
    let text: Option<String> = db
        .conn
        .prepare_cached("SELECT checkpoint FROM checkpoints WHERE stream_id = ?1")
        .and_then(|mut st| st.query_row([sid], |r| r.get(0)).optional())
        .op("reading a checkpoint")?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| json_err("the stored checkpoint", e))).transpose()
}

/// Delete the checkpoints of one stream or of every stream of a pipeline, and clear those
/// streams' pauses, in one transaction; returns how many checkpoints were deleted.
///
/// The ledger and the outbox stay: the outbox holds real writes still owed to the sink,
/// which a re-read would not necessarily produce again.
pub(crate) fn reset(db: &mut Db, pipeline: &str, stream: Option<&str>) -> Result<u64, Error> {
    let tx = db.conn.transaction_with_behavior(TransactionBehavior::Immediate).op("starting a reset")?;
    let n = match stream {
        Some(s) => tx
            .prepare_cached(
                "DELETE FROM checkpoints WHERE stream_id IN
                   (SELECT id FROM streams WHERE pipeline = ?1 AND stream = ?2)",
            )
            .and_then(|mut st| st.execute((pipeline, s))),
        None => tx
            .prepare_cached(
                "DELETE FROM checkpoints WHERE stream_id IN
                   (SELECT id FROM streams WHERE pipeline = ?1)",
            )
            .and_then(|mut st| st.execute([pipeline])),
    }
    .op("resetting checkpoints")?;
    match stream {
        Some(s) => tx
            .prepare_cached("DELETE FROM paused_streams WHERE pipeline = ?1 AND stream = ?2")
            .and_then(|mut st| st.execute((pipeline, s))),
        None => tx
            .prepare_cached("DELETE FROM paused_streams WHERE pipeline = ?1")
            .and_then(|mut st| st.execute([pipeline])),
    }
    .op("clearing pauses on reset")?;
    tx.commit().op("committing a reset")?;
    Ok(n as u64)
}

/// The oldest `n` outbox entries of a stream, by id, read in one statement (one snapshot).
pub(crate) fn outbox(db: &mut Db, pipeline: &str, stream: &str, n: usize) -> Result<Vec<OutboxEntry>, Error> {
    let Some(sid) = stream_id(db, pipeline, stream)? else {
        return Ok(Vec::new());
    };
    let rows: Vec<(i64, String, ContentHash, String, Option<String>)> = db
        .conn
        .prepare_cached("SELECT id, key, hash, data, location FROM outbox WHERE stream_id = ?1 ORDER BY id LIMIT ?2")
        .and_then(|mut st| {
            st.query_map(params![sid, limit(n)], |r| Ok((r.get(0)?, r.get(1)?, hash_of(r, 2)?, r.get(3)?, r.get(4)?)))
                .and_then(|rows| rows.collect())
        })
        .op("reading the outbox")?;
    rows.into_iter()
        .map(|(id, key, hash, data, location)| {
            let data = serde_json::from_str(&data).map_err(|e| json_err("a stored outbox record", e))?;
            Ok(OutboxEntry { id, key: Key::from_canonical(key), hash, data, location })
        })
        .collect()
}

/// How many entries wait in a stream's outbox.
pub(crate) fn outbox_len(db: &mut Db, pipeline: &str, stream: &str) -> Result<u64, Error> {
    let Some(sid) = stream_id(db, pipeline, stream)? else {
        return Ok(0);
    };
    db.conn
        .prepare_cached("SELECT count(*) FROM outbox WHERE stream_id = ?1")
        .and_then(|mut st| st.query_row([sid], |r| r.get::<_, u64>(0)))
        .op("counting the outbox")
}

/// Streams with records in their outbox, by pipeline and stream.
pub(crate) fn outbox_depths(db: &mut Db, pipeline: Option<&str>) -> Result<Vec<(String, String, u64)>, Error> {
    let mut st = db
        .conn
        .prepare_cached(
            "SELECT s.pipeline, s.stream, count(*) FROM outbox o JOIN streams s ON s.id = o.stream_id
             WHERE ?1 IS NULL OR s.pipeline = ?1 GROUP BY s.pipeline, s.stream ORDER BY s.pipeline, s.stream",
        )
        .op("preparing the outbox summary")?;
    let rows = st
        .query_map([pipeline], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u64>(2)?)))
        .op("summing the outbox")?;
    rows.collect::<Result<Vec<_>, _>>().op("reading the outbox summary")
}

/// Mark a stream paused, replacing an earlier pause of it.
pub(crate) fn pause(db: &mut Db, p: &PausedStream) -> Result<(), Error> {
    db.conn
        .prepare_cached(
            "INSERT INTO paused_streams (pipeline, stream, kind, reason, since, until, location)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (pipeline, stream) DO UPDATE SET kind = excluded.kind, reason = excluded.reason,
                 since = excluded.since, until = excluded.until, location = excluded.location",
        )
        .and_then(|mut st| {
            st.execute(params![p.pipeline, p.stream, p.kind.as_str(), p.reason, p.since, p.until, p.location])
        })
        .op("pausing a stream")?;
    Ok(())
}

/// Clear a stream's pause; whether there was one.
pub(crate) fn unpause(db: &mut Db, pipeline: &str, stream: &str) -> Result<bool, Error> {
    let n = db
        .conn
        .prepare_cached("DELETE FROM paused_streams WHERE pipeline = ?1 AND stream = ?2")
        .and_then(|mut st| st.execute((pipeline, stream)))
        .op("resuming a stream")?;
    Ok(n > 0)
}

/// Paused streams, of one pipeline or all, ordered by pipeline and stream.
pub(crate) fn paused(db: &mut Db, pipeline: Option<&str>) -> Result<Vec<PausedStream>, Error> {
    // `Err` inside: a kind this dovetail does not know.
    let row = |r: &Row<'_>| -> rusqlite::Result<Result<PausedStream, Error>> {
        let kind = match stored_name("paused_streams", "kind", &r.get::<_, String>(2)?) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(PausedStream {
            pipeline: r.get(0)?,
            stream: r.get(1)?,
            kind,
            reason: r.get(3)?,
            since: r.get(4)?,
            until: r.get(5)?,
            location: r.get(6)?,
        }))
    };
    let rows: Vec<Result<PausedStream, Error>> = match pipeline {
        Some(p) => db
            .conn
            .prepare_cached(
                "SELECT pipeline, stream, kind, reason, since, until, location FROM paused_streams WHERE pipeline = ?1
                 ORDER BY pipeline, stream",
            )
            .and_then(|mut st| st.query_map([p], row).and_then(|rows| rows.collect())),
        None => db
            .conn
            .prepare_cached(
                "SELECT pipeline, stream, kind, reason, since, until, location FROM paused_streams ORDER BY pipeline, stream",
            )
            .and_then(|mut st| st.query_map([], row).and_then(|rows| rows.collect())),
    }
    .op("listing paused streams")?;
    rows.into_iter().collect()
}

pub(crate) const DEAD_LETTER_COLS: &str =
    "id, pipeline, stream, key, kind, reason, path, NULLIF(location, ''), raw, created_at, seen_count, raw_len";

pub(crate) fn dead_letter_row(r: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        stream: r.get(2)?,
        key: r.get(3)?,
        kind: r.get(4)?,
        reason: r.get(5)?,
        path: r.get(6)?,
        location: r.get(7)?,
        raw: r.get(8)?,
        created_at: r.get(9)?,
        seen_count: r.get(10)?,
        raw_len: r.get::<_, Option<i64>>(11)?.map(|n| n as u64),
    })
}

/// Dead letters, oldest first, optionally filtered.
pub(crate) fn dead_letters(
    db: &mut Db,
    pipeline: Option<&str>,
    stream: Option<&str>,
    n: usize,
) -> Result<Vec<DeadLetter>, Error> {
    let (filter, args): (&str, Vec<&str>) = match (pipeline, stream) {
        (Some(p), Some(s)) => ("WHERE pipeline = ?2 AND stream = ?3", vec![p, s]),
        (Some(p), None) => ("WHERE pipeline = ?2", vec![p]),
        (None, Some(s)) => ("WHERE stream = ?2", vec![s]),
        (None, None) => ("", vec![]),
    };
    let sql = format!("SELECT {DEAD_LETTER_COLS} FROM dead_letters {filter} ORDER BY id LIMIT ?1");
    let mut st = db.conn.prepare_cached(&sql).op("preparing the dead-letter query")?;
    let lim = limit(n);
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&lim];
    params.extend(args.iter().map(|a| a as &dyn rusqlite::ToSql));
    st.query_map(params.as_slice(), dead_letter_row).and_then(|rows| rows.collect()).op("listing dead letters")
}

/// One dead letter by id.
pub(crate) fn dead_letter(db: &mut Db, id: i64) -> Result<Option<DeadLetter>, Error> {
    let sql = format!("SELECT {DEAD_LETTER_COLS} FROM dead_letters WHERE id = ?1");
    db.conn
        .prepare_cached(&sql)
        .and_then(|mut st| st.query_row([id], dead_letter_row).optional())
        .op("reading a dead letter")
}

/// Ledger rows per multi-row upsert: one statement step per this many rows instead of one
/// per row (9 parameters each, far under SQLite's limit of 32,766).
const LEDGER_ROWS_PER_STATEMENT: usize = 50;

/// The ledger upsert for `rows` rows.
fn ledger_upsert_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO ledger (stream_id, key, hash, pass, dest_id, run_id, fetch_id, item, outcome)
         VALUES {values}
         ON CONFLICT (stream_id, key) DO UPDATE SET hash = excluded.hash,
             pass = excluded.pass, dest_id = coalesce(excluded.dest_id, ledger.dest_id),
             run_id = excluded.run_id, fetch_id = excluded.fetch_id, item = excluded.item,
             outcome = excluded.outcome, repeated = ledger.repeated OR ledger.pass = excluded.pass"
    )
}

static LEDGER_UPSERT_MANY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ledger_upsert_sql(LEDGER_ROWS_PER_STATEMENT));
static LEDGER_UPSERT_ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| ledger_upsert_sql(1));

/// The commit's ledger rows, in order (a key written twice keeps its last row), each with
/// its explain story.
fn write_ledger(
    tx: &Connection,
    sid: i64,
    pass: i64,
    c: &Commit,
    stories: &[Option<(i64, i64, i64, i64)>],
) -> Result<(), Error> {
    let mut i = 0;
    while i < c.ledger.len() {
        let rows = if c.ledger.len() - i >= LEDGER_ROWS_PER_STATEMENT { LEDGER_ROWS_PER_STATEMENT } else { 1 };
        let sql = if rows == 1 { &*LEDGER_UPSERT_ONE } else { &*LEDGER_UPSERT_MANY };
        let mut st = tx.prepare_cached(sql).op("preparing the ledger upsert")?;
        for (r, e) in c.ledger[i..i + rows].iter().enumerate() {
            let (run, fetch, item, outcome) = stories.get(i + r).copied().flatten().unzip4();
            let values: [&dyn rusqlite::ToSql; 9] =
                [&sid, &e.key.as_str(), &&e.hash.0[..], &pass, &e.dest_id, &run, &fetch, &item, &outcome];
            for (k, v) in values.into_iter().enumerate() {
                st.raw_bind_parameter(r * 9 + k + 1, v).op("binding a ledger row")?;
            }
        }
        st.raw_execute().op("writing ledger rows")?;
        i += rows;
    }
    Ok(())
}

/// `Option<(a, b, c, d)>` → four options.
trait Unzip4<A, B, C, D> {
    fn unzip4(self) -> (Option<A>, Option<B>, Option<C>, Option<D>);
}

impl<A, B, C, D> Unzip4<A, B, C, D> for Option<(A, B, C, D)> {
    fn unzip4(self) -> (Option<A>, Option<B>, Option<C>, Option<D>) {
        match self {
            Some((a, b, c, d)) => (Some(a), Some(b), Some(c), Some(d)),
            None => (None, None, None, None),
        }
    }
}
