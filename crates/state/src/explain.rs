//! What `dovetail explain` needs (migration 5): written inside [`crate::ops::commit`]'s
//! transaction, read back per key, and pruned past retention in small transactions.

use std::collections::HashMap;
use std::time::Duration;

use dovetail_core::explain::{
    ExplainBatch, KeyHistory, LedgerView, Outcome, Pruned, Retention, StoredFetch, StoredStory, method_of,
};
use dovetail_core::state::Commit;
use dovetail_core::{ContentHash, Error, Key};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::error::DbResultExt;
use crate::ops::{DEAD_LETTER_COLS, dead_letter_row, limit, stream_id};
use crate::{Db, SqliteState};

/// A commit's explain rows, encoded before the write lock is taken (the PostgreSQL store
/// stores the same encoding).
#[derive(Debug)]
pub struct Encoded {
    /// Per fetch: its written records (`location<TAB>raw`, one per line) and unchanged keys.
    pub pages: Vec<(Option<String>, Option<String>)>,
    /// Aligned with the commit's ledger rows: (fetch index, line in its records, outcome).
    pub ledger: Vec<Option<(usize, i64, i64)>>,
    /// Dead-letter stories: (story index, raw).
    pub dead: Vec<(usize, Option<String>)>,
}

/// Serialize raw records and key lists, and pair stories with ledger rows (outside the
/// transaction, so the write lock is held only for the inserts).
pub fn encode(c: &Commit, x: &ExplainBatch) -> Encoded {
    let mut records: Vec<Option<String>> = vec![None; x.fetches.len()];
    let mut lines = vec![0i64; x.fetches.len()];
    let mut placed: Vec<(&str, (usize, i64, i64))> = Vec::with_capacity(x.stories.len());
    let mut dead = Vec::new();
    for (i, s) in x.stories.iter().enumerate() {
        let outcome = match s.outcome {
            Outcome::Inserted => 1,
            Outcome::Updated => 2,
            Outcome::DeadLettered | Outcome::Unchanged => {
                dead.push((i, x.raw_text(s)));
                continue;
            }
        };
        let Some(f) = s.fetch.filter(|f| *f < x.fetches.len()) else { continue };
        let text = records[f].get_or_insert_with(String::new);
        match (x.location(s), &s.location) {
            (Some(l), _) => l.push_to(text),
            (None, Some(l)) => text.push_str(l),
            (None, None) => {}
        }
        text.push('\t');
        if let Some(raw) = x.raw_text(s) {
            text.push_str(&raw);
        }
        text.push('\n');
        placed.push((s.key.as_str(), (f, lines[f], outcome)));
        lines[f] += 1;
    }
    // The engine builds stories and ledger rows from the same records in the same order:
    // pair them in lockstep, by key lookup only if that ever differs.
    let lockstep = placed.len() == c.ledger.len() && placed.iter().zip(&c.ledger).all(|(p, e)| p.0 == e.key.as_str());
    let ledger = if lockstep {
        placed.iter().map(|p| Some(p.1)).collect()
    } else {
        let by_key: HashMap<&str, (usize, i64, i64)> = placed.iter().copied().collect();
        c.ledger.iter().map(|e| by_key.get(e.key.as_str()).copied()).collect()
    };
    let pages = x
        .fetches
        .iter()
        .zip(records)
        .map(|(f, recs)| {
            let unchanged = (!f.unchanged.is_empty()).then(|| {
                let mut s = String::with_capacity(f.unchanged.iter().map(|k| k.as_str().len() + 1).sum());
                for k in &f.unchanged {
                    // Canonical keys are compact JSON: a newline never occurs inside one.
                    s.push_str(k.as_str());
                    s.push('\n');
                }
                s
            });
            (recs, unchanged)
        })
        .collect();
    Encoded { pages, ledger, dead }
}

/// A ledger row's story columns: run, fetch row id, line in the page's records, outcome.
pub(crate) type StoryCols = (i64, i64, i64, i64);

/// Write a commit's pages, dead-letter stories and the stream's mapping for the run; return
/// the story columns of each ledger row: (run, fetch row id, line, outcome).
pub(crate) fn write(
    tx: &Transaction<'_>,
    sid: i64,
    x: &ExplainBatch,
    enc: Encoded,
) -> Result<Vec<Option<StoryCols>>, Error> {
    if x.fetches.is_empty() && x.stories.is_empty() {
        return Ok(Vec::new());
    }
    let cols = serde_json::to_string(&x.key_columns[..]).unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(
        "INSERT INTO explain_runs (stream_id, run_id, mapping, key_columns) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
    )
    .and_then(|mut st| st.execute(params![sid, x.run_id, x.mapping.as_deref(), cols]))
    .op("recording the stream's mapping for explain")?;
    let mut ids = Vec::with_capacity(x.fetches.len());
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO explain_fetches (stream_id, run_id, url, status, request_id, api_version,
                   fetched_at, stale, connector, records, unchanged)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .op("preparing the fetch insert")?;
        for (f, (records, unchanged)) in x.fetches.iter().zip(enc.pages) {
            let p = &f.provenance;
            ids.push(
                st.insert(params![
                    sid,
                    x.run_id,
                    p.endpoint,
                    p.status,
                    p.request_id,
                    p.api_version,
                    p.fetched_at,
                    p.stale,
                    p.connector,
                    records,
                    unchanged
                ])
                .op("recording a fetch")?,
            );
        }
    }
    if !enc.dead.is_empty() {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO explain_stories (stream_id, key, run_id, fetch_id, location, outcome, reason, raw)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (stream_id, key) DO UPDATE SET run_id = excluded.run_id,
                   fetch_id = excluded.fetch_id, location = excluded.location, outcome = excluded.outcome,
                   reason = excluded.reason, raw = excluded.raw",
            )
            .op("preparing the story upsert")?;
        for (i, raw) in enc.dead {
            let s = &x.stories[i];
            let fetch = s.fetch.and_then(|i| ids.get(i));
            st.execute(params![sid, s.key.as_str(), x.run_id, fetch, s.location, s.outcome.as_str(), s.reason, raw])
                .op("recording a record's story")?;
        }
    }
    Ok(enc.ledger.into_iter().map(|o| o.map(|(f, line, outcome)| (x.run_id, ids[f], line, outcome))).collect())
}

fn fetch_row(r: &Row<'_>) -> rusqlite::Result<StoredFetch> {
    let url: String = r.get(1)?;
    Ok(StoredFetch {
        run_id: r.get(0)?,
        method: method_of(&url).to_owned(),
        url,
        status: r.get(2)?,
        request_id: r.get(3)?,
        api_version: r.get(4)?,
        fetched_at: r.get(5)?,
        stale: r.get(6)?,
        connector: r.get(7)?,
    })
}

const FETCH_COLS: &str = "run_id, url, status, request_id, api_version, fetched_at, stale, connector";

/// Everything stored about one key (read in one snapshot): the written story from the
/// ledger row and its page, the dead-letter story, whichever is later, and the latest
/// unchanged read after it.
pub(crate) fn key_history(db: &mut Db, pipeline: &str, stream: &str, key: &Key) -> Result<KeyHistory, Error> {
    let mut h = KeyHistory::default();
    let dl_sql = format!(
        "SELECT {DEAD_LETTER_COLS} FROM dead_letters WHERE pipeline = ?1 AND stream = ?2 AND key = ?3
         ORDER BY id DESC LIMIT 1"
    );
    let sid = stream_id(db, pipeline, stream)?;
    let tx = db.conn.transaction().op("starting an explain read")?;
    h.dead_letter = tx
        .prepare(&dl_sql)
        .and_then(|mut st| st.query_row(params![pipeline, stream, key.as_str()], dead_letter_row).optional())
        .op("reading the key's dead letter")?;
    let Some(sid) = sid else {
        return Ok(h);
    };
    let k = key.as_str();
    let fetch_by_id = |id: i64| -> Result<Option<(StoredFetch, Option<String>)>, Error> {
        tx.prepare(&format!("SELECT {FETCH_COLS}, records FROM explain_fetches WHERE id = ?1"))
            .and_then(|mut st| st.query_row([id], |r| Ok((fetch_row(r)?, r.get(8)?))).optional())
            .op("reading a fetch")
    };
    // The written story: columns of the ledger row, the raw record in its page's text.
    type LedgerRow = (Vec<u8>, i64, Option<String>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
    let row: Option<LedgerRow> = tx
        .prepare(
            "SELECT hash, pass, dest_id, run_id, fetch_id, item, outcome FROM ledger WHERE stream_id = ?1 AND key = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![sid, k], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })
            .optional()
        })
        .op("reading the key's ledger row")?;
    let mut written: Option<(StoredStory, i64)> = None;
    if let Some((hash, pass, dest_id, run, fetch_id, item, outcome)) = row {
        let hash = <[u8; 16]>::try_from(hash.as_slice()).map(|b| ContentHash(b).to_hex()).unwrap_or_default();
        h.ledger = Some(LedgerView { hash, pass: pass.max(0) as u64, dest_id });
        if let (Some(run), Some(fid), Some(outcome)) = (run, fetch_id, outcome) {
            let page = fetch_by_id(fid)?;
            let line = page.as_ref().and_then(|(_, recs)| {
                recs.as_deref()?.split('\n').nth(usize::try_from(item?).ok()?).map(str::to_owned)
            });
            let (location, raw) = match line.as_deref().and_then(|l| l.split_once('\t')) {
                Some((loc, raw)) => {
                    ((!loc.is_empty()).then(|| loc.to_owned()), (!raw.is_empty()).then(|| raw.to_owned()))
                }
                None => (None, None),
            };
            let outcome = if outcome == 2 { Outcome::Updated } else { Outcome::Inserted };
            let story = StoredStory { run_id: run, outcome, reason: None, raw, location, fetch: page.map(|p| p.0) };
            written = Some((story, fid));
        }
    }
    type DeadRow = (i64, Option<i64>, Option<String>, String, Option<String>, Option<String>);
    let dead: Option<DeadRow> = tx
        .prepare(
            "SELECT run_id, fetch_id, location, outcome, reason, raw FROM explain_stories
             WHERE stream_id = ?1 AND key = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![sid, k], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                .optional()
        })
        .op("reading the key's dead-letter story")?;
    let dead = match dead {
        Some((run_id, fetch_id, location, outcome, reason, raw)) => {
            let outcome = Outcome::parse(&outcome)
                .ok_or_else(|| Error::internal(format!("state store: unknown stored outcome `{outcome}`")))?;
            let fetch = match fetch_id {
                Some(id) => fetch_by_id(id)?.map(|p| p.0),
                None => None,
            };
            Some((StoredStory { run_id, outcome, reason, raw, location, fetch }, fetch_id))
        }
        None => None,
    };
    let latest = latest_story(written, dead);
    let (after_id, min_run) = latest.as_ref().map_or((0, 0), |(s, f)| (*f, s.run_id));
    h.story = latest.map(|l| l.0);
    h.unchanged = tx
        .prepare(&format!(
            "SELECT {FETCH_COLS} FROM explain_fetches
             WHERE stream_id = ?1 AND id > ?2 AND run_id >= ?3 AND unchanged IS NOT NULL
               AND instr(char(10) || unchanged, char(10) || ?4 || char(10)) > 0
             ORDER BY id DESC LIMIT 1"
        ))
        .and_then(|mut st| st.query_row(params![sid, after_id, min_run, k], fetch_row).optional())
        .op("looking for unchanged reads of the key")?;
    let run = h.unchanged.as_ref().map(|f| f.run_id).or(h.story.as_ref().map(|s| s.run_id));
    if let Some(run) = run {
        let row: Option<(Option<String>, String)> = tx
            .prepare("SELECT mapping, key_columns FROM explain_runs WHERE stream_id = ?1 AND run_id = ?2")
            .and_then(|mut st| st.query_row(params![sid, run], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .op("reading the mapping of a run")?;
        if let Some((mapping, cols)) = row {
            h.mapping = mapping.and_then(|m| serde_json::from_str(&m).ok());
            h.key_columns = serde_json::from_str(&cols).unwrap_or_default();
        }
    }
    tx.finish().op("ending an explain read")?;
    Ok(h)
}

/// `now - age` as RFC 3339, for comparisons with stored times (all UTC, `Z`).
fn cutoff(age: Duration) -> String {
    let back = jiff::SignedDuration::try_from(age).unwrap_or(jiff::SignedDuration::MAX);
    jiff::Timestamp::now().checked_sub(back).unwrap_or(jiff::Timestamp::MIN).to_string()
}

/// Repeat a `DELETE ... LIMIT`-style statement, one short transaction each, until it
/// deletes fewer than `batch` rows; the write lock is free between batches.
fn drain(
    st: &SqliteState,
    what: &'static str,
    sql: String,
    args: Vec<rusqlite::types::Value>,
    batch: usize,
) -> Result<u64, Error> {
    let mut total = 0u64;
    loop {
        let n = {
            let db = crate::lock_db(&st.db);
            let mut params: Vec<rusqlite::types::Value> = args.clone();
            params.push(rusqlite::types::Value::Integer(limit(batch)));
            db.conn.prepare_cached(&sql).and_then(|mut s| s.execute(rusqlite::params_from_iter(params))).op(what)?
        };
        total += n as u64;
        if n < batch {
            return Ok(total);
        }
        std::thread::yield_now();
    }
}

/// Prune one pipeline's history past `r` (see [`Retention`]). Runs on the blocking pool.
pub(crate) fn prune(st: &SqliteState, pipeline: &str, r: &Retention) -> Result<Pruned, Error> {
    use rusqlite::types::Value as V;
    let batch = r.batch.max(1);
    let mut out = Pruned::default();
    let age = r.max_age.map(cutoff);
    // The oldest run to keep: the newest always; then up to `runs`, none older than max_age.
    let keep_from: Option<i64> = {
        let db = crate::lock_db(&st.reader);
        let mut s = db
            .conn
            .prepare_cached("SELECT id, started_at FROM runs WHERE pipeline = ?1 ORDER BY id DESC LIMIT ?2")
            .op("preparing the retention query")?;
        let rows: Vec<(i64, String)> = s
            .query_map(params![pipeline, limit(r.runs.map_or(usize::MAX, |n| n.max(1) as usize))], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .and_then(|rows| rows.collect())
            .op("listing runs to keep")?;
        rows.iter()
            .enumerate()
            .take_while(|(i, (_, started))| *i == 0 || age.as_deref().is_none_or(|a| started.as_str() >= a))
            .last()
            .map(|(_, (id, _))| *id)
    };
    if let Some(from) = keep_from {
        let p = V::Text(pipeline.to_owned());
        out.runs = drain(
            st,
            "pruning runs",
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE pipeline = ?1 AND id < ?2 LIMIT ?3)".into(),
            vec![p.clone(), V::Integer(from)],
            batch,
        )?;
        let streams: Vec<i64> = {
            let db = crate::lock_db(&st.reader);
            let mut s = db.conn.prepare_cached("SELECT id FROM streams WHERE pipeline = ?1").op("listing streams")?;
            s.query_map([pipeline], |r| r.get(0)).and_then(|rows| rows.collect()).op("listing streams")?
        };
        for sid in streams {
            let args = vec![V::Integer(sid), V::Integer(from)];
            out.fetches += drain(
                st,
                "pruning fetches",
                "DELETE FROM explain_fetches WHERE id IN
                   (SELECT id FROM explain_fetches WHERE stream_id = ?1 AND run_id < ?2 LIMIT ?3)"
                    .into(),
                args.clone(),
                batch,
            )?;
            drain(
                st,
                "pruning explain runs",
                "DELETE FROM explain_runs WHERE (stream_id, run_id) IN
                   (SELECT stream_id, run_id FROM explain_runs WHERE stream_id = ?1 AND run_id < ?2 LIMIT ?3)"
                    .into(),
                args,
                batch,
            )?;
            out.stories += prune_stories(st, sid, from, batch)?;
        }
    }
    if let Some(a) = &age {
        out.drift_events = drain(
            st,
            "pruning drift events",
            "DELETE FROM drift_events WHERE id IN (SELECT id FROM drift_events
               WHERE pipeline = ?1 AND accepted_at IS NOT NULL AND last_seen < ?2 LIMIT ?3)"
                .into(),
            vec![V::Text(pipeline.to_owned()), V::Text(a.clone())],
            batch,
        )?;
    }
    if let Some(d) = r.dead_letters_max_age {
        out.dead_letters = drain(
            st,
            "pruning dead letters",
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters
               WHERE pipeline = ?1 AND last_seen_at < ?2 LIMIT ?3)"
                .into(),
            vec![V::Text(pipeline.to_owned()), V::Text(cutoff(d))],
            batch,
        )?;
    }
    Ok(out)
}

/// Stories of runs before `from`: found on the reader connection (stories have no run index,
/// see migration 5), deleted by primary key on the writer, `batch` at a time.
fn prune_stories(st: &SqliteState, sid: i64, from: i64, batch: usize) -> Result<u64, Error> {
    let mut total = 0;
    loop {
        let keys: Vec<String> = {
            let db = crate::lock_db(&st.reader);
            let mut s = db
                .conn
                .prepare_cached("SELECT key FROM explain_stories WHERE stream_id = ?1 AND run_id < ?2 LIMIT ?3")
                .op("finding old stories")?;
            s.query_map(params![sid, from, limit(batch)], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .op("finding old stories")?
        };
        if keys.is_empty() {
            return Ok(total);
        }
        let mut db = crate::lock_db(&st.db);
        let tx =
            db.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).op("starting a story prune")?;
        {
            let mut s = tx
                .prepare_cached("DELETE FROM explain_stories WHERE stream_id = ?1 AND key = ?2 AND run_id < ?3")
                .op("preparing the story prune")?;
            for k in &keys {
                total += s.execute(params![sid, k, from]).op("pruning a story")? as u64;
            }
        }
        tx.commit().op("committing a story prune")?;
        if keys.len() < batch {
            return Ok(total);
        }
    }
}

/// A key's latest story from its written one and its dead-lettered one, each with the fetch
/// id the unchanged sightings after it are searched from: the later run's (in one run a
/// record is either written or dead-lettered). Shared by every state store.
pub fn latest_story(
    written: Option<(StoredStory, i64)>,
    dead: Option<(StoredStory, Option<i64>)>,
) -> Option<(StoredStory, i64)> {
    match (written, dead) {
        (Some(w), Some((d, f))) => Some(if d.run_id > w.0.run_id { (d, f.unwrap_or(0)) } else { w }),
        (Some(w), None) => Some(w),
        (None, Some((d, f))) => Some((d, f.unwrap_or(0))),
        (None, None) => None,
    }
}
